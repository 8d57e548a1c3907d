//! `pharmwatch demo`: simulate a noisy province, run the nightly job over its last 14 days,
//! and judge the risk list against the planted anomalies — recall and precision per kind,
//! then detection per magnitude band and the false alarms on enterprises without labels (the
//! curves of [`pharmwatch_sim::sweep`]) — the whole spine in one command, with no broker or
//! database to set up. Optionally a small sweep over further seeds (`DemoSweep`) gives the
//! curves their seed-to-seed spread.
//!
//! Outputs: `DIR/lake`, `DIR/out` (risk list, `report.html`, and the one-seed curves as
//! `sweep.json` and `evaluation.html`), and with a sweep `DIR/sweep`.

use std::path::PathBuf;
use std::time::Instant;

use chrono::Duration;

use crate::error::Result;
use pharmwatch_batch::nightly;
use pharmwatch_core::anomaly::ModelSource;
use pharmwatch_core::error::CoreError;
use pharmwatch_regulation::Calendar;
use pharmwatch_sim::evaluate::{self, Evaluation};
use pharmwatch_sim::simulate::noise::NoiseConfig;
use pharmwatch_sim::simulate::{self, SimConfig};
use pharmwatch_sim::sweep::{self, SeedRun, Sweep, SweepConfig, SweepSettings};

/// Settings of the demo.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Working directory: `DIR/lake`, `DIR/out` and `DIR/sweep`.
    pub dir: PathBuf,
    /// Enterprises.
    pub enterprises: usize,
    /// Days simulated.
    pub days: u32,
    /// Days of the risk list (the last ones).
    pub report_days: u32,
    /// Seed.
    pub seed: u64,
    /// The simulator's noise ([`NoiseConfig::default`]: a realistic province).
    pub noise: NoiseConfig,
    /// A sweep over further seeds after the main run, if any.
    pub sweep: Option<DemoSweep>,
    /// Show progress.
    pub progress: bool,
}

/// The demo's sweep: `seeds` seeds from the demo's own seed on, each province of
/// `enterprises` × `days` with the demo's risk-list days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSweep {
    /// Seeds (the demo's seed and the ones after it).
    pub seeds: usize,
    /// Enterprises per province.
    pub enterprises: usize,
    /// Days simulated per province.
    pub days: u32,
}

/// What the demo produced.
#[derive(Debug)]
pub struct DemoOutput {
    /// Simulator summary.
    pub sim: simulate::SimSummary,
    /// Nightly output.
    pub nightly: nightly::NightlyOutput,
    /// Evaluation.
    pub evaluation: Evaluation,
    /// The main run's curves (one seed).
    pub curves: Sweep,
    /// The sweep, when one was asked for.
    pub sweep: Option<Sweep>,
    /// Printed report.
    pub report: String,
}

