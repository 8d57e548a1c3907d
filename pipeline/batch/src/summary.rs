//! What a nightly run did and produced: its summary (written to `run.json`), its output (the
//! risk list, hits, model verdicts, dead letters), and the text printed at the end of a run.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::Serialize;

use pharmwatch_core::anomaly::AnomalyScore;
use pharmwatch_core::indicators::Hit;
use pharmwatch_core::ingest::{DeadLetter, FileCounts};
use pharmwatch_core::risk::RiskRow;
use pharmwatch_models::model::short;

/// What the anomaly model did in a run.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    /// `trained` or `loaded`.
    pub source: String,
    /// The artifact written (trained) or read (loaded).
    pub artifact: PathBuf,
    /// Feature rows computed (training window when trained).
    pub feature_rows: usize,
    /// Training window, when trained.
    pub train_window: Option<(NaiveDate, NaiveDate)>,
    /// Per segment: training rows and detectors.
    pub segments: Vec<(String, usize, Vec<String>)>,
    /// Notes (segments not modelled, detectors skipped).
    pub notes: Vec<String>,
    /// Enterprise-days of `[from, to]` scored.
    pub scored: usize,
    /// Of those, flagged.
    pub flagged: usize,
    /// The calibrated percentile flagged from (`1 − false_alarm_rate`).
    pub threshold: f64,
    /// The target false-alarm rate (share of clean enterprise-days flagged).
    pub false_alarm_rate: f64,
    /// Per segment: the score threshold of the rate and the realised share of training rows
    /// above it (near the rate on clean data; above it where the training window holds
    /// anomalies the rules missed, or a clean tail heavier than the model's).
    pub calibration: Vec<SegmentCalibration>,
    /// Wall time of features, fitting and scoring, seconds.
    pub seconds: f64,
}

/// The flag threshold of one segment.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentCalibration {
    /// Segment.
    pub segment: String,
    /// Ensemble score from which an enterprise-day is flagged.
    pub score_threshold: f64,
    /// Share of the training rows above it.
    pub training_share_above: f64,
}

/// What a nightly run did.
#[derive(Debug, Clone, Serialize)]
pub struct NightlySummary {
    /// First business day.
    pub from: NaiveDate,
    /// Last business day.
    pub to: NaiveDate,
    /// Event records in the lake for `[from, to]`, per kind.
    pub lake_records: Vec<(String, u64)>,
    /// Input files: read, accepted, rejected.
    pub input_files: Vec<FileCounts>,
    /// Input rows read in all.
    pub input_read: u64,
    /// Input rows accepted.
    pub input_accepted: u64,
    /// Input rows rejected (dead letter).
    pub input_rejected: u64,
    /// Enterprises with records in `[from, to]` (scored).
    pub enterprises_scored: u64,
    /// Risk-list rows (enterprise × day).
    pub risk_rows: usize,
    /// Hits per indicator.
    pub hits_per_indicator: Vec<(String, usize)>,
    /// Rows per grade.
    pub rows_per_grade: Vec<(String, usize)>,
    /// Wall time of each indicator query, seconds (summed over the ranges computed).
    pub query_seconds: Vec<(String, f64)>,
    /// Wall time of the run's phases (read, day index, rules, model, risk list, stream
    /// baseline), seconds.
    pub phase_seconds: Vec<(String, f64)>,
    /// Days of rule hits and of model features read back from the day store or computed.
    pub days: DayCounts,
    /// The anomaly model's part (None when switched off).
    pub model: Option<ModelSummary>,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Where the outputs are.
    pub out: PathBuf,
}

/// What a run read back from the day store ([`crate::days`]) and what it computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DayCounts {
    /// Days of rule hits read back.
    pub hits_reused: usize,
    /// Days of rule hits computed.
    pub hits_computed: usize,
    /// Days of model features read back.
    pub features_reused: usize,
    /// Days of model features computed.
    pub features_computed: usize,
}

/// Everything a run produced (for tests and the demo).
#[derive(Debug)]
pub struct NightlyOutput {
    /// The summary.
    pub summary: NightlySummary,
    /// The risk list.
    pub rows: Vec<RiskRow>,
    /// All hits.
    pub hits: Vec<Hit>,
    /// The model's verdicts on `[from, to]`.
    pub anomalies: Vec<AnomalyScore>,
    /// Rejected input rows.
    pub dead_letters: Vec<DeadLetter>,
}

