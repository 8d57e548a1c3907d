//! The nightly job's closed loop (体检反馈—整改复诊): after the risk list is written, sweep the
//! case ledger on the run date (missed deadlines escalate), then *propose* the risk-list rows the
//! notices configuration selects: an inspector confirms a row in the workbench, which opens its
//! case ([`open_case`]) and proposes its documents as drafts that an approver approves
//! ([`crate::drafts`]). Only with `issue = "direct"` (a bureau's explicit choice) does the job
//! open the cases and issue numbered documents itself.
//!
//! Invariants: an enterprise with an open risk-list case gets no second notice while that case
//! is open (the case is followed, not repeated); the measures come from the regulation crate's
//! engine (a remote finding: 赣药监 第十条(四) caution with the 第二十二条 report deadline, and
//! for a first violation at a minor grade the 蒙药监 (六) observation period and fault-tolerance
//! list); nothing is issued without a configured authority; every notice is numbered and
//! recorded in the same transaction as its ledger event; a
//! deadline past the calendar's last year never stops the night: the case opens with its due
//! date pending the calendar, and the summary says so. A run stopped anywhere (a crash, a
//! `kill -9`) and run again ends as one clean run: a case opens in one transaction (case,
//! measures, marks, audit line), its row's case gets the documents it still lacks, and the
//! files of documents numbered before the stop are written again from the store.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use pharmwatch_regulation::{Finding, MeasureCode, Rules, decide};
use serde::Serialize;

use crate::audit::{self, Actor, Subject};
use crate::drafts;
use crate::error::Result;
use crate::ledger::{Ledger, NIGHTLY_ACTOR, Opening, Origin, SweepSummary};
use crate::notices::{self, Addressee, DocumentKind, IssueMode, NoticesConfig};
use pharmwatch_core::error::CoreError;
use pharmwatch_core::risk::RiskRow;
use pharmwatch_regulation::Calendar;

/// Settings of the closed loop of a nightly run.
#[derive(Debug, Clone)]
pub struct ClosedLoop {
    /// Which rows get notices, and the authority.
    pub notices: NoticesConfig,
    /// The measures rules.
    pub rules: Rules,
    /// The working-day calendar.
    pub calendar: Calendar,
    /// The run date (sweep day and notice date); default: the last business day of the run.
    pub run_date: Option<NaiveDate>,
}

/// What the closed loop did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClosedLoopSummary {
    /// The run date.
    pub run_date: Option<NaiveDate>,
    /// The sweep of the ledger.
    pub sweep: SweepSummary,
    /// Risk-list rows the configuration selected (one per enterprise).
    pub selected: usize,
    /// Enterprises skipped because a risk-list case of theirs is still open.
    pub already_open: usize,
    /// Cases opened.
    pub cases_opened: usize,
    /// Documents issued (`direct` mode only): number and file.
    pub documents: Vec<(String, String)>,
    /// Rows proposed for a notice (draft mode): they wait on the risk list for an inspector
    /// to confirm (which opens the case and proposes the draft) or dismiss.
    pub proposed: usize,
    /// Measures of the cases opened whose due date waits for a year the calendar does not
    /// cover yet, and that year (the earliest).
    pub deadlines_pending: usize,
    /// The year those deadlines wait for.
    pub pending_year: Option<i32>,
    /// Documents whose files were written again from the store (an earlier run stopped
    /// between numbering a document and writing its files).
    pub restored_files: usize,
}

/// The case id of a risk-list row: `RL-<date>-<credit code>`.
pub fn case_id(row: &RiskRow) -> String {
    format!("RL-{}-{}", row.date, row.enterprise_id)
}

