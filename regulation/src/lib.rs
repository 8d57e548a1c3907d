//! `pharmwatch-regulation`: the working-day calendar and the regulatory measures engine.
//!
//! What a supervisor does after an inspection or a remote warning is set by regulation: the
//! Jiangxi regulation on measures after a distribution inspection (cited `赣药监 第N条`) gives
//! the ladder deadline rectification → caution → interview → sales suspension with its
//! thresholds and working-day deadlines; the Inner Mongolia inclusive-supervision measures
//! (cited `蒙药监 (N)`) add the low-risk, key-monitoring and fault-tolerance lists, the
//! observation period and the exemptions. This crate turns a [`Finding`] into a [`Decision`]
//! (measures with their articles and due dates) and sweeps open cases ([`escalate`]).
//!
//! - [`calendar`]: working days from a holiday CSV (embedded 2025–2026 default), and the year
//!   files an operator adds when the State Council publishes the next year; a date outside the
//!   covered years is never guessed.
//! - [`rules`]: every threshold, deadline, condition flag and citation, from TOML (embedded
//!   default); a province's file cites its own regulations (`[articles]`).
//! - [`finding`]: the finding wire format and its validation.
//! - [`deadline`]: the deadlines of the regulation, in working days, as counts that resolve to
//!   a date or wait for the next year's calendar.
//! - [`decide`](mod@decide): the decision engine and the ledger sweep.
//!
//! The crate is pure and synchronous: no I/O except reading the files it is given by path, no
//! async runtime. Errors are one enum, [`Error`], whose variants name the file and line or the
//! field they are about.

pub mod calendar;
pub mod codes;
pub mod deadline;
pub mod decide;
pub mod error;
pub mod finding;
pub mod penalty;
pub mod rules;

pub use calendar::{Calendar, CalendarYear, DayClass, DayKind, SpecialDay};
pub use codes::{MeasureCode, MeasureKind, RiskGrade};
pub use deadline::{DuePending, Resolution, WorkingDayCount, resolve_earliest};
pub use decide::{
    CaseState, Decision, FollowUp, FollowUpCode, Measure, OpenMeasure, SWEEP_DATE, cites, decide,
    decide_json, escalate,
};
pub use error::{Error, Result};
pub use finding::{AfterRectification, Defects, Finding, FindingError, Harm, parse_findings};
pub use rules::{Articles, CreditRules, DocumentRules, Rules};
