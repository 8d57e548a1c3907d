//! Notice numbering under concurrent writers: `WRITERS` threads, each with its own connection
//! to one store (as separate processes or hosts have), issue caution notices on cases of their
//! own; then every document number of the series is checked for gaps and duplicates.
//!
//! Usage (release build; a store file path or a `postgres://` URL of an empty database):
//!   cargo run --release -p pharmwatch-casework --example numbering_bench -- STORE [WRITERS] [PER_WRITER]
//! Prints the numbers per second and the gap and duplicate counts (both must be 0).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Instant;

use chrono::NaiveDate;
use pharmwatch_casework::ledger::Ledger;
use pharmwatch_casework::measures;
use pharmwatch_casework::notices::{self, AuthorityConfig, DocumentKind};

fn main() {
    let mut args = std::env::args().skip(1);
    let store = PathBuf::from(args.next().expect("STORE (a file path or postgres:// URL)"));
    let writers: usize = args.next().map_or(8, |s| s.parse().unwrap());
    let per_writer: usize = args.next().map_or(50, |s| s.parse().unwrap());
    let day: NaiveDate = "2026-03-02".parse().unwrap();
    let authority = AuthorityConfig {
        name: "内蒙古自治区药品监督管理局".into(),
        seal_name: "内蒙古自治区药品监督管理局".into(),
        abbreviation: "蒙药监".into(),
        contact_department: "药品流通监督管理处".into(),
        contact_phone: "0471-6945678".into(),
        address: "呼和浩特市赛罕区".into(),
    };

    // One case per writer, decided from an inspection finding.
    let findings: Vec<String> = (0..writers)
        .map(|i| {
            format!(
                r#"{{"case_id":"BENCH-{i}","enterprise_id":"91110000600037341L",
                    "inspection_date":"2026-03-02","conclusion":"pending_rectification",
                    "defects":{{"critical":0,"major":2,"general":16}}}}"#
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("findings.json");
    std::fs::write(&file, format!("[{}]", findings.join(","))).unwrap();
    let rules = measures::load_rules(None).unwrap();
    let cal = measures::load_calendar(None).unwrap();
    let decided = measures::decide_file(&file, &rules, &cal).unwrap();
    let mut ledger = Ledger::open_file(&store).unwrap();
    measures::record_decisions_on(&mut ledger, &decided.decisions, "检查员甲", day).unwrap();
    drop(ledger);

    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..writers {
            let (store, rules, authority) = (&store, &rules, &authority);
            s.spawn(move || {
                let mut ledger = Ledger::open_file(store).unwrap();
                for _ in 0..per_writer {
                    notices::issue(
                        &mut ledger,
                        &format!("BENCH-{w}"),
                        DocumentKind::CautionNotice,
                        day.succ_opt().unwrap(),
                        "并发基准",
                        authority,
                        rules,
                        None,
                    )
                    .unwrap();
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let ledger = Ledger::open_file(&store).unwrap();
    let mut seqs: Vec<i64> = ledger
        .documents(None)
        .unwrap()
        .iter()
        .map(|d| d.seq)
        .collect();
    seqs.sort_unstable();
    let n = seqs.len();
    let mut distinct = seqs.clone();
    distinct.dedup();
    let duplicates = n - distinct.len();
    let max = distinct.last().copied().unwrap_or(0);
    let gaps = usize::try_from(max).unwrap() - distinct.len();
    println!(
        "{writers} writers × {per_writer}: {n} numbers in {seconds:.2} s = {:.0} numbers/s; \
         gaps {gaps}, duplicates {duplicates}",
        n as f64 / seconds
    );
    assert_eq!(n, writers * per_writer, "every issue took a number");
    assert_eq!((gaps, duplicates), (0, 0));
}
