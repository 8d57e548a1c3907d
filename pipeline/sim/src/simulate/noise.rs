//! The noise of a real province: what the records of honest enterprises look like on a real
//! platform (stocktake miscounts, returns, promotions and price changes, weekly rhythms,
//! products and enterprises coming and going, late files, a few bad rows).
//!
//! Every part has a rate and can be turned off on its own ([`NoiseConfig::without`], the
//! `simulate --noise-off PART` flag); [`NoiseConfig::default`] is the realistic province `demo`
//! and `simulate` use, [`NoiseConfig::off`] the noise-free one the tests of exact figures use.
//!
//! Invariants: noise draws come from a random stream of their own ([`Noise::new`] seeds it
//! from the run's seed), so the same seed gives the same bytes, and with noise off not one
//! draw is made (the records are those of the noise-free simulator). Every noisy record is a
//! valid record of its kind: a return is a sale to the supplier (quantities are never
//! negative), a miscount is a closing stock off by a few packages, a late file holds records
//! with their true event time. Only the bad rows are invalid, and they never enter the lake:
//! they go to `OUT/inbox/`, where `nightly --input` rejects them into the dead letter.
//! Enterprises and holdings that carry a planted anomaly never open, close or leave during
//! the run, so a label always describes records that exist.

use std::collections::HashMap;

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use pharmwatch_schemas::EnterpriseType;

use super::world::{Supplier, World, stock_policy};

/// Which parts of the noise model are on, and at what rate. A rate of 0 turns its part off.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseConfig {
    /// Whether any noise is applied.
    pub enabled: bool,
    /// Share of reported closing stocks (product-days) off by 1 … `miscount_max` packages
    /// (a stocktake miscount; the next day's count is right again). Default 0.02.
    pub miscount_rate: f64,
    /// Largest miscount, packages. Default 2.
    pub miscount_max: i64,
    /// Share of retail holding-days on which the pharmacy returns 1–3 packages to its supplier
    /// (a sale to the supplier and a purchase at the supplier). Default 0.003.
    pub return_rate: f64,
    /// Chance a chain headquarters starts a chain-wide promotion on a day. Default 1/30.
    pub chain_promotion_rate: f64,
    /// Chance a retail enterprise starts a promotion of its own on a day. Default 1/60.
    pub store_promotion_rate: f64,
    /// Share of the assortment a promotion covers. Default 0.2.
    pub promotion_share: f64,
    /// Promotion price, as a share of the usual price (drawn uniformly). Default 0.75–0.9.
    pub promotion_discount: (f64, f64),
    /// Promotion demand, as a multiple of the usual (drawn uniformly). Default 1.3–2.2.
    pub promotion_lift: (f64, f64),
    /// Promotion length in days (drawn uniformly). Default 2–4.
    pub promotion_days: (i64, i64),
    /// Chance a chain headquarters changes the prices of all its stores on a day. Default 1/60.
    pub chain_price_change_rate: f64,
    /// Chance a single pharmacy changes its prices on a day. Default 1/90.
    pub store_price_change_rate: f64,
    /// A price change multiplies the enterprise's prices by a factor drawn from this range
    /// (kept within 0.85–1.2 of the first level). Default 0.94–1.08.
    pub price_change: (f64, f64),
    /// Share of single pharmacies closed on Sundays and over the Spring Festival (no sales, no
    /// reports those days). Default 0.15.
    pub sunday_closed_share: f64,
    /// Chance a retail enterprise lists a new product on a day. Default 1/45.
    pub product_entry_rate: f64,
    /// Chance a retail holding is delisted on a day (no more orders; once sold out it is no
    /// longer reported). Default 1/1500.
    pub product_exit_rate: f64,
    /// Share of retail enterprises that open during the run (no records before). Default 0.02.
    pub opening_share: f64,
    /// Share of retail enterprises that close during the run: a week without orders, then the
    /// stock is returned to the suppliers, a zero stock reported, and nothing after.
    /// Default 0.01.
    pub closing_share: f64,
    /// Share of enterprise-days whose records (production, sales, purchases, stock) arrive a
    /// day late: they land in the next day's lake partition (`late-00000.parquet`) with their
    /// true event time. Default 0.01.
    pub late_rate: f64,
    /// Bad rows per valid record, written to `OUT/inbox/KIND-DATE.ndjson` (the lake takes only
    /// valid records). Default 0.00005.
    pub bad_row_rate: f64,
}

