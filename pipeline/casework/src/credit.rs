//! The safety credit file (安全信用档案, 赣药监 第二十五条) of an enterprise and the effective credit
//! grade it gives ("风险+信用", 蒙药监 (十三)), derived from the case ledger on a given day.
//! Serves `pharmwatch credit ENTERPRISE_ID` and the nightly risk list (the credit factor of the
//! score uses the effective grade).
//!
//! The file: every measure of the enterprise's cases decided on or before the day, with its
//! decision day, its outcome (open, report received, rectified/verified, lifted, listed,
//! overdue; escalated when its case was escalated) and its publicity period: the months
//! `credit.publicity_months` gives its code in the rules (default
//! `credit.default_publicity_months`, 12), or `leniency.publicity_period_months` (3) when its
//! case is a 蒙药监 (九) case — an enterprise that proved it did its purchase checks and
//! traceability and had no fault, which 蒙药监 (十) gives a shortened publicity and the
//! credit-repair green channel. (十) speaks of penalty information; the ledger holds measures,
//! so the shortened period is applied to every measure of such a case, the nearest reading.
//!
//! The grade: the reference grade (enterprise reference table) lowered by `credit.grade_steps`
//! of each entry still public on the day (A → B one step; floor D); an entry stops counting at
//! the end of its publicity period, or earlier when its case entered the low-risk list
//! (蒙药监 (五): rectified with a compliance commitment), which restores the grade.
//!
//! Invariants:
//! - read-only: building a credit file never writes to the ledger;
//! - the file on day `on` uses only measures decided on or before `on` (a later run does not
//!   rewrite an earlier day's grade);
//! - every step down is explained by a [`CreditReason`] naming the case, the measure, the day
//!   decided and the last day it counts; no reason, no step;
//! - an entry counts on `decided_on ≤ on ≤ public_until`, where `public_until` is the day
//!   before `decided_on + months`.

use std::collections::HashMap;

use chrono::{Months, NaiveDate};
use pharmwatch_regulation::Rules;
use serde::Serialize;

use crate::error::{CaseworkError, Result};
use crate::ledger::{CaseDetail, Ledger};
use pharmwatch_core::risk::EffectiveCredit;

/// The credit grades, best first.
pub const GRADES: [&str; 4] = pharmwatch_core::risk::CREDIT_GRADES;

/// One measure in the credit file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreditEntry {
    /// The case.
    pub case_id: String,
    /// Measure code.
    pub code: String,
    /// Article(s) it rests on.
    pub article: String,
    /// Day decided.
    pub decided_on: NaiveDate,
    /// What came of it: `open`, `report_received`, `rectified_verified`, `lifted`, `listed`,
    /// `overdue`, with `, escalated` when its case was escalated.
    pub outcome: String,
    /// Publicity period in months.
    pub publicity_months: u32,
    /// Whether the period is the 蒙药监 (十) shortened one.
    pub shortened: bool,
    /// Last day it is public.
    pub public_until: NaiveDate,
    /// The day its effect ended early (the case entered the low-risk list), if it did.
    pub restored_on: Option<NaiveDate>,
    /// The day a credit repair of its case was granted, if one was.
    pub repaired_on: Option<NaiveDate>,
    /// Who granted the repair and why (empty without one).
    pub repair: String,
    /// Grade steps it costs while public.
    pub grade_steps: u32,
}

impl CreditEntry {
    /// Whether the entry lowers the grade on `on`.
    pub fn counts_on(&self, on: NaiveDate) -> bool {
        self.grade_steps > 0 && self.public_on(on)
    }

    /// Whether the entry is public on `on` (decided, its period not over, neither restored
    /// by a low-risk listing nor repaired).
    pub fn public_on(&self, on: NaiveDate) -> bool {
        self.decided_on <= on && on <= self.last_public_day()
    }

    /// The last day it is public: the end of its period, or the day before its case was
    /// listed low-risk or its repair granted.
    pub fn last_public_day(&self) -> NaiveDate {
        [self.restored_on, self.repaired_on]
            .into_iter()
            .flatten()
            .map(|d| d - chrono::Duration::days(1))
            .fold(self.public_until, NaiveDate::min)
    }
}

