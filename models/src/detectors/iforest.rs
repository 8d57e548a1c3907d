//! Isolation forest (Liu, Ting and Zhou, 2008), written here because linfa has none and the
//! published crates cannot be seeded.
//!
//! Fit: [`TREES`] trees, each on [`SAMPLE`] rows drawn without replacement with the seed;
//! every node splits a random non-constant feature at a uniform random threshold inside the
//! node's range, down to depth ⌈log₂ SAMPLE⌉. Score: `2^(−E[h(z)] / c(SAMPLE))`, where `h` is
//! the path length plus `c(size)` at the leaf (the expected depth of the unbuilt subtree) —
//! the standard normalisation, so 0.5 is ordinary and values towards 1 are isolated early.
//! Contribution of feature `i`: the splits on `i` along the row's paths, each weighted by
//! `1 / h` of its tree — features that isolate the row early get the credit.
//!
//! The fitted trees ([`Node`] lists) are the artifact; scoring runs on a copy laid out as
//! complete binary trees (module `flat`), built whenever a forest is made — by
//! [`IsolationForest::fit`] or when an artifact is read, which also checks the trees (children
//! after their parent, features inside the width, depth at most [`MAX_DEPTH`]) so that a
//! damaged artifact is an error, not a panic or an endless descent.
//!
//! Invariants: [`Detector::score`] and [`Detector::score_batch`] give the same bits for a row:
//! both add the trees' leaf values in tree order starting from 0.0, as the node-walking
//! descent did, and the flat layout reaches the same leaf as walking the nodes (rows with
//! `z < threshold` go left, all others — NaN included — right). [`Detector::contributions`]
//! walks the nodes themselves, so its paths are the scored ones.

use ndarray::Array2;
use rand::Rng;
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use super::Detector;
use crate::error::{ModelError, Result};

mod flat;

use flat::FlatForest;

/// Trees.
pub const TREES: usize = 100;
/// Rows per tree.
pub const SAMPLE: usize = 256;

/// Leaf marker in `feature`.
const LEAF: u32 = u32::MAX;

/// Deepest tree a forest may hold: a fit makes trees of depth ⌈log₂ SAMPLE⌉ = 8, and the
/// scoring layout (module `flat`) keeps a heap index in a byte.
pub const MAX_DEPTH: usize = 8;
const _: () = assert!(
    SAMPLE <= 1 << MAX_DEPTH,
    "fitted trees must fit the scoring layout"
);

/// A node of a flattened tree.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Split feature, or `u32::MAX` for a leaf.
    pub feature: u32,
    /// Left child index (rows with value < threshold); unused for a leaf.
    pub left: u32,
    /// Split threshold, or for a leaf the path-length adjustment `depth + c(size)`.
    pub value: f64,
}

/// Fitted isolation forest. Serialised as its fitted parts (`dim`, `sample`, `trees`); the
/// scoring layout is rebuilt from them when read.
#[derive(Clone, Deserialize)]
#[serde(try_from = "Parts")]
pub struct IsolationForest {
    /// Width.
    dim: usize,
    /// Rows each tree saw.
    sample: usize,
    /// Trees, each a flattened node list (root first; right child = left + 1).
    trees: Vec<Vec<Node>>,
    /// The trees laid out for scoring (a function of `trees`).
    flat: FlatForest,
}

/// The serialised form of a forest: the fitted parts only (the artifact format is the same
/// as before the scoring layout existed).
#[derive(Deserialize)]
struct Parts {
    dim: usize,
    sample: usize,
    trees: Vec<Vec<Node>>,
}

/// [`Parts`] borrowed, for writing.
#[derive(Serialize)]
struct PartsRef<'a> {
    dim: usize,
    sample: usize,
    trees: &'a [Vec<Node>],
}

impl TryFrom<Parts> for IsolationForest {
    type Error = ModelError;

