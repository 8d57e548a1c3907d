//! `pharmwatch model train | score | evaluate`: the anomaly model on any CSV or Parquet table
//! of numeric columns, outside the nightly job.
//!
//! - train: fits on every column not excluded (optionally one model per value of a segment
//!   column) and writes the artifact (JSON).
//! - score: applies an artifact to a table that has the artifact's feature columns, and writes
//!   the table's columns plus `anomaly_score`, `anomaly_percentile` (calibrated: `1 −` the
//!   estimated share of clean rows scoring higher, see `pharmwatch_models::calibrate::TailFit`),
//!   `anomaly_reasons`. Generic tables get the resolution floors of `pharmwatch_models::scale`
//!   (the nightly job's features have floors of their own).
//! - evaluate: fits on the table without the label column, scores the same rows, and reports
//!   ROC-AUC and average precision (label 1 = anomaly) with fit and score times.
//!
//! Invariants: the label column is never a feature; a missing or non-numeric column is an
//! error naming it; a label other than 0/1 is an error naming the row.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use pharmwatch_models::metrics::{average_precision, roc_auc};
use pharmwatch_models::{Family, FitOptions, Model, ModelSet};

pub use pharmwatch_core::anomaly::{read_artifact, write_artifact};
use pharmwatch_core::error::{CoreError, Result};
use pharmwatch_core::table::{self, Table};

/// How to fit.
#[derive(Debug, Clone)]
pub struct TrainSpec {
    /// Columns that are not features.
    pub exclude: Vec<String>,
    /// Column whose values select a model each.
    pub segment_column: Option<String>,
    /// Detector families.
    pub families: Vec<Family>,
    /// Seed.
    pub seed: u64,
}

fn text_column(t: &Table, column: &str) -> Result<Vec<String>> {
    if t.batch.column_by_name(column).is_none() {
        return Err(CoreError::Table {
            path: t.path.clone(),
            reason: format!(
                "segment column '{column}' is missing (columns: {})",
                t.columns().join(", ")
            ),
        });
    }
    let what = t.path.display().to_string();
    Ok(
        pharmwatch_core::indicators::strings(&what, &t.batch, column)?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect(),
    )
}

/// Fits a model set on a table.
pub fn fit_table(t: &Table, spec: &TrainSpec) -> Result<ModelSet> {
    let mut exclude = spec.exclude.clone();
    if let Some(s) = &spec.segment_column {
        exclude.push(s.clone());
    }
    let features = t.feature_columns(&exclude)?;
    if features.is_empty() {
        return Err(CoreError::Table {
            path: t.path.clone(),
            reason: "no feature columns left after --exclude-columns".into(),
        });
    }
    let matrix = t.matrix(&features)?;
    let opts = FitOptions {
        families: spec.families.clone(),
        seed: spec.seed,
        trained_at: chrono::Utc::now().to_rfc3339(),
        data_window: Some(format!("{} ({} rows)", t.path.display(), t.rows())),
        ..FitOptions::default()
    };
    let d = features.len();
    let ctx = |seg: &str| format!("{} segment {seg}", t.path.display());
    match &spec.segment_column {
        None => {
            let m = Model::fit(&features, &matrix, &opts)
                .map_err(|e| CoreError::model(t.path.display().to_string(), e))?;
            Ok(ModelSet::single(m))
        }
        Some(col) => {
            let seg = text_column(t, col)?;
            let mut parts: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
            for (i, s) in seg.iter().enumerate() {
                parts
                    .entry(s.as_str())
                    .or_default()
                    .extend_from_slice(&matrix[i * d..(i + 1) * d]);
            }
            let mut set = ModelSet {
                format: pharmwatch_models::model::FORMAT,
                segment_column: Some(col.clone()),
                segments: BTreeMap::new(),
            };
            for (s, rows) in parts {
                let m =
                    Model::fit(&features, &rows, &opts).map_err(|e| CoreError::model(ctx(s), e))?;
                set.segments.insert(s.to_string(), m);
            }
            Ok(set)
        }
    }
}

