//! Table-driven tests of the decision engine and the ledger sweep, article by article.

use serde_json::{Value, json};

use super::*;

const ENTERPRISE: &str = "91110000600037341L";

fn d(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("test date")
}

fn base() -> Value {
    json!({
        "case_id": "JX-2026-001",
        "enterprise_id": ENTERPRISE,
        "inspection_date": "2026-03-02",
        "conclusion": "pending_rectification",
        "defects": {"critical": 0, "major": 0, "general": 0}
    })
}

/// The base finding with the fields of `patch` replaced.
fn finding(patch: Value) -> Finding {
    let mut value = base();
    if let (Value::Object(target), Value::Object(patch)) = (&mut value, patch) {
        target.extend(patch);
    }
    serde_json::from_value(value).expect("test finding deserialises")
}

fn decide_with(patch: Value, rules: &Rules) -> Decision {
    decide(&finding(patch), rules, &Calendar::default()).expect("finding is decided")
}

fn run(patch: Value) -> Decision {
    decide_with(patch, &Rules::default())
}

fn codes(decision: &Decision) -> Vec<&'static str> {
    decision.measures.iter().map(|m| m.code.as_str()).collect()
}

fn measure(decision: &Decision, code: MeasureCode) -> &Measure {
    decision
        .measure(code)
        .unwrap_or_else(|| panic!("{} missing in {:?}", code.as_str(), codes(decision)))
}

fn rules_with(from: &str, to: &str) -> Rules {
    let text = Rules::embedded_text();
    assert!(text.contains(from), "rules contain `{from}`");
    Rules::from_toml_str(&text.replacen(from, to, 1), "test").expect("edited rules are valid")
}

#[test]
fn defect_thresholds_of_articles_7_10_and_12() {
    // (conclusion, critical, major, general, expected codes)
    let cases: [(&str, u32, u32, u32, &[&str]); 14] = [
        (
            "pending_rectification",
            0,
            5,
            16,
            &["deadline_rectification", "caution"],
        ),
        (
            "pending_rectification",
            0,
            5,
            15,
            &["deadline_rectification"],
        ),
        (
            "pending_rectification",
            0,
            0,
            16,
            &["deadline_rectification", "caution"],
        ),
        (
            "pending_rectification",
            0,
            6,
            16,
            &["deadline_rectification", "interview"],
        ),
        (
            "pending_rectification",
            0,
            6,
            0,
            &["deadline_rectification", "interview"],
        ),
        (
            "pending_rectification",
            0,
            5,
            0,
            &["deadline_rectification"],
        ),
        // One critical defect rules out 第十条(一) and 第十二条(一).
        (
            "pending_rectification",
            1,
            5,
            16,
            &["deadline_rectification"],
        ),
        (
            "pending_rectification",
            1,
            6,
            0,
            &["deadline_rectification"],
        ),
        // A pending conclusion is a deviation even without counted defects.
        (
            "pending_rectification",
            0,
            0,
            0,
            &["deadline_rectification"],
        ),
        // Compliant: only counted defects call for rectification; (一) needs "pending".
        ("compliant", 0, 0, 0, &[]),
        ("compliant", 0, 0, 3, &["deadline_rectification"]),
        ("compliant", 0, 6, 16, &["deadline_rectification"]),
        // Non-compliant: suspension is mandatory (第七条, 第十五条(一)).
        (
            "non_compliant",
            0,
            0,
            0,
            &["deadline_rectification", "suspend_sales_all"],
        ),
        (
            "non_compliant",
            2,
            6,
            16,
            &["deadline_rectification", "suspend_sales_all"],
        ),
    ];
    for (conclusion, critical, major, general, expected) in cases {
        let decision = run(json!({
            "conclusion": conclusion,
            "defects": {"critical": critical, "major": major, "general": general}
        }));
        assert_eq!(
            codes(&decision),
            expected,
            "{conclusion} critical {critical} major {major} general {general}"
        );
        if let Some(caution) = decision.measure(MeasureCode::Caution) {
            assert_eq!(caution.article, "赣药监 第十条(一)、第二十二条");
        }
        if let Some(interview) = decision.measure(MeasureCode::Interview) {
            assert_eq!(interview.article, "赣药监 第十二条(一)、第二十二条");
        }
        if let Some(rect) = decision.measure(MeasureCode::DeadlineRectification) {
            assert_eq!(rect.article, "赣药监 第七条、第二十一条");
        }
    }
}

