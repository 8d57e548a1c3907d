//! Criterion benchmarks of the per-record hot paths: identifier validation, decoding typed
//! records into a lake batch, and turning indicator hits into the risk list.
//! Run: `cargo bench -p pharmwatch-core --bench hot_paths`.

use std::collections::HashMap;
use std::hint::black_box;

use chrono::{DateTime, Duration, NaiveDate};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use pharmwatch_core::indicators::Hit;
use pharmwatch_core::lake::records_to_batch;
use pharmwatch_core::risk;
use pharmwatch_schemas::ids::{make_credit_code, make_trace_code, validate_credit_code};
use pharmwatch_schemas::{EventKind, SalesRecord, Validate};

fn codes(n: u64) -> Vec<String> {
    (0..n)
        .map(|i| make_credit_code('9', '1', "150100", 1_000 + i * 7919).expect("valid"))
        .collect()
}

fn sales(n: usize) -> Vec<SalesRecord> {
    let t0 = DateTime::parse_from_rfc3339("2026-10-30T08:00:00+08:00").expect("valid time");
    let sellers = codes(200);
    (0..n)
        .map(|i| SalesRecord {
            event_id: format!("S{i:012}"),
            event_time: t0 + Duration::seconds((i % 50_000) as i64),
            enterprise_id: sellers[i % sellers.len()].clone(),
            product_id: format!("P{:05}", i % 150),
            batch_no: "2609010101".to_string(),
            quantity: 1,
            unit_price: 12.5,
            buyer_id: None,
            trace_code: Some(make_trace_code((i % 150) as u32, i as u64).expect("valid")),
        })
        .collect()
}

fn bench_ids(c: &mut Criterion) {
    let list = codes(10_000);
    let mut g = c.benchmark_group("ids");
    g.throughput(Throughput::Elements(list.len() as u64));
    g.bench_function("validate_credit_code", |b| {
        b.iter(|| {
            list.iter()
                .filter(|c| validate_credit_code(black_box(c)).is_ok())
                .count()
        })
    });
    g.finish();
}

fn bench_decode(c: &mut Criterion) {
    let rows = sales(100_000);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.bench_function("validate_sales_records", |b| {
        b.iter(|| rows.iter().filter(|r| r.validate().is_ok()).count())
    });
    g.bench_function("sales_records_to_lake_batch", |b| {
        b.iter(|| {
            records_to_batch(EventKind::Sales, black_box(&rows))
                .expect("batch")
                .num_rows()
        })
    });
    g.finish();
}

fn bench_risk_list(c: &mut Criterion) {
    let day = NaiveDate::from_ymd_opt(2026, 10, 30).expect("date");
    let ents = codes(2_000);
    let kinds = pharmwatch_core::indicators::INDICATORS;
    let hits: Vec<Hit> = (0..20_000)
        .map(|i| Hit {
            enterprise_id: ents[i % ents.len()].clone(),
            product_id: Some(format!("P{:05}", i % 150)),
            date: day,
            indicator: kinds[i % kinds.len()].to_string(),
            window_start: day,
            window_end: day,
            observed: 12.0,
            expected: 3.0,
            detail: "batch=B1;expiry=2026-09-30".into(),
        })
        .collect();
    let mut g = c.benchmark_group("risk");
    g.throughput(Throughput::Elements(hits.len() as u64));
    g.bench_function("build_risk_list", |b| {
        b.iter(|| risk::build(black_box(&hits), &[], &HashMap::new(), &HashMap::new()).len())
    });
    g.finish();
}

criterion_group!(benches, bench_ids, bench_decode, bench_risk_list);
criterion_main!(benches);
