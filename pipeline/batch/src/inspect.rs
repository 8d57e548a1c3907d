//! `pharmwatch inspect plan`: gathers what a risk-weighted random inspection plan is drawn
//! from — the enterprises of the lake's reference, their scale (packages moved over the 28
//! days up to the plan's day, `pipeline/sql/inspection/volume.sql`), their risk grades and
//! recent risk items (the stored risk lists of the days read), their effective credit grades
//! (the credit file of the case ledger) — and hands them to
//! [`pharmwatch_casework::inspection`], which draws and writes the plan.
//!
//! Invariants: read-only on the lake, the risk lists and the ledger; the plan's day is the
//! last stored risk list's unless given, and a plan is refused when no risk list is stored
//! and no day is given (its grades would all be guesses).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate};
use pharmwatch_casework::credit::CreditBook;
use pharmwatch_casework::inspection::{
    self, Candidate, Inspector, Period, Plan, PlanFiles, RecentItem,
};
use pharmwatch_casework::ledger::Ledger;
use pharmwatch_core::error::CoreError;
use pharmwatch_core::indicators::{Thresholds, render};
use pharmwatch_core::lake::{day_dir, day_files};
use pharmwatch_core::query::{query_rows, register_files, register_urls, session, table_rows};
use pharmwatch_core::remote_lake::local_reference;
use pharmwatch_core::store::{Store, location};
use pharmwatch_regulation::rules::Scale;
use pharmwatch_regulation::{RiskGrade, Rules};
use pharmwatch_schemas::{Enterprise, EventKind, ReferenceKind};
use serde::Deserialize;

use crate::error::Result;

/// The volume query.
const VOLUME_SQL: &str = include_str!("../../sql/inspection/volume.sql");

/// Days of records the scale reads, up to the plan's day.
const SCALE_DAYS: i64 = 28;

/// What `inspect plan` is asked for.
#[derive(Debug, Clone)]
pub struct PlanConfig {
    /// The lake (reference tables and records).
    pub lake: PathBuf,
    /// The nightly output directory (risk lists, case ledger); the plan is written under it.
    pub out: PathBuf,
    /// The period planned.
    pub period: Period,
    /// Seed of the draws.
    pub seed: u64,
    /// The day grades are read on (default: the last stored risk list's day).
    pub as_of: Option<NaiveDate>,
    /// The inspector roster (CSV).
    pub roster: PathBuf,
    /// Rules file (default: the embedded rules).
    pub rules: Option<PathBuf>,
    /// Replace a plan of the period drawn with another seed.
    pub redraw: bool,
}

/// Draws the plan of `cfg` and writes it; returns it and its files.
pub async fn plan(cfg: &PlanConfig) -> Result<(Plan, PlanFiles)> {
    let rules = match &cfg.rules {
        Some(p) => Rules::from_path(p)?,
        None => Rules::embedded()?,
    };
    let roster: Vec<Inspector> = inspection::read_roster(&cfg.roster)?;
    let store = Store::open(&location(&cfg.out))?;
    let rows = store.risk_rows(None, None)?;
    let as_of = match (cfg.as_of, rows.iter().map(|r| r.date).max()) {
        (Some(d), _) => d,
        (None, Some(d)) => d,
        (None, None) => {
            return Err(CoreError::Config(format!(
                "no risk list is stored in {}: run `pharmwatch nightly` first, or give --as-of",
                cfg.out.display()
            ))
            .into());
        }
    };
    let enterprises = enterprises(&cfg.lake).await?;
    let volumes = volumes(&cfg.lake, as_of).await?;
    let scales = scales(&enterprises, &volumes);

    // Risk grades and recent items of the days read.
    let first = as_of - Duration::days(i64::from(rules.inspection.risk_days) - 1);
    let mut risk: HashMap<&str, (RiskGrade, Vec<RecentItem>)> = HashMap::new();
    for row in rows
        .iter()
        .rev()
        .filter(|r| r.date >= first && r.date <= as_of)
    {
        let entry = risk
            .entry(row.enterprise_id.as_str())
            .or_insert((RiskGrade::A, Vec::new()));
        entry.0 = entry
            .0
            .max(RiskGrade::from_letter(&row.grade).unwrap_or(RiskGrade::A));
        entry.1.extend(row.items.iter().map(|i| RecentItem {
            date: row.date,
            indicator: i.indicator.clone(),
            reason: i.reason.clone(),
        }));
    }
    let ledger = Ledger::open(&cfg.out)?;
    let book = CreditBook::load(
        &ledger,
        enterprises.iter().map(|e| e.enterprise_id.as_str()),
        &rules,
    )?;
    let candidates: Vec<Candidate> = enterprises
        .iter()
        .map(|e| {
            let (risk_grade, recent) = risk
                .get(e.enterprise_id.as_str())
                .cloned()
                .unwrap_or((RiskGrade::A, Vec::new()));
            let credit_grade = book
                .effective(&e.enterprise_id, as_of, &e.credit_grade)
                .map_or_else(|| e.credit_grade.clone(), |c| c.grade);
            Candidate {
                enterprise_id: e.enterprise_id.clone(),
                name: e.name.clone(),
                enterprise_type: e.enterprise_type.as_str().to_string(),
                region_code: e.region_code.clone(),
                risk_grade,
                credit_grade,
                scale: scales
                    .get(e.enterprise_id.as_str())
                    .copied()
                    .unwrap_or(Scale::Small),
                recent,
            }
        })
        .collect();
    let plan = inspection::draw(
        cfg.period.clone(),
        as_of,
        &candidates,
        &roster,
        &rules,
        cfg.seed,
    )?;
    let files = inspection::write(&cfg.out, &plan, cfg.redraw)?;
    Ok((plan, files))
}