/// Runs the closed loop for the rows of a nightly run in output directory `out`.
pub fn run(
    out: &Path,
    rows: &[RiskRow],
    last_day: NaiveDate,
    cl: &ClosedLoop,
) -> Result<ClosedLoopSummary> {
    let today = cl.run_date.unwrap_or(last_day);
    // Refuse before anything is written: direct issuing needs the authority it issues under.
    let direct = match cl.notices.issue {
        IssueMode::Direct if cl.notices.enabled => Some(cl.notices.authority()?),
        _ => None,
    };
    let system = Actor::system(NIGHTLY_ACTOR);
    let mut ledger = Ledger::open(out)?;
    // Documents numbered and stored by a run that stopped before writing their files.
    let restored_files = notices::restore_files(&ledger, out)?;
    let mut summary = ClosedLoopSummary {
        run_date: Some(today),
        sweep: ledger.sweep(today, &cl.rules, &cl.calendar, NIGHTLY_ACTOR)?,
        restored_files,
        ..Default::default()
    };
    // One row per enterprise: its highest-scoring selected row (latest day on ties).
    let mut chosen: BTreeMap<&str, &RiskRow> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| cl.notices.selects(&r.grade, &r.indicators))
    {
        let keep = chosen
            .get(r.enterprise_id.as_str())
            .is_none_or(|c| (r.score, r.date) > (c.score, c.date));
        if keep {
            chosen.insert(&r.enterprise_id, r);
        }
    }
    summary.selected = chosen.len();
    for row in chosen.values() {
        let open = ledger.open_cases_of(&row.enterprise_id)?;
        if let Some(c) = open.iter().find(|c| c.origin == "risk_list") {
            // This row's own case (the night run again after a crash): the documents it lacks
            // are issued now, numbered after those already issued.
            if let Some(authority) = direct.filter(|_| c.case_id == case_id(row)) {
                let papers = complete_papers(
                    &mut ledger,
                    &c.case_id,
                    today,
                    &system,
                    Some(authority),
                    Some(out),
                    &cl.rules,
                )?;
                summary.documents.extend(papers.documents);
            }
            summary.already_open += 1;
            continue;
        }
        // Draft mode: the rows are proposals on the risk list; an inspector confirms one in
        // the workbench, which opens its case and proposes its documents.
        let Some(authority) = direct else {
            summary.proposed += 1;
            continue;
        };
        let Some(opened) = open_case(
            &mut ledger,
            row,
            today,
            cl,
            &system,
            Some(authority),
            Some(out),
        )?
        else {
            continue;
        };
        summary.cases_opened += 1;
        for y in opened.pending_years {
            summary.deadlines_pending += 1;
            summary.pending_year = Some(summary.pending_year.map_or(y, |p| p.min(y)));
        }
        summary.documents.extend(opened.documents);
    }
    Ok(summary)
}

/// What [`open_case`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Opened {
    /// The case.
    pub case_id: String,
    /// For each measure whose due date waits for the calendar, the year it needs.
    pub pending_years: Vec<i32>,
    /// Documents issued (direct mode): number and file.
    pub documents: Vec<(String, String)>,
    /// Drafts proposed: id and kind.
    pub drafts: Vec<(i64, String)>,
}

/// Opens the case of risk-list row `row` on `today` as `actor` — the inspector who confirmed
/// the row in the workbench, or the job in `direct` mode — with the measures of the regulation
/// engine, and issues its documents under `direct`'s authority or proposes them as drafts.
/// `None` when the case already exists.
pub fn open_case(
    ledger: &mut Ledger,
    row: &RiskRow,
    today: NaiveDate,
    cl: &ClosedLoop,
    actor: &Actor,
    direct: Option<&notices::AuthorityConfig>,
    out: Option<&Path>,
) -> Result<Option<Opened>> {
    let first = !ledger.has_history(&row.enterprise_id)?;
    let minor = first && cl.notices.minor_grades.contains(&row.grade);
    let id = case_id(row);
    let finding: Finding = serde_json::from_value(serde_json::json!({
        "case_id": id,
        "enterprise_id": row.enterprise_id,
        "inspection_date": today,
        "conclusion": "pending_rectification",
        "defects": {"critical": 0, "major": 0, "general": 0},
        "flags": ["other_caution"],
        "first_violation": first,
        "harm": if minor { "slight" } else { "serious" },
        // 蒙药监 (十三): the row's risk grade; a grade the rules name for key monitoring (D)
        // puts the enterprise on the key-monitoring list with the case.
        "risk_grade": row.grade,
    }))
    .map_err(|e| CoreError::Internal(format!("remote finding for {id}: {e}")))?;
    let decision = decide(&finding, &cl.rules, &cl.calendar)
        .map_err(|e| CoreError::regulation(format!("case {id}"), e))?;
    let facts =
        serde_json::to_string(&row.items).map_err(|e| CoreError::Internal(e.to_string()))?;
    let addressee = serde_json::to_string(&Addressee {
        name: row.enterprise_name.clone(),
        credit_code: row.enterprise_id.clone(),
        licence_no: row.licence_no.clone(),
        lead_name: cl.notices.lead_of(&row.enterprise_id)?,
    })
    .map_err(|e| CoreError::Internal(e.to_string()))?;
    // The case, its first-minor mark, its region and the audit line go in one transaction:
    // a crash leaves either no case or the whole opening.
    let opening = Opening {
        decision: &decision,
        on: today,
        origin: Origin::RiskList,
        actor: &actor.name,
        enterprise_name: &row.enterprise_name,
        facts_json: &facts,
        addressee_json: &addressee,
    };
    let new = !decision.measures.is_empty()
        && ledger.immediate(|tx, path| {
            if !crate::ledger::apply_in(tx, path, &opening, &[])? {
                return Ok(false);
            }
            tx.execute(
                "UPDATE cases SET first_minor = ?2, region_code = ?3 WHERE case_id = ?1",
                pharmwatch_core::params![id, minor, row.region_code],
            )
            .map_err(|e| pharmwatch_core::store::sql_err(path, "case opening", e))?;
            audit::append(
                tx,
                path,
                actor,
                "case_opened",
                Subject {
                    target: &format!("case:{id}"),
                    case_id: Some(&id),
                    enterprise_id: Some(&row.enterprise_id),
                },
                &format!(
                    "risk list {} grade {} ({})",
                    row.list_id, row.grade, row.indicators
                ),
            )?;
            Ok(true)
        })?;
    if !new {
        // The case exists: opened by this row before (a re-confirmation, or a night run again
        // after a crash between the opening and its documents). What it still lacks is done.
        if ledger.case_exists(&id)? {
            complete_papers(ledger, &id, today, actor, direct, out, &cl.rules)?;
        }
        return Ok(None);
    }
    let mut opened = Opened {
        case_id: id.clone(),
        pending_years: decision
            .measures
            .iter()
            .filter_map(|m| m.due_pending.as_ref().map(|p| p.needs_year))
            .collect(),
        ..Default::default()
    };
    let papers = complete_papers(ledger, &id, today, actor, direct, out, &cl.rules)?;
    opened.documents = papers.documents;
    opened.drafts = papers.drafts;
    Ok(Some(opened))
}

