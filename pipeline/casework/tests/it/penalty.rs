//! A referred case's penalty procedure on a real ledger: steps refused out of order, the
//! stages' clocks from the trail (a testing stop not counted on the decision, an approved
//! extension), overdue stages, the hearing notice's latest day.

use crate::common::{caution_finding_on, d, decide_and_record};
use pharmwatch_casework::measures;
use pharmwatch_casework::penalty::{self, PenaltyStep};

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
    step(PenaltyStep::Filed, "2026-07-03", "").unwrap();
    assert!(step(PenaltyStep::Filed, "2026-07-04", "").is_err(), "once");
    // Testing stops the clocks from 08-10; resumed on 08-30 (20 days not counted).
    assert!(step(PenaltyStep::ClockStopped, "2026-08-10", "lunch").is_err());
    step(PenaltyStep::ClockStopped, "2026-08-10", "testing").unwrap();
    assert!(step(PenaltyStep::ClockStopped, "2026-08-12", "appraisal").is_err());
    step(PenaltyStep::ClockResumed, "2026-08-30", "").unwrap();
    step(PenaltyStep::NoticeServed, "2026-09-30", "").unwrap();
    step(PenaltyStep::HearingRequested, "2026-10-09", "2026-10-12").unwrap();

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
    // Decided and served in time.
    for (s, on) in [
        (PenaltyStep::Decided, "2026-11-19"),
        (PenaltyStep::DecisionServed, "2026-11-27"),
    ] {
        penalty::record(&mut ledger, case, s, d(on), "办案人员甲", "", &rules).unwrap();
    }
    let p = penalty::procedure(&ledger, case, d("2026-12-31"), &rules, &cal).unwrap();
    assert!(p.stages.iter().all(|s| !s.overdue), "{p:?}");
    let service = get(&p, "decision_service");
    assert_eq!(service.due.due, d("2026-11-30"));
    assert_eq!(service.due.done_on, Some(d("2026-11-27")));
}
