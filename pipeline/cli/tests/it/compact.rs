//! `pharmwatch compact` and the compaction behind it, end to end: a partition of many
//! stream-style files merged into one with every row kept, a reader listing and reading through
//! each state of the swap and while passes run, a crash between the merged file and the
//! deletions, files landed later — in a folder and in a bucket of a real S3-compatible server
//! (moto's, as `object_lake`); the command's report and exit code, and the nightly job giving
//! byte for byte the same risk list over a compacted province as over the same province not
//! compacted.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{FixedOffset, NaiveDate, TimeZone};
use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use pharmwatch::compact::{self, CompactOptions, Outcome};
use pharmwatch::remote_lake::{LakeSource, RemoteLake};
use pharmwatch_schemas::{EventKind, SalesRecord};

use crate::object_lake::{create_bucket, s3_command, start_s3, text};

const KIND: EventKind = EventKind::Sales;

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// `n` sales of business day `on`, ids `{tag}-{i}`.
fn sales(tag: &str, on: NaiveDate, n: usize) -> Vec<SalesRecord> {
    let tz = FixedOffset::east_opt(8 * 3600).unwrap();
    (0..n)
        .map(|i| SalesRecord {
            event_id: format!("{tag}-{i:04}"),
            event_time: tz
                .from_local_datetime(
                    &on.and_hms_opt(9 + (i % 10) as u32, (i % 60) as u32, 0)
                        .unwrap(),
                )
                .unwrap(),
            enterprise_id: format!("91330100MA2X{:06}", i % 5),
            product_id: format!("P{:03}", i % 4),
            batch_no: format!("B{}", i % 3),
            quantity: 1 + (i % 6) as i64,
            unit_price: 8.0 + (i % 5) as f64 * 0.5,
            buyer_id: (i % 2 == 1).then(|| "91330100MA2Y000009".to_string()),
            trace_code: (i % 4 != 0).then(|| format!("9{tag}{i:05}")),
        })
        .collect()
}

/// Writes `records` as file `name` of `d`'s partition, whole (a folder's by rename, a
/// bucket's in one PUT), as the stream service and the simulator do.
async fn land(lake: &LakeSource, d: NaiveDate, name: &str, records: &[SalesRecord]) {
    let batch = pharmwatch::lake::records_to_batch(KIND, records).unwrap();
    let rel = format!("{}/date={d}/{name}", KIND.as_str());
    lake.write_file(&rel, KIND.lake_schema(), &[batch])
        .await
        .unwrap();
}

/// A partition of `d` as the stream leaves a closed day: a part file, a late upload of the
/// two days before, and `streams` stream files.
async fn stream_partition(lake: &LakeSource, d: NaiveDate, streams: usize) {
    land(lake, d, "part-00000.parquet", &sales("part", d, 25)).await;
    let mut late = sales("late1", d.pred_opt().unwrap(), 7);
    late.extend(sales("late2", d - chrono::Duration::days(2), 3));
    land(lake, d, "late-00000.parquet", &late).await;
    for i in 0..streams {
        let name = format!("stream-p{:03}-o{:012}.parquet", i % 4, i * 50);
        land(lake, d, &name, &sales(&format!("s{i}"), d, 4 + i % 3)).await;
    }
}

/// One-partition DataFusion session reading the lake (its bucket's store registered).
fn session(lake: &LakeSource) -> SessionContext {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    if let LakeSource::Bucket(r) = lake {
        r.register(&ctx);
    }
    ctx
}

/// What the nightly job reads of `d`: `LakeSource::files`, then each file through DataFusion,
/// in the listing's order. Returns the listing and the rows.
async fn read_day(
    lake: &LakeSource,
    ctx: &SessionContext,
    d: NaiveDate,
) -> (Vec<String>, RecordBatch) {
    let files = lake.files(KIND, d, d).await.unwrap();
    let schema = KIND.lake_schema();
    let mut batches = Vec::new();
    for f in &files {
        let df = ctx
            .read_parquet(f.as_str(), ParquetReadOptions::default().schema(&schema))
            .await
            .unwrap_or_else(|e| panic!("{f}: {e}"));
        for b in df.collect().await.unwrap_or_else(|e| panic!("{f}: {e}")) {
            batches.push(RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap());
        }
    }
    (files, concat_batches(&schema, &batches).unwrap())
}

