//! The case ledger (案件台账): every measure opens or updates a case, and every step of the closed
//! loop "notice → report → verification → closed | overdue → escalation" is an event with its
//! actor and date. It lives in the risk store (`OUT/pharmwatch.db`, tables of migration 010).
//!
//! Invariants:
//! - events are append-only: the database itself refuses UPDATE and DELETE on `case_events`
//!   (triggers), so the trail shown by `pharmwatch case show` is the trail that happened;
//! - every change of a case (its measures, lists, status) is written in one IMMEDIATE
//!   transaction together with the event that explains it;
//! - document numbers are allocated per series (authority + document kind) and year as
//!   `MAX(seq) + 1` inside the IMMEDIATE transaction that records the `notice_issued` event, so
//!   concurrent issuers (threads or processes on the same file) get 1, 2, 3 … without gaps or
//!   duplicates; a failed issue rolls back and consumes no number;
//! - a case closes only when no measure awaits the enterprise: rectification verified, and a
//!   sales suspension lifted after a written resume request (赣药监 第二十三条);
//! - the nightly sweep ([`Ledger::sweep`]) asks the regulation crate's
//!   [`escalate`](pharmwatch_regulation::escalate) what a missed deadline calls for: the first
//!   time the key-monitoring list and a new deadline, then case referral (蒙药监 (五)).

use std::path::Path;

use chrono::NaiveDate;
use pharmwatch_core::db::{OptionalExtension, Transaction, TransactionBehavior};
use pharmwatch_core::params;
use pharmwatch_regulation::calendar::CalendarYear;
use pharmwatch_regulation::{
    CaseState, Decision, Measure, MeasureCode, OpenMeasure, Resolution, Rules, WorkingDayCount,
    escalate, resolve_earliest,
};
use serde::Serialize;

use crate::error::{CaseworkError, Result};
use pharmwatch_core::error::CoreError;
use pharmwatch_core::store::{Store, sql_err};
use pharmwatch_regulation::Calendar;

/// The actor of events the nightly job appends.
pub const NIGHTLY_ACTOR: &str = "pharmwatch nightly";

/// An event a supervisor records with `pharmwatch case record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordedEvent {
    /// The notice was served (送达): proof of service.
    Delivered,
    /// The enterprise's rectification report arrived.
    ReportReceived,
    /// The rectification was verified (整改复核通过).
    Verified,
    /// The enterprise asked in writing to resume sales (恢复销售申请, 第二十三条).
    ResumeRequest,
    /// The sales suspension was lifted after a passed GSP inspection (第二十三条).
    Lifted,
}

impl RecordedEvent {
    /// The event name in the ledger.
    pub fn event_name(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::ReportReceived => "report_received",
            Self::Verified => "verified",
            Self::ResumeRequest => "resume_requested",
            Self::Lifted => "lifted",
        }
    }

    /// Parses the CLI spelling (`report-received`, `verified`, `resume-request`, `lifted`,
    /// `delivered`; underscores accepted too).
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.replace('_', "-").as_str() {
            "delivered" => Self::Delivered,
            "report-received" => Self::ReportReceived,
            "verified" => Self::Verified,
            "resume-request" | "resume-requested" => Self::ResumeRequest,
            "lifted" => Self::Lifted,
            other => {
                return Err(CoreError::Config(format!(
                    "unknown case event `{other}`: expected delivered, report-received, \
                     verified, resume-request or lifted"
                ))
                .into());
            }
        })
    }
}

/// Why a supervisor escalates a case before its deadlines have run out (the sweep escalates
/// missed deadlines on its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscalationGround {
    /// The risk rose while the measures ran (第二十四条).
    RiskIncreased,
    /// The enterprise refused an interview without good reason (第二十二条).
    InterviewRefused,
}

impl EscalationGround {
    /// Parses `risk_increased` / `interview_refused` (dashes accepted).
    pub fn parse(s: &str) -> Option<Self> {
        match s.replace('-', "_").as_str() {
            "risk_increased" => Some(Self::RiskIncreased),
            "interview_refused" => Some(Self::InterviewRefused),
            _ => None,
        }
    }

    /// The ground as the ledger states it.
    pub fn text(self, rules: &Rules) -> String {
        match self {
            Self::RiskIncreased => format!(
                "措施期间风险升高（{}） (risk increased)",
                rules.articles.risk_escalation
            ),
            Self::InterviewRefused => format!(
                "无正当理由拒不接受约谈（{}） (interview refused)",
                rules.articles.interview_refused
            ),
        }
    }
}

/// Why a case is closed by a person (结案) before its measures have run their course, each
/// with the article or fact that grounds it. Closing by hand is the approver's act (负责人).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseGround {
    /// The review found the enterprise at an acceptable state of compliance (赣药监 第二十二条:
    /// 确认其是否达到可接受的合规状态).
    Compliant,
    /// The matter went to the unit that investigates violations or into another case
    /// (赣药监 第十八条: 通报相关案件查办单位).
    Transferred,
    /// The enterprise no longer trades (licence cancelled, business closed): no party is left
    /// to rectify.
    Ceased,
}

impl CloseGround {
    /// Parses `compliant` / `transferred` / `ceased`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "compliant" => Some(Self::Compliant),
            "transferred" => Some(Self::Transferred),
            "ceased" => Some(Self::Ceased),
            _ => None,
        }
    }

    /// The ground as the ledger states it, with its article (from the rules) where one
    /// applies.
    pub fn text(self, rules: &Rules) -> String {
        match self {
            Self::Compliant => format!(
                "经研判已达到可接受的合规状态（{}） (acceptable compliance)",
                rules.articles.closed_compliant
            ),
            Self::Transferred => format!(
                "移交案件查办单位或并案处理（{}） (transferred to investigation)",
                rules.articles.closed_transferred
            ),
            Self::Ceased => {
                "企业已注销许可或停止经营，无整改主体 (the enterprise ceased trading)".to_string()
            }
        }
    }
}

/// Where a case came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An inspection finding (`pharmwatch measures decide --record`).
    Finding,
    /// A row of the nightly risk list.
    RiskList,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Self::Finding => "finding",
            Self::RiskList => "risk_list",
        }
    }
}

/// How a decision is applied to the ledger.
#[derive(Debug, Clone)]
pub struct Opening<'a> {
    /// The decision (case id, enterprise, measures).
    pub decision: &'a Decision,
    /// The business date of the decision.
    pub on: NaiveDate,
    /// Where the case comes from.
    pub origin: Origin,
    /// Who decided.
    pub actor: &'a str,
    /// The enterprise's name, when known.
    pub enterprise_name: &'a str,
    /// The facts (risk-list items with evidence) as JSON, `[]` when none.
    pub facts_json: &'a str,
    /// The addressee (name, credit code, licence, lead) as JSON, `{}` when unknown.
    pub addressee_json: &'a str,
}

/// A case as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseSummary {
    /// Case id.
    pub case_id: String,
    /// Enterprise credit code.
    pub enterprise_id: String,
    /// Enterprise name.
    pub enterprise_name: String,
    /// `finding` or `risk_list`.
    pub origin: String,
    /// Day the case was opened.
    pub opened_on: String,
    /// `open` or `closed`.
    pub status: String,
    /// Day it was closed.
    pub closed_on: Option<String>,
    /// Earliest due date of a measure still open.
    pub next_due: Option<String>,
    /// The year whose working-day calendar an open measure's due date waits for, if any.
    pub due_pending_year: Option<i32>,
}