/// Reads the `run.json` a nightly run left beside its risk list.
pub fn read_run(dir: &Path) -> Option<(NaiveDate, NaiveDate)> {
    let text = std::fs::read_to_string(dir.join("run.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let from = NaiveDate::parse_from_str(v.get("from")?.as_str()?, "%Y-%m-%d").ok()?;
    let to = NaiveDate::parse_from_str(v.get("to")?.as_str()?, "%Y-%m-%d").ok()?;
    Some((from, to))
}

/// Terminal columns a character takes: CJK ideographs and full-width forms take two.
fn char_width(c: char) -> usize {
    match c as u32 {
        0x1100..=0x115F
        | 0x2E80..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6 => 2,
        _ => 1,
    }
}

/// `s` cut to at most `width` terminal columns (with an ellipsis when cut) and padded to it.
fn fit(s: &str, width: usize) -> String {
    let total: usize = s.chars().map(char_width).sum();
    let mut out = String::new();
    let mut used = 0;
    if total <= width {
        out.push_str(s);
        used = total;
    } else {
        for c in s.chars() {
            if used + char_width(c) > width - 1 {
                break;
            }
            out.push(c);
            used += char_width(c);
        }
        out.push('…');
        used += 1;
    }
    out.push_str(&" ".repeat(width.saturating_sub(used)));
    out
}

/// The top-N table and the summary, as printed at the end of a run.
pub fn report(out: &NightlyOutput, top: usize) -> String {
    let s = &out.summary;
    let mut text = String::new();
    let mut sorted: Vec<&RiskRow> = out.rows.iter().collect();
    sorted.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| b.date.cmp(&a.date))
            .then_with(|| a.enterprise_id.cmp(&b.enterprise_id))
    });
    text.push_str(&format!(
        "Top {} of {} risk-list rows ({} … {}):\n",
        top.min(sorted.len()),
        sorted.len(),
        s.from,
        s.to
    ));
    text.push_str(&format!(
        "{:<10} {:>5} {:>5}  {:<18} {:<28} {:<10} {}\n",
        "date", "grade", "score", "enterprise_id", "name", "region", "indicators"
    ));
    for r in sorted.iter().take(top) {
        text.push_str(&format!(
            "{:<10} {:>5} {:>5.1}  {:<18} {} {} {}\n",
            r.date.to_string(),
            r.grade,
            r.score,
            r.enterprise_id,
            fit(&r.enterprise_name, 28),
            fit(&r.region_name, 10),
            r.indicators
        ));
    }
    text.push_str("\nSummary\n");
    let lake_total: u64 = s.lake_records.iter().map(|(_, n)| n).sum();
    text.push_str(&format!(
        "  records read (lake, {} … {}): {lake_total} ({})\n",
        s.from,
        s.to,
        s.lake_records
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if !s.input_files.is_empty() {
        text.push_str(&format!(
            "  input rows: read {} = accepted {} + rejected {} (dead letter: {})\n",
            s.input_read,
            s.input_accepted,
            s.input_rejected,
            s.out.join("dead_letter.ndjson").display()
        ));
        for f in &s.input_files {
            text.push_str(&format!(
                "    {} [{}]: read {} accepted {} rejected {}\n",
                f.source, f.kind, f.read, f.accepted, f.rejected
            ));
        }
    }
    text.push_str(&format!("  enterprises scored: {}\n", s.enterprises_scored));
    text.push_str(&format!(
        "  risk-list rows: {} ({})\n",
        s.risk_rows,
        s.rows_per_grade
            .iter()
            .map(|(g, n)| format!("{g} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if let Some(m) = &s.model {
        text.push_str(&format!(
            "  anomaly model ({}, {}): {} enterprise-days scored, {} flagged at a target false-alarm rate of {} in {:.1} s; segments: {}\n",
            m.source,
            m.artifact.display(),
            m.scored,
            m.flagged,
            short(m.false_alarm_rate),
            m.seconds,
            m.segments
                .iter()
                .map(|(k, n, d)| format!("{k} ({n} rows; {})", d.join("+")))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for c in &m.calibration {
            text.push_str(&format!(
                "    {}: flagged from score {:.2}; training rows above it {:.2}%\n",
                c.segment,
                c.score_threshold,
                100.0 * c.training_share_above
            ));
        }
        for n in &m.notes {
            text.push_str(&format!("    note: {n}\n"));
        }
    }
    text.push_str("  hits per indicator:\n");
    for (i, n) in &s.hits_per_indicator {
        text.push_str(&format!("    {i:<22} {n}\n"));
    }
    text.push_str(&format!(
        "  days: rules {} computed, {} read back; features {} computed, {} read back\n",
        s.days.hits_computed, s.days.hits_reused, s.days.features_computed, s.days.features_reused
    ));
    text.push_str(&format!(
        "  phases: {}\n",
        s.phase_seconds
            .iter()
            .map(|(p, t)| format!("{p} {t:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    text.push_str(&format!(
        "  time: {:.1} s (queries: {})\n",
        s.seconds,
        s.query_seconds
            .iter()
            .map(|(q, t)| format!("{} {t:.2}", q.trim_end_matches(".sql")))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    text.push_str(&format!(
        "  outputs: {}/risk_list.{{parquet,csv,json}}, model.json, features.csv, run.json, dead_letter.ndjson, report.html\n",
        s.out.display()
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn width(s: &str) -> usize {
        s.chars().map(char_width).sum()
    }

    #[test]
    fn table_cells_fit_their_columns_whatever_the_script() {
        assert_eq!(fit("包头市", 10), "包头市    ");
        assert_eq!(
            width(&fit("内蒙古仁和大药房连锁有限公司呼伦贝尔第3分店", 28)),
            28
        );
        assert!(
            fit("内蒙古仁和大药房连锁有限公司呼伦贝尔第3分店", 28)
                .trim_end()
                .ends_with('…')
        );
        assert_eq!(fit("abc", 5), "abc  ");
    }
}
