//! Accounts of the workbench, their roles and jurisdictions, sessions and API tokens.
//!
//! Roles: 省局监管人员 (`province_supervisor`, the whole province), 市县检查员 (`inspector`,
//! scoped to the regions of the account), 负责人 (`approver`, approves documents; scoped to
//! regions when some are given, else the province), 企业负责人 (`enterprise_lead`, one
//! enterprise), 审计人员 (`auditor`, reads everything, changes nothing).
//!
//! Invariants: passwords are stored only as argon2id PHC strings; session ids and API tokens
//! are 256-bit random values stored only as their SHA-256, so a copy of the database signs no
//! one in; a sign-in always makes a new session (a session id planted before sign-in is never
//! promoted); a disabled account's sessions and tokens stop working at the next request.

use std::path::Path;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pharmwatch_core::db::{Conn as Connection, OptionalExtension};
use pharmwatch_core::params;
use ring::rand::SecureRandom as _;
use serde::Serialize;

use crate::error::{Result, ServeError};
use pharmwatch_core::error::CoreError;
use pharmwatch_core::store::sql_err;

/// A role of the workbench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 省局监管人员: the whole province.
    ProvinceSupervisor,
    /// 市县检查员: the account's regions.
    Inspector,
    /// 负责人: approves documents.
    Approver,
    /// 企业负责人: one enterprise's own records.
    EnterpriseLead,
    /// 审计人员: reads everything, changes nothing.
    Auditor,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::ProvinceSupervisor,
        Role::Inspector,
        Role::Approver,
        Role::EnterpriseLead,
        Role::Auditor,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProvinceSupervisor => "province_supervisor",
            Self::Inspector => "inspector",
            Self::Approver => "approver",
            Self::EnterpriseLead => "enterprise_lead",
            Self::Auditor => "auditor",
        }
    }

    /// Parses the stored spelling (dashes accepted).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.replace('-', "_");
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The Chinese name.
    pub fn name_zh(self) -> &'static str {
        match self {
            Self::ProvinceSupervisor => "省局监管人员",
            Self::Inspector => "市县检查员",
            Self::Approver => "负责人（审批）",
            Self::EnterpriseLead => "企业负责人",
            Self::Auditor => "审计人员",
        }
    }

    /// Whether the role works in the supervisors' workbench (not the enterprise end).
    pub fn is_staff(self) -> bool {
        self != Self::EnterpriseLead
    }
}

/// An account as the server sees it on each request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// Sign-in name.
    pub username: String,
    /// Name shown.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Regions (GB/T 2260) of an inspector or a regional approver; empty: the province.
    pub regions: Vec<String>,
    /// The enterprise of a lead.
    pub enterprise_id: String,
    /// Disabled accounts cannot sign in.
    pub disabled: bool,
}

impl Account {
    /// Whether a record of `region` and `enterprise` is inside this account's jurisdiction.
    pub fn sees(&self, region: &str, enterprise: &str) -> bool {
        match self.role {
            Role::EnterpriseLead => self.enterprise_id == enterprise,
            Role::ProvinceSupervisor | Role::Auditor => true,
            Role::Inspector | Role::Approver => {
                self.regions.is_empty() || self.regions.iter().any(|r| r == region)
            }
        }
    }
}

/// What `pharmwatch user add` asks for.
#[derive(Debug, Clone)]
pub struct NewAccount<'a> {
    /// Sign-in name: 3–32 of `a-z 0-9 . _ -`.
    pub username: &'a str,
    /// Name shown.
    pub display_name: &'a str,
    /// Role.
    pub role: Role,
    /// Regions (inspector: at least one).
    pub regions: &'a [String],
    /// Enterprise (lead: required).
    pub enterprise_id: &'a str,
    /// Password: at least 10 characters.
    pub password: &'a str,
}

fn refuse(username: &str, reason: impl Into<String>) -> ServeError {
    ServeError::Account {
        username: username.to_string(),
        reason: reason.into(),
    }
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| CoreError::Internal("no system randomness".into()))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| CoreError::Internal(format!("salt: {e}")))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| CoreError::Internal(format!("argon2: {e}")))?
        .to_string())
}

