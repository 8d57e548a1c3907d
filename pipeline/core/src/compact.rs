//! Compaction of the lake: every Parquet file of one kind × day partition merged into one
//! (`compact-<generation>.parquet`), in a folder or a bucket, with a swap a concurrent reader
//! never sees half-done. The stream service lands a file per kind × day × Kafka partition ×
//! micro-batch; a day of them costs a reader thousands of opens, a compacted day one.
//!
//! A pass over a partition ([`compact_partition`]):
//! 1. lists it and applies the readers' rule ([`listing::visible`]): what a reader reads now;
//! 2. deletes what the newest compacted file replaced once its grace period is over: the
//!    record's `delete_after`, or the pass's own [`CompactOptions::grace`] after the file was
//!    written when that is shorter (the operator states how long the lake's readers take);
//! 3. merges what a reader reads (the newest compacted file first, then the files landed after
//!    it, in name order; a `stream-*` file younger than [`CompactOptions::settle`] is left for
//!    a later pass) into the next generation, whose record names every file present it
//!    replaces, written whole (a temporary file linked into place in a folder, one conditional
//!    PUT in a bucket), and never over an existing name: of two passes at once one writes, the
//!    other plans again;
//! 4. with a grace period of zero, deletes the replaced files at once.
//!
//! Invariants: the merged file holds exactly the rows of the files it merged (same schema,
//! same rows in their order, counts checked against the footers); a reader that lists the
//! partition at any moment reads every row once — before the merged file appears it reads the
//! old files, after it the merged file and what landed later, never both (the rule); a file
//! a listing named is deleted only after the grace period, so a reader that lists and then
//! reads within it finds every file. A crash at any point leaves a state the rule reads
//! exactly and the next pass finishes: a temporary file is never listed, a merged file with
//! its replaced files beside it hides them. A partition of one file is left alone.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::reader::ChunkReader;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use prometheus::IntCounterVec;
use serde::Serialize;
use tracing::Instrument;

use pharmwatch_schemas::EventKind;

use crate::error::{CoreError, Result};
use crate::lake::listing::{self, CompactionRecord, FileRef, ListedFile};
use crate::metrics::{Builder, Family, expose};
use crate::remote_lake::{LakeSource, RemoteLake};

/// Default grace period: how long the files a merged file replaces stay readable (a nightly
/// run lists the lake and reads it within minutes).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// Default settling time of a `stream-*` file: the stream service may still roll its batch
/// back (and delete the file) until the batch commits, within seconds of writing it.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(600);

/// How many times a pass plans again when another pass wrote the next generation first.
const CONFLICT_ATTEMPTS: usize = 3;

/// A temporary file of a folder pass older than this was left by a crash and is removed.
const STALE_TEMP: Duration = Duration::from_secs(24 * 3600);

/// How a pass compacts.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// How long the files a merged file replaces stay after it appears: a reader that listed
    /// them before has this long to read them. It is written into the merged file's record;
    /// a later pass deletes the replaced files once the shorter of the record's period and
    /// its own has passed. Zero deletes them at once (a lake nobody reads meanwhile, tests).
    pub grace: Duration,
    /// A `stream-*` file younger than this is not merged yet (its batch may still roll back).
    pub settle: Duration,
    /// Plan and report only: write and delete nothing.
    pub dry_run: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            grace: DEFAULT_GRACE,
            settle: DEFAULT_SETTLE,
            dry_run: false,
        }
    }
}

/// What a pass did to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Its files were merged into a new compacted file.
    Merged,
    /// Dry run: its files would be merged.
    WouldMerge,
    /// Nothing to merge: one file, or already compacted.
    Unchanged,
}

/// One partition's pass.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    /// Event kind.
    pub kind: EventKind,
    /// The partition's day.
    pub day: NaiveDate,
    /// What was done.
    pub outcome: Outcome,
    /// The compacted file written (`compact-….parquet`).
    pub file: Option<String>,
    /// Files a reader read before the pass.
    pub files_before: usize,
    /// Files a reader reads after it (a dry run: would read).
    pub files_after: usize,
    /// Rows a reader reads (the same before and after).
    pub rows: u64,
    /// Bytes of the files a reader read before.
    pub bytes_before: u64,
    /// Bytes of the files a reader reads after (a dry run: before).
    pub bytes_after: u64,
    /// Replaced files deleted by this pass (their grace period was over).
    pub deleted: usize,
    /// Replaced files kept until `delete_after`.
    pub waiting: usize,
    /// When the files waiting may be deleted (a later pass deletes them).
    pub delete_after: Option<DateTime<Utc>>,
    /// `stream-*` files left for a later pass (younger than the settling time).
    pub unsettled: usize,
}

