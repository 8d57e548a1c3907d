//! `pharmwatch-sim`: the province simulator (a lake with planted anomalies and their labels)
//! and the evaluation of a risk list against those labels.

pub mod evaluate;
pub mod simulate;
