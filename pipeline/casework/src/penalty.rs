//! The administrative-penalty procedure of a referred case (立案 and after) in the ledger: each
//! stage an append-only event of the case, recorded in order by a person, and the statutory
//! clocks of [`pharmwatch_regulation::penalty`] computed from them — what is due when, what is
//! done, what is overdue.
//!
//! A case enters the procedure when it is referred (`case_referral`, [`Ledger::refer_case`]):
//! the referral day is the day the lead was received, from which the filing review counts.
//! Then: filed (立案), the notice of the proposed penalty served (告知书送达), a hearing
//! requested, the clock stopped and resumed (hearing, testing, appraisal, suspension,
//! announcement: the days between do not count on the stoppable clocks), an extension
//! granted by an approver, decided, the decision served.
//!
//! Filing and deciding are the authority head's acts and are recorded by approving their
//! documents: the approval of the filing approval form (立案审批表) appends `penalty_filed`, that
//! of the penalty decision (行政处罚决定书) `penalty_decided`, each with the document's number and
//! day ([`crate::notices::issue_in`]). Service is recorded by hand, with the served document's
//! number: the notice of the proposed penalty must have been issued before it is served.
//!
//! Invariants: read from the trail only (no state of its own); a step out of order is refused
//! with what is missing; an extension and a stop name their reason; a stop still open counts
//! as stopped through the day asked about; each penalty document is issued only at its stage
//! ([`may_issue`]).

use chrono::NaiveDate;
use pharmwatch_regulation::penalty::{
    ClockStop, PenaltyCase, StageDue, StopReason, hearing_notice_by, schedule,
};
use pharmwatch_regulation::{Calendar, Rules};
use serde::Serialize;

use crate::error::{CaseworkError, Result};
use crate::kinds::DocumentKind;
use crate::ledger::{CaseDetail, Ledger, append_event};

/// A step of the procedure a person records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PenaltyStep {
    /// 立案: the case is filed.
    Filed,
    /// 行政处罚告知书送达: the notice of the proposed penalty is served.
    NoticeServed,
    /// The party asked for a hearing (the note gives the hearing's day, YYYY-MM-DD).
    HearingRequested,
    /// The clocks stop (the note gives the reason: hearing, testing, appraisal, suspension,
    /// announcement).
    ClockStopped,
    /// The clocks run again.
    ClockResumed,
    /// An approver extends a stage (the note names the stage, e.g. `decision`).
    ExtensionGranted,
    /// 作出处罚决定.
    Decided,
    /// 处罚决定书送达.
    DecisionServed,
}

impl PenaltyStep {
    /// Every step, in procedure order.
    pub const ALL: [PenaltyStep; 8] = [
        Self::Filed,
        Self::NoticeServed,
        Self::HearingRequested,
        Self::ClockStopped,
        Self::ClockResumed,
        Self::ExtensionGranted,
        Self::Decided,
        Self::DecisionServed,
    ];

    /// The event name in the ledger.
    pub fn event(self) -> &'static str {
        match self {
            Self::Filed => "penalty_filed",
            Self::NoticeServed => "penalty_notice_served",
            Self::HearingRequested => "hearing_requested",
            Self::ClockStopped => "clock_stopped",
            Self::ClockResumed => "clock_resumed",
            Self::ExtensionGranted => "extension_granted",
            Self::Decided => "penalty_decided",
            Self::DecisionServed => "penalty_decision_served",
        }
    }

    /// Parses the CLI spelling (`filed`, `notice-served`, `hearing-requested`,
    /// `clock-stopped`, `clock-resumed`, `extension-granted`, `decided`, `decision-served`).
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|p| p.event().trim_start_matches("penalty_").replace('_', "-") == s)
            .ok_or_else(|| {
                CaseworkError::ledger(
                    "-",
                    format!(
                        "unknown penalty step `{s}`: filed, notice-served, hearing-requested, \
                         clock-stopped, clock-resumed, extension-granted, decided, decision-served"
                    ),
                )
            })
    }
}

fn stop_reason(text: &str) -> Option<StopReason> {
    Some(match text.trim() {
        "hearing" => StopReason::Hearing,
        "testing" => StopReason::Testing,
        "appraisal" => StopReason::Appraisal,
        "suspension" => StopReason::Suspension,
        "announcement" => StopReason::Announcement,
        _ => return None,
    })
}

