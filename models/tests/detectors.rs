//! Detectors on small synthetic tables: planted outliers are found by every family and by the
//! ensemble, explanations name the planted feature, artifacts round-trip, fits are
//! deterministic for a seed, and bad tables give the promised errors.

use pharmwatch_models::metrics::{average_precision, roc_auc};
use pharmwatch_models::{Family, FitOptions, Model, ModelError, ModelSet};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, Poisson};
use rand_xoshiro::Xoshiro256PlusPlus;

#[path = "detectors/golden.rs"]
mod golden;

const D: usize = 6;

fn names() -> Vec<String> {
    (0..D).map(|j| format!("f{j}")).collect()
}

/// 600 correlated normal rows with heavy-tailed and zero-inflated columns, plus 12 outliers
/// that shift column 2 (and break its correlation with column 1); returns rows and labels.
fn table(seed: u64) -> (Vec<f64>, Vec<bool>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let normal = Normal::new(0.0, 1.0).expect("valid");
    let poisson = Poisson::new(0.3).expect("valid");
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for i in 0..612 {
        let a: f64 = normal.sample(&mut rng);
        let b = 2.0 * a + 0.3 * normal.sample(&mut rng);
        let mut c = -a + 0.3 * normal.sample(&mut rng);
        let heavy = normal.sample(&mut rng) / normal.sample(&mut rng).abs().max(0.05);
        let zero_inflated: f64 = poisson.sample(&mut rng);
        let level = 100.0 + 5.0 * normal.sample(&mut rng);
        let outlier = i >= 600;
        if outlier {
            c += if rng.r#gen::<bool>() { 5.0 } else { -5.0 };
        }
        rows.extend([a, b, c, heavy.clamp(-1e6, 1e6), zero_inflated, level]);
        labels.push(outlier);
    }
    (rows, labels)
}

fn fit(families: &[Family], rows: &[f64], seed: u64) -> Model {
    let opts = FitOptions {
        families: families.to_vec(),
        seed,
        ..FitOptions::default()
    };
    Model::fit(&names(), rows, &opts).expect("fits")
}

#[test]
fn every_family_and_the_ensemble_find_planted_outliers() {
    let (rows, labels) = table(11);
    let mut all = Vec::new();
    for fam in Family::ALL {
        let m = fit(&[fam], &rows, 3);
        assert!(m.skipped.is_empty(), "{fam:?} skipped: {:?}", m.skipped);
        let scores: Vec<f64> = m
            .score_matrix(&rows)
            .expect("scores")
            .iter()
            .map(|s| s.score)
            .collect();
        let auc = roc_auc(&scores, &labels).expect("both classes");
        all.push((fam, auc));
        assert!(auc > 0.9, "{fam:?}: ROC-AUC {auc:.3}");
    }
    let m = fit(&Family::ALL, &rows, 3);
    let scored = m.score_matrix(&rows).expect("scores");
    let scores: Vec<f64> = scored.iter().map(|s| s.score).collect();
    let auc = roc_auc(&scores, &labels).expect("both classes");
    let ap = average_precision(&scores, &labels).expect("both classes");
    assert!(
        auc > 0.97 && ap > 0.6,
        "ensemble AUC {auc:.3} AP {ap:.3} ({all:?})"
    );
    // Percentiles are calibrated against training: outliers sit at the top.
    for (s, l) in scored.iter().zip(&labels) {
        assert!((0.0..=1.0).contains(&s.percentile));
        if *l {
            assert!(s.percentile > 0.95, "outlier percentile {}", s.percentile);
        }
    }
}

#[test]
fn explanations_name_the_planted_feature() {
    let (rows, labels) = table(5);
    let m = fit(&Family::ALL, &rows, 1);
    for (row, l) in rows.chunks_exact(D).zip(&labels) {
        if !*l {
            continue;
        }
        let e = m.explain(row);
        assert_eq!(e[0].feature, "f2", "top reason {:?}", e[0]);
        let total: f64 = e.iter().map(|c| c.share).sum();
        assert!((total - 1.0).abs() < 1e-9, "shares sum to 1");
        assert!(e[0].plain_reason().starts_with("f2 = "));
    }
}

#[test]
fn artifacts_round_trip_and_fits_are_deterministic() {
    let (rows, _) = table(2);
    let a = fit(&Family::ALL, &rows, 9);
    let b = fit(&Family::ALL, &rows, 9);
    assert_eq!(a, b, "same seed, same model");
    let set = ModelSet::single(a.clone());
    let json = serde_json::to_string(&set).expect("serialises");
    let back: ModelSet = serde_json::from_str(&json).expect("parses");
    back.check_format().expect("format");
    let m = back.model("anything").expect("unsegmented");
    for row in rows.chunks_exact(D).take(50) {
        assert_eq!(
            a.score_row(row),
            m.score_row(row),
            "scores survive the round trip"
        );
    }
    // The table path gives the row path's scores, for every family.
    let batch = a.score_matrix(&rows).expect("scores");
    for (row, b) in rows.chunks_exact(D).zip(&batch) {
        assert_eq!(a.score_row(row), *b);
    }
    let c = fit(&[Family::Iforest, Family::Kmeans], &rows, 10);
    let d = fit(&[Family::Iforest, Family::Kmeans], &rows, 11);
    assert_ne!(c, d, "another seed, another forest");
}

#[test]
fn bad_tables_give_clear_errors() {
    let err = Model::fit(&names(), &[], &FitOptions::default()).expect_err("empty");
    assert!(matches!(err, ModelError::EmptyTable), "{err}");
    let err = Model::fit(&names(), &[1.0; D * 3], &FitOptions::default()).expect_err("few");
    assert!(err.to_string().contains("at least 8"), "{err}");
    let err = Model::fit(&names(), &[7.0; D * 40], &FitOptions::default()).expect_err("const");
    assert!(err.to_string().contains("constant"), "{err}");
    assert!(Family::parse("forest").is_err());
    let (rows, _) = table(1);
    let m = fit(&[Family::Kmeans], &rows, 1);
    let err = m.score_matrix(&rows[..D * 2 + 1]).expect_err("ragged");
    assert!(err.to_string().contains("expects 6"), "{err}");
    // NaN input scores without panicking and counts as "typical" for that column.
    let mut row = rows[..D].to_vec();
    row[3] = f64::NAN;
    assert!(m.score_row(&row).score.is_finite());
}
