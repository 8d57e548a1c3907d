//! `pharmwatch-serve`: the server of the people in the loop (`pharmwatch serve`).
//!
//! - the supervisors' workbench (`/wb`): sign-in, queues, the risk list to triage, drafts to
//!   review and approve, cases with their timeline, deadlines in working days, comments,
//!   attachments and the steps of the closed loop ([`pages`], [`actions`]);
//! - the enterprise end (`/ent`): the lead's own notices, the explicit confirmation of receipt,
//!   the rectification report, its guidance and credit file;
//! - the JSON API (`/api/v1`) with the same authorisation, described by `/api/openapi.json`
//!   ([`api`]);
//! - the signed links of the notices (`/e/{credit code}/ack/{token}`, `…/guidance/{token}`):
//!   opening one shows the document and a confirmation button; only the POST of that button
//!   records service (送达);
//! - `/metrics` and `/healthz` for operations.
//!
//! Invariants: nothing is shown or written before the asker is known and allowed
//! ([`web`]); a signed link's signature, purpose, enterprise and expiry are checked before
//! anything else ([`Signer::verify`]) and a refused link records nothing; no GET or HEAD
//! writes to the ledger; every page about a document names the authority the document was
//! issued under; pages are not cached, not framed and send no referrer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::NaiveDate;
use minijinja::{Environment, context};

use crate::metrics::ServeMetrics;
use crate::web::Denied;
use pharmwatch_casework::audit::Actor;
use pharmwatch_casework::closedloop::ClosedLoop;
use pharmwatch_casework::guidance;
use pharmwatch_casework::ledger::Ledger;
use pharmwatch_casework::links::{Claims, Purpose, Refusal, Signer};
use pharmwatch_casework::notices::{AuthorityConfig, document_authority};
use pharmwatch_casework::service::{self, ACK_ACTOR, Ack};
use pharmwatch_core::error::CoreError;
use pharmwatch_core::pool::{Pool, PoolError, PoolLimits, Pooled};

pub mod accounts;
pub mod actions;
pub mod api;
pub mod cookies;
pub mod error;
pub mod i18n;
pub mod labels;
pub mod metrics;
pub mod pages;
pub mod web;

/// The templates of the pages, by file name.
const PAGES: &[(&str, &str)] = &[
    (
        "receipt_page.html.j2",
        include_str!("../../templates/receipt_page.html.j2"),
    ),
    (
        "wb_base.html.j2",
        include_str!("../../templates/wb_base.html.j2"),
    ),
    (
        "wb_login.html.j2",
        include_str!("../../templates/wb_login.html.j2"),
    ),
    (
        "wb_error.html.j2",
        include_str!("../../templates/wb_error.html.j2"),
    ),
    (
        "wb_home.html.j2",
        include_str!("../../templates/wb_home.html.j2"),
    ),
    (
        "wb_risk.html.j2",
        include_str!("../../templates/wb_risk.html.j2"),
    ),
    (
        "wb_draft.html.j2",
        include_str!("../../templates/wb_draft.html.j2"),
    ),
    (
        "wb_cases.html.j2",
        include_str!("../../templates/wb_cases.html.j2"),
    ),
    (
        "wb_case.html.j2",
        include_str!("../../templates/wb_case.html.j2"),
    ),
    (
        "wb_audit.html.j2",
        include_str!("../../templates/wb_audit.html.j2"),
    ),
    (
        "wb_ent.html.j2",
        include_str!("../../templates/wb_ent.html.j2"),
    ),
    (
        "wb_notice.html.j2",
        include_str!("../../templates/wb_notice.html.j2"),
    ),
    (
        "wb_enterprise.html.j2",
        include_str!("../../templates/wb_enterprise.html.j2"),
    ),
];

