//! The cookies of the server: the session, the pre-sign-in token and the language. Every
//! cookie is `HttpOnly`, `SameSite=Strict` and `Path=/` (and `Secure` behind HTTPS).

use axum::http::{HeaderMap, HeaderValue, header};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "pw_session";
/// Name of the pre-sign-in cookie that protects the sign-in form (login CSRF).
pub const LOGIN_COOKIE: &str = "pw_login";
/// Name of the language cookie.
pub const LANG_COOKIE: &str = "pw_lang";

/// The value of cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` value.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}