/// The passes of [`compact_days`], partition by partition.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompactionReport {
    /// One entry per partition, by kind then day.
    pub partitions: Vec<PartitionReport>,
}

impl CompactionReport {
    /// Partitions merged (or, in a dry run, that would be).
    pub fn merged(&self) -> usize {
        self.partitions
            .iter()
            .filter(|p| p.outcome != Outcome::Unchanged)
            .count()
    }
    /// Sum of a field over the partitions.
    pub fn total(&self, field: impl Fn(&PartitionReport) -> u64) -> u64 {
        self.partitions.iter().map(field).sum()
    }
}

/// Merges every day partition of `kinds` in `[from, to]` (see [`compact_partition`]), kind by
/// kind and day by day; stops at the first partition that fails (those before it are done,
/// it and those after it are as they were). For the nightly job: closed days only.
pub async fn compact_days(
    lake: &LakeSource,
    kinds: &[EventKind],
    from: NaiveDate,
    to: NaiveDate,
    opts: &CompactOptions,
) -> Result<CompactionReport> {
    let mut report = CompactionReport::default();
    for kind in kinds {
        for day in partition_days(lake, *kind, from, to).await? {
            report
                .partitions
                .push(compact_partition(lake, *kind, day, opts).await?);
        }
    }
    Ok(report)
}

