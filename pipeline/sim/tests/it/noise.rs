//! The noise model: a clean noisy province stays under the rules' false-alarm ceiling, its
//! late files and bad rows are what a real platform delivers, and noise is deterministic and
//! truly off when turned off.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate};

use pharmwatch_batch::nightly::{self, NightlyConfig};
use pharmwatch_core::anomaly::ModelSource;
use pharmwatch_core::indicators;
use pharmwatch_core::ingest::InputSpec;
use pharmwatch_core::query::{register_files, run_sql, session};
use pharmwatch_regulation::Calendar;
use pharmwatch_schemas::EventKind;
use pharmwatch_sim::simulate::noise::NoiseConfig;
use pharmwatch_sim::simulate::{self, SimConfig};

fn sim(out: &Path, enterprises: usize, days: u32, seed: u64, noise: NoiseConfig) -> SimConfig {
    SimConfig {
        enterprises,
        days,
        start: simulate::default_start(),
        seed,
        anomaly_days: 14,
        anomalies_per_kind: Some(0),
        out: out.to_path_buf(),
        progress: false,
        noise,
    }
}

/// Rules only over `[from, to]` of `lake`, reading `inputs` as well.
fn nightly_rules(
    lake: &Path,
    out: &Path,
    from: NaiveDate,
    to: NaiveDate,
    inputs: Vec<InputSpec>,
) -> nightly::NightlyOutput {
    let cfg = NightlyConfig {
        inputs,
        ..pharmwatch_sim::sweep::nightly_config(lake, out, from, to, ModelSource::Off)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(nightly::run(&cfg)).unwrap()
}

/// Every file under `dir` (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// The business days of the rows of one Parquet file of `kind`.
fn biz_dates(kind: EventKind, file: &Path) -> HashSet<NaiveDate> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let ctx = session();
        register_files(&ctx, "t", kind.lake_schema(), &[file.to_path_buf()])
            .await
            .unwrap();
        let batches = run_sql(&ctx, "late", "SELECT DISTINCT biz_date FROM t")
            .await
            .unwrap();
        batches
            .iter()
            .flat_map(|b| indicators::dates("late", b, "biz_date").unwrap())
            .collect()
    })
}

/// A clean province (no planted anomaly) with the default noise, judged by the rules over its
/// last 14 days: enterprise-days on the risk list stay under the ceiling measured for the
/// rules (see `pipeline/sql/indicators/README.md`), the grade C/D share under its own, and the
/// noise the rules must live with is really in the records.
#[test]
fn a_noisy_clean_province_stays_under_the_false_alarm_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, out) = (dir.path().join("lake"), dir.path().join("out"));
    let cal = Calendar::embedded().unwrap();
    let cfg = sim(&lake, 200, 56, 7, NoiseConfig::default());
    let s = simulate::run(&cfg, &cal).unwrap();
    assert!(s.late_records > 0, "no late file in a noisy province");
    assert!(s.bad_rows > 0, "no bad row in a noisy province");
    assert!(
        lake.join(simulate::LIFE_FILE).exists(),
        "nobody opened or closed"
    );

    let from = s.end - Duration::days(13);
    let inbox: Vec<InputSpec> = std::fs::read_dir(lake.join("inbox"))
        .unwrap()
        .map(|e| InputSpec::parse(&e.unwrap().path().to_string_lossy()).unwrap())
        .collect();
    let run = nightly_rules(&lake, &out, from, s.end, inbox);

    let days = 14.0;
    let listed: HashSet<(&str, NaiveDate)> = run
        .rows
        .iter()
        .map(|r| (r.enterprise_id.as_str(), r.date))
        .collect();
    let cd = run
        .rows
        .iter()
        .filter(|r| r.grade == "C" || r.grade == "D")
        .count();
    let rate = listed.len() as f64 / (s.enterprises as f64 * days);
    let cd_rate = cd as f64 / (s.enterprises as f64 * days);
    let per_indicator: BTreeMap<&str, usize> = run.hits.iter().fold(BTreeMap::new(), |mut m, h| {
        *m.entry(h.indicator.as_str()).or_default() += 1;
        m
    });
    eprintln!("false alarms {rate:.5} (C/D {cd_rate:.5}) {per_indicator:?}");
    assert!(
        rate <= FALSE_ALARM_CEILING,
        "false-alarm rate {rate} {per_indicator:?}"
    );
    assert!(
        cd_rate <= CD_CEILING,
        "grade C/D rate {cd_rate} {per_indicator:?}"
    );

    // Every bad row of the inbox is rejected, naming its source, field and reason.
    let rejected: u64 = run.summary.input_rejected;
    assert_eq!(rejected, s.bad_rows, "{:?}", run.dead_letters);
    assert_eq!(run.summary.input_accepted, 0);
    for d in &run.dead_letters {
        assert!(d.source.contains("inbox"), "{d:?}");
        assert!(!d.reason.is_empty(), "{d:?}");
    }
    assert!(run.dead_letters.iter().any(|d| d.field == "quantity"));
}