fn ids(b: &RecordBatch) -> Vec<String> {
    let col = datafusion::arrow::compute::cast(
        b.column_by_name("event_id").unwrap(),
        &datafusion::arrow::datatypes::DataType::Utf8,
    )
    .unwrap();
    let a = col.as_any().downcast_ref::<StringArray>().unwrap();
    (0..a.len()).map(|i| a.value(i).to_string()).collect()
}

fn name_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

/// The partition's objects, every one (what the listing rule hides too).
async fn present(lake: &LakeSource, d: NaiveDate) -> Vec<String> {
    let mut v: Vec<String> = lake
        .files_under(&format!("{}/date={d}", KIND.as_str()))
        .await
        .unwrap()
        .iter()
        .map(|r| name_of(r).to_string())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    v.sort();
    v
}

fn opts(grace_secs: u64) -> CompactOptions {
    CompactOptions {
        grace: Duration::from_secs(grace_secs),
        settle: Duration::ZERO,
        dry_run: false,
    }
}

/// The compaction's behaviour on `lake`, step by step.
async fn swap_scenario(lake: &LakeSource) {
    let ctx = session(lake);
    let d = day("2026-05-20");
    stream_partition(lake, d, 24).await;
    let (files, before) = read_day(lake, &ctx, d).await;
    assert_eq!(files.len(), 26);
    assert_eq!(
        before.num_rows(),
        25 + 10 + (0..24).map(|i| 4 + i % 3).sum::<usize>()
    );

    // Merged with the grace period running: readers read the one file, the replaced files stay
    // (the state a crash between the merged file and the deletions leaves).
    let r = compact::compact_partition(lake, KIND, d, &opts(3600))
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::Merged);
    assert_eq!(
        (r.files_before, r.files_after, r.waiting, r.deleted),
        (26, 1, 26, 0)
    );
    assert_eq!(r.rows, before.num_rows() as u64);
    assert_eq!(present(lake, d).await.len(), 27);
    let (files, after) = read_day(lake, &ctx, d).await;
    assert_eq!(
        files.iter().map(|f| name_of(f)).collect::<Vec<_>>(),
        ["compact-00000001.parquet"]
    );
    assert_eq!(
        after.columns(),
        before.columns(),
        "every row, every column, in order"
    );

    // Half the replaced files deleted (a pass that crashed while deleting): still exact.
    let replaced: Vec<String> = present(lake, d)
        .await
        .into_iter()
        .filter(|n| !n.starts_with("compact-"))
        .collect();
    for (i, n) in replaced.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        lake.remove(&format!("{}/date={d}/{n}", KIND.as_str()))
            .await
            .unwrap();
        if i % 6 == 0 {
            assert_eq!(read_day(lake, &ctx, d).await.1.columns(), before.columns());
        }
    }
    // A pass within the grace period changes nothing; one with grace 0 finishes the job.
    let r = compact::compact_partition(lake, KIND, d, &opts(3600))
        .await
        .unwrap();
    assert_eq!(
        (r.outcome, r.deleted, r.waiting),
        (Outcome::Unchanged, 0, 13)
    );
    let r = compact::compact_partition(lake, KIND, d, &opts(0))
        .await
        .unwrap();
    assert_eq!((r.outcome, r.files_before), (Outcome::Unchanged, 1));
    assert_eq!(present(lake, d).await, ["compact-00000001.parquet"]);
    assert_eq!(read_day(lake, &ctx, d).await.1.columns(), before.columns());

    // Late records land in the closed day: read once beside the compacted file, then merged
    // into the next generation after it.
    let mut late = sales("late3", d - chrono::Duration::days(4), 5);
    late.extend(sales("late4", d, 2));
    land(lake, d, "late-00001.parquet", &late).await;
    land(
        lake,
        d,
        "stream-p002-o000000090000.parquet",
        &sales("x", d, 6),
    )
    .await;
    let (files, landed) = read_day(lake, &ctx, d).await;
    assert_eq!(files.len(), 3);
    assert_eq!(landed.num_rows(), before.num_rows() + 13);
    let r = compact::compact_partition(lake, KIND, d, &opts(0))
        .await
        .unwrap();
    assert_eq!(r.file.as_deref(), Some("compact-00000002.parquet"));
    assert_eq!((r.files_before, r.deleted), (3, 3));
    assert_eq!(present(lake, d).await, ["compact-00000002.parquet"]);
    let (_, last) = read_day(lake, &ctx, d).await;
    assert_eq!(last.columns(), landed.columns());
    let last_ids = ids(&last);
    assert_eq!(
        last_ids.iter().collect::<HashSet<_>>().len(),
        last_ids.len()
    );
}

