//! Robust standardisation of feature columns.
//!
//! Each column is centred on its median and divided by a robust scale. The estimate falls
//! back step by step so that no column divides by zero: 1.4826 × MAD, then IQR / 1.349 (for
//! columns that are mostly one value, such as zero-inflated counts), then 1.2533 × the mean
//! absolute deviation from the median, then the standard deviation.
//!
//! **The scale floor.** The scale is never below the column's floor: a feature's smallest
//! meaningful difference. The caller may name one per column (`floors`, e.g. 2 packages for
//! a stock gap, where a stocktake miscount of a package or two is routine); otherwise a
//! column that is at least half one value (MAD and IQR both zero: constant, or zero-inflated)
//! gets a floor from its resolution — 1 when every training value is an integer (a count:
//! one unit is the smallest step), else the median size of its departures from the median
//! (a departure of the usual size is then one unit), else 10 % of |median| (a constant
//! non-integer column). Where the floor decides, `method` says `floor` (`constant` when the
//! column had no spread at all). Without a floor a column that is constant in training would
//! make any other value an extreme (one missing package ≈ 100 robust units), a false alarm on
//! the first real stocktake.
//!
//! A constant column stays in the model: it maps its training value to 0, and any other value
//! to its distance in floor units. Only a table whose every column is constant cannot be
//! modelled ([`Standardiser::active`] is then empty).
//!
//! Invariants: the scale is finite and positive; NaN and ±∞ map to 0 (the median — "no
//! evidence"), never into a score; the transform is monotone per column; values beyond
//! ±[`SOFT_CLIP`] are compressed logarithmically (heavy tails keep their order but cannot
//! dominate the fitted geometry).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::median;

/// Beyond this many robust units a value is compressed: `c + ln(1 + |z| − c)`.
pub const SOFT_CLIP: f64 = 4.0;

/// Floor of a constant non-integer column with no caller floor, relative to |median|.
pub const CONSTANT_RELATIVE_FLOOR: f64 = 0.1;

/// Location and scale of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnScale {
    /// Column name.
    pub name: String,
    /// Median of the finite training values.
    pub center: f64,
    /// Robust scale: the estimate, raised to the floor.
    pub scale: f64,
    /// Which value gave the scale: `mad`, `iqr`, `meanad`, `std`, `floor` (the floor was
    /// larger than the estimate) or `constant` (no spread at all: the floor).
    pub method: String,
    /// The floor the scale was held to (0 when none applied).
    pub floor: f64,
    /// Share of training values that were missing or not finite.
    pub missing_share: f64,
    /// 5th and 95th percentiles of the finite training values (for explanations).
    pub p05: f64,
    /// 95th percentile.
    pub p95: f64,
}

/// The floor of a column without a caller floor: none when the column has a spread of its
/// own (MAD or IQR), else its resolution (see the module doc). `v` is sorted and finite.
fn resolution_floor(v: &[f64], center: f64) -> f64 {
    if v.iter().all(|x| x.fract() == 0.0) {
        return 1.0;
    }
    let departures: Vec<f64> = v
        .iter()
        .map(|x| (x - center).abs())
        .filter(|d| *d > 0.0)
        .collect();
    let mut sorted = departures;
    sorted.sort_by(f64::total_cmp);
    match median(&sorted) {
        Some(m) if m > 0.0 => m,
        _ => CONSTANT_RELATIVE_FLOOR * center.abs().max(f64::MIN_POSITIVE),
    }
}

impl ColumnScale {
    /// Fits on one column's values, with the resolution floor where the column needs one.
    pub fn fit(name: &str, values: &[f64]) -> Self {
        Self::fit_with_floor(name, values, None)
    }

    /// Fits on one column's values; `floor` (when positive) is the smallest scale allowed,
    /// in the column's own unit.
    pub fn fit_with_floor(name: &str, values: &[f64], floor: Option<f64>) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        let missing_share = if values.is_empty() {
            0.0
        } else {
            1.0 - v.len() as f64 / values.len() as f64
        };
        v.sort_by(f64::total_cmp);
        let center = median(&v).unwrap_or(0.0);
        let q = |p: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            let pos = p * (v.len() - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
        };
        let dev: Vec<f64> = v.iter().map(|x| (x - center).abs()).collect();
        let mad = median(&dev).unwrap_or(0.0) * 1.4826;
        let iqr = (q(0.75) - q(0.25)) / 1.349;
        let n = v.len().max(1) as f64;
        let meanad = dev.iter().sum::<f64>() / n * 1.2533;
        let mean = v.iter().sum::<f64>() / n;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        let tiny = 1e-12 * center.abs().max(1e-300);
        let estimate = [(mad, "mad"), (iqr, "iqr"), (meanad, "meanad"), (std, "std")]
            .into_iter()
            .find(|(s, _)| s.is_finite() && *s > tiny);
        let degenerate = !(mad > tiny || iqr > tiny);
        let floor = match floor.filter(|f| f.is_finite() && *f > 0.0) {
            Some(f) => f,
            None if degenerate => resolution_floor(&v, center),
            None => 0.0,
        };
        let (scale, method) = match estimate {
            Some((s, m)) if s >= floor => (s, m),
            Some(_) => (floor, "floor"),
            None => (floor, "constant"),
        };
        Self {
            name: name.to_string(),
            center,
            scale,
            method: method.to_string(),
            floor,
            missing_share,
            p05: q(0.05),
            p95: q(0.95),
        }
    }

    /// Whether the column was constant in training.
    pub fn is_constant(&self) -> bool {
        self.method == "constant"
    }

    /// Robust z-score, before compression (NaN for a missing value).
    pub fn raw_z(&self, x: f64) -> f64 {
        (x - self.center) / self.scale
    }

    /// Standardised value: robust z, missing → 0, tails compressed beyond [`SOFT_CLIP`].
    #[inline]
    pub fn transform(&self, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        soft_clip((x - self.center) / self.scale)
    }
}

