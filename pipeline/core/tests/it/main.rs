//! Integration tests of `pharmwatch-core`, in one binary (STYLE.md):
//!
//! - [`features`]: the anomaly model's feature query on small provinces built in the test.
//! - [`sql`]: the golden tests of the indicator SQL, `pipeline/sql/indicators/*.slt`, run by the
//!   `sqllogictest` runner over DataFusion with the run bound as the nightly job binds it.

mod features;
mod sql;
