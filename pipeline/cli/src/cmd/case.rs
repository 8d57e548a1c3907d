//! `pharmwatch case`: the case ledger — list, show, record an event.

use std::process::ExitCode;

use chrono::NaiveDate;
use clap::Subcommand;

use pharmwatch::ledger::{self, Ledger, RecordedEvent};
use pharmwatch::notices::DocumentKind;

use super::{OutArg, today};

#[derive(Debug, Subcommand)]
pub enum CaseCommand {
    /// List the cases (newest first) with the next due date.
    List {
        /// Only open cases.
        #[arg(long)]
        open: bool,
        /// Only this enterprise's cases (credit code).
        #[arg(long)]
        enterprise: Option<String>,
        #[command(flatten)]
        out: OutArg,
    },
    /// Show one case: measures, due dates, lists, documents and the full event trail.
    Show {
        /// The case id.
        case_id: String,
        #[command(flatten)]
        out: OutArg,
    },
    /// Record an event of the closed loop on a case (appended to its trail, never edited).
    Record {
        /// The case id.
        case_id: String,
        /// delivered, report-received, verified, resume-request or lifted.
        #[arg(long)]
        event: String,
        /// Who records it (name of the supervisor).
        #[arg(long)]
        actor: String,
        /// Free text kept with the event.
        #[arg(long, default_value = "")]
        note: String,
        /// Business date of the event (default: today, Asia/Shanghai).
        #[arg(long)]
        at: Option<NaiveDate>,
        /// With `verified`: the enterprise made a written compliance commitment (合规承诺),
        /// which puts it on the low-risk list at the next sweep.
        #[arg(long)]
        commitment: bool,
        #[command(flatten)]
        out: OutArg,
    },
}

pub fn run(c: CaseCommand) -> anyhow::Result<ExitCode> {
    match c {
        CaseCommand::List {
            open,
            enterprise,
            out,
        } => {
            let ledger = Ledger::open(&out.out)?;
            print!(
                "{}",
                ledger::format_list(&ledger.list(open, enterprise.as_deref())?)
            );
        }
        CaseCommand::Show { case_id, out } => {
            let ledger = Ledger::open(&out.out)?;
            print!("{}", ledger::format_show(&ledger.show(&case_id)?));
            let store = pharmwatch::store::Store::open(ledger.path())?;
            print!(
                "{}",
                pharmwatch::service::format_case_deliveries(
                    &pharmwatch::service::case_deliveries(&store, &case_id)?,
                    "pharmwatch deliver --manual"
                )
            );
        }
        CaseCommand::Record {
            case_id,
            event,
            actor,
            note,
            at,
            commitment,
            out,
        } => {
            let event = RecordedEvent::parse(&event)?;
            let mut ledger = Ledger::open(&out.out)?;
            let at = at.unwrap_or_else(today);
            ledger.record(&case_id, event, &actor, &note, at, commitment)?;
            if event == RecordedEvent::Lifted {
                // 第二十三条: the lifting is served in writing — proposed as a draft that an
                // approver approves in the workbench.
                if let Some(id) = pharmwatch::drafts::propose_now(
                    &mut ledger,
                    &case_id,
                    DocumentKind::LiftingNotice,
                    at,
                    &pharmwatch::audit::Actor {
                        name: actor.clone(),
                        role: "operator".into(),
                    },
                )? {
                    println!("lifting notice proposed as draft {id}: approve it in the workbench");
                }
            }
            let case = ledger.show(&case_id)?;
            println!(
                "case {case_id}: {} recorded on {at} by {actor}; case is {}",
                event.event_name(),
                case.case.status
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
