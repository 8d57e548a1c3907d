//! The serve crate's error: the core's, the casework's and the page template's.

use pharmwatch_core::error::{CoreError, ErrorClass};

/// Result with [`ServeError`].
pub type Result<T, E = ServeError> = std::result::Result<T, E>;

/// Everything that can go wrong in this crate: the core's errors, and its own.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// An error of the core (store, files, queries, configuration …).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An error of the casework (the ledger, a link, guidance).
    #[error(transparent)]
    Casework(#[from] pharmwatch_casework::CaseworkError),
    /// An account operation was refused (unknown role, weak password, missing scope …).
    #[error("account {username}: {reason}")]
    Account {
        /// The account.
        username: String,
        /// Why.
        reason: String,
    },
    /// The page template failed to load.
    #[error("template {template}: {source}")]
    Template {
        /// The template file name.
        template: String,
        /// The template engine's error.
        #[source]
        source: minijinja::Error,
    },
}

impl ServeError {
    /// What a caller should do about the error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Core(e) => e.class(),
            Self::Casework(e) => e.class(),
            Self::Template { .. } => ErrorClass::Bug,
            Self::Account { .. } => ErrorClass::BadInput,
        }
    }
}
