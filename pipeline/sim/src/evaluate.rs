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
//!
//! **Curves** ([`curves`]) judge the same risk list the way a regulator's data team would,
//! per anomaly kind and magnitude band (the thirds of the kind's
//! [`MagnitudeRange`](crate::simulate::anomalies::MagnitudeRange): band 0 the least obvious,
//! band 2 the most obvious), and count what the list costs innocent enterprises:
//!
//! - A label is **detected with any item** when the risk list lists its enterprise (a row, any
//!   item, any grade) on a day of its window; **with the intended indicator** when one of
//!   those rows carries an item of the label's kind — for `subtle_diversion`, an item of
//!   `model_anomaly`. Labels whose window misses `[from, to]` are not counted; a label without
//!   a magnitude (a file written before magnitudes existed) counts in no band, only in the
//!   kind's `unbanded` figures.
//! - The **false-alarm rate** is the listed enterprise-days of enterprises with no label at
//!   all (in the whole label file, not only in range) ÷ all enterprise-days of those
//!   enterprises in `[from, to]`. An enterprise-day counts in the denominator when the
//!   enterprise is in the reference table and registered on that day: from its `opened_on` to
//!   its `closed_on` where the lake gives them ([`read_registrations`]; an empty or absent date
//!   means registered throughout), so days before an enterprise opens or after it closes are
//!   not days it could be falsely listed on. Every listed day of an unlabelled enterprise counts in
//!   the numerator, whether or not the reference table knows the enterprise.
//! - The **grade C/D share** counts the same listed days whose row grade is C or D (the rows
//!   that draft caution notices), over the same denominator.
//!
//! Invariants: each (enterprise, day) counts once however many items its row has; the figures
//! depend only on the rows, labels and registrations given (no clock, no randomness).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::simulate::Label;
use crate::simulate::anomalies::AnomalyKind;
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
    let (from, to) = list_range(risk_list, &rows)?;
    evaluate(&rows, &labels, from, to)
}

/// The days a risk list covers: from the `run.json` beside it, else from its rows' dates.
fn list_range(risk_list: &Path, rows: &[CsvRow]) -> Result<(NaiveDate, NaiveDate)> {
    if let Some(r) = risk_list
        .parent()
        .and_then(pharmwatch_batch::nightly::read_run)
    {
        return Ok(r);
    }
    let from = rows.iter().map(|r| r.date).min();
    let to = rows.iter().map(|r| r.date).max();
    match (from, to) {
        (Some(f), Some(t)) => Ok((f, t)),
        _ => Err(CoreError::Config(format!(
            "{}: empty risk list and no run.json beside it: cannot tell which days it covers",
            risk_list.display()
        ))),
    }
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

/// Number of magnitude bands (thirds of a kind's range).
pub const BANDS: usize = 3;

/// How far an enterprise was registered: the days it may report on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Enterprise credit code.
    pub enterprise_id: String,
    /// First day registered (`None`: before any evaluated day).
    #[serde(default)]
    pub opened_on: Option<NaiveDate>,
    /// Last day registered (`None`: after every evaluated day).
    #[serde(default)]
    pub closed_on: Option<NaiveDate>,
}

impl Registration {
    /// Days of `[from, to]` on which the enterprise was registered.
    pub fn days_within(&self, from: NaiveDate, to: NaiveDate) -> u64 {
        let a = self.opened_on.map_or(from, |o| o.max(from));
        let b = self.closed_on.map_or(to, |c| c.min(to));
        if b < a {
            0
        } else {
            (b - a).num_days() as u64 + 1
        }
    }
}

/// File (in the lake's root) of the enterprises that open or close during a simulated run:
/// `enterprise_id,opened_on,closed_on`, a date empty where the enterprise neither opens nor
/// closes.
pub const LIFE_FILE: &str = "enterprise_life.csv";

/// The registrations of a lake's enterprises: every enterprise of
/// `reference/enterprises.csv` (its own `opened_on` and `closed_on` columns read where it has
/// them), with the dates of [`LIFE_FILE`] where the lake has one.
pub fn read_registrations(lake: &Path) -> Result<Vec<Registration>> {
    let path = lake
        .join(pharmwatch_core::lake::REFERENCE_DIR)
        .join("enterprises.csv");
    let mut regs: Vec<Registration> = pharmwatch_core::lake::read_csv(&path)?;
    let life = lake.join(LIFE_FILE);
    if life.exists() {
        let dates: BTreeMap<String, Registration> =
            pharmwatch_core::lake::read_csv::<Registration>(&life)?
                .into_iter()
                .map(|r| (r.enterprise_id.clone(), r))
                .collect();
        for r in &mut regs {
            if let Some(l) = dates.get(&r.enterprise_id) {
                r.opened_on = l.opened_on.or(r.opened_on);
                r.closed_on = l.closed_on.or(r.closed_on);
            }
        }
    }
    Ok(regs)
}

