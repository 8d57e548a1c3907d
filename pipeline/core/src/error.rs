//! The core's error type: one enum, each variant carrying the context an operator needs to
//! find the cause (file, line, field, what was being done) and its `#[source]`, and a
//! classification ([`ErrorClass`]) that callers act on: the stream retries a micro-batch only
//! on [`ErrorClass::Retry`], sends bad input to the dead letter, and stops on a bug. Each role
//! crate has its own enum wrapping this one.

use std::path::{Path, PathBuf};

/// Result with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// What a caller does about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The same call may succeed later (a busy or locked database, a full disk, a broker or
    /// receiver away): retry with backoff, bounded.
    Retry,
    /// The data or the configuration is wrong: retrying gives the same answer. Records go to
    /// the dead letter; a person fixes the rest.
    BadInput,
    /// An invariant broke: stop and report.
    Bug,
}

/// The class of an I/O error: interruptions, timeouts and a full disk pass.
pub fn io_class(e: &std::io::Error) -> ErrorClass {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::Interrupted | K::TimedOut | K::WouldBlock | K::StorageFull | K::ResourceBusy => {
            ErrorClass::Retry
        }
        _ => ErrorClass::BadInput,
    }
}

/// The class of an object-storage error: a missing object or a refused request is bad input
/// (the configuration or the lake is wrong); transport failures, which the client has already
/// retried, may pass later.
pub fn object_store_class(e: &object_store::Error) -> ErrorClass {
    use object_store::Error as E;
    match e {
        E::Generic { .. } => ErrorClass::Retry,
        _ => ErrorClass::BadInput,
    }
}

/// The class of a database error: busy, locked and full pass; the rest is a bug.
pub fn store_class(e: &DbError) -> ErrorClass {
    if e.is_transient() {
        ErrorClass::Retry
    } else {
        ErrorClass::Bug
    }
}

/// Everything that can go wrong in the core of the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Bad arguments or configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// A value given by the caller is invalid; the message names the field.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field (argument) name, e.g. `enterprise_id`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A CSV file could not be read or written.
    #[error("{}: {source}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: csv::Error,
    },
    /// The working-day calendar refused a date.
    #[error("working-day calendar: {0}")]
    Calendar(#[from] pharmwatch_regulation::Error),
    /// An identifier could not be built or parsed.
    #[error("identifier: {0}")]
    Id(#[from] pharmwatch_schemas::ids::IdError),
    /// A query failed.
    #[error("query {query}: {source}")]
    Query {
        /// Name of the SQL file or step.
        query: String,
        /// The cause.
        source: Box<datafusion::error::DataFusionError>,
    },
    /// Arrow encoding or decoding failed.
    #[error("arrow ({context}): {source}")]
    Arrow {
        /// What was being done.
        context: String,
        /// The cause.
        source: datafusion::arrow::error::ArrowError,
    },
    /// Parquet writing failed.
    #[error("parquet {}: {source}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: datafusion::parquet::errors::ParquetError,
    },
    /// The lake has no data where the run needs it.
    #[error("lake {}: {reason}", path.display())]
    Lake {
        /// The lake directory.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// Object storage (an `s3://` lake) failed or refused.
    #[error("object storage {url}: {what}: {source}")]
    ObjectStore {
        /// The object or prefix (`s3://bucket/key`).
        url: String,
        /// What was being done.
        what: String,
        /// The client's error (boxed: it is large).
        #[source]
        source: Box<object_store::Error>,
    },
    /// The anomaly model failed (fitting, scoring or its artifact).
    #[error("anomaly model ({context}): {source}")]
    Model {
        /// What was being done (segment, file).
        context: String,
        /// The cause.
        source: pharmwatch_models::ModelError,
    },
    /// A table given to `pharmwatch model` is unusable.
    #[error("{}: {reason}", path.display())]
    Table {
        /// The table file.
        path: PathBuf,
        /// What is wrong (naming the column).
        reason: String,
    },
    /// The risk store (SQLite or PostgreSQL) failed.
    #[error("store {}: {what}: {source}", display_location(path))]
    Store {
        /// The database file or URL.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// The database's error.
        #[source]
        source: DbError,
    },
    /// The risk store holds something it should not (a hand-edited row, a broken invariant).
    #[error("store {}: {reason}", display_location(path))]
    StoreContent {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The regulation crate (rules file, calendar file, measures engine) refused its input.
    #[error("{context}: {source}")]
    Regulation {
        /// What was being done (file, case).
        context: String,
        /// The cause.
        source: pharmwatch_regulation::Error,
    },
    /// Compacting one day partition of the lake failed ([`crate::compact`]); what readers
    /// list of it is as it was.
    #[error("compact {partition}: {source}")]
    Compaction {
        /// The partition (`kind/date=YYYY-MM-DD` of the lake).
        partition: String,
        /// The cause, naming the file.
        #[source]
        source: Box<CoreError>,
    },
    /// A bug: an invariant did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    /// A query error in `query`.
    pub fn query(query: &str, source: datafusion::error::DataFusionError) -> Self {
        Self::Query {
            query: query.to_string(),
            source: Box::new(source),
        }
    }
    /// An Arrow error while doing `context`.
    pub fn arrow(context: impl Into<String>, source: datafusion::arrow::error::ArrowError) -> Self {
        Self::Arrow {
            context: context.into(),
            source,
        }
    }
    /// A regulation-crate error while doing `context`.
    pub fn regulation(context: impl Into<String>, source: pharmwatch_regulation::Error) -> Self {
        Self::Regulation {
            context: context.into(),
            source,
        }
    }
    /// A model error while doing `context`.
    pub fn model(context: impl Into<String>, source: pharmwatch_models::ModelError) -> Self {
        Self::Model {
            context: context.into(),
            source,
        }
    }

    /// What a caller should do about the error (see [`ErrorClass`]).
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Io { source, .. } => io_class(source),
            Self::Store { source, .. } => store_class(source),
            Self::ObjectStore { source, .. } => object_store_class(source),
            Self::Compaction { source, .. } => source.class(),
            Self::Config(_)
            | Self::InvalidField { .. }
            | Self::Csv { .. }
            | Self::Calendar(_)
            | Self::Id(_)
            | Self::Parquet { .. }
            | Self::Lake { .. }
            | Self::Model { .. }
            | Self::Table { .. }
            | Self::Regulation { .. } => ErrorClass::BadInput,
            Self::Query { .. }
            | Self::Arrow { .. }
            | Self::StoreContent { .. }
            | Self::Internal(_) => ErrorClass::Bug,
        }
    }
}

