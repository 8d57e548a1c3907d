//! Signed, expiring links carried by every notice: the acknowledgement link (送达确认) that
//! records the service of the notice in the ledger, and the guidance link (合规指引) that opens
//! the enterprise's own guidance page.
//!
//! A link is `<base>/e/<credit code>/<ack|guidance>/<token>`; the token is
//! `base64url(claims) "." base64url(HMAC-SHA256(key, claims))` with the claims
//! `purpose \n enterprise \n subject \n expiry` (subject: the document number, or `risk:<id>`
//! for a risk warning; expiry: Unix seconds).
//!
//! Invariants: the signature is checked first and in constant time (`ring::hmac::verify`); a
//! token is honoured only for its own purpose and only under the enterprise it names, so a link
//! of enterprise A never opens B's page; an expired token is refused as *gone* (410), every other
//! refusal as *forbidden* (403). The key comes from the environment, never from a file in the
//! repository, and is at least 32 bytes.

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
}

impl Refusal {
    /// The HTTP status: 410 for an expired link, 403 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Self::Expired(_) => 410,
            _ => 403,
        }
    }
}

/// Signs and verifies links.
pub struct Signer {
    key: hmac::Key,
    base_url: String,
    ttl_secs: i64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

/// The least key length, bytes.
pub const MIN_KEY_BYTES: usize = 32;

impl Signer {
    /// A signer with `key` (≥ 32 bytes), links under `base_url`, valid `ttl_days` after issue.
    pub fn new(key: &[u8], base_url: &str, ttl_days: u32) -> Result<Self> {
        if key.len() < MIN_KEY_BYTES {
            return Err(CoreError::Config(format!(
                "the link-signing key has {} bytes; at least {MIN_KEY_BYTES} are needed",
                key.len()
            ))
            .into());
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            base_url: base_url.trim_end_matches('/').to_string(),
            ttl_secs: i64::from(ttl_days) * 86_400,
        })
    }

    /// The signer of a delivery configuration: the key from the environment variable it names.
    pub fn from_env(env_var: &str, base_url: &str, ttl_days: u32) -> Result<Self> {
        let key = std::env::var(env_var).map_err(|_| {
            CoreError::Config(format!(
                "the link-signing key is missing: set {env_var} to a secret of at least \
                 {MIN_KEY_BYTES} bytes (for example `openssl rand -hex 32`)"
            ))
        })?;
        Self::new(key.as_bytes(), base_url, ttl_days)
    }

    /// Seconds a link lives after the notice was issued.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// A token for `claims`.
    pub fn token(&self, claims: &Claims) -> String {
        let payload = format!(
            "{}\n{}\n{}\n{}",
            claims.purpose.as_str(),
            claims.enterprise_id,
            claims.subject,
            claims.expires
        );
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!(
            "{}.{}",
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
        let (p, s) = token.split_once('.').ok_or(Refusal::Forged)?;
        let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| Refusal::Forged)?;
        let tag = URL_SAFE_NO_PAD.decode(s).map_err(|_| Refusal::Forged)?;
        hmac::verify(&self.key, &payload, &tag).map_err(|_| Refusal::Forged)?;
        let text = String::from_utf8(payload).map_err(|_| Refusal::Forged)?;
        let parts: Vec<&str> = text.split('\n').collect();
        let [kind, enterprise, subject, expires] = parts[..] else {
            return Err(Refusal::Forged);
        };
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
    }
}