#[test]
fn thresholds_come_from_the_rules() {
    let stricter = rules_with("caution_general_above = 15", "caution_general_above = 20");
    let patch = json!({"defects": {"critical": 0, "major": 5, "general": 16}});
    assert!(run(patch.clone()).measure(MeasureCode::Caution).is_some());
    assert!(
        decide_with(patch, &stricter)
            .measure(MeasureCode::Caution)
            .is_none()
    );
    let tolerant = rules_with("max_critical = 0", "max_critical = 1");
    let patch = json!({"defects": {"critical": 1, "major": 6, "general": 0}});
    assert!(run(patch.clone()).measure(MeasureCode::Interview).is_none());
    assert!(
        decide_with(patch, &tolerant)
            .measure(MeasureCode::Interview)
            .is_some()
    );
}

#[test]
fn rectification_deadlines_follow_the_worked_examples() {
    // The worked examples of the domain brief, as report deadlines of N working days.
    let cases = [
        (5, "2025-09-26", "2025-10-10"),
        (5, "2026-02-13", "2026-02-27"),
        (10, "2026-04-30", "2026-05-18"),
        (3, "2025-12-31", "2026-01-06"),
    ];
    for (n, inspection, expected) in cases {
        let rules = rules_with(
            "rectification_report_working_days = 30",
            &format!("rectification_report_working_days = {n}"),
        );
        let decision = decide_with(json!({"inspection_date": inspection}), &rules);
        assert_eq!(
            measure(&decision, MeasureCode::DeadlineRectification).due_date,
            Some(d(expected)),
            "{inspection} + {n}"
        );
    }
}

#[test]
fn rectification_deadlines_across_holidays_and_reissue() {
    // (inspection date, reissue_count, due) with the default 30 (+10) working days.
    let cases = [
        // Spring Festival 2026, make-up Saturdays 02-14 and 02-28 counted.
        ("2026-02-06", 0, "2026-03-26"),
        // Re-issued form: +10 working days, the Qingming Monday 04-06 skipped.
        ("2026-02-06", 1, "2026-04-10"),
        // Any number of re-issues extends once.
        ("2026-02-06", 2, "2026-04-10"),
        // National Day and Mid-Autumn 2026, make-up 09-20 and 10-10 counted.
        ("2026-09-15", 0, "2026-11-02"),
    ];
    for (inspection, reissue, due) in cases {
        let decision = run(json!({"inspection_date": inspection, "reissue_count": reissue}));
        let rect = measure(&decision, MeasureCode::DeadlineRectification);
        assert_eq!(
            rect.due_date,
            Some(d(due)),
            "{inspection} reissue {reissue}"
        );
        let detail = rect.detail.as_deref().unwrap_or_default();
        assert_eq!(detail.contains("re-issued"), reissue > 0, "{detail}");
    }
}

#[test]
fn caution_and_interview_reports_count_from_the_decision_day() {
    let cal = Calendar::default();
    // (decision_date, due): 30 working days (第二十二条).
    let cases = [
        (None, "2026-04-14"),
        (Some("2026-09-30"), "2026-11-17"),
        (Some("2026-02-13"), "2026-04-02"),
    ];
    for (decision_date, due) in cases {
        let mut patch = json!({
            "inspection_date": "2026-03-02",
            "defects": {"critical": 0, "major": 6, "general": 16}
        });
        if let Some(date) = decision_date {
            patch["inspection_date"] = json!("2026-02-13");
            patch["decision_date"] = json!(date);
        }
        let decision = run(patch);
        let interview = measure(&decision, MeasureCode::Interview);
        assert_eq!(interview.due_date, Some(d(due)), "{decision_date:?}");
        let from = d(decision_date.unwrap_or("2026-03-02"));
        assert_eq!(cal.working_days_between(from, d(due)).expect("covered"), 30);
    }
}

#[test]
fn every_flag_triggers_its_measures_with_its_article() {
    let rules = Rules::default();
    for (name, flag) in &rules.flags {
        let decision = run(json!({
            "conclusion": "compliant",
            "flags": [name]
        }));
        for kind in &flag.measures {
            let code = match kind {
                MeasureKind::DeadlineRectification => MeasureCode::DeadlineRectification,
                MeasureKind::Caution => MeasureCode::Caution,
                MeasureKind::Interview => MeasureCode::Interview,
                MeasureKind::SuspendSales => MeasureCode::SuspendSalesAll,
                MeasureKind::Recall => MeasureCode::Recall,
                MeasureKind::CaseReferral => MeasureCode::CaseReferral,
                MeasureKind::KeyMonitoringList => MeasureCode::KeyMonitoringList,
            };
            let m = measure(&decision, code);
            assert!(
                m.article.contains(&flag.article) && m.article.starts_with("赣药监 "),
                "{name}: {}",
                m.article
            );
            assert!(
                m.detail
                    .as_deref()
                    .unwrap_or_default()
                    .contains(name.as_str()),
                "{name}"
            );
        }
        assert!(
            decision.follow_up(FollowUpCode::CreditFileEntry).is_some(),
            "{name}: 第二十五条 credit file entry"
        );
    }
}

