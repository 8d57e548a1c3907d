//! `pharmwatch-sim`: the province simulator (a lake with planted anomalies and their labels),
//! the evaluation of a risk list against those labels, and the sweep that measures detection
//! per magnitude band across seeds.

pub mod evaluate;
pub mod simulate;
pub mod sweep;