/// A measure of a case as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseMeasure {
    /// Measure code (snake_case).
    pub code: String,
    /// Article(s).
    pub article: String,
    /// Due date.
    pub due_date: Option<String>,
    /// How the working-day deadline is counted (the earliest count wins).
    pub due_counts: Vec<WorkingDayCount>,
    /// The year whose working-day calendar the due date waits for (no `due_date` then).
    pub due_pending_year: Option<i32>,
    /// Detail.
    pub detail: Option<String>,
    /// `open`, `reported`, `done` or `overdue`.
    pub state: String,
    /// Day decided.
    pub decided_on: String,
}

impl CaseMeasure {
    /// The due date in words for a supervisor: the date, `pending the 2027 calendar (30
    /// working days after decision_date 2026-12-03)`, or `-`.
    pub fn due_text(&self) -> String {
        match (&self.due_date, self.due_pending_year) {
            (Some(d), _) => d.clone(),
            (None, Some(year)) => format!(
                "pending the {year} calendar ({})",
                self.due_counts
                    .iter()
                    .map(WorkingDayCount::describe)
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            (None, None) => "-".to_string(),
        }
    }
}

/// A deadline that the calendar did not reach, as `calendar status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingDeadline {
    /// The case.
    pub case_id: String,
    /// Enterprise credit code.
    pub enterprise_id: String,
    /// Enterprise name.
    pub enterprise_name: String,
    /// The measure.
    pub code: String,
    /// How it is counted.
    pub due_counts: Vec<WorkingDayCount>,
    /// The year it waits for.
    pub needs_year: i32,
}

/// A deadline set or changed by a calendar import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadlineChange {
    /// The case.
    pub case_id: String,
    /// The measure.
    pub code: String,
    /// The due date before (`None`: pending).
    pub was: Option<NaiveDate>,
    /// The due date now (`None`: still pending).
    pub now: Option<NaiveDate>,
}

/// What `calendar import` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CalendarImport {
    /// The year loaded.
    pub year: i32,
    /// Whether it replaced a covered year.
    pub replaced: bool,
    /// Its working days.
    pub working_days: u32,
    /// The last day the calendar now covers.
    pub covered_until: NaiveDate,
    /// Deadlines that got their date (were pending) or changed (a replaced year).
    pub changes: Vec<DeadlineChange>,
    /// Deadlines still pending (they need a later year).
    pub still_pending: usize,
}

/// One event of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseEvent {
    /// Sequence in the ledger.
    pub event_id: i64,
    /// Event name.
    pub event: String,
    /// Business date.
    pub event_date: String,
    /// Who.
    pub actor: String,
    /// Note.
    pub note: String,
    /// Document number, for `notice_issued`.
    pub document_no: Option<String>,
    /// Wall-clock time it was recorded (UTC, RFC 3339).
    pub recorded_at: String,
}

/// A list entry (low-risk, key-monitoring, fault-tolerance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListEntry {
    /// `low_risk`, `key_monitoring` or `fault_tolerance`.
    pub list_name: String,
    /// Enterprise credit code.
    pub enterprise_id: String,
    /// Enterprise name.
    pub enterprise_name: String,
    /// The case that put it there.
    pub case_id: String,
    /// Day entered.
    pub entered_on: String,
    /// Article.
    pub article: String,
    /// End of the observation period (fault-tolerance list).
    pub until_date: Option<String>,
}

/// A document as issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedDocument {
    /// Document number, e.g. `蒙药监告〔2026〕12号`.
    pub number: String,
    /// Series (authority + kind word).
    pub series: String,
    /// Year of the number.
    pub year: i32,
    /// Sequence in the series and year.
    pub seq: i64,
    /// Document kind (`caution_notice`, …).
    pub kind: String,
    /// Case.
    pub case_id: String,
    /// Issue date.
    pub issued_on: String,
}

/// Everything about one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseDetail {
    /// The case.
    pub case: CaseSummary,
    /// Its measures.
    pub measures: Vec<CaseMeasure>,
    /// Its list entries.
    pub lists: Vec<ListEntry>,
    /// Its documents.
    pub documents: Vec<IssuedDocument>,
    /// The full event trail, oldest first.
    pub events: Vec<CaseEvent>,
    /// The facts (risk-list items) as JSON.
    pub facts_json: String,
    /// The addressee as JSON.
    pub addressee_json: String,
    /// Whether the case is a first minor violation (soft wording).
    pub first_minor: bool,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepSummary {
    /// Open cases looked at.
    pub cases: usize,
    /// Measures found overdue.
    pub overdue: usize,
    /// Cases escalated (key-monitoring list, new deadline, referral …).
    pub escalated: usize,
    /// Cases referred for investigation in this sweep.
    pub referred: usize,
    /// Cases put on the low-risk list.
    pub low_risk: usize,
}

/// The case ledger over the risk store of an output directory.
#[derive(Debug)]
pub struct Ledger {
    store: Store,
}

/// Measures whose due date is a deadline the enterprise must meet (the others' dates, like
/// the end of an observation period, pass without anything being missed).
fn is_deadline(code: MeasureCode) -> bool {
    matches!(
        code,
        MeasureCode::DeadlineRectification | MeasureCode::Caution | MeasureCode::Interview
    )
}

/// The list a list measure puts the enterprise on.
fn list_of(code: MeasureCode) -> Option<&'static str> {
    match code {
        MeasureCode::KeyMonitoringList => Some("key_monitoring"),
        MeasureCode::FaultToleranceList => Some("fault_tolerance"),
        MeasureCode::LowRiskList => Some("low_risk"),
        _ => None,
    }
}