/// The days of `kind` with a partition in the lake between `from` and `to` (inclusive), sorted.
pub async fn partition_days(
    lake: &LakeSource,
    kind: EventKind,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<NaiveDate>> {
    Ok(match lake {
        LakeSource::Folder(root) => crate::lake::partitions(root, kind, from, to)?
            .into_iter()
            .map(|(d, _)| d)
            .collect(),
        LakeSource::Bucket(r) => r
            .kind_partitions(kind, from, to)
            .await?
            .into_keys()
            .collect(),
    })
}

/// One pass over the partition of `kind` and `day` (see the module documentation). An error
/// names the partition and the file; the partition is then as readers listed it before.
pub async fn compact_partition(
    lake: &LakeSource,
    kind: EventKind,
    day: NaiveDate,
    opts: &CompactOptions,
) -> Result<PartitionReport> {
    let part = Partition::new(lake, kind, day);
    let span = tracing::info_span!("compact", kind = kind.as_str(), day = %day);
    let result = pass(&part, opts).instrument(span).await;
    let m = metrics();
    match &result {
        Ok(r) if !opts.dry_run => {
            let outcome = match r.outcome {
                Outcome::Merged => "merged",
                _ => "unchanged",
            };
            m.partitions
                .with_label_values(&[kind.as_str(), outcome])
                .inc();
            if r.outcome == Outcome::Merged {
                m.files_merged
                    .with_label_values(&[kind.as_str()])
                    .inc_by(r.files_before.saturating_sub(r.unsettled) as u64);
            }
            m.files_deleted
                .with_label_values(&[kind.as_str()])
                .inc_by(r.deleted as u64);
        }
        Ok(_) => {}
        Err(_) => m
            .partitions
            .with_label_values(&[kind.as_str(), "failed"])
            .inc(),
    }
    result.map_err(|e| CoreError::Compaction {
        partition: part.rel.clone(),
        source: Box::new(e),
    })
}

/// The pass of [`compact_partition`], phases 1–4 of the module documentation.
async fn pass(part: &Partition<'_>, opts: &CompactOptions) -> Result<PartitionReport> {
    if !opts.dry_run {
        part.remove_stale_temporaries()?;
    }
    for _ in 0..CONFLICT_ATTEMPTS {
        let now = Utc::now();
        let mut state = part.state().await?;
        let mut report = state.report(part);
        // 2. What the newest compacted file replaced, once its grace period is over: the one
        // it was written with, or this pass's when shorter (the operator knows its readers).
        let due = state.record.as_ref().map(|r| {
            let now_grace = chrono::Duration::from_std(opts.grace)
                .ok()
                .and_then(|g| r.written_at.checked_add_signed(g))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            r.delete_after.min(now_grace)
        });
        if !state.hidden.is_empty() {
            if due.is_some_and(|d| d <= now) && !opts.dry_run {
                report.deleted += part.delete(&state.hidden).await?;
                state.hidden.clear();
            } else {
                report.waiting = state.hidden.len();
                report.delete_after = due;
            }
        }
        // 3. Merge what a reader reads now.
        let plan = Plan::of(&state, opts.settle, now);
        report.unsettled = plan.unsettled.len();
        if plan.merge.len() < 2 {
            report.rows = part.rows(&state.visible).await?;
            return Ok(report);
        }
        if opts.dry_run {
            report.outcome = Outcome::WouldMerge;
            report.rows = part.rows(&state.visible).await?;
            report.files_after = 1 + plan.unsettled.len();
            return Ok(report);
        }
        let staged = part.stage(&plan, &state, now, opts.grace).await?;
        let Some(written) = part.publish(&staged).await? else {
            tracing::warn!(
                file = %staged.name,
                "another pass wrote the partition's next compacted file first; planning again"
            );
            continue;
        };
        tracing::info!(
            file = %staged.name,
            files = plan.merge.len(),
            rows = staged.rows,
            bytes_before = report.bytes_before,
            bytes_after = written,
            "partition compacted"
        );
        report.outcome = Outcome::Merged;
        report.file = Some(staged.name.clone());
        report.rows = staged.rows;
        report.files_after = 1 + plan.unsettled.len();
        report.bytes_after = written + plan.unsettled.iter().map(|e| e.file.bytes).sum::<u64>();
        // 4. Replaced files go at once when there is no grace period.
        let replaced: Vec<Entry> = plan.merge.iter().chain(&state.hidden).cloned().collect();
        if staged.record.delete_after <= Utc::now() {
            report.deleted += part.delete(&replaced).await?;
            report.waiting = 0;
            report.delete_after = None;
        } else {
            report.waiting = replaced.len();
            report.delete_after = Some(staged.record.delete_after);
        }
        return Ok(report);
    }
    Err(CoreError::Lake {
        path: part.path_of(""),
        reason: format!(
            "other passes kept writing its compacted file ({CONFLICT_ATTEMPTS} attempts); run again"
        ),
    })
}

/// A Parquet file of the partition with its modification time.
#[derive(Debug, Clone)]
struct Entry {
    file: ListedFile,
    modified: DateTime<Utc>,
}

/// A partition as a pass finds it.
#[derive(Debug)]
struct State {
    /// What a reader reads, in name order.
    visible: Vec<Entry>,
    /// Present but replaced by the newest compacted file (older compacted files too).
    hidden: Vec<Entry>,
    /// The newest compacted file's record (when the partition holds more than that file).
    record: Option<CompactionRecord>,
    /// The highest generation present (0: none).
    generation: u64,
}

impl State {
    /// The report of a pass that changes nothing.
    fn report(&self, part: &Partition<'_>) -> PartitionReport {
        let bytes: u64 = self.visible.iter().map(|e| e.file.bytes).sum();
        PartitionReport {
            kind: part.kind,
            day: part.day,
            outcome: Outcome::Unchanged,
            file: None,
            files_before: self.visible.len(),
            files_after: self.visible.len(),
            rows: 0,
            bytes_before: bytes,
            bytes_after: bytes,
            deleted: 0,
            waiting: 0,
            delete_after: None,
            unsettled: 0,
        }
    }
}

/// What a pass merges.
#[derive(Debug)]
struct Plan {
    /// The files merged, in name order (the newest compacted file first).
    merge: Vec<Entry>,
    /// `stream-*` files a reader reads that are too young to merge.
    unsettled: Vec<Entry>,
    /// The generation of the file written.
    generation: u64,
}

impl Plan {
    fn of(state: &State, settle: Duration, now: DateTime<Utc>) -> Self {
        let settle = chrono::Duration::from_std(settle).unwrap_or(chrono::Duration::MAX);
        let (unsettled, merge): (Vec<Entry>, Vec<Entry>) =
            state.visible.iter().cloned().partition(|e| {
                e.file.name.starts_with("stream-") && now.signed_duration_since(e.modified) < settle
            });
        Self {
            merge,
            unsettled,
            generation: state.generation + 1,
        }
    }
}

/// A merged file written but not yet in place.
#[derive(Debug)]
struct Staged {
    /// Its name in the partition.
    name: String,
    /// Its record.
    record: CompactionRecord,
    /// Its rows.
    rows: u64,
    /// Folder: the temporary file; bucket: the object's bytes.
    body: Body,
}

#[derive(Debug)]
enum Body {
    Temporary(PathBuf),
    Bytes(Vec<u8>),
}

/// One kind × day partition of a lake, with the operations a pass needs on either kind of
/// lake.
struct Partition<'a> {
    lake: &'a LakeSource,
    kind: EventKind,
    day: NaiveDate,
    /// `kind/date=YYYY-MM-DD`.
    rel: String,
}