fn date(text: &str, what: &str, case_id: &str) -> Result<NaiveDate> {
    text.trim()
        .parse()
        .map_err(|_| CaseworkError::ledger(case_id, format!("{what} `{text}` is not a date")))
}

/// The procedure of a case as the clocks read it, from its trail; `None` when the case was
/// never referred. A stop still open on `on` runs through `on`.
pub fn case_of(d: &CaseDetail, on: NaiveDate) -> Result<Option<PenaltyCase>> {
    let Some((mut case, open_stop)) = trail(d)? else {
        return Ok(None);
    };
    if let Some((reason, from)) = open_stop
        && from <= on
    {
        case.stops.push(ClockStop {
            reason,
            from,
            to: on,
        });
    }
    Ok(Some(case))
}

/// A stop still open: its reason and first day.
type OpenStop = (StopReason, NaiveDate);

/// The procedure read from the trail with its closed stops, and the stop still open, if one
/// is.
fn trail(d: &CaseDetail) -> Result<Option<(PenaltyCase, Option<OpenStop>)>> {
    let case_id = &d.case.case_id;
    let Some(referral) = d.measures.iter().find(|m| m.code == "case_referral") else {
        return Ok(None);
    };
    let mut case = PenaltyCase {
        lead_received: Some(date(&referral.decided_on, "referral day", case_id)?),
        ..PenaltyCase::default()
    };
    let mut open_stop: Option<OpenStop> = None;
    for e in &d.events {
        let day = || date(&e.event_date, "event_date", case_id);
        match e.event.as_str() {
            "penalty_filed" => case.filed = Some(day()?),
            "penalty_notice_served" => case.notice_served = Some(day()?),
            "hearing_requested" => {
                case.hearing_on = Some(date(&e.note, "hearing day", case_id)?);
            }
            "clock_stopped" => {
                let reason = stop_reason(&e.note).ok_or_else(|| {
                    CaseworkError::ledger(case_id, format!("unknown stop reason `{}`", e.note))
                })?;
                open_stop = Some((reason, day()?));
            }
            "clock_resumed" => {
                if let Some((reason, from)) = open_stop.take() {
                    let resumed = day()?;
                    case.stops.push(ClockStop {
                        reason,
                        from,
                        to: resumed.pred_opt().unwrap_or(resumed),
                    });
                }
            }
            "extension_granted" => case.extended.push(e.note.trim().to_string()),
            "penalty_decided" => case.decided = Some(day()?),
            "penalty_decision_served" => case.decision_served = Some(day()?),
            _ => {}
        }
    }
    Ok(Some((case, open_stop)))
}

/// The number of the case's issued document of `kind`, the latest if several.
pub(crate) fn document_of(d: &CaseDetail, kind: DocumentKind) -> Option<&str> {
    d.documents
        .iter()
        .rev()
        .find(|doc| doc.kind == kind.as_str())
        .map(|doc| doc.number.as_str())
}

/// Whether a penalty document of `kind` may be proposed or issued for case `d` now: the
/// filing form for a referred case not yet filed, the notice of the proposed penalty once
/// filed (once), the hearing notice once a hearing was requested, the decision once the
/// notice was served and before the case is decided. Refused with what is missing.
pub fn may_issue(d: &CaseDetail, kind: DocumentKind) -> Result<()> {
    let case_id = &d.case.case_id;
    let refuse = |why: String| Err(CaseworkError::ledger(case_id, why));
    if d.case.status == "closed" {
        return refuse("is closed: no document to issue".into());
    }
    let Some((case, _)) = trail(d)? else {
        return refuse(format!(
            "was not referred: a {} belongs to the penalty procedure (refer the case first)",
            kind.title()
        ));
    };
    let title = kind.title();
    match kind {
        DocumentKind::FilingApproval if case.filed.is_some() => {
            refuse(format!("is already filed: no second {title}"))
        }
        DocumentKind::PenaltyNotice
        | DocumentKind::HearingNotice
        | DocumentKind::PenaltyDecision
            if case.filed.is_none() =>
        {
            refuse(format!(
                "is not filed yet: its {title} follows the approved 立案审批表"
            ))
        }
        DocumentKind::PenaltyNotice if document_of(d, kind).is_some() => {
            refuse(format!("already has its {title}"))
        }
        DocumentKind::HearingNotice if case.hearing_on.is_none() => refuse(format!(
            "no hearing was requested: a {title} answers the party's request"
        )),
        DocumentKind::PenaltyDecision if case.notice_served.is_none() => refuse(format!(
            "its 行政处罚告知书 was not served: no {title} before the party was told and heard"
        )),
        DocumentKind::HearingNotice | DocumentKind::PenaltyDecision if case.decided.is_some() => {
            refuse(format!("is already decided: no {title}"))
        }
        _ => Ok(()),
    }
}

