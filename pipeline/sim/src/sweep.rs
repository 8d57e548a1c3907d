//! Detection as curves across seeds: simulate a noisy province per seed, run the nightly job
//! over its last days, judge the risk list with [`evaluate::curves`], and aggregate the seeds
//! per anomaly kind × magnitude band, with the false alarms on enterprises without labels.
//!
//! Per seed ([`run_seed`]): `simulate` (the realistic noise of [`NoiseConfig::default`] and
//! the default planted anomalies unless told otherwise) into `DIR/seed-<n>/lake`, the nightly
//! job over the last `report_days` days (with the anomaly model trained on the run, as the
//! demo does) into `DIR/seed-<n>/out`, then [`evaluate::curves_files`]. The seeds run on up
//! to `jobs` threads, each with a tokio runtime of its own; results are kept in seed order, so
//! the figures do not depend on which thread finished first.
//!
//! [`aggregate`] turns the per-seed curves into one summary. For each figure (a detection
//! rate of one kind and band, a false-alarm rate):
//! - **pooled** = the sum of numerators ÷ the sum of denominators over the seeds (the
//!   headline figure: it weighs each label, or enterprise-day, once);
//! - **mean** and **sd** = the mean and the sample standard deviation (n − 1) of the per-seed
//!   rates, over the seeds where the denominator is not zero (sd 0 with fewer than two).
//!
//! Targets (issue 16, on noisy provinces over 5 seeds): detection ≥ 0.95 in the most obvious
//! third and ≥ 0.6 in the middle third, judged on the pooled rate with any item; false alarms
//! ≤ 0.5 % of enterprise-days, at grade C/D ≤ 0.05 %. The report marks each figure against
//! them; it never hides one that misses.
//!
//! Outputs: `DIR/sweep.json` (settings, per-seed curves and the summary — no timings, so the
//! same settings give the same bytes) and `DIR/evaluation.html` ([`html`]: one line chart per
//! kind and the tables). Errors are the nightly job's ([`pharmwatch_batch::BatchError`]): every step of a seed is
//! a core or nightly step, and the chart's template is rendered as the report's are.

pub mod html;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::evaluate::{self, BANDS, Curves, intended_indicator};
use crate::simulate::anomalies::AnomalyKind;
use crate::simulate::noise::NoiseConfig;
use crate::simulate::{self, SimConfig};
use pharmwatch_batch::Result;
use pharmwatch_batch::nightly::{self, NightlyConfig};
use pharmwatch_core::anomaly::ModelSource;
use pharmwatch_core::error::CoreError;
use pharmwatch_core::indicators::Thresholds;
use pharmwatch_regulation::Calendar;

/// File name of the sweep's JSON inside its directory.
pub const JSON_FILE: &str = "sweep.json";
/// File name of the sweep's chart page inside its directory.
pub const HTML_FILE: &str = "evaluation.html";
/// Target detection in the most obvious third.
pub const TARGET_OBVIOUS: f64 = 0.95;
/// Target detection in the middle third.
pub const TARGET_MIDDLE: f64 = 0.6;
/// Target false-alarm rate per enterprise-day.
pub const TARGET_FALSE_ALARMS: f64 = 0.005;
/// Target false-alarm rate per enterprise-day at grade C/D.
pub const TARGET_FALSE_ALARMS_CD: f64 = 0.0005;

/// Band names, least obvious first (English, Chinese).
pub const BAND_NAMES: [(&str, &str); BANDS] = [
    ("least obvious", "不明显"),
    ("middle", "中等"),
    ("most obvious", "明显"),
];

/// Settings of a sweep.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// Working directory: `DIR/seed-<n>/{lake,out}`, `DIR/sweep.json`, `DIR/evaluation.html`.
    pub dir: PathBuf,
    /// Seeds, in the order they are reported.
    pub seeds: Vec<u64>,
    /// Enterprises per province.
    pub enterprises: usize,
    /// Days simulated.
    pub days: u32,
    /// Days of the risk list (the last ones; the anomalies are planted in them).
    pub report_days: u32,
    /// Planted anomalies per kind (`None`: the simulator's default).
    pub anomalies_per_kind: Option<usize>,
    /// The simulator's noise.
    pub noise: NoiseConfig,
    /// Where the nightly job's model comes from.
    pub model: ModelSource,
    /// Seeds run at once (at least 1).
    pub jobs: usize,
    /// Show a progress bar over the seeds.
    pub progress: bool,
    /// Keep each seed's lake (otherwise removed once judged; the risk list stays).
    pub keep_lakes: bool,
}

