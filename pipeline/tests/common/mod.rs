//! Helpers shared by the ledger, guidance, credit and closed-loop tests: dates, a sample
//! enterprise and finding, recording decisions in a real ledger, and the small simulated
//! province the closed-loop tests run the nightly job over; headless Chromium for the tests
//! that look at a rendered page.
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

/// Headless Chromium (Debian package `chromium`; `scripts/test.sh` installs it when missing).
pub fn chromium() -> String {
    for bin in ["chromium", "chromium-browser", "google-chrome"] {
        if std::process::Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return bin.to_string();
        }
    }
    panic!(
        "headless Chromium is missing: `apt-get install chromium fonts-noto-cjk` (scripts/test.sh does this)"
    );
}

/// Runs Chromium headless on a file in a `width`×`height` window with extra arguments;
/// returns stdout.
pub fn headless(bin: &str, page: &Path, (width, height): (u32, u32), args: &[String]) -> String {
    let out = std::process::Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--window-size={width},{height}"))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Width and height from a PNG's IHDR chunk.
pub fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    (be(16), be(20))
}
