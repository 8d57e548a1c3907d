//! The actions of the workbench, shared by the pages and the JSON API: each takes the account
//! that acts, checks its role and jurisdiction, does the work through the casework crate and
//! writes the audit trail.
//!
//! Invariants: a record outside the account's jurisdiction is [`Denied::NotFound`]; an action
//! the role may not take is [`Denied::Forbidden`]; the enterprise lead reaches only its own
//! enterprise's records and never a draft, a risk list or another enterprise's name; no action
//! records service (送达) except [`ServeState::confirm_receipt`], the lead's explicit act.

use std::path::Path;

use chrono::NaiveDate;
use pharmwatch_core::db::OptionalExtension;
use pharmwatch_core::params;
use serde::{Deserialize, Serialize};

use crate::ServeState;
use crate::accounts::{Account, Role};
use crate::web::{Act, Denied};
use pharmwatch_casework::audit::{self, Actor, Subject};
use pharmwatch_casework::closedloop::{self, ClosedLoop};
use pharmwatch_casework::drafts::{self, Draft, DraftState};
use pharmwatch_casework::ledger::{CloseGround, Ledger, RecordedEvent};
use pharmwatch_casework::notices::Edits;
use pharmwatch_casework::service::{self, Ack};
use pharmwatch_core::risk::RiskRow;
use pharmwatch_core::store::sql_err;

const CASE_ROWS: &str = include_str!("../../sql/serve/case_rows.sql");
const ENTERPRISE_NOTICES: &str = include_str!("../../sql/serve/enterprise_notices.sql");

/// Largest attachment accepted (10 MiB).
pub const MAX_ATTACHMENT_BYTES: usize = 10 * 1024 * 1024;

/// The actor of an account, for the ledger and the audit trail.
pub fn actor(a: &Account) -> Actor {
    Actor {
        name: a.username.clone(),
        role: a.role.as_str().to_string(),
    }
}

fn require(a: &Account, roles: &[Role]) -> Act<()> {
    if roles.contains(&a.role) {
        Ok(())
    } else {
        Err(Denied::Forbidden)
    }
}

const STAFF: &[Role] = &[
    Role::ProvinceSupervisor,
    Role::Inspector,
    Role::Approver,
    Role::Auditor,
];
const HANDLERS: &[Role] = &[Role::ProvinceSupervisor, Role::Inspector];

/// The fields of a case action (`POST /wb/cases/{id}/{action}`, `POST /api/v1/cases/{id}/{action}`);
/// each action reads the ones it needs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CaseAct {
    /// `event`: report-received, verified, delivered, resume-request or lifted.
    pub event: String,
    /// The note, reason or facts of the action.
    pub note: String,
    /// `event` verified: the enterprise made a compliance commitment.
    pub commitment: bool,
    /// `comment`: its text.
    pub body: String,
    /// `assign`: the inspector.
    pub inspector: String,
    /// `escalate`: risk_increased or interview_refused; `close`: compliant, transferred or ceased.
    pub ground: String,
}

/// A risk-list row with its disposition and the system's proposal.
#[derive(Debug, Clone, Serialize)]
pub struct TriageRow {
    /// The row.
    pub row: RiskRow,
    /// `confirmed`, `dismissed`, `watch` or empty.
    pub disposition: String,
    /// The reason of a dismissal.
    pub reason: String,
    /// Who decided it.
    pub decided_by: String,
    /// The case opened on confirmation.
    pub case_id: Option<String>,
    /// The system proposes a caution notice for it (the notices configuration selects it).
    pub proposed: bool,
    /// The items' reasons in Chinese, in the items' order.
    pub reasons_zh: Vec<String>,
}

/// Filters of the risk list.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RiskQuery {
    /// Business day (default: the latest list).
    pub date: Option<String>,
    /// Grade.
    pub grade: Option<String>,
    /// Indicator.
    pub indicator: Option<String>,
    /// Region code.
    pub region: Option<String>,
    /// Enterprise type.
    #[serde(rename = "type")]
    pub enterprise_type: Option<String>,
    /// `score` (default), `region`, `grade`, `name`.
    pub sort: Option<String>,
    /// `zh` or `en`.
    pub lang: Option<String>,
}

/// An enterprise's history as the triage shows it beside a row.
#[derive(Debug, Clone, Serialize)]
pub struct EnterpriseHistory {
    /// Credit code.
    pub enterprise_id: String,
    /// Name.
    pub enterprise_name: String,
    /// Region.
    pub region_code: String,
    /// Every stored risk-list row of the enterprise, newest first, with its disposition.
    pub lists: Vec<TriageRow>,
    /// Its cases, newest first.
    pub cases: Vec<pharmwatch_casework::ledger::CaseSummary>,
    /// Its credit file today.
    pub credit: pharmwatch_casework::credit::CreditFile,
}

/// A case row of the queues.
#[derive(Debug, Clone, Serialize)]
pub struct CaseRow {
    /// Case.
    pub case_id: String,
    /// Enterprise.
    pub enterprise_id: String,
    /// Its name.
    pub enterprise_name: String,
    /// Region.
    pub region_code: String,
    /// Assigned inspector.
    pub assignee: String,
    /// open / closed.
    pub status: String,
    /// Opened.
    pub opened_on: String,
    /// Earliest open due date.
    pub next_due: Option<String>,
    /// A measure is overdue.
    pub overdue: bool,
    /// A rectification report awaits verification.
    pub reported: bool,
    /// Notices awaiting service by hand.
    pub manual: i64,
}

