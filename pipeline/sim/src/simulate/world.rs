//! The province the simulator plays: regions, enterprises, products, supply relations and
//! stock policies. Built once from the seed, before the first simulated day.
//!
//! Invariants: every enterprise has a valid credit code and a licence number; a chain store's
//! supplier is its headquarters; a retail holding's supplier is a wholesaler or headquarters that
//! holds the same product; every holding's demand rate is the sum of the demand it serves.

use std::collections::HashMap;

use chrono::{Duration, NaiveDate};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_xoshiro::Xoshiro256PlusPlus;

use pharmwatch_core::regions::REGIONS;
use pharmwatch_schemas::ids::{self, ApprovalClass, LicenceBusiness};
use pharmwatch_schemas::{Batch, Enterprise, EnterpriseType, Product, SpecialClass};

/// Regions of out-of-province manufacturers (Beijing, Shanghai, Jiangsu Suzhou, Shandong Jinan,
/// Guangdong Shenzhen, Zhejiang Hangzhou, Hebei Shijiazhuang, Sichuan Chengdu).
const OUTSIDE_REGIONS: &[&str] = &[
    "110000", "310000", "320500", "370100", "440300", "330100", "130100", "510100",
];

const BRAND_WORDS: &[&str] = &[
    "康泰", "仁和", "同济", "华康", "天济", "益民", "百草", "福瑞", "恒生", "安泰", "济世", "瑞康",
    "德仁", "永安", "春晖", "吉祥", "宏达", "众康", "草原", "北疆", "蒙康", "鸿福", "利民", "金桥",
];
const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "朱", "胡", "郭",
    "巴特", "乌",
];
const GIVEN: &[&str] = &[
    "伟",
    "芳",
    "娜",
    "敏",
    "静",
    "磊",
    "强",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "涛",
    "明",
    "超",
    "霞",
    "平",
    "刚",
    "桂英",
    "尔",
    "日娜",
    "其其格",
];

