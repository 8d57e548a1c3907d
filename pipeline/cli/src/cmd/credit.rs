//! `pharmwatch credit`: an enterprise's safety credit file and effective grade.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::Args;

use pharmwatch::guidance;
use pharmwatch::ledger::Ledger;
use pharmwatch::measures;

use super::{OutArg, today};

#[derive(Debug, Args)]
pub struct CreditArgs {
    /// The enterprise's unified social credit code (统一社会信用代码).
    enterprise_id: String,
    /// The day (default: today, Asia/Shanghai).
    #[arg(long)]
    on: Option<NaiveDate>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Reference credit grade (default: the enterprise's on the latest risk list in OUT, else B).
    #[arg(long)]
    grade: Option<String>,
    /// Measures rules file replacing the embedded defaults (its `[credit]` section).
    #[arg(long, env = "PHARMWATCH_RULES")]
    rules: Option<PathBuf>,
    #[command(flatten)]
    out: OutArg,
}

/// Today in Asia/Shanghai.
/// The reference credit grade and name of an enterprise on the latest risk list in `out`
/// (`B` and no name when it is not there).
fn reference_grade(out: &std::path::Path, enterprise_id: &str) -> (String, String) {
    let rows = pharmwatch::risk::read_csv(&out.join("risk_list.csv")).unwrap_or_default();
    rows.iter()
        .filter(|r| r.enterprise_id == enterprise_id)
        .max_by_key(|r| r.date)
        .map(|r| {
            let g = if r.reference_credit_grade.is_empty() {
                r.credit_grade.clone()
            } else {
                r.reference_credit_grade.clone()
            };
            (g, r.enterprise_name.clone())
        })
        .unwrap_or_else(|| ("B".to_string(), String::new()))
}

pub fn run(a: CreditArgs) -> anyhow::Result<ExitCode> {
    guidance::validate_enterprise_id(&a.enterprise_id)?;
    let rules = measures::load_rules(a.rules.as_deref())?;
    let ledger = Ledger::open(&a.out.out)?;
    let (grade, name) = match a.grade {
        Some(g) => (g, String::new()),
        None => reference_grade(&a.out.out, &a.enterprise_id),
    };
    let f = pharmwatch::credit::credit_file(
        &ledger,
        &a.enterprise_id,
        &name,
        &grade,
        a.on.unwrap_or_else(today),
        &rules,
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&f)?);
    } else {
        print!("{}", pharmwatch::credit::render(&f));
    }
    Ok(ExitCode::SUCCESS)
}
