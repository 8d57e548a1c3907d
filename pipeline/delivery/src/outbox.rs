//! The worker's side of the outbox tables (migration 020): leasing due rows, turning a row into
//! its message, recording each attempt and what follows from it. The acknowledgement (送达) and
//! the views of deliveries are the record of service, in `pharmwatch_casework::service`.
//!
//! Invariants: a row is sent only by the worker holding its lease, and its attempt is recorded
//! together with the row's next state in one transaction that checks the lease is still that
//! worker's (a worker that lost its lease — it stalled past `lease_secs` — records the attempt
//! but does not overwrite the newer owner's state); an acknowledgement appends at most one
//! `delivered` event per document to the case ledger.

use std::path::Path;

use chrono::NaiveDate;
use pharmwatch_core::db::{Conn as Connection, OptionalExtension, TransactionBehavior};
use pharmwatch_core::params;

use super::channels::{DocumentRef, EnterpriseRef, Message, MessageKind};
use crate::error::Result;
use pharmwatch_casework::links::{Claims, Purpose, Signer};
use pharmwatch_casework::notices::{DocumentKind, date_zh};
use pharmwatch_core::display::indicator_zh;
use pharmwatch_core::error::CoreError;
use pharmwatch_core::store::{Store, sql_err};

const CLAIM_DUE: &str = include_str!("../../sql/delivery/claim_due.sql");
const NOTICE_MESSAGE: &str = include_str!("../../sql/delivery/notice_message.sql");

/// A delivery row due for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Row id.
    pub delivery_id: i64,
    /// Idempotency key.
    pub key: String,
    /// `notice` or `risk_warning`.
    pub kind: String,
    /// The enterprise (credit code).
    pub enterprise_id: String,
    /// The case (notices).
    pub case_id: Option<String>,
    /// The document number (notices).
    pub document_no: Option<String>,
    /// The risk event (warnings).
    pub risk_event_id: Option<String>,
    /// When it was queued (RFC 3339).
    pub created_at: String,
    /// The contact being tried (index in priority order).
    pub contact_index: usize,
    /// Attempts made on that contact.
    pub attempts: u32,
    /// The lease this worker holds (Unix ms), 0 when not claimed.
    pub lease_until: i64,
}

/// What follows an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Delivered on `channel`.
    Delivered,
    /// Try the same contact again at `next_ms`.
    RetryAt(i64),
    /// This contact failed for good: try the next one now.
    NextContact,
    /// Every contact failed: the delivery goes to the manual-service list.
    Failed,
}

/// One attempt as recorded.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// Channel name (`manual` when there was no contact to try).
    pub channel: &'a str,
    /// Masked recipient.
    pub recipient: &'a str,
    /// Start (RFC 3339).
    pub started_at: String,
    /// Duration, ms.
    pub duration_ms: i64,
    /// `success`, `retry` or `final_failure`.
    pub outcome: &'a str,
    /// Status, answer or error (masked).
    pub detail: &'a str,
}

fn due_row(r: &pharmwatch_core::db::Row) -> pharmwatch_core::db::DbResult<Due> {
    Ok(Due {
        delivery_id: r.get(0)?,
        key: r.get(1)?,
        kind: r.get(2)?,
        enterprise_id: r.get(3)?,
        case_id: r.get(4)?,
        document_no: r.get(5)?,
        risk_event_id: r.get(6)?,
        created_at: r.get(7)?,
        contact_index: r.get::<_, i64>(8)?.max(0) as usize,
        attempts: r.get::<_, i64>(9)?.max(0) as u32,
        lease_until: 0,
    })
}

