//! The record of service (送达) in the outbox tables of migration 020: the acknowledgement of a
//! notice through its signed link, and the deliveries as `case show` and the manual-service
//! list print them. The worker that sends the rows is the delivery crate's; what it recorded,
//! and what the enterprise acknowledged, is read and written here by every role that shows it.
//!
//! Invariant: an acknowledgement appends at most one `delivered` event per document to the case
//! ledger, in the transaction that marks the delivery acknowledged.

use chrono::NaiveDate;
use pharmwatch_core::db::OptionalExtension;
use pharmwatch_core::params;
use serde::Serialize;

use crate::error::{CaseworkError, Result};
use pharmwatch_core::store::{Store, sql_err};

use crate::audit::{self, Actor, Subject};
use crate::ledger::{Ledger, append_event};
use crate::notices::DocumentKind;

const CASE_DELIVERIES: &str = include_str!("../../sql/delivery/case_deliveries.sql");

/// A delivery as `case show` and the manual-service list print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryView {
    /// Row id.
    pub delivery_id: i64,
    /// `notice` or `risk_warning`.
    pub kind: String,
    /// Enterprise.
    pub enterprise_id: String,
    /// Document number.
    pub document_no: Option<String>,
    /// Risk event.
    pub risk_event_id: Option<String>,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Queued.
    pub created_at: String,
    /// Delivered.
    pub delivered_at: Option<String>,
    /// Channel it was delivered on.
    pub delivered_channel: Option<String>,
    /// When every contact had failed.
    pub failed_at: Option<String>,
    /// Acknowledged through the signed link.
    pub acknowledged_at: Option<String>,
    /// The last failure (masked).
    pub last_error: Option<String>,
    /// Case.
    pub case_id: Option<String>,
    /// Attempts per channel: `webhook ×3 final_failure; email ×1 success`.
    pub attempts: Option<String>,
}

fn views(store: &Store, case_id: Option<&str>, manual: bool) -> Result<Vec<DeliveryView>> {
    let path = store.path();
    let mut st = store
        .conn_ref()
        .prepare(CASE_DELIVERIES)
        .map_err(|e| sql_err(path, "deliveries", e))?;
    Ok(st
        .query_map(params![case_id, manual], |r| {
            Ok(DeliveryView {
                delivery_id: r.get(0)?,
                kind: r.get(1)?,
                enterprise_id: r.get(2)?,
                document_no: r.get(3)?,
                risk_event_id: r.get(4)?,
                status: r.get(5)?,
                created_at: r.get(6)?,
                delivered_at: r.get(7)?,
                delivered_channel: r.get(8)?,
                failed_at: r.get(9)?,
                acknowledged_at: r.get(10)?,
                last_error: r.get(11)?,
                case_id: r.get(12)?,
                attempts: r.get(13)?,
            })
        })
        .map_err(|e| sql_err(path, "deliveries", e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| sql_err(path, "deliveries", e))?)
}

/// The deliveries of a case.
pub fn case_deliveries(store: &Store, case_id: &str) -> Result<Vec<DeliveryView>> {
    views(store, Some(case_id), false)
}

/// The manual-service list: failed deliveries not acknowledged since.
pub fn manual_list(store: &Store) -> Result<Vec<DeliveryView>> {
    views(store, None, true)
}

/// The `deliveries:` section of `case show` (empty when the case has none).
pub fn format_case_deliveries(v: &[DeliveryView], manual_service: &str) -> String {
    if v.is_empty() {
        return String::new();
    }
    let mut out = String::from("deliveries:\n");
    for d in v {
        let what = d
            .document_no
            .clone()
            .or_else(|| d.risk_event_id.clone())
            .unwrap_or_default();
        let state = match d.status.as_str() {
            "delivered" => format!(
                "delivered via {} {}",
                d.delivered_channel.as_deref().unwrap_or("-"),
                d.delivered_at.as_deref().unwrap_or("")
            ),
            "failed" => format!(
                "FAILED {} — every channel failed; on the manual-service list ({manual_service})",
                d.failed_at.as_deref().unwrap_or("")
            ),
            _ => format!(
                "pending{}",
                d.last_error
                    .as_deref()
                    .map(|e| format!(" (last: {e})"))
                    .unwrap_or_default()
            ),
        };
        out.push_str(&format!("  {what}  {}  {state}\n", d.enterprise_id));
        if let Some(a) = &d.attempts {
            out.push_str(&format!("      attempts: {a}\n"));
        }
        if d.status == "failed"
            && let Some(e) = &d.last_error
        {
            out.push_str(&format!("      last failure: {e}\n"));
        }
        if let Some(t) = &d.acknowledged_at {
            out.push_str(&format!("      acknowledged (送达) {t}\n"));
        }
    }
    out
}

/// The document an acknowledgement is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AckDocument {
    /// Number.
    pub number: String,
    /// Kind (`caution_notice`, …).
    pub kind: String,
    /// Title.
    pub title: String,
    /// Case.
    pub case_id: String,
    /// Enterprise name.
    pub enterprise_name: String,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// The `delivered` event was appended now.
    Recorded(AckDocument, String),
    /// It had been acknowledged before, at that time: nothing was written.
    Already(AckDocument, String),
}