impl SweepConfig {
    /// A sweep of `seeds` over a province of `enterprises` × `days`, risk list of the last
    /// `report_days`, with the realistic noise, the default anomalies and the trained model,
    /// on as many threads as there are cores (at most one per seed).
    pub fn new(
        dir: PathBuf,
        seeds: Vec<u64>,
        enterprises: usize,
        days: u32,
        report_days: u32,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            dir,
            jobs: cores.min(seeds.len()).max(1),
            seeds,
            enterprises,
            days,
            report_days,
            anomalies_per_kind: None,
            noise: NoiseConfig::default(),
            model: ModelSource::default(),
            progress: false,
            keep_lakes: true,
        }
    }
}

/// The settings a sweep's figures depend on, as written to its JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSettings {
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Enterprises per province.
    pub enterprises: usize,
    /// Days simulated.
    pub days: u32,
    /// Days of the risk list.
    pub report_days: u32,
    /// Planted anomalies per kind (`None`: the simulator's default).
    pub anomalies_per_kind: Option<usize>,
    /// Whether the simulator's noise was on.
    pub noise: bool,
    /// The model: `trained`, `loaded` or `off`.
    pub model: String,
}

impl SweepSettings {
    /// The settings of `cfg`.
    pub fn of(cfg: &SweepConfig) -> Self {
        Self {
            seeds: cfg.seeds.clone(),
            enterprises: cfg.enterprises,
            days: cfg.days,
            report_days: cfg.report_days,
            anomalies_per_kind: cfg.anomalies_per_kind,
            noise: cfg.noise.enabled,
            model: match cfg.model {
                ModelSource::Train { .. } => "trained",
                ModelSource::Load(_) => "loaded",
                ModelSource::Off => "off",
            }
            .to_string(),
        }
    }
}

/// One seed's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedRun {
    /// Seed.
    pub seed: u64,
    /// Records simulated.
    pub records: u64,
    /// Anomalies planted.
    pub labels: usize,
    /// Risk-list rows over the evaluated days.
    pub risk_rows: usize,
    /// The seed's curves.
    pub curves: Curves,
}

/// A rate across seeds (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Sum of numerators ÷ sum of denominators (0 when there is no denominator).
    pub pooled: f64,
    /// Mean of the per-seed rates.
    pub mean: f64,
    /// Sample standard deviation of the per-seed rates.
    pub sd: f64,
    /// Seeds with a denominator.
    pub seeds: usize,
}

impl Rate {
    /// The rate of per-seed `(numerator, denominator)` pairs.
    pub fn of(parts: &[(u64, u64)]) -> Self {
        let (num, den) = parts
            .iter()
            .fold((0u64, 0u64), |(n, d), (a, b)| (n + a, d + b));
        let per_seed: Vec<f64> = parts
            .iter()
            .filter(|(_, d)| *d > 0)
            .map(|(n, d)| *n as f64 / *d as f64)
            .collect();
        let k = per_seed.len();
        let mean = if k == 0 {
            0.0
        } else {
            per_seed.iter().sum::<f64>() / k as f64
        };
        let sd = if k < 2 {
            0.0
        } else {
            (per_seed.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (k - 1) as f64).sqrt()
        };
        Self {
            pooled: if den == 0 {
                0.0
            } else {
                num as f64 / den as f64
            },
            mean,
            sd,
            seeds: k,
        }
    }
}

/// One kind × band across seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandSummary {
    /// Band: 0 least obvious … 2 most obvious.
    pub band: usize,
    /// Smallest magnitude of the band.
    pub magnitude_lo: f64,
    /// Largest magnitude of the band.
    pub magnitude_hi: f64,
    /// Labels over all seeds.
    pub labels: usize,
    /// Detection with any item.
    pub any_item: Rate,
    /// Detection with the intended indicator.
    pub intended: Rate,
    /// The target of the band's pooled detection with any item, where there is one.
    pub target: Option<f64>,
}

impl BandSummary {
    /// Whether the band has a target and its pooled detection with any item misses it.
    pub fn misses_target(&self) -> bool {
        self.labels > 0 && self.target.is_some_and(|t| self.any_item.pooled < t)
    }
}

/// One kind across seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindSummary {
    /// Label kind.
    pub kind: String,
    /// The indicator meant to find it.
    pub intended_indicator: String,
    /// What its magnitude measures (empty for a kind the simulator does not plant).
    pub unit: String,
    /// Per band, least obvious first.
    pub bands: Vec<BandSummary>,
    /// Labels without a magnitude, over all seeds.
    pub unbanded_labels: usize,
}

