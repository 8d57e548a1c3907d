//! Record types of the smart-supervision platform, their field specifications, and validation.
//!
//! Each record kind is described once, by a [`FieldSpec`] table; the Arrow schemas
//! ([`EventKind::lake_schema`], [`ReferenceKind::schema`]) and the JSON wire contracts
//! (`schemas/contracts/*.json`, see [`crate::contracts`]) are derived from those tables, so the
//! three cannot drift apart. The serde structs mirror the tables field by field (a unit test
//! checks it).
//!
//! Invariants:
//! - every event carries `event_id`, `event_time` (RFC 3339 with an offset) and the credit code
//!   of the enterprise that reported it (`enterprise_id`);
//! - the business day of an event is its calendar day in Asia/Shanghai (UTC+8), whatever offset
//!   the event time carries ([`biz_date`]); the lake stores it as `biz_date` beside the record;
//! - quantities are counted in minimum sales packages (最小销售包装) and are never negative;
//!   prices are yuan per package.

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::ids;

/// The offset of Asia/Shanghai (UTC+8, no daylight saving): business days are counted in it.
pub const SHANGHAI_OFFSET_SECONDS: i32 = 8 * 3600;

/// The Arrow time-zone string of lake timestamps.
pub const LAKE_TIMEZONE: &str = "+08:00";

/// The Asia/Shanghai offset (UTC+8).
pub fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(SHANGHAI_OFFSET_SECONDS).expect("UTC+8 is a valid offset")
}

/// Business day (Asia/Shanghai calendar day) of an event time given with any offset.
pub fn biz_date(t: &DateTime<FixedOffset>) -> NaiveDate {
    t.with_timezone(&shanghai()).date_naive()
}

/// A field that failed validation: the field name and the reason, in words an operator reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct FieldError {
    /// Name of the offending field, as in the wire contract.
    pub field: &'static str,
    /// Why the value was refused.
    pub reason: String,
}

impl FieldError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// The logical type of a field, mapped to Arrow and to JSON Schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// UTF-8 text.
    Text,
    /// 64-bit signed integer.
    Int,
    /// 64-bit float.
    Float,
    /// Boolean.
    Bool,
    /// RFC 3339 instant with offset; Arrow `Timestamp(ms, "+08:00")`.
    Timestamp,
    /// Calendar date `YYYY-MM-DD`; Arrow `Date32`.
    Date,
}

/// One field of a record kind: the single source of the Arrow schema and the wire contract.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    /// Field name (snake_case), identical in JSON, CSV headers, Arrow and SQL.
    pub name: &'static str,
    /// Logical type.
    pub ty: FieldType,
    /// Whether the field may be absent or null.
    pub nullable: bool,
    /// Allowed values, for enumerations.
    pub allowed: &'static [&'static str],
    /// What the field means.
    pub description: &'static str,
}

const fn f(
    name: &'static str,
    ty: FieldType,
    nullable: bool,
    description: &'static str,
) -> FieldSpec {
    FieldSpec {
        name,
        ty,
        nullable,
        allowed: &[],
        description,
    }
}

const fn e(
    name: &'static str,
    allowed: &'static [&'static str],
    description: &'static str,
) -> FieldSpec {
    FieldSpec {
        name,
        ty: FieldType::Text,
        nullable: false,
        allowed,
        description,
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Wire names of every value, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];
            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// Parses a wire name.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// Kind of enterprise under supervision.
    EnterpriseType {
        /// 药品生产企业.
        Manufacturer = "manufacturer",
        /// 药品批发企业.
        Wholesaler = "wholesaler",
        /// 零售连锁总部.
        ChainHq = "chain_hq",
        /// 连锁门店.
        ChainStore = "chain_store",
        /// 单体药店.
        SinglePharmacy = "single_pharmacy",
    }
}

impl EnterpriseType {
    /// Chinese name, for documents.
    pub fn zh(self) -> &'static str {
        match self {
            Self::Manufacturer => "药品生产企业",
            Self::Wholesaler => "药品批发企业",
            Self::ChainHq => "零售连锁总部",
            Self::ChainStore => "连锁门店",
            Self::SinglePharmacy => "单体药店",
        }
    }
    /// Whether it sells to patients (retail).
    pub fn is_retail(self) -> bool {
        matches!(self, Self::ChainStore | Self::SinglePharmacy)
    }
}

