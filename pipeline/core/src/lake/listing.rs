//! What a reader reads of one day partition: the rule every listing of the lake applies once a
//! partition has been compacted ([`crate::compact`]), and the compaction record it reads.
//!
//! A compacted file is named `compact-<generation>.parquet` (the generation zero-padded, one
//! more than any compacted file the partition held when it was written) and carries in its
//! Parquet key-value metadata, under [`RECORD_KEY`], a [`CompactionRecord`]: the files whose
//! rows it holds and the files it supersedes, each by name and size, and when they may be
//! deleted.
//!
//! The rule ([`visible`]): of the compacted files present only the newest generation counts;
//! a reader reads it and every other file it does not cover (a file landed after it was
//! written), never a file it covers nor an older compacted file. Invariants that make this
//! exactly-once: a compacted file appears whole and covers every file present when it was
//! planned (what it merged and what was already superseded), so a listing before it appears
//! reads the old files and one after reads it instead; a covered file is deleted only after
//! the record's `delete_after`, while the newer file that covers it stays. A file matches an
//! entry by name *and* size, so a new file written later under a covered name (a different
//! size) is read.

use std::path::Path;

use chrono::{DateTime, Utc};
use datafusion::parquet::file::metadata::{KeyValue, ParquetMetaData, ParquetMetaDataReader};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// The Parquet key-value metadata key of a compacted file's [`CompactionRecord`].
pub const RECORD_KEY: &str = "pharmwatch.compaction";

/// The name prefix of compacted files.
pub const COMPACT_PREFIX: &str = "compact-";

/// A Parquet file of a partition as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    /// File name (the last path segment).
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// A file a compacted file holds or supersedes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// File name in the partition.
    pub name: String,
    /// Its size in bytes when it was planned (a file of that name and another size is new).
    pub bytes: u64,
    /// Its rows (files merged only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// What a compacted file carries about the files it replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionRecord {
    /// Format version (1).
    pub version: u32,
    /// When the file was written.
    pub written_at: DateTime<Utc>,
    /// When the files it replaces may be deleted (written_at + the grace period): a reader
    /// that listed them before this file appeared has until then to read them.
    pub delete_after: DateTime<Utc>,
    /// The files whose rows it holds, in row order (the partition's files in name order).
    pub merged: Vec<FileRef>,
    /// Files already superseded when it was written (an older compacted file's replaced
    /// files not yet deleted, older compacted files): it covers them too.
    pub superseded: Vec<FileRef>,
}

impl CompactionRecord {
    /// Whether the record covers `file` (same name and size as a merged or superseded file).
    pub fn covers(&self, file: &ListedFile) -> bool {
        self.merged
            .iter()
            .chain(&self.superseded)
            .any(|r| r.name == file.name && r.bytes == file.bytes)
    }

    /// The record in a Parquet file's key-value metadata; `None` when it has none. `file`
    /// names the file in errors.
    pub fn from_metadata(meta: &ParquetMetaData, file: &str) -> Result<Option<Self>> {
        let Some(value) = meta
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == RECORD_KEY))
            .and_then(|k| k.value.as_deref())
        else {
            return Ok(None);
        };
        serde_json::from_str(value)
            .map(Some)
            .map_err(|e| CoreError::Lake {
                path: file.into(),
                reason: format!("unreadable compaction record ({RECORD_KEY}): {e}"),
            })
    }

    /// The key-value metadata entry holding the record.
    pub fn to_key_value(&self) -> Result<KeyValue> {
        let text = serde_json::to_string(self).map_err(|e| CoreError::Internal(e.to_string()))?;
        Ok(KeyValue::new(RECORD_KEY.to_string(), text))
    }
}

/// The generation of a compacted file's name (`compact-000012.parquet` → 12); `None` for any
/// other file.
pub fn generation(name: &str) -> Option<u64> {
    name.strip_prefix(COMPACT_PREFIX)?
        .strip_suffix(".parquet")
        .filter(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()
}

/// The name of the compacted file of `generation`.
pub fn compact_name(generation: u64) -> String {
    format!("{COMPACT_PREFIX}{generation:08}.parquet")
}

/// The newest compacted file of a partition (highest generation), if any.
pub fn newest(files: &[ListedFile]) -> Option<&ListedFile> {
    files
        .iter()
        .filter_map(|f| generation(&f.name).map(|g| (g, f)))
        .max_by_key(|(g, _)| *g)
        .map(|(_, f)| f)
}

/// The newest compacted file when a reader needs its record to list the partition: when the
/// partition also holds a file that is not a compacted one. (A partition of compacted files
/// only needs none: the newest alone is read.)
pub fn needs_record(files: &[ListedFile]) -> Option<&ListedFile> {
    let newest = newest(files)?;
    files
        .iter()
        .any(|f| generation(&f.name).is_none())
        .then_some(newest)
}

/// The files a reader reads, in the order given: every file when the partition holds no
/// compacted file; else the newest compacted file and the files its `record` does not cover
/// (older compacted files never). `record` is the newest compacted file's (see
/// [`needs_record`]); a compacted file without one covers nothing but older compacted files.
pub fn visible<'a>(
    files: &'a [ListedFile],
    record: Option<&CompactionRecord>,
) -> Vec<&'a ListedFile> {
    let Some(newest) = newest(files) else {
        return files.iter().collect();
    };
    files
        .iter()
        .filter(|f| match generation(&f.name) {
            Some(_) => f.name == newest.name,
            None => !record.is_some_and(|r| r.covers(f)),
        })
        .collect()
}

