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

use ndarray::Array2;
use rand::Rng;
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use super::Detector;
use crate::error::{ModelError, Result};

/// Trees.
pub const TREES: usize = 100;
/// Rows per tree.
pub const SAMPLE: usize = 256;

/// Leaf marker in `feature`.
const LEAF: u32 = u32::MAX;

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

/// Fitted isolation forest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForest {
    /// Width.
    pub dim: usize,
    /// Rows each tree saw.
    pub sample: usize,
    /// Trees, each a flattened node list (root first; right child = left + 1).
    pub trees: Vec<Vec<Node>>,
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
        Ok(Self {
            dim: d,
            sample: psi,
            trees,
        })
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

/// A tree laid out for branch-free descent: a leaf has threshold +∞ and points to itself.
struct Packed {
    feature: Vec<u32>,
    left: Vec<u32>,
    threshold: Vec<f64>,
    length: Vec<f64>,
    depth: usize,
}

impl Packed {
    fn new(tree: &[Node]) -> Self {
        let n = tree.len();
        let mut p = Packed {
            feature: vec![0; n],
            left: vec![0; n],
            threshold: vec![f64::INFINITY; n],
            length: vec![0.0; n],
            depth: 0,
        };
        let mut stack = vec![(0usize, 0usize)];
        while let Some((i, d)) = stack.pop() {
            let node = tree[i];
            if node.feature == LEAF {
                p.left[i] = i as u32;
                p.length[i] = node.value;
                p.depth = p.depth.max(d);
            } else {
                p.feature[i] = node.feature;
                p.left[i] = node.left;
                p.threshold[i] = node.value;
                stack.push((node.left as usize, d + 1));
                stack.push((node.left as usize + 1, d + 1));
            }
        }
        p
    }
}

impl Detector for IsolationForest {
    fn name(&self) -> &'static str {
        "iforest"
    }

    #[inline]
    fn score(&self, z: &[f64]) -> f64 {
        let mut total = 0.0;
        for tree in &self.trees {
            total += Self::path(tree, z, |_| {});
        }
        let mean = total / self.trees.len().max(1) as f64;
        let norm = c(self.sample).max(1e-12);
        (2.0f64).powf(-mean / norm)
    }

    /// Tree by tree over blocks of rows, so that each tree stays in cache while a block
    /// passes through it, and eight rows at a time descend a tree in lockstep without
    /// branches (a leaf points to itself), so their loads overlap.
    fn score_batch(&self, rows: &[f64], dim: usize, out: &mut [f64]) {
        const BLOCK: usize = 512;
        const LANES: usize = 8;
        let dim = dim.max(1);
        let packed: Vec<Packed> = self.trees.iter().map(|t| Packed::new(t)).collect();
        let norm = c(self.sample).max(1e-12);
        let trees = self.trees.len().max(1) as f64;
        for (block, o) in rows.chunks(BLOCK * dim).zip(out.chunks_mut(BLOCK)) {
            let n = block.len() / dim;
            let mut total = [0.0f64; BLOCK];
            for t in &packed {
                let mut start = 0;
                while start < n {
                    let lanes = LANES.min(n - start);
                    let mut idx = [0u32; LANES];
                    for _ in 0..t.depth {
                        for k in 0..lanes {
                            let node = idx[k] as usize;
                            let f = t.feature[node] as usize;
                            let go = u32::from(block[(start + k) * dim + f] >= t.threshold[node]);
                            idx[k] = t.left[node] + go;
                        }
                    }
                    for k in 0..lanes {
                        total[start + k] += t.length[idx[k] as usize];
                    }
                    start += lanes;
                }
            }
            for (o, t) in o.iter_mut().zip(total.iter()) {
                *o = (2.0f64).powf(-(t / trees) / norm);
            }
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