/// The queues of the home page.
#[derive(Debug, Clone, Serialize)]
pub struct Queues {
    /// Drafts to review (proposed or returned).
    pub review: Vec<Draft>,
    /// Drafts awaiting approval.
    pub approval: Vec<Draft>,
    /// Cases with a deadline within the next seven days.
    pub due_week: Vec<CaseRow>,
    /// Cases with an overdue measure.
    pub overdue: Vec<CaseRow>,
    /// Reports awaiting verification (assigned to the account, or unassigned).
    pub verify: Vec<CaseRow>,
    /// Notices every channel failed to deliver.
    pub manual: Vec<CaseRow>,
}

/// A document as the enterprise end lists it.
#[derive(Debug, Clone, Serialize)]
pub struct NoticeRow {
    /// Number.
    pub number: String,
    /// Kind.
    pub kind: String,
    /// Title.
    pub title: String,
    /// Case.
    pub case_id: String,
    /// Issue date.
    pub issued_on: String,
    /// When the lead confirmed receipt.
    pub received_at: Option<String>,
}

/// Everything the case page shows.
#[derive(Debug, Clone, Serialize)]
pub struct CasePage {
    /// The case row.
    pub row: CaseRow,
    /// The ledger's detail.
    pub detail: pharmwatch_casework::ledger::CaseDetail,
    /// Working days left per measure code (None: past the calendar or no date).
    pub days_left: Vec<(String, Option<i64>)>,
    /// Drafts of the case.
    pub drafts: Vec<Draft>,
    /// Deliveries.
    pub deliveries: Vec<service::DeliveryView>,
    /// Comments: author, time, text.
    pub comments: Vec<(String, String, String)>,
    /// Attachments: id, name, type, size, purpose, by, at.
    pub attachments: Vec<AttachmentRow>,
    /// The audit entries about the case.
    pub audit: Vec<audit::AuditEntry>,
    /// Inspectors the case can be assigned to.
    pub assignable: Vec<String>,
}

/// An attachment of a case.
#[derive(Debug, Clone, Serialize)]
pub struct AttachmentRow {
    /// Id.
    pub attachment_id: i64,
    /// File name as uploaded.
    pub file_name: String,
    /// MIME type.
    pub content_type: String,
    /// Size.
    pub size_bytes: i64,
    /// `rectification_report`, `evidence`, `other`.
    pub purpose: String,
    /// By.
    pub uploaded_by: String,
    /// At.
    pub uploaded_at: String,
    /// SHA-256.
    pub sha256: String,
}

fn case_rows(l: &Ledger, open_only: bool) -> Act<Vec<CaseRow>> {
    let path = l.path();
    let mut st = l
        .conn()
        .prepare(CASE_ROWS)
        .map_err(|e| Denied::from(sql_err(path, "case rows", e)))?;
    let rows = st
        .query_map([i64::from(open_only)], |r| {
            Ok(CaseRow {
                case_id: r.get(0)?,
                enterprise_id: r.get(1)?,
                enterprise_name: r.get(2)?,
                region_code: r.get(3)?,
                assignee: r.get(4)?,
                status: r.get(5)?,
                opened_on: r.get(6)?,
                next_due: r.get(7)?,
                overdue: r.get(8)?,
                reported: r.get(9)?,
                manual: r.get(10)?,
            })
        })
        .map_err(|e| Denied::from(sql_err(path, "case rows", e)))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Denied::from(sql_err(path, "case rows", e)))?;
    Ok(rows)
}

/// The region a case is scoped by: its stored region, else the prefecture of the credit
/// code's registration authority (characters 3–6 of the code, then `00`).
pub fn case_region(stored: &str, enterprise_id: &str) -> String {
    if !stored.is_empty() {
        return stored.to_string();
    }
    enterprise_id
        .get(2..6)
        .map(|p| format!("{p}00"))
        .unwrap_or_default()
}

fn sees_case(a: &Account, r: &CaseRow) -> bool {
    a.sees(
        &case_region(&r.region_code, &r.enterprise_id),
        &r.enterprise_id,
    )
}

fn sees_draft(a: &Account, d: &Draft) -> bool {
    a.role.is_staff()
        && a.sees(
            &case_region(&d.region_code, &d.enterprise_id),
            &d.enterprise_id,
        )
}

