//! End to end: simulate (fixed seed) → nightly with the closed loop → caution notices rendered and
//! cases opened → report recorded → verified → case closed; and a case whose deadline passes and
//! escalates to the key-monitoring list, then to case referral. Also checks that a rendered
//! caution notice has every part the domain brief requires.

use std::path::Path;

use crate::common::d;
use crate::common::{TEST_2027, simulate_province};
use chrono::NaiveDate;
use pharmwatch::anomaly::ModelSource;
use pharmwatch::closedloop::{ClosedLoop, ClosedLoopSummary};
use pharmwatch::display::indicator_zh;
use pharmwatch::indicators::Thresholds;
use pharmwatch::ledger::{Ledger, RecordedEvent};
use pharmwatch::measures;
use pharmwatch::nightly::{self, NightlyConfig, NightlyOutput};
use pharmwatch::notices::NoticesConfig;
use pharmwatch::risk::RiskItem;
use pharmwatch_regulation::Calendar;

/// Simulates 60 enterprises over 45 days from 2026-03-02 (seed 7) and runs the nightly job over
/// its last 7 days with the closed loop.
fn simulate_and_run(dir: &Path) -> (NightlyOutput, ClosedLoopSummary) {
    let cal = Calendar::embedded().unwrap();
    let lake = dir.join("lake");
    let sim = simulate_province(&lake, &cal);
    let cfg = NightlyConfig {
        lake: Some(lake),
        reference: None,
        inputs: Vec::new(),
        from: sim.end - chrono::Duration::days(6),
        to: sim.end,
        out: dir.join("out"),
        thresholds: Thresholds::default(),
        top: 5,
        progress: false,
        model: ModelSource::Off,
        anomaly_threshold: pharmwatch::anomaly::DEFAULT_THRESHOLD,
    };
    let cl = ClosedLoop {
        notices: NoticesConfig {
            grades: vec!["B".into(), "C".into(), "D".into()],
            issue: pharmwatch::notices::IssueMode::Direct,
            authority: Some(crate::common::test_authority()),
            // The leads the simulated contacts name: every notice addresses its lead.
            contacts: Some(dir.join("lake/reference/contacts.json")),
            ..NoticesConfig::default()
        },
        rules: measures::load_rules(None).unwrap(),
        calendar: cal,
        run_date: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (out, summary) = rt.block_on(nightly::run_with(&cfg, Some(&cl))).unwrap();
    (out, summary.unwrap())
}

#[test]
fn nightly_notices_open_cases_that_close_after_verification_or_escalate_when_overdue() {
    let dir = tempfile::tempdir().unwrap();
    let (out, summary) = simulate_and_run(dir.path());
    let run_date = out.summary.to;
    assert!(
        !out.rows.is_empty(),
        "the planted anomalies give risk-list rows"
    );
    assert!(summary.cases_opened >= 2, "{summary:?}");
    assert_eq!(summary.documents.len(), summary.cases_opened);
    assert_eq!(summary.selected, summary.cases_opened);

    let out_dir = dir.path().join("out");
    let mut ledger = Ledger::open(&out_dir).unwrap();
    let cases = ledger.list(true, None).unwrap();
    assert_eq!(cases.len(), summary.cases_opened);

    // Every notice is on disk, numbered 1..N in its series, with the row's evidence as facts.
    let docs = ledger.documents(None).unwrap();
    let mut seqs: Vec<i64> = docs.iter().map(|x| x.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=docs.len() as i64).collect::<Vec<_>>());
    for (number, file) in &summary.documents {
        let html = std::fs::read_to_string(file).unwrap();
        assert!(html.contains(number.as_str()));
        assert!(Path::new(file).with_extension("md").exists());
    }

    let cal = Calendar::embedded().unwrap();
    let rules = measures::load_rules(None).unwrap();
    let due = cal.add_working_days(run_date, 30).unwrap();
    for c in &cases {
        assert_eq!(c.origin, "risk_list");
        assert_eq!(c.next_due.as_deref(), Some(due.to_string().as_str()));
    }
    // 蒙药监 (十三): a grade-D row's case puts its enterprise on the key-monitoring list; a
    // grade-B or C row's does not.
    let mut graded = std::collections::BTreeSet::new();
    for c in &cases {
        let row = out
            .rows
            .iter()
            .find(|r| pharmwatch::closedloop::case_id(r) == c.case_id)
            .unwrap();
        let listed = ledger
            .list_entries(Some(&c.case_id))
            .unwrap()
            .iter()
            .any(|l| l.list_name == "key_monitoring");
        assert_eq!(
            listed,
            row.grade == "D",
            "{} grade {}",
            c.case_id,
            row.grade
        );
        graded.insert(row.grade.clone());
    }
    assert!(!graded.is_empty());
    // A grade-D row confirmed (as an inspector does in the workbench) opens its case with the
    // key-monitoring listing and its article.
    let mut d_row = out
        .rows
        .iter()
        .find(|r| !cases.iter().any(|c| c.enterprise_id == r.enterprise_id))
        .expect("a row of an enterprise without a case")
        .clone();
    d_row.grade = "D".into();
    let cl = ClosedLoop {
        notices: NoticesConfig::default(),
        rules: rules.clone(),
        calendar: cal.clone(),
        run_date: None,
    };
    let who = pharmwatch::audit::Actor {
        name: "检查员甲".into(),
        role: "inspector".into(),
    };
    let opened =
        pharmwatch::closedloop::open_case(&mut ledger, &d_row, run_date, &cl, &who, None, None)
            .unwrap()
            .unwrap();
    let lists = ledger.list_entries(Some(&opened.case_id)).unwrap();
    assert!(
        lists.iter().any(|l| l.list_name == "key_monitoring"),
        "{lists:?}"
    );
    let measure = ledger
        .show(&opened.case_id)
        .unwrap()
        .measures
        .into_iter()
        .find(|m| m.code == "key_monitoring_list")
        .unwrap();
    assert!(measure.article.contains("(十三)"), "{}", measure.article);

    // A second nightly run on the same night opens nothing new: the cases are followed.
    let again = pharmwatch::closedloop::run(
        &out_dir,
        &out.rows,
        run_date,
        &ClosedLoop {
            notices: NoticesConfig {
                grades: vec!["B".into(), "C".into(), "D".into()],
                issue: pharmwatch::notices::IssueMode::Direct,
                authority: Some(crate::common::test_authority()),
                ..NoticesConfig::default()
            },
            rules: rules.clone(),
            calendar: cal.clone(),
            run_date: None,
        },
    )
    .unwrap();
    assert_eq!(again.cases_opened, 0);
    assert_eq!(again.already_open, summary.cases_opened);

    // Case A: report received → verified → closed.
    let a = &cases[0].case_id;
    ledger
        .record(a, RecordedEvent::Delivered, "送达员", "", run_date, false)
        .unwrap();
    ledger
        .record(
            a,
            RecordedEvent::ReportReceived,
            "张三",
            "整改报告",
            due,
            false,
        )
        .unwrap();
    ledger
        .record(a, RecordedEvent::Verified, "李四", "", due, true)
        .unwrap();
    let shown = ledger.show(a).unwrap();
    assert_eq!(shown.case.status, "closed");
    let trail: Vec<&str> = shown.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(trail.first(), Some(&"opened"));
    assert!(trail.contains(&"notice_issued"));
    assert_eq!(
        &trail[trail.len() - 4..],
        ["delivered", "report_received", "verified", "closed"]
    );

    // Case B: nothing arrives. The day after the deadline the sweep puts it on the
    // key-monitoring list with a new deadline; when that passes too, case referral.
    let b = cases[1].case_id.clone();
    let after = cal.add_working_days(due, 1).unwrap();
    let s = ledger.sweep(after, &rules, &cal, "nightly").unwrap();
    assert!(s.escalated >= 1);
    let shown = ledger.show(&b).unwrap();
    assert!(shown.lists.iter().any(|l| l.list_name == "key_monitoring"));
    assert!(shown.measures.iter().all(|m| m.code != "case_referral"));
    let new_due: NaiveDate = shown
        .measures
        .iter()
        .find(|m| m.code == "deadline_rectification" && m.state == "open")
        .unwrap()
        .due_date
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let later = cal.add_working_days(new_due, 1).unwrap();
    ledger.sweep(later, &rules, &cal, "nightly").unwrap();
    let shown = ledger.show(&b).unwrap();
    assert!(shown.measures.iter().any(|m| m.code == "case_referral"));
    let trail: Vec<&str> = shown.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(trail.iter().filter(|e| **e == "escalated").count(), 2);
    assert!(trail.contains(&"overdue"));
    // Case A stayed closed and went on the low-risk list at the sweep.
    assert!(
        ledger
            .list_entries(Some(a))
            .unwrap()
            .iter()
            .any(|l| l.list_name == "low_risk")
    );
}