/// Why the effective grade is lower than the reference grade: one public entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreditReason {
    /// The case.
    pub case_id: String,
    /// Measure code.
    pub code: String,
    /// Day decided.
    pub decided_on: NaiveDate,
    /// Last day it counts.
    pub until: NaiveDate,
    /// Grade steps.
    pub steps: u32,
    /// The article of the publicity period (`(十)` when shortened).
    pub basis: String,
}

impl CreditReason {
    /// One line: `caution of case X decided 2026-10-20, public until 2027-10-19: -1 grade`.
    pub fn text(&self) -> String {
        format!(
            "{} of case {} decided {}, public until {}{}: -{} grade",
            self.code,
            self.case_id,
            self.decided_on,
            self.until,
            if self.basis.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.basis)
            },
            self.steps
        )
    }
}

/// An enterprise's credit file and effective grade on a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreditFile {
    /// The enterprise.
    pub enterprise_id: String,
    /// Its name as recorded in its cases.
    pub enterprise_name: String,
    /// The day.
    pub on: NaiveDate,
    /// The reference grade.
    pub reference_grade: String,
    /// The effective grade.
    pub effective_grade: String,
    /// The entries decided on or before `on`, oldest first.
    pub entries: Vec<CreditEntry>,
    /// The entries that lower the grade on `on`.
    pub reasons: Vec<CreditReason>,
}

/// All credit-file entries of an enterprise in the ledger (any day).
pub fn entries(ledger: &Ledger, enterprise_id: &str, rules: &Rules) -> Result<Vec<CreditEntry>> {
    let diligent = &rules.articles.diligent_interview;
    let mut out = Vec::new();
    for case in ledger.list(false, Some(enterprise_id))? {
        let d = ledger.show(&case.case_id)?;
        out.extend(case_entries(&d, rules, diligent)?);
    }
    out.sort_by(|a, b| {
        (a.decided_on, &a.case_id, &a.code).cmp(&(b.decided_on, &b.case_id, &b.code))
    });
    Ok(out)
}

fn day(s: &str, what: &str, case_id: &str) -> Result<NaiveDate> {
    s.parse()
        .map_err(|_| CaseworkError::ledger(case_id, format!("{what} `{s}` is not a date")))
}

fn case_entries(d: &CaseDetail, rules: &Rules, diligent: &str) -> Result<Vec<CreditEntry>> {
    let case_id = &d.case.case_id;
    let shortened = d
        .measures
        .iter()
        .any(|m| pharmwatch_regulation::cites(&m.article, diligent));
    let escalated = d.events.iter().any(|e| e.event == "escalated");
    let restored_on = d
        .lists
        .iter()
        .filter(|l| l.list_name == "low_risk")
        .map(|l| day(&l.entered_on, "low-risk entry", case_id))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .min();
    let repair = repair_state(d)?;
    let (repaired_on, repair_text) = match &repair {
        Some(RepairState::Granted { on, by, note, .. }) => (
            Some(*on),
            format!("credit repair granted {on} by {by}: {note}"),
        ),
        _ => (None, String::new()),
    };
    let mut out = Vec::new();
    for m in &d.measures {
        let decided_on = day(&m.decided_on, "decided_on", case_id)?;
        let months = if shortened {
            rules.leniency.publicity_period_months
        } else {
            rules
                .credit
                .publicity_months
                .get(&m.code)
                .copied()
                .unwrap_or(rules.credit.default_publicity_months)
        };
        let public_until = decided_on
            .checked_add_months(Months::new(months))
            .and_then(|d| d.pred_opt())
            .ok_or_else(|| CaseworkError::ledger(case_id, "publicity period out of range"))?;
        let is_list = m.code.ends_with("_list") || m.code == "observation_period";
        let mut outcome = match (m.state.as_str(), is_list) {
            (_, true) => "listed",
            ("done", _) if m.code.starts_with("suspend_sales") => "lifted",
            ("done", _) => "rectified_verified",
            ("reported", _) => "report_received",
            ("overdue", _) => "overdue",
            _ => "open",
        }
        .to_string();
        if escalated {
            outcome.push_str(", escalated");
        }
        out.push(CreditEntry {
            case_id: case_id.clone(),
            code: m.code.clone(),
            article: m.article.clone(),
            decided_on,
            outcome,
            publicity_months: months,
            shortened,
            public_until,
            restored_on,
            repaired_on,
            repair: repair_text.clone(),
            grade_steps: rules.credit.grade_steps.get(&m.code).copied().unwrap_or(0),
        });
    }
    Ok(out)
}

