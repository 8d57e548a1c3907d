//! Evaluation of a risk list against the simulator's labels: precision and recall per kind.
//!
//! An injected anomaly (label) is **found** when a risk list of a business day inside its
//! window lists its enterprise with an item of the same kind. A hit — one enterprise, kind and
//! day on the risk list — is a **false alarm** when no label of that enterprise and kind covers
//! that day. Only labels whose window overlaps the risk list's days are counted (the rest are
//! reported as out of range).
//!
//! The anomaly model is judged the same way through its indicator `model_anomaly`: a
//! `subtle_diversion` label (the kind no rule is meant to catch) is found when the model lists
//! its enterprise on a day of its window. The `model_anomaly` row counts a hit as true when
//! any planted anomaly of that enterprise covers the day (the model is not told kinds); the
//! `subtle_diversion` row shows the same hits but counts only those covered by a
//! subtle-diversion label as true — the strict precision for that kind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::NaiveDate;
use serde::Serialize;

use crate::simulate::Label;
use pharmwatch_core::error::{CoreError, Result};
use pharmwatch_core::risk::CsvRow;

/// The model's indicator.
pub const MODEL: &str = "model_anomaly";
/// The planted kind only the model is meant to find.
pub const SUBTLE: &str = "subtle_diversion";

/// Scores of one kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KindScore {
    /// Kind (indicator or label kind).
    pub kind: String,
    /// Labels in range.
    pub labels: usize,
    /// Labels found.
    pub found: usize,
    /// Distinct (enterprise, day) hits of the kind.
    pub hits: usize,
    /// Hits covered by a label.
    pub true_hits: usize,
}

impl KindScore {
    /// Recall = found / labels (1 when there are no labels).
    pub fn recall(&self) -> f64 {
        if self.labels == 0 {
            1.0
        } else {
            self.found as f64 / self.labels as f64
        }
    }
    /// Precision = true hits / hits (1 when there are no hits).
    pub fn precision(&self) -> f64 {
        if self.hits == 0 {
            1.0
        } else {
            self.true_hits as f64 / self.hits as f64
        }
    }
}

/// The evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// First day of the risk list.
    pub from: NaiveDate,
    /// Last day of the risk list.
    pub to: NaiveDate,
    /// Per kind, sorted by name.
    pub kinds: Vec<KindScore>,
    /// Labels outside the risk list's days.
    pub labels_out_of_range: usize,
}

impl Evaluation {
    /// Score of one kind.
    pub fn kind(&self, kind: &str) -> Option<&KindScore> {
        self.kinds.iter().find(|k| k.kind == kind)
    }
}

/// Evaluates risk-list rows against labels over `[from, to]`.
pub fn evaluate(
    rows: &[CsvRow],
    labels: &[Label],
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Evaluation> {
    // (enterprise, kind) → days listed.
    let mut listed: BTreeMap<(String, String), BTreeSet<NaiveDate>> = BTreeMap::new();
    for r in rows {
        let items = r.parse_items().map_err(|e| {
            CoreError::Config(format!(
                "risk list row {} {}: items are not valid JSON: {e}",
                r.date, r.enterprise_id
            ))
        })?;
        for i in items {
            listed
                .entry((r.enterprise_id.clone(), i.indicator))
                .or_default()
                .insert(r.date);
        }
    }
    // Indicators that find a label of a kind.
    let finders =
        |kind: &str| -> &'static [&'static str] { if kind == SUBTLE { &[MODEL] } else { &[] } };
    let in_range: Vec<&Label> = labels
        .iter()
        .filter(|l| l.end_date >= from && l.start_date <= to)
        .collect();
    let mut kinds: BTreeMap<String, KindScore> = BTreeMap::new();
    for l in &in_range {
        let k = kinds.entry(l.kind.clone()).or_insert_with(|| KindScore {
            kind: l.kind.clone(),
            ..KindScore::default()
        });
        k.labels += 1;
        let listed_as = |kind: &str| {
            listed
                .get(&(l.enterprise_id.clone(), kind.to_string()))
                .is_some_and(|days| days.range(l.start_date..=l.end_date).next().is_some())
        };
        let found = listed_as(&l.kind) || finders(&l.kind).iter().any(|k| listed_as(k));
        if found {
            k.found += 1;
        }
    }
    for ((ent, kind), days) in &listed {
        let k = kinds.entry(kind.clone()).or_insert_with(|| KindScore {
            kind: kind.clone(),
            ..KindScore::default()
        });
        for d in days {
            k.hits += 1;
            let covered = labels.iter().any(|l| {
                &l.enterprise_id == ent
                    && (&l.kind == kind || kind == MODEL)
                    && l.start_date <= *d
                    && *d <= l.end_date
            });
            if covered {
                k.true_hits += 1;
            }
        }
    }
    // The subtle kind's precision: the model's hits, true only under a subtle label.
    if kinds.contains_key(MODEL) {
        let mut hits = 0;
        let mut true_hits = 0;
        for ((ent, kind), days) in &listed {
            if kind != MODEL {
                continue;
            }
            for d in days {
                hits += 1;
                if labels.iter().any(|l| {
                    &l.enterprise_id == ent
                        && l.kind == SUBTLE
                        && l.start_date <= *d
                        && *d <= l.end_date
                }) {
                    true_hits += 1;
                }
            }
        }
        let k = kinds
            .entry(SUBTLE.to_string())
            .or_insert_with(|| KindScore {
                kind: SUBTLE.to_string(),
                ..KindScore::default()
            });
        k.hits = hits;
        k.true_hits = true_hits;
    }
    Ok(Evaluation {
        from,
        to,
        kinds: kinds.into_values().collect(),
        labels_out_of_range: labels.len() - in_range.len(),
    })
}

