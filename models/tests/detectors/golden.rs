//! Scores recorded before the isolation forest's flat scoring layout, the lane-wise
//! Mahalanobis table path and the chunked `score_matrix` replaced the row-by-row code (they
//! were written by that code, commit 7a34ed5, row by row): the fixture `golden_scores.txt`
//! holds their exact bits (`f64::to_bits`, hex) on seeded fits, and the current code must give
//! the same bits — row by row (`score`, `score_row`) and through the table path
//! (`score_batch`, `score_matrix`) cut into blocks of several sizes — also after a model has
//! been written and read back. A fixture line that no longer matches is a change of scores:
//! never re-record it to make a test pass.
//!
//! Fixture lines: `<case> <row> <hex bits>` for raw detector scores, and
//! `<case> <row> <hex score bits> <hex tail-probability bits>` for model scores. The cases
//! cover several widths, sizes that are not multiples of any block, trees whose leaves sit at
//! every depth (tied and constant columns stop splits early), in-sample rows (ties with the
//! thresholds) and extreme rows.

use std::collections::BTreeMap;

use ndarray::Array2;
use pharmwatch_models::detectors::Detector;
use pharmwatch_models::detectors::iforest::IsolationForest;
use pharmwatch_models::detectors::mahalanobis::Mahalanobis;
use pharmwatch_models::{Family, FitOptions, Model};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The recorded bits.
const FIXTURE: &str = include_str!("golden_scores.txt");

/// How a synthetic column is drawn.
#[derive(Clone, Copy)]
enum Col {
    /// Standard normal plus a shared factor (correlated columns).
    Normal,
    /// Integers 0 … k − 1 (many ties).
    Int(u32),
    /// Always this value.
    Const(f64),
}

/// `n` rows of the columns `cols`, seeded.
fn table(cols: &[Col], n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let normal = Normal::new(0.0, 1.0).expect("valid");
    let mut v = Vec::with_capacity(n * cols.len());
    for _ in 0..n {
        let shared: f64 = normal.sample(&mut rng);
        for (j, c) in cols.iter().enumerate() {
            v.push(match *c {
                Col::Normal => {
                    let own: f64 = normal.sample(&mut rng);
                    if j % 3 == 0 { shared + own } else { own }
                }
                Col::Int(k) => f64::from(rng.gen_range(0..k)),
                Col::Const(x) => x,
            });
        }
    }
    v
}

/// A forest case: columns, training rows, seeds.
struct ForestCase {
    name: &'static str,
    cols: Vec<Col>,
    train: usize,
    seed: u64,
}

fn forest_cases() -> Vec<ForestCase> {
    use Col::*;
    vec![
        ForestCase {
            name: "wide",
            cols: vec![Normal; 20],
            train: 10_000,
            seed: 1,
        },
        ForestCase {
            name: "tiny",
            cols: vec![Normal],
            train: 2,
            seed: 2,
        },
        ForestCase {
            name: "small",
            cols: vec![Normal, Const(3.0), Int(2)],
            train: 37,
            seed: 3,
        },
        ForestCase {
            name: "ties",
            cols: vec![Int(4), Int(3), Int(4), Int(2), Int(5)],
            train: 1000,
            seed: 4,
        },
        ForestCase {
            name: "mixed",
            cols: vec![Normal, Normal, Const(-1.0), Int(3), Normal, Normal, Int(7)],
            train: 300,
            seed: 5,
        },
        ForestCase {
            name: "narrow",
            cols: vec![Int(3), Const(0.5)],
            train: 256,
            seed: 6,
        },
    ]
}

/// Rows scored for a case of width `d`: the first training rows (ties with thresholds),
/// fresh rows, and extreme rows; `rows` is not a multiple of any block size.
fn scored_rows(case: &ForestCase, train: &[f64]) -> Vec<f64> {
    let d = case.cols.len();
    let mut rows: Vec<f64> = train.iter().copied().take(60 * d).collect();
    rows.extend(table(&case.cols, 131, case.seed + 100));
    for x in [0.0, 1e6, -1e6, 1e-300, -0.0] {
        rows.extend(std::iter::repeat_n(x, d));
    }
    for j in 0..d {
        let mut r = vec![0.0; d];
        r[j] = 1e9;
        rows.extend(r);
    }
    rows
}

/// Model cases: a family set fitted on a table; scores recorded through `score_row`.
fn model_cases() -> Vec<(&'static str, Vec<Family>)> {
    let mut v: Vec<(&'static str, Vec<Family>)> =
        Family::ALL.iter().map(|f| (f.as_str(), vec![*f])).collect();
    v.push((
        "default",
        pharmwatch_models::model::DEFAULT_FAMILIES.to_vec(),
    ));
    v
}

fn model_cols() -> Vec<Col> {
    let mut cols = vec![Col::Normal; 9];
    cols.push(Col::Int(3));
    cols.push(Col::Const(2.0));
    cols
}

fn names(d: usize) -> Vec<String> {
    (0..d).map(|j| format!("f{j}")).collect()
}

fn fixture() -> BTreeMap<(String, usize), Vec<u64>> {
    FIXTURE
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut parts = l.split_whitespace();
            let case = parts.next().expect("case").to_string();
            let row = parts.next().expect("row").parse().expect("row index");
            let bits = parts
                .map(|h| u64::from_str_radix(h, 16).expect("hex bits"))
                .collect();
            ((case, row), bits)
        })
        .collect()
}

