//! Shared fixtures for pharmwatch's end-to-end tests: small hand-made lakes whose expected
//! indicator hits are known exactly.

use std::path::Path;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate};

use pharmwatch::lake::LakeWriter;
use pharmwatch_schemas::ids::make_credit_code;
use pharmwatch_schemas::{
    Batch, Enterprise, EnterpriseType, EventKind, InventorySnapshot, Product, ProductTestRecord,
    ProductionRecord, PurchaseRecord, SalesRecord, SpecialClass, TestKind, TestResult, Validate,
    biz_date,
};
use serde::Serialize;

/// Day `n` of the fixture calendar (day 1 = 2026-09-01).
pub fn day(n: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 9, 1).expect("valid date") + Duration::days(n - 1)
}

/// A time on day `n`, Asia/Shanghai.
pub fn at(n: i64, hour: u32) -> DateTime<FixedOffset> {
    let tz = FixedOffset::east_opt(8 * 3600).expect("valid offset");
    day(n)
        .and_hms_opt(hour, 0, 0)
        .expect("valid time")
        .and_local_timezone(tz)
        .single()
        .expect("fixed offset")
}

/// Credit code of fixture enterprise `i`.
pub fn ent(i: u64) -> String {
    make_credit_code('9', '1', "150100", 100 + i).expect("valid code")
}

/// A hand-made lake: reference tables and events by day.
#[derive(Default)]
pub struct Fixture {
    /// Enterprises.
    pub enterprises: Vec<Enterprise>,
    /// Products.
    pub products: Vec<Product>,
    /// Batches.
    pub batches: Vec<Batch>,
    /// Sales.
    pub sales: Vec<SalesRecord>,
    /// Purchases.
    pub purchases: Vec<PurchaseRecord>,
    /// Production.
    pub production: Vec<ProductionRecord>,
    /// Inventory snapshots.
    pub inventory: Vec<InventorySnapshot>,
    /// Product tests.
    pub tests: Vec<ProductTestRecord>,
    seq: u64,
}

impl Fixture {
    /// Three pharmacies (enterprises 1–3), one wholesaler (4); products P1 (ordinary, price
    /// 10) and P2 (ephedrine, price 20); batch B1 of each (good until 2028).
    pub fn new() -> Self {
        let mut f = Fixture::default();
        for i in 1..=4 {
            let t = if i == 4 {
                EnterpriseType::Wholesaler
            } else {
                EnterpriseType::SinglePharmacy
            };
            f.enterprises.push(Enterprise {
                enterprise_id: ent(i),
                name: format!("测试药房{i}"),
                enterprise_type: t,
                region_code: "150100".into(),
                licence_no: format!("蒙DA{:09}", i),
                parent_id: None,
                lead_name: "张伟".into(),
                lead_phone: "13800000000".into(),
                lead_email: format!("lead{i}@test.example.com"),
                credit_grade: "A".into(),
            });
        }
        for (p, class, price) in [
            ("P1", SpecialClass::None, 10.0),
            ("P2", SpecialClass::Ephedrine, 20.0),
        ] {
            f.products.push(Product {
                product_id: p.into(),
                approval_no: "国药准字H20200001".into(),
                name: format!("{p} 片"),
                dosage_form: "片剂".into(),
                special_class: class,
                manufacturer_id: make_credit_code('9', '1', "110000", 7).expect("valid"),
                reference_price: price,
                shelf_life_months: 24,
            });
            f.batch(
                p,
                "B1",
                day(-100),
                NaiveDate::from_ymd_opt(2028, 1, 1).expect("date"),
                true,
            );
        }
        f
    }

    /// Adds a batch.
    pub fn batch(
        &mut self,
        product: &str,
        batch: &str,
        produced: NaiveDate,
        expiry: NaiveDate,
        released: bool,
    ) {
        self.batches.push(Batch {
            product_id: product.into(),
            batch_no: batch.into(),
            manufacturer_id: make_credit_code('9', '1', "110000", 7).expect("valid"),
            production_date: produced,
            expiry_date: expiry,
            released,
        });
    }

    fn id(&mut self) -> String {
        self.seq += 1;
        format!("F{:08}", self.seq)
    }

    /// A retail sale.
    #[allow(clippy::too_many_arguments)]
    pub fn sell(
        &mut self,
        d: i64,
        e: u64,
        p: &str,
        batch: &str,
        qty: i64,
        price: f64,
        code: Option<&str>,
    ) {
        let event_id = self.id();
        self.sales.push(SalesRecord {
            event_id,
            event_time: at(d, 10),
            enterprise_id: ent(e),
            product_id: p.into(),
            batch_no: batch.into(),
            quantity: qty,
            unit_price: price,
            buyer_id: None,
            trace_code: code.map(str::to_string),
        });
    }

