//! The nightly job's metrics (`pharmwatch nightly`, which exits): the run's status, duration
//! and freshness, the day's risk list by grade, region, enterprise type and indicator, the
//! model's training facts and score distribution, notices and cases from the ledger, and the
//! working-day calendar's coverage. The job writes them to a file for node_exporter's textfile
//! collector; a failed run replaces only the status families ([`NightlyMetrics::write_failure`]).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use prometheus::{
    Encoder, Gauge, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
    TextEncoder,
};

use crate::error::Result;
use pharmwatch_core::error::CoreError;
use pharmwatch_core::metrics::{
    Builder, DOCUMENT_KINDS, Family, FamilyType, GRADES, family_of_line, must, render, unix_now,
    write_textfile,
};

use crate::report::{Snapshot, grade_index};
use crate::summary::NightlyOutput;

/// Families of a nightly run's status: on a failed run these alone are replaced in the
/// textfile, and the rest of the last good run's numbers stay.
const NIGHTLY_STATUS: &[&str] = &[
    "pharmwatch_nightly_last_run_success",
    "pharmwatch_nightly_last_run_timestamp_seconds",
    "pharmwatch_nightly_last_success_timestamp_seconds",
    "pharmwatch_nightly_duration_seconds",
];

/// A nightly run's metrics. The job exits, so they are written to a file that node_exporter's
/// textfile collector serves ([`NightlyMetrics::write_success`], [`NightlyMetrics::write_failure`]).
/// `region` is the region code and `region_name` its name (one name per code).
#[derive(Debug, Clone)]
pub struct NightlyMetrics {
    /// The registry they live in.
    pub registry: Registry,
    /// 1 when the last run succeeded, 0 when it failed.
    pub last_run_success: IntGauge,
    /// When the last run (successful or not) ended, Unix seconds.
    pub last_run_timestamp: Gauge,
    /// When the last successful run ended, Unix seconds.
    pub last_success_timestamp: Gauge,
    /// Wall time of the last run, seconds.
    pub duration_seconds: Gauge,
    /// The last business day of the run's risk list, Unix seconds (midnight UTC).
    pub business_day: Gauge,
    /// Lake records of the run's days, by event kind.
    pub records: IntGaugeVec,
    /// Input-file rows by outcome (read, accepted, rejected).
    pub input_rows: IntGaugeVec,
    /// Rows of the day's risk list (the run's last day), by grade, region and enterprise type.
    pub risk_list_rows: IntGaugeVec,
    /// Rows of the day's risk list hit by each indicator, by indicator and grade.
    pub risk_list_indicator_rows: IntGaugeVec,
    /// Percentile of each scored enterprise-day in its segment's training distribution.
    pub model_percentile: HistogramVec,
    /// Training rows per model segment.
    pub model_training_rows: IntGaugeVec,
    /// Enterprise-days the model scored, by segment.
    pub model_scored: IntGaugeVec,
    /// Enterprise-days the model flagged, by segment.
    pub model_flagged: IntGaugeVec,
    /// When the model in use was trained, Unix seconds (0: loaded, unknown).
    pub model_trained_timestamp: Gauge,
    /// Documents issued by this run, by kind.
    pub notices_issued: IntGaugeVec,
    /// Documents in the ledger, by kind (monotone: numbers are never withdrawn).
    pub notices_total: IntCounterVec,
    /// Open cases.
    pub cases_open: IntGauge,
    /// Open cases with a missed deadline (a measure marked overdue).
    pub cases_overdue: IntGauge,
    /// Stages of referred cases' penalty procedures past their statutory last day.
    pub penalty_stages_overdue: IntGauge,
    /// Escalations recorded in the ledger (monotone).
    pub cases_escalated: IntCounter,
    /// The last day the working-day calendar covers, Unix seconds (midnight UTC at its start).
    pub calendar_covered_until: Gauge,
    /// Deadlines of open measures waiting for a year the calendar does not cover yet.
    pub deadlines_pending_calendar: IntGauge,
    /// The families above (for `pharmwatch::metrics::defined`).
    pub families: Vec<Family>,
}

