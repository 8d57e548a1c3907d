//! `pharmwatch produce`: a lake's records published to the event topics.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::Args;

use pharmwatch::produce;
use pharmwatch::stream::config::StreamConfig;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The lake to publish (written by `pharmwatch simulate`): a folder or `s3://bucket/prefix`.
    #[arg(long)]
    lake: PathBuf,
    /// Configuration (pharmwatch.toml): its [stream] table (brokers and topic names);
    /// PHARMWATCH__STREAM__* variables override it.
    #[arg(long, env = "PHARMWATCH_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// First business day to publish (default: the lake's first).
    #[arg(long)]
    from: Option<NaiveDate>,
    /// Last business day to publish (default: the lake's last).
    #[arg(long)]
    to: Option<NaiveDate>,
    /// Messages per second (default: as fast as the broker takes them).
    #[arg(long)]
    rate: Option<f64>,
}

pub async fn run(a: ProduceArgs) -> anyhow::Result<ExitCode> {
    let cfg = StreamConfig::load(a.config.as_deref())?;
    if same_place(&a.lake, &cfg.lake) {
        anyhow::bail!(
            "--lake {} is the lake the stream lands its records in ([stream] lake): publishing \
             it would land every record a second time, and the next nightly run would count each \
             twice. Publish from another lake (e.g. `pharmwatch simulate … --out source`, then \
             `--lake source`)",
            a.lake.display()
        );
    }
    let s = produce::produce(&cfg, &a.lake, a.from, a.to, a.rate).await?;
    for (t, n) in &s.per_topic {
        println!("  {t:<28} {n:>10} messages");
    }
    println!(
        "produced {} messages in {:.2} s ({:.0} messages/s)",
        s.sent, s.seconds, s.rate
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether two lake locations are the same folder (or the same `s3://` URL).
fn same_place(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.to_string_lossy().trim_end_matches('/') == b.to_string_lossy().trim_end_matches('/'),
    }
}