/// A reader thread lists and reads `d` in a loop while passes merge newly landed files; every
/// read holds every row once.
fn concurrent_scenario(lake: &LakeSource) {
    let d = day("2026-05-21");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(stream_partition(lake, d, 8));
    let base: HashSet<String> = rt
        .block_on(async { ids(&read_day(lake, &session(lake), d).await.1) })
        .into_iter()
        .collect();
    let added: Mutex<HashMap<String, usize>> = Mutex::default();
    let done = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    let rounds = 8;
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let ctx = session(lake);
            while !done.load(Ordering::SeqCst) {
                let (files, rows) = rt.block_on(read_day(lake, &ctx, d));
                let got = ids(&rows);
                let unique: HashSet<&String> = got.iter().collect();
                assert_eq!(unique.len(), got.len(), "a row read twice: {files:?}");
                assert!(
                    base.iter().all(|i| unique.contains(i)),
                    "a row missed: {files:?}"
                );
                let added = added.lock().unwrap().clone();
                let mut per_file: HashMap<usize, usize> = HashMap::new();
                for id in got.iter().filter(|i| !base.contains(*i)) {
                    *per_file.entry(added[id]).or_default() += 1;
                }
                for (file, n) in per_file {
                    assert_eq!(n, 2 + file % 3, "file {file} read in part: {files:?}");
                }
                reads.fetch_add(1, Ordering::SeqCst);
            }
        });
        for i in 0..rounds {
            let recs = sales(&format!("r{i}"), d, 2 + i % 3);
            added
                .lock()
                .unwrap()
                .extend(recs.iter().map(|r| (r.event_id.clone(), i)));
            let name = format!("stream-p{:03}-o{:012}.parquet", i % 2, 5_000 + i);
            rt.block_on(land(lake, d, &name, &recs));
            let r = rt
                .block_on(compact::compact_partition(lake, KIND, d, &opts(2)))
                .unwrap();
            assert_eq!(r.outcome, Outcome::Merged);
            std::thread::sleep(Duration::from_millis(400));
        }
        done.store(true, Ordering::SeqCst);
        reader.join().unwrap();
    });
    let reads = reads.load(Ordering::SeqCst);
    assert!(reads >= 8, "the reader read {reads} times only");
    let (_, last) = rt.block_on(read_day(lake, &session(lake), d));
    assert_eq!(
        last.num_rows(),
        base.len() + (0..rounds).map(|i| 2 + i % 3).sum::<usize>()
    );
}

#[test]
fn compact_a_folder_lake_keeps_every_row_through_the_swap() {
    let dir = tempfile::tempdir().unwrap();
    let lake = LakeSource::Folder(dir.path().to_path_buf());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(swap_scenario(&lake));
    concurrent_scenario(&lake);
}