/// Product templates: name and strength, dosage form, class, approval class, typical price.
const PRODUCT_TEMPLATES: &[(&str, &str, SpecialClass, ApprovalClass, f64)] = &[
    (
        "阿莫西林胶囊 0.25g×24粒",
        "胶囊剂",
        SpecialClass::None,
        ApprovalClass::Chemical,
        12.0,
    ),
    (
        "布洛芬缓释胶囊 0.3g×20粒",
        "胶囊剂",
        SpecialClass::None,
        ApprovalClass::Chemical,
        18.5,
    ),
    (
        "头孢克肟分散片 0.1g×6片",
        "片剂",
        SpecialClass::None,
        ApprovalClass::Chemical,
        26.0,
    ),
    (
        "蒙脱石散 3g×10袋",
        "散剂",
        SpecialClass::None,
        ApprovalClass::Chemical,
        15.0,
    ),
    (
        "奥美拉唑肠溶胶囊 20mg×14粒",
        "胶囊剂",
        SpecialClass::None,
        ApprovalClass::Chemical,
        21.0,
    ),
    (
        "硝苯地平控释片 30mg×7片",
        "片剂",
        SpecialClass::None,
        ApprovalClass::Chemical,
        33.0,
    ),
    (
        "二甲双胍缓释片 0.5g×30片",
        "片剂",
        SpecialClass::None,
        ApprovalClass::Chemical,
        16.0,
    ),
    (
        "阿托伐他汀钙片 20mg×7片",
        "片剂",
        SpecialClass::None,
        ApprovalClass::Chemical,
        45.0,
    ),
    (
        "氯雷他定片 10mg×6片",
        "片剂",
        SpecialClass::None,
        ApprovalClass::Chemical,
        19.0,
    ),
    (
        "板蓝根颗粒 10g×20袋",
        "颗粒剂",
        SpecialClass::None,
        ApprovalClass::TraditionalChinese,
        14.0,
    ),
    (
        "连花清瘟胶囊 0.35g×24粒",
        "胶囊剂",
        SpecialClass::None,
        ApprovalClass::TraditionalChinese,
        28.0,
    ),
    (
        "六味地黄丸 200丸",
        "丸剂",
        SpecialClass::None,
        ApprovalClass::TraditionalChinese,
        22.0,
    ),
    (
        "藿香正气水 10ml×10支",
        "酊剂",
        SpecialClass::None,
        ApprovalClass::TraditionalChinese,
        13.0,
    ),
    (
        "复方丹参滴丸 27mg×180丸",
        "滴丸剂",
        SpecialClass::None,
        ApprovalClass::TraditionalChinese,
        32.0,
    ),
    (
        "维生素C片 0.1g×100片",
        "片剂",
        SpecialClass::None,
        ApprovalClass::Chemical,
        6.0,
    ),
    (
        "对乙酰氨基酚片 0.5g×12片",
        "片剂",
        SpecialClass::None,
        ApprovalClass::Chemical,
        8.0,
    ),
    (
        "左氧氟沙星片 0.5g×4片",
        "片剂",
        SpecialClass::None,
        ApprovalClass::Chemical,
        24.0,
    ),
    (
        "苯磺酸氨氯地平片 5mg×28片",
        "片剂",
        SpecialClass::None,
        ApprovalClass::Chemical,
        29.0,
    ),
    (
        "复方盐酸伪麻黄碱缓释胶囊 10粒",
        "胶囊剂",
        SpecialClass::Ephedrine,
        ApprovalClass::Chemical,
        17.0,
    ),
    (
        "氨酚伪麻美芬片 12片",
        "片剂",
        SpecialClass::Ephedrine,
        ApprovalClass::Chemical,
        14.0,
    ),
    (
        "氯雷伪麻缓释片 6片",
        "片剂",
        SpecialClass::Ephedrine,
        ApprovalClass::Chemical,
        23.0,
    ),
    (
        "艾司唑仑片 1mg×20片",
        "片剂",
        SpecialClass::Psychotropic,
        ApprovalClass::Chemical,
        9.0,
    ),
    (
        "地西泮片 2.5mg×20片",
        "片剂",
        SpecialClass::Psychotropic,
        ApprovalClass::Chemical,
        7.0,
    ),
    (
        "盐酸吗啡缓释片 30mg×10片",
        "片剂",
        SpecialClass::Narcotic,
        ApprovalClass::Chemical,
        60.0,
    ),
    (
        "注射用头孢曲松钠 1g",
        "注射剂",
        SpecialClass::Injection,
        ApprovalClass::Chemical,
        11.0,
    ),
    (
        "胰岛素注射液 3ml:300单位",
        "注射剂",
        SpecialClass::ColdChain,
        ApprovalClass::Biological,
        68.0,
    ),
    (
        "流感病毒裂解疫苗 0.5ml",
        "注射剂",
        SpecialClass::Vaccine,
        ApprovalClass::Biological,
        98.0,
    ),
];

/// Stock policy (s, S) in days of demand, by tier: reorder below s, order up to S. A
/// manufacturer produces a standard batch of S − s days of demand whenever stock is below s.
pub fn stock_policy(t: EnterpriseType) -> (f64, f64) {
    match t {
        EnterpriseType::Manufacturer => (15.0, 27.0),
        EnterpriseType::Wholesaler => (12.0, 24.0),
        EnterpriseType::ChainHq => (12.0, 25.0),
        EnterpriseType::ChainStore | EnterpriseType::SinglePharmacy => (10.0, 21.0),
    }
}

/// Price level of a seller relative to the product's retail reference price.
pub fn price_level(t: EnterpriseType) -> f64 {
    match t {
        EnterpriseType::Manufacturer => 0.55,
        EnterpriseType::Wholesaler => 0.72,
        EnterpriseType::ChainHq => 0.76,
        EnterpriseType::ChainStore | EnterpriseType::SinglePharmacy => 1.0,
    }
}

/// Days a batch spends upstream before a tier ships or sells it.
pub fn batch_lag_days(t: EnterpriseType) -> i64 {
    match t {
        EnterpriseType::Manufacturer => 3,
        EnterpriseType::Wholesaler => 20,
        EnterpriseType::ChainHq => 30,
        EnterpriseType::ChainStore | EnterpriseType::SinglePharmacy => 40,
    }
}

/// Who makes a product.
#[derive(Debug, Clone)]
pub enum Maker {
    /// An in-province manufacturer (index into enterprises).
    Inside(usize),
    /// A manufacturer outside the province (its credit code); no records of its own here.
    Outside(String),
}