/// Runs the demo.
pub async fn run(cfg: &DemoConfig, cal: &Calendar) -> Result<DemoOutput> {
    let lake = cfg.dir.join("lake");
    let out = cfg.dir.join("out");
    let sim_cfg = SimConfig {
        enterprises: cfg.enterprises,
        days: cfg.days,
        start: simulate::default_start(),
        seed: cfg.seed,
        anomaly_days: cfg.report_days,
        anomalies_per_kind: None,
        out: lake.clone(),
        progress: cfg.progress,
        noise: cfg.noise.clone(),
    };
    let sim = simulate::run(&sim_cfg, cal)?;
    let mut report = format!(
        "Simulated {} enterprises, {} products, {} … {} (noise {}): {} records, {} planted anomalies in {:.1} s ({:.0} records/s)\n  lake: {}\n\n",
        sim.enterprises,
        sim.products,
        sim.start,
        sim.end,
        if cfg.noise.enabled { "on" } else { "off" },
        sim.total_records,
        sim.labels,
        sim.seconds,
        sim.total_records as f64 / sim.seconds.max(1e-9),
        lake.display()
    );
    let from = sim.end - Duration::days(i64::from(cfg.report_days.max(1)) - 1);
    let mut nightly_cfg = sweep::nightly_config(&lake, &out, from, sim.end, ModelSource::default());
    nightly_cfg.progress = cfg.progress;
    // With the report (`report.html`), as the printed outputs say; no closed loop.
    let (nightly, _) = nightly::run_with(&nightly_cfg, None).await?;
    report.push_str(&nightly::report(&nightly, 10));
    let evaluation =
        evaluate::evaluate_files(&out.join("risk_list.csv"), &lake.join("labels.csv"))?;
    report.push('\n');
    report.push_str(&evaluate::report(&evaluation));

    let curves = one_seed_curves(cfg, &sim, &nightly, &lake, &out)?;
    report.push('\n');
    report.push_str(&sweep::report(&curves.settings, &curves.summary));
    let swept = match cfg.sweep {
        Some(s) => Some(run_sweep(cfg, s, cal, &mut report).await?),
        None => None,
    };
    report.push_str(&format!(
        "\nWhere everything went:\n  lake (Parquet by kind/date, reference tables, labels.csv): {}\n  risk list: {}/risk_list.{{parquet,csv,json}}\n  run summary: {}/run.json\n  supervisors' report: {}/report.html\n  curves of this run: {}/{} (figures in {})\n",
        lake.display(),
        out.display(),
        out.display(),
        out.display(),
        out.display(),
        sweep::HTML_FILE,
        sweep::JSON_FILE,
    ));
    if let Some(s) = &swept {
        report.push_str(&format!(
            "  curves over {} seeds: {}/{}\n",
            s.runs.len(),
            cfg.dir.join("sweep").display(),
            sweep::HTML_FILE
        ));
    }
    report.push_str(
        "  the full sweep: pharmwatch evaluate sweep --seeds 1,2,3,4,5 (300 enterprises × 60 days each)\n",
    );
    report.push_str(&workbench(cfg, &nightly.rows)?);
    Ok(DemoOutput {
        sim,
        nightly,
        evaluation,
        curves,
        sweep: swept,
        report,
    })
}

/// The main run's curves, written as `out/sweep.json` and `out/evaluation.html`.
fn one_seed_curves(
    cfg: &DemoConfig,
    sim: &simulate::SimSummary,
    nightly: &nightly::NightlyOutput,
    lake: &std::path::Path,
    out: &std::path::Path,
) -> Result<Sweep> {
    let run = SeedRun {
        seed: cfg.seed,
        records: sim.total_records,
        labels: sim.labels,
        risk_rows: nightly.rows.len(),
        curves: evaluate::curves_files(&out.join("risk_list.csv"), lake)?,
    };
    let mut settings = SweepSettings::of(&SweepConfig::new(
        out.to_path_buf(),
        vec![cfg.seed],
        cfg.enterprises,
        cfg.days,
        cfg.report_days,
    ));
    settings.noise = cfg.noise.enabled;
    let curves = Sweep {
        settings,
        summary: sweep::aggregate(std::slice::from_ref(&run)),
        runs: vec![run],
    };
    sweep::write(out, &curves)?;
    Ok(curves)
}

/// The demo's sweep in `DIR/sweep`, on the blocking pool (each seed has its own runtime);
/// appends its table and time to `report`.
async fn run_sweep(
    cfg: &DemoConfig,
    s: DemoSweep,
    cal: &Calendar,
    report: &mut String,
) -> Result<Sweep> {
    let seeds: Vec<u64> = (0..s.seeds as u64).map(|i| cfg.seed + i).collect();
    let mut scfg = SweepConfig::new(
        cfg.dir.join("sweep"),
        seeds,
        s.enterprises,
        s.days,
        cfg.report_days,
    );
    scfg.noise = cfg.noise.clone();
    scfg.progress = cfg.progress;
    scfg.keep_lakes = false;
    let (cal, started) = (cal.clone(), Instant::now());
    let job = scfg.clone();
    let swept = tokio::task::spawn_blocking(move || sweep::run(&job, &cal))
        .await
        .map_err(|e| CoreError::Internal(format!("the demo's sweep did not finish: {e}")))??;
    report.push('\n');
    report.push_str(&sweep::report(&swept.settings, &swept.summary));
    report.push_str(&format!(
        "({} seeds on {} threads in {:.1} s)\n",
        scfg.seeds.len(),
        scfg.jobs,
        started.elapsed().as_secs_f64()
    ));
    Ok(swept)
}