/// The rules' false-alarm ceiling on a clean noisy province: listed enterprise-days ÷
/// enterprise-days. Measured: 0.00036 here (seed 7, 200 enterprises: one enterprise-day of
/// 2 800); 0.00024–0.00119 over seeds 1–5 of 300 enterprises (`scripts/detection_check.py`).
const FALSE_ALARM_CEILING: f64 = 0.0015;
/// The same for rows at grade C or D, the ones that draft caution notices: measured 0 here and
/// over seeds 1–5; the ceiling allows one enterprise-day of 2 800.
const CD_CEILING: f64 = 0.0004;

/// Late files hold the records of the day before with their true event time; the same seed
/// gives the same bytes; noise off writes no late file, no inbox and no life file.
#[test]
fn noise_is_deterministic_late_files_keep_their_day_and_off_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let cal = Calendar::embedded().unwrap();
    let noisy = |name: &str| {
        let lake = dir.path().join(name);
        let noise = NoiseConfig {
            late_rate: 0.2,
            ..NoiseConfig::default()
        };
        simulate::run(&sim(&lake, 40, 12, 3, noise), &cal).unwrap();
        lake
    };
    let (a, b) = (noisy("a"), noisy("b"));
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        assert!(
            fb[k] == *v,
            "{} differs between two runs of one seed",
            k.display()
        );
    }

    let late: Vec<&PathBuf> = fa
        .keys()
        .filter(|p| p.to_string_lossy().contains("late-00000"))
        .collect();
    assert!(!late.is_empty(), "no late file at a late rate of 0.2");
    for p in late {
        let kind = EventKind::parse(&p.components().next().unwrap().as_os_str().to_string_lossy())
            .unwrap();
        let partition = p.to_string_lossy();
        let day = partition.split("date=").nth(1).unwrap()[..10].to_string();
        let day = NaiveDate::parse_from_str(&day, "%Y-%m-%d").unwrap();
        let dates = biz_dates(kind, &a.join(p));
        assert_eq!(
            dates,
            HashSet::from([day - Duration::days(1)]),
            "{}",
            p.display()
        );
    }

    let off = dir.path().join("off");
    simulate::run(&sim(&off, 40, 12, 3, NoiseConfig::off()), &cal).unwrap();
    let names: Vec<String> = files(&off)
        .keys()
        .map(|p| p.to_string_lossy().to_string())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.contains("late-") && !n.contains("inbox")),
        "{names:?}"
    );
    assert!(!off.join(simulate::LIFE_FILE).exists());
    let manifest = std::fs::read_to_string(off.join("manifest.json")).unwrap();
    assert!(!manifest.contains("late_records") && !manifest.contains("bad_rows"));
}

/// Unknown noise parts are refused with the list of parts; known ones turn their rates off.
#[test]
fn noise_parts_turn_off_by_name() {
    let cfg = NoiseConfig::default().without("miscount").unwrap();
    assert_eq!(cfg.miscount_rate, 0.0);
    assert!(cfg.enabled);
    let cfg = cfg.without("promotions").unwrap().without("late").unwrap();
    assert_eq!(
        (cfg.chain_promotion_rate, cfg.store_promotion_rate),
        (0.0, 0.0)
    );
    assert_eq!(cfg.late_rate, 0.0);
    let err = NoiseConfig::default().without("weather").unwrap_err();
    assert!(
        err.contains("miscount") && err.contains("bad-rows"),
        "{err}"
    );
    for (name, _) in pharmwatch_sim::simulate::noise::PARTS {
        assert_ne!(
            NoiseConfig::default().without(name).unwrap(),
            NoiseConfig::default()
        );
    }
}