/// Parses a stored measure code.
pub fn parse_code(s: &str) -> Option<MeasureCode> {
    MeasureCode::ALL.into_iter().find(|c| c.as_str() == s)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

impl Ledger {
    /// Opens the ledger of output directory `out` (`OUT/pharmwatch.db`), creating it if needed.
    pub fn open(out: &Path) -> Result<Self> {
        Ok(Self {
            store: Store::open(&pharmwatch_core::store::location(out))?,
        })
    }

    /// Opens the ledger in a given database file.
    pub fn open_file(path: &Path) -> Result<Self> {
        Ok(Self {
            store: Store::open(path)?,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// The store under the ledger.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store's connection, for reads beside the ledger's own.
    pub fn conn(&self) -> &pharmwatch_core::db::Conn {
        self.store.conn_ref()
    }

    /// Runs `f` in one IMMEDIATE transaction (the write lock is taken at once, so concurrent
    /// writers serialise instead of failing on upgrade).
    pub fn immediate<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>, &Path) -> Result<T>,
    ) -> Result<T> {
        let path = self.store.path().to_path_buf();
        let tx = self
            .store
            .conn()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_err(&path, "begin", e))?;
        let out = f(&tx, &path)?;
        tx.commit().map_err(|e| sql_err(&path, "commit", e))?;
        Ok(out)
    }

    /// Opens the case of `opening.decision` or adds its measures to the existing case, with
    /// `opened` / `measures_decided` / `listed` events. A decision with no measures changes
    /// nothing. Returns whether the case was new.
    pub fn apply_decision(&mut self, opening: &Opening<'_>) -> Result<bool> {
        if opening.decision.measures.is_empty() {
            return Ok(false);
        }
        self.immediate(|tx, path| apply_in(tx, path, opening, &[]))
    }

    /// Records a supervisor's event on a case (`pharmwatch case record`), checking that it
    /// comes in order: a verification needs an open case; a resume request needs a verified
    /// rectification and an open suspension; lifting needs both. Closes the case when nothing
    /// awaits the enterprise any more.
    pub fn record(
        &mut self,
        case_id: &str,
        event: RecordedEvent,
        actor: &str,
        note: &str,
        at: NaiveDate,
        commitment: bool,
    ) -> Result<()> {
        if actor.trim().is_empty() {
            return Err(CaseworkError::ledger(case_id, "the actor is empty"));
        }
        self.immediate(|tx, path| {
            let status = case_status(tx, path, case_id)?;
            if status == "closed" {
                return Err(CaseworkError::ledger(
                    case_id,
                    format!("is closed: no {} can be recorded", event.event_name()),
                ));
            }
            let measures = measures_in(tx, path, case_id)?;
            let has_suspension_open = measures.iter().any(|m| {
                parse_code(&m.code).is_some_and(MeasureCode::is_suspension) && m.state != "done"
            });
            let happened = |name: &str| has_event(tx, path, case_id, name);
            match event {
                RecordedEvent::Delivered => {
                    // Served by hand: the case's notices leave the manual-service list.
                    tx.execute(
                        "UPDATE deliveries SET acknowledged_at = ?2
                         WHERE case_id = ?1 AND kind = 'notice' AND acknowledged_at IS NULL",
                        params![case_id, now()],
                    )
                    .map_err(|e| sql_err(path, "served by hand", e))?;
                }
                RecordedEvent::ReportReceived => {
                    tx.execute(
                        "UPDATE case_measures SET state = 'reported'
                         WHERE case_id = ?1 AND state IN ('open', 'overdue')
                           AND due_date IS NOT NULL",
                        [case_id],
                    )
                    .map_err(|e| sql_err(path, "report received", e))?;
                }
                RecordedEvent::Verified => {
                    if !happened("report_received")? {
                        return Err(CaseworkError::ledger(
                            case_id,
                            "no rectification report was received: record report-received first",
                        ));
                    }
                    let done: Vec<String> = measures
                        .iter()
                        .filter(|m| {
                            parse_code(&m.code).is_some_and(|c| !c.is_suspension())
                                && m.state != "done"
                        })
                        .map(|m| m.code.clone())
                        .collect();
                    for code in done {
                        tx.execute(
                            "UPDATE case_measures SET state = 'done'
                             WHERE case_id = ?1 AND code = ?2",
                            params![case_id, code],
                        )
                        .map_err(|e| sql_err(path, "verified", e))?;
                    }
                    if commitment {
                        tx.execute(
                            "UPDATE cases SET compliance_commitment = 1 WHERE case_id = ?1",
                            [case_id],
                        )
                        .map_err(|e| sql_err(path, "commitment", e))?;
                    }
                }
                RecordedEvent::ResumeRequest => {
                    if !has_suspension_open {
                        return Err(CaseworkError::ledger(
                            case_id,
                            "has no sales suspension to resume from",
                        ));
                    }
                    if !happened("verified")? {
                        return Err(CaseworkError::ledger(
                            case_id,
                            "a resume request needs a verified rectification first (第二十三条)",
                        ));
                    }
                }
                RecordedEvent::Lifted => {
                    if !has_suspension_open {
                        return Err(CaseworkError::ledger(
                            case_id,
                            "has no sales suspension to lift",
                        ));
                    }
                    if !happened("verified")? || !happened("resume_requested")? {
                        return Err(CaseworkError::ledger(
                            case_id,
                            "lifting needs a verified rectification and a written resume request \
                             (第二十三条)",
                        ));
                    }
                    tx.execute(
                        "UPDATE case_measures SET state = 'done'
                         WHERE case_id = ?1 AND code LIKE 'suspend_sales%'",
                        [case_id],
                    )
                    .map_err(|e| sql_err(path, "lifted", e))?;
                }
            }
            let note = if commitment && event == RecordedEvent::Verified {
                if note.is_empty() {
                    "compliance commitment (合规承诺) received".to_string()
                } else {
                    format!("{note}; compliance commitment (合规承诺) received")
                }
            } else {
                note.to_string()
            };
            append_event(
                tx,
                path,
                case_id,
                event.event_name(),
                at,
                actor,
                &note,
                None,
            )?;
            close_if_done(tx, path, case_id, at, actor)?;
            Ok(())
        })
    }

    /// Escalates open case `case_id` on `ground` as `actor` on `today`: the regulation engine
    /// decides the next measures from the case's open ones (as the sweep does for a missed
    /// deadline), and they are added with an `escalated` event naming each measure and its
    /// article. Returns the measures added (code, article); refuses a closed case and a case
    /// for which nothing further applies.
    pub fn escalate_case(
        &mut self,
        case_id: &str,
        ground: EscalationGround,
        today: NaiveDate,
        rules: &Rules,
        cal: &Calendar,
        actor: &str,
    ) -> Result<Vec<(String, String)>> {
        self.immediate(|tx, path| {
            if case_status(tx, path, case_id)? != "open" {
                return Err(CaseworkError::ledger(
                    case_id,
                    "is closed: nothing to escalate",
                ));
            }
            let measures = measures_in(tx, path, case_id)?;
            let enterprise_id: String = tx
                .query_row(
                    "SELECT enterprise_id FROM cases WHERE case_id = ?1",
                    [case_id],
                    |r| r.get(0),
                )
                .map_err(|e| sql_err(path, "case enterprise", e))?;
            let open_measures = measures
                .iter()
                .filter(|m| m.state == "open" || m.state == "overdue")
                .filter_map(|m| {
                    parse_code(&m.code).map(|code| OpenMeasure {
                        code,
                        due_date: m.due_date.as_deref().and_then(|d| d.parse().ok()),
                    })
                })
                .collect();
            let on_key_monitoring_list: bool = on_key_monitoring_list(tx, path, case_id)?;
            let state = CaseState {
                case_id: case_id.to_string(),
                enterprise_id,
                open_measures,
                on_key_monitoring_list,
                case_referred: measures.iter().any(|m| m.code == "case_referral"),
                risk_increased: ground == EscalationGround::RiskIncreased,
                interview_refused: ground == EscalationGround::InterviewRefused,
                affected_scope: Vec::new(),
                affected_products: Vec::new(),
            };
            let decision = escalate(&state, today, rules, cal)
                .map_err(|e| CoreError::regulation(format!("case {case_id}"), e))?;
            if decision.measures.is_empty() {
                return Err(CaseworkError::ledger(
                    case_id,
                    "nothing further applies on this ground",
                ));
            }
            let mut escalated: Vec<String> = vec![ground.text(rules)];
            escalated.extend(
                decision
                    .measures
                    .iter()
                    .map(|m| format!("{} ({})", m.code.as_str(), m.article)),
            );
            apply_in(
                tx,
                path,
                &Opening {
                    decision: &decision,
                    on: today,
                    origin: Origin::Finding,
                    actor,
                    enterprise_name: "",
                    facts_json: "[]",
                    addressee_json: "{}",
                },
                &escalated,
            )?;
            Ok(decision
                .measures
                .iter()
                .map(|m| (m.code.as_str().to_string(), m.article.clone()))
                .collect())
        })
    }

    /// The cases, newest first; only open ones with `open_only`; only one enterprise's with
    /// `enterprise`.
    pub fn list(&self, open_only: bool, enterprise: Option<&str>) -> Result<Vec<CaseSummary>> {
        let path = self.store.path();
        let conn = self.store.conn_ref();
        let mut st = conn
            .prepare(
                "SELECT c.case_id, c.enterprise_id, c.enterprise_name, c.origin, c.opened_on,
                        c.status, c.closed_on,
                        (SELECT MIN(due_date) FROM case_measures m
                          WHERE m.case_id = c.case_id AND m.state = 'open'),
                        (SELECT MIN(due_pending_year) FROM case_measures m
                          WHERE m.case_id = c.case_id AND m.state = 'open')
                 FROM cases c
                 WHERE (?1 = 0 OR c.status = 'open') AND (?2 IS NULL OR c.enterprise_id = ?2)
                 ORDER BY c.opened_on DESC, c.case_id",
            )
            .map_err(|e| sql_err(path, "list cases", e))?;
        let rows = st
            .query_map(params![open_only, enterprise], summary_row)
            .map_err(|e| sql_err(path, "list cases", e))?;
        Ok(rows
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| sql_err(path, "list cases", e))?)
    }

    /// One case with its measures, lists, documents and full event trail.
    pub fn show(&self, case_id: &str) -> Result<CaseDetail> {
        let path = self.store.path();
        let conn = self.store.conn_ref();
        let head = conn
            .query_row(
                "SELECT c.case_id, c.enterprise_id, c.enterprise_name, c.origin, c.opened_on,
                        c.status, c.closed_on,
                        (SELECT MIN(due_date) FROM case_measures m
                          WHERE m.case_id = c.case_id AND m.state = 'open'),
                        (SELECT MIN(due_pending_year) FROM case_measures m
                          WHERE m.case_id = c.case_id AND m.state = 'open'),
                        c.facts_json, c.first_minor, c.addressee_json
                 FROM cases c WHERE c.case_id = ?1",
                [case_id],
                |r| {
                    Ok((
                        summary_row(r)?,
                        r.get::<_, String>(9)?,
                        r.get::<_, bool>(10)?,
                        r.get::<_, String>(11)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| sql_err(path, "show case", e))?;
        let Some((case, facts_json, first_minor, addressee_json)) = head else {
            return Err(CaseworkError::ledger(case_id, "no such case"));
        };
        let measures = measures_in(conn, path, case_id)?;
        let lists = self.list_entries(Some(case_id))?;
        let documents = self.documents(Some(case_id))?;
        let mut st = conn
            .prepare(
                "SELECT event_id, event, event_date, actor, note, document_no, recorded_at
                 FROM case_events WHERE case_id = ?1 ORDER BY event_id",
            )
            .map_err(|e| sql_err(path, "case events", e))?;
        let events = st
            .query_map([case_id], |r| {
                Ok(CaseEvent {
                    event_id: r.get(0)?,
                    event: r.get(1)?,
                    event_date: r.get(2)?,
                    actor: r.get(3)?,
                    note: r.get(4)?,
                    document_no: r.get(5)?,
                    recorded_at: r.get(6)?,
                })
            })
            .map_err(|e| sql_err(path, "case events", e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| sql_err(path, "case events", e))?;
        Ok(CaseDetail {
            case,
            measures,
            lists,
            documents,
            events,
            facts_json,
            first_minor,
            addressee_json,
        })
    }

    /// The list entries (all lists), or those of one case.
    pub fn list_entries(&self, case_id: Option<&str>) -> Result<Vec<ListEntry>> {
        let path = self.store.path();
        let mut st = self
            .store
            .conn_ref()
            .prepare(
                "SELECT l.list_name, l.enterprise_id, COALESCE(c.enterprise_name, ''), l.case_id,
                        l.entered_on, l.article, l.until_date
                 FROM list_entries l LEFT JOIN cases c ON c.case_id = l.case_id
                 WHERE ?1 IS NULL OR l.case_id = ?1
                 ORDER BY l.list_name, l.enterprise_id, l.case_id",
            )
            .map_err(|e| sql_err(path, "list entries", e))?;
        Ok(st
            .query_map([case_id], |r| {
                Ok(ListEntry {
                    list_name: r.get(0)?,
                    enterprise_id: r.get(1)?,
                    enterprise_name: r.get(2)?,
                    case_id: r.get(3)?,
                    entered_on: r.get(4)?,
                    article: r.get(5)?,
                    until_date: r.get(6)?,
                })
            })
            .map_err(|e| sql_err(path, "list entries", e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| sql_err(path, "list entries", e))?)
    }

    /// The issued documents (all, or of one case), in issue order.
    pub fn documents(&self, case_id: Option<&str>) -> Result<Vec<IssuedDocument>> {
        let path = self.store.path();
        let mut st = self
            .store
            .conn_ref()
            .prepare(
                "SELECT number, series, year, seq, kind, case_id, issued_on FROM documents
                 WHERE ?1 IS NULL OR case_id = ?1 ORDER BY series, year, seq",
            )
            .map_err(|e| sql_err(path, "documents", e))?;
        Ok(st
            .query_map([case_id], |r| {
                Ok(IssuedDocument {
                    number: r.get(0)?,
                    series: r.get(1)?,
                    year: r.get(2)?,
                    seq: r.get(3)?,
                    kind: r.get(4)?,
                    case_id: r.get(5)?,
                    issued_on: r.get(6)?,
                })
            })
            .map_err(|e| sql_err(path, "documents", e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| sql_err(path, "documents", e))?)
    }

    /// The stored text of a document: (html, markdown).
    pub fn document_text(&self, number: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .store
            .conn_ref()
            .query_row(
                "SELECT html, markdown FROM documents WHERE number = ?1",
                [number],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| sql_err(self.store.path(), "document text", e))?)
    }

    /// The open cases of an enterprise (for the nightly job: one open risk-list case at a time).
    pub fn open_cases_of(&self, enterprise_id: &str) -> Result<Vec<CaseSummary>> {
        self.list(true, Some(enterprise_id))
    }

    /// Whether the enterprise ever had a case (a later violation is not a first one).
    pub fn has_history(&self, enterprise_id: &str) -> Result<bool> {
        Ok(self
            .store
            .conn_ref()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM cases WHERE enterprise_id = ?1)",
                [enterprise_id],
                |r| r.get(0),
            )
            .map_err(|e| sql_err(self.store.path(), "case history", e))?)
    }

    /// Whether case `case_id` exists.
    pub fn case_exists(&self, case_id: &str) -> Result<bool> {
        Ok(self
            .store
            .conn_ref()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM cases WHERE case_id = ?1)",
                [case_id],
                |r| r.get(0),
            )
            .map_err(|e| sql_err(self.store.path(), "case exists", e))?)
    }

    /// Whether case `case_id` holds a document of `kind`, issued or as a draft in any state.
    pub fn has_paper(&self, case_id: &str, kind: crate::kinds::DocumentKind) -> Result<bool> {
        Ok(self
            .store
            .conn_ref()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM documents WHERE case_id = ?1 AND kind = ?2)
                     OR EXISTS (SELECT 1 FROM drafts WHERE case_id = ?1 AND kind = ?2)",
                [case_id, kind.as_str()],
                |r| r.get(0),
            )
            .map_err(|e| sql_err(self.store.path(), "case papers", e))?)
    }

    /// The deadlines of open measures that wait for a year the calendar does not cover yet.
    pub fn pending_deadlines(&self) -> Result<Vec<PendingDeadline>> {
        let path = self.store.path();
        let mut st = self
            .store
            .conn_ref()
            .prepare(
                "SELECT m.case_id, c.enterprise_id, c.enterprise_name, m.code, m.due_counts_json,
                        m.due_pending_year
                 FROM case_measures m JOIN cases c ON c.case_id = m.case_id
                 WHERE m.due_pending_year IS NOT NULL AND m.state <> 'done'
                 ORDER BY m.due_pending_year, m.case_id, m.code",
            )
            .map_err(|e| sql_err(path, "pending deadlines", e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i32>(5)?,
                ))
            })
            .map_err(|e| sql_err(path, "pending deadlines", e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| sql_err(path, "pending deadlines", e))?;
        rows.into_iter()
            .map(
                |(case_id, enterprise_id, enterprise_name, code, counts, year)| {
                    Ok(PendingDeadline {
                        due_counts: parse_counts(path, &case_id, &code, &counts)?,
                        case_id,
                        enterprise_id,
                        enterprise_name,
                        code,
                        needs_year: year,
                    })
                },
            )
            .collect()
    }

    /// The working-day calendar of this store: `base` (built in, or a `--calendar` file) with
    /// the years operators loaded ([`pharmwatch_core::calendar_store`]).
    pub fn calendar(&self, base: &Calendar) -> Result<Calendar> {
        Ok(pharmwatch_core::calendar_store::load(
            self.store.conn_ref(),
            self.store.path(),
            base,
        )?)
    }

    /// Loads a calendar year (`pharmwatch calendar import`) and, in the same transaction,
    /// computes every open deadline the new calendar reaches: a pending one gets its date
    /// (`deadline_set` event), and one whose date a replaced year changes gets the new date
    /// (`deadline_changed`). `on` is the business date of those events.
    pub fn import_calendar_year(
        &mut self,
        base: &Calendar,
        year: &CalendarYear,
        replace: bool,
        source_file: &str,
        actor: &str,
        on: NaiveDate,
    ) -> Result<CalendarImport> {
        if actor.trim().is_empty() {
            return Err(CoreError::Config("the actor is empty".to_string()).into());
        }
        self.immediate(|tx, path| {
            let current = pharmwatch_core::calendar_store::load(tx, path, base)?;
            let replaced = current.years().contains(&year.year);
            let next: Calendar = current
                .with_year(year, replace)
                .map_err(|e| CoreError::regulation(format!("calendar file {source_file}"), e))?;
            pharmwatch_core::calendar_store::write_year(tx, path, year, source_file, actor)?;
            let why = format!(
                "the {} working-day calendar was {} ({})",
                year.year,
                if replaced { "replaced" } else { "loaded" },
                year.notice
            );
            let changes = recompute_deadlines(tx, path, &next, on, actor, &why)?;
            let still_pending: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM case_measures
                     WHERE due_pending_year IS NOT NULL AND state <> 'done'",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| sql_err(path, "pending deadlines", e))?;
            Ok(CalendarImport {
                year: year.year,
                replaced,
                working_days: year.working_days(),
                covered_until: next.last_covered_day(),
                changes,
                still_pending: usize::try_from(still_pending).unwrap_or(0),
            })
        })
    }

    /// The nightly sweep on `today`: every open case's missed deadlines become `overdue` events
    /// and escalate through [`escalate`] (key-monitoring list and a new deadline the first time,
    /// case referral the next); closed cases whose rectification was verified with a compliance
    /// commitment go on the low-risk list.
    pub fn sweep(
        &mut self,
        today: NaiveDate,
        rules: &Rules,
        cal: &Calendar,
        actor: &str,
    ) -> Result<SweepSummary> {
        let mut summary = SweepSummary::default();
        let open = self.list(true, None)?;
        for case in open {
            summary.cases += 1;
            let case_id = case.case_id.clone();
            self.immediate(|tx, path| {
                let measures = measures_in(tx, path, &case_id)?;
                let mut open_measures = Vec::new();
                let mut overdue = Vec::new();
                for m in &measures {
                    let Some(code) = parse_code(&m.code) else {
                        continue;
                    };
                    if m.state != "open" {
                        continue;
                    }
                    let due = m.due_date.as_deref().and_then(|d| d.parse::<NaiveDate>().ok());
                    let due = if is_deadline(code) { due } else { None };
                    if due.is_some_and(|d| d < today) {
                        overdue.push((code, due));
                    }
                    open_measures.push(OpenMeasure {
                        code,
                        due_date: due,
                    });
                }
                if overdue.is_empty() {
                    return Ok(());
                }
                let on_key_monitoring_list = on_key_monitoring_list(tx, path, &case_id)?;
                let case_referred = measures.iter().any(|m| m.code == "case_referral");
                let state = CaseState {
                    case_id: case_id.clone(),
                    enterprise_id: case.enterprise_id.clone(),
                    open_measures,
                    on_key_monitoring_list,
                    case_referred,
                    risk_increased: false,
                    interview_refused: false,
                    affected_scope: Vec::new(),
                    affected_products: Vec::new(),
                };
                let decision = escalate(&state, today, rules, cal)
                    .map_err(|e| CoreError::regulation(format!("case {case_id}"), e))?;
                for (code, due) in &overdue {
                    tx.execute(
                        "UPDATE case_measures SET state = 'overdue' WHERE case_id = ?1 AND code = ?2",
                        params![case_id, code.as_str()],
                    )
                    .map_err(|e| sql_err(path, "overdue", e))?;
                    let note = format!(
                        "{} due {} not met",
                        code.as_str(),
                        due.map(|d| d.to_string()).unwrap_or_default()
                    );
                    append_event(tx, path, &case_id, "overdue", today, actor, &note, None)?;
                    summary.overdue += 1;
                }
                if !decision.measures.is_empty() {
                    let escalated: Vec<String> = decision
                        .measures
                        .iter()
                        .map(|m| format!("{} ({})", m.code.as_str(), m.article))
                        .collect();
                    let opening = Opening {
                        decision: &decision,
                        on: today,
                        origin: Origin::Finding,
                        actor,
                        enterprise_name: "",
                        facts_json: "[]",
                        addressee_json: "{}",
                    };
                    apply_in(tx, path, &opening, &escalated)?;
                    summary.escalated += 1;
                    if decision.measure(MeasureCode::CaseReferral).is_some() {
                        summary.referred += 1;
                    }
                }
                Ok(())
            })?;
        }
        // Verified with a compliance commitment → low-risk list (蒙药监 (五)).
        let candidates: Vec<(String, String)> = {
            let path = self.store.path();
            let mut st = self
                .store
                .conn_ref()
                .prepare(
                    "SELECT c.case_id, c.enterprise_id FROM cases c
                     WHERE c.status = 'closed' AND c.compliance_commitment = 1
                       AND EXISTS (SELECT 1 FROM case_events e
                                   WHERE e.case_id = c.case_id AND e.event = 'verified')
                       AND NOT EXISTS (SELECT 1 FROM list_entries l
                                       WHERE l.case_id = c.case_id AND l.list_name = 'low_risk')
                     ORDER BY c.case_id",
                )
                .map_err(|e| sql_err(path, "low-risk candidates", e))?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| sql_err(path, "low-risk candidates", e))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| sql_err(path, "low-risk candidates", e))?
        };
        let article = &rules.articles.low_risk_list;
        for (case_id, enterprise_id) in candidates {
            self.immediate(|tx, path| {
                tx.execute(
                    "INSERT INTO list_entries (list_name, case_id, enterprise_id, entered_on, article)
                     VALUES ('low_risk', ?1, ?2, ?3, ?4)",
                    params![case_id, enterprise_id, today.to_string(), article],
                )
                .map_err(|e| sql_err(path, "low-risk list", e))?;
                append_event(
                    tx,
                    path,
                    &case_id,
                    "listed",
                    today,
                    actor,
                    &format!("low_risk ({article}): rectified with a compliance commitment"),
                    None,
                )
            })?;
            summary.low_risk += 1;
        }
        Ok(summary)
    }
}

