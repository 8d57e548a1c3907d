//! What the engine judges: a decoded, validated record of one event kind with its source
//! (topic, partition, offset), accepted or rejected; the risk events it produces; and the
//! reference tables (enterprises, products, batches) it reads them against.

use std::path::Path;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use pharmwatch_core::fasthash::FastMap;
use pharmwatch_core::ingest::ReferenceSets;
use pharmwatch_core::query::{register_urls, table_rows};
use pharmwatch_core::remote_lake::LakeSource;
use pharmwatch_core::risk::RiskItem;
use pharmwatch_schemas::{
    Batch, Enterprise, EventKind, InspectionFinding, InventorySnapshot, Product, ProductTestRecord,
    ProductionRecord, PurchaseRecord, ReferenceKind, SalesRecord, Validate,
};

/// A decoded, validated record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Production.
    Production(ProductionRecord),
    /// Sales.
    Sales(SalesRecord),
    /// Purchase.
    Purchase(PurchaseRecord),
    /// Inventory snapshot.
    Inventory(InventorySnapshot),
    /// Product test.
    ProductTest(ProductTestRecord),
    /// Inspection finding.
    Inspection(InspectionFinding),
}

impl Record {
    /// Event time.
    pub fn event_time(&self) -> &DateTime<FixedOffset> {
        match self {
            Self::Production(r) => r.event_time(),
            Self::Sales(r) => r.event_time(),
            Self::Purchase(r) => r.event_time(),
            Self::Inventory(r) => r.event_time(),
            Self::ProductTest(r) => r.event_time(),
            Self::Inspection(r) => r.event_time(),
        }
    }
    /// The record's event id.
    pub fn event_id(&self) -> &str {
        match self {
            Self::Production(r) => &r.event_id,
            Self::Sales(r) => &r.event_id,
            Self::Purchase(r) => &r.event_id,
            Self::Inventory(r) => &r.event_id,
            Self::ProductTest(r) => &r.event_id,
            Self::Inspection(r) => &r.event_id,
        }
    }
    /// Reporting enterprise (the message key the producer partitions by).
    pub fn enterprise_id(&self) -> &str {
        match self {
            Self::Production(r) => r.enterprise_id(),
            Self::Sales(r) => r.enterprise_id(),
            Self::Purchase(r) => r.enterprise_id(),
            Self::Inventory(r) => r.enterprise_id(),
            Self::ProductTest(r) => r.enterprise_id(),
            Self::Inspection(r) => r.enterprise_id(),
        }
    }
    /// Event kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Self::Production(_) => EventKind::Production,
            Self::Sales(_) => EventKind::Sales,
            Self::Purchase(_) => EventKind::Purchase,
            Self::Inventory(_) => EventKind::Inventory,
            Self::ProductTest(_) => EventKind::ProductTest,
            Self::Inspection(_) => EventKind::Inspection,
        }
    }
}

/// Decodes one message of `kind` and validates it against the contract and the reference
/// data. The error is the offending field (`-` for the message as a whole) and the reason.
/// A record is one JSON object: an array (which a derived decoder would read field by field
/// in order) or any other value is refused.
pub fn decode(
    kind: EventKind,
    payload: &[u8],
    refs: &ReferenceSets,
) -> std::result::Result<Record, (String, String)> {
    if let Some(refused) = pharmwatch_core::ingest::not_an_object(payload) {
        return Err(refused);
    }
    fn one<T: serde::de::DeserializeOwned + Validate>(
        payload: &[u8],
        refs: &ReferenceSets,
    ) -> std::result::Result<T, (String, String)> {
        // Almost every message is valid: decode it straight, and only when that fails decode
        // it again tracking the path, to name the offending field.
        if let Ok(rec) = serde_json::from_slice::<T>(payload) {
            pharmwatch_core::ingest::check(&rec, refs, None)?;
            return Ok(rec);
        }
        let mut de = serde_json::Deserializer::from_slice(payload);
        let rec: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            pharmwatch_core::ingest::json_refusal(path, &e.into_inner())
        })?;
        de.end()
            .map_err(|e| ("-".to_string(), format!("invalid JSON: {e}")))?;
        pharmwatch_core::ingest::check(&rec, refs, None)?;
        Ok(rec)
    }
    Ok(match kind {
        EventKind::Production => Record::Production(one(payload, refs)?),
        EventKind::Sales => Record::Sales(one(payload, refs)?),
        EventKind::Purchase => Record::Purchase(one(payload, refs)?),
        EventKind::Inventory => Record::Inventory(one(payload, refs)?),
        EventKind::ProductTest => Record::ProductTest(one(payload, refs)?),
        EventKind::Inspection => Record::Inspection(one(payload, refs)?),
    })
}

