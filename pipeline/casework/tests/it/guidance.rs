//! Compliance guidance for one enterprise, read from a real ledger: an open caution case shows
//! its due date and the report to submit; a first minor violation shows the end of its
//! observation period and the fault-tolerance exemption; an enterprise without cases gets the
//! "nothing applies" answer; a case closed after report → verified no longer shows as open.

use crate::common::{ENTERPRISE, caution_finding, d, decide_and_record};
use chrono::NaiveDate;
use pharmwatch_casework::guidance::{self, Guidance};
use pharmwatch_casework::ledger::{Ledger, RecordedEvent};
use pharmwatch_casework::measures;
use pharmwatch_regulation::Calendar;

fn guidance_on(ledger: &Ledger, on: NaiveDate) -> Guidance {
    let rules = measures::load_rules(None).unwrap();
    let cal = Calendar::embedded().unwrap();
    guidance::guidance(ledger, ENTERPRISE, on, &rules, &cal).unwrap()
}

#[test]
fn open_caution_case_shows_due_date_and_report_to_submit() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = decide_and_record(dir.path(), &caution_finding("C-1"), d("2026-03-02"));
    let on = d("2026-03-10");
    let g = guidance_on(&ledger, on);
    assert!(!g.nothing_applies);
    assert_eq!(g.open_cases.len(), 1);
    let case = &g.open_cases[0];
    assert_eq!(case.case_id, "C-1");
    let caution = case.measures.iter().find(|m| m.code == "caution").unwrap();
    assert_eq!(caution.due_date, Some(d("2026-04-14")));
    assert!(caution.article.contains("第十条"), "{}", caution.article);
    let cal = Calendar::embedded().unwrap();
    let left = cal.working_days_between(on, d("2026-04-14")).unwrap();
    assert_eq!(caution.working_days_left, Some(i64::from(left)));
    let step = caution.next_step.as_ref().unwrap();
    assert_eq!(step.action, "rectification_report");
    assert_eq!(step.by, Some(d("2026-04-14")));
    // Self-report and diligence exemptions are offered as claimable, not as applying.
    assert!(
        g.exemptions
            .iter()
            .any(|e| e.code == "diligent_exemption" && e.status == "available")
    );

    let text = guidance::format_text(&g);
    assert!(text.contains("2026-04-14 前提交整改报告"), "{text}");
    assert!(text.contains("告诫 (caution)"), "{text}");
    assert!(text.contains(&format!("剩余 {left} 个工作日")), "{text}");
    let json = serde_json::to_value(&g).unwrap();
    assert_eq!(json["open_cases"][0]["case_id"], "C-1");
    assert_eq!(json["nothing_applies"], false);

    // After the due date the measure reads overdue, with a negative count.
    let late = guidance_on(&ledger, d("2026-04-16"));
    let caution = late.open_cases[0]
        .measures
        .iter()
        .find(|m| m.code == "caution")
        .unwrap();
    assert_eq!(caution.working_days_left, Some(-2));
}

#[test]
fn first_minor_case_shows_observation_period_and_fault_tolerance_exemption() {
    let dir = tempfile::tempdir().unwrap();
    let finding = format!(
        r#"[{{"case_id":"M-1","enterprise_id":"{ENTERPRISE}","inspection_date":"2026-03-02",
            "conclusion":"pending_rectification","defects":{{"critical":0,"major":0,"general":3}},
            "first_violation":true,"harm":"none"}}]"#
    );
    let ledger = decide_and_record(dir.path(), &finding, d("2026-03-02"));
    let g = guidance_on(&ledger, d("2026-03-10"));
    assert_eq!(g.observation_periods.len(), 1);
    let p = &g.observation_periods[0];
    assert_eq!(p.case_id, "M-1");
    assert_eq!(p.ends_on, d("2026-04-01"));
    assert_eq!(p.days_left, 22);
    assert!(g.open_cases[0].first_minor);
    assert!(
        g.lists
            .iter()
            .any(|l| l.list == "fault_tolerance" && l.until_date.as_deref() == Some("2026-04-01"))
    );
    let ex = g
        .exemptions
        .iter()
        .find(|e| e.code == "first_minor_no_penalty")
        .unwrap();
    assert_eq!(ex.status, "conditional");
    assert!(ex.text.contains("2026-04-01"), "{}", ex.text);
    let text = guidance::format_text(&g);
    assert!(text.contains("观察期 (observation periods)"), "{text}");
    assert!(text.contains("至 2026-04-01"), "{text}");
    assert!(text.contains("容错清单 (fault-tolerance list)"), "{text}");
    assert!(text.contains("免予行政处罚"), "{text}");

    // After the period the case is still open but the period and the list entry are over.
    let after = guidance_on(&ledger, d("2026-04-02"));
    assert!(after.observation_periods.is_empty());
    assert!(after.lists.iter().all(|l| l.list != "fault_tolerance"));
    assert!(
        after
            .exemptions
            .iter()
            .any(|e| e.code == "first_minor_no_penalty" && e.status == "lapsed")
    );
}

