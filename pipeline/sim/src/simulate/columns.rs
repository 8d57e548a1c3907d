//! The simulator's records as lake batches, built column by column.
//!
//! `pharmwatch_core::lake::records_to_batch` turns any serde record into Arrow through the
//! Arrow JSON decoder: general, but a simulated province spent most of its time there. Here each
//! event record type fills its kind's lake schema (the wire fields, then `biz_date`) straight
//! from its fields.
//!
//! Invariants: for any records, [`LakeColumns::lake_batch`] equals `records_to_batch` of the
//! same records (same schema, values and nulls), and [`lake_batches`] cuts records into the
//! batches `LakeWriter::write_day_file` does, so that a file written from them is the same
//! bytes (`files::DayFile`). The unit tests check the batches kind by kind; `files` checks the
//! bytes.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDate};
use datafusion::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::record_batch::RecordBatch;

use pharmwatch_core::error::{CoreError, Result};
use pharmwatch_schemas::records::LAKE_TIMEZONE;
use pharmwatch_schemas::{
    EventKind, InspectionFinding, InventorySnapshot, ProductTestRecord, ProductionRecord,
    PurchaseRecord, SalesRecord, biz_date,
};

/// Rows per record batch of a day file: the chunk `LakeWriter::write_day_file` cuts records
/// into. The batches a file is written from decide its pages, so the two must agree for the
/// bytes to.
pub const ROWS_PER_BATCH: usize = 128 * 1024;

/// An event record type the simulator writes, with its lake columns.
pub trait LakeColumns: Sized {
    /// The record's event kind.
    const KIND: EventKind;

    /// The columns of `records`, in the order of the kind's wire fields, without `biz_date`.
    fn wire_columns(records: &[Self]) -> Vec<ArrayRef>;

    /// The record's event time.
    fn time(&self) -> &DateTime<FixedOffset>;

    /// `records` as one batch of the kind's lake schema (wire fields + `biz_date`).
    fn lake_batch(records: &[Self]) -> Result<RecordBatch> {
        let mut columns = Self::wire_columns(records);
        columns.push(biz_dates(records.iter().map(Self::time)));
        RecordBatch::try_new(Self::KIND.lake_schema(), columns)
            .map_err(|e| CoreError::arrow(Self::KIND.as_str(), e))
    }
}

/// `records` as the batches of one lake file: [`ROWS_PER_BATCH`] rows each, the last fewer.
pub fn lake_batches<T: LakeColumns>(records: &[T]) -> Result<Vec<RecordBatch>> {
    records.chunks(ROWS_PER_BATCH).map(T::lake_batch).collect()
}

/// A text column of non-null values.
fn text<'a, T: 'a>(records: &'a [T], field: impl Fn(&'a T) -> &'a str) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(records.iter().map(field)))
}

/// A nullable text column.
fn opt_text<'a, T: 'a>(records: &'a [T], field: impl Fn(&'a T) -> Option<&'a str>) -> ArrayRef {
    Arc::new(records.iter().map(field).collect::<StringArray>())
}

/// An integer column.
fn int<T>(records: &[T], field: impl Fn(&T) -> i64) -> ArrayRef {
    Arc::new(Int64Array::from(
        records.iter().map(field).collect::<Vec<_>>(),
    ))
}

/// A float column.
fn float<T>(records: &[T], field: impl Fn(&T) -> f64) -> ArrayRef {
    Arc::new(Float64Array::from(
        records.iter().map(field).collect::<Vec<_>>(),
    ))
}

/// The event-time column: milliseconds since the epoch, shown in the lake's time zone.
fn times<T: LakeColumns>(records: &[T]) -> ArrayRef {
    let millis: Vec<i64> = records
        .iter()
        .map(|r| r.time().timestamp_millis())
        .collect();
    Arc::new(TimestampMillisecondArray::from(millis).with_timezone(LAKE_TIMEZONE))
}

/// The `biz_date` column: each time's business day, as days since the epoch.
fn biz_dates<'a>(times: impl Iterator<Item = &'a DateTime<FixedOffset>>) -> ArrayRef {
    let days: Vec<i32> = times.map(|t| days_since_epoch(biz_date(t))).collect();
    Arc::new(Date32Array::from(days))
}

/// Days from 1970-01-01 to `d` (Arrow's `Date32`).
fn days_since_epoch(d: NaiveDate) -> i32 {
    // Days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
    const EPOCH_FROM_CE: i32 = 719_163;
    chrono::Datelike::num_days_from_ce(&d) - EPOCH_FROM_CE
}

