//! The channels: how one message reaches one contact, and what the answer means.
//!
//! - generic webhook: `POST` of a JSON body (notice id, enterprise, document kind and number,
//!   due date, summary, links) with the headers `Idempotency-Key` (stable for the life of the
//!   delivery), `X-Pharmwatch-Timestamp` (Unix seconds of the attempt) and
//!   `X-Pharmwatch-Signature: sha256=<hex HMAC-SHA256(secret, timestamp "." body)>`, so that a
//!   receiver can verify, refuse replays outside its tolerance and dedupe;
//! - DingTalk robot: `{"msgtype":"markdown","markdown":{"title","text"}}`; with a secret the
//!   URL is signed (`&timestamp=<ms>&sign=<urlencoded base64 HMAC-SHA256(secret, "ms\nsecret")>`);
//!   the answer's `errcode` must be 0;
//! - WeCom robot: `{"msgtype":"markdown","markdown":{"content"}}`, `errcode` 0;
//! - e-mail over SMTP (lettre, STARTTLS configurable): the rendered notice as HTML body (with the
//!   links on top) and as an attachment, the Markdown text as the plain alternative, and the
//!   idempotency key as `Message-ID` so that a mail system can dedupe too.
//!
//! Classification: 2xx is success; 408, 429, 5xx, time-outs and connection failures are retried;
//! every other 4xx (and redirects, which are never followed — a redirect could lead outside the
//! registered address) is final for that contact. Robots' rate-limit and busy codes are retried,
//! their other error codes are final. SMTP permanent (5xx) replies are final, the rest retried.
//!
//! Invariant: a message is only ever sent to the contact it is given, and [`Sender::send`]
//! refuses a contact of another enterprise than the message's.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate as SmtpCertificate, Tls, TlsParametersBuilder};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use ring::hmac;
use serde::Serialize;

use super::config::{DeliveryConfig, SmtpConfig, SmtpTls};
use super::mask;
use crate::error::Result;
use pharmwatch_core::contacts::{Channel, Contact};
use pharmwatch_core::error::CoreError;

/// What is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// An issued document (执法文书).
    Notice,
    /// A real-time risk warning (风险预警).
    RiskWarning,
}

/// A document as delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentRef {
    /// `caution_notice`, `interview_notice`, `suspension_decision` or `lifting_notice`.
    pub kind: String,
    /// The title (行政告诫书 …).
    pub title: String,
    /// The document number.
    pub number: String,
    /// Issue date.
    pub issued_on: String,
    /// Rendered HTML (not in the webhook body).
    #[serde(skip)]
    pub html: String,
    /// Rendered Markdown (not in the webhook body).
    #[serde(skip)]
    pub markdown: String,
}

/// The enterprise a message is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnterpriseRef {
    /// Unified social credit code.
    pub credit_code: String,
    /// Name.
    pub name: String,
}

/// One message, as every channel sees it (the webhook body is its JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// The idempotency key: the same on every attempt and every channel.
    pub notice_id: String,
    /// Notice or risk warning.
    #[serde(rename = "type")]
    pub kind: MessageKind,
    /// The addressee.
    pub enterprise: EnterpriseRef,
    /// The document, for a notice.
    pub document: Option<DocumentRef>,
    /// The case, for a notice.
    pub case_id: Option<String>,
    /// Due date of what the notice demands (YYYY-MM-DD), if any.
    pub due_date: Option<String>,
    /// One paragraph for the lead.
    pub summary: String,
    /// The signed acknowledgement link (notices) or the guidance link (risk warnings).
    pub link: String,
    /// The signed guidance link.
    pub guidance_link: String,
    /// When the notice or warning was queued (UTC, RFC 3339).
    pub issued_at: String,
}

impl Message {
    /// The subject line (e-mail) and title (robots).
    pub fn title(&self) -> String {
        match &self.document {
            Some(d) => format!("【文书送达】{} {}", d.title, d.number),
            None => format!("【风险预警】{}", self.enterprise.name),
        }
    }

