//! Flag calibration: on clean data the model flags about the target false-alarm rate (in and
//! out of sample), with anomalies in the training table it flags more (not a fixed budget),
//! and a feature constant in training does not make a one-unit difference an extreme.

use pharmwatch_models::{FitOptions, Model};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, Poisson};
use rand_xoshiro::Xoshiro256PlusPlus;

const D: usize = 6;

fn names() -> Vec<String> {
    (0..D).map(|j| format!("f{j}")).collect()
}

/// Clean rows like the nightly features: correlated ratios, a skewed count, a zero-inflated
/// count (stock gaps), a share, and a column that is 0 in every clean row.
fn clean(n: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<f64> {
    let normal = Normal::new(0.0, 1.0).expect("valid");
    let gaps = Poisson::new(0.2).expect("valid");
    let mut rows = Vec::with_capacity(n * D);
    for _ in 0..n {
        let a: f64 = normal.sample(rng);
        let b = 0.8 * a + 0.6 * normal.sample(rng);
        let skewed = (0.4 * normal.sample(rng)).exp();
        let gap: f64 = gaps.sample(rng);
        let share = if rng.gen_bool(0.1) {
            rng.r#gen::<f64>() * 0.2
        } else {
            0.0
        };
        rows.extend([a, b, skewed, gap, share, 0.0]);
    }
    rows
}

fn flagged_share(m: &Model, rows: &[f64], rate: f64) -> f64 {
    let scored = m.score_matrix(rows).expect("scores");
    scored.iter().filter(|s| s.tail_probability <= rate).count() as f64 / scored.len() as f64
}

#[test]
fn a_clean_table_gets_about_the_target_rate_in_and_out_of_sample() {
    let rate = 0.001;
    let mut shares = Vec::new();
    for seed in 1..=5u64 {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let train = clean(20_000, &mut rng);
        let fresh = clean(20_000, &mut rng);
        let m = Model::fit(
            &names(),
            &train,
            &FitOptions {
                seed,
                ..FitOptions::default()
            },
        )
        .expect("fits");
        let inside = flagged_share(&m, &train, rate);
        let outside = flagged_share(&m, &fresh, rate);
        shares.push((inside, outside));
    }
    let mean_out = shares.iter().map(|s| s.1).sum::<f64>() / shares.len() as f64;
    println!("flagged share (in sample, out of sample) per seed: {shares:?}");
    // Measured 2026-12-04 (seeds 1–5): in sample 0.015–0.03 %, out of sample 0.005–0.03 %
    // (mean 0.018 %) at a target of 0.1 %: the exponential tail fitted on the body is
    // conservative on these tables. The ceilings keep that margin honest.
    for (inside, outside) in &shares {
        assert!(*inside <= 0.5 * rate, "in sample {inside} ({shares:?})");
        assert!(
            *outside <= 0.5 * rate,
            "out of sample {outside} ({shares:?})"
        );
    }
    assert!(
        mean_out <= 0.3 * rate,
        "mean out of sample {mean_out} ({shares:?})"
    );
}

#[test]
fn anomalies_in_the_training_table_get_more_flags_not_a_fixed_budget() {
    let rate = 0.001;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
    let mut train = clean(10_000, &mut rng);
    // 1 % of rows break the correlation of f0 and f1 and sell at a lower price share.
    let planted = 100;
    for i in 0..planted {
        let r = i * 97 % 10_000;
        train[r * D + 1] = train[r * D] - 4.0;
        train[r * D + 4] = 0.6;
    }
    let m = Model::fit(&names(), &train, &FitOptions::default()).expect("fits");
    let scored = m.score_matrix(&train).expect("scores");
    let flagged = scored.iter().filter(|s| s.tail_probability <= rate).count();
    let caught = (0..planted)
        .filter(|i| scored[i * 97 % 10_000].tail_probability <= rate)
        .count();
    println!("{flagged} flagged, {caught} of {planted} planted");
    assert!(
        flagged as f64 >= 5.0 * rate * 10_000.0,
        "{flagged} flagged: a fixed budget would flag {}",
        rate * 10_000.0
    );
    assert!(caught >= 90, "{caught} of {planted} planted rows flagged");
    assert!(
        flagged - caught <= 40,
        "{} clean rows flagged",
        flagged - caught
    );
}

#[test]
fn one_unit_off_a_column_constant_in_training_is_not_an_extreme() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let train = clean(5_000, &mut rng);
    let m = Model::fit(&names(), &train, &FitOptions::default()).expect("fits");
    let col = &m.scaling.columns[5];
    assert_eq!(col.method, "constant");
    assert!((col.raw_z(1.0) - 1.0).abs() < 1e-12, "one unit is z = 1");
    let ordinary = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
    let mut one_off = ordinary;
    one_off[5] = 1.0;
    let mut far_off = ordinary;
    far_off[5] = 30.0;
    let (a, b, c) = (
        m.score_row(&ordinary),
        m.score_row(&one_off),
        m.score_row(&far_off),
    );
    assert!(
        b.tail_probability > 0.01,
        "one unit: {b:?} (ordinary {a:?})"
    );
    assert!(c.tail_probability < 1e-4, "thirty units: {c:?}");
}