#[test]
fn a_rendered_caution_notice_has_every_required_part() {
    let dir = tempfile::tempdir().unwrap();
    let (out, summary) = simulate_and_run(dir.path());
    let ledger = Ledger::open(&dir.path().join("out")).unwrap();
    let (number, _) = &summary.documents[0];
    let doc = ledger
        .documents(None)
        .unwrap()
        .into_iter()
        .find(|x| &x.number == number)
        .unwrap();
    let case = ledger.show(&doc.case_id).unwrap();
    let row = out
        .rows
        .iter()
        .find(|r| r.enterprise_id == case.case.enterprise_id)
        .unwrap();
    let (html, markdown) = ledger.document_text(number).unwrap().unwrap();
    let due = case
        .measures
        .iter()
        .find(|m| m.code == "caution")
        .unwrap()
        .due_date
        .clone()
        .unwrap();
    let due: NaiveDate = due.parse().unwrap();
    let due_zh = pharmwatch::notices::date_zh(due);
    let items: Vec<RiskItem> = serde_json::from_str(&case.facts_json).unwrap();
    assert!(!items.is_empty());
    for text in [&html, &markdown] {
        assert!(text.contains("行政告诫书"));
        assert!(text.contains(number.as_str()), "document number");
        assert!(number.starts_with("蒙药监告〔"), "{number}");
        assert!(text.contains(&row.enterprise_name), "addressee");
        assert!(text.contains(&row.enterprise_id), "credit code");
        assert!(text.contains(&row.licence_no), "licence");
        assert!(text.contains("药品智慧监管平台"), "how it was detected");
        for item in &items {
            assert!(
                text.contains(&item.window_start.to_string()),
                "evidence window"
            );
            assert!(
                text.contains(indicator_zh(&item.indicator)),
                "the risk named in Chinese: {}",
                item.indicator
            );
            assert!(
                !text.contains(&item.reason),
                "the risk list's English explanation stays out of the notice"
            );
        }
        assert!(text.contains("第九十九条"), "药品管理法 article 99");
        assert!(text.contains("第十条(四)"), "the measure's article");
        assert!(text.contains(&due_zh), "due date {due_zh}");
        assert!(text.contains("内蒙古自治区药品监督管理局"), "authority");
        assert!(text.contains("联系电话"), "contact");
        assert!(text.contains("送达回证"), "proof of service");
        if case.first_minor {
            assert!(text.contains("观察期") && !text.contains("立案"));
        } else {
            assert!(text.contains("重点监控名单") && text.contains("立案"));
        }
    }
    assert!(html.starts_with("<!DOCTYPE html>"));
}