    /// The Markdown a robot posts (DingTalk and WeCom accept the same subset).
    pub fn robot_markdown(&self) -> String {
        let mut s = format!("### {}\n\n", self.title());
        s.push_str(&format!(
            "**企业**：{}（{}）\n\n",
            self.enterprise.name, self.enterprise.credit_code
        ));
        if let Some(d) = &self.document {
            s.push_str(&format!("**文书**：{} {}\n\n", d.title, d.number));
        }
        if let Some(due) = &self.due_date {
            s.push_str(&format!("**期限**：{due} 前\n\n"));
        }
        s.push_str(&format!("> {}\n\n", self.summary));
        if self.document.is_some() {
            s.push_str(&format!("[确认送达]({})  ", self.link));
        }
        s.push_str(&format!("[合规指引]({})\n", self.guidance_link));
        s
    }
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the receiver.
    Success(String),
    /// Failed, may succeed later.
    Retry(String),
    /// Failed for good on this contact.
    Final(String),
}

impl Outcome {
    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Success(_) => "success",
            Self::Retry(_) => "retry",
            Self::Final(_) => "final_failure",
        }
    }

    /// The detail (status, answer, error), masked.
    pub fn detail(&self) -> &str {
        match self {
            Self::Success(d) | Self::Retry(d) | Self::Final(d) => d,
        }
    }
}