#[test]
fn caution_cases_of_article_10() {
    // (patch, expected article of the caution)
    let cases = [
        (
            json!({"after_rectification": "compliant", "flags": ["residual_risk"]}),
            "赣药监 第十条(二)、第二十二条",
        ),
        (
            json!({"flags": ["special_inspection_failed"]}),
            "赣药监 第十条(三)、第二十二条",
        ),
        (
            json!({"flags": ["other_caution"]}),
            "赣药监 第十条(四)、第二十二条",
        ),
        (
            json!({"defects": {"critical": 0, "major": 1, "general": 20},
                   "flags": ["special_inspection_failed"]}),
            "赣药监 第十条(一)、第十条(三)、第二十二条",
        ),
    ];
    for (patch, article) in cases {
        let decision = run(patch.clone());
        assert_eq!(
            measure(&decision, MeasureCode::Caution).article,
            article,
            "{patch}"
        );
    }
    // After the rectification was assessed, no new 第七条 deadline is set.
    let decision = run(json!({"after_rectification": "compliant", "flags": ["residual_risk"]}));
    assert_eq!(codes(&decision), ["caution"]);
}

#[test]
fn interview_cases_of_article_12_merge_into_one_measure() {
    let decision = run(json!({
        "defects": {"critical": 0, "major": 7, "general": 0},
        "flags": ["systemic_qms_problem", "sampling_failures"]
    }));
    let interview = measure(&decision, MeasureCode::Interview);
    assert_eq!(
        interview.article,
        "赣药监 第十二条(一)、第十二条(二)、第十二条(六)、第二十二条"
    );
    assert_eq!(
        decision
            .measures
            .iter()
            .filter(|m| m.code == MeasureCode::Interview)
            .count(),
        1
    );
    let detail = interview.detail.as_deref().unwrap_or_default();
    assert!(detail.contains("systemic_qms_problem") && detail.contains("sampling_failures"));
}

#[test]
fn suspension_scope_and_recall_of_article_15() {
    // (patch, expected codes, article of the suspension)
    let cases: [(Value, &[&str], &str); 6] = [
        (
            json!({"conclusion": "non_compliant"}),
            &["deadline_rectification", "suspend_sales_all"],
            "赣药监 第十五条(一)",
        ),
        (
            json!({"conclusion": "non_compliant", "affected_scope": ["冷藏冷冻药品"]}),
            &["deadline_rectification", "suspend_sales_partial"],
            "赣药监 第十五条(一)、第十五条(二)",
        ),
        (
            json!({"conclusion": "non_compliant", "affected_products": ["国药准字H20000001"],
                   "flags": ["nonconforming_marketed_drugs"]}),
            &["deadline_rectification", "suspend_sales_products", "recall"],
            "赣药监 第十五条(一)、第十五条(二)",
        ),
        (
            json!({"conclusion": "compliant", "flags": ["major_hazard"]}),
            &["suspend_sales_all"],
            "赣药监 第十五条(一)",
        ),
        (
            json!({"conclusion": "compliant", "flags": ["suspected_violation_major_risk"]}),
            &["suspend_sales_all", "case_referral"],
            "赣药监 第十五条(三)",
        ),
        (
            json!({"conclusion": "compliant", "flags": ["records_falsified", "nmpa_required"]}),
            &["suspend_sales_all", "case_referral"],
            "赣药监 第十五条(四)、第十五条(五)",
        ),
    ];
    for (patch, expected, article) in cases {
        let decision = run(patch.clone());
        assert_eq!(codes(&decision), expected, "{patch}");
        let suspension = decision
            .measures
            .iter()
            .find(|m| m.code.is_suspension())
            .expect("a suspension");
        assert_eq!(suspension.article, article, "{patch}");
        assert!(suspension.due_date.is_none());
        let detail = suspension.detail.as_deref().unwrap_or_default();
        assert!(
            detail.contains("第二十三条"),
            "lifting conditions: {detail}"
        );
        // 第二十条: the regulator's own deadlines, from the inspection date 2026-03-02.
        let agency = decision
            .follow_up(FollowUpCode::AgencyAssessment)
            .expect("第二十条");
        assert_eq!(agency.due_date, Some(d("2026-03-16")));
        let bureau = decision
            .follow_up(FollowUpCode::BureauDecision)
            .expect("第二十条");
        assert_eq!(bureau.due_date, Some(d("2026-03-23")));
    }
    let decision = run(json!({
        "conclusion": "non_compliant",
        "affected_products": ["国药准字H20000001"],
        "flags": ["nonconforming_marketed_drugs"]
    }));
    let recall = measure(&decision, MeasureCode::Recall);
    assert_eq!(recall.article, "赣药监 第五条(三)、第十五条(二)");
    assert!(
        recall
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("国药准字H20000001")
    );
    let products = measure(&decision, MeasureCode::SuspendSalesProducts);
    assert!(
        products
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("国药准字H20000001")
    );
    // Both a scope class and named drugs: both suspensions, no whole-scope suspension.
    let decision = run(json!({
        "conclusion": "non_compliant",
        "affected_scope": ["生物制品"],
        "affected_products": ["P1"]
    }));
    assert_eq!(
        codes(&decision),
        [
            "deadline_rectification",
            "suspend_sales_partial",
            "suspend_sales_products"
        ]
    );
}