/// The parts of the noise model, as `--noise-off` names them, with what each does.
pub const PARTS: &[(&str, &str)] = &[
    (
        "miscount",
        "stocktake miscounts of ±1–2 packages on 2 % of product-days",
    ),
    (
        "returns",
        "returns of 1–3 packages to the supplier on 0.3 % of retail holding-days",
    ),
    (
        "promotions",
        "promotions of 2–4 days at 0.75–0.9 of the price and 1.3–2.2× the demand on a fifth of the assortment: chain-wide (1/30 chain-days) and single store (1/60 store-days)",
    ),
    (
        "prices",
        "lasting price changes of 0.94–1.08×: chain-wide (1/60 chain-days) and single pharmacy (1/90 days)",
    ),
    (
        "rhythm",
        "15 % of single pharmacies closed on Sundays and over the Spring Festival",
    ),
    (
        "products",
        "new products listed (1/45 retail enterprise-days) and delisted (1/1500 holding-days)",
    ),
    (
        "enterprises",
        "2 % of retail enterprises open during the run, 1 % close (stock returned first)",
    ),
    (
        "late",
        "1 % of enterprise-days reported a day late (next day's partition, true event time)",
    ),
    (
        "bad-rows",
        "5 bad rows per 100 000 records, to OUT/inbox/ for nightly --input",
    ),
];

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            miscount_rate: 0.02,
            miscount_max: 2,
            return_rate: 0.003,
            chain_promotion_rate: 1.0 / 30.0,
            store_promotion_rate: 1.0 / 60.0,
            promotion_share: 0.2,
            promotion_discount: (0.75, 0.9),
            promotion_lift: (1.3, 2.2),
            promotion_days: (2, 4),
            chain_price_change_rate: 1.0 / 60.0,
            store_price_change_rate: 1.0 / 90.0,
            price_change: (0.94, 1.08),
            sunday_closed_share: 0.15,
            product_entry_rate: 1.0 / 45.0,
            product_exit_rate: 1.0 / 1500.0,
            opening_share: 0.02,
            closing_share: 0.01,
            late_rate: 0.01,
            bad_row_rate: 0.00005,
        }
    }
}

impl NoiseConfig {
    /// No noise at all: every holding reconciles, prices are fixed within ±2 %.
    pub fn off() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// This configuration with part `name` (one of [`PARTS`]) turned off; an error naming the
    /// parts for an unknown name.
    pub fn without(mut self, name: &str) -> Result<Self, String> {
        match name {
            "miscount" => self.miscount_rate = 0.0,
            "returns" => self.return_rate = 0.0,
            "promotions" => {
                self.chain_promotion_rate = 0.0;
                self.store_promotion_rate = 0.0;
            }
            "prices" => {
                self.chain_price_change_rate = 0.0;
                self.store_price_change_rate = 0.0;
            }
            "rhythm" => self.sunday_closed_share = 0.0,
            "products" => {
                self.product_entry_rate = 0.0;
                self.product_exit_rate = 0.0;
            }
            "enterprises" => {
                self.opening_share = 0.0;
                self.closing_share = 0.0;
            }
            "late" => self.late_rate = 0.0,
            "bad-rows" => self.bad_row_rate = 0.0,
            other => {
                let names: Vec<&str> = PARTS.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "unknown noise part {other:?}; the parts are {}",
                    names.join(", ")
                ));
            }
        }
        Ok(self)
    }
}

/// Days without orders before a closing enterprise shuts.
pub const WIND_DOWN_DAYS: i64 = 7;

/// When an enterprise is open, by the noise model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Life {
    /// First day open (no records before).
    pub opens: Option<NaiveDate>,
    /// Last day open: the stock is returned and a zero stock reported; nothing after.
    pub closes: Option<NaiveDate>,
    /// Closed on Sundays and over the Spring Festival.
    pub sunday_closed: bool,
}

/// A promotion on one holding.
#[derive(Debug, Clone, Copy)]
pub struct Promotion {
    /// Last day.
    pub end: NaiveDate,
    /// Price as a share of the usual.
    pub discount: f64,
    /// Demand as a multiple of the usual.
    pub lift: f64,
}

/// The noise state of a run: its own random stream and what it decided so far.
#[derive(Debug, Clone)]
pub struct Noise {
    /// The configuration.
    pub cfg: NoiseConfig,
    rng: Xoshiro256PlusPlus,
    /// Opening and closing of each enterprise.
    pub life: Vec<Life>,
    /// The promotion on each holding, if any.
    pub promo: Vec<Option<Promotion>>,
    /// Holdings delisted (no more orders; not reported once sold out).
    pub delisted: Vec<bool>,
    /// Holdings the noise must leave in place (they carry a planted anomaly).
    protected: Vec<bool>,
    /// Enterprises the noise must leave in place (they carry a planted anomaly).
    protected_ent: Vec<bool>,
    /// Each chain headquarters with its stores.
    chains: Vec<(usize, Vec<usize>)>,
    /// The first price factor of each enterprise (price changes stay near it).
    first_price: Vec<f64>,
}

