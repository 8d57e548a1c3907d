//! `pharmwatch-core`: what every role of pharmwatch needs and nothing role-specific.
//!
//! - [`config`]: the one layered configuration loader (defaults → `pharmwatch.toml` →
//!   `PHARMWATCH__SECTION__KEY`);
//! - [`error`]: the error of the crate, with its classification (retry, bad input, bug);
//! - [`store`]: the risk store (SQLite), its migrations; [`calendar_store`]: the working-day
//!   calendar years operators load into it;
//! - [`lake`]: the Parquet lake partitioned by kind and business day; [`lake_index`]: its
//!   files' identities and the days they hold, for change detection; [`ingest`]: input files
//!   (CSV, NDJSON, Parquet) decoded and validated into lake batches, rejects to the dead letter;
//!   [`compact`]: a partition's files merged into one, swapped in atomically for readers;
//!   [`table`]: numeric tables for the anomaly model;
//! - [`query`]: the DataFusion session and its helpers; [`indicators`]: the indicator SQL and
//!   its thresholds; [`anomaly`]: the model's features, training, scoring and artifact;
//!   [`risk`]: scoring and grading into the risk list; [`baseline`]: the stream's starting
//!   windows handed over by the nightly job;
//! - [`contacts`]: the enterprises' registered leads and channels;
//! - [`display`]: HTML escaping and Chinese labels; [`regions`]: the province's regions;
//! - [`metrics`]: the metric builder, exposition and textfile writer every component uses;
//!   [`progress`]: progress bars.

pub mod anomaly;
pub mod baseline;
pub mod calendar_store;
pub mod compact;
pub mod config;
pub mod contacts;
pub mod db;
pub mod display;
pub mod error;
pub mod fasthash;
pub mod faults;
pub mod ids;
pub mod indicators;
pub mod ingest;
pub mod lake;
pub mod lake_index;
pub mod metrics;
pub mod pool;
pub mod progress;
pub mod query;
pub mod regions;
pub mod remote_lake;
pub mod risk;
pub mod store;
pub mod table;

pub use error::{CoreError, ErrorClass, Result};