/// Labels of one kind and band, and how many of them the risk list detected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detected {
    /// Labels counted.
    pub labels: usize,
    /// Detected with any item.
    pub any_item: usize,
    /// Detected with the intended indicator.
    pub intended: usize,
}

impl Detected {
    fn add(&mut self, any_item: bool, intended: bool) {
        self.labels += 1;
        self.any_item += usize::from(any_item);
        self.intended += usize::from(intended);
    }
}

/// One kind's detection per magnitude band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindCurve {
    /// Label kind.
    pub kind: String,
    /// Per band, 0 = least obvious third … 2 = most obvious third.
    pub bands: [Detected; BANDS],
    /// Labels without a magnitude (in no band).
    pub unbanded: Detected,
}

/// What the risk list costs the enterprises without planted anomalies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FalseAlarms {
    /// Enterprises without any label, registered on at least one evaluated day.
    pub enterprises: usize,
    /// Their registered enterprise-days in the range (the denominator).
    pub enterprise_days: u64,
    /// Their listed enterprise-days.
    pub listed: u64,
    /// Their listed enterprise-days at grade C or D.
    pub listed_cd: u64,
    /// Listed enterprise-days per indicator (a day with two indicators counts for both).
    pub by_indicator: BTreeMap<String, u64>,
}

impl FalseAlarms {
    /// Listed ÷ enterprise-days (0 when there are no enterprise-days).
    pub fn rate(&self) -> f64 {
        ratio(self.listed, self.enterprise_days)
    }
    /// Listed at grade C/D ÷ enterprise-days.
    pub fn rate_cd(&self) -> f64 {
        ratio(self.listed_cd, self.enterprise_days)
    }
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// Detection per kind × magnitude band and the false alarms of one risk list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curves {
    /// First evaluated day.
    pub from: NaiveDate,
    /// Last evaluated day.
    pub to: NaiveDate,
    /// Every planted kind (in [`AnomalyKind::ALL`] order), then unknown kinds by name.
    pub kinds: Vec<KindCurve>,
    /// False alarms on enterprises without labels.
    pub false_alarms: FalseAlarms,
    /// Labels outside `[from, to]`, not counted.
    pub labels_out_of_range: usize,
}

/// The indicator meant to find a label of `kind`: the kind itself for rule kinds, the
/// model's for the subtle kind.
pub fn intended_indicator(kind: &str) -> &str {
    if kind == SUBTLE { MODEL } else { kind }
}

/// One listed enterprise-day: its grade and the indicators of its items.
struct ListedDay {
    grade_cd: bool,
    indicators: BTreeSet<String>,
}

/// The rows of `[from, to]` as enterprise → day → listed day.
fn listed_days(
    rows: &[CsvRow],
    from: NaiveDate,
    to: NaiveDate,
) -> Result<BTreeMap<String, BTreeMap<NaiveDate, ListedDay>>> {
    let mut listed: BTreeMap<String, BTreeMap<NaiveDate, ListedDay>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.date >= from && r.date <= to) {
        let items = r.parse_items().map_err(|e| {
            CoreError::Config(format!(
                "risk list row {} {}: items are not valid JSON: {e}",
                r.date, r.enterprise_id
            ))
        })?;
        let day = listed
            .entry(r.enterprise_id.clone())
            .or_default()
            .entry(r.date)
            .or_insert_with(|| ListedDay {
                grade_cd: false,
                indicators: BTreeSet::new(),
            });
        day.grade_cd |= r.grade == "C" || r.grade == "D";
        day.indicators
            .extend(items.into_iter().map(|i| i.indicator));
    }
    Ok(listed)
}

