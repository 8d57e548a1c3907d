//! `pharmwatch guidance`: what applies to one enterprise.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::Args;

use pharmwatch::guidance;
use pharmwatch::ledger::Ledger;
use pharmwatch::measures;
use pharmwatch_regulation::Calendar;

use super::{OutArg, today};

#[derive(Debug, Args)]
pub struct GuidanceArgs {
    /// The enterprise's unified social credit code (统一社会信用代码).
    enterprise_id: String,
    /// Reference day for working days left and running periods (default: today, Asia/Shanghai).
    #[arg(long)]
    on: Option<NaiveDate>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Measures rules file replacing the embedded defaults.
    #[arg(long, env = "PHARMWATCH_RULES")]
    rules: Option<PathBuf>,
    #[command(flatten)]
    out: OutArg,
}

pub fn run(a: GuidanceArgs, cal: &Calendar) -> anyhow::Result<ExitCode> {
    guidance::validate_enterprise_id(&a.enterprise_id)?;
    let rules = measures::load_rules(a.rules.as_deref())?;
    let ledger = Ledger::open(&a.out.out)?;
    let cal = ledger.calendar(cal)?;
    let g = guidance::guidance(
        &ledger,
        &a.enterprise_id,
        a.on.unwrap_or_else(today),
        &rules,
        &cal,
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&g)?);
    } else {
        print!("{}", guidance::format_text(&g));
    }
    Ok(ExitCode::SUCCESS)
}
