//! Mahalanobis distance under a robust covariance.
//!
//! Fit: mean and covariance of the standardised rows, then one reweighting step — the 5 %
//! of rows farthest under the first estimate are left out and the estimate is repeated — so
//! that the anomalies being looked for do not inflate the covariance. No feature's variance
//! is taken below [`MIN_VARIANCE`] (standardised units): a column that is nearly constant in
//! training — its scale is then its floor, see [`crate::scale`] — would otherwise make a
//! departure of one floor unit an extreme distance (a variance of 0.001 turns z = 1 into
//! 1000). Raising diagonal entries keeps the matrix positive semi-definite; a small ridge
//! keeps it positive definite. Score: the
//! squared distance `(z − μ)ᵀ Σ⁻¹ (z − μ)`. Contribution of feature `i`: its squared
//! conditional deviation `(P c)ᵢ² / Pᵢᵢ` with `P = Σ⁻¹`, `c = z − μ` — how far `zᵢ` is from
//! what the other features predict for it, which is the drop in distance when `zᵢ` is
//! replaced by that prediction. A row that breaks the correlation between sales and
//! purchases is thus explained by the feature that broke it, not by its correlated partners.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{
    Detector, LANES, backward_solve_transposed, cholesky_with_ridge, forward_solve,
    forward_solve_lanes,
};
use crate::error::{ModelError, Result};

/// Fitted Mahalanobis detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mahalanobis {
    /// Width.
    pub dim: usize,
    /// Mean.
    pub mean: Vec<f64>,
    /// Lower Cholesky factor of the covariance, row-major.
    pub chol: Vec<f64>,
    /// Ridge added to the diagonal.
    pub ridge: f64,
    /// Diagonal of the precision matrix `Σ⁻¹`.
    pub precision_diag: Vec<f64>,
}

/// Diagonal of `(L Lᵀ)⁻¹` for lower-triangular row-major `L`: `Pⱼⱼ = ‖L⁻¹ eⱼ‖²`.
pub(crate) fn precision_diag(l: &[f64], d: usize) -> Vec<f64> {
    (0..d)
        .map(|j| {
            let mut e = vec![0.0; d];
            e[j] = 1.0;
            forward_solve(l, d, &mut e);
            e.iter().map(|x| x * x).sum()
        })
        .collect()
}

/// Share of rows left out in the reweighting step.
const TRIM: f64 = 0.05;

/// Smallest variance of a standardised feature (a robust unit has variance ≈ 1 on ordinary
/// data; a column whose scale came from its floor has much less).
pub const MIN_VARIANCE: f64 = 0.25;

/// Raises every diagonal entry of `cov` to at least [`MIN_VARIANCE`].
fn floor_variances(cov: &mut Array2<f64>) {
    for i in 0..cov.nrows() {
        cov[[i, i]] = cov[[i, i]].max(MIN_VARIANCE);
    }
}

pub(crate) fn moments(z: &Array2<f64>, keep: &[bool]) -> (Vec<f64>, Array2<f64>) {
    let d = z.ncols();
    let mut mean = vec![0.0; d];
    let mut n = 0.0;
    for (row, k) in z.rows().into_iter().zip(keep) {
        if *k {
            n += 1.0;
            for (m, x) in mean.iter_mut().zip(row.iter()) {
                *m += x;
            }
        }
    }
    let n = f64::max(n, 1.0);
    mean.iter_mut().for_each(|m| *m /= n);
    let mut cov = Array2::<f64>::zeros((d, d));
    let mut c = vec![0.0; d];
    for (row, k) in z.rows().into_iter().zip(keep) {
        if *k {
            for j in 0..d {
                c[j] = row[j] - mean[j];
            }
            for i in 0..d {
                for j in 0..=i {
                    cov[[i, j]] += c[i] * c[j];
                }
            }
        }
    }
    for i in 0..d {
        for j in 0..=i {
            let v = cov[[i, j]] / n;
            cov[[i, j]] = v;
            cov[[j, i]] = v;
        }
    }
    (mean, cov)
}