#[test]
fn a_rendered_caution_notice_opens_in_chromium_as_a_document() {
    let bin = crate::common::chromium();
    let dir = tempfile::tempdir().unwrap();
    let (_, summary) = simulate_and_run(dir.path());
    let ledger = Ledger::open(&dir.path().join("out")).unwrap();
    let (number, _) = &summary.documents[0];
    let (html, _) = ledger.document_text(number).unwrap().unwrap();
    let page = dir.path().join("notice.html");
    std::fs::write(&page, &html).unwrap();

    // The notice addresses the enterprise's lead by the name its registered contacts give.
    let case = ledger
        .documents(None)
        .unwrap()
        .into_iter()
        .find(|d| &d.number == number)
        .unwrap()
        .case_id;
    let enterprise = ledger.show(&case).unwrap().case.enterprise_id;
    let lead =
        pharmwatch::contacts::Directory::load(&dir.path().join("lake/reference/contacts.json"))
            .unwrap()
            .contacts_of(&enterprise)[0]
            .lead_name
            .clone();
    assert!(!lead.is_empty());
    assert!(
        html.contains(&format!("企业负责人：{lead}")),
        "{lead} not addressed"
    );
    // What the browser laid out: the title, the number, the facts table and the seal line.
    let dom = crate::common::headless(&bin, &page, (1240, 1754), &["--dump-dom".to_string()]);
    for part in [
        "行政告诫书",
        number.as_str(),
        "查明的事实",
        "<table",
        "（盖章：内蒙古自治区药品监督管理局）",
        "送达回证",
    ] {
        assert!(dom.contains(part), "{part} missing from the rendered page");
    }

    // What a person sees: an A4-shaped page with real content on it.
    crate::common::assert_screenshot_has_content(&bin, &page, (1240, 1754), 10, "notice");
}

/// Runs the `pharmwatch` binary; panics with its output when it cannot start.
fn pharmwatch(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pharmwatch"))
        .args(args)
        .output()
        .unwrap()
}