/// The `[serve]` table of `pharmwatch.toml`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeSettings {
    /// Address to listen on (the public base of the links is `delivery.link_base_url`).
    pub listen: String,
    /// Serve HTTPS with this certificate chain (PEM; with `tls_key`) instead of plain HTTP.
    /// Relative paths are taken from the working directory.
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<std::path::PathBuf>,
    /// Run the delivery worker in the serve process too.
    pub worker: bool,
    /// Mark the cookies `Secure` (set when the server is reached over HTTPS through a proxy).
    pub secure_cookies: bool,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8088".into(),
            tls_cert: None,
            tls_key: None,
            worker: true,
            secure_cookies: false,
        }
    }
}

impl pharmwatch_core::config::Section for ServeSettings {
    const NAME: &'static str = "serve";
}

/// What the server needs.
pub struct ServeState {
    ledgers: Pool<Ledger, pharmwatch_casework::CaseworkError>,
    signer: Signer,
    /// The closed loop's settings: the notices configuration (the authority documents are
    /// approved under), the rules and the built-in calendar (the store's years are added per
    /// request).
    pub closed_loop: ClosedLoop,
    metrics: &'static ServeMetrics,
    pages: Environment<'static>,
    /// The output directory: notices/ and attachments/ are written under it.
    pub out: PathBuf,
    /// Mark cookies `Secure`.
    pub secure_cookies: bool,
}

impl std::fmt::Debug for ServeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeState")
            .field("signer", &self.signer)
            .field("out", &self.out)
            .finish()
    }
}

/// Today in Asia/Shanghai.
fn today() -> NaiveDate {
    actions::today()
}

impl ServeState {
    /// The state over ledger `ledger` (in output directory `out`), signing and checking links
    /// with `signer`; `closed_loop` carries the notices configuration, rules and calendar.
    /// Requests share a pool of ledger connections of the configured limits
    /// ([`pharmwatch_core::store::StoreConfig::pool_limits`]), `ledger` the first of them.
    pub fn new(
        ledger: Ledger,
        signer: Signer,
        closed_loop: ClosedLoop,
        out: PathBuf,
    ) -> Result<Self> {
        let limits = pharmwatch_core::store::configuration().pool_limits();
        Self::with_pool(ledger, limits, signer, closed_loop, out)
    }

    /// [`ServeState::new`] with the pool's limits given.
    pub fn with_pool(
        ledger: Ledger,
        limits: PoolLimits,
        signer: Signer,
        closed_loop: ClosedLoop,
        out: PathBuf,
    ) -> Result<Self> {
        let location = ledger.path().to_path_buf();
        let mut pages = pharmwatch_core::display::templates();
        i18n::install(&mut pages);
        for (name, text) in PAGES {
            pages
                .add_template(name, text)
                .map_err(|e| ServeError::Template {
                    template: (*name).into(),
                    source: e,
                })?;
        }
        Ok(Self {
            ledgers: Pool::new(ledger, limits, move || Ledger::open_file(&location)),
            signer,
            closed_loop,
            metrics: metrics::serve(),
            pages,
            out,
            secure_cookies: false,
        })
    }