string_enum! {
    /// Special-management class of a product (特殊管理药品 and other high-risk classes).
    SpecialClass {
        /// Ordinary product.
        None = "none",
        /// 麻醉药品.
        Narcotic = "narcotic",
        /// 精神药品.
        Psychotropic = "psychotropic",
        /// 含麻黄碱类复方制剂.
        Ephedrine = "ephedrine",
        /// 疫苗.
        Vaccine = "vaccine",
        /// 冷链药品.
        ColdChain = "cold_chain",
        /// 注射剂.
        Injection = "injection",
    }
}

impl SpecialClass {
    /// Whether volumes of this class are watched by the special-drug indicator.
    pub fn is_volume_controlled(self) -> bool {
        matches!(self, Self::Narcotic | Self::Psychotropic | Self::Ephedrine)
    }
}

string_enum! {
    /// Outcome of a product test.
    TestResult {
        /// 合格.
        Pass = "pass",
        /// 不合格.
        Fail = "fail",
    }
}

string_enum! {
    /// Why a product was tested.
    TestKind {
        /// Release test by the manufacturer (出厂检验).
        Release = "release",
        /// Supervisory sampling by the regulator (监督抽检).
        Sampling = "sampling",
    }
}

string_enum! {
    /// Overall conclusion of an on-site inspection. The vocabulary is configuration in the
    /// measures engine; these are the wire names.
    Conclusion {
        /// 符合要求.
        Compliant = "compliant",
        /// 待整改后评定.
        PendingRectification = "pending_rectification",
        /// 不符合要求.
        NonCompliant = "non_compliant",
    }
}

string_enum! {
    /// The event kinds that flow in, one lake directory and one topic each.
    EventKind {
        /// Finished-product production (成品生产).
        Production = "production",
        /// Sales (销售), wholesale and retail.
        Sales = "sales",
        /// Purchases (购进).
        Purchase = "purchase",
        /// End-of-day inventory snapshot (库存).
        Inventory = "inventory",
        /// Product test result (产品检验).
        ProductTest = "product_test",
        /// Inspection finding (检查发现).
        Inspection = "inspection",
    }
}

string_enum! {
    /// The reference tables.
    ReferenceKind {
        /// Enterprises under supervision.
        Enterprise = "enterprises",
        /// Products (by approval number and pack).
        Product = "products",
        /// Production batches.
        Batch = "batches",
    }
}

const EVENT_ID: FieldSpec = f(
    "event_id",
    FieldType::Text,
    false,
    "Unique id of the record at its source (1–64 characters).",
);
const EVENT_TIME: FieldSpec = f(
    "event_time",
    FieldType::Timestamp,
    false,
    "When it happened: RFC 3339 with an offset. The business day is the calendar day in Asia/Shanghai (UTC+8).",
);
const ENTERPRISE_ID: FieldSpec = f(
    "enterprise_id",
    FieldType::Text,
    false,
    "Unified social credit code (统一社会信用代码) of the reporting enterprise.",
);
const PRODUCT_ID: FieldSpec = f(
    "product_id",
    FieldType::Text,
    false,
    "Product id from the products reference table.",
);
const BATCH_NO: FieldSpec = f(
    "batch_no",
    FieldType::Text,
    false,
    "Production batch number (批号): 1–20 letters, digits or '-'.",
);
const QUANTITY: FieldSpec = f(
    "quantity",
    FieldType::Int,
    false,
    "Quantity in minimum sales packages; never negative.",
);
const UNIT_PRICE: FieldSpec = f(
    "unit_price",
    FieldType::Float,
    false,
    "Price per package in yuan; never negative.",
);

/// Name of the derived business-day column that the lake adds to every event kind.
pub const BIZ_DATE: &str = "biz_date";