impl NightlyMetrics {
    /// Creates and registers every nightly metric, the bounded label sets at zero.
    pub fn new() -> Self {
        let mut b = Builder::new();
        let last_run_success = b.add(
            must(IntGauge::new(
                "pharmwatch_nightly_last_run_success",
                "1 when the last nightly run succeeded, 0 when it failed.",
            )),
            FamilyType::Gauge,
        );
        let last_run_timestamp = b.float_gauge(
            "pharmwatch_nightly_last_run_timestamp_seconds",
            "When the last nightly run ended (successful or not), Unix seconds.",
        );
        let last_success_timestamp = b.float_gauge(
            "pharmwatch_nightly_last_success_timestamp_seconds",
            "When the last successful nightly run ended, Unix seconds.",
        );
        let duration_seconds = b.float_gauge(
            "pharmwatch_nightly_duration_seconds",
            "Wall time of the last nightly run, seconds.",
        );
        let business_day = b.float_gauge(
            "pharmwatch_nightly_business_day_timestamp_seconds",
            "Last business day of the last successful run's risk list, Unix seconds (midnight UTC).",
        );
        let records = b.gauge(
            "pharmwatch_nightly_records",
            "Lake records of the run's business days, by event kind.",
            &["kind"],
        );
        let input_rows = b.gauge(
            "pharmwatch_nightly_input_rows",
            "Input-file rows of the run by outcome: read, accepted, rejected (dead letter).",
            &["outcome"],
        );
        let risk_list_rows = b.gauge(
            "pharmwatch_risk_list_rows",
            "Rows of the day's risk list (the run's last business day), by risk grade, region and enterprise type.",
            &["grade", "region", "region_name", "enterprise_type"],
        );
        let risk_list_indicator_rows = b.gauge(
            "pharmwatch_risk_list_indicator_rows",
            "Rows of the day's risk list hit by each indicator, by indicator and risk grade.",
            &["indicator", "grade"],
        );
        let model_percentile = b.histogram(
            "pharmwatch_model_score_percentile",
            "Percentile of each enterprise-day the anomaly model scored, in its segment's training distribution (uniform when nothing drifted).",
            &["segment"],
            vec![0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99],
        );
        let model_training_rows = b.gauge(
            "pharmwatch_model_training_rows",
            "Training rows per model segment (of the model the run used).",
            &["segment"],
        );
        let model_scored = b.gauge(
            "pharmwatch_model_scored",
            "Enterprise-days the anomaly model scored in the run, by segment.",
            &["segment"],
        );
        let model_flagged = b.gauge(
            "pharmwatch_model_flagged",
            "Enterprise-days the anomaly model flagged in the run, by segment.",
            &["segment"],
        );
        let model_trained_timestamp = b.float_gauge(
            "pharmwatch_model_trained_timestamp_seconds",
            "When the model the run used was trained, Unix seconds (0 when loaded from an artifact).",
        );
        let notices_issued = b.gauge(
            "pharmwatch_notices_issued",
            "Documents (caution notices, interview notices …) issued by the last nightly run, by kind.",
            &["kind"],
        );
        let notices_total = b.counter(
            "pharmwatch_notices_issued_total",
            "Documents in the case ledger, by kind (numbers are never withdrawn, so this only grows).",
            &["kind"],
        );
        let cases_open = b.add(
            must(IntGauge::new(
                "pharmwatch_cases_open",
                "Open cases in the case ledger.",
            )),
            FamilyType::Gauge,
        );
        let cases_overdue = b.add(
            must(IntGauge::new(
                "pharmwatch_cases_overdue",
                "Open cases with a missed deadline (a measure the ledger sweep marked overdue).",
            )),
            FamilyType::Gauge,
        );
        let penalty_stages_overdue = b.add(
            must(IntGauge::new(
                "pharmwatch_penalty_stages_overdue",
                "Stages of referred cases' penalty procedures (filing review, decision, service) \
                 not completed by their statutory last day.",
            )),
            FamilyType::Gauge,
        );
        let cases_escalated = b.add(
            must(IntCounter::new(
                "pharmwatch_cases_escalated_total",
                "Escalations recorded in the case ledger (key-monitoring list, new deadline, referral).",
            )),
            FamilyType::Counter,
        );
        let calendar_covered_until = b.float_gauge(
            "pharmwatch_calendar_covered_until_timestamp_seconds",
            "Last day the working-day calendar covers (built-in and loaded years), Unix seconds (midnight UTC at its start). Deadlines past it wait for the next year's calendar.",
        );
        let deadlines_pending_calendar = b.add(
            must(IntGauge::new(
                "pharmwatch_deadlines_pending_calendar",
                "Deadlines of open measures whose due date waits for a year the working-day calendar does not cover yet (set by pharmwatch calendar import).",
            )),
            FamilyType::Gauge,
        );
        let m = Self {
            registry: b.registry,
            last_run_success,
            last_run_timestamp,
            last_success_timestamp,
            duration_seconds,
            business_day,
            records,
            input_rows,
            risk_list_rows,
            risk_list_indicator_rows,
            model_percentile,
            model_training_rows,
            model_scored,
            model_flagged,
            model_trained_timestamp,
            notices_issued,
            notices_total,
            cases_open,
            cases_overdue,
            penalty_stages_overdue,
            cases_escalated,
            calendar_covered_until,
            deadlines_pending_calendar,
            families: b.families,
        };
        m.zero_label_sets();
        m
    }

