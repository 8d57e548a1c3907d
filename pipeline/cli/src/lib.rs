//! `pharmwatch`: the command line's library side and the facade of the role crates.
//!
//! The binary (`src/main.rs`) parses arguments and hands each command to its module under
//! `src/cmd/`. The rest of this crate re-exports the role crates under the module names the
//! end-to-end tests use (as DataFusion's `datafusion` crate re-exports its parts), so a test
//! reads `pharmwatch::ledger` whichever crate the ledger lives in:
//!
//! ```text
//! cli ──► sim ──► { batch, stream, delivery, serve } ──► casework ──► core ──► { regulation, models, schemas }
//! ```

pub mod demo;
pub mod error;
pub mod metrics;
pub mod modelcmd;

pub use error::{Error, Result};
pub use pharmwatch_batch::{days, inspect, nightly, report};
pub use pharmwatch_casework::{
    audit, closedloop, credit, drafts, guidance, inspection, ledger, links, measures, notices,
    penalty, revocation, service,
};
pub use pharmwatch_core::{CoreError, ErrorClass, Result as CoreResult};
pub use pharmwatch_core::{
    anomaly, baseline, calendar_store, compact, config, contacts, display, faults, indicators,
    ingest, lake, progress, query, regions, remote_lake, risk, store, table,
};
pub use pharmwatch_delivery as delivery;
pub use pharmwatch_serve as serve;
pub use pharmwatch_sim::{evaluate, simulate};
pub use pharmwatch_stream as stream;
pub use pharmwatch_stream::produce;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    /// Every example in `config/` parses, table by table, with the loader the commands use
    /// (no environment), and passes each component's checks.
    #[test]
    fn every_example_configuration_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            seen += 1;
            let stream =
                pharmwatch_stream::config::StreamConfig::load_with(Some(&path), Vec::new())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!stream.brokers.is_empty());
            let delivery = pharmwatch_delivery::DeliveryConfig::load_with(&path, Vec::new())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(delivery.contacts.starts_with(&dir));
            let notices: pharmwatch_casework::notices::NoticesConfig =
                crate::config::load_with(Some(&path), Vec::new()).unwrap();
            assert!(notices.authority.is_none_or(|a| a.validate().is_ok()));
            let nightly: pharmwatch_batch::nightly::NightlySettings =
                crate::config::load_with(Some(&path), Vec::new()).unwrap();
            nightly.validate().unwrap();
            let serve: pharmwatch_serve::ServeSettings =
                crate::config::load_with(Some(&path), Vec::new()).unwrap();
            assert!(serve.listen.contains(':'));
            let store: crate::store::StoreConfig =
                crate::config::load_with(Some(&path), Vec::new()).unwrap();
            store.validate().unwrap();
        }
        assert!(seen >= 1, "no example in {}", dir.display());
    }
}
