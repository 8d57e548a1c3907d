//! End-to-end tests of the `pharmwatch` binary and the role crates together, in one binary:
//! the nightly closed loop over a simulated province, the credit file, the stream service
//! against a real broker, delivery to real receivers and the acknowledgement pages in
//! Chromium, the dashboards and alert rules against a real Prometheus, and the detection
//! sweep over seeds of a noisy province, the workbench walked through in Chromium, the
//! nightly job over a lake on a real S3-compatible server, and the lake's compaction (a folder
//! and a bucket) with readers running through it; crashes at the named fault points; and the
//! corpus of malformed input at every entry point.
#![allow(clippy::unwrap_used)]

mod bad_input;
mod closed_loop;
mod common;
mod compact;
mod credit;
mod dashboards;
mod delivery;
mod faults;
mod inspection;
mod object_lake;
mod penalty;
mod stream;
mod sweep;
mod workbench_walk;
