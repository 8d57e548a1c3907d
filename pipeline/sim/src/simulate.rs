//! Province simulator: a seeded, day-by-day model of drug supply in Inner Mongolia that writes
//! the lake, the reference tables and the labels of the anomalies it planted.
//!
//! Each day, in order: manufacturers produce on working days (a batch when stock falls below
//! the reorder point); orders placed the day before are delivered on working days (a sale at
//! the supplier and a purchase at the buyer, same batch); pharmacies sell to patients (one
//! record per package, each with its own traceability code), with weekly seasonality and
//! holidays; supervisors sample products and inspect enterprises on working days; hidden losses
//! happen; every holding reports its closing stock; holdings below their reorder point order up
//! to their order-up-to level. `Engine::simulate_day` runs these phases, one helper each.
//!
//! Invariants: the same seed and arguments give the same bytes; without planted anomalies every
//! holding reconciles (opening + in − out = closing) and no batch is sold expired or failed; a
//! label's window is the span in which its anomaly shows in the records.

pub mod anomalies;
pub mod world;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, Weekday};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Poisson};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

use pharmwatch_schemas::ids;
use pharmwatch_schemas::records::SHANGHAI_OFFSET_SECONDS;
use pharmwatch_schemas::{
    Conclusion, EnterpriseType, EventKind, InspectionFinding, InventorySnapshot, ProductTestRecord,
    ProductionRecord, PurchaseRecord, SalesRecord, TestKind, TestResult,
};

use anomalies::{Anomaly, AnomalyKind};
use pharmwatch_core::error::{CoreError, Result};
use pharmwatch_core::lake::LakeWriter;
use pharmwatch_regulation::Calendar;
use world::{Holding, Supplier, World, price_level};

/// Settings of one simulation run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of enterprises.
    pub enterprises: usize,
    /// Number of days.
    pub days: u32,
    /// First simulated day.
    pub start: NaiveDate,
    /// RNG seed: the same seed gives the same bytes.
    pub seed: u64,
    /// Anomalies are planted in the last `anomaly_days` days.
    pub anomaly_days: u32,
    /// Planted anomalies per kind (`None`: one per 40 enterprises, at least 3).
    pub anomalies_per_kind: Option<usize>,
    /// Output directory (the lake).
    pub out: PathBuf,
    /// Show a progress bar.
    pub progress: bool,
}

/// Default first day: chosen so that the default 60 days include the National Day holiday.
pub fn default_start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 9, 1).unwrap_or_default()
}

/// What a run wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SimSummary {
    /// Seed used.
    pub seed: u64,
    /// Enterprises simulated.
    pub enterprises: usize,
    /// Products.
    pub products: usize,
    /// First day.
    pub start: NaiveDate,
    /// Last day.
    pub end: NaiveDate,
    /// Records written per event kind.
    pub records: Vec<(String, u64)>,
    /// Total event records.
    pub total_records: u64,
    /// Labels written.
    pub labels: usize,
    /// Wall time in seconds (not part of the lake).
    #[serde(skip)]
    pub seconds: f64,
}

#[derive(Default)]
struct DayRecords {
    production: Vec<ProductionRecord>,
    sales: Vec<SalesRecord>,
    purchase: Vec<PurchaseRecord>,
    inventory: Vec<InventorySnapshot>,
    product_test: Vec<ProductTestRecord>,
    inspection: Vec<InspectionFinding>,
}

struct Order {
    holding: usize,
    qty: i64,
    due: NaiveDate,
}

/// What every phase of one simulated day shares.
struct Today {
    /// The day.
    date: NaiveDate,
    /// Whether it is a working day (production, deliveries, sampling and inspections).
    working: bool,
    /// Retail demand factor of the weekday and holiday.
    season: f64,
    /// Enterprises that stopped reporting (a planted anomaly), by index.
    stopped: Vec<bool>,
}

/// How one retail holding sells today, after the anomalies active on it.
struct RetailTerms {
    /// Expected units sold.
    lambda: f64,
    /// Factor on the enterprise's price.
    price_factor: f64,
    /// A planted (expired or failed) batch some units come from.
    planted_batch: Option<usize>,
    /// Units sold under a traceability code already sold elsewhere.
    duplicates: i64,
}

struct Engine<'a> {
    world: World,
    cal: &'a Calendar,
    rng: Xoshiro256PlusPlus,
    anomalies: Vec<Anomaly>,
    orders: Vec<Order>,
    trace_serial: Vec<u64>,
    recent_codes: Vec<VecDeque<(String, usize, NaiveDate)>>,
    recent_runs: Vec<VecDeque<(NaiveDate, i64)>>,
    active_by_holding: HashMap<usize, Vec<usize>>,
    active_by_ent: HashMap<usize, Vec<usize>>,
    counters: [u64; 6],
    tz: FixedOffset,
}

