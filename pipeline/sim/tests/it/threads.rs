//! The lake does not depend on the number of threads: the same seed written by one thread and
//! by several is the same files, byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pharmwatch_regulation::Calendar;
use pharmwatch_sim::simulate::noise::NoiseConfig;
use pharmwatch_sim::simulate::{self, SimConfig, SimSummary};

/// A noisy province (late files, bad rows) long enough for planted anomalies.
fn simulate_on(out: &Path, threads: usize) -> SimSummary {
    let cfg = SimConfig {
        enterprises: 40,
        days: 38,
        start: simulate::default_start(),
        seed: 23,
        anomaly_days: 3,
        anomalies_per_kind: Some(1),
        out: out.to_path_buf(),
        progress: false,
        noise: NoiseConfig::default(),
    };
    simulate::run_on(&cfg, &Calendar::embedded().unwrap(), threads).unwrap()
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
                let bytes = std::fs::read(&p).unwrap();
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), bytes);
            }
        }
    }
    out
}

#[test]
fn one_thread_and_several_write_the_same_bytes() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let one = simulate_on(dirs[0].path(), 1);
    let two = simulate_on(dirs[1].path(), 2);
    let four = simulate_on(dirs[2].path(), 4);
    assert!(one.late_records > 0 && one.bad_rows > 0 && one.labels > 0);
    assert_eq!(one.records, two.records);
    assert_eq!(one.records, four.records);

    let lakes: Vec<_> = dirs.iter().map(|d| files(d.path())).collect();
    let parquet = lakes[0]
        .keys()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"));
    assert!(parquet.count() > 150, "a lake has a file per kind and day");
    assert!(lakes[0].keys().any(|p| p.ends_with("late-00000.parquet")));
    for (threads, lake) in [(2, &lakes[1]), (4, &lakes[2])] {
        assert_eq!(
            lake.keys().collect::<Vec<_>>(),
            lakes[0].keys().collect::<Vec<_>>(),
            "{threads} threads wrote other files than one"
        );
        for (path, bytes) in lake {
            assert!(
                bytes == &lakes[0][path],
                "{}: {threads} threads wrote other bytes",
                path.display()
            );
        }
    }
}
