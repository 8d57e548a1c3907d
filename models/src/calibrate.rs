//! Calibration of raw detector scores against the training distribution.
//!
//! A detector's raw scores have no common unit (a squared distance, a negative
//! log-likelihood, a path length). [`Calibration`] turns a raw score into its **surprise**
//! `u = −ln(1 − F(s))`, where `F` is the training distribution of the raw score: below the
//! tail threshold (the training [`BODY_LO`] quantile) `F` is the interpolated empirical CDF;
//! above it the tail is exponential, its scale fitted on the quantiles [`BODY_LO`] and
//! [`BODY_HI`] (as in [`TailFit`]), so scores beyond anything seen in training keep their
//! order instead of all becoming "100 %". Under the training distribution `u` is Exp(1) in
//! the body whatever the detector, which is what lets the ensemble average them (a geometric
//! mean of tail probabilities — a combination of ranks).
//!
//! Why the tail is fitted on the body and not read off the top rows: the training rows hold
//! the anomalies the rules missed, and they are the top rows. An empirical CDF up to the
//! 99th percentile (format 1) gave the training table's top 1 % a surprise of 4.6 whatever
//! they were — a fixed budget at the detector level that no threshold on the ensemble could
//! undo; a mean excess over it is made by the anomalies themselves and squeezes them
//! together.
//!
//! [`TailFit`] turns the **ensemble** score into a tail probability for flagging at a target
//! false-alarm rate (see its doc for the statistics).
//!
//! Invariants: `surprise` is monotone non-decreasing in the raw score and finite for finite
//! input; `percentile` is in [0, 1]; `TailFit::tail_probability` is non-increasing in the
//! score, in (0, 1], and `tail_probability(threshold(α)) = α` for α below the body.

use serde::{Deserialize, Serialize};

/// Knots kept for the empirical CDF.
const KNOTS: usize = 201;
/// Tail threshold as a training quantile (the empirical CDF below, the fitted tail above).
const TAIL_Q: f64 = BODY_LO;

/// Empirical distribution of a training score, compressed to quantile knots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Scores at the quantiles `i / (knots − 1) × TAIL_Q`, non-decreasing.
    pub knots: Vec<f64>,
    /// Scale of the exponential tail beyond the last knot:
    /// `(Q(BODY_HI) − Q(BODY_LO)) / ln((1 − BODY_LO) / (1 − BODY_HI))`.
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
        let upper = quantile_sorted(&v, BODY_HI);
        let spread = quantile_sorted(&v, 0.75) - quantile_sorted(&v, 0.25);
        let floor = (1e-9 * threshold.abs()).max(1e-12).max(0.01 * spread);
        let tail_scale =
            ((upper - threshold) / ((1.0 - BODY_LO) / (1.0 - BODY_HI)).ln()).max(floor);
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

/// Lower quantile of the band the ensemble tail is fitted on.
pub const BODY_LO: f64 = 0.75;
/// Upper quantile of the band the ensemble tail is fitted on.
pub const BODY_HI: f64 = 0.97;

/// The upper tail of the ensemble score on clean data: an exponential fitted to the **body**
/// of the training distribution and extrapolated, so that flags follow a target false-alarm
/// rate instead of a fixed share of the rows.
///
/// Statistics. Let `Q` be the empirical quantile function of the training ensemble scores,
/// `t₀ = Q(BODY_LO)` and `t₁ = Q(BODY_HI)`. Each detector's surprise is Exp(1) on the
/// training rows, and a mean of (dependent) Exp(1) variables has a tail between a Gamma's
/// and an exponential's: an exponential tail is the honest — at worst slightly conservative —
/// shape beyond `t₀`. Its scale comes from two quantiles, not from the mean excess:
/// `σ = (t₁ − t₀) / ln((1 − BODY_LO) / (1 − BODY_HI))`, and
/// `P(S > s) = (1 − BODY_LO) · exp(−(s − t₀) / σ)` for `s > t₀` (the empirical tail below).
/// The threshold of a false-alarm rate α is `t(α) = t₀ + σ · ln((1 − BODY_LO) / α)`.
///
/// Why the body: the training rows still hold the anomalies the rules missed. They sit in
/// the top of the distribution; an empirical quantile at 1 − α would flag α of the rows
/// whatever their number (a fixed budget), and a mean excess over a high quantile is made
/// by them. The quantiles at 0.75 and 0.97 move little under a contamination c of a few per
/// cent (the 0.97 quantile becomes the clean 0.97 / (1 − c) quantile; c = 1 % widens σ by
/// ≈ 7 %), so a province with more anomalies gets more flags, and a clean one ≈ α.
///
/// What it does not promise: a clean tail heavier than exponential beyond 0.97 (a feature
/// with rare, large, harmless departures) is under-estimated and gives more than α flags;
/// [`TailFit::training_exceedance`] records the share of training rows beyond `t(α)` so an
/// operator can compare the realised rate with the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TailFit {
    /// Training ensemble scores at the quantiles 0, 0.005, …, `BODY_LO` (the empirical body).
    pub body: Vec<f64>,
    /// `t₀ = Q(BODY_LO)`.
    pub t0: f64,
    /// `t₁ = Q(BODY_HI)`.
    pub t1: f64,
    /// Exponential tail scale σ.
    pub scale: f64,
    /// Training rows (for the record).
    pub rows: usize,
    /// Training ensemble scores above t(α) for α = 0.01, 0.001, 0.0001: the realised rates.
    pub training_exceedance: Vec<(f64, f64)>,
}