fn weekday_factor(d: NaiveDate) -> f64 {
    match d.weekday() {
        Weekday::Mon | Weekday::Tue | Weekday::Wed => 0.95,
        Weekday::Thu => 0.97,
        Weekday::Fri => 1.03,
        Weekday::Sat => 1.1,
        Weekday::Sun => 1.05,
    }
}

impl<'a> Engine<'a> {
    /// An engine at the start of the run: no orders, no runs, no codes sold yet.
    fn new(
        world: World,
        cal: &'a Calendar,
        rng: Xoshiro256PlusPlus,
        anomalies: Vec<Anomaly>,
    ) -> Self {
        let n_products = world.products.len();
        let n_holdings = world.holdings.len();
        Engine {
            world,
            cal,
            rng,
            anomalies,
            orders: Vec::new(),
            trace_serial: vec![0; n_products],
            recent_codes: vec![VecDeque::new(); n_products],
            recent_runs: vec![VecDeque::new(); n_holdings],
            active_by_holding: HashMap::new(),
            active_by_ent: HashMap::new(),
            counters: [0; 6],
            tz: FixedOffset::east_opt(SHANGHAI_OFFSET_SECONDS).expect("UTC+8 is a valid offset"),
        }
    }

    /// Simulates every day of the run and writes its records; returns the records written
    /// per event kind, in the order of [`EventKind::ALL`].
    fn simulate_days(&mut self, cfg: &SimConfig, writer: &mut LakeWriter) -> Result<[u64; 6]> {
        let bar =
            pharmwatch_core::progress::bar(cfg.progress, u64::from(cfg.days), "simulating days");
        let mut counts = [0u64; 6];
        for i in 0..cfg.days {
            let d = cfg.start + Duration::days(i64::from(i));
            let day = self.simulate_day(d)?;
            counts[0] += writer.write_day(EventKind::Production, d, &day.production)? as u64;
            counts[1] += writer.write_day(EventKind::Sales, d, &day.sales)? as u64;
            counts[2] += writer.write_day(EventKind::Purchase, d, &day.purchase)? as u64;
            counts[3] += writer.write_day(EventKind::Inventory, d, &day.inventory)? as u64;
            counts[4] += writer.write_day(EventKind::ProductTest, d, &day.product_test)? as u64;
            counts[5] += writer.write_day(EventKind::Inspection, d, &day.inspection)? as u64;
            bar.inc(1);
            bar.set_message(format!("{d}: {} records", counts.iter().sum::<u64>()));
        }
        bar.finish_and_clear();
        Ok(counts)
    }

    fn at(&self, d: NaiveDate, seconds: u32) -> DateTime<FixedOffset> {
        let t = NaiveTime::from_num_seconds_from_midnight_opt(seconds.min(86_399), 0)
            .unwrap_or_default();
        d.and_time(t)
            .and_local_timezone(self.tz)
            .single()
            .unwrap_or_else(|| {
                DateTime::<FixedOffset>::from_naive_utc_and_offset(d.and_time(t), self.tz)
            })
    }

    fn next_id(&mut self, kind: EventKind, d: NaiveDate) -> String {
        let (i, prefix) = match kind {
            EventKind::Production => (0, "M"),
            EventKind::Sales => (1, "S"),
            EventKind::Purchase => (2, "P"),
            EventKind::Inventory => (3, "I"),
            EventKind::ProductTest => (4, "T"),
            EventKind::Inspection => (5, "X"),
        };
        self.counters[i] += 1;
        format!("{prefix}{}{:09}", d.format("%Y%m%d"), self.counters[i])
    }

    /// Indexes the anomalies active on `d` by holding and by enterprise, so the per-holding
    /// lookups of the day cost a hash probe instead of a scan of every planted anomaly.
    fn index_active(&mut self, d: NaiveDate) {
        self.active_by_holding.clear();
        self.active_by_ent.clear();
        for (i, a) in self.anomalies.iter().enumerate() {
            if !a.active(d) {
                continue;
            }
            for h in a.holding.iter().chain(&a.holdings) {
                self.active_by_holding.entry(*h).or_default().push(i);
            }
            self.active_by_ent.entry(a.ent).or_default().push(i);
        }
    }

    /// The anomaly of `kind` active today on holding `h`.
    fn active_on_holding(&self, kind: AnomalyKind, h: usize) -> Option<usize> {
        let list = self.active_by_holding.get(&h)?;
        list.iter()
            .copied()
            .find(|&i| self.anomalies[i].kind == kind)
    }

    /// The anomaly of `kind` active today at enterprise `e`.
    fn active_on_ent(&self, kind: AnomalyKind, e: usize) -> Option<usize> {
        let list = self.active_by_ent.get(&e)?;
        list.iter()
            .copied()
            .find(|&i| self.anomalies[i].kind == kind)
    }