/// The Parquet footer of a local file.
pub fn local_footer(path: &Path) -> Result<ParquetMetaData> {
    let file = std::fs::File::open(path).map_err(|e| CoreError::io(path, e))?;
    ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| CoreError::Parquet {
            path: path.to_path_buf(),
            source: e,
        })
}

/// The compaction record of a local compacted file (`None` when it carries none).
pub fn local_record(path: &Path) -> Result<Option<CompactionRecord>> {
    CompactionRecord::from_metadata(&local_footer(path)?, &path.display().to_string())
}

/// Whether `e` says a file or object is not there (it went between a listing and a read).
pub fn is_not_found(e: &CoreError) -> bool {
    match e {
        CoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        CoreError::ObjectStore { source, .. } => {
            matches!(**source, object_store::Error::NotFound { .. })
        }
        CoreError::Parquet {
            source: datafusion::parquet::errors::ParquetError::External(inner),
            ..
        } => inner
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound),
        _ => false,
    }
}

/// How many times a listing starts again when the newest compacted file went between the
/// listing and the read of its record (a newer one replaced it and its grace period ended).
pub const RELIST_ATTEMPTS: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, bytes: u64) -> ListedFile {
        ListedFile {
            name: name.into(),
            bytes,
        }
    }

    fn r(name: &str, bytes: u64) -> FileRef {
        FileRef {
            name: name.into(),
            bytes,
            rows: None,
        }
    }

    fn record(merged: &[FileRef], superseded: &[FileRef]) -> CompactionRecord {
        CompactionRecord {
            version: 1,
            written_at: DateTime::UNIX_EPOCH,
            delete_after: DateTime::UNIX_EPOCH,
            merged: merged.to_vec(),
            superseded: superseded.to_vec(),
        }
    }

    fn names<'a>(v: &[&'a ListedFile]) -> Vec<&'a str> {
        v.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn compact_names_carry_their_generation() {
        assert_eq!(generation(&compact_name(12)), Some(12));
        assert_eq!(compact_name(3), "compact-00000003.parquet");
        assert_eq!(generation("compact-.parquet"), None);
        assert_eq!(generation("compact-1x.parquet"), None);
        assert_eq!(generation("part-00000.parquet"), None);
        assert_eq!(generation("compact-00000001.parquet.tmp"), None);
    }

    #[test]
    fn compaction_compact_file_hides_what_it_covers_and_older_compacted_files() {
        let files = vec![
            f("compact-00000001.parquet", 50),
            f("compact-00000002.parquet", 70),
            f("late-00000.parquet", 10),
            f("part-00000.parquet", 20),
            f("stream-p000-o000000000007.parquet", 30),
        ];
        // Nothing compacted: every file.
        assert_eq!(visible(&files[2..], None).len(), 3);
        // Generation 2 covers the late and part files, not the stream file landed after it.
        let rec = record(
            &[
                r("compact-00000001.parquet", 50),
                r("part-00000.parquet", 20),
            ],
            &[r("late-00000.parquet", 10)],
        );
        assert_eq!(
            needs_record(&files).unwrap().name,
            "compact-00000002.parquet"
        );
        assert_eq!(
            names(&visible(&files, Some(&rec))),
            [
                "compact-00000002.parquet",
                "stream-p000-o000000000007.parquet"
            ]
        );
        // A covered name of another size is a new file.
        let rewritten = vec![
            f("compact-00000002.parquet", 70),
            f("part-00000.parquet", 21),
        ];
        assert_eq!(visible(&rewritten, Some(&rec)).len(), 2);
        // Compacted files only: the newest, no record needed.
        assert!(needs_record(&files[..2]).is_none());
        assert_eq!(
            names(&visible(&files[..2], None)),
            ["compact-00000002.parquet"]
        );
    }
}
