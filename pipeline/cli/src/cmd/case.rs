//! `pharmwatch case`: the case ledger — list, show, record an event, a referred case's
//! penalty procedure.

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
    /// Propose a document for a case by hand (an interview notice, a suspension decision, a
    /// caution letter, a lifting notice, or for a referred case the filing approval form, the
    /// notice of the proposed penalty, the hearing notice or the penalty decision): it becomes
    /// a draft that an inspector edits and submits and an approver approves in the workbench
    /// before it is numbered and issued. Approving the filing form files the case; approving
    /// the decision decides it.
    Propose {
        /// The case id.
        case_id: String,
        /// caution-notice, interview-notice, suspension-decision, lifting-notice,
        /// filing-approval, penalty-notice, hearing-notice or penalty-decision.
        #[arg(long)]
        document: String,
        /// Who proposes it.
        #[arg(long)]
        actor: String,
        /// Business date (default: today, Asia/Shanghai).
        #[arg(long)]
        on: Option<NaiveDate>,
        #[command(flatten)]
        out: OutArg,
    },
    /// A referred case's penalty procedure (立案 and after): record a step with --step, or
    /// show its stages with their statutory due days (working days, clock stops, extensions)
    /// and what is overdue. Filing and deciding are recorded by approving the filing approval
    /// form and the penalty decision (see `case propose`), not here.
    Penalty {
        /// The case id.
        case_id: String,
        /// notice-served (once the 行政处罚告知书 is issued), hearing-requested (--note the
        /// hearing day), clock-stopped (--note hearing, testing, appraisal, suspension or
        /// announcement), clock-resumed, extension-granted (--note the stage),
        /// decision-served.
        #[arg(long)]
        step: Option<String>,
        /// Who records the step.
        #[arg(long, default_value = "")]
        actor: String,
        /// What the step needs (see --step).
        #[arg(long, default_value = "")]
        note: String,
        /// Business date of the step, or the day the procedure is shown for (default: today,
        /// Asia/Shanghai).
        #[arg(long)]
        on: Option<NaiveDate>,
        /// Measures rules file replacing the embedded defaults (its `[penalty]` section).
        #[arg(long, env = "PHARMWATCH_RULES")]
        rules: Option<std::path::PathBuf>,
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
            let detail = ledger.show(&case_id)?;
            print!("{}", ledger::format_show(&detail));
            // A referred case: its penalty procedure's stages, due days and what is overdue.
            if detail.measures.iter().any(|m| m.code == "case_referral") {
                let rules = pharmwatch::measures::load_rules(None)?;
                let cal = pharmwatch::measures::calendar_for(None, Some(&out.out))?;
                match pharmwatch::penalty::procedure(&ledger, &case_id, today(), &rules, &cal) {
                    Ok(p) => print!("{}", pharmwatch::penalty::format(&p)),
                    // A clock that runs past the calendar's years: the case is still shown.
                    Err(e) => println!("penalty procedure: {e}"),
                }
            }
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
        CaseCommand::Propose {
            case_id,
            document,
            actor,
            on,
            out,
        } => {
            let kind = DocumentKind::parse(&document.replace('-', "_")).ok_or_else(|| {
                anyhow::anyhow!(
                    "--document `{document}`: caution-notice, interview-notice, \
                     suspension-decision, lifting-notice, filing-approval, penalty-notice, \
                     hearing-notice or penalty-decision"
                )
            })?;
            let mut ledger = Ledger::open(&out.out)?;
            let id = pharmwatch::drafts::propose_by_hand(
                &mut ledger,
                &case_id,
                kind,
                on.unwrap_or_else(today),
                &pharmwatch::audit::Actor {
                    name: actor,
                    role: "inspector".into(),
                },
            )?;
            println!(
                "case {case_id}: {} proposed as draft {id}: an inspector submits it and an \
                 approver approves it in the workbench",
                kind.title()
            );
        }
        CaseCommand::Penalty {
            case_id,
            step,
            actor,
            note,
            on,
            rules,
            out,
        } => {
            let rules = pharmwatch::measures::load_rules(rules.as_deref())?;
            let cal = pharmwatch::measures::calendar_for(None, Some(&out.out))?;
            let mut ledger = Ledger::open(&out.out)?;
            let on = on.unwrap_or_else(today);
            if let Some(step) = step {
                let step = pharmwatch::penalty::PenaltyStep::parse(&step)?;
                pharmwatch::penalty::record(
                    &mut ledger,
                    &case_id,
                    step,
                    on,
                    &actor,
                    &note,
                    &rules,
                )?;
                println!(
                    "case {case_id}: {} recorded on {on} by {actor}",
                    step.event()
                );
            }
            let p = pharmwatch::penalty::procedure(&ledger, &case_id, on, &rules, &cal)?;
            print!("{}", pharmwatch::penalty::format(&p));
        }
    }
    Ok(ExitCode::SUCCESS)
}
