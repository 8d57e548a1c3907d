//! The audit trail (操作留痕): every action of every user of the workbench, of a system through
//! its API token, and of the nightly job, with who (account and role), when (UTC, RFC 3339),
//! what and on what.
//!
//! Invariants: entries are only appended — the triggers of migration 50 refuse UPDATE and
//! DELETE; an entry is written in the transaction of the action it records, so an action that
//! rolled back leaves no entry and an entry never lacks its action.

use std::path::Path;

use pharmwatch_core::db::Conn as Connection;
use pharmwatch_core::params;
use serde::Serialize;

use crate::error::Result;
use pharmwatch_core::store::sql_err;

/// Who acts: an account and the role it acted in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// Account name (or `pharmwatch nightly` for the job).
    pub name: String,
    /// Role (`inspector`, `approver`, …, `system`).
    pub role: String,
}

impl Actor {
    /// The nightly job.
    pub fn system(name: &str) -> Self {
        Self {
            name: name.to_string(),
            role: "system".to_string(),
        }
    }
}

/// One entry of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Sequence.
    pub audit_id: i64,
    /// When (UTC, RFC 3339).
    pub at: String,
    /// Account.
    pub actor: String,
    /// Role it acted in.
    pub role: String,
    /// What was done (`draft_approved`, `signed_in`, …).
    pub action: String,
    /// On what (`draft:12`, `case:RL-…`, `account:li`).
    pub target: String,
    /// The case concerned.
    pub case_id: Option<String>,
    /// The enterprise concerned.
    pub enterprise_id: Option<String>,
    /// Detail (reason, old → new …).
    pub detail: String,
}

/// What an entry is about.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// `draft:12`, `case:…`, `account:…`.
    pub target: &'a str,
    /// The case.
    pub case_id: Option<&'a str>,
    /// The enterprise.
    pub enterprise_id: Option<&'a str>,
}

/// Appends an entry (inside the caller's transaction when `conn` is one).
pub fn append(
    conn: &Connection,
    path: &Path,
    actor: &Actor,
    action: &str,
    subject: Subject<'_>,
    detail: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO audit_trail (at, actor, role, action, target, case_id, enterprise_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            actor.name,
            actor.role,
            action,
            subject.target,
            subject.case_id,
            subject.enterprise_id,
            detail
        ],
    )
    .map_err(|e| sql_err(path, &format!("audit {action}"), e))?;
    Ok(())
}

/// Appends an entry about case `case_id` of enterprise `enterprise_id` (target `case:…`).
pub fn append_case(
    conn: &Connection,
    path: &Path,
    actor: &Actor,
    action: &str,
    case_id: &str,
    enterprise_id: &str,
    detail: &str,
) -> Result<()> {
    append(
        conn,
        path,
        actor,
        action,
        Subject {
            target: &format!("case:{case_id}"),
            case_id: Some(case_id),
            enterprise_id: Some(enterprise_id),
        },
        detail,
    )
}

fn read(
    conn: &Connection,
    path: &Path,
    sql: &str,
    arg: &dyn pharmwatch_core::db::ToValue,
) -> Result<Vec<AuditEntry>> {
    let mut st = conn
        .prepare(sql)
        .map_err(|e| sql_err(path, "audit trail", e))?;
    let rows = st
        .query_map([arg], |r| {
            Ok(AuditEntry {
                audit_id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                role: r.get(3)?,
                action: r.get(4)?,
                target: r.get(5)?,
                case_id: r.get(6)?,
                enterprise_id: r.get(7)?,
                detail: r.get(8)?,
            })
        })
        .map_err(|e| sql_err(path, "audit trail", e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| sql_err(path, "audit trail", e))?;
    Ok(rows)
}

const COLUMNS: &str = "audit_id, at, actor, role, action, target, case_id, enterprise_id, detail";

/// The entries about a case, oldest first.
pub fn of_case(conn: &Connection, path: &Path, case_id: &str) -> Result<Vec<AuditEntry>> {
    read(
        conn,
        path,
        &format!("SELECT {COLUMNS} FROM audit_trail WHERE case_id = ?1 ORDER BY audit_id"),
        &case_id,
    )
}

/// The latest `limit` entries, newest first.
pub fn recent(conn: &Connection, path: &Path, limit: i64) -> Result<Vec<AuditEntry>> {
    read(
        conn,
        path,
        &format!("SELECT {COLUMNS} FROM audit_trail ORDER BY audit_id DESC LIMIT ?1"),
        &limit,
    )
}