const PRODUCTION_FIELDS: &[FieldSpec] = &[
    EVENT_ID,
    EVENT_TIME,
    ENTERPRISE_ID,
    PRODUCT_ID,
    BATCH_NO,
    QUANTITY,
];
const SALES_FIELDS: &[FieldSpec] = &[
    EVENT_ID,
    EVENT_TIME,
    ENTERPRISE_ID,
    PRODUCT_ID,
    BATCH_NO,
    QUANTITY,
    UNIT_PRICE,
    f(
        "buyer_id",
        FieldType::Text,
        true,
        "Credit code of the buying enterprise; absent for a retail sale to a patient.",
    ),
    f(
        "trace_code",
        FieldType::Text,
        true,
        "Traceability code (药品追溯码) of the package sold: 20 digits or a GS1 element string.",
    ),
];
const PURCHASE_FIELDS: &[FieldSpec] = &[
    EVENT_ID,
    EVENT_TIME,
    ENTERPRISE_ID,
    f(
        "supplier_id",
        FieldType::Text,
        false,
        "Credit code of the supplier (it may be outside the province).",
    ),
    PRODUCT_ID,
    BATCH_NO,
    QUANTITY,
    UNIT_PRICE,
];
const INVENTORY_FIELDS: &[FieldSpec] = &[
    EVENT_ID,
    EVENT_TIME,
    ENTERPRISE_ID,
    PRODUCT_ID,
    f(
        "quantity",
        FieldType::Int,
        false,
        "Closing stock at the end of the business day, in packages; never negative.",
    ),
];
const PRODUCT_TEST_FIELDS: &[FieldSpec] = &[
    EVENT_ID,
    EVENT_TIME,
    f(
        "enterprise_id",
        FieldType::Text,
        false,
        "Credit code of the enterprise where the batch was tested or sampled.",
    ),
    PRODUCT_ID,
    BATCH_NO,
    e(
        "test_kind",
        TestKind::NAMES,
        "release (出厂检验) or sampling (监督抽检).",
    ),
    e("result", TestResult::NAMES, "pass (合格) or fail (不合格)."),
    f(
        "test_item",
        FieldType::Text,
        true,
        "The test item that decided the result, e.g. 含量测定.",
    ),
];
const INSPECTION_FIELDS: &[FieldSpec] = &[
    EVENT_ID,
    EVENT_TIME,
    ENTERPRISE_ID,
    f("case_id", FieldType::Text, false, "Inspection case id."),
    e(
        "conclusion",
        Conclusion::NAMES,
        "Overall on-site conclusion.",
    ),
    f(
        "critical_defects",
        FieldType::Int,
        false,
        "Number of critical defects (严重缺陷).",
    ),
    f(
        "major_defects",
        FieldType::Int,
        false,
        "Number of major defects (主要缺陷).",
    ),
    f(
        "general_defects",
        FieldType::Int,
        false,
        "Number of general defects (一般缺陷).",
    ),
    f(
        "flags",
        FieldType::Text,
        true,
        "Comma-separated snake_case condition flags (e.g. systemic_qms_problem).",
    ),
];

const ENTERPRISE_FIELDS: &[FieldSpec] = &[
    f(
        "enterprise_id",
        FieldType::Text,
        false,
        "Unified social credit code (统一社会信用代码).",
    ),
    f("name", FieldType::Text, false, "Registered name."),
    e(
        "enterprise_type",
        EnterpriseType::NAMES,
        "Kind of enterprise.",
    ),
    f(
        "region_code",
        FieldType::Text,
        false,
        "GB/T 2260 prefecture-level region code.",
    ),
    f(
        "licence_no",
        FieldType::Text,
        false,
        "Drug business or production licence number.",
    ),
    f(
        "parent_id",
        FieldType::Text,
        true,
        "Credit code of the chain headquarters, for a chain store.",
    ),
    f(
        "lead_name",
        FieldType::Text,
        false,
        "Enterprise lead (企业负责人).",
    ),
    f("lead_phone", FieldType::Text, false, "Lead's mobile phone."),
    f(
        "lead_email",
        FieldType::Text,
        false,
        "Lead's e-mail address.",
    ),
    e(
        "credit_grade",
        &["A", "B", "C", "D"],
        "Drug-safety credit grade, A best.",
    ),
];
const PRODUCT_FIELDS: &[FieldSpec] = &[
    PRODUCT_ID,
    f(
        "approval_no",
        FieldType::Text,
        false,
        "Approval number (国药准字).",
    ),
    f("name", FieldType::Text, false, "Product name and strength."),
    f("dosage_form", FieldType::Text, false, "Dosage form (剂型)."),
    e(
        "special_class",
        SpecialClass::NAMES,
        "Special-management class.",
    ),
    f(
        "manufacturer_id",
        FieldType::Text,
        false,
        "Credit code of the marketing-authorisation holder's manufacturer.",
    ),
    f(
        "reference_price",
        FieldType::Float,
        false,
        "Typical retail price per package, yuan.",
    ),
    f(
        "shelf_life_months",
        FieldType::Int,
        false,
        "Shelf life in months.",
    ),
];
const BATCH_FIELDS: &[FieldSpec] = &[
    PRODUCT_ID,
    BATCH_NO,
    f(
        "manufacturer_id",
        FieldType::Text,
        false,
        "Credit code of the manufacturer.",
    ),
    f(
        "production_date",
        FieldType::Date,
        false,
        "Production date.",
    ),
    f(
        "expiry_date",
        FieldType::Date,
        false,
        "Expiry date (有效期至): the batch may not be sold after it.",
    ),
    f(
        "released",
        FieldType::Bool,
        false,
        "Whether the batch passed release and may be sold.",
    ),
];

