//! The documented contract (`schemas/contracts/findings.md`, `finding.json`, `decision.json`)
//! against the engine: the examples in the document are what the engine produces, the JSON
//! Schemas list exactly the fields and codes of the Rust types, and a province's rules file
//! replaces every citation the engine prints.

use std::collections::{BTreeMap, BTreeSet};

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
        assert!(row.contains(&flag.article), "{row}");
    }
}

/// The shipped rules file with every `[articles]` role and every flag's `article` rewritten to
/// another province's citation, `N` distinct per key: a 赣药监 citation becomes `某省规定 第N条`,
/// a 蒙药监 one `某省办法 第N条` (two regulations, so citations are still joined per
/// regulation). Returns the text and the citation of each key (`articles.ROLE`,
/// `flags.NAME`).
fn another_province() -> (String, BTreeMap<String, String>) {
    let mut doc: toml::Table = toml::from_str(Rules::embedded_text()).expect("rules parse");
    let mut cited = BTreeMap::new();
    let mut rewrite = |key: String, value: &mut toml::Value| {
        let old = value.as_str().expect("a citation is a string");
        let regulation = if old.starts_with("蒙药监 ") {
            "某省办法"
        } else {
            assert!(old.starts_with("赣药监 "), "{key}: {old}");
            "某省规定"
        };
        let citation = format!("{regulation} 第{}条", 101 + cited.len());
        *value = toml::Value::String(citation.clone());
        cited.insert(key, citation);
    };
    let articles = doc
        .get_mut("articles")
        .and_then(toml::Value::as_table_mut)
        .expect("an [articles] table");
    for (role, value) in articles.iter_mut() {
        rewrite(format!("articles.{role}"), value);
    }
    let flags = doc
        .get_mut("flags")
        .and_then(toml::Value::as_table_mut)
        .expect("a [flags] table");
    for (name, flag) in flags.iter_mut() {
        let article = flag.get_mut("article").expect("a flag names its article");
        rewrite(format!("flags.{name}"), article);
    }
    (toml::to_string(&doc).expect("rules serialise"), cited)
}

/// The citations a measure's joined `article` is made of: `R a、b; S c` → `R a`, `R b`, `S c`.
fn citations_of(article: &str) -> Vec<String> {
    article
        .split("; ")
        .flat_map(|group| {
            let (regulation, items) = group.split_once(' ').unwrap_or(("", group));
            items
                .split('、')
                .map(move |item| format!("{regulation} {item}"))
        })
        .collect()
}