/// Who supplies a holding.
#[derive(Debug, Clone)]
pub enum Supplier {
    /// The holder produces it (a manufacturer).
    Produces,
    /// An in-province enterprise (index).
    Inside(usize),
    /// A manufacturer outside the province.
    Outside(String),
}

/// Simulation-side facts of an enterprise.
#[derive(Debug, Clone)]
pub struct SimEnterprise {
    /// The reference row.
    pub row: Enterprise,
    /// Kind.
    pub etype: EnterpriseType,
    /// Sequence number (for ids).
    pub seq: usize,
    /// The enterprise's own price factor around its tier's level.
    pub price_factor: f64,
    /// Holdings of this enterprise (indices into [`World::holdings`]).
    pub holdings: Vec<usize>,
}

/// Simulation-side facts of a product.
#[derive(Debug, Clone)]
pub struct SimProduct {
    /// The reference row.
    pub row: Product,
    /// Sequence number (for trace codes).
    pub seq: u32,
    /// Class.
    pub class: SpecialClass,
    /// Maker.
    pub maker: Maker,
    /// Whether pharmacies may sell it.
    pub retail: bool,
    /// Batches of the product, in production order (indices into [`World::batches`]).
    pub batches: Vec<usize>,
}

/// Stock of one product at one enterprise, with its replenishment state.
#[derive(Debug, Clone)]
pub struct Holding {
    /// Enterprise index.
    pub ent: usize,
    /// Product index.
    pub prod: usize,
    /// Units on hand.
    pub stock: i64,
    /// Demand served per day (retail: patients; upstream: the sum of downstream holdings).
    pub lambda: f64,
    /// Supplier.
    pub supplier: Supplier,
    /// Reorder point (units).
    pub reorder: i64,
    /// Order-up-to level (units).
    pub order_up_to: i64,
    /// Whether an order is on its way.
    pub outstanding: bool,
}

/// The simulated province.
#[derive(Debug, Clone)]
pub struct World {
    /// Enterprises, manufacturers first, then wholesalers, headquarters, stores, pharmacies.
    pub enterprises: Vec<SimEnterprise>,
    /// Products.
    pub products: Vec<SimProduct>,
    /// Every batch ever made (reference table).
    pub batches: Vec<Batch>,
    /// Every holding.
    pub holdings: Vec<Holding>,
    /// (enterprise, product) → holding.
    pub holding_index: HashMap<(usize, usize), usize>,
    /// Batches planted for anomalies.
    pub planted: std::collections::HashSet<usize>,
}

fn pick_weighted<'a, T>(rng: &mut Xoshiro256PlusPlus, items: &'a [(T, f64)]) -> &'a T {
    let total: f64 = items.iter().map(|(_, w)| *w).sum();
    let mut x = rng.r#gen::<f64>() * total;
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= *w;
    }
    &items[items.len() - 1].0
}

fn lognormal(rng: &mut Xoshiro256PlusPlus, median: f64, sigma: f64) -> f64 {
    // Box–Muller: deterministic for a given RNG state.
    let u1: f64 = rng.r#gen::<f64>().max(1e-12);
    let u2: f64 = rng.r#gen();
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    median * (sigma * z).exp()
}

/// Counts of each enterprise type for `n` enterprises, in plausible proportions.
pub fn type_counts(n: usize) -> Vec<(EnterpriseType, usize)> {
    let manufacturers = ((n as f64 * 0.04).round() as usize).max(2);
    let wholesalers = ((n as f64 * 0.08).round() as usize).max(3);
    let hqs = ((n as f64 * 0.03).round() as usize).max(1);
    let stores = (n as f64 * 0.45).round() as usize;
    let singles = n
        .saturating_sub(manufacturers + wholesalers + hqs + stores)
        .max(2);
    vec![
        (EnterpriseType::Manufacturer, manufacturers),
        (EnterpriseType::Wholesaler, wholesalers),
        (EnterpriseType::ChainHq, hqs),
        (EnterpriseType::ChainStore, stores),
        (EnterpriseType::SinglePharmacy, singles),
    ]
}

