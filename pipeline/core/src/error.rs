//! The pipeline's error type: one enum, each variant carrying the context an operator needs to
//! find the cause (file, line, field, date), and a classification of what to do about it.

use std::path::{Path, PathBuf};

/// Result with [`PipelineError`].
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Everything that can stop a pipeline run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
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
    /// The risk store (SQLite) failed.
    #[error("store {}: {reason}", path.display())]
    Store {
        /// The database file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The Kafka broker refused or could not be reached.
    #[error("kafka ({context}): {reason}")]
    Kafka {
        /// What was being done (brokers, topic).
        context: String,
        /// The cause.
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
    /// The case ledger refused an operation (unknown case, an event out of order).
    #[error("case {case_id}: {reason}")]
    Ledger {
        /// The case.
        case_id: String,
        /// Why it was refused.
        reason: String,
    },
    /// A document template failed to load or render.
    #[error("template {template}: {reason}")]
    Template {
        /// The template file name.
        template: String,
        /// The cause.
        reason: String,
    },
    /// A chart of the supervisors' report could not be drawn.
    #[error("report chart {chart}: {reason}")]
    Chart {
        /// The chart (e.g. `trend`).
        chart: String,
        /// The cause.
        reason: String,
    },
    /// A bug: an invariant did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

impl PipelineError {
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
    /// A refusal of the case ledger about `case_id`.
    pub fn ledger(case_id: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Ledger {
            case_id: case_id.into(),
            reason: reason.into(),
        }
    }
    /// A model error while doing `context`.
    pub fn model(context: impl Into<String>, source: pharmwatch_models::ModelError) -> Self {
        Self::Model {
            context: context.into(),
            source,
        }
    }
    /// Whether retrying the same operation may succeed (transient I/O), as opposed to bad input
    /// or a bug that will fail the same way again.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }
}
