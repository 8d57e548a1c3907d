//! `pharmwatch-casework`: what follows a risk list — the case ledger (案件台账), the documents
//! with legal force (numbering, rendering, issuing), the enterprise's guidance and credit
//! file, the nightly closed loop, the measures engine behind the command line, the signed
//! links of service (送达) and the record of deliveries.
//!
//! - [`ledger`]: cases, measures, deadlines and the append-only event trail;
//! - [`kinds`]: the eight kinds of document; [`notices`]: their numbers, rendering and
//!   templates;
//! - [`drafts`]: documents proposed by the system, edited and submitted by an inspector,
//!   approved by an approver before a number is taken; [`audit`]: the trail of every action;
//! - [`guidance`]: what applies to one enterprise; [`credit`]: its safety credit file;
//! - [`inspection`]: risk-weighted random inspection plans (双随机) and their checklists;
//! - [`penalty`]: a referred case's penalty procedure, its stages and statutory clocks;
//! - [`closedloop`]: the nightly sweep and the notices of the risk list;
//! - [`measures`]: findings to decisions, the rules and the deployment's calendar;
//! - [`links`]: signed acknowledgement and guidance links, their keyring; [`revocation`]: the
//!   links of one document revoked; [`service`]: the record of service
//!   (acknowledgements, deliveries as supervisors see them).

pub mod audit;
pub mod closedloop;
pub mod credit;
pub mod drafts;
pub mod error;
pub mod guidance;
pub mod inspection;
pub mod kinds;
pub mod ledger;
pub mod links;
pub mod measures;
pub mod notices;
pub mod penalty;
pub mod revocation;
pub mod service;

pub use error::{CaseworkError, Result};
