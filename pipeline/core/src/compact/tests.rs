//! Compaction of a folder lake: rows kept exactly, the swap seen by a reader at every step and
//! while it runs, a crash between its steps, later files, the settling time. (The same
//! behaviour against a real S3 server: `pipeline/cli/tests/it/compact.rs`.)
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chrono::{Duration as Days, FixedOffset, TimeZone};
use datafusion::arrow::array::{Array, Date32Array, StringArray};
use datafusion::arrow::compute::concat_batches;
use pharmwatch_schemas::SalesRecord;

use super::*;
use crate::lake::{LakeWriter, day_dir, day_files};

const KIND: EventKind = EventKind::Sales;

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// `n` sales of business day `on`, ids `{tag}-{i}`.
fn sales(tag: &str, on: NaiveDate, n: usize) -> Vec<SalesRecord> {
    let tz = FixedOffset::east_opt(8 * 3600).unwrap();
    (0..n)
        .map(|i| SalesRecord {
            event_id: format!("{tag}-{i:04}"),
            event_time: tz
                .from_local_datetime(
                    &on.and_hms_opt(8 + (i % 12) as u32, (i % 60) as u32, 7)
                        .unwrap(),
                )
                .unwrap(),
            enterprise_id: format!("91330100MA2X{:06}", i % 7),
            product_id: format!("P{:03}", i % 5),
            batch_no: format!("B{}", i % 3),
            quantity: 1 + (i % 9) as i64,
            unit_price: 12.5 + (i % 4) as f64 * 0.25,
            buyer_id: (i % 2 == 0).then(|| "91330100MA2Y000001".to_string()),
            trace_code: (i % 3 != 0).then(|| format!("8{tag}{i:06}")),
        })
        .collect()
}

/// A lake whose partition of `d` holds a `part-*` file, a `late-*` file of the two days
/// before and `streams` stream files (each of `per` rows); returns the lake and its writer.
fn stream_lake(d: NaiveDate, streams: usize, per: usize) -> (tempfile::TempDir, LakeWriter) {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = LakeWriter::new(tmp.path()).unwrap();
    w.write_day_file(KIND, d, "part-00000.parquet", &sales("part", d, 40))
        .unwrap();
    let mut late = sales("late1", d - Days::days(1), 9);
    late.extend(sales("late2", d - Days::days(2), 4));
    w.write_day_file(KIND, d, "late-00000.parquet", &late)
        .unwrap();
    for i in 0..streams {
        let name = format!("stream-p{:03}-o{:012}.parquet", i % 3, i * 100);
        w.write_day_file(KIND, d, &name, &sales(&format!("s{i}"), d, per))
            .unwrap();
    }
    (tmp, w)
}

/// Every row of `files`, in order, as one batch of the kind's schema.
fn read(files: &[PathBuf]) -> RecordBatch {
    let schema = KIND.lake_schema();
    let mut batches = Vec::new();
    for f in files {
        let file = std::fs::File::open(f).unwrap();
        for b in ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            let b = b.unwrap();
            batches.push(RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap());
        }
    }
    concat_batches(&schema, &batches).unwrap()
}

/// What a reader reads of the partition now (`day_files`, then the files).
fn read_partition(lake: &Path, d: NaiveDate) -> RecordBatch {
    read(&day_files(&day_dir(lake, KIND, d)).unwrap())
}

fn ids(b: &RecordBatch) -> Vec<String> {
    let a = b
        .column_by_name("event_id")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    (0..a.len()).map(|i| a.value(i).to_string()).collect()
}

fn per_biz_date(b: &RecordBatch) -> BTreeMap<i32, usize> {
    let a = b
        .column_by_name("biz_date")
        .unwrap()
        .as_any()
        .downcast_ref::<Date32Array>()
        .unwrap();
    let mut out = BTreeMap::new();
    for i in 0..a.len() {
        *out.entry(a.value(i)).or_default() += 1;
    }
    out
}

fn parquet_names(lake: &Path, d: NaiveDate) -> Vec<String> {
    crate::lake::list_parquet(&day_dir(lake, KIND, d))
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect()
}