/// Asserts `got` has the recorded bits for `(case, row)`.
fn check(
    want: &BTreeMap<(String, usize), Vec<u64>>,
    case: &str,
    row: usize,
    got: &[f64],
    how: &str,
) {
    let bits: Vec<u64> = got.iter().map(|x| x.to_bits()).collect();
    let Some(w) = want.get(&(case.to_string(), row)) else {
        panic!("{case} row {row}: not in the fixture");
    };
    assert_eq!(
        &bits,
        w,
        "{case} row {row} ({how}): {got:?} != {:?}",
        w.iter().map(|b| f64::from_bits(*b)).collect::<Vec<_>>()
    );
}

/// Block sizes the table path is cut into: 1, primes, and more than any case's rows.
const CUTS: [usize; 5] = [1, 7, 64, 129, 100_000];

#[test]
fn detector_scores_are_the_recorded_bits_row_by_row_and_in_blocks() {
    let want = fixture();
    let mut seen = 0;
    for case in forest_cases() {
        let d = case.cols.len();
        let train = table(&case.cols, case.train, case.seed);
        let z = Array2::from_shape_vec((case.train, d), train.clone()).expect("shape");
        let rows = scored_rows(&case, &train);
        let n = rows.len() / d;
        let mut detectors: Vec<(String, Box<dyn Detector>)> = vec![(
            format!("iforest-{}", case.name),
            Box::new(IsolationForest::fit(&z, case.seed).expect("fits")),
        )];
        if case.train > d {
            detectors.push((
                format!("mahalanobis-{}", case.name),
                Box::new(Mahalanobis::fit(&z).expect("fits")),
            ));
        }
        for (name, det) in &detectors {
            for (i, row) in rows.chunks_exact(d).enumerate() {
                check(&want, name, i, &[det.score(row)], "score");
            }
            for cut in CUTS {
                let mut out = vec![f64::NAN; n];
                for (block, o) in rows.chunks(cut * d).zip(out.chunks_mut(cut)) {
                    det.score_batch(block, d, o);
                }
                for (i, s) in out.iter().enumerate() {
                    check(
                        &want,
                        name,
                        i,
                        &[*s],
                        &format!("score_batch in blocks of {cut}"),
                    );
                }
            }
            seen += n;
        }
    }
    assert!(seen > 2000, "{seen} rows checked");
}

#[test]
fn model_scores_are_the_recorded_bits_row_by_row_and_through_the_table_path() {
    let want = fixture();
    let cols = model_cols();
    let d = cols.len();
    let train = table(&cols, 2000, 7);
    let rows = table(&cols, 257, 8);
    for (name, families) in model_cases() {
        let opts = FitOptions {
            families,
            seed: 7,
            ..FitOptions::default()
        };
        let m = Model::fit(&names(d), &train, &opts).expect("fits");
        let case = format!("model-{name}");
        for (i, row) in rows.chunks_exact(d).enumerate() {
            let s = m.score_row(row);
            check(&want, &case, i, &[s.score, s.tail_probability], "score_row");
        }
        for cut in CUTS {
            let mut i = 0;
            for block in rows.chunks(cut * d) {
                for s in m.score_matrix(block).expect("scores") {
                    check(
                        &want,
                        &case,
                        i,
                        &[s.score, s.tail_probability],
                        "score_matrix",
                    );
                    i += 1;
                }
            }
            assert_eq!(i, rows.len() / d);
        }
        // A saved model loads and scores the same.
        let json = serde_json::to_string(&m).expect("serialises");
        let back: Model = serde_json::from_str(&json).expect("parses");
        for (i, s) in back.score_matrix(&rows).expect("scores").iter().enumerate() {
            check(
                &want,
                &case,
                i,
                &[s.score, s.tail_probability],
                "after a round trip",
            );
        }
    }
}

#[test]
fn ensemble_table_path_is_the_row_path_across_chunks() {
    let cols = model_cols();
    let d = cols.len();
    let m = Model::fit(&names(d), &table(&cols, 1500, 9), &FitOptions::default()).expect("fits");
    // More rows than a chunk of `score_matrix`, and not a multiple of any block.
    let n = 2 * pharmwatch_models::model::SCORE_CHUNK + 77;
    let rows = table(&cols, n, 10);
    let batch = m.score_matrix(&rows).expect("scores");
    assert_eq!(batch.len(), n);
    for (i, (row, b)) in rows.chunks_exact(d).zip(&batch).enumerate() {
        let r = m.score_row(row);
        assert_eq!(
            (r.score.to_bits(), r.tail_probability.to_bits()),
            (b.score.to_bits(), b.tail_probability.to_bits()),
            "row {i}"
        );
    }
}
