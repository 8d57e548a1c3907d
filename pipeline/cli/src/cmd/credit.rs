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

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The case whose credit-file entries are to be repaired.
    case_id: String,
    /// apply (the enterprise, once the minimum period passed and the measures are carried
    /// out), review (an inspector), grant (an approver other than the reviewer), refuse (with
    /// --note).
    #[arg(long)]
    step: String,
    /// Who takes the step.
    #[arg(long)]
    actor: String,
    /// The applicant's statement, the review's finding, the approver's or the refusal's reason.
    #[arg(long, default_value = "")]
    note: String,
    /// The day (default: today, Asia/Shanghai).
    #[arg(long)]
    on: Option<NaiveDate>,
    /// Measures rules file replacing the embedded defaults (its `[credit]` section).
    #[arg(long, env = "PHARMWATCH_RULES")]
    rules: Option<PathBuf>,
    #[command(flatten)]
    out: OutArg,
}

/// `pharmwatch credit-repair`: one step of a case's credit repair.
pub fn repair(a: RepairArgs) -> anyhow::Result<ExitCode> {
    let rules = measures::load_rules(a.rules.as_deref())?;
    let mut ledger = Ledger::open(&a.out.out)?;
    let step = pharmwatch::credit::RepairStep::parse(&a.step)?;
    let state = pharmwatch::credit::repair(
        &mut ledger,
        &a.case_id,
        step,
        a.on.unwrap_or_else(today),
        &a.actor,
        &a.note,
        &rules,
    )?;
    println!(
        "credit repair of case {}: {}",
        a.case_id,
        serde_json::to_string(&state)?
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct PublicityArgs {
    /// The day (default: today, Asia/Shanghai).
    #[arg(long)]
    on: Option<NaiveDate>,
    /// Print a JSON array instead of text.
    #[arg(long)]
    json: bool,
    /// Measures rules file replacing the embedded defaults (its `[credit]` section).
    #[arg(long, env = "PHARMWATCH_RULES")]
    rules: Option<PathBuf>,
    #[command(flatten)]
    out: OutArg,
}

/// `pharmwatch publicity`: the decisions public on a day (what, about whom, from, until).
pub fn publicity(a: PublicityArgs) -> anyhow::Result<ExitCode> {
    let rules = measures::load_rules(a.rules.as_deref())?;
    let ledger = Ledger::open(&a.out.out)?;
    let on = a.on.unwrap_or_else(today);
    let feed = pharmwatch::credit::publications(&ledger, on, &rules)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&feed)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("publication feed on {on}: {} decision(s)", feed.len());
    for p in &feed {
        println!(
            "  {} {}  case {}  {}  {} … {}{}  {}",
            p.enterprise_id,
            p.enterprise_name,
            p.case_id,
            p.code,
            p.from,
            p.until,
            if p.basis.is_empty() {
                String::new()
            } else {
                format!(" ({})", p.basis)
            },
            p.article
        );
    }
    Ok(ExitCode::SUCCESS)
}
