//! `pharmwatch-serve`: the receipt server (`pharmwatch serve`): the signed acknowledgement links record the service
//! (送达) of a notice in the case ledger, the signed guidance links show the enterprise its own
//! guidance page (what applies, what to submit next); `/metrics` and `/healthz` for operations.
//!
//! Routes: `GET /e/{credit code}/ack/{token}`, `GET /e/{credit code}/guidance/{token}`.
//!
//! Invariants: nothing is shown or written before the token's signature, purpose, enterprise and
//! expiry are checked ([`Signer::verify`]); a refused link answers 403 (altered, another
//! enterprise's, wrong purpose) or 410 (expired) with a page that says so and records nothing;
//! opening an acknowledgement link twice records one `delivered` event; pages are not cached and
//! send no referrer (the token is in the URL).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::Path as UrlPath;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::NaiveDate;
use minijinja::{Environment, context};
use pharmwatch_regulation::Rules;

use crate::metrics::ServeMetrics;
use pharmwatch_casework::guidance;
use pharmwatch_casework::ledger::Ledger;
use pharmwatch_casework::links::{Claims, Purpose, Refusal, Signer};
use pharmwatch_casework::service::{self, Ack};
use pharmwatch_core::error::CoreError;
use pharmwatch_regulation::Calendar;

pub mod error;
pub mod metrics;

const PAGE: &str = include_str!("../../templates/receipt_page.html.j2");

/// The `[serve]` table of `pharmwatch.toml`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeSettings {
    /// Address to listen on (the public base of the links is `delivery.link_base_url`).
    pub listen: String,
    /// Run the delivery worker in the serve process too.
    pub worker: bool,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8088".into(),
            worker: true,
        }
    }
}

impl pharmwatch_core::config::Section for ServeSettings {
    const NAME: &'static str = "serve";
}

/// What the server needs.
pub struct ServeState {
    ledger: Mutex<Ledger>,
    signer: Signer,
    rules: Rules,
    /// The built-in calendar; the store's years are added per request.
    calendar: Calendar,
    metrics: &'static ServeMetrics,
    pages: Environment<'static>,
    authority: String,
    contact: String,
}

impl std::fmt::Debug for ServeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeState")
            .field("signer", &self.signer)
            .finish()
    }
}