/// Logarithmic compression beyond ±[`SOFT_CLIP`] (monotone, identity inside).
#[inline]
pub fn soft_clip(z: f64) -> f64 {
    let a = z.abs();
    if a <= SOFT_CLIP {
        z
    } else {
        (SOFT_CLIP + (a - SOFT_CLIP).ln_1p()).copysign(z)
    }
}

/// Standardisation of every column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardiser {
    /// One scale per column, in column order.
    pub columns: Vec<ColumnScale>,
}

impl Standardiser {
    /// Fits on a row-major matrix of `names.len()` columns, with the resolution floor only.
    pub fn fit(names: &[String], rows: &[f64]) -> Self {
        Self::fit_with_floors(names, rows, &BTreeMap::new())
    }

    /// Fits on a row-major matrix of `names.len()` columns; `floors` names the smallest
    /// scale of some columns (see the module doc).
    pub fn fit_with_floors(names: &[String], rows: &[f64], floors: &BTreeMap<String, f64>) -> Self {
        let d = names.len();
        let n = rows.len().checked_div(d).unwrap_or(0);
        let mut col = vec![0.0; n];
        let columns = names
            .iter()
            .enumerate()
            .map(|(j, name)| {
                for i in 0..n {
                    col[i] = rows[i * d + j];
                }
                ColumnScale::fit_with_floor(name, &col, floors.get(name).copied())
            })
            .collect();
        Self { columns }
    }

    /// Standardises one row into `out`.
    #[inline]
    pub fn transform_row(&self, row: &[f64], out: &mut [f64]) {
        for ((o, x), c) in out.iter_mut().zip(row).zip(&self.columns) {
            *o = c.transform(*x);
        }
    }

    /// Standardises a row-major matrix.
    pub fn transform(&self, rows: &[f64]) -> Vec<f64> {
        let d = self.columns.len().max(1);
        let mut out = vec![0.0; rows.len()];
        for (r, o) in rows.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            self.transform_row(r, o);
        }
        out
    }

    /// Indices of the columns the detectors see: all, unless every column is constant
    /// (then none — such a table cannot be modelled).
    pub fn active(&self) -> Vec<usize> {
        if self.columns.iter().all(ColumnScale::is_constant) {
            return Vec::new();
        }
        (0..self.columns.len()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_falls_back_for_zero_inflated_and_constant_columns() {
        let mut zero_inflated = vec![0.0; 90];
        zero_inflated.extend((1..=10).map(f64::from));
        let s = ColumnScale::fit("z", &zero_inflated);
        assert_eq!(s.center, 0.0);
        assert!(s.scale > 0.0, "zero-inflated column still has a scale");
        assert_ne!(s.method, "mad");
        let c = ColumnScale::fit("c", &[3.0; 40]);
        assert!(c.is_constant());
        assert_eq!(c.transform(3.0), 0.0, "the constant value is typical");
        assert_eq!(c.scale, 1.0, "a constant count keeps a scale of one unit");
        assert!(
            (c.transform(4.0) - 1.0).abs() < 1e-12,
            "one unit more is z = 1"
        );
        let zero = ColumnScale::fit("g", &[0.0; 40]);
        assert!(
            (zero.raw_z(1.0) - 1.0).abs() < 1e-9,
            "one package off is z = 1"
        );
        let level = ColumnScale::fit("l", &[2.5; 40]);
        assert!(
            (level.scale - 0.25).abs() < 1e-12,
            "10 % of a non-integer constant"
        );
    }

    #[test]
    fn a_rare_small_departure_is_not_an_extreme() {
        // 199 enterprise-days without a stock gap and one with a single package: the mean
        // absolute deviation alone would give a scale of 0.006 (z ≈ 160 for one package).
        let mut gaps = vec![0.0; 199];
        gaps.push(1.0);
        let s = ColumnScale::fit("stock_gap_units", &gaps);
        assert_eq!(s.method, "floor");
        assert!(s.raw_z(1.0) <= 1.0 + 1e-12);
        // A caller floor wins over the resolution, and never lowers a real spread.
        let s = ColumnScale::fit_with_floor("stock_gap_units", &gaps, Some(2.0));
        assert!((s.raw_z(1.0) - 0.5).abs() < 1e-12);
        let wide: Vec<f64> = (0..100).map(f64::from).collect();
        let w = ColumnScale::fit_with_floor("w", &wide, Some(2.0));
        assert_eq!(w.method, "mad");
        assert!(w.scale > 30.0);
        // Non-integer zero-inflated column: the usual departure is one unit.
        let mut shares = vec![0.0; 95];
        shares.extend([0.02, 0.04, 0.04, 0.06, 0.5]);
        let s = ColumnScale::fit("low_price_share", &shares);
        assert!((s.scale - 0.04).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn missing_values_map_to_the_centre_and_tails_are_compressed() {
        let v: Vec<f64> = (0..100)
            .map(f64::from)
            .chain([f64::NAN, f64::INFINITY])
            .collect();
        let s = ColumnScale::fit("x", &v);
        assert!((s.missing_share - 2.0 / 102.0).abs() < 1e-12);
        assert_eq!(s.transform(f64::NAN), 0.0);
        let far = s.transform(1e12);
        assert!(far > SOFT_CLIP && far < 40.0, "compressed: {far}");
        assert!(s.transform(1e12) > s.transform(1e6), "order kept");
        assert!((soft_clip(-1e6) + soft_clip(1e6)).abs() < 1e-12);
    }
}