/// `model train`: fits and writes the artifact.
pub async fn train(input: &Path, out: &Path, spec: &TrainSpec) -> Result<ModelSet> {
    let t = table::read_table(input).await?;
    let set = fit_table(&t, spec)?;
    write_artifact(out, &set)?;
    Ok(set)
}

/// Scores of a table's rows.
#[derive(Debug, Clone, Default)]
pub struct TableScores {
    /// Ensemble score per row.
    pub score: Vec<f64>,
    /// Percentile per row.
    pub percentile: Vec<f64>,
    /// Top reasons per row, `; `-separated.
    pub reasons: Vec<String>,
}

/// Scores every row of a table with a model set.
pub fn score_table(t: &Table, set: &ModelSet) -> Result<TableScores> {
    let features = set.features().to_vec();
    for f in &features {
        if !t.columns().contains(f) {
            return Err(CoreError::Table {
                path: t.path.clone(),
                reason: format!("column '{f}' is missing (the model was trained with it)"),
            });
        }
    }
    let matrix = t.matrix(&features)?;
    let segments = match &set.segment_column {
        Some(c) => Some(text_column(t, c)?),
        None => None,
    };
    let d = features.len();
    let mut out = TableScores::default();
    for i in 0..t.rows() {
        let seg = segments.as_ref().map(|s| s[i].as_str()).unwrap_or("all");
        let model = set
            .model(seg)
            .map_err(|e| CoreError::model(format!("{} data row {}", t.path.display(), i + 1), e))?;
        let row = &matrix[i * d..(i + 1) * d];
        let s = model.score_row(row);
        out.score.push(s.score);
        out.percentile.push(s.percentile);
        out.reasons.push(
            model
                .explain(row)
                .iter()
                .take(3)
                .map(|c| c.plain_reason())
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
    Ok(out)
}

/// `model score`: scores a table and writes it with the score columns.
pub async fn score(model: &Path, input: &Path, out: &Path) -> Result<usize> {
    let set = read_artifact(model)?;
    let t = table::read_table(input).await?;
    let s = score_table(&t, &set)?;
    table::write_csv_with(
        out,
        &t.batch,
        vec![
            ("anomaly_score", s.score),
            ("anomaly_percentile", s.percentile),
        ],
        vec![("anomaly_reasons", s.reasons)],
    )?;
    Ok(t.rows())
}

/// Result of `model evaluate`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    /// The table.
    pub input: PathBuf,
    /// Rows.
    pub rows: usize,
    /// Feature columns.
    pub features: usize,
    /// Rows labelled 1.
    pub anomalies: usize,
    /// ROC-AUC of the score.
    pub roc_auc: f64,
    /// Average precision of the score.
    pub average_precision: f64,
    /// Seconds to fit.
    pub fit_seconds: f64,
    /// Seconds to score every row.
    pub score_seconds: f64,
    /// Detectors in the ensemble.
    pub detectors: Vec<String>,
}

/// `model evaluate`: fits without the label, scores the same rows, ranks against the label.
pub async fn evaluate(input: &Path, label: &str, spec: &TrainSpec) -> Result<EvalResult> {
    let t = table::read_table(input).await?;
    let labels_raw = t.numeric(label)?;
    let mut labels = Vec::with_capacity(labels_raw.len());
    for (i, v) in labels_raw.iter().enumerate() {
        labels.push(match *v {
            1.0 => true,
            0.0 => false,
            x => {
                return Err(CoreError::Table {
                    path: input.to_path_buf(),
                    reason: format!(
                        "label column '{label}' must be 0 or 1; data row {} has {}",
                        i + 1,
                        if x.is_nan() {
                            "no value".to_string()
                        } else {
                            x.to_string()
                        }
                    ),
                });
            }
        });
    }
    let mut spec = spec.clone();
    spec.exclude.push(label.to_string());
    let started = Instant::now();
    let set = fit_table(&t, &spec)?;
    let fit_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let features = set.features().to_vec();
    let matrix = t.matrix(&features)?;
    let d = features.len();
    let model = set
        .model("all")
        .map_err(|e| CoreError::model(input.display().to_string(), e))?;
    let scores: Vec<f64> = model
        .score_matrix(&matrix)
        .map_err(|e| CoreError::model(input.display().to_string(), e))?
        .iter()
        .map(|s| s.score)
        .collect();
    let score_seconds = started.elapsed().as_secs_f64();
    let both = || CoreError::Table {
        path: input.to_path_buf(),
        reason: format!("label column '{label}' needs both 0 and 1 rows"),
    };
    Ok(EvalResult {
        input: input.to_path_buf(),
        rows: t.rows(),
        features: d,
        anomalies: labels.iter().filter(|l| **l).count(),
        roc_auc: roc_auc(&scores, &labels).ok_or_else(both)?,
        average_precision: average_precision(&scores, &labels).ok_or_else(both)?,
        fit_seconds,
        score_seconds,
        detectors: model
            .detector_names()
            .iter()
            .map(|s| s.to_string())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    //! The model in the nightly job on a simulated clean province with the noise of a real
    //! one: its flags stay at the target false-alarm rate (the fixed budget of format 1
    //! flagged 0.5 % of enterprise-days here whatever the data).

    use pharmwatch_batch::nightly::{self, NightlyConfig};
    use pharmwatch_core::anomaly::{DEFAULT_FALSE_ALARM_RATE, ModelSource, threshold_for_rate};
    use pharmwatch_core::indicators::Thresholds;
    use pharmwatch_sim::simulate::{self, SimConfig, noise::NoiseConfig};

    #[test]
    fn a_clean_noisy_province_gets_at_most_the_target_rate_of_model_flags() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lake = dir.path().join("lake");
        let cal = pharmwatch_regulation::Calendar::embedded().expect("calendar");
        let sim = simulate::run(
            &SimConfig {
                enterprises: 150,
                days: 45,
                start: simulate::default_start(),
                seed: 3,
                anomaly_days: 14,
                anomalies_per_kind: Some(0),
                out: lake.clone(),
                progress: false,
                noise: NoiseConfig::default(),
            },
            &cal,
        )
        .expect("simulates");
        assert_eq!(sim.labels, 0);
        let cfg = NightlyConfig {
            lake: Some(lake),
            reference: None,
            inputs: Vec::new(),
            from: sim.end - chrono::Duration::days(13),
            to: sim.end,
            out: dir.path().join("out"),
            thresholds: Thresholds::default(),
            top: 5,
            progress: false,
            model: ModelSource::default(),
            anomaly_threshold: threshold_for_rate(DEFAULT_FALSE_ALARM_RATE),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let out = rt.block_on(nightly::run(&cfg)).expect("nightly");
        let scored = out.anomalies.len();
        let flagged = out.anomalies.iter().filter(|a| a.flagged).count();
        println!("{flagged} of {scored} enterprise-days flagged by the model");
        assert!(scored > 1500, "{scored} enterprise-days scored");
        // Measured 2026-12-04 (seed 3, 150 enterprises, noise on): 0 of 2009 flagged (the
        // fixed budget of format 1 flagged ≈ 0.5 %). Ceiling: the target rate, rounded up, + 1.
        let ceiling = (DEFAULT_FALSE_ALARM_RATE * scored as f64).ceil() as usize + 1;
        assert!(
            flagged <= ceiling,
            "{flagged} of {scored} flagged on a clean province (ceiling {ceiling})"
        );
        // A model flag alone never reaches grade C or D (no caution notice from the model).
        for r in out.rows.iter().filter(|r| r.indicators == "model_anomaly") {
            assert_eq!(r.grade, "B", "{r:?}");
        }
    }
}
