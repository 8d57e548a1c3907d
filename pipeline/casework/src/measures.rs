//! `pharmwatch calendar` and `pharmwatch measures decide`: the regulation crate's calendar and
//! measures engine behind the command line, as library functions the CLI prints and the tests
//! call. The calendar of a deployment is the built-in years plus the ones operators load into
//! its store (`calendar import`, `calendar status`).
//!
//! Invariants: a date outside the calendar's years is an error, never a guess; `decide` reads
//! every finding of its input, decides the readable ones and reports each refused one (index,
//! `case_id`, field, reason) — one bad finding never stops the others.

use std::fmt;
use std::path::Path;

use chrono::{Datelike, NaiveDate};
use pharmwatch_regulation::calendar::CalendarYear;
use pharmwatch_regulation::{Decision, FindingError, Rules};

use crate::error::Result;
use crate::ledger::{Ledger, Opening, Origin};
use pharmwatch_core::error::CoreError;
use pharmwatch_regulation::{Calendar, DayClass};

/// The calendar from `path`, or the embedded one (2025–2026) when `None`.
pub fn load_calendar(path: Option<&Path>) -> Result<Calendar> {
    Ok(match path {
        Some(p) => Calendar::from_path(p)?,
        None => Calendar::embedded()?,
    })
}

/// The calendar of a deployment: `--calendar FILE` or the built-in years, plus the years loaded
/// into the store of output directory `out` (`pharmwatch calendar import`) when one is given.
pub fn calendar_for(path: Option<&Path>, out: Option<&Path>) -> Result<Calendar> {
    let base = load_calendar(path)?;
    match out {
        Some(out) => Ledger::open(out)?.calendar(&base),
        None => Ok(base),
    }
}

/// Days before the calendar runs out at which operators are warned (the alert rule
/// `PharmwatchCalendarEndingSoon` uses the same figure).
pub const COVERAGE_WARNING_DAYS: i64 = 60;

/// What `pharmwatch calendar status` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CalendarStatus {
    /// The day the status is for.
    pub on: NaiveDate,
    /// The covered years and where each comes from.
    pub coverage: pharmwatch_core::calendar_store::Coverage,
    /// Days from `on` to the last covered day.
    pub days_left: i64,
    /// The next year's calendar should be loaded now (fewer than
    /// [`COVERAGE_WARNING_DAYS`] left).
    pub load_next_year: bool,
    /// Deadlines of open measures waiting for a year the calendar does not cover.
    pub pending: Vec<crate::ledger::PendingDeadline>,
}

/// `calendar status` for the store of `ledger` on `on`.
pub fn calendar_status(ledger: &Ledger, base: &Calendar, on: NaiveDate) -> Result<CalendarStatus> {
    let stored = pharmwatch_core::calendar_store::stored_years(ledger.conn(), ledger.path())?;
    let cal = pharmwatch_core::calendar_store::with_years(base, &stored)?;
    let coverage = pharmwatch_core::calendar_store::coverage(&cal, &stored)?;
    let days_left = (coverage.covered_until - on).num_days();
    Ok(CalendarStatus {
        on,
        days_left,
        load_next_year: days_left < COVERAGE_WARNING_DAYS,
        coverage,
        pending: ledger.pending_deadlines()?,
    })
}

/// The text `calendar status` prints.
pub fn format_status(s: &CalendarStatus) -> String {
    let mut out = String::from("working-day calendar (工作日历):\n");
    for y in &s.coverage.years {
        out.push_str(&format!(
            "  {}  {} working days  {}\n",
            y.year, y.working_days, y.source
        ));
    }
    out.push_str(&format!(
        "covered until {} ({} days from {})\n",
        s.coverage.covered_until, s.days_left, s.on
    ));
    if s.load_next_year {
        out.push_str(&format!(
            "WARNING: fewer than {COVERAGE_WARNING_DAYS} days of calendar left: load the {} \
             schedule as soon as the State Council publishes it (pharmwatch calendar import)\n",
            s.coverage.covered_until.year() + 1
        ));
    }
    out.push_str(&format!(
        "deadlines pending the calendar: {}\n",
        s.pending.len()
    ));
    for p in &s.pending {
        out.push_str(&format!(
            "  {:<34} {:<22} needs {}  {}  {}\n",
            p.case_id,
            p.code,
            p.needs_year,
            p.due_counts
                .iter()
                .map(pharmwatch_regulation::WorkingDayCount::describe)
                .collect::<Vec<_>>()
                .join(" or "),
            if p.enterprise_name.is_empty() {
                &p.enterprise_id
            } else {
                &p.enterprise_name
            }
        ));
    }
    out
}

