//! `pharmwatch-stream`: the Kafka consumer service (`pharmwatch stream`) and `produce`, which
//! publishes a lake to the event topics.
//!
//! Data flow: event topics (one per kind, JSON as in `schemas/contracts/`, keyed by enterprise
//! credit code) → micro-batches → decode and validate ([`engine::decode`]; rejects to the
//! dead-letter topic) → lake files (the nightly job reads them) → window state and risk events
//! ([`engine::Engine`]) → the risk store and the risk-events topic. The nightly job hands the
//! stream its baselines (`pharmwatch_core::baseline`); [`service`] holds the commit protocol that makes the
//! effect exactly once; [`config`] the file and environment settings.

pub mod config;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod produce;
pub mod service;

pub use error::{Result, StreamError};
