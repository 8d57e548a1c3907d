//! The lake's files as a day-by-day reader sees them: each Parquet file of an event kind with
//! an identity that changes whenever the file does, and the business days its rows belong to.
//! The nightly job keys what it stores per day on these (`pharmwatch_batch::days`), so that a
//! day is computed again exactly when a file holding rows it reads appeared, changed or went.
//!
//! Identity: a folder file's size and modification time; a bucket object's size and entity
//! tag. Days: a `part-*` or `stream-*` file holds rows of its partition's day only (the lake's
//! invariant, [`crate::lake`]); any other file (`late-*` uploads, a compacted file) may hold
//! earlier days, which are read from the Parquet footer's statistics of `biz_date` (the footer
//! only, never the rows). A file whose footer has no such statistics is taken to hold every day
//! up to its partition's.
//!
//! Invariant: the span of a file covers every `biz_date` of its rows.

use std::path::Path;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::Date32Type;
use datafusion::parquet::file::metadata::ParquetMetaDataReader;
use datafusion::parquet::file::statistics::Statistics;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::remote_lake::LakeSource;

/// Requests to a bucket in flight at once when files are identified.
const BUCKET_CONCURRENCY: usize = 32;

/// One Parquet file of the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeFile {
    /// Path or `s3://` URL, as queries read it.
    pub url: String,
    /// The day partition it lies in (`date=…`).
    pub partition: NaiveDate,
    /// Changes whenever the file does (see the module documentation).
    pub identity: String,
}

impl LakeFile {
    /// Whether the lake's layout alone says which day the file holds (its partition's).
    pub fn holds_its_partition_only(&self) -> bool {
        let name = self.url.rsplit('/').next().unwrap_or_default();
        name.starts_with("part-") || name.starts_with("stream-")
    }
}

/// The first and last business day of a file's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// First day (`NaiveDate::MIN` when unknown).
    pub first: NaiveDate,
    /// Last day.
    pub last: NaiveDate,
}

impl Span {
    /// Whether the span holds `day`.
    pub fn holds(&self, day: NaiveDate) -> bool {
        self.first <= day && day <= self.last
    }
}

/// The partition day of a lake file's path or URL (its `date=YYYY-MM-DD` segment).
pub fn partition_of(url: &str) -> Option<NaiveDate> {
    url.split('/')
        .find_map(|seg| seg.strip_prefix("date="))
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
}

/// Identifies the files `urls` of a lake (as [`LakeSource::files`] lists them).
pub async fn identify(source: &LakeSource, urls: Vec<String>) -> Result<Vec<LakeFile>> {
    let one = |url: String| async move {
        let partition = partition_of(&url).ok_or_else(|| CoreError::Lake {
            path: url.clone().into(),
            reason: "a lake file outside a date=YYYY-MM-DD partition".into(),
        })?;
        let identity = match source {
            LakeSource::Folder(_) => local_identity(Path::new(&url))?,
            LakeSource::Bucket(r) => r.identity_of_url(&url).await?,
        };
        Ok::<_, CoreError>(LakeFile {
            url,
            partition,
            identity,
        })
    };
    futures::stream::iter(urls)
        .map(one)
        .buffered(BUCKET_CONCURRENCY)
        .try_collect()
        .await
}

/// The identity of a local file: its size and modification time.
pub fn local_identity(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|e| CoreError::io(path, e))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(format!("{}:{modified}", meta.len()))
}

/// The business days of `file`'s rows: its partition's day for a `part-*` or `stream-*` file,
/// else from the footer's `biz_date` statistics (every day up to the partition's when the
/// footer has none).
pub async fn span(source: &LakeSource, file: &LakeFile) -> Result<Span> {
    if file.holds_its_partition_only() {
        return Ok(Span {
            first: file.partition,
            last: file.partition,
        });
    }
    let bytes = match source {
        LakeSource::Folder(_) => {
            let path = Path::new(&file.url);
            std::fs::read(path).map_err(|e| CoreError::io(path, e))?
        }
        LakeSource::Bucket(r) => r.get_url(&file.url).await?,
    };
    let unknown = Span {
        first: NaiveDate::MIN,
        last: file.partition,
    };
    Ok(footer_span(&file.url, bytes::Bytes::from(bytes))?.unwrap_or(unknown))
}