impl<'a> Partition<'a> {
    fn new(lake: &'a LakeSource, kind: EventKind, day: NaiveDate) -> Self {
        Self {
            lake,
            kind,
            day,
            rel: format!("{}/date={}", kind.as_str(), day.format("%Y-%m-%d")),
        }
    }

    /// The folder of a folder lake's partition.
    fn dir(&self) -> Option<PathBuf> {
        match self.lake {
            LakeSource::Folder(root) => Some(root.join(&self.rel)),
            LakeSource::Bucket(_) => None,
        }
    }

    /// The path or URL of file `name` of the partition (the partition itself for ""), for
    /// messages.
    fn path_of(&self, name: &str) -> PathBuf {
        let rel = if name.is_empty() {
            self.rel.clone()
        } else {
            format!("{}/{name}", self.rel)
        };
        match self.lake {
            LakeSource::Folder(root) => root.join(rel),
            LakeSource::Bucket(r) => PathBuf::from(r.url_of(&rel)),
        }
    }

    /// The partition's Parquet files with their sizes and modification times, by name.
    async fn entries(&self) -> Result<Vec<Entry>> {
        let mut out = match self.lake {
            LakeSource::Folder(root) => local_entries(&root.join(&self.rel))?,
            LakeSource::Bucket(r) => remote_entries(r, &self.rel).await?,
        };
        out.sort_by(|a, b| a.file.name.cmp(&b.file.name));
        Ok(out)
    }

    /// The compaction record of file `f`.
    async fn record(&self, f: &ListedFile) -> Result<Option<CompactionRecord>> {
        match self.lake {
            LakeSource::Folder(root) => listing::local_record(&root.join(&self.rel).join(&f.name)),
            LakeSource::Bucket(r) => {
                r.record_of(&format!("{}/{}", self.rel, f.name), f.bytes)
                    .await
            }
        }
    }

    /// Phase 1: the partition as a reader lists it, with what the newest compacted file
    /// hides; lists again if that file went meanwhile.
    async fn state(&self) -> Result<State> {
        for _ in 0..listing::RELIST_ATTEMPTS {
            let entries = self.entries().await?;
            let files: Vec<ListedFile> = entries.iter().map(|e| e.file.clone()).collect();
            let generation = files
                .iter()
                .filter_map(|f| listing::generation(&f.name))
                .max()
                .unwrap_or(0);
            let record = match listing::newest(&files) {
                Some(newest) if files.len() > 1 => match self.record(newest).await {
                    Ok(r) => r,
                    Err(e) if listing::is_not_found(&e) => continue,
                    Err(e) => return Err(e),
                },
                _ => None,
            };
            let shown: Vec<String> = listing::visible(&files, record.as_ref())
                .into_iter()
                .map(|f| f.name.clone())
                .collect();
            let (visible, hidden) = entries
                .into_iter()
                .partition(|e| shown.contains(&e.file.name));
            return Ok(State {
                visible,
                hidden,
                record,
                generation,
            });
        }
        Err(CoreError::Lake {
            path: self.path_of(""),
            reason: "its compacted file kept changing while it was listed".into(),
        })
    }