/// The value of an unlabelled metric in a textfile.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// The night of 2026-11-25 on a province simulated from 2026-10-15 for 50 days: the cases it
/// opens have 30-working-day deadlines in 2027, which the built-in calendar does not cover.
/// The night succeeds with those deadlines pending; a malformed 2027 file is refused with its
/// line; the good one sets every pending deadline with a ledger event, and the next night has
/// none pending.
#[test]
fn a_night_whose_deadlines_run_into_an_unloaded_year_succeeds_and_the_import_sets_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let (lake, out) = (p("lake"), p("out"));
    let sim = pharmwatch(&crate::common::autumn_province_args(&lake));
    assert!(
        sim.status.success(),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let notices_config = p("pharmwatch.toml");
    std::fs::write(&notices_config, crate::common::DIRECT_NOTICES_TOML).unwrap();
    let prom = p("nightly.prom");
    let night = |date: &str| {
        pharmwatch(&[
            "nightly",
            "--lake",
            &lake,
            "--date",
            date,
            "--no-model",
            "--quiet",
            "--config",
            &notices_config,
            "--out",
            &out,
            "--metrics-textfile",
            &prom,
        ])
    };
    let first = night("2026-11-25");
    let stdout = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(
        first.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains("wait for the 2027 working-day calendar"),
        "{stdout}"
    );
    let metrics = std::fs::read_to_string(&prom).unwrap();
    let pending = metric(&metrics, "pharmwatch_deadlines_pending_calendar");
    assert!(pending >= 2.0, "{metrics}");
    let end_of_2026 = (d("2026-12-31") - d("1970-01-01")).num_days() as f64 * 86_400.0;
    assert_eq!(
        metric(
            &metrics,
            "pharmwatch_calendar_covered_until_timestamp_seconds"
        ),
        end_of_2026
    );
    let report = std::fs::read_to_string(dir.path().join("out/report.html")).unwrap();
    assert!(
        report.contains("data-notice=\"calendar\""),
        "no calendar notice"
    );

    let ledger = Ledger::open(Path::new(&out)).unwrap();
    let waiting = ledger.pending_deadlines().unwrap();
    assert_eq!(waiting.len() as f64, pending);
    let case_id = waiting[0].case_id.clone();
    drop(ledger);
    let show = pharmwatch(&["case", "show", &case_id, "--out", &out]);
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(
        shown.contains("pending the 2027 calendar (30 working days after"),
        "{shown}"
    );

    let status = pharmwatch(&["calendar", "status", "--out", &out, "--on", "2026-11-26"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("covered until 2026-12-31 (35 days from 2026-11-26)"),
        "{text}"
    );
    assert!(text.contains("WARNING: fewer than 60 days"), "{text}");
    assert!(
        text.contains(&format!(
            "deadlines pending the calendar: {}",
            waiting.len()
        )),
        "{text}"
    );

    // A make-up working day on a Monday (line 15): refused, naming the line; nothing changes.
    let bad = p("2027-bad.toml");
    std::fs::write(&bad, TEST_2027.replace("2027-02-14, ", "2027-02-15, ")).unwrap();
    let refused = pharmwatch(&["calendar", "import", &bad, "--out", &out]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains("line 15"), "{err}");
    assert!(
        err.contains("2027-02-15 is a Mon, not a Saturday or Sunday"),
        "{err}"
    );
    let ledger = Ledger::open(Path::new(&out)).unwrap();
    assert_eq!(ledger.pending_deadlines().unwrap().len(), waiting.len());
    drop(ledger);

    let good = p("2027.toml");
    std::fs::write(&good, TEST_2027).unwrap();
    let loaded = pharmwatch(&[
        "calendar",
        "import",
        &good,
        "--out",
        &out,
        "--actor",
        "运维甲",
        "--at",
        "2026-12-01",
    ]);
    let text = String::from_utf8_lossy(&loaded.stdout);
    assert!(
        loaded.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(
        text.starts_with(
            "loaded 2027 (test notice 2027): 257 working days, covered until 2027-12-31"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "deadlines: {} set, 0 changed, 0 still pending",
            waiting.len()
        )),
        "{text}"
    );
    let ledger = Ledger::open(Path::new(&out)).unwrap();
    assert!(ledger.pending_deadlines().unwrap().is_empty());
    let case = ledger.show(&case_id).unwrap();
    let set = case
        .events
        .iter()
        .find(|e| e.event == "deadline_set")
        .unwrap();
    assert_eq!(
        (set.actor.as_str(), set.event_date.as_str()),
        ("运维甲", "2026-12-01")
    );
    assert!(case.measures.iter().all(|m| m.due_pending_year.is_none()));
    drop(ledger);

    let next = night("2026-11-26");
    assert!(
        next.status.success(),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    let metrics = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(
        metric(&metrics, "pharmwatch_deadlines_pending_calendar"),
        0.0
    );
    assert_eq!(
        metric(
            &metrics,
            "pharmwatch_calendar_covered_until_timestamp_seconds"
        ),
        end_of_2026 + 365.0 * 86_400.0
    );
}
