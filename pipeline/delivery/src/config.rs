//! The delivery configuration, the `[delivery]` table of `pharmwatch.toml` (`pharmwatch
//! deliver`, also read by `serve` and `stream --deliver`): where the contacts and secrets are, the public base of the signed
//! links, the retry schedule, timeouts, rate limits and the SMTP relay. Plain serde data with
//! named defaults and [`DeliveryConfig::validate`]; secrets are never in the file, only the names
//! of the environment variables that hold them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use pharmwatch_core::config::Section;
use pharmwatch_core::contacts::Channel;
use pharmwatch_core::error::CoreError;

/// Everything the delivery worker and the receipt server need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Contacts file (JSON array, `schemas/contracts/contacts.json`); relative paths are read
    /// from the configuration file's directory.
    pub contacts: PathBuf,
    /// Secrets file (TOML, `KEY = "secret"`) that `file:KEY` secret references point into;
    /// keep it readable by the service alone. Relative to the configuration file.
    #[serde(default)]
    pub secrets_file: Option<PathBuf>,
    /// A PEM file of certificate authorities trusted besides the system's, for webhooks,
    /// robots and the SMTP relay (a province's own CA). Relative to the configuration file.
    /// Certificates are always verified: a receiver whose certificate does not chain to a
    /// trusted authority or name its host gets nothing.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Public base URL of `pharmwatch serve`, the start of every acknowledgement and guidance
    /// link (`https://notice.example.gov.cn`).
    #[serde(default = "default_link_base_url")]
    pub link_base_url: String,
    /// Environment variable holding the key that signs the links (at least 32 bytes).
    #[serde(default = "default_link_key_env")]
    pub link_key_env: String,
    /// The id of that key, carried by every link it signs (1–16 letters, digits, `-`, `_`):
    /// rotating the key means a new id, with the old key kept in `link_retired_keys`.
    #[serde(default = "default_link_key_id")]
    pub link_key_id: String,
    /// Keys that signed links still in flight, by id → environment variable holding the key:
    /// they verify links, they sign none. Remove one once its links have expired
    /// (`link_ttl_days` after the rotation); its links are then refused as gone.
    #[serde(default)]
    pub link_retired_keys: std::collections::BTreeMap<String, String>,
    /// Days a link stays valid after the notice was issued.
    #[serde(default = "default_link_ttl_days")]
    pub link_ttl_days: u32,
    /// Waits before the 2nd, 3rd, … attempt on one contact, in seconds; after the last one the
    /// contact has failed and the next contact (or the manual-service list) takes over.
    #[serde(default = "default_retry_delays")]
    pub retry_delays_secs: Vec<f64>,
    /// Jitter as a fraction of each wait (0.2: ±20 %), so that a receiver coming back is not hit
    /// by every retry at the same instant.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Seed of the jitter (tests); default: from the operating system.
    #[serde(default)]
    pub jitter_seed: Option<u64>,
    /// Time limit of one send attempt, seconds (connect, send, response).
    #[serde(default = "default_attempt_timeout")]
    pub attempt_timeout_secs: f64,
    /// How long a worker holds a due row while sending it, seconds; a row whose worker died is
    /// taken over after this. Must exceed the attempt timeout.
    #[serde(default = "default_lease")]
    pub lease_secs: f64,
    /// Pause between passes over the outbox, milliseconds.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_ms: u64,
    /// Rows taken per pass.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Deliver real-time risk warnings (风险预警) as well as notices.
    #[serde(default = "default_true")]
    pub risk_warnings: bool,
    /// The supervisor's desk that serves by hand what no channel could deliver (shown with a
    /// failed delivery).
    #[serde(default = "default_manual_service")]
    pub manual_service: String,
    /// Sends in flight at once: a slow receiver delays only the rows behind it on its host.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Sends in flight at once to one host (`host:port` of a webhook or robot, the SMTP relay
    /// for e-mail): a shared platform is not flooded.
    #[serde(default = "default_per_host")]
    pub per_host: usize,
    /// Messages per minute per channel (robots are limited by their platforms: DingTalk 20/min).
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// The SMTP relay for e-mail.
    #[serde(default)]
    pub smtp: SmtpConfig,
    /// Which real-time warnings reach the enterprise (the rest stay with the supervisors).
    #[serde(default)]
    pub warnings: crate::policy::WarningPolicy,
}