impl KindSummary {
    /// Labels over all bands and seeds.
    pub fn labels(&self) -> usize {
        self.bands.iter().map(|b| b.labels).sum::<usize>() + self.unbanded_labels
    }
}

/// False alarms across seeds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FalseAlarmSummary {
    /// Registered enterprise-days of enterprises without labels, over all seeds.
    pub enterprise_days: u64,
    /// Their listed enterprise-days.
    pub listed: u64,
    /// Their listed enterprise-days at grade C/D.
    pub listed_cd: u64,
    /// Listed ÷ enterprise-days.
    pub rate: Rate,
    /// Listed at grade C/D ÷ enterprise-days.
    pub rate_cd: Rate,
    /// Listed enterprise-days per indicator, over all seeds.
    pub by_indicator: BTreeMap<String, u64>,
}

/// A sweep's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    /// Seeds aggregated, in order.
    pub seeds: Vec<u64>,
    /// Per kind, in planting order.
    pub kinds: Vec<KindSummary>,
    /// False alarms.
    pub false_alarms: FalseAlarmSummary,
}

/// What a sweep wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// Settings.
    pub settings: SweepSettings,
    /// Per seed, in seed order.
    pub runs: Vec<SeedRun>,
    /// Aggregated figures.
    pub summary: SweepSummary,
}

/// The magnitudes of `band` of `kind`'s range, smallest first.
pub fn band_bounds(kind: AnomalyKind, band: usize) -> (f64, f64) {
    let r = kind.magnitude_range();
    let w = r.hi - r.lo;
    let (a, b) = (band as f64 / BANDS as f64, (band + 1) as f64 / BANDS as f64);
    if r.larger_is_clearer {
        (r.lo + w * a, r.lo + w * b)
    } else {
        (r.hi - w * b, r.hi - w * a)
    }
}

/// The target of `band`'s detection: the middle and most obvious thirds have one.
pub fn band_target(band: usize) -> Option<f64> {
    match band {
        1 => Some(TARGET_MIDDLE),
        2 => Some(TARGET_OBVIOUS),
        _ => None,
    }
}

/// Whether any figure of `s` misses its target: a band's pooled detection with any item, or
/// a false-alarm rate.
pub fn misses_targets(s: &SweepSummary) -> bool {
    s.kinds
        .iter()
        .flat_map(|k| &k.bands)
        .any(BandSummary::misses_target)
        || s.false_alarms.rate.pooled > TARGET_FALSE_ALARMS
        || s.false_alarms.rate_cd.pooled > TARGET_FALSE_ALARMS_CD
}

/// Aggregates per-seed runs (in the order given) into one summary. Kinds appear in the order
/// of the first run's curves, then any kind only later runs have.
pub fn aggregate(runs: &[SeedRun]) -> SweepSummary {
    let mut names: Vec<&str> = Vec::new();
    for r in runs {
        for k in &r.curves.kinds {
            if !names.contains(&k.kind.as_str()) {
                names.push(&k.kind);
            }
        }
    }
    let kinds = names.iter().map(|name| kind_summary(runs, name)).collect();
    let fa: Vec<&evaluate::FalseAlarms> = runs.iter().map(|r| &r.curves.false_alarms).collect();
    let mut by_indicator: BTreeMap<String, u64> = BTreeMap::new();
    for f in &fa {
        for (k, v) in &f.by_indicator {
            *by_indicator.entry(k.clone()).or_default() += v;
        }
    }
    let parts = |n: fn(&evaluate::FalseAlarms) -> u64| -> Vec<(u64, u64)> {
        fa.iter().map(|f| (n(f), f.enterprise_days)).collect()
    };
    SweepSummary {
        seeds: runs.iter().map(|r| r.seed).collect(),
        kinds,
        false_alarms: FalseAlarmSummary {
            enterprise_days: fa.iter().map(|f| f.enterprise_days).sum(),
            listed: fa.iter().map(|f| f.listed).sum(),
            listed_cd: fa.iter().map(|f| f.listed_cd).sum(),
            rate: Rate::of(&parts(|f| f.listed)),
            rate_cd: Rate::of(&parts(|f| f.listed_cd)),
            by_indicator,
        },
    }
}

