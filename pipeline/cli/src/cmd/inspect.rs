//! `pharmwatch inspect plan`: a risk-weighted random inspection plan (双随机、一公开) for a
//! quarter, with each inspection's inspectors and checklist.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::{Args, Subcommand};

use pharmwatch::inspect::{PlanConfig, plan};
use pharmwatch::inspection::{Period, ROSTER_FILE};

#[derive(Debug, Subcommand)]
pub enum InspectCommand {
    /// Draw the inspection plan of a quarter: per grade the configured share of enterprises
    /// (risk + credit grade), two inspectors each from the roster (none of the enterprise's own
    /// region while another is free, no pairing twice), a checklist per enterprise from its
    /// type, scale, grade and recent risk items; writes OUT/inspection/plan-PERIOD.{html,csv,json}.
    Plan(PlanArgs),
    /// Where the period's planned inspections stand: each with the case its findings opened
    /// (`measures decide --record`, dated by the inspection) or not inspected yet.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The quarter, e.g. 2027-Q1.
    #[arg(long)]
    period: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    out: super::OutArg,
}

fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let period = Period::parse(&a.period)?;
    let plan = pharmwatch::inspection::read_plan(&a.out.out, &period)?;
    let ledger = pharmwatch::ledger::Ledger::open(&a.out.out)?;
    let rows = pharmwatch::inspection::status(&ledger, &plan)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let done = rows.iter().filter(|r| r.inspected_on.is_some()).count();
    println!(
        "inspection plan {}: {done} of {} inspected",
        plan.plan_id,
        rows.len()
    );
    for r in &rows {
        match (&r.inspected_on, &r.case_id) {
            (Some(day), Some(case)) => println!(
                "  {:>3} {} {} {}  inspected {day}, case {case}",
                r.seq, r.grade, r.enterprise_id, r.name
            ),
            _ => println!(
                "  {:>3} {} {} {}  not yet",
                r.seq, r.grade, r.enterprise_id, r.name
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The quarter planned, e.g. 2027-Q1.
    #[arg(long)]
    period: String,
    /// Seed of the random draws (published with the plan: the same seed draws the same plan).
    #[arg(long)]
    seed: u64,
    /// The lake (reference tables, and the records the enterprises' scale is measured on).
    #[arg(long)]
    lake: PathBuf,
    /// Inspector roster CSV `inspector_id,name,region_code` (default: LAKE/reference/inspectors.csv).
    #[arg(long)]
    inspectors: Option<PathBuf>,
    /// The day grades are read on (default: the last stored risk list's day).
    #[arg(long)]
    as_of: Option<NaiveDate>,
    /// Measures rules file replacing the embedded defaults (its `[inspection]` section).
    #[arg(long, env = "PHARMWATCH_RULES")]
    rules: Option<PathBuf>,
    /// Replace the period's plan drawn before with another seed (the replaced plan is kept as
    /// plan-PERIOD.replaced-seed-SEED.json).
    #[arg(long)]
    redraw: bool,
    /// Print the plan as JSON instead of a summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    out: super::OutArg,
}

pub async fn run(c: InspectCommand) -> anyhow::Result<ExitCode> {
    let a = match c {
        InspectCommand::Plan(a) => a,
        InspectCommand::Status(a) => return status(a),
    };
    let cfg = PlanConfig {
        roster: a.inspectors.clone().unwrap_or_else(|| {
            a.lake
                .join(pharmwatch::lake::REFERENCE_DIR)
                .join(ROSTER_FILE)
        }),
        lake: a.lake,
        out: a.out.out,
        period: Period::parse(&a.period)?,
        seed: a.seed,
        as_of: a.as_of,
        rules: a.rules,
        redraw: a.redraw,
    };
    let (plan, files) = plan(&cfg).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "inspection plan {} for {} ({} … {}), grades as of {}, seed {}:",
        plan.plan_id, plan.period.label, plan.period.first, plan.period.last, plan.as_of, plan.seed
    );
    for g in &plan.grades {
        println!(
            "  grade {}: {} of {} enterprise(s) drawn (share {:.0}%)",
            g.grade,
            g.drawn,
            g.enterprises,
            g.share * 100.0
        );
    }
    let own = plan
        .entries
        .iter()
        .filter(|e| e.own_region_inspector)
        .count();
    println!(
        "  {} inspection(s), {} inspector(s) on the roster, {own} with an inspector of the \
         enterprise's own region (none other free)",
        plan.entries.len(),
        plan.roster
    );
    println!(
        "  written: {}, {}, {}",
        files.html.display(),
        files.csv.display(),
        files.json.display()
    );
    Ok(ExitCode::SUCCESS)
}
