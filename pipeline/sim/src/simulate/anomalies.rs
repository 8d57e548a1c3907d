//! The anomalies the simulator plants, one per risk signal, and the labels that describe them.
//!
//! Each planted anomaly targets one enterprise (and a product where the signal is per
//! product) over a window of days inside the anomaly period; no enterprise carries two planted
//! anomalies, so one signal never hides another. The label window is the span in which the
//! anomaly shows in the records.
//!
//! Every kind draws its **magnitude** uniformly from a range that spans obvious → invisible
//! ([`AnomalyKind::magnitude_range`]); the range is chosen from what the anomaly means in the
//! records, not from where a rule's threshold sits, so a planted anomaly may well be too small
//! for any rule to see. The magnitude is written to `labels.csv`, so evaluation can report
//! detection per magnitude band. Targets are any holding that sells enough for the anomaly to
//! show at all (a spike on a product that sells nothing is no spike), never chosen by a rule's
//! eligibility.

use chrono::{Duration, NaiveDate};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_xoshiro::Xoshiro256PlusPlus;

use pharmwatch_schemas::EnterpriseType;

use super::world::{Holding, Maker, Supplier, World};

/// Kinds of planted anomaly. The rule kinds share their names with the indicators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnomalyKind {
    /// Closing stock below the books (stock leaves without a record).
    InventoryMismatch,
    /// A product sold that was never bought or held.
    SoldNotBought,
    /// Retail sales of an ordinary product several times the usual.
    SalesSpike,
    /// One purchase several times the enterprise's largest recent order.
    PurchaseSpike,
    /// One production run several times the largest recent one.
    ProductionSpike,
    /// Ephedrine-containing or psychotropic products moving in unusual volume.
    SpecialDrugVolume,
    /// Units of an expired batch sold.
    ExpiredBatchSold,
    /// Units of a batch that failed its test (or was never released) sold.
    FailedBatchSold,
    /// A traceability code already sold elsewhere sold again.
    TraceCodeDuplicate,
    /// A product sold far below the market price.
    PriceBelowMedian,
    /// The enterprise stops reporting anything.
    ReportingStopped,
    /// Several features mildly off together: more sales, lower prices, small stock losses.
    SubtleDiversion,
}

impl AnomalyKind {
    /// Every kind.
    pub const ALL: &'static [AnomalyKind] = &[
        Self::InventoryMismatch,
        Self::SoldNotBought,
        Self::SalesSpike,
        Self::PurchaseSpike,
        Self::ProductionSpike,
        Self::SpecialDrugVolume,
        Self::ExpiredBatchSold,
        Self::FailedBatchSold,
        Self::TraceCodeDuplicate,
        Self::PriceBelowMedian,
        Self::ReportingStopped,
        Self::SubtleDiversion,
    ];

    /// Label name (the indicator name for rule kinds).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InventoryMismatch => "inventory_mismatch",
            Self::SoldNotBought => "sold_not_bought",
            Self::SalesSpike => "sales_spike",
            Self::PurchaseSpike => "purchase_spike",
            Self::ProductionSpike => "production_spike",
            Self::SpecialDrugVolume => "special_drug_volume",
            Self::ExpiredBatchSold => "expired_batch_sold",
            Self::FailedBatchSold => "failed_batch_sold",
            Self::TraceCodeDuplicate => "trace_code_duplicate",
            Self::PriceBelowMedian => "price_below_median",
            Self::ReportingStopped => "reporting_stopped",
            Self::SubtleDiversion => "subtle_diversion",
        }
    }

    /// The kind named `name` (the label name).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == name)
    }

    /// The range this kind's magnitude is drawn from. Ranges follow the anomaly, from
    /// obvious to invisible: a stock gap of 1–50 packages a day, a retail or special-drug
    /// rise of 1.5–10× the usual rate, a stockpiling order or production run of 1.5–6× the
    /// largest recent one, a price of 0.3–0.9 of the enterprise's own, 1–7 silent days, 1–5
    /// units of a planted batch or duplicated codes a day, 1–8 units a day of a product never
    /// bought, and a subtle diversion of 1.1–2.0× the sales (with prices and stock moving
    /// with it).
    pub fn magnitude_range(self) -> MagnitudeRange {
        let r = |lo: f64, hi: f64, integer: bool, unit: &'static str| MagnitudeRange {
            lo,
            hi,
            larger_is_clearer: true,
            integer,
            unit,
        };
        match self {
            Self::InventoryMismatch => r(1.0, 50.0, true, "packages missing a day"),
            Self::SoldNotBought => r(1.0, 8.0, false, "units a day"),
            Self::SalesSpike => r(1.5, 10.0, false, "× the usual daily sales"),
            Self::SpecialDrugVolume => r(1.5, 10.0, false, "× the usual daily sales"),
            Self::PurchaseSpike => r(1.5, 6.0, false, "× the largest recent order"),
            Self::ProductionSpike => r(1.5, 6.0, false, "× the largest recent run"),
            Self::ExpiredBatchSold | Self::FailedBatchSold => {
                r(1.0, 5.0, true, "units of the batch a day")
            }
            Self::TraceCodeDuplicate => r(1.0, 5.0, true, "duplicated codes a day"),
            Self::PriceBelowMedian => MagnitudeRange {
                larger_is_clearer: false,
                ..r(0.3, 0.9, false, "× the usual price")
            },
            Self::ReportingStopped => r(1.0, 7.0, true, "silent days"),
            Self::SubtleDiversion => r(1.1, 2.0, false, "× the usual sales"),
        }
    }
}

