//! The library side of the command line's error: what `demo` and `model` (the library
//! functions the commands call) can meet — the core's errors, the nightly job's and the
//! workbench's. The binary
//! itself reports with `anyhow`.

use pharmwatch_batch::BatchError;
use pharmwatch_core::error::{CoreError, ErrorClass};

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the library side of the command line can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error of the core.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An error of the nightly job.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// An error of the workbench (the demo's accounts).
    #[error(transparent)]
    Serve(#[from] pharmwatch_serve::ServeError),
}

impl From<pharmwatch_casework::CaseworkError> for Error {
    fn from(e: pharmwatch_casework::CaseworkError) -> Self {
        Self::Serve(e.into())
    }
}

impl Error {
    /// What a caller should do about the error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Core(e) => e.class(),
            Self::Batch(e) => e.class(),
            Self::Serve(e) => e.class(),
        }
    }
}
