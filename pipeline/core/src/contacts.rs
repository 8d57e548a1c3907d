//! Enterprise contacts (企业负责人联系方式): the reference data that says where notices and risk
//! warnings for an enterprise go — its lead's webhook, DingTalk or WeCom robot, or e-mail — in
//! priority order, with the per-enterprise signing secret named by reference (never inline).
//! The wire contract is `schemas/contracts/contacts.json`; the simulator writes a directory
//! deterministic by seed (`LAKE/reference/contacts.json` and its secrets file).
//!
//! Invariants:
//! - the only way to get recipients is [`Directory::contacts_of`], keyed by the credit code of
//!   the thing being delivered: a notice for enterprise A can only ever be addressed to A's own
//!   registered contacts (the delivery worker checks the contact's enterprise again before it
//!   sends);
//! - a contact is validated when loaded: a valid credit code, an address that fits its channel
//!   (http(s) URL for webhooks and robots, an address with `@` for e-mail), a `secret_ref` for a
//!   generic webhook (its signature is not optional);
//! - secrets are referenced as `env:VARIABLE` or `file:KEY` (a key of the delivery
//!   configuration's secrets file) and resolved only when a message is signed; they never
//!   appear in the contact file, in logs or in `deliver --dry-run`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// File name of the contacts inside a lake's reference directory.
pub const CONTACTS_FILE: &str = "contacts.json";
/// File name of the simulated contacts' secrets inside a lake's reference directory.
pub const SECRETS_FILE: &str = "contact_secrets.toml";

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A generic HTTPS webhook of the enterprise: signed JSON.
    Webhook,
    /// A DingTalk (钉钉) group robot: markdown message, optionally signed URL.
    Dingtalk,
    /// A WeCom (企业微信) group robot: markdown message.
    Wecom,
    /// E-mail over SMTP: the rendered notice as HTML body and attachment.
    Email,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 4] = [
        Channel::Webhook,
        Channel::Dingtalk,
        Channel::Wecom,
        Channel::Email,
    ];

    /// The name (contact files, metrics label, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Dingtalk => "dingtalk",
            Self::Wecom => "wecom",
            Self::Email => "email",
        }
    }

    /// Parses a channel name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// One registered contact of an enterprise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// The enterprise's unified social credit code (统一社会信用代码).
    pub enterprise_id: String,
    /// Order of trial: 1 first; the next one is the fallback when a channel fails for good.
    pub priority: u32,
    /// The enterprise lead (企业负责人) the messages address.
    pub lead_name: String,
    /// The channel.
    pub channel: Channel,
    /// Webhook or robot URL, or e-mail address.
    pub address: String,
    /// Where the signing secret is: `env:VARIABLE` or `file:KEY` (secrets file). Required for
    /// a webhook; for a DingTalk robot it turns on signed URLs; unused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
}

impl Contact {
    /// Checks the contact (credit code, address fits the channel, secret reference form).
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: String| CoreError::InvalidField {
            field: format!("contact {} #{} {field}", self.enterprise_id, self.priority),
            reason,
        };
        crate::ids::validate_enterprise_id(&self.enterprise_id)?;
        match self.channel {
            Channel::Webhook | Channel::Dingtalk | Channel::Wecom => {
                let ok =
                    self.address.starts_with("https://") || self.address.starts_with("http://");
                if !ok || self.address.contains(char::is_whitespace) {
                    return Err(bad(
                        "address",
                        format!("a {} needs an http(s) URL", self.channel.as_str()),
                    ));
                }
            }
            Channel::Email => {
                let (local, domain) = self.address.split_once('@').unwrap_or(("", ""));
                if local.is_empty() || !domain.contains('.') || self.address.contains(' ') {
                    return Err(bad("address", "not an e-mail address".into()));
                }
            }
        }
        if self.channel == Channel::Webhook && self.secret_ref.is_none() {
            return Err(bad(
                "secret_ref",
                "a webhook needs a signing secret (`env:VARIABLE` or `file:KEY`)".into(),
            ));
        }
        if let Some(r) = &self.secret_ref {
            let ok = r
                .split_once(':')
                .is_some_and(|(k, v)| (k == "env" || k == "file") && !v.is_empty());
            if !ok {
                return Err(bad(
                    "secret_ref",
                    "expected `env:VARIABLE` or `file:KEY`".into(),
                ));
            }
        }
        Ok(())
    }
}