fn summary_row(r: &pharmwatch_core::db::Row) -> pharmwatch_core::db::DbResult<CaseSummary> {
    Ok(CaseSummary {
        case_id: r.get(0)?,
        enterprise_id: r.get(1)?,
        enterprise_name: r.get(2)?,
        origin: r.get(3)?,
        opened_on: r.get(4)?,
        status: r.get(5)?,
        closed_on: r.get(6)?,
        next_due: r.get(7)?,
        due_pending_year: r.get(8)?,
    })
}

/// Whether the case put its enterprise on the key-monitoring list.
fn on_key_monitoring_list(
    conn: &pharmwatch_core::db::Conn,
    path: &Path,
    case_id: &str,
) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM list_entries
             WHERE list_name = 'key_monitoring' AND case_id = ?1)",
            [case_id],
            |r| r.get(0),
        )
        .map_err(|e| sql_err(path, "key monitoring", e))?)
}

fn case_status(conn: &pharmwatch_core::db::Conn, path: &Path, case_id: &str) -> Result<String> {
    conn.query_row(
        "SELECT status FROM cases WHERE case_id = ?1",
        [case_id],
        |r| r.get(0),
    )
    .optional()
    .map_err(|e| sql_err(path, "case status", e))?
    .ok_or_else(|| CaseworkError::ledger(case_id, "no such case"))
}

