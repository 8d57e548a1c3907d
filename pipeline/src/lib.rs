//! `pharmwatch`: risk early warning for drug supervision.
//!
//! Records from the smart-supervision platform (production, sales, purchases, inventory, tests,
//! inspections) land in a Parquet lake; windowed DataFusion SQL computes risk indicators per
//! enterprise × product × day; an anomaly model (crate `pharmwatch-models`) scores each
//! enterprise-day on features from the same lake; hits and model flags are scored into the
//! daily risk list (风险清单) with their evidence. The crate holds the pipeline stages, the
//! province simulator and the CLI.
//!
//! Module map (data flow order): [`simulate`] writes a lake; [`ingest`] reads input files;
//! [`lake`] reads and writes partitions; [`indicators`] runs the SQL; [`anomaly`] computes
//! the model's features, fits and scores it; [`risk`] scores and writes the risk list;
//! [`nightly`] ties them together; [`evaluate`] checks a risk list against planted anomalies;
//! [`demo`] runs it all; [`table`] and [`modelcmd`] serve `pharmwatch model` on any table;
//! [`calendar`] counts working days (over the regulation crate's calendar) and
//! [`calendar_store`] keeps the years operators load in the store, [`regcmd`] serves
//! `pharmwatch calendar` and `pharmwatch measures`; [`stream`] is the real-time service (with [`produce`] to
//! feed it a simulated lake), [`store`] the SQLite risk store both paths write, [`metrics`]
//! every Prometheus metric, [`report`] the supervisors' daily report (`report.html`) and the
//! nightly run's metrics; [`ledger`] is the case ledger and [`guidance`] reads from it what
//! applies to one enterprise (`pharmwatch guidance`); [`contacts`] are the enterprises'
//! registered leads and channels, [`delivery`] pushes notices and risk warnings to them through
//! an outbox and records the service (送达) from signed links.

pub mod anomaly;
pub mod calendar;
pub mod calendar_store;
pub mod closedloop;
pub mod contacts;
pub mod credit;
pub mod delivery;
pub mod demo;
pub mod error;
pub mod evaluate;
pub mod fasthash;
pub mod guidance;
pub mod indicators;
pub mod ingest;
pub mod lake;
pub mod ledger;
pub mod metrics;
pub mod modelcmd;
pub mod nightly;
pub mod notices;
pub mod produce;
pub mod progress;
pub mod regcmd;
pub mod report;
pub mod risk;
pub mod simulate;
pub mod store;
pub mod stream;
pub mod table;

pub use error::{PipelineError, Result};
