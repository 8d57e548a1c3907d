//! Publicity and credit repair on a real ledger: a caution published for 12 months and a
//! 蒙药监 (十) case published for 3 on the feed, each leaving it by itself; a repair applied for
//! before its time refused, then applied, reviewed and granted by another person after it —
//! the grade restored, the feed without the entry, the file saying why.

use crate::common::{ENTERPRISE, caution_finding_on, d, decide_and_record};
use pharmwatch_casework::credit::{self, RepairState, RepairStep};
use pharmwatch_casework::ledger::RecordedEvent;
use pharmwatch_casework::measures;

#[test]
fn a_repair_is_refused_before_its_time_and_granted_after_with_the_grade_restored() {
    let dir = tempfile::tempdir().unwrap();
    let rules = measures::load_rules(None).unwrap();
    // A caution (and its deadline rectification) decided 2026-03-02: public 12 months.
    let mut ledger = decide_and_record(
        dir.path(),
        &caution_finding_on("INSP-REPAIR", "2026-03-02"),
        d("2026-03-02"),
    );
    // A diligent enterprise's case (蒙药监 (九)(十)): public 3 months, green channel.
    let green = "91350100M000100Y43";
    let finding = format!(
        r#"[{{"case_id":"INSP-GREEN","enterprise_id":"{green}","inspection_date":"2026-03-02",
            "conclusion":"pending_rectification","defects":{{"critical":0,"major":0,"general":0}},
            "diligent":true}}]"#
    );
    let path = dir.path().join("green.json");
    std::fs::write(&path, finding).unwrap();
    let cal = measures::load_calendar(None).unwrap();
    let decided = measures::decide_file(&path, &rules, &cal).unwrap();
    measures::record_decisions_on(&mut ledger, &decided.decisions, "检查员甲", d("2026-03-02"))
        .unwrap();

    // The feed: both cases public in April; the green-channel one gone after 3 months, the
    // caution after 12, each by itself.
    let feed =
        |ledger: &pharmwatch_casework::ledger::Ledger, on: &str| -> Vec<(String, String, String)> {
            credit::publications(ledger, d(on), &rules)
                .unwrap()
                .into_iter()
                .map(|p| (p.case_id, p.code, p.until.to_string()))
                .collect()
        };
    let april = feed(&ledger, "2026-04-01");
    assert!(april.contains(&("INSP-REPAIR".into(), "caution".into(), "2027-03-01".into())));
    assert!(
        april
            .iter()
            .any(|(c, _, until)| c == "INSP-GREEN" && until == "2026-06-01")
    );
    let june = feed(&ledger, "2026-06-02");
    assert!(june.iter().all(|(c, _, _)| c != "INSP-GREEN"), "{june:?}");
    assert!(june.iter().any(|(c, _, _)| c == "INSP-REPAIR"));
    assert!(feed(&ledger, "2027-03-02").is_empty());

    let grade = |ledger: &pharmwatch_casework::ledger::Ledger, on: &str| {
        credit::credit_file(ledger, ENTERPRISE, "", "A", d(on), &rules)
            .unwrap()
            .effective_grade
    };
    assert_eq!(
        grade(&ledger, "2026-04-01"),
        "B",
        "the caution costs a step"
    );

    // Too early: 3 months of publicity first (the caution's case is no green channel).
    let early = credit::repair(
        &mut ledger,
        "INSP-REPAIR",
        RepairStep::Apply,
        d("2026-04-01"),
        "企业负责人",
        "已整改",
        &rules,
    )
    .unwrap_err()
    .to_string();
    assert!(early.contains("from 2026-06-02"), "{early}");
    // In time but not rectified: refused, naming what is pending.
    let pending = credit::repair(
        &mut ledger,
        "INSP-REPAIR",
        RepairStep::Apply,
        d("2026-06-10"),
        "企业负责人",
        "已整改",
        &rules,
    )
    .unwrap_err()
    .to_string();
    assert!(pending.contains("still pending"), "{pending}");
    // Nothing was recorded by a refused application.
    assert_eq!(
        credit::repair_state(&ledger.show("INSP-REPAIR").unwrap()).unwrap(),
        None
    );

    // Rectified and verified, then applied, reviewed, granted by another person.
    ledger
        .record(
            "INSP-REPAIR",
            RecordedEvent::ReportReceived,
            "检查员甲",
            "整改报告",
            d("2026-04-10"),
            false,
        )
        .unwrap();
    ledger
        .record(
            "INSP-REPAIR",
            RecordedEvent::Verified,
            "检查员甲",
            "复核通过",
            d("2026-04-20"),
            false,
        )
        .unwrap();
    let step = |ledger: &mut pharmwatch_casework::ledger::Ledger, s, on: &str, who: &str, note| {
        credit::repair(ledger, "INSP-REPAIR", s, d(on), who, note, &rules)
    };
    assert!(step(&mut ledger, RepairStep::Grant, "2026-06-10", "负责人乙", "").is_err());
    let applied = step(
        &mut ledger,
        RepairStep::Apply,
        "2026-06-10",
        "企业负责人",
        "已整改并承诺",
    );
    assert!(
        matches!(applied, Ok(RepairState::Applied { .. })),
        "{applied:?}"
    );
    step(
        &mut ledger,
        RepairStep::Review,
        "2026-06-12",
        "检查员甲",
        "材料齐全",
    )
    .unwrap();
    let same = step(
        &mut ledger,
        RepairStep::Grant,
        "2026-06-15",
        "检查员甲",
        "同意",
    )
    .unwrap_err()
    .to_string();
    assert!(same.contains("another person"), "{same}");
    let granted = step(
        &mut ledger,
        RepairStep::Grant,
        "2026-06-15",
        "负责人乙",
        "同意修复",
    )
    .unwrap();
    assert_eq!(
        granted,
        RepairState::Granted {
            on: d("2026-06-15"),
            by: "负责人乙".into(),
            note: "同意修复".into()
        }
    );

    // The grade is restored from the day of the grant, not before; the file says why; the
    // feed no longer shows the caution.
    assert_eq!(grade(&ledger, "2026-06-14"), "B");
    assert_eq!(grade(&ledger, "2026-06-15"), "A");
    let file = credit::credit_file(&ledger, ENTERPRISE, "", "A", d("2026-06-15"), &rules).unwrap();
    let caution = file.entries.iter().find(|e| e.code == "caution").unwrap();
    assert_eq!(caution.repaired_on, Some(d("2026-06-15")));
    let text = credit::render(&file);
    assert!(
        text.contains("repaired — credit repair granted 2026-06-15 by 负责人乙: 同意修复"),
        "{text}"
    );
    assert!(
        feed(&ledger, "2026-06-15")
            .iter()
            .all(|(c, _, _)| c != "INSP-REPAIR")
    );
    assert!(
        feed(&ledger, "2026-06-14")
            .iter()
            .any(|(c, _, until)| c == "INSP-REPAIR" && until == "2026-06-14")
    );
    // A second application after the grant is refused.
    assert!(
        step(
            &mut ledger,
            RepairStep::Apply,
            "2026-07-01",
            "企业负责人",
            ""
        )
        .is_err()
    );

    // The green channel opens at once: the diligent case may apply on its decision day.
    let refusal = credit::repair(
        &mut ledger,
        "INSP-GREEN",
        RepairStep::Apply,
        d("2026-03-02"),
        "企业负责人",
        "",
        &rules,
    );
    // It has a measure still open (its interview) — refused for that, not for the time.
    let why = refusal.unwrap_err().to_string();
    assert!(
        why.contains("still pending") && !why.contains("from 20"),
        "{why}"
    );
}

