//! `pharmwatch user`: the accounts of the workbench (an administrator's commands on the
//! server). Passwords are read from a variable or standard input, never from the command line
//! (which other users of the machine can see); every change goes to the audit trail.

use std::io::BufRead as _;
use std::process::ExitCode;

use clap::Subcommand;

use pharmwatch::audit::{self, Actor, Subject};
use pharmwatch::ledger::Ledger;
use pharmwatch::serve::accounts::{self, NewAccount, Role};

use super::OutArg;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account. The password comes from `--password-env VAR` or the first line of
    /// standard input (at least 10 characters).
    Add {
        /// Sign-in name (3–32 of a-z, 0-9, `.`, `_`, `-`).
        username: String,
        /// province-supervisor, inspector, approver, enterprise-lead or auditor.
        #[arg(long)]
        role: String,
        /// Name shown in the workbench and the audit trail.
        #[arg(long)]
        name: String,
        /// A region of an inspector or regional approver (GB/T 2260, e.g. 150200); repeat for
        /// several.
        #[arg(long = "region")]
        regions: Vec<String>,
        /// The enterprise of an enterprise lead (unified social credit code).
        #[arg(long, default_value = "")]
        enterprise: String,
        /// Environment variable holding the password.
        #[arg(long)]
        password_env: Option<String>,
        #[command(flatten)]
        out: OutArg,
    },
    /// List the accounts.
    List {
        #[command(flatten)]
        out: OutArg,
    },
    /// Disable an account (its sessions end at once) or, with --enable, enable it again.
    Disable {
        /// The account.
        username: String,
        /// Enable instead.
        #[arg(long)]
        enable: bool,
        #[command(flatten)]
        out: OutArg,
    },
    /// Make an API token acting as an account (printed once; only its hash is stored).
    Token {
        /// The account the token acts as.
        username: String,
        /// What the token is for (e.g. the platform's name).
        #[arg(long)]
        label: String,
        #[command(flatten)]
        out: OutArg,
    },
}

fn admin() -> Actor {
    Actor {
        name: format!(
            "admin:{}",
            std::env::var("USER").unwrap_or_else(|_| "operator".into())
        ),
        role: "admin".into(),
    }
}

pub fn run(c: UserCommand) -> anyhow::Result<ExitCode> {
    match c {
        UserCommand::Add {
            username,
            role,
            name,
            regions,
            enterprise,
            password_env,
            out,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown role `{role}`: province-supervisor, inspector, approver, \
                     enterprise-lead or auditor"
                )
            })?;
            let password = match password_env {
                Some(var) => std::env::var(&var).map_err(|_| {
                    anyhow::anyhow!("the variable {var} holding the password is not set")
                })?,
                None => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let ledger = Ledger::open(&out.out)?;
            accounts::create(
                ledger.conn(),
                ledger.path(),
                &NewAccount {
                    username: &username,
                    display_name: &name,
                    role,
                    regions: &regions,
                    enterprise_id: &enterprise,
                    password: &password,
                },
            )?;
            audit::append(
                ledger.conn(),
                ledger.path(),
                &admin(),
                "account_created",
                Subject {
                    target: &format!("account:{username}"),
                    ..Subject::default()
                },
                &format!("{} {}", role.as_str(), regions.join(",")),
            )?;
            println!("account {username} ({}) added", role.name_zh());
        }
        UserCommand::List { out } => {
            let ledger = Ledger::open(&out.out)?;
            for a in accounts::list(ledger.conn(), ledger.path())? {
                println!(
                    "{:<20} {:<20} {:<12} regions={:<20} enterprise={}{}",
                    a.username,
                    a.role.as_str(),
                    a.display_name,
                    a.regions.join(","),
                    a.enterprise_id,
                    if a.disabled { "  DISABLED" } else { "" }
                );
            }
        }
        UserCommand::Disable {
            username,
            enable,
            out,
        } => {
            let ledger = Ledger::open(&out.out)?;
            accounts::set_disabled(ledger.conn(), ledger.path(), &username, !enable)?;
            audit::append(
                ledger.conn(),
                ledger.path(),
                &admin(),
                if enable {
                    "account_enabled"
                } else {
                    "account_disabled"
                },
                Subject {
                    target: &format!("account:{username}"),
                    ..Subject::default()
                },
                "",
            )?;
            println!(
                "account {username} {}",
                if enable {
                    "enabled"
                } else {
                    "disabled; its sessions ended"
                }
            );
        }
        UserCommand::Token {
            username,
            label,
            out,
        } => {
            let ledger = Ledger::open(&out.out)?;
            let token = accounts::create_token(ledger.conn(), ledger.path(), &username, &label)?;
            audit::append(
                ledger.conn(),
                ledger.path(),
                &admin(),
                "token_created",
                Subject {
                    target: &format!("account:{username}"),
                    ..Subject::default()
                },
                &label,
            )?;
            println!("{token}");
            eprintln!("API token for {username} ({label}): shown once, only its hash is stored");
        }
    }
    Ok(ExitCode::SUCCESS)
}
