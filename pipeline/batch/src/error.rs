//! The batch crate's error: the core's, the casework's (the closed loop runs in the night) and the report's charts.

use pharmwatch_core::error::{CoreError, ErrorClass};

/// Result with [`BatchError`].
pub type Result<T, E = BatchError> = std::result::Result<T, E>;

/// Everything that can go wrong in this crate: the core's errors, and its own.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// An error of the core (store, files, queries, configuration …).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An error of the case ledger or a document (the night's closed loop).
    #[error(transparent)]
    Casework(#[from] pharmwatch_casework::CaseworkError),
    /// The report's template failed to render.
    #[error("template {template}: {source:#}")]
    Template {
        /// The template file name.
        template: String,
        /// The template engine's error.
        #[source]
        source: minijinja::Error,
    },
    /// A chart of the supervisors' report could not be drawn.
    #[error("report chart {chart}: {reason}")]
    Chart {
        /// The chart (e.g. `trend`).
        chart: String,
        /// The drawing backend's message.
        reason: String,
    },
}

impl BatchError {
    /// What a caller should do about the error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Core(e) => e.class(),
            Self::Casework(e) => e.class(),
            Self::Chart { .. } | Self::Template { .. } => ErrorClass::Bug,
        }
    }
}

impl From<pharmwatch_regulation::Error> for BatchError {
    /// A calendar or rules error, as the core reports it.
    fn from(e: pharmwatch_regulation::Error) -> Self {
        Self::Core(CoreError::Calendar(e))
    }
}