#[test]
fn rectification_assessed_non_compliant() {
    // 第十五条(一) after rectification; 蒙药监 (五): new deadline and key-monitoring list.
    let decision = run(json!({
        "after_rectification": "non_compliant",
        "decision_date": "2026-04-30"
    }));
    assert_eq!(
        codes(&decision),
        [
            "deadline_rectification",
            "suspend_sales_all",
            "key_monitoring_list"
        ]
    );
    let rect = measure(&decision, MeasureCode::DeadlineRectification);
    assert_eq!(rect.article, "蒙药监 (五)");
    // 2026-04-30 + 30 working days: May 6–8 (3), 9 make-up (4), 11–15 (9), 18–22 (14),
    // 25–29 (19), Jun 1–5 (24), 8–12 (29), 15 (30).
    assert_eq!(rect.due_date, Some(d("2026-06-15")));
    assert_eq!(
        measure(&decision, MeasureCode::KeyMonitoringList).article,
        "蒙药监 (五)"
    );
}

#[test]
fn lists_of_item_5_and_13() {
    // (patch, low-risk list?, key-monitoring list?)
    let cases = [
        (
            json!({"after_rectification": "compliant", "compliance_commitment": true}),
            true,
            false,
        ),
        (
            json!({"conclusion": "compliant", "compliance_commitment": true}),
            true,
            false,
        ),
        (json!({"after_rectification": "compliant"}), false, false),
        (
            json!({"after_rectification": "compliant", "compliance_commitment": true,
                   "risk_grade": "B"}),
            true,
            false,
        ),
        (
            json!({"after_rectification": "compliant", "compliance_commitment": true,
                   "risk_grade": "C"}),
            false,
            false,
        ),
        (
            json!({"after_rectification": "compliant", "compliance_commitment": true,
                   "risk_grade": "D"}),
            false,
            true,
        ),
        (
            json!({"after_rectification": "compliant", "compliance_commitment": true,
                   "flags": ["residual_risk"]}),
            false,
            false,
        ),
        (json!({"compliance_commitment": true}), false, false),
        (json!({"risk_grade": "D"}), false, true),
    ];
    for (patch, low, key) in cases {
        let decision = run(patch.clone());
        assert_eq!(
            decision.measure(MeasureCode::LowRiskList).is_some(),
            low,
            "{patch}"
        );
        assert_eq!(
            decision.measure(MeasureCode::KeyMonitoringList).is_some(),
            key,
            "{patch}"
        );
        if let Some(m) = decision.measure(MeasureCode::LowRiskList) {
            assert_eq!(m.article, "蒙药监 (五)");
        }
        if let Some(m) = decision.measure(MeasureCode::KeyMonitoringList) {
            assert_eq!(m.article, "蒙药监 (十三)");
        }
    }
}

#[test]
fn missed_deadline_leads_to_case_filing() {
    let decision = run(json!({"deadline_missed": true}));
    let case = measure(&decision, MeasureCode::CaseReferral);
    assert_eq!(case.article, "蒙药监 (五)");
    assert!(decision.measure(MeasureCode::KeyMonitoringList).is_some());
    assert!(decision.follow_up(FollowUpCode::BureauDecision).is_some());
}