/// One kind's summary over `runs`.
fn kind_summary(runs: &[SeedRun], name: &str) -> KindSummary {
    let curves: Vec<&evaluate::KindCurve> = runs
        .iter()
        .filter_map(|r| r.curves.kinds.iter().find(|k| k.kind == name))
        .collect();
    let kind = AnomalyKind::from_name(name);
    let bands = (0..BANDS)
        .map(|b| {
            let per_seed = |f: fn(&evaluate::Detected) -> usize| -> Vec<(u64, u64)> {
                curves
                    .iter()
                    .map(|c| (f(&c.bands[b]) as u64, c.bands[b].labels as u64))
                    .collect()
            };
            let (lo, hi) = kind.map_or((0.0, 0.0), |k| band_bounds(k, b));
            BandSummary {
                band: b,
                magnitude_lo: lo,
                magnitude_hi: hi,
                labels: curves.iter().map(|c| c.bands[b].labels).sum(),
                any_item: Rate::of(&per_seed(|d| d.any_item)),
                intended: Rate::of(&per_seed(|d| d.intended)),
                target: band_target(b),
            }
        })
        .collect();
    KindSummary {
        kind: name.to_string(),
        intended_indicator: intended_indicator(name).to_string(),
        unit: kind.map_or("", |k| k.magnitude_range().unit).to_string(),
        bands,
        unbanded_labels: curves.iter().map(|c| c.unbanded.labels).sum(),
    }
}

/// The nightly job's settings for a sweep or the demo: the lake's risk list of `[from, to]`
/// into `out` with the default thresholds and `model`.
pub fn nightly_config(
    lake: &Path,
    out: &Path,
    from: NaiveDate,
    to: NaiveDate,
    model: ModelSource,
) -> NightlyConfig {
    NightlyConfig {
        lake: Some(lake.to_path_buf()),
        reference: None,
        inputs: Vec::new(),
        from,
        to,
        out: out.to_path_buf(),
        thresholds: Thresholds::default(),
        top: 10,
        progress: false,
        model,
        anomaly_threshold: pharmwatch_core::anomaly::DEFAULT_THRESHOLD,
    }
}

/// Simulates, runs the nightly job and judges one seed (on the calling thread, with a tokio
/// runtime of its own).
pub fn run_seed(cfg: &SweepConfig, cal: &Calendar, seed: u64) -> Result<SeedRun> {
    let dir = cfg.dir.join(format!("seed-{seed}"));
    let (lake, out) = (dir.join("lake"), dir.join("out"));
    let sim = simulate::run(
        &SimConfig {
            enterprises: cfg.enterprises,
            days: cfg.days,
            start: simulate::default_start(),
            seed,
            anomaly_days: cfg.report_days,
            anomalies_per_kind: cfg.anomalies_per_kind,
            out: lake.clone(),
            progress: false,
            noise: cfg.noise.clone(),
        },
        cal,
    )?;
    let from = sim.end - Duration::days(i64::from(cfg.report_days.max(1)) - 1);
    let ncfg = nightly_config(&lake, &out, from, sim.end, cfg.model.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CoreError::Internal(format!("seed {seed}: no async runtime: {e}")))?;
    let night = rt.block_on(nightly::run(&ncfg))?;
    let curves = evaluate::curves_files(&out.join("risk_list.csv"), &lake)?;
    if !cfg.keep_lakes {
        let labels = lake.join("labels.csv");
        std::fs::copy(&labels, out.join("labels.csv")).map_err(|e| CoreError::io(&labels, e))?;
        std::fs::remove_dir_all(&lake).map_err(|e| CoreError::io(&lake, e))?;
    }
    Ok(SeedRun {
        seed,
        records: sim.total_records,
        labels: sim.labels,
        risk_rows: night.rows.len(),
        curves,
    })
}

/// Runs every seed (up to `cfg.jobs` at once), aggregates them and writes `sweep.json` and
/// `evaluation.html` into `cfg.dir`. The first failing seed (in seed order) fails the sweep.
pub fn run(cfg: &SweepConfig, cal: &Calendar) -> Result<Sweep> {
    if cfg.seeds.is_empty() {
        return Err(CoreError::Config("a sweep needs at least one seed".into()).into());
    }
    std::fs::create_dir_all(&cfg.dir).map_err(|e| CoreError::io(&cfg.dir, e))?;
    let n = cfg.seeds.len();
    let bar = pharmwatch_core::progress::bar(cfg.progress, n as u64, "seeds");
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<SeedRun>>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..cfg.jobs.clamp(1, n) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&seed) = cfg.seeds.get(i) else {
                        break;
                    };
                    let r = run_seed(cfg, cal, seed);
                    bar.inc(1);
                    results.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(r);
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut runs = Vec::with_capacity(n);
    for (i, r) in results
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .enumerate()
    {
        match r {
            Some(r) => runs.push(r?),
            None => {
                return Err(
                    CoreError::Internal(format!("seed {} did not run", cfg.seeds[i])).into(),
                );
            }
        }
    }
    let sweep = Sweep {
        settings: SweepSettings::of(cfg),
        summary: aggregate(&runs),
        runs,
    };
    write(&cfg.dir, &sweep)?;
    Ok(sweep)
}