/// The grade `steps` below `reference` (floor D); an unknown reference grade is kept as is.
pub fn lower(reference: &str, steps: u32) -> String {
    pharmwatch_core::risk::lower_grade(reference, steps)
}

/// The effective grade on `on` from `reference` and the entries, with the reasons.
pub fn effective(
    reference: &str,
    entries: &[CreditEntry],
    on: NaiveDate,
    rules: &Rules,
) -> (String, Vec<CreditReason>) {
    let publicity = &rules.articles.shortened_publicity;
    let reasons: Vec<CreditReason> = entries
        .iter()
        .filter(|e| e.counts_on(on))
        .map(|e| CreditReason {
            case_id: e.case_id.clone(),
            code: e.code.clone(),
            decided_on: e.decided_on,
            until: e.last_public_day(),
            steps: e.grade_steps,
            basis: if e.shortened {
                publicity.clone()
            } else {
                String::new()
            },
        })
        .collect();
    let steps = reasons.iter().map(|r| r.steps).sum();
    (lower(reference, steps), reasons)
}

/// The credit file of an enterprise on `on`.
pub fn credit_file(
    ledger: &Ledger,
    enterprise_id: &str,
    enterprise_name: &str,
    reference_grade: &str,
    on: NaiveDate,
    rules: &Rules,
) -> Result<CreditFile> {
    let all = entries(ledger, enterprise_id, rules)?;
    let (effective_grade, reasons) = effective(reference_grade, &all, on, rules);
    let name = if enterprise_name.is_empty() {
        ledger
            .list(false, Some(enterprise_id))?
            .into_iter()
            .map(|c| c.enterprise_name)
            .find(|n| !n.is_empty())
            .unwrap_or_default()
    } else {
        enterprise_name.to_string()
    };
    Ok(CreditFile {
        enterprise_id: enterprise_id.to_string(),
        enterprise_name: name,
        on,
        reference_grade: reference_grade.to_string(),
        effective_grade,
        entries: all.into_iter().filter(|e| e.decided_on <= on).collect(),
        reasons,
    })
}

/// The credit files of several enterprises, loaded once, for the nightly risk list: the
/// effective grade of each enterprise on each day.
#[derive(Debug, Clone, Default)]
pub struct CreditBook {
    entries: HashMap<String, Vec<CreditEntry>>,
    rules: Option<Rules>,
}

impl CreditBook {
    /// Loads the entries of `enterprises` from the ledger.
    pub fn load<'a>(
        ledger: &Ledger,
        enterprises: impl IntoIterator<Item = &'a str>,
        rules: &Rules,
    ) -> Result<Self> {
        let with_cases: std::collections::HashSet<String> = ledger
            .list(false, None)?
            .into_iter()
            .map(|c| c.enterprise_id)
            .collect();
        let mut map = HashMap::new();
        for e in enterprises {
            if map.contains_key(e) || !with_cases.contains(e) {
                continue;
            }
            let list = entries(ledger, e, rules)?;
            map.insert(e.to_string(), list);
        }
        Ok(Self {
            entries: map,
            rules: Some(rules.clone()),
        })
    }

    /// The effective grade of `enterprise_id` on `on`; `None` when it equals the reference.
    pub fn effective(
        &self,
        enterprise_id: &str,
        on: NaiveDate,
        reference: &str,
    ) -> Option<EffectiveCredit> {
        let rules = self.rules.as_ref()?;
        let list = self.entries.get(enterprise_id)?;
        let (grade, reasons) = effective(reference, list, on, rules);
        if reasons.is_empty() {
            return None;
        }
        Some(EffectiveCredit {
            grade,
            reasons: reasons
                .iter()
                .map(CreditReason::text)
                .collect::<Vec<_>>()
                .join("; "),
        })
    }
}

