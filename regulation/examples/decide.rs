//! Decides a JSON array of findings with the embedded rules and calendar, as
//! `pharmwatch measures decide --findings F.json` will: decisions as a JSON array on stdout,
//! one line per refused finding on stderr.
//!
//! ```sh
//! cargo run -p pharmwatch-regulation --example decide -- findings.json
//! ```

use pharmwatch_regulation::{Calendar, Rules, decide_json};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: decide FINDINGS.json")?;
    let input = std::fs::read_to_string(&path)
        .map_err(|err| format!("cannot read findings file {path}: {err}"))?;
    let (decisions, errors) = decide_json(&input, &Rules::embedded()?, &Calendar::embedded()?);
    println!("{}", serde_json::to_string_pretty(&decisions)?);
    for err in &errors {
        eprintln!("{path}: {err}");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of the findings were refused", errors.len()).into())
    }
}
