//! The casework crate's integration tests, in one binary: the case ledger (append-only events,
//! the closed loop through the measures functions, escalation, gap-free numbering, deadlines
//! pending the calendar) and the enterprise's guidance.
#![allow(clippy::unwrap_used)]

mod common;
mod credit_repair;
mod guidance;
mod ledger;
mod penalty;
