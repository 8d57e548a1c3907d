//! A lake on S3-compatible object storage: `s3://bucket/prefix` in place of a folder, with the
//! layout of [`crate::lake`] under the prefix. Readers (the nightly job, `produce`) open either
//! kind through [`LakeSource`] and read the Parquet objects through the object store DataFusion
//! reads through (registered on their session); the simulator publishes a lake it wrote locally.
//!
//! Connection settings come from the standard variables of S3 clients, read when the lake is
//! opened: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` (default `us-east-1`),
//! `AWS_ENDPOINT` (an S3-compatible server, e.g. `http://127.0.0.1:9000`) and
//! `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint on a private network.
//!
//! Invariants: an object is written with one PUT, so a reader sees it whole or not at all;
//! a published lake's `manifest.json` is written last, so a lake with a manifest is complete;
//! a partition is listed as a folder's is, through the compaction rule
//! ([`crate::lake::listing`]), so a compacted file and the objects it replaces are never both
//! read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use pharmwatch_schemas::{EventKind, ReferenceKind};

use crate::error::{CoreError, Result};
use crate::lake::{REFERENCE_DIR, listing};

/// The URL scheme of a lake on object storage.
pub const SCHEME: &str = "s3://";

/// Whether `lake` names a lake on object storage rather than a folder.
pub fn is_remote(lake: &Path) -> bool {
    lake.to_str().is_some_and(|s| s.starts_with(SCHEME))
}

/// A lake under `s3://bucket/prefix`.
#[derive(Debug, Clone)]
pub struct RemoteLake {
    /// `s3://bucket`.
    base: url::Url,
    /// The prefix inside the bucket (no leading or trailing `/`; may be empty).
    prefix: String,
    store: Arc<dyn ObjectStore>,
}

impl RemoteLake {
    /// Opens `s3://bucket/prefix` with the connection settings of the environment.
    pub fn open(lake: &Path) -> Result<Self> {
        Self::open_with(lake, &[])
    }

