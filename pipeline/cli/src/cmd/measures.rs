//! `pharmwatch measures decide`: findings in, decisions out; refused findings named on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::{Args, Subcommand};

use pharmwatch::ledger::Ledger;
use pharmwatch::measures;

#[derive(Debug, Subcommand)]
pub enum MeasuresCommand {
    /// Decide the measures for a JSON array of findings (schemas/contracts/findings.md) and print
    /// the JSON array of decisions. Refused findings are reported on stderr (finding, field,
    /// reason); the others are still decided; exit code 2 when any finding was refused.
    Decide(DecideArgs),
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The findings (JSON array).
    #[arg(long)]
    findings: PathBuf,
    /// Rules file (TOML) replacing the embedded defaults (regulation/data/rules.toml).
    #[arg(long, env = "PHARMWATCH_RULES")]
    rules: Option<PathBuf>,
    /// Calendar file replacing the embedded 2025–2026 one.
    #[arg(long, env = "PHARMWATCH_CALENDAR")]
    calendar: Option<PathBuf>,
    /// Open or update a case in the ledger for every decision (needs --out).
    #[arg(long, requires = "out")]
    record: bool,
    /// Output directory holding the ledger (OUT/pharmwatch.db).
    #[arg(long, env = "PHARMWATCH_OUT")]
    out: Option<PathBuf>,
    /// Who decided, for the ledger's events.
    #[arg(long, default_value = "pharmwatch measures")]
    actor: String,
    /// Business date the cases are opened or updated on (default: each finding's inspection
    /// date, the day the facts were found).
    #[arg(long)]
    decided_on: Option<NaiveDate>,
}

pub fn run(m: MeasuresCommand) -> anyhow::Result<ExitCode> {
    match m {
        MeasuresCommand::Decide(a) => decide(a),
    }
}

fn decide(a: DecideArgs) -> anyhow::Result<ExitCode> {
    let rules = measures::load_rules(a.rules.as_deref())?;
    // With --out, the years loaded into that store count too.
    let cal = measures::calendar_for(a.calendar.as_deref(), a.out.as_deref())?;
    let out = measures::decide_file(&a.findings, &rules, &cal)?;
    println!("{}", out.decisions_json()?);
    if a.record
        && let Some(dir) = &a.out
    {
        let mut ledger = Ledger::open(dir)?;
        let (opened, updated) =
            measures::record_decided(&mut ledger, &out, &a.actor, a.decided_on)?;
        eprintln!(
            "ledger {}: {opened} case(s) opened, {updated} updated",
            ledger.path().display()
        );
    }
    for e in &out.errors {
        eprintln!("{}: {e}", a.findings.display());
    }
    if out.errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} of {} findings refused",
            out.errors.len(),
            out.errors.len() + out.decisions.len()
        );
        Ok(ExitCode::from(2))
    }
}
