//! `pharmwatch calendar` and `pharmwatch measures decide`: the regulation crate's calendar and
//! measures engine behind the command line, as library functions the CLI prints and the tests
//! call.
//!
//! Invariants: a date outside the calendar's years is an error, never a guess; `decide` reads
//! every finding of its input, decides the readable ones and reports each refused one (index,
//! `case_id`, field, reason) — one bad finding never stops the others.

use std::fmt;
use std::path::Path;

use chrono::NaiveDate;
use pharmwatch_regulation::{Decision, FindingError, Rules, decide_json};

use crate::calendar::{DayKind, WorkingCalendar};
use crate::error::{PipelineError, Result};
use crate::ledger::{Ledger, Opening, Origin};

/// The calendar from `path`, or the embedded one (2025–2026) when `None`.
pub fn load_calendar(path: Option<&Path>) -> Result<WorkingCalendar> {
    Ok(match path {
        Some(p) => WorkingCalendar::from_csv_path(p)?,
        None => WorkingCalendar::embedded()?,
    })
}

/// The measures rules from `path`, or the embedded defaults (seed 004 and seed 000) when `None`.
pub fn load_rules(path: Option<&Path>) -> Result<Rules> {
    match path {
        Some(p) => Rules::from_path(p)
            .map_err(|e| PipelineError::regulation(format!("rules file {}", p.display()), e)),
        None => Rules::embedded().map_err(|e| PipelineError::regulation("embedded rules", e)),
    }
}

/// `calendar add-working-days`: the due date `n` working days after `date`.
pub fn add_working_days(cal: &WorkingCalendar, date: NaiveDate, n: u32) -> Result<NaiveDate> {
    Ok(cal.add_working_days(date, n)?)
}

/// The answer of `calendar is-working-day`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayAnswer {
    /// The date asked about.
    pub date: NaiveDate,
    /// Whether it counts towards a working-day deadline.
    pub working: bool,
    /// What kind of day it is.
    pub kind: DayKind,
}

impl fmt::Display for DayAnswer {
    /// `2025-10-01 no: statutory holiday (国庆节、中秋节)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.date,
            if self.working { "yes" } else { "no" },
            self.kind.describe()
        )
    }
}

/// `calendar is-working-day`: whether `date` is a working day, and why.
pub fn is_working_day(cal: &WorkingCalendar, date: NaiveDate) -> Result<DayAnswer> {
    let kind = cal.day_kind(date)?;
    Ok(DayAnswer {
        date,
        working: kind.is_working_day(),
        kind,
    })
}

/// What `measures decide` produced from one findings file.
#[derive(Debug, Clone)]
pub struct DecideOutput {
    /// The decisions of the accepted findings, in input order.
    pub decisions: Vec<Decision>,
    /// One error per refused finding (index, case id, field, reason), in input order.
    pub errors: Vec<FindingError>,
}

impl DecideOutput {
    /// The decisions as the pretty-printed JSON array the command prints on stdout.
    pub fn decisions_json(&self) -> Result<String> {
        serde_json::to_string_pretty(&self.decisions)
            .map_err(|e| PipelineError::Internal(format!("decisions to JSON: {e}")))
    }
}

/// `measures decide`: reads the JSON array of findings in `path` and decides each.
pub fn decide_file(path: &Path, rules: &Rules, cal: &WorkingCalendar) -> Result<DecideOutput> {
    let text = std::fs::read_to_string(path).map_err(|e| PipelineError::io(path, e))?;
    let (decisions, errors) = decide_json(&text, rules, cal.regulation());
    Ok(DecideOutput { decisions, errors })
}

/// `measures decide --record`: opens or updates one case per decision with measures, decided
/// on `on` (a decision does not carry the inspection day). Returns (cases opened, cases
/// updated).
pub fn record_decisions_on(
    ledger: &mut Ledger,
    decisions: &[Decision],
    actor: &str,
    on: NaiveDate,
) -> Result<(usize, usize)> {
    let (mut opened, mut updated) = (0, 0);
    for d in decisions {
        if d.measures.is_empty() {
            continue;
        }
        let new = ledger.apply_decision(&Opening {
            decision: d,
            on,
            origin: Origin::Finding,
            actor,
            enterprise_name: "",
            facts_json: "[]",
            addressee_json: "{}",
        })?;
        if new {
            opened += 1;
        } else {
            updated += 1;
        }
    }
    Ok((opened, updated))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn worked_examples_and_day_kinds() {
        let cal = load_calendar(None).unwrap();
        assert_eq!(
            add_working_days(&cal, d("2025-09-26"), 5).unwrap(),
            d("2025-10-10")
        );
        let holiday = is_working_day(&cal, d("2025-10-01")).unwrap();
        assert!(!holiday.working);
        assert_eq!(
            holiday.to_string(),
            "2025-10-01 no: statutory holiday (国庆节、中秋节)"
        );
        let makeup = is_working_day(&cal, d("2026-02-14")).unwrap();
        assert_eq!(
            makeup.to_string(),
            "2026-02-14 yes: make-up working day (春节)"
        );
        let err = is_working_day(&cal, d("2027-03-01")).unwrap_err();
        assert!(err.to_string().contains("2025–2026"), "{err}");
    }

    #[test]
    fn decide_reports_bad_findings_and_decides_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        std::fs::write(
            &path,
            r#"[
              {"case_id":"C1","enterprise_id":"91110000600037341L","inspection_date":"2026-03-02",
               "conclusion":"pending_rectification","defects":{"critical":0,"major":6,"general":0}},
              {"case_id":"C2","enterprise_id":"91110000600037341L","inspection_date":"2026-03-02",
               "conclusion":"pending_rectification","defects":{"critical":0,"major":1,"general":0},
               "flags":["no_such_flag"]}
            ]"#,
        )
        .unwrap();
        let rules = load_rules(None).unwrap();
        let cal = load_calendar(None).unwrap();
        let out = decide_file(&path, &rules, &cal).unwrap();
        assert_eq!(out.decisions.len(), 1);
        assert_eq!(out.decisions[0].case_id, "C1");
        assert!(
            out.decisions_json()
                .unwrap()
                .contains("\"code\": \"interview\"")
        );
        assert_eq!(out.errors.len(), 1);
        let e = out.errors[0].to_string();
        assert!(e.contains("C2") && e.contains("flags[0]"), "{e}");
    }
}