    /// Opens `s3://bucket/prefix` with the connection settings of the environment, each of
    /// `settings` (an S3 client key such as `aws_endpoint` or `aws_allow_http`, and its value)
    /// overriding its variable: for a process that talks to a server the environment does not
    /// name (tests).
    pub fn open_with(lake: &Path, settings: &[(&str, &str)]) -> Result<Self> {
        let text = lake.to_str().unwrap_or_default();
        let rest = text.strip_prefix(SCHEME).ok_or_else(|| {
            CoreError::Config(format!("lake {text}: expected {SCHEME}bucket/prefix"))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(CoreError::Config(format!(
                "lake {text}: the bucket is empty"
            )));
        }
        let base = url::Url::parse(&format!("{SCHEME}{bucket}"))
            .map_err(|e| CoreError::Config(format!("lake {text}: {e}")))?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        for (key, value) in settings {
            let key = key.parse().map_err(|e| CoreError::ObjectStore {
                url: text.to_string(),
                what: format!("configure the S3 client ({key})"),
                source: Box::new(e),
            })?;
            builder = builder.with_config(key, *value);
        }
        let store = builder.build().map_err(|e| CoreError::ObjectStore {
            url: text.to_string(),
            what: "configure the S3 client (AWS_* variables)".into(),
            source: Box::new(e),
        })?;
        Ok(Self {
            base,
            prefix: prefix.trim_matches('/').to_string(),
            store: Arc::new(store),
        })
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> String {
        self.url_of("")
    }

    /// The URL of `rel` (a `/`-separated path under the prefix).
    pub fn url_of(&self, rel: &str) -> String {
        let key = self.key(rel);
        format!("{}{}", self.base.as_str().trim_end_matches('/'), {
            if key.as_ref().is_empty() {
                String::new()
            } else {
                format!("/{key}")
            }
        })
    }

    /// The object store, for the lake's own modules.
    pub(crate) fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The object key of `rel` (a `/`-separated path under the prefix).
    pub(crate) fn key(&self, rel: &str) -> ObjPath {
        let rel = rel.trim_matches('/');
        match (self.prefix.is_empty(), rel.is_empty()) {
            (true, _) => ObjPath::from(rel),
            (false, true) => ObjPath::from(self.prefix.as_str()),
            (false, false) => ObjPath::from(format!("{}/{rel}", self.prefix)),
        }
    }

    /// The error of `what` on `rel`.
    pub(crate) fn err(&self, rel: &str, what: &str, source: object_store::Error) -> CoreError {
        CoreError::ObjectStore {
            url: self.url_of(rel),
            what: what.to_string(),
            source: Box::new(source),
        }
    }

    /// Makes the bucket readable by queries on `ctx` (`s3://bucket/…` table paths).
    pub fn register(&self, ctx: &SessionContext) {
        ctx.register_object_store(&self.base, self.store.clone());
    }

    /// The Parquet files of `kind` in the day partitions `[from, to]` a reader reads (see
    /// [`listing::visible`]), sorted by day then name, as URLs: one listing of the kind's
    /// folder (a request per thousand objects), rather than one per day, and the footer of a
    /// partition's compacted file where other files lie beside it.
    pub async fn kind_files(
        &self,
        kind: EventKind,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<String>> {
        let dir = kind.as_str();
        let mut out = Vec::new();
        for (day, files) in self.kind_partitions(kind, from, to).await? {
            let rel = format!("{dir}/date={}", day.format("%Y-%m-%d"));
            for name in self.visible_in(&rel, files).await? {
                out.push(self.url_of(&format!("{rel}/{name}")));
            }
        }
        Ok(out)
    }

    /// The Parquet objects of `kind`'s day partitions `[from, to]` by day (every object,
    /// before the listing rule), each day's sorted by name: one listing of the kind's folder.
    pub(crate) async fn kind_partitions(
        &self,
        kind: EventKind,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<BTreeMap<NaiveDate, Vec<listing::ListedFile>>> {
        let dir = kind.as_str();
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.key(dir)))
            .try_collect()
            .await
            .map_err(|e| self.err(dir, "list the kind's files", e))?;
        let mut days: BTreeMap<NaiveDate, Vec<listing::ListedFile>> = BTreeMap::new();
        for m in metas {
            let key = m.location.as_ref();
            let Some((parent, name)) = key.rsplit_once('/') else {
                continue;
            };
            let Some(day) = parent
                .rsplit('/')
                .next()
                .and_then(|seg| seg.strip_prefix("date="))
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            else {
                continue;
            };
            if name.ends_with(".parquet") && day >= from && day <= to {
                days.entry(day).or_default().push(listing::ListedFile {
                    name: name.to_string(),
                    bytes: m.size,
                });
            }
        }
        for files in days.values_mut() {
            files.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(days)
    }

    /// The names of the files a reader reads of partition `rel` (`kind/date=…`), given its
    /// listing `files`: reads the newest compacted file's record when it needs it, and lists
    /// the partition again if that file went meanwhile.
    async fn visible_in(
        &self,
        rel: &str,
        mut files: Vec<listing::ListedFile>,
    ) -> Result<Vec<String>> {
        for _ in 0..listing::RELIST_ATTEMPTS {
            let record = match listing::needs_record(&files) {
                None => None,
                Some(newest) => {
                    match self
                        .record_of(&format!("{rel}/{}", newest.name), newest.bytes)
                        .await
                    {
                        Ok(r) => r,
                        Err(e) if listing::is_not_found(&e) => {
                            files = self.partition_files(rel).await?;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            return Ok(listing::visible(&files, record.as_ref())
                .into_iter()
                .map(|f| f.name.clone())
                .collect());
        }
        Err(CoreError::Lake {
            path: PathBuf::from(self.url_of(rel)),
            reason: "the partition's compacted file kept changing while it was listed".into(),
        })
    }

    /// Every Parquet object of partition `rel` (`kind/date=…`) with its size, sorted by name.
    pub(crate) async fn partition_files(&self, rel: &str) -> Result<Vec<listing::ListedFile>> {
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.key(rel)))
            .try_collect()
            .await
            .map_err(|e| self.err(rel, "list the partition", e))?;
        let mut files: Vec<listing::ListedFile> = metas
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?.to_string();
                name.ends_with(".parquet").then_some(listing::ListedFile {
                    name,
                    bytes: m.size,
                })
            })
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    /// The Parquet footer of object `rel` of `size` bytes: one ranged read of its tail, a
    /// second when the footer is longer.
    pub(crate) async fn footer(&self, rel: &str, size: u64) -> Result<ParquetMetaData> {
        const TAIL: u64 = 64 * 1024;
        let perr = |e| CoreError::Parquet {
            path: PathBuf::from(self.url_of(rel)),
            source: e,
        };
        let key = self.key(rel);
        let start = size.saturating_sub(TAIL);
        let tail = self
            .store
            .get_range(&key, start..size)
            .await
            .map_err(|e| self.err(rel, "read the Parquet footer", e))?;
        if tail.len() < 8 {
            return Err(perr(ParquetError::General(
                "file too short for a footer".into(),
            )));
        }
        let mut end = [0u8; 8];
        end.copy_from_slice(&tail[tail.len() - 8..]);
        let footer = FooterTail::try_new(&end).map_err(perr)?;
        let len = footer.metadata_length() as u64;
        let meta_start = size
            .checked_sub(8 + len)
            .ok_or_else(|| perr(ParquetError::General("footer longer than the file".into())))?;
        let bytes = if meta_start >= start {
            let from = (meta_start - start) as usize;
            tail.slice(from..tail.len() - 8)
        } else {
            self.store
                .get_range(&key, meta_start..size - 8)
                .await
                .map_err(|e| self.err(rel, "read the Parquet footer", e))?
        };
        ParquetMetaDataReader::decode_metadata(&bytes).map_err(perr)
    }

    /// The compaction record of object `rel` of `size` bytes (`None` when it carries none).
    pub(crate) async fn record_of(
        &self,
        rel: &str,
        size: u64,
    ) -> Result<Option<listing::CompactionRecord>> {
        let meta = self.footer(rel, size).await?;
        listing::CompactionRecord::from_metadata(&meta, &self.url_of(rel))
    }

    /// The URL of a reference table, or an error naming it when the lake has none.
    pub async fn reference(&self, kind: ReferenceKind) -> Result<String> {
        let rel = format!("{REFERENCE_DIR}/{}.parquet", kind.as_str());
        match self.store.head(&self.key(&rel)).await {
            Ok(_) => Ok(self.url_of(&rel)),
            Err(object_store::Error::NotFound { .. }) => Err(missing_reference(
                PathBuf::from(self.url()),
                &self.url_of(&rel),
            )),
            Err(e) => Err(self.err(&rel, "read a reference table", e)),
        }
    }

    /// Every object under folder `rel`, as paths relative to the lake (`kind/date=…/name`).
    pub async fn list_under(&self, rel: &str) -> Result<Vec<String>> {
        let root = self.key("");
        let keys: Vec<ObjPath> = self
            .store
            .list(Some(&self.key(rel)))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| self.err(rel, "list", e))?;
        Ok(keys
            .iter()
            .map(|k| {
                let k = k.as_ref();
                let root = root.as_ref();
                if root.is_empty() {
                    k.to_string()
                } else {
                    k.strip_prefix(root)
                        .map_or(k, |r| r.trim_start_matches('/'))
                        .to_string()
                }
            })
            .collect())
    }

    /// Deletes object `rel`.
    pub async fn delete(&self, rel: &str) -> Result<()> {
        self.store
            .delete(&self.key(rel))
            .await
            .map_err(|e| self.err(rel, "delete", e))
    }

    /// Reads object `rel` whole.
    pub async fn get(&self, rel: &str) -> Result<Vec<u8>> {
        let got = self
            .store
            .get(&self.key(rel))
            .await
            .map_err(|e| self.err(rel, "read", e))?;
        let bytes = got.bytes().await.map_err(|e| self.err(rel, "read", e))?;
        Ok(bytes.to_vec())
    }

    /// The object key of a URL this lake listed (`s3://bucket/key`).
    fn key_of_url(&self, url: &str) -> Result<ObjPath> {
        let base = self.base.as_str().trim_end_matches('/');
        url.strip_prefix(base)
            .and_then(|k| k.strip_prefix('/'))
            .map(ObjPath::from)
            .ok_or_else(|| CoreError::Config(format!("{url} is not in the lake {}", self.url())))
    }

    /// An object's identity for change detection: its size and entity tag (one HEAD).
    pub async fn identity_of_url(&self, url: &str) -> Result<String> {
        let meta =
            self.store
                .head(&self.key_of_url(url)?)
                .await
                .map_err(|e| CoreError::ObjectStore {
                    url: url.to_string(),
                    what: "read the object's metadata".into(),
                    source: Box::new(e),
                })?;
        Ok(format!(
            "{}:{}",
            meta.size,
            meta.e_tag
                .unwrap_or_else(|| meta.last_modified.to_rfc3339())
        ))
    }

    /// Reads the object at a URL this lake listed, whole.
    pub async fn get_url(&self, url: &str) -> Result<Vec<u8>> {
        let err = |e| CoreError::ObjectStore {
            url: url.to_string(),
            what: "read".into(),
            source: Box::new(e),
        };
        let got = self.store.get(&self.key_of_url(url)?).await.map_err(err)?;
        Ok(got.bytes().await.map_err(err)?.to_vec())
    }

    /// Writes object `rel` whole (one PUT: readers never see part of it).
    pub async fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&self.key(rel), PutPayload::from(bytes))
            .await
            .map_err(|e| self.err(rel, "write", e))?;
        Ok(())
    }

    /// Publishes the lake written under local folder `dir`: every file, `manifest.json` last
    /// (a lake with a manifest is complete). Returns the number of objects written.
    pub async fn publish(&self, dir: &Path) -> Result<usize> {
        let mut files = Vec::new();
        walk(dir, dir, &mut files)?;
        files.sort();
        let manifest = files.iter().position(|rel| rel == "manifest.json");
        if let Some(i) = manifest {
            let m = files.remove(i);
            files.push(m);
        }
        for rel in &files {
            let path = dir.join(rel);
            let bytes = std::fs::read(&path).map_err(|e| CoreError::io(&path, e))?;
            self.put(rel, bytes).await?;
        }
        Ok(files.len())
    }
}

/// Where a reader finds a lake: a folder, or a bucket prefix whose store is registered on the
/// reader's DataFusion session. Both list the same layout and give the Parquet files of a kind
/// as URLs a query reads.
#[derive(Debug, Clone)]
pub enum LakeSource {
    /// A local folder.
    Folder(PathBuf),
    /// `s3://bucket/prefix`.
    Bucket(RemoteLake),
}

impl LakeSource {
    /// The lake at `lake` (a folder, or `s3://bucket/prefix`), for writing and listing.
    pub fn at(lake: &Path) -> Result<Self> {
        if is_remote(lake) {
            Ok(Self::Bucket(RemoteLake::open(lake)?))
        } else {
            Ok(Self::Folder(lake.to_path_buf()))
        }
    }

