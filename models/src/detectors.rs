//! Anomaly detectors over standardised rows.
//!
//! Every detector is fitted on a standardised, row-major matrix (see [`crate::scale`]) and
//! then scores one row at a time — higher is more anomalous — and splits a row's score into
//! each feature's non-negative contribution (its explanation). Fitting is deterministic for a
//! seed. The fitted parameters are plain vectors, so artifacts are stable JSON and scoring
//! is a tight loop without allocation.
//!
//! Families: [`mahalanobis`] (robust covariance, Cholesky from linfa-linalg), [`kmeans`]
//! (linfa-clustering k-means; distance to the nearest centroid), [`gmm`] (linfa-clustering
//! Gaussian mixture; negative log-likelihood), [`pca`] (eigendecomposition from linfa-linalg;
//! reconstruction error) and [`iforest`] (an isolation forest written here, since linfa has none).

pub mod gmm;
pub mod iforest;
pub mod kmeans;
pub mod mahalanobis;
pub mod pca;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// A fitted detector.
pub trait Detector {
    /// Short name (`kmeans`, …).
    fn name(&self) -> &'static str;
    /// Raw anomaly score of one standardised row (higher = more anomalous).
    fn score(&self, z: &[f64]) -> f64;
    /// Each feature's non-negative contribution to the score of `z`, written into `out`
    /// (same length as `z`; not normalised).
    fn contributions(&self, z: &[f64], out: &mut [f64]);
    /// Raw scores of a row-major block of standardised rows of width `dim` into `out` (one
    /// per row). Detectors with a better memory order than row by row override it.
    fn score_batch(&self, rows: &[f64], dim: usize, out: &mut [f64]) {
        for (r, o) in rows.chunks_exact(dim.max(1)).zip(out.iter_mut()) {
            *o = self.score(r);
        }
    }
}

/// Detector families, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Mahalanobis distance under a robust covariance.
    Mahalanobis,
    /// Squared distance to the nearest k-means centroid.
    Kmeans,
    /// Negative log-likelihood under a Gaussian mixture.
    Gmm,
    /// PCA reconstruction error.
    Pca,
    /// Isolation forest.
    Iforest,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 5] = [
        Family::Mahalanobis,
        Family::Kmeans,
        Family::Gmm,
        Family::Pca,
        Family::Iforest,
    ];

    /// Name.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Mahalanobis => "mahalanobis",
            Family::Kmeans => "kmeans",
            Family::Gmm => "gmm",
            Family::Pca => "pca",
            Family::Iforest => "iforest",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == s.trim())
            .ok_or_else(|| ModelError::UnknownDetector(s.to_string()))
    }

    /// Fits this family on a standardised matrix.
    pub fn fit(self, z: &Array2<f64>, seed: u64) -> Result<AnyDetector> {
        Ok(match self {
            Family::Mahalanobis => AnyDetector::Mahalanobis(mahalanobis::Mahalanobis::fit(z)?),
            Family::Kmeans => AnyDetector::Kmeans(kmeans::KMeansDistance::fit(z, seed)?),
            Family::Gmm => AnyDetector::Gmm(gmm::MixtureDensity::fit(z, seed)?),
            Family::Pca => AnyDetector::Pca(pca::PcaResidual::fit(z)?),
            Family::Iforest => AnyDetector::Iforest(iforest::IsolationForest::fit(z, seed)?),
        })
    }
}

/// One fitted detector of any family (the serialised form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum AnyDetector {
    /// Mahalanobis.
    Mahalanobis(mahalanobis::Mahalanobis),
    /// k-means.
    Kmeans(kmeans::KMeansDistance),
    /// Gaussian mixture.
    Gmm(gmm::MixtureDensity),
    /// PCA.
    Pca(pca::PcaResidual),
    /// Isolation forest.
    Iforest(iforest::IsolationForest),
}

impl AnyDetector {
    fn inner(&self) -> &dyn Detector {
        match self {
            AnyDetector::Mahalanobis(d) => d,
            AnyDetector::Kmeans(d) => d,
            AnyDetector::Gmm(d) => d,
            AnyDetector::Pca(d) => d,
            AnyDetector::Iforest(d) => d,
        }
    }
}

