//! The anomaly model's feature query (`pipeline/sql/features/enterprise_daily.sql`) on small
//! provinces built in the test: the product baselines of a hand-computed day, and a range of
//! judged days giving each day exactly the features it gets judged alone (a day's baseline is
//! its own 28 prior days whatever the run's range: the nightly job judges one or two days, a
//! first night or a backfill seven at a time).

use chrono::{Duration, NaiveDate};
use datafusion::prelude::SessionContext;
use pharmwatch_core::anomaly::{self, FEATURES, FeatureTable};

use crate::sql::lake_session;

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("a date")
}

async fn exec(ctx: &SessionContext, sql: &str) {
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Inserts sales rows `(enterprise, product, day, quantity, unit price)`.
async fn sell(ctx: &SessionContext, rows: &[(String, String, NaiveDate, i64, f64)]) {
    for chunk in rows.chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|(e, p, d, q, price)| format!("('{e}', '{p}', '{d}', {q}, {price})"))
            .collect();
        exec(
            ctx,
            &format!(
                "INSERT INTO sales (enterprise_id, product_id, biz_date, quantity, unit_price) \
                 VALUES {}",
                values.join(", ")
            ),
        )
        .await;
    }
}

async fn features(ctx: &SessionContext, from: NaiveDate, to: NaiveDate) -> FeatureTable {
    anomaly::build_day_tables(ctx, from, to)
        .await
        .expect("day tables");
    anomaly::features(ctx, from, to).await.expect("features")
}

fn value(t: &FeatureTable, enterprise: &str, d: NaiveDate, feature: &str) -> f64 {
    let i = (0..t.len())
        .find(|&i| t.enterprise_id[i] == enterprise && t.date[i] == d)
        .unwrap_or_else(|| panic!("no row for {enterprise} on {d}"));
    let f = FEATURES
        .iter()
        .position(|f| *f == feature)
        .expect("a feature");
    t.row(i)[f]
}

/// One pharmacy sells P9 10 packages a day at 2.00 for the 28 days before 2026-03-29 and
/// 40 at 1.00 on the day; P8 sold 5 packages on two earlier days (too few for a price basis)
/// and 2 on the day; P7 was sold only 29 days before (outside the 28-day window).
#[tokio::test]
async fn a_day_s_product_baselines_are_its_own_prior_28_days() {
    let ctx = lake_session().expect("session");
    exec(
        &ctx,
        "INSERT INTO enterprises (enterprise_id, enterprise_type) VALUES ('E1', 'single_pharmacy')",
    )
    .await;
    exec(
        &ctx,
        "INSERT INTO products (product_id, special_class) VALUES ('P7', 'none'), ('P8', 'none'), \
         ('P9', 'none')",
    )
    .await;
    let judged = day("2026-03-29");
    let mut rows = Vec::new();
    for back in 1..=28 {
        rows.push((
            "E1".into(),
            "P9".into(),
            judged - Duration::days(back),
            10,
            2.0,
        ));
    }
    for back in [3, 20] {
        rows.push((
            "E1".into(),
            "P8".into(),
            judged - Duration::days(back),
            5,
            3.0,
        ));
    }
    rows.push((
        "E1".into(),
        "P7".into(),
        judged - Duration::days(29),
        7,
        1.0,
    ));
    rows.push(("E1".into(), "P9".into(), judged, 40, 1.0));
    rows.push(("E1".into(), "P8".into(), judged, 2, 3.0));
    rows.push(("E1".into(), "P7".into(), judged, 1, 0.5));
    sell(&ctx, &rows).await;

    let t = features(&ctx, judged, judged).await;
    assert_eq!(t.len(), 1, "one enterprise-day judged");
    let settle = |x: f64| (x * 1e9).round() / 1e9;
    // 43 packages of 3 products against (28 × 10 + 2 × 5) / 28 packages and (28 + 2) / 28
    // products a day (P7's sale 29 days before is outside the window).
    assert_eq!(
        value(&t, "E1", judged, "sales_ratio"),
        settle(44.0 / (290.0 / 28.0 + 1.0))
    );
    assert_eq!(
        value(&t, "E1", judged, "products_sold_ratio"),
        settle(4.0 / (30.0 / 28.0 + 1.0))
    );
    // Only P9 has three or more prior days: its price halved.
    assert_eq!(value(&t, "E1", judged, "price_vs_own"), 0.5);
    assert_eq!(value(&t, "E1", judged, "min_price_vs_own"), 0.5);
    // 40 of the day's 43 packages sold below 0.9 × their own price (P7's price has no basis).
    assert_eq!(
        value(&t, "E1", judged, "low_price_share"),
        settle(40.0 / 43.0)
    );
    // P9: 40 > 10 + 2·√10 + 1; P8: 2 < 10/28 + 2·√(10/28) + 1; P7: no baseline, 1 > 0 + 1 is
    // false. One of three products up.
    assert_eq!(value(&t, "E1", judged, "sales_up_share"), settle(1.0 / 3.0));
}

