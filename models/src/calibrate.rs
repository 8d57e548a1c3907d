//! Calibration of raw detector scores against the training distribution.
//!
//! A detector's raw scores have no common unit (a squared distance, a negative
//! log-likelihood, a path length). [`Calibration`] turns a raw score into its **surprise**
//! `u = −ln(1 − F(s))`, where `F` is the training distribution of the raw score: below the
//! tail threshold (the training 99th percentile) `F` is the interpolated empirical CDF;
//! above it the tail is exponential with the training mean excess as its scale, so scores
//! beyond anything seen in training keep their order instead of all becoming "100 %".
//! Under the training distribution `u` is Exp(1) whatever the detector, which is what lets
//! the ensemble average them (a geometric mean of tail probabilities — a combination of
//! ranks).
//!
//! Invariants: `surprise` is monotone non-decreasing in the raw score and finite for finite
//! input; `percentile` is in [0, 1].

use serde::{Deserialize, Serialize};

/// Knots kept for the empirical CDF.
const KNOTS: usize = 201;
/// Tail threshold as a training quantile.
const TAIL_Q: f64 = 0.99;

/// Empirical distribution of a training score, compressed to quantile knots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Scores at the quantiles `i / (knots − 1) × TAIL_Q`, non-decreasing.
    pub knots: Vec<f64>,
    /// Mean excess of training scores over the tail threshold (the tail's scale).
    pub tail_scale: f64,
    /// Largest training score.
    pub max: f64,
}

/// Quantile `p` of sorted finite values (linear interpolation).
pub fn quantile_sorted(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let pos = p.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

impl Calibration {
    /// Fits on training scores (non-finite ones are ignored).
    pub fn fit(scores: &[f64]) -> Self {
        let mut v: Vec<f64> = scores.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let knots: Vec<f64> = (0..KNOTS)
            .map(|i| quantile_sorted(&v, TAIL_Q * i as f64 / (KNOTS - 1) as f64))
            .collect();
        let threshold = knots.last().copied().unwrap_or(0.0);
        let excess: Vec<f64> = v
            .iter()
            .filter(|&&s| s > threshold)
            .map(|s| s - threshold)
            .collect();
        let spread = quantile_sorted(&v, 0.75) - quantile_sorted(&v, 0.25);
        let floor = (1e-9 * threshold.abs()).max(1e-12).max(0.01 * spread);
        let tail_scale = if excess.is_empty() {
            floor
        } else {
            (excess.iter().sum::<f64>() / excess.len() as f64).max(floor)
        };
        Self {
            knots,
            tail_scale,
            max: v.last().copied().unwrap_or(0.0),
        }
    }

    /// Training CDF at `s` (0 … 1; tail included).
    pub fn cdf(&self, s: f64) -> f64 {
        1.0 - (-self.surprise(s)).exp()
    }

    /// Surprise `−ln(1 − F(s))` (0 at or below the training minimum).
    #[inline]
    pub fn surprise(&self, s: f64) -> f64 {
        let k = &self.knots;
        let Some(&last) = k.last() else {
            return 0.0;
        };
        if s.is_nan() {
            return 0.0;
        }
        if s > last {
            return -(1.0 - TAIL_Q).ln() + (s - last) / self.tail_scale;
        }
        if s <= k[0] {
            return 0.0;
        }
        // Largest knot index with knots[i] < s (binary search on a sorted slice).
        let i = k.partition_point(|&x| x < s).saturating_sub(1);
        let (a, b) = (k[i], k[(i + 1).min(k.len() - 1)]);
        let frac = if b > a { (s - a) / (b - a) } else { 1.0 };
        let step = TAIL_Q / (k.len() - 1) as f64;
        let f = (i as f64 + frac) * step;
        -(1.0 - f.min(TAIL_Q)).ln()
    }
}

/// Training distribution of the ensemble score, for percentiles and the artifact summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreDistribution {
    /// Training scores at quantiles 0, 0.001, …, 1 (1001 knots).
    pub quantiles: Vec<f64>,
    /// Median, 90th, 99th, 99.9th percentile and maximum, for people reading the artifact.
    pub summary: DistributionSummary,
}

/// Headline figures of a score distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributionSummary {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
}

impl ScoreDistribution {
    /// Fits on training scores.
    pub fn fit(scores: &[f64]) -> Self {
        let mut v: Vec<f64> = scores.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let quantiles = (0..=1000)
            .map(|i| quantile_sorted(&v, i as f64 / 1000.0))
            .collect();
        let summary = DistributionSummary {
            p50: quantile_sorted(&v, 0.5),
            p90: quantile_sorted(&v, 0.9),
            p99: quantile_sorted(&v, 0.99),
            p999: quantile_sorted(&v, 0.999),
            max: v.last().copied().unwrap_or(0.0),
        };
        Self { quantiles, summary }
    }

    /// Share of training scores below `s` (0 … 1, interpolated between knots).
    #[inline]
    pub fn percentile(&self, s: f64) -> f64 {
        let q = &self.quantiles;
        let (Some(&first), Some(&last)) = (q.first(), q.last()) else {
            return 0.0;
        };
        if s.is_nan() || s <= first {
            return 0.0;
        }
        if s >= last {
            return 1.0;
        }
        let i = q.partition_point(|&x| x < s).saturating_sub(1);
        let (a, b) = (q[i], q[i + 1]);
        let frac = if b > a { (s - a) / (b - a) } else { 1.0 };
        ((i as f64 + frac) / (q.len() - 1) as f64).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surprise_is_monotone_and_extends_beyond_the_training_maximum() {
        let train: Vec<f64> = (0..1000).map(|i| f64::from(i) / 10.0).collect();
        let c = Calibration::fit(&train);
        let mut last = -1.0;
        for s in [-5.0, 0.0, 10.0, 50.0, 98.9, 99.5, 100.0, 200.0, 1e6] {
            let u = c.surprise(s);
            assert!(u >= last, "monotone at {s}");
            last = u;
        }
        assert!((c.cdf(50.0) - 0.5).abs() < 0.01, "median maps to ≈ 0.5");
        assert!(
            c.surprise(1e6) > c.surprise(200.0),
            "beyond the maximum keeps order"
        );
        let d = ScoreDistribution::fit(&train);
        assert_eq!(d.percentile(-1.0), 0.0);
        assert_eq!(d.percentile(1e9), 1.0);
        assert!((d.percentile(25.0) - 0.25).abs() < 0.01);
    }

    #[test]
    fn constant_scores_calibrate_without_dividing_by_zero() {
        let c = Calibration::fit(&[2.0; 50]);
        assert_eq!(c.surprise(2.0), 0.0);
        assert!(c.surprise(3.0).is_finite() && c.surprise(3.0) > 4.0);
    }
}