    /// Rows of `files` from their footers.
    async fn rows(&self, files: &[Entry]) -> Result<u64> {
        let mut n = 0;
        for e in files {
            let meta = match self.lake {
                LakeSource::Folder(root) => {
                    listing::local_footer(&root.join(&self.rel).join(&e.file.name))?
                }
                LakeSource::Bucket(r) => {
                    r.footer(&format!("{}/{}", self.rel, e.file.name), e.file.bytes)
                        .await?
                }
            };
            n += u64::try_from(meta.file_metadata().num_rows()).unwrap_or(0);
        }
        Ok(n)
    }

    /// Phase 3: writes the merged file of `plan` (not yet in place): the rows of the files
    /// merged, in order, and the record naming every file it replaces.
    async fn stage(
        &self,
        plan: &Plan,
        state: &State,
        now: DateTime<Utc>,
        grace: Duration,
    ) -> Result<Staged> {
        let name = listing::compact_name(plan.generation);
        let schema = self.kind.lake_schema();
        let mut record = CompactionRecord {
            version: 1,
            written_at: now,
            delete_after: chrono::Duration::from_std(grace)
                .ok()
                .and_then(|g| now.checked_add_signed(g))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            merged: Vec::with_capacity(plan.merge.len()),
            superseded: state
                .hidden
                .iter()
                .map(|e| file_ref(&e.file, None))
                .collect(),
        };
        match self.lake {
            LakeSource::Folder(root) => {
                let dir = root.join(&self.rel);
                let tmp = dir.join(format!(
                    ".{name}.{}-{}.tmp",
                    std::process::id(),
                    now.timestamp_nanos_opt().unwrap_or_default()
                ));
                let file = std::fs::File::create(&tmp).map_err(|e| CoreError::io(&tmp, e))?;
                let staged = self
                    .merge_into(file, &schema, plan, &mut record, &tmp)
                    .await
                    .and_then(|(file, rows)| {
                        file.sync_all().map_err(|e| CoreError::io(&tmp, e))?;
                        Ok(rows)
                    });
                match staged {
                    Ok(rows) => Ok(Staged {
                        name,
                        record,
                        rows,
                        body: Body::Temporary(tmp),
                    }),
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        Err(e)
                    }
                }
            }
            LakeSource::Bucket(_) => {
                let at = self.path_of(&name);
                let (bytes, rows) = self
                    .merge_into(Vec::new(), &schema, plan, &mut record, &at)
                    .await?;
                Ok(Staged {
                    name,
                    record,
                    rows,
                    body: Body::Bytes(bytes),
                })
            }
        }
    }

    /// Writes the rows of the files of `plan` to `out` as one Parquet file carrying `record`
    /// (filled with the files merged); returns `out` and the rows. `at` names it in errors.
    async fn merge_into<W: Write + Send>(
        &self,
        out: W,
        schema: &SchemaRef,
        plan: &Plan,
        record: &mut CompactionRecord,
        at: &Path,
    ) -> Result<(W, u64)> {
        let perr = |e| CoreError::Parquet {
            path: at.to_path_buf(),
            source: e,
        };
        let mut writer =
            ArrowWriter::try_new(out, schema.clone(), Some(crate::lake::writer_props()))
                .map_err(perr)?;
        let mut rows = 0;
        for e in &plan.merge {
            let n = match self.lake {
                LakeSource::Folder(root) => {
                    let path = root.join(&self.rel).join(&e.file.name);
                    let file =
                        std::fs::File::open(&path).map_err(|err| CoreError::io(&path, err))?;
                    append(&mut writer, schema, file, &path)?
                }
                LakeSource::Bucket(r) => {
                    let rel = format!("{}/{}", self.rel, e.file.name);
                    let bytes = Bytes::from(r.get(&rel).await?);
                    append(&mut writer, schema, bytes, &self.path_of(&e.file.name))?
                }
            };
            rows += n;
            record.merged.push(file_ref(&e.file, Some(n)));
        }
        writer.append_key_value_metadata(record.to_key_value()?);
        let out = writer.into_inner().map_err(perr)?;
        Ok((out, rows))
    }

    /// Puts the staged file in place under its name, never over an existing file: its size,
    /// or `None` when the name exists (another pass wrote it first).
    async fn publish(&self, staged: &Staged) -> Result<Option<u64>> {
        match (&staged.body, self.lake) {
            (Body::Temporary(tmp), LakeSource::Folder(root)) => {
                let dir = root.join(&self.rel);
                let target = dir.join(&staged.name);
                let linked = std::fs::hard_link(tmp, &target);
                let _ = std::fs::remove_file(tmp);
                match linked {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
                    Err(e) => return Err(CoreError::io(&target, e)),
                }
                // The new name survives a crash of the machine once the folder is synced.
                if let Ok(d) = std::fs::File::open(&dir) {
                    let _ = d.sync_all();
                }
                let size = std::fs::metadata(&target)
                    .map_err(|e| CoreError::io(&target, e))?
                    .len();
                Ok(Some(size))
            }
            (Body::Bytes(bytes), LakeSource::Bucket(r)) => {
                let rel = format!("{}/{}", self.rel, staged.name);
                let size = bytes.len() as u64;
                put_new(r, &rel, bytes.clone())
                    .await
                    .map(|put| put.then_some(size))
            }
            _ => Err(CoreError::Internal(
                "a staged compacted file of the other kind of lake".into(),
            )),
        }
    }

    /// Deletes `files` (the ones already gone are not counted); returns how many it deleted.
    async fn delete(&self, files: &[Entry]) -> Result<usize> {
        let mut n = 0;
        for e in files {
            match self
                .lake
                .remove(&format!("{}/{}", self.rel, e.file.name))
                .await
            {
                Ok(()) => n += 1,
                Err(err) if listing::is_not_found(&err) => {}
                Err(err) => return Err(err),
            }
        }
        if n > 0 {
            tracing::debug!(deleted = n, "replaced files deleted");
        }
        Ok(n)
    }

    /// Removes the temporary files a crashed folder pass left (older than a day: a pass
    /// running now may be writing a younger one).
    fn remove_stale_temporaries(&self) -> Result<()> {
        let Some(dir) = self.dir() else {
            return Ok(());
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !(name.starts_with(&format!(".{}", listing::COMPACT_PREFIX))
                && name.ends_with(".tmp"))
            {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_TEMP);
            if old {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|e| CoreError::io(&path, e))?;
            }
        }
        Ok(())
    }
}