#[test]
fn enterprise_without_cases_gets_nothing_applies_and_bad_codes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open_file(&pharmwatch_core::db::scratch_store(dir.path())).unwrap();
    let g = guidance_on(&ledger, d("2026-03-10"));
    assert!(g.nothing_applies);
    assert!(g.open_cases.is_empty() && g.lists.is_empty() && g.exemptions.is_empty());
    let text = guidance::format_text(&g);
    assert!(text.contains("nothing applies"), "{text}");
    assert_eq!(serde_json::to_value(&g).unwrap()["nothing_applies"], true);

    let rules = measures::load_rules(None).unwrap();
    let cal = Calendar::embedded().unwrap();
    for bad in ["91110000600037341X", "9111000060003734", "not-a-code"] {
        let err = guidance::guidance(&ledger, bad, d("2026-03-10"), &rules, &cal).unwrap_err();
        assert!(err.to_string().starts_with("enterprise_id:"), "{err}");
    }
}

#[test]
fn case_closed_after_report_and_verification_is_no_longer_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = decide_and_record(dir.path(), &caution_finding("C-2"), d("2026-03-02"));
    ledger
        .record(
            "C-2",
            RecordedEvent::ReportReceived,
            "张三",
            "整改报告",
            d("2026-04-10"),
            false,
        )
        .unwrap();
    let g = guidance_on(&ledger, d("2026-04-10"));
    let step = g.open_cases[0].measures[0].next_step.as_ref().unwrap();
    assert_eq!(step.action, "await_verification");
    ledger
        .record(
            "C-2",
            RecordedEvent::Verified,
            "李四",
            "",
            d("2026-04-13"),
            false,
        )
        .unwrap();
    let g = guidance_on(&ledger, d("2026-04-14"));
    assert!(g.open_cases.is_empty());
    assert_eq!(g.closed_cases, 1);
    assert!(g.nothing_applies);
    assert!(!guidance::format_text(&g).contains("C-2"));
}

#[test]
fn suspension_guidance_leads_to_a_resume_request_after_verification() {
    let dir = tempfile::tempdir().unwrap();
    let finding = format!(
        r#"[{{"case_id":"S-1","enterprise_id":"{ENTERPRISE}","inspection_date":"2026-03-02",
            "conclusion":"non_compliant","defects":{{"critical":1,"major":0,"general":0}}}}]"#
    );
    let mut ledger = decide_and_record(dir.path(), &finding, d("2026-03-02"));
    let action = |g: &Guidance| {
        g.open_cases[0]
            .measures
            .iter()
            .find(|m| m.code == "suspend_sales_all")
            .and_then(|m| m.next_step.clone())
            .unwrap()
            .action
    };
    assert_eq!(
        action(&guidance_on(&ledger, d("2026-03-10"))),
        "rectification_report"
    );
    ledger
        .record(
            "S-1",
            RecordedEvent::ReportReceived,
            "张三",
            "",
            d("2026-03-25"),
            false,
        )
        .unwrap();
    ledger
        .record(
            "S-1",
            RecordedEvent::Verified,
            "李四",
            "",
            d("2026-03-30"),
            false,
        )
        .unwrap();
    assert_eq!(
        action(&guidance_on(&ledger, d("2026-03-31"))),
        "resume_request"
    );
}