/// The text `calendar import` prints.
pub fn format_import(year: &CalendarYear, r: &crate::ledger::CalendarImport) -> String {
    let mut out = format!(
        "{} {} ({}): {} working days, covered until {}\n",
        if r.replaced { "replaced" } else { "loaded" },
        r.year,
        year.notice,
        r.working_days,
        r.covered_until
    );
    for h in year.holidays() {
        out.push_str(&format!(
            "  {}: {} … {} off{}\n",
            h.name,
            h.from,
            h.to,
            if h.makeup_workdays.is_empty() {
                String::new()
            } else {
                format!(
                    ", make-up working days {}",
                    h.makeup_workdays
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
    }
    let set = r.changes.iter().filter(|c| c.was.is_none()).count();
    out.push_str(&format!(
        "deadlines: {set} set, {} changed, {} still pending\n",
        r.changes.len() - set,
        r.still_pending
    ));
    for c in &r.changes {
        out.push_str(&format!(
            "  {:<34} {:<22} {} → {}\n",
            c.case_id,
            c.code,
            c.was
                .map_or_else(|| "pending".to_string(), |d| d.to_string()),
            c.now
                .map_or_else(|| "pending".to_string(), |d| d.to_string())
        ));
    }
    out
}

/// The measures rules from `path`, or the embedded defaults (seed 004 and seed 000) when `None`.
pub fn load_rules(path: Option<&Path>) -> Result<Rules> {
    match path {
        Some(p) => Ok(Rules::from_path(p)
            .map_err(|e| CoreError::regulation(format!("rules file {}", p.display()), e))?),
        None => Ok(Rules::embedded().map_err(|e| CoreError::regulation("embedded rules", e))?),
    }
}

/// `calendar add-working-days`: the due date `n` working days after `date`.
pub fn add_working_days(cal: &Calendar, date: NaiveDate, n: u32) -> Result<NaiveDate> {
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
    pub kind: DayClass,
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
pub fn is_working_day(cal: &Calendar, date: NaiveDate) -> Result<DayAnswer> {
    let kind = cal.day_class(date)?;
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
    /// The inspection day of each decision's finding (same order as `decisions`).
    pub inspected_on: Vec<NaiveDate>,
    /// One error per refused finding (index, case id, field, reason), in input order.
    pub errors: Vec<FindingError>,
}

impl DecideOutput {
    /// The decisions as the pretty-printed JSON array the command prints on stdout.
    pub fn decisions_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(&self.decisions)
            .map_err(|e| CoreError::Internal(format!("decisions to JSON: {e}")))?)
    }
}

/// `measures decide`: reads the JSON array of findings in `path` and decides each.
pub fn decide_file(path: &Path, rules: &Rules, cal: &Calendar) -> Result<DecideOutput> {
    let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
    let (findings, mut errors) = pharmwatch_regulation::parse_findings(&text);
    let (mut decisions, mut inspected_on) = (Vec::new(), Vec::new());
    for (index, finding) in findings {
        match pharmwatch_regulation::decide(&finding, rules, cal) {
            Ok(d) => {
                decisions.push(d);
                inspected_on.push(finding.inspection_date);
            }
            Err(err) => errors.push(FindingError::from_error(
                Some(index),
                Some(finding.case_id.clone()),
                &err,
            )),
        }
    }
    errors.sort_by_key(|e| e.index);
    Ok(DecideOutput {
        decisions,
        inspected_on,
        errors,
    })
}

/// `measures decide --record`: opens or updates one case per decision with measures, each on
/// the inspection day of its finding, or on `on` for all when given. Returns (cases opened,
/// cases updated).
pub fn record_decided(
    ledger: &mut Ledger,
    out: &DecideOutput,
    actor: &str,
    on: Option<NaiveDate>,
) -> Result<(usize, usize)> {
    let (mut opened, mut updated) = (0, 0);
    for (d, inspected) in out.decisions.iter().zip(&out.inspected_on) {
        let (o, u) = record_decisions_on(
            ledger,
            std::slice::from_ref(d),
            actor,
            on.unwrap_or(*inspected),
        )?;
        opened += o;
        updated += u;
    }
    Ok((opened, updated))
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