impl Mahalanobis {
    /// Fits on standardised rows.
    pub fn fit(z: &Array2<f64>) -> Result<Self> {
        let (n, d) = z.dim();
        if n < 2 || d == 0 {
            return Err(ModelError::Fit {
                detector: "mahalanobis",
                reason: format!("needs at least 2 rows and 1 column, got {n} × {d}"),
            });
        }
        let mut keep = vec![true; n];
        let (mean, mut cov) = moments(z, &keep);
        floor_variances(&mut cov);
        let (chol, ridge) = cholesky_with_ridge(&cov, "mahalanobis")?;
        let first = Self {
            dim: d,
            mean,
            precision_diag: precision_diag(&chol, d),
            chol,
            ridge,
        };
        let mut dist: Vec<(f64, usize)> = z
            .rows()
            .into_iter()
            .enumerate()
            .map(|(i, r)| (first.score(r.as_slice().unwrap_or(&r.to_vec())), i))
            .collect();
        dist.sort_by(|a, b| b.0.total_cmp(&a.0));
        let trim = ((n as f64) * TRIM) as usize;
        if n - trim < 2 {
            return Ok(first);
        }
        for &(_, i) in dist.iter().take(trim) {
            keep[i] = false;
        }
        let (mean, mut cov) = moments(z, &keep);
        floor_variances(&mut cov);
        let (chol, ridge) = cholesky_with_ridge(&cov, "mahalanobis")?;
        Ok(Self {
            dim: d,
            mean,
            precision_diag: precision_diag(&chol, d),
            chol,
            ridge,
        })
    }

    #[inline]
    fn whiten(&self, z: &[f64], buf: &mut [f64]) {
        for j in 0..self.dim {
            buf[j] = z[j] - self.mean[j];
        }
        forward_solve(&self.chol, self.dim, buf);
    }
}

impl Detector for Mahalanobis {
    fn name(&self) -> &'static str {
        "mahalanobis"
    }

    #[inline]
    fn score(&self, z: &[f64]) -> f64 {
        super::with_scratch(self.dim, |buf| {
            self.whiten(z, buf);
            buf.iter().map(|y| y * y).sum()
        })
    }

    /// `LANES` rows at a time through `forward_solve_lanes`: each row goes through the
    /// operations of [`Detector::score`] in the same order, so it gets the same bits (the
    /// sum of squares starts from +0.0 where `Iterator::sum` starts from ±0.0; either is
    /// absorbed by the first term, a square).
    fn score_batch(&self, rows: &[f64], dim: usize, out: &mut [f64]) {
        let d = self.dim;
        if dim != d || d == 0 {
            for (r, o) in rows.chunks_exact(dim.max(1)).zip(out.iter_mut()) {
                *o = self.score(r);
            }
            return;
        }
        let mut y = vec![[0.0; LANES]; d];
        let mut groups = rows.chunks_exact(LANES * d);
        let mut outs = out.chunks_exact_mut(LANES);
        for (group, out) in (&mut groups).zip(&mut outs) {
            for (j, (y, mean)) in y.iter_mut().zip(&self.mean).enumerate() {
                for (k, y) in y.iter_mut().enumerate() {
                    *y = group[k * d + j] - mean;
                }
            }
            forward_solve_lanes(&self.chol, d, &mut y);
            let mut sum = [0.0; LANES];
            for y in &y {
                for (s, y) in sum.iter_mut().zip(y) {
                    *s += y * y;
                }
            }
            out.copy_from_slice(&sum);
        }
        for (r, o) in groups
            .remainder()
            .chunks_exact(d)
            .zip(outs.into_remainder())
        {
            *o = self.score(r);
        }
    }

    fn contributions(&self, z: &[f64], out: &mut [f64]) {
        let mut y = vec![0.0; self.dim];
        self.whiten(z, &mut y);
        backward_solve_transposed(&self.chol, self.dim, &mut y);
        for j in 0..self.dim {
            out[j] = y[j] * y[j] / self.precision_diag[j].max(1e-300);
        }
    }
}