/// Checks a password against a PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Creates an account (refusing a taken name, a weak password, a lead without enterprise or an
/// inspector without region).
pub fn create(conn: &Connection, path: &Path, a: &NewAccount<'_>) -> Result<()> {
    let ok_name = (3..=32).contains(&a.username.len())
        && a.username
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if !ok_name {
        return Err(refuse(
            a.username,
            "the name must be 3–32 of a-z, 0-9, `.`, `_`, `-`",
        ));
    }
    if a.password.chars().count() < 10 {
        return Err(refuse(
            a.username,
            "the password must have at least 10 characters",
        ));
    }
    if a.role == Role::EnterpriseLead {
        pharmwatch_core::ids::validate_enterprise_id(a.enterprise_id)?;
    } else if !a.enterprise_id.is_empty() {
        return Err(refuse(
            a.username,
            "only an enterprise lead has an enterprise",
        ));
    }
    if a.role == Role::Inspector && a.regions.is_empty() {
        return Err(refuse(
            a.username,
            "an inspector needs at least one region (--region 150200)",
        ));
    }
    if let Some(bad) = a
        .regions
        .iter()
        .find(|r| pharmwatch_core::regions::region_name(r).is_none())
    {
        return Err(refuse(a.username, format!("unknown region code {bad}")));
    }
    let hash = hash_password(a.password)?;
    let n = conn
        .execute(
            "INSERT INTO accounts (username, display_name, role, regions, enterprise_id,
                                   password_hash, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (username) DO NOTHING",
            params![
                a.username,
                a.display_name,
                a.role.as_str(),
                a.regions.join(","),
                a.enterprise_id,
                hash,
                chrono::Utc::now().to_rfc3339()
            ],
        )
        .map_err(|e| sql_err(path, "create account", e))?;
    if n == 0 {
        return Err(refuse(a.username, "the name is taken"));
    }
    Ok(())
}

fn from_row(r: &pharmwatch_core::db::Row) -> pharmwatch_core::db::DbResult<(Account, String)> {
    let role: String = r.get(2)?;
    let regions: String = r.get(3)?;
    Ok((
        Account {
            username: r.get(0)?,
            display_name: r.get(1)?,
            role: Role::parse(&role).unwrap_or(Role::Auditor),
            regions: regions
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            enterprise_id: r.get(4)?,
            disabled: r.get::<_, i64>(6)? != 0,
        },
        r.get(5)?,
    ))
}

const COLUMNS: &str =
    "username, display_name, role, regions, enterprise_id, password_hash, disabled";

/// One account with its password hash.
fn load(conn: &Connection, path: &Path, username: &str) -> Result<Option<(Account, String)>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM accounts WHERE username = ?1"),
            [username],
            from_row,
        )
        .optional()
        .map_err(|e| sql_err(path, "account", e))?)
}

/// Every account, by name.
pub fn list(conn: &Connection, path: &Path) -> Result<Vec<Account>> {
    let mut st = conn
        .prepare(&format!("SELECT {COLUMNS} FROM accounts ORDER BY username"))
        .map_err(|e| sql_err(path, "accounts", e))?;
    let v = st
        .query_map([], from_row)
        .map_err(|e| sql_err(path, "accounts", e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| sql_err(path, "accounts", e))?;
    Ok(v.into_iter().map(|(a, _)| a).collect())
}

/// Disables (or enables) an account; its sessions are removed.
pub fn set_disabled(conn: &Connection, path: &Path, username: &str, disabled: bool) -> Result<()> {
    let n = conn
        .execute(
            "UPDATE accounts SET disabled = ?2 WHERE username = ?1",
            params![username, i64::from(disabled)],
        )
        .map_err(|e| sql_err(path, "disable account", e))?;
    if n == 0 {
        return Err(refuse(username, "no such account"));
    }
    conn.execute("DELETE FROM sessions WHERE username = ?1", [username])
        .map_err(|e| sql_err(path, "end sessions", e))?;
    Ok(())
}

/// The account of a sign-in attempt, when the password matches and the account is enabled.
/// The hash is checked even for an unknown name, so timing does not tell names apart.
pub fn authenticate(
    conn: &Connection,
    path: &Path,
    username: &str,
    password: &str,
) -> Result<Option<Account>> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    match load(conn, path, username)? {
        Some((a, hash)) => Ok((verify_password(password, &hash) && !a.disabled).then_some(a)),
        None => {
            let dummy = DUMMY.get_or_init(|| hash_password("not an account").unwrap_or_default());
            verify_password(password, dummy);
            Ok(None)
        }
    }
}