/// A store location for messages: a URL without its password.
pub fn display_location(location: &Path) -> String {
    let s = location.to_string_lossy();
    if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
        return s.into_owned();
    }
    match url::Url::parse(&s) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => s.into_owned(),
    }
}

/// The result of a database call.
pub type DbResult<T> = Result<T, DbError>;

/// An error of the database layer, keeping the driver's error as the source.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("{}", pg_message(.0))]
    Postgres(#[from] postgres::Error),
    /// The PostgreSQL session was closed.
    #[error("the database session is closed")]
    Closed,
    /// A query that must return a row returned none.
    #[error("query returned no rows")]
    NoRows,
    /// A column's value cannot be read as the type asked for.
    #[error("column {column}: {reason}")]
    Conversion {
        /// Column index.
        column: usize,
        /// What did not fit.
        reason: String,
    },
}

/// The server's message with its detail and SQLSTATE, or the driver's.
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!(
            "{} (SQLSTATE {}){}",
            d.message(),
            d.code().code(),
            d.detail().map(|x| format!(": {x}")).unwrap_or_default()
        ),
        None => e.to_string(),
    }
}

impl DbError {
    /// Whether trying again later may succeed: a busy or locked SQLite file, a full disk; on
    /// PostgreSQL a serialisation failure, a deadlock, a lock timeout, a lost connection or a
    /// server shutting down.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
                use rusqlite::ErrorCode as C;
                matches!(
                    f.code,
                    C::DatabaseBusy | C::DatabaseLocked | C::DiskFull | C::SystemIoFailure
                )
            }
            DbError::Postgres(e) => {
                if e.is_closed() {
                    return true;
                }
                e.code().is_some_and(|c| {
                    let c = c.code();
                    c == "40001"
                        || c == "40P01"
                        || c == "55P03"
                        || c.starts_with("08")
                        || c.starts_with("57P")
                        || c == "53300"
                })
            }
            _ => false,
        }
    }

    /// Whether a uniqueness or primary-key constraint refused the write.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
                f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            }
            DbError::Postgres(e) => e.code().is_some_and(|c| c.code() == "23505"),
            _ => false,
        }
    }
}
