//! Start-up of the service: the baseline's trace codes seeded once into the store's shared
//! table (earliest sale wins), so a code sold before the stream started is known.

use std::path::Path;
use std::time::Instant;

use chrono::Utc;
use pharmwatch_core::db::OptionalExtension;

use crate::engine::{TRACE_CODES_REPLACE, TraceCodeRows};
use pharmwatch_core::params;

use crate::error::Result;
use pharmwatch_core::baseline::{Baseline, TraceFile};
use pharmwatch_core::store::{Store, sql_err};

/// Whether the baseline `identity` is recorded in `stream_seeded`.
pub(super) fn already_seeded(
    conn: &pharmwatch_core::db::Conn,
    path: &Path,
    identity: &str,
) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM stream_seeded WHERE baseline = ?1",
            [identity],
            |_| Ok(()),
        )
        .optional()
        .map(|r| r.is_some())
        .map_err(|e| sql_err(path, "read stream_seeded", e))?)
}

/// Loads the baseline's first trace-code sales into the store's shared table, each file
/// once: a restart, or the next night's baseline, finds the files already seeded recorded in
/// `stream_seeded` and reads only the new ones (a night adds its own day).
pub(super) async fn seed_trace_codes(store: &mut Store, baseline: &Baseline) -> Result<()> {
    for file in baseline.trace_files()? {
        seed_file(store, &file).await?;
    }
    Ok(())
}

/// Seeds one trace-code file of the baseline, unless `stream_seeded` records it.
async fn seed_file(store: &mut Store, file: &TraceFile) -> Result<()> {
    let identity = &file.identity;
    let path = store.path().to_path_buf();
    if already_seeded(store.conn(), &path, identity)? {
        return Ok(());
    }
    let started = Instant::now();
    let mut trace = file.read().await?;
    // In key order, every insert appends to the table's B-tree instead of landing at random;
    // a code sold more than once keeps its earliest sale (a statement may not touch a row
    // twice).
    trace.sort_unstable_by(|a, b| {
        (&a.trace_code, a.event_time, &a.event_id).cmp(&(&b.trace_code, b.event_time, &b.event_id))
    });
    let read = trace.len();
    trace.dedup_by(|later, first| later.trace_code == first.trace_code);
    let tx = store
        .conn()
        .transaction_with_behavior(pharmwatch_core::db::TransactionBehavior::Immediate)
        .map_err(|e| sql_err(&path, "begin", e))?;
    // Another instance may have seeded it meanwhile (the check above ran outside the lock).
    if already_seeded(&tx, &path, identity)? {
        return Ok(());
    }
    // Column by column: on a database server the rows go up as arrays, a few statements in
    // all. Codes are distinct here (deduplicated above); one already on record keeps the
    // earlier sale.
    let mut rows = TraceCodeRows::default();
    for t in trace {
        let ms = t.event_time.timestamp_millis();
        rows.push(
            t.trace_code,
            ms,
            t.event_id,
            t.enterprise_id,
            t.product_id,
            t.biz_date,
        );
    }
    let keep_earlier = format!(
        "{TRACE_CODES_REPLACE} WHERE (excluded.event_time_ms, excluded.event_id)
             < (trace_codes.event_time_ms, trace_codes.event_id)"
    );
    tx.insert_rows("trace_codes", &rows.columns(), &keep_earlier)
        .map_err(|e| sql_err(&path, "seed trace codes", e))?;
    tx.execute(
        "INSERT INTO stream_seeded (baseline, rows, seeded_at) VALUES (?1, ?2, ?3)",
        params![identity, read as i64, Utc::now().to_rfc3339()],
    )
    .map_err(|e| sql_err(&path, "record stream_seeded", e))?;
    tx.commit().map_err(|e| sql_err(&path, "commit", e))?;
    tracing::info!(
        trace_codes = read,
        seconds = started.elapsed().as_secs_f64(),
        file = %file.path.display(),
        "seeded the trace codes of a baseline file"
    );
    Ok(())
}