/// Today in Asia/Shanghai.
fn today() -> NaiveDate {
    (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive()
}

impl ServeState {
    /// The state over ledger `ledger`, signing and checking links with `signer`; `authority`
    /// and `contact` are printed on every page.
    pub fn new(
        ledger: Ledger,
        signer: Signer,
        rules: Rules,
        calendar: Calendar,
        authority: &str,
        contact: &str,
    ) -> Result<Self> {
        let mut pages = pharmwatch_core::display::templates();
        pages
            .add_template("receipt_page.html.j2", PAGE)
            .map_err(|e| ServeError::Template {
                template: "receipt_page.html.j2".into(),
                source: e,
            })?;
        Ok(Self {
            ledger: Mutex::new(ledger),
            signer,
            rules,
            calendar,
            metrics: metrics::serve(),
            pages,
            authority: authority.to_string(),
            contact: contact.to_string(),
        })
    }

    fn page(&self, status: StatusCode, ctx: minijinja::Value) -> Response {
        let body = self
            .pages
            .get_template("receipt_page.html.j2")
            .and_then(|t| t.render(ctx));
        let (status, body) = match body {
            Ok(b) => (status, b),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("<!DOCTYPE html><p>页面生成失败 (page error): {e}</p>"),
            ),
        };
        let mut r = (status, body).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert("x-robots-tag", HeaderValue::from_static("noindex"));
        r
    }

    fn refused(&self, refusal: &Refusal) -> Response {
        let (heading, reason) = match refusal {
            Refusal::Expired(at) => (
                "链接已过期",
                format!(
                    "此链接已于 {} 过期（link expired）。",
                    chrono::DateTime::from_timestamp(*at, 0)
                        .map(|t| (t + chrono::Duration::hours(8))
                            .format("%Y-%m-%d %H:%M")
                            .to_string())
                        .unwrap_or_default()
                ),
            ),
            Refusal::OtherEnterprise => (
                "链接无效",
                "此链接不属于该企业（the link belongs to another enterprise）。".to_string(),
            ),
            Refusal::WrongPurpose => (
                "链接无效",
                "此链接不能用于该页面（the link is not for this page）。".to_string(),
            ),
            Refusal::Forged => (
                "链接无效",
                "此链接无法验证，可能已被修改（the link could not be verified）。".to_string(),
            ),
        };
        let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::FORBIDDEN);
        self.page(
            status,
            context! { page => "refused", heading, reason, authority => &self.authority,
            contact => &self.contact },
        )
    }

    fn verify(
        &self,
        purpose: Purpose,
        enterprise: &str,
        token: &str,
    ) -> std::result::Result<Claims, Refusal> {
        self.signer
            .verify(purpose, enterprise, token, chrono::Utc::now().timestamp())
    }

    /// `GET /e/{enterprise}/ack/{token}`.
    pub fn ack(&self, enterprise: &str, token: &str) -> Response {
        let claims = match self.verify(Purpose::Ack, enterprise, token) {
            Ok(c) => c,
            Err(r) => return self.refused(&r),
        };
        let result = match self.ledger.lock() {
            Ok(mut l) => service::acknowledge(&mut l, enterprise, &claims.subject, today()),
            Err(_) => Err(CoreError::Internal("ledger lock poisoned".into()).into()),
        };
        let (doc, at, already) = match result {
            Ok(Ack::Recorded(doc, at)) => {
                self.metrics
                    .acknowledged
                    .with_label_values(&[doc.kind.as_str()])
                    .inc();
                tracing::info!(notice_id = %doc.number, case_id = %doc.case_id, enterprise, "acknowledged (送达)");
                (doc, at, false)
            }
            Ok(Ack::Already(doc, at)) => (doc, at, true),
            Err(e) => {
                tracing::warn!(enterprise, error = %e, "acknowledgement refused");
                return self.refused(&Refusal::Forged);
            }
        };
        let guidance_url = self.signer.url(&Claims {
            purpose: Purpose::Guidance,
            ..claims
        });
        let at = chrono::DateTime::parse_from_rfc3339(&at)
            .map(|t| {
                (t.with_timezone(&chrono::Utc) + chrono::Duration::hours(8))
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or(at);
        self.page(
            StatusCode::OK,
            context! { page => "ack", heading => "已确认送达", already, at,
            title => doc.title, number => doc.number, case_id => doc.case_id,
            enterprise_name => doc.enterprise_name, guidance_url,
            authority => &self.authority },
        )
    }

    /// `GET /e/{enterprise}/guidance/{token}`.
    pub fn guidance(&self, enterprise: &str, token: &str) -> Response {
        if let Err(r) = self.verify(Purpose::Guidance, enterprise, token) {
            return self.refused(&r);
        }
        let g = match self.ledger.lock() {
            // The calendar is read with the ledger: a year an operator loads while the server
            // runs shows in the next page.
            Ok(l) => l
                .calendar(&self.calendar)
                .and_then(|cal| guidance::guidance(&l, enterprise, today(), &self.rules, &cal)),
            Err(_) => Err(CoreError::Internal("ledger lock poisoned".into()).into()),
        };
        match g {
            Ok(g) => self.page(
                StatusCode::OK,
                context! { page => "guidance", heading => "合规指引", g => minijinja::Value::from(minijinja::value::Serde(&g)),
                           authority => &self.authority },
            ),
            Err(e) => {
                tracing::warn!(enterprise, error = %e, "guidance page failed");
                self.refused(&Refusal::Forged)
            }
        }
    }
}

/// The router.
pub fn router(state: Arc<ServeState>) -> axum::Router {
    let ack_state = state.clone();
    let guide_state = state.clone();
    axum::Router::new()
        .route(
            "/e/{enterprise}/ack/{token}",
            get(move |UrlPath((e, t)): UrlPath<(String, String)>| {
                let s = ack_state.clone();
                async move { s.ack(&e, &t) }
            }),
        )
        .route(
            "/e/{enterprise}/guidance/{token}",
            get(move |UrlPath((e, t)): UrlPath<(String, String)>| {
                let s = guide_state.clone();
                async move { s.guidance(&e, &t) }
            }),
        )
        .route(
            "/metrics",
            get(|| async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    pharmwatch_core::metrics::render_exposed(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// Binds `listen` and serves until the task is dropped; returns the bound address and the task.
pub async fn spawn(
    listen: &str,
    state: Arc<ServeState>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CoreError::Config(format!("listen {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CoreError::Config(format!("listen {listen}: {e}")))?;
    let app = router(state);
    Ok((
        addr,
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "server stopped");
            }
        }),
    ))
}

pub use error::{Result, ServeError};
