//! The anomaly model: standardisation, an ensemble of calibrated detectors, explanations,
//! and the serialisable artifact.
//!
//! Fitting standardises every column (see [`crate::scale`]), fits each requested detector
//! family on the standardised rows, and calibrates each detector's raw score against its own
//! training distribution (see [`crate::calibrate`]). Training tables hold some of the
//! anomalies being looked for, so the fit is done twice: the rows the first ensemble puts in
//! its top [`FitOptions::trim`] share are left out of the second fit (they would otherwise
//! widen what "normal" looks like, or become a cluster or a principal direction of their
//! own); the isolation forest keeps every row, since isolating them early is how it works.
//! Calibration then uses every training row. The **ensemble
//! score** of a row is the mean of the detectors' surprises `−ln(1 − Fₖ(sₖ))` — a combination
//! of their ranks in the training data that no single unit dominates. Its **tail
//! probability** is the estimated share of clean rows scoring higher: the empirical training
//! distribution in the body, an exponential tail fitted on the body and extrapolated beyond
//! its 75th percentile ([`TailFit`]); its **percentile** is `1 − tail probability`. Flagging
//! at a target false-alarm rate α is `tail probability ≤ α` ([`Model::threshold`] gives the
//! score). A detector that cannot
//! be fitted on a table (too few rows for a mixture, say) is skipped and recorded in the
//! artifact with the reason; the model fails only when none fits.
//!
//! Explanations: each detector splits its score into non-negative per-feature contributions;
//! those are normalised per detector, weighted by the detector's surprise for the row and
//! summed. A feature whose own value is ordinary (robust |z| below [`ORDINARY_Z`]) keeps only
//! a fraction `(|z| / ORDINARY_Z)²` of its part: a reason must point at a value a person can
//! see is unusual, not at a partner of it. The result is each feature's share of the anomaly
//! (shares sum to 1).
//!
//! Artifact format 2 (this build) adds the scale floors and the tail fit; an artifact of
//! format 1 is refused with a message saying to retrain (its percentiles were ranks among
//! the training rows, which cannot be turned into tail probabilities after the fact).
//!
//! Invariants: fitting is deterministic for a seed; scoring allocates nothing per row for
//! widths up to 64; a [`Model`] round-trips through serde unchanged.

use std::collections::BTreeMap;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::calibrate::{Calibration, ScoreDistribution, TailFit};
use crate::detectors::{AnyDetector, Detector, Family};
use crate::error::{ModelError, Result};
use crate::scale::Standardiser;

/// Artifact format this build writes and reads (2: scale floors and the ensemble tail fit).
pub const FORMAT: u32 = 2;

/// Below this robust |z| a feature's own value counts as ordinary in explanations.
pub const ORDINARY_Z: f64 = 2.0;

/// Fewest rows a model is fitted on.
pub const MIN_ROWS: usize = 8;

/// Rows [`Model::score_matrix`] standardises and scores at a time (their standardised
/// values, 8 KiB per feature, stay in L2).
pub const SCORE_CHUNK: usize = 1024;

/// The families used when none are named: chosen by measurement (see BENCHMARKS.md).
pub const DEFAULT_FAMILIES: &[Family] = &[Family::Mahalanobis, Family::Iforest];

/// How to fit.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Detector families of the ensemble.
    pub families: Vec<Family>,
    /// Seed of every random choice.
    pub seed: u64,
    /// Model version recorded in the artifact.
    pub version: String,
    /// Training time recorded in the artifact (RFC 3339; the caller's clock).
    pub trained_at: String,
    /// Data window recorded in the artifact (free text, e.g. "2026-09-29..2026-10-30").
    pub data_window: Option<String>,
    /// Share of training rows (the most anomalous) left out of the second fit.
    pub trim: f64,
    /// Smallest scale of named columns, in their own unit (see [`crate::scale`]).
    pub floors: BTreeMap<String, f64>,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            families: DEFAULT_FAMILIES.to_vec(),
            seed: 1,
            version: format!("pharmwatch-models {}", env!("CARGO_PKG_VERSION")),
            trained_at: String::new(),
            data_window: None,
            trim: 0.05,
            floors: BTreeMap::new(),
        }
    }
}

/// A fitted detector with its calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedDetector {
    /// The detector.
    pub detector: AnyDetector,
    /// Its training score distribution.
    pub calibration: Calibration,
}

/// A family that could not be fitted, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedDetector {
    /// Family.
    pub family: Family,
    /// Reason.
    pub reason: String,
}