/// Today in Asia/Shanghai.
pub fn today() -> NaiveDate {
    (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive()
}

impl ServeState {
    /// A stored row with its disposition, its reasons in Chinese and the system's proposal.
    fn triage_row(&self, l: &Ledger, row: RiskRow) -> Act<TriageRow> {
        let disp: Option<(String, String, String, Option<String>)> = l
            .conn()
            .query_row(
                "SELECT disposition, reason, decided_by, case_id FROM dispositions
                 WHERE list_id = ?1 AND enterprise_id = ?2",
                params![row.list_id, row.enterprise_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| Denied::from(sql_err(l.path(), "disposition", e)))?;
        let (disposition, reason, decided_by, case_id) = disp.unwrap_or_default();
        Ok(TriageRow {
            reasons_zh: row
                .items
                .iter()
                .map(pharmwatch_core::risk::reason_zh)
                .collect(),
            proposed: self
                .closed_loop
                .notices
                .selects(&row.grade, &row.indicators),
            row,
            disposition,
            reason,
            decided_by,
            case_id,
        })
    }

    /// The risk list of a day for the account's jurisdiction, filtered and sorted.
    pub fn risk_list(
        &self,
        a: &Account,
        q: &RiskQuery,
    ) -> Act<(String, Vec<String>, Vec<TriageRow>)> {
        require(a, STAFF)?;
        let l = self.lock()?;
        let store = l.store();
        let days = store.risk_list_days()?;
        let date = q
            .date
            .clone()
            .or_else(|| days.first().cloned())
            .unwrap_or_default();
        let rows = store.risk_rows(Some(&date), None)?;
        let mut out = Vec::new();
        for row in rows {
            if !a.sees(&row.region_code, &row.enterprise_id) {
                continue;
            }
            let keep = q
                .grade
                .as_deref()
                .is_none_or(|g| g.is_empty() || row.grade == g)
                && q.indicator.as_deref().is_none_or(|i| {
                    i.is_empty() || row.indicators.split(',').any(|x| x.trim() == i)
                })
                && q.region
                    .as_deref()
                    .is_none_or(|r| r.is_empty() || row.region_code == r)
                && q.enterprise_type
                    .as_deref()
                    .is_none_or(|t| t.is_empty() || row.enterprise_type == t);
            if !keep {
                continue;
            }
            out.push(self.triage_row(&l, row)?);
        }
        match q.sort.as_deref() {
            Some("region") => out.sort_by(|x, y| {
                x.row
                    .region_code
                    .cmp(&y.row.region_code)
                    .then(x.row.rank.cmp(&y.row.rank))
            }),
            Some("grade") => out.sort_by(|x, y| {
                y.row
                    .grade
                    .cmp(&x.row.grade)
                    .then(x.row.rank.cmp(&y.row.rank))
            }),
            Some("name") => out.sort_by(|x, y| x.row.enterprise_name.cmp(&y.row.enterprise_name)),
            _ => out.sort_by_key(|x| x.row.rank),
        }
        Ok((date, days, out))
    }

    /// Triage of one risk-list row: `confirmed` opens its case and proposes its documents,
    /// `dismissed` needs a reason, `watch` keeps it in view. Returns the case opened.
    pub fn dispose(
        &self,
        a: &Account,
        list_id: &str,
        enterprise_id: &str,
        disposition: &str,
        reason: &str,
    ) -> Act<Option<String>> {
        require(a, HANDLERS)?;
        if !["confirmed", "dismissed", "watch"].contains(&disposition) {
            return Err(Denied::Bad(format!(
                "unknown disposition `{disposition}`: confirmed, dismissed or watch"
            )));
        }
        if disposition == "dismissed" && reason.trim().is_empty() {
            return Err(Denied::Bad(
                "排除须说明理由 (a dismissal needs its reason)".into(),
            ));
        }
        let mut l = self.lock()?;
        let row = l
            .store()
            .risk_rows(None, Some(enterprise_id))?
            .into_iter()
            .find(|r| r.list_id == list_id)
            .filter(|r| a.sees(&r.region_code, &r.enterprise_id))
            .ok_or(Denied::NotFound)?;
        let who = actor(a);
        let mut case_id = None;
        if disposition == "confirmed" {
            let cl = ClosedLoop {
                calendar: l.calendar(&self.closed_loop.calendar)?,
                ..self.closed_loop.clone()
            };
            let opened = closedloop::open_case(&mut l, &row, today(), &cl, &who, None, None)?;
            case_id = Some(opened.map_or_else(|| closedloop::case_id(&row), |o| o.case_id));
        }
        l.immediate(|tx, path| {
            tx.execute(
                "INSERT INTO dispositions (list_id, enterprise_id, biz_date, disposition, reason,
                                           case_id, decided_by, decided_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (list_id, enterprise_id) DO UPDATE SET
                     disposition = excluded.disposition, reason = excluded.reason,
                     case_id = COALESCE(excluded.case_id, dispositions.case_id),
                     decided_by = excluded.decided_by, decided_at = excluded.decided_at",
                params![
                    list_id,
                    enterprise_id,
                    row.date.to_string(),
                    disposition,
                    reason.trim(),
                    case_id,
                    a.username,
                    chrono::Utc::now().to_rfc3339()
                ],
            )
            .map_err(|e| sql_err(path, "disposition", e))?;
            audit::append(
                tx,
                path,
                &who,
                &format!("risk_{disposition}"),
                Subject {
                    target: &format!("risk:{list_id}/{enterprise_id}"),
                    case_id: case_id.as_deref(),
                    enterprise_id: Some(enterprise_id),
                },
                reason.trim(),
            )?;
            Ok(())
        })?;
        Ok(case_id)
    }

    /// An enterprise's earlier risk lists (with their dispositions), cases and credit file,
    /// for an account whose jurisdiction has it.
    pub fn enterprise_history(&self, a: &Account, enterprise_id: &str) -> Act<EnterpriseHistory> {
        require(a, STAFF)?;
        let l = self.lock()?;
        let rows: Vec<RiskRow> = l.store().risk_rows(None, Some(enterprise_id))?;
        let cases = l.list(false, Some(enterprise_id))?;
        let region = rows
            .last()
            .map(|r| r.region_code.clone())
            .unwrap_or_else(|| case_region("", enterprise_id));
        if (rows.is_empty() && cases.is_empty()) || !a.sees(&region, enterprise_id) {
            return Err(Denied::NotFound);
        }
        let name = rows
            .last()
            .map(|r| r.enterprise_name.clone())
            .or_else(|| cases.first().map(|c| c.enterprise_name.clone()))
            .unwrap_or_default();
        let reference = rows
            .last()
            .map(|r| {
                if r.reference_credit_grade.is_empty() {
                    r.credit_grade.clone()
                } else {
                    r.reference_credit_grade.clone()
                }
            })
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| "B".to_string());
        let credit = pharmwatch_casework::credit::credit_file(
            &l,
            enterprise_id,
            &name,
            &reference,
            today(),
            &self.closed_loop.rules,
        )?;
        let mut lists = Vec::new();
        for row in rows.into_iter().rev() {
            lists.push(self.triage_row(&l, row)?);
        }
        Ok(EnterpriseHistory {
            enterprise_id: enterprise_id.to_string(),
            enterprise_name: name,
            region_code: region,
            lists,
            cases,
            credit,
        })
    }

    /// The queues of the account's home page.
    pub fn queues(&self, a: &Account) -> Act<Queues> {
        require(a, STAFF)?;
        let l = self.lock()?;
        let all = drafts::list(l.conn(), l.path(), &[])?;
        let mine: Vec<Draft> = all.into_iter().filter(|d| sees_draft(a, d)).collect();
        let cases: Vec<CaseRow> = case_rows(&l, true)?
            .into_iter()
            .filter(|c| sees_case(a, c))
            .collect();
        let today = today();
        let week = (today + chrono::Duration::days(7)).to_string();
        let today_s = today.to_string();
        Ok(Queues {
            review: mine
                .iter()
                .filter(|d| matches!(d.state, DraftState::Proposed | DraftState::Returned))
                .cloned()
                .collect(),
            approval: mine
                .iter()
                .filter(|d| d.state == DraftState::Submitted)
                .cloned()
                .collect(),
            due_week: cases
                .iter()
                .filter(|c| {
                    c.next_due
                        .as_deref()
                        .is_some_and(|d| d >= today_s.as_str() && d <= week.as_str())
                })
                .cloned()
                .collect(),
            overdue: cases
                .iter()
                .filter(|c| {
                    c.overdue || c.next_due.as_deref().is_some_and(|d| d < today_s.as_str())
                })
                .cloned()
                .collect(),
            verify: cases
                .iter()
                .filter(|c| c.reported && (c.assignee.is_empty() || c.assignee == a.username))
                .cloned()
                .collect(),
            manual: cases.iter().filter(|c| c.manual > 0).cloned().collect(),
        })
    }

    /// The cases of the account's jurisdiction.
    pub fn cases(&self, a: &Account, open_only: bool) -> Act<Vec<CaseRow>> {
        require(a, STAFF)?;
        let l = self.lock()?;
        Ok(case_rows(&l, open_only)?
            .into_iter()
            .filter(|c| sees_case(a, c))
            .collect())
    }

    fn case_row(&self, l: &Ledger, a: &Account, case_id: &str) -> Act<CaseRow> {
        case_rows(l, false)?
            .into_iter()
            .find(|c| c.case_id == case_id)
            .filter(|c| sees_case(a, c))
            .ok_or(Denied::NotFound)
    }

    /// Everything about one case.
    pub fn case_page(&self, a: &Account, case_id: &str) -> Act<CasePage> {
        require(a, STAFF)?;
        let l = self.lock()?;
        let row = self.case_row(&l, a, case_id)?;
        let detail = l.show(case_id)?;
        let cal = l.calendar(&self.closed_loop.calendar)?;
        let today = today();
        let days_left = detail
            .measures
            .iter()
            .map(|m| {
                let left = m
                    .due_date
                    .as_deref()
                    .and_then(|d| d.parse::<NaiveDate>().ok())
                    .and_then(|due| {
                        if due >= today {
                            cal.working_days_between(today, due).ok().map(i64::from)
                        } else {
                            cal.working_days_between(due, today)
                                .ok()
                                .map(|n| -i64::from(n))
                        }
                    });
                (m.code.clone(), left)
            })
            .collect();
        let path = l.path().to_path_buf();
        let conn = l.conn();
        let mut st = conn
            .prepare(
                "SELECT author, at, body FROM case_comments WHERE case_id = ?1 ORDER BY comment_id",
            )
            .map_err(|e| Denied::from(sql_err(&path, "comments", e)))?;
        let comments = st
            .query_map([case_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| Denied::from(sql_err(&path, "comments", e)))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Denied::from(sql_err(&path, "comments", e)))?;
        let attachments = attachments_of(conn, &path, case_id)?;
        let assignable = crate::accounts::list(conn, &path)?
            .into_iter()
            .filter(|x| {
                x.role == Role::Inspector
                    && !x.disabled
                    && x.sees(
                        &case_region(&row.region_code, &row.enterprise_id),
                        &row.enterprise_id,
                    )
            })
            .map(|x| x.username)
            .collect();
        Ok(CasePage {
            days_left,
            drafts: drafts::of_case(conn, &path, case_id)?,
            deliveries: service::case_deliveries(l.store(), case_id)?,
            comments,
            attachments,
            audit: audit::of_case(conn, &path, case_id)?,
            assignable,
            row,
            detail,
        })
    }

    /// Records a step of the closed loop on a case (report received, verified, served by
    /// hand, resume request, lifted); lifting proposes the lifting notice as a draft.
    pub fn case_event(
        &self,
        a: &Account,
        case_id: &str,
        event: &str,
        note: &str,
        commitment: bool,
    ) -> Act<()> {
        require(a, HANDLERS)?;
        let ev = RecordedEvent::parse(event).map_err(|e| Denied::Bad(e.to_string()))?;
        let mut l = self.lock()?;
        let row = self.case_row(&l, a, case_id)?;
        l.record(case_id, ev, &a.username, note, today(), commitment)?;
        let action = format!("case_{}", ev.event_name());
        audit_case(&mut l, a, case_id, &row.enterprise_id, &action, note)?;
        let who = actor(a);
        if ev == RecordedEvent::Lifted {
            drafts::propose_now(
                &mut l,
                case_id,
                pharmwatch_casework::notices::DocumentKind::LiftingNotice,
                today(),
                &who,
            )?;
        }
        Ok(())
    }

    /// Escalates a case on a ground (risk increased, interview refused): the measures the
    /// regulation engine decides are added with their articles, and the documents they call
    /// for are proposed as drafts (approved like any other). Returns the measures added.
    pub fn escalate(
        &self,
        a: &Account,
        case_id: &str,
        ground: &str,
        note: &str,
    ) -> Act<Vec<(String, String)>> {
        require(a, HANDLERS)?;
        let ground =
            pharmwatch_casework::ledger::EscalationGround::parse(ground).ok_or_else(|| {
                Denied::Bad(format!(
                    "unknown ground `{ground}`: risk_increased or interview_refused"
                ))
            })?;
        if note.trim().is_empty() {
            return Err(Denied::Bad(
                "升级处置须说明事实 (an escalation needs the facts that ground it)".into(),
            ));
        }
        let mut l = self.lock()?;
        let row = self.case_row(&l, a, case_id)?;
        let cal = l.calendar(&self.closed_loop.calendar)?;
        let added = l.escalate_case(
            case_id,
            ground,
            today(),
            &self.closed_loop.rules,
            &cal,
            &a.username,
        )?;
        let detail = format!(
            "{}: {}; {}",
            ground.text(&self.closed_loop.rules),
            note.trim(),
            added
                .iter()
                .map(|(c, art)| format!("{c} ({art})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        audit_case(
            &mut l,
            a,
            case_id,
            &row.enterprise_id,
            "case_escalated",
            &detail,
        )?;
        let who = actor(a);
        let kinds = added
            .iter()
            .filter_map(|(code, _)| pharmwatch_casework::ledger::parse_code(code))
            .filter_map(document_for);
        for kind in kinds {
            drafts::propose_now(&mut l, case_id, kind, today(), &who)?;
        }
        Ok(added)
    }

    /// Closes a case by hand (结案) on a ground with the approver's reason: only an approver
    /// (负责人) of the case's jurisdiction closes a case before its measures have run their
    /// course; live drafts of the case are withdrawn.
    pub fn close_case(&self, a: &Account, case_id: &str, ground: &str, note: &str) -> Act<()> {
        require(a, &[Role::Approver])?;
        let ground = CloseGround::parse(ground).ok_or_else(|| {
            Denied::Bad(format!(
                "unknown ground `{ground}`: compliant, transferred or ceased"
            ))
        })?;
        if note.trim().is_empty() {
            return Err(Denied::Bad(
                "结案须说明理由 (closing a case needs its reason)".into(),
            ));
        }
        let mut l = self.lock()?;
        let row = self.case_row(&l, a, case_id)?;
        l.close_case(
            case_id,
            ground,
            note,
            today(),
            &a.username,
            &self.closed_loop.rules,
        )?;
        let detail = format!("{}: {}", ground.text(&self.closed_loop.rules), note.trim());
        audit_case(
            &mut l,
            a,
            case_id,
            &row.enterprise_id,
            "case_closed",
            &detail,
        )
    }

    /// Refers a case for investigation (移交立案查处) on the facts of a suspected violation:
    /// the approver's act; the `case_referral` measure is added with its article.
    pub fn refer_case(&self, a: &Account, case_id: &str, note: &str) -> Act<String> {
        require(a, &[Role::Approver])?;
        if note.trim().is_empty() {
            return Err(Denied::Bad(
                "移交立案须说明涉嫌违法的事实 (a referral needs the facts)".into(),
            ));
        }
        let mut l = self.lock()?;
        let row = self.case_row(&l, a, case_id)?;
        let article = l.refer_case(case_id, note, today(), &self.closed_loop.rules, &a.username)?;
        let detail = format!("{article}: {}", note.trim());
        audit_case(
            &mut l,
            a,
            case_id,
            &row.enterprise_id,
            "case_referred",
            &detail,
        )?;
        Ok(article)
    }

    /// A case action by name, as the pages and the API post it: `event`, `comment`, `assign`,
    /// `escalate`, `refer` or `close`.
    pub fn case_act(&self, a: &Account, case_id: &str, action: &str, f: &CaseAct) -> Act<()> {
        match action {
            "event" => self.case_event(a, case_id, &f.event, &f.note, f.commitment),
            "comment" => self.comment(a, case_id, &f.body),
            "assign" => self.assign(a, case_id, &f.inspector),
            "escalate" => self.escalate(a, case_id, &f.ground, &f.note).map(|_| ()),
            "refer" => self.refer_case(a, case_id, &f.note).map(|_| ()),
            "close" => self.close_case(a, case_id, &f.ground, &f.note),
            other => Err(Denied::Bad(format!("unknown action `{other}`"))),
        }
    }

    /// Inspection findings pushed by the platform or an inspector (the `measures decide`
    /// format, a JSON array): each is decided by the regulation engine; a finding about an
    /// enterprise outside the account's jurisdiction is refused like a malformed one; each
    /// decision with measures opens or updates its case, and the documents its measures call
    /// for are proposed as drafts. Returns the decisions, the refusals and the drafts.
    pub fn push_findings(&self, a: &Account, body: &str) -> Act<serde_json::Value> {
        require(a, HANDLERS)?;
        let mut l = self.lock()?;
        let cal = l.calendar(&self.closed_loop.calendar)?;
        let (decisions, mut errors) =
            pharmwatch_regulation::decide_json(body, &self.closed_loop.rules, &cal);
        let (mut accepted, mut drafts_proposed) = (Vec::new(), Vec::new());
        let who = actor(a);
        for (i, d) in decisions.into_iter().enumerate() {
            let region = case_region("", &d.enterprise_id);
            if !a.sees(&region, &d.enterprise_id) {
                errors.push(pharmwatch_regulation::FindingError {
                    index: Some(i),
                    case_id: Some(d.case_id.clone()),
                    field: Some("enterprise_id".into()),
                    reason: "outside your jurisdiction (不在管辖范围内)".into(),
                });
                continue;
            }
            if !d.measures.is_empty() {
                l.apply_decision(&pharmwatch_casework::ledger::Opening {
                    decision: &d,
                    on: today(),
                    origin: pharmwatch_casework::ledger::Origin::Finding,
                    actor: &a.username,
                    enterprise_name: "",
                    facts_json: "[]",
                    addressee_json: "{}",
                })?;
                let case_id = d.case_id.clone();
                let ent = d.enterprise_id.clone();
                l.immediate(|tx, path| {
                    audit::append_case(
                        tx,
                        path,
                        &who,
                        "finding_recorded",
                        &case_id,
                        &ent,
                        &format!("{} measure(s)", d.measures.len()),
                    )
                })?;
                for kind in d.measures.iter().filter_map(|m| document_for(m.code)) {
                    if let Some(id) = drafts::propose_now(&mut l, &d.case_id, kind, today(), &who)?
                    {
                        drafts_proposed.push(id);
                    }
                }
            }
            accepted.push(d);
        }
        if accepted.is_empty() && !errors.is_empty() {
            return Err(Denied::Bad(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
        Ok(serde_json::json!({
            "decisions": accepted,
            "errors": errors,
            "drafts_proposed": drafts_proposed,
        }))
    }

    /// Adds a comment to a case.
    pub fn comment(&self, a: &Account, case_id: &str, body: &str) -> Act<()> {
        require(
            a,
            &[Role::ProvinceSupervisor, Role::Inspector, Role::Approver],
        )?;
        if body.trim().is_empty() {
            return Err(Denied::Bad("意见不能为空 (the comment is empty)".into()));
        }
        let mut l = self.lock()?;
        let row = self.case_row(&l, a, case_id)?;
        let who = actor(a);
        l.immediate(|tx, path| {
            tx.execute(
                "INSERT INTO case_comments (case_id, author, at, body) VALUES (?1, ?2, ?3, ?4)",
                params![
                    case_id,
                    a.username,
                    chrono::Utc::now().to_rfc3339(),
                    body.trim()
                ],
            )
            .map_err(|e| sql_err(path, "comment", e))?;
            audit::append_case(
                tx,
                path,
                &who,
                "case_commented",
                case_id,
                &row.enterprise_id,
                body.trim(),
            )
        })?;
        Ok(())
    }

    /// Assigns a case to an inspector of its region.
    pub fn assign(&self, a: &Account, case_id: &str, inspector: &str) -> Act<()> {
        require(a, &[Role::ProvinceSupervisor, Role::Approver])?;
        let page = self.case_page(a, case_id)?;
        if !page.assignable.iter().any(|u| u == inspector) {
            return Err(Denied::Bad(format!(
                "{inspector} 不是该地区的检查员 (not an inspector of the case's region)"
            )));
        }
        let mut l = self.lock()?;
        let who = actor(a);
        l.immediate(|tx, path| {
            tx.execute(
                "UPDATE cases SET assignee = ?2 WHERE case_id = ?1",
                params![case_id, inspector],
            )
            .map_err(|e| sql_err(path, "assign", e))?;
            audit::append_case(
                tx,
                path,
                &who,
                "case_assigned",
                case_id,
                &page.row.enterprise_id,
                inspector,
            )
        })?;
        Ok(())
    }

    /// A draft the account may see.
    pub fn draft(&self, a: &Account, id: i64) -> Act<(Draft, String)> {
        require(a, STAFF)?;
        let l = self.lock()?;
        let d = drafts::get(l.conn(), l.path(), id).map_err(|_| Denied::NotFound)?;
        if !sees_draft(a, &d) {
            return Err(Denied::NotFound);
        }
        let preview = drafts::preview(
            &l,
            id,
            today(),
            self.closed_loop.notices.authority.as_ref(),
            &self.closed_loop.rules,
        )?;
        Ok((d, preview.html))
    }

    /// An action on a draft: `edit` (with `edits`), `submit`, `approve`, `return` or
    /// `withdraw` (with `reason`). Returns the document number on approval.
    pub fn draft_action(
        &self,
        a: &Account,
        id: i64,
        action: &str,
        edits: &Edits,
        reason: &str,
    ) -> Act<Option<String>> {
        let (d, _) = self.draft(a, id)?;
        let who = actor(a);
        let mut l = self.lock()?;
        match action {
            "edit" | "submit" | "withdraw" => require(a, HANDLERS)?,
            "approve" | "return" => require(a, &[Role::Approver])?,
            other => return Err(Denied::Bad(format!("unknown action `{other}`"))),
        }
        match action {
            "edit" => {
                drafts::edit(&mut l, d.draft_id, &who, edits)?;
            }
            "submit" => {
                drafts::submit(&mut l, d.draft_id, &who)?;
            }
            "withdraw" => {
                drafts::withdraw(&mut l, d.draft_id, &who, reason)?;
            }
            "return" => {
                drafts::send_back(&mut l, d.draft_id, &who, reason)?;
            }
            _ => {
                let authority = self
                    .closed_loop
                    .notices
                    .authority()
                    .map_err(|e| Denied::Conflict(e.to_string()))?;
                let (doc, _) = drafts::approve(
                    &mut l,
                    d.draft_id,
                    &who,
                    today(),
                    authority,
                    &self.closed_loop.rules,
                    Some(&self.out),
                )?;
                return Ok(Some(doc.number));
            }
        }
        Ok(None)
    }

    /// The documents of the lead's enterprise.
    pub fn enterprise_notices(&self, a: &Account) -> Act<Vec<NoticeRow>> {
        require(a, &[Role::EnterpriseLead])?;
        let l = self.lock()?;
        let path = l.path();
        let mut st = l
            .conn()
            .prepare(ENTERPRISE_NOTICES)
            .map_err(|e| Denied::from(sql_err(path, "notices", e)))?;
        let v = st
            .query_map([&a.enterprise_id], |r| {
                let kind: String = r.get(1)?;
                Ok(NoticeRow {
                    number: r.get(0)?,
                    title: pharmwatch_casework::notices::DocumentKind::parse(&kind)
                        .map_or(
                            "执法文书",
                            pharmwatch_casework::notices::DocumentKind::title,
                        )
                        .to_string(),
                    kind,
                    case_id: r.get(2)?,
                    issued_on: r.get(3)?,
                    received_at: r.get(4)?,
                })
            })
            .map_err(|e| Denied::from(sql_err(path, "notices", e)))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Denied::from(sql_err(path, "notices", e)))?;
        Ok(v)
    }

    /// One notice of the lead's enterprise: its row and HTML text.
    pub fn enterprise_notice(&self, a: &Account, number: &str) -> Act<(NoticeRow, String)> {
        let row = self
            .enterprise_notices(a)?
            .into_iter()
            .find(|n| n.number == number)
            .ok_or(Denied::NotFound)?;
        let l = self.lock()?;
        let (html, _) = l.document_text(number)?.ok_or(Denied::NotFound)?;
        Ok((row, html))
    }

    /// The lead confirms receipt of a notice of its enterprise (送达): the explicit act.
    pub fn confirm_receipt(&self, a: &Account, number: &str) -> Act<Ack> {
        self.enterprise_notice(a, number)?;
        let mut l = self.lock()?;
        Ok(service::acknowledge(
            &mut l,
            &a.enterprise_id,
            number,
            today(),
            &Actor {
                name: format!("{}（{}）", a.display_name, a.username),
                role: a.role.as_str().to_string(),
            },
        )?)
    }

    /// Stores an attachment of a case (content-addressed) and, for a lead's rectification
    /// report, records `report_received`.
    pub fn attach(
        &self,
        a: &Account,
        case_id: &str,
        file_name: &str,
        content_type: &str,
        bytes: &[u8],
        note: &str,
    ) -> Act<i64> {
        let purpose = match a.role {
            Role::EnterpriseLead => "rectification_report",
            Role::ProvinceSupervisor | Role::Inspector => "evidence",
            _ => return Err(Denied::Forbidden),
        };
        let (kind, ext) = sniff(bytes).ok_or_else(|| {
            Denied::Bad(
                "只接受 PDF、JPEG、PNG 文件 (only PDF, JPEG and PNG files are accepted)".into(),
            )
        })?;
        if bytes.len() > MAX_ATTACHMENT_BYTES {
            return Err(Denied::Bad(
                "文件超过 10 MB (the file exceeds 10 MB)".into(),
            ));
        }
        if !content_type.is_empty()
            && content_type != kind
            && content_type != "application/octet-stream"
        {
            return Err(Denied::Bad(format!(
                "文件类型不符：声明 {content_type}，实际 {kind} (declared type does not match the content)"
            )));
        }
        let mut l = self.lock()?;
        let enterprise = match a.role {
            Role::EnterpriseLead => {
                let case = l.show(case_id).map_err(|_| Denied::NotFound)?;
                if case.case.enterprise_id != a.enterprise_id {
                    return Err(Denied::NotFound);
                }
                if case.case.status != "open" {
                    return Err(Denied::Conflict("案件已结案 (the case is closed)".into()));
                }
                case.case.enterprise_id
            }
            _ => self.case_row(&l, a, case_id)?.enterprise_id,
        };
        let sha = crate::accounts::digest_bytes(bytes);
        let dir = self.out.join("attachments").join(&sha[..2]);
        std::fs::create_dir_all(&dir).map_err(|e| Denied::Internal(e.to_string()))?;
        let file = dir.join(format!("{sha}.{ext}"));
        if !file.exists() {
            let tmp = dir.join(format!(".{sha}.tmp"));
            std::fs::write(&tmp, bytes).map_err(|e| Denied::Internal(e.to_string()))?;
            std::fs::rename(&tmp, &file).map_err(|e| Denied::Internal(e.to_string()))?;
        }
        let safe_name: String = file_name
            .chars()
            .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
            .take(120)
            .collect();
        let who = actor(a);
        let id = l.immediate(|tx, path| {
            let id: i64 = tx
                .query_row(
                    "INSERT INTO attachments (case_id, sha256, file_name, content_type, size_bytes,
                                          purpose, uploaded_by, uploaded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING attachment_id",
                    params![
                        case_id,
                        sha,
                        safe_name,
                        kind,
                        bytes.len() as i64,
                        purpose,
                        a.username,
                        chrono::Utc::now().to_rfc3339()
                    ],
                    |r| r.get(0),
                )
                .map_err(|e| sql_err(path, "attachment", e))?;
            audit::append(
                tx,
                path,
                &who,
                "attachment_uploaded",
                Subject {
                    target: &format!("attachment:{id}"),
                    case_id: Some(case_id),
                    enterprise_id: Some(&enterprise),
                },
                &format!("{safe_name} ({kind}, {} bytes, sha256 {sha})", bytes.len()),
            )?;
            Ok(id)
        })?;
        if purpose == "rectification_report" {
            let text = if note.trim().is_empty() {
                format!("整改报告附件 {safe_name}")
            } else {
                format!("{}（附件 {safe_name}）", note.trim())
            };
            l.record(
                case_id,
                RecordedEvent::ReportReceived,
                &format!("{}（{}）", a.display_name, a.username),
                &text,
                today(),
                false,
            )?;
        }
        Ok(id)
    }

    /// An attachment's bytes, for an account that may see its case.
    pub fn attachment(&self, a: &Account, id: i64) -> Act<(AttachmentRow, Vec<u8>)> {
        let l = self.lock()?;
        let (case_id, row) = l
            .conn()
            .query_row(
                "SELECT case_id, attachment_id, file_name, content_type, size_bytes, purpose,
                        uploaded_by, uploaded_at, sha256 FROM attachments WHERE attachment_id = ?1",
                [id],
                |r| Ok((r.get::<_, String>(0)?, attachment_row(r, 1)?)),
            )
            .optional()
            .map_err(|e| Denied::from(sql_err(l.path(), "attachment", e)))?
            .ok_or(Denied::NotFound)?;
        if a.role == Role::EnterpriseLead {
            let case = l.show(&case_id).map_err(|_| Denied::NotFound)?;
            if case.case.enterprise_id != a.enterprise_id {
                return Err(Denied::NotFound);
            }
        } else {
            self.case_row(&l, a, &case_id)?;
        }
        let ext = match row.content_type.as_str() {
            "application/pdf" => "pdf",
            "image/jpeg" => "jpg",
            _ => "png",
        };
        let file = self
            .out
            .join("attachments")
            .join(&row.sha256[..2])
            .join(format!("{}.{ext}", row.sha256));
        let bytes = std::fs::read(&file)
            .map_err(|e| Denied::Internal(format!("{}: {e}", file.display())))?;
        Ok((row, bytes))
    }

    /// The latest entries of the audit trail (supervisors and auditors).
    pub fn audit_trail(&self, a: &Account) -> Act<Vec<audit::AuditEntry>> {
        require(a, &[Role::ProvinceSupervisor, Role::Auditor])?;
        let l = self.lock()?;
        Ok(audit::recent(l.conn(), l.path(), 500)?)
    }
}

fn attachment_row(
    r: &pharmwatch_core::db::Row,
    o: usize,
) -> pharmwatch_core::db::DbResult<AttachmentRow> {
    Ok(AttachmentRow {
        attachment_id: r.get(o)?,
        file_name: r.get(o + 1)?,
        content_type: r.get(o + 2)?,
        size_bytes: r.get(o + 3)?,
        purpose: r.get(o + 4)?,
        uploaded_by: r.get(o + 5)?,
        uploaded_at: r.get(o + 6)?,
        sha256: r.get(o + 7)?,
    })
}

fn attachments_of(
    conn: &pharmwatch_core::db::Conn,
    path: &Path,
    case_id: &str,
) -> Act<Vec<AttachmentRow>> {
    let mut st = conn
        .prepare(
            "SELECT attachment_id, file_name, content_type, size_bytes, purpose, uploaded_by,
                    uploaded_at, sha256 FROM attachments WHERE case_id = ?1 ORDER BY attachment_id",
        )
        .map_err(|e| Denied::from(sql_err(path, "attachments", e)))?;
    let v = st
        .query_map([case_id], |r| attachment_row(r, 0))
        .map_err(|e| Denied::from(sql_err(path, "attachments", e)))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Denied::from(sql_err(path, "attachments", e)))?;
    Ok(v)
}

/// The document a measure is served with, if any (the first kind that serves it, in ledger
/// order: a suspension gets its decision, not the lifting notice).
/// Writes one audit entry about a case, in a transaction of its own (after a ledger step that
/// committed its own).
fn audit_case(
    l: &mut Ledger,
    a: &Account,
    case_id: &str,
    enterprise_id: &str,
    action: &str,
    detail: &str,
) -> Act<()> {
    let who = actor(a);
    l.immediate(|tx, path| {
        audit::append_case(tx, path, &who, action, case_id, enterprise_id, detail)
    })?;
    Ok(())
}

fn document_for(
    code: pharmwatch_regulation::MeasureCode,
) -> Option<pharmwatch_casework::notices::DocumentKind> {
    pharmwatch_casework::notices::DocumentKind::ALL
        .into_iter()
        .find(|k| k.serves(code))
}

/// The type of a file from its first bytes: PDF, JPEG or PNG, else none.
pub fn sniff(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    if bytes.starts_with(b"%PDF-") {
        Some(("application/pdf", "pdf"))
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("image/jpeg", "jpg"))
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some(("image/png", "png"))
    } else {
        None
    }
}
