//! The risk store: one database that the nightly job, the stream service, the case ledger and
//! the workbench share — the SQLite file `OUT/pharmwatch.db` by default, or a province's
//! PostgreSQL database when `[store] url` names one ([`location`], [`crate::db`]). It holds the
//! nightly risk list, the real-time risk events, the stream's checkpoints and window state, and
//! an outbox of messages to publish.
//!
//! Invariants:
//! - the schema is created by numbered migrations in `pipeline/sql/store/` (PostgreSQL: the same
//!   versions in `pipeline/sql/store/pg/`), applied once each and recorded in
//!   `schema_migrations`;
//! - a risk event's id is deterministic, so inserting it twice stores it once
//!   ([`Store::insert_risk_event`] reports whether it was new);
//! - the stream writes everything one micro-batch produced (events, dead letters, window state,
//!   offsets, counts) in one transaction: after a crash either all of it is there or none;
//! - the SQLite file runs in WAL mode with a busy timeout, so several stream instances of one
//!   consumer group on one host can share it (their transactions serialise); on PostgreSQL the
//!   writing transactions serialise on an advisory lock, on any number of hosts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::db::{Backend, Conn as Connection, DbError, OptionalExtension, TransactionBehavior};
use crate::params;

use crate::error::{CoreError, Result};
use crate::risk::RiskRow;

pub use crate::db::STORE_FILE;

/// `[store]` of `pharmwatch.toml`: where the store lives when it is not the embedded file,
/// and how many connections the workbench may hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// A PostgreSQL URL (`postgres://user:password@host:5432/pharmwatch`) for a province's
    /// database server; empty (the default): the SQLite file `OUT/pharmwatch.db`.
    pub url: String,
    /// Most store connections `pharmwatch serve` holds at once (requests beyond wait).
    pub pool_size: usize,
    /// Longest a request waits for a pooled connection before it is answered 503.
    pub acquire_timeout_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            pool_size: 8,
            acquire_timeout_secs: 10,
        }
    }
}

impl crate::config::Section for StoreConfig {
    const NAME: &'static str = "store";
}

impl StoreConfig {
    /// The workbench pool's limits.
    pub fn pool_limits(&self) -> crate::pool::PoolLimits {
        crate::pool::PoolLimits {
            size: self.pool_size,
            acquire_timeout: Duration::from_secs(self.acquire_timeout_secs),
        }
    }

    /// Checks the URL and the pool's limits.
    pub fn validate(&self) -> Result<()> {
        if self.pool_size == 0 || self.pool_size > 1_000 {
            return Err(CoreError::Config(format!(
                "store.pool_size: {} is not between 1 and 1000",
                self.pool_size
            )));
        }
        if self.acquire_timeout_secs == 0 {
            return Err(CoreError::Config(
                "store.acquire_timeout_secs: must be at least 1".into(),
            ));
        }
        if !self.url.is_empty() && !crate::db::is_postgres(Path::new(&self.url)) {
            return Err(CoreError::Config(format!(
                "store.url: {:?} is not a postgres:// URL (leave it empty for the SQLite file \
                 in the output directory)",
                self.url
            )));
        }
        Ok(())
    }
}

fn configured() -> &'static std::sync::OnceLock<StoreConfig> {
    static C: std::sync::OnceLock<StoreConfig> = std::sync::OnceLock::new();
    &C
}

/// Sets the process's store configuration (once, at start; later calls are ignored).
pub fn configure(cfg: StoreConfig) -> Result<()> {
    cfg.validate()?;
    let _ = configured().set(cfg);
    Ok(())
}

/// The process's store configuration (the defaults when none was set).
pub fn configuration() -> StoreConfig {
    configured().get().cloned().unwrap_or_default()
}

/// Where the store of output directory `out` lives: the configured PostgreSQL URL, else
/// `out/pharmwatch.db`.
pub fn location(out: &Path) -> PathBuf {
    or_configured(&out.join(STORE_FILE))
}