/// A small deterministic generator (the test takes a seed, as every test does).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Forty days of sales of six enterprises × eight products with gaps, products listed late and
/// prices that move; judging 2026-04-03 … 2026-04-09 as one range gives every day the
/// features it gets judged alone, bit for bit.
#[tokio::test]
async fn a_range_of_days_gives_each_day_its_own_features() {
    let ctx = lake_session().expect("session");
    exec(
        &ctx,
        "INSERT INTO enterprises (enterprise_id, enterprise_type) VALUES ('E0', 'single_pharmacy'), \
         ('E1', 'chain_store'), ('E2', 'wholesaler'), ('E3', 'single_pharmacy'), \
         ('E4', 'chain_store'), ('E5', 'manufacturer')",
    )
    .await;
    let products: Vec<String> = (0..8)
        .map(|p| format!("('P{p}', '{}')", if p == 7 { "narcotic" } else { "none" }))
        .collect();
    exec(
        &ctx,
        &format!(
            "INSERT INTO products (product_id, special_class) VALUES {}",
            products.join(", ")
        ),
    )
    .await;
    let first = day("2026-03-01");
    let mut rng = Lcg(19);
    let mut rows = Vec::new();
    for e in 0..6 {
        for p in 0..8u64 {
            let listed = rng.next(30) as i64;
            for d in listed..40 {
                if rng.next(4) == 0 {
                    continue;
                }
                let qty = 1 + rng.next(20) as i64;
                let price = 1.0 + p as f64 + rng.next(100) as f64 / 37.0;
                rows.push((
                    format!("E{e}"),
                    format!("P{p}"),
                    first + Duration::days(d),
                    qty,
                    price,
                ));
            }
        }
    }
    sell(&ctx, &rows).await;

    let (from, to) = (day("2026-04-03"), day("2026-04-09"));
    let range = features(&ctx, from, to).await;
    assert!(range.len() >= 6 * 7 - 2, "{} rows", range.len());
    let mut compared = 0;
    let mut d = from;
    while d <= to {
        let alone = features(&ctx, d, d).await;
        for i in 0..alone.len() {
            let j = (0..range.len())
                .find(|&j| range.enterprise_id[j] == alone.enterprise_id[i] && range.date[j] == d)
                .unwrap_or_else(|| {
                    panic!("{} on {d} missing from the range", alone.enterprise_id[i])
                });
            let bits = |r: &[f64]| r.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(range.row(j)),
                bits(alone.row(i)),
                "{} on {d}: range {:?}, alone {:?}",
                alone.enterprise_id[i],
                range.row(j),
                alone.row(i)
            );
            compared += 1;
        }
        d += Duration::days(1);
    }
    assert_eq!(compared, range.len(), "every row of the range compared");
}
