//! The delivery crate's error: the core's and the casework's (links, documents); a failed send is not an error but an outcome of the attempt.

use pharmwatch_core::error::{CoreError, ErrorClass};

/// Result with [`DeliveryError`].
pub type Result<T, E = DeliveryError> = std::result::Result<T, E>;

/// Everything that can go wrong in this crate: the core's errors, and its own.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// An error of the core (store, files, queries, configuration …).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An error of the casework (a signed link, a document).
    #[error(transparent)]
    Casework(#[from] pharmwatch_casework::CaseworkError),
}

impl DeliveryError {
    /// What a caller should do about the error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Core(e) => e.class(),
            Self::Casework(e) => e.class(),
        }
    }
}
