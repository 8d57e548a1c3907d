//! The real-time warning policy (实时预警推送策略): which risk events are pushed to the flagged
//! enterprise as well as shown to the supervisors, per indicator and grade, and what of their
//! evidence an enterprise may read.
//!
//! Invariants: the policy lives in the store (`warning_policy`, migration 50) and the outbox
//! trigger reads it in the very transaction that inserts the risk event, so an event of a
//! supervisors-only pair never gets a delivery row; by default the diversion, special-drug and
//! duplicated-trace-code signals stay with the supervisors at every grade; evidence sent to an
//! enterprise never names another enterprise ([`redact_evidence`]).

use std::collections::BTreeMap;

use pharmwatch_core::params;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use pharmwatch_core::store::{Store, sql_err};

/// The `[delivery.warnings]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarningPolicy {
    /// Indicators whose warnings stay with the supervisors at every grade.
    pub supervisors_only: Vec<String>,
    /// Per indicator, the only grades at which its warning also goes to the enterprise (the
    /// other grades stay with the supervisors); indicators not named go to the enterprise at
    /// every grade unless listed in `supervisors_only`.
    pub enterprise_grades: BTreeMap<String, Vec<String>>,
}

impl Default for WarningPolicy {
    fn default() -> Self {
        Self {
            supervisors_only: [
                "sold_not_bought",
                "purchase_spike",
                "special_drug_volume",
                "trace_code_duplicate",
            ]
            .map(str::to_string)
            .to_vec(),
            enterprise_grades: BTreeMap::new(),
        }
    }
}

const GRADES: [&str; 4] = ["A", "B", "C", "D"];

impl WarningPolicy {
    /// The (indicator, grade) pairs that stay with the supervisors.
    pub fn supervisors_only_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for i in &self.supervisors_only {
            pairs.extend(GRADES.iter().map(|g| (i.clone(), (*g).to_string())));
        }
        for (i, grades) in &self.enterprise_grades {
            if self.supervisors_only.contains(i) {
                continue;
            }
            pairs.extend(
                GRADES
                    .iter()
                    .filter(|g| !grades.iter().any(|x| x == *g))
                    .map(|g| (i.clone(), (*g).to_string())),
            );
        }
        pairs
    }

    /// Whether a warning of `indicator` at `grade` goes to the enterprise.
    pub fn to_enterprise(&self, indicator: &str, grade: &str) -> bool {
        !self
            .supervisors_only_pairs()
            .iter()
            .any(|(i, g)| i == indicator && g == grade)
    }

    /// Refuses a grade that is not A–D.
    pub fn validate(&self) -> pharmwatch_core::Result<()> {
        for (i, grades) in &self.enterprise_grades {
            if let Some(g) = grades.iter().find(|g| !GRADES.contains(&g.as_str())) {
                return Err(pharmwatch_core::CoreError::InvalidField {
                    field: format!("warnings.enterprise_grades.{i}"),
                    reason: format!("grade `{g}` is not one of A, B, C, D"),
                });
            }
        }
        Ok(())
    }

    /// Writes the policy into the store (replacing the one there), in one transaction.
    pub fn apply(&self, store: &mut Store) -> Result<()> {
        let path = store.path().to_path_buf();
        let tx = store
            .conn()
            .transaction()
            .map_err(|e| sql_err(&path, "begin warning policy", e))?;
        tx.execute("DELETE FROM warning_policy", [])
            .map_err(|e| sql_err(&path, "warning policy", e))?;
        for (i, g) in self.supervisors_only_pairs() {
            tx.execute(
                "INSERT INTO warning_policy (indicator, grade) VALUES (?1, ?2)
                 ON CONFLICT DO NOTHING",
                params![i, g],
            )
            .map_err(|e| sql_err(&path, "warning policy", e))?;
        }
        tx.commit()
            .map_err(|e| sql_err(&path, "commit warning policy", e))?;
        Ok(())
    }
}

/// The evidence of a warning as the enterprise `own` may read it: `key=value` pairs whose key
/// names another party (seller, buyer, supplier, enterprise) or whose value carries another
/// enterprise's credit code are left out, and the count of what was left out is said.
pub fn redact_evidence(evidence: &str, own: &str) -> String {
    let names_other = |k: &str, v: &str| {
        let k = k.to_ascii_lowercase();
        let party = [
            "seller",
            "buyer",
            "supplier",
            "enterprise",
            "customer",
            "counterpart",
        ]
        .iter()
        .any(|p| k.contains(p));
        let other_code = v.split(|c: char| !c.is_ascii_alphanumeric()).any(|t| {
            t.len() == 18 && t != own && pharmwatch_schemas::ids::validate_credit_code(t).is_ok()
        });
        (party && !v.contains(own)) || other_code
    };
    let mut kept = Vec::new();
    let mut dropped = 0;
    for part in evidence.split(';').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or(("", part));
        if names_other(k, v) {
            dropped += 1;
        } else {
            kept.push(part.trim().to_string());
        }
    }
    let mut out = kept.join("; ");
    if dropped > 0 {
        out.push_str(&format!("（另有 {dropped} 项涉及其他企业的信息不予推送）"));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_default_keeps_diversion_special_drugs_and_trace_codes_with_the_supervisors() {
        let p = WarningPolicy::default();
        for i in [
            "sold_not_bought",
            "purchase_spike",
            "special_drug_volume",
            "trace_code_duplicate",
        ] {
            for g in GRADES {
                assert!(!p.to_enterprise(i, g), "{i} {g}");
            }
        }
        assert!(p.to_enterprise("expired_batch_sold", "D"));
        let only_high = WarningPolicy {
            enterprise_grades: [("sales_spike".to_string(), vec!["C".into(), "D".into()])].into(),
            ..WarningPolicy::default()
        };
        assert!(!only_high.to_enterprise("sales_spike", "B"));
        assert!(only_high.to_enterprise("sales_spike", "D"));
        let bad = WarningPolicy {
            enterprise_grades: [("sales_spike".to_string(), vec!["E".into()])].into(),
            ..WarningPolicy::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn evidence_never_names_another_enterprise() {
        let own = pharmwatch_schemas::ids::make_credit_code('9', '1', "150100", 1).unwrap();
        let other = pharmwatch_schemas::ids::make_credit_code('9', '1', "150200", 2).unwrap();
        let e = format!("code=8123;first_sold=2026-03-01;first_seller={other}");
        let r = redact_evidence(&e, &own);
        assert!(
            !r.contains(&other) && r.contains("code=8123") && r.contains("1 项"),
            "{r}"
        );
        let e = format!("batch=B1;note=bought from {other}");
        assert!(!redact_evidence(&e, &own).contains(&other));
        let e = format!("opening=20;inflow=0;sold=2;enterprise={own}");
        assert_eq!(
            redact_evidence(&e, &own),
            format!("opening=20; inflow=0; sold=2; enterprise={own}")
        );
    }
}