    fn try_from(p: Parts) -> Result<Self> {
        let depth = checked_depth(&p.trees, p.dim).map_err(|reason| ModelError::Artifact {
            detector: "iforest",
            reason,
        })?;
        Ok(Self {
            flat: FlatForest::new(&p.trees, p.dim, depth),
            dim: p.dim,
            sample: p.sample,
            trees: p.trees,
        })
    }
}

impl Serialize for IsolationForest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        PartsRef {
            dim: self.dim,
            sample: self.sample,
            trees: &self.trees,
        }
        .serialize(s)
    }
}

impl PartialEq for IsolationForest {
    /// Equal fitted parts (the scoring layout follows from them).
    fn eq(&self, other: &Self) -> bool {
        self.dim == other.dim && self.sample == other.sample && self.trees == other.trees
    }
}

impl std::fmt::Debug for IsolationForest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsolationForest")
            .field("dim", &self.dim)
            .field("sample", &self.sample)
            .field("trees", &self.trees)
            .finish_non_exhaustive()
    }
}

/// Depth of the deepest leaf of `trees`, or why they cannot be scored: a child index that is
/// not after its parent or past the end, a split feature outside `dim`, a tree deeper than
/// [`MAX_DEPTH`].
fn checked_depth(trees: &[Vec<Node>], dim: usize) -> std::result::Result<usize, String> {
    let mut deepest = 0;
    let mut stack = Vec::new();
    for (t, tree) in trees.iter().enumerate() {
        if tree.is_empty() {
            return Err(format!("tree {t} has no nodes"));
        }
        stack.push((0usize, 0usize));
        while let Some((i, depth)) = stack.pop() {
            let node = tree[i];
            if node.feature == LEAF {
                deepest = deepest.max(depth);
                continue;
            }
            let left = node.left as usize;
            if depth >= MAX_DEPTH {
                return Err(format!("tree {t} is deeper than {MAX_DEPTH} levels"));
            }
            if node.feature as usize >= dim {
                return Err(format!(
                    "tree {t} node {i} splits feature {} of {dim}",
                    node.feature
                ));
            }
            if left <= i || left + 1 >= tree.len() {
                return Err(format!(
                    "tree {t} node {i} has children {left} and {} of {} nodes",
                    left + 1,
                    tree.len()
                ));
            }
            stack.push((left, depth + 1));
            stack.push((left + 1, depth + 1));
        }
    }
    Ok(deepest)
}

/// 2^x as `pow(2, x)` in every build. An optimising build would rewrite `2.0f64.powf(x)` into
/// `exp2(x)`, which differs from `pow` in the last bit for some `x`: the scores (and the model
/// artifact's calibration) would then depend on the build profile, and the debug-built tests
/// would not check the bits a release build gives. The opaque base keeps the call as written.
#[inline]
fn pow2(x: f64) -> f64 {
    std::hint::black_box(2.0f64).powf(x)
}

/// Expected path length of an unsuccessful search in a binary tree of `n` nodes.
pub fn c(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
        }
    }
}

impl IsolationForest {
    /// Fits on standardised rows.
    pub fn fit(z: &Array2<f64>, seed: u64) -> Result<Self> {
        let (n, d) = z.dim();
        if n < 2 || d == 0 {
            return Err(ModelError::Fit {
                detector: "iforest",
                reason: format!("needs at least 2 rows and 1 column, got {n} × {d}"),
            });
        }
        let psi = SAMPLE.min(n);
        let max_depth = (psi as f64).log2().ceil() as usize;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let data = z.as_standard_layout();
        let flat = data.as_slice().unwrap_or(&[]);
        let mut trees = Vec::with_capacity(TREES);
        for _ in 0..TREES {
            let mut rows: Vec<usize> = sample(&mut rng, n, psi).into_vec();
            let mut nodes = Vec::with_capacity(2 * psi);
            nodes.push(Node {
                feature: LEAF,
                left: 0,
                value: 0.0,
            });
            build(&mut nodes, 0, flat, d, &mut rows, 0, max_depth, &mut rng);
            trees.push(nodes);
        }
        Self::try_from(Parts {
            dim: d,
            sample: psi,
            trees,
        })
    }