/// The configured PostgreSQL URL, else `file`.
pub fn or_configured(file: &Path) -> PathBuf {
    match configured().get().filter(|c| !c.url.is_empty()) {
        Some(c) => PathBuf::from(&c.url),
        None => file.to_path_buf(),
    }
}

/// The migrations, in order: version and SQL.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../sql/store/001_stream.sql")),
    (2, include_str!("../../sql/store/002_stream_seeded.sql")),
    (
        3,
        include_str!("../../sql/store/003_stream_without_rowid.sql"),
    ),
    (
        4,
        include_str!("../../sql/store/004_stream_window_sets.sql"),
    ),
    (10, include_str!("../../sql/store/010_ledger.sql")),
    (20, include_str!("../../sql/store/020_delivery.sql")),
    (30, include_str!("../../sql/store/030_regions.sql")),
    (40, include_str!("../../sql/store/040_calendar.sql")),
    (50, include_str!("../../sql/store/050_workbench.sql")),
    (
        51,
        include_str!("../../sql/store/051_stream_batch_sales_in_window_sets.sql"),
    ),
    (60, include_str!("../../sql/store/060_credit_repair.sql")),
    (
        61,
        include_str!("../../sql/store/061_penalty_documents.sql"),
    ),
    (
        62,
        include_str!("../../sql/store/062_dead_letter_bytes.sql"),
    ),
    (63, include_str!("../../sql/store/063_link_revocations.sql")),
    (
        64,
        include_str!("../../sql/store/064_trace_codes_by_day.sql"),
    ),
    (
        65,
        include_str!("../../sql/store/065_trace_codes_swept.sql"),
    ),
];

/// The same migrations for a PostgreSQL store (`pipeline/sql/store/pg/`): the same versions,
/// tables, columns, keys, checks and triggers in PostgreSQL's dialect.
pub const PG_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../sql/store/pg/001_stream.sql")),
    (2, include_str!("../../sql/store/pg/002_stream_seeded.sql")),
    (
        3,
        include_str!("../../sql/store/pg/003_stream_without_rowid.sql"),
    ),
    (
        4,
        include_str!("../../sql/store/pg/004_stream_window_sets.sql"),
    ),
    (10, include_str!("../../sql/store/pg/010_ledger.sql")),
    (20, include_str!("../../sql/store/pg/020_delivery.sql")),
    (30, include_str!("../../sql/store/pg/030_regions.sql")),
    (40, include_str!("../../sql/store/pg/040_calendar.sql")),
    (50, include_str!("../../sql/store/pg/050_workbench.sql")),
    (
        51,
        include_str!("../../sql/store/pg/051_stream_batch_sales_in_window_sets.sql"),
    ),
    (60, include_str!("../../sql/store/pg/060_credit_repair.sql")),
    (
        61,
        include_str!("../../sql/store/pg/061_penalty_documents.sql"),
    ),
    (
        62,
        include_str!("../../sql/store/pg/062_dead_letter_bytes.sql"),
    ),
    (
        63,
        include_str!("../../sql/store/pg/063_link_revocations.sql"),
    ),
    (
        64,
        include_str!("../../sql/store/pg/064_trace_codes_by_day.sql"),
    ),
    (
        65,
        include_str!("../../sql/store/pg/065_trace_codes_swept.sql"),
    ),
];

/// What each migration brings, by version (for `pharmwatch migrate`).
pub fn migration_title(version: i64) -> &'static str {
    match version {
        1 => "stream offsets, windows and risk events",
        2 => "stream windows seeded from the nightly baseline",
        3 => "stream tables without row ids",
        4 => "stream window sets",
        10 => "case ledger, documents and notice numbers",
        20 => "delivery outbox and acknowledgements",
        30 => "regions",
        40 => "working-day calendar",
        50 => "workbench: drafts, audit trail, accounts, dispositions",
        51 => "stream batch sales kept in the window sets",
        60 => "credit repair and penalty procedure events in the case trail",
        61 => "penalty documents: draft particulars, the filing form kept internal",
        62 => "dead letters keep the exact bytes of a message that is not UTF-8",
        63 => "revoked links of a document or a risk warning",
        64 => "traceability codes' first sales by business day (pruned as days close)",
        65 => "traceability codes forgotten by a sweep in code order (the index by day dropped)",
        _ => "",
    }
}