/// Where a message came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Source {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// An accepted record with its source.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Source coordinates.
    pub source: Source,
    /// The record.
    pub record: Record,
}

/// A rejected message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Source coordinates.
    pub source: Source,
    /// Event kind of the topic.
    pub kind: String,
    /// Message key, if any.
    pub key: Option<String>,
    /// Offending field (`-` for the message as a whole).
    pub field: String,
    /// Why.
    pub reason: String,
    /// The raw message (UTF-8, lossy).
    pub raw: String,
    /// The exact bytes in base64, when the message is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
}

/// A real-time risk event: one risk item with its evidence, published to the risk-events topic
/// and stored in `risk_events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskEvent {
    /// Deterministic id.
    pub id: String,
    /// Indicator.
    pub indicator: String,
    /// Enterprise credit code.
    pub enterprise_id: String,
    /// Enterprise name.
    pub enterprise_name: String,
    /// Region code.
    pub region_code: String,
    /// Product id.
    pub product_id: Option<String>,
    /// Business day.
    pub biz_date: NaiveDate,
    /// Event time of the record that triggered it.
    pub event_time: DateTime<FixedOffset>,
    /// When the stream detected it.
    pub detected_at: DateTime<Utc>,
    /// The message that triggered it (topic `close` and offset −1 for a day-close judgement).
    pub source: Source,
    /// Kafka timestamp of that message, epoch milliseconds (for detection latency).
    #[serde(default)]
    pub source_timestamp_ms: Option<i64>,
    /// Score 0–100 of this item alone (severity × credit factor).
    pub score: f64,
    /// Grade A–D of that score.
    pub grade: String,
    /// Rule-set version.
    pub rule_version: String,
    /// The item: window, observed, expected, reason, evidence, severity.
    pub item: RiskItem,
}

/// Reference data the engine judges against.
#[derive(Debug, Default)]
pub struct Reference {
    /// Enterprises by credit code.
    pub enterprises: FastMap<String, Enterprise>,
    /// Products by id.
    pub products: FastMap<String, Product>,
    /// Batches by (product, batch number).
    pub batches: FastMap<(String, String), Batch>,
    /// Known ids, for validation.
    pub sets: ReferenceSets,
}

impl Reference {
    /// Loads `LAKE/reference/*.parquet` (a folder or a bucket).
    pub async fn load(lake: &Path) -> Result<Self> {
        let ctx = SessionContext::new();
        let source = LakeSource::open(lake, &ctx)?;
        for kind in ReferenceKind::ALL {
            let url = source.reference(*kind).await?;
            register_urls(&ctx, kind.as_str(), kind.schema(), &[url]).await?;
        }
        let enterprises: Vec<Enterprise> = table_rows(&ctx, "enterprises").await?;
        let products: Vec<Product> = table_rows(&ctx, "products").await?;
        let batches: Vec<Batch> = table_rows(&ctx, "batches").await?;
        Ok(Self::new(enterprises, products, batches))
    }

