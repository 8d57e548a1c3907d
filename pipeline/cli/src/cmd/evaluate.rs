//! `pharmwatch evaluate`: a risk list against the simulator's labels, with optional thresholds.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use pharmwatch::evaluate;

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Risk list CSV written by `nightly`.
    #[arg(long)]
    risk_list: PathBuf,
    /// labels.csv written by `simulate`.
    #[arg(long)]
    labels: PathBuf,
    /// Fail (exit 1) if a rule kind's recall is below this.
    #[arg(long)]
    min_recall: Option<f64>,
    /// Fail (exit 1) if a rule kind's precision is below this.
    #[arg(long)]
    min_precision: Option<f64>,
    /// Fail (exit 1) if the model's recall of the subtle kind is below this.
    #[arg(long)]
    min_model_recall: Option<f64>,
    /// Fail (exit 1) if the model's precision on the subtle kind is below this.
    #[arg(long)]
    min_model_precision: Option<f64>,
}

fn check_thresholds(e: &evaluate::Evaluation, a: &EvaluateArgs) -> bool {
    let mut ok = true;
    for k in &e.kinds {
        let model = k.kind == evaluate::SUBTLE || k.kind == evaluate::MODEL;
        let (min_recall, min_precision) = match (model, k.kind == evaluate::SUBTLE) {
            (false, _) => (a.min_recall, a.min_precision),
            (true, true) => (a.min_model_recall, a.min_model_precision),
            // model_anomaly has no labels of its own; the subtle kind carries its figures.
            (true, false) => continue,
        };
        if let Some(r) = min_recall
            && k.labels > 0
            && k.recall() < r
        {
            eprintln!("recall of {} is {:.2}, below {r}", k.kind, k.recall());
            ok = false;
        }
        if let Some(p) = min_precision
            && k.hits > 0
            && k.precision() < p
        {
            eprintln!("precision of {} is {:.2}, below {p}", k.kind, k.precision());
            ok = false;
        }
    }
    ok
}

pub fn run(a: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let e = evaluate::evaluate_files(&a.risk_list, &a.labels)?;
    print!("{}", evaluate::report(&e));
    if !check_thresholds(&e, &a) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