    fn is_working(&self, d: NaiveDate) -> Result<bool> {
        self.cal.is_working_day(d).map_err(CoreError::Calendar)
    }

    fn next_working(&self, d: NaiveDate) -> Result<NaiveDate> {
        self.cal.add_working_days(d, 1).map_err(CoreError::Calendar)
    }

    fn poisson(&mut self, lambda: f64) -> i64 {
        if lambda <= 0.0 {
            return 0;
        }
        match Poisson::new(lambda) {
            Ok(p) => p.sample(&mut self.rng) as i64,
            Err(_) => 0,
        }
    }

    /// Records a delivery: a sale at an in-province supplier and a purchase at the buyer.
    fn deliver(
        &mut self,
        day: &mut DayRecords,
        d: NaiveDate,
        h: usize,
        qty: i64,
        stopped: &[bool],
    ) -> i64 {
        let Holding { ent, prod, .. } = self.world.holdings[h].clone();
        let supplier = self.world.holdings[h].supplier.clone();
        let (ship, supplier_code, supplier_type, supplier_factor, supplier_ent) = match &supplier {
            Supplier::Inside(s) => {
                let Some(&sh) = self.world.holding_index.get(&(*s, prod)) else {
                    return 0;
                };
                let ship = qty.min(self.world.holdings[sh].stock);
                if ship <= 0 {
                    return 0;
                }
                self.world.holdings[sh].stock -= ship;
                let se = &self.world.enterprises[*s];
                (
                    ship,
                    se.row.enterprise_id.clone(),
                    se.etype,
                    se.price_factor,
                    Some(*s),
                )
            }
            Supplier::Outside(code) => (qty, code.clone(), EnterpriseType::Manufacturer, 1.0, None),
            Supplier::Produces => return 0,
        };
        self.world.holdings[h].stock += ship;
        let batch = self.world.current_batch(prod, d, supplier_type);
        let batch_no = self.world.batches[batch].batch_no.clone();
        let noise = 1.0 + (self.rng.r#gen::<f64>() - 0.5) * 0.04;
        let price = round2(
            self.world.products[prod].row.reference_price
                * price_level(supplier_type)
                * supplier_factor
                * noise,
        );
        let time = {
            let secs = 9 * 3600 + self.rng.gen_range(0..8 * 3600);
            self.at(d, secs)
        };
        let product_id = self.world.products[prod].row.product_id.clone();
        let buyer_code = self.world.enterprises[ent].row.enterprise_id.clone();
        if let Some(s) = supplier_ent
            && !stopped[s]
        {
            let event_id = self.next_id(EventKind::Sales, d);
            day.sales.push(SalesRecord {
                event_id,
                event_time: time,
                enterprise_id: supplier_code.clone(),
                product_id: product_id.clone(),
                batch_no: batch_no.clone(),
                quantity: ship,
                unit_price: price,
                buyer_id: Some(buyer_code.clone()),
                trace_code: None,
            });
        }
        if !stopped[ent] {
            let event_id = self.next_id(EventKind::Purchase, d);
            day.purchase.push(PurchaseRecord {
                event_id,
                event_time: time,
                enterprise_id: buyer_code,
                supplier_id: supplier_code,
                product_id,
                batch_no,
                quantity: ship,
                unit_price: price,
            });
        }
        ship
    }

    /// Simulates day `d`: the phases of the module docs, in order.
    fn simulate_day(&mut self, d: NaiveDate) -> Result<DayRecords> {
        let mut day = DayRecords::default();
        self.index_active(d);
        let today = self.today(d)?;

        // 1. Production, on working days.
        if today.working {
            self.produce(&mut day, d);
        }

        // 2. Deliveries due today, upstream tiers first; then the planted ones.
        self.deliver_due(&mut day, &today);
        self.deliver_planted(&mut day, &today);

        // 3. Retail sales to patients.
        self.sell_retail(&mut day, &today)?;

        // 4. Supervisory sampling and inspections on working days.
        if today.working {
            self.sample_products(&mut day, d);
            self.inspect(&mut day, d);
        }

        // 5. Hidden losses (stock leaves without a record).
        self.lose_hidden_stock(d);

        // 6. Closing stock of every holding.
        self.report_stock(&mut day, &today);

        // 7. Orders for the next working day.
        self.place_orders(d)?;
        Ok(day)
    }

    /// The facts of day `d` every phase shares: working or not, the demand's season, and
    /// which enterprises stopped reporting.
    fn today(&self, d: NaiveDate) -> Result<Today> {
        let working = self.is_working(d)?;
        let holiday = self.cal.holiday_name(d).map(str::to_string);
        let season = weekday_factor(d)
            * match holiday.as_deref() {
                Some("春节") => 0.7,
                Some(_) => 0.9,
                None => 1.0,
            };
        let n_ent = self.world.enterprises.len();
        let mut stopped = vec![false; n_ent];
        for a in &self.anomalies {
            if a.kind == AnomalyKind::ReportingStopped && a.active(d) {
                stopped[a.ent] = true;
            }
        }
        Ok(Today {
            date: d,
            working,
            season,
            stopped,
        })
    }

    /// The largest run (production or delivery) of holding `h` in the four weeks before `d`.
    fn largest_recent_run(&self, h: usize, d: NaiveDate) -> Option<i64> {
        self.recent_runs[h]
            .iter()
            .filter(|(day, _)| (d - *day).num_days() <= 28)
            .map(|(_, q)| *q)
            .max()
    }

    /// Remembers a run of `qty` units into holding `h` on `d` (the last sixteen are kept).
    fn remember_run(&mut self, h: usize, d: NaiveDate, qty: i64) {
        self.recent_runs[h].push_back((d, qty));
        if self.recent_runs[h].len() > 16 {
            self.recent_runs[h].pop_front();
        }
    }

    /// Phase 1: every manufacturer holding below its reorder point (or with a planted spike)
    /// produces a batch.
    fn produce(&mut self, day: &mut DayRecords, d: NaiveDate) {
        for h in 0..self.world.holdings.len() {
            if !matches!(self.world.holdings[h].supplier, Supplier::Produces) {
                continue;
            }
            let spike = self.active_on_holding(AnomalyKind::ProductionSpike, h);
            let hd = &self.world.holdings[h];
            if hd.stock >= hd.reorder && spike.is_none() {
                continue;
            }
            // A standard batch: S − s days of demand, rounded up to tens.
            let normal = ((hd.order_up_to - hd.reorder).max(10) + 9) / 10 * 10;
            let qty = match spike {
                Some(a) => {
                    let largest = self.largest_recent_run(h, d).unwrap_or(normal).max(normal);
                    ((largest as f64 * self.anomalies[a].factor) / 10.0).ceil() as i64 * 10
                }
                None => normal,
            };
            self.record_production(day, d, h, qty);
        }
    }

    /// Records a production run of `qty` units into holding `h`: a new batch, its production
    /// record and its release test.
    fn record_production(&mut self, day: &mut DayRecords, d: NaiveDate, h: usize, qty: i64) {
        let (ent, prod) = (self.world.holdings[h].ent, self.world.holdings[h].prod);
        let b = self.world.add_batch(prod, d, true);
        let batch_no = self.world.batches[b].batch_no.clone();
        let code = self.world.enterprises[ent].row.enterprise_id.clone();
        let product_id = self.world.products[prod].row.product_id.clone();
        let event_id = self.next_id(EventKind::Production, d);
        let time = {
            let secs = 8 * 3600 + self.rng.gen_range(0..10 * 3600);
            self.at(d, secs)
        };
        day.production.push(ProductionRecord {
            event_id,
            event_time: time,
            enterprise_id: code.clone(),
            product_id: product_id.clone(),
            batch_no: batch_no.clone(),
            quantity: qty,
        });
        let event_id = self.next_id(EventKind::ProductTest, d);
        day.product_test.push(ProductTestRecord {
            event_id,
            event_time: self.at(d, 20 * 3600),
            enterprise_id: code,
            product_id,
            batch_no,
            test_kind: TestKind::Release,
            result: TestResult::Pass,
            test_item: Some("全检".into()),
        });
        self.world.holdings[h].stock += qty;
        self.remember_run(h, d, qty);
    }

    /// Phase 2: delivers the orders due today, upstream tiers first.
    fn deliver_due(&mut self, day: &mut DayRecords, today: &Today) {
        let d = today.date;
        let mut due: Vec<Order> = Vec::new();
        let mut later: Vec<Order> = Vec::new();
        for o in self.orders.drain(..) {
            if o.due <= d {
                due.push(o)
            } else {
                later.push(o)
            }
        }
        self.orders = later;
        due.sort_by_key(|o| {
            (
                tier_rank(self.world.enterprises[self.world.holdings[o.holding].ent].etype),
                o.holding,
            )
        });
        for o in due {
            let got = self.deliver(day, d, o.holding, o.qty, &today.stopped);
            self.world.holdings[o.holding].outstanding = false;
            if got > 0 {
                self.remember_run(o.holding, d, got);
            }
        }
    }

    /// Phase 2, planted: stockpiling orders and special-drug pre-stocking on their first day.
    fn deliver_planted(&mut self, day: &mut DayRecords, today: &Today) {
        let d = today.date;
        for i in 0..self.anomalies.len() {
            let a = self.anomalies[i].clone();
            let Some(h) = a.holding else { continue };
            let qty = match a.kind {
                AnomalyKind::PurchaseSpike if a.start == d => {
                    let hd = &self.world.holdings[h];
                    let largest = self
                        .largest_recent_run(h, d)
                        .unwrap_or(hd.order_up_to)
                        .max(hd.order_up_to - hd.reorder);
                    (largest as f64 * a.factor).ceil() as i64
                }
                AnomalyKind::SpecialDrugVolume if a.start == d => {
                    let days = (a.end - a.start).num_days() + 1;
                    let lam = self.world.holdings[h].lambda;
                    ((lam * a.factor + 8.0) * days as f64).ceil() as i64
                }
                _ => continue,
            };
            self.deliver(day, d, h, qty, &today.stopped);
        }
    }

    /// Phase 3: every retail enterprise sells each product it holds to patients, then any
    /// product it never bought (planted).
    fn sell_retail(&mut self, day: &mut DayRecords, today: &Today) -> Result<()> {
        let d = today.date;
        let n_ent = self.world.enterprises.len();
        let retail: Vec<usize> = (0..n_ent)
            .filter(|&e| self.world.enterprises[e].etype.is_retail())
            .collect();
        for e in retail {
            let holdings = self.world.enterprises[e].holdings.clone();
            for h in holdings {
                self.sell_holding(day, today, e, h)?;
            }
            // A product sold that was never bought.
            if let Some(a) = self.active_on_ent(AnomalyKind::SoldNotBought, e) {
                let p = self.anomalies[a].prod.unwrap_or_default();
                let n = self.poisson(self.anomalies[a].factor).max(2);
                self.sell_units(day, d, e, p, n, 1.0, None, 0, 0, today.stopped[e])?;
            }
        }
        Ok(())
    }

    /// Phase 3, one holding: draws the day's demand of retail holding `h` (of enterprise `e`)
    /// under the anomalies active on it and sells what is in stock.
    fn sell_holding(
        &mut self,
        day: &mut DayRecords,
        today: &Today,
        e: usize,
        h: usize,
    ) -> Result<()> {
        let d = today.date;
        let terms = self.retail_terms(day, today, e, h);
        let demand = self.poisson(terms.lambda);
        let sold = demand.min(self.world.holdings[h].stock);
        if sold <= 0 {
            return Ok(());
        }
        self.world.holdings[h].stock -= sold;
        let planted_units = if terms.planted_batch.is_some() {
            self.rng.gen_range(1..=3).min(sold)
        } else {
            0
        };
        let p = self.world.holdings[h].prod;
        self.sell_units(
            day,
            d,
            e,
            p,
            sold,
            terms.price_factor,
            terms.planted_batch,
            planted_units,
            terms.duplicates,
            today.stopped[e],
        )
    }

    /// The demand rate, price and planted units of retail holding `h` today, from the
    /// anomalies active on it; records the failed sampling test that opens a failed-batch
    /// window.
    fn retail_terms(
        &mut self,
        day: &mut DayRecords,
        today: &Today,
        e: usize,
        h: usize,
    ) -> RetailTerms {
        let d = today.date;
        let lam0 = self.world.holdings[h].lambda * today.season;
        let mut terms = RetailTerms {
            lambda: lam0,
            price_factor: 1.0,
            planted_batch: None,
            duplicates: 0,
        };
        if let Some(a) = self.active_on_holding(AnomalyKind::SalesSpike, h) {
            terms.lambda = lam0 * self.anomalies[a].factor;
        }
        if self
            .active_on_holding(AnomalyKind::SpecialDrugVolume, h)
            .is_some()
        {
            terms.lambda = lam0 * 5.0 + 8.0;
        }
        if self
            .active_on_holding(AnomalyKind::SubtleDiversion, h)
            .is_some()
        {
            terms.lambda = lam0 * 1.6;
            terms.price_factor = 0.8;
        }
        if let Some(a) = self.active_on_holding(AnomalyKind::PriceBelowMedian, h) {
            terms.price_factor = self.anomalies[a].factor;
        }
        if let Some(a) = self.active_on_holding(AnomalyKind::ExpiredBatchSold, h) {
            terms.planted_batch = self.anomalies[a].batch;
        }
        if let Some(a) = self.active_on_holding(AnomalyKind::FailedBatchSold, h) {
            terms.planted_batch = self.anomalies[a].batch;
            let b = self.anomalies[a].batch.unwrap_or_default();
            if d == self.anomalies[a].start && self.world.batches[b].released {
                let rec = ProductTestRecord {
                    event_id: self.next_id(EventKind::ProductTest, d),
                    event_time: self.at(d, 8 * 3600 + 600),
                    enterprise_id: self.world.enterprises[e].row.enterprise_id.clone(),
                    product_id: self.world.batches[b].product_id.clone(),
                    batch_no: self.world.batches[b].batch_no.clone(),
                    test_kind: TestKind::Sampling,
                    result: TestResult::Fail,
                    test_item: Some("溶出度".into()),
                };
                day.product_test.push(rec);
            }
        }
        if self
            .active_on_holding(AnomalyKind::TraceCodeDuplicate, h)
            .is_some()
        {
            terms.duplicates = self.rng.gen_range(1..=2);
        }
        terms
    }

    /// Phase 4: supervisory sampling tests of random holdings' current batches (one per
    /// hundred enterprises, at least one), all passing.
    fn sample_products(&mut self, day: &mut DayRecords, d: NaiveDate) {
        let n_tests = (self.world.enterprises.len() / 100).max(1);
        for _ in 0..n_tests {
            let h = self.rng.gen_range(0..self.world.holdings.len());
            let Holding { ent, prod, .. } = self.world.holdings[h].clone();
            let etype = self.world.enterprises[ent].etype;
            let b = self.world.current_batch(prod, d, etype);
            let rec = ProductTestRecord {
                event_id: self.next_id(EventKind::ProductTest, d),
                event_time: {
                    let secs = 10 * 3600 + self.rng.gen_range(0..6 * 3600);
                    self.at(d, secs)
                },
                enterprise_id: self.world.enterprises[ent].row.enterprise_id.clone(),
                product_id: self.world.products[prod].row.product_id.clone(),
                batch_no: self.world.batches[b].batch_no.clone(),
                test_kind: TestKind::Sampling,
                result: TestResult::Pass,
                test_item: Some("含量测定".into()),
            };
            day.product_test.push(rec);
        }
    }

    /// Phase 4: an inspection of a random enterprise, on about one day in 150 / enterprises.
    fn inspect(&mut self, day: &mut DayRecords, d: NaiveDate) {
        let n_ent = self.world.enterprises.len();
        if !self.rng.gen_bool(((n_ent as f64) / 150.0).min(1.0)) {
            return;
        }
        let e = self.rng.gen_range(0..n_ent);
        let conclusion = *[
            Conclusion::Compliant,
            Conclusion::Compliant,
            Conclusion::PendingRectification,
            Conclusion::NonCompliant,
        ]
        .choose(&mut self.rng)
        .unwrap_or(&Conclusion::Compliant);
        let (critical, major, general) = match conclusion {
            Conclusion::Compliant => (0, self.rng.gen_range(0..=2), self.rng.gen_range(0..=8)),
            Conclusion::PendingRectification => {
                (0, self.rng.gen_range(0..=8), self.rng.gen_range(5..=25))
            }
            Conclusion::NonCompliant => (
                self.rng.gen_range(1..=3),
                self.rng.gen_range(3..=10),
                self.rng.gen_range(10..=30),
            ),
        };
        let flags = if self.rng.gen_bool(0.3) {
            Some("key_personnel_changes".to_string())
        } else {
            None
        };
        let rec = InspectionFinding {
            event_id: self.next_id(EventKind::Inspection, d),
            event_time: self.at(d, 15 * 3600),
            enterprise_id: self.world.enterprises[e].row.enterprise_id.clone(),
            case_id: format!("JC{}{:04}", d.format("%Y%m%d"), self.counters[5]),
            conclusion,
            critical_defects: critical,
            major_defects: major,
            general_defects: general,
            flags,
        };
        day.inspection.push(rec);
    }

    /// Phase 5: planted hidden losses, stock that leaves without a record.
    fn lose_hidden_stock(&mut self, d: NaiveDate) {
        for i in 0..self.anomalies.len() {
            let a = &self.anomalies[i];
            if !a.active(d) {
                continue;
            }
            match a.kind {
                AnomalyKind::InventoryMismatch => {
                    if let Some(h) = a.holding {
                        let stock = self.world.holdings[h].stock;
                        let loss = ((stock as f64) * a.factor).round().max(5.0) as i64;
                        if stock >= loss {
                            self.world.holdings[h].stock -= loss;
                        }
                    }
                }
                AnomalyKind::SubtleDiversion => {
                    if let Some(&h) = a.holdings.first()
                        && self.world.holdings[h].stock > 0
                    {
                        self.world.holdings[h].stock -= 1;
                    }
                }
                _ => {}
            }
        }
    }

    /// Phase 6: the closing stock of every holding whose enterprise still reports.
    fn report_stock(&mut self, day: &mut DayRecords, today: &Today) {
        let d = today.date;
        let snapshot_time = self.at(d, 23 * 3600 + 59 * 60);
        for h in 0..self.world.holdings.len() {
            let Holding {
                ent, prod, stock, ..
            } = self.world.holdings[h].clone();
            if today.stopped[ent] {
                continue;
            }
            let rec = InventorySnapshot {
                event_id: self.next_id(EventKind::Inventory, d),
                event_time: snapshot_time,
                enterprise_id: self.world.enterprises[ent].row.enterprise_id.clone(),
                product_id: self.world.products[prod].row.product_id.clone(),
                quantity: stock,
            };
            day.inventory.push(rec);
        }
    }

    /// Phase 7: every bought holding below its reorder point, with no order on its way,
    /// orders up to its order-up-to level for the next working day.
    fn place_orders(&mut self, d: NaiveDate) -> Result<()> {
        let due = self.next_working(d)?;
        for h in 0..self.world.holdings.len() {
            let hd = &self.world.holdings[h];
            if matches!(hd.supplier, Supplier::Produces) || hd.outstanding || hd.stock >= hd.reorder
            {
                continue;
            }
            let qty = hd.order_up_to - hd.stock;
            self.world.holdings[h].outstanding = true;
            self.orders.push(Order {
                holding: h,
                qty,
                due,
            });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn sell_units(
        &mut self,
        day: &mut DayRecords,
        d: NaiveDate,
        e: usize,
        p: usize,
        units: i64,
        price_factor: f64,
        planted_batch: Option<usize>,
        planted_units: i64,
        duplicates: i64,
        suppressed: bool,
    ) -> Result<()> {
        let etype = self.world.enterprises[e].etype;
        let normal_batch = self.world.current_batch(p, d, etype);
        let base = self.world.products[p].row.reference_price
            * self.world.enterprises[e].price_factor
            * price_factor;
        let seller = self.world.enterprises[e].row.enterprise_id.clone();
        let product_id = self.world.products[p].row.product_id.clone();
        let prod_seq = self.world.products[p].seq;
        for u in 0..units {
            let batch = match planted_batch {
                Some(b) if u < planted_units => b,
                _ => normal_batch,
            };
            let mut code = None;
            if u < duplicates {
                let pool = &mut self.recent_codes[p];
                // Reuse a code another enterprise sold on an earlier day, so the planted sale is
                // the second one in time.
                if let Some(pos) = pool
                    .iter()
                    .position(|(_, seller, day)| *seller != e && *day < d)
                {
                    code = pool.remove(pos).map(|(c, _, _)| c);
                }
            }
            let code = match code {
                Some(c) => c,
                None => {
                    self.trace_serial[p] += 1;
                    let c = ids::make_trace_code(prod_seq, self.trace_serial[p])?;
                    // Only reported sales feed the pool of codes a duplicate may copy.
                    // Half the pool is kept for earlier days' codes.
                    if !suppressed {
                        let pool = &mut self.recent_codes[p];
                        if pool.iter().filter(|x| x.2 == d).count() < 32 {
                            if pool.len() >= 64 {
                                pool.pop_front();
                            }
                            pool.push_back((c.clone(), e, d));
                        }
                    }
                    c
                }
            };
            let noise = 1.0 + (self.rng.r#gen::<f64>() - 0.5) * 0.04;
            let seconds = 8 * 3600 + self.rng.gen_range(0..14 * 3600);
            if suppressed {
                continue;
            }
            let rec = SalesRecord {
                event_id: self.next_id(EventKind::Sales, d),
                event_time: self.at(d, seconds),
                enterprise_id: seller.clone(),
                product_id: product_id.clone(),
                batch_no: self.world.batches[batch].batch_no.clone(),
                quantity: 1,
                unit_price: round2(base * noise),
                buyer_id: None,
                trace_code: Some(code),
            };
            day.sales.push(rec);
        }
        Ok(())
    }
}

fn tier_rank(t: EnterpriseType) -> u8 {
    match t {
        EnterpriseType::Manufacturer => 0,
        EnterpriseType::Wholesaler => 1,
        EnterpriseType::ChainHq => 2,
        EnterpriseType::ChainStore | EnterpriseType::SinglePharmacy => 3,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One label row of `labels.csv`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct Label {
    /// Enterprise credit code.
    pub enterprise_id: String,
    /// Product id, empty for an enterprise-level anomaly.
    pub product_id: String,
    /// Anomaly kind (the indicator name for rule kinds).
    pub kind: String,
    /// First day of the window.
    pub start_date: NaiveDate,
    /// Last day of the window.
    pub end_date: NaiveDate,
}

/// Runs the simulator and writes the lake under `cfg.out`.
pub fn run(cfg: &SimConfig, cal: &Calendar) -> Result<SimSummary> {
    let end = check_config(cfg, cal)?;
    let started = Instant::now();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
    let mut world = World::build(&mut rng, cfg.enterprises, cfg.start)?;
    let anomalies = plan_anomalies(cfg, cal, &mut rng, &mut world, end);
    let mut engine = Engine::new(world, cal, rng, anomalies);

    std::fs::create_dir_all(&cfg.out).map_err(|e| CoreError::io(&cfg.out, e))?;
    let mut writer = LakeWriter::new(&cfg.out)?;
    let counts = engine.simulate_days(cfg, &mut writer)?;

    let world = &engine.world;
    write_reference(cfg, world, &mut writer)?;
    let labels = labels_of(world, &engine.anomalies);
    write_labels(&cfg.out.join("labels.csv"), &labels)?;

    let records: Vec<(String, u64)> = EventKind::ALL
        .iter()
        .zip(counts.iter())
        .map(|(k, c)| (k.as_str().to_string(), *c))
        .collect();
    let summary = SimSummary {
        seed: cfg.seed,
        enterprises: world.enterprises.len(),
        products: world.products.len(),
        start: cfg.start,
        end,
        total_records: counts.iter().sum(),
        records,
        labels: labels.len(),
        seconds: started.elapsed().as_secs_f64(),
    };
    let manifest =
        serde_json::to_string_pretty(&summary).map_err(|e| CoreError::Internal(e.to_string()))?;
    let path = cfg.out.join("manifest.json");
    std::fs::write(&path, manifest + "\n").map_err(|e| CoreError::io(&path, e))?;
    Ok(summary)
}

/// Checks the settings of a run; returns its last day.
fn check_config(cfg: &SimConfig, cal: &Calendar) -> Result<NaiveDate> {
    if cfg.enterprises < 20 {
        return Err(CoreError::Config(
            "--enterprises must be at least 20 (a province needs every tier)".into(),
        ));
    }
    if cfg.days == 0 {
        return Err(CoreError::Config("--days must be at least 1".into()));
    }
    let end = cfg.start + Duration::days(i64::from(cfg.days) - 1);
    for d in [cfg.start, end, end + Duration::days(20)] {
        if !cal.covers(d) {
            return Err(CoreError::Config(format!(
                "the working-day calendar covers {}–{} only; {d} is outside it (choose --start so that the run ends by {}-12-10)",
                cal.years().start(),
                cal.years().end(),
                cal.years().end()
            )));
        }
    }
    Ok(end)
}

/// Plans the run's anomalies in its last `cfg.anomaly_days` days (none when the run is too
/// short to give them four weeks of history).
fn plan_anomalies(
    cfg: &SimConfig,
    cal: &Calendar,
    rng: &mut Xoshiro256PlusPlus,
    world: &mut World,
    end: NaiveDate,
) -> Vec<Anomaly> {
    let per_kind = cfg
        .anomalies_per_kind
        .unwrap_or_else(|| (cfg.enterprises / 40).max(3));
    // Anomalies need four weeks of history before them.
    let earliest = cfg.start + Duration::days(35);
    let from = (end - Duration::days(i64::from(cfg.anomaly_days.max(1)) - 1)).max(earliest);
    if from <= end && per_kind > 0 {
        anomalies::plan(rng, world, per_kind, from, end, &|d| {
            cal.is_working_day(d).unwrap_or(false)
        })
    } else {
        Vec::new()
    }
}

/// Writes the reference tables: enterprises, products, batches, and the leads' registered
/// contacts.
fn write_reference(cfg: &SimConfig, world: &World, writer: &mut LakeWriter) -> Result<()> {
    let enterprises: Vec<_> = world.enterprises.iter().map(|e| e.row.clone()).collect();
    let products: Vec<_> = world.products.iter().map(|p| p.row.clone()).collect();
    writer.write_reference(&enterprises, &products, &world.batches)?;
    // The leads' registered contacts (and the simulated webhook secrets), from a random stream
    // of their own so that the records of a seed do not change.
    let (contacts, secrets) = pharmwatch_core::contacts::simulate(
        &enterprises,
        cfg.seed,
        &pharmwatch_core::contacts::SimulatedEndpoints::default(),
    );
    pharmwatch_core::contacts::write_file(
        &cfg.out.join(pharmwatch_core::lake::REFERENCE_DIR),
        &contacts,
        &secrets,
    )?;
    Ok(())
}

/// The labels of the planted anomalies, sorted.
fn labels_of(world: &World, anomalies: &[Anomaly]) -> Vec<Label> {
    let mut labels: Vec<Label> = anomalies
        .iter()
        .map(|a| Label {
            enterprise_id: world.enterprises[a.ent].row.enterprise_id.clone(),
            product_id: match a.kind {
                AnomalyKind::ReportingStopped | AnomalyKind::SubtleDiversion => String::new(),
                _ => a
                    .prod
                    .map(|p| world.products[p].row.product_id.clone())
                    .unwrap_or_default(),
            },
            kind: a.kind.as_str().to_string(),
            start_date: a.start,
            end_date: a.end,
        })
        .collect();
    labels.sort();
    labels
}

/// Writes labels as CSV.
pub fn write_labels(path: &Path, labels: &[Label]) -> Result<()> {
    pharmwatch_core::lake::write_csv(path, labels)
}

/// Reads labels from CSV.
pub fn read_labels(path: &Path) -> Result<Vec<Label>> {
    pharmwatch_core::lake::read_csv(path)
}