/// The enterprises of a province of `n`, type by type (manufacturers first).
fn build_enterprises(
    rng: &mut Xoshiro256PlusPlus,
    n: usize,
) -> Result<Vec<SimEnterprise>, ids::IdError> {
    let mut draw = EnterpriseDraw {
        region_weights: REGIONS.iter().enumerate().map(|(i, r)| (i, r.2)).collect(),
        used_names: std::collections::HashSet::new(),
        hq_brands: Vec::new(),
    };
    let mut enterprises: Vec<SimEnterprise> = Vec::new();
    for (etype, count) in type_counts(n) {
        for k in 0..count {
            let enterprise = draw.enterprise(rng, etype, k, &enterprises)?;
            enterprises.push(enterprise);
        }
    }
    Ok(enterprises)
}

/// What drawing one enterprise after another needs to remember.
struct EnterpriseDraw {
    /// (region index, weight) of every region.
    region_weights: Vec<(usize, f64)>,
    /// Names already given.
    used_names: std::collections::HashSet<String>,
    /// (enterprise index, brand) of every chain headquarters so far.
    hq_brands: Vec<(usize, String)>,
}

impl EnterpriseDraw {
    /// Draws the `k`-th enterprise of type `etype`, following `enterprises`.
    fn enterprise(
        &mut self,
        rng: &mut Xoshiro256PlusPlus,
        etype: EnterpriseType,
        k: usize,
        enterprises: &[SimEnterprise],
    ) -> Result<SimEnterprise, ids::IdError> {
        let seq = enterprises.len();
        let region = *pick_weighted(rng, &self.region_weights);
        let (code, city, _) = REGIONS[region];
        let (name, parent) = self.name(rng, etype, k, seq, city);
        let entity_type = if etype.is_retail() && rng.gen_bool(0.3) {
            '2'
        } else {
            '1'
        };
        let id = ids::make_credit_code('9', entity_type, code, 1_000_003 + seq as u64 * 7919)?;
        let licence_no = licence_number(etype, seq, entity_type)?;
        let lead_name = format!(
            "{}{}",
            SURNAMES[rng.gen_range(0..SURNAMES.len())],
            GIVEN[rng.gen_range(0..GIVEN.len())]
        );
        let credit_grade =
            *pick_weighted(rng, &[("A", 0.6), ("B", 0.28), ("C", 0.09), ("D", 0.03)]);
        let row = Enterprise {
            enterprise_id: id,
            name,
            enterprise_type: etype,
            region_code: code.to_string(),
            licence_no,
            parent_id: parent.map(|p: usize| enterprises[p].row.enterprise_id.clone()),
            lead_name,
            lead_phone: format!("13{:09}", 471_000_000 + seq * 37),
            lead_email: format!("lead{seq:05}@ent{seq:05}.example.com"),
            credit_grade: credit_grade.to_string(),
        };
        Ok(SimEnterprise {
            row,
            etype,
            seq,
            price_factor: 0.92 + rng.r#gen::<f64>() * 0.16,
            holdings: Vec::new(),
        })
    }

    /// A unique name for enterprise `seq` (the `k`-th of its type) in `city`, and for a chain
    /// store the headquarters it belongs to.
    fn name(
        &mut self,
        rng: &mut Xoshiro256PlusPlus,
        etype: EnterpriseType,
        k: usize,
        seq: usize,
        city: &str,
    ) -> (String, Option<usize>) {
        let mut parent = None;
        let brand = BRAND_WORDS[rng.gen_range(0..BRAND_WORDS.len())];
        let city_short = city.trim_end_matches('市').trim_end_matches('盟');
        let mut name = match etype {
            EnterpriseType::Manufacturer => format!("内蒙古{brand}制药有限公司"),
            EnterpriseType::Wholesaler => format!("{city_short}{brand}医药有限公司"),
            EnterpriseType::ChainHq => format!("内蒙古{brand}大药房连锁有限公司"),
            EnterpriseType::ChainStore => {
                let (hq, hq_brand) = &self.hq_brands[rng.gen_range(0..self.hq_brands.len())];
                parent = Some(*hq);
                format!(
                    "内蒙古{hq_brand}大药房连锁有限公司{city_short}第{}分店",
                    k + 1
                )
            }
            EnterpriseType::SinglePharmacy => format!("{city_short}{brand}大药房"),
        };
        if etype == EnterpriseType::ChainHq {
            self.hq_brands.push((seq, brand.to_string()));
        }
        let mut suffix = 2;
        while !self.used_names.insert(name.clone()) {
            name = match etype {
                EnterpriseType::SinglePharmacy => {
                    format!("{city_short}{brand}大药房{suffix}号店")
                }
                _ => format!("{name}{suffix}"),
            };
            suffix += 1;
        }
        (name, parent)
    }
}