/// A fitted anomaly model (the artifact).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Artifact format ([`FORMAT`]).
    pub format: u32,
    /// Model version.
    pub version: String,
    /// When it was trained.
    pub trained_at: String,
    /// Data window it was trained on.
    pub data_window: Option<String>,
    /// Seed.
    pub seed: u64,
    /// Feature names, in input column order.
    pub features: Vec<String>,
    /// Scaling of every feature.
    pub scaling: Standardiser,
    /// Indices of the features the detectors see (non-constant ones).
    pub active: Vec<usize>,
    /// Training rows.
    pub training_rows: usize,
    /// Detectors of the ensemble.
    pub detectors: Vec<FittedDetector>,
    /// Families that could not be fitted.
    pub skipped: Vec<SkippedDetector>,
    /// Training distribution of the ensemble score.
    pub score_distribution: ScoreDistribution,
    /// The ensemble score's clean tail, for tail probabilities and flag thresholds.
    pub tail: TailFit,
}

/// Score of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Ensemble score (mean surprise; higher = more anomalous; ≈ 1 is ordinary).
    pub score: f64,
    /// Calibrated percentile, `1 − tail_probability` (0 … 1).
    pub percentile: f64,
    /// Estimated share of clean rows scoring higher ([`TailFit::tail_probability`]).
    pub tail_probability: f64,
}

/// One feature's part in a row's anomaly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contribution {
    /// Feature index in input column order.
    pub index: usize,
    /// Feature name.
    pub feature: String,
    /// The row's value.
    pub value: f64,
    /// Training median.
    pub typical: f64,
    /// Robust z-score of the value (uncompressed).
    pub z: f64,
    /// Share of the anomaly (0 … 1; shares of a row sum to 1).
    pub share: f64,
}

impl Contribution {
    /// A plain reason for any table: `name = value (typical t, robust z +k.k)`.
    pub fn plain_reason(&self) -> String {
        format!(
            "{} = {} (typical {}, robust z {:+.1})",
            self.feature,
            short(self.value),
            short(self.typical),
            self.z
        )
    }
}