/// Advisory-lock key of the nightly job on a PostgreSQL store (the bytes of "pw-night").
const NIGHTLY_LOCK: i64 = 0x7077_2d6e_6967_6874;

/// Held while a nightly run works on a store (dropping it lets the next run in): two
/// schedulers that start the job at the same time do not run it twice at once. On PostgreSQL
/// a session-level advisory lock on a connection of its own (released by the server if the
/// process dies); on SQLite an exclusive lock on `pharmwatch.nightly.lock` beside the file.
#[derive(Debug)]
pub struct NightlyLock {
    _session: Option<Connection>,
    _file: Option<std::fs::File>,
}

impl NightlyLock {
    /// Takes the nightly lock of the store at `location`, or fails at once naming the store
    /// when another run holds it.
    pub fn take(location: &Path) -> Result<Self> {
        let busy = || {
            CoreError::Config(format!(
                "another nightly run is working on the store {} (its lock is held); run again \
                 when it has finished",
                crate::db::display_location(location)
            ))
        };
        if crate::db::is_postgres(location) {
            let conn = Connection::open(location).map_err(|e| sql_err(location, "open", e))?;
            let got: bool = conn
                .query_row("SELECT pg_try_advisory_lock(?1)", [NIGHTLY_LOCK], |r| {
                    r.get(0)
                })
                .map_err(|e| sql_err(location, "nightly lock", e))?;
            if !got {
                return Err(busy());
            }
            return Ok(Self {
                _session: Some(conn),
                _file: None,
            });
        }
        let path = location.with_extension("nightly.lock");
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| CoreError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self {
                _session: None,
                _file: Some(file),
            }),
            Err(std::fs::TryLockError::WouldBlock) => Err(busy()),
            Err(std::fs::TryLockError::Error(e)) => Err(CoreError::io(&path, e)),
        }
    }
}

/// One migration and when it was applied to a store (`None`: pending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    /// Version (the number of its file in `pipeline/sql/store/`).
    pub version: i64,
    /// What it brings.
    pub title: &'static str,
    /// When it was applied (RFC 3339), if it was.
    pub applied_at: Option<String>,
}

