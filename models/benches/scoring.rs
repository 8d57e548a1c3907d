//! Scoring throughput of the anomaly model: rows per second on one core, 20 features, for
//! each detector family alone and for the default ensemble, through the table path (a block
//! of rows, detector by detector) and row by row. Throughput is reported per row
//! (criterion's elements/s). Run: `cargo bench -p pharmwatch-models --bench scoring`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pharmwatch_models::{Family, FitOptions, Model};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

const D: usize = 20;
const ROWS: usize = 100_000;

fn table(rows: usize, seed: u64) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let n = Normal::new(0.0, 1.0).expect("valid");
    let mut v = Vec::with_capacity(rows * D);
    for _ in 0..rows {
        let a: f64 = n.sample(&mut rng);
        for j in 0..D {
            v.push(if j % 3 == 0 { a } else { 0.0 } + n.sample(&mut rng));
        }
    }
    v
}

fn bench(c: &mut Criterion) {
    let names: Vec<String> = (0..D).map(|j| format!("f{j}")).collect();
    let train = table(10_000, 1);
    let rows = table(ROWS, 2);
    let mut g = c.benchmark_group("score_rows_20_features");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(10);
    let mut configs: Vec<(String, Vec<Family>)> = Family::ALL
        .iter()
        .map(|f| (f.as_str().to_string(), vec![*f]))
        .collect();
    configs.push((
        "default_ensemble".to_string(),
        pharmwatch_models::model::DEFAULT_FAMILIES.to_vec(),
    ));
    for (name, families) in configs {
        let opts = FitOptions {
            families,
            ..FitOptions::default()
        };
        let m = Model::fit(&names, &train, &opts).expect("fits");
        // The table path (`Model::score_matrix`, used by `model score`/`evaluate`).
        g.bench_function(format!("{name}/batch"), |b| {
            b.iter(|| {
                m.score_matrix(black_box(&rows))
                    .expect("scores")
                    .iter()
                    .map(|s| s.percentile)
                    .sum::<f64>()
            })
        });
        // One row at a time (`Model::score_row`, as the nightly job scores).
        g.bench_function(format!("{name}/row"), |b| {
            b.iter(|| {
                let mut acc = 0.0;
                for r in rows.chunks_exact(D) {
                    acc += m.score_row(black_box(r)).percentile;
                }
                acc
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
