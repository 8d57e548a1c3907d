//! Signed, expiring links carried by every notice: the acknowledgement link (送达确认) that
//! records the service of the notice in the ledger, and the guidance link (合规指引) that opens
//! the enterprise's own guidance page.
//!
//! A link is `<base>/e/<credit code>/<ack|guidance>/<token>`; the token is
//! `<key id> "." base64url(claims) "." base64url(HMAC-SHA256(key, key id "\n" claims))` with the
//! claims `purpose \n enterprise \n subject \n expiry \n issued` (subject: the document number,
//! or `risk:<id>` for a risk warning; expiry and issue: Unix seconds). The key id names the key
//! of the keyring that signed it: the signing key is rotated by giving it a new id and keeping
//! the old one as a *retired* key, which verifies the links in flight and signs nothing. Tokens
//! of the first form (`base64url(claims) "." tag`, four claims, no key id) are still verified
//! against every key of the ring.
//!
//! Invariants: the signature is checked first and in constant time (`ring::hmac::verify`); a
//! token is honoured only for its own purpose and only under the enterprise it names, so a link
//! of enterprise A never opens B's page; an expired token is refused as *gone* (410), as is a
//! token whose key id the ring no longer holds, or one the ledger revoked (the caller checks the
//! revocation, [`Refusal::Revoked`]); every other refusal is *forbidden* (403). Keys come from
//! the environment, never from a file in the repository, and are at least 32 bytes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

use crate::error::Result;
use pharmwatch_core::error::CoreError;

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Acknowledge the service of a notice (送达确认).
    Ack,
    /// Open the enterprise's guidance page (合规指引).
    Guidance,
}

impl Purpose {
    /// The path segment and claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ack => "ack",
            Self::Guidance => "guidance",
        }
    }
}

/// The verified content of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// What for.
    pub purpose: Purpose,
    /// The enterprise (credit code).
    pub enterprise_id: String,
    /// Document number, or `risk:<event id>`.
    pub subject: String,
    /// Expiry, Unix seconds.
    pub expires: i64,
    /// Issue, Unix seconds (0 in a token of the first form, which did not carry it).
    pub issued: i64,
}

/// Why a link was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a token at all, or altered: the signature does not match.
    Forged,
    /// A valid token used for another purpose.
    WrongPurpose,
    /// A valid token of another enterprise.
    OtherEnterprise,
    /// A valid token past its expiry (Unix seconds).
    Expired(i64),
    /// A token signed with a key the ring no longer holds (its id).
    KeyRetired(String),
    /// A valid token of a document whose links were revoked after it was issued: when (RFC
    /// 3339) and why.
    Revoked {
        /// When the links were revoked.
        at: String,
        /// The reason given.
        reason: String,
    },
    /// A valid token whose revocation could not be checked now (the store is busy or away).
    Unchecked,
}

impl Refusal {
    /// The HTTP status: 410 for a link that is gone (expired, its key retired, revoked), 503
    /// when it could not be checked now, 403 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Self::Expired(_) | Self::KeyRetired(_) | Self::Revoked { .. } => 410,
            Self::Unchecked => 503,
            _ => 403,
        }
    }
}

/// Signs and verifies links.
pub struct Signer {
    /// The keyring: the signing key first, then the retired ones, each with its id.
    keys: Vec<(String, hmac::Key)>,
    base_url: String,
    ttl_secs: i64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Signer")
            .field("key_ids", &ids)
            .field("keys", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

/// The least key length, bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// The id of the signing key when none is configured.
pub const DEFAULT_KEY_ID: &str = "k1";

/// Checks a key id: 1–16 ASCII letters, digits, `-` or `_` (it is a segment of the token).
pub fn check_key_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 16
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(CoreError::Config(format!(
            "link key id {id:?}: 1 to 16 letters, digits, '-' or '_'"
        ))
        .into());
    }
    Ok(())
}

