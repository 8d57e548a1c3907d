//! `pharmwatch-models`: anomaly detection for pharmwatch — pure, synchronous, no I/O.
//!
//! Pipeline of a model: [`scale`] standardises feature columns robustly; [`detectors`] fit
//! several detector families (linfa k-means and Gaussian mixture; PCA and a robust Mahalanobis distance on linfa-linalg;
//! an isolation forest written here); [`calibrate`] maps each detector's raw score
//! to a common scale against its training distribution; [`model`] combines them into one
//! ensemble score with a percentile and a per-feature explanation, and is the serde artifact.
//! [`metrics`] scores a ranking against labels (ROC-AUC, average precision).
//!
//! Invariants: everything is deterministic for a seed; no function panics on NaN, constant
//! columns or empty input — those are either handled (NaN → the column median) or returned
//! as a [`ModelError`] naming what is wrong.

pub mod calibrate;
pub mod detectors;
pub mod error;
pub mod metrics;
pub mod model;
pub mod scale;
pub mod stats;

pub use detectors::{Detector, Family};
pub use error::{ModelError, Result};
pub use model::{Contribution, FitOptions, Model, ModelSet, Scored};
pub use stats::{RobustScale, mad, median};