    /// A ledger connection for one request's work, from the pool; a request that waits
    /// longer than the pool allows is answered 503.
    pub fn lock(&self) -> web::Act<Pooled<'_, Ledger, pharmwatch_casework::CaseworkError>> {
        self.ledgers.get().map_err(|e| match e {
            PoolError::Open(e) => Denied::from(e),
            PoolError::Exhausted { .. } => Denied::Busy,
        })
    }

    /// The configured authority, for pages that are about no particular document.
    fn configured_authority(&self) -> (String, String) {
        match &self.closed_loop.notices.authority {
            Some(a) => (
                a.name.clone(),
                format!("{} {}", a.contact_department, a.contact_phone),
            ),
            None => ("药品监督管理部门".into(), "发文机关".into()),
        }
    }

    fn link_page(&self, status: StatusCode, ctx: minijinja::Value) -> Response {
        self.render(status, "receipt_page.html.j2", i18n::Lang::Zh, ctx)
    }

    fn refused(&self, refusal: &Refusal, authority: Option<&AuthorityConfig>) -> Response {
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
            Refusal::KeyRetired(_) => (
                "链接已失效",
                "签发此链接的密钥已停用，请联系发文机关重新送达（the key that signed this link \
                 was retired）。"
                    .to_string(),
            ),
            Refusal::Revoked { at, reason } => (
                "链接已撤回",
                format!("此链接已于 {at} 被发文机关撤回：{reason}（the link was revoked）。"),
            ),
            Refusal::Unchecked => (
                "暂时无法打开",
                "系统繁忙，请稍后再试（the link could not be checked now; try again later）。"
                    .to_string(),
            ),
        };
        let (name, contact) = match authority {
            Some(a) => (
                a.name.clone(),
                format!("{} {}", a.contact_department, a.contact_phone),
            ),
            None => self.configured_authority(),
        };
        let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::FORBIDDEN);
        self.link_page(
            status,
            context! { page => "refused", heading, reason, authority => name, contact },
        )
    }

    fn verify(
        &self,
        purpose: Purpose,
        enterprise: &str,
        token: &str,
    ) -> std::result::Result<Claims, Refusal> {
        let claims =
            self.signer
                .verify(purpose, enterprise, token, chrono::Utc::now().timestamp())?;
        // A revoked document's links issued until the revocation are gone. A store that
        // cannot be read now refuses (503, try again) rather than honours a link unchecked.
        let revocation = self
            .lock()
            .ok()
            .map(|l| pharmwatch_casework::revocation::revocation_of(&l, &claims.subject));
        match revocation {
            Some(Ok(None)) => Ok(claims),
            Some(Ok(Some(r))) if claims.issued > r.revoked_before => Ok(claims),
            Some(Ok(Some(r))) => Err(Refusal::Revoked {
                at: r.revoked_at,
                reason: r.reason,
            }),
            Some(Err(_)) | None => Err(Refusal::Unchecked),
        }
    }

    /// `GET /e/{enterprise}/ack/{token}`: shows the document and the confirmation button;
    /// records nothing (a link preview, a mail scanner or a HEAD request serves no one).
    pub fn ack_page(&self, enterprise: &str, token: &str) -> Response {
        let claims = match self.verify(Purpose::Ack, enterprise, token) {
            Ok(c) => c,
            Err(r) => return self.refused(&r, None),
        };
        let shown = self.lock().ok().and_then(|l| {
            let (html, _) = l.document_text(&claims.subject).ok().flatten()?;
            let case_id: String = l
                .conn()
                .query_row(
                    "SELECT case_id FROM documents WHERE number = ?1",
                    [&claims.subject],
                    |r| r.get(0),
                )
                .ok()?;
            let case = l.show(&case_id).ok()?;
            if case.case.enterprise_id != enterprise {
                return None;
            }
            let authority = document_authority(l.conn(), l.path(), &claims.subject)
                .ok()
                .flatten();
            let received = case
                .events
                .into_iter()
                .find(|e| {
                    e.event == "delivered" && e.document_no.as_deref() == Some(&claims.subject)
                })
                .map(|e| e.recorded_at);
            Some(((html, case_id), authority, received))
        });
        let Some(((html, case_id), authority, received)) = shown else {
            return self.refused(&Refusal::Forged, None);
        };
        let (name, contact) = authority.as_ref().map_or_else(
            || self.configured_authority(),
            |a| {
                (
                    a.name.clone(),
                    format!("{} {}", a.contact_department, a.contact_phone),
                )
            },
        );
        self.link_page(
            StatusCode::OK,
            context! { page => "confirm", heading => "文书送达确认", number => &claims.subject,
            case_id, document => html, received, authority => name, contact },
        )
    }

    /// `POST /e/{enterprise}/ack/{token}`: the lead's explicit confirmation of receipt.
    pub fn ack(&self, enterprise: &str, token: &str) -> Response {
        let claims = match self.verify(Purpose::Ack, enterprise, token) {
            Ok(c) => c,
            Err(r) => return self.refused(&r, None),
        };
        let result = match self.ledgers.get() {
            Ok(mut l) => service::acknowledge(
                &mut l,
                enterprise,
                &claims.subject,
                today(),
                &Actor {
                    name: ACK_ACTOR.into(),
                    role: "enterprise_lead".into(),
                },
            ),
            Err(e) => Err(pool_error(e)),
        };
        let (doc, at, already) = match result {
            Ok(Ack::Recorded(doc, at)) => {
                self.metrics
                    .acknowledged
                    .with_label_values(&[doc.kind.as_str()])
                    .inc();
                tracing::info!(notice_id = %doc.number, case_id = %doc.case_id, enterprise, "receipt confirmed (送达)");
                (doc, at, false)
            }
            Ok(Ack::Already(doc, at)) => (doc, at, true),
            Err(e) => {
                tracing::warn!(enterprise, error = %e, "acknowledgement refused");
                return self.refused(&Refusal::Forged, None);
            }
        };
        let authority = self.lock().ok().and_then(|l| {
            document_authority(l.conn(), l.path(), &doc.number)
                .ok()
                .flatten()
        });
        let (name, contact) = authority.as_ref().map_or_else(
            || self.configured_authority(),
            |a| {
                (
                    a.name.clone(),
                    format!("{} {}", a.contact_department, a.contact_phone),
                )
            },
        );
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
        self.link_page(
            StatusCode::OK,
            context! { page => "ack", heading => "已确认送达", already, at,
            title => doc.title, number => doc.number, case_id => doc.case_id,
            enterprise_name => doc.enterprise_name, guidance_url,
            authority => name, contact },
        )
    }

    /// `GET /e/{enterprise}/guidance/{token}`.
    pub fn guidance(&self, enterprise: &str, token: &str) -> Response {
        if let Err(r) = self.verify(Purpose::Guidance, enterprise, token) {
            return self.refused(&r, None);
        }
        let g = match self.ledgers.get() {
            // The calendar is read with the ledger: a year an operator loads while the server
            // runs shows in the next page.
            Ok(l) => l.calendar(&self.closed_loop.calendar).and_then(|cal| {
                guidance::guidance(&l, enterprise, today(), &self.closed_loop.rules, &cal)
            }),
            Err(e) => Err(pool_error(e)),
        };
        let (name, contact) = self.configured_authority();
        match g {
            Ok(g) => self.link_page(
                StatusCode::OK,
                context! { page => "guidance", heading => "合规指引", g => minijinja::Value::from(minijinja::value::Serde(&g)),
                           authority => name, contact },
            ),
            Err(e) => {
                tracing::warn!(enterprise, error = %e, "guidance page failed");
                self.refused(&Refusal::Forged, None)
            }
        }
    }
}