/// Messages per minute, per channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Generic webhooks.
    #[serde(default = "default_rate_webhook")]
    pub webhook: f64,
    /// DingTalk robots.
    #[serde(default = "default_rate_robot")]
    pub dingtalk: f64,
    /// WeCom robots.
    #[serde(default = "default_rate_robot")]
    pub wecom: f64,
    /// E-mail.
    #[serde(default = "default_rate_email")]
    pub email: f64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            webhook: default_rate_webhook(),
            dingtalk: default_rate_robot(),
            wecom: default_rate_robot(),
            email: default_rate_email(),
        }
    }
}

impl RateLimits {
    /// The least time between two messages on `channel`.
    pub fn spacing(&self, channel: Channel) -> Duration {
        let per_minute = match channel {
            Channel::Webhook => self.webhook,
            Channel::Dingtalk => self.dingtalk,
            Channel::Wecom => self.wecom,
            Channel::Email => self.email,
        };
        Duration::from_secs_f64(60.0 / per_minute)
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain SMTP (a relay on the same host or a test server only).
    None,
    /// STARTTLS when the server offers it.
    Starttls,
    /// STARTTLS required: refuse to send over a plain connection.
    StarttlsRequired,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

/// The SMTP relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Relay host.
    #[serde(default = "default_smtp_host")]
    pub host: String,
    /// Relay port.
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// Transport security.
    #[serde(default = "default_smtp_tls")]
    pub tls: SmtpTls,
    /// Sender address.
    #[serde(default = "default_smtp_from")]
    pub from: String,
    /// Sender display name.
    #[serde(default = "default_smtp_from_name")]
    pub from_name: String,
    /// Environment variable with the SMTP user name (no authentication when unset).
    #[serde(default)]
    pub username_env: Option<String>,
    /// Environment variable with the SMTP password.
    #[serde(default)]
    pub password_env: Option<String>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: default_smtp_host(),
            port: default_smtp_port(),
            tls: default_smtp_tls(),
            from: default_smtp_from(),
            from_name: default_smtp_from_name(),
            username_env: None,
            password_env: None,
        }
    }
}

fn default_link_base_url() -> String {
    "http://127.0.0.1:8088".into()
}
fn default_link_key_env() -> String {
    "PHARMWATCH_LINK_KEY".into()
}
fn default_link_key_id() -> String {
    pharmwatch_casework::links::DEFAULT_KEY_ID.into()
}
fn default_max_in_flight() -> usize {
    8
}
fn default_per_host() -> usize {
    2
}
fn default_link_ttl_days() -> u32 {
    30
}
fn default_retry_delays() -> Vec<f64> {
    vec![30.0, 120.0, 600.0, 3600.0, 14_400.0, 43_200.0]
}
fn default_jitter() -> f64 {
    0.2
}
fn default_attempt_timeout() -> f64 {
    15.0
}
fn default_lease() -> f64 {
    120.0
}
fn default_poll_interval() -> u64 {
    1000
}
fn default_batch_size() -> usize {
    50
}
fn default_true() -> bool {
    true
}
fn default_manual_service() -> String {
    "药品流通监督管理处 文书送达组".into()
}
fn default_rate_webhook() -> f64 {
    600.0
}
fn default_rate_robot() -> f64 {
    20.0
}
fn default_rate_email() -> f64 {
    120.0
}
fn default_smtp_host() -> String {
    "127.0.0.1".into()
}
fn default_smtp_port() -> u16 {
    25
}
fn default_smtp_tls() -> SmtpTls {
    SmtpTls::StarttlsRequired
}
fn default_smtp_from() -> String {
    "notices@yjj.example.invalid".into()
}
fn default_smtp_from_name() -> String {
    "药品监督管理局 文书送达".into()
}

impl Default for DeliveryConfig {
    /// Every default, the contacts in `contacts.json` beside the configuration file.
    fn default() -> Self {
        Self::with_contacts(PathBuf::from("contacts.json"))
    }
}

