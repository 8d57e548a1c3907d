//! Real time: the Kafka consumer service (`pharmwatch stream`).
//!
//! Data flow: event topics (one per kind, JSON as in `schemas/contracts/`, keyed by enterprise
//! credit code) → micro-batches → decode and validate ([`engine::decode`]; rejects to the
//! dead-letter topic) → lake files (the nightly job reads them) → window state and risk events
//! ([`engine::Engine`]) → the risk store and the risk-events topic. The nightly job hands the
//! stream its baselines ([`baseline`]); [`service`] holds the commit protocol that makes the
//! effect exactly once; [`config`] the file and environment settings.

pub mod baseline;
pub mod config;
pub mod engine;
pub mod service;