/// Evaluates the risk list CSV at `risk_list` against `labels`; the range comes from the
/// `run.json` beside the risk list, else from the rows' dates.
pub fn evaluate_files(risk_list: &Path, labels: &Path) -> Result<Evaluation> {
    let rows = pharmwatch_core::risk::read_csv(risk_list)?;
    let labels = crate::simulate::read_labels(labels)?;
    let range = risk_list
        .parent()
        .and_then(pharmwatch_batch::nightly::read_run);
    let (from, to) = match range {
        Some(r) => r,
        None => {
            let from = rows.iter().map(|r| r.date).min();
            let to = rows.iter().map(|r| r.date).max();
            match (from, to) {
                (Some(f), Some(t)) => (f, t),
                _ => {
                    return Err(CoreError::Config(format!(
                        "{}: empty risk list and no run.json beside it: cannot tell which days it covers",
                        risk_list.display()
                    )));
                }
            }
        }
    };
    evaluate(&rows, &labels, from, to)
}

/// The evaluation as a table.
pub fn report(e: &Evaluation) -> String {
    let mut s = format!(
        "Evaluation of the risk list {} … {} against planted anomalies\n",
        e.from, e.to
    );
    s.push_str(&format!(
        "{:<22} {:>6} {:>6} {:>7} {:>6} {:>6} {:>9}\n",
        "kind", "labels", "found", "recall", "hits", "false", "precision"
    ));
    for k in &e.kinds {
        s.push_str(&format!(
            "{:<22} {:>6} {:>6} {:>7.2} {:>6} {:>6} {:>9.2}\n",
            k.kind,
            k.labels,
            k.found,
            k.recall(),
            k.hits,
            k.hits - k.true_hits,
            k.precision()
        ));
    }
    if e.labels_out_of_range > 0 {
        s.push_str(&format!(
            "({} labels fall outside the risk list's days and are not counted)\n",
            e.labels_out_of_range
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use pharmwatch_core::risk::RiskItem;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 10, day).unwrap()
    }

    fn row(ent: &str, day: u32, kinds: &[&str]) -> CsvRow {
        let items: Vec<RiskItem> = kinds
            .iter()
            .map(|k| RiskItem {
                indicator: k.to_string(),
                product_id: None,
                product_name: None,
                window_start: d(day),
                window_end: d(day),
                observed: 1.0,
                expected: 0.0,
                reason: String::new(),
                evidence: String::new(),
                severity: 0.5,
            })
            .collect();
        CsvRow {
            list_id: String::new(),
            date: d(day),
            rank: 1,
            enterprise_id: ent.into(),
            enterprise_name: String::new(),
            enterprise_type: String::new(),
            region_code: String::new(),
            region_name: String::new(),
            licence_no: String::new(),
            credit_grade: "A".into(),
            score: 50.0,
            grade: "C".into(),
            indicators: String::new(),
            top_reason: String::new(),
            responsible_unit: String::new(),
            status: String::new(),
            rule_version: String::new(),
            anomaly_score: None,
            anomaly_percentile: None,
            anomaly_reasons: String::new(),
            reference_credit_grade: "A".into(),
            credit_reasons: String::new(),
            items: serde_json::to_string(&items).unwrap(),
        }
    }

    fn label(ent: &str, kind: &str, a: u32, b: u32) -> Label {
        Label {
            enterprise_id: ent.into(),
            product_id: String::new(),
            kind: kind.into(),
            start_date: d(a),
            end_date: d(b),
        }
    }

    #[test]
    fn found_and_false_alarms_follow_the_definitions() {
        let labels = vec![
            label("E1", "sales_spike", 10, 11),
            label("E2", "sales_spike", 12, 12),
            label("E3", "expired_batch_sold", 1, 2), // out of range
        ];
        let rows = vec![
            row("E1", 11, &["sales_spike"]),
            row("E1", 13, &["sales_spike"]), // after the window: false alarm
            row("E9", 12, &["sales_spike", "price_below_median"]),
        ];
        let e = evaluate(&rows, &labels, d(10), d(20)).unwrap();
        let s = e.kind("sales_spike").unwrap();
        assert_eq!((s.labels, s.found, s.hits, s.true_hits), (2, 1, 3, 1));
        assert!((s.recall() - 0.5).abs() < 1e-9);
        let p = e.kind("price_below_median").unwrap();
        assert_eq!((p.labels, p.hits, p.true_hits), (0, 1, 0));
        assert_eq!(p.precision(), 0.0);
        assert_eq!(e.labels_out_of_range, 1);
    }

    #[test]
    fn the_model_finds_the_subtle_kind_and_is_judged_against_any_label() {
        let labels = vec![
            label("E1", SUBTLE, 10, 14),
            label("E2", SUBTLE, 10, 14),
            label("E3", "inventory_mismatch", 12, 12),
        ];
        let rows = vec![
            row("E1", 12, &[MODEL]),
            row("E3", 12, &[MODEL]), // another kind's anomaly: true for the model
            row("E4", 12, &[MODEL]), // nothing planted: false
        ];
        let e = evaluate(&rows, &labels, d(10), d(20)).unwrap();
        let m = e.kind(MODEL).unwrap();
        assert_eq!((m.hits, m.true_hits), (3, 2));
        let s = e.kind(SUBTLE).unwrap();
        assert_eq!((s.labels, s.found), (2, 1), "E1 found, E2 missed");
        assert_eq!(
            (s.hits, s.true_hits),
            (3, 1),
            "strict: only E1's hit is subtle"
        );
        let i = e.kind("inventory_mismatch").unwrap();
        assert_eq!(i.found, 0, "a model hit does not find a rule kind");
    }
}