/// The range an anomaly kind's magnitude is drawn from, and what it means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MagnitudeRange {
    /// Smallest magnitude drawn.
    pub lo: f64,
    /// Largest magnitude drawn.
    pub hi: f64,
    /// Whether a larger magnitude is the more obvious anomaly (false for a price ratio).
    pub larger_is_clearer: bool,
    /// Whether magnitudes are whole numbers (packages, days, units).
    pub integer: bool,
    /// What the number is, in English.
    pub unit: &'static str,
}

impl MagnitudeRange {
    /// Draws a magnitude uniformly from the range.
    pub fn draw(&self, rng: &mut Xoshiro256PlusPlus) -> f64 {
        if self.integer {
            f64::from(rng.gen_range(self.lo as u32..=self.hi as u32))
        } else {
            self.lo + rng.r#gen::<f64>() * (self.hi - self.lo)
        }
    }

    /// Where `m` sits from invisible (0) to obvious (1): its position in the range, turned
    /// round when smaller is clearer. Clamped to [0, 1].
    pub fn clarity(&self, m: f64) -> f64 {
        if self.hi <= self.lo {
            return 1.0;
        }
        let x = ((m - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0);
        if self.larger_is_clearer { x } else { 1.0 - x }
    }

    /// The band of `m`: 0 = the least obvious third of the range, 1 = the middle third,
    /// 2 = the most obvious third.
    pub fn band(&self, m: f64) -> usize {
        ((self.clarity(m) * 3.0) as usize).min(2)
    }
}

/// One planted anomaly.
#[derive(Debug, Clone)]
pub struct Anomaly {
    /// Kind.
    pub kind: AnomalyKind,
    /// Target enterprise.
    pub ent: usize,
    /// Target holding (enterprise × product), where per product.
    pub holding: Option<usize>,
    /// Product, where per product (for sold-not-bought, a product the enterprise does not hold).
    pub prod: Option<usize>,
    /// Several holdings, for the subtle kind.
    pub holdings: Vec<usize>,
    /// First day.
    pub start: NaiveDate,
    /// Last day.
    pub end: NaiveDate,
    /// A planted batch (expired or failed), where one is used.
    pub batch: Option<usize>,
    /// Magnitude, drawn from the kind's [`MagnitudeRange`] at planning (a factor, a price
    /// ratio, packages, units or days: see [`AnomalyKind::magnitude_range`]).
    pub factor: f64,
}

impl Anomaly {
    /// Whether `day` is inside the window.
    pub fn active(&self, day: NaiveDate) -> bool {
        day >= self.start && day <= self.end
    }
}

/// Plans anomalies: `per_kind` of each kind, windows inside `[from, to]`.
pub fn plan(
    rng: &mut Xoshiro256PlusPlus,
    world: &mut World,
    per_kind: usize,
    from: NaiveDate,
    to: NaiveDate,
    is_working_day: &dyn Fn(NaiveDate) -> bool,
) -> Vec<Anomaly> {
    let mut used = vec![false; world.enterprises.len()];
    let mut out = Vec::new();
    let span = (to - from).num_days();
    if span < 0 {
        return out;
    }
    let period = Period { from, to, span };
    let retail: Vec<usize> = world
        .enterprises
        .iter()
        .filter(|e| e.etype.is_retail())
        .map(|e| e.seq)
        .collect();
    for &kind in AnomalyKind::ALL {
        for _ in 0..per_kind {
            let mut candidates = candidates(world, kind, &retail);
            candidates.retain(|(e, _)| !used[*e]);
            let Some(&(ent, holding)) = candidates.choose(rng) else {
                continue;
            };
            used[ent] = true;
            let (start, end, factor) = draw_window(rng, kind, &period, is_working_day);
            let mut anomaly = Anomaly {
                kind,
                ent,
                holding,
                prod: holding.map(|h| world.holdings[h].prod),
                holdings: Vec::new(),
                start,
                end,
                batch: None,
                factor,
            };
            if !complete(rng, world, &mut anomaly) {
                continue;
            }
            if kind == AnomalyKind::ProductionSpike
                && !matches!(
                    world.products[anomaly.prod.unwrap_or_default()].maker,
                    Maker::Inside(_)
                )
            {
                continue;
            }
            out.push(anomaly);
        }
    }
    out
}

/// The anomaly period `[from, to]`, `span` days after its first.
struct Period {
    from: NaiveDate,
    to: NaiveDate,
    span: i64,
}

impl Period {
    /// A random window of `len` days (clamped to the period) inside the period.
    fn window(&self, rng: &mut Xoshiro256PlusPlus, len: i64) -> (NaiveDate, NaiveDate) {
        let len = len.min(self.span + 1).max(1);
        let start = self.from + Duration::days(rng.gen_range(0..=(self.span + 1 - len)));
        (start, start + Duration::days(len - 1))
    }
}

/// Every holding that passes `keep`, as a candidate (its enterprise, itself).
fn holdings_where(world: &World, keep: impl Fn(&Holding) -> bool) -> Vec<(usize, Option<usize>)> {
    world
        .holdings
        .iter()
        .enumerate()
        .filter(|(_, hd)| keep(hd))
        .map(|(h, hd)| (hd.ent, Some(h)))
        .collect()
}

/// Candidate targets for an anomaly of `kind`: (enterprise, holding where per product), in
/// holding or enterprise order; `retail` lists the retail enterprises.
fn candidates(world: &World, kind: AnomalyKind, retail: &[usize]) -> Vec<(usize, Option<usize>)> {
    let etype = |hd: &Holding| world.enterprises[hd.ent].etype;
    let controlled = |hd: &Holding| world.products[hd.prod].class.is_volume_controlled();
    match kind {
        AnomalyKind::InventoryMismatch => holdings_where(world, |hd| {
            let t = etype(hd);
            (t.is_retail() || t == EnterpriseType::Wholesaler) && hd.lambda >= 0.5
        }),
        AnomalyKind::SalesSpike => holdings_where(world, |hd| {
            etype(hd).is_retail() && hd.lambda >= 1.0 && !controlled(hd)
        }),
        AnomalyKind::SpecialDrugVolume => holdings_where(world, |hd| {
            etype(hd).is_retail() && controlled(hd) && hd.lambda >= 0.2
        }),
        AnomalyKind::ExpiredBatchSold
        | AnomalyKind::FailedBatchSold
        | AnomalyKind::PriceBelowMedian
        | AnomalyKind::TraceCodeDuplicate => {
            holdings_where(world, |hd| etype(hd).is_retail() && hd.lambda >= 1.0)
        }
        AnomalyKind::SoldNotBought | AnomalyKind::SubtleDiversion => {
            retail.iter().map(|&e| (e, None)).collect()
        }
        AnomalyKind::ReportingStopped => world
            .enterprises
            .iter()
            .filter(|e| e.etype != EnterpriseType::Manufacturer)
            .map(|e| (e.seq, None))
            .collect(),
        AnomalyKind::ProductionSpike => holdings_where(world, |hd| {
            matches!(hd.supplier, Supplier::Produces) && hd.lambda >= 1.0
        }),
        AnomalyKind::PurchaseSpike => holdings_where(world, |hd| {
            let outside = matches!(hd.supplier, Supplier::Outside(_));
            // A stockpiling order to a supplier outside the province, whose supply is not
            // limited by an in-province stock.
            let ok = etype(hd) == EnterpriseType::Wholesaler && outside && hd.lambda >= 1.0;
            ok && !controlled(hd)
        }),
    }
}

/// Draws the window (first and last day) and the magnitude of an anomaly of `kind`.
fn draw_window(
    rng: &mut Xoshiro256PlusPlus,
    kind: AnomalyKind,
    period: &Period,
    is_working_day: &dyn Fn(NaiveDate) -> bool,
) -> (NaiveDate, NaiveDate, f64) {
    let magnitude = kind.magnitude_range().draw(rng);
    let len = match kind {
        AnomalyKind::InventoryMismatch | AnomalyKind::TraceCodeDuplicate => rng.gen_range(1..=3),
        AnomalyKind::SoldNotBought | AnomalyKind::SpecialDrugVolume => rng.gen_range(2..=4),
        AnomalyKind::SalesSpike => rng.gen_range(1..=2),
        AnomalyKind::ExpiredBatchSold
        | AnomalyKind::FailedBatchSold
        | AnomalyKind::PriceBelowMedian => rng.gen_range(2..=5),
        // The magnitude is the length of the silence.
        AnomalyKind::ReportingStopped => magnitude as i64,
        AnomalyKind::SubtleDiversion => rng.gen_range(5..=8),
        AnomalyKind::ProductionSpike | AnomalyKind::PurchaseSpike => {
            // Production and deliveries happen on working days only.
            let (mut s, _) = period.window(rng, 1);
            while !is_working_day(s) && s > period.from {
                s -= Duration::days(1);
            }
            while !is_working_day(s) && s < period.to {
                s += Duration::days(1);
            }
            return (s, s, magnitude);
        }
    };
    let (s, e) = period.window(rng, len);
    (s, e, magnitude)
}

/// Completes an anomaly with what its kind needs beyond a target and a window: the product
/// never bought, the planted batch, or the holdings of a subtle diversion. False when the
/// target has none to give (the anomaly is dropped).
fn complete(rng: &mut Xoshiro256PlusPlus, world: &mut World, anomaly: &mut Anomaly) -> bool {
    let (ent, start) = (anomaly.ent, anomaly.start);
    match anomaly.kind {
        AnomalyKind::SoldNotBought => {
            let held: Vec<usize> = world.enterprises[ent]
                .holdings
                .iter()
                .map(|&h| world.holdings[h].prod)
                .collect();
            let others: Vec<usize> = (0..world.products.len())
                .filter(|p| world.products[*p].retail && !held.contains(p))
                .collect();
            match others.choose(rng) {
                Some(&p) => anomaly.prod = Some(p),
                None => return false,
            }
        }
        AnomalyKind::ExpiredBatchSold => {
            let p = anomaly.prod.unwrap_or_default();
            let months = world.products[p].row.shelf_life_months;
            let expired = start - Duration::days(rng.gen_range(5..60));
            let produced = expired
                .checked_sub_months(chrono::Months::new(months as u32))
                .unwrap_or(expired)
                + Duration::days(1);
            anomaly.batch = Some(world.add_planted_batch(p, produced, true));
        }
        AnomalyKind::FailedBatchSold => {
            let p = anomaly.prod.unwrap_or_default();
            let produced = start - Duration::days(rng.gen_range(90..150));
            // Three in ten never passed release; the rest fail a sampling test at the
            // target on the first day of the window.
            let released = !rng.gen_bool(0.3);
            anomaly.batch = Some(world.add_planted_batch(p, produced, released));
        }
        AnomalyKind::SubtleDiversion => {
            let mut hs: Vec<usize> = world.enterprises[ent]
                .holdings
                .iter()
                .copied()
                .filter(|&h| {
                    world.holdings[h].lambda >= 1.0
                        && !world.products[world.holdings[h].prod]
                            .class
                            .is_volume_controlled()
                })
                .collect();
            hs.shuffle(rng);
            hs.truncate(4);
            if hs.is_empty() {
                return false;
            }
            anomaly.holdings = hs;
        }
        _ => {}
    }
    true
}