#[test]
fn first_minor_violation_gets_the_observation_period() {
    let lenient = json!({
        "defects": {"critical": 0, "major": 1, "general": 3},
        "first_violation": true,
        "harm": "slight",
        "decision_date": "2026-03-05"
    });
    let decision = run(lenient.clone());
    assert_eq!(
        codes(&decision),
        [
            "deadline_rectification",
            "observation_period",
            "fault_tolerance_list"
        ]
    );
    let observation = measure(&decision, MeasureCode::ObservationPeriod);
    assert_eq!(observation.article, "蒙药监 (六)");
    // 30 calendar days ("30日"), not working days.
    assert_eq!(observation.due_date, Some(d("2026-04-04")));
    let soft = measure(&decision, MeasureCode::FaultToleranceList);
    let detail = soft.detail.as_deref().unwrap_or_default();
    let order: Vec<usize> = Rules::default()
        .leniency
        .soft_measures
        .iter()
        .map(|s| detail.find(s.as_str()).expect("soft measure listed"))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "mildest first: {detail}"
    );

    // Each of these rules the observation period out.
    let cases = [
        ("harm serious", json!({"harm": "serious"})),
        ("harm unknown", json!({"harm": null})),
        ("not first", json!({"first_violation": false})),
        ("aggravating", json!({"aggravating": true})),
        (
            "critical defect",
            json!({"defects": {"critical": 1, "major": 0, "general": 0}}),
        ),
        ("non-compliant", json!({"conclusion": "non_compliant"})),
        (
            "repeated orders",
            json!({"flags": ["repeated_rectification_orders"]}),
        ),
        (
            "suspected violation",
            json!({"conclusion": "compliant", "flags": ["suspected_violation_major_risk"]}),
        ),
        ("missed deadline", json!({"deadline_missed": true})),
    ];
    for (what, change) in cases {
        let mut patch = lenient.clone();
        if let (Value::Object(target), Value::Object(change)) = (&mut patch, change) {
            target.extend(change);
        }
        let decision = run(patch);
        assert!(
            decision.measure(MeasureCode::ObservationPeriod).is_none(),
            "{what}"
        );
        assert!(
            decision.measure(MeasureCode::FaultToleranceList).is_none(),
            "{what}"
        );
    }
    let decision = run(json!({"first_violation": true, "harm": "none", "aggravating": true}));
    assert_eq!(
        measure(&decision, MeasureCode::CaseReferral).article,
        "蒙药监 (六)"
    );
}

#[test]
fn self_reported_and_diligent_enterprises_are_interviewed_and_exempted() {
    let decision = run(json!({"conclusion": "compliant", "self_reported": true}));
    let interview = measure(&decision, MeasureCode::Interview);
    assert_eq!(interview.article, "蒙药监 (八)");
    assert!(
        interview.due_date.is_none(),
        "a guidance interview asks for no report"
    );
    assert!(
        interview
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("exempted")
    );
    assert!(
        decision
            .follow_up(FollowUpCode::ShortenedPublicity)
            .is_none()
    );

    let decision = run(json!({"conclusion": "compliant", "diligent": true}));
    assert_eq!(
        measure(&decision, MeasureCode::Interview).article,
        "蒙药监 (九)"
    );
    let publicity = decision
        .follow_up(FollowUpCode::ShortenedPublicity)
        .expect("(十)");
    assert_eq!(publicity.article, "蒙药监 (十)");
    assert!(
        publicity
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("3 months")
    );
    assert!(decision.follow_up(FollowUpCode::CreditRepair).is_some());

    // With an interview of 第十二条 as well: one interview, both articles, the report deadline.
    let decision = run(json!({
        "defects": {"critical": 0, "major": 6, "general": 0},
        "self_reported": true
    }));
    let interview = measure(&decision, MeasureCode::Interview);
    assert_eq!(
        interview.article,
        "赣药监 第十二条(一)、第二十二条; 蒙药监 (八)"
    );
    assert_eq!(interview.due_date, Some(d("2026-04-14")));
}

#[test]
fn interview_date_gives_the_rescheduling_deadline() {
    // (interview date, last day to ask for another date)
    let cases = [("2026-02-24", "2026-02-13"), ("2026-03-11", "2026-03-09")];
    for (interview, last) in cases {
        let decision = run(json!({
            "inspection_date": "2026-02-02",
            "defects": {"critical": 0, "major": 6, "general": 0},
            "interview_date": interview
        }));
        let m = measure(&decision, MeasureCode::Interview);
        let detail = m.detail.as_deref().unwrap_or_default();
        assert!(detail.contains(&format!("filed by {last}")), "{detail}");
        assert!(m.article.contains("第二十二条"), "{}", m.article);
    }
}

#[test]
fn follow_ups_of_article_25() {
    let decision = run(json!({"conclusion": "compliant"}));
    assert!(decision.measures.is_empty());
    assert!(
        decision.follow_up.is_empty(),
        "nothing to record without a measure"
    );
    // The lists are not administrative measures: nothing for the credit file.
    let decision = run(json!({
        "after_rectification": "compliant",
        "compliance_commitment": true,
        "cross_province_storage": true
    }));
    assert_eq!(codes(&decision), ["low_risk_list"]);
    assert!(decision.follow_up.is_empty());
    let decision = run(json!({"cross_province_storage": true}));
    let credit = decision
        .follow_up(FollowUpCode::CreditFileEntry)
        .expect("第二十五条");
    assert_eq!(credit.article, "赣药监 第二十五条");
    assert!(
        decision
            .follow_up(FollowUpCode::NotifyProvinceRegulator)
            .is_some()
    );
}