/// A new random secret (256 bits, URL-safe base64).
pub fn secret() -> Result<String> {
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| CoreError::Internal("no system randomness".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// SHA-256 of a secret, hex.
pub fn digest(secret: &str) -> String {
    digest_bytes(secret.as_bytes())
}

/// SHA-256 of bytes, hex.
pub fn digest_bytes(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A signed-in session: the account and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    /// The account.
    pub account: Account,
    /// The token every form of the session must carry.
    pub csrf: String,
}

/// How long a session lasts without being renewed (8 hours, a working day).
pub const SESSION_SECS: i64 = 8 * 3600;

/// Starts a session for `username`; returns the session id (for the cookie) and CSRF token.
pub fn start_session(conn: &Connection, path: &Path, username: &str) -> Result<(String, String)> {
    let id = secret()?;
    let csrf = secret()?;
    let now = chrono::Utc::now().timestamp();
    conn.execute("DELETE FROM sessions WHERE expires_at < ?1", [now])
        .map_err(|e| sql_err(path, "expire sessions", e))?;
    conn.execute(
        "INSERT INTO sessions (id_hash, username, csrf_token, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![digest(&id), username, csrf, now, now + SESSION_SECS],
    )
    .map_err(|e| sql_err(path, "start session", e))?;
    Ok((id, csrf))
}

/// The live session of session id `id`, if any (an expired one, or one of a disabled
/// account, is none).
pub fn session(conn: &Connection, path: &Path, id: &str) -> Result<Option<Session>> {
    let row: Option<(String, String, i64)> = conn
        .query_row(
            "SELECT username, csrf_token, expires_at FROM sessions WHERE id_hash = ?1",
            [digest(id)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(|e| sql_err(path, "session", e))?;
    let Some((username, csrf, expires)) = row else {
        return Ok(None);
    };
    if expires < chrono::Utc::now().timestamp() {
        return Ok(None);
    }
    Ok(load(conn, path, &username)?
        .filter(|(a, _)| !a.disabled)
        .map(|(account, _)| Session { account, csrf }))
}

/// Ends the session of id `id`.
pub fn end_session(conn: &Connection, path: &Path, id: &str) -> Result<()> {
    conn.execute("DELETE FROM sessions WHERE id_hash = ?1", [digest(id)])
        .map_err(|e| sql_err(path, "end session", e))?;
    Ok(())
}

/// Makes an API token for `username`; returns the token (shown once).
pub fn create_token(conn: &Connection, path: &Path, username: &str, label: &str) -> Result<String> {
    if load(conn, path, username)?.is_none() {
        return Err(refuse(username, "no such account"));
    }
    let token = format!("pwt_{}", secret()?);
    conn.execute(
        "INSERT INTO api_tokens (token_hash, username, label, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![
            digest(&token),
            username,
            label,
            chrono::Utc::now().to_rfc3339()
        ],
    )
    .map_err(|e| sql_err(path, "create token", e))?;
    Ok(token)
}

/// The account of a bearer token, if the token is live and the account enabled.
pub fn token_account(conn: &Connection, path: &Path, token: &str) -> Result<Option<Account>> {
    let user: Option<String> = conn
        .query_row(
            "SELECT username FROM api_tokens WHERE token_hash = ?1 AND revoked = 0",
            [digest(token)],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| sql_err(path, "token", e))?;
    let Some(user) = user else { return Ok(None) };
    Ok(load(conn, path, &user)?
        .filter(|(a, _)| !a.disabled)
        .map(|(a, _)| a))
}