/// The text `pharmwatch credit` prints.
pub fn render(f: &CreditFile) -> String {
    let mut out = format!(
        "credit file of {} {} on {}\n  reference grade  {}\n  effective grade  {}\n",
        f.enterprise_id, f.enterprise_name, f.on, f.reference_grade, f.effective_grade
    );
    if f.reasons.is_empty() {
        out.push_str("  no entry lowers the grade on this day\n");
    } else {
        out.push_str("why:\n");
        for r in &f.reasons {
            out.push_str(&format!("  {}\n", r.text()));
        }
    }
    out.push_str(&format!("entries ({}):\n", f.entries.len()));
    for e in &f.entries {
        out.push_str(&format!(
            "  {} {:<24} case {}  {}  public {} month(s) until {}{}{}{}  -{}  {}\n",
            e.decided_on,
            e.code,
            e.case_id,
            e.outcome,
            e.publicity_months,
            e.public_until,
            if e.shortened { " (shortened)" } else { "" },
            e.restored_on
                .map(|r| format!(", restored {r} (low-risk list)"))
                .unwrap_or_default(),
            match e.repaired_on {
                Some(r) if r <= f.on => format!(", repaired — {}", e.repair),
                _ => String::new(),
            },
            e.grade_steps,
            e.article
        ));
    }
    out
}

/// Where a case's credit repair stands, from its event trail (`credit_repair_*` events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RepairState {
    /// Applied for, awaiting the inspector's review.
    Applied {
        /// Day applied.
        on: NaiveDate,
        /// Who applied.
        by: String,
    },
    /// Reviewed, awaiting the approver.
    Reviewed {
        /// Day reviewed.
        on: NaiveDate,
        /// The reviewer.
        by: String,
    },
    /// Granted: the case's entries stop counting from `on`.
    Granted {
        /// Day granted.
        on: NaiveDate,
        /// The approver.
        by: String,
        /// The approver's note.
        note: String,
    },
    /// Refused (a new application may follow).
    Refused {
        /// Day refused.
        on: NaiveDate,
        /// Who refused.
        by: String,
        /// Why.
        note: String,
    },
}

/// A step of a credit repair (`pharmwatch credit-repair`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairStep {
    /// The enterprise applies (or an inspector on its behalf).
    Apply,
    /// An inspector reviews the application.
    Review,
    /// An approver grants it.
    Grant,
    /// The reviewer or the approver refuses it, with the reason.
    Refuse,
}

impl RepairStep {
    /// Parses `apply`, `review`, `grant`, `refuse`.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "apply" => Self::Apply,
            "review" => Self::Review,
            "grant" => Self::Grant,
            "refuse" => Self::Refuse,
            other => {
                return Err(CaseworkError::ledger(
                    "-",
                    format!("unknown repair step `{other}`: apply, review, grant or refuse"),
                ));
            }
        })
    }

    fn event(self) -> &'static str {
        match self {
            Self::Apply => "credit_repair_applied",
            Self::Review => "credit_repair_reviewed",
            Self::Grant => "credit_repair_granted",
            Self::Refuse => "credit_repair_refused",
        }
    }
}