/// Writes `sweep.json` and `evaluation.html` into `dir`.
pub fn write(dir: &Path, sweep: &Sweep) -> Result<()> {
    let path = dir.join(JSON_FILE);
    let text =
        serde_json::to_string_pretty(sweep).map_err(|e| CoreError::Internal(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(|e| CoreError::io(&path, e))?;
    html::write(&dir.join(HTML_FILE), &sweep.settings, &sweep.summary)?;
    Ok(())
}

/// A rate as `0.82±0.10` (pooled ± sd), or `—` without labels.
fn cell(labels: usize, r: &Rate) -> String {
    if labels == 0 {
        "—".to_string()
    } else {
        format!("{:.2}±{:.2}", r.pooled, r.sd)
    }
}

/// The summary for people: a line saying what was run, then [`table`].
pub fn report(settings: &SweepSettings, s: &SweepSummary) -> String {
    let seeds: Vec<String> = s.seeds.iter().map(u64::to_string).collect();
    let mut out = format!(
        "Detection per magnitude band over {} seed(s) ({}): {} enterprises × {} days, risk list of the last {} days, noise {}, model {}\n",
        s.seeds.len(),
        seeds.join(" "),
        settings.enterprises,
        settings.days,
        settings.report_days,
        if settings.noise { "on" } else { "off" },
        settings.model,
    );
    out.push_str(&table(s));
    out
}

/// The figures as a table: one line per kind (detection per band with any item, then with
/// the intended indicator, `!` where a band misses its target), then the false alarms.
pub fn table(s: &SweepSummary) -> String {
    let mut out = format!(
        "pooled rate ± sd across seeds; bands are thirds of each kind's magnitude range (least → most obvious); ! = below target (middle ≥ {TARGET_MIDDLE}, obvious ≥ {TARGET_OBVIOUS}, with any item)\n"
    );
    out.push_str(&format!(
        "{:<21} {:>13} │ {:<32} │ {:<32}\n",
        "", "labels", "  detected with any item", "  with the intended indicator"
    ));
    out.push_str(&format!(
        "{:<21} {:>13} │ {:>10} {:>10} {:>10} │ {:>10} {:>10} {:>10}\n",
        "kind", "per band", "least", "middle", "obvious", "least", "middle", "obvious"
    ));
    for k in &s.kinds {
        let n: Vec<String> = k.bands.iter().map(|b| b.labels.to_string()).collect();
        let mut line = format!("{:<21} {:>13} │", k.kind, n.join("/"));
        for b in &k.bands {
            let mark = if b.misses_target() { "!" } else { " " };
            line.push_str(&format!(" {:>9}{mark}", cell(b.labels, &b.any_item)));
        }
        line.push_str(" │");
        for b in &k.bands {
            line.push_str(&format!(" {:>10}", cell(b.labels, &b.intended)));
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if k.unbanded_labels > 0 {
            out.push_str(&format!(
                "{:<21} ({} labels without a magnitude, in no band)\n",
                "", k.unbanded_labels
            ));
        }
    }
    out.push_str(&false_alarm_report(&s.false_alarms));
    out
}

/// The false-alarm lines of [`report`].
fn false_alarm_report(fa: &FalseAlarmSummary) -> String {
    let verdict = |rate: f64, target: f64| {
        if rate <= target { "within" } else { "ABOVE" }
    };
    let mut out = format!(
        "False alarms on enterprises without planted anomalies: {} listed of {} enterprise-days = {:.3} % (±{:.3} across seeds; {} the {:.2} % target)\n",
        fa.listed,
        fa.enterprise_days,
        fa.rate.pooled * 100.0,
        fa.rate.sd * 100.0,
        verdict(fa.rate.pooled, TARGET_FALSE_ALARMS),
        TARGET_FALSE_ALARMS * 100.0
    );
    out.push_str(&format!(
        "  at grade C/D (drafting caution notices): {} = {:.3} % (±{:.3}; {} the {:.2} % target)\n",
        fa.listed_cd,
        fa.rate_cd.pooled * 100.0,
        fa.rate_cd.sd * 100.0,
        verdict(fa.rate_cd.pooled, TARGET_FALSE_ALARMS_CD),
        TARGET_FALSE_ALARMS_CD * 100.0
    ));
    if !fa.by_indicator.is_empty() {
        let mut by: Vec<(&String, &u64)> = fa.by_indicator.iter().collect();
        by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let parts: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!("  by indicator: {}\n", parts.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests;