/// Actor of the events the acknowledgement link appends.
pub const ACK_ACTOR: &str = "企业负责人（签名送达链接）";

/// Records the acknowledgement (送达) of `document_no` by `enterprise_id` on `on`, on the
/// explicit act of `by` (the lead's confirmation on the page that shows the document — never
/// on opening a link): one `delivered` event in the case ledger and one audit entry, the first
/// time only. Refuses a document that is not that enterprise's.
pub fn acknowledge(
    ledger: &mut Ledger,
    enterprise_id: &str,
    document_no: &str,
    on: NaiveDate,
    by: &Actor,
) -> Result<Ack> {
    ledger.immediate(|tx, path| {
        let doc = tx
            .query_row(
                "SELECT d.number, d.kind, d.case_id, c.enterprise_id, c.enterprise_name
                 FROM documents d JOIN cases c ON c.case_id = d.case_id WHERE d.number = ?1",
                [document_no],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| sql_err(path, "acknowledged document", e))?;
        let Some((number, kind, case_id, owner, name)) = doc else {
            return Err(CaseworkError::ledger(
                "-",
                format!("no document {document_no}"),
            ));
        };
        if owner != enterprise_id {
            return Err(CaseworkError::ledger(
                &case_id,
                format!("document {document_no} is not addressed to {enterprise_id}"),
            ));
        }
        let doc = AckDocument {
            number: number.clone(),
            kind: kind.clone(),
            title: DocumentKind::parse(&kind)
                .map_or("执法文书", DocumentKind::title)
                .to_string(),
            case_id: case_id.clone(),
            enterprise_name: name,
        };
        let before: Option<String> = tx
            .query_row(
                "SELECT recorded_at FROM case_events
                 WHERE case_id = ?1 AND event = 'delivered' AND document_no = ?2
                 ORDER BY event_id LIMIT 1",
                params![case_id, number],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| sql_err(path, "earlier acknowledgement", e))?;
        if let Some(at) = before {
            return Ok(Ack::Already(doc, at));
        }
        append_event(
            tx,
            path,
            &case_id,
            "delivered",
            on,
            &by.name,
            &format!(
                "《{}》由企业负责人查看后确认签收送达 (receipt confirmed by the lead)",
                doc.title
            ),
            Some(&number),
        )?;
        audit::append(
            tx,
            path,
            by,
            "receipt_confirmed",
            Subject {
                target: &format!("document:{number}"),
                case_id: Some(&case_id),
                enterprise_id: Some(enterprise_id),
            },
            &doc.title,
        )?;
        let at = chrono::Utc::now().to_rfc3339();
        tx.execute(
            "UPDATE deliveries SET acknowledged_at = ?2
             WHERE document_no = ?1 AND acknowledged_at IS NULL",
            params![number, at],
        )
        .map_err(|e| sql_err(path, "acknowledged delivery", e))?;
        Ok(Ack::Recorded(doc, at))
    })
}
