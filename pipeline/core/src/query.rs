//! DataFusion helpers every role uses: the session the queries run in, registering Parquet
//! files or objects (or an empty table of the right schema) under a name, collecting a query, and reading
//! a table's rows into serde structs. The nightly job, the stream's engine, `produce` and the
//! stream baseline all go through these, so a query error always names what it was for.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::{CoreError, Result};

/// Cores to spread work over: a query's partitions, and independent queries or files run at
/// the same time.
pub fn lanes() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// A DataFusion context configured for the pipeline's queries.
pub fn session() -> SessionContext {
    let mut config = SessionConfig::new()
        .with_target_partitions(lanes())
        .with_information_schema(false);
    // Evaluate filters (including the dynamic filters of hash joins) while decoding Parquet, so
    // the columns of rows that cannot match are never materialised.
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    SessionContext::new_with_config(config)
}

/// Registers Parquet `files` as table `name` with `schema` (an empty table when there are none).
pub async fn register_files(
    ctx: &SessionContext,
    name: &str,
    schema: Arc<Schema>,
    files: &[PathBuf],
) -> Result<()> {
    let mut urls = Vec::with_capacity(files.len());
    for f in files {
        let abs = std::fs::canonicalize(f).map_err(|e| CoreError::io(f, e))?;
        urls.push(abs.to_string_lossy().to_string());
    }
    register_urls(ctx, name, schema, &urls).await
}

/// Registers Parquet objects `urls` (absolute paths, or `s3://bucket/key` of a store registered
/// on `ctx`) as table `name` with `schema` (an empty table when there are none).
pub async fn register_urls(
    ctx: &SessionContext,
    name: &str,
    schema: Arc<Schema>,
    files: &[String],
) -> Result<()> {
    if files.is_empty() {
        let empty = MemTable::try_new(schema.clone(), vec![vec![RecordBatch::new_empty(schema)]])
            .map_err(|e| CoreError::query(name, e))?;
        ctx.register_table(name, Arc::new(empty))
            .map_err(|e| CoreError::query(name, e))?;
        return Ok(());
    }
    let urls = files
        .iter()
        .map(|f| ListingTableUrl::parse(f).map_err(|e| CoreError::query(name, e)))
        .collect::<Result<Vec<_>>>()?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    let table = ListingTable::try_new(config).map_err(|e| CoreError::query(name, e))?;
    ctx.register_table(name, Arc::new(table))
        .map_err(|e| CoreError::query(name, e))?;
    Ok(())
}

/// The schema of `sql`'s result: from its batches, or planned when it has none (an empty
/// result still writes a file with its columns).
pub async fn result_schema(
    ctx: &SessionContext,
    what: &str,
    sql: &str,
    batches: &[RecordBatch],
) -> Result<Arc<Schema>> {
    Ok(match batches.first() {
        Some(b) => b.schema(),
        None => ctx
            .sql(sql)
            .await
            .map_err(|e| CoreError::query(what, e))?
            .schema()
            .inner()
            .clone(),
    })
}

/// Runs `sql` and collects its batches; errors name `what`.
pub async fn run_sql(ctx: &SessionContext, what: &str, sql: &str) -> Result<Vec<RecordBatch>> {
    let df = ctx.sql(sql).await.map_err(|e| CoreError::query(what, e))?;
    df.collect().await.map_err(|e| CoreError::query(what, e))
}

/// Reads a table's rows into serde structs through Arrow's JSON writer.
pub async fn table_rows<T: serde::de::DeserializeOwned>(
    ctx: &SessionContext,
    table: &str,
) -> Result<Vec<T>> {
    query_rows(ctx, table, &format!("SELECT * FROM {table}")).await
}

/// The rows of `sql` (named `what` in errors), each deserialized into `T` by column name.
pub async fn query_rows<T: serde::de::DeserializeOwned>(
    ctx: &SessionContext,
    what: &str,
    sql: &str,
) -> Result<Vec<T>> {
    let batches = run_sql(ctx, what, sql).await?;
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::json::ArrayWriter::new(&mut buf);
        for b in &batches {
            w.write(b).map_err(|e| CoreError::arrow(what, e))?;
        }
        w.finish().map_err(|e| CoreError::arrow(what, e))?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buf).map_err(|e| CoreError::Internal(format!("{what}: {e}")))
}
