//! The detection sweep end to end: five seeds of a small noisy province, each simulated, run
//! through the nightly job (rules and model) and judged per magnitude band; the figures come
//! back in seed order whatever thread ran them, and guard the measured detection and false
//! alarms.

use pharmwatch_regulation::Calendar;
use pharmwatch_sim::sweep::{self, Sweep, SweepConfig};

/// Seeds of the test's sweep.
const SEEDS: [u64; 5] = [21, 22, 23, 24, 25];

#[test]
fn a_seeded_sweep_of_a_small_noisy_province_measures_detection_per_band() {
    let dir = tempfile::tempdir().unwrap();
    let cal = Calendar::embedded().unwrap();
    let mut cfg = SweepConfig::new(dir.path().to_path_buf(), SEEDS.to_vec(), 80, 45, 14);
    cfg.anomalies_per_kind = Some(3);
    cfg.jobs = 2;
    cfg.keep_lakes = false;
    let out = sweep::run(&cfg, &cal).unwrap();
    println!(
        "{}",
        sweep::report(&sweep::SweepSettings::of(&cfg), &out.summary)
    );

    // Seed order, whatever thread finished first; the summary is the aggregate of the runs.
    let seeds: Vec<u64> = out.runs.iter().map(|r| r.seed).collect();
    assert_eq!(seeds, SEEDS);
    assert_eq!(out.summary, sweep::aggregate(&out.runs));
    // One seed alone, on this thread, gives the figures it gave inside the sweep.
    let mut alone = cfg.clone();
    alone.dir = dir.path().join("alone");
    let again = sweep::run_seed(&alone, &cal, SEEDS[2]).unwrap();
    assert_eq!(again, out.runs[2]);
    // The JSON reads back to the same sweep; the page has a chart per kind.
    let json = std::fs::read_to_string(dir.path().join(sweep::JSON_FILE)).unwrap();
    let back: Sweep = serde_json::from_str(&json).unwrap();
    assert_eq!(back, out);
    let page = std::fs::read_to_string(dir.path().join(sweep::HTML_FILE)).unwrap();
    assert_eq!(
        page.matches("<figure data-chart=").count(),
        out.summary.kinds.len()
    );
    assert!(!dir.path().join("seed-21/lake").exists(), "lakes pruned");
    assert!(dir.path().join("seed-21/out/labels.csv").exists());

    // Measured figures (see the printed table); thresholds just under them. Rule kinds pooled
    // per band, detected with any item: 60/60 most obvious, 51/56 middle, 31/49 least obvious.
    let kinds = &out.summary.kinds;
    assert_eq!(kinds.len(), 12, "every planted kind");
    let labels: usize = kinds.iter().map(|k| k.labels()).sum();
    assert!(labels >= 170, "{labels} labels");
    let mut per_band = [(0.0f64, 0usize); 3];
    for k in kinds.iter().filter(|k| k.kind != "subtle_diversion") {
        for b in &k.bands {
            per_band[b.band].0 += (b.any_item.pooled * b.labels as f64).round();
            per_band[b.band].1 += b.labels;
        }
    }
    let rate = |b: usize| per_band[b].0 / per_band[b].1.max(1) as f64;
    println!("rule kinds per band (detected, labels): {per_band:?}");
    assert!(rate(2) >= 0.95, "most obvious third {:.2}", rate(2));
    assert!(rate(1) >= 0.85, "middle third {:.2}", rate(1));
    assert!(
        rate(0) <= 0.75,
        "least obvious third {:.2}: below some rules",
        rate(0)
    );
    // False alarms: 5 of 3043 enterprise-days (0.16 %), none at grade C/D.
    let fa = &out.summary.false_alarms;
    assert!(fa.enterprise_days > 2_800, "{}", fa.enterprise_days);
    assert!(
        fa.rate.pooled <= 0.0025,
        "false alarms {:.4}",
        fa.rate.pooled
    );
    assert_eq!(fa.listed_cd, 0, "listed at C/D");
}