/// The `biz_date` range of a Parquet file's row groups from its footer; `None` when a row
/// group has no statistics for it.
fn footer_span(url: &str, bytes: bytes::Bytes) -> Result<Option<Span>> {
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&bytes)
        .map_err(|e| CoreError::Lake {
            path: url.into(),
            reason: format!("cannot read the Parquet footer: {e}"),
        })?;
    let schema = meta.file_metadata().schema_descr();
    let Some(col) = (0..schema.num_columns()).find(|&i| schema.column(i).name() == "biz_date")
    else {
        return Ok(None);
    };
    let mut span: Option<Span> = None;
    for rg in meta.row_groups() {
        if rg.num_rows() == 0 {
            continue;
        }
        let Some(Statistics::Int32(s)) = rg.column(col).statistics() else {
            return Ok(None);
        };
        let (Some(lo), Some(hi)) = (s.min_opt(), s.max_opt()) else {
            return Ok(None);
        };
        let (Some(lo), Some(hi)) = (date32(*lo), date32(*hi)) else {
            return Ok(None);
        };
        span = Some(match span {
            None => Span {
                first: lo,
                last: hi,
            },
            Some(s) => Span {
                first: s.first.min(lo),
                last: s.last.max(hi),
            },
        });
    }
    Ok(span)
}

fn date32(days: i32) -> Option<NaiveDate> {
    Date32Type::to_naive_date_opt(days)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::write_parquet;
    use datafusion::arrow::array::{Date32Array, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn write(path: &Path, days: &[&str]) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("biz_date", DataType::Date32, false),
            Field::new("quantity", DataType::Int64, false),
        ]));
        let d: Vec<i32> = days
            .iter()
            .map(|s| Date32Type::from_naive_date(day(s)))
            .collect();
        let n = d.len() as i64;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Date32Array::from(d)),
                Arc::new(Int64Array::from_iter_values(0..n)),
            ],
        )
        .unwrap();
        write_parquet(path, schema, &[batch]).unwrap();
    }

    #[tokio::test]
    async fn a_late_file_spans_the_days_of_its_rows_and_a_day_file_its_partition() {
        let tmp = tempfile::tempdir().unwrap();
        let part = tmp.path().join("sales/date=2026-10-05");
        write(
            &part.join("late-00000.parquet"),
            &["2026-10-02", "2026-09-30"],
        );
        write(&part.join("part-00000.parquet"), &["2026-10-05"]);
        let source = LakeSource::Folder(tmp.path().to_path_buf());
        let urls = vec![
            part.join("late-00000.parquet").display().to_string(),
            part.join("part-00000.parquet").display().to_string(),
        ];
        let files = identify(&source, urls).await.unwrap();
        assert_eq!(files[0].partition, day("2026-10-05"));
        assert_eq!(
            span(&source, &files[0]).await.unwrap(),
            Span {
                first: day("2026-09-30"),
                last: day("2026-10-02")
            }
        );
        assert_eq!(
            span(&source, &files[1]).await.unwrap(),
            Span {
                first: day("2026-10-05"),
                last: day("2026-10-05")
            }
        );
    }

    #[tokio::test]
    async fn rewriting_a_file_changes_its_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sales/date=2026-10-05/late-00000.parquet");
        write(&path, &["2026-10-02"]);
        let before = local_identity(&path).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(&path, &["2026-10-02", "2026-10-03"]);
        assert_ne!(before, local_identity(&path).unwrap());
    }
}