    /// A purchase from the wholesaler (enterprise 4).
    pub fn buy(&mut self, d: i64, e: u64, p: &str, qty: i64) {
        let event_id = self.id();
        self.purchases.push(PurchaseRecord {
            event_id,
            event_time: at(d, 9),
            enterprise_id: ent(e),
            supplier_id: ent(4),
            product_id: p.into(),
            batch_no: "B1".into(),
            quantity: qty,
            unit_price: 7.0,
        });
    }

    /// A production run.
    pub fn produce(&mut self, d: i64, e: u64, p: &str, qty: i64) {
        let event_id = self.id();
        self.production.push(ProductionRecord {
            event_id,
            event_time: at(d, 9),
            enterprise_id: ent(e),
            product_id: p.into(),
            batch_no: "B1".into(),
            quantity: qty,
        });
    }

    /// A closing-stock snapshot.
    pub fn stock(&mut self, d: i64, e: u64, p: &str, qty: i64) {
        let event_id = self.id();
        self.inventory.push(InventorySnapshot {
            event_id,
            event_time: at(d, 23),
            enterprise_id: ent(e),
            product_id: p.into(),
            quantity: qty,
        });
    }

    /// A failed sampling test.
    pub fn fail_test(&mut self, d: i64, e: u64, p: &str, batch: &str) {
        let event_id = self.id();
        self.tests.push(ProductTestRecord {
            event_id,
            event_time: at(d, 11),
            enterprise_id: ent(e),
            product_id: p.into(),
            batch_no: batch.into(),
            test_kind: TestKind::Sampling,
            result: TestResult::Fail,
            test_item: None,
        });
    }

    /// Writes the lake under `dir`.
    pub fn write(&self, dir: &Path) -> pharmwatch::CoreResult<()> {
        // Written beside the lake first, then only the files whose bytes changed are moved in:
        // a real lake never rewrites a file, and the nightly job's day store keys each day on
        // its files' identities.
        let staging = dir.with_extension("staging");
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .map_err(|e| pharmwatch::CoreError::io(&staging, e))?;
        }
        self.write_all(&staging)?;
        sync_changed(&staging, dir)?;
        std::fs::remove_dir_all(&staging).map_err(|e| pharmwatch::CoreError::io(&staging, e))
    }

    fn write_all(&self, dir: &Path) -> pharmwatch::CoreResult<()> {
        let mut w = LakeWriter::new(dir)?;
        w.write_reference(&self.enterprises, &self.products, &self.batches)?;
        let mut days: Vec<NaiveDate> = Vec::new();
        days.extend(days_of(&self.sales));
        days.extend(days_of(&self.purchases));
        days.extend(days_of(&self.production));
        days.extend(days_of(&self.inventory));
        days.extend(days_of(&self.tests));
        days.sort();
        days.dedup();
        for d in days {
            write_on(&mut w, EventKind::Sales, d, &self.sales)?;
            write_on(&mut w, EventKind::Purchase, d, &self.purchases)?;
            write_on(&mut w, EventKind::Production, d, &self.production)?;
            write_on(&mut w, EventKind::Inventory, d, &self.inventory)?;
            write_on(&mut w, EventKind::ProductTest, d, &self.tests)?;
        }
        Ok(())
    }
}

/// Copies every file under `from` to the same place under `to` unless `to` already holds the
/// same bytes there.
fn sync_changed(from: &Path, to: &Path) -> pharmwatch::CoreResult<()> {
    let io = |p: &Path, e| pharmwatch::CoreError::io(p, e);
    for entry in std::fs::read_dir(from).map_err(|e| io(from, e))? {
        let src = entry.map_err(|e| io(from, e))?.path();
        let dst = to.join(src.file_name().unwrap_or_default());
        if src.is_dir() {
            std::fs::create_dir_all(&dst).map_err(|e| io(&dst, e))?;
            sync_changed(&src, &dst)?;
            continue;
        }
        let bytes = std::fs::read(&src).map_err(|e| io(&src, e))?;
        if std::fs::read(&dst).is_ok_and(|old| old == bytes) {
            continue;
        }
        std::fs::rename(&src, &dst).map_err(|e| io(&dst, e))?;
    }
    Ok(())
}

/// Business days of some records.
fn days_of<T: Validate>(records: &[T]) -> impl Iterator<Item = NaiveDate> + '_ {
    records.iter().map(|r| biz_date(r.event_time()))
}

/// Writes the records of business day `d` into its partition.
fn write_on<T: Validate + Serialize + Clone>(
    w: &mut LakeWriter,
    kind: EventKind,
    d: NaiveDate,
    records: &[T],
) -> pharmwatch::CoreResult<usize> {
    let on_day: Vec<T> = records
        .iter()
        .filter(|r| biz_date(r.event_time()) == d)
        .cloned()
        .collect();
    w.write_day(kind, d, &on_day)
}
