//! The aggregation on hand-made curves (exact figures) and the page it renders.

use super::*;
use crate::evaluate::{Detected, FalseAlarms, KindCurve};

fn det(labels: usize, any_item: usize, intended: usize) -> Detected {
    Detected {
        labels,
        any_item,
        intended,
    }
}

fn run(seed: u64, price: [Detected; BANDS], listed: u64, listed_cd: u64, days: u64) -> SeedRun {
    let day = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap_or_default();
    SeedRun {
        seed,
        records: 0,
        labels: 0,
        risk_rows: 0,
        curves: Curves {
            from: day,
            to: day,
            kinds: vec![KindCurve {
                kind: "price_below_median".into(),
                bands: price,
                unbanded: Detected::default(),
            }],
            false_alarms: FalseAlarms {
                enterprises: 10,
                enterprise_days: days,
                listed,
                listed_cd,
                by_indicator: [("model_anomaly".to_string(), listed)]
                    .into_iter()
                    .collect(),
            },
            labels_out_of_range: 0,
        },
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn rates_pool_the_seeds_and_spread_over_the_seeds_with_a_denominator() {
    let r = Rate::of(&[(1, 2), (3, 4), (0, 0)]);
    assert!(close(r.pooled, 4.0 / 6.0));
    assert!(close(r.mean, 0.625), "mean of 0.5 and 0.75");
    // Sample sd of {0.5, 0.75}: |0.25| / √2.
    assert!(close(r.sd, 0.25 / 2f64.sqrt()));
    assert_eq!(r.seeds, 2);
    assert_eq!(Rate::of(&[(0, 0)]), Rate::default());
    let one = Rate::of(&[(3, 4)]);
    assert!(close(one.pooled, 0.75) && close(one.mean, 0.75) && one.sd == 0.0);
}

#[test]
fn aggregate_sums_bands_and_false_alarms_across_seeds() {
    let runs = vec![
        run(7, [det(2, 0, 0), det(1, 1, 0), det(2, 2, 2)], 3, 1, 1000),
        run(8, [det(0, 0, 0), det(3, 1, 1), det(2, 1, 1)], 1, 0, 1000),
    ];
    let s = aggregate(&runs);
    assert_eq!(s.seeds, vec![7, 8]);
    assert_eq!(s.kinds.len(), 1);
    let k = &s.kinds[0];
    assert_eq!(k.intended_indicator, "price_below_median");
    assert_eq!(k.unit, "× the usual price");
    assert_eq!(k.labels(), 10);
    let [least, middle, obvious] = [&k.bands[0], &k.bands[1], &k.bands[2]];
    assert_eq!((least.labels, least.any_item.seeds), (2, 1));
    assert!(close(least.any_item.pooled, 0.0));
    assert_eq!(least.target, None);
    // Middle: 2 of 4 with any item (per seed 1.0 and 1/3), 1 of 4 intended.
    assert!(close(middle.any_item.pooled, 0.5));
    assert!(close(middle.any_item.mean, 2.0 / 3.0));
    assert!(close(middle.intended.pooled, 0.25));
    assert!(middle.misses_target(), "0.5 < 0.6");
    // Obvious: 3 of 4; per seed 1.0 and 0.5: sd = 0.5/√2.
    assert!(close(obvious.any_item.pooled, 0.75));
    assert!(close(obvious.any_item.sd, 0.5 / 2f64.sqrt()));
    assert!(obvious.misses_target(), "0.75 < 0.95");
    // Price: smaller is clearer, so the obvious third is the cheapest.
    assert!(close(obvious.magnitude_lo, 0.3) && close(obvious.magnitude_hi, 0.5));
    assert!(close(least.magnitude_lo, 0.7) && close(least.magnitude_hi, 0.9));
    let fa = &s.false_alarms;
    assert_eq!((fa.enterprise_days, fa.listed, fa.listed_cd), (2000, 4, 1));
    assert!(close(fa.rate.pooled, 0.002) && close(fa.rate.mean, 0.002));
    assert!(close(fa.rate.sd, 0.002 / 2f64.sqrt()));
    assert!(close(fa.rate_cd.pooled, 0.0005));
    assert_eq!(fa.by_indicator.get("model_anomaly"), Some(&4));
}

#[test]
fn the_report_and_the_page_show_every_band_and_mark_the_misses() {
    let runs = vec![
        run(7, [det(2, 0, 0), det(1, 1, 0), det(2, 2, 2)], 3, 1, 1000),
        run(8, [det(0, 0, 0), det(3, 1, 1), det(2, 1, 1)], 1, 0, 1000),
    ];
    let s = aggregate(&runs);
    let settings = SweepSettings {
        seeds: vec![7, 8],
        enterprises: 40,
        days: 50,
        report_days: 14,
        anomalies_per_kind: None,
        noise: true,
        model: "trained".into(),
    };
    let text = report(&settings, &s);
    assert!(text.contains("price_below_median"), "{text}");
    assert!(text.contains("2/4/4"), "labels per band: {text}");
    assert!(text.contains("0.50±0.47!"), "middle misses 0.6: {text}");
    assert!(
        text.contains("4 listed of 2000 enterprise-days = 0.200 %"),
        "{text}"
    );
    assert!(text.contains("within the 0.50 % target"), "{text}");
    assert!(text.contains("= 0.050 %"), "{text}");
    let page = html::render(&settings, &s).unwrap();
    assert!(page.contains("data-chart=\"price_below_median\""));
    assert!(page.contains(html::kind_zh("price_below_median")));
    assert_eq!(
        page.matches("<polyline").count(),
        2,
        "any item and intended"
    );
    assert_eq!(
        page.matches("<circle").count(),
        6,
        "three bands with labels, two series"
    );
    assert!(page.contains("class=\"miss\""), "a missed target is marked");
    assert!(page.contains("0.200 %"));
}
