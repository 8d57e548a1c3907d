//! Helpers shared by the ledger, guidance, credit and closed-loop tests: dates, a sample
//! enterprise and finding, recording decisions in a real ledger, and the small simulated
//! province the closed-loop tests run the nightly job over; headless Chromium for the tests
//! that look at a rendered page; loopback ports, the test broker and a plain HTTP GET for the
//! tests that run services.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;

use chrono::NaiveDate;
use pharmwatch::ledger::Ledger;
use pharmwatch::measures;
use pharmwatch::simulate::{self, SimConfig, SimSummary};
use pharmwatch_regulation::Calendar;

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
    let mut ledger = Ledger::open(out).unwrap();
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

/// Simulates 60 enterprises over 45 days from 2026-03-02 (seed 7, anomalies in the last 10
/// days) into `lake`.
pub fn simulate_province(lake: &Path, cal: &Calendar) -> SimSummary {
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
            noise: pharmwatch_sim::simulate::noise::NoiseConfig::off(),
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
pub fn headless(bin: &str, page: &Path, size: (u32, u32), args: &[String]) -> String {
    headless_url(bin, &format!("file://{}", page.display()), size, args)
}

/// Runs Chromium headless on `url` in a `width`×`height` window with extra arguments;
/// returns stdout.
pub fn headless_url(bin: &str, url: &str, (width, height): (u32, u32), args: &[String]) -> String {
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
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a person sees: a screenshot of `page` in a `size` window is that size and compresses
/// more than `factor` times worse than one of an empty page (real content on it).
/// `PHARMWATCH_KEEP_SCREENSHOT=FILE` keeps the screenshot.
pub fn assert_screenshot_has_content(
    bin: &str,
    page: &Path,
    size: (u32, u32),
    factor: usize,
    what: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.html");
    std::fs::write(
        &blank,
        "<!doctype html><html><head><meta charset=\"utf-8\"></head><body></body></html>",
    )
    .unwrap();
    let shot = |p: &Path, name: &str| {
        let png = dir.path().join(name);
        headless(bin, p, size, &[format!("--screenshot={}", png.display())]);
        std::fs::read(&png).unwrap()
    };
    let page_png = shot(page, "page.png");
    let blank_png = shot(&blank, "blank.png");
    assert_eq!(png_size(&page_png), size);
    assert!(
        page_png.len() > factor * blank_png.len(),
        "the {what} screenshot ({} bytes) is not much more than an empty page ({} bytes)",
        page_png.len(),
        blank_png.len()
    );
    if let Ok(keep) = std::env::var("PHARMWATCH_KEEP_SCREENSHOT") {
        std::fs::copy(dir.path().join("page.png"), keep).unwrap();
    }
}

/// Width and height from a PNG's IHDR chunk.
pub fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    (be(16), be(20))
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The test broker (`PHARMWATCH_TEST_BROKER`, set by `scripts/test.sh`).
pub fn broker() -> String {
    match std::env::var("PHARMWATCH_TEST_BROKER") {
        Ok(b) if !b.is_empty() => b,
        _ => panic!(
            "PHARMWATCH_TEST_BROKER is not set: these tests need a Kafka-protocol broker on loopback. \
             Run scripts/test.sh (it installs and starts tansu), or start one yourself: \
             `tansu broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
             --storage-engine memory://tansu/` and export PHARMWATCH_TEST_BROKER=127.0.0.1:9092"
        ),
    }
}

/// A plain HTTP/1.1 GET on loopback: (status, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept-Encoding: identity\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The authority of the tests' documents.
pub fn test_authority() -> pharmwatch::notices::AuthorityConfig {
    pharmwatch::notices::AuthorityConfig {
        name: "内蒙古自治区药品监督管理局".into(),
        seal_name: "内蒙古自治区药品监督管理局".into(),
        abbreviation: "蒙药监".into(),
        contact_department: "药品流通监督管理处".into(),
        contact_phone: "0471-6945678".into(),
        address: "呼和浩特市赛罕区".into(),
    }
}

/// The `[notices]` table of a test configuration that issues directly under
/// [`test_authority`].
pub const DIRECT_NOTICES_TOML: &str = "[notices]\nissue = \"direct\"\ngrades = [\"B\", \"C\", \"D\"]\n\
[notices.authority]\nname = \"内蒙古自治区药品监督管理局\"\nseal_name = \"内蒙古自治区药品监督管理局\"\n\
abbreviation = \"蒙药监\"\ncontact_department = \"药品流通监督管理处\"\ncontact_phone = \"0471-6945678\"\n\
address = \"呼和浩特市赛罕区\"\n";

/// The arguments of `pharmwatch simulate` for the nights of late November 2026: 60 enterprises
/// over 50 days from 2026-10-15 (seed 7) into `lake`. Noise-free, as every closed-loop fixture:
/// the tests are about cases and documents, not detection. Four anomalies per kind: with
/// magnitudes drawn across their range, two per kind left no row above grade A on the night of
/// 2026-11-25; four give three (one C, two B).
pub fn autumn_province_args(lake: &str) -> Vec<&str> {
    vec![
        "simulate",
        "--enterprises",
        "60",
        "--days",
        "50",
        "--start",
        "2026-10-15",
        "--seed",
        "7",
        "--anomalies-per-kind",
        "4",
        "--no-noise",
        "--quiet",
        "--out",
        lake,
    ]
}

/// The first row of a lake file of `kind`, as the JSON of its contract fields (`None` for an
/// empty file): a valid record to send again, or to change into a malformed one.
pub async fn first_row_as_json(
    file: &Path,
    kind: pharmwatch_schemas::EventKind,
) -> Option<serde_json::Value> {
    let ctx = datafusion::prelude::SessionContext::new();
    let cols: Vec<&str> = kind.fields().iter().map(|f| f.name).collect();
    let batches = ctx
        .read_parquet(file.to_string_lossy().as_ref(), Default::default())
        .await
        .unwrap()
        .select_columns(&cols)
        .unwrap()
        .limit(0, Some(1))
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::json::ArrayWriter::new(&mut buf);
        for b in &batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
    }
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&buf).unwrap();
    rows.into_iter().next()
}