/// The key held by environment variable `env_var` (the id it is for names it in the error).
fn key_from_env(env_var: &str, id: &str) -> Result<Vec<u8>> {
    std::env::var(env_var).map(String::into_bytes).map_err(|_| {
        CoreError::Config(format!(
            "the link-signing key {id} is missing: set {env_var} to a secret of at least \
             {MIN_KEY_BYTES} bytes (for example `openssl rand -hex 32`)"
        ))
        .into()
    })
}

impl Signer {
    /// A signer with `key` (≥ 32 bytes) under id [`DEFAULT_KEY_ID`], links under `base_url`,
    /// valid `ttl_days` after they are sent.
    pub fn new(key: &[u8], base_url: &str, ttl_days: u32) -> Result<Self> {
        Self::with_keys((DEFAULT_KEY_ID, key), &[], base_url, ttl_days)
    }

    /// A signer with `signing` (id, key) and `retired` keys that only verify.
    pub fn with_keys(
        signing: (&str, &[u8]),
        retired: &[(&str, &[u8])],
        base_url: &str,
        ttl_days: u32,
    ) -> Result<Self> {
        let mut keys = Vec::new();
        for (id, key) in std::iter::once(&signing).chain(retired) {
            check_key_id(id)?;
            if key.len() < MIN_KEY_BYTES {
                return Err(CoreError::Config(format!(
                    "the link-signing key {id} has {} bytes; at least {MIN_KEY_BYTES} are needed",
                    key.len()
                ))
                .into());
            }
            if keys.iter().any(|(k, _)| k == id) {
                return Err(CoreError::Config(format!("link key id {id} is given twice")).into());
            }
            keys.push((id.to_string(), hmac::Key::new(hmac::HMAC_SHA256, key)));
        }
        Ok(Self {
            keys,
            base_url: base_url.trim_end_matches('/').to_string(),
            ttl_secs: i64::from(ttl_days) * 86_400,
        })
    }

    /// The signer of a delivery configuration: the signing key `key_id` from environment
    /// variable `env_var`, and the retired keys (id → environment variable).
    pub fn from_env(
        key_id: &str,
        env_var: &str,
        retired: &std::collections::BTreeMap<String, String>,
        base_url: &str,
        ttl_days: u32,
    ) -> Result<Self> {
        let signing = key_from_env(env_var, key_id)?;
        let mut old = Vec::new();
        for (id, var) in retired {
            old.push((id.as_str(), key_from_env(var, id)?));
        }
        let old: Vec<(&str, &[u8])> = old.iter().map(|(id, k)| (*id, k.as_slice())).collect();
        Self::with_keys((key_id, &signing), &old, base_url, ttl_days)
    }

