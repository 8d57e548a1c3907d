//! Incremental nights: a night that reads the days before it back from the day store writes
//! the same risk list, features and model as a night computed from scratch — including after
//! late records changed an older day, which is computed again with every day after it.

use std::path::Path;

use chrono::{Duration, NaiveDate, TimeZone};
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
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

/// Simulates a noisy province of `enterprises` × `days` (seed `seed`, anomalies planted in
/// the last `anomaly_days`) into `lake`; returns its last day.
fn simulated(
    lake: &Path,
    enterprises: usize,
    days: u32,
    seed: u64,
    anomaly_days: u32,
) -> NaiveDate {
    simulate::run(
        &SimConfig {
            enterprises,
            days,
            start: simulate::default_start(),
            seed,
            anomaly_days,
            anomalies_per_kind: None,
            out: lake.to_path_buf(),
            progress: false,
            noise: pharmwatch::simulate::noise::NoiseConfig::default(),
        },
        &Calendar::embedded().unwrap(),
    )
    .unwrap()
    .end
}

/// The runtime the nightly runs of a test share.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
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
    let end = simulated(&lake, 90, 45, 23, 14);
    let rt = runtime();
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

/// Rows per event kind in the lake, as the nightly job lists it.
fn lake_rows(rt: &tokio::runtime::Runtime, lake: &Path) -> Vec<(EventKind, usize)> {
    let ctx = datafusion::prelude::SessionContext::new();
    let source = pharmwatch::remote_lake::LakeSource::open(lake, &ctx).unwrap();
    EventKind::ALL
        .iter()
        .map(|kind| {
            let files = rt
                .block_on(source.files(*kind, NaiveDate::MIN, NaiveDate::MAX))
                .unwrap();
            let rows = files
                .iter()
                .map(|f| {
                    let file = std::fs::File::open(f).unwrap();
                    let meta = SerializedFileReader::new(file).unwrap();
                    meta.metadata().file_metadata().num_rows() as usize
                })
                .sum();
            (*kind, rows)
        })
        .collect()
}

#[test]
fn a_night_that_compacts_its_closed_days_keeps_its_stored_days_and_its_results() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let end = simulated(&lake, 60, 40, 29, 10);
    let rt = runtime();
    let night =
        |out: &Path, d: NaiveDate| rt.block_on(nightly::run(&config(&lake, out, d))).unwrap();
    // A copy of the lake as it was, for a night from scratch on files never compacted.
    let untouched = dir.path().join("untouched");
    copy_dir(&lake, &untouched);
    let rows_before = lake_rows(&rt, &lake);

    let kept = dir.path().join("kept");
    night(&kept, end - Duration::days(1));
    let opts = pharmwatch::compact::CompactOptions {
        grace: std::time::Duration::ZERO,
        settle: std::time::Duration::ZERO,
        dry_run: false,
    };
    let done = rt
        .block_on(nightly::compact_closed_days(
            &config(&lake, &kept, end - Duration::days(1)),
            &opts,
        ))
        .unwrap();
    // The simulated lake lands late records in files of their own: most partitions merge.
    assert!(
        done.report.merged() >= 40,
        "{} merged",
        done.report.merged()
    );
    assert!(
        done.report
            .partitions
            .iter()
            .all(|p| p.day <= end - Duration::days(1)),
        "only the closed days the night read"
    );
    assert_eq!(lake_rows(&rt, &lake), rows_before, "every row kept");
    // Every stored part of every day of the night's window was carried over: 28 hit days,
    // 28 feature days and the day tables.
    assert!(
        done.days_rekeyed >= 56,
        "{} days re-keyed",
        done.days_rekeyed
    );

    // The next night reads the compacted days back: it computes its own day and the day
    // before (which the late files of the new day changed), as without compaction.
    let next = night(&kept, end);
    let s = next.summary.days;
    assert!((1..=2).contains(&s.hits_computed), "{s:?}");
    assert_eq!(s.hits_reused + s.hits_computed, 28, "{s:?}");
    assert_eq!(s.features_computed, s.hits_computed, "{s:?}");

    // … and writes what a night from scratch on the files never compacted writes.
    let scratch = dir.path().join("scratch");
    let fresh = rt
        .block_on(nightly::run(&config(&untouched, &scratch, end)))
        .unwrap();
    assert!(!fresh.rows.is_empty(), "the night has a risk list");
    for f in ["risk_list.json", "risk_list.csv", "features.csv"] {
        let a = std::fs::read(kept.join(f)).unwrap();
        let b = std::fs::read(scratch.join(f)).unwrap();
        assert!(a == b, "{f} differs after the compaction");
    }
    assert_eq!(artifact(&kept), artifact(&scratch));
    assert_eq!(next.hits, fresh.hits);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
