//! Helpers shared by the ledger, guidance, credit and closed-loop tests: dates, a sample
//! enterprise and finding, recording decisions in a real ledger, and the small simulated
//! province the closed-loop tests run the nightly job over.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;

use chrono::NaiveDate;
use pharmwatch::calendar::WorkingCalendar;
use pharmwatch::ledger::Ledger;
use pharmwatch::regcmd;
use pharmwatch::simulate::{self, SimConfig, SimSummary};

/// A valid credit code the findings are about.
pub const ENTERPRISE: &str = "91110000600037341L";

/// A date from `YYYY-MM-DD`.
pub fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// Decides `findings` (JSON array) and records them in the ledger of `out` on `on`.
pub fn decide_and_record(out: &Path, findings: &str, on: NaiveDate) -> Ledger {
    let path = out.join("findings.json");
    std::fs::write(&path, findings).unwrap();
    let rules = regcmd::load_rules(None).unwrap();
    let cal = regcmd::load_calendar(None).unwrap();
    let decided = regcmd::decide_file(&path, &rules, &cal).unwrap();
    assert!(decided.errors.is_empty(), "{:?}", decided.errors);
    let mut ledger = Ledger::open(out).unwrap();
    regcmd::record_decisions_on(&mut ledger, &decided.decisions, "检查员甲", on).unwrap();
    ledger
}

/// A finding pending rectification with 16 general defects (a caution under article 10).
pub fn caution_finding(case_id: &str) -> String {
    format!(
        r#"[{{"case_id":"{case_id}","enterprise_id":"{ENTERPRISE}","inspection_date":"2026-03-02",
            "conclusion":"pending_rectification","defects":{{"critical":0,"major":2,"general":16}}}}]"#
    )
}

/// Simulates 60 enterprises over 45 days from 2026-03-02 (seed 7, anomalies in the last 10
/// days) into `lake`.
pub fn simulate_province(lake: &Path, cal: &WorkingCalendar) -> SimSummary {
    simulate::run(
        &SimConfig {
            enterprises: 60,
            days: 45,
            start: d("2026-03-02"),
            seed: 7,
            anomaly_days: 10,
            anomalies_per_kind: Some(2),
            out: lake.to_path_buf(),
            progress: false,
        },
        cal,
    )
    .unwrap()
}