type S = State<Arc<ServeState>>;

/// The router.
pub fn router(state: Arc<ServeState>) -> axum::Router {
    axum::Router::new()
        .route(
            "/e/{enterprise}/ack/{token}",
            get(|State(s): S, UrlPath((e, t)): UrlPath<(String, String)>| async move { s.ack_page(&e, &t) })
                .post(|State(s): S, UrlPath((e, t)): UrlPath<(String, String)>| async move { s.ack(&e, &t) }),
        )
        .route(
            "/e/{enterprise}/guidance/{token}",
            get(|State(s): S, UrlPath((e, t)): UrlPath<(String, String)>| async move { s.guidance(&e, &t) }),
        )
        .route("/", get(pages::root))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/wb", get(pages::home))
        .route("/wb/risk", get(pages::risk))
        .route("/wb/risk/disposition", post(pages::disposition))
        .route("/wb/enterprises/{id}", get(pages::enterprise))
        .route("/wb/drafts/{id}", get(pages::draft))
        .route("/wb/drafts/{id}/{action}", post(pages::draft_action))
        .route("/wb/cases", get(pages::cases))
        .route("/wb/cases/{id}", get(pages::case))
        .route("/wb/cases/{id}/attach", post(pages::attach))
        .route("/wb/cases/{id}/{action}", post(pages::case_action))
        .route("/wb/audit", get(pages::audit_page))
        .route("/attachments/{id}", get(pages::attachment))
        .route("/ent", get(pages::ent_home))
        .route("/ent/notices/{number}", get(pages::ent_notice))
        .route("/ent/notices/{number}/receipt", post(pages::ent_receipt))
        .route("/ent/cases/{id}/report", post(pages::attach))
        .merge(api::routes())
        .route(
            "/metrics",
            get(|| async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    pharmwatch_core::metrics::render_exposed(),
                )
            }),
        )
        .route("/healthz", get(healthz))
        .layer(axum::middleware::from_fn(pages::remember_lang))
        .layer(axum::extract::DefaultBodyLimit::max(actions::MAX_ATTACHMENT_BYTES + 64 * 1024))
        .with_state(state)
}