    /// The id of the signing key.
    pub fn key_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Seconds a link lives after the notice was issued.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// A token for `claims`, signed with the signing key.
    pub fn token(&self, claims: &Claims) -> String {
        let (id, key) = &self.keys[0];
        let payload = format!(
            "{}\n{}\n{}\n{}\n{}",
            claims.purpose.as_str(),
            claims.enterprise_id,
            claims.subject,
            claims.expires,
            claims.issued
        );
        let tag = hmac::sign(key, format!("{id}\n{payload}").as_bytes());
        format!(
            "{id}.{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The full link for `claims`.
    pub fn url(&self, claims: &Claims) -> String {
        format!(
            "{}/e/{}/{}/{}",
            self.base_url,
            claims.enterprise_id,
            claims.purpose.as_str(),
            self.token(claims)
        )
    }

    /// Verifies `token` presented at `/e/<enterprise_id>/<purpose>/` at time `now` (Unix
    /// seconds).
    pub fn verify(
        &self,
        purpose: Purpose,
        enterprise_id: &str,
        token: &str,
        now: i64,
    ) -> std::result::Result<Claims, Refusal> {
        let parts: Vec<&str> = token.split('.').collect();
        let payload = match parts[..] {
            [id, p, s] => {
                let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| Refusal::Forged)?;
                let tag = URL_SAFE_NO_PAD.decode(s).map_err(|_| Refusal::Forged)?;
                let Some((_, key)) = self.keys.iter().find(|(k, _)| k == id) else {
                    // A well-formed id the ring does not hold: retired and removed (a
                    // made-up id is as gone, and proves nothing either way).
                    return Err(if check_key_id(id).is_ok() {
                        Refusal::KeyRetired(id.to_string())
                    } else {
                        Refusal::Forged
                    });
                };
                let mut signed = Vec::with_capacity(id.len() + 1 + payload.len());
                signed.extend_from_slice(id.as_bytes());
                signed.push(b'\n');
                signed.extend_from_slice(&payload);
                hmac::verify(key, &signed, &tag).map_err(|_| Refusal::Forged)?;
                payload
            }
            // The first form: no key id, four claims; any key of the ring may have signed it.
            [p, s] => {
                let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| Refusal::Forged)?;
                let tag = URL_SAFE_NO_PAD.decode(s).map_err(|_| Refusal::Forged)?;
                self.keys
                    .iter()
                    .find(|(_, key)| hmac::verify(key, &payload, &tag).is_ok())
                    .ok_or(Refusal::Forged)?;
                payload
            }
            _ => return Err(Refusal::Forged),
        };
        let text = String::from_utf8(payload).map_err(|_| Refusal::Forged)?;
        let fields: Vec<&str> = text.split('\n').collect();
        let (kind, enterprise, subject, expires, issued) = match fields[..] {
            [k, e, s, x, i] if parts.len() == 3 => (k, e, s, x, i),
            [k, e, s, x] if parts.len() == 2 => (k, e, s, x, "0"),
            _ => return Err(Refusal::Forged),
        };
        let issued: i64 = issued.parse().map_err(|_| Refusal::Forged)?;
        let expires: i64 = expires.parse().map_err(|_| Refusal::Forged)?;
        let claimed = match kind {
            "ack" => Purpose::Ack,
            "guidance" => Purpose::Guidance,
            _ => return Err(Refusal::Forged),
        };
        if claimed != purpose {
            return Err(Refusal::WrongPurpose);
        }
        if enterprise != enterprise_id {
            return Err(Refusal::OtherEnterprise);
        }
        if now >= expires {
            return Err(Refusal::Expired(expires));
        }
        Ok(Claims {
            purpose: claimed,
            enterprise_id: enterprise.to_string(),
            subject: subject.to_string(),
            expires,
            issued,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const A: &str = "91110000600037341L";
    const B: &str = "91110000600037342X";

    fn signer() -> Signer {
        Signer::new(&[7u8; 32], "https://n.example/", 30).unwrap()
    }

    fn claims(purpose: Purpose) -> Claims {
        Claims {
            purpose,
            enterprise_id: A.into(),
            subject: "蒙药监告〔2026〕1号".into(),
            expires: 2_000,
            issued: 1_000,
        }
    }

    #[test]
    fn a_link_opens_only_its_purpose_its_enterprise_and_before_expiry() {
        let s = signer();
        let c = claims(Purpose::Ack);
        let t = s.token(&c);
        assert_eq!(s.verify(Purpose::Ack, A, &t, 1_999).unwrap(), c);
        assert_eq!(
            s.verify(Purpose::Guidance, A, &t, 1_000),
            Err(Refusal::WrongPurpose)
        );
        assert_eq!(
            s.verify(Purpose::Ack, B, &t, 1_000),
            Err(Refusal::OtherEnterprise)
        );
        assert_eq!(
            s.verify(Purpose::Ack, A, &t, 2_000),
            Err(Refusal::Expired(2_000))
        );
        assert_eq!(Refusal::Expired(1).status(), 410);
        assert!(
            s.url(&c)
                .starts_with(&format!("https://n.example/e/{A}/ack/"))
        );
    }

    #[test]
    fn altered_or_foreign_tokens_are_forged() {
        let s = signer();
        let t = s.token(&claims(Purpose::Ack));
        // Change the claims (another enterprise, a later expiry) and keep the signature.
        let (_, sig) = t.split_once('.').unwrap();
        let forged = format!(
            "{}.{sig}",
            URL_SAFE_NO_PAD.encode(format!("ack\n{B}\nX\n9999999999"))
        );
        assert_eq!(s.verify(Purpose::Ack, B, &forged, 0), Err(Refusal::Forged));
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(s.verify(Purpose::Ack, A, &flipped, 0), Err(Refusal::Forged));
        let other = Signer::new(&[8u8; 32], "https://n.example", 30).unwrap();
        assert_eq!(other.verify(Purpose::Ack, A, &t, 0), Err(Refusal::Forged));
        assert_eq!(
            s.verify(Purpose::Ack, A, "garbage", 0),
            Err(Refusal::Forged)
        );
        assert!(Signer::new(b"short", "https://n.example", 30).is_err());
        assert!(!format!("{s:?}").contains("7, 7"));
        // The key id is signed too: moving a token under another id of the ring fails.
        let ring =
            Signer::with_keys(("k2", &[9u8; 32]), &[("k1", &[7u8; 32])], "https://n", 30).unwrap();
        let t = ring.token(&claims(Purpose::Ack));
        let moved = format!("k1{}", t.strip_prefix("k2").unwrap());
        assert_eq!(
            ring.verify(Purpose::Ack, A, &moved, 0),
            Err(Refusal::Forged)
        );
        assert_eq!(
            ring.verify(Purpose::Ack, A, "../x.YQ.YQ", 0),
            Err(Refusal::Forged)
        );
    }

    /// Rotation: the new key signs, the retired key still verifies the links in flight, and
    /// once it is removed its links are gone (410), not forged.
    #[test]
    fn a_rotated_key_keeps_links_in_flight_until_it_is_removed() {
        let old = signer();
        let c = claims(Purpose::Guidance);
        let in_flight = old.token(&c);
        assert!(in_flight.starts_with("k1."), "{in_flight}");
        let ring =
            Signer::with_keys(("k2", &[9u8; 32]), &[("k1", &[7u8; 32])], "https://n", 30).unwrap();
        assert_eq!(ring.key_id(), "k2");
        assert_eq!(
            ring.verify(Purpose::Guidance, A, &in_flight, 1_500),
            Ok(c.clone())
        );
        let fresh = ring.token(&c);
        assert!(fresh.starts_with("k2."), "{fresh}");
        assert_eq!(
            ring.verify(Purpose::Guidance, A, &fresh, 1_500),
            Ok(c.clone())
        );
        let rotated = Signer::with_keys(("k2", &[9u8; 32]), &[], "https://n", 30).unwrap();
        let gone = rotated.verify(Purpose::Guidance, A, &in_flight, 1_500);
        assert_eq!(gone, Err(Refusal::KeyRetired("k1".into())));
        assert_eq!(gone.unwrap_err().status(), 410);
        // The old key alone does not verify the new key's tokens.
        assert_eq!(
            old.verify(Purpose::Guidance, A, &fresh, 1_500),
            Err(Refusal::KeyRetired("k2".into()))
        );
        // Ids are checked; one id twice is refused.
        assert!(Signer::with_keys(("a/b", &[9u8; 32]), &[], "https://n", 30).is_err());
        assert!(
            Signer::with_keys(("k1", &[9u8; 32]), &[("k1", &[7u8; 32])], "https://n", 30).is_err()
        );
    }

    /// A token of the first form (no key id, no issue time) is verified against the ring.
    #[test]
    fn a_token_of_the_first_form_still_verifies() {
        let key = [7u8; 32];
        let payload = format!("ack\n{A}\nX-1\n2000");
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), payload.as_bytes());
        let token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        );
        let ring = Signer::with_keys(("k2", &[9u8; 32]), &[("k1", &key)], "https://n", 30).unwrap();
        let c = ring.verify(Purpose::Ack, A, &token, 1_000).unwrap();
        assert_eq!((c.subject.as_str(), c.expires, c.issued), ("X-1", 2_000, 0));
        let without = Signer::with_keys(("k2", &[9u8; 32]), &[], "https://n", 30).unwrap();
        assert_eq!(
            without.verify(Purpose::Ack, A, &token, 1_000),
            Err(Refusal::Forged)
        );
    }
}