fn has_event(
    conn: &pharmwatch_core::db::Conn,
    path: &Path,
    case_id: &str,
    event: &str,
) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM case_events WHERE case_id = ?1 AND event = ?2)",
            params![case_id, event],
            |r| r.get(0),
        )
        .map_err(|e| sql_err(path, "case events", e))?)
}

fn measures_in(
    conn: &pharmwatch_core::db::Conn,
    path: &Path,
    case_id: &str,
) -> Result<Vec<CaseMeasure>> {
    let mut st = conn
        .prepare(
            "SELECT code, article, due_date, detail, state, decided_on, due_counts_json,
                    due_pending_year
             FROM case_measures WHERE case_id = ?1 ORDER BY decided_on, code",
        )
        .map_err(|e| sql_err(path, "case measures", e))?;
    let rows = st
        .query_map([case_id], |r| {
            Ok((
                CaseMeasure {
                    code: r.get(0)?,
                    article: r.get(1)?,
                    due_date: r.get(2)?,
                    due_counts: Vec::new(),
                    due_pending_year: r.get(7)?,
                    detail: r.get(3)?,
                    state: r.get(4)?,
                    decided_on: r.get(5)?,
                },
                r.get::<_, String>(6)?,
            ))
        })
        .map_err(|e| sql_err(path, "case measures", e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| sql_err(path, "case measures", e))?;
    rows.into_iter()
        .map(|(mut m, counts)| {
            m.due_counts = parse_counts(path, case_id, &m.code, &counts)?;
            Ok(m)
        })
        .collect()
}

/// Reads a stored `due_counts_json`.
fn parse_counts(
    path: &Path,
    case_id: &str,
    code: &str,
    json: &str,
) -> Result<Vec<WorkingDayCount>> {
    Ok(
        serde_json::from_str(json).map_err(|e| CoreError::StoreContent {
            path: path.to_path_buf(),
            reason: format!("case {case_id}, measure {code}: due_counts_json is not valid: {e}"),
        })?,
    )
}

/// Computes again every deadline of a measure not yet done that has working-day counts, with
/// `cal`; writes the ones that changed (a pending one set, or a date moved by a replaced year)
/// and appends an event for each, explaining `why`.
fn recompute_deadlines(
    tx: &Transaction<'_>,
    path: &Path,
    cal: &Calendar,
    on: NaiveDate,
    actor: &str,
    why: &str,
) -> Result<Vec<DeadlineChange>> {
    struct Stored {
        case_id: String,
        code: String,
        due: Option<String>,
        counts_json: String,
        pending_year: Option<i32>,
    }
    let rows = {
        let mut st = tx
            .prepare(
                "SELECT case_id, code, due_date, due_counts_json, due_pending_year
                 FROM case_measures WHERE state <> 'done' AND due_counts_json <> '[]'
                 ORDER BY case_id, code",
            )
            .map_err(|e| sql_err(path, "deadlines", e))?;
        st.query_map([], |r| {
            Ok(Stored {
                case_id: r.get(0)?,
                code: r.get(1)?,
                due: r.get(2)?,
                counts_json: r.get(3)?,
                pending_year: r.get(4)?,
            })
        })
        .map_err(|e| sql_err(path, "deadlines", e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| sql_err(path, "deadlines", e))?
    };
    let mut changes = Vec::new();
    for Stored {
        case_id,
        code,
        due,
        counts_json,
        pending_year,
    } in rows
    {
        let counts = parse_counts(path, &case_id, &code, &counts_json)?;
        let Some((resolution, winners)) = resolve_earliest(&counts, cal)
            .map_err(|e| CoreError::regulation(format!("case {case_id}, {code}"), e))?
        else {
            continue;
        };
        let was = due.as_deref().and_then(|d| d.parse::<NaiveDate>().ok());
        let (now, now_pending) = match &resolution {
            Resolution::On(date) => (Some(*date), None),
            Resolution::Pending(p) => (None, Some(p.needs_year)),
        };
        if now == was && now_pending == pending_year {
            continue;
        }
        tx.execute(
            "UPDATE case_measures SET due_date = ?3, due_pending_year = ?4, due_counts_json = ?5
             WHERE case_id = ?1 AND code = ?2",
            params![
                case_id,
                code,
                now.map(|d| d.to_string()),
                now_pending,
                serde_json::to_string(&winners)
                    .map_err(|e| CoreError::Internal(format!("due counts: {e}")))?
            ],
        )
        .map_err(|e| sql_err(path, "set deadline", e))?;
        let counted = winners
            .iter()
            .map(WorkingDayCount::describe)
            .collect::<Vec<_>>()
            .join(" or ");
        let (event, note) = match (was, now) {
            (None, Some(date)) => (
                "deadline_set",
                format!("{code} due {date} ({counted}): {why}"),
            ),
            (Some(old), Some(date)) => (
                "deadline_changed",
                format!("{code} due {date}, was {old} ({counted}): {why}"),
            ),
            (Some(old), None) => (
                "deadline_changed",
                format!(
                    "{code} due date pending the {} calendar, was {old} ({counted}): {why}",
                    now_pending.unwrap_or_default()
                ),
            ),
            (None, None) => continue,
        };
        append_event(tx, path, &case_id, event, on, actor, &note, None)?;
        changes.push(DeadlineChange {
            case_id,
            code,
            was,
            now,
        });
    }
    Ok(changes)
}

/// Appends one event (the only way rows enter `case_events`).
#[allow(clippy::too_many_arguments)]
pub fn append_event(
    tx: &Transaction<'_>,
    path: &Path,
    case_id: &str,
    event: &str,
    on: NaiveDate,
    actor: &str,
    note: &str,
    document_no: Option<&str>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO case_events (case_id, event, event_date, actor, note, document_no, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![case_id, event, on.to_string(), actor, note, document_no, now()],
    )
    .map_err(|e| sql_err(path, &format!("append {event} event"), e))?;
    Ok(())
}

/// Writes a decision into the case (inside the caller's transaction). `escalated` non-empty
/// means the measures come from an escalation: the event is `escalated` rather than
/// `measures_decided`, and a closed case is not reopened by it.
pub(crate) fn apply_in(
    tx: &Transaction<'_>,
    path: &Path,
    o: &Opening<'_>,
    escalated: &[String],
) -> Result<bool> {
    let d = o.decision;
    let on = o.on.to_string();
    let existing: Option<String> = tx
        .query_row(
            "SELECT status FROM cases WHERE case_id = ?1",
            [&d.case_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| sql_err(path, "read case", e))?;
    let new = existing.is_none();
    if new {
        tx.execute(
            "INSERT INTO cases (case_id, enterprise_id, enterprise_name, origin, opened_on, status,
                                facts_json, addressee_json)
             VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6, ?7)",
            params![
                d.case_id,
                d.enterprise_id,
                o.enterprise_name,
                o.origin.as_str(),
                on,
                o.facts_json,
                o.addressee_json
            ],
        )
        .map_err(|e| sql_err(path, "open case", e))?;
        append_event(tx, path, &d.case_id, "opened", o.on, o.actor, "", None)?;
    } else if existing.as_deref() == Some("closed") && escalated.is_empty() {
        tx.execute(
            "UPDATE cases SET status = 'open', closed_on = NULL WHERE case_id = ?1",
            [&d.case_id],
        )
        .map_err(|e| sql_err(path, "reopen case", e))?;
    }
    for m in &d.measures {
        upsert_measure(tx, path, &d.case_id, m, &on)?;
        if let Some(list) = list_of(m.code) {
            let inserted = tx
                .execute(
                    "INSERT INTO list_entries (list_name, case_id, enterprise_id, entered_on,
                                               article, until_date)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (list_name, case_id) DO NOTHING",
                    params![
                        list,
                        d.case_id,
                        d.enterprise_id,
                        on,
                        m.article,
                        if m.code == MeasureCode::FaultToleranceList {
                            d.measure(MeasureCode::ObservationPeriod)
                                .and_then(|p| p.due_date)
                                .map(|x| x.to_string())
                        } else {
                            None
                        }
                    ],
                )
                .map_err(|e| sql_err(path, "list entry", e))?;
            if inserted > 0 {
                append_event(
                    tx,
                    path,
                    &d.case_id,
                    "listed",
                    o.on,
                    o.actor,
                    &format!("{list} ({})", m.article),
                    None,
                )?;
            }
        }
    }
    let described: Vec<String> = d
        .measures
        .iter()
        .map(|m| match (m.due_date, &m.due_pending) {
            (Some(due), _) => format!("{} due {due}", m.code.as_str()),
            (None, Some(p)) => format!(
                "{} due date pending the {} working-day calendar",
                m.code.as_str(),
                p.needs_year
            ),
            (None, None) => m.code.as_str().to_string(),
        })
        .collect();
    if escalated.is_empty() {
        append_event(
            tx,
            path,
            &d.case_id,
            "measures_decided",
            o.on,
            o.actor,
            &described.join(", "),
            None,
        )?;
    } else {
        append_event(
            tx,
            path,
            &d.case_id,
            "escalated",
            o.on,
            o.actor,
            &format!("{} — {}", escalated.join("; "), described.join(", ")),
            None,
        )?;
    }
    Ok(new)
}