impl Section for DeliveryConfig {
    const NAME: &'static str = "delivery";
    const LEGACY_ENV: &'static [(&'static str, &'static str)] = &[
        ("PHARMWATCH_DELIVERY_CONTACTS", "contacts"),
        ("PHARMWATCH_DELIVERY_LINK_BASE_URL", "link_base_url"),
        ("PHARMWATCH_SMTP_HOST", "smtp.host"),
        ("PHARMWATCH_SMTP_PORT", "smtp.port"),
    ];
}

impl DeliveryConfig {
    /// A configuration with every default and the given contacts file.
    pub fn with_contacts(contacts: PathBuf) -> Self {
        Self {
            contacts,
            secrets_file: None,
            ca_file: None,
            link_base_url: default_link_base_url(),
            link_key_env: default_link_key_env(),
            link_key_id: default_link_key_id(),
            link_retired_keys: Default::default(),
            link_ttl_days: default_link_ttl_days(),
            retry_delays_secs: default_retry_delays(),
            jitter: default_jitter(),
            jitter_seed: None,
            attempt_timeout_secs: default_attempt_timeout(),
            lease_secs: default_lease(),
            poll_interval_ms: default_poll_interval(),
            batch_size: default_batch_size(),
            risk_warnings: true,
            manual_service: default_manual_service(),
            max_in_flight: default_max_in_flight(),
            per_host: default_per_host(),
            rate_limits: RateLimits::default(),
            smtp: SmtpConfig::default(),
            warnings: crate::policy::WarningPolicy::default(),
        }
    }

