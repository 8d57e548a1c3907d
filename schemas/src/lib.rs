//! `pharmwatch-schemas`: the records pharmwatch reads, their Arrow schemas and wire contracts,
//! and validation of the Chinese regulatory identifiers they carry.
//!
//! This crate has no I/O, no async runtime and no Kafka: every other crate depends on it, so
//! it stays small. Field names here are the names used in JSON, CSV headers, Arrow and SQL.

pub mod contracts;
pub mod ids;
pub mod records;

pub use records::{
    Batch, Conclusion, Enterprise, EnterpriseType, EventKind, FieldError, InspectionFinding,
    InventorySnapshot, Product, ProductTestRecord, ProductionRecord, PurchaseRecord, ReferenceKind,
    SHANGHAI_OFFSET_SECONDS, SalesRecord, SpecialClass, TestKind, TestResult, Validate, biz_date,
    shanghai,
};