#[test]
fn compact_a_bucket_lake_keeps_every_row_through_the_swap() {
    let dir = tempfile::tempdir().unwrap();
    let (_s3, addr) = start_s3(dir.path());
    create_bucket(&addr, "lake");
    let endpoint = format!("http://{addr}");
    let settings = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "pharmwatch-test"),
        ("aws_secret_access_key", "pharmwatch-test"),
        ("aws_region", "us-east-1"),
    ];
    let lake = LakeSource::Bucket(
        RemoteLake::open_with(Path::new("s3://lake/province"), &settings).unwrap(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(swap_scenario(&lake));
    concurrent_scenario(&lake);

    // The command on the bucket: the days before --before, a line per partition.
    let d = day("2026-05-22");
    rt.block_on(stream_partition(&lake, d, 5));
    let o = s3_command(
        &addr,
        &[
            "compact",
            "--lake",
            "s3://lake/province",
            "--before",
            "2026-05-23",
            "--grace-secs",
            "0",
            "--settle-secs",
            "0",
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("sales 2026-05-22: 7 files → 1, 59 rows"),
        "{out}"
    );
    assert!(out.contains("sales 2026-05-20: 1 file unchanged"), "{out}");
    assert!(
        out.contains("compacted 1 of 3 partitions of s3://lake/province"),
        "{out}"
    );
    assert_eq!(rt.block_on(present(&lake, d)), ["compact-00000001.parquet"]);
}

fn pharmwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pharmwatch"))
        .args(args)
        .output()
        .unwrap()
}

/// The Parquet files of every partition of `lake`, by partition folder.
fn partition_files(lake: &Path) -> HashMap<PathBuf, Vec<String>> {
    let mut out = HashMap::new();
    for kind in EventKind::ALL {
        for (_, dir) in
            pharmwatch::lake::partitions(lake, *kind, NaiveDate::MIN, NaiveDate::MAX).unwrap()
        {
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".parquet"))
                .collect();
            names.sort();
            out.insert(dir, names);
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn compact_command_reports_each_day_and_the_nightly_reads_the_same_risk_list() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).to_string_lossy().to_string();
    let plain = d("plain");
    let o = pharmwatch(&[
        "simulate",
        "--enterprises",
        "60",
        "--days",
        "45",
        "--seed",
        "3",
        "--quiet",
        "--out",
        &plain,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&plain).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let end = manifest["end"].as_str().unwrap().to_string();
    // The stream's shape: each day's sales landed as several files (by Kafka partition).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lake = LakeSource::Folder(PathBuf::from(&plain));
    let ctx = session(&lake);
    for (day, part_dir) in
        pharmwatch::lake::partitions(Path::new(&plain), KIND, NaiveDate::MIN, NaiveDate::MAX)
            .unwrap()
    {
        let part = part_dir.join("part-00000.parquet");
        if !part.exists() {
            continue;
        }
        let batch = rt.block_on(async {
            let df = ctx
                .read_parquet(
                    part.to_string_lossy().as_ref(),
                    ParquetReadOptions::default().schema(&KIND.lake_schema()),
                )
                .await
                .unwrap();
            let schema = KIND.lake_schema();
            let batches: Vec<RecordBatch> = df
                .collect()
                .await
                .unwrap()
                .into_iter()
                .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap())
                .collect();
            concat_batches(&schema, &batches).unwrap()
        });
        let n = batch.num_rows();
        for p in 0..4 {
            let (from, to) = (n * p / 4, n * (p + 1) / 4);
            let rel = format!(
                "{}/date={day}/stream-p{p:03}-o{:012}.parquet",
                KIND.as_str(),
                from
            );
            rt.block_on(lake.write_file(&rel, KIND.lake_schema(), &[batch.slice(from, to - from)]))
                .unwrap();
        }
        std::fs::remove_file(&part).unwrap();
    }
    let compacted = d("compacted");
    copy_dir(Path::new(&plain), Path::new(&compacted));
    let before = partition_files(Path::new(&compacted));
    let many = before.values().filter(|v| v.len() > 1).count();
    assert!(many >= 40, "partitions of several files: {many}");

    // A dry run changes nothing.
    // (The stream-style files were written just now: --settle-secs 0 takes them.)
    let now = ["--grace-secs", "0", "--settle-secs", "0"];
    let o = pharmwatch(&[&["compact", "--lake", &compacted, "--dry-run"][..], &now].concat());
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("(dry run)") && out.contains("would compact"),
        "{out}"
    );
    assert_eq!(partition_files(Path::new(&compacted)), before);

    // Every closed day (the simulated days are before today) of every kind.
    let prom = d("compact.prom");
    let o = pharmwatch(
        &[
            &["compact", "--lake", &compacted, "--metrics-textfile", &prom][..],
            &now,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        before.len() + 1,
        "a line per partition and a summary: {out}"
    );
    let summary = lines.last().unwrap();
    assert!(
        summary.starts_with(&format!("compacted {many} of {} partitions", before.len())),
        "{summary}"
    );
    assert!(
        summary.contains("replaced file(s) deleted, 0 kept"),
        "{summary}"
    );
    let first_sales = lines.iter().find(|l| l.starts_with("sales ")).unwrap();
    assert!(
        first_sales.contains(" files → 1, ") && first_sales.contains(" rows, "),
        "{first_sales}"
    );
    let after = partition_files(Path::new(&compacted));
    assert_eq!(after.len(), before.len());
    for (dir, names) in &after {
        assert_eq!(names.len(), 1, "{}: {names:?}", dir.display());
        let was = &before[dir];
        if was.len() > 1 {
            assert_eq!(names[0], "compact-00000001.parquet");
        } else {
            assert_eq!(names, was, "a one-file partition is left alone");
        }
    }
    // The run's counters, for the textfile collector.
    let counted = |outcome: &str| -> f64 {
        std::fs::read_to_string(&prom)
            .unwrap()
            .lines()
            .filter(|l| {
                l.starts_with("pharmwatch_lake_partitions_compacted_total{")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(counted("merged"), many as f64);
    assert_eq!(counted("unchanged"), (before.len() - many) as f64);
    assert_eq!(counted("failed"), 0.0);
    // Again: nothing to do.
    let o = pharmwatch(&["compact", "--lake", &compacted]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains(&format!("compacted 0 of {} partitions", before.len())),
        "{}",
        text(&o)
    );

    // The nightly job over each lake: the same records, byte for byte the same risk list.
    let (out_plain, out_compacted) = (d("out-plain"), d("out-compacted"));
    for (lake, out) in [(&plain, &out_plain), (&compacted, &out_compacted)] {
        let o = pharmwatch(&["nightly", "--lake", lake, "--date", &end, "--out", out]);
        assert!(o.status.success(), "nightly {lake}: {}", text(&o));
    }
    let read = |out: &str, f: &str| std::fs::read(Path::new(out).join(f)).unwrap();
    for f in ["risk_list.json", "risk_list.csv"] {
        assert!(
            read(&out_plain, f) == read(&out_compacted, f),
            "{f} differs between the plain and the compacted lake"
        );
    }
    assert!(
        String::from_utf8_lossy(&read(&out_plain, "risk_list.csv"))
            .lines()
            .count()
            > 1,
        "the province has risk rows"
    );
    let records = |out: &str| -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(&read(out, "run.json")).unwrap()["lake_records"]
            .clone()
    };
    assert_eq!(records(&out_plain), records(&out_compacted));
}

#[test]
fn compact_command_names_the_partition_and_file_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let lake = LakeSource::Folder(dir.path().to_path_buf());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (good, bad) = (day("2026-06-01"), day("2026-06-02"));
    rt.block_on(stream_partition(&lake, good, 3));
    rt.block_on(stream_partition(&lake, bad, 3));
    let broken = dir.path().join(format!(
        "sales/date={bad}/stream-p009-o000000000001.parquet"
    ));
    std::fs::write(&broken, b"not parquet").unwrap();
    let root = dir.path().to_string_lossy().to_string();
    let o = pharmwatch(&[
        "compact",
        "--lake",
        &root,
        "--grace-secs",
        "0",
        "--settle-secs",
        "0",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("compact sales/date={bad}")), "{err}");
    assert!(err.contains(&broken.display().to_string()), "{err}");
    assert!(err.contains("1 of 2 partition(s) failed"), "{err}");
    // The other day was compacted; the failed one is as it was (six files, read as before).
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("sales {good}: 5 files → 1")), "{out}");
    assert_eq!(rt.block_on(present(&lake, bad)).len(), 6);
    assert!(
        !rt.block_on(present(&lake, bad))
            .iter()
            .any(|n| n.starts_with("compact-"))
    );
}