/// The migrations applied to the database on `conn` (version → when), read without a write
/// lock; empty for a new database.
fn applied(conn: &Connection, path: &Path) -> Result<Vec<(i64, String)>> {
    let exists: bool = conn
        .query_row(
            match conn.backend() {
                Backend::Sqlite => {
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table'
                                      AND name = 'schema_migrations')"
                }
                Backend::Postgres => "SELECT to_regclass('schema_migrations') IS NOT NULL",
            },
            [],
            |r| r.get(0),
        )
        .map_err(|e| sql_err(path, "read migrations", e))?;
    if !exists {
        return Ok(Vec::new());
    }
    let mut st = conn
        .prepare("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        .map_err(|e| sql_err(path, "read migrations", e))?;
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(|e| sql_err(path, "read migrations", e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| sql_err(path, "read migrations", e))
}

/// An open store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// The error of a database call: what was being done on the store at `path`, keeping the
/// database's error as the source.
pub fn sql_err(path: &Path, what: &str, e: DbError) -> CoreError {
    CoreError::Store {
        path: path.to_path_buf(),
        what: what.to_string(),
        source: e,
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self> {
        if !crate::db::is_postgres(path)
            && let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
        }
        let conn = Connection::open(path).map_err(|e| sql_err(path, "open", e))?;
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(|e| sql_err(path, "busy timeout", e))?;
        conn.pragma_update("journal_mode", "WAL")
            .map_err(|e| sql_err(path, "WAL mode", e))?;
        conn.pragma_update("synchronous", "FULL")
            .map_err(|e| sql_err(path, "synchronous", e))?;
        // The stream's lookups land all over large key-ordered tables (a traceability code
        // per sale): a 64 MiB page cache and reads through a memory map instead of a copy
        // per page keep them off the system-call path.
        conn.pragma_update("cache_size", -65_536)
            .map_err(|e| sql_err(path, "cache size", e))?;
        conn.pragma_update("mmap_size", 1_i64 << 30)
            .map_err(|e| sql_err(path, "mmap size", e))?;
        let mut store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Opens the store for the stream service. Everything the stream writes is derived from
    /// the broker and replayed from the store's own offsets after a restart, so its commits
    /// need not wait for the disk: with `synchronous = NORMAL` a WAL commit survives a
    /// crash of the process (`kill -9`) and the database stays consistent; only a power
    /// failure can take back the last commits, and the service then re-reads those messages
    /// from the broker (its risk events keep their ids, the lake files past the store's
    /// offsets are removed at start). A larger WAL between checkpoints keeps the pages a
    /// busy stream rewrites every batch from being copied back on every commit.
    pub fn open_stream(path: &Path) -> Result<Self> {
        let store = Self::open(path)?;
        store
            .conn
            .pragma_update("synchronous", "NORMAL")
            .map_err(|e| sql_err(path, "synchronous", e))?;
        store
            .conn
            .pragma_update("wal_autocheckpoint", 16_384)
            .map_err(|e| sql_err(path, "wal autocheckpoint", e))?;
        Ok(store)
    }

    /// Sets how long a statement waits for another writer before failing with a busy
    /// error (60 s from [`Store::open`]).
    pub fn set_busy_timeout(&self, wait: Duration) -> Result<()> {
        self.conn
            .busy_timeout(wait)
            .map_err(|e| sql_err(&self.path, "busy timeout", e))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, read-only use.
    pub fn conn_ref(&self) -> &Connection {
        &self.conn
    }

    /// The connection (for transactions run by the stream service).
    pub fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The versions a store at `path` still lacks, read without opening it for writing (every
    /// migration for a store that does not exist yet).
    pub fn pending_at(path: &Path) -> Result<Vec<i64>> {
        let done = if crate::db::is_postgres(path) || path.exists() {
            let conn =
                Connection::open_read_only(path).map_err(|e| sql_err(path, "open read-only", e))?;
            applied(&conn, path)?
        } else {
            Vec::new()
        };
        Ok(MIGRATIONS
            .iter()
            .map(|(v, _)| *v)
            .filter(|v| !done.iter().any(|(d, _)| d == v))
            .collect())
    }

    /// Every migration with when it was applied to this store (all applied once it is open).
    pub fn migrations(&self) -> Result<Vec<MigrationState>> {
        let done = applied(&self.conn, &self.path)?;
        Ok(MIGRATIONS
            .iter()
            .map(|(version, _)| MigrationState {
                version: *version,
                title: migration_title(*version),
                applied_at: done
                    .iter()
                    .find(|(v, _)| v == version)
                    .map(|(_, at)| at.clone()),
            })
            .collect())
    }

    /// Applies the pending migrations. The common case — nothing pending — is decided by a
    /// read, without the write lock, so opening a store never waits for another process's
    /// writes; pending migrations run in one IMMEDIATE transaction that checks again.
    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let done = applied(&self.conn, &path)?;
        if MIGRATIONS
            .iter()
            .all(|(v, _)| done.iter().any(|(d, _)| d == v))
        {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_err(&path, "begin migration", e))?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
        )
        .map_err(|e| sql_err(&path, "schema_migrations", e))?;
        let migrations = match tx.backend() {
            Backend::Sqlite => MIGRATIONS,
            Backend::Postgres => PG_MIGRATIONS,
        };
        for (version, sql) in migrations {
            let done: Option<i64> = tx
                .query_row(
                    "SELECT version FROM schema_migrations WHERE version = ?1",
                    [version],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| sql_err(&path, "read migrations", e))?;
            if done.is_some() {
                continue;
            }
            tx.execute_batch(sql)
                .map_err(|e| sql_err(&path, &format!("migration {version}"), e))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, chrono::Utc::now().to_rfc3339()],
            )
            .map_err(|e| sql_err(&path, "record migration", e))?;
            crate::faults::point("migrate.after_step");
        }
        tx.commit()
            .map_err(|e| sql_err(&path, "commit migration", e))
    }

    /// Replaces the risk-list rows of the lists in `rows` (a rerun of a night replaces its list).
    pub fn write_risk_list(&mut self, rows: &[RiskRow]) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_err(&path, "begin", e))?;
        let mut lists: Vec<&str> = rows.iter().map(|r| r.list_id.as_str()).collect();
        lists.sort_unstable();
        lists.dedup();
        for l in lists {
            tx.execute("DELETE FROM risk_list WHERE list_id = ?1", [l])
                .map_err(|e| sql_err(&path, "replace risk list", e))?;
        }
        {
            let mut ins = tx
                .prepare(
                    "INSERT INTO risk_list (list_id, biz_date, rank, enterprise_id, enterprise_name,
                         enterprise_type, region_code, score, grade, indicators, top_reason,
                         rule_version, items_json, row_json)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )
                .map_err(|e| sql_err(&path, "prepare risk list", e))?;
            for r in rows {
                let items = serde_json::to_string(&r.items)
                    .map_err(|e| CoreError::Internal(e.to_string()))?;
                let row =
                    serde_json::to_string(r).map_err(|e| CoreError::Internal(e.to_string()))?;
                ins.execute(params![
                    r.list_id,
                    r.date.to_string(),
                    r.rank,
                    r.enterprise_id,
                    r.enterprise_name,
                    r.enterprise_type,
                    r.region_code,
                    r.score,
                    r.grade,
                    r.indicators,
                    r.top_reason,
                    r.rule_version,
                    items,
                    row
                ])
                .map_err(|e| sql_err(&path, "insert risk list", e))?;
            }
        }
        tx.commit().map_err(|e| sql_err(&path, "commit", e))
    }

    /// The stored risk-list rows of business day `date` and enterprise `enterprise` (every day
    /// or enterprise when `None`), by day and rank. Rows written before migration 50 come back
    /// without licence and model reasons.
    pub fn risk_rows(&self, date: Option<&str>, enterprise: Option<&str>) -> Result<Vec<RiskRow>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT row_json, list_id, biz_date, rank, enterprise_id, enterprise_name,
                        enterprise_type, region_code, score, grade, indicators, top_reason,
                        rule_version, items_json
                 FROM risk_list WHERE (?1 IS NULL OR biz_date = ?1)
                   AND (?2 IS NULL OR enterprise_id = ?2)
                 ORDER BY biz_date, rank",
            )
            .map_err(|e| sql_err(&self.path, "risk list", e))?;
        let raw = st
            .query_map(params![date, enterprise], |r| {
                let json: String = r.get(0)?;
                let fallback = serde_json::json!({
                    "list_id": r.get::<_, String>(1)?, "date": r.get::<_, String>(2)?,
                    "rank": r.get::<_, u32>(3)?, "enterprise_id": r.get::<_, String>(4)?,
                    "enterprise_name": r.get::<_, String>(5)?,
                    "enterprise_type": r.get::<_, String>(6)?,
                    "region_code": r.get::<_, String>(7)?, "region_name": "",
                    "licence_no": "", "credit_grade": "", "score": r.get::<_, f64>(8)?,
                    "grade": r.get::<_, String>(9)?, "indicators": r.get::<_, String>(10)?,
                    "top_reason": r.get::<_, String>(11)?, "responsible_unit": "",
                    "status": "", "rule_version": r.get::<_, String>(12)?,
                    "anomaly_score": null, "anomaly_percentile": null, "anomaly_reasons": "",
                    "anomaly_reasons_zh": "",
                    "items": serde_json::from_str::<serde_json::Value>(&r.get::<_, String>(13)?)
                        .unwrap_or_default(),
                });
                Ok((json, fallback))
            })
            .map_err(|e| sql_err(&self.path, "risk list", e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| sql_err(&self.path, "risk list", e))?;
        raw.into_iter()
            .map(|(json, fallback)| {
                if json.is_empty() {
                    serde_json::from_value(fallback)
                } else {
                    serde_json::from_str(&json)
                }
                .map_err(|e| CoreError::Internal(format!("stored risk-list row: {e}")))
            })
            .collect()
    }

    /// The business days that have a stored risk list, newest first.
    pub fn risk_list_days(&self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT DISTINCT biz_date FROM risk_list ORDER BY biz_date DESC")
            .map_err(|e| sql_err(&self.path, "risk list days", e))?;
        let v = st
            .query_map([], |r| r.get(0))
            .map_err(|e| sql_err(&self.path, "risk list days", e))?
            .collect::<std::result::Result<Vec<String>, _>>()
            .map_err(|e| sql_err(&self.path, "risk list days", e))?;
        Ok(v)
    }

    /// All risk events, ordered by business day, enterprise and id.
    pub fn risk_events(&self) -> Result<Vec<StoredEvent>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, indicator, enterprise_id, product_id, biz_date, item_json
                 FROM risk_events ORDER BY biz_date, enterprise_id, id",
            )
            .map_err(|e| sql_err(&self.path, "read risk events", e))?;
        let rows = st
            .query_map([], |r| {
                Ok(StoredEvent {
                    id: r.get(0)?,
                    indicator: r.get(1)?,
                    enterprise_id: r.get(2)?,
                    product_id: r.get(3)?,
                    biz_date: r.get(4)?,
                    item_json: r.get(5)?,
                })
            })
            .map_err(|e| sql_err(&self.path, "read risk events", e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| sql_err(&self.path, "read risk events", e))
    }

    /// Stream counts summed over partitions, per topic: (topic, consumed, accepted, rejected, late).
    pub fn stream_counts(&self) -> Result<Vec<TopicCounts>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT topic, SUM(consumed), SUM(accepted), SUM(rejected), SUM(late)
                 FROM stream_counts GROUP BY topic ORDER BY topic",
            )
            .map_err(|e| sql_err(&self.path, "read counts", e))?;
        let rows = st
            .query_map([], |r| {
                Ok(TopicCounts {
                    topic: r.get(0)?,
                    consumed: r.get(1)?,
                    accepted: r.get(2)?,
                    rejected: r.get(3)?,
                    late: r.get(4)?,
                })
            })
            .map_err(|e| sql_err(&self.path, "read counts", e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| sql_err(&self.path, "read counts", e))
    }

    /// The dead letters, in source order.
    pub fn dead_letters(&self) -> Result<Vec<StoredDeadLetter>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT source_topic, source_partition, source_offset, kind, field, reason, raw,
                        raw_base64
                 FROM dead_letters ORDER BY source_topic, source_partition, source_offset",
            )
            .map_err(|e| sql_err(&self.path, "read dead letters", e))?;
        let rows = st
            .query_map([], |r| {
                Ok(StoredDeadLetter {
                    topic: r.get(0)?,
                    partition: r.get(1)?,
                    offset: r.get(2)?,
                    kind: r.get(3)?,
                    field: r.get(4)?,
                    reason: r.get(5)?,
                    raw: r.get(6)?,
                    raw_base64: r.get(7)?,
                })
            })
            .map_err(|e| sql_err(&self.path, "read dead letters", e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| sql_err(&self.path, "read dead letters", e))
    }
}