/// The workbench on the demo province: `DIR/pharmwatch.toml` (an authority marked as the
/// demo's, the contacts the simulator wrote, no delivery worker) and five ready-made accounts
/// in `DIR/out` — a province supervisor, an inspector and an approver of the region of the
/// list's top row, an auditor and that enterprise's lead — with one fresh password, printed.
/// Returns the lines that say how to open it.
fn workbench(cfg: &DemoConfig, rows: &[pharmwatch_core::risk::RiskRow]) -> Result<String> {
    use pharmwatch_serve::accounts::{self, NewAccount, Role};
    let config = cfg.dir.join("pharmwatch.toml");
    std::fs::write(
        &config,
        "# The demo's workbench: `pharmwatch serve --config THIS --out out` (written by `pharmwatch demo`).\n\
         [serve]\nworker = false\n\n\
         [delivery]\ncontacts = \"lake/reference/contacts.json\"\n\n\
         # An authority marked as the demo's own: documents approved here are not real.\n\
         [notices.authority]\nname = \"演示药品监督管理局（DEMO）\"\nseal_name = \"演示药品监督管理局（DEMO）\"\n\
         abbreviation = \"演示药监\"\ncontact_department = \"演示处室\"\ncontact_phone = \"0471-6912345\"\n\
         address = \"（演示地址）\"\n",
    )
    .map_err(|e| CoreError::io(&config, e))?;
    let Some(top) = rows.iter().min_by_key(|r| {
        (
            r.date != rows.iter().map(|x| x.date).max().unwrap_or(r.date),
            r.rank,
        )
    }) else {
        return Ok("\nNo risk-list row: the workbench has nothing to show.\n".into());
    };
    let out = cfg.dir.join("out");
    let ledger = pharmwatch_casework::ledger::Ledger::open(&out)?;
    let password = format!("demo-{}", &accounts::secret()?[..12]);
    let region = vec![top.region_code.clone()];
    let none: Vec<String> = Vec::new();
    let people = [
        (
            "demo.sup",
            "省局监管员（演示）",
            Role::ProvinceSupervisor,
            &none,
            "",
        ),
        (
            "demo.inspector",
            "检查员（演示）",
            Role::Inspector,
            &region,
            "",
        ),
        (
            "demo.approver",
            "负责人（演示）",
            Role::Approver,
            &region,
            "",
        ),
        ("demo.auditor", "审计员（演示）", Role::Auditor, &none, ""),
        (
            "demo.lead",
            "企业负责人（演示）",
            Role::EnterpriseLead,
            &none,
            top.enterprise_id.as_str(),
        ),
    ];
    let mut lines = format!(
        "\nThe workbench on this province (maker–checker: the inspector confirms a row and submits \
         the draft, the approver approves, the lead confirms receipt):\n  \
         PHARMWATCH_LINK_KEY=$(openssl rand -hex 32) pharmwatch serve --config {} --out {}\n  \
         then open http://127.0.0.1:8088/login — accounts (password {password}):\n",
        config.display(),
        out.display()
    );
    for (user, name, role, regions, enterprise) in people {
        // A rerun of the demo in the same directory keeps the accounts it made before.
        let made = accounts::create(
            ledger.conn(),
            ledger.path(),
            &NewAccount {
                username: user,
                display_name: name,
                role,
                regions,
                enterprise_id: enterprise,
                password: &password,
            },
        );
        let note = match made {
            Ok(()) => String::new(),
            Err(e) => format!(" (kept from an earlier run: {e})"),
        };
        lines.push_str(&format!(
            "    {user:<15} {}{}{}{note}\n",
            role.name_zh(),
            if regions.is_empty() {
                String::new()
            } else {
                format!(" {}", regions.join(","))
            },
            if enterprise.is_empty() {
                String::new()
            } else {
                format!(" {} ({enterprise})", top.enterprise_name)
            },
        ));
    }
    Ok(lines)
}