/// The enterprises of the lake's reference table.
async fn enterprises(lake: &Path) -> Result<Vec<Enterprise>> {
    let ctx = session();
    let kind = ReferenceKind::Enterprise;
    let url = local_reference(&lake.join(pharmwatch_core::lake::REFERENCE_DIR), kind)?;
    register_urls(&ctx, kind.as_str(), kind.schema(), &[url]).await?;
    Ok(table_rows(&ctx, kind.as_str()).await?)
}

#[derive(Deserialize)]
struct Volume {
    enterprise_id: String,
    volume: f64,
}

/// Packages each enterprise moved over the [`SCALE_DAYS`] up to `as_of`.
async fn volumes(lake: &Path, as_of: NaiveDate) -> Result<HashMap<String, f64>> {
    let ctx = session();
    let from = as_of - Duration::days(SCALE_DAYS - 1);
    for kind in [EventKind::Sales, EventKind::Purchase, EventKind::Production] {
        let mut files = Vec::new();
        // Late records of the window may sit in the partition of the day after it.
        for day in from
            .iter_days()
            .take_while(|d| *d <= as_of + Duration::days(1))
        {
            let dir = day_dir(lake, kind, day);
            if dir.is_dir() {
                files.extend(day_files(&dir)?);
            }
        }
        register_files(&ctx, kind.as_str(), kind.lake_schema(), &files).await?;
    }
    let sql = render(VOLUME_SQL, from, as_of, &Thresholds::default())?;
    let rows: Vec<Volume> = query_rows(&ctx, "volume.sql", &sql).await?;
    Ok(rows
        .into_iter()
        .map(|v| (v.enterprise_id, v.volume))
        .collect())
}

/// Each enterprise's scale: its rank by volume within its type (ties by credit code), in
/// thirds.
fn scales<'a>(
    enterprises: &'a [Enterprise],
    volumes: &HashMap<String, f64>,
) -> HashMap<&'a str, Scale> {
    let mut by_type: HashMap<&str, Vec<(f64, &str)>> = HashMap::new();
    for e in enterprises {
        let v = volumes.get(&e.enterprise_id).copied().unwrap_or(0.0);
        by_type
            .entry(e.enterprise_type.as_str())
            .or_default()
            .push((v, e.enterprise_id.as_str()));
    }
    let mut out = HashMap::new();
    for (_, mut list) in by_type {
        list.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
        let n = list.len();
        for (rank, (_, id)) in list.into_iter().enumerate() {
            let scale = match 3 * rank / n {
                0 => Scale::Small,
                1 => Scale::Medium,
                _ => Scale::Large,
            };
            out.insert(id, scale);
        }
    }
    out
}