/// Detection per kind and band, and the false alarms, of risk-list `rows` over `[from, to]`
/// against `labels`; `registrations` are the province's enterprises (see the module doc for
/// the definitions).
pub fn curves(
    rows: &[CsvRow],
    labels: &[Label],
    registrations: &[Registration],
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Curves> {
    let listed = listed_days(rows, from, to)?;
    let mut kinds: BTreeMap<String, KindCurve> = BTreeMap::new();
    let mut out_of_range = 0;
    for l in labels {
        let (a, b) = (l.start_date.max(from), l.end_date.min(to));
        if b < a {
            out_of_range += 1;
            continue;
        }
        let days: Vec<&ListedDay> = listed
            .get(&l.enterprise_id)
            .map(|m| m.range(a..=b).map(|(_, d)| d).collect())
            .unwrap_or_default();
        let intended = intended_indicator(&l.kind);
        let found_intended = days.iter().any(|d| d.indicators.contains(intended));
        let curve = kinds.entry(l.kind.clone()).or_insert_with(|| KindCurve {
            kind: l.kind.clone(),
            bands: [Detected::default(); BANDS],
            unbanded: Detected::default(),
        });
        let band = AnomalyKind::from_name(&l.kind)
            .zip(l.magnitude)
            .map(|(k, m)| k.magnitude_range().band(m));
        let slot = match band {
            Some(b) => &mut curve.bands[b.min(BANDS - 1)],
            None => &mut curve.unbanded,
        };
        slot.add(!days.is_empty(), found_intended);
    }
    for k in AnomalyKind::ALL {
        kinds
            .entry(k.as_str().to_string())
            .or_insert_with(|| KindCurve {
                kind: k.as_str().to_string(),
                bands: [Detected::default(); BANDS],
                unbanded: Detected::default(),
            });
    }
    let order = |name: &str| {
        AnomalyKind::ALL
            .iter()
            .position(|k| k.as_str() == name)
            .unwrap_or(AnomalyKind::ALL.len())
    };
    let mut kinds: Vec<KindCurve> = kinds.into_values().collect();
    kinds.sort_by(|a, b| (order(&a.kind), &a.kind).cmp(&(order(&b.kind), &b.kind)));
    Ok(Curves {
        from,
        to,
        kinds,
        false_alarms: false_alarms(&listed, labels, registrations, from, to),
        labels_out_of_range: out_of_range,
    })
}

/// The false alarms: listed days of enterprises with no label at all.
fn false_alarms(
    listed: &BTreeMap<String, BTreeMap<NaiveDate, ListedDay>>,
    labels: &[Label],
    registrations: &[Registration],
    from: NaiveDate,
    to: NaiveDate,
) -> FalseAlarms {
    let labelled: BTreeSet<&str> = labels.iter().map(|l| l.enterprise_id.as_str()).collect();
    let mut fa = FalseAlarms::default();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for r in registrations {
        if labelled.contains(r.enterprise_id.as_str()) || !seen.insert(&r.enterprise_id) {
            continue;
        }
        let days = r.days_within(from, to);
        if days > 0 {
            fa.enterprises += 1;
            fa.enterprise_days += days;
        }
    }
    for (ent, days) in listed {
        if labelled.contains(ent.as_str()) {
            continue;
        }
        for d in days.values() {
            fa.listed += 1;
            fa.listed_cd += u64::from(d.grade_cd);
            for i in &d.indicators {
                *fa.by_indicator.entry(i.clone()).or_default() += 1;
            }
        }
    }
    fa
}

/// [`curves`] of the risk list CSV at `risk_list` against the lake's `labels.csv` and
/// reference table; the range as [`evaluate_files`] finds it.
pub fn curves_files(risk_list: &Path, lake: &Path) -> Result<Curves> {
    let rows = pharmwatch_core::risk::read_csv(risk_list)?;
    let labels = crate::simulate::read_labels(&lake.join("labels.csv"))?;
    let registrations = read_registrations(lake)?;
    let (from, to) = list_range(risk_list, &rows)?;
    curves(&rows, &labels, &registrations, from, to)
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
            anomaly_reasons_zh: String::new(),
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
            magnitude: None,
        }
    }

    fn sized(ent: &str, kind: &str, a: u32, b: u32, m: f64) -> Label {
        Label {
            magnitude: Some(m),
            ..label(ent, kind, a, b)
        }
    }

    fn graded(ent: &str, day: u32, grade: &str, kinds: &[&str]) -> CsvRow {
        CsvRow {
            grade: grade.into(),
            ..row(ent, day, kinds)
        }
    }

    fn registered(ent: &str) -> Registration {
        Registration {
            enterprise_id: ent.into(),
            opened_on: None,
            closed_on: None,
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

    #[test]
    fn curves_count_detection_per_band_with_any_item_and_with_the_intended_one() {
        // Price: 0.3–0.9, smaller is clearer: 0.35 is band 2, 0.65 band 1, 0.85 band 0.
        let labels = vec![
            sized("E1", "price_below_median", 10, 12, 0.35),
            sized("E2", "price_below_median", 10, 12, 0.65),
            sized("E3", "price_below_median", 10, 12, 0.85),
            sized("E4", SUBTLE, 10, 14, 1.9),
            sized("E5", SUBTLE, 10, 14, 1.2),
            label("E6", "sales_spike", 10, 10),
            sized("E7", "sales_spike", 1, 2, 9.0), // out of range
        ];
        let rows = vec![
            row("E1", 11, &["price_below_median"]),
            row("E2", 12, &["inventory_mismatch"]), // listed, but not for the price
            row("E3", 13, &["price_below_median"]), // after the window
            row("E4", 14, &[MODEL]),
            row("E5", 10, &["sales_spike"]),
            row("E6", 10, &["sales_spike"]),
        ];
        let regs: Vec<Registration> = ["E1", "E2", "E3", "E4", "E5", "E6", "E7"]
            .iter()
            .map(|e| registered(e))
            .collect();
        let c = curves(&rows, &labels, &regs, d(10), d(20)).unwrap();
        assert_eq!(
            c.kinds.len(),
            AnomalyKind::ALL.len(),
            "every kind, known only"
        );
        assert_eq!(c.kinds[0].kind, "inventory_mismatch", "planting order");
        let price = c
            .kinds
            .iter()
            .find(|k| k.kind == "price_below_median")
            .unwrap();
        let det = |labels, any_item, intended| Detected {
            labels,
            any_item,
            intended,
        };
        assert_eq!(price.bands, [det(1, 0, 0), det(1, 1, 0), det(1, 1, 1)]);
        let subtle = c.kinds.iter().find(|k| k.kind == SUBTLE).unwrap();
        assert_eq!(subtle.bands, [det(1, 1, 0), det(0, 0, 0), det(1, 1, 1)]);
        let spike = c.kinds.iter().find(|k| k.kind == "sales_spike").unwrap();
        assert_eq!(spike.unbanded, det(1, 1, 1), "no magnitude: no band");
        assert_eq!(spike.bands, [Detected::default(); BANDS]);
        assert_eq!(c.labels_out_of_range, 1);
        assert_eq!(
            c.false_alarms.enterprises, 0,
            "every enterprise has a label"
        );
    }

    #[test]
    fn false_alarms_count_listed_registered_days_of_enterprises_without_labels() {
        let labels = vec![label("E1", "sales_spike", 1, 2)]; // out of range, still labelled
        let rows = vec![
            row("E1", 11, &["sales_spike"]),
            graded("E2", 11, "B", &[MODEL]),
            graded("E2", 12, "C", &["price_below_median", MODEL]),
            graded("E3", 15, "D", &["inventory_mismatch"]),
            graded("E9", 16, "A", &["reporting_stopped"]), // not in the reference table
            graded("E2", 25, "D", &["sales_spike"]),       // after the range
        ];
        let regs = vec![
            registered("E1"),
            registered("E2"),
            Registration {
                enterprise_id: "E3".into(),
                opened_on: Some(d(15)),
                closed_on: None,
            },
            Registration {
                enterprise_id: "E4".into(),
                opened_on: None,
                closed_on: Some(d(11)),
            },
            Registration {
                enterprise_id: "E5".into(),
                opened_on: Some(d(21)),
                closed_on: None,
            },
        ];
        let c = curves(&rows, &labels, &regs, d(10), d(19)).unwrap();
        let fa = &c.false_alarms;
        // E2: 10 days, E3: 15–19 = 5, E4: 10–11 = 2, E5: never registered in range.
        assert_eq!((fa.enterprises, fa.enterprise_days), (3, 17));
        assert_eq!((fa.listed, fa.listed_cd), (4, 2));
        assert!((fa.rate() - 4.0 / 17.0).abs() < 1e-12);
        assert!((fa.rate_cd() - 2.0 / 17.0).abs() < 1e-12);
        let by: Vec<(&str, u64)> = fa
            .by_indicator
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            by,
            vec![
                ("inventory_mismatch", 1),
                (MODEL, 2),
                ("price_below_median", 1),
                ("reporting_stopped", 1)
            ]
        );
    }

    #[test]
    fn registrations_come_from_the_reference_table_and_the_life_file() {
        let lake = tempfile::tempdir().unwrap();
        let refs = lake.path().join(pharmwatch_core::lake::REFERENCE_DIR);
        std::fs::create_dir_all(&refs).unwrap();
        std::fs::write(
            refs.join("enterprises.csv"),
            "enterprise_id,name,credit_grade\nE1,a,A\nE2,b,B\nE3,c,C\n",
        )
        .unwrap();
        let regs = read_registrations(lake.path()).unwrap();
        assert_eq!(regs.len(), 3);
        assert!(
            regs.iter()
                .all(|r| r.opened_on.is_none() && r.closed_on.is_none())
        );
        std::fs::write(
            lake.path().join(LIFE_FILE),
            "enterprise_id,opened_on,closed_on\nE2,2026-10-12,\nE3,,2026-10-11\nE9,2026-10-01,\n",
        )
        .unwrap();
        let regs = read_registrations(lake.path()).unwrap();
        let days: Vec<u64> = regs.iter().map(|r| r.days_within(d(10), d(19))).collect();
        assert_eq!(days, vec![10, 8, 2], "E9 is not in the reference table");
    }
}