    /// Builds the lookups.
    pub fn new(enterprises: Vec<Enterprise>, products: Vec<Product>, batches: Vec<Batch>) -> Self {
        let sets = ReferenceSets {
            enterprises: enterprises
                .iter()
                .map(|e| e.enterprise_id.clone())
                .collect(),
            products: products.iter().map(|p| p.product_id.clone()).collect(),
        };
        Self {
            enterprises: enterprises
                .into_iter()
                .map(|e| (e.enterprise_id.clone(), e))
                .collect(),
            products: products
                .into_iter()
                .map(|p| (p.product_id.clone(), p))
                .collect(),
            batches: batches
                .into_iter()
                .map(|b| ((b.product_id.clone(), b.batch_no.clone()), b))
                .collect(),
            sets,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const SELLER: &str = "91110000600037341L";

    fn refs() -> ReferenceSets {
        ReferenceSets {
            enterprises: [SELLER.to_string()].into_iter().collect(),
            products: ["P0001".to_string()].into_iter().collect(),
        }
    }

    /// A valid record of each kind (the decoder accepts each: checked below).
    fn valid() -> Vec<(EventKind, Value)> {
        let common = json!({
            "event_id": "e-1",
            "event_time": "2026-03-01T10:00:00+08:00",
            "enterprise_id": SELLER,
        });
        let with = |extra: Value| {
            let mut v = common.clone();
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        vec![
            (
                EventKind::Sales,
                with(
                    json!({"product_id": "P0001", "batch_no": "B2601-01", "quantity": 2,
                            "unit_price": 12.5, "trace_code": "81234560000000000012"}),
                ),
            ),
            (
                EventKind::Production,
                with(json!({"product_id": "P0001", "batch_no": "B2601-01", "quantity": 200})),
            ),
        ]
    }

    /// A refusal names a field of the contract, `key` or `-`, and gives a reason.
    fn explained(kind: EventKind, refusal: &(String, String)) -> bool {
        let (field, reason) = refusal;
        let known = field == "-" || kind.fields().iter().any(|f| f.name == field.as_str());
        known && !reason.trim().is_empty()
    }

    /// Random JSON values: scalars of every type, then arrays and objects of them.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn the_valid_records_decode() {
        for (kind, v) in valid() {
            let bytes = serde_json::to_vec(&v).unwrap();
            decode(kind, &bytes, &refs()).unwrap_or_else(|e| panic!("{kind:?}: {e:?}"));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Random bytes: never a panic; never accepted unless they are a record; every
        /// refusal explained.
        #[test]
        fn random_bytes_are_refused_with_a_reason(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            for kind in EventKind::ALL {
                if let Err(e) = decode(*kind, &bytes, &refs()) {
                    prop_assert!(explained(*kind, &e), "{kind:?}: {e:?}");
                }
            }
        }

        /// A valid record with one field replaced by a random value, or removed, or with a
        /// field added: accepted only when the value is one the contract allows; a refusal
        /// names that field (or `-` for the message as a whole) and why.
        #[test]
        fn a_record_with_one_field_changed_is_refused_naming_it(
            which in 0usize..2,
            field in 0usize..16,
            value in any_json(),
            remove in any::<bool>(),
            extra in "[a-z_]{1,12}",
        ) {
            let (kind, mut record) = valid().swap_remove(which);
            let obj = record.as_object_mut().unwrap();
            let keys: Vec<String> = obj.keys().cloned().collect();
            let name = if field < keys.len() {
                keys[field].clone()
            } else {
                extra
            };
            let added = !obj.contains_key(&name);
            if remove && !added {
                obj.remove(&name);
            } else {
                obj.insert(name.clone(), value);
            }
            let bytes = serde_json::to_vec(&record).unwrap();
            match decode(kind, &bytes, &refs()) {
                Ok(rec) => prop_assert_eq!(rec.kind(), kind),
                Err(e) => {
                    prop_assert!(explained(kind, &e) || (added && e.0 == name), "{e:?}");
                    prop_assert!(e.0 == name || e.0 == "-", "changed {name}, refused {e:?}");
                }
            }
        }
    }
}