#[test]
fn decisions_serialise_to_the_documented_shape() {
    let decision = run(json!({"defects": {"critical": 0, "major": 5, "general": 16}}));
    let value = serde_json::to_value(&decision).expect("serialises");
    assert_eq!(value["case_id"], "JX-2026-001");
    assert_eq!(value["measures"][0]["code"], "deadline_rectification");
    assert_eq!(value["measures"][0]["due_date"], "2026-04-14");
    assert_eq!(value["measures"][1]["code"], "caution");
    assert_eq!(
        value["measures"][1]["article"],
        "赣药监 第十条(一)、第二十二条"
    );
    let back: Decision = serde_json::from_value(value).expect("round trip");
    assert_eq!(back, decision);
    let no_due = run(json!({"conclusion": "compliant", "self_reported": true}));
    let value = serde_json::to_value(&no_due).expect("serialises");
    assert!(value["measures"][0].get("due_date").is_none());
}

#[test]
fn decide_json_reports_bad_findings_and_decides_the_others() {
    let good = |id: &str| {
        let mut v = base();
        v["case_id"] = json!(id);
        v
    };
    let with = |id: &str, key: &str, val: Value| {
        let mut v = good(id);
        v[key] = val;
        v
    };
    let mut missing = good("MISSING");
    missing
        .as_object_mut()
        .expect("object")
        .remove("conclusion");
    let mut wrong_type = good("WRONG-TYPE");
    wrong_type["defects"]["major"] = json!("five");
    let mut negative = good("NEGATIVE");
    negative["defects"]["general"] = json!(-1);
    let mut unknown_field = good("UNKNOWN-FIELD");
    unknown_field["defects"]["minor"] = json!(1);
    let input = Value::Array(vec![
        good("OK-1"),
        with(
            "FLAG",
            "flags",
            json!(["sampling_failures", "too_many_snacks"]),
        ),
        missing,
        with("BAD-DATE", "inspection_date", json!("2026-02-30")),
        wrong_type,
        with("CONCLUSION", "conclusion", json!("acceptable")),
        with("OUTSIDE", "inspection_date", json!("2024-12-02")),
        with("RUNS-PAST", "inspection_date", json!("2026-12-01")),
        with("CREDIT", "enterprise_id", json!("91110000600037341A")),
        json!("not an object"),
        negative,
        unknown_field,
        with("AFTER", "conclusion", json!("compliant")),
        good("OK-2"),
    ]);
    // AFTER: after_rectification with a compliant conclusion.
    let mut input = input;
    input[12]["after_rectification"] = json!("compliant");
    let (decisions, errors) =
        decide_json(&input.to_string(), &Rules::default(), &Calendar::default());
    let ids: Vec<&str> = decisions.iter().map(|d| d.case_id.as_str()).collect();
    // A deadline past the calendar leaves the finding decided, its due date pending.
    assert_eq!(ids, ["OK-1", "RUNS-PAST", "OK-2"]);
    let runs_past = &decisions[1];
    assert!(!runs_past.measures.is_empty());
    assert!(
        runs_past
            .measures
            .iter()
            .filter(|m| !m.due_counts.is_empty())
            .all(|m| m.due_date.is_none() && m.due_pending.is_some()),
        "{runs_past:#?}"
    );
    // (index, case_id, field, a word of the reason)
    let expected: [(usize, Option<&str>, Option<&str>, &str); 11] = [
        (1, Some("FLAG"), Some("flags[1]"), "too_many_snacks"),
        (2, Some("MISSING"), Some("conclusion"), "missing"),
        (3, Some("BAD-DATE"), Some("inspection_date"), "YYYY-MM-DD"),
        (4, Some("WRONG-TYPE"), Some("defects.major"), "invalid type"),
        (5, Some("CONCLUSION"), Some("conclusion"), "acceptable"),
        (6, Some("OUTSIDE"), Some("inspection_date"), "2025–2026"),
        (8, Some("CREDIT"), Some("enterprise_id"), "check"),
        (9, None, None, "invalid type"),
        (10, Some("NEGATIVE"), Some("defects.general"), "-1"),
        (
            11,
            Some("UNKNOWN-FIELD"),
            Some("defects.minor"),
            "unknown field",
        ),
        (
            12,
            Some("AFTER"),
            Some("after_rectification"),
            "pending_rectification",
        ),
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (err, (index, case_id, field, word)) in errors.iter().zip(expected) {
        assert_eq!(err.index, Some(index), "{err}");
        assert_eq!(err.case_id.as_deref(), case_id, "{err}");
        assert_eq!(err.field.as_deref(), field, "{err}");
        assert!(err.reason.contains(word), "{err}");
        let text = err.to_string();
        assert!(text.contains(&format!("finding [{index}]")), "{text}");
        if let Some(field) = field {
            assert!(text.contains(field), "{text}");
        }
    }

    for (input, word) in [("{\"case_id\": \"X\"}", "array"), ("[{", "JSON")] {
        let (decisions, errors) = decide_json(input, &Rules::default(), &Calendar::default());
        assert!(decisions.is_empty());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].index, None);
        assert!(errors[0].reason.contains(word), "{}", errors[0]);
    }
    let (decisions, errors) = decide_json("[]", &Rules::default(), &Calendar::default());
    assert!(decisions.is_empty() && errors.is_empty());
}

