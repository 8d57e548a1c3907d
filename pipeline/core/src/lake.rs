//! The lake: validated records as Parquet, partitioned by kind and business day.
//!
//! Layout (the nightly job and the stream service share it):
//! ```text
//! LAKE/<kind>/date=YYYY-MM-DD/part-00000.parquet   events of that business day (Asia/Shanghai)
//! LAKE/<kind>/date=YYYY-MM-DD/late-00000.parquet   events of the day before, uploaded late
//! LAKE/<kind>/date=YYYY-MM-DD/stream-pNNN-oOFFSET.parquet   events landed by the stream service
//! LAKE/<kind>/date=YYYY-MM-DD/compact-GGGGGGGG.parquet   the partition's files merged (`pharmwatch compact`)
//! LAKE/reference/{enterprises,products,batches}.parquet
//! LAKE/labels.csv                                   planted anomalies (simulated lakes only)
//! LAKE/manifest.json                                what the simulator wrote
//! ```
//! Invariants: every event file holds the kind's lake schema (wire fields + `biz_date`), and
//! every row's `biz_date` is its event time's business day. A partition is the day a file
//! arrived: every row of `part-*` and `stream-*` files belongs to the partition's day, while a
//! `late-*` file holds rows of earlier days that were uploaded late (the real platform receives
//! them so) — readers filter on `biz_date`, never on the partition name alone. Files are
//! written whole and renamed into place, so a reader never sees a half-written file. A
//! compacted file holds the rows of the files it replaces; every listing ([`day_files`],
//! [`crate::remote_lake::LakeSource::files`]) reads a partition through [`listing::visible`],
//! so that a row is read once whether the partition is compacted, being compacted, or not.

use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use serde::Serialize;

use pharmwatch_schemas::records::LakeRow;
use pharmwatch_schemas::{
    Batch, Enterprise, EventKind, Product, ReferenceKind, Validate, biz_date,
};

use crate::error::{CoreError, Result};

pub mod listing;

/// Name of the reference-table directory.
pub const REFERENCE_DIR: &str = "reference";

/// Directory of one kind's partition for one day.
pub fn day_dir(lake: &Path, kind: EventKind, day: NaiveDate) -> PathBuf {
    lake.join(kind.as_str())
        .join(format!("date={}", day.format("%Y-%m-%d")))
}

/// Path of a reference table.
pub fn reference_path(lake: &Path, kind: ReferenceKind) -> PathBuf {
    lake.join(REFERENCE_DIR)
        .join(format!("{}.parquet", kind.as_str()))
}

/// Serialises rows into one record batch of `schema` through the Arrow JSON decoder.
pub fn rows_to_batch<S: Serialize>(
    schema: SchemaRef,
    rows: &[S],
    context: &str,
) -> Result<RecordBatch> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .build_decoder()
        .map_err(|e| CoreError::arrow(context, e))?;
    decoder
        .serialize(rows)
        .map_err(|e| CoreError::arrow(context, e))?;
    let batch = decoder.flush().map_err(|e| CoreError::arrow(context, e))?;
    Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

/// Converts validated records of one kind to a lake batch (wire fields + `biz_date`).
pub fn records_to_batch<T: Serialize + Validate>(
    kind: EventKind,
    records: &[T],
) -> Result<RecordBatch> {
    let rows: Vec<LakeRow<'_, T>> = records
        .iter()
        .map(|r| LakeRow {
            record: r,
            biz_date: biz_date(r.event_time()),
        })
        .collect();
    rows_to_batch(kind.lake_schema(), &rows, kind.as_str())
}

/// The properties every lake file is written with (Snappy, row groups of 256 Ki rows).
pub(crate) fn writer_props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by("pharmwatch".to_string())
        .set_max_row_group_row_count(Some(256 * 1024))
        .build()
}

/// Writes batches to a Parquet file atomically (temporary file, then rename).
pub fn write_parquet(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
    }
    let tmp = path.with_extension("parquet.tmp");
    if let Some(e) = crate::faults::io_failure("lake.write") {
        return Err(CoreError::io(&tmp, e));
    }
    let written = write_parquet_file(&tmp, schema, batches);
    if written.is_err() {
        // Nothing half-written stays behind (a full disk frees what it can).
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    std::fs::rename(&tmp, path).map_err(|e| CoreError::io(path, e))
}

/// Writes batches into the file `tmp`. A failed write of the file itself (a full disk) is an
/// I/O error of that file, which the caller may retry, not a refusal of the data.
fn write_parquet_file(tmp: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    let perr = |e: datafusion::parquet::errors::ParquetError| match &e {
        datafusion::parquet::errors::ParquetError::External(inner) => {
            match inner.downcast_ref::<std::io::Error>() {
                Some(io) => CoreError::io(tmp, std::io::Error::new(io.kind(), io.to_string())),
                None => CoreError::Parquet {
                    path: tmp.to_path_buf(),
                    source: e,
                },
            }
        }
        _ => CoreError::Parquet {
            path: tmp.to_path_buf(),
            source: e,
        },
    };
    let file = File::create(tmp).map_err(|e| CoreError::io(tmp, e))?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(writer_props())).map_err(perr)?;
    for b in batches {
        writer.write(b).map_err(perr)?;
    }
    writer.close().map_err(perr)?;
    Ok(())
}

