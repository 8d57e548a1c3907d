//! The documents of a referred case's penalty procedure, end to end: the filing form proposed
//! with the binary and approved by a person files the case; the notice of the proposed penalty,
//! the hearing notice and the decision carry what the case officer wrote; service is recorded
//! with the binary; each document written under `OUT/notices/` and laid out in headless
//! Chromium; the filing form never reaches the enterprise.

use std::path::Path;

use pharmwatch::audit::Actor;
use pharmwatch::drafts;
use pharmwatch::ledger::{IssuedDocument, Ledger};
use pharmwatch::notices::{Edits, Particulars};

use crate::common::{caution_finding_on, d, decide_and_record, test_authority};

const CASE: &str = "INSP-PENALTY-DOCS";

fn pharmwatch(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pharmwatch"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs the binary and returns stdout, asserting success.
fn ok(args: &[&str]) -> String {
    let out = pharmwatch(args);
    assert!(
        out.status.success(),
        "pharmwatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Proposes `kind` with the binary, then the case officer edits and submits it and the head
/// approves it (the workbench's steps); returns the document and its written HTML file.
fn issue(out: &Path, kind: &str, particulars: Particulars, on: &str) -> (IssuedDocument, String) {
    let o = out.to_str().unwrap();
    let said = ok(&[
        "case",
        "propose",
        CASE,
        "--document",
        kind,
        "--actor",
        "办案人员甲",
        "--on",
        on,
        "--out",
        o,
    ]);
    let id: i64 = said
        .split("draft ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no draft id in {said}"));
    let mut ledger = Ledger::open(out).unwrap();
    let officer = Actor {
        name: "办案人员甲".into(),
        role: "inspector".into(),
    };
    let edits = Edits {
        particulars,
        ..Edits::default()
    };
    drafts::edit(&mut ledger, id, &officer, &edits).unwrap();
    drafts::submit(&mut ledger, id, &officer).unwrap();
    let head = Actor {
        name: "负责人乙".into(),
        role: "approver".into(),
    };
    let rules = pharmwatch::measures::load_rules(None).unwrap();
    let (doc, file) = drafts::approve(
        &mut ledger,
        id,
        &head,
        d(on),
        &test_authority(),
        &rules,
        Some(out),
    )
    .unwrap();
    (doc, file.unwrap().display().to_string())
}

fn fine(text: &str) -> Particulars {
    Particulars {
        penalty: text.into(),
        penalty_basis: "《中华人民共和国药品管理法》第一百二十六条".into(),
        violated: "《药品经营质量管理规范》第九十二条".into(),
        hearing_place: String::new(),
    }
}

#[test]
fn a_referred_case_s_documents_are_issued_at_their_stages_and_read_as_documents() {
    let bin = crate::common::chromium();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let o = out.to_str().unwrap();
    let rules = pharmwatch::measures::load_rules(None).unwrap();
    let mut ledger = decide_and_record(
        out,
        &caution_finding_on(CASE, "2026-06-15"),
        d("2026-06-15"),
    );
    ledger
        .refer_case(CASE, "涉嫌销售劣药", d("2026-06-22"), &rules, "负责人乙")
        .unwrap();
    drop(ledger);

    // Filing is the head's approval, never a step typed by hand.
    let refused = pharmwatch(&[
        "case",
        "penalty",
        CASE,
        "--step",
        "filed",
        "--actor",
        "办案人员甲",
        "--on",
        "2026-07-01",
        "--out",
        o,
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("立案审批表"));
    // A notice of the proposed penalty before filing is refused by the binary.
    let early = pharmwatch(&[
        "case",
        "propose",
        CASE,
        "--document",
        "penalty-notice",
        "--actor",
        "办案人员甲",
        "--on",
        "2026-07-01",
        "--out",
        o,
    ]);
    assert!(!early.status.success());
    assert!(String::from_utf8_lossy(&early.stderr).contains("not filed"));

    let (filing, filing_html) = issue(out, "filing-approval", Particulars::default(), "2026-07-03");
    let (notice, notice_html) = issue(
        out,
        "penalty-notice",
        fine("罚款人民币伍万元"),
        "2026-07-20",
    );
    ok(&[
        "case",
        "penalty",
        CASE,
        "--step",
        "notice-served",
        "--actor",
        "办案人员甲",
        "--on",
        "2026-07-21",
        "--out",
        o,
    ]);
    ok(&[
        "case",
        "penalty",
        CASE,
        "--step",
        "hearing-requested",
        "--note",
        "2026-08-14",
        "--actor",
        "办案人员甲",
        "--on",
        "2026-07-24",
        "--out",
        o,
    ]);
    let place = Particulars {
        hearing_place: "本局三楼听证室".into(),
        ..Particulars::default()
    };
    let (_, hearing_html) = issue(out, "hearing-notice", place, "2026-07-27");
    let (decision, decision_html) = issue(
        out,
        "penalty-decision",
        fine("罚款人民币肆万元"),
        "2026-08-31",
    );
    ok(&[
        "case",
        "penalty",
        CASE,
        "--step",
        "decision-served",
        "--actor",
        "办案人员甲",
        "--on",
        "2026-09-02",
        "--out",
        o,
    ]);

    // The ledger's procedure: filed and decided on the approvals' days, nothing overdue.
    let shown = ok(&["case", "penalty", CASE, "--on", "2026-09-30", "--out", o]);
    assert!(
        shown.contains("done 2026-07-03"),
        "filed by the approval: {shown}"
    );
    assert!(
        shown.contains("done 2026-08-31"),
        "decided by the approval: {shown}"
    );
    assert!(shown.contains("done 2026-09-02"), "{shown}");
    assert!(
        !shown.contains("OVERDUE") && !shown.contains("LATE"),
        "{shown}"
    );

    // What the browser lays out for each document.
    let dom = |file: &str| {
        crate::common::headless(
            &bin,
            Path::new(file),
            (1240, 1754),
            &["--dump-dom".to_string()],
        )
    };
    let filing_dom = dom(&filing_html);
    for part in [
        "<h1>立案审批表</h1>",
        filing.number.as_str(),
        "案件来源",
        "涉嫌销售劣药",
        rules.documents.filing_basis.as_str(),
        "承办人：办案人员甲",
        "负责人：负责人乙",
        "不送达当事人",
    ] {
        assert!(
            filing_dom.contains(part),
            "{part} missing from the filing form"
        );
    }
    assert!(
        !filing_dom.contains("送达回证"),
        "an internal form has no proof of service"
    );
    for (html, title, parts) in [
        (
            &notice_html,
            "行政处罚告知书",
            vec![
                "二、拟作出的行政处罚及其理由、依据",
                "罚款人民币伍万元",
                "三、你单位享有的权利",
            ],
        ),
        (
            &hearing_html,
            "听证通知书",
            vec!["2026年8月14日在本局三楼听证室", notice.number.as_str()],
        ),
        (
            &decision_html,
            "行政处罚决定书",
            vec![
                "二、处罚的理由、依据和内容",
                "罚款人民币肆万元",
                "60日内依法申请行政复议",
                "6个月内依法向人民法院提起行政诉讼",
            ],
        ),
    ] {
        let page = dom(html);
        assert!(page.contains(&format!("<h1>{title}</h1>")), "{title}");
        for part in parts
            .iter()
            .chain(&["（盖章：内蒙古自治区药品监督管理局）", "送达回证"])
        {
            assert!(page.contains(part), "{part} missing from the {title}");
        }
    }
    crate::common::assert_screenshot_has_content(
        &bin,
        Path::new(&decision_html),
        (1240, 1754),
        10,
        "penalty decision",
    );

    // The enterprise sees the three letters, never the internal form; no delivery is queued
    // for the form.
    let ledger = Ledger::open(out).unwrap();
    let mut st = ledger
        .conn()
        .prepare(include_str!("../../../sql/serve/enterprise_notices.sql"))
        .unwrap();
    let seen: Vec<String> = st
        .query_map([crate::common::ENTERPRISE], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.contains(&decision.number) && !seen.contains(&filing.number));
    let queued: i64 = ledger
        .conn()
        .query_row(
            "SELECT COUNT(*) FROM deliveries WHERE document_no = ?1",
            [&filing.number],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(queued, 0);
}
