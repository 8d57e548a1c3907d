//! `pharmwatch topics`: the stream's topics created on the broker.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use pharmwatch::stream::config::StreamConfig;
use pharmwatch::stream::service::{self};

#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// Configuration (pharmwatch.toml): its [stream] table (brokers and topic names);
    /// PHARMWATCH__STREAM__* variables override it.
    #[arg(long, env = "PHARMWATCH_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Partitions per topic (the same for every event topic: partitions are the unit of scale).
    #[arg(long, default_value_t = 4)]
    partitions: i32,
}

pub async fn run(a: TopicsArgs) -> anyhow::Result<ExitCode> {
    let cfg = StreamConfig::load(a.config.as_deref())?;
    let created = service::create_topics(&cfg, a.partitions).await?;
    println!(
        "{} topic(s) created with {} partitions{}",
        created.len(),
        a.partitions,
        if created.is_empty() {
            " (all existed)".to_string()
        } else {
            format!(": {}", created.join(", "))
        }
    );
    Ok(ExitCode::SUCCESS)
}
