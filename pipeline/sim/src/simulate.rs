//! Province simulator: a seeded, day-by-day model of drug supply in Inner Mongolia that writes
//! the lake, the reference tables and the labels of the anomalies it planted.
//!
//! Each day, in order: manufacturers produce on working days (a batch when stock falls below
//! the reorder point); orders placed the day before are delivered on working days (a sale at
//! the supplier and a purchase at the buyer, same batch); pharmacies sell to patients (one
//! record per package, each with its own traceability code), with weekly seasonality and
//! holidays; supervisors sample products and inspect enterprises on working days; hidden losses
//! happen; every holding reports its closing stock; holdings below their reorder point order up
//! to their order-up-to level. `Engine::simulate_day` runs these phases, one helper each. The
//! noise of a real province ([`noise`]: promotions, price changes, products and enterprises
//! coming and going, returns, miscounts, closed days, late files, bad rows) acts inside these
//! phases; it is on in `simulate` and `demo` and off ([`noise::NoiseConfig::off`]) for tests
//! of exact figures.
//!
//! Invariants: the same seed and arguments give the same bytes; without planted anomalies every
//! holding reconciles (opening + in − out = closing) up to the stocktake miscounts of the noise
//! (a reported stock off by a few packages for a day) and no batch is sold expired or failed; a
//! label's window is the span in which its anomaly shows in the records. With noise off the
//! records are those of the simulator before the noise model, byte for byte.

pub mod anomalies;
mod columns;
mod files;
pub mod noise;
pub mod world;

use std::collections::{HashMap, HashSet, VecDeque};
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
use files::{DayFile, FileWriters};
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
    /// The noise of a real province (on by default in `demo` and `simulate`).
    pub noise: noise::NoiseConfig,
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
    /// Records written a day late (noise; in the next day's partition).
    #[serde(skip_serializing_if = "is_zero")]
    pub late_records: u64,
    /// Bad rows written to `OUT/inbox/` (noise; never in the lake).
    #[serde(skip_serializing_if = "is_zero")]
    pub bad_rows: u64,
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

impl DayRecords {
    /// Records of the day, every kind.
    fn len(&self) -> usize {
        self.production.len()
            + self.sales.len()
            + self.purchase.len()
            + self.inventory.len()
            + self.product_test.len()
            + self.inspection.len()
    }

    /// Empty, with room for `sizes` records per kind (in the order of [`EventKind::ALL`]) and
    /// an eighth more: a day's records fill their vectors without copying them over and over.
    fn with_capacity(sizes: [usize; 6]) -> Self {
        let [
            production,
            sales,
            purchase,
            inventory,
            product_test,
            inspection,
        ] = sizes.map(|n| n + n / 8);
        DayRecords {
            production: Vec::with_capacity(production),
            sales: Vec::with_capacity(sales),
            purchase: Vec::with_capacity(purchase),
            inventory: Vec::with_capacity(inventory),
            product_test: Vec::with_capacity(product_test),
            inspection: Vec::with_capacity(inspection),
        }
    }

    /// Records of the day per kind, in the order of [`EventKind::ALL`].
    fn sizes(&self) -> [usize; 6] {
        [
            self.production.len(),
            self.sales.len(),
            self.purchase.len(),
            self.inventory.len(),
            self.product_test.len(),
            self.inspection.len(),
        ]
    }

    /// The day's files as file `name` of the partition of `d`: one per kind with records,
    /// in the order of [`EventKind::ALL`].
    fn files(&self, d: NaiveDate, name: &'static str) -> Result<Vec<DayFile>> {
        let files = [
            DayFile::new(d, name, &self.production)?,
            DayFile::new(d, name, &self.sales)?,
            DayFile::new(d, name, &self.purchase)?,
            DayFile::new(d, name, &self.inventory)?,
            DayFile::new(d, name, &self.product_test)?,
            DayFile::new(d, name, &self.inspection)?,
        ];
        Ok(files.into_iter().flatten().collect())
    }
}