/// The documents [`complete_papers`] issued and the drafts it proposed.
#[derive(Debug, Clone, Default)]
pub struct Papers {
    /// Documents issued (direct mode): number and file.
    pub documents: Vec<(String, String)>,
    /// Drafts proposed: id and kind.
    pub drafts: Vec<(i64, String)>,
}

/// Issues (under `direct`'s authority) or proposes as drafts the opening documents of risk-list
/// case `case_id` — the caution letter and the interview notice, for the measures the case
/// holds — that it has neither as a document nor as a draft in any state (an inspector's
/// withdrawn draft is not proposed again). Idempotent: a second call does nothing.
pub fn complete_papers(
    ledger: &mut Ledger,
    case_id: &str,
    today: NaiveDate,
    actor: &Actor,
    direct: Option<&notices::AuthorityConfig>,
    out: Option<&Path>,
    rules: &Rules,
) -> Result<Papers> {
    let detail = ledger.show(case_id)?;
    let mut papers = Papers::default();
    for (code, kind) in [
        (MeasureCode::Caution, DocumentKind::CautionNotice),
        (MeasureCode::Interview, DocumentKind::InterviewNotice),
    ] {
        let held = detail
            .measures
            .iter()
            .any(|m| crate::ledger::parse_code(&m.code) == Some(code));
        if !held || ledger.has_paper(case_id, kind)? {
            continue;
        }
        if let Some(authority) = direct {
            let (doc, path) = notices::issue(
                ledger,
                case_id,
                kind,
                today,
                &actor.name,
                authority,
                rules,
                out,
            )?;
            papers.documents.push((
                doc.number,
                path.map(|p| p.display().to_string()).unwrap_or_default(),
            ));
        } else if let Some(draft) = drafts::propose_now(ledger, case_id, kind, today, actor)? {
            papers.drafts.push((draft, kind.as_str().to_string()));
        }
    }
    Ok(papers)
}

/// The closed loop's lines of the nightly report.
pub fn report(s: &ClosedLoopSummary) -> String {
    let pending = match s.pending_year {
        Some(year) if s.deadlines_pending > 0 => format!(
            "{} due date(s) of the cases opened wait for the {year} working-day calendar: load \
             it with `pharmwatch calendar import` and they are set\n",
            s.deadlines_pending
        ),
        _ => String::new(),
    };
    let restored = if s.restored_files > 0 {
        format!(
            "{} document(s) numbered by an interrupted run had no files: written again from the \
             store\n",
            s.restored_files
        )
    } else {
        String::new()
    };
    let text = format!(
        "case ledger on {}: {} open case(s) swept, {} overdue, {} escalated ({} referred), {} \
         low-risk; {} row(s) selected for notices, {} already under an open case, {} case(s) \
         opened, {} row(s) proposed to the inspectors for confirmation, {} document(s) issued \
         under notices/\n",
        s.run_date.map(|d| d.to_string()).unwrap_or_default(),
        s.sweep.cases,
        s.sweep.overdue,
        s.sweep.escalated,
        s.sweep.referred,
        s.sweep.low_risk,
        s.selected,
        s.already_open,
        s.cases_opened,
        s.proposed,
        s.documents.len()
    );
    restored + &text + &pending
}