/// A number in at most 4 significant digits, without trailing zeros.
pub fn short(x: f64) -> String {
    if !x.is_finite() {
        return "missing".to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let mag = x.abs().log10().floor() as i32;
    let decimals = (3 - mag).clamp(0, 6) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

impl Model {
    /// Fits on a row-major matrix whose columns are `names`.
    pub fn fit(names: &[String], rows: &[f64], opts: &FitOptions) -> Result<Self> {
        let d = names.len();
        if d == 0 {
            return Err(ModelError::NoFeatures(
                "the table has no feature columns".into(),
            ));
        }
        if !rows.len().is_multiple_of(d) {
            return Err(ModelError::Width {
                expected: d,
                got: rows.len() % d,
            });
        }
        let n = rows.len() / d;
        if n == 0 {
            return Err(ModelError::EmptyTable);
        }
        if n < MIN_ROWS {
            return Err(ModelError::TooFewRows {
                rows: n,
                min: MIN_ROWS,
            });
        }
        let scaling = Standardiser::fit_with_floors(names, rows, &opts.floors);
        let active = scaling.active();
        if active.is_empty() {
            return Err(ModelError::NoFeatures(format!(
                "every column is constant or missing ({})",
                names.join(", ")
            )));
        }
        let a = active.len();
        let mut z = Array2::<f64>::zeros((n, a));
        for (i, row) in rows.chunks_exact(d).enumerate() {
            for (k, &j) in active.iter().enumerate() {
                z[[i, k]] = scaling.columns[j].transform(row[j]);
            }
        }
        let mut families = opts.families.clone();
        families.sort();
        families.dedup();
        let flat: Vec<f64> = z.iter().copied().collect();
        let (mut fitted, mut skipped) = fit_detectors(&families, None, &z, &flat, opts.seed);
        if opts.trim > 0.0 && !fitted.is_empty() {
            // Second fit without the first fit's most anomalous rows.
            let first = ensemble_of(&fitted, n);
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| first[b].total_cmp(&first[a]).then(a.cmp(&b)));
            let cut = ((n as f64) * opts.trim.min(0.5)) as usize;
            if cut > 0 && n - cut >= MIN_ROWS {
                let mut keep: Vec<usize> = order[cut..].to_vec();
                keep.sort_unstable();
                let fit_rows = z.select(ndarray::Axis(0), &keep);
                let refit: Vec<Family> = families
                    .iter()
                    .copied()
                    .filter(|f| *f != Family::Iforest)
                    .collect();
                let (again, skipped_again) =
                    fit_detectors(&refit, Some(&fit_rows), &z, &flat, opts.seed);
                // The forest keeps its first fit (it is always fitted on every row).
                fitted.retain(|f| matches!(f.0.detector, AnyDetector::Iforest(_)));
                fitted.extend(again);
                fitted.sort_by_key(|f| f.0.detector.name());
                skipped.retain(|s| s.family == Family::Iforest);
                skipped.extend(skipped_again);
            }
        }
        if fitted.is_empty() {
            let why: Vec<String> = skipped
                .iter()
                .map(|s| format!("{}: {}", s.family.as_str(), s.reason))
                .collect();
            return Err(ModelError::Fit {
                detector: "ensemble",
                reason: format!("no detector could be fitted ({})", why.join("; ")),
            });
        }
        let train = ensemble_of(&fitted, n);
        Ok(Self {
            format: FORMAT,
            version: opts.version.clone(),
            trained_at: opts.trained_at.clone(),
            data_window: opts.data_window.clone(),
            seed: opts.seed,
            features: names.to_vec(),
            scaling,
            active,
            training_rows: n,
            detectors: fitted.into_iter().map(|f| f.0).collect(),
            skipped,
            score_distribution: ScoreDistribution::fit(&train),
            tail: TailFit::fit(&train),
        })
    }

    /// Checks the artifact's format.
    pub fn check_format(&self) -> Result<()> {
        if self.format != FORMAT {
            return Err(ModelError::Format {
                found: self.format,
                supported: FORMAT,
            });
        }
        Ok(())
    }

    /// The ensemble score whose estimated clean tail probability is `rate`: rows scoring
    /// above it are flagged at a false-alarm rate of `rate`.
    pub fn threshold(&self, rate: f64) -> f64 {
        self.tail.threshold(rate)
    }

    /// The verdict of an ensemble score.
    #[inline]
    pub fn scored(&self, score: f64) -> Scored {
        let tail_probability = self.tail.tail_probability(score);
        Scored {
            score,
            percentile: 1.0 - tail_probability,
            tail_probability,
        }
    }

    /// Ensemble score of an already standardised active vector.
    #[inline]
    fn ensemble(&self, za: &[f64]) -> f64 {
        let mut u = 0.0;
        for d in &self.detectors {
            u += d.calibration.surprise(d.detector.score(za));
        }
        u / self.detectors.len() as f64
    }

    #[inline]
    fn standardise(&self, row: &[f64], za: &mut [f64]) {
        for (o, &j) in za.iter_mut().zip(&self.active) {
            *o = self.scaling.columns[j].transform(row[j]);
        }
    }

    /// Scores one row (all `features.len()` columns, input order).
    #[inline]
    pub fn score_row(&self, row: &[f64]) -> Scored {
        let score = crate::detectors::with_scratch(self.active.len(), |za| {
            self.standardise(row, za);
            self.ensemble(za)
        });
        self.scored(score)
    }

    /// Scores a row-major matrix of `features.len()` columns: the fast path for many rows,
    /// with the same results as [`Model::score_row`]. Rows go through in chunks of
    /// [`SCORE_CHUNK`], each standardised and then scored detector by detector, so that the
    /// working set stays in cache whatever the table's size.
    pub fn score_matrix(&self, rows: &[f64]) -> Result<Vec<Scored>> {
        let d = self.features.len();
        if !rows.len().is_multiple_of(d) {
            return Err(ModelError::Width {
                expected: d,
                got: rows.len() % d,
            });
        }
        let d = d.max(1);
        let a = self.active.len().max(1);
        let k = self.detectors.len().max(1) as f64;
        let mut out = Vec::with_capacity(rows.len() / d);
        let mut za = vec![0.0; SCORE_CHUNK * a];
        let mut total = vec![0.0; SCORE_CHUNK];
        let mut raw = vec![0.0; SCORE_CHUNK];
        for chunk in rows.chunks(SCORE_CHUNK * d) {
            let n = chunk.len() / d;
            let za = &mut za[..n * a];
            for (r, o) in chunk.chunks_exact(d).zip(za.chunks_exact_mut(a)) {
                self.standardise(r, o);
            }
            let (total, raw) = (&mut total[..n], &mut raw[..n]);
            total.fill(0.0);
            for det in &self.detectors {
                det.detector.score_batch(za, a, raw);
                for (t, s) in total.iter_mut().zip(raw.iter()) {
                    *t += det.calibration.surprise(*s);
                }
            }
            out.extend(total.iter().map(|t| self.scored(t / k)));
        }
        Ok(out)
    }

    /// Each feature's share of the row's anomaly, largest first (zero shares left out).
    pub fn explain(&self, row: &[f64]) -> Vec<Contribution> {
        let a = self.active.len();
        let mut za = vec![0.0; a];
        self.standardise(row, &mut za);
        let mut total = vec![0.0; a];
        let mut part = vec![0.0; a];
        for d in &self.detectors {
            let weight = d.calibration.surprise(d.detector.score(&za));
            d.detector.contributions(&za, &mut part);
            let sum: f64 = part.iter().sum();
            if sum > 0.0 && sum.is_finite() && weight > 0.0 {
                for (t, p) in total.iter_mut().zip(&part) {
                    *t += weight * p / sum;
                }
            }
        }
        for (k, t) in total.iter_mut().enumerate() {
            let z = self.scaling.columns[self.active[k]].raw_z(row[self.active[k]]);
            let z = if z.is_finite() { z.abs() } else { 0.0 };
            if z < ORDINARY_Z {
                *t *= (z / ORDINARY_Z).powi(2);
            }
        }
        let sum: f64 = total.iter().sum();
        let mut out: Vec<Contribution> = total
            .iter()
            .enumerate()
            .filter(|(_, t)| **t > 0.0 && sum > 0.0)
            .map(|(k, t)| {
                let j = self.active[k];
                let col = &self.scaling.columns[j];
                Contribution {
                    index: j,
                    feature: self.features[j].clone(),
                    value: row[j],
                    typical: col.center,
                    z: col.raw_z(row[j]),
                    share: t / sum,
                }
            })
            .collect();
        out.sort_by(|x, y| y.share.total_cmp(&x.share).then(x.index.cmp(&y.index)));
        out
    }

    /// Names of the detectors in the ensemble.
    pub fn detector_names(&self) -> Vec<&'static str> {
        self.detectors.iter().map(|d| d.detector.name()).collect()
    }
}