impl Noise {
    /// The noise of a run of `days` days from `start`, seeded from `seed`. Enterprises with
    /// `protected_ent` set and holdings with `protected_holding` set carry planted anomalies:
    /// they never open, close or leave. Enterprises that open start with an empty stock.
    pub fn new(
        cfg: &NoiseConfig,
        seed: u64,
        world: &mut World,
        protected_ent: &[bool],
        protected_holding: &[bool],
        start: NaiveDate,
        days: u32,
    ) -> Self {
        let mut noise = Noise {
            cfg: cfg.clone(),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x6e6f_6973_655f_7631),
            life: vec![Life::default(); world.enterprises.len()],
            promo: vec![None; world.holdings.len()],
            delisted: vec![false; world.holdings.len()],
            protected: protected_holding.to_vec(),
            protected_ent: protected_ent.to_vec(),
            chains: Vec::new(),
            first_price: world.enterprises.iter().map(|e| e.price_factor).collect(),
        };
        if !cfg.enabled {
            return noise;
        }
        let mut by_id: HashMap<&str, usize> = HashMap::new();
        for e in &world.enterprises {
            by_id.insert(e.row.enterprise_id.as_str(), e.seq);
        }
        let mut chains: Vec<(usize, Vec<usize>)> = Vec::new();
        for e in &world.enterprises {
            if e.etype == EnterpriseType::ChainHq {
                chains.push((e.seq, Vec::new()));
            }
        }
        for e in &world.enterprises {
            if let Some(parent) = &e.row.parent_id
                && let Some(&hq) = by_id.get(parent.as_str())
                && let Some(c) = chains.iter_mut().find(|c| c.0 == hq)
            {
                c.1.push(e.seq);
            }
        }
        noise.chains = chains;
        noise.plan_lives(world, protected_ent, start, days);
        noise
    }

    /// Draws which retail enterprises open or close during the run, and which pharmacies
    /// close on Sundays.
    fn plan_lives(
        &mut self,
        world: &mut World,
        protected_ent: &[bool],
        start: NaiveDate,
        days: u32,
    ) {
        let days = i64::from(days);
        for e in 0..world.enterprises.len() {
            let etype = world.enterprises[e].etype;
            if !etype.is_retail() {
                continue;
            }
            if etype == EnterpriseType::SinglePharmacy {
                self.life[e].sunday_closed = self.rng.gen_bool(self.cfg.sunday_closed_share);
            }
            if protected_ent.get(e).copied().unwrap_or(false) || days < 14 {
                continue;
            }
            let x: f64 = self.rng.r#gen();
            if x < self.cfg.opening_share {
                let day = start + Duration::days(self.rng.gen_range(1..days));
                self.life[e].opens = Some(day);
                for &h in &world.enterprises[e].holdings {
                    world.holdings[h].stock = 0;
                }
            } else if x < self.cfg.opening_share + self.cfg.closing_share {
                let day = start + Duration::days(self.rng.gen_range(WIND_DOWN_DAYS + 1..days));
                self.life[e].closes = Some(day);
            }
        }
    }

    /// Whether enterprise `e` is closed on `d` (not yet open, gone, or its day off); `spring`
    /// tells whether `d` is a Spring Festival holiday. A closed enterprise sells nothing,
    /// reports nothing and takes no deliveries.
    pub fn closed(&self, e: usize, d: NaiveDate, spring: bool) -> bool {
        let Some(l) = self.life.get(e) else {
            return false;
        };
        l.opens.is_some_and(|o| d < o)
            || l.closes.is_some_and(|c| d > c)
            || (l.sunday_closed && (d.weekday() == Weekday::Sun || spring))
    }

    /// Whether enterprise `e` places no orders on `d`: it closes within the wind-down week.
    pub fn winding_down(&self, e: usize, d: NaiveDate) -> bool {
        self.life
            .get(e)
            .and_then(|l| l.closes)
            .is_some_and(|c| d >= c - Duration::days(WIND_DOWN_DAYS))
    }

    /// Whether `d` is enterprise `e`'s last day open.
    pub fn closes_on(&self, e: usize, d: NaiveDate) -> bool {
        self.life.get(e).and_then(|l| l.closes) == Some(d)
    }

    /// The day's changes of the province: promotions and price changes start, products are
    /// listed and delisted. Returns the holdings added (the engine sizes its state by them).
    pub fn start_day(&mut self, world: &mut World, d: NaiveDate) -> Vec<usize> {
        if !self.cfg.enabled {
            return Vec::new();
        }
        for p in self.promo.iter_mut() {
            if p.is_some_and(|p| p.end < d) {
                *p = None;
            }
        }
        self.chain_changes(world, d);
        self.store_changes(world, d);
        let added = self.list_products(world);
        for h in 0..world.holdings.len() {
            if !self.delisted[h]
                && !self.protected.get(h).copied().unwrap_or(false)
                && world.enterprises[world.holdings[h].ent].etype.is_retail()
                && self.rng.gen_bool(self.cfg.product_exit_rate)
            {
                self.delisted[h] = true;
            }
        }
        added
    }

    /// Chain-wide promotions and price changes.
    fn chain_changes(&mut self, world: &mut World, d: NaiveDate) {
        for c in 0..self.chains.len() {
            let hq = self.chains[c].0;
            if self.rng.gen_bool(self.cfg.chain_promotion_rate) {
                let products = self.pick_products(world, hq);
                let promo = self.draw_promotion(d);
                for &s in &self.chains[c].1 {
                    for &p in &products {
                        if let Some(&h) = world.holding_index.get(&(s, p)) {
                            self.promo[h] = Some(promo);
                        }
                    }
                }
            }
            if self.rng.gen_bool(self.cfg.chain_price_change_rate) {
                let m = self.draw_range(self.cfg.price_change);
                let stores = self.chains[c].1.clone();
                for s in stores {
                    self.change_price(world, s, m);
                }
            }
        }
    }

    /// Single-store promotions and single pharmacies' price changes.
    fn store_changes(&mut self, world: &mut World, d: NaiveDate) {
        for e in 0..world.enterprises.len() {
            let etype = world.enterprises[e].etype;
            if !etype.is_retail() {
                continue;
            }
            if self.rng.gen_bool(self.cfg.store_promotion_rate) {
                let products = self.pick_products(world, e);
                let promo = self.draw_promotion(d);
                for p in products {
                    if let Some(&h) = world.holding_index.get(&(e, p)) {
                        self.promo[h] = Some(promo);
                    }
                }
            }
            if etype == EnterpriseType::SinglePharmacy
                && self.rng.gen_bool(self.cfg.store_price_change_rate)
            {
                let m = self.draw_range(self.cfg.price_change);
                self.change_price(world, e, m);
            }
        }
    }

    fn change_price(&self, world: &mut World, e: usize, m: f64) {
        let first = self.first_price[e];
        let f = &mut world.enterprises[e].price_factor;
        *f = (*f * m).clamp(first * 0.85, first * 1.2);
    }

    /// A share of the products enterprise `e` holds, for a promotion.
    fn pick_products(&mut self, world: &World, e: usize) -> Vec<usize> {
        let mut list: Vec<usize> = world.enterprises[e]
            .holdings
            .iter()
            .map(|&h| world.holdings[h].prod)
            .collect();
        list.shuffle(&mut self.rng);
        let n = ((list.len() as f64) * self.cfg.promotion_share).ceil() as usize;
        list.truncate(n);
        list
    }

    fn draw_promotion(&mut self, d: NaiveDate) -> Promotion {
        let (lo, hi) = self.cfg.promotion_days;
        let len = self.rng.gen_range(lo.max(1)..=hi.max(lo.max(1)));
        Promotion {
            end: d + Duration::days(len - 1),
            discount: self.draw_range(self.cfg.promotion_discount),
            lift: self.draw_range(self.cfg.promotion_lift),
        }
    }

    fn draw_range(&mut self, (lo, hi): (f64, f64)) -> f64 {
        lo + self.rng.r#gen::<f64>() * (hi - lo).max(0.0)
    }

    /// New products listed today: a holding with an empty stock and the stock policy of its
    /// tier, bought from the enterprise's usual supplier of such a product.
    fn list_products(&mut self, world: &mut World) -> Vec<usize> {
        let mut added = Vec::new();
        for e in 0..world.enterprises.len() {
            if !world.enterprises[e].etype.is_retail()
                || !self.rng.gen_bool(self.cfg.product_entry_rate)
                || self.protected_ent.get(e).copied().unwrap_or(false)
            {
                continue;
            }
            let Some(&some) = world.enterprises[e].holdings.first() else {
                continue;
            };
            let Supplier::Inside(s) = world.holdings[some].supplier else {
                continue;
            };
            // A product the supplier holds and the enterprise does not.
            let options: Vec<usize> = world.enterprises[s]
                .holdings
                .iter()
                .map(|&h| world.holdings[h].prod)
                .filter(|&p| world.products[p].retail && !world.holding_index.contains_key(&(e, p)))
                .collect();
            let Some(&p) = options.choose(&mut self.rng) else {
                continue;
            };
            let lambda = (0.3 + self.rng.r#gen::<f64>() * 2.0).min(14.0);
            let (lo, hi) = stock_policy(world.enterprises[e].etype);
            let h = world.holdings.len();
            world.holdings.push(super::world::Holding {
                ent: e,
                prod: p,
                stock: 0,
                lambda,
                supplier: Supplier::Inside(s),
                reorder: (lambda * lo).ceil().max(1.0) as i64,
                order_up_to: (lambda * hi).ceil().max((lambda * lo).ceil() + 2.0) as i64,
                outstanding: false,
            });
            world.holding_index.insert((e, p), h);
            world.enterprises[e].holdings.push(h);
            self.promo.push(None);
            self.delisted.push(false);
            self.protected.push(false);
            added.push(h);
        }
        added
    }

    /// The promotion's (demand lift, price factor) on holding `h` on `d`: (1, 1) without one.
    pub fn promotion(&self, h: usize, d: NaiveDate) -> (f64, f64) {
        match self.promo.get(h).copied().flatten() {
            Some(p) if p.end >= d => (p.lift, p.discount),
            _ => (1.0, 1.0),
        }
    }

    /// The miscount of one reported closing stock: 0 mostly, else ±1 … `miscount_max`.
    pub fn miscount(&mut self) -> i64 {
        if !self.cfg.enabled
            || self.cfg.miscount_rate <= 0.0
            || !self.rng.gen_bool(self.cfg.miscount_rate)
        {
            return 0;
        }
        let k = self.rng.gen_range(1..=self.cfg.miscount_max.max(1));
        if self.rng.gen_bool(0.5) { k } else { -k }
    }

    /// Packages a retail holding with `stock` on hand returns to its supplier today (0 mostly).
    pub fn returned(&mut self, stock: i64) -> i64 {
        if !self.cfg.enabled
            || self.cfg.return_rate <= 0.0
            || stock < 2
            || !self.rng.gen_bool(self.cfg.return_rate)
        {
            return 0;
        }
        self.rng.gen_range(1..=3).min(stock / 2)
    }

    /// Whether an enterprise's records of today arrive a day late.
    pub fn late(&mut self) -> bool {
        self.cfg.enabled && self.cfg.late_rate > 0.0 && self.rng.gen_bool(self.cfg.late_rate)
    }

    /// How many of `records` valid records of a day get a bad twin in the inbox.
    pub fn bad_rows(&mut self, records: usize) -> usize {
        if !self.cfg.enabled || self.cfg.bad_row_rate <= 0.0 {
            return 0;
        }
        let expected = records as f64 * self.cfg.bad_row_rate;
        let whole = expected.floor();
        let extra = usize::from(self.rng.gen_bool((expected - whole).clamp(0.0, 1.0)));
        whole as usize + extra
    }

    /// A number in `0..n` from the noise stream.
    pub fn index(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.rng.gen_range(0..n) }
    }
}

/// The defects a bad row carries, one each: what the platform's validation rejects.
pub const DEFECTS: &[&str] = &[
    "negative_quantity",
    "bad_credit_code",
    "unknown_product",
    "truncated",
];

/// Turns a valid record (as a JSON object) into a bad row with defect `which` (an index into
/// [`DEFECTS`]); returns the NDJSON line.
pub fn corrupt(mut value: serde_json::Value, which: usize) -> String {
    if let Some(obj) = value.as_object_mut() {
        match DEFECTS.get(which).copied().unwrap_or("truncated") {
            "negative_quantity" => {
                obj.insert("quantity".into(), serde_json::Value::from(-1));
            }
            "bad_credit_code" => {
                // The check character no longer matches (I is not in the alphabet).
                if let Some(id) = obj.get("enterprise_id").and_then(|v| v.as_str()) {
                    let bad = format!("{}I", &id[..id.len().saturating_sub(1)]);
                    obj.insert("enterprise_id".into(), serde_json::Value::from(bad));
                }
            }
            "unknown_product" => {
                obj.insert("product_id".into(), serde_json::Value::from("P99999"));
            }
            _ => {
                let line = value.to_string();
                return line[..line.len() / 2].to_string();
            }
        }
    }
    value.to_string()
}