#[test]
fn duplicate_flags_are_refused() {
    let f = finding(json!({"flags": ["sampling_failures", "sampling_failures"]}));
    let err = decide(&f, &Rules::default(), &Calendar::default()).expect_err("duplicate");
    assert_eq!(err.field(), Some("flags[1]"));
}

/// Open measures of a case state: (code, due date).
type Open<'a> = &'a [(&'a str, Option<&'a str>)];

fn state(open: Open) -> CaseState {
    let open_measures = open
        .iter()
        .map(|(code, due)| serde_json::from_value(json!({"code": code, "due_date": due})))
        .collect::<std::result::Result<Vec<OpenMeasure>, _>>()
        .expect("open measures");
    CaseState {
        case_id: "JX-2026-001".to_string(),
        enterprise_id: ENTERPRISE.to_string(),
        open_measures,
        on_key_monitoring_list: false,
        case_referred: false,
        risk_increased: false,
        interview_refused: false,
        affected_scope: Vec::new(),
        affected_products: Vec::new(),
    }
}

fn sweep(state: &CaseState, today: &str) -> Decision {
    escalate(state, d(today), &Rules::default(), &Calendar::default()).expect("sweep")
}

#[test]
fn overdue_deadline_escalates_to_key_monitoring_then_case() {
    let open = [("deadline_rectification", Some("2026-03-26"))];
    // On the due day itself the deadline has not passed.
    assert!(sweep(&state(&open), "2026-03-26").measures.is_empty());
    // The day after: key-monitoring list and a new deadline of 30 working days.
    let first = sweep(&state(&open), "2026-03-27");
    assert_eq!(
        codes(&first),
        ["deadline_rectification", "key_monitoring_list"]
    );
    let rect = measure(&first, MeasureCode::DeadlineRectification);
    assert_eq!(rect.article, "蒙药监 (五)");
    // 2026-03-27 + 30 working days: Qingming 04-06 and Labour Day 05-01…05 off, the
    // make-up Saturday 05-09 counted.
    assert_eq!(rect.due_date, Some(d("2026-05-13")));
    assert!(first.follow_up(FollowUpCode::CreditFileEntry).is_some());
    // Already on the list: case filing.
    let mut on_list = state(&[("deadline_rectification", Some("2026-05-12"))]);
    on_list.on_key_monitoring_list = true;
    let second = sweep(&on_list, "2026-05-13");
    assert_eq!(codes(&second), ["case_referral"]);
    assert_eq!(
        measure(&second, MeasureCode::CaseReferral).article,
        "蒙药监 (五)"
    );
    // Already referred: nothing more.
    on_list.case_referred = true;
    assert!(sweep(&on_list, "2026-05-13").measures.is_empty());
    // Open measures without a deadline never become overdue.
    assert!(
        sweep(&state(&[("suspend_sales_all", None)]), "2026-12-31")
            .measures
            .is_empty()
    );
}

#[test]
fn risen_risk_climbs_the_ladder() {
    // (open measures, scope, expected new measure)
    let cases: [(Open, &[&str], MeasureCode); 6] = [
        (&[], &[], MeasureCode::DeadlineRectification),
        (
            &[("deadline_rectification", Some("2026-04-14"))],
            &[],
            MeasureCode::Caution,
        ),
        (
            &[
                ("deadline_rectification", Some("2026-04-14")),
                ("caution", Some("2026-04-14")),
            ],
            &[],
            MeasureCode::Interview,
        ),
        (
            &[("interview", Some("2026-04-14"))],
            &[],
            MeasureCode::SuspendSalesAll,
        ),
        (
            &[("interview", Some("2026-04-14"))],
            &["中药饮片"],
            MeasureCode::SuspendSalesPartial,
        ),
        (
            &[("suspend_sales_partial", None)],
            &[],
            MeasureCode::CaseReferral,
        ),
    ];
    for (open, scope, expected) in cases {
        let mut s = state(open);
        s.risk_increased = true;
        s.affected_scope = scope.iter().map(|x| x.to_string()).collect();
        let decision = sweep(&s, "2026-03-20");
        assert_eq!(decision.codes(), [expected], "{open:?}");
        let m = measure(&decision, expected);
        assert!(m.article.contains("第二十四条"), "{}", m.article);
        if matches!(expected, MeasureCode::Caution | MeasureCode::Interview) {
            // 2026-03-20 + 30 working days (第二十二条), Qingming and Labour Day skipped.
            assert_eq!(m.due_date, Some(d("2026-05-07")));
        }
    }
    let mut top = state(&[("case_referral", None)]);
    top.risk_increased = true;
    assert!(
        sweep(&top, "2026-03-20").measures.is_empty(),
        "top of the ladder"
    );
}

