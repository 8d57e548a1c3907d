//! PCA reconstruction error.
//!
//! Fit: principal components of the standardised rows from the eigendecomposition of their
//! covariance (linfa-linalg `eigh`; linfa-reduction's truncated SVD was measurably inexact on
//! small correlated tables, so it is not used); keep the fewest components that explain 90 % of the total variance, at most
//! `d − 1`, so a residual subspace remains. Score: the squared distance between a row and its
//! projection on those components — large when a row breaks the correlations the training
//! data follow (sales up while purchases are not, say). Contribution of feature `i`: its
//! squared residual.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::Detector;
use crate::error::{ModelError, Result};

/// Variance the kept components explain.
const EXPLAINED: f64 = 0.9;

/// Fitted PCA residual detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcaResidual {
    /// Width.
    pub dim: usize,
    /// Mean.
    pub mean: Vec<f64>,
    /// Kept components, row-major (k × dim), orthonormal rows.
    pub components: Vec<f64>,
    /// Share of the variance they explain.
    pub explained: f64,
}

impl PcaResidual {
    /// Fits on standardised rows.
    pub fn fit(z: &Array2<f64>) -> Result<Self> {
        use linfa_linalg::eigh::Eigh;
        let (n, d) = z.dim();
        if n < 3 || d < 2 {
            return Err(ModelError::Fit {
                detector: "pca",
                reason: format!("needs at least 3 rows and 2 columns, got {n} × {d}"),
            });
        }
        let keep_all = vec![true; n];
        let (mean, cov) = super::mahalanobis::moments(z, &keep_all);
        let total: f64 = (0..d).map(|i| cov[[i, i]]).sum();
        if total <= 0.0 {
            return Ok(Self {
                dim: d,
                mean,
                components: Vec::new(),
                explained: 1.0,
            });
        }
        let (values, vectors) = cov.eigh().map_err(|e| ModelError::Fit {
            detector: "pca",
            reason: format!("eigendecomposition failed: {e}"),
        })?;
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        let mut acc = 0.0;
        let mut components = Vec::new();
        for &k in order.iter().take(d - 1) {
            if acc >= EXPLAINED * total {
                break;
            }
            acc += values[k].max(0.0);
            components.extend(vectors.column(k).iter().copied());
        }
        Ok(Self {
            dim: d,
            mean,
            components,
            explained: (acc / total).min(1.0),
        })
    }

    #[inline]
    fn residual(&self, z: &[f64], r: &mut [f64]) {
        let d = self.dim;
        for j in 0..d {
            r[j] = z[j] - self.mean[j];
        }
        // The components are orthonormal, so projecting out one leaves the others'
        // coordinates unchanged and they can be removed in turn.
        for comp in self.components.chunks_exact(d) {
            let t: f64 = comp.iter().zip(r.iter()).map(|(a, b)| a * b).sum();
            for j in 0..d {
                r[j] -= t * comp[j];
            }
        }
    }
}

impl Detector for PcaResidual {
    fn name(&self) -> &'static str {
        "pca"
    }

    #[inline]
    fn score(&self, z: &[f64]) -> f64 {
        super::with_scratch(self.dim, |r| {
            self.residual(z, r);
            r.iter().map(|x| x * x).sum()
        })
    }

    fn contributions(&self, z: &[f64], out: &mut [f64]) {
        self.residual(z, out);
        out.iter_mut().for_each(|x| *x = *x * *x);
    }
}