    /// Starts every bounded label set at zero (event kinds, input outcomes, indicator × grade,
    /// document kinds), so a panel has a series before the first run fills it.
    fn zero_label_sets(&self) {
        for k in pharmwatch_schemas::EventKind::ALL {
            self.records.with_label_values(&[k.as_str()]);
        }
        for o in ["read", "accepted", "rejected"] {
            self.input_rows.with_label_values(&[o]);
        }
        for i in pharmwatch_core::indicators::INDICATORS
            .iter()
            .chain(&["model_anomaly"])
        {
            for g in GRADES {
                self.risk_list_indicator_rows.with_label_values(&[*i, *g]);
            }
        }
        for k in DOCUMENT_KINDS {
            self.notices_issued.with_label_values(&[*k]);
            self.notices_total.with_label_values(&[*k]);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        render(&[&self.registry])
    }

    /// Writes a successful run's metrics to `path` (atomically), stamped now.
    pub fn write_success(&self, path: &Path, seconds: f64) -> Result<()> {
        let now = unix_now();
        self.last_run_success.set(1);
        self.last_run_timestamp.set(now);
        self.last_success_timestamp.set(now);
        self.duration_seconds.set(seconds);
        Ok(write_textfile(path, &self.render())?)
    }

    /// Records a failed run in `path` (atomically): the status families are replaced, the last
    /// successful run's time and every other number of the file stay as they were.
    pub fn write_failure(path: &Path, seconds: f64) -> Result<()> {
        let previous = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(CoreError::io(path, e).into()),
        };
        let last_success = previous
            .lines()
            .find_map(|l| {
                l.strip_prefix("pharmwatch_nightly_last_success_timestamp_seconds ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0);
        let status = Self::new();
        status.last_run_success.set(0);
        status.last_run_timestamp.set(unix_now());
        status.last_success_timestamp.set(last_success);
        status.duration_seconds.set(seconds);
        let families: Vec<_> = status
            .registry
            .gather()
            .into_iter()
            .filter(|f| NIGHTLY_STATUS.contains(&f.name()))
            .collect();
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut buf)
            .map_err(|e| CoreError::Internal(format!("encoding metrics: {e}")))?;
        let mut text: String = previous
            .lines()
            .filter(|l| !NIGHTLY_STATUS.contains(&family_of_line(l)))
            .map(|l| format!("{l}\n"))
            .collect();
        text.push_str(&String::from_utf8_lossy(&buf));
        Ok(write_textfile(path, &text)?)
    }
}

impl Default for NightlyMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Midnight UTC at the start of `day`, Unix seconds.
fn day_timestamp(day: NaiveDate) -> f64 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (day - epoch).num_days() as f64 * 86_400.0
}

/// The metrics of a successful nightly run: its output and the store's snapshot after it.
pub fn run_metrics(out: &NightlyOutput, snap: &Snapshot) -> NightlyMetrics {
    let m = NightlyMetrics::new();
    let s = &out.summary;
    m.business_day.set(day_timestamp(s.to));
    for (kind, n) in &s.lake_records {
        m.records.with_label_values(&[kind.as_str()]).set(*n as i64);
    }
    for (outcome, n) in [
        ("read", s.input_read),
        ("accepted", s.input_accepted),
        ("rejected", s.input_rejected),
    ] {
        m.input_rows.with_label_values(&[outcome]).set(n as i64);
    }
    // Every grade of every (region, type) present, so a grade with no rows shows 0.
    let mut cells: BTreeMap<(String, String, String), [i64; 4]> = BTreeMap::new();
    for r in &snap.rows {
        let c = cells
            .entry((
                r.region_code.clone(),
                r.region_name.clone(),
                r.enterprise_type.clone(),
            ))
            .or_default();
        if let Some(gi) = grade_index(&r.grade) {
            c[gi] += 1;
        }
        for i in r
            .indicators
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            m.risk_list_indicator_rows
                .with_label_values(&[i, r.grade.as_str()])
                .inc();
        }
    }
    for ((code, name, etype), counts) in &cells {
        for (gi, g) in GRADES.iter().enumerate() {
            m.risk_list_rows
                .with_label_values(&[*g, code.as_str(), name.as_str(), etype.as_str()])
                .set(counts[gi]);
        }
    }
    if let Some(model) = &s.model {
        for (segment, rows, _) in &model.segments {
            m.model_training_rows
                .with_label_values(&[segment.as_str()])
                .set(*rows as i64);
            m.model_scored.with_label_values(&[segment.as_str()]);
            m.model_flagged.with_label_values(&[segment.as_str()]);
        }
        for a in &out.anomalies {
            m.model_percentile
                .with_label_values(&[a.segment.as_str()])
                .observe(a.percentile);
            m.model_scored
                .with_label_values(&[a.segment.as_str()])
                .inc();
            if a.flagged {
                m.model_flagged
                    .with_label_values(&[a.segment.as_str()])
                    .inc();
            }
        }
        if model.source == "trained" {
            m.model_trained_timestamp.set(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
            );
        }
    }
    for d in &snap.documents {
        m.notices_issued
            .with_label_values(&[d.kind.as_str()])
            .set(d.on_day);
        m.notices_total
            .with_label_values(&[d.kind.as_str()])
            .inc_by(d.total.max(0) as u64);
    }
    m.cases_open.set(snap.cases_open);
    m.cases_overdue.set(snap.cases_overdue);
    m.penalty_stages_overdue
        .set(i64::try_from(snap.penalty_overdue.len()).unwrap_or(i64::MAX));
    m.calendar_covered_until
        .set(day_timestamp(snap.calendar_covered_until));
    m.deadlines_pending_calendar.set(snap.deadlines_pending);
    m.cases_escalated.inc_by(snap.escalations.max(0) as u64);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_keeps_the_last_success_and_the_numbers_of_the_last_good_run() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("pharmwatch_nightly.prom");
        let m = NightlyMetrics::new();
        m.cases_open.set(7);
        m.write_success(&path, 12.5)
            .unwrap_or_else(|e| panic!("{e}"));
        let good = std::fs::read_to_string(&path).unwrap_or_default();
        let success_line = good
            .lines()
            .find(|l| l.starts_with("pharmwatch_nightly_last_success_timestamp_seconds "))
            .map(str::to_string)
            .unwrap_or_default();
        assert!(!success_line.is_empty(), "{good}");
        NightlyMetrics::write_failure(&path, 3.0).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            text.contains("pharmwatch_nightly_last_run_success 0"),
            "{text}"
        );
        assert!(text.contains(&success_line), "{text}");
        assert!(text.contains("pharmwatch_cases_open 7"), "{text}");
        assert!(
            text.contains("pharmwatch_nightly_duration_seconds 3"),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE pharmwatch_nightly_last_run_success ")
                .count(),
            1,
            "{text}"
        );
        assert!(!dir.path().join("pharmwatch_nightly.prom.tmp").exists());
    }
}