    /// Opens `lake` for queries on `ctx` (registering the bucket's store when it is one).
    pub fn open(lake: &Path, ctx: &SessionContext) -> Result<Self> {
        let l = Self::at(lake)?;
        if let Self::Bucket(r) = &l {
            r.register(ctx);
        }
        Ok(l)
    }

    /// Writes one Parquet file at `rel` (`kind/date=…/name`), whole: a folder's through a
    /// temporary file and a rename, a bucket's with one PUT.
    pub async fn write_file(
        &self,
        rel: &str,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<()> {
        match self {
            Self::Folder(l) => crate::lake::write_parquet(&l.join(rel), schema, batches),
            Self::Bucket(r) => {
                let bytes = crate::lake::parquet_bytes(Path::new(&r.url_of(rel)), schema, batches)?;
                r.put(rel, bytes).await
            }
        }
    }

    /// The files under the folder `rel` of the lake (recursively), as paths relative to the
    /// lake; none when it does not exist.
    pub async fn files_under(&self, rel: &str) -> Result<Vec<String>> {
        match self {
            Self::Bucket(r) => r.list_under(rel).await,
            Self::Folder(l) => {
                let dir = l.join(rel);
                let mut out = Vec::new();
                if dir.is_dir() {
                    walk(l, &dir, &mut out)?;
                }
                out.sort();
                Ok(out)
            }
        }
    }

    /// Reads the file at `rel` whole.
    pub async fn read(&self, rel: &str) -> Result<Vec<u8>> {
        match self {
            Self::Folder(l) => {
                let path = l.join(rel);
                std::fs::read(&path).map_err(|e| CoreError::io(&path, e))
            }
            Self::Bucket(r) => r.get(rel).await,
        }
    }

    /// Removes the file at `rel`.
    pub async fn remove(&self, rel: &str) -> Result<()> {
        match self {
            Self::Folder(l) => {
                let path = l.join(rel);
                std::fs::remove_file(&path).map_err(|e| CoreError::io(&path, e))
            }
            Self::Bucket(r) => r.delete(rel).await,
        }
    }

    /// Where it is, for logs: the folder or the `s3://` URL.
    pub fn describe(&self) -> String {
        match self {
            Self::Folder(l) => l.display().to_string(),
            Self::Bucket(r) => r.url(),
        }
    }

    /// The Parquet files of `kind` in the day partitions `[from, to]`, sorted by day then
    /// name, as absolute paths or `s3://` URLs.
    pub async fn files(
        &self,
        kind: EventKind,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<String>> {
        let mut files = Vec::new();
        match self {
            Self::Bucket(r) => files = r.kind_files(kind, from, to).await?,
            Self::Folder(l) => {
                for (_, dir) in crate::lake::partitions(l, kind, from, to)? {
                    for f in crate::lake::day_files(&dir)? {
                        let abs = std::fs::canonicalize(&f).map_err(|e| CoreError::io(&f, e))?;
                        files.push(abs.to_string_lossy().to_string());
                    }
                }
            }
        }
        Ok(files)
    }

    /// The reference table of `kind`, or an error naming it when the lake has none.
    pub async fn reference(&self, kind: ReferenceKind) -> Result<String> {
        match self {
            Self::Bucket(r) => r.reference(kind).await,
            Self::Folder(l) => local_reference(&l.join(REFERENCE_DIR), kind),
        }
    }
}

/// A reference table in folder `dir`, as an absolute path; an error names it when missing.
pub fn local_reference(dir: &Path, kind: ReferenceKind) -> Result<String> {
    let path = dir.join(format!("{}.parquet", kind.as_str()));
    let abs = std::fs::canonicalize(&path)
        .map_err(|_| missing_reference(dir.to_path_buf(), &path.display().to_string()))?;
    Ok(abs.to_string_lossy().to_string())
}

/// The error of a lake at `lake` without its reference table `table`.
fn missing_reference(lake: PathBuf, table: &str) -> CoreError {
    CoreError::Lake {
        path: lake,
        reason: format!("reference table {table} is missing (the simulator writes it; see README)"),
    }
}

/// The files under `dir`, as `/`-separated paths relative to `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| CoreError::io(dir, e))? {
        let entry = entry.map_err(|e| CoreError::io(dir, e))?;
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect();
            out.push(parts.join("/"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_prefix_and_only_s3_is_remote() {
        assert!(is_remote(Path::new("s3://lake/province")));
        assert!(!is_remote(Path::new("/data/lake")));
        assert!(!is_remote(Path::new("lake")));
        let l = RemoteLake::open(Path::new("s3://bucket/p/q/")).unwrap();
        assert_eq!(l.url(), "s3://bucket/p/q");
        assert_eq!(
            l.url_of("sale/date=2026-01-02"),
            "s3://bucket/p/q/sale/date=2026-01-02"
        );
        let root = RemoteLake::open(Path::new("s3://bucket")).unwrap();
        assert_eq!(root.url_of("manifest.json"), "s3://bucket/manifest.json");
        let e = RemoteLake::open(Path::new("s3:///x")).unwrap_err();
        assert!(e.to_string().contains("bucket is empty"), "{e}");
    }
}
