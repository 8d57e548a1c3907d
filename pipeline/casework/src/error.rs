//! The casework crate's error: the core's, the case ledger's refusals and the document templates'.

use pharmwatch_core::error::{CoreError, ErrorClass};

/// Result with [`CaseworkError`].
pub type Result<T, E = CaseworkError> = std::result::Result<T, E>;

/// Everything that can go wrong in this crate: the core's errors, and its own.
#[derive(Debug, thiserror::Error)]
pub enum CaseworkError {
    /// An error of the core (store, files, queries, configuration …).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The case ledger refused an operation (unknown case, an event out of order).
    #[error("case {case_id}: {reason}")]
    Ledger {
        /// The case.
        case_id: String,
        /// Why it was refused.
        reason: String,
    },
    /// A document template failed to load or render.
    #[error("template {template}: {source:#}")]
    Template {
        /// The template file name.
        template: String,
        /// The template engine's error.
        #[source]
        source: minijinja::Error,
    },
}

impl CaseworkError {
    /// A refusal of the case ledger about `case_id`.
    pub fn ledger(case_id: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Ledger {
            case_id: case_id.into(),
            reason: reason.into(),
        }
    }

    /// What a caller should do about the error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Core(e) => e.class(),
            Self::Ledger { .. } => ErrorClass::BadInput,
            Self::Template { .. } => ErrorClass::Bug,
        }
    }
}

impl From<pharmwatch_regulation::Error> for CaseworkError {
    /// A calendar or rules error, as the core reports it.
    fn from(e: pharmwatch_regulation::Error) -> Self {
        Self::Core(CoreError::Calendar(e))
    }
}
