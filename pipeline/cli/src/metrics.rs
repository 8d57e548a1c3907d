//! Every metric family pharmwatch defines, from every component — the one list the dashboards
//! and alert rules are checked against (a test fails when a panel queries a name not here).

pub use pharmwatch_core::metrics::{Family, FamilyType};

/// Every family: the stream's, the delivery worker's, serve's, the nightly job's, the store's
/// and the lake compaction's.
pub fn defined() -> Vec<Family> {
    let mut v = pharmwatch_stream::metrics::StreamMetrics::new().families;
    v.extend(pharmwatch_delivery::metrics::DeliveryMetrics::new().families);
    v.extend(pharmwatch_serve::metrics::ServeMetrics::new().families);
    v.extend(pharmwatch_batch::metrics::NightlyMetrics::new().families);
    v.extend(pharmwatch_core::metrics::StoreMetrics::new().0.families);
    v.extend(crate::compact::CompactionMetrics::new().0.families);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_unique_prefixed_and_never_labelled_by_enterprise() {
        let all = defined();
        let mut names: Vec<&str> = all.iter().map(|f| f.name.as_str()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a family is defined twice");
        for f in &all {
            assert!(f.name.starts_with("pharmwatch_"), "{}", f.name);
            if f.kind == FamilyType::Counter {
                assert!(f.name.ends_with("_total"), "{}", f.name);
            }
            for l in &f.labels {
                assert!(
                    !l.contains("enterprise_id") && l != "case_id",
                    "{}: {l}",
                    f.name
                );
            }
        }
    }
}
