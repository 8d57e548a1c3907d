//! `pharmwatch model train | score | evaluate` on hand-made tables: outliers planted in a
//! known column are ranked first and explained by that column; the artifact round-trips
//! through a file; segmented models score each segment with its own model; every bad table
//! gets an error naming the column (or row) at fault.

use std::io::Write;
use std::path::{Path, PathBuf};

use pharmwatch::modelcmd::{self, TrainSpec};
use pharmwatch_models::Family;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A deterministic table: `id`, `kind` (text), `a`, `b` (= 2a + noise), `c`, `label`; rows
/// 0, 50, 100, … (every 50th) have `c` shifted by 8 and label 1.
fn write_table(dir: &Path, name: &str, rows: usize) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "id,kind,a,b,c,label").unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    for i in 0..rows {
        let a = next() * 4.0;
        let b = 2.0 * a + next() * 0.2;
        let outlier = i % 50 == 0;
        let c = next() + if outlier { 8.0 } else { 0.0 };
        let kind = if i % 2 == 0 { "store" } else { "wholesale" };
        writeln!(f, "{i},{kind},{a},{b},{c},{}", u8::from(outlier)).unwrap();
    }
    path
}

fn spec(exclude: &[&str]) -> TrainSpec {
    TrainSpec {
        exclude: exclude.iter().map(|s| s.to_string()).collect(),
        segment_column: None,
        families: pharmwatch_models::model::DEFAULT_FAMILIES.to_vec(),
        seed: 7,
    }
}

#[test]
fn evaluate_ranks_planted_outliers_first() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_table(dir.path(), "t.csv", 1000);
    let r = rt()
        .block_on(modelcmd::evaluate(&t, "label", &spec(&["id", "kind"])))
        .unwrap();
    assert_eq!((r.rows, r.features, r.anomalies), (1000, 3, 20));
    assert!(r.roc_auc > 0.99, "ROC-AUC {}", r.roc_auc);
    assert!(r.average_precision > 0.9, "AP {}", r.average_precision);
    // Every family alone finds them too, the density and distance ones best. (PCA is
    // blind to a shift along a direction of high variance; that is what the ensemble is for.)
    for (fam, min) in [
        (Family::Mahalanobis, 0.99),
        (Family::Kmeans, 0.99),
        (Family::Iforest, 0.99),
        (Family::Gmm, 0.75),
    ] {
        let mut s = spec(&["id", "kind"]);
        s.families = vec![fam];
        let r = rt().block_on(modelcmd::evaluate(&t, "label", &s)).unwrap();
        assert!(r.roc_auc > min, "{fam:?}: ROC-AUC {}", r.roc_auc);
    }
}

#[test]
fn train_then_score_writes_the_table_with_scores_and_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_table(dir.path(), "t.csv", 600);
    let model = dir.path().join("m/model.json");
    let rt = rt();
    rt.block_on(modelcmd::train(&t, &model, &spec(&["id", "kind", "label"])))
        .unwrap();
    let out = dir.path().join("scores.csv");
    let n = rt.block_on(modelcmd::score(&model, &t, &out)).unwrap();
    assert_eq!(n, 600);
    let mut r = csv::Reader::from_path(&out).unwrap();
    let headers: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        headers,
        [
            "id",
            "kind",
            "a",
            "b",
            "c",
            "label",
            "anomaly_score",
            "anomaly_percentile",
            "anomaly_reasons"
        ]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    // Output rows are the input rows, in input order.
    let ids: Vec<String> = rows.iter().map(|r| r[0].to_string()).collect();
    let expected: Vec<String> = (0..600).map(|i| i.to_string()).collect();
    assert_eq!(ids, expected);
    for row in &rows {
        let percentile: f64 = row[7].parse().unwrap();
        assert!((0.0..=1.0).contains(&percentile));
        if &row[5] == "1" {
            assert!(percentile > 0.95, "outlier {} at {percentile}", &row[0]);
            assert!(row[8].starts_with("c = "), "reason names c: {}", &row[8]);
        }
    }
    // Same model, same scores: scoring is a pure function of the artifact.
    let out2 = dir.path().join("scores2.csv");
    rt.block_on(modelcmd::score(&model, &t, &out2)).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());
}

#[test]
fn a_segment_column_fits_one_model_per_segment() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_table(dir.path(), "t.csv", 600);
    let model = dir.path().join("model.json");
    let mut s = spec(&["id", "label"]);
    s.segment_column = Some("kind".into());
    let rt = rt();
    let set = rt.block_on(modelcmd::train(&t, &model, &s)).unwrap();
    assert_eq!(
        set.segments.keys().cloned().collect::<Vec<_>>(),
        ["store", "wholesale"]
    );
    assert!(set.segments.values().all(|m| m.training_rows == 300));
    let out = dir.path().join("scores.csv");
    assert_eq!(rt.block_on(modelcmd::score(&model, &t, &out)).unwrap(), 600);
}

#[test]
fn bad_tables_name_the_column_or_row_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_table(dir.path(), "t.csv", 200);
    let rt = rt();
    // A text column left in.
    let e = rt
        .block_on(modelcmd::evaluate(&t, "label", &spec(&["id"])))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("column 'kind' is not numeric") && e.contains("--exclude-columns kind"),
        "{e}"
    );
    // A label column that is not there.
    let e = rt
        .block_on(modelcmd::evaluate(&t, "is_anomaly", &spec(&["id", "kind"])))
        .unwrap_err()
        .to_string();
    assert!(e.contains("column 'is_anomaly' is missing"), "{e}");
    // An excluded column that is not there.
    let e = rt
        .block_on(modelcmd::evaluate(&t, "label", &spec(&["kind", "nope"])))
        .unwrap_err()
        .to_string();
    assert!(e.contains("excluded column 'nope' is missing"), "{e}");
    // A label that is not 0/1.
    let bad = dir.path().join("bad_label.csv");
    std::fs::write(
        &bad,
        "x,label\n1,0\n2,1\n3,2\n4,0\n5,0\n6,0\n7,0\n8,0\n9,1\n",
    )
    .unwrap();
    let e = rt
        .block_on(modelcmd::evaluate(&bad, "label", &spec(&[])))
        .unwrap_err()
        .to_string();
    assert!(e.contains("data row 3 has 2"), "{e}");
    // Scoring a table without a column the model was trained on.
    let model = dir.path().join("model.json");
    rt.block_on(modelcmd::train(&t, &model, &spec(&["id", "kind", "label"])))
        .unwrap();
    let narrow = dir.path().join("narrow.csv");
    std::fs::write(&narrow, "a,b\n1,2\n3,4\n").unwrap();
    let e = rt
        .block_on(modelcmd::score(&model, &narrow, &dir.path().join("o.csv")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("column 'c' is missing"), "{e}");
    // A file that is not a table, and one that is not there.
    let e = rt
        .block_on(modelcmd::evaluate(
            &dir.path().join("t.xlsx"),
            "label",
            &spec(&[]),
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no such file"), "{e}");
    std::fs::write(dir.path().join("t.json"), "{}").unwrap();
    let e = rt
        .block_on(modelcmd::evaluate(
            &dir.path().join("t.json"),
            "label",
            &spec(&[]),
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown table format"), "{e}");
    // A model file that is not an artifact.
    std::fs::write(dir.path().join("junk.json"), "{\"rows\": 1}").unwrap();
    let e = rt
        .block_on(modelcmd::score(
            &dir.path().join("junk.json"),
            &t,
            &dir.path().join("o.csv"),
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a pharmwatch model artifact"), "{e}");
}