/// A fitted detector with its raw scores on every training row.
type WithScores = (FittedDetector, Vec<f64>);

/// Ensemble score (mean surprise) of every training row from the detectors' raw scores.
fn ensemble_of(fitted: &[WithScores], n: usize) -> Vec<f64> {
    let k = fitted.len().max(1) as f64;
    (0..n)
        .map(|i| {
            fitted
                .iter()
                .map(|(f, raw)| f.calibration.surprise(raw[i]))
                .sum::<f64>()
                / k
        })
        .collect()
}

/// Fits `families` on `trimmed` rows (all rows when `None`) and calibrates each on all rows
/// (`flat` is `all` row-major); returns each detector with its raw scores on all rows.
fn fit_detectors(
    families: &[Family],
    trimmed: Option<&Array2<f64>>,
    all: &Array2<f64>,
    flat: &[f64],
    seed: u64,
) -> (Vec<WithScores>, Vec<SkippedDetector>) {
    let mut detectors = Vec::new();
    let mut skipped = Vec::new();
    for fam in families {
        // Each family draws from its own stream of the seed.
        let k = Family::ALL.iter().position(|f| f == fam).unwrap_or(0) as u64;
        match fam.fit(trimmed.unwrap_or(all), seed.wrapping_add(k)) {
            Ok(det) => {
                let mut raw = vec![0.0; all.nrows()];
                det.score_batch(flat, all.ncols(), &mut raw);
                detectors.push((
                    FittedDetector {
                        calibration: Calibration::fit(&raw),
                        detector: det,
                    },
                    raw,
                ));
            }
            Err(e) => skipped.push(SkippedDetector {
                family: *fam,
                reason: e.to_string(),
            }),
        }
    }
    (detectors, skipped)
}

/// Models per segment (e.g. per enterprise type), the form written to disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSet {
    /// Artifact format ([`FORMAT`]).
    pub format: u32,
    /// Column that selects the segment, if the table is segmented.
    pub segment_column: Option<String>,
    /// Model per segment (a single unsegmented model is under `all`).
    pub segments: BTreeMap<String, Model>,
}

/// Segment name of an unsegmented model.
pub const ALL: &str = "all";

impl ModelSet {
    /// A set of one unsegmented model.
    pub fn single(model: Model) -> Self {
        Self {
            format: FORMAT,
            segment_column: None,
            segments: BTreeMap::from([(ALL.to_string(), model)]),
        }
    }

    /// Checks the formats.
    pub fn check_format(&self) -> Result<()> {
        if self.format != FORMAT {
            return Err(ModelError::Format {
                found: self.format,
                supported: FORMAT,
            });
        }
        self.segments.values().try_for_each(Model::check_format)
    }

    /// The model of a segment (the unsegmented model for any segment when unsegmented).
    pub fn model(&self, segment: &str) -> Result<&Model> {
        let key = if self.segment_column.is_none() {
            ALL
        } else {
            segment
        };
        self.segments
            .get(key)
            .ok_or_else(|| ModelError::UnknownSegment {
                segment: segment.to_string(),
                known: self.segments.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Feature names (of the first model; every segment has the same features).
    pub fn features(&self) -> &[String] {
        self.segments
            .values()
            .next()
            .map(|m| m.features.as_slice())
            .unwrap_or(&[])
    }
}