fn upsert_measure(
    tx: &Transaction<'_>,
    path: &Path,
    case_id: &str,
    m: &Measure,
    on: &str,
) -> Result<()> {
    // List measures and the observation period are done once entered; measures awaiting the
    // enterprise (or a later lifting) are open.
    let state = if list_of(m.code).is_some() || m.code == MeasureCode::ObservationPeriod {
        "done"
    } else {
        "open"
    };
    tx.execute(
        "INSERT INTO case_measures (case_id, code, article, due_date, detail, state, decided_on,
                                    due_counts_json, due_pending_year)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (case_id, code) DO UPDATE SET article = excluded.article,
             due_date = excluded.due_date, detail = excluded.detail, state = excluded.state,
             decided_on = excluded.decided_on, due_counts_json = excluded.due_counts_json,
             due_pending_year = excluded.due_pending_year",
        params![
            case_id,
            m.code.as_str(),
            m.article,
            m.due_date.map(|d| d.to_string()),
            m.detail,
            state,
            on,
            serde_json::to_string(&m.due_counts)
                .map_err(|e| CoreError::Internal(format!("due counts: {e}")))?,
            m.due_pending.as_ref().map(|p| p.needs_year)
        ],
    )
    .map_err(|e| sql_err(path, "write measure", e))?;
    Ok(())
}