/// The licence number of enterprise `seq` of type `etype` (a manufacturer's production
/// licence, otherwise a drug business licence).
fn licence_number(
    etype: EnterpriseType,
    seq: usize,
    entity_type: char,
) -> Result<String, ids::IdError> {
    Ok(match etype {
        EnterpriseType::Manufacturer => {
            format!("蒙{}{:04}", 2015 + (seq % 10), seq + 1)
        }
        EnterpriseType::Wholesaler => ids::make_licence_number(
            '蒙',
            LicenceBusiness::Wholesale,
            true,
            470_100_000 + seq as u32,
        )?,
        EnterpriseType::ChainHq => ids::make_licence_number(
            '蒙',
            LicenceBusiness::ChainHeadquarters,
            true,
            470_200_000 + seq as u32,
        )?,
        EnterpriseType::ChainStore => ids::make_licence_number(
            '蒙',
            LicenceBusiness::ChainStore,
            false,
            470_300_000 + seq as u32,
        )?,
        EnterpriseType::SinglePharmacy => ids::make_licence_number(
            '蒙',
            LicenceBusiness::SinglePharmacy,
            entity_type == '1',
            470_400_000 + seq as u32,
        )?,
    })
}

/// The products: every template, repeated with other makers as the province grows.
fn build_products(
    rng: &mut Xoshiro256PlusPlus,
    n: usize,
    enterprises: &[SimEnterprise],
) -> Result<Vec<SimProduct>, ids::IdError> {
    let n_products = (50 + n / 20).min(320);
    let manufacturers: Vec<usize> = enterprises
        .iter()
        .filter(|e| e.etype == EnterpriseType::Manufacturer)
        .map(|e| e.seq)
        .collect();
    let mut products = Vec::with_capacity(n_products);
    for p in 0..n_products {
        let (name, form, class, aclass, price) = PRODUCT_TEMPLATES[p % PRODUCT_TEMPLATES.len()];
        let maker = if rng.gen_bool(0.3) && !manufacturers.is_empty() {
            Maker::Inside(manufacturers[rng.gen_range(0..manufacturers.len())])
        } else {
            let region = OUTSIDE_REGIONS[rng.gen_range(0..OUTSIDE_REGIONS.len())];
            Maker::Outside(ids::make_credit_code(
                '9',
                '1',
                region,
                50_000_000 + p as u64 * 104_729,
            )?)
        };
        let manufacturer_id = match &maker {
            Maker::Inside(m) => enterprises[*m].row.enterprise_id.clone(),
            Maker::Outside(code) => code.clone(),
        };
        let round = p / PRODUCT_TEMPLATES.len();
        let display = if round == 0 {
            name.to_string()
        } else {
            format!("{name}（规格{}）", round + 1)
        };
        let row = Product {
            product_id: format!("P{:05}", p + 1),
            approval_no: ids::make_approval_number(
                aclass,
                2005 + (p % 20) as u16,
                1000 + p as u32,
            )?,
            name: display,
            dosage_form: form.to_string(),
            special_class: class,
            manufacturer_id,
            reference_price: ((price * (0.8 + rng.r#gen::<f64>() * 0.5)) * 10.0).round() / 10.0,
            shelf_life_months: [24, 24, 36, 36, 18][p % 5],
        };
        let retail = !matches!(class, SpecialClass::Narcotic | SpecialClass::Vaccine);
        products.push(SimProduct {
            row,
            seq: p as u32 + 1,
            class,
            maker,
            retail,
            batches: Vec::new(),
        });
    }
    Ok(products)
}

impl World {
    /// Builds the province for `n` enterprises; batches are back-filled a year before `start`.
    pub fn build(
        rng: &mut Xoshiro256PlusPlus,
        n: usize,
        start: NaiveDate,
    ) -> Result<Self, ids::IdError> {
        let enterprises = build_enterprises(rng, n)?;
        let products = build_products(rng, n, &enterprises)?;
        let mut world = World {
            enterprises,
            products,
            batches: Vec::new(),
            holdings: Vec::new(),
            holding_index: HashMap::new(),
            planted: std::collections::HashSet::new(),
        };
        world.backfill_batches(start);
        world.build_holdings(rng);
        Ok(world)
    }

    fn backfill_batches(&mut self, start: NaiveDate) {
        // One released batch a month over the past year, so every tier has a batch to ship.
        for p in 0..self.products.len() {
            for m in (1..=12).rev() {
                let produced = start - Duration::days(30 * m + (p as i64 % 7));
                self.add_batch(p, produced, true);
            }
        }
    }

    /// Adds a batch of product `p` made on `produced`; returns its index.
    pub fn add_batch(&mut self, p: usize, produced: NaiveDate, released: bool) -> usize {
        let prod = &self.products[p];
        let n = prod.batches.len() + 1;
        let batch_no = format!(
            "{}{:03}{:02}",
            produced.format("%y%m%d"),
            prod.seq % 1000,
            n % 100
        );
        let expiry = produced
            .checked_add_months(chrono::Months::new(prod.row.shelf_life_months as u32))
            .unwrap_or(produced)
            - Duration::days(1);
        let batch = Batch {
            product_id: prod.row.product_id.clone(),
            batch_no,
            manufacturer_id: prod.row.manufacturer_id.clone(),
            production_date: produced,
            expiry_date: expiry,
            released,
        };
        let idx = self.batches.len();
        self.batches.push(batch);
        self.products[p].batches.push(idx);
        idx
    }

    /// The released batch a tier ships or sells on `day`: the newest one made at least the
    /// tier's lag before. Batches planted for anomalies are never chosen.
    pub fn current_batch(&self, p: usize, day: NaiveDate, etype: EnterpriseType) -> usize {
        let cutoff = day - Duration::days(batch_lag_days(etype));
        let list = &self.products[p].batches;
        list.iter()
            .copied()
            .filter(|b| {
                let batch = &self.batches[*b];
                batch.released && batch.production_date <= cutoff && !self.planted.contains(b)
            })
            .max_by_key(|b| (self.batches[*b].production_date, *b))
            .unwrap_or(list[0])
    }

    /// Adds a batch planted for an anomaly: it exists in the reference table, but the normal
    /// flow never ships or sells it.
    pub fn add_planted_batch(&mut self, p: usize, produced: NaiveDate, released: bool) -> usize {
        let b = self.add_batch(p, produced, released);
        self.planted.insert(b);
        b
    }

    fn add_holding(&mut self, ent: usize, prod: usize, lambda: f64, supplier: Supplier) -> usize {
        let idx = self.holdings.len();
        self.holdings.push(Holding {
            ent,
            prod,
            stock: 0,
            lambda,
            supplier,
            reorder: 0,
            order_up_to: 0,
            outstanding: false,
        });
        self.holding_index.insert((ent, prod), idx);
        self.enterprises[ent].holdings.push(idx);
        idx
    }

    /// The indices of the enterprises of type `t`, in order.
    fn of_type(&self, t: EnterpriseType) -> Vec<usize> {
        self.enterprises
            .iter()
            .filter(|e| e.etype == t)
            .map(|e| e.seq)
            .collect()
    }

    /// Builds every holding tier by tier, lets demand flow upstream and sets stock policies.
    fn build_holdings(&mut self, rng: &mut Xoshiro256PlusPlus) {
        let manufacturers = self.of_type(EnterpriseType::Manufacturer);
        let stores = self.of_type(EnterpriseType::ChainStore);
        let singles = self.of_type(EnterpriseType::SinglePharmacy);
        let mut tiers = Tiers {
            wholesalers: self.of_type(EnterpriseType::Wholesaler),
            hqs: self.of_type(EnterpriseType::ChainHq),
            retail_products: (0..self.products.len())
                .filter(|&p| self.products[p].retail)
                .collect(),
            carriers: Vec::new(),
            chain_assortment: HashMap::new(),
        };

        // Manufacturers hold what they make; wholesalers hold most products.
        for &m in &manufacturers {
            for p in 0..self.products.len() {
                if matches!(self.products[p].maker, Maker::Inside(x) if x == m) {
                    self.add_holding(m, p, 0.0, Supplier::Produces);
                }
            }
        }
        tiers.carriers = self.hold_wholesale(rng, &tiers.wholesalers);
        // Headquarters: a chain assortment, bought from one or two wholesalers.
        tiers.chain_assortment = self.hold_chain_assortments(rng, &tiers);
        // Retail: stores take part of their chain's assortment; pharmacies their own.
        for &e in stores.iter().chain(singles.iter()) {
            self.hold_retail(rng, &tiers, e);
        }
        self.propagate_demand();
        self.set_stock_policies(rng);
    }

    /// Wholesalers' holdings: each holds most products, bought from the maker, and every
    /// product has at least one wholesaler. Returns the wholesalers carrying each product.
    fn hold_wholesale(
        &mut self,
        rng: &mut Xoshiro256PlusPlus,
        wholesalers: &[usize],
    ) -> Vec<Vec<usize>> {
        let mut carriers: Vec<Vec<usize>> = vec![Vec::new(); self.products.len()];
        for &w in wholesalers {
            for p in 0..self.products.len() {
                if rng.gen_bool(0.75) {
                    let supplier = self.maker_supplier(p);
                    self.add_holding(w, p, 0.0, supplier);
                    carriers[p].push(w);
                }
            }
        }
        // Make sure every product has a wholesaler.
        for p in 0..self.products.len() {
            if carriers[p].is_empty() {
                let w = wholesalers[p % wholesalers.len()];
                let supplier = self.maker_supplier(p);
                self.add_holding(w, p, 0.0, supplier);
                carriers[p].push(w);
            }
        }
        carriers
    }

    /// The supplier of a wholesaler holding product `p`: its maker.
    fn maker_supplier(&self, p: usize) -> Supplier {
        match &self.products[p].maker {
            Maker::Inside(m) => Supplier::Inside(*m),
            Maker::Outside(code) => Supplier::Outside(code.clone()),
        }
    }

    /// Headquarters' holdings: a chain assortment of retail products, bought from one or two
    /// preferred wholesalers. Returns each headquarters' assortment.
    fn hold_chain_assortments(
        &mut self,
        rng: &mut Xoshiro256PlusPlus,
        tiers: &Tiers,
    ) -> HashMap<usize, Vec<usize>> {
        let mut chain_assortment: HashMap<usize, Vec<usize>> = HashMap::new();
        for &h in &tiers.hqs {
            let mut list = tiers.retail_products.clone();
            list.shuffle(rng);
            let keep = ((list.len() as f64) * (0.55 + rng.r#gen::<f64>() * 0.2)) as usize;
            list.truncate(keep.max(20.min(tiers.retail_products.len())));
            list.sort_unstable();
            let preferred = tiers.preferred_wholesalers(rng);
            for &p in &list {
                let w = tiers.pick_carrier(rng, &preferred, p);
                self.add_holding(h, p, 0.0, Supplier::Inside(w));
            }
            chain_assortment.insert(h, list);
        }
        chain_assortment
    }

    /// Retail enterprise `e`'s holdings: a chain store takes part of its chain's assortment
    /// from its headquarters, a pharmacy its own from one or two wholesalers; each with a
    /// patient demand rate by class, scaled by the shop's size.
    fn hold_retail(&mut self, rng: &mut Xoshiro256PlusPlus, tiers: &Tiers, e: usize) {
        let size = lognormal(rng, 1.0, 0.45).clamp(0.35, 3.0);
        let (list, supplier_pick): (Vec<usize>, Option<usize>) =
            match self.enterprises[e].row.parent_id {
                Some(_) => {
                    let hq = tiers
                        .hqs
                        .iter()
                        .copied()
                        .find(|h| {
                            self.enterprises[*h].row.enterprise_id
                                == self.enterprises[e]
                                    .row
                                    .parent_id
                                    .clone()
                                    .unwrap_or_default()
                        })
                        .unwrap_or(tiers.hqs[0]);
                    let mut list = tiers.chain_assortment.get(&hq).cloned().unwrap_or_default();
                    list.retain(|_| rng.gen_bool(0.85));
                    (list, Some(hq))
                }
                None => {
                    let mut list = tiers.retail_products.clone();
                    list.shuffle(rng);
                    let keep = ((list.len() as f64) * (0.45 + rng.r#gen::<f64>() * 0.25)) as usize;
                    list.truncate(keep.max(15.min(tiers.retail_products.len())));
                    list.sort_unstable();
                    (list, None)
                }
            };
        let preferred = tiers.preferred_wholesalers(rng);
        for p in list {
            let class = self.products[p].class;
            let base = match class {
                SpecialClass::Ephedrine | SpecialClass::Psychotropic => 0.8,
                SpecialClass::Injection | SpecialClass::ColdChain => 0.6,
                _ => 1.6,
            };
            let lambda = (lognormal(rng, base, 0.7) * size).clamp(0.05, 14.0);
            let supplier = match supplier_pick {
                Some(hq) => Supplier::Inside(hq),
                None => Supplier::Inside(tiers.pick_carrier(rng, &preferred, p)),
            };
            self.add_holding(e, p, lambda, supplier);
        }
    }

    /// Demand flows upstream: retail → headquarters/wholesalers → manufacturers; each
    /// holding's rate is added to its in-province supplier's.
    fn propagate_demand(&mut self) {
        for tier in [
            EnterpriseType::ChainStore,
            EnterpriseType::SinglePharmacy,
            EnterpriseType::ChainHq,
            EnterpriseType::Wholesaler,
        ] {
            for h in 0..self.holdings.len() {
                let ent = self.holdings[h].ent;
                if self.enterprises[ent].etype != tier {
                    continue;
                }
                let lambda = self.holdings[h].lambda;
                if let Supplier::Inside(s) = self.holdings[h].supplier {
                    let prod = self.holdings[h].prod;
                    if let Some(&up) = self.holding_index.get(&(s, prod)) {
                        self.holdings[up].lambda += lambda;
                    }
                }
            }
        }
    }

    /// Stock policies (s, S) of every holding from its tier and demand, and opening stock
    /// somewhere between s and S.
    fn set_stock_policies(&mut self, rng: &mut Xoshiro256PlusPlus) {
        for h in 0..self.holdings.len() {
            let etype = self.enterprises[self.holdings[h].ent].etype;
            let (s, big_s) = stock_policy(etype);
            let lambda = self.holdings[h].lambda.max(0.05);
            let reorder = (lambda * s).ceil().max(1.0) as i64;
            let order_up_to = (lambda * big_s).ceil().max(reorder as f64 + 2.0) as i64;
            let holding = &mut self.holdings[h];
            holding.reorder = reorder;
            holding.order_up_to = order_up_to;
            holding.stock = reorder + rng.gen_range(0..=(order_up_to - reorder).max(0));
        }
    }
}

/// The upstream tiers retail holdings are supplied from, while the holdings are built.
struct Tiers {
    /// Wholesalers, in order.
    wholesalers: Vec<usize>,
    /// Chain headquarters, in order.
    hqs: Vec<usize>,
    /// Products pharmacies may sell.
    retail_products: Vec<usize>,
    /// The wholesalers carrying each product.
    carriers: Vec<Vec<usize>>,
    /// Each headquarters' assortment.
    chain_assortment: HashMap<usize, Vec<usize>>,
}

impl Tiers {
    /// Two wholesalers drawn at random (possibly the same), an enterprise's preferred ones.
    fn preferred_wholesalers(&self, rng: &mut Xoshiro256PlusPlus) -> Vec<usize> {
        (0..2)
            .map(|_| self.wholesalers[rng.gen_range(0..self.wholesalers.len())])
            .collect()
    }

    /// A wholesaler carrying product `p`: one of the `preferred` that does, else any.
    fn pick_carrier(&self, rng: &mut Xoshiro256PlusPlus, preferred: &[usize], p: usize) -> usize {
        let carriers = &self.carriers[p];
        let own: Vec<usize> = preferred
            .iter()
            .copied()
            .filter(|w| carriers.contains(w))
            .collect();
        if own.is_empty() {
            carriers[rng.gen_range(0..carriers.len())]
        } else {
            own[rng.gen_range(0..own.len())]
        }
    }
}
