//! `pharmwatch migrate`: applies the store's pending migrations and reports every migration
//! with when it was applied. Every command that opens the store applies them too; operators run
//! this one first after an upgrade, to see what changed and to keep the schema change out of
//! the night's run.

use std::process::ExitCode;

use pharmwatch_core::store::Store;

use super::OutArg;

pub fn run(o: OutArg) -> anyhow::Result<ExitCode> {
    let path = pharmwatch_core::store::location(&o.out);
    let pending = Store::pending_at(&path)?;
    let store = Store::open(&path)?;
    println!("store {}", pharmwatch_core::db::display_location(&path));
    let migrations = store.migrations()?;
    println!("{:>7}  {:<36}  migration", "version", "applied");
    for m in &migrations {
        let at = m.applied_at.as_deref().unwrap_or("pending");
        let now = if pending.contains(&m.version) {
            " (applied now)"
        } else {
            ""
        };
        println!("{:>7}  {:<36}  {}{now}", m.version, at, m.title);
    }
    println!(
        "{} migration(s) applied now, {} in all",
        pending.len(),
        migrations.len()
    );
    Ok(ExitCode::SUCCESS)
}
