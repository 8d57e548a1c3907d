//! `pharmwatch-batch`: the nightly job — the day's risk list from the lake, the anomaly
//! model, the closed loop over the case ledger — and the supervisors' daily report
//! (`report.html`, charts drawn with plotters); and the inspection plan's gathering of grades
//! and scales (`inspect`).

pub mod days;
pub mod error;
pub mod inspect;
pub mod metrics;
pub mod nightly;
pub mod report;
pub mod summary;

pub use error::{BatchError, Result};
