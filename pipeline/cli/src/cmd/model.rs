//! `pharmwatch model`: the anomaly model on any CSV or Parquet table of numeric columns.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use pharmwatch::modelcmd::{self, TrainSpec};

use super::families;

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Fit a model on a table and write the artifact (JSON).
    Train(ModelTrainArgs),
    /// Score a table with a model: its columns plus anomaly_score, anomaly_percentile (1 − the
    /// estimated share of clean rows scoring higher: flag at ≥ 0.999 for a false-alarm rate of
    /// 0.001) and anomaly_reasons, as CSV.
    Score(ModelScoreArgs),
    /// Fit on a table without its label column, score it, print ROC-AUC and average precision.
    Evaluate(ModelEvaluateArgs),
}

#[derive(Debug, Args)]
pub struct FitArgs {
    /// Columns that are not features (comma-separated).
    #[arg(long, value_delimiter = ',')]
    exclude_columns: Vec<String>,
    /// Detector families of the ensemble (comma-separated: mahalanobis, kmeans, gmm, pca,
    /// iforest); default: the measured best.
    #[arg(long, value_delimiter = ',')]
    detectors: Vec<String>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Args)]
pub struct ModelTrainArgs {
    /// Table (.csv with a header row, or .parquet).
    #[arg(long)]
    input: PathBuf,
    /// Artifact to write.
    #[arg(long)]
    out: PathBuf,
    /// Fit one model per value of this column (e.g. an enterprise type).
    #[arg(long)]
    segment_column: Option<String>,
    #[command(flatten)]
    fit: FitArgs,
}

#[derive(Debug, Args)]
pub struct ModelScoreArgs {
    /// Artifact written by `model train` or by the nightly job (OUT/model.json).
    #[arg(long)]
    model: PathBuf,
    /// Table to score.
    #[arg(long)]
    input: PathBuf,
    /// CSV to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ModelEvaluateArgs {
    /// Labelled table.
    #[arg(long)]
    input: PathBuf,
    /// Label column: 1 = anomaly, 0 = normal.
    #[arg(long)]
    label_column: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    fit: FitArgs,
}

pub async fn run(a: ModelCommand) -> anyhow::Result<ExitCode> {
    match a {
        ModelCommand::Train(a) => {
            let spec = TrainSpec {
                exclude: a.fit.exclude_columns,
                segment_column: a.segment_column,
                families: families(&a.fit.detectors)?,
                seed: a.fit.seed,
            };
            let set = modelcmd::train(&a.input, &a.out, &spec).await?;
            for (seg, m) in &set.segments {
                println!(
                    "segment {seg}: {} rows, {} features ({} constant), detectors {}",
                    m.training_rows,
                    m.features.len(),
                    m.features.len() - m.active.len(),
                    m.detector_names().join("+")
                );
                for s in &m.skipped {
                    println!("  skipped {}: {}", s.family.as_str(), s.reason);
                }
                let rate = pharmwatch::anomaly::DEFAULT_FALSE_ALARM_RATE;
                println!(
                    "  flag threshold at a false-alarm rate of {rate}: score {:.2} (training rows above it: {:.2}%)",
                    m.threshold(rate),
                    100.0 * (1.0 - m.score_distribution.percentile(m.threshold(rate)))
                );
            }
            println!("model written to {}", a.out.display());
        }
        ModelCommand::Score(a) => {
            let n = modelcmd::score(&a.model, &a.input, &a.out).await?;
            println!("{n} rows scored; written to {}", a.out.display());
        }
        ModelCommand::Evaluate(a) => {
            let spec = TrainSpec {
                exclude: a.fit.exclude_columns,
                segment_column: None,
                families: families(&a.fit.detectors)?,
                seed: a.fit.seed,
            };
            let r = modelcmd::evaluate(&a.input, &a.label_column, &spec).await?;
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{}: {} rows, {} features, {} anomalies ({:.1}%)\n  ROC-AUC {:.4}  average precision {:.4}\n  fit {:.3} s, score {:.3} s ({})",
                    r.input.display(),
                    r.rows,
                    r.features,
                    r.anomalies,
                    100.0 * r.anomalies as f64 / r.rows.max(1) as f64,
                    r.roc_auc,
                    r.average_precision,
                    r.fit_seconds,
                    r.score_seconds,
                    r.detectors.join("+")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