    /// Reads the `[delivery]` table of `pharmwatch.toml` over the defaults, with
    /// `PHARMWATCH__DELIVERY__*` overrides, resolves relative paths against the file's
    /// directory and validates.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, std::env::vars())
    }

    /// [`DeliveryConfig::load`] with the environment given as pairs.
    pub fn load_with(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let mut cfg: Self = pharmwatch_core::config::load_with(Some(path), env)?;
        let base = path.parent().unwrap_or(Path::new("."));
        if cfg.contacts.is_relative() {
            cfg.contacts = base.join(&cfg.contacts);
        }
        if let Some(s) = &cfg.secrets_file
            && s.is_relative()
        {
            cfg.secrets_file = Some(base.join(s));
        }
        if let Some(c) = &cfg.ca_file
            && c.is_relative()
        {
            cfg.ca_file = Some(base.join(c));
        }
        cfg.validate()
            .map_err(|e| CoreError::Config(format!("{} [delivery]: {e}", path.display())))?;
        Ok(cfg)
    }

    /// The link signer of this configuration: the keys from the environment.
    pub fn signer(&self) -> Result<pharmwatch_casework::links::Signer> {
        Ok(pharmwatch_casework::links::Signer::from_env(
            &self.link_key_id,
            &self.link_key_env,
            &self.link_retired_keys,
            &self.link_base_url,
            self.link_ttl_days,
        )?)
    }

    /// Checks values a worker cannot run with.
    pub fn validate(&self) -> pharmwatch_core::Result<()> {
        let bad = |field: &str, reason: &str| {
            Err(CoreError::InvalidField {
                field: field.to_string(),
                reason: reason.to_string(),
            })
        };
        if !(self.link_base_url.starts_with("https://")
            || self.link_base_url.starts_with("http://"))
        {
            return bad("link_base_url", "must be an http(s) URL");
        }
        if self.link_ttl_days == 0 {
            return bad("link_ttl_days", "must be at least 1");
        }
        if self.max_in_flight == 0 || self.per_host == 0 {
            return bad(
                "max_in_flight",
                "max_in_flight and per_host must be at least 1",
            );
        }
        for id in std::iter::once(&self.link_key_id).chain(self.link_retired_keys.keys()) {
            if pharmwatch_casework::links::check_key_id(id).is_err() {
                return bad(
                    "link_key_id",
                    &format!("{id:?}: 1 to 16 letters, digits, '-' or '_'"),
                );
            }
        }
        if self.link_retired_keys.contains_key(&self.link_key_id) {
            return bad(
                "link_retired_keys",
                &format!("{} is the signing key's id", self.link_key_id),
            );
        }
        if self
            .retry_delays_secs
            .iter()
            .any(|d| !d.is_finite() || *d < 0.0)
        {
            return bad("retry_delays_secs", "every wait must be a number ≥ 0");
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return bad("jitter", "must be in [0, 1)");
        }
        if self.attempt_timeout_secs.is_nan() || self.attempt_timeout_secs <= 0.0 {
            return bad("attempt_timeout_secs", "must be > 0");
        }
        if self.lease_secs.is_nan() || self.lease_secs <= self.attempt_timeout_secs {
            return bad("lease_secs", "must exceed attempt_timeout_secs");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        self.warnings.validate()?;
        let r = &self.rate_limits;
        if [r.webhook, r.dingtalk, r.wecom, r.email]
            .iter()
            .any(|x| !(x.is_finite() && *x > 0.0))
        {
            return bad("rate_limits", "every rate must be > 0 messages per minute");
        }
        if !self.smtp.from.contains('@') {
            return bad("smtp.from", "not an e-mail address");
        }
        if self.smtp.username_env.is_some() != self.smtp.password_env.is_some() {
            return bad(
                "smtp",
                "username_env and password_env go together (both or neither)",
            );
        }
        Ok(())
    }

    /// Attempts per contact: the first one and one per retry wait.
    pub fn attempts_per_contact(&self) -> u32 {
        self.retry_delays_secs.len() as u32 + 1
    }

    /// The per-attempt time limit.
    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.attempt_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_example_configuration_parses() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/pharmwatch.example.toml");
        let cfg = DeliveryConfig::load_with(&path, Vec::new()).unwrap();
        assert_eq!(
            cfg.retry_delays_secs,
            vec![30.0, 120.0, 600.0, 3600.0, 14_400.0, 43_200.0]
        );
        assert_eq!(cfg.attempts_per_contact(), 7);
        assert_eq!(cfg.smtp.tls, SmtpTls::StarttlsRequired);
        assert!(cfg.contacts.starts_with(path.parent().unwrap()));
        assert_eq!(
            cfg.rate_limits.spacing(Channel::Dingtalk),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_field() {
        let mut cfg = DeliveryConfig::with_contacts("c.json".into());
        cfg.validate().unwrap();
        cfg.lease_secs = 1.0;
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("lease_secs"), "{e}");
        let mut cfg = DeliveryConfig::with_contacts("c.json".into());
        cfg.smtp.username_env = Some("U".into());
        assert!(cfg.validate().is_err());
        assert!(toml::from_str::<DeliveryConfig>("contacts = 'x'\nretry = [1]").is_err());
    }

    #[test]
    fn link_key_ids_are_checked_and_a_missing_retired_key_is_named() {
        let mut cfg = DeliveryConfig::with_contacts("c.json".into());
        cfg.link_key_id = "k/2".into();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("link_key_id") && e.contains("k/2"), "{e}");
        cfg.link_key_id = "k2".into();
        cfg.link_retired_keys
            .insert("k2".into(), "PHARMWATCH_TEST_UNSET_KEY".into());
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("link_retired_keys"), "{e}");
        cfg.link_retired_keys.clear();
        cfg.link_retired_keys
            .insert("k1".into(), "PHARMWATCH_TEST_UNSET_KEY_OLD".into());
        cfg.validate().unwrap();
        cfg.link_key_env = "PATH".into(); // set on any machine: the retired key is asked next
        let e = cfg.signer().unwrap_err().to_string();
        assert!(
            e.contains("k1") && e.contains("PHARMWATCH_TEST_UNSET_KEY_OLD"),
            "{e}"
        );
    }

    #[test]
    fn environment_overrides_the_smtp_relay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pharmwatch.toml");
        std::fs::write(&path, "[delivery]\ncontacts = \"c.json\"\n").unwrap();
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let cfg = DeliveryConfig::load_with(
            &path,
            env(&[
                ("PHARMWATCH_SMTP_HOST", "mail.internal"),
                ("PHARMWATCH__DELIVERY__SMTP__PORT", "2525"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (cfg.smtp.host.as_str(), cfg.smtp.port),
            ("mail.internal", 2525)
        );
        assert_eq!(cfg.contacts, dir.path().join("c.json"));
        assert!(DeliveryConfig::load_with(&path, env(&[("PHARMWATCH_SMTP_PORT", "x")])).is_err());
    }
}
