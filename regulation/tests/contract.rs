//! The documented contract (`schemas/contracts/findings.md`, `finding.json`, `decision.json`)
//! against the engine: the examples in the document are what the engine produces, and the JSON
//! Schemas list exactly the fields and codes of the Rust types.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use pharmwatch_regulation::{
    Calendar, CaseState, Decision, FindingError, FollowUpCode, MeasureCode, Rules, decide_json,
    escalate,
};
use serde_json::{Value, json};

const DOC: &str = include_str!("../../schemas/contracts/findings.md");
const FINDING_SCHEMA: &str = include_str!("../../schemas/contracts/finding.json");
const DECISION_SCHEMA: &str = include_str!("../../schemas/contracts/decision.json");

/// The ```json blocks of the document, in order.
fn json_blocks() -> Vec<Value> {
    let mut blocks = Vec::new();
    let mut rest = DOC;
    while let Some(start) = rest.find("```json\n") {
        let body = &rest[start + "```json\n".len()..];
        let end = body.find("\n```").expect("closed block");
        blocks.push(serde_json::from_str(&body[..end]).expect("block is JSON"));
        rest = &body[end + 4..];
    }
    blocks
}

#[test]
fn the_documented_example_is_what_the_engine_decides() {
    let blocks = json_blocks();
    assert_eq!(
        blocks.len(),
        5,
        "findings, decisions, errors, case state, escalation"
    );
    let (decisions, errors) = decide_json(
        &blocks[0].to_string(),
        &Rules::default(),
        &Calendar::default(),
    );
    let documented: Vec<Decision> =
        serde_json::from_value(blocks[1].clone()).expect("documented decisions");
    assert_eq!(decisions, documented);
    let documented: Vec<FindingError> =
        serde_json::from_value(blocks[2].clone()).expect("documented errors");
    assert_eq!(errors, documented);

    let state: CaseState = serde_json::from_value(blocks[3].clone()).expect("case state");
    let today = NaiveDate::from_ymd_opt(2026, 3, 27).expect("date");
    assert!(DOC.contains("On 2026-03-27"));
    let escalation =
        escalate(&state, today, &Rules::default(), &Calendar::default()).expect("sweep");
    let documented: Decision = serde_json::from_value(blocks[4].clone()).expect("escalation");
    assert_eq!(escalation, documented);
}

#[test]
fn every_flag_of_the_rules_is_documented_with_its_article() {
    let rules = Rules::default();
    for (name, flag) in &rules.flags {
        let row = DOC
            .lines()
            .find(|line| line.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("flag {name} is not in findings.md"));
        assert!(row.contains(&rules.cite_measures(&flag.article)), "{row}");
    }
}

fn schema(text: &str) -> Value {
    serde_json::from_str(text).expect("schema is JSON")
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().expect("object").keys().cloned().collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect()
}

/// A finding with every optional field set.
fn full_finding() -> Value {
    json!({
        "case_id": "C-1",
        "enterprise_id": "91110000600037341L",
        "inspection_date": "2026-03-02",
        "conclusion": "pending_rectification",
        "after_rectification": "compliant",
        "defects": {"critical": 0, "major": 1, "general": 2},
        "flags": ["residual_risk"],
        "affected_scope": ["中药饮片"],
        "affected_products": ["P1"],
        "first_violation": true,
        "harm": "slight",
        "aggravating": true,
        "self_reported": true,
        "diligent": true,
        "compliance_commitment": true,
        "risk_grade": "B",
        "deadline_missed": true,
        "reissue_count": 1,
        "decision_date": "2026-03-03",
        "interview_date": "2026-03-10",
        "cross_province_storage": true
    })
}

#[test]
fn finding_schema_lists_exactly_the_fields_of_a_finding() {
    let schema = schema(FINDING_SCHEMA);
    let full = full_finding();
    let parsed: pharmwatch_regulation::Finding =
        serde_json::from_value(full.clone()).expect("full finding parses");
    let serialised = serde_json::to_value(&parsed).expect("serialises");
    assert_eq!(keys(&schema["properties"]), keys(&serialised));
    assert_eq!(keys(&schema["properties"]), keys(&full));
    // A required field cannot be left out; any other field can.
    let required: BTreeSet<String> = strings(&schema["required"]).into_iter().collect();
    for field in keys(&full) {
        let mut without = full.clone();
        without.as_object_mut().expect("object").remove(&field);
        let parses = serde_json::from_value::<pharmwatch_regulation::Finding>(without).is_ok();
        assert_eq!(parses, !required.contains(&field), "{field}");
    }
    assert_eq!(
        strings(&schema["properties"]["conclusion"]["enum"]),
        pharmwatch_schemas::Conclusion::NAMES
    );
    for (field, values) in [
        ("after_rectification", vec!["compliant", "non_compliant"]),
        ("harm", vec!["none", "slight", "serious"]),
        ("risk_grade", vec!["A", "B", "C", "D"]),
    ] {
        let documented = strings(&schema["properties"][field]["enum"]);
        assert_eq!(documented, values, "{field}");
        for value in values {
            let mut f = full.clone();
            f[field] = json!(value);
            assert!(
                serde_json::from_value::<pharmwatch_regulation::Finding>(f).is_ok(),
                "{field} = {value}"
            );
        }
    }
}

#[test]
fn decision_schema_lists_exactly_the_codes() {
    let schema = schema(DECISION_SCHEMA);
    let measure_codes: Vec<&str> = MeasureCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        strings(&schema["$defs"]["measure"]["properties"]["code"]["enum"]),
        measure_codes
    );
    let follow_codes: Vec<&str> = FollowUpCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        strings(&schema["$defs"]["follow_up"]["properties"]["code"]["enum"]),
        follow_codes
    );
    // The wire names are serde's.
    for code in MeasureCode::ALL {
        assert_eq!(
            serde_json::to_value(code).expect("serialises"),
            json!(code.as_str())
        );
        assert!(
            DOC.contains(&format!("`{}`", code.as_str())),
            "{}",
            code.as_str()
        );
    }
    for code in FollowUpCode::ALL {
        assert_eq!(
            serde_json::to_value(code).expect("serialises"),
            json!(code.as_str())
        );
        assert!(
            DOC.contains(&format!("`{}`", code.as_str())),
            "{}",
            code.as_str()
        );
    }
    let decision_fields = keys(&schema["properties"]);
    let example: Decision = serde_json::from_value(json!({
        "case_id": "C", "enterprise_id": "E",
        "measures": [{"code": "caution", "article": "a", "due_date": "2026-01-05",
                      "due_counts": [{"from": "2026-01-01", "from_field": "decision_date",
                                      "working_days": 2}],
                      "due_pending": {"needs_year": 2027, "covered_until": "2026-12-31"},
                      "detail": "d"}],
        "follow_up": [{"code": "credit_file_entry", "article": "a"}]
    }))
    .expect("decision parses");
    assert_eq!(
        decision_fields,
        keys(&serde_json::to_value(&example).expect("serialises"))
    );
    assert_eq!(
        keys(&schema["$defs"]["measure"]["properties"]),
        keys(&serde_json::to_value(&example.measures[0]).expect("serialises"))
    );
}