/// Encodes batches as one Parquet file in memory (an object to PUT whole); `name` names it
/// in errors.
pub fn parquet_bytes(name: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let perr = |e| CoreError::Parquet {
        path: name.to_path_buf(),
        source: e,
    };
    let mut writer =
        ArrowWriter::try_new(Vec::new(), schema, Some(writer_props())).map_err(perr)?;
    for b in batches {
        writer.write(b).map_err(perr)?;
    }
    writer.into_inner().map_err(perr)
}

/// Writes lake partitions and reference tables.
#[derive(Debug)]
pub struct LakeWriter {
    root: PathBuf,
}

impl LakeWriter {
    /// A writer rooted at `root` (created if missing).
    pub fn new(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| CoreError::io(root, e))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// Writes one day of one kind; returns the number of rows. No file for an empty day.
    pub fn write_day<T: Serialize + Validate>(
        &mut self,
        kind: EventKind,
        day: NaiveDate,
        records: &[T],
    ) -> Result<usize> {
        self.write_day_file(kind, day, "part-00000.parquet", records)
    }

    /// Writes records of one kind as file `name` of the partition of `day` (the day the file
    /// arrived; a late file holds records of an earlier day); returns the number of rows. No
    /// file when there are none.
    pub fn write_day_file<T: Serialize + Validate>(
        &mut self,
        kind: EventKind,
        day: NaiveDate,
        name: &str,
        records: &[T],
    ) -> Result<usize> {
        if records.is_empty() {
            return Ok(0);
        }
        let mut batches = Vec::new();
        for chunk in records.chunks(128 * 1024) {
            batches.push(records_to_batch(kind, chunk)?);
        }
        let path = day_dir(&self.root, kind, day).join(name);
        write_parquet(&path, kind.lake_schema(), &batches)?;
        Ok(records.len())
    }

    /// Writes the three reference tables (Parquet, plus CSV copies for people).
    pub fn write_reference(
        &mut self,
        enterprises: &[Enterprise],
        products: &[Product],
        batches: &[Batch],
    ) -> Result<()> {
        self.write_table(ReferenceKind::Enterprise, enterprises)?;
        self.write_table(ReferenceKind::Product, products)?;
        self.write_table(ReferenceKind::Batch, batches)
    }

    fn write_table<S: Serialize>(&mut self, kind: ReferenceKind, rows: &[S]) -> Result<()> {
        let batch = rows_to_batch(kind.schema(), rows, kind.as_str())?;
        let path = reference_path(&self.root, kind);
        write_parquet(&path, kind.schema(), &[batch])?;
        write_csv(&path.with_extension("csv"), rows)
    }
}

/// Writes serde rows as a CSV file with a header.
pub fn write_csv<S: Serialize>(path: &Path, rows: impl IntoIterator<Item = S>) -> Result<()> {
    let csv_err = |e| CoreError::Csv {
        path: path.to_path_buf(),
        source: e,
    };
    let mut w = csv::Writer::from_path(path).map_err(csv_err)?;
    for r in rows {
        w.serialize(r).map_err(csv_err)?;
    }
    w.flush().map_err(|e| CoreError::io(path, e))
}

/// Reads a CSV file with a header into serde rows.
pub fn read_csv<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let csv_err = |e| CoreError::Csv {
        path: path.to_path_buf(),
        source: e,
    };
    let mut r = csv::Reader::from_path(path).map_err(csv_err)?;
    r.deserialize().map(|row| row.map_err(csv_err)).collect()
}

/// The Parquet files of one day partition a reader reads, sorted by name (the simulator's
/// `part-*` first, then the stream's files in partition and offset order): every file, or
/// once the partition is compacted the newest compacted file and the files landed after it
/// ([`listing::visible`]). Temporary files are skipped.
pub fn day_files(dir: &Path) -> Result<Vec<PathBuf>> {
    for _ in 0..listing::RELIST_ATTEMPTS {
        let files = list_parquet(dir)?;
        let record = match listing::needs_record(&files) {
            None => None,
            Some(newest) => match listing::local_record(&dir.join(&newest.name)) {
                Ok(r) => r,
                // A newer compacted file replaced it and its grace period ended: list again.
                Err(e) if listing::is_not_found(&e) => continue,
                Err(e) => return Err(e),
            },
        };
        return Ok(listing::visible(&files, record.as_ref())
            .into_iter()
            .map(|f| dir.join(&f.name))
            .collect());
    }
    Err(CoreError::Lake {
        path: dir.to_path_buf(),
        reason: "the partition's compacted file kept changing while it was listed".into(),
    })
}

/// Every Parquet file of a partition folder with its size, sorted by name (none when the
/// folder does not exist).
pub(crate) fn list_parquet(dir: &Path) -> Result<Vec<listing::ListedFile>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(CoreError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| CoreError::io(dir, e))?;
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "parquet") {
            continue;
        }
        let bytes = match entry.metadata() {
            Ok(m) => m.len(),
            // Deleted since the directory was read: it is not in the partition.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(CoreError::io(&path, e)),
        };
        out.push(listing::ListedFile {
            name: entry.file_name().to_string_lossy().to_string(),
            bytes,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Day partitions of `kind` present in the lake between `from` and `to` (inclusive), sorted.
pub fn partitions(
    lake: &Path,
    kind: EventKind,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(NaiveDate, PathBuf)>> {
    let dir = lake.join(kind.as_str());
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(CoreError::io(&dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| CoreError::io(&dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(date) = name
            .strip_prefix("date=")
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        if date >= from && date <= to {
            out.push((date, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}
