//! Distance to the nearest k-means centroid (linfa-clustering).
//!
//! Fit: k-means with k = clamp(n / 50, 2, 8) on the standardised rows (at most
//! [`FIT_ROWS`] of them, drawn with the seed), k-means++ initialisation, seeded. A cluster
//! holding less than a quarter of the average cluster's share of rows is dropped: a tight
//! group of anomalies would otherwise become a centroid of its own and look normal. Score:
//! the squared Euclidean distance to the nearest remaining centroid. Contribution of feature `i`: its term
//! `(zᵢ − cᵢ)²` for that centroid.

use linfa::DatasetBase;
use linfa::traits::Fit;
use linfa_clustering::KMeans;
use ndarray::Array2;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use serde::{Deserialize, Serialize};

use super::Detector;
use crate::error::{ModelError, Result};

/// Rows used for fitting at most.
pub const FIT_ROWS: usize = 10_000;

/// Fitted k-means distance detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeansDistance {
    /// Width.
    pub dim: usize,
    /// Centroids, row-major (k × dim).
    pub centroids: Vec<f64>,
}

impl KMeansDistance {
    /// Fits on standardised rows.
    pub fn fit(z: &Array2<f64>, seed: u64) -> Result<Self> {
        let (n, d) = z.dim();
        if n < 4 {
            return Err(ModelError::Fit {
                detector: "kmeans",
                reason: format!("needs at least 4 rows, got {n}"),
            });
        }
        let k = (n / 50).clamp(2, 8);
        let sample = crate::stats::sample_rows(z, FIT_ROWS, seed);
        let rng = Xoshiro256Plus::seed_from_u64(seed);
        let model = KMeans::params_with_rng(k, rng)
            .n_runs(1)
            .max_n_iterations(100)
            .tolerance(1e-4)
            .fit(&DatasetBase::from(sample))
            .map_err(|e| ModelError::Fit {
                detector: "kmeans",
                reason: e.to_string(),
            })?;
        let mut sizes = vec![0usize; k];
        let all = Self {
            dim: d,
            centroids: model.centroids().iter().copied().collect(),
        };
        for r in z.rows() {
            let r = r.to_vec();
            sizes[all.nearest(&r).0] += 1;
        }
        let min = (n as f64 / k as f64 / 4.0).ceil() as usize;
        let centroids: Vec<f64> = all
            .centroids
            .chunks_exact(d)
            .zip(&sizes)
            .filter(|(_, s)| **s >= min)
            .flat_map(|(c, _)| c.to_vec())
            .collect();
        if centroids.is_empty() {
            return Ok(all);
        }
        Ok(Self { dim: d, centroids })
    }

    #[inline]
    fn nearest(&self, z: &[f64]) -> (usize, f64) {
        let mut best = (0, f64::INFINITY);
        for (c, centroid) in self.centroids.chunks_exact(self.dim).enumerate() {
            let mut s = 0.0;
            for (a, b) in z.iter().zip(centroid) {
                let t = a - b;
                s += t * t;
            }
            if s < best.1 {
                best = (c, s);
            }
        }
        best
    }
}

impl Detector for KMeansDistance {
    fn name(&self) -> &'static str {
        "kmeans"
    }

    #[inline]
    fn score(&self, z: &[f64]) -> f64 {
        self.nearest(z).1
    }

    fn contributions(&self, z: &[f64], out: &mut [f64]) {
        let (c, _) = self.nearest(z);
        let centroid = &self.centroids[c * self.dim..(c + 1) * self.dim];
        for j in 0..self.dim {
            out[j] = (z[j] - centroid[j]).powi(2);
        }
    }
}