#[test]
fn another_provinces_citations_replace_every_shipped_one() {
    let (text, cited) = another_province();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("province.toml");
    std::fs::write(&path, &text).expect("write the province's rules");
    let rules = Rules::from_path(&path).expect("the province's rules are valid");
    let key_of: BTreeMap<&str, &str> = cited
        .iter()
        .map(|(key, citation)| (citation.as_str(), key.as_str()))
        .collect();
    assert_eq!(key_of.len(), cited.len(), "one citation per key");
    let calendar = Calendar::default();

    // The documented findings, and findings reaching the engine's other roles: every flag at
    // once, and every inclusive-supervision condition at once.
    let mut findings = blocks_array(0);
    findings.push(json!({
        "case_id": "XX-FLAGS", "enterprise_id": "91110000600037341L",
        "inspection_date": "2026-03-02", "conclusion": "compliant",
        "defects": {"critical": 0, "major": 0, "general": 0},
        "flags": rules.flags.keys().collect::<Vec<_>>(),
        "affected_products": ["国药准字S20000001"]
    }));
    findings.push(json!({
        "case_id": "XX-LENIENCY", "enterprise_id": "91110000600037341L",
        "inspection_date": "2026-03-02", "conclusion": "pending_rectification",
        "after_rectification": "non_compliant",
        "defects": {"critical": 0, "major": 1, "general": 2},
        "aggravating": true, "self_reported": true, "diligent": true,
        "risk_grade": "D", "deadline_missed": true, "decision_date": "2026-04-20"
    }));
    let (decisions, errors) = decide_json(&Value::Array(findings).to_string(), &rules, &calendar);
    assert_eq!(decisions.len(), 7);
    assert_eq!(errors.len(), 1, "the documented unknown flag: {errors:?}");
    // The documented sweep, the same case already on the list, and a refused interview.
    let state: CaseState = serde_json::from_value(json_blocks()[3].clone()).expect("case state");
    let today = NaiveDate::from_ymd_opt(2026, 3, 27).expect("date");
    let mut states = vec![state.clone()];
    states.push(CaseState {
        on_key_monitoring_list: true,
        risk_increased: false,
        ..state.clone()
    });
    states.push(CaseState {
        open_measures: Vec::new(),
        risk_increased: false,
        interview_refused: true,
        ..state
    });
    let mut outputs = decisions;
    for s in &states {
        outputs.push(escalate(s, today, &rules, &calendar).expect("sweep"));
    }

    let mut used = BTreeSet::new();
    for decision in &outputs {
        let articles = decision
            .measures
            .iter()
            .map(|m| (m.code.as_str(), &m.article))
            .chain(
                decision
                    .follow_up
                    .iter()
                    .map(|f| (f.code.as_str(), &f.article)),
            );
        for (code, article) in articles {
            for citation in citations_of(article) {
                let key = key_of.get(citation.as_str()).unwrap_or_else(|| {
                    panic!(
                        "{} {code}: `{citation}` of `{article}` is not the province's",
                        decision.case_id
                    )
                });
                used.insert(*key);
            }
        }
        let json = serde_json::to_string(decision).expect("decision serialises");
        for shipped in ["赣药监", "蒙药监"] {
            assert!(!json.contains(shipped), "{shipped} in {json}");
        }
        // A detail may cite too (how a suspension is lifted).
        let details = decision
            .measures
            .iter()
            .filter_map(|m| m.detail.as_deref())
            .chain(
                decision
                    .follow_up
                    .iter()
                    .filter_map(|f| f.detail.as_deref()),
            );
        for detail in details {
            used.extend(
                key_of
                    .iter()
                    .filter(|(citation, _)| detail.contains(&format!("({citation})")))
                    .map(|(_, key)| *key),
            );
        }
    }
    // Every role the engine plays is printed from the province's file; the ones it leaves
    // out are cited by casework (a referral by hand, inspection plans, the caution notice).
    let unused: BTreeSet<&str> = cited
        .keys()
        .map(String::as_str)
        .filter(|k| !used.contains(k))
        .collect();
    assert_eq!(
        unused,
        BTreeSet::from([
            "articles.case_referral",
            "articles.checklist",
            "articles.closed_compliant",
            "articles.closed_transferred",
            "articles.soft_notice"
        ])
    );

    // Each role lands where it belongs.
    let by_case = |case_id: &str| {
        outputs
            .iter()
            .find(|d| d.case_id == case_id)
            .unwrap_or_else(|| panic!("{case_id} decided"))
    };
    let article = |case_id: &str, code: MeasureCode| {
        by_case(case_id)
            .measure(code)
            .unwrap_or_else(|| panic!("{case_id}: {} decided", code.as_str()))
            .article
            .clone()
    };
    let c = |key: &str| cited[key].clone();
    let n = |key: &str| c(key).split_once(' ').expect("two parts").1.to_string();
    assert_eq!(
        article("JX-2026-0031", MeasureCode::Caution),
        format!("{}、{}", c("articles.caution"), n("articles.notice_report"))
    );
    assert_eq!(
        article("JX-2026-0012", MeasureCode::Interview),
        format!(
            "{}、{}、{}",
            c("articles.interview"),
            n("articles.interview_rescheduling"),
            n("articles.notice_report")
        )
    );
    assert_eq!(
        article("NM-2026-0101", MeasureCode::ObservationPeriod),
        c("articles.observation_period")
    );
    assert_eq!(
        article("XX-LENIENCY", MeasureCode::Interview),
        format!(
            "{}、{}",
            c("articles.self_report_interview"),
            n("articles.diligent_interview")
        )
    );
    assert_eq!(
        article("XX-LENIENCY", MeasureCode::KeyMonitoringList),
        format!(
            "{}、{}、{}",
            c("articles.shortfall_key_monitoring"),
            n("articles.overdue_key_monitoring"),
            n("articles.risk_grade_key_monitoring")
        )
    );
    let sweep = &outputs[outputs.len() - 3];
    assert_eq!(
        sweep
            .measure(MeasureCode::SuspendSalesAll)
            .map(|m| m.article.as_str()),
        Some(cited["articles.risk_escalation"].as_str())
    );
    let lifting = sweep
        .measure(MeasureCode::SuspendSalesAll)
        .and_then(|m| m.detail.as_deref())
        .unwrap_or_default();
    assert!(
        lifting.contains(&c("articles.suspension_lifting")),
        "{lifting}"
    );
}

/// The documented block `index`, an array.
fn blocks_array(index: usize) -> Vec<Value> {
    json_blocks()[index].as_array().expect("an array").clone()
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
