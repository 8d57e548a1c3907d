//! A referred case's penalty procedure on a real ledger: steps refused out of order, filing
//! and deciding recorded by approving their documents, each document of the procedure at its
//! stage with what the case officer wrote, the stages' clocks from the trail (a testing stop
//! not counted on the decision, an approved extension), overdue stages, the hearing notice's
//! latest day.

use crate::common::{caution_finding_on, d, decide_and_record, test_authority};
use pharmwatch_casework::audit::Actor;
use pharmwatch_casework::drafts;
use pharmwatch_casework::ledger::{IssuedDocument, Ledger};
use pharmwatch_casework::measures;
use pharmwatch_casework::notices::{DocumentKind, Edits, Particulars};
use pharmwatch_casework::penalty::{self, PenaltyStep};
use pharmwatch_regulation::Rules;

fn person(name: &str, role: &str) -> Actor {
    Actor {
        name: name.into(),
        role: role.into(),
    }
}

/// Proposes, edits, submits (the case officer 办案人员甲) and approves (负责人乙) a document
/// of the procedure; returns it with its HTML.
fn issue(
    ledger: &mut Ledger,
    case: &str,
    kind: DocumentKind,
    particulars: Particulars,
    on: &str,
    rules: &Rules,
) -> (IssuedDocument, String) {
    let officer = person("办案人员甲", "inspector");
    let id = drafts::propose_by_hand(ledger, case, kind, d(on), &officer).unwrap();
    let edits = Edits {
        note: "经现场核查，情况属实".into(),
        particulars,
        ..Edits::default()
    };
    drafts::edit(ledger, id, &officer, &edits).unwrap();
    drafts::submit(ledger, id, &officer).unwrap();
    let (doc, _) = drafts::approve(
        ledger,
        id,
        &person("负责人乙", "approver"),
        d(on),
        &test_authority(),
        rules,
        None,
    )
    .unwrap();
    let (html, _) = ledger.document_text(&doc.number).unwrap().unwrap();
    (doc, html)
}

fn penalty_of(content: &str) -> Particulars {
    Particulars {
        penalty: content.into(),
        penalty_basis: "《中华人民共和国药品管理法》第一百二十六条".into(),
        violated: "《药品经营质量管理规范》第九十二条".into(),
        hearing_place: String::new(),
    }
}

