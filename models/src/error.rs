//! The models crate's error type: every failure names what it concerns (a column, a
//! detector, the artifact) and why.

/// Errors of fitting, scoring and reading models.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The table has no rows to fit on.
    #[error("cannot fit a model on an empty table (no rows)")]
    EmptyTable,
    /// Too few rows for the detectors.
    #[error("cannot fit a model on {rows} rows: at least {min} are needed")]
    TooFewRows {
        /// Rows given.
        rows: usize,
        /// Rows needed.
        min: usize,
    },
    /// No usable feature column.
    #[error("no usable feature column: {0}")]
    NoFeatures(String),
    /// A column the model needs is absent from the table.
    #[error("column '{column}' is missing from the table (the model was trained with it)")]
    MissingColumn {
        /// Column name.
        column: String,
    },
    /// The matrix does not have the model's width.
    #[error("the table has {got} feature columns but the model expects {expected}")]
    Width {
        /// Columns the model was trained on.
        expected: usize,
        /// Columns given.
        got: usize,
    },
    /// A detector could not be fitted.
    #[error("detector {detector}: {reason}")]
    Fit {
        /// Detector name.
        detector: &'static str,
        /// Why.
        reason: String,
    },
    /// An unknown detector name.
    #[error("unknown detector '{0}' (known: mahalanobis, kmeans, gmm, pca, iforest)")]
    UnknownDetector(String),
    /// The artifact is of another format version.
    #[error(
        "model artifact format {found} is not supported (this build reads format {supported}); \
         retrain it with `pharmwatch model train` or a nightly run without --model \
         (format 1 flagged a fixed share of its training rows; format 2 calibrates flags \
         to a false-alarm rate and cannot be derived from it)"
    )]
    Format {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// A model artifact whose parameters cannot be scored (damaged or hand-edited).
    #[error("the model artifact is damaged: detector {detector}: {reason}; retrain it")]
    Artifact {
        /// Detector name.
        detector: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A segment the model set does not have.
    #[error("the model has no segment '{segment}' (segments: {known})")]
    UnknownSegment {
        /// Segment asked for.
        segment: String,
        /// Segments present.
        known: String,
    },
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, ModelError>;