/// `/healthz`: 200 when the store answers a query, with the backend and how long it took; 503
/// with the store's error when it does not (a load balancer then takes this instance out).
async fn healthz(
    axum::extract::State(s): axum::extract::State<Arc<ServeState>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let started = std::time::Instant::now();
    let probe = s
        .lock()
        .map_err(|d| match d {
            Denied::Busy => "every store connection of the pool stayed busy".to_string(),
            other => format!("no store connection: {other:?}"),
        })
        .and_then(|l| {
            let conn = l.conn();
            conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(|_| conn.backend())
                .map_err(|e| e.to_string())
        });
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let (in_use, idle) = s.ledgers.status();
    let pool = serde_json::json!({
        "size": s.ledgers.limits().size, "in_use": in_use, "idle": idle,
    });
    match probe {
        Ok(backend) => axum::Json(serde_json::json!({
            "status": "ok",
            "store": {"backend": format!("{backend:?}").to_lowercase(), "ms": ms, "pool": pool},
        }))
        .into_response(),
        Err(error) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "status": "unavailable", "store": {"error": error, "pool": pool},
            })),
        )
            .into_response(),
    }
}

/// A pool's refusal as the ledger's error (for the pages that render their own errors).
fn pool_error(
    e: PoolError<pharmwatch_casework::CaseworkError>,
) -> pharmwatch_casework::CaseworkError {
    match e {
        PoolError::Open(e) => e,
        PoolError::Exhausted { size, waited } => CoreError::Internal(format!(
            "all {size} store connections stayed busy for {waited:?}; try again shortly"
        ))
        .into(),
    }
}

/// The listener on `listen` and the address it is bound to.
async fn bind(listen: &str) -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let failed = |e: std::io::Error| CoreError::Config(format!("listen {listen}: {e}"));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(failed)?;
    let addr = listener.local_addr().map_err(failed)?;
    Ok((listener, addr))
}

/// Binds `listen` and serves until the task is dropped; returns the bound address and the task.
pub async fn spawn(
    listen: &str,
    state: Arc<ServeState>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let (listener, addr) = bind(listen).await?;
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

/// The TLS configuration of a certificate chain and its key (PEM files).
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &Path, e: &dyn std::fmt::Display| {
        CoreError::Config(format!("TLS: {}: {e}", what.display()))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    if certs.is_empty() {
        return Err(bad(cert, &"no certificate in the file").into());
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(cert, &e))?;
    Ok(Arc::new(cfg))
}

/// [`spawn`] over HTTPS: every connection is a TLS handshake with `tls`, then the same
/// router. A client that fails the handshake (plain HTTP, a wrong name) is dropped.
pub async fn spawn_tls(
    listen: &str,
    state: Arc<ServeState>,
    tls: Arc<rustls::ServerConfig>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let (listener, addr) = bind(listen).await?;
    let app = router(state);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    Ok((
        addr,
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let stream = match acceptor.accept(tcp).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let served = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                    if let Err(e) = served {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }),
    ))
}

pub use error::{Result, ServeError};