#[test]
fn refused_interview_leads_to_further_measures() {
    let mut s = state(&[("interview", None)]);
    s.interview_refused = true;
    let decision = sweep(&s, "2026-03-20");
    assert_eq!(decision.codes(), [MeasureCode::SuspendSalesAll]);
    assert!(
        measure(&decision, MeasureCode::SuspendSalesAll)
            .article
            .contains("第二十二条")
    );
    // Refused and risen risk together: one suspension citing both articles.
    s.risk_increased = true;
    let decision = sweep(&s, "2026-03-20");
    assert_eq!(
        measure(&decision, MeasureCode::SuspendSalesAll).article,
        "赣药监 第二十四条、第二十二条"
    );
}

#[test]
fn sweep_past_the_calendar_leaves_the_new_deadline_pending() {
    let s = state(&[("deadline_rectification", Some("2026-12-01"))]);
    // A sweep day before the calendar has no calendar to come: refused, naming the day.
    let err = escalate(&s, d("2024-12-02"), &Rules::default(), &Calendar::default())
        .expect_err("2024 not covered");
    assert_eq!(err.field(), Some(SWEEP_DATE));
    assert!(err.to_string().contains("2025–2026"), "{err}");
    // In 2027, and on a day whose new deadline runs into 2027: escalated all the same, the
    // new deadline pending the 2027 calendar — never guessed.
    for today in ["2027-01-04", "2026-12-02"] {
        let decision =
            escalate(&s, d(today), &Rules::default(), &Calendar::default()).expect("escalated");
        let m = measure(&decision, MeasureCode::DeadlineRectification);
        assert_eq!(m.due_date, None, "{today}");
        let pending = m.due_pending.as_ref().expect("pending");
        assert_eq!(pending.needs_year, 2027);
        assert_eq!(
            m.due_counts,
            [WorkingDayCount::new(d(today), SWEEP_DATE, 30)],
            "{today}"
        );
        assert!(
            m.detail
                .as_deref()
                .is_some_and(|t| t.contains("pending the 2027 working-day calendar")),
            "{m:?}"
        );
        assert!(decision.measure(MeasureCode::KeyMonitoringList).is_some());
    }
}

#[test]
fn a_joined_article_cites_each_of_its_single_citations_and_no_other() {
    use super::cites;
    let joined = "赣药监 第十条(一)、第二十二条; 蒙药监 (八)、(九)";
    for one in [
        "赣药监 第十条(一)",
        "赣药监 第二十二条",
        "蒙药监 (八)",
        "蒙药监 (九)",
        "赣药监 第十条(一)、第二十二条",
    ] {
        assert!(cites(joined, one), "{one}");
    }
    for other in [
        "蒙药监 (十)",
        "赣药监 第十条",
        "蒙药监 (九)、(十)",
        "",
        "(九)",
    ] {
        assert!(!cites(joined, other), "{other}");
    }
    assert!(!cites("蒙药监 (十九)", "蒙药监 (九)"));
}

#[test]
fn a_case_id_with_a_control_character_is_refused_before_anything_is_decided() {
    for id in ["JX-2026\n-001", "JX\u{0}001", "JX\t1"] {
        let mut v = base();
        v["case_id"] = json!(id);
        let (decisions, errors) = decide_json(
            &Value::Array(vec![v]).to_string(),
            &Rules::default(),
            &Calendar::default(),
        );
        assert!(decisions.is_empty(), "{id:?}");
        assert_eq!(errors.len(), 1, "{id:?}");
        assert_eq!(errors[0].field.as_deref(), Some("case_id"), "{}", errors[0]);
        assert!(errors[0].reason.contains("control"), "{}", errors[0]);
    }
    // A slash is a character of real case numbers: kept (file names are made safe apart).
    let mut v = base();
    v["case_id"] = json!("JC-2026/041");
    let (decisions, errors) = decide_json(
        &Value::Array(vec![v]).to_string(),
        &Rules::default(),
        &Calendar::default(),
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(decisions[0].case_id, "JC-2026/041");
}