impl LakeColumns for ProductionRecord {
    const KIND: EventKind = EventKind::Production;
    fn wire_columns(records: &[Self]) -> Vec<ArrayRef> {
        vec![
            text(records, |r| &r.event_id),
            times(records),
            text(records, |r| &r.enterprise_id),
            text(records, |r| &r.product_id),
            text(records, |r| &r.batch_no),
            int(records, |r| r.quantity),
        ]
    }
    fn time(&self) -> &DateTime<FixedOffset> {
        &self.event_time
    }
}

impl LakeColumns for SalesRecord {
    const KIND: EventKind = EventKind::Sales;
    fn wire_columns(records: &[Self]) -> Vec<ArrayRef> {
        vec![
            text(records, |r| &r.event_id),
            times(records),
            text(records, |r| &r.enterprise_id),
            text(records, |r| &r.product_id),
            text(records, |r| &r.batch_no),
            int(records, |r| r.quantity),
            float(records, |r| r.unit_price),
            opt_text(records, |r| r.buyer_id.as_deref()),
            opt_text(records, |r| r.trace_code.as_deref()),
        ]
    }
    fn time(&self) -> &DateTime<FixedOffset> {
        &self.event_time
    }
}

impl LakeColumns for PurchaseRecord {
    const KIND: EventKind = EventKind::Purchase;
    fn wire_columns(records: &[Self]) -> Vec<ArrayRef> {
        vec![
            text(records, |r| &r.event_id),
            times(records),
            text(records, |r| &r.enterprise_id),
            text(records, |r| &r.supplier_id),
            text(records, |r| &r.product_id),
            text(records, |r| &r.batch_no),
            int(records, |r| r.quantity),
            float(records, |r| r.unit_price),
        ]
    }
    fn time(&self) -> &DateTime<FixedOffset> {
        &self.event_time
    }
}

impl LakeColumns for InventorySnapshot {
    const KIND: EventKind = EventKind::Inventory;
    fn wire_columns(records: &[Self]) -> Vec<ArrayRef> {
        vec![
            text(records, |r| &r.event_id),
            times(records),
            text(records, |r| &r.enterprise_id),
            text(records, |r| &r.product_id),
            int(records, |r| r.quantity),
        ]
    }
    fn time(&self) -> &DateTime<FixedOffset> {
        &self.event_time
    }
}

impl LakeColumns for ProductTestRecord {
    const KIND: EventKind = EventKind::ProductTest;
    fn wire_columns(records: &[Self]) -> Vec<ArrayRef> {
        vec![
            text(records, |r| &r.event_id),
            times(records),
            text(records, |r| &r.enterprise_id),
            text(records, |r| &r.product_id),
            text(records, |r| &r.batch_no),
            text(records, |r| r.test_kind.as_str()),
            text(records, |r| r.result.as_str()),
            opt_text(records, |r| r.test_item.as_deref()),
        ]
    }
    fn time(&self) -> &DateTime<FixedOffset> {
        &self.event_time
    }
}

