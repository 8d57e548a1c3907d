//! `pharmwatch links revoke`: refuse every link of one document (or one risk warning) issued
//! until now — a notice sent to the wrong contact, a document withdrawn. Links sent afterwards
//! work; whoever opens a revoked link sees when and why it was revoked.

use std::process::ExitCode;

use clap::Subcommand;
use pharmwatch::audit::Actor;
use pharmwatch::ledger::Ledger;

use super::OutArg;

#[derive(Debug, Subcommand)]
pub enum LinksCommand {
    /// Revoke the links of a document (its number) or of a risk warning (--risk-event).
    Revoke {
        /// The document number (蒙药监告〔2026〕3号 …).
        #[arg(required_unless_present = "risk_event", conflicts_with = "risk_event")]
        document: Option<String>,
        /// The risk event whose warning's links are revoked.
        #[arg(long)]
        risk_event: Option<String>,
        /// Why (shown to whoever opens a revoked link, kept in the audit trail).
        #[arg(long)]
        reason: String,
        /// Who revokes (an account of the workbench or the operator's name).
        #[arg(long)]
        by: String,
        #[command(flatten)]
        out: OutArg,
    },
}

pub fn run(c: LinksCommand) -> anyhow::Result<ExitCode> {
    match c {
        LinksCommand::Revoke {
            document,
            risk_event,
            reason,
            by,
            out,
        } => {
            let subject = match (document, risk_event) {
                (Some(d), _) => d,
                (None, Some(r)) => format!("risk:{r}"),
                (None, None) => anyhow::bail!("give a document number or --risk-event"),
            };
            let mut ledger = Ledger::open(&out.out)?;
            let actor = Actor {
                name: by,
                role: "supervisor".into(),
            };
            let r = pharmwatch::revocation::revoke(&mut ledger, &subject, &actor, &reason)?;
            println!(
                "links of {} (enterprise {}) issued until {} are revoked by {}: {}",
                r.subject, r.enterprise_id, r.revoked_at, r.revoked_by, r.reason
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