/// What an HTTP status means for a delivery.
pub fn classify_status(status: u16) -> fn(String) -> Outcome {
    match status {
        200..=299 => Outcome::Success,
        408 | 429 => Outcome::Retry,
        300..=499 => Outcome::Final,
        _ => Outcome::Retry,
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The webhook signature header value: `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn webhook_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex(ctx.sign().as_ref()))
}

/// DingTalk's signed robot URL: `timestamp` (ms) and `sign` =
/// urlencode(base64(HMAC-SHA256(secret, "<timestamp>\n<secret>"))).
pub fn dingtalk_signed_url(address: &str, secret: &str, timestamp_ms: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, format!("{timestamp_ms}\n{secret}").as_bytes());
    let sign = STANDARD.encode(tag.as_ref());
    let sign = percent_encoding::utf8_percent_encode(&sign, percent_encoding::NON_ALPHANUMERIC);
    let sep = if address.contains('?') { '&' } else { '?' };
    format!("{address}{sep}timestamp={timestamp_ms}&sign={sign}")
}

/// Secrets of the contacts: `env:VARIABLE` from the environment, `file:KEY` from the secrets
/// file. The values are never printed (no `Debug` of the map's values).
#[derive(Default)]
pub struct Secrets {
    file: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} keys in file)", self.file.len())
    }
}

impl Secrets {
    /// Reads the secrets file (TOML table of strings), if any.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
        let file: BTreeMap<String, String> = toml::from_str(&text).map_err(|e| {
            CoreError::Config(format!(
                "{}: not a table of secrets (KEY = \"secret\"): {}",
                path.display(),
                e.message()
            ))
        })?;
        Ok(Self { file })
    }

    /// Resolves a reference; `None` when it names nothing.
    pub fn resolve(&self, reference: &str) -> Option<String> {
        match reference.split_once(':') {
            Some(("env", var)) => std::env::var(var).ok().filter(|v| !v.is_empty()),
            Some(("file", key)) => self.file.get(key).cloned(),
            _ => None,
        }
    }
}

/// Sends messages over every channel.
pub struct Sender {
    http: reqwest::Client,
    smtp: SmtpConfig,
    /// The extra certificate authorities (`ca_file`), PEM, for the SMTP relay's TLS.
    ca_pem: Option<Vec<u8>>,
    timeout: Duration,
    secrets: Secrets,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("smtp", &format!("{}:{}", self.smtp.host, self.smtp.port))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The certificates of a PEM bundle, each as its own PEM block.
fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    text.split_inclusive(END)
        .filter_map(|part| {
            let start = part.find("-----BEGIN CERTIFICATE-----")?;
            part.ends_with(END)
                .then(|| part.as_bytes()[start..].to_vec())
        })
        .collect()
}

/// Installs ring as the process's TLS provider (once; reqwest and lettre both use rustls).
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Sender {
    /// A sender for `cfg` (HTTP client without redirects, per-attempt time limit).
    pub fn new(cfg: &DeliveryConfig) -> Result<Self> {
        install_tls_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(cfg.attempt_timeout())
            .connect_timeout(cfg.attempt_timeout())
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pharmwatch/", env!("CARGO_PKG_VERSION")));
        let ca_pem = match &cfg.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    CoreError::Config(format!("{}: not PEM certificates: {e}", path.display()))
                })?;
                if certs.is_empty() {
                    return Err(CoreError::Config(format!(
                        "{}: no certificate in the file",
                        path.display()
                    ))
                    .into());
                }
                builder = builder.tls_certs_merge(certs);
                Some(pem)
            }
            None => None,
        };
        let http = builder
            .build()
            .map_err(|e| CoreError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            ca_pem,
            smtp: cfg.smtp.clone(),
            timeout: cfg.attempt_timeout(),
            secrets: Secrets::load(cfg.secrets_file.as_deref())?,
        })
    }

    /// Whether secret reference `r` resolves now.
    pub fn resolves(&self, r: &str) -> bool {
        self.secrets.resolve(r).is_some()
    }

    /// Sends `msg` to `contact` once.
    pub async fn send(&self, contact: &Contact, msg: &Message) -> Outcome {
        if contact.enterprise_id != msg.enterprise.credit_code {
            return Outcome::Final(format!(
                "refused: the contact belongs to {}, the message to {}",
                contact.enterprise_id, msg.enterprise.credit_code
            ));
        }
        let secret = match &contact.secret_ref {
            Some(r) => match self.secrets.resolve(r) {
                Some(s) => Some(s),
                None => {
                    return Outcome::Final(format!(
                        "the secret {r} is not set (environment or secrets file)"
                    ));
                }
            },
            None => None,
        };
        let run = async {
            match contact.channel {
                Channel::Webhook => match &secret {
                    Some(s) => self.webhook(&contact.address, s, msg).await,
                    None => Outcome::Final("a webhook needs a signing secret".into()),
                },
                Channel::Dingtalk => {
                    self.dingtalk(&contact.address, secret.as_deref(), msg)
                        .await
                }
                Channel::Wecom => self.wecom(&contact.address, msg).await,
                Channel::Email => self.email(contact, msg).await,
            }
        };
        // The HTTP client has its own limit; this one also bounds the SMTP dialogue.
        match tokio::time::timeout(self.timeout + Duration::from_millis(250), run).await {
            Ok(o) => o,
            Err(_) => Outcome::Retry(format!(
                "timed out after {:.1} s",
                self.timeout.as_secs_f64()
            )),
        }
    }

    async fn post(&self, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> PostResult {
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/json; charset=utf-8");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        match req.body(body).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                PostResult::Answer(status, text.chars().take(300).collect())
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    format!("timed out after {:.1} s", self.timeout.as_secs_f64())
                } else if e.is_connect() {
                    "connection failed".to_string()
                } else {
                    "request failed".to_string()
                };
                // The error text carries the URL: masked.
                PostResult::Transport(format!("{what}: {}", mask::text(&error_chain(&e))))
            }
        }
    }

    async fn webhook(&self, url: &str, secret: &str, msg: &Message) -> Outcome {
        let body = match serde_json::to_vec(msg) {
            Ok(b) => b,
            Err(e) => return Outcome::Final(format!("cannot encode the message: {e}")),
        };
        let ts = chrono::Utc::now().timestamp();
        let sig = webhook_signature(secret.as_bytes(), ts, &body);
        let headers = [
            ("idempotency-key", msg.notice_id.clone()),
            ("x-pharmwatch-timestamp", ts.to_string()),
            ("x-pharmwatch-signature", sig),
        ];
        match self.post(url, &headers, body).await {
            PostResult::Answer(status, text) => classify_status(status)(
                format!("HTTP {status} {}", mask::text(&text))
                    .trim()
                    .to_string(),
            ),
            PostResult::Transport(e) => Outcome::Retry(e),
        }
    }

    async fn robot(&self, url: &str, body: serde_json::Value, retry_codes: &[i64]) -> Outcome {
        let body = body.to_string().into_bytes();
        match self.post(url, &[], body).await {
            PostResult::Answer(status, text) => {
                let outcome = classify_status(status)(format!("HTTP {status}"));
                if !matches!(outcome, Outcome::Success(_)) {
                    return outcome;
                }
                let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let code = answer.get("errcode").and_then(|c| c.as_i64());
                let errmsg = answer
                    .get("errmsg")
                    .and_then(|c| c.as_str())
                    .unwrap_or("")
                    .to_string();
                match code {
                    Some(0) => Outcome::Success(format!("HTTP {status} errcode 0")),
                    Some(c) if retry_codes.contains(&c) => {
                        Outcome::Retry(format!("errcode {c} {}", mask::text(&errmsg)))
                    }
                    Some(c) => Outcome::Final(format!("errcode {c} {}", mask::text(&errmsg))),
                    None => Outcome::Retry(format!("HTTP {status}: answer without errcode")),
                }
            }
            PostResult::Transport(e) => Outcome::Retry(e),
        }
    }

    async fn dingtalk(&self, address: &str, secret: Option<&str>, msg: &Message) -> Outcome {
        let url = match secret {
            Some(s) => dingtalk_signed_url(address, s, chrono::Utc::now().timestamp_millis()),
            None => address.to_string(),
        };
        let body = serde_json::json!({
            "msgtype": "markdown",
            "markdown": { "title": msg.title(), "text": msg.robot_markdown() },
        });
        // 130101: sending too fast; -1: system busy.
        self.robot(&url, body, &[130_101, -1]).await
    }

    async fn wecom(&self, address: &str, msg: &Message) -> Outcome {
        let body = serde_json::json!({
            "msgtype": "markdown",
            "markdown": { "content": msg.robot_markdown() },
        });
        // 45009: API frequency limit; -1: system busy.
        self.robot(address, body, &[45_009, -1]).await
    }

    async fn email(&self, contact: &Contact, msg: &Message) -> Outcome {
        let email = match build_email(&self.smtp, contact, msg) {
            Ok(e) => e,
            Err(e) => return Outcome::Final(mask::text(&e)),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.smtp.host)
            .port(self.smtp.port)
            .timeout(Some(self.timeout));
        let tls = |host: &str| {
            let mut b = TlsParametersBuilder::new(host.to_string());
            if let Some(pem) = &self.ca_pem {
                for cert in pem_certificates(pem) {
                    b = b.add_root_certificate(SmtpCertificate::from_pem(&cert)?);
                }
            }
            b.build_rustls()
        };
        builder = match self.smtp.tls {
            SmtpTls::None => builder.tls(Tls::None),
            SmtpTls::Starttls => match tls(&self.smtp.host) {
                Ok(p) => builder.tls(Tls::Opportunistic(p)),
                Err(e) => return Outcome::Final(format!("TLS parameters: {e}")),
            },
            SmtpTls::StarttlsRequired => match tls(&self.smtp.host) {
                Ok(p) => builder.tls(Tls::Required(p)),
                Err(e) => return Outcome::Final(format!("TLS parameters: {e}")),
            },
            SmtpTls::Tls => match tls(&self.smtp.host) {
                Ok(p) => builder.tls(Tls::Wrapper(p)),
                Err(e) => return Outcome::Final(format!("TLS parameters: {e}")),
            },
        };
        if let (Some(u), Some(p)) = (&self.smtp.username_env, &self.smtp.password_env) {
            match (std::env::var(u), std::env::var(p)) {
                (Ok(u), Ok(p)) => builder = builder.credentials(Credentials::new(u, p)),
                _ => {
                    return Outcome::Final(format!(
                        "SMTP credentials: set {u} and {p} in the environment"
                    ));
                }
            }
        }
        let transport = builder.build();
        match transport.send(email).await {
            Ok(resp) => Outcome::Success(format!("SMTP {}", resp.code())),
            Err(e) => {
                let text = mask::text(&error_chain(&e));
                if e.is_permanent() {
                    Outcome::Final(format!("SMTP permanent: {text}"))
                } else {
                    Outcome::Retry(format!("SMTP: {text}"))
                }
            }
        }
    }
}

enum PostResult {
    Answer(u16, String),
    Transport(String),
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The banner an e-mail puts above the notice: who it is for, the summary and the links. Every
/// value is escaped by the template (the links are URLs the worker signed).
fn banner_html(msg: &Message) -> std::result::Result<String, String> {
    const BANNER: &str = "<div style=\"border:2px solid #b00;padding:.8em 1em;margin:1em auto;max-width:46em;\
        font-family:sans-serif\"><p>{{ name }}（{{ code }}）：</p><p>{{ summary }}</p><p>{% if ack %}请点击 \
        <a href=\"{{ ack }}\">确认送达（acknowledge receipt）</a>；{% endif %}<a href=\"{{ guidance }}\">\
        合规指引（compliance guidance）</a></p></div>";
    let env = pharmwatch_core::display::templates();
    env.render_str(
        BANNER,
        minijinja::context! {
            name => &msg.enterprise.name,
            code => &msg.enterprise.credit_code,
            summary => &msg.summary,
            ack => msg.document.as_ref().map(|_| msg.link.as_str()),
            guidance => &msg.guidance_link,
        },
    )
    .map_err(|e| format!("e-mail banner: {e}"))
}

/// The e-mail of `msg` to `contact`: HTML (the notice with the links on top) and plain text
/// alternatives, the notice as an HTML attachment, the idempotency key as Message-ID. The one
/// and only recipient is the contact's address.
pub fn build_email(
    smtp: &SmtpConfig,
    contact: &Contact,
    msg: &Message,
) -> std::result::Result<lettre::Message, String> {
    let from = Mailbox::new(
        Some(smtp.from_name.clone()),
        smtp.from
            .parse()
            .map_err(|e| format!("sender address {}: {e}", smtp.from))?,
    );
    let to = Mailbox::new(
        Some(contact.lead_name.clone()),
        contact
            .address
            .parse()
            .map_err(|e| format!("recipient address {}: {e}", contact.address))?,
    );
    let banner = banner_html(msg)?;
    let plain = format!(
        "{}\n\n{}\n\n{}合规指引: {}\n",
        msg.title(),
        msg.summary,
        if msg.document.is_some() {
            format!("确认送达: {}\n", msg.link)
        } else {
            String::new()
        },
        msg.guidance_link
    );
    let builder = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(msg.title())
        .message_id(Some(format!("<{}@pharmwatch>", msg.notice_id)));
    let body = match &msg.document {
        Some(d) => {
            let html = match d.html.find("<body>") {
                Some(i) => format!("{}{banner}{}", &d.html[..i + 6], &d.html[i + 6..]),
                None => format!("{banner}{}", d.html),
            };
            let plain = format!("{plain}\n---\n\n{}", d.markdown);
            let file = format!("{}_{}.html", d.kind, d.number);
            MultiPart::mixed()
                .multipart(MultiPart::alternative_plain_html(plain, html))
                .singlepart(
                    Attachment::new(file).body(
                        d.html.clone(),
                        ContentType::parse("text/html; charset=utf-8")
                            .map_err(|e| format!("content type: {e}"))?,
                    ),
                )
        }
        None => MultiPart::alternative_plain_html(
            plain,
            format!("<!DOCTYPE html><html><body>{banner}</body></html>"),
        ),
    };
    builder
        .multipart(body)
        .map_err(|e| format!("cannot build the e-mail: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn statuses_are_classified_as_the_issue_demands() {
        assert_eq!(classify_status(200)(String::new()).label(), "success");
        assert_eq!(classify_status(204)(String::new()).label(), "success");
        for s in [408, 429, 500, 502, 503] {
            assert_eq!(classify_status(s)(String::new()).label(), "retry", "{s}");
        }
        for s in [301, 400, 401, 403, 404, 410, 422] {
            assert_eq!(
                classify_status(s)(String::new()).label(),
                "final_failure",
                "{s}"
            );
        }
    }

    #[test]
    fn signatures_follow_the_published_recipes() {
        // HMAC-SHA256 test vector (RFC 4231 case 2): key "Jefe".
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        assert_eq!(
            hex(hmac::sign(&key, b"what do ya want for nothing?").as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let s = webhook_signature(b"secret", 1_700_000_000, b"{}");
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"secret");
        assert_eq!(
            s,
            format!(
                "sha256={}",
                hex(hmac::sign(&key, b"1700000000.{}").as_ref())
            )
        );
        let url = dingtalk_signed_url(
            "https://oapi.dingtalk.com/robot/send?access_token=t",
            "SECabc",
            1_577_262_236_757,
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"SECabc");
        let expected = STANDARD.encode(hmac::sign(&key, b"1577262236757\nSECabc").as_ref());
        let encoded: String =
            percent_encoding::utf8_percent_encode(&expected, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(
            url,
            format!(
                "https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1577262236757&sign={encoded}"
            )
        );
        assert!(!encoded.contains('+') && !encoded.contains('/') && !encoded.contains('='));
    }
}
