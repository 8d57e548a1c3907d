//! Robust statistics: medians, median absolute deviation, robust z-scores, and the seeded row
//! sample the detectors fit on.
//!
//! This crate holds what the detectors are built on: medians, median absolute deviation and
//! robust z-scores that survive heavy tails and zero-inflated counts. The linfa-backed
//! detectors build on it. Invariants: no function panics on empty input or NaN; NaN values
//! are ignored, never propagated silently into a score.

use ndarray::Array2;
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Median of the finite values, or `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Median absolute deviation from the median (unscaled), or `None` without finite values.
pub fn mad(values: &[f64]) -> Option<f64> {
    let m = median(values)?;
    let dev: Vec<f64> = values
        .iter()
        .filter(|x| x.is_finite())
        .map(|x| (x - m).abs())
        .collect();
    median(&dev)
}

/// Robust location and scale of a column: median and 1.4826 × MAD (the normal-consistent
/// scale), with a floor so that a constant or zero-inflated column does not divide by zero.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RobustScale {
    /// Median.
    pub center: f64,
    /// Scale (never below the floor given at fit time).
    pub scale: f64,
}

impl RobustScale {
    /// Fits on the finite values; `floor` is the smallest scale used.
    pub fn fit(values: &[f64], floor: f64) -> Option<Self> {
        let center = median(values)?;
        let scale = (1.4826 * mad(values)?).max(floor);
        Some(Self { center, scale })
    }

    /// Robust z-score of a value (NaN stays NaN).
    pub fn z(&self, x: f64) -> f64 {
        (x - self.center) / self.scale
    }
}

/// Up to `max` rows of `z`, drawn without replacement with `seed`, in row order (the
/// detectors fit on such a sample of large tables).
pub fn sample_rows(z: &Array2<f64>, max: usize, seed: u64) -> Array2<f64> {
    if z.nrows() <= max {
        return z.clone();
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5a5a_5a5a);
    let mut idx = sample(&mut rng, z.nrows(), max).into_vec();
    idx.sort_unstable();
    z.select(ndarray::Axis(0), &idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_ignores_nan_and_handles_even_counts() {
        assert_eq!(median(&[3.0, f64::NAN, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN]), None);
    }

    #[test]
    fn robust_scale_resists_outliers_and_constant_columns() {
        let mut v = vec![10.0; 50];
        v.extend([11.0, 9.0, 10.5, 9.5]);
        v.push(1.0e6);
        let s = RobustScale::fit(&v, 0.1).unwrap();
        assert_eq!(s.center, 10.0);
        assert!(s.z(1.0e6) > 1.0e5, "the outlier stands out");
        let constant = RobustScale::fit(&[0.0; 20], 0.5).unwrap();
        assert_eq!(constant.scale, 0.5, "floor applies to a constant column");
        assert_eq!(constant.z(1.0), 2.0);
    }
}