/// Adds the day's files of `day` (file `name` of the partition of `d`) to `files`, and its
/// counts per kind (in the order of [`EventKind::ALL`]) to `counts`.
fn add_files(
    files: &mut Vec<DayFile>,
    d: NaiveDate,
    name: &'static str,
    day: &DayRecords,
    counts: &mut [u64; 6],
) -> Result<()> {
    for (total, n) in counts.iter_mut().zip(day.sizes()) {
        *total += n as u64;
    }
    files.extend(day.files(d, name)?);
    Ok(())
}

/// Moves the records of `from` that pass `take` to `to`, keeping the order of both.
fn split_by<T>(from: &mut Vec<T>, to: &mut Vec<T>, take: impl Fn(&T) -> bool) {
    to.extend(from.extract_if(.., |r| take(r)));
}

/// Record `i` of `records` as a JSON object.
fn pick_json<T: Serialize>(records: &[T], i: usize) -> Option<serde_json::Value> {
    records.get(i).and_then(|r| serde_json::to_value(r).ok())
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
    /// Enterprises closed today (noise: not yet open, gone, or their day off), by index: they
    /// sell nothing, report nothing, order nothing and take no deliveries.
    closed: Vec<bool>,
}

/// How one retail holding sells today, after the anomalies active on it.
struct RetailTerms {
    /// Expected units sold.
    lambda: f64,
    /// Factor on the enterprise's price.
    price_factor: f64,
    /// A planted (expired or failed) batch some units come from.
    planted_batch: Option<usize>,
    /// Units a day from the planted batch (its anomaly's magnitude).
    planted_per_day: i64,
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
    /// The day of the last event id and its `YYYYMMDD` stamp.
    id_day: (NaiveDate, String),
    /// Records per kind of the day before (the room the next day's vectors start with).
    day_sizes: [usize; 6],
    tz: FixedOffset,
    noise: noise::Noise,
    /// Records written a day late (noise).
    late_records: u64,
    /// Bad rows written to the inbox (noise).
    bad_rows: u64,
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
        noise: noise::Noise,
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
            id_day: (NaiveDate::MIN, String::new()),
            day_sizes: [0; 6],
            tz: FixedOffset::east_opt(SHANGHAI_OFFSET_SECONDS).expect("UTC+8 is a valid offset"),
            noise,
            late_records: 0,
            bad_rows: 0,
        }
    }

    /// Simulates every day of the run and writes its records with `threads` threads in all
    /// (this one and `threads − 1` file writers, see [`files`]); returns the records written
    /// per event kind, in the order of [`EventKind::ALL`].
    fn simulate_days(&mut self, cfg: &SimConfig, threads: usize) -> Result<[u64; 6]> {
        let queue = files::Queue::default();
        std::thread::scope(|scope| {
            let workers = threads.saturating_sub(1);
            let mut files = FileWriters::start(scope, &cfg.out, &queue, workers);
            let simulated = self.simulate_days_into(cfg, &mut files);
            // Every queued file is written (or has failed) before the run goes on.
            let written = files.finish();
            let counts = simulated?;
            written?;
            Ok(counts)
        })
    }

    /// Simulates every day of the run, handing its files to `files`.
    fn simulate_days_into(
        &mut self,
        cfg: &SimConfig,
        files: &mut FileWriters<'_>,
    ) -> Result<[u64; 6]> {
        let bar =
            pharmwatch_core::progress::bar(cfg.progress, u64::from(cfg.days), "simulating days");
        let mut counts = [0u64; 6];
        for i in 0..cfg.days {
            let d = cfg.start + Duration::days(i64::from(i));
            let mut day = self.simulate_day(d)?;
            self.write_bad_rows(&cfg.out, d, &day)?;
            // Late files land in the next day's partition, with their true event time.
            let late = self.split_late(&mut day);
            let mut day_files = Vec::new();
            add_files(&mut day_files, d, "part-00000.parquet", &day, &mut counts)?;
            if let Some(late) = late {
                let next = d + Duration::days(1);
                self.late_records += late.len() as u64;
                add_files(
                    &mut day_files,
                    next,
                    "late-00000.parquet",
                    &late,
                    &mut counts,
                )?;
            }
            // The records are freed on the thread that made them; only batches cross threads.
            drop(day);
            files.write_day(day_files)?;
            bar.inc(1);
            bar.set_message(format!("{d}: {} records", counts.iter().sum::<u64>()));
        }
        bar.finish_and_clear();
        Ok(counts)
    }

    /// Takes today's records of the enterprises whose upload is late today (noise) out of
    /// `day`: production, sales, purchases and stock of one enterprise travel together.
    fn split_late(&mut self, day: &mut DayRecords) -> Option<DayRecords> {
        if !self.noise.cfg.enabled || self.noise.cfg.late_rate <= 0.0 {
            return None;
        }
        let mut late_ids: HashSet<&str> = HashSet::new();
        for e in &self.world.enterprises {
            if self.noise.late() {
                late_ids.insert(&e.row.enterprise_id);
            }
        }
        if late_ids.is_empty() {
            return None;
        }
        let is_late = |id: &str| late_ids.contains(id);
        let mut late = DayRecords::default();
        split_by(&mut day.production, &mut late.production, |r| {
            is_late(&r.enterprise_id)
        });
        split_by(&mut day.sales, &mut late.sales, |r| {
            is_late(&r.enterprise_id)
        });
        split_by(&mut day.purchase, &mut late.purchase, |r| {
            is_late(&r.enterprise_id)
        });
        split_by(&mut day.inventory, &mut late.inventory, |r| {
            is_late(&r.enterprise_id)
        });
        Some(late)
    }

    /// Writes today's bad rows (noise) to `OUT/inbox/KIND-DATE.ndjson`: bad twins of some of
    /// the day's sales, purchases and stock records, each with one defect the platform's
    /// validation rejects. The lake never holds them.
    fn write_bad_rows(&mut self, out: &Path, d: NaiveDate, day: &DayRecords) -> Result<()> {
        let n = self.noise.bad_rows(day.len());
        if n == 0 {
            return Ok(());
        }
        let mut lines: [Vec<String>; 3] = Default::default();
        for _ in 0..n {
            let kind = self.noise.index(3);
            let defect = self.noise.index(noise::DEFECTS.len());
            let value = match kind {
                0 => pick_json(&day.sales, self.noise.index(day.sales.len())),
                1 => pick_json(&day.purchase, self.noise.index(day.purchase.len())),
                _ => pick_json(&day.inventory, self.noise.index(day.inventory.len())),
            };
            if let Some(v) = value {
                lines[kind].push(noise::corrupt(v, defect));
                self.bad_rows += 1;
            }
        }
        let dir = out.join("inbox");
        std::fs::create_dir_all(&dir).map_err(|e| CoreError::io(&dir, e))?;
        let kinds = [EventKind::Sales, EventKind::Purchase, EventKind::Inventory];
        for (kind, lines) in kinds.iter().zip(lines) {
            if lines.is_empty() {
                continue;
            }
            let path = dir.join(format!("{}-{}.ndjson", kind.as_str(), d.format("%Y-%m-%d")));
            std::fs::write(&path, lines.join("\n") + "\n").map_err(|e| CoreError::io(&path, e))?;
        }
        Ok(())
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
            EventKind::Production => (0, 'M'),
            EventKind::Sales => (1, 'S'),
            EventKind::Purchase => (2, 'P'),
            EventKind::Inventory => (3, 'I'),
            EventKind::ProductTest => (4, 'T'),
            EventKind::Inspection => (5, 'X'),
        };
        self.counters[i] += 1;
        // The day's stamp is formatted once a day, not once a record.
        if self.id_day.0 != d {
            self.id_day = (d, d.format("%Y%m%d").to_string());
        }
        let mut id = String::with_capacity(1 + 8 + 9);
        id.push(prefix);
        id.push_str(&self.id_day.1);
        push_padded(&mut id, self.counters[i], 9);
        id
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
        let mut day = DayRecords::with_capacity(self.day_sizes);
        self.index_active(d);
        // 0. The day's noise: promotions and price changes start, products come and go.
        for _ in self.noise.start_day(&mut self.world, d) {
            self.recent_runs.push(VecDeque::new());
        }
        let today = self.today(d)?;

        // 1. Production, on working days.
        if today.working {
            self.produce(&mut day, d);
        }

        // 2. Deliveries due today, upstream tiers first; then the planted ones.
        self.deliver_due(&mut day, &today);
        self.deliver_planted(&mut day, &today);

        // 3. Retail sales to patients; returns to suppliers (noise).
        self.sell_retail(&mut day, &today)?;
        self.return_stock(&mut day, &today);

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
        self.place_orders(d, &today.closed)?;
        self.day_sizes = day.sizes();
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
        let spring = holiday.as_deref() == Some("春节");
        let closed = if self.noise.cfg.enabled {
            (0..n_ent)
                .map(|e| self.noise.closed(e, d, spring))
                .collect()
        } else {
            vec![false; n_ent]
        };
        Ok(Today {
            date: d,
            working,
            season,
            stopped,
            closed,
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
            // A closed buyer takes the delivery on the next day it is open.
            if o.due <= d && !today.closed[self.world.holdings[o.holding].ent] {
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
                    // Pre-stocking for the window, with room to spare.
                    ((lam * a.factor * 1.5 + 3.0) * days as f64).ceil() as i64
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
            .filter(|&e| self.world.enterprises[e].etype.is_retail() && !today.closed[e])
            .collect();
        for e in retail {
            let holdings = self.world.enterprises[e].holdings.clone();
            for h in holdings {
                self.sell_holding(day, today, e, h)?;
            }
            // A product sold that was never bought.
            if let Some(a) = self.active_on_ent(AnomalyKind::SoldNotBought, e) {
                let p = self.anomalies[a].prod.unwrap_or_default();
                let n = self.poisson(self.anomalies[a].factor).max(1);
                self.sell_units(day, d, e, p, n, 1.0, None, 0, 0, today.stopped[e])?;
            }
        }
        Ok(())
    }

    /// Phase 3, returns (noise): now and then a retail holding sends a few packages back to
    /// its supplier (damaged, near expiry, overstocked); an enterprise closing today sends all
    /// its stock back. A return is a sale to the supplier and a purchase at the supplier, at
    /// the supplier's price, so both sides still reconcile.
    fn return_stock(&mut self, day: &mut DayRecords, today: &Today) {
        if !self.noise.cfg.enabled {
            return;
        }
        let d = today.date;
        for h in 0..self.world.holdings.len() {
            let (ent, stock) = (self.world.holdings[h].ent, self.world.holdings[h].stock);
            if !self.world.enterprises[ent].etype.is_retail() || today.closed[ent] {
                continue;
            }
            let qty = if self.noise.closes_on(ent, d) {
                stock
            } else {
                self.noise.returned(stock)
            };
            if qty > 0 {
                self.return_to_supplier(day, today, h, qty);
            }
        }
    }

    /// Returns `qty` packages of retail holding `h` to its in-province supplier.
    fn return_to_supplier(&mut self, day: &mut DayRecords, today: &Today, h: usize, qty: i64) {
        let d = today.date;
        let (ent, prod) = (self.world.holdings[h].ent, self.world.holdings[h].prod);
        let Supplier::Inside(s) = self.world.holdings[h].supplier else {
            return;
        };
        let Some(&sh) = self.world.holding_index.get(&(s, prod)) else {
            return;
        };
        if today.stopped[ent] || today.stopped[s] {
            return;
        }
        self.world.holdings[h].stock -= qty;
        self.world.holdings[sh].stock += qty;
        let etype = self.world.enterprises[ent].etype;
        let batch = self.world.current_batch(prod, d, etype);
        let supplier = &self.world.enterprises[s];
        let price = round2(
            self.world.products[prod].row.reference_price
                * price_level(supplier.etype)
                * supplier.price_factor,
        );
        let supplier_code = supplier.row.enterprise_id.clone();
        let code = self.world.enterprises[ent].row.enterprise_id.clone();
        let product_id = self.world.products[prod].row.product_id.clone();
        let batch_no = self.world.batches[batch].batch_no.clone();
        let seconds = 17 * 3600 + self.noise.index(3600) as u32;
        let time = self.at(d, seconds);
        day.sales.push(SalesRecord {
            event_id: self.next_id(EventKind::Sales, d),
            event_time: time,
            enterprise_id: code.clone(),
            product_id: product_id.clone(),
            batch_no: batch_no.clone(),
            quantity: qty,
            unit_price: price,
            buyer_id: Some(supplier_code.clone()),
            trace_code: None,
        });
        day.purchase.push(PurchaseRecord {
            event_id: self.next_id(EventKind::Purchase, d),
            event_time: time,
            enterprise_id: supplier_code,
            supplier_id: code,
            product_id,
            batch_no,
            quantity: qty,
            unit_price: price,
        });
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
            terms.planted_per_day.min(sold)
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
            planted_per_day: 0,
            duplicates: 0,
        };
        if let Some(a) = self.active_on_holding(AnomalyKind::SalesSpike, h) {
            terms.lambda = lam0 * self.anomalies[a].factor;
        }
        if let Some(a) = self.active_on_holding(AnomalyKind::SpecialDrugVolume, h) {
            terms.lambda = lam0 * self.anomalies[a].factor;
        }
        if let Some(a) = self.active_on_holding(AnomalyKind::SubtleDiversion, h) {
            // More sales at lower prices: a strength of 1.6 sells 1.6× at 0.8 of the price.
            let strength = self.anomalies[a].factor;
            terms.lambda = lam0 * strength;
            terms.price_factor = 1.0 - (strength - 1.0) / 3.0;
        }
        if let Some(a) = self.active_on_holding(AnomalyKind::PriceBelowMedian, h) {
            terms.price_factor = self.anomalies[a].factor;
        }
        let (lift, discount) = self.noise.promotion(h, d);
        terms.lambda *= lift;
        terms.price_factor *= discount;
        if let Some(a) = self.active_on_holding(AnomalyKind::ExpiredBatchSold, h) {
            terms.planted_batch = self.anomalies[a].batch;
            terms.planted_per_day = self.anomalies[a].factor as i64;
        }
        if let Some(a) = self.active_on_holding(AnomalyKind::FailedBatchSold, h) {
            terms.planted_batch = self.anomalies[a].batch;
            terms.planted_per_day = self.anomalies[a].factor as i64;
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
        if let Some(a) = self.active_on_holding(AnomalyKind::TraceCodeDuplicate, h) {
            terms.duplicates = self.anomalies[a].factor as i64;
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
                        self.world.holdings[h].stock -= (a.factor as i64).min(stock).max(0);
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
            let (ent, prod, stock) = {
                let hd = &self.world.holdings[h];
                (hd.ent, hd.prod, hd.stock)
            };
            if today.stopped[ent] || today.closed[ent] || (stock == 0 && self.noise.delisted[h]) {
                continue;
            }
            // A stocktake miscount (noise) is in the report only, not in the stock; the last
            // count of a closing shop, emptied by its returns, is exact.
            let miscount = if self.noise.closes_on(ent, d) {
                0
            } else {
                self.noise.miscount()
            };
            let counted = (stock + miscount).max(0);
            let rec = InventorySnapshot {
                event_id: self.next_id(EventKind::Inventory, d),
                event_time: snapshot_time,
                enterprise_id: self.world.enterprises[ent].row.enterprise_id.clone(),
                product_id: self.world.products[prod].row.product_id.clone(),
                quantity: counted,
            };
            day.inventory.push(rec);
        }
    }

    /// Phase 7: every bought holding below its reorder point, with no order on its way,
    /// orders up to its order-up-to level for the next working day.
    fn place_orders(&mut self, d: NaiveDate, closed: &[bool]) -> Result<()> {
        let due = self.next_working(d)?;
        for h in 0..self.world.holdings.len() {
            let hd = &self.world.holdings[h];
            if matches!(hd.supplier, Supplier::Produces) || hd.outstanding || hd.stock >= hd.reorder
            {
                continue;
            }
            if self.noise.cfg.enabled
                && (closed[hd.ent] || self.noise.delisted[h] || self.noise.winding_down(hd.ent, d))
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
                    let c = trace_code(prod_seq, self.trace_serial[p])?;
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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `ids::make_trace_code(product_seq, serial)` (a code per retail package), written without
/// the formatting machinery where both numbers fit their digits; otherwise its error.
fn trace_code(product_seq: u32, serial: u64) -> Result<String> {
    if product_seq >= 10_000_000 || serial >= 10_000_000_000_000 {
        return Ok(ids::make_trace_code(product_seq, serial)?);
    }
    let mut code = String::with_capacity(7 + 13);
    push_padded(&mut code, u64::from(product_seq), 7);
    push_padded(&mut code, serial, 13);
    Ok(code)
}

/// Appends `n` in decimal to `s`, zero-padded to `width` digits: what `{n:0width$}` writes,
/// without the formatting machinery (an event id per record).
fn push_padded(s: &mut String, n: u64, width: usize) {
    // The digits, filled from the right after the zeros of the padding.
    let mut digits = [b'0'; 20];
    let mut first = digits.len();
    let mut rest = n;
    loop {
        first -= 1;
        digits[first] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for _ in digits.len()..width {
        s.push('0');
    }
    let from = first.min(digits.len().saturating_sub(width));
    // Decimal digits are ASCII: the conversion cannot fail.
    if let Ok(text) = std::str::from_utf8(&digits[from..]) {
        s.push_str(text);
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One label row of `labels.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
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
    /// Magnitude drawn for the anomaly, in the unit of its kind's range
    /// ([`AnomalyKind::magnitude_range`]); empty in label files written before it existed.
    #[serde(default)]
    pub magnitude: Option<f64>,
}

/// Runs the simulator and writes the lake under `cfg.out`, on every available core.
pub fn run(cfg: &SimConfig, cal: &Calendar) -> Result<SimSummary> {
    run_on(cfg, cal, default_threads())
}

/// The threads a run uses by default: one per available core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Runs the simulator with `threads` threads in all (1: everything on the calling thread) and
/// writes the lake under `cfg.out`. The files are the same bytes for any number of threads.
pub fn run_on(cfg: &SimConfig, cal: &Calendar, threads: usize) -> Result<SimSummary> {
    let end = check_config(cfg, cal)?;
    let started = Instant::now();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
    let mut world = World::build(&mut rng, cfg.enterprises, cfg.start)?;
    let anomalies = plan_anomalies(cfg, cal, &mut rng, &mut world, end);
    let noise = plan_noise(cfg, &mut world, &anomalies);
    let mut engine = Engine::new(world, cal, rng, anomalies, noise);

    std::fs::create_dir_all(&cfg.out).map_err(|e| CoreError::io(&cfg.out, e))?;
    let counts = engine.simulate_days(cfg, threads)?;
    let mut writer = LakeWriter::new(&cfg.out)?;

    let world = &engine.world;
    write_reference(cfg, world, &mut writer)?;
    let labels = labels_of(world, &engine.anomalies);
    write_labels(&cfg.out.join("labels.csv"), &labels)?;
    write_life(&cfg.out, world, &engine.noise)?;

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
        late_records: engine.late_records,
        bad_rows: engine.bad_rows,
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

/// The noise of the run, on its own random stream; the enterprises and holdings of planted
/// anomalies are kept from opening, closing and leaving.
fn plan_noise(cfg: &SimConfig, world: &mut World, anomalies: &[Anomaly]) -> noise::Noise {
    let mut protected_ent = vec![false; world.enterprises.len()];
    let mut protected_holding = vec![false; world.holdings.len()];
    for a in anomalies {
        protected_ent[a.ent] = true;
        for &h in a.holding.iter().chain(&a.holdings) {
            protected_holding[h] = true;
        }
    }
    noise::Noise::new(
        &cfg.noise,
        cfg.seed,
        world,
        &protected_ent,
        &protected_holding,
        cfg.start,
        cfg.days,
    )
}

/// Writes the reference tables: enterprises, products, batches, the leads' registered
/// contacts and the inspector roster.
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
    let reference = cfg.out.join(pharmwatch_core::lake::REFERENCE_DIR);
    pharmwatch_core::contacts::write_file(&reference, &contacts, &secrets)?;
    // The inspectors the province's random inspection plans draw from (two per region).
    use pharmwatch_casework::inspection;
    inspection::write_roster(
        &reference.join(inspection::ROSTER_FILE),
        &inspection::simulated_roster(2),
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
            magnitude: Some((a.factor * 1000.0).round() / 1000.0),
        })
        .collect();
    labels.sort_by(|a, b| {
        (
            &a.enterprise_id,
            &a.product_id,
            &a.kind,
            a.start_date,
            a.end_date,
        )
            .cmp(&(
                &b.enterprise_id,
                &b.product_id,
                &b.kind,
                b.start_date,
                b.end_date,
            ))
    });
    labels
}

/// File (in the lake's root) of the enterprises that open or close during the run (noise):
/// `enterprise_id,opened_on,closed_on`, a date empty where the enterprise neither opens nor
/// closes. The dates a real platform keeps with the licence, which the reference table of the
/// record schemas has no field for; evaluation reads them to count only registered days.
pub const LIFE_FILE: &str = "enterprise_life.csv";

/// One row of [`LIFE_FILE`].
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LifeRow {
    /// Enterprise credit code.
    pub enterprise_id: String,
    /// First day open, where it opens during the run.
    pub opened_on: Option<NaiveDate>,
    /// Last day open, where it closes during the run.
    pub closed_on: Option<NaiveDate>,
}

/// Writes [`LIFE_FILE`] when an enterprise opens or closes during the run (no file otherwise).
fn write_life(out: &Path, world: &World, noise: &noise::Noise) -> Result<()> {
    let rows: Vec<LifeRow> = noise
        .life
        .iter()
        .enumerate()
        .filter(|(_, l)| l.opens.is_some() || l.closes.is_some())
        .map(|(e, l)| LifeRow {
            enterprise_id: world.enterprises[e].row.enterprise_id.clone(),
            opened_on: l.opens,
            closed_on: l.closes,
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    pharmwatch_core::lake::write_csv(&out.join(LIFE_FILE), &rows)
}

/// Writes labels as CSV.
pub fn write_labels(path: &Path, labels: &[Label]) -> Result<()> {
    pharmwatch_core::lake::write_csv(path, labels)
}

/// Reads labels from CSV.
pub fn read_labels(path: &Path) -> Result<Vec<Label>> {
    pharmwatch_core::lake::read_csv(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_codes_are_those_of_the_id_module() {
        for seq in [0, 1, 42, 9_999_999, 10_000_000, u32::MAX] {
            for serial in [0, 1, 123_456_789, 9_999_999_999_999, 10_000_000_000_000] {
                let ours = trace_code(seq, serial).map_err(|e| e.to_string());
                let theirs =
                    ids::make_trace_code(seq, serial).map_err(|e| CoreError::from(e).to_string());
                assert_eq!(ours, theirs, "{seq} {serial}");
            }
        }
    }

    #[test]
    fn padded_numbers_are_what_format_writes() {
        let mut n = 0u64;
        let mut values = vec![0, 1, 9, 10, 99, 999_999_999, 1_000_000_000, u64::MAX];
        while n < u64::MAX / 7 {
            values.push(n);
            n = n * 7 + 3;
        }
        for v in values {
            for width in [0, 1, 9, 13, 25] {
                let mut s = String::from("S");
                push_padded(&mut s, v, width);
                assert_eq!(s, format!("S{v:0width$}"), "{v} to {width}");
            }
        }
    }
}
