//! The isolation forest laid out for scoring: every tree as a complete binary tree in heap
//! order, so that a descent is comparisons and index arithmetic, without branches.
//!
//! Layout. A tree of depth at most [`MAX_DEPTH`] = 8 fills two fixed arrays of [`SLOTS`] =
//! 256: the split at heap index `h` (root 1, children `2h` and `2h + 1`) is `splits[h]`
//! (threshold and feature, 16 bytes: one cache line holds four); after the forest's depth `D`
//! (its deepest leaf) steps a descent is at heap index `H ∈ [2^D, 2^(D+1))`, whose value is
//! `leaves[H mod 256]` — the heap index, kept in a `u8`, wraps to exactly that, and is in
//! bounds of both arrays by its type. A row goes right when `!(z[feature] < threshold)` —
//! NaN goes right, as in the node-walking descent. A leaf value is the path-length
//! contribution `depth + c(size)` stored in the fitted [`Node`], copied, never recomputed. A
//! fitted leaf above depth `D` is padded: dummy splits (feature 0) below it, and its value in
//! every leaf of its subtree, so whichever way a dummy sends a row the value is the same.
//!
//! Reading a row's values. Rows of width at most [`VIEW`] = 256 are read through fixed-size
//! views of 256 features: feature `f` is entry `f & 255` — in bounds by construction, and `f`
//! itself since every split feature is below the width — so the hot loops carry no bounds
//! check. Wider rows are read through the slice, checked.
//!
//! Table path ([`FlatForest::leaf_totals`]). Rows go through in blocks of [`BLOCK`], tree by
//! tree, so that a tree (6 KiB) and the block stay in L1 while the block passes. A block is
//! transposed into groups of [`LANES`] rows (`[f64; LANES]` per feature, so that lane `k`
//! reads at a fixed offset from its group), and descends level by level: the descents of a
//! level are independent, so the processor overlaps their loads (and the compiler compares
//! a group's lanes in SIMD). The root, the same split for every row, is compared a group at
//! a time.
//!
//! Row path ([`FlatForest::leaf_total`]): one row through up to [`ROW_TREES`] trees, level
//! by level for the same reason.
//!
//! Both paths add the trees' leaf values in tree order starting from 0.0 — the order of the
//! node-walking descent, so the same bits. Invariant: for every tree and every row, the leaf
//! value reached here is the one the recursive descent over the fitted [`Node`]s reaches
//! (tests compare the two bit for bit).

use super::{LEAF, MAX_DEPTH, Node};

/// Rows of a group (a block's rows that are compared side by side).
const LANES: usize = 8;

/// Rows of the table path's blocks (a multiple of [`LANES`]).
const BLOCK: usize = 128;

/// Trees one row descends level by level on the row path.
const ROW_TREES: usize = 128;

/// Slots of each array of a tree: heap indices of depth up to [`MAX_DEPTH`] fit a `u8`.
const SLOTS: usize = 1 << MAX_DEPTH;
const _: () = assert!(SLOTS == u8::MAX as usize + 1);

/// Widest rows read through fixed-size views (a power of two); wider ones are read checked.
const VIEW: usize = 256;

/// One row's values, or a group's (`[f64; LANES]` per feature), as a view of [`VIEW`]
/// features: feature `f < dim` is entry `f & (VIEW − 1)`.
type View<T> = [T; VIEW];

/// Whether a row whose value is `x` goes right at a split on `threshold`: unless
/// `x < threshold` (so NaN goes right), as in the node-walking descent.
#[inline(always)]
fn goes_right(x: f64, threshold: f64) -> bool {
    x.partial_cmp(&threshold) != Some(std::cmp::Ordering::Less)
}

/// One tree as a complete binary tree (6 KiB).
#[derive(Clone)]
struct FlatTree {
    /// Splits by heap index (slot 0 unused; feature 0 under a padded leaf).
    splits: [Split; SLOTS],
    /// Leaf values by final heap index mod 256.
    leaves: [f64; SLOTS],
}

/// A split: rows with `z[feature] < threshold` go left.
#[derive(Clone, Copy)]
struct Split {
    threshold: f64,
    feature: u32,
}

impl FlatTree {
    /// Writes the subtree of `tree[node]` at heap index `h`, `levels` above the leaves (a
    /// fitted leaf above the last level fills its whole subtree; see the module doc).
    fn place(&mut self, tree: &[Node], node: usize, h: usize, levels: usize) {
        let n = tree[node];
        if levels == 0 {
            debug_assert_eq!(n.feature, LEAF, "the depth is the deepest leaf's");
            self.leaves[h % SLOTS] = n.value;
            return;
        }
        let (left, right) = if n.feature == LEAF {
            (node, node)
        } else {
            self.splits[h] = Split {
                threshold: n.value,
                feature: n.feature,
            };
            (n.left as usize, n.left as usize + 1)
        };
        self.place(tree, left, 2 * h, levels - 1);
        self.place(tree, right, 2 * h + 1, levels - 1);
    }

    /// Advances heap index `h` past its split, `value(f)` being the row's feature `f`:
    /// `2h + right`, wrapping to the leaf slot after the last level.
    #[inline(always)]
    fn step(&self, h: u8, value: impl Fn(usize) -> f64) -> u8 {
        let i = usize::from(h);
        let s = self.splits[i];
        let right = goes_right(value(s.feature as usize), s.threshold);
        h.wrapping_mul(2).wrapping_add(u8::from(right))
    }

