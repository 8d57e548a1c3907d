//! `pharmwatch lists`: the low-risk, key-monitoring and fault-tolerance lists.

use std::process::ExitCode;

use pharmwatch::ledger::{self, Ledger};

use super::OutArg;

pub fn run(o: OutArg) -> anyhow::Result<ExitCode> {
    let ledger = Ledger::open(&o.out)?;
    print!("{}", ledger::format_lists(&ledger.list_entries(None)?));
    Ok(ExitCode::SUCCESS)
}