/// Knots of [`TailFit::body`].
const BODY_KNOTS: usize = 151;

impl TailFit {
    /// Fits on the training ensemble scores (non-finite ones are ignored).
    pub fn fit(scores: &[f64]) -> Self {
        let mut v: Vec<f64> = scores.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let body: Vec<f64> = (0..BODY_KNOTS)
            .map(|i| quantile_sorted(&v, BODY_LO * i as f64 / (BODY_KNOTS - 1) as f64))
            .collect();
        let t0 = quantile_sorted(&v, BODY_LO);
        let t1 = quantile_sorted(&v, BODY_HI);
        let spread = quantile_sorted(&v, 0.75) - quantile_sorted(&v, 0.25);
        let floor = (1e-9 * t0.abs()).max(1e-9).max(0.01 * spread);
        let scale = ((t1 - t0) / ((1.0 - BODY_LO) / (1.0 - BODY_HI)).ln()).max(floor);
        let mut fit = Self {
            body,
            t0,
            t1,
            scale,
            rows: v.len(),
            training_exceedance: Vec::new(),
        };
        fit.training_exceedance = [0.01, 0.001, 0.0001]
            .into_iter()
            .map(|a| {
                let t = fit.threshold(a);
                let above = v.len() - v.partition_point(|&s| s <= t);
                (a, above as f64 / v.len().max(1) as f64)
            })
            .collect();
        fit
    }

    /// Estimated probability that a clean row scores above `s` (1 at or below the minimum).
    pub fn tail_probability(&self, s: f64) -> f64 {
        if s.is_nan() {
            return 1.0;
        }
        if s > self.t0 {
            return (1.0 - BODY_LO) * (-(s - self.t0) / self.scale).exp();
        }
        let k = &self.body;
        let Some(&first) = k.first() else {
            return 1.0;
        };
        if s <= first {
            return 1.0;
        }
        let i = k.partition_point(|&x| x < s).saturating_sub(1);
        let (a, b) = (k[i], k[(i + 1).min(k.len() - 1)]);
        let frac = if b > a { (s - a) / (b - a) } else { 1.0 };
        let f = (i as f64 + frac) * BODY_LO / (k.len() - 1) as f64;
        1.0 - f.min(BODY_LO)
    }

    /// Score whose estimated clean tail probability is `rate` (for rates below 1 − BODY_LO).
    pub fn threshold(&self, rate: f64) -> f64 {
        let rate = rate.clamp(f64::MIN_POSITIVE, 1.0 - BODY_LO);
        self.t0 + self.scale * ((1.0 - BODY_LO) / rate).ln()
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
    fn the_tail_fit_holds_its_rate_on_clean_scores_and_flags_more_when_contaminated() {
        use rand::{Rng, SeedableRng};
        // Exponential scores: the tail model is exact, so the realised rate is the target.
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        let clean: Vec<f64> = (0..200_000)
            .map(|_| -(1.0 - rng.r#gen::<f64>()).ln())
            .collect();
        let fit = TailFit::fit(&clean);
        let t = fit.threshold(0.001);
        let realised = clean.iter().filter(|&&s| s > t).count() as f64 / clean.len() as f64;
        assert!((realised - 0.001).abs() < 0.0003, "realised {realised}");
        assert!((fit.tail_probability(t) - 0.001).abs() < 1e-12);
        let mut last = 2.0;
        for s in [-1.0, 0.0, 0.5, 1.0, 1.386, 2.0, 5.0, 50.0] {
            let p = fit.tail_probability(s);
            assert!(p <= last && p > 0.0 && p <= 1.0, "{s}: {p}");
            last = p;
        }
        // 1 % of far anomalies: a fixed budget would flag 0.1 %; the fit flags them all.
        let mut dirty = clean[..100_000].to_vec();
        dirty.extend((0..1000).map(|i| 12.0 + f64::from(i) / 100.0));
        let fit = TailFit::fit(&dirty);
        let t = fit.threshold(0.001);
        let flagged = dirty.iter().filter(|&&s| s > t).count();
        assert!(flagged >= 1000, "{flagged} flagged");
        assert!(flagged <= 1000 + 200, "{flagged} flagged");
    }

    #[test]
    fn constant_scores_calibrate_without_dividing_by_zero() {
        let c = Calibration::fit(&[2.0; 50]);
        assert_eq!(c.surprise(2.0), 0.0);
        assert!(c.surprise(3.0).is_finite() && c.surprise(3.0) > 4.0);
    }
}