impl EventKind {
    /// The wire fields, in contract order.
    pub fn fields(self) -> &'static [FieldSpec] {
        match self {
            Self::Production => PRODUCTION_FIELDS,
            Self::Sales => SALES_FIELDS,
            Self::Purchase => PURCHASE_FIELDS,
            Self::Inventory => INVENTORY_FIELDS,
            Self::ProductTest => PRODUCT_TEST_FIELDS,
            Self::Inspection => INSPECTION_FIELDS,
        }
    }
    /// One line on what the kind is.
    pub fn description(self) -> &'static str {
        match self {
            Self::Production => {
                "A finished-product production record of a manufacturer (成品生产)."
            }
            Self::Sales => {
                "A sale by an enterprise: wholesale to another enterprise, or retail to a patient (销售)."
            }
            Self::Purchase => "A purchase by an enterprise from a supplier (购进).",
            Self::Inventory => "End-of-day closing stock of one product at one enterprise (库存).",
            Self::ProductTest => {
                "A product test result: release test or supervisory sampling (产品检验)."
            }
            Self::Inspection => "The outcome of an on-site inspection (检查发现).",
        }
    }
    /// Arrow schema of the lake: the wire fields plus the derived `biz_date`.
    pub fn lake_schema(self) -> arrow_schema::SchemaRef {
        let mut fields: Vec<arrow_schema::Field> = self.fields().iter().map(arrow_field).collect();
        fields.push(arrow_schema::Field::new(
            BIZ_DATE,
            arrow_schema::DataType::Date32,
            false,
        ));
        std::sync::Arc::new(arrow_schema::Schema::new(fields))
    }
    /// Guesses the kind from a file name: the stem's first word (`sales_2026.csv` → sales).
    pub fn from_file_name(name: &str) -> Option<Self> {
        let stem = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
        // Longest names first so that `product_test` is not read as `production`.
        let mut kinds: Vec<EventKind> = Self::ALL.to_vec();
        kinds.sort_by_key(|k| std::cmp::Reverse(k.as_str().len()));
        kinds.into_iter().find(|k| stem.starts_with(k.as_str()))
    }
}

impl ReferenceKind {
    /// The fields, in contract order.
    pub fn fields(self) -> &'static [FieldSpec] {
        match self {
            Self::Enterprise => ENTERPRISE_FIELDS,
            Self::Product => PRODUCT_FIELDS,
            Self::Batch => BATCH_FIELDS,
        }
    }
    /// One line on what the table is.
    pub fn description(self) -> &'static str {
        match self {
            Self::Enterprise => "An enterprise under supervision, with its registered lead.",
            Self::Product => "A drug product (one approval number and pack).",
            Self::Batch => "A production batch of a product.",
        }
    }
    /// Arrow schema of the table.
    pub fn schema(self) -> arrow_schema::SchemaRef {
        let fields: Vec<arrow_schema::Field> = self.fields().iter().map(arrow_field).collect();
        std::sync::Arc::new(arrow_schema::Schema::new(fields))
    }
}

/// The Arrow field for a field spec.
pub fn arrow_field(spec: &FieldSpec) -> arrow_schema::Field {
    use arrow_schema::{DataType, TimeUnit};
    let dt = match spec.ty {
        FieldType::Text => DataType::Utf8,
        FieldType::Int => DataType::Int64,
        FieldType::Float => DataType::Float64,
        FieldType::Bool => DataType::Boolean,
        FieldType::Timestamp => {
            DataType::Timestamp(TimeUnit::Millisecond, Some(LAKE_TIMEZONE.into()))
        }
        FieldType::Date => DataType::Date32,
    };
    arrow_schema::Field::new(spec.name, dt, spec.nullable)
}

/// An enterprise under supervision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enterprise {
    /// Unified social credit code.
    pub enterprise_id: String,
    /// Registered name.
    pub name: String,
    /// Kind of enterprise.
    pub enterprise_type: EnterpriseType,
    /// GB/T 2260 region code.
    pub region_code: String,
    /// Licence number.
    pub licence_no: String,
    /// Chain headquarters, for a chain store.
    pub parent_id: Option<String>,
    /// Enterprise lead.
    pub lead_name: String,
    /// Lead's phone.
    pub lead_phone: String,
    /// Lead's e-mail.
    pub lead_email: String,
    /// Credit grade A–D.
    pub credit_grade: String,
}