/// The repair state of a case: the last `credit_repair_*` step of its trail.
pub fn repair_state(d: &CaseDetail) -> Result<Option<RepairState>> {
    let case_id = &d.case.case_id;
    let mut state = None;
    for e in &d.events {
        let on = || day(&e.event_date, "event_date", case_id);
        let by = e.actor.clone();
        state = Some(match e.event.as_str() {
            "credit_repair_applied" => RepairState::Applied { on: on()?, by },
            "credit_repair_reviewed" => RepairState::Reviewed { on: on()?, by },
            "credit_repair_granted" => RepairState::Granted {
                on: on()?,
                by,
                note: e.note.clone(),
            },
            "credit_repair_refused" => RepairState::Refused {
                on: on()?,
                by,
                note: e.note.clone(),
            },
            _ => continue,
        });
    }
    Ok(state)
}

/// The first day a repair of the case may be applied for: its first measure's decision day
/// plus `credit.repair_min_months`, or that day itself for a 蒙药监 (十) case (the green
/// channel opens with the shortened publicity).
pub fn repair_opens_on(d: &CaseDetail, rules: &Rules) -> Result<Option<NaiveDate>> {
    let diligent = &rules.articles.diligent_interview;
    Ok(opens_on(&case_entries(d, rules, diligent)?, rules))
}

/// [`repair_opens_on`] of a case's entries.
fn opens_on(entries: &[CreditEntry], rules: &Rules) -> Option<NaiveDate> {
    let first = entries.iter().map(|e| e.decided_on).min()?;
    if entries.iter().any(|e| e.shortened) {
        return Some(first);
    }
    first.checked_add_months(Months::new(rules.credit.repair_min_months))
}

/// Records step `step` of the credit repair of `case_id` on `on` by `actor`, in order: an
/// application once the minimum period has passed and every measure of the case is carried
/// out; a review of a pending application; a grant by an approver who is not the reviewer; a
/// refusal of a pending application, with its reason. Returns the new state.
pub fn repair(
    ledger: &mut Ledger,
    case_id: &str,
    step: RepairStep,
    on: NaiveDate,
    actor: &str,
    note: &str,
    rules: &Rules,
) -> Result<RepairState> {
    if actor.trim().is_empty() {
        return Err(CaseworkError::ledger(case_id, "the actor is empty"));
    }
    let d = ledger.show(case_id)?;
    let state = repair_state(&d)?;
    let refuse = |why: String| Err(CaseworkError::ledger(case_id, why));
    match (step, &state) {
        (RepairStep::Apply, Some(RepairState::Applied { .. } | RepairState::Reviewed { .. })) => {
            return refuse("a credit repair application is already pending".into());
        }
        (RepairStep::Apply, Some(RepairState::Granted { on, .. })) => {
            return refuse(format!("its credit repair was granted on {on}"));
        }
        (RepairStep::Apply, _) => {
            let entries = case_entries(&d, rules, &rules.articles.diligent_interview)?;
            let Some(opens) = opens_on(&entries, rules) else {
                return refuse("has no measure in the credit file: nothing to repair".into());
            };
            if on < opens {
                return refuse(format!(
                    "credit repair may be applied for from {opens} ({} months of publicity, \
                     {}; a {} case opens the green channel at once)",
                    rules.credit.repair_min_months,
                    rules.credit.repair_basis,
                    rules.articles.credit_repair
                ));
            }
            let pending: Vec<String> = entries
                .into_iter()
                .filter(|e| {
                    ["open", "report_received", "overdue"]
                        .iter()
                        .any(|o| e.outcome.starts_with(o))
                })
                .map(|e| format!("{} ({})", e.code, e.outcome))
                .collect();
            if !pending.is_empty() {
                return refuse(format!(
                    "credit repair needs every measure carried out; still pending: {}",
                    pending.join(", ")
                ));
            }
        }
        (RepairStep::Review, Some(RepairState::Applied { .. })) => {}
        (RepairStep::Review, _) => return refuse("no credit repair application to review".into()),
        (RepairStep::Grant, Some(RepairState::Reviewed { by, .. })) => {
            if by == actor {
                return refuse(format!(
                    "the repair was reviewed by {by}: another person approves it"
                ));
            }
        }
        (RepairStep::Grant, _) => {
            return refuse("a credit repair is granted only after its review".into());
        }
        (RepairStep::Refuse, Some(RepairState::Applied { .. } | RepairState::Reviewed { .. })) => {
            if note.trim().is_empty() {
                return refuse("a refusal states its reason (--note)".into());
            }
        }
        (RepairStep::Refuse, _) => return refuse("no credit repair application to refuse".into()),
    }
    ledger.immediate(|tx, path| {
        crate::ledger::append_event(tx, path, case_id, step.event(), on, actor, note, None)
    })?;
    repair_state(&ledger.show(case_id)?)?
        .ok_or_else(|| CaseworkError::ledger(case_id, "the repair step was not recorded"))
}

