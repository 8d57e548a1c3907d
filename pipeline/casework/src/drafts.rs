//! Drafts (文书草稿) and their approval by a person (maker–checker): the nightly job, or an
//! event of the closed loop such as a lifting, *proposes* a document; an inspector reviews it,
//! may add a statement to the facts or leave out a risk item, and submits it; an approver
//! (负责人) approves it — only then is the number taken and the delivery queued — or returns it
//! with a reason.
//!
//! Invariants:
//! - a draft has no number; the number is taken on approval, in the one IMMEDIATE transaction
//!   that stores the document (with its delivery row and `notice_issued` event) and marks the
//!   draft approved, so numbers stay gap-free and an approval that fails consumes none;
//! - the approver is never the person who submitted or last edited the draft (four eyes);
//! - a document is issued only under a configured, valid authority;
//! - at most one live draft (proposed, submitted or returned) per case and kind;
//! - every step is written to the audit trail in its own transaction.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use pharmwatch_core::db::{Conn as Connection, OptionalExtension, Transaction};
use pharmwatch_core::params;
use serde::Serialize;

use crate::audit::{self, Actor, Subject};
use crate::error::{CaseworkError, Result};
use crate::ledger::{IssuedDocument, Ledger};
use crate::notices::{self, AuthorityConfig, DocumentKind, Edits, Issuing, Rendered};
use pharmwatch_core::error::CoreError;
use pharmwatch_core::store::sql_err;
use pharmwatch_regulation::Rules;

/// Where a draft stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DraftState {
    /// Proposed by the system, awaiting an inspector.
    Proposed,
    /// Submitted by an inspector, awaiting an approver.
    Submitted,
    /// Approved: the document is issued.
    Approved,
    /// Returned by the approver to the inspector, with a reason.
    Returned,
    /// Withdrawn: no document will be issued.
    Withdrawn,
}

impl DraftState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proposed => "proposed",
            Self::Submitted => "submitted",
            Self::Approved => "approved",
            Self::Returned => "returned",
            Self::Withdrawn => "withdrawn",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "submitted" => Self::Submitted,
            "approved" => Self::Approved,
            "returned" => Self::Returned,
            "withdrawn" => Self::Withdrawn,
            _ => Self::Proposed,
        }
    }

    /// The Chinese name.
    pub fn name_zh(self) -> &'static str {
        match self {
            Self::Proposed => "待审核",
            Self::Submitted => "待审批",
            Self::Approved => "已签发",
            Self::Returned => "已退回",
            Self::Withdrawn => "已撤回",
        }
    }
}

/// A draft with its case's enterprise and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Draft {
    /// Id.
    pub draft_id: i64,
    /// Case.
    pub case_id: String,
    /// Kind (`caution_notice`, …).
    pub kind: String,
    /// Title of the kind (行政告诫书 …).
    pub title: String,
    /// State.
    pub state: DraftState,
    /// Business date proposed.
    pub proposed_on: String,
    /// Who proposed it.
    pub proposed_by: String,
    /// The inspector's edits.
    pub edits: Edits,
    /// Who last edited it.
    pub edited_by: String,
    /// Who submitted it.
    pub submitted_by: String,
    /// When.
    pub submitted_at: Option<String>,
    /// Who approved or returned it.
    pub decided_by: String,
    /// When.
    pub decided_at: Option<String>,
    /// Why it was returned or withdrawn.
    pub return_reason: String,
    /// The document number once approved.
    pub document_no: Option<String>,
    /// The enterprise.
    pub enterprise_id: String,
    /// Its name.
    pub enterprise_name: String,
    /// The case's region (GB/T 2260).
    pub region_code: String,
}

const SELECT: &str = "SELECT d.draft_id, d.case_id, d.kind, d.state, d.proposed_on, d.proposed_by,
        d.note, d.excluded_items, d.edited_by, d.submitted_by, d.submitted_at, d.decided_by,
        d.decided_at, d.return_reason, d.document_no, c.enterprise_id, c.enterprise_name,
        c.region_code, d.particulars
     FROM drafts d JOIN cases c ON c.case_id = d.case_id";

