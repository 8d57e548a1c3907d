//! Negative log-likelihood under a Gaussian mixture (linfa-clustering).
//!
//! Fit: a full-covariance mixture, k = clamp(n / (10 · p), 1, 4) components where p is the
//! number of parameters of one component's covariance (so each has data enough), k-means
//! initialisation, seeded, with covariance regularisation 1e-3 (standardised units) so that
//! zero-inflated and constant columns do not make it singular. linfa does not expose the
//! per-sample log-likelihood, so the fitted weights, means and precisions are kept and each
//! precision is factored once (`P = L Lᵀ`, linfa-linalg Cholesky). Score: `−ln Σₖ wₖ N(z | μₖ,
//! Σₖ)`. Contribution of feature `i`: its squared conditional deviation `(P c)ᵢ² / Pᵢᵢ` under
//! the most likely component (`c = z − μ`), as for [`super::mahalanobis`].

use linfa::DatasetBase;
use linfa::traits::Fit;
use linfa_clustering::GaussianMixtureModel;
use ndarray::Array2;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use serde::{Deserialize, Serialize};

use super::{Detector, cholesky_with_ridge};
use crate::error::{ModelError, Result};

/// Fitted mixture density detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixtureDensity {
    /// Width.
    pub dim: usize,
    /// Per component: ln weight + ½ ln |P| − (d/2) ln 2π.
    pub log_norm: Vec<f64>,
    /// Means, row-major (k × dim).
    pub means: Vec<f64>,
    /// Per component, `Lᵀ` of the precision's Cholesky factor, row-major (dim × dim).
    pub precision_chol_t: Vec<f64>,
}

impl MixtureDensity {
    /// Fits on standardised rows.
    pub fn fit(z: &Array2<f64>, seed: u64) -> Result<Self> {
        let (n, d) = z.dim();
        if n < 4 || d == 0 {
            return Err(ModelError::Fit {
                detector: "gmm",
                reason: format!("needs at least 4 rows and 1 column, got {n} × {d}"),
            });
        }
        let per_component = d * (d + 3) / 2;
        let k = (n / (10 * per_component).max(1)).clamp(1, 4);
        let sample = crate::stats::sample_rows(z, super::kmeans::FIT_ROWS, seed);
        let rng = Xoshiro256Plus::seed_from_u64(seed);
        let fitted = GaussianMixtureModel::params(k)
            .with_rng(rng)
            .n_runs(1)
            .max_n_iterations(100)
            .tolerance(1e-3)
            .reg_covariance(1e-3)
            .fit(&DatasetBase::from(sample))
            .map_err(|e| ModelError::Fit {
                detector: "gmm",
                reason: e.to_string(),
            })?;
        let mut log_norm = Vec::with_capacity(k);
        let mut means = Vec::with_capacity(k * d);
        let mut precision_chol_t = Vec::with_capacity(k * d * d);
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        for c in 0..fitted.weights().len() {
            let p = fitted
                .precisions()
                .index_axis(ndarray::Axis(0), c)
                .to_owned();
            let (l, _) = cholesky_with_ridge(&p, "gmm")?;
            let log_det_half: f64 = (0..d).map(|i| l[i * d + i].ln()).sum();
            let w = fitted.weights()[c].max(1e-300);
            log_norm.push(w.ln() + log_det_half - d as f64 * half_log_2pi);
            means.extend(fitted.means().row(c).iter().copied());
            for i in 0..d {
                for j in 0..d {
                    precision_chol_t.push(l[j * d + i]);
                }
            }
        }
        Ok(Self {
            dim: d,
            log_norm,
            means,
            precision_chol_t,
        })
    }

    /// Per component log density terms, and the index of the largest.
    #[inline]
    fn component_logs(&self, z: &[f64], logs: &mut [f64]) -> usize {
        let d = self.dim;
        super::with_scratch(d, |c| self.component_logs_in(z, logs, c))
    }

    /// [`Self::component_logs`] with `c` as scratch.
    #[inline]
    fn component_logs_in(&self, z: &[f64], logs: &mut [f64], c: &mut [f64]) -> usize {
        let d = self.dim;
        let mut best = (0, f64::NEG_INFINITY);
        for (k, log) in logs.iter_mut().enumerate() {
            let mean = &self.means[k * d..(k + 1) * d];
            for j in 0..d {
                c[j] = z[j] - mean[j];
            }
            let u = &self.precision_chol_t[k * d * d..(k + 1) * d * d];
            let mut q = 0.0;
            for i in 0..d {
                let row = &u[i * d + i..(i + 1) * d];
                let y: f64 = row.iter().zip(&c[i..]).map(|(a, b)| a * b).sum();
                q += y * y;
            }
            *log = self.log_norm[k] - 0.5 * q;
            if *log > best.1 {
                best = (k, *log);
            }
        }
        best.0
    }
}

impl Detector for MixtureDensity {
    fn name(&self) -> &'static str {
        "gmm"
    }

    #[inline]
    fn score(&self, z: &[f64]) -> f64 {
        let mut logs = [0.0f64; 8];
        let k = self.log_norm.len().min(8);
        self.component_logs(z, &mut logs[..k]);
        let m = logs[..k].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = logs[..k].iter().map(|l| (l - m).exp()).sum();
        -(m + s.ln())
    }

    fn contributions(&self, z: &[f64], out: &mut [f64]) {
        let d = self.dim;
        let mut logs = [0.0f64; 8];
        let k = self.log_norm.len().min(8);
        let best = self.component_logs(z, &mut logs[..k]);
        let mean = &self.means[best * d..(best + 1) * d];
        let u = &self.precision_chol_t[best * d * d..(best + 1) * d * d];
        let c: Vec<f64> = (0..d).map(|j| z[j] - mean[j]).collect();
        // y = Lᵀ c, then P c = L y = Uᵀ y.
        let y: Vec<f64> = (0..d)
            .map(|i| (i..d).map(|j| u[i * d + j] * c[j]).sum())
            .collect();
        for i in 0..d {
            let pc: f64 = (0..=i).map(|j| u[j * d + i] * y[j]).sum();
            let pii: f64 = (0..=i).map(|j| u[j * d + i] * u[j * d + i]).sum();
            out[i] = pc * pc / pii.max(1e-300);
        }
    }
}