/// A stage of a case's procedure on a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageStatus {
    /// The stage, its due day, article and completion.
    #[serde(flatten)]
    pub due: StageDue,
    /// Overdue on the day asked about.
    pub overdue: bool,
}

/// A referred case's procedure on `on`: its stages with their due days and whether they are
/// overdue, and the latest day a requested hearing's notice may be served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Procedure {
    /// The case.
    pub case_id: String,
    /// The day.
    pub on: NaiveDate,
    /// The stages whose clocks have started.
    pub stages: Vec<StageStatus>,
    /// A requested hearing's day and the latest day its notice may be served, with the rule.
    pub hearing: Option<(NaiveDate, NaiveDate, String)>,
}

/// The procedure of referred case `case_id` on `on`.
pub fn procedure(
    ledger: &Ledger,
    case_id: &str,
    on: NaiveDate,
    rules: &Rules,
    cal: &Calendar,
) -> Result<Procedure> {
    let d = ledger.show(case_id)?;
    let case = case_of(&d, on)?
        .ok_or_else(|| CaseworkError::ledger(case_id, "was not referred: no penalty procedure"))?;
    let stages = schedule(&case, &rules.penalty.clock, cal)?
        .into_iter()
        .map(|s| StageStatus {
            overdue: s.overdue_on(on),
            due: s,
        })
        .collect();
    let hearing = match case.hearing_on {
        Some(h) => Some((
            h,
            hearing_notice_by(h, rules.penalty.hearing_notice_working_days, cal)?,
            rules.penalty.hearing_notice_article.clone(),
        )),
        None => None,
    };
    Ok(Procedure {
        case_id: case_id.to_string(),
        on,
        stages,
        hearing,
    })
}