fn opts(grace_secs: u64) -> CompactOptions {
    CompactOptions {
        grace: Duration::from_secs(grace_secs),
        settle: Duration::ZERO,
        dry_run: false,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn compaction_merges_a_partition_into_one_file_with_the_same_rows_in_order() {
    let d = day("2026-03-10");
    let (tmp, _w) = stream_lake(d, 30, 17);
    let lake = LakeSource::Folder(tmp.path().to_path_buf());
    let before = read_partition(tmp.path(), d);
    assert_eq!(before.num_rows(), 40 + 13 + 30 * 17);

    let rt = rt();
    let report = rt
        .block_on(compact_partition(&lake, KIND, d, &opts(0)))
        .unwrap();
    assert_eq!(report.outcome, Outcome::Merged);
    assert_eq!((report.files_before, report.files_after), (32, 1));
    assert_eq!(report.rows, before.num_rows() as u64);
    assert_eq!(report.deleted, 32);
    assert_eq!(report.waiting, 0);
    assert!(report.bytes_after > 0 && report.bytes_after < report.bytes_before);
    assert_eq!(parquet_names(tmp.path(), d), ["compact-00000001.parquet"]);

    // Every column of every row, in the files' order; the late rows keep their days.
    let after = read_partition(tmp.path(), d);
    assert_eq!(after.schema().fields(), before.schema().fields());
    assert_eq!(after.columns(), before.columns());
    assert_eq!(per_biz_date(&after), per_biz_date(&before));
    assert_eq!(
        per_biz_date(&after).len(),
        3,
        "the late file's two days and the partition's"
    );
    // The nightly job's listing names the one file, whose rows are the same.
    let files = rt.block_on(lake.files(KIND, d, d)).unwrap();
    assert_eq!(files.len(), 1);
    assert!(files[0].ends_with("compact-00000001.parquet"), "{files:?}");
    let listed: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    assert_eq!(read(&listed).columns(), before.columns());

    // Again: already compacted, left alone.
    let again = rt
        .block_on(compact_partition(&lake, KIND, d, &opts(0)))
        .unwrap();
    assert_eq!(again.outcome, Outcome::Unchanged);
    assert_eq!(
        (again.files_before, again.rows),
        (1, before.num_rows() as u64)
    );
    assert_eq!(parquet_names(tmp.path(), d), ["compact-00000001.parquet"]);
}

#[test]
fn compaction_a_reader_listing_at_every_step_of_the_swap_reads_every_row_once() {
    let d = day("2026-03-11");
    let (tmp, _w) = stream_lake(d, 12, 5);
    let lake = LakeSource::Folder(tmp.path().to_path_buf());
    let expected = read_partition(tmp.path(), d);
    let check = |step: &str| {
        let got = read_partition(tmp.path(), d);
        assert_eq!(got.columns(), expected.columns(), "a reader at step {step}");
    };
    let rt = rt();
    let part = Partition::new(&lake, KIND, d);
    check("before");
    let state = rt.block_on(part.state()).unwrap();
    let plan = Plan::of(&state, Duration::ZERO, Utc::now());
    assert_eq!(plan.merge.len(), 14);
    let staged = rt
        .block_on(part.stage(&plan, &state, Utc::now(), Duration::from_secs(3600)))
        .unwrap();
    // The merged file is written but not in place: a temporary file no listing names.
    assert!(matches!(&staged.body, Body::Temporary(p) if p.exists()));
    check("merged file written, not in place");
    assert!(rt.block_on(part.publish(&staged)).unwrap().is_some());
    assert!(matches!(&staged.body, Body::Temporary(p) if !p.exists()));
    check("merged file in place, replaced files present");
    // Replaced files deleted one by one (as a pass after the grace period does).
    for (i, e) in plan.merge.iter().enumerate() {
        assert_eq!(
            rt.block_on(part.delete(std::slice::from_ref(e))).unwrap(),
            1
        );
        check(&format!("{} replaced files deleted", i + 1));
    }
    assert_eq!(parquet_names(tmp.path(), d), ["compact-00000001.parquet"]);
    // Publishing under a name that exists is refused (another pass was first).
    let state = rt.block_on(part.state()).unwrap();
    let mut plan = Plan::of(&state, Duration::ZERO, Utc::now());
    plan.generation = 1;
    plan.merge = state.visible.clone();
    let staged = rt
        .block_on(part.stage(&plan, &state, Utc::now(), Duration::ZERO))
        .unwrap();
    assert_eq!(rt.block_on(part.publish(&staged)).unwrap(), None);
    check("a second pass refused");
}

#[test]
fn compaction_crash_between_the_merged_file_and_the_deletions_is_read_exactly_and_finished() {
    let d = day("2026-03-12");
    let (tmp, _w) = stream_lake(d, 8, 6);
    let lake = LakeSource::Folder(tmp.path().to_path_buf());
    let expected = read_partition(tmp.path(), d);
    let rt = rt();
    let part = Partition::new(&lake, KIND, d);

    // A crash while the merged file was being written leaves a temporary file: not read.
    let state = rt.block_on(part.state()).unwrap();
    let plan = Plan::of(&state, Duration::ZERO, Utc::now());
    let staged = rt
        .block_on(part.stage(&plan, &state, Utc::now(), Duration::ZERO))
        .unwrap();
    assert_eq!(read_partition(tmp.path(), d).columns(), expected.columns());
    // A crash after it was put in place, before any replaced file was deleted.
    rt.block_on(part.publish(&staged)).unwrap().unwrap();
    assert_eq!(parquet_names(tmp.path(), d).len(), 11);
    let listed = day_files(&day_dir(tmp.path(), KIND, d)).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(read_partition(tmp.path(), d).columns(), expected.columns());

    // A pass with the grace period still running keeps them (and merges nothing again).
    let kept = rt
        .block_on(compact_partition(&lake, KIND, d, &opts(3600)))
        .unwrap();
    // (The record's own period was zero: a pass deletes once the shorter has passed.)
    assert_eq!((kept.outcome, kept.deleted), (Outcome::Unchanged, 10));
    assert_eq!(parquet_names(tmp.path(), d), ["compact-00000001.parquet"]);
    assert_eq!(read_partition(tmp.path(), d).columns(), expected.columns());
}

#[test]
fn compaction_keeps_replaced_files_for_the_grace_period_and_a_rerun_deletes_them() {
    let d = day("2026-03-13");
    let (tmp, _w) = stream_lake(d, 5, 6);
    let lake = LakeSource::Folder(tmp.path().to_path_buf());
    let expected = read_partition(tmp.path(), d);
    let rt = rt();
    let first = rt
        .block_on(compact_partition(&lake, KIND, d, &opts(3600)))
        .unwrap();
    assert_eq!(
        (first.outcome, first.deleted, first.waiting),
        (Outcome::Merged, 0, 7)
    );
    assert!(first.delete_after.unwrap() > Utc::now() + Days::minutes(59));
    assert_eq!(parquet_names(tmp.path(), d).len(), 8);
    assert_eq!(read_partition(tmp.path(), d).columns(), expected.columns());
    // Re-run within the grace period: nothing deleted, nothing merged.
    let again = rt
        .block_on(compact_partition(&lake, KIND, d, &opts(3600)))
        .unwrap();
    assert_eq!(
        (again.outcome, again.deleted, again.waiting),
        (Outcome::Unchanged, 0, 7)
    );
    // An operator who knows no reader is running: grace 0 deletes them now.
    let done = rt
        .block_on(compact_partition(&lake, KIND, d, &opts(0)))
        .unwrap();
    assert_eq!(
        (done.outcome, done.deleted, done.waiting),
        (Outcome::Unchanged, 7, 0)
    );
    assert_eq!(parquet_names(tmp.path(), d), ["compact-00000001.parquet"]);
    assert_eq!(read_partition(tmp.path(), d).columns(), expected.columns());
}

#[test]
fn compaction_of_a_compacted_day_merges_the_files_landed_after_it() {
    let d = day("2026-03-14");
    let (tmp, mut w) = stream_lake(d, 6, 5);
    let lake = LakeSource::Folder(tmp.path().to_path_buf());
    let rt = rt();
    rt.block_on(compact_partition(&lake, KIND, d, &opts(0)))
        .unwrap();
    let compacted = read_partition(tmp.path(), d);
    // Late records land in the closed day: a late upload and two stream files.
    let mut late = sales("late3", d - Days::days(3), 6);
    late.extend(sales("late4", d, 2));
    w.write_day_file(KIND, d, "late-00001.parquet", &late)
        .unwrap();
    for (i, n) in [(7, 3), (8, 4)] {
        let name = format!("stream-p001-o{:012}.parquet", i * 1000);
        w.write_day_file(KIND, d, &name, &sales(&format!("x{i}"), d, n))
            .unwrap();
    }
    let landed = read_partition(tmp.path(), d);
    assert_eq!(landed.num_rows(), compacted.num_rows() + 15);
    let landed_ids = ids(&landed);
    assert_eq!(
        landed_ids.iter().collect::<HashSet<_>>().len(),
        landed_ids.len()
    );

    // Merged into the next generation; the older one is hidden until its deletion.
    let r = rt
        .block_on(compact_partition(&lake, KIND, d, &opts(3600)))
        .unwrap();
    assert_eq!(r.file.as_deref(), Some("compact-00000002.parquet"));
    assert_eq!((r.files_before, r.files_after, r.waiting), (4, 1, 4));
    let listed = day_files(&day_dir(tmp.path(), KIND, d)).unwrap();
    assert_eq!(listed.len(), 1);
    let after = read_partition(tmp.path(), d);
    assert_eq!(
        after.columns(),
        landed.columns(),
        "the old rows, then the new files'"
    );
    assert_eq!(per_biz_date(&after), per_biz_date(&landed));
    // Another file lands while generation 1 and its successor's replaced files lie beside it.
    w.write_day_file(
        KIND,
        d,
        "stream-p002-o000000009000.parquet",
        &sales("y", d, 3),
    )
    .unwrap();
    assert_eq!(
        read_partition(tmp.path(), d).num_rows(),
        landed.num_rows() + 3
    );
    let r = rt
        .block_on(compact_partition(&lake, KIND, d, &opts(0)))
        .unwrap();
    assert_eq!(r.file.as_deref(), Some("compact-00000003.parquet"));
    assert_eq!(
        r.deleted,
        4 + 2,
        "gen 2's replaced files, then gen 2 and the new file"
    );
    assert_eq!(parquet_names(tmp.path(), d), ["compact-00000003.parquet"]);
    let last = read_partition(tmp.path(), d);
    assert_eq!(last.num_rows(), landed.num_rows() + 3);
    assert_eq!(&ids(&last)[..landed.num_rows()], &landed_ids[..]);
}

#[test]
fn compaction_leaves_one_file_and_young_stream_files_alone() {
    let d = day("2026-03-15");
    let tmp = tempfile::tempdir().unwrap();
    let mut w = LakeWriter::new(tmp.path()).unwrap();
    w.write_day(KIND, d, &sales("only", d, 10)).unwrap();
    let lake = LakeSource::Folder(tmp.path().to_path_buf());
    let rt = rt();
    let r = rt
        .block_on(compact_partition(&lake, KIND, d, &opts(0)))
        .unwrap();
    assert_eq!(
        (r.outcome, r.files_before, r.rows),
        (Outcome::Unchanged, 1, 10)
    );
    assert_eq!(parquet_names(tmp.path(), d), ["part-00000.parquet"]);

    // Stream files just written may still be rolled back by the stream: left for later.
    for i in 0..3 {
        let name = format!("stream-p000-o{:012}.parquet", i);
        w.write_day_file(KIND, d, &name, &sales(&format!("z{i}"), d, 2))
            .unwrap();
    }
    let settling = CompactOptions {
        settle: Duration::from_secs(3600),
        ..opts(0)
    };
    let r = rt
        .block_on(compact_partition(&lake, KIND, d, &settling))
        .unwrap();
    assert_eq!(
        (r.outcome, r.unsettled, r.rows),
        (Outcome::Unchanged, 3, 16)
    );
    assert_eq!(parquet_names(tmp.path(), d).len(), 4);
    // A dry run plans the merge and changes nothing.
    let dry = CompactOptions {
        dry_run: true,
        ..opts(0)
    };
    let r = rt
        .block_on(compact_partition(&lake, KIND, d, &dry))
        .unwrap();
    assert_eq!(
        (r.outcome, r.files_before, r.files_after, r.rows),
        (Outcome::WouldMerge, 4, 1, 16)
    );
    assert_eq!(parquet_names(tmp.path(), d).len(), 4);
    // Settled: merged.
    let r = rt
        .block_on(compact_partition(&lake, KIND, d, &opts(0)))
        .unwrap();
    assert_eq!((r.outcome, r.rows, r.files_after), (Outcome::Merged, 16, 1));
}

#[test]
fn compaction_a_reader_looping_while_passes_run_reads_every_row_exactly_once() {
    let d = day("2026-03-16");
    let (tmp, mut w) = stream_lake(d, 10, 8);
    let root = tmp.path().to_path_buf();
    let base: HashSet<String> = ids(&read_partition(&root, d)).into_iter().collect();
    // Rows of each file added during the run, by id.
    let added: std::sync::Mutex<HashMap<String, usize>> = Default::default();
    let rounds = 12;
    let done = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    let generations: std::sync::Mutex<HashSet<String>> = Default::default();
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let files = day_files(&day_dir(&root, KIND, d)).unwrap();
                if let Some(c) = files
                    .iter()
                    .find(|f| f.to_string_lossy().contains("compact-"))
                {
                    generations.lock().unwrap().insert(c.display().to_string());
                }
                let got = ids(&read(&files));
                let unique: HashSet<&String> = got.iter().collect();
                assert_eq!(unique.len(), got.len(), "a row read twice: {files:?}");
                assert!(
                    base.iter().all(|id| unique.contains(id)),
                    "a row missed: {files:?}"
                );
                // Every added file is read whole or not at all.
                let added = added.lock().unwrap().clone();
                let mut per_file: HashMap<usize, usize> = HashMap::new();
                for id in &got {
                    if !base.contains(id) {
                        let file = added.get(id).copied().unwrap_or(usize::MAX);
                        assert_ne!(file, usize::MAX, "a row nobody wrote: {id}");
                        *per_file.entry(file).or_default() += 1;
                    }
                }
                for (file, n) in per_file {
                    assert_eq!(n, 3 + file % 4, "file {file} read in part");
                }
                reads.fetch_add(1, Ordering::SeqCst);
            }
        });
        let lake = LakeSource::Folder(root.clone());
        let rt = rt();
        for i in 0..rounds {
            let recs = sales(&format!("r{i}"), d, 3 + i % 4);
            {
                let mut a = added.lock().unwrap();
                for r in &recs {
                    a.insert(r.event_id.clone(), i);
                }
            }
            let name = format!("stream-p{:03}-o{:012}.parquet", i % 3, 10_000 + i);
            w.write_day_file(KIND, d, &name, &recs).unwrap();
            let r = rt
                .block_on(compact_partition(&lake, KIND, d, &opts(1)))
                .unwrap();
            assert_eq!(r.outcome, Outcome::Merged);
            std::thread::sleep(std::time::Duration::from_millis(150));
        }
        done.store(true, Ordering::SeqCst);
        reader.join().unwrap();
    });
    let reads = reads.load(Ordering::SeqCst);
    let seen = generations.lock().unwrap().len();
    assert!(reads >= 20, "the reader read {reads} times only");
    assert!(
        seen >= 4,
        "the reader saw {seen} compacted generations only"
    );
    let last = ids(&read_partition(&root, d));
    assert_eq!(
        last.len(),
        base.len() + (0..rounds).map(|i| 3 + i % 4).sum::<usize>()
    );
}
