//! `pharmwatch inspect plan` end to end: a simulated province, its nightly risk lists, then
//! the quarter's plan drawn by the binary — shares per grade as configured, the same plan for
//! the same seed and another for another seed, no inspector in their own region (the roster
//! has others), every checklist line with its regulation — and the plan document laid out in
//! headless Chromium.

use std::path::Path;

use crate::common::simulate_province;
use pharmwatch::anomaly::ModelSource;
use pharmwatch::indicators::Thresholds;
use pharmwatch::nightly::{self, NightlyConfig};
use pharmwatch_regulation::{Calendar, Rules};

fn pharmwatch(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pharmwatch"))
        .args(args)
        .output()
        .unwrap()
}

fn plan_json(lake: &Path, out: &Path, seed: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "inspect", "plan", "--period", "2026-Q3", "--seed", seed, "--lake", "LAKE", "--out", "OUT",
        "--json",
    ];
    let (lake, out) = (lake.display().to_string(), out.display().to_string());
    args[7] = &lake;
    args[9] = &out;
    args.extend_from_slice(extra);
    let o = pharmwatch(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_quarter_s_plan_draws_its_shares_reproducibly_and_its_checklists_name_their_rules() {
    let dir = tempfile::tempdir().unwrap();
    let cal = Calendar::embedded().unwrap();
    let lake = dir.path().join("lake");
    let sim = simulate_province(&lake, &cal);
    let out = dir.path().join("out");
    let cfg = NightlyConfig {
        lake: Some(lake.clone()),
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
    let rows = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(nightly::run(&cfg))
        .unwrap()
        .rows;
    assert!(rows.iter().any(|r| r.grade != "A"), "a risky enterprise");

    let a = plan_json(&lake, &out, "20260701", &[]);
    let b = plan_json(&lake, &out, "20260701", &[]);
    // Another seed for a period already drawn is refused unless the redraw is asked for (and
    // the replaced plan is kept).
    let refused = pharmwatch(&[
        "inspect",
        "plan",
        "--period",
        "2026-Q3",
        "--seed",
        "20260702",
        "--lake",
        &lake.display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--redraw"));
    let c = plan_json(&lake, &out, "20260702", &["--redraw"]);
    assert!(
        out.join("inspection/plan-2026-Q3.replaced-seed-20260701.json")
            .is_file()
    );
    assert_eq!(a, b, "same seed, same plan");
    let ids = |p: &serde_json::Value| -> Vec<String> {
        p["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["enterprise"]["enterprise_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    assert_ne!(ids(&a), ids(&c), "another seed, another draw");
    assert_eq!(a["seed"], 20260701);
    assert_eq!(a["as_of"], sim.end.to_string());

    // Shares per grade: 60 enterprises, each grade drawn at max(1, round(share × n)).
    let rules = Rules::default();
    let grades = a["grades"].as_array().unwrap();
    assert_eq!(
        grades
            .iter()
            .map(|g| g["enterprises"].as_u64().unwrap())
            .sum::<u64>(),
        60
    );
    for g in grades {
        let n = g["enterprises"].as_u64().unwrap() as usize;
        let grade = g["grade"].as_str().unwrap();
        let share = rules.inspection.share[grade];
        let expected = if n == 0 {
            0
        } else {
            ((share * n as f64).round() as usize).clamp(1, n)
        };
        assert_eq!(g["drawn"].as_u64().unwrap() as usize, expected, "{g}");
    }
    // The risky enterprises of the night are in the plan's higher grades, all of D drawn.
    let d_grade = &grades[3];
    assert_eq!(d_grade["drawn"], d_grade["enterprises"]);
    let entries = a["entries"].as_array().unwrap();
    assert_eq!(
        entries.len() as u64,
        grades
            .iter()
            .map(|g| g["drawn"].as_u64().unwrap())
            .sum::<u64>()
    );
    for e in entries {
        let region = e["enterprise"]["region_code"].as_str().unwrap();
        let team = e["inspectors"].as_array().unwrap();
        assert_eq!(team.len(), 2);
        // Two per region on the simulated roster: another region always has one free.
        assert!(team.iter().all(|i| i["region_code"] != region), "{e}");
        let list = e["checklist"].as_array().unwrap();
        assert!(!list.is_empty());
        for l in list {
            let article = l["article"].as_str().unwrap();
            assert!(
                article.starts_with("中华人民共和国")
                    || article.starts_with("赣药监")
                    || article.starts_with("蒙药监"),
                "{article}"
            );
        }
    }
    // An enterprise of the night's risk list is inspected with its risk items first.
    let flagged = entries
        .iter()
        .find(|e| !e["enterprise"]["recent"].as_array().unwrap().is_empty())
        .expect("a flagged enterprise in the plan");
    assert_eq!(flagged["checklist"][0]["first"], true, "{flagged}");

    // The table and the document.
    let csv = std::fs::read_to_string(out.join("inspection/plan-2026-Q3.csv")).unwrap();
    assert_eq!(csv.lines().count(), entries.len() + 1);
    let html = out.join("inspection/plan-2026-Q3.html");
    let bin = crate::common::chromium();
    let dom = crate::common::headless(&bin, &html, (1240, 1754), &["--dump-dom".to_string()]);
    for part in [
        "双随机",
        "IP-2026-Q3-20260702",
        "国办发〔2015〕58号",
        "行政处罚法 第四十二条",
        "检查清单",
        "依据 Basis",
    ] {
        assert!(dom.contains(part), "{part} missing from the rendered plan");
    }
    assert_eq!(
        dom.matches("class=\"checklist\"").count(),
        entries.len(),
        "one checklist per inspection"
    );
    assert_eq!(
        dom.matches("class=\"article\"").count(),
        c["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["checklist"].as_array().unwrap().len())
            .sum::<usize>(),
        "every checklist line shows its regulation"
    );
    crate::common::assert_screenshot_has_content(&bin, &html, (1240, 1754), 10, "plan");

    // The loop closes through findings: one planned enterprise inspected on 2026-07-15 (its
    // finding recorded with `measures decide --record`, dated by the inspection).
    let first = &c["entries"][0]["enterprise"]["enterprise_id"];
    let findings = dir.path().join("findings.json");
    std::fs::write(
        &findings,
        format!(
            r#"[{{"case_id":"INSP-PLAN-1","enterprise_id":{first},"inspection_date":"2026-07-15",
                "conclusion":"pending_rectification","defects":{{"critical":0,"major":2,"general":16}}}}]"#
        ),
    )
    .unwrap();
    let decided = pharmwatch(&[
        "measures",
        "decide",
        "--findings",
        &findings.display().to_string(),
        "--record",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(
        decided.status.success(),
        "{}",
        String::from_utf8_lossy(&decided.stderr)
    );
    let st = pharmwatch(&[
        "inspect",
        "status",
        "--period",
        "2026-Q3",
        "--out",
        &out.display().to_string(),
        "--json",
    ]);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), c["entries"].as_array().unwrap().len());
    assert_eq!(rows[0]["inspected_on"], "2026-07-15");
    assert_eq!(rows[0]["case_id"], "INSP-PLAN-1");
    assert!(rows[1..].iter().all(|r| r["inspected_on"].is_null()));

    // A bad period and a missing roster are refused with what to do.
    let bad = pharmwatch(&[
        "inspect",
        "plan",
        "--period",
        "2026-Q7",
        "--seed",
        "1",
        "--lake",
        &lake.display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("YYYY-Qn"));
    let none = pharmwatch(&[
        "inspect",
        "plan",
        "--period",
        "2026-Q3",
        "--seed",
        "1",
        "--lake",
        &lake.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--inspectors",
        &dir.path().join("missing.csv").display().to_string(),
    ]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("missing.csv"));
}