/// Records step `step` of referred case `case_id` on `on`, in order: the notice served after
/// filing, once its 行政处罚告知书 is issued; a hearing request after the notice (the note is the
/// hearing day); a stop (the note is its reason) with none open, a resume of an open one; an
/// extension of a stage that has one (the note names it); the decision served after it is
/// decided. Each step once (stops and extensions may repeat). Filing and deciding are refused
/// here: they are recorded by approving their documents.
pub fn record(
    ledger: &mut Ledger,
    case_id: &str,
    step: PenaltyStep,
    on: NaiveDate,
    actor: &str,
    note: &str,
    rules: &Rules,
) -> Result<()> {
    if actor.trim().is_empty() {
        return Err(CaseworkError::ledger(case_id, "the actor is empty"));
    }
    let detail = ledger.show(case_id)?;
    let (case, open_stop) = trail(&detail)?
        .ok_or_else(|| CaseworkError::ledger(case_id, "was not referred: no penalty procedure"))?;
    let open_stop = open_stop.is_some();
    let refuse = |why: &str| Err(CaseworkError::ledger(case_id, why.to_string()));
    let mut served = None;
    match step {
        PenaltyStep::Filed => {
            return refuse(
                "is filed by approving its 立案审批表: pharmwatch case propose CASE --document \
                 filing-approval, then an inspector submits and an approver approves the draft",
            );
        }
        PenaltyStep::Decided => {
            return refuse(
                "is decided by approving its 行政处罚决定书: pharmwatch case propose CASE \
                 --document penalty-decision, then an inspector submits and an approver approves \
                 the draft",
            );
        }
        PenaltyStep::NoticeServed if case.filed.is_none() => {
            return refuse("is not filed yet");
        }
        PenaltyStep::NoticeServed if case.notice_served.is_some() => {
            return refuse("its notice was already served");
        }
        PenaltyStep::NoticeServed => match document_of(&detail, DocumentKind::PenaltyNotice) {
            Some(n) => served = Some(n.to_string()),
            None => return refuse("its 行政处罚告知书 was not issued: nothing to serve"),
        },
        PenaltyStep::HearingRequested if case.notice_served.is_none() => {
            return refuse("a hearing is asked for after the notice of the proposed penalty");
        }
        PenaltyStep::HearingRequested => {
            let day = date(note, "hearing day (--note YYYY-MM-DD)", case_id)?;
            if day <= on {
                return refuse("the hearing day must come after the request");
            }
        }
        PenaltyStep::ClockStopped if open_stop => return refuse("its clocks are already stopped"),
        PenaltyStep::ClockStopped if stop_reason(note).is_none() => {
            return refuse(
                "a stop names its reason (--note hearing, testing, appraisal, suspension or \
                 announcement)",
            );
        }
        PenaltyStep::ClockResumed if !open_stop => return refuse("its clocks are not stopped"),
        PenaltyStep::ExtensionGranted => {
            let stage = note.trim();
            match rules.penalty.clock.iter().find(|c| c.stage == stage) {
                Some(c) if c.extension > 0 => {}
                _ => {
                    return refuse(
                        "an extension names a stage that has one (--note decision, \
                         filing_decision)",
                    );
                }
            }
            if case.extended.iter().any(|s| s == stage) {
                return refuse("that stage was already extended");
            }
        }
        PenaltyStep::DecisionServed if case.decided.is_none() => {
            return refuse("is not decided yet");
        }
        PenaltyStep::DecisionServed if case.decision_served.is_some() => {
            return refuse("its decision was already served");
        }
        PenaltyStep::DecisionServed => {
            served = document_of(&detail, DocumentKind::PenaltyDecision).map(str::to_string);
        }
        _ => {}
    }
    ledger.immediate(|tx, path| {
        append_event(
            tx,
            path,
            case_id,
            step.event(),
            on,
            actor,
            note.trim(),
            served.as_deref(),
        )
    })
}

/// The text `pharmwatch case penalty` prints.
pub fn format(p: &Procedure) -> String {
    let mut out = format!("penalty procedure of case {} on {}\n", p.case_id, p.on);
    for s in &p.stages {
        let d = &s.due;
        out.push_str(&format!(
            "  {:<18} {:<10} from {} due {}{}{}{}  {}\n",
            d.stage,
            d.name,
            d.from,
            d.due,
            if d.extended { " (extended)" } else { "" },
            if d.stopped_days > 0 {
                format!(" ({} day(s) stopped)", d.stopped_days)
            } else {
                String::new()
            },
            match (d.done_on, s.overdue) {
                (Some(done), true) => format!("  done {done}, LATE"),
                (Some(done), false) => format!("  done {done}"),
                (None, true) => "  OVERDUE".to_string(),
                (None, false) => String::new(),
            },
            d.article
        ));
    }
    if let Some((day, notice_by, article)) = &p.hearing {
        out.push_str(&format!(
            "  hearing on {day}: its notice served by {notice_by} ({article})\n"
        ));
    }
    out
}

/// A stage of a referred case overdue on a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverdueStage {
    /// The case.
    pub case_id: String,
    /// The enterprise's name.
    pub enterprise_name: String,
    /// The stage, its due day and article.
    pub stage: StageDue,
}

/// The overdue stages of every open referred case on `on` (the alerts' and the report's
/// figure). A case whose clocks run past the calendar's years is skipped: its due days wait
/// for the next year's calendar, as the measures' deadlines do.
pub fn overdue(
    ledger: &Ledger,
    on: NaiveDate,
    rules: &Rules,
    cal: &Calendar,
) -> Result<Vec<OverdueStage>> {
    let mut out = Vec::new();
    for c in ledger.list(true, None)? {
        let d = ledger.show(&c.case_id)?;
        let Some(case) = case_of(&d, on)? else {
            continue;
        };
        let Ok(stages) = schedule(&case, &rules.penalty.clock, cal) else {
            continue;
        };
        out.extend(
            stages
                .into_iter()
                .filter(|s| s.overdue_on(on))
                .map(|stage| OverdueStage {
                    case_id: c.case_id.clone(),
                    enterprise_name: c.enterprise_name.clone(),
                    stage,
                }),
        );
    }
    Ok(out)
}