/// A record entry of `f`.
fn file_ref(f: &ListedFile, rows: Option<u64>) -> FileRef {
    FileRef {
        name: f.name.clone(),
        bytes: f.bytes,
        rows,
    }
}

/// Appends every row of the Parquet file `reader` (named `path` in errors) to `writer`, in
/// order; checks its columns are the kind's and that the rows decoded are the rows its footer
/// counts. Returns the rows.
fn append<R: ChunkReader + 'static, W: Write + Send>(
    writer: &mut ArrowWriter<W>,
    schema: &SchemaRef,
    reader: R,
    path: &Path,
) -> Result<u64> {
    let perr = |e| CoreError::Parquet {
        path: path.to_path_buf(),
        source: e,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(reader).map_err(perr)?;
    if builder.schema().fields() != schema.fields() {
        return Err(CoreError::Lake {
            path: path.to_path_buf(),
            reason: format!(
                "its columns ({}) are not the kind's lake schema ({})",
                field_names(builder.schema()),
                field_names(schema)
            ),
        });
    }
    let counted = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let mut rows = 0u64;
    for batch in builder.build().map_err(perr)? {
        let batch = batch.map_err(|e| CoreError::arrow(path.display().to_string(), e))?;
        // The kind's schema without the file's own metadata (an older compacted file's record).
        let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
            .map_err(|e| CoreError::arrow(path.display().to_string(), e))?;
        rows += batch.num_rows() as u64;
        writer.write(&batch).map_err(perr)?;
    }
    if rows != counted {
        return Err(CoreError::Internal(format!(
            "{}: decoded {rows} rows, its footer counts {counted}",
            path.display()
        )));
    }
    Ok(rows)
}

fn field_names(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Parquet files of a partition folder with sizes and modification times (none when it
/// does not exist).
fn local_entries(dir: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for f in crate::lake::list_parquet(dir)? {
        let path = dir.join(&f.name);
        let modified = match std::fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(t) => DateTime::<Utc>::from(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(CoreError::io(&path, e)),
        };
        out.push(Entry { file: f, modified });
    }
    Ok(out)
}

/// The Parquet objects of partition `rel` of a bucket with sizes and modification times.
async fn remote_entries(r: &RemoteLake, rel: &str) -> Result<Vec<Entry>> {
    let metas: Vec<object_store::ObjectMeta> = r
        .object_store()
        .list(Some(&r.key(rel)))
        .try_collect()
        .await
        .map_err(|e| r.err(rel, "list the partition", e))?;
    Ok(metas
        .into_iter()
        .filter_map(|m| {
            let name = m.location.filename()?.to_string();
            name.ends_with(".parquet").then_some(Entry {
                file: ListedFile {
                    name,
                    bytes: m.size,
                },
                modified: m.last_modified,
            })
        })
        .collect())
}

/// Writes object `rel` whole unless it exists (a conditional PUT): `false` when it does.
/// A store without conditional writes (`AWS_CONDITIONAL_PUT=disabled`) gets a check and a
/// plain PUT: two passes over one partition at once are then not kept apart.
async fn put_new(r: &RemoteLake, rel: &str, bytes: Vec<u8>) -> Result<bool> {
    let store: &Arc<dyn ObjectStore> = r.object_store();
    let key = r.key(rel);
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store
        .put_opts(&key, PutPayload::from(bytes.clone()), opts)
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(object_store::Error::NotImplemented { .. }) => {
            match store.head(&key).await {
                Ok(_) => return Ok(false),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(r.err(rel, "check the compacted file's name", e)),
            }
            r.put(rel, bytes).await.map(|()| true)
        }
        Err(e) => Err(r.err(rel, "write the compacted file", e)),
    }
}

/// The compaction counters (`pharmwatch_lake_*`), beside the component; created and exposed
/// by the first pass, so a process that compacts serves them on `/metrics` and the facade's
/// list ([`CompactionMetrics::new`]) names them.
#[derive(Debug, Clone)]
pub struct CompactionMetrics {
    /// Partition passes by kind and outcome (merged, unchanged, failed).
    pub partitions: IntCounterVec,
    /// Files merged into compacted files, by kind.
    pub files_merged: IntCounterVec,
    /// Replaced files deleted after their grace period, by kind.
    pub files_deleted: IntCounterVec,
    /// The families, for the facade's list.
    pub families: Vec<Family>,
}

impl CompactionMetrics {
    /// A new set in its own registry, every bounded label at zero.
    pub fn new() -> (Self, prometheus::Registry) {
        let mut b = Builder::new();
        let partitions = b.counter(
            "pharmwatch_lake_partitions_compacted_total",
            "Lake partition compaction passes, by event kind and outcome (merged, unchanged, failed)",
            &["kind", "outcome"],
        );
        let files_merged = b.counter(
            "pharmwatch_lake_files_merged_total",
            "Lake files merged into compacted files, by event kind",
            &["kind"],
        );
        let files_deleted = b.counter(
            "pharmwatch_lake_files_deleted_total",
            "Lake files deleted after a compacted file replaced them and the grace period ended, by event kind",
            &["kind"],
        );
        for kind in EventKind::NAMES {
            for outcome in ["merged", "unchanged", "failed"] {
                partitions.with_label_values(&[kind, outcome]);
            }
            files_merged.with_label_values(&[kind]);
            files_deleted.with_label_values(&[kind]);
        }
        (
            Self {
                partitions,
                files_merged,
                files_deleted,
                families: b.families,
            },
            b.registry,
        )
    }
}

/// This process's compaction counters and their registry (exposed on `/metrics`).
fn process_metrics() -> &'static (CompactionMetrics, prometheus::Registry) {
    static M: std::sync::OnceLock<(CompactionMetrics, prometheus::Registry)> =
        std::sync::OnceLock::new();
    M.get_or_init(|| {
        let (m, registry) = CompactionMetrics::new();
        expose(&registry);
        (m, registry)
    })
}

fn metrics() -> &'static CompactionMetrics {
    &process_metrics().0
}

/// This process's compaction counters in the text format (for a textfile collector when the
/// process exits, as `pharmwatch compact --metrics-textfile` writes them).
pub fn metrics_text() -> String {
    crate::metrics::render(&[&process_metrics().1])
}

#[cfg(test)]
mod tests;