impl Detector for AnyDetector {
    fn name(&self) -> &'static str {
        self.inner().name()
    }
    #[inline]
    fn score(&self, z: &[f64]) -> f64 {
        match self {
            AnyDetector::Mahalanobis(d) => d.score(z),
            AnyDetector::Kmeans(d) => d.score(z),
            AnyDetector::Gmm(d) => d.score(z),
            AnyDetector::Pca(d) => d.score(z),
            AnyDetector::Iforest(d) => d.score(z),
        }
    }
    fn contributions(&self, z: &[f64], out: &mut [f64]) {
        self.inner().contributions(z, out)
    }
    fn score_batch(&self, rows: &[f64], dim: usize, out: &mut [f64]) {
        match self {
            AnyDetector::Mahalanobis(d) => d.score_batch(rows, dim, out),
            AnyDetector::Kmeans(d) => d.score_batch(rows, dim, out),
            AnyDetector::Gmm(d) => d.score_batch(rows, dim, out),
            AnyDetector::Pca(d) => d.score_batch(rows, dim, out),
            AnyDetector::Iforest(d) => d.score_batch(rows, dim, out),
        }
    }
}

/// Runs `f` on a zeroed scratch slice of length `n`: on the stack up to 64 (every table
/// here), on the heap beyond, so per-row scoring does not allocate.
#[inline]
pub fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [f64]) -> R) -> R {
    if n <= 64 {
        let mut a = [0.0f64; 64];
        f(&mut a[..n])
    } else {
        f(&mut vec![0.0; n])
    }
}

/// Solves `L y = b` for lower-triangular row-major `L` (d × d) in place.
#[inline]
pub(crate) fn forward_solve(l: &[f64], d: usize, b: &mut [f64]) {
    for i in 0..d {
        let row = &l[i * d..i * d + i];
        let mut s = b[i];
        for (k, lik) in row.iter().enumerate() {
            s -= lik * b[k];
        }
        b[i] = s / l[i * d + i];
    }
}

/// Rows scored together by the detectors that solve per row ([`forward_solve_lanes`]).
pub(crate) const LANES: usize = 8;

/// [`forward_solve`] of [`LANES`] right-hand sides at once, `b[i][k]` being entry `i` of
/// side `k`: every side goes through the same operations in the same order as
/// [`forward_solve`] (so the same bits), and the lanes vectorise.
#[inline]
pub(crate) fn forward_solve_lanes(l: &[f64], d: usize, b: &mut [[f64; LANES]]) {
    for i in 0..d {
        let row = &l[i * d..i * d + i];
        let mut s = b[i];
        for (k, lik) in row.iter().enumerate() {
            for (s, bk) in s.iter_mut().zip(&b[k]) {
                *s -= lik * bk;
            }
        }
        let lii = l[i * d + i];
        for (bi, s) in b[i].iter_mut().zip(s) {
            *bi = s / lii;
        }
    }
}

/// Solves `Lᵀ x = y` for lower-triangular row-major `L` in place.
#[inline]
pub(crate) fn backward_solve_transposed(l: &[f64], d: usize, y: &mut [f64]) {
    for i in (0..d).rev() {
        let mut s = y[i];
        for k in i + 1..d {
            s -= l[k * d + i] * y[k];
        }
        y[i] = s / l[i * d + i];
    }
}

/// Cholesky factor (lower, row-major) of a symmetric positive-definite matrix, adding ridge
/// until it factors.
pub(crate) fn cholesky_with_ridge(
    cov: &Array2<f64>,
    detector: &'static str,
) -> Result<(Vec<f64>, f64)> {
    use linfa_linalg::cholesky::Cholesky;
    let d = cov.nrows();
    let trace = (0..d).map(|i| cov[[i, i]]).sum::<f64>().max(1e-12);
    let mut ridge = 1e-3 * trace / d.max(1) as f64;
    for _ in 0..12 {
        let mut m = cov.clone();
        for i in 0..d {
            m[[i, i]] += ridge;
        }
        if let Ok(l) = m.cholesky() {
            let mut v = Vec::with_capacity(d * d);
            for i in 0..d {
                for j in 0..d {
                    v.push(if j <= i { l[[i, j]] } else { 0.0 });
                }
            }
            return Ok((v, ridge));
        }
        ridge *= 10.0;
    }
    Err(ModelError::Fit {
        detector,
        reason: "covariance is not positive definite even with ridge".into(),
    })
}