#[test]
fn a_referred_case_runs_its_procedure_with_clocks_stops_and_an_extension() {
    let dir = tempfile::tempdir().unwrap();
    let rules = measures::load_rules(None).unwrap();
    let cal = measures::load_calendar(None).unwrap();
    let mut ledger = decide_and_record(
        dir.path(),
        &caution_finding_on("INSP-PENALTY", "2026-06-15"),
        d("2026-06-15"),
    );
    let case = "INSP-PENALTY";
    // Not referred: no procedure.
    assert!(penalty::procedure(&ledger, case, d("2026-06-20"), &rules, &cal).is_err());
    ledger
        .refer_case(case, "涉嫌销售假药", d("2026-06-22"), &rules, "负责人乙")
        .unwrap();
    let mut step = |s: PenaltyStep, on: &str, note: &str| {
        penalty::record(&mut ledger, case, s, d(on), "办案人员甲", note, &rules)
    };
    // Out of order: refused with what is missing.
    let e = step(PenaltyStep::NoticeServed, "2026-06-25", "")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not filed"), "{e}");
    assert!(step(PenaltyStep::DecisionServed, "2026-06-25", "").is_err());
    // Filing is the head's approval of the filing form, not a step recorded by hand.
    let e = step(PenaltyStep::Filed, "2026-07-03", "")
        .unwrap_err()
        .to_string();
    assert!(e.contains("立案审批表"), "{e}");
    // No notice or decision before the case is filed.
    let officer = person("办案人员甲", "inspector");
    for kind in [DocumentKind::PenaltyNotice, DocumentKind::PenaltyDecision] {
        let e = drafts::propose_by_hand(&mut ledger, case, kind, d("2026-06-25"), &officer)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not filed"), "{kind:?}: {e}");
    }
    let (filing, form) = issue(
        &mut ledger,
        case,
        DocumentKind::FilingApproval,
        Particulars::default(),
        "2026-07-03",
        &rules,
    );
    assert_eq!(filing.number, "蒙药监立〔2026〕1号");
    for part in [
        "立案审批表",
        "涉嫌销售假药",
        &rules.documents.filing_basis,
        "承办人：办案人员甲",
        "负责人：负责人乙",
        "2026年7月3日",
        "不送达当事人",
    ] {
        assert!(form.contains(part), "{part} missing from the filing form");
    }
    // The form is internal: no delivery is queued for it.
    let queued: i64 = ledger
        .conn()
        .query_row(
            "SELECT COUNT(*) FROM deliveries WHERE document_no = ?1",
            [&filing.number],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(queued, 0, "the filing form is never delivered");
    let filed = ledger.show(case).unwrap();
    let event = filed
        .events
        .iter()
        .find(|e| e.event == "penalty_filed")
        .unwrap();
    assert_eq!(
        (event.event_date.as_str(), event.document_no.as_deref()),
        ("2026-07-03", Some(filing.number.as_str()))
    );
    let e = drafts::propose_by_hand(
        &mut ledger,
        case,
        DocumentKind::FilingApproval,
        d("2026-07-04"),
        &officer,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("already filed"), "{e}");
    let mut step = |s: PenaltyStep, on: &str, note: &str| {
        penalty::record(&mut ledger, case, s, d(on), "办案人员甲", note, &rules)
    };
    // Testing stops the clocks from 08-10; resumed on 08-30 (20 days not counted).
    assert!(step(PenaltyStep::ClockStopped, "2026-08-10", "lunch").is_err());
    step(PenaltyStep::ClockStopped, "2026-08-10", "testing").unwrap();
    assert!(step(PenaltyStep::ClockStopped, "2026-08-12", "appraisal").is_err());
    step(PenaltyStep::ClockResumed, "2026-08-30", "").unwrap();
    // The notice is served only once it is issued.
    let e = step(PenaltyStep::NoticeServed, "2026-09-30", "")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not issued"), "{e}");
    // The case officer writes the penalty: a draft without it is not submitted.
    let id = drafts::propose_by_hand(
        &mut ledger,
        case,
        DocumentKind::PenaltyNotice,
        d("2026-09-25"),
        &officer,
    )
    .unwrap();
    let e = drafts::submit(&mut ledger, id, &officer)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("penalty, penalty_basis, violated"),
        "the missing particulars are named: {e}"
    );
    drafts::withdraw(&mut ledger, id, &officer, "重新起草").unwrap();
    let (notice, text) = issue(
        &mut ledger,
        case,
        DocumentKind::PenaltyNotice,
        penalty_of("罚款人民币伍万元"),
        "2026-09-28",
        &rules,
    );
    assert_eq!(notice.number, "蒙药监罚告〔2026〕1号");
    for part in [
        "行政处罚告知书",
        "罚款人民币伍万元",
        "《中华人民共和国药品管理法》第一百二十六条",
        "《药品经营质量管理规范》第九十二条",
        &rules.documents.penalty_notice_basis,
        "自收到本告知书之日起5个工作日内",
        "本局于2026年7月3日对你单位立案调查",
        "送达回证",
    ] {
        assert!(text.contains(part), "{part} missing from the notice");
    }
    let mut step = |s: PenaltyStep, on: &str, note: &str| {
        penalty::record(&mut ledger, case, s, d(on), "办案人员甲", note, &rules)
    };
    step(PenaltyStep::NoticeServed, "2026-09-30", "").unwrap();
    step(PenaltyStep::HearingRequested, "2026-10-09", "2026-10-12").unwrap();
    let hearing_place = Particulars {
        hearing_place: "本局三楼听证室".into(),
        ..Particulars::default()
    };
    let (_, hearing) = issue(
        &mut ledger,
        case,
        DocumentKind::HearingNotice,
        hearing_place,
        "2026-10-09",
        &rules,
    );
    for part in [
        "听证通知书",
        "2026年10月12日在本局三楼听证室",
        "蒙药监罚告〔2026〕1号",
        &rules.documents.hearing_notice_basis,
    ] {
        assert!(
            hearing.contains(part),
            "{part} missing from the hearing notice"
        );
    }
    let served = ledger.show(case).unwrap();
    let event = served
        .events
        .iter()
        .find(|e| e.event == "penalty_notice_served")
        .unwrap();
    assert_eq!(event.document_no.as_deref(), Some(notice.number.as_str()));

    let p = penalty::procedure(&ledger, case, d("2026-10-22"), &rules, &cal).unwrap();
    let get = |p: &penalty::Procedure, s: &str| {
        p.stages.iter().find(|x| x.due.stage == s).unwrap().clone()
    };
    // The filing review (from the referral, 15 working days) was done in time.
    let filing = get(&p, "filing_decision");
    assert_eq!(filing.due.from, d("2026-06-22"));
    assert_eq!(filing.due.due, d("2026-07-13"));
    assert!(!filing.overdue);
    // The decision: 90 days from 07-03 plus the 20 days stopped, then overdue on 10-22.
    let decision = get(&p, "decision");
    assert_eq!(decision.due.due, d("2026-10-21"));
    assert_eq!(decision.due.stopped_days, 20);
    assert!(decision.overdue);
    // The party's periods from the notice: 5 working days over the National Day holiday.
    assert_eq!(get(&p, "statement_period").due.due, d("2026-10-13"));
    assert!(!get(&p, "statement_period").overdue);
    // The hearing on 10-12: its notice served by 09-24 (seven working days before).
    let (day, by, article) = p.hearing.clone().unwrap();
    assert_eq!((day, by), (d("2026-10-12"), d("2026-09-24")));
    assert!(article.contains("第六十四条"));
    let text = penalty::format(&p);
    assert!(
        text.contains("OVERDUE") && text.contains("第六十四条"),
        "{text}"
    );

    // An approver extends the decision stage by 30 days: no longer overdue.
    penalty::record(
        &mut ledger,
        case,
        PenaltyStep::ExtensionGranted,
        d("2026-10-20"),
        "负责人乙",
        "decision",
        &rules,
    )
    .unwrap();
    assert!(
        penalty::record(
            &mut ledger,
            case,
            PenaltyStep::ExtensionGranted,
            d("2026-10-20"),
            "负责人乙",
            "statement_period",
            &rules,
        )
        .is_err(),
        "a party's period has no extension"
    );
    let p = penalty::procedure(&ledger, case, d("2026-10-22"), &rules, &cal).unwrap();
    let decision = get(&p, "decision");
    assert_eq!(decision.due.due, d("2026-11-20"));
    assert!(decision.due.extended && !decision.overdue);
    // Decided by approving the decision, and served in time.
    let e = penalty::record(
        &mut ledger,
        case,
        PenaltyStep::Decided,
        d("2026-11-19"),
        "办案人员甲",
        "",
        &rules,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("行政处罚决定书"), "{e}");
    let (decision, text) = issue(
        &mut ledger,
        case,
        DocumentKind::PenaltyDecision,
        penalty_of("罚款人民币肆万元"),
        "2026-11-19",
        &rules,
    );
    assert_eq!(decision.number, "蒙药监罚〔2026〕1号");
    for part in [
        "行政处罚决定书",
        "罚款人民币肆万元",
        "2026年9月30日向你单位送达《行政处罚告知书》（蒙药监罚告〔2026〕1号）",
        "自收到本决定书之日起15日内",
        "60日内依法申请行政复议",
        "6个月内依法向人民法院提起行政诉讼",
        &rules.documents.review_article,
        &rules.documents.late_payment_article,
    ] {
        assert!(text.contains(part), "{part} missing from the decision");
    }
    penalty::record(
        &mut ledger,
        case,
        PenaltyStep::DecisionServed,
        d("2026-11-27"),
        "办案人员甲",
        "",
        &rules,
    )
    .unwrap();
    let trail = ledger.show(case).unwrap().events;
    let decided = trail.iter().find(|e| e.event == "penalty_decided").unwrap();
    assert_eq!(
        (decided.event_date.as_str(), decided.document_no.as_deref()),
        ("2026-11-19", Some(decision.number.as_str()))
    );
    let served = trail
        .iter()
        .find(|e| e.event == "penalty_decision_served")
        .unwrap();
    assert_eq!(
        served.document_no.as_deref(),
        Some(decision.number.as_str())
    );
    let p = penalty::procedure(&ledger, case, d("2026-12-31"), &rules, &cal).unwrap();
    assert!(p.stages.iter().all(|s| !s.overdue), "{p:?}");
    let service = get(&p, "decision_service");
    assert_eq!(service.due.due, d("2026-11-30"));
    assert_eq!(service.due.done_on, Some(d("2026-11-27")));
}