/// A drug product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Product id.
    pub product_id: String,
    /// Approval number.
    pub approval_no: String,
    /// Name and strength.
    pub name: String,
    /// Dosage form.
    pub dosage_form: String,
    /// Special-management class.
    pub special_class: SpecialClass,
    /// Manufacturer credit code.
    pub manufacturer_id: String,
    /// Typical retail price, yuan.
    pub reference_price: f64,
    /// Shelf life in months.
    pub shelf_life_months: i64,
}

/// A production batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Product id.
    pub product_id: String,
    /// Batch number.
    pub batch_no: String,
    /// Manufacturer credit code.
    pub manufacturer_id: String,
    /// Production date.
    pub production_date: NaiveDate,
    /// Expiry date.
    pub expiry_date: NaiveDate,
    /// Released for sale.
    pub released: bool,
}

/// A production record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductionRecord {
    /// Source id.
    pub event_id: String,
    /// Event time.
    pub event_time: DateTime<FixedOffset>,
    /// Manufacturer credit code.
    pub enterprise_id: String,
    /// Product id.
    pub product_id: String,
    /// Batch number.
    pub batch_no: String,
    /// Packages produced.
    pub quantity: i64,
}

/// A sales record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesRecord {
    /// Source id.
    pub event_id: String,
    /// Event time.
    pub event_time: DateTime<FixedOffset>,
    /// Seller credit code.
    pub enterprise_id: String,
    /// Product id.
    pub product_id: String,
    /// Batch number.
    pub batch_no: String,
    /// Packages sold.
    pub quantity: i64,
    /// Price per package, yuan.
    pub unit_price: f64,
    /// Buyer credit code; `None` for a retail sale.
    #[serde(default)]
    pub buyer_id: Option<String>,
    /// Traceability code of the package.
    #[serde(default)]
    pub trace_code: Option<String>,
}

/// A purchase record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchaseRecord {
    /// Source id.
    pub event_id: String,
    /// Event time.
    pub event_time: DateTime<FixedOffset>,
    /// Buyer credit code.
    pub enterprise_id: String,
    /// Supplier credit code.
    pub supplier_id: String,
    /// Product id.
    pub product_id: String,
    /// Batch number.
    pub batch_no: String,
    /// Packages bought.
    pub quantity: i64,
    /// Price per package, yuan.
    pub unit_price: f64,
}

/// An end-of-day inventory snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventorySnapshot {
    /// Source id.
    pub event_id: String,
    /// Snapshot time (end of the business day).
    pub event_time: DateTime<FixedOffset>,
    /// Enterprise credit code.
    pub enterprise_id: String,
    /// Product id.
    pub product_id: String,
    /// Closing stock in packages.
    pub quantity: i64,
}

/// A product test result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductTestRecord {
    /// Source id.
    pub event_id: String,
    /// Test report time.
    pub event_time: DateTime<FixedOffset>,
    /// Where the batch was tested or sampled.
    pub enterprise_id: String,
    /// Product id.
    pub product_id: String,
    /// Batch number.
    pub batch_no: String,
    /// Release test or sampling.
    pub test_kind: TestKind,
    /// Pass or fail.
    pub result: TestResult,
    /// Deciding test item.
    #[serde(default)]
    pub test_item: Option<String>,
}

/// An inspection finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectionFinding {
    /// Source id.
    pub event_id: String,
    /// Inspection date-time.
    pub event_time: DateTime<FixedOffset>,
    /// Inspected enterprise.
    pub enterprise_id: String,
    /// Case id.
    pub case_id: String,
    /// Overall conclusion.
    pub conclusion: Conclusion,
    /// Critical defects.
    pub critical_defects: i64,
    /// Major defects.
    pub major_defects: i64,
    /// General defects.
    pub general_defects: i64,
    /// Comma-separated flags.
    #[serde(default)]
    pub flags: Option<String>,
}

fn check_event_id(id: &str) -> Result<(), FieldError> {
    if id.is_empty() || id.chars().count() > 64 {
        return Err(FieldError::new("event_id", "must be 1–64 characters"));
    }
    Ok(())
}

fn check_credit(field: &'static str, v: &str) -> Result<(), FieldError> {
    ids::validate_credit_code(v).map_err(|err| FieldError::new(field, err.to_string()))
}