fn from_row(r: &pharmwatch_core::db::Row) -> pharmwatch_core::db::DbResult<Draft> {
    let kind: String = r.get(2)?;
    let excluded: String = r.get(7)?;
    Ok(Draft {
        draft_id: r.get(0)?,
        case_id: r.get(1)?,
        title: DocumentKind::parse(&kind)
            .map_or("执法文书", DocumentKind::title)
            .to_string(),
        kind,
        state: DraftState::parse(&r.get::<_, String>(3)?),
        proposed_on: r.get(4)?,
        proposed_by: r.get(5)?,
        edits: Edits {
            note: r.get(6)?,
            excluded_items: serde_json::from_str(&excluded).unwrap_or_default(),
            particulars: serde_json::from_str(&r.get::<_, String>(18)?).unwrap_or_default(),
        },
        edited_by: r.get(8)?,
        submitted_by: r.get(9)?,
        submitted_at: r.get(10)?,
        decided_by: r.get(11)?,
        decided_at: r.get(12)?,
        return_reason: r.get(13)?,
        document_no: r.get(14)?,
        enterprise_id: r.get(15)?,
        enterprise_name: r.get(16)?,
        region_code: r.get(17)?,
    })
}

/// One draft.
pub fn get(conn: &Connection, path: &Path, draft_id: i64) -> Result<Draft> {
    conn.query_row(
        &format!("{SELECT} WHERE d.draft_id = ?1"),
        [draft_id],
        from_row,
    )
    .optional()
    .map_err(|e| sql_err(path, "draft", e))?
    .ok_or_else(|| CaseworkError::ledger("-", format!("no draft {draft_id}")))
}

