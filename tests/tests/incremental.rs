//! Incremental nights: a night that reads the days before it back from the day store writes
//! the same risk list, features and model as a night computed from scratch — including after
//! late records changed an older day, which is computed again with every day after it.

use std::path::Path;

use chrono::{Duration, NaiveDate, TimeZone};
use pharmwatch::anomaly::ModelSource;
use pharmwatch::days::DayStore;
use pharmwatch::indicators::Thresholds;
use pharmwatch::lake::LakeWriter;
use pharmwatch::nightly::{self, NightlyConfig};
use pharmwatch::simulate::{self, SimConfig};
use pharmwatch_regulation::Calendar;
use pharmwatch_schemas::{EventKind, SalesRecord};

fn config(lake: &Path, out: &Path, day: NaiveDate) -> NightlyConfig {
    NightlyConfig {
        lake: Some(lake.to_path_buf()),
        reference: None,
        inputs: Vec::new(),
        from: day,
        to: day,
        out: out.to_path_buf(),
        thresholds: Thresholds::default(),
        top: 5,
        progress: false,
        model: ModelSource::default(),
        anomaly_threshold: pharmwatch::anomaly::DEFAULT_THRESHOLD,
    }
}

/// A sale of day `sold` that arrives late, in the partition of day `arrived`: the
/// traceability code of a sale of the day before `sold`, sold again (a duplicate).
fn land_late_resale(
    lake: &Path,
    rt: &tokio::runtime::Runtime,
    sold: NaiveDate,
    arrived: NaiveDate,
) {
    let ctx = datafusion::prelude::SessionContext::new();
    let day_before = pharmwatch::lake::day_dir(lake, EventKind::Sales, sold - Duration::days(1));
    let file = day_before.join("part-00000.parquet");
    rt.block_on(ctx.register_parquet("s", file.to_str().unwrap(), Default::default()))
        .unwrap();
    let rows = rt
        .block_on(async {
            ctx.sql(
                "SELECT enterprise_id, product_id, batch_no, unit_price, trace_code FROM s \
                 WHERE trace_code IS NOT NULL AND buyer_id IS NULL \
                 ORDER BY event_id LIMIT 1",
            )
            .await?
            .collect()
            .await
        })
        .unwrap();
    let b = &rows[0];
    let text = |c: &str| {
        pharmwatch::indicators::strings("late", b, c).unwrap()[0]
            .clone()
            .unwrap()
    };
    let price = pharmwatch::indicators::floats("late", b, "unit_price").unwrap()[0];
    let tz = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let sale = SalesRecord {
        event_id: "LATE-RESALE-1".into(),
        event_time: tz
            .from_local_datetime(&sold.and_hms_opt(15, 0, 0).unwrap())
            .single()
            .unwrap(),
        enterprise_id: text("enterprise_id"),
        product_id: text("product_id"),
        batch_no: text("batch_no"),
        quantity: 1,
        unit_price: price,
        buyer_id: None,
        trace_code: Some(text("trace_code")),
    };
    LakeWriter::new(lake)
        .unwrap()
        .write_day_file(EventKind::Sales, arrived, "late-90000.parquet", &[sale])
        .unwrap();
}

/// The model artifact without the moment it was trained.
fn artifact(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("model.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("trained_at");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

#[test]
fn a_night_reading_stored_days_writes_what_a_night_from_scratch_writes() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let sim = simulate::run(
        &SimConfig {
            enterprises: 90,
            days: 45,
            start: simulate::default_start(),
            seed: 23,
            anomaly_days: 14,
            anomalies_per_kind: None,
            out: lake.clone(),
            progress: false,
            noise: pharmwatch::simulate::noise::NoiseConfig::default(),
        },
        &Calendar::embedded().unwrap(),
    )
    .unwrap();
    let end = sim.end;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let night =
        |out: &Path, d: NaiveDate| rt.block_on(nightly::run(&config(&lake, out, d))).unwrap();

    // Three nights in a row keep their days.
    let kept = dir.path().join("kept");
    let first = night(&kept, end - Duration::days(3));
    assert_eq!(
        first.summary.days.hits_computed, 28,
        "{:?}",
        first.summary.days
    );
    assert_eq!(first.summary.days.features_computed, 28);
    for d in [end - Duration::days(2), end - Duration::days(1)] {
        let s = night(&kept, d).summary.days;
        // The night's own day, and the day before when the lake's late files changed it.
        assert!(s.hits_computed <= 2 && s.hits_computed >= 1, "{s:?}");
        assert_eq!(s.hits_reused + s.hits_computed, 28);
        assert_eq!(s.features_computed, s.hits_computed);
    }

    // A resale of day end − 5 arrives late, with the files of day `end`.
    let resold = end - Duration::days(5);
    let stored = DayStore::open(&kept);
    let dups_before = stored
        .read_hits(resold)
        .unwrap()
        .iter()
        .filter(|h| h.indicator == "trace_code_duplicate")
        .count();
    land_late_resale(&lake, &rt, resold, end);

    let incremental = night(&kept, end);
    let s = incremental.summary.days;
    assert_eq!(
        s.hits_computed, 6,
        "days end − 5 … end are computed again: {s:?}"
    );
    assert_eq!(s.features_computed, 6, "{s:?}");
    assert_eq!(s.hits_reused, 22);
    let dups_after = DayStore::open(&kept)
        .read_hits(resold)
        .unwrap()
        .iter()
        .filter(|h| h.indicator == "trace_code_duplicate")
        .count();
    assert_eq!(
        dups_after,
        dups_before + 1,
        "the late resale is a hit of its own day"
    );

    let scratch_dir = dir.path().join("scratch");
    let scratch = night(&scratch_dir, end);
    assert_eq!(scratch.summary.days.hits_computed, 28);
    assert_eq!(scratch.summary.days.hits_reused, 0);
    for f in [
        "risk_list.json",
        "risk_list.csv",
        "risk_list.parquet",
        "features.csv",
    ] {
        let a = std::fs::read(kept.join(f)).unwrap();
        let b = std::fs::read(scratch_dir.join(f)).unwrap();
        assert!(
            a == b,
            "{f} differs between the incremental night and one from scratch"
        );
    }
    assert!(!incremental.rows.is_empty(), "the night has a risk list");
    assert_eq!(artifact(&kept), artifact(&scratch_dir));
    assert_eq!(incremental.hits, scratch.hits);
    // The stored days are the same bytes too.
    for d in (0..28).map(|i| end - Duration::days(i)) {
        let name = format!("date={d}.parquet");
        for part in ["hits", "features"] {
            let a = std::fs::read(kept.join("days").join(part).join(&name)).unwrap();
            let b = std::fs::read(scratch_dir.join("days").join(part).join(&name)).unwrap();
            assert!(a == b, "days/{part}/{name} differs");
        }
    }
}