fn check_product(v: &str) -> Result<(), FieldError> {
    if v.is_empty() || v.len() > 32 {
        return Err(FieldError::new("product_id", "must be 1–32 characters"));
    }
    Ok(())
}

/// Checks a batch number: 1–20 ASCII letters, digits or '-'.
pub fn check_batch_no(v: &str) -> Result<(), FieldError> {
    if v.is_empty() || v.len() > 20 || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(FieldError::new(
            "batch_no",
            format!("{v:?} is not 1–20 letters, digits or '-'"),
        ));
    }
    Ok(())
}

fn check_quantity(field: &'static str, q: i64, strictly_positive: bool) -> Result<(), FieldError> {
    if q < 0 {
        return Err(FieldError::new(field, format!("negative quantity {q}")));
    }
    if strictly_positive && q == 0 {
        return Err(FieldError::new(field, "quantity 0 records no movement"));
    }
    Ok(())
}

fn check_price(p: f64) -> Result<(), FieldError> {
    if !p.is_finite() || p < 0.0 {
        return Err(FieldError::new(
            "unit_price",
            format!("price {p} is negative or not a number"),
        ));
    }
    Ok(())
}

/// Field-level validation of a record, independent of reference data.
pub trait Validate {
    /// The first field that fails, if any.
    fn validate(&self) -> Result<(), FieldError>;
    /// Event time of the record.
    fn event_time(&self) -> &DateTime<FixedOffset>;
    /// Reporting enterprise.
    fn enterprise_id(&self) -> &str;
    /// Product concerned, if any.
    fn product_id(&self) -> Option<&str>;
}

impl Validate for ProductionRecord {
    fn validate(&self) -> Result<(), FieldError> {
        check_event_id(&self.event_id)?;
        check_credit("enterprise_id", &self.enterprise_id)?;
        check_product(&self.product_id)?;
        check_batch_no(&self.batch_no)?;
        check_quantity("quantity", self.quantity, true)
    }
    fn event_time(&self) -> &DateTime<FixedOffset> {
        &self.event_time
    }
    fn enterprise_id(&self) -> &str {
        &self.enterprise_id
    }
    fn product_id(&self) -> Option<&str> {
        Some(&self.product_id)
    }
}

impl Validate for SalesRecord {
    fn validate(&self) -> Result<(), FieldError> {
        check_event_id(&self.event_id)?;
        check_credit("enterprise_id", &self.enterprise_id)?;
        check_product(&self.product_id)?;
        check_batch_no(&self.batch_no)?;
        check_quantity("quantity", self.quantity, true)?;
        check_price(self.unit_price)?;
        if let Some(b) = &self.buyer_id {
            check_credit("buyer_id", b)?;
            if b == &self.enterprise_id {
                return Err(FieldError::new(
                    "buyer_id",
                    "an enterprise cannot sell to itself",
                ));
            }
        }
        if let Some(t) = &self.trace_code {
            ids::parse_trace_code(t)
                .map_err(|err| FieldError::new("trace_code", err.to_string()))?;
        }
        Ok(())
    }
    fn event_time(&self) -> &DateTime<FixedOffset> {
        &self.event_time
    }
    fn enterprise_id(&self) -> &str {
        &self.enterprise_id
    }
    fn product_id(&self) -> Option<&str> {
        Some(&self.product_id)
    }
}

impl Validate for PurchaseRecord {
    fn validate(&self) -> Result<(), FieldError> {
        check_event_id(&self.event_id)?;
        check_credit("enterprise_id", &self.enterprise_id)?;
        check_credit("supplier_id", &self.supplier_id)?;
        check_product(&self.product_id)?;
        check_batch_no(&self.batch_no)?;
        check_quantity("quantity", self.quantity, true)?;
        check_price(self.unit_price)
    }
    fn event_time(&self) -> &DateTime<FixedOffset> {
        &self.event_time
    }
    fn enterprise_id(&self) -> &str {
        &self.enterprise_id
    }
    fn product_id(&self) -> Option<&str> {
        Some(&self.product_id)
    }
}

impl Validate for InventorySnapshot {
    fn validate(&self) -> Result<(), FieldError> {
        check_event_id(&self.event_id)?;
        check_credit("enterprise_id", &self.enterprise_id)?;
        check_product(&self.product_id)?;
        check_quantity("quantity", self.quantity, false)
    }
    fn event_time(&self) -> &DateTime<FixedOffset> {
        &self.event_time
    }
    fn enterprise_id(&self) -> &str {
        &self.enterprise_id
    }
    fn product_id(&self) -> Option<&str> {
        Some(&self.product_id)
    }
}

