//! `pharmwatch calendar`: working days, and the years operators load into the store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Args, Subcommand};

use pharmwatch::ledger::Ledger;
use pharmwatch::measures;

use super::today;

#[derive(Debug, Args)]
pub struct CalendarArgs {
    /// Calendar file (CSV: date,kind,name,source_url) replacing the embedded 2025–2026 one.
    #[arg(long, global = true, env = "PHARMWATCH_CALENDAR")]
    calendar: Option<PathBuf>,
    /// Output directory whose store holds the years loaded with `calendar import` (every
    /// process of the deployment reads them from there); required by `import` and `status`.
    #[arg(long, global = true, env = "PHARMWATCH_OUT")]
    out: Option<PathBuf>,
    #[command(subcommand)]
    command: CalendarCommand,
}

#[derive(Debug, Subcommand)]
pub enum CalendarCommand {
    /// Print the due date N working days after DATE (counting starts the day after DATE).
    AddWorkingDays {
        /// Triggering date (YYYY-MM-DD).
        date: NaiveDate,
        /// Number of working days.
        n: u32,
    },
    /// Print whether DATE is a working day (yes/no) and what kind of day it is. Exit code 0 when
    /// answered, whatever the answer; 1 when the date is outside the calendar.
    IsWorkingDay {
        /// Date (YYYY-MM-DD).
        date: NaiveDate,
    },
    /// Load next year's holidays and make-up working days (from the State Council's notice)
    /// into the store, then set every deadline that waited for that year (each recorded as a
    /// ledger event). FILE is TOML (one [[holiday]] per holiday: name, from, to,
    /// makeup_workdays) or a CSV of one year (date,kind,name,source_url). A bad file is
    /// refused with its line and the reason; a year already loaded needs --replace.
    Import {
        /// The year file.
        file: PathBuf,
        /// Replace a year that is already covered (its deadlines are computed again; changed
        /// ones are recorded as `deadline_changed` events).
        #[arg(long)]
        replace: bool,
        /// Who loads it, for the store and the ledger's events.
        #[arg(long, default_value = "pharmwatch calendar import")]
        actor: String,
        /// Business date of the ledger events (default: today, Asia/Shanghai).
        #[arg(long)]
        at: Option<NaiveDate>,
    },
    /// Print the covered years (and where each comes from), the last covered day, and the
    /// deadlines waiting for a year not loaded yet. Warns when fewer than 60 days are left.
    Status {
        /// The day to count from (default: today, Asia/Shanghai).
        #[arg(long)]
        on: Option<NaiveDate>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(a: CalendarArgs) -> anyhow::Result<ExitCode> {
    let needs_out = || {
        a.out
            .as_deref()
            .context("give --out OUT: the store of that output directory keeps the loaded years")
    };
    match a.command {
        CalendarCommand::AddWorkingDays { date, n } => {
            let cal = measures::calendar_for(a.calendar.as_deref(), a.out.as_deref())?;
            println!("{}", measures::add_working_days(&cal, date, n)?);
        }
        CalendarCommand::IsWorkingDay { date } => {
            let cal = measures::calendar_for(a.calendar.as_deref(), a.out.as_deref())?;
            println!("{}", measures::is_working_day(&cal, date)?);
        }
        CalendarCommand::Import {
            ref file,
            replace,
            ref actor,
            at,
        } => {
            let year = pharmwatch_regulation::CalendarYear::from_path(file)?;
            let base = measures::load_calendar(a.calendar.as_deref())?;
            let mut ledger = Ledger::open(needs_out()?)?;
            let report = ledger.import_calendar_year(
                &base,
                &year,
                replace,
                &file.display().to_string(),
                actor,
                at.unwrap_or_else(today),
            )?;
            print!("{}", measures::format_import(&year, &report));
        }
        CalendarCommand::Status { on, json } => {
            let base = measures::load_calendar(a.calendar.as_deref())?;
            let ledger = Ledger::open(needs_out()?)?;
            let status = measures::calendar_status(&ledger, &base, on.unwrap_or_else(today))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", measures::format_status(&status));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