#[test]
fn a_self_reported_and_diligent_case_keeps_its_shortened_publicity() {
    let dir = tempfile::tempdir().unwrap();
    let rules = measures::load_rules(None).unwrap();
    let cal = measures::load_calendar(None).unwrap();
    // Both (八) and (九): the interview's article joins them under one prefix.
    let finding = format!(
        r#"[{{"case_id":"INSP-BOTH","enterprise_id":"{ENTERPRISE}","inspection_date":"2026-03-02",
            "conclusion":"pending_rectification","defects":{{"critical":0,"major":0,"general":0}},
            "self_reported":true,"diligent":true}}]"#
    );
    let path = dir.path().join("both.json");
    std::fs::write(&path, finding).unwrap();
    let decided = measures::decide_file(&path, &rules, &cal).unwrap();
    let mut ledger = pharmwatch_casework::ledger::Ledger::open(dir.path()).unwrap();
    measures::record_decisions_on(&mut ledger, &decided.decisions, "检查员甲", d("2026-03-02"))
        .unwrap();
    let interview = ledger
        .show("INSP-BOTH")
        .unwrap()
        .measures
        .into_iter()
        .find(|m| m.code == "interview")
        .unwrap();
    assert!(
        !interview
            .article
            .contains(rules.articles.diligent_interview.as_str()),
        "the joined article no longer spells the diligence citation out: {}",
        interview.article
    );
    assert!(pharmwatch_regulation::cites(
        &interview.article,
        &rules.articles.diligent_interview
    ));
    // Public 3 months (蒙药监 (十)), not 12.
    let feed = credit::publications(&ledger, d("2026-04-01"), &rules).unwrap();
    let until: Vec<String> = feed
        .iter()
        .filter(|p| p.case_id == "INSP-BOTH")
        .map(|p| p.until.to_string())
        .collect();
    assert!(!until.is_empty());
    assert!(until.iter().all(|u| u == "2026-06-01"), "{until:?}");
}
