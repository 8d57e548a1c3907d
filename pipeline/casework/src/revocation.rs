//! Revoking the links of one document or one risk warning (`pharmwatch links revoke`): a
//! notice sent to the wrong contact, a document withdrawn. Every link of it issued until the
//! revocation is refused as gone (410) from then on; links sent after it (a resend to the right
//! contact) work.
//!
//! Invariants: only a subject the ledger knows can be revoked (an issued document's number, or
//! `risk:<event id>` of a risk warning it delivers), with a reason; the revocation and its audit
//! line are written in one transaction; a revocation is never removed (revoking again only moves
//! its time on).

use pharmwatch_core::db::OptionalExtension as _;
use pharmwatch_core::error::CoreError;
use pharmwatch_core::params;
use pharmwatch_core::store::sql_err;
use serde::Serialize;

use crate::audit::{self, Actor, Subject};
use crate::error::Result;
use crate::ledger::Ledger;

/// A revocation in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revocation {
    /// The document number, or `risk:<event id>`.
    pub subject: String,
    /// The enterprise the links were for.
    pub enterprise_id: String,
    /// Links issued at or before this (Unix seconds) are refused.
    pub revoked_before: i64,
    /// When (UTC, RFC 3339).
    pub revoked_at: String,
    /// Who.
    pub revoked_by: String,
    /// Why.
    pub reason: String,
}

/// The enterprise of `subject`, if the ledger knows it: an issued document, or a risk warning
/// in the delivery outbox.
fn enterprise_of(ledger: &Ledger, subject: &str) -> Result<Option<String>> {
    let (sql, key) = match subject.strip_prefix("risk:") {
        Some(id) => (
            "SELECT enterprise_id FROM deliveries WHERE risk_event_id = ?1 LIMIT 1",
            id,
        ),
        None => (
            "SELECT c.enterprise_id FROM documents d JOIN cases c ON c.case_id = d.case_id
             WHERE d.number = ?1",
            subject,
        ),
    };
    Ok(ledger
        .conn()
        .query_row(sql, [key], |r| r.get::<_, String>(0))
        .optional()
        .map_err(|e| sql_err(ledger.path(), "link subject", e))?)
}

/// Revokes every link of `subject` issued until now, by `actor`, for `reason`; with the
/// revocation as recorded.
pub fn revoke(
    ledger: &mut Ledger,
    subject: &str,
    actor: &Actor,
    reason: &str,
) -> Result<Revocation> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(CoreError::InvalidField {
            field: "reason".into(),
            reason: "a revocation needs a reason (it is shown to whoever opens the link)".into(),
        }
        .into());
    }
    let Some(enterprise_id) = enterprise_of(ledger, subject)? else {
        return Err(CoreError::InvalidField {
            field: "subject".into(),
            reason: format!(
                "{subject:?} is neither an issued document's number nor risk:<event id> of a \
                 risk warning in the delivery outbox"
            ),
        }
        .into());
    };
    let now = chrono::Utc::now();
    let r = Revocation {
        subject: subject.to_string(),
        enterprise_id,
        revoked_before: now.timestamp(),
        revoked_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        revoked_by: actor.name.clone(),
        reason: reason.to_string(),
    };
    ledger.immediate(|tx, path| {
        tx.execute(
            "INSERT INTO link_revocations
                 (subject, enterprise_id, revoked_before, revoked_at, revoked_by, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (subject) DO UPDATE SET revoked_before = excluded.revoked_before,
                 revoked_at = excluded.revoked_at, revoked_by = excluded.revoked_by,
                 reason = excluded.reason",
            params![
                r.subject,
                r.enterprise_id,
                r.revoked_before,
                r.revoked_at,
                r.revoked_by,
                r.reason
            ],
        )
        .map_err(|e| sql_err(path, "revoke links", e))?;
        audit::append(
            tx,
            path,
            actor,
            "links_revoked",
            Subject {
                target: &format!("links:{}", r.subject),
                case_id: None,
                enterprise_id: Some(&r.enterprise_id),
            },
            &format!("links issued until {} refused: {}", r.revoked_at, r.reason),
        )
    })?;
    Ok(r)
}

/// The revocation of `subject`, if any.
pub fn revocation_of(ledger: &Ledger, subject: &str) -> Result<Option<Revocation>> {
    Ok(ledger
        .conn()
        .query_row(
            "SELECT subject, enterprise_id, revoked_before, revoked_at, revoked_by, reason
             FROM link_revocations WHERE subject = ?1",
            [subject],
            |r| {
                Ok(Revocation {
                    subject: r.get(0)?,
                    enterprise_id: r.get(1)?,
                    revoked_before: r.get(2)?,
                    revoked_at: r.get(3)?,
                    revoked_by: r.get(4)?,
                    reason: r.get(5)?,
                })
            },
        )
        .optional()
        .map_err(|e| sql_err(ledger.path(), "link revocation", e))?)
}