/// A risk event as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredEvent {
    /// Deterministic id.
    pub id: String,
    /// Indicator.
    pub indicator: String,
    /// Enterprise credit code.
    pub enterprise_id: String,
    /// Product id.
    pub product_id: Option<String>,
    /// Business day (YYYY-MM-DD).
    pub biz_date: String,
    /// The risk item with its evidence, as JSON.
    pub item_json: String,
}

/// Stream counts of one topic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopicCounts {
    /// Topic.
    pub topic: String,
    /// Messages consumed (each offset once).
    pub consumed: i64,
    /// Accepted records.
    pub accepted: i64,
    /// Rejected messages (dead letters).
    pub rejected: i64,
    /// Accepted records later than the allowed lateness.
    pub late: i64,
}

/// A dead letter as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredDeadLetter {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Event kind of the topic.
    pub kind: String,
    /// Offending field (`-` for the message as a whole).
    pub field: String,
    /// Why it was rejected.
    pub reason: String,
    /// The raw message (UTF-8, lossy).
    pub raw: String,
    /// The exact bytes in base64, when the message was not UTF-8.
    pub raw_base64: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_nightly_run_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::db::scratch_store(dir.path());
        drop(Store::open(&path).unwrap());
        let first = NightlyLock::take(&path).unwrap();
        let second = NightlyLock::take(&path).unwrap_err().to_string();
        assert!(second.contains("another nightly run"), "{second}");
        drop(first);
        NightlyLock::take(&path).expect("free again once the first run ends");
    }

    #[test]
    fn both_backends_migrate_to_the_same_tables_and_columns() {
        // The SQLite file and a PostgreSQL database, each at the latest version: every table
        // has the same columns in the same order (callers bind and read columns by position).
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Store::open(&dir.path().join("parity.db")).unwrap();
        let pg = Store::open(&crate::db::scratch_postgres(&dir.path().join("pg"))).unwrap();
        let columns = |store: &Store, sql: &str| -> Vec<(String, String)> {
            let mut st = store.conn_ref().prepare(sql).unwrap();
            st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        let lite = columns(
            &sqlite,
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.cid",
        );
        let server = columns(
            &pg,
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
        );
        assert!(lite.len() > 100, "{} columns", lite.len());
        assert_eq!(lite, server);
        assert!(!lite.iter().any(|(t, _)| t == "stream_batch_sales"));
        assert!(lite.contains(&("stream_window_sets".into(), "batches".into())));
    }

    #[test]
    fn migrations_are_reported_and_an_up_to_date_store_opens_beside_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::db::scratch_store(dir.path());
        let all: Vec<i64> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        assert_eq!(
            Store::pending_at(&path).unwrap(),
            all,
            "a new store lacks all"
        );
        let store = Store::open(&path).unwrap();
        assert!(Store::pending_at(&path).unwrap().is_empty());
        let states = store.migrations().unwrap();
        assert_eq!(states.len(), MIGRATIONS.len());
        assert!(
            states
                .iter()
                .all(|m| m.applied_at.is_some() && !m.title.is_empty())
        );
        drop(store);

        // Another process holds the write lock: an up-to-date store still opens at once
        // (the migration check is a read), and its writes wait as they should.
        let mut writer = Connection::open(&path).unwrap();
        let tx = writer
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        let opened = std::thread::spawn({
            let path = path.clone();
            move || {
                let mut s = Store::open(&path)?;
                s.set_busy_timeout(Duration::from_millis(50))?;
                let write = s.conn().transaction().is_err();
                Ok::<_, CoreError>(write)
            }
        })
        .join()
        .unwrap();
        assert!(
            opened.expect("the store opens while another writer holds the lock"),
            "a write still waits for the lock holder"
        );
        tx.rollback().unwrap();
    }
}