/// One decision on the publication feed (行政处罚信息公示 / 信用信息公示): what, about whom, from
/// when, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Publication {
    /// The enterprise.
    pub enterprise_id: String,
    /// Its name.
    pub enterprise_name: String,
    /// The case.
    pub case_id: String,
    /// Measure code.
    pub code: String,
    /// Article(s) it rests on.
    pub article: String,
    /// Public from (the decision day).
    pub from: NaiveDate,
    /// Public until (its period, or the day before its repair or low-risk listing).
    pub until: NaiveDate,
    /// `(十)` when the shortened period applies.
    pub basis: String,
}

/// The publication feed on `on`: every credit-file entry public that day, across
/// enterprises, oldest first. An entry leaves the feed by itself the day after `until`.
pub fn publications(ledger: &Ledger, on: NaiveDate, rules: &Rules) -> Result<Vec<Publication>> {
    let diligent = &rules.articles.diligent_interview;
    let shortened_basis = &rules.articles.shortened_publicity;
    let mut out = Vec::new();
    for case in ledger.list(false, None)? {
        let d = ledger.show(&case.case_id)?;
        for e in case_entries(&d, rules, diligent)? {
            if !e.public_on(on) {
                continue;
            }
            out.push(Publication {
                enterprise_id: case.enterprise_id.clone(),
                enterprise_name: case.enterprise_name.clone(),
                case_id: e.case_id.clone(),
                code: e.code.clone(),
                article: e.article.clone(),
                from: e.decided_on,
                until: e.last_public_day(),
                basis: if e.shortened {
                    shortened_basis.clone()
                } else {
                    String::new()
                },
            });
        }
    }
    out.sort_by(|a, b| (a.from, &a.case_id, &a.code).cmp(&(b.from, &b.case_id, &b.code)));
    Ok(out)
}

/// Every enterprise's credit-file entries that lower its grade, as the stream baseline
/// carries them ([`pharmwatch_core::baseline::CreditStep`]): decision day, last day counting
/// (its publicity, low-risk listing and repair applied), steps and the reason's text.
pub fn grade_steps(
    ledger: &Ledger,
    rules: &Rules,
) -> Result<std::collections::BTreeMap<String, Vec<pharmwatch_core::baseline::CreditStep>>> {
    let publicity = &rules.articles.shortened_publicity;
    let mut enterprises: Vec<String> = ledger
        .list(false, None)?
        .into_iter()
        .map(|c| c.enterprise_id)
        .collect();
    enterprises.sort();
    enterprises.dedup();
    let mut out = std::collections::BTreeMap::new();
    for e in enterprises {
        let steps: Vec<_> = entries(ledger, &e, rules)?
            .into_iter()
            .filter(|x| x.grade_steps > 0 && x.decided_on <= x.last_public_day())
            .map(|x| {
                let reason = CreditReason {
                    case_id: x.case_id.clone(),
                    code: x.code.clone(),
                    decided_on: x.decided_on,
                    until: x.last_public_day(),
                    steps: x.grade_steps,
                    basis: if x.shortened {
                        publicity.clone()
                    } else {
                        String::new()
                    },
                };
                pharmwatch_core::baseline::CreditStep {
                    from: x.decided_on,
                    until: x.last_public_day(),
                    steps: x.grade_steps,
                    reason: reason.text(),
                }
            })
            .collect();
        if !steps.is_empty() {
            out.insert(e, steps);
        }
    }
    Ok(out)
}
