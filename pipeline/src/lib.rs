//! `pharmwatch`: risk early warning for drug supervision.
//!
//! Records from the smart-supervision platform (production, sales, purchases, inventory, tests,
//! inspections) land in a Parquet lake; windowed DataFusion SQL computes risk indicators per
//! enterprise × product × day; hits are scored into the daily risk list (风险清单) with their
//! evidence. The crate holds the pipeline stages, the province simulator and the CLI.
//!
//! Module map (data flow order): [`simulate`] writes a lake; [`ingest`] reads input files;
//! [`lake`] reads and writes partitions; [`indicators`] runs the SQL; [`risk`] scores and
//! writes the risk list; [`nightly`] ties them together; [`evaluate`] checks a risk list
//! against planted anomalies; [`demo`] runs it all; [`calendar`] counts working days.

pub mod calendar;
pub mod demo;
pub mod error;
pub mod evaluate;
pub mod indicators;
pub mod ingest;
pub mod lake;
pub mod nightly;
pub mod progress;
pub mod risk;
pub mod simulate;

pub use error::{PipelineError, Result};