    /// Adds to `total[r]` the leaf value that row `r` of `groups` reaches, for the first
    /// `total.len()` rows, descending `depth ≥ 1` levels level by level.
    fn add_leaves_of_block(&self, depth: usize, groups: &[&View<[f64; LANES]>], total: &mut [f64]) {
        let mut h = [[1u8; LANES]; BLOCK / LANES];
        let h = &mut h[..total.len().div_ceil(LANES)];
        // The root, the same split for every row: compared a whole group at a time.
        let (root, threshold) = (
            self.splits[1].feature as usize & (VIEW - 1),
            self.splits[1].threshold,
        );
        for (h, group) in h.iter_mut().zip(groups) {
            for (h, x) in h.iter_mut().zip(&group[root]) {
                *h = 2 + u8::from(goes_right(*x, threshold));
            }
        }
        for _ in 1..depth {
            for (h, group) in h.iter_mut().zip(groups) {
                for (k, h) in h.iter_mut().enumerate() {
                    *h = self.step(*h, |f| group[f & (VIEW - 1)][k]);
                }
            }
        }
        for (t, h) in total.iter_mut().zip(h.as_flattened()) {
            *t += self.leaves[usize::from(*h)];
        }
    }
}

/// A block of up to [`BLOCK`] rows of width `dim ≤ VIEW`, transposed into groups of
/// [`LANES`] rows: entry `g · dim + f` holds feature `f` of rows `g · LANES …`. Groups are
/// `dim` entries apart (so that they spread over the cache sets) and read as a [`View`] that
/// runs on into the next groups, whose entries `f & (VIEW − 1) = f < dim` never reaches;
/// [`VIEW`] spare entries at the end give the last group a full view.
struct Block {
    dim: usize,
    entries: Vec<[f64; LANES]>,
}

impl Block {
    fn new(dim: usize) -> Self {
        Self {
            dim,
            entries: vec![[0.0; LANES]; BLOCK / LANES * dim + VIEW],
        }
    }

    /// Copies the row-major `rows` (at most [`BLOCK`] of width `dim`) in. Lanes past the last
    /// row keep older values: they are descended but never added.
    fn fill(&mut self, rows: &[f64]) {
        for (r, row) in rows.chunks_exact(self.dim).enumerate() {
            let group = &mut self.entries[r / LANES * self.dim..][..self.dim];
            for (g, x) in group.iter_mut().zip(row) {
                g[r % LANES] = *x;
            }
        }
    }

    /// The views of all groups.
    fn groups(&self) -> [&View<[f64; LANES]>; BLOCK / LANES] {
        std::array::from_fn(|g| {
            self.entries[g * self.dim..]
                .first_chunk()
                .expect("VIEW spare entries after the last group")
        })
    }
}

/// Every tree of a forest as a complete binary tree of depth `depth`.
#[derive(Clone)]
pub(super) struct FlatForest {
    /// Levels of splits above the leaves (0 when every tree is a single leaf).
    depth: usize,
    /// Width of the rows (every split feature is below it).
    dim: usize,
    /// Trees.
    trees: Vec<FlatTree>,
}

impl FlatForest {
    /// Lays out valid trees (children after their parent, features below `dim`, `depth`
    /// their deepest leaf, at most [`MAX_DEPTH`]).
    pub(super) fn new(trees: &[Vec<Node>], dim: usize, depth: usize) -> Self {
        let empty = FlatTree {
            splits: [Split {
                threshold: 0.0,
                feature: 0,
            }; SLOTS],
            leaves: [0.0; SLOTS],
        };
        let mut flat = Self {
            depth,
            dim,
            trees: vec![empty; trees.len()],
        };
        for (out, tree) in flat.trees.iter_mut().zip(trees) {
            out.place(tree, 0, 1, depth);
        }
        flat
    }

    /// Writes into `out[r]` the sum of the leaf values that row `r` of the row-major `rows`
    /// (of the forest's width) reaches, over the trees in order from 0.0.
    pub(super) fn leaf_totals(&self, rows: &[f64], out: &mut [f64]) {
        let d = self.dim;
        if d == 0 || d > VIEW || self.depth == 0 {
            for (row, o) in rows.chunks_exact(d.max(1)).zip(out.iter_mut()) {
                *o = self.leaf_total(row);
            }
            return;
        }
        let mut block = Block::new(d);
        for (rows, out) in rows.chunks(BLOCK * d).zip(out.chunks_mut(BLOCK)) {
            let n = (rows.len() / d).min(out.len());
            let out = &mut out[..n];
            block.fill(&rows[..n * d]);
            out.fill(0.0);
            let groups = block.groups();
            for tree in &self.trees {
                tree.add_leaves_of_block(self.depth, &groups, out);
            }
        }
    }

    /// The sum of the leaf values that one row `z` (of the forest's width) reaches, over the
    /// trees in order from 0.0.
    pub(super) fn leaf_total(&self, z: &[f64]) -> f64 {
        let z = &z[..self.dim];
        if z.len() <= VIEW {
            let mut view = [0.0; VIEW];
            view[..z.len()].copy_from_slice(z);
            self.leaf_total_of(|f| view[f & (VIEW - 1)])
        } else {
            self.leaf_total_of(|f| z[f])
        }
    }

    /// [`FlatForest::leaf_total`], `value(f)` being the row's feature `f`: up to
    /// [`ROW_TREES`] trees level by level.
    #[inline(always)]
    fn leaf_total_of(&self, value: impl Fn(usize) -> f64) -> f64 {
        let mut total = 0.0;
        for trees in self.trees.chunks(ROW_TREES) {
            let mut h = [1u8; ROW_TREES];
            let h = &mut h[..trees.len()];
            for _ in 0..self.depth {
                for (h, tree) in h.iter_mut().zip(trees) {
                    *h = tree.step(*h, &value);
                }
            }
            for (h, tree) in h.iter().zip(trees) {
                total += tree.leaves[usize::from(*h)];
            }
        }
        total
    }
}