/// Closes the case when no measure awaits the enterprise (none open, reported or overdue).
fn close_if_done(
    tx: &Transaction<'_>,
    path: &Path,
    case_id: &str,
    on: NaiveDate,
    actor: &str,
) -> Result<()> {
    let pending: i64 = tx
        .query_row(
            "SELECT COUNT(*) FROM case_measures WHERE case_id = ?1 AND state <> 'done'",
            [case_id],
            |r| r.get(0),
        )
        .map_err(|e| sql_err(path, "pending measures", e))?;
    if pending == 0 {
        mark_closed(
            tx,
            path,
            case_id,
            on,
            actor,
            "every measure verified or lifted (已销号)",
        )?;
    }
    Ok(())
}

/// Sets the case closed on `on` and appends its `closed` event with `note`.
fn mark_closed(
    tx: &Transaction<'_>,
    path: &Path,
    case_id: &str,
    on: NaiveDate,
    actor: &str,
    note: &str,
) -> Result<()> {
    tx.execute(
        "UPDATE cases SET status = 'closed', closed_on = ?2 WHERE case_id = ?1",
        params![case_id, on.to_string()],
    )
    .map_err(|e| sql_err(path, "close case", e))?;
    append_event(tx, path, case_id, "closed", on, actor, note, None)
}

