//! Helpers of the casework tests: dates, a sample enterprise and finding, recording decisions
//! in a real ledger, and a made-up 2027 year file.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;

use chrono::NaiveDate;
use pharmwatch_casework::ledger::Ledger;
use pharmwatch_casework::measures;

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
    let rules = measures::load_rules(None).unwrap();
    let cal = measures::load_calendar(None).unwrap();
    let decided = measures::decide_file(&path, &rules, &cal).unwrap();
    assert!(decided.errors.is_empty(), "{:?}", decided.errors);
    let mut ledger = Ledger::open_file(&pharmwatch_core::db::scratch_store(out)).unwrap();
    measures::record_decisions_on(&mut ledger, &decided.decisions, "检查员甲", on).unwrap();
    ledger
}

/// A finding pending rectification with 16 general defects (a caution under article 10).
pub fn caution_finding(case_id: &str) -> String {
    format!(
        r#"[{{"case_id":"{case_id}","enterprise_id":"{ENTERPRISE}","inspection_date":"2026-03-02",
            "conclusion":"pending_rectification","defects":{{"critical":0,"major":2,"general":16}}}}]"#
    )
}

/// A caution finding (16 general defects) inspected on `date`.
pub fn caution_finding_on(case_id: &str, date: &str) -> String {
    caution_finding(case_id).replace("2026-03-02", date)
}

/// A 2027 year file for the calendar tests. Made-up test data, **not** the State Council's
/// schedule: New Year off 01-01 … 01-03, Spring Festival 02-06 … 02-13 with make-up working
/// days 02-14 and 02-20.
pub const TEST_2027: &str = r#"# test data, not the State Council's 2027 schedule
year = 2027
notice = "test notice 2027"
source_url = "https://example.invalid/2027"

[[holiday]]
name = "元旦"
from = 2027-01-01
to = 2027-01-03

[[holiday]]
name = "春节"
from = 2027-02-06
to = 2027-02-13
makeup_workdays = [2027-02-14, 2027-02-20]
"#;

/// The authority of the tests' documents.
pub fn test_authority() -> pharmwatch_casework::notices::AuthorityConfig {
    pharmwatch_casework::notices::AuthorityConfig {
        name: "内蒙古自治区药品监督管理局".into(),
        seal_name: "内蒙古自治区药品监督管理局".into(),
        abbreviation: "蒙药监".into(),
        contact_department: "药品流通监督管理处".into(),
        contact_phone: "0471-6945678".into(),
        address: "呼和浩特市赛罕区".into(),
    }
}
