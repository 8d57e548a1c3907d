//! `pharmwatch compact`: each closed day partition of the lake merged into one file, swapped
//! in so that a reader running meanwhile reads every row once (`pharmwatch_core::compact`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::NaiveDate;
use clap::Args;

use pharmwatch::compact::{self, CompactOptions, CompactionReport, Outcome, PartitionReport};
use pharmwatch::remote_lake::LakeSource;
use pharmwatch_schemas::EventKind;

use super::today;

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The lake: a folder, or `s3://bucket/prefix` on S3-compatible object storage (connection
    /// from the AWS_* variables; see README).
    #[arg(long)]
    lake: PathBuf,
    /// First day of the partitions to compact (with --to). Default: every closed day, i.e.
    /// every day before today in Asia/Shanghai.
    #[arg(long, requires = "to", conflicts_with = "before")]
    from: Option<NaiveDate>,
    /// Last day of the partitions to compact, inclusive (with --from). Give today's date only
    /// if the stream has stopped writing today's partition.
    #[arg(long, requires = "from", conflicts_with = "before")]
    to: Option<NaiveDate>,
    /// Compact the partitions of the days before this one (default: today, Asia/Shanghai).
    #[arg(long)]
    before: Option<NaiveDate>,
    /// Event kind to compact; repeatable (default: every kind).
    #[arg(long = "kind", value_name = "KIND",
          value_parser = clap::builder::PossibleValuesParser::new(EventKind::NAMES))]
    kinds: Vec<String>,
    /// Seconds the files a merged file replaces stay readable after it appears: a reader (the
    /// nightly job) that listed them before has this long to read them. A later run deletes
    /// them. 0 deletes them at once: only when nothing reads the lake meanwhile.
    #[arg(long, default_value_t = compact::DEFAULT_GRACE.as_secs())]
    grace_secs: u64,
    /// Seconds a `stream-*` file must have existed before it is merged (until its batch
    /// commits, the stream service may still roll it back and delete it).
    #[arg(long, default_value_t = compact::DEFAULT_SETTLE.as_secs())]
    settle_secs: u64,
    /// Print what would be merged; write and delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write the run's counters (partitions by kind and outcome, files merged and deleted)
    /// to this file for node_exporter's textfile collector, e.g.
    /// /var/lib/prometheus/node-exporter/pharmwatch_compact.prom.
    #[arg(long, value_name = "PATH")]
    metrics_textfile: Option<PathBuf>,
}

pub async fn run(a: CompactArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let (from, to) = match (a.from, a.to, a.before) {
        (Some(f), Some(t), _) => (f, t),
        (_, _, before) => (
            NaiveDate::MIN,
            before
                .unwrap_or_else(today)
                .pred_opt()
                .unwrap_or(NaiveDate::MIN),
        ),
    };
    if to < from {
        bail!("--to {to} is before --from {from}");
    }
    let kinds: Vec<EventKind> = if a.kinds.is_empty() {
        EventKind::ALL.to_vec()
    } else {
        a.kinds.iter().filter_map(|k| EventKind::parse(k)).collect()
    };
    let opts = CompactOptions {
        grace: Duration::from_secs(a.grace_secs),
        settle: Duration::from_secs(a.settle_secs),
        dry_run: a.dry_run,
    };
    let lake = LakeSource::at(&a.lake)?;
    let mut report = CompactionReport::default();
    let mut failed = 0usize;
    for kind in &kinds {
        for day in compact::partition_days(&lake, *kind, from, to).await? {
            match compact::compact_partition(&lake, *kind, day, &opts).await {
                Ok(p) => {
                    println!("{}", line(&p));
                    report.partitions.push(p);
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    failed += 1;
                }
            }
        }
    }
    println!(
        "{}",
        summary(&report, &lake, a.dry_run, started.elapsed().as_secs_f64())
    );
    if let Some(path) = &a.metrics_textfile {
        pharmwatch_core::metrics::write_textfile(path, &compact::metrics_text())?;
    }
    if failed > 0 {
        bail!(
            "{failed} of {} partition(s) failed (each named above; they are as they were)",
            failed + report.partitions.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One partition's line: `sales 2026-03-10: 32 files → 1, 1,200 rows, 1.2 MiB → 0.4 MiB …`.
fn line(p: &PartitionReport) -> String {
    let mut s = format!("{} {}: ", p.kind, p.day);
    match p.outcome {
        Outcome::Unchanged => s.push_str(&format!(
            "{} unchanged, {} rows, {}",
            files(p.files_before),
            thousands(p.rows),
            bytes(p.bytes_before)
        )),
        Outcome::Merged | Outcome::WouldMerge => s.push_str(&format!(
            "{} → {}, {} rows, {} → {}",
            files(p.files_before),
            p.files_after,
            thousands(p.rows),
            bytes(p.bytes_before),
            if p.outcome == Outcome::Merged {
                bytes(p.bytes_after)
            } else {
                "?".to_string()
            }
        )),
    }
    if p.outcome == Outcome::WouldMerge {
        s.push_str(" (dry run)");
    }
    if let Some(f) = &p.file {
        s.push_str(&format!(", {f}"));
    }
    if p.deleted > 0 {
        s.push_str(&format!("; {} deleted", replaced(p.deleted)));
    }
    if p.waiting > 0 {
        s.push_str(&format!(
            "; {} kept until {}",
            replaced(p.waiting),
            p.delete_after
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default()
        ));
    }
    if p.unsettled > 0 {
        s.push_str(&format!("; {} too young, left", files(p.unsettled)));
    }
    s
}

fn summary(r: &CompactionReport, lake: &LakeSource, dry_run: bool, seconds: f64) -> String {
    let merged: Vec<&PartitionReport> = r
        .partitions
        .iter()
        .filter(|p| p.outcome != Outcome::Unchanged)
        .collect();
    let sum = |f: &dyn Fn(&PartitionReport) -> u64| merged.iter().map(|p| f(p)).sum::<u64>();
    let verb = if dry_run {
        "would compact"
    } else {
        "compacted"
    };
    let mut s = format!(
        "{verb} {} of {} partitions of {} in {seconds:.1} s",
        merged.len(),
        r.partitions.len(),
        lake.describe()
    );
    if !merged.is_empty() {
        s.push_str(&format!(
            ": {} → {}, {} rows",
            files(sum(&|p| p.files_before as u64) as usize),
            sum(&|p| p.files_after as u64),
            thousands(sum(&|p| p.rows)),
        ));
        if !dry_run {
            s.push_str(&format!(
                ", {} → {}",
                bytes(sum(&|p| p.bytes_before)),
                bytes(sum(&|p| p.bytes_after))
            ));
        }
    }
    let deleted = r.total(|p| p.deleted as u64);
    let waiting = r.total(|p| p.waiting as u64);
    s.push_str(&format!(
        "; {deleted} replaced file(s) deleted, {waiting} kept for the grace period"
    ));
    if let Some(until) = r.partitions.iter().filter_map(|p| p.delete_after).max() {
        s.push_str(&format!(
            " (run again after {} to delete them)",
            until.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    s
}

fn files(n: usize) -> String {
    if n == 1 {
        "1 file".to_string()
    } else {
        format!("{n} files")
    }
}

fn replaced(n: usize) -> String {
    if n == 1 {
        "1 replaced file".to_string()
    } else {
        format!("{n} replaced files")
    }
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes for people: `512 B`, `12.0 KiB`, `3.4 MiB`, `1.2 GiB`.
fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 + 400 * 1024), "3.4 MiB");
    }
}