impl LakeColumns for InspectionFinding {
    const KIND: EventKind = EventKind::Inspection;
    fn wire_columns(records: &[Self]) -> Vec<ArrayRef> {
        vec![
            text(records, |r| &r.event_id),
            times(records),
            text(records, |r| &r.enterprise_id),
            text(records, |r| &r.case_id),
            text(records, |r| r.conclusion.as_str()),
            int(records, |r| r.critical_defects),
            int(records, |r| r.major_defects),
            int(records, |r| r.general_defects),
            opt_text(records, |r| r.flags.as_deref()),
        ]
    }
    fn time(&self) -> &DateTime<FixedOffset> {
        &self.event_time
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use pharmwatch_core::lake::records_to_batch;
    use pharmwatch_schemas::{Conclusion, TestKind, TestResult, Validate};
    use serde::Serialize;

    /// Event times across the day and its edges, in the lake's offset and in others (the
    /// business day is Shanghai's whatever the offset).
    fn time(i: usize) -> DateTime<FixedOffset> {
        let times = [
            "2026-09-01T08:00:00+08:00",
            "2026-09-01T23:59:00+08:00",
            "2026-09-01T00:00:00+08:00",
            "2026-09-01T16:30:00Z",
            "2026-09-01T15:59:59Z",
            "2026-10-01T12:34:56.789+08:00",
            "1969-12-31T23:00:00-05:00",
        ];
        DateTime::parse_from_rfc3339(times[i % times.len()]).unwrap()
    }

    pub(crate) fn sales(n: usize) -> Vec<SalesRecord> {
        (0..n)
            .map(|i| SalesRecord {
                event_id: format!("S20260901{i:09}"),
                event_time: time(i),
                enterprise_id: format!("91150100MA0{:07}", i % 37),
                product_id: format!("P{:05}", i % 91),
                batch_no: format!("2608{:02}{:03}", i % 13, i % 7),
                quantity: (i % 5) as i64,
                unit_price: (i as f64 * 0.37).sin().abs() * 100.0 + 0.01,
                buyer_id: (i % 3 == 0).then(|| format!("91150100MA1{:07}", i % 11)),
                trace_code: (i % 4 != 0).then(|| format!("{:07}{i:013}", i % 91)),
            })
            .collect()
    }

    pub(crate) fn production(n: usize) -> Vec<ProductionRecord> {
        sales(n)
            .into_iter()
            .map(|s| ProductionRecord {
                event_id: s.event_id.replacen('S', "M", 1),
                event_time: s.event_time,
                enterprise_id: s.enterprise_id,
                product_id: s.product_id,
                batch_no: s.batch_no,
                quantity: s.quantity * 1000,
            })
            .collect()
    }

    pub(crate) fn purchase(n: usize) -> Vec<PurchaseRecord> {
        sales(n)
            .into_iter()
            .map(|s| PurchaseRecord {
                event_id: s.event_id.replacen('S', "P", 1),
                event_time: s.event_time,
                supplier_id: s.buyer_id.unwrap_or_else(|| "91110000100000000X".into()),
                enterprise_id: s.enterprise_id,
                product_id: s.product_id,
                batch_no: s.batch_no,
                quantity: s.quantity,
                unit_price: s.unit_price,
            })
            .collect()
    }

    pub(crate) fn inventory(n: usize) -> Vec<InventorySnapshot> {
        sales(n)
            .into_iter()
            .map(|s| InventorySnapshot {
                event_id: s.event_id.replacen('S', "I", 1),
                event_time: s.event_time,
                enterprise_id: s.enterprise_id,
                product_id: s.product_id,
                quantity: s.quantity * 17,
            })
            .collect()
    }

    pub(crate) fn product_tests(n: usize) -> Vec<ProductTestRecord> {
        sales(n)
            .into_iter()
            .enumerate()
            .map(|(i, s)| ProductTestRecord {
                event_id: s.event_id.replacen('S', "T", 1),
                event_time: s.event_time,
                enterprise_id: s.enterprise_id,
                product_id: s.product_id,
                batch_no: s.batch_no,
                test_kind: TestKind::ALL[i % TestKind::ALL.len()],
                result: TestResult::ALL[i % 3 % TestResult::ALL.len()],
                test_item: ["全检", "溶出度", "含量测定"]
                    .get(i % 4)
                    .map(|t| t.to_string()),
            })
            .collect()
    }

    pub(crate) fn inspections(n: usize) -> Vec<InspectionFinding> {
        sales(n)
            .into_iter()
            .enumerate()
            .map(|(i, s)| InspectionFinding {
                event_id: s.event_id.replacen('S', "X", 1),
                event_time: s.event_time,
                enterprise_id: s.enterprise_id,
                case_id: format!("JC20260901{i:04}"),
                conclusion: Conclusion::ALL[i % Conclusion::ALL.len()],
                critical_defects: (i % 3) as i64,
                major_defects: (i % 10) as i64,
                general_defects: (i % 30) as i64,
                flags: (i % 3 == 0).then(|| "key_personnel_changes".to_string()),
            })
            .collect()
    }

    /// Each batch of `records` equals the JSON decoder's for the same rows.
    fn same_as_the_json_decoder<T: LakeColumns + Serialize + Validate>(records: &[T]) {
        let kind = T::KIND;
        let ours = lake_batches(records).unwrap();
        let theirs: Vec<RecordBatch> = records
            .chunks(ROWS_PER_BATCH)
            .map(|chunk| records_to_batch(kind, chunk).unwrap())
            .collect();
        assert_eq!(ours, theirs, "{kind}");
    }

    #[test]
    fn every_kind_gives_the_batches_of_the_json_decoder() {
        same_as_the_json_decoder(&production(500));
        same_as_the_json_decoder(&sales(500));
        same_as_the_json_decoder(&purchase(500));
        same_as_the_json_decoder(&inventory(500));
        same_as_the_json_decoder(&product_tests(500));
        same_as_the_json_decoder(&inspections(500));
        same_as_the_json_decoder(&sales(1));
        assert!(lake_batches::<SalesRecord>(&[]).unwrap().is_empty());
    }

    #[test]
    fn the_business_day_counts_days_from_the_epoch() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        assert_eq!(days_since_epoch(epoch), 0);
        assert_eq!(days_since_epoch(epoch.pred_opt().unwrap()), -1);
        let d = NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
        assert_eq!(i64::from(days_since_epoch(d)), (d - epoch).num_days());
    }
}
