//! The credit file and the effective credit grade, on a real SQLite ledger: a caution still
//! public lowers the grade and raises the enterprise's score on the nightly risk list; after its
//! publicity period the grade is back; a 蒙药监 (十) case's 3-month period ends before the
//! default 12 months; the reasons name the case and the day.

use std::path::Path;

use crate::common::{d, simulate_province};
use chrono::Months;
use pharmwatch::anomaly::ModelSource;
use pharmwatch::credit;
use pharmwatch::indicators::Thresholds;
use pharmwatch::ledger::{Ledger, Opening, Origin};
use pharmwatch::measures;
use pharmwatch::nightly::{self, NightlyConfig};
use pharmwatch::risk::RiskRow;
use pharmwatch_regulation::Calendar;
use pharmwatch_regulation::{Finding, Rules, decide};

fn nightly(cfg: &NightlyConfig) -> Vec<RiskRow> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(nightly::run(cfg)).unwrap().rows
}

/// Records an inspection finding's decision in the ledger of `out`.
fn record(out: &Path, finding: serde_json::Value, rules: &Rules, cal: &Calendar) {
    let f: Finding = serde_json::from_value(finding).unwrap();
    let decision = decide(&f, rules, cal).unwrap();
    let mut ledger = Ledger::open(out).unwrap();
    ledger
        .apply_decision(&Opening {
            decision: &decision,
            on: f.inspection_date,
            origin: Origin::Finding,
            actor: "inspector Wang",
            enterprise_name: "",
            facts_json: "[]",
            addressee_json: "{}",
        })
        .unwrap();
}