impl Validate for ProductTestRecord {
    fn validate(&self) -> Result<(), FieldError> {
        check_event_id(&self.event_id)?;
        check_credit("enterprise_id", &self.enterprise_id)?;
        check_product(&self.product_id)?;
        check_batch_no(&self.batch_no)
    }
    fn event_time(&self) -> &DateTime<FixedOffset> {
        &self.event_time
    }
    fn enterprise_id(&self) -> &str {
        &self.enterprise_id
    }
    fn product_id(&self) -> Option<&str> {
        Some(&self.product_id)
    }
}

impl Validate for InspectionFinding {
    fn validate(&self) -> Result<(), FieldError> {
        check_event_id(&self.event_id)?;
        check_credit("enterprise_id", &self.enterprise_id)?;
        // The case id opens a case: printed on documents, in file names and log lines.
        let chars = self.case_id.chars().count();
        if chars == 0 || chars > 64 || self.case_id.trim() != self.case_id {
            return Err(FieldError::new(
                "case_id",
                "must be 1–64 characters without surrounding whitespace",
            ));
        }
        if self.case_id.chars().any(char::is_control) {
            return Err(FieldError::new(
                "case_id",
                "must not contain control characters (newline, tab, NUL …)",
            ));
        }
        check_quantity("critical_defects", self.critical_defects, false)?;
        check_quantity("major_defects", self.major_defects, false)?;
        check_quantity("general_defects", self.general_defects, false)?;
        if let Some(flags) = &self.flags {
            for flag in flags.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if !flag.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    return Err(FieldError::new(
                        "flags",
                        format!("flag {flag:?} is not snake_case"),
                    ));
                }
            }
        }
        Ok(())
    }
    fn event_time(&self) -> &DateTime<FixedOffset> {
        &self.event_time
    }
    fn enterprise_id(&self) -> &str {
        &self.enterprise_id
    }
    fn product_id(&self) -> Option<&str> {
        None
    }
}