impl Ledger {
    /// Closes open case `case_id` by hand on `ground` (结案), with the approver's `note`: the
    /// measures keep their states as history, live drafts of the case are withdrawn (no number
    /// is taken for a closed case), and a `closed` event states the ground. Documents already
    /// issued stay issued and keep their deliveries.
    pub fn close_case(
        &mut self,
        case_id: &str,
        ground: CloseGround,
        note: &str,
        on: NaiveDate,
        actor: &str,
        rules: &Rules,
    ) -> Result<()> {
        if note.trim().is_empty() {
            return Err(CaseworkError::ledger(
                case_id,
                "closing by hand needs its reason",
            ));
        }
        self.immediate(|tx, path| {
            if case_status(tx, path, case_id)? != "open" {
                return Err(CaseworkError::ledger(case_id, "is already closed"));
            }
            tx.execute(
                "UPDATE drafts SET state = 'withdrawn', decided_by = ?2, decided_at = ?3,
                        return_reason = '结案 (case closed)'
                 WHERE case_id = ?1 AND state IN ('proposed', 'submitted', 'returned')",
                params![case_id, actor, now()],
            )
            .map_err(|e| sql_err(path, "withdraw drafts of a closed case", e))?;
            let why = format!("结案：{} — {}", ground.text(rules), note.trim());
            mark_closed(tx, path, case_id, on, actor, &why)
        })
    }

    /// Refers open case `case_id` for investigation (移交立案查处) on the facts in `note`: a
    /// suspected violation is not handled by risk-control measures alone (赣药监 第五条（三）,
    /// 第十八条). Adds the `case_referral` measure with its article (`[articles] case_referral` of the
    /// rules) and an `escalated` event stating the referral;
    /// refuses a closed case and a case already referred. Returns the article.
    pub fn refer_case(
        &mut self,
        case_id: &str,
        note: &str,
        on: NaiveDate,
        rules: &Rules,
        actor: &str,
    ) -> Result<String> {
        if note.trim().is_empty() {
            return Err(CaseworkError::ledger(
                case_id,
                "a referral needs the facts of the suspected violation",
            ));
        }
        let article = rules.articles.case_referral.clone();
        self.immediate(|tx, path| {
            if case_status(tx, path, case_id)? != "open" {
                return Err(CaseworkError::ledger(
                    case_id,
                    "is closed: nothing to refer",
                ));
            }
            if measures_in(tx, path, case_id)?
                .iter()
                .any(|m| m.code == MeasureCode::CaseReferral.as_str())
            {
                return Err(CaseworkError::ledger(case_id, "is already referred"));
            }
            let m = Measure {
                code: MeasureCode::CaseReferral,
                article: article.clone(),
                due_date: None,
                due_counts: Vec::new(),
                due_pending: None,
                detail: Some(format!("{REFERRAL_DETAIL}{}", note.trim())),
            };
            upsert_measure(tx, path, case_id, &m, &on.to_string())?;
            append_event(
                tx,
                path,
                case_id,
                "escalated",
                on,
                actor,
                &format!("移交立案查处（{article}） — {}", note.trim()),
                None,
            )
        })?;
        Ok(article)
    }
}

/// How a referral by hand's measure detail starts; the facts given follow it.
pub const REFERRAL_DETAIL: &str = "涉嫌违法，移交立案查处 (referred): ";

/// The text `pharmwatch case list` prints: one line per case.
pub fn format_list(cases: &[CaseSummary]) -> String {
    if cases.is_empty() {
        return "no cases\n".to_string();
    }
    let mut out = format!(
        "{:<34} {:<18} {:<8} {:<10} {:<10} {}\n",
        "case", "enterprise", "status", "opened", "next due", "name"
    );
    for c in cases {
        out.push_str(&format!(
            "{:<34} {:<18} {:<8} {:<10} {:<10} {}\n",
            c.case_id,
            c.enterprise_id,
            c.status,
            c.opened_on,
            match (&c.next_due, c.due_pending_year) {
                (Some(d), _) => d.clone(),
                (None, Some(y)) => format!("{y}?"),
                (None, None) => "-".to_string(),
            },
            c.enterprise_name
        ));
    }
    out
}

/// The text `pharmwatch case show` prints: the case, its measures and due dates, lists,
/// documents and the full event trail.
pub fn format_show(d: &CaseDetail) -> String {
    let c = &d.case;
    let mut out = format!(
        "case {}  ({})\n  enterprise  {} {}\n  status      {}{}\n  opened      {}\n",
        c.case_id,
        c.origin,
        c.enterprise_id,
        c.enterprise_name,
        c.status,
        c.closed_on
            .as_deref()
            .map(|d| format!(" on {d}"))
            .unwrap_or_default(),
        c.opened_on
    );
    if d.first_minor {
        out.push_str(
            "  leniency    first minor violation (observation period: its article below)\n",
        );
    }
    out.push_str("measures:\n");
    for m in &d.measures {
        out.push_str(&format!(
            "  {:<24} {:<9} due {:<10}  {}\n",
            m.code,
            m.state,
            m.due_text(),
            m.article
        ));
    }
    if let Some(year) = d.case.due_pending_year {
        out.push_str(&format!(
            "  note: a due date waits for the {year} working-day calendar; it is set when an \
             operator loads that year (pharmwatch calendar import)\n"
        ));
    }
    if !d.lists.is_empty() {
        out.push_str("lists:\n");
        for l in &d.lists {
            out.push_str(&format!(
                "  {:<16} since {}{}  {}\n",
                l.list_name,
                l.entered_on,
                l.until_date
                    .as_deref()
                    .map(|u| format!(" until {u}"))
                    .unwrap_or_default(),
                l.article
            ));
        }
    }
    if !d.documents.is_empty() {
        out.push_str("documents:\n");
        for doc in &d.documents {
            out.push_str(&format!(
                "  {}  {} issued {}\n",
                doc.number, doc.kind, doc.issued_on
            ));
        }
    }
    out.push_str("events:\n");
    for e in &d.events {
        out.push_str(&format!(
            "  #{:<4} {} {:<17} by {}{}{}\n",
            e.event_id,
            e.event_date,
            e.event,
            e.actor,
            e.document_no
                .as_deref()
                .map(|n| format!("  [{n}]"))
                .unwrap_or_default(),
            if e.note.is_empty() {
                String::new()
            } else {
                format!("  — {}", e.note)
            }
        ));
    }
    out
}

/// The text `pharmwatch lists` prints: the low-risk, key-monitoring and fault-tolerance lists.
pub fn format_lists(entries: &[ListEntry]) -> String {
    let mut out = String::new();
    for (name, title) in [
        ("low_risk", "低风险名单 low-risk list"),
        ("key_monitoring", "重点监控名单 key-monitoring list"),
        ("fault_tolerance", "容错清单 fault-tolerance list"),
    ] {
        let rows: Vec<&ListEntry> = entries.iter().filter(|e| e.list_name == name).collect();
        out.push_str(&format!("{title} ({}):\n", rows.len()));
        for e in rows {
            out.push_str(&format!(
                "  {:<18} {:<24} since {}{}  case {}  {}\n",
                e.enterprise_id,
                e.enterprise_name,
                e.entered_on,
                e.until_date
                    .as_deref()
                    .map(|u| format!(" until {u}"))
                    .unwrap_or_default(),
                e.case_id,
                e.article
            ));
        }
    }
    out
}