/// The rows due at `now_ms`, without taking them (`deliver --dry-run`).
pub fn due_now(store: &Store, now_ms: i64, risk_warnings: bool, limit: usize) -> Result<Vec<Due>> {
    let path = store.path();
    let mut st = store
        .conn_ref()
        .prepare(CLAIM_DUE)
        .map_err(|e| sql_err(path, "due deliveries", e))?;
    Ok(st
        .query_map(params![now_ms, risk_warnings, limit as i64], due_row)
        .map_err(|e| sql_err(path, "due deliveries", e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| sql_err(path, "due deliveries", e))?)
}

/// Takes up to `limit` due rows for `lease_ms` (in one IMMEDIATE transaction, so two workers
/// never take the same row).
pub fn claim_due(
    store: &mut Store,
    now_ms: i64,
    lease_ms: i64,
    risk_warnings: bool,
    limit: usize,
) -> Result<Vec<Due>> {
    let path = store.path().to_path_buf();
    let tx = store
        .conn()
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_err(&path, "begin claim", e))?;
    let mut rows = {
        let mut st = tx
            .prepare(CLAIM_DUE)
            .map_err(|e| sql_err(&path, "claim deliveries", e))?;
        st.query_map(params![now_ms, risk_warnings, limit as i64], due_row)
            .map_err(|e| sql_err(&path, "claim deliveries", e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| sql_err(&path, "claim deliveries", e))?
    };
    let lease = now_ms + lease_ms;
    for r in &mut rows {
        tx.execute(
            "UPDATE deliveries SET lease_until = ?2 WHERE delivery_id = ?1",
            params![r.delivery_id, lease],
        )
        .map_err(|e| sql_err(&path, "lease delivery", e))?;
        r.lease_until = lease;
    }
    tx.commit().map_err(|e| sql_err(&path, "commit claim", e))?;
    Ok(rows)
}

/// Gives back the leases of rows claimed at `lease_until` and not attempted (a worker
/// stopping): another worker, or this one after a restart, takes them at once instead of
/// after the lease.
pub fn release(store: &mut Store, due: &[Due]) -> Result<()> {
    let path = store.path().to_path_buf();
    let tx = store
        .conn()
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_err(&path, "begin release", e))?;
    for d in due {
        tx.execute(
            "UPDATE deliveries SET lease_until = 0 WHERE delivery_id = ?1 AND lease_until = ?2",
            params![d.delivery_id, d.lease_until],
        )
        .map_err(|e| sql_err(&path, "release delivery", e))?;
    }
    tx.commit()
        .map_err(|e| sql_err(&path, "commit release", e))?;
    Ok(())
}

/// Records an attempt and the row's next state; returns false when the lease was lost (the
/// attempt is recorded, the state is left to the row's current owner).
pub fn record(store: &mut Store, due: &Due, a: &Attempt<'_>, step: &Step) -> Result<bool> {
    let path = store.path().to_path_buf();
    let tx = store
        .conn()
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_err(&path, "begin record", e))?;
    tx.execute(
        "INSERT INTO delivery_attempts (delivery_id, contact_index, channel, recipient,
             attempt_no, started_at, duration_ms, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            due.delivery_id,
            due.contact_index as i64,
            a.channel,
            a.recipient,
            i64::from(due.attempts) + 1,
            a.started_at,
            a.duration_ms,
            a.outcome,
            a.detail
        ],
    )
    .map_err(|e| sql_err(&path, "record attempt", e))?;
    let now = chrono::Utc::now();
    let guard = "WHERE delivery_id = ?1 AND status = 'pending' AND lease_until = ?2";
    let changed = match step {
        Step::Delivered => tx.execute(
            &format!(
                "UPDATE deliveries SET status = 'delivered', delivered_at = ?3,
                     delivered_channel = ?4, channel = ?4, attempts = attempts + 1,
                     lease_until = 0, last_error = NULL {guard}"
            ),
            params![
                due.delivery_id,
                due.lease_until,
                now.to_rfc3339(),
                a.channel
            ],
        ),
        Step::RetryAt(next) => tx.execute(
            &format!(
                "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?3,
                     channel = ?4, last_error = ?5, lease_until = 0 {guard}"
            ),
            params![due.delivery_id, due.lease_until, next, a.channel, a.detail],
        ),
        Step::NextContact => tx.execute(
            &format!(
                "UPDATE deliveries SET contact_index = contact_index + 1, attempts = 0,
                     next_attempt_at = ?3, channel = NULL, last_error = ?4, lease_until = 0 {guard}"
            ),
            params![
                due.delivery_id,
                due.lease_until,
                now.timestamp_millis(),
                format!("{}: {}", a.channel, a.detail)
            ],
        ),
        Step::Failed => tx.execute(
            &format!(
                "UPDATE deliveries SET status = 'failed', failed_at = ?3, channel = ?4,
                     attempts = attempts + 1, last_error = ?5, lease_until = 0 {guard}"
            ),
            params![
                due.delivery_id,
                due.lease_until,
                now.to_rfc3339(),
                a.channel,
                format!("{}: {}", a.channel, a.detail)
            ],
        ),
    }
    .map_err(|e| sql_err(&path, "advance delivery", e))?;
    tx.commit()
        .map_err(|e| sql_err(&path, "commit record", e))?;
    Ok(changed == 1)
}

/// Link expiry of a message sent at `sent_at` (Unix seconds): the send + the links'
/// lifetime. Counted from the send, not from when the row was queued: a notice queued days
/// before (a receiver down, a retry schedule) still goes out with a live link.
pub fn link_expiry(sent_at: i64, signer: &Signer) -> i64 {
    sent_at + signer.ttl_secs()
}

