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
//! a published lake's `manifest.json` is written last, so a lake with a manifest is complete.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use pharmwatch_schemas::{EventKind, ReferenceKind};

use crate::error::{CoreError, Result};
use crate::lake::REFERENCE_DIR;

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
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| CoreError::ObjectStore {
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

    fn key(&self, rel: &str) -> ObjPath {
        let rel = rel.trim_matches('/');
        match (self.prefix.is_empty(), rel.is_empty()) {
            (true, _) => ObjPath::from(rel),
            (false, true) => ObjPath::from(self.prefix.as_str()),
            (false, false) => ObjPath::from(format!("{}/{rel}", self.prefix)),
        }
    }

    fn err(&self, rel: &str, what: &str, source: object_store::Error) -> CoreError {
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

    /// The Parquet files of `kind` in the day partitions `[from, to]`, sorted by day then name,
    /// as URLs: one listing of the kind's folder (a request per thousand objects), rather than
    /// one per day.
    pub async fn kind_files(
        &self,
        kind: EventKind,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<String>> {
        let dir = kind.as_str();
        let base = self.base.as_str().trim_end_matches('/').to_string();
        let mut found: Vec<(NaiveDate, String)> = self
            .store
            .list(Some(&self.key(dir)))
            .map_ok(|m| m.location.to_string())
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| self.err(dir, "list the kind's files", e))?
            .into_iter()
            .filter(|k| k.ends_with(".parquet"))
            .filter_map(|k| {
                let day = k
                    .split('/')
                    .find_map(|seg| seg.strip_prefix("date="))
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())?;
                (day >= from && day <= to).then(|| (day, format!("{base}/{k}")))
            })
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, url)| url).collect())
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