/// The drafts in any of `states` (all when empty), oldest first.
pub fn list(conn: &Connection, path: &Path, states: &[DraftState]) -> Result<Vec<Draft>> {
    let mut st = conn
        .prepare(&format!("{SELECT} ORDER BY d.draft_id"))
        .map_err(|e| sql_err(path, "drafts", e))?;
    let all = st
        .query_map([], from_row)
        .map_err(|e| sql_err(path, "drafts", e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| sql_err(path, "drafts", e))?;
    Ok(all
        .into_iter()
        .filter(|d| states.is_empty() || states.contains(&d.state))
        .collect())
}

/// The drafts of a case, oldest first.
pub fn of_case(conn: &Connection, path: &Path, case_id: &str) -> Result<Vec<Draft>> {
    let mut st = conn
        .prepare(&format!(
            "{SELECT} WHERE d.case_id = ?1 ORDER BY d.draft_id"
        ))
        .map_err(|e| sql_err(path, "drafts", e))?;
    let v = st
        .query_map([case_id], from_row)
        .map_err(|e| sql_err(path, "drafts", e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| sql_err(path, "drafts", e))?;
    Ok(v)
}

/// Proposes a draft of `kind` for `case_id` inside the caller's transaction; `None` when a
/// live draft of that kind is already there.
pub fn propose(
    tx: &Transaction<'_>,
    path: &Path,
    case_id: &str,
    kind: DocumentKind,
    on: NaiveDate,
    actor: &Actor,
) -> Result<Option<i64>> {
    let id: Option<i64> = tx
        .query_row(
            "INSERT INTO drafts (case_id, kind, state, proposed_on, proposed_by)
             SELECT ?1, ?2, 'proposed', ?3, ?4
             WHERE NOT EXISTS (SELECT 1 FROM drafts WHERE case_id = ?1 AND kind = ?2
                               AND state IN ('proposed', 'submitted', 'returned'))
             RETURNING draft_id",
            params![case_id, kind.as_str(), on.to_string(), actor.name],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| sql_err(path, "propose draft", e))?;
    let Some(id) = id else {
        return Ok(None);
    };
    audit::append(
        tx,
        path,
        actor,
        "draft_proposed",
        Subject {
            target: &format!("draft:{id}"),
            case_id: Some(case_id),
            enterprise_id: None,
        },
        kind.title(),
    )?;
    Ok(Some(id))
}

/// Proposes a draft in a transaction of its own (see [`propose`]).
pub fn propose_now(
    ledger: &mut Ledger,
    case_id: &str,
    kind: DocumentKind,
    on: NaiveDate,
    actor: &Actor,
) -> Result<Option<i64>> {
    ledger.immediate(|tx, path| propose(tx, path, case_id, kind, on, actor))
}

/// Proposes by hand a draft of `kind` for `case_id` (`pharmwatch case propose`): the case must
/// be open and hold the measure the document serves (a caution for the caution letter, an
/// interview for its notice, a sales suspension for the decision, a lifted suspension for the
/// lifting notice, a referral for the penalty documents, each at its stage of the procedure);
/// a live draft of that kind is refused. The draft then goes the way of every
/// draft: an inspector edits and submits it, an approver approves it, and only then is it
/// numbered and issued. Returns the draft id.
pub fn propose_by_hand(
    ledger: &mut Ledger,
    case_id: &str,
    kind: DocumentKind,
    on: NaiveDate,
    actor: &Actor,
) -> Result<i64> {
    let d = ledger.show(case_id)?;
    if d.case.status == "closed" {
        return Err(CaseworkError::ledger(
            case_id,
            "is closed: no document to propose",
        ));
    }
    let ok = match kind {
        DocumentKind::LiftingNotice => d.events.iter().any(|e| e.event == "lifted"),
        k => d
            .measures
            .iter()
            .any(|m| crate::ledger::parse_code(&m.code).is_some_and(|c| k.serves(c))),
    };
    if !ok {
        return Err(CaseworkError::ledger(
            case_id,
            format!(
                "has no measure a {} serves ({})",
                kind.title(),
                match kind {
                    DocumentKind::CautionNotice => "caution",
                    DocumentKind::InterviewNotice => "interview",
                    DocumentKind::SuspensionDecision => "suspend_sales_*",
                    DocumentKind::LiftingNotice => "a lifted suspension",
                    _ => "case_referral: refer the case first",
                }
            ),
        ));
    }
    if kind.is_penalty() {
        crate::penalty::may_issue(&d, kind)?;
    }
    propose_now(ledger, case_id, kind, on, actor)?.ok_or_else(|| {
        CaseworkError::ledger(
            case_id,
            format!("already has a live draft of its {}", kind.title()),
        )
    })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn refuse(d: &Draft, why: &str) -> CaseworkError {
    CaseworkError::ledger(&d.case_id, format!("draft {}: {why}", d.draft_id))
}

fn subject(d: &Draft) -> (String, Subject<'_>) {
    (
        format!("draft:{}", d.draft_id),
        Subject {
            target: "",
            case_id: Some(&d.case_id),
            enterprise_id: Some(&d.enterprise_id),
        },
    )
}

fn log(
    tx: &Transaction<'_>,
    path: &Path,
    d: &Draft,
    actor: &Actor,
    action: &str,
    detail: &str,
) -> Result<()> {
    let (target, mut s) = subject(d);
    s.target = &target;
    audit::append(tx, path, actor, action, s, detail)
}

/// Refuses a draft that is not with the inspector (proposed or returned).
fn in_inspector_hands(d: &Draft, verb: &str) -> Result<()> {
    if matches!(d.state, DraftState::Proposed | DraftState::Returned) {
        Ok(())
    } else {
        Err(refuse(
            d,
            &format!(
                "is {}: only a proposed or returned draft is {verb}",
                d.state.as_str()
            ),
        ))
    }
}

/// An inspector's edits of a proposed or returned draft.
pub fn edit(ledger: &mut Ledger, draft_id: i64, actor: &Actor, edits: &Edits) -> Result<Draft> {
    ledger.immediate(|tx, path| {
        let d = get(tx, path, draft_id)?;
        in_inspector_hands(&d, "edited")?;
        let facts = ledger_facts(tx, path, &d.case_id)?;
        if let Some(bad) = edits.excluded_items.iter().find(|i| **i >= facts) {
            return Err(refuse(
                &d,
                &format!("has no risk item {bad} to leave out ({facts} items)"),
            ));
        }
        if facts > 0 && edits.excluded_items.len() >= facts && edits.note.trim().is_empty() {
            return Err(refuse(
                &d,
                "every risk item is left out and no fact is stated: withdraw the draft instead",
            ));
        }
        let kind = DocumentKind::parse(&d.kind);
        if !kind.is_some_and(DocumentKind::is_penalty) && !edits.particulars.is_empty() {
            return Err(refuse(
                &d,
                "a penalty, its basis or a hearing place belong to a penalty document only",
            ));
        }
        let excluded = serde_json::to_string(&edits.excluded_items)
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        let particulars = serde_json::to_string(&edits.particulars)
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        tx.execute(
            "UPDATE drafts SET note = ?2, excluded_items = ?3, edited_by = ?4, particulars = ?5
             WHERE draft_id = ?1",
            params![
                draft_id,
                edits.note.trim(),
                excluded,
                actor.name,
                particulars
            ],
        )
        .map_err(|e| sql_err(path, "edit draft", e))?;
        log(tx, path, &d, actor, "draft_edited", &edit_detail(edits))?;
        get(tx, path, draft_id)
    })
}

/// The audit line of an edit: the note, the items left out and, on a penalty document, what
/// the case officer wrote.
fn edit_detail(edits: &Edits) -> String {
    let mut detail = format!(
        "note: {}; left out: {:?}",
        edits.note.trim(),
        edits.excluded_items
    );
    let p = &edits.particulars;
    if !p.is_empty() {
        detail.push_str(&format!(
            "; penalty: {}; basis: {}; violated: {}; hearing place: {}",
            p.penalty.trim(),
            p.penalty_basis.trim(),
            p.violated.trim(),
            p.hearing_place.trim()
        ));
    }
    detail
}

fn ledger_facts(conn: &Connection, path: &Path, case_id: &str) -> Result<usize> {
    let json: String = conn
        .query_row(
            "SELECT facts_json FROM cases WHERE case_id = ?1",
            [case_id],
            |r| r.get(0),
        )
        .map_err(|e| sql_err(path, "case facts", e))?;
    Ok(serde_json::from_str::<Vec<serde_json::Value>>(&json).map_or(0, |v| v.len()))
}

/// An inspector submits a proposed or returned draft for approval.
pub fn submit(ledger: &mut Ledger, draft_id: i64, actor: &Actor) -> Result<Draft> {
    ledger.immediate(|tx, path| {
        let d = get(tx, path, draft_id)?;
        in_inspector_hands(&d, "submitted")?;
        if let Some(kind) = DocumentKind::parse(&d.kind) {
            kind.check_particulars(&d.edits.particulars)
                .map_err(|why| refuse(&d, &why))?;
        }
        tx.execute(
            "UPDATE drafts SET state = 'submitted', submitted_by = ?2, submitted_at = ?3,
                               decided_by = '', decided_at = NULL
             WHERE draft_id = ?1",
            params![draft_id, actor.name, now()],
        )
        .map_err(|e| sql_err(path, "submit draft", e))?;
        log(tx, path, &d, actor, "draft_submitted", "")?;
        get(tx, path, draft_id)
    })
}

/// An approver returns a submitted draft to the inspector, with a reason.
pub fn send_back(ledger: &mut Ledger, draft_id: i64, actor: &Actor, reason: &str) -> Result<Draft> {
    close(ledger, draft_id, actor, reason, DraftState::Returned)
}

/// Withdraws a live draft: no document will be issued for it.
pub fn withdraw(ledger: &mut Ledger, draft_id: i64, actor: &Actor, reason: &str) -> Result<Draft> {
    close(ledger, draft_id, actor, reason, DraftState::Withdrawn)
}

/// Returns (from submitted) or withdraws (from any live state) a draft, with its reason.
fn close(
    ledger: &mut Ledger,
    draft_id: i64,
    actor: &Actor,
    reason: &str,
    to: DraftState,
) -> Result<Draft> {
    let (word, allowed): (&str, &[DraftState]) = match to {
        DraftState::Returned => ("return", &[DraftState::Submitted]),
        _ => (
            "withdrawal",
            &[
                DraftState::Proposed,
                DraftState::Submitted,
                DraftState::Returned,
            ],
        ),
    };
    if reason.trim().is_empty() {
        return Err(CaseworkError::ledger(
            "-",
            format!("draft {draft_id}: a {word} needs its reason"),
        ));
    }
    ledger.immediate(|tx, path| {
        let d = get(tx, path, draft_id)?;
        if !allowed.contains(&d.state) {
            return Err(refuse(
                &d,
                &format!("is {}: no {word} from there", d.state.as_str()),
            ));
        }
        tx.execute(
            "UPDATE drafts SET state = ?5, decided_by = ?2, decided_at = ?3, return_reason = ?4
             WHERE draft_id = ?1",
            params![draft_id, actor.name, now(), reason.trim(), to.as_str()],
        )
        .map_err(|e| sql_err(path, word, e))?;
        log(
            tx,
            path,
            &d,
            actor,
            &format!("draft_{}", to.as_str()),
            reason.trim(),
        )?;
        get(tx, path, draft_id)
    })
}

/// An approver approves a submitted draft: the number is taken, the document stored with its
/// delivery row and `notice_issued` event, and the draft marked approved — one transaction.
/// The files are written under `out/notices/` after the commit when `out` is given.
pub fn approve(
    ledger: &mut Ledger,
    draft_id: i64,
    actor: &Actor,
    issued_on: NaiveDate,
    authority: &AuthorityConfig,
    rules: &Rules,
    out: Option<&Path>,
) -> Result<(IssuedDocument, Option<PathBuf>)> {
    authority.validate()?;
    let case_id = get(ledger.conn(), ledger.path(), draft_id)?.case_id;
    let case = ledger.show(&case_id)?;
    let (doc, rendered) = ledger.immediate(|tx, path| {
        let d = get(tx, path, draft_id)?;
        if d.state != DraftState::Submitted {
            return Err(refuse(&d, &format!("is {}: only a submitted draft is approved", d.state.as_str())));
        }
        if d.submitted_by == actor.name || d.edited_by == actor.name {
            return Err(refuse(&d, "the approver must be another person than the inspector who edited or submitted it (审核与审批分离)"));
        }
        let kind = DocumentKind::parse(&d.kind)
            .ok_or_else(|| refuse(&d, &format!("unknown kind {}", d.kind)))?;
        let (doc, rendered) = notices::issue_in(
            tx,
            path,
            &case,
            &Issuing {
                kind,
                issued_on,
                actor: &actor.name,
                officer: &d.submitted_by,
                authority,
                rules,
                edits: &d.edits,
            },
        )?;
        tx.execute(
            "UPDATE drafts SET state = 'approved', decided_by = ?2, decided_at = ?3,
                               document_no = ?4
             WHERE draft_id = ?1",
            params![draft_id, actor.name, now(), doc.number],
        )
        .map_err(|e| sql_err(path, "approve draft", e))?;
        log(tx, path, &d, actor, "draft_approved", &doc.number)?;
        Ok((doc, rendered))
    })?;
    let written = match out {
        Some(dir) => Some(notices::write_files(dir, &doc, &rendered)?),
        None => None,
    };
    Ok((doc, written))
}

/// The draft as it would read if approved today, with `（文号待审批后生成）` for the number.
/// Without a configured authority the preview names none (the approval will refuse).
pub fn preview(
    ledger: &Ledger,
    draft_id: i64,
    on: NaiveDate,
    authority: Option<&AuthorityConfig>,
    rules: &Rules,
) -> Result<Rendered> {
    let d = get(ledger.conn(), ledger.path(), draft_id)?;
    let case = ledger.show(&d.case_id)?;
    let kind = DocumentKind::parse(&d.kind)
        .ok_or_else(|| refuse(&d, &format!("unknown kind {}", d.kind)))?;
    let unset = AuthorityConfig {
        name: "（签发机关未配置）".into(),
        seal_name: "（未配置）".into(),
        abbreviation: String::new(),
        contact_department: "（未配置）".into(),
        contact_phone: "（未配置）".into(),
        address: String::new(),
    };
    let number = match &d.document_no {
        Some(n) => n.clone(),
        None => "（文号待审批后生成）".to_string(),
    };
    notices::render(
        &number,
        &case,
        &Issuing {
            kind,
            issued_on: on,
            actor: "",
            officer: &d.submitted_by,
            authority: authority.unwrap_or(&unset),
            rules,
            edits: &d.edits,
        },
    )
}