#[test]
fn a_public_caution_lowers_the_grade_and_raises_the_nightly_score_until_its_period_ends() {
    let dir = tempfile::tempdir().unwrap();
    let cal = Calendar::embedded().unwrap();
    let rules = measures::load_rules(None).unwrap();
    let lake = dir.path().join("lake");
    let sim = simulate_province(&lake, &cal);
    let out = dir.path().join("out");
    let cfg = NightlyConfig {
        lake: Some(lake),
        reference: None,
        inputs: Vec::new(),
        from: sim.end - chrono::Duration::days(6),
        to: sim.end,
        out: out.clone(),
        thresholds: Thresholds::default(),
        top: 5,
        progress: false,
        model: ModelSource::Off,
        anomaly_threshold: pharmwatch::anomaly::DEFAULT_THRESHOLD,
    };

    // No record: the effective grade is the reference grade.
    let before = nightly(&cfg);
    assert!(
        before
            .iter()
            .all(|r| r.credit_grade == r.reference_credit_grade && r.credit_reasons.is_empty())
    );
    // A reference-grade B enterprise (credit factor 1.0; C is 1.1) whose score has room to rise.
    let row = before
        .iter()
        .find(|r| r.reference_credit_grade == "B" && r.score < 90.0)
        .expect("a grade-B enterprise on the risk list")
        .clone();

    // A caution decided 10 days before the row's day (赣药监 第十条(四)).
    let decided = row.date - chrono::Duration::days(10);
    let case_id = "INSP-2026-CREDIT-1";
    record(
        &out,
        serde_json::json!({
            "case_id": case_id,
            "enterprise_id": row.enterprise_id,
            "inspection_date": decided,
            "conclusion": "pending_rectification",
            "defects": {"critical": 0, "major": 0, "general": 0},
            "flags": ["other_caution"],
        }),
        &rules,
        &cal,
    );

    let after = nightly(&cfg);
    let same = after
        .iter()
        .find(|r| r.enterprise_id == row.enterprise_id && r.date == row.date)
        .unwrap();
    assert_eq!(same.reference_credit_grade, "B");
    assert_eq!(same.credit_grade, "C", "one step down for the caution");
    assert!(same.score > row.score, "{} vs {}", same.score, row.score);
    assert!((same.score - (row.score * 1.1).min(100.0)).abs() < 1e-3);
    assert!(
        same.credit_reasons.contains(case_id),
        "{}",
        same.credit_reasons
    );
    assert!(
        same.credit_reasons
            .contains(&format!("caution of case {case_id} decided {decided}")),
        "{}",
        same.credit_reasons
    );
    // Other enterprises are untouched.
    for r in after
        .iter()
        .filter(|r| r.enterprise_id != row.enterprise_id)
    {
        assert_eq!(r.credit_grade, r.reference_credit_grade);
    }
    // The stream baseline carries the entry, and the stream's baseline reads it back: the
    // stream scores the same enterprise-day with the same effective grade.
    let steps: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("stream_baseline/credit.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(steps[&row.enterprise_id][0]["steps"], 1, "{steps}");
    assert!(
        steps[&row.enterprise_id][0]["reason"]
            .as_str()
            .unwrap()
            .contains(case_id)
    );
    let loaded = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(pharmwatch::baseline::Baseline::load(&out))
        .unwrap();
    assert_eq!(
        loaded.effective_credit(&row.enterprise_id, "B", row.date),
        "C"
    );
    assert_eq!(
        loaded.effective_credit(&row.enterprise_id, "B", decided.pred_opt().unwrap()),
        "B"
    );
    // The CSV carries the reference grade and the reasons.
    let csv = pharmwatch::risk::read_csv(&out.join("risk_list.csv")).unwrap();
    assert!(csv.iter().any(|r| r.credit_reasons.contains(case_id)));

    // The credit file: public for 12 months (until the day before the anniversary).
    let ledger = Ledger::open(&out).unwrap();
    let until = decided
        .checked_add_months(Months::new(12))
        .unwrap()
        .pred_opt()
        .unwrap();
    let file = credit::credit_file(&ledger, &row.enterprise_id, "", "B", until, &rules).unwrap();
    assert_eq!(file.effective_grade, "C");
    assert_eq!(file.reasons.len(), 1);
    assert_eq!(file.reasons[0].case_id, case_id);
    assert_eq!(file.reasons[0].until, until);
    let caution = file.entries.iter().find(|e| e.code == "caution").unwrap();
    assert_eq!(caution.outcome, "open");
    assert!(!caution.shortened);
    let back = until.succ_opt().unwrap();
    let file = credit::credit_file(&ledger, &row.enterprise_id, "", "B", back, &rules).unwrap();
    assert_eq!(
        file.effective_grade, "B",
        "the period ended: the grade is back"
    );
    assert!(file.reasons.is_empty());
    // Before the decision the file is empty.
    let file = credit::credit_file(
        &ledger,
        &row.enterprise_id,
        "",
        "B",
        decided.pred_opt().unwrap(),
        &rules,
    )
    .unwrap();
    assert!(file.entries.is_empty());
    assert_eq!(file.effective_grade, "B");
}

#[test]
fn a_diligent_case_is_public_for_3_months_instead_of_12() {
    let dir = tempfile::tempdir().unwrap();
    let cal = Calendar::embedded().unwrap();
    let rules = measures::load_rules(None).unwrap();
    let ent = "91110000600037341L";
    let decided = d("2026-03-10");
    // A diligent enterprise (蒙药监 (九)): guidance interview; (十): publicity shortened.
    record(
        dir.path(),
        serde_json::json!({
            "case_id": "INSP-DILIGENT",
            "enterprise_id": ent,
            "inspection_date": decided,
            "conclusion": "pending_rectification",
            "defects": {"critical": 0, "major": 0, "general": 0},
            "diligent": true,
        }),
        &rules,
        &cal,
    );
    let ledger = Ledger::open(dir.path()).unwrap();
    let within = d("2026-06-09");
    let file = credit::credit_file(&ledger, ent, "", "A", within, &rules).unwrap();
    let interview = file.entries.iter().find(|e| e.code == "interview").unwrap();
    assert!(interview.shortened);
    assert_eq!(interview.publicity_months, 3);
    assert_eq!(interview.public_until, within);
    assert_eq!(file.effective_grade, "B");
    assert!(file.reasons[0].text().contains("INSP-DILIGENT"));
    assert!(file.reasons[0].text().contains("2026-03-10"));
    assert!(file.reasons[0].basis.contains("(十)"), "{:?}", file.reasons);
    let file = credit::credit_file(&ledger, ent, "", "A", d("2026-06-10"), &rules).unwrap();
    assert_eq!(file.effective_grade, "A", "3 months passed");

    // The same interview without (十) stays public for 12 months.
    let other = "91350100M000100Y43";
    record(
        dir.path(),
        serde_json::json!({
            "case_id": "INSP-ORDINARY",
            "enterprise_id": other,
            "inspection_date": decided,
            "conclusion": "pending_rectification",
            "defects": {"critical": 0, "major": 0, "general": 0},
            "flags": ["other_interview"],
        }),
        &rules,
        &cal,
    );
    let file = credit::credit_file(&ledger, other, "", "A", d("2026-06-10"), &rules).unwrap();
    assert_eq!(file.effective_grade, "B", "still public after 3 months");
    assert_eq!(file.reasons[0].until, d("2027-03-09"));
}

#[test]
fn grades_step_down_to_the_floor_d() {
    assert_eq!(credit::lower("A", 1), "B");
    assert_eq!(credit::lower("B", 2), "D");
    assert_eq!(credit::lower("C", 5), "D");
    assert_eq!(credit::lower("A", 0), "A");
}