/// A record together with its derived business day: the shape of a lake row.
#[derive(Debug, Clone, Serialize)]
pub struct LakeRow<'a, T> {
    /// The wire record.
    #[serde(flatten)]
    pub record: &'a T,
    /// Business day in Asia/Shanghai.
    pub biz_date: NaiveDate,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    #[test]
    fn business_day_is_shanghai_calendar_day_whatever_the_offset() {
        assert_eq!(
            biz_date(&t("2026-03-01T16:30:00Z")),
            NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
        );
        assert_eq!(
            biz_date(&t("2026-03-01T15:59:59Z")),
            NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
        );
        assert_eq!(
            biz_date(&t("2026-03-01T23:59:00+08:00")),
            NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
        );
        assert_eq!(
            biz_date(&t("2026-03-01T10:00:00-05:00")),
            NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
        );
        assert_eq!(
            biz_date(&t("2026-03-01T12:00:00-05:00")),
            NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
        );
    }

    fn sale() -> SalesRecord {
        SalesRecord {
            event_id: "s-1".into(),
            event_time: t("2026-03-01T10:00:00+08:00"),
            enterprise_id: "91110000600037341L".into(),
            product_id: "P0001".into(),
            batch_no: "B2601-01".into(),
            quantity: 2,
            unit_price: 12.5,
            buyer_id: None,
            trace_code: Some("81234560000000000012".into()),
        }
    }

    #[test]
    fn valid_sale_passes_and_each_bad_field_is_named() {
        sale().validate().unwrap();
        let cases: Vec<(SalesRecord, &str)> = vec![
            (
                SalesRecord {
                    quantity: -3,
                    ..sale()
                },
                "quantity",
            ),
            (
                SalesRecord {
                    quantity: 0,
                    ..sale()
                },
                "quantity",
            ),
            (
                SalesRecord {
                    unit_price: -1.0,
                    ..sale()
                },
                "unit_price",
            ),
            (
                SalesRecord {
                    unit_price: f64::NAN,
                    ..sale()
                },
                "unit_price",
            ),
            (
                SalesRecord {
                    enterprise_id: "91110000600037341X".into(),
                    ..sale()
                },
                "enterprise_id",
            ),
            (
                SalesRecord {
                    buyer_id: Some("123".into()),
                    ..sale()
                },
                "buyer_id",
            ),
            (
                SalesRecord {
                    buyer_id: Some("91110000600037341L".into()),
                    ..sale()
                },
                "buyer_id",
            ),
            (
                SalesRecord {
                    trace_code: Some("12345".into()),
                    ..sale()
                },
                "trace_code",
            ),
            (
                SalesRecord {
                    batch_no: "B 1".into(),
                    ..sale()
                },
                "batch_no",
            ),
            (
                SalesRecord {
                    batch_no: String::new(),
                    ..sale()
                },
                "batch_no",
            ),
            (
                SalesRecord {
                    event_id: String::new(),
                    ..sale()
                },
                "event_id",
            ),
            (
                SalesRecord {
                    product_id: String::new(),
                    ..sale()
                },
                "product_id",
            ),
        ];
        for (rec, field) in cases {
            let err = rec.validate().expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn inventory_allows_zero_but_not_negative() {
        let snap = InventorySnapshot {
            event_id: "i-1".into(),
            event_time: t("2026-03-01T23:59:00+08:00"),
            enterprise_id: "91110000600037341L".into(),
            product_id: "P0001".into(),
            quantity: 0,
        };
        snap.validate().unwrap();
        let err = InventorySnapshot {
            quantity: -1,
            ..snap
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "quantity");
        assert!(err.reason.contains("negative"));
    }

    #[test]
    fn inspection_flags_must_be_snake_case() {
        let finding = InspectionFinding {
            event_id: "x".into(),
            event_time: t("2026-03-01T10:00:00+08:00"),
            enterprise_id: "91110000600037341L".into(),
            case_id: "C1".into(),
            conclusion: Conclusion::PendingRectification,
            critical_defects: 0,
            major_defects: 2,
            general_defects: 17,
            flags: Some("systemic_qms_problem, residual_risk".into()),
        };
        finding.validate().unwrap();
        let err = InspectionFinding {
            flags: Some("Bad Flag".into()),
            ..finding.clone()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "flags");
        let err = InspectionFinding {
            major_defects: -1,
            ..finding
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "major_defects");
    }

    #[test]
    fn kind_from_file_name_prefers_the_longest_name() {
        assert_eq!(
            EventKind::from_file_name("product_test_2026.csv"),
            Some(EventKind::ProductTest)
        );
        assert_eq!(
            EventKind::from_file_name("dir/production.ndjson"),
            Some(EventKind::Production)
        );
        assert_eq!(
            EventKind::from_file_name("Sales-March.csv"),
            Some(EventKind::Sales)
        );
        assert_eq!(EventKind::from_file_name("orders.csv"), None);
    }

    /// The serde structs and the field tables must name the same fields in the same order.
    #[test]
    fn serde_structs_match_field_tables() {
        fn keys<T: Serialize>(v: &T) -> Vec<String> {
            match serde_json::to_value(v).unwrap() {
                serde_json::Value::Object(m) => m.keys().cloned().collect(),
                _ => panic!("not an object"),
            }
        }
        fn names(specs: &[FieldSpec]) -> Vec<String> {
            let mut v: Vec<String> = specs.iter().map(|s| s.name.to_string()).collect();
            v.sort();
            v
        }
        let mut sale_keys = keys(&sale());
        sale_keys.sort();
        assert_eq!(sale_keys, names(EventKind::Sales.fields()));
        let p = PurchaseRecord {
            event_id: "p".into(),
            event_time: t("2026-03-01T10:00:00+08:00"),
            enterprise_id: "x".into(),
            supplier_id: "y".into(),
            product_id: "p".into(),
            batch_no: "b".into(),
            quantity: 1,
            unit_price: 1.0,
        };
        let mut k = keys(&p);
        k.sort();
        assert_eq!(k, names(EventKind::Purchase.fields()));
        let b = Batch {
            product_id: "p".into(),
            batch_no: "b".into(),
            manufacturer_id: "m".into(),
            production_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            expiry_date: NaiveDate::from_ymd_opt(2028, 1, 1).unwrap(),
            released: true,
        };
        let mut k = keys(&b);
        k.sort();
        assert_eq!(k, names(ReferenceKind::Batch.fields()));
    }

    #[test]
    fn lake_schema_adds_business_day() {
        let schema = EventKind::Sales.lake_schema();
        assert_eq!(schema.fields().len(), SALES_FIELDS.len() + 1);
        assert_eq!(schema.field(schema.fields().len() - 1).name(), BIZ_DATE);
        assert!(schema.field_with_name("buyer_id").unwrap().is_nullable());
        assert!(!schema.field_with_name("quantity").unwrap().is_nullable());
    }
}