/// The message of a due row as sent now, with its signed links.
pub fn message_of(conn: &Connection, path: &Path, due: &Due, signer: &Signer) -> Result<Message> {
    let now = chrono::Utc::now().timestamp();
    let expires = link_expiry(now, signer);
    let subject = match (&due.document_no, &due.risk_event_id) {
        (Some(d), _) => d.clone(),
        (None, Some(r)) => format!("risk:{r}"),
        (None, None) => {
            return Err(CoreError::Internal(format!(
                "delivery {} has neither document nor risk event",
                due.delivery_id
            ))
            .into());
        }
    };
    let claims = |purpose| Claims {
        purpose,
        enterprise_id: due.enterprise_id.clone(),
        subject: subject.clone(),
        expires,
        issued: now,
    };
    let guidance_link = signer.url(&claims(Purpose::Guidance));
    if let Some(number) = &due.document_no {
        let row = conn
            .query_row(NOTICE_MESSAGE, [number], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<i32>>(7)?,
                ))
            })
            .optional()
            .map_err(|e| sql_err(path, "notice message", e))?
            .ok_or_else(|| {
                CoreError::Internal(format!(
                    "delivery {}: no document {number}",
                    due.delivery_id
                ))
            })?;
        let (number, kind, issued_on, html, markdown, name, due_date, pending_year) = row;
        let title = DocumentKind::parse(&kind).map_or("执法文书", DocumentKind::title);
        let due_text = match (
            due_date
                .as_deref()
                .and_then(|d| d.parse::<NaiveDate>().ok()),
            pending_year,
        ) {
            (Some(d), _) => format!("请于{}前按文书要求办理并书面报告，", date_zh(d)),
            (None, Some(year)) => format!(
                "请在文书规定的工作日期限内办理并书面报告（具体日期待{year}年节假日安排公布后另行告知），"
            ),
            (None, None) => String::new(),
        };
        return Ok(Message {
            notice_id: due.key.clone(),
            kind: MessageKind::Notice,
            enterprise: EnterpriseRef {
                credit_code: due.enterprise_id.clone(),
                name: if name.is_empty() {
                    due.enterprise_id.clone()
                } else {
                    name
                },
            },
            document: Some(DocumentRef {
                kind,
                title: title.to_string(),
                number: number.clone(),
                issued_on,
                html,
                markdown,
            }),
            case_id: due.case_id.clone(),
            due_date,
            summary: format!(
                "本局依法向你单位送达《{title}》（{number}），{due_text}并点击链接确认送达。"
            ),
            link: signer.url(&claims(Purpose::Ack)),
            guidance_link,
            issued_at: due.created_at.clone(),
        });
    }
    let id = due.risk_event_id.clone().unwrap_or_default();
    let (indicator, biz_date, grade, item_json) = conn
        .query_row(
            "SELECT indicator, biz_date, grade, item_json FROM risk_events WHERE id = ?1",
            [&id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            },
        )
        .optional()
        .map_err(|e| sql_err(path, "risk warning message", e))?
        .ok_or_else(|| {
            CoreError::Internal(format!("delivery {}: no risk event {id}", due.delivery_id))
        })?;
    let item: serde_json::Value = serde_json::from_str(&item_json).unwrap_or_default();
    // What the enterprise may read: never another enterprise's name or code.
    let evidence = crate::policy::redact_evidence(
        item.get("evidence")
            .and_then(|v| v.as_str())
            .unwrap_or_default(),
        &due.enterprise_id,
    );
    let name = conn
        .query_row(
            "SELECT enterprise_name FROM cases WHERE enterprise_id = ?1 AND enterprise_name <> ''
             LIMIT 1",
            [&due.enterprise_id],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .map_err(|e| sql_err(path, "enterprise name", e))?
        .unwrap_or_else(|| due.enterprise_id.clone());
    Ok(Message {
        notice_id: due.key.clone(),
        kind: MessageKind::RiskWarning,
        enterprise: EnterpriseRef {
            credit_code: due.enterprise_id.clone(),
            name,
        },
        document: None,
        case_id: None,
        due_date: None,
        summary: format!(
            "{biz_date} 监测到你单位{}（风险等级 {grade}）{}。请立即自查，并按监管部门要求报告。",
            indicator_zh(&indicator),
            if evidence.is_empty() {
                String::new()
            } else {
                format!("：{evidence}")
            }
        ),
        link: guidance_link.clone(),
        guidance_link,
        issued_at: due.created_at.clone(),
    })
}

/// Pending rows per enterprise and contact index (for the pending gauge by channel).
pub fn pending_by_contact(store: &Store) -> Result<Vec<(String, usize, i64)>> {
    let path = store.path();
    let mut st = store
        .conn_ref()
        .prepare(
            "SELECT enterprise_id, contact_index, COUNT(*) FROM deliveries
             WHERE status = 'pending' GROUP BY enterprise_id, contact_index",
        )
        .map_err(|e| sql_err(path, "pending deliveries", e))?;
    Ok(st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?.max(0) as usize,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(|e| sql_err(path, "pending deliveries", e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| sql_err(path, "pending deliveries", e))?)
}