    /// Width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Rows each tree saw.
    pub fn sample(&self) -> usize {
        self.sample
    }

    /// The fitted trees, each a node list (root first; right child = left + 1).
    pub fn trees(&self) -> &[Vec<Node>] {
        &self.trees
    }

    /// The score of a row whose leaf values over all trees add up to `total` (added in tree
    /// order from 0.0).
    #[inline]
    fn score_of_total(&self, total: f64) -> f64 {
        let mean = total / self.trees.len().max(1) as f64;
        let norm = c(self.sample).max(1e-12);
        pow2(-mean / norm)
    }

    /// Path length of `z` in one tree, and the node indices visited.
    #[inline]
    fn path(tree: &[Node], z: &[f64], mut visit: impl FnMut(u32)) -> f64 {
        let mut i = 0usize;
        loop {
            let node = tree[i];
            if node.feature == LEAF {
                return node.value;
            }
            visit(node.feature);
            i = if z[node.feature as usize] < node.value {
                node.left as usize
            } else {
                node.left as usize + 1
            };
        }
    }
}

/// Builds the subtree for `rows` into the reserved slot `slot`; children are appended as an
/// adjacent pair (right = left + 1).
#[allow(clippy::too_many_arguments)]
fn build(
    nodes: &mut Vec<Node>,
    slot: usize,
    data: &[f64],
    d: usize,
    rows: &mut [usize],
    depth: usize,
    max_depth: usize,
    rng: &mut Xoshiro256PlusPlus,
) {
    nodes[slot] = Node {
        feature: LEAF,
        left: 0,
        value: depth as f64 + c(rows.len()),
    };
    if rows.len() <= 1 || depth >= max_depth {
        return;
    }
    // Features with spread in this node.
    let mut candidates: Vec<(usize, f64, f64)> = Vec::new();
    for f in 0..d {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &r in rows.iter() {
            let v = data[r * d + f];
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if hi > lo {
            candidates.push((f, lo, hi));
        }
    }
    if candidates.is_empty() {
        return;
    }
    let (f, lo, hi) = candidates[rng.gen_range(0..candidates.len())];
    let threshold = lo + rng.r#gen::<f64>() * (hi - lo);
    let threshold = if threshold <= lo {
        (lo + hi) / 2.0
    } else {
        threshold
    };
    let mut split = 0;
    for i in 0..rows.len() {
        if data[rows[i] * d + f] < threshold {
            rows.swap(i, split);
            split += 1;
        }
    }
    let left = nodes.len();
    nodes.push(nodes[slot]);
    nodes.push(nodes[slot]);
    nodes[slot] = Node {
        feature: f as u32,
        left: left as u32,
        value: threshold,
    };
    let (l, r) = rows.split_at_mut(split);
    build(nodes, left, data, d, l, depth + 1, max_depth, rng);
    build(nodes, left + 1, data, d, r, depth + 1, max_depth, rng);
}

impl Detector for IsolationForest {
    fn name(&self) -> &'static str {
        "iforest"
    }

    /// All trees level by level (see module `flat`).
    #[inline]
    fn score(&self, z: &[f64]) -> f64 {
        self.score_of_total(self.flat.leaf_total(z))
    }

    /// Tree by tree over blocks of rows, level by level (see module `flat`).
    fn score_batch(&self, rows: &[f64], dim: usize, out: &mut [f64]) {
        if dim != self.dim {
            // Not this forest's rows: as many as fit, each as `score` takes it.
            for (r, o) in rows.chunks_exact(dim.max(1)).zip(out.iter_mut()) {
                *o = self.score(r);
            }
            return;
        }
        let n = (rows.len() / dim.max(1)).min(out.len());
        let out = &mut out[..n];
        self.flat.leaf_totals(&rows[..n * dim], out);
        for o in out {
            *o = self.score_of_total(*o);
        }
    }

    fn contributions(&self, z: &[f64], out: &mut [f64]) {
        out.iter_mut().for_each(|x| *x = 0.0);
        let mut features = Vec::with_capacity(16);
        for tree in &self.trees {
            features.clear();
            let h = Self::path(tree, z, |f| features.push(f));
            let w = 1.0 / h.max(1.0);
            for &f in &features {
                out[f as usize] += w;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    /// Scores as before the flat layout: every tree walked node by node, the path lengths
    /// added in tree order.
    fn walked_score(forest: &IsolationForest, z: &[f64]) -> f64 {
        let mut total = 0.0;
        for tree in &forest.trees {
            total += IsolationForest::path(tree, z, |_| {});
        }
        let mean = total / forest.trees.len().max(1) as f64;
        super::pow2(-mean / c(forest.sample).max(1e-12))
    }

    /// How a synthetic column is drawn.
    #[derive(Clone, Copy)]
    enum Col {
        Uniform,
        /// Integers 0 … k − 1 (ties, short splits).
        Int(u32),
        /// Zero nine times in ten, else uniform (leaves of many equal rows).
        Sparse,
        Const,
    }

    fn table(cols: &[Col], n: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<f64> {
        let mut v = Vec::with_capacity(n * cols.len());
        for _ in 0..n {
            for c in cols {
                v.push(match *c {
                    Col::Uniform => rng.gen_range(-3.0..3.0),
                    Col::Int(k) => f64::from(rng.gen_range(0..k)),
                    Col::Sparse if rng.gen_bool(0.9) => 0.0,
                    Col::Sparse => rng.gen_range(-1.0..5.0),
                    Col::Const => 1.5,
                });
            }
        }
        v
    }

    /// Rows that exercise the descent: training rows, fresh rows, rows on the thresholds
    /// themselves, and non-finite and extreme values.
    fn probes(
        forest: &IsolationForest,
        train: &[f64],
        cols: &[Col],
        rng: &mut Xoshiro256PlusPlus,
    ) -> Vec<f64> {
        let d = cols.len();
        let mut rows: Vec<f64> = train.iter().copied().take(40 * d).collect();
        rows.extend(table(cols, 71, rng));
        for tree in forest.trees.iter().take(20) {
            let mut row = table(cols, 1, rng);
            for node in tree.iter().filter(|n| n.feature != LEAF).take(d) {
                row[node.feature as usize] = node.value;
            }
            rows.extend(row);
        }
        let odd = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            1e300,
            -1e300,
        ];
        for (i, x) in odd.iter().enumerate() {
            rows.extend(std::iter::repeat_n(*x, d));
            let mut row = table(cols, 1, rng);
            row[i % d] = *x;
            rows.extend(row);
        }
        rows
    }

    #[test]
    fn flat_scores_are_the_node_walking_scores_bit_for_bit() {
        use Col::*;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let mut wide = vec![Uniform; 300];
        wide[5] = Int(3);
        let cases: Vec<(Vec<Col>, usize)> = vec![
            (vec![Uniform], 2),
            (vec![Uniform, Int(2)], 3),
            (vec![Int(2), Const, Uniform], 37),
            (vec![Sparse, Int(4), Sparse, Uniform, Const], 255),
            (vec![Uniform; 20], 257),
            (vec![Int(3); 7], 1000),
            (vec![Sparse; 33], 600),
            (vec![Const, Const], 50),
            (wide, 400),
        ];
        for (case, (cols, n)) in cases.iter().enumerate() {
            let d = cols.len();
            let train = table(cols, *n, &mut rng);
            let z = Array2::from_shape_vec((*n, d), train.clone()).expect("shape");
            let forest = IsolationForest::fit(&z, case as u64).expect("fits");
            let rows = probes(&forest, &train, cols, &mut rng);
            let want: Vec<u64> = rows
                .chunks_exact(d)
                .map(|r| walked_score(&forest, r).to_bits())
                .collect();
            for (i, r) in rows.chunks_exact(d).enumerate() {
                assert_eq!(
                    forest.score(r).to_bits(),
                    want[i],
                    "case {case} row {i}: score"
                );
            }
            for cut in [1, 5, 8, 127, 128, 129, rows.len()] {
                let mut out = vec![f64::NAN; want.len()];
                for (block, o) in rows.chunks(cut * d).zip(out.chunks_mut(cut)) {
                    forest.score_batch(block, d, o);
                }
                let got: Vec<u64> = out.iter().map(|x| x.to_bits()).collect();
                assert_eq!(got, want, "case {case}: score_batch in blocks of {cut}");
            }
        }
    }

    #[test]
    fn every_flat_tree_reaches_the_walked_leaf() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
        let cols = [Col::Int(5), Col::Uniform, Col::Sparse, Col::Uniform];
        let train = table(&cols, 500, &mut rng);
        let z = Array2::from_shape_vec((500, 4), train.clone()).expect("shape");
        let forest = IsolationForest::fit(&z, 3).expect("fits");
        let rows = probes(&forest, &train, &cols, &mut rng);
        for tree in &forest.trees {
            let one = std::slice::from_ref(tree);
            let flat = FlatForest::new(one, 4, checked_depth(one, 4).expect("valid"));
            let mut got = vec![0.0; rows.len() / 4];
            flat.leaf_totals(&rows, &mut got);
            for (r, g) in rows.chunks_exact(4).zip(&got) {
                let walked = IsolationForest::path(tree, r, |_| {});
                assert_eq!(flat.leaf_total(r).to_bits(), walked.to_bits(), "row {r:?}");
                assert_eq!(g.to_bits(), walked.to_bits(), "row {r:?} in a block");
            }
        }
    }

    /// A forest artifact of width `dim` holding one tree (JSON nodes).
    fn artifact(dim: usize, tree: &str) -> String {
        format!(r#"{{"dim":{dim},"sample":4,"trees":[{tree}]}}"#)
    }

    const LEAF_JSON: &str = r#"{"feature":4294967295,"left":0,"value":1.0}"#;

    #[test]
    fn artifacts_keep_their_format_and_damaged_ones_are_refused() {
        let good = artifact(
            2,
            &format!(r#"[{{"feature":1,"left":1,"value":0.5}},{LEAF_JSON},{LEAF_JSON}]"#),
        );
        let forest: IsolationForest = serde_json::from_str(&good).expect("reads");
        assert_eq!(serde_json::to_string(&forest).expect("writes"), good);
        for z in [[0.0, 0.0], [0.0, 0.5], [0.0, f64::NAN]] {
            assert_eq!(
                forest.score(&z).to_bits(),
                walked_score(&forest, &z).to_bits()
            );
        }
        let tagged = format!(r#"{{"family":"iforest",{}"#, &good[1..]);
        let any: super::super::AnyDetector = serde_json::from_str(&tagged).expect("reads");
        assert_eq!(any, super::super::AnyDetector::Iforest(forest));

        let split = |feature: u32, left: u32| {
            format!(r#"{{"feature":{feature},"left":{left},"value":0.5}}"#)
        };
        // A chain of splits one level too deep, each with a leaf beside it.
        let deep: Vec<String> = (0..=MAX_DEPTH as u32)
            .map(|i| format!("{},{LEAF_JSON}", split(0, 2 * i + 2)))
            .chain([format!("{LEAF_JSON},{LEAF_JSON}")])
            .collect();
        let damaged = [
            ("[]".to_string(), "no nodes"),
            (
                format!("[{},{LEAF_JSON},{LEAF_JSON}]", split(2, 1)),
                "feature 2 of 2",
            ),
            (
                format!("[{},{LEAF_JSON},{LEAF_JSON}]", split(0, 0)),
                "children 0 and 1",
            ),
            (
                format!("[{},{LEAF_JSON},{LEAF_JSON}]", split(0, 2)),
                "children 2 and 3",
            ),
            (format!("[{}]", deep.join(",")), "deeper than 8"),
        ];
        for (tree, why) in damaged {
            let err =
                serde_json::from_str::<IsolationForest>(&artifact(2, &tree)).expect_err("damaged");
            let msg = err.to_string();
            assert!(
                msg.contains("damaged") && msg.contains(why),
                "{tree}: {msg}"
            );
        }
    }
}
