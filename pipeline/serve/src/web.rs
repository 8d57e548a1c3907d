//! What every page and endpoint shares: who is asking (a session cookie, an API token, or
//! nobody), the CSRF check of a session's forms, the answers of a refused request, the page
//! renderer with the message catalogue, and the security headers.
//!
//! Invariants: authorisation is decided here and in the actions on every request, on the
//! server — never by what a page shows or hides; a record outside the asker's jurisdiction
//! answers 404 (its existence is not confirmed), an action the role may not take answers 403;
//! every state-changing request of a session carries the session's CSRF token (compared in
//! constant time) and comes by POST; cookies are `HttpOnly`, `SameSite=Strict`, `Path=/`.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::Value;

use crate::ServeState;
use crate::accounts::{self, Account, Session};
pub use crate::cookies::{LANG_COOKIE, LOGIN_COOKIE, SESSION_COOKIE, cookie, set_cookie};
use crate::i18n::Lang;

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Principal {
    /// Nobody signed in.
    Anonymous,
    /// A signed-in session: its id (from the cookie) and the session.
    Session(String, Session),
    /// A system with an API token.
    Token(Account),
}

impl Principal {
    /// The account, if any.
    pub fn account(&self) -> Option<&Account> {
        match self {
            Self::Anonymous => None,
            Self::Session(_, s) => Some(&s.account),
            Self::Token(a) => Some(a),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// Not signed in (401 for the API, a redirect to the sign-in page for pages).
    SignIn,
    /// The role may not do this (403).
    Forbidden,
    /// Not found, or outside the asker's jurisdiction (404).
    NotFound,
    /// The request is wrong (400): the reason.
    Bad(String),
    /// The record is not in a state that allows it (409): the reason.
    Conflict(String),
    /// The server failed (500): logged, not shown in detail.
    Internal(String),
    /// Every store connection stayed busy (503): try again shortly.
    Busy,
}

impl Denied {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::SignIn => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Bad(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// `r` with `Retry-After` when the refusal is [`Denied::Busy`].
    pub fn with_retry_after(&self, mut r: Response) -> Response {
        if *self == Self::Busy {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        r
    }

    /// The message shown (Chinese first).
    pub fn message(&self, lang: Lang) -> String {
        let t = |zh: &str, en: &str| lang.pick(zh, en).to_string();
        match self {
            Self::SignIn => t("请先登录。", "Please sign in."),
            Self::Forbidden => t("您的角色无权执行此操作。", "Your role may not do this."),
            Self::NotFound => t(
                "未找到，或不在您的管辖范围内。",
                "Not found, or outside your jurisdiction.",
            ),
            Self::Bad(r) | Self::Conflict(r) => r.clone(),
            Self::Internal(_) => t(
                "服务器内部错误，已记录。",
                "Internal error; it has been logged.",
            ),
            Self::Busy => t(
                "服务器繁忙，请稍后重试。",
                "The server is busy; please try again shortly.",
            ),
        }
    }
}

impl From<crate::error::ServeError> for Denied {
    fn from(e: crate::error::ServeError) -> Self {
        use pharmwatch_core::error::ErrorClass;
        match e.class() {
            ErrorClass::BadInput => Self::Conflict(e.to_string()),
            _ => {
                tracing::error!(error = %e, "request failed");
                Self::Internal(e.to_string())
            }
        }
    }
}

impl From<pharmwatch_casework::CaseworkError> for Denied {
    fn from(e: pharmwatch_casework::CaseworkError) -> Self {
        crate::error::ServeError::from(e).into()
    }
}

impl From<pharmwatch_core::error::CoreError> for Denied {
    fn from(e: pharmwatch_core::error::CoreError) -> Self {
        crate::error::ServeError::from(e).into()
    }
}

/// Result of an action.
pub type Act<T> = std::result::Result<T, Denied>;

/// Compares two secrets in constant time.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl ServeState {
    /// Who is asking: an `Authorization: Bearer` token, else the session cookie.
    pub fn principal(&self, headers: &HeaderMap) -> Act<Principal> {
        let l = self.lock()?;
        let (conn, path) = (l.conn(), l.path());
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            let token = auth
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or(Denied::SignIn)?;
            return accounts::token_account(conn, path, token.trim())?
                .map(Principal::Token)
                .ok_or(Denied::SignIn);
        }
        let Some(id) = cookie(headers, SESSION_COOKIE) else {
            return Ok(Principal::Anonymous);
        };
        Ok(match accounts::session(conn, path, &id)? {
            Some(s) => Principal::Session(id, s),
            None => Principal::Anonymous,
        })
    }

    /// The signed-in account of a request that changes state: a token, or a session whose
    /// form carries its CSRF token.
    pub fn actor(&self, headers: &HeaderMap, csrf: Option<&str>) -> Act<Account> {
        match self.principal(headers)? {
            Principal::Anonymous => Err(Denied::SignIn),
            Principal::Token(a) => Ok(a),
            Principal::Session(_, s) => {
                if csrf.is_some_and(|c| same_secret(c, &s.csrf)) {
                    Ok(s.account)
                } else {
                    tracing::warn!(user = %s.account.username, "form without its CSRF token refused");
                    Err(Denied::Forbidden)
                }
            }
        }
    }

    /// The signed-in account of a request that only reads.
    pub fn reader(&self, headers: &HeaderMap) -> Act<(Account, Option<String>)> {
        match self.principal(headers)? {
            Principal::Anonymous => Err(Denied::SignIn),
            Principal::Token(a) => Ok((a, None)),
            Principal::Session(_, s) => Ok((s.account, Some(s.csrf))),
        }
    }

    /// Renders page template `name` with `ctx` (plus the language and the catalogue).
    pub fn render(&self, status: StatusCode, name: &str, lang: Lang, ctx: Value) -> Response {
        let full = minijinja::context! { lang => lang.code(), ..ctx };
        let body = self.pages.get_template(name).and_then(|t| t.render(full));
        let (status, body) = match body {
            Ok(b) => (status, b),
            Err(e) => {
                tracing::error!(template = name, error = %e, "page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("<!DOCTYPE html><p>页面生成失败 (page error): {e}</p>"),
                )
            }
        };
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        secure_headers(r)
    }

    /// The answer to a refused page request: the sign-in page for [`Denied::SignIn`], else an
    /// error page with the status.
    pub fn refused_page(&self, lang: Lang, d: &Denied) -> Response {
        if *d == Denied::SignIn {
            return secure_headers(Redirect::to("/login").into_response());
        }
        let r = self.render(
            d.status(),
            "wb_error.html.j2",
            lang,
            minijinja::context! { status => d.status().as_u16(), message => d.message(lang) },
        );
        d.with_retry_after(r)
    }
}

/// The headers of every page: HTML, not cached, no referrer, not framed, a strict CSP.
pub fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    if !h.contains_key(header::CONTENT_TYPE) {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    r
}

/// A JSON answer, or the refusal as `{"error": …}` with its status.
pub fn json<T: serde::Serialize>(r: Act<T>) -> Response {
    match r {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(d) => d.with_retry_after(
            (
                d.status(),
                axum::Json(serde_json::json!({
                    "error": d.message(Lang::En),
                    "error_zh": d.message(Lang::Zh),
                })),
            )
                .into_response(),
        ),
    }
}