/// The contacts of every enterprise, in priority order.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    by_enterprise: BTreeMap<String, Vec<Contact>>,
}

impl Directory {
    /// Builds a directory from contacts (validated, a refusal naming the contact's index; two
    /// contacts of one enterprise with the same priority are refused, the fallback order must
    /// be unambiguous).
    pub fn new(contacts: Vec<Contact>) -> Result<Self> {
        let mut by_enterprise: BTreeMap<String, Vec<Contact>> = BTreeMap::new();
        for (i, c) in contacts.iter().enumerate() {
            c.validate()
                .map_err(|e| CoreError::Config(format!("contact [{i}]: {e}")))?;
        }
        for c in contacts {
            by_enterprise
                .entry(c.enterprise_id.clone())
                .or_default()
                .push(c);
        }
        for (e, list) in &mut by_enterprise {
            list.sort_by_key(|c| c.priority);
            if list.windows(2).any(|w| w[0].priority == w[1].priority) {
                return Err(CoreError::InvalidField {
                    field: format!("contacts of {e}"),
                    reason: "two contacts share a priority".into(),
                });
            }
        }
        Ok(Self { by_enterprise })
    }

    /// Reads a contacts file: a JSON array of contacts (`schemas/contracts/contacts.json`).
    /// A refusal names the file, the contact's index in the array (`[3]`), the field and the
    /// reason (with the line and column when the JSON itself is at fault).
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |what: String| CoreError::Config(format!("{}: {what}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
        let mut de = serde_json::Deserializer::from_str(&text);
        let contacts: Vec<Contact> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let at = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() || at == "." {
                bad(format!("not a JSON array of contacts: {inner}"))
            } else {
                bad(format!("contact {at}: {inner}"))
            }
        })?;
        de.end()
            .map_err(|e| bad(format!("not a JSON array of contacts: {e}")))?;
        Self::new(contacts).map_err(|e| match e {
            CoreError::Config(what) => bad(what),
            other => bad(other.to_string()),
        })
    }

    /// The registered contacts of `enterprise_id`, first choice first (empty when none).
    pub fn contacts_of(&self, enterprise_id: &str) -> &[Contact] {
        self.by_enterprise
            .get(enterprise_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Number of enterprises with contacts.
    pub fn enterprises(&self) -> usize {
        self.by_enterprise.len()
    }

    /// Every contact, by enterprise and priority.
    pub fn all(&self) -> impl Iterator<Item = &Contact> {
        self.by_enterprise.values().flatten()
    }
}

/// Where simulated contacts point.
#[derive(Debug, Clone)]
pub struct SimulatedEndpoints {
    /// Base of generic webhooks: `<base>/<credit code>`.
    pub webhook_base: String,
    /// DingTalk robot endpoint (an `access_token` is appended).
    pub dingtalk_base: String,
    /// WeCom robot endpoint (a `key` is appended).
    pub wecom_base: String,
}

impl Default for SimulatedEndpoints {
    fn default() -> Self {
        Self {
            webhook_base: "https://hooks.example.invalid/pharmwatch".into(),
            // Reserved names (RFC 2606): a simulated province never posts to a real robot,
            // even where the machine has internet access and --dry-run is forgotten.
            dingtalk_base: "https://dingtalk.example.invalid/robot/send".into(),
            wecom_base: "https://wecom.example.invalid/cgi-bin/webhook/send".into(),
        }
    }
}

/// Simulated contacts, deterministic by `seed`: per enterprise a first channel (webhook,
/// DingTalk or WeCom robot, or e-mail) and the lead's e-mail as fallback; webhooks and DingTalk
/// robots get a secret in the returned map (`file:<credit code>`).
pub fn simulate(
    enterprises: &[pharmwatch_schemas::records::Enterprise],
    seed: u64,
    endpoints: &SimulatedEndpoints,
) -> (Vec<Contact>, BTreeMap<String, String>) {
    // A stream of its own: contacts do not shift the simulated records of a seed.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x636f_6e74_6163_7473);
    let mut contacts = Vec::new();
    let mut secrets = BTreeMap::new();
    let hex = |rng: &mut Xoshiro256PlusPlus, bytes: usize| -> String {
        (0..bytes)
            .map(|_| format!("{:02x}", rng.r#gen::<u8>()))
            .collect()
    };
    for e in enterprises {
        let first = match rng.gen_range(0..4) {
            0 => Channel::Webhook,
            1 => Channel::Dingtalk,
            2 => Channel::Wecom,
            _ => Channel::Email,
        };
        let secret_ref = matches!(first, Channel::Webhook | Channel::Dingtalk)
            .then(|| format!("file:{}", e.enterprise_id));
        if secret_ref.is_some() {
            let prefix = if first == Channel::Dingtalk {
                "SEC"
            } else {
                ""
            };
            secrets.insert(
                e.enterprise_id.clone(),
                format!("{prefix}{}", hex(&mut rng, 32)),
            );
        }
        let address = match first {
            Channel::Webhook => format!("{}/{}", endpoints.webhook_base, e.enterprise_id),
            Channel::Dingtalk => format!(
                "{}?access_token={}",
                endpoints.dingtalk_base,
                hex(&mut rng, 32)
            ),
            Channel::Wecom => format!("{}?key={}", endpoints.wecom_base, hex(&mut rng, 16)),
            Channel::Email => e.lead_email.clone(),
        };
        contacts.push(Contact {
            enterprise_id: e.enterprise_id.clone(),
            priority: 1,
            lead_name: e.lead_name.clone(),
            channel: first,
            address,
            secret_ref,
        });
        if first != Channel::Email {
            contacts.push(Contact {
                enterprise_id: e.enterprise_id.clone(),
                priority: 2,
                lead_name: e.lead_name.clone(),
                channel: Channel::Email,
                address: e.lead_email.clone(),
                secret_ref: None,
            });
        }
    }
    (contacts, secrets)
}

/// Writes contacts (JSON array) and, when any, their secrets file (TOML, owner-only
/// permissions) into directory `dir`; returns the contacts file.
pub fn write_file(
    dir: &Path,
    contacts: &[Contact],
    secrets: &BTreeMap<String, String>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
    let path = dir.join(CONTACTS_FILE);
    let text =
        serde_json::to_string_pretty(contacts).map_err(|e| CoreError::Internal(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(|e| CoreError::io(&path, e))?;
    if !secrets.is_empty() {
        let spath = dir.join(SECRETS_FILE);
        let mut text = String::from(
            "# Signing secrets of the simulated contacts (key = credit code). Simulation only:\n\
             # real secrets come from the environment or a file readable by the service alone.\n",
        );
        for (k, v) in secrets {
            text.push_str(&format!("{k} = \"{v}\"\n"));
        }
        std::fs::write(&spath, text).map_err(|e| CoreError::io(&spath, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&spath, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| CoreError::io(&spath, e))?;
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn contact(channel: Channel, address: &str, secret: Option<&str>) -> Contact {
        Contact {
            enterprise_id: "91110000600037341L".into(),
            priority: 1,
            lead_name: "张三".into(),
            channel,
            address: address.into(),
            secret_ref: secret.map(str::to_string),
        }
    }

    #[test]
    fn contacts_are_validated_per_channel() {
        assert!(
            contact(Channel::Webhook, "https://a.example/h", Some("env:X"))
                .validate()
                .is_ok()
        );
        assert!(
            contact(Channel::Webhook, "https://a.example/h", None)
                .validate()
                .is_err(),
            "a webhook without a secret"
        );
        assert!(
            contact(Channel::Webhook, "ftp://a", Some("env:X"))
                .validate()
                .is_err()
        );
        assert!(contact(Channel::Email, "a@b.cn", None).validate().is_ok());
        assert!(contact(Channel::Email, "ab.cn", None).validate().is_err());
        assert!(
            contact(Channel::Dingtalk, "https://x/y", Some("plain"))
                .validate()
                .is_err()
        );
        let mut other = contact(Channel::Email, "a@b.cn", None);
        other.enterprise_id = "not-a-code".into();
        assert!(other.validate().is_err());
    }

    #[test]
    fn the_directory_orders_by_priority_and_refuses_ties() {
        let mut a = contact(Channel::Email, "a@b.cn", None);
        a.priority = 2;
        let b = contact(Channel::Wecom, "https://q/x?key=1", None);
        let d = Directory::new(vec![a.clone(), b.clone()]).unwrap();
        let got: Vec<Channel> = d
            .contacts_of("91110000600037341L")
            .iter()
            .map(|c| c.channel)
            .collect();
        assert_eq!(got, vec![Channel::Wecom, Channel::Email]);
        assert!(d.contacts_of("91110000600037342X").is_empty());
        a.priority = 1;
        assert!(Directory::new(vec![a, b]).is_err());
    }

    #[test]
    fn simulated_contacts_follow_the_contract_and_the_seed() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/contracts/contacts.json");
        let contract: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let items = &contract["items"];
        let mut props: Vec<String> = items["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        props.sort();
        let channels: Vec<&str> = items["properties"]["channel"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(channels, Channel::ALL.map(Channel::as_str).to_vec());
        let enterprises: Vec<pharmwatch_schemas::records::Enterprise> = (0..40)
            .map(|i| {
                serde_json::from_value(serde_json::json!({
                    "enterprise_id": pharmwatch_schemas::ids::make_credit_code('9', '1', "150100", i as u64).unwrap(),
                    "name": "药店", "enterprise_type": "single_pharmacy", "region_code": "150100",
                    "licence_no": "L1", "parent_id": null, "lead_name": "李四",
                    "lead_phone": "13800000000", "lead_email": format!("lead{i}@ent.example.com"),
                    "credit_grade": "B"
                }))
                .unwrap()
            })
            .collect();
        let (a, secrets_a) = simulate(&enterprises, 7, &SimulatedEndpoints::default());
        let (b, _) = simulate(&enterprises, 7, &SimulatedEndpoints::default());
        let (c, _) = simulate(&enterprises, 8, &SimulatedEndpoints::default());
        assert_eq!(a, b, "deterministic by seed");
        assert_ne!(a, c);
        let mut seen = std::collections::BTreeSet::new();
        for contact in &a {
            contact.validate().unwrap();
            let v = serde_json::to_value(contact).unwrap();
            for k in v.as_object().unwrap().keys() {
                assert!(props.contains(k), "{k} is not in the contract");
            }
            for r in items["required"].as_array().unwrap() {
                assert!(v.get(r.as_str().unwrap()).is_some());
            }
            if let Some(r) = &contact.secret_ref {
                let key = r.strip_prefix("file:").unwrap();
                assert!(secrets_a.contains_key(key));
            }
            seen.insert(contact.channel);
        }
        assert_eq!(seen.len(), 4, "every channel is simulated: {seen:?}");
        let dir = tempfile::tempdir().unwrap();
        let file = write_file(dir.path(), &a[..4], &secrets_a).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !secrets_a.values().any(|s| text.contains(s.as_str())),
            "no secret inline"
        );
    }

    mod properties {
        //! Random bytes and near-valid contacts through `Directory::load`: no panic; a refusal
        //! names the file, and for a contact its index.
        use super::*;
        use proptest::prelude::*;

        fn valid() -> serde_json::Value {
            serde_json::json!([{"enterprise_id": "91110000600037341L", "priority": 1,
                "lead_name": "王经理", "channel": "webhook",
                "address": "https://hooks.example.invalid/a", "secret_ref": "env:HOOK"}])
        }

        fn load(text: &[u8]) -> Result<Directory> {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("contacts.json");
            std::fs::write(&path, text).unwrap();
            Directory::load(&path)
        }

        #[test]
        fn the_unchanged_file_loads() {
            assert_eq!(
                load(valid().to_string().as_bytes()).unwrap().enterprises(),
                1
            );
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            #[test]
            fn random_bytes_are_refused_naming_the_file(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                if let Err(e) = load(&bytes) {
                    prop_assert!(e.to_string().contains("contacts.json"), "{e}");
                }
            }

            #[test]
            fn a_changed_field_is_refused_naming_the_contact(
                field in proptest::sample::select(vec!["enterprise_id", "priority", "lead_name",
                    "channel", "address", "secret_ref", "extra"]),
                value in prop_oneof![
                    Just(serde_json::Value::Null),
                    any::<i64>().prop_map(serde_json::Value::from),
                    ".{0,30}".prop_map(serde_json::Value::from),
                    Just(serde_json::json!(["x"])),
                ]) {
                let mut v = valid();
                v[0][field] = value;
                if let Err(e) = load(v.to_string().as_bytes()) {
                    let text = e.to_string();
                    prop_assert!(text.contains("contacts.json") && text.contains("contact"), "{text}");
                }
            }
        }
    }
}
