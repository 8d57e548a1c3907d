//! The stream service against a real Kafka-protocol broker (tansu, started by
//! `scripts/test.sh`, address in `PHARMWATCH_TEST_BROKER`). Every test uses its own topics
//! (a unique prefix), consumer group, lake and store, so the tests share one broker safely.
//!
//! The expected risk events come from the nightly job run over the same simulated days: the
//! stream must flag the same enterprise × product × day for the signals it judges in real time.

// Test code may unwrap: a panic is a test failure with its message.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{Duration as Days, NaiveDate};
use datafusion::arrow::array::Array;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

use pharmwatch::anomaly::ModelSource;
use pharmwatch::indicators::Thresholds;
use pharmwatch::lake;
use pharmwatch::nightly::{self, NightlyConfig};
use pharmwatch::simulate::{self, SimConfig};
use pharmwatch::store::Store;
use pharmwatch::stream::config::StreamConfig;
use pharmwatch::stream::engine::event_id;
use pharmwatch::stream::service::{self, RunOptions};
use pharmwatch_regulation::Calendar;
use pharmwatch_schemas::EventKind;

/// Indicators the stream judges.
const STREAM_INDICATORS: &[&str] = &[
    "expired_batch_sold",
    "failed_batch_sold",
    "trace_code_duplicate",
    "special_drug_volume",
    "sold_not_bought",
    "inventory_mismatch",
];
/// Session timeout of the restarted member in the kill test, milliseconds.
const SESSION_MS: u64 = 6000;
/// Judged when the business day closes (needs the next day's records).
const AT_DAY_CLOSE: &[&str] = &["sold_not_bought", "inventory_mismatch"];

/// A simulated lake, the nightly baseline of the day before the stream days, and the nightly
/// hits of the stream days (the expectation). Built once per test binary.
struct Fixture {
    _dir: tempfile::TempDir,
    lake: PathBuf,
    baseline_out: PathBuf,
    first: NaiveDate,
    last: NaiveDate,
    expected: BTreeSet<(String, String, String, NaiveDate)>,
    produced: BTreeMap<String, BTreeSet<String>>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    // Built on a thread of its own: the async tests call this from inside their runtime.
    F.get_or_init(|| std::thread::spawn(build_fixture).join().unwrap())
}

fn build_fixture() -> Fixture {
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let lake = dir.path().join("lake");
            let cal = Calendar::embedded().unwrap();
            let days = 38;
            let cfg = SimConfig {
                enterprises: 120,
                days,
                start: simulate::default_start(),
                seed: 11,
                anomaly_days: 2,
                anomalies_per_kind: Some(4),
                out: lake.clone(),
                progress: false,
                noise: pharmwatch_sim::simulate::noise::NoiseConfig::off(),
            };
            let sim = simulate::run(&cfg, &cal).unwrap();
            let last = sim.end;
            let first = last - Days::days(1);
            let nightly_cfg = |from: NaiveDate, to: NaiveDate, out: PathBuf| NightlyConfig {
                lake: Some(lake.clone()),
                reference: None,
                inputs: Vec::new(),
                from,
                to,
                out,
                thresholds: Thresholds::default(),
                top: 5,
                progress: false,
                model: ModelSource::Off,
                anomaly_threshold: pharmwatch::anomaly::DEFAULT_THRESHOLD,
            };
            let baseline_out = dir.path().join("baseline");
            let before = first - Days::days(1);
            nightly::run(&nightly_cfg(before, before, baseline_out.clone()))
                .await
                .unwrap();
            let out = nightly::run(&nightly_cfg(first, last, dir.path().join("expected")))
                .await
                .unwrap();
            let expected = out
                .hits
                .iter()
                .filter(|h| STREAM_INDICATORS.contains(&h.indicator.as_str()))
                .filter(|h| !(h.date == last && AT_DAY_CLOSE.contains(&h.indicator.as_str())))
                // The stream judges the special-drug surge on retail sales; a surge in
                // purchases of a special drug (`order_spike.sql`) is the nightly's alone.
                .filter(|h| !h.detail.contains("basis=purchase"))
                .map(|h| {
                    (
                        h.indicator.clone(),
                        h.enterprise_id.clone(),
                        h.product_id.clone().unwrap_or_default(),
                        h.date,
                    )
                })
                .collect();
            let produced = lake_event_ids(&lake, first, last, false).await;
            Fixture {
                _dir: dir,
                lake,
                baseline_out,
                first,
                last,
                expected,
                produced,
            }
        })
    }
}

/// Event ids per kind in the lake's days `[from, to]` (only the stream's files when `stream_only`).
async fn lake_event_ids(
    lake_dir: &Path,
    from: NaiveDate,
    to: NaiveDate,
    stream_only: bool,
) -> BTreeMap<String, BTreeSet<String>> {
    let ctx = datafusion::prelude::SessionContext::new();
    let mut out = BTreeMap::new();
    for kind in EventKind::ALL {
        let mut files = Vec::new();
        for (_, d) in lake::partitions(lake_dir, *kind, from, to).unwrap() {
            files.extend(lake::day_files(&d).unwrap().into_iter().filter(|f| {
                !stream_only
                    || f.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("stream-")
            }));
        }
        let mut ids = BTreeSet::new();
        let mut n = 0usize;
        for f in files {
            let df = ctx
                .read_parquet(f.to_string_lossy().as_ref(), Default::default())
                .await
                .unwrap();
            for b in df
                .select_columns(&["event_id"])
                .unwrap()
                .collect()
                .await
                .unwrap()
            {
                let col = datafusion::arrow::compute::cast(
                    b.column(0),
                    &datafusion::arrow::datatypes::DataType::Utf8,
                )
                .unwrap();
                let a = col
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::StringArray>()
                    .unwrap();
                for i in 0..a.len() {
                    n += 1;
                    ids.insert(a.value(i).to_string());
                }
            }
        }
        assert_eq!(n, ids.len(), "{kind}: the lake holds a record twice");
        if !ids.is_empty() {
            out.insert(kind.as_str().to_string(), ids);
        }
    }
    out
}

/// A stream environment: its own topics, group, lake (reference tables only) and store.
struct Env {
    dir: tempfile::TempDir,
    cfg: StreamConfig,
}

/// A lake holding only the fixture's reference tables (what the stream validates against).
fn copy_reference(f: &Fixture, lake_dir: &Path) {
    let refs = lake_dir.join(lake::REFERENCE_DIR);
    std::fs::create_dir_all(&refs).unwrap();
    for e in std::fs::read_dir(f.lake.join(lake::REFERENCE_DIR)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), refs.join(e.file_name())).unwrap();
    }
}

async fn env(name: &str, partitions: i32, with_baseline: bool) -> Env {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    copy_reference(f, &lake_dir);
    let unique = format!(
        "{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let cfg = StreamConfig {
        brokers: crate::common::broker(),
        group_id: format!("g-{unique}"),
        instance_id: Some(format!("{name}-1")),
        topic_prefix: format!("t-{unique}."),
        dead_letter_topic: format!("t-{unique}.dead-letter"),
        risk_events_topic: format!("t-{unique}.risk-events"),
        lake: lake_dir,
        store: dir.path().join("out").join("pharmwatch.db"),
        baseline: with_baseline.then(|| f.baseline_out.clone()),
        metrics_listen: format!("127.0.0.1:{}", crate::common::free_port()),
        batch_max_records: 2000,
        ..StreamConfig::default()
    };
    let created = service::create_topics(&cfg, partitions).await.unwrap();
    assert_eq!(created.len(), EventKind::ALL.len() + 2, "{created:?}");
    Env { dir, cfg }
}

/// Runs the service until it goes idle, on a thread of its own (the service blocks its thread
/// while it consumes, so a time limit around its future could never fire); after 300 s it is
/// told to stop and the test fails.
async fn run_until_idle(cfg: &StreamConfig, idle_secs: f64) -> service::RunSummary {
    let opts = RunOptions {
        exit_when_idle: Some(Duration::from_secs_f64(idle_secs)),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (cfg, flag) = (cfg.clone(), stop.clone());
    let handle = std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(service::run(cfg, opts, flag))
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    while !handle.is_finished() {
        if Instant::now() > deadline {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = handle.join();
            panic!("the stream did not go idle within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    handle.join().unwrap().unwrap()
}

type EventKey = (String, String, String, NaiveDate);

/// The store's events as (indicator, enterprise, product, day), checking each one's id and
/// evidence on the way.
fn stored_events(store: &Path) -> (BTreeSet<EventKey>, BTreeSet<String>) {
    let s = Store::open(store).unwrap();
    let mut keys = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for e in s.risk_events().unwrap() {
        let day = NaiveDate::parse_from_str(&e.biz_date, "%Y-%m-%d").unwrap();
        let item: serde_json::Value = serde_json::from_str(&e.item_json).unwrap();
        assert!(!item["reason"].as_str().unwrap().is_empty(), "{item}");
        assert!(!item["evidence"].as_str().unwrap().is_empty(), "{item}");
        let batch_extra = if e.indicator.ends_with("_batch_sold") {
            item["evidence"]
                .as_str()
                .unwrap()
                .split(';')
                .find_map(|kv| kv.strip_prefix("batch="))
                .unwrap()
                .to_string()
        } else {
            String::new()
        };
        assert_eq!(
            e.id,
            event_id(
                &e.indicator,
                &e.enterprise_id,
                e.product_id.as_deref(),
                day,
                &batch_extra
            ),
            "ids are derived from the event, not from processing"
        );
        assert!(ids.insert(e.id.clone()));
        keys.insert((
            e.indicator,
            e.enterprise_id,
            e.product_id.unwrap_or_default(),
            day,
        ));
    }
    (keys, ids)
}

/// Every message of a topic (key, payload, headers) read from the start.
fn read_topic(
    brokers: &str,
    topic: &str,
) -> Vec<(String, serde_json::Value, BTreeMap<String, String>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let mut quiet_since = Instant::now();
    let started = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(4)
        && started.elapsed() < Duration::from_secs(120)
    {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                use rdkafka::message::Headers;
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for hd in h.iter() {
                        headers.insert(
                            hd.key.to_string(),
                            String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                out.push((
                    String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    serde_json::from_slice(m.payload().unwrap_or_default()).unwrap(),
                    headers,
                ));
                quiet_since = Instant::now();
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

fn assert_counts_reconcile(store: &Path, produced: usize) {
    // Offsets start at 0 and each is consumed once: the next offset equals the count.
    let conn = pharmwatch_core::db::Conn::open(store).unwrap();
    let mut st = conn
        .prepare(
            "SELECT o.topic, o.partition, o.next_offset, c.consumed FROM stream_offsets o
             JOIN stream_counts c USING (topic, partition) WHERE o.next_offset != c.consumed",
        )
        .unwrap();
    let off: Vec<(String, i32, i64, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(
        off.is_empty(),
        "(topic, partition, next offset, consumed): {off:?}"
    );
    let counts = Store::open(store).unwrap().stream_counts().unwrap();
    let consumed: i64 = counts.iter().map(|c| c.consumed).sum();
    for c in &counts {
        assert_eq!(c.consumed, c.accepted + c.rejected, "{c:?}");
    }
    assert_eq!(
        consumed as usize, produced,
        "every produced message consumed once: {counts:?}"
    );
}

fn compare_events(got: &BTreeSet<EventKey>, expected: &BTreeSet<EventKey>) {
    let missing: Vec<_> = expected.difference(got).collect();
    let extra: Vec<_> = got.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "stream and nightly disagree\n missing (nightly only): {missing:?}\n extra (stream only): {extra:?}"
    );
}

#[test]
fn the_fixture_exercises_every_stream_signal() {
    let f = fixture();
    let kinds: BTreeSet<&str> = f.expected.iter().map(|k| k.0.as_str()).collect();
    for i in STREAM_INDICATORS {
        assert!(kinds.contains(i), "no {i} in the stream days: {kinds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simulated_records_in_the_nightly_signals_out_with_evidence() {
    let f = fixture();
    let env = env("signals", 3, true).await;
    let sent = pharmwatch::produce::produce(&env.cfg, &f.lake, Some(f.first), Some(f.last), None)
        .await
        .unwrap();
    let summary = run_until_idle(&env.cfg, 3.0).await;
    assert_eq!(summary.consumed, sent.sent);
    assert_eq!(summary.rejected, 0);
    assert_counts_reconcile(&env.cfg.store, sent.sent as usize);

    let (events, ids) = stored_events(&env.cfg.store);
    compare_events(&events, &f.expected);

    // The topic carries the same events, keyed and headed by id.
    let topic = read_topic(&env.cfg.brokers, &env.cfg.risk_events_topic);
    let topic_ids: BTreeSet<String> = topic.iter().map(|(k, _, _)| k.clone()).collect();
    assert_eq!(topic_ids, ids);
    assert_eq!(topic.len(), ids.len(), "no crash, so no re-publication");
    for (k, v, h) in &topic {
        assert_eq!(v["id"].as_str(), Some(k.as_str()));
        assert_eq!(h.get("pharmwatch-id"), Some(k));
        assert!(v["item"]["reason"].as_str().is_some_and(|r| !r.is_empty()));
        assert!(
            v["grade"]
                .as_str()
                .is_some_and(|g| ["A", "B", "C", "D"].contains(&g))
        );
    }

    // Every produced record landed once, in the lake layout the nightly job reads.
    let landed = lake_event_ids(&env.cfg.lake, f.first, f.last, true).await;
    assert_eq!(landed, f.produced);
}

async fn produce_raw(cfg: &StreamConfig, msgs: &[(EventKind, &str, String)]) {
    let bytes: Vec<(EventKind, Option<&str>, Vec<u8>)> = msgs
        .iter()
        .map(|(k, key, p)| (*k, Some(*key), p.clone().into_bytes()))
        .collect();
    produce_bytes(cfg, &bytes).await;
}

/// A malformed message: its topic's kind, key, bytes, the field its dead letter names (`None`:
/// any) and words of the reason.
type Malformed<'a> = (
    EventKind,
    Option<&'a str>,
    Vec<u8>,
    Option<&'a str>,
    &'a str,
);

/// Produces messages as given: any bytes, with or without a key.
async fn produce_bytes(cfg: &StreamConfig, msgs: &[(EventKind, Option<&str>, Vec<u8>)]) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .create()
        .unwrap();
    for (kind, key, payload) in msgs {
        let topic = cfg.topic(*kind);
        let mut record = FutureRecord::<str, [u8]>::to(&topic).payload(payload.as_slice());
        if let Some(key) = key {
            record = record.key(*key);
        }
        p.send(record, Duration::from_secs(10)).await.unwrap();
    }
}

/// A valid sales record of the fixture's first stream day, as JSON.
async fn valid_sale(f: &Fixture) -> serde_json::Value {
    let dir = lake::day_dir(&f.lake, EventKind::Sales, f.first);
    let file = lake::day_files(&dir).unwrap().remove(0);
    crate::common::first_row_as_json(&file, EventKind::Sales)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_messages_go_to_the_dead_letter_with_their_reasons() {
    let f = fixture();
    let env = env("dlq", 2, false).await;
    let sale = valid_sale(f).await;
    let ent = sale["enterprise_id"].as_str().unwrap().to_string();
    let with = |k: &str, v: serde_json::Value| {
        let mut s = sale.clone();
        s[k] = v;
        s["event_id"] = serde_json::json!(format!("{}-{k}", sale["event_id"].as_str().unwrap()));
        s.to_string()
    };
    let with_id = |id: &str| {
        let mut s = sale.clone();
        s["event_id"] = serde_json::json!(id);
        s.to_string()
    };
    let mut unknown_field = sale.clone();
    unknown_field["discount"] = serde_json::json!(0.1);
    unknown_field["event_id"] = serde_json::json!("X-unknown-field");
    let mut missing = sale.clone();
    missing.as_object_mut().unwrap().remove("quantity");
    let other = if ent == crate::common::ENTERPRISE {
        "91350100M000100Y43".to_string()
    } else {
        crate::common::ENTERPRISE.to_string()
    };
    let huge = {
        // Quotes double in size when the dead letter's envelope escapes them: about 1.8 MB
        // there, beyond the broker's message limit unless the envelope cuts it.
        let mut h = sale.clone();
        h["event_id"] = serde_json::json!("X-huge");
        h["padding"] = serde_json::json!("\"".repeat(450_000));
        h.to_string()
    };
    let reused = {
        let mut r = sale.clone();
        r["quantity"] = serde_json::json!(sale["quantity"].as_i64().unwrap() + 1);
        r.to_string()
    };
    let out_of_range =
        with("quantity", serde_json::json!(7)).replace("\"quantity\":7", "\"quantity\":1e999");
    let mut not_utf8 = with_id("X-bytes").into_bytes();
    let at = not_utf8.windows(7).position(|w| w == b"X-bytes").unwrap();
    not_utf8[at + 2] = 0xFF;
    // (topic kind, key, message, the field the dead letter names (None: any), reason words)
    let bad: Vec<Malformed<'_>> = vec![
        (
            EventKind::Sales,
            Some(ent.as_str()),
            b"{not json".to_vec(),
            Some("-"),
            "invalid JSON",
        ),
        (
            EventKind::Sales,
            Some(ent.as_str()),
            missing.to_string().into_bytes(),
            Some("quantity"),
            "missing field `quantity`",
        ),
        (
            EventKind::Sales,
            Some(ent.as_str()),
            with("quantity", serde_json::json!(-5)).into_bytes(),
            Some("quantity"),
            "negative",
        ),
        (
            EventKind::Sales,
            Some(ent.as_str()),
            with("enterprise_id", serde_json::json!("91110000000000000X")).into_bytes(),
            Some("enterprise_id"),
            "",
        ),
        (
            EventKind::Sales,
            Some(ent.as_str()),
            with("product_id", serde_json::json!("P-NOPE")).into_bytes(),
            Some("product_id"),
            "",
        ),
        (
            EventKind::Sales,
            Some(ent.as_str()),
            unknown_field.to_string().into_bytes(),
            Some("discount"),
            "unknown field `discount`",
        ),
        (
            EventKind::Purchase,
            Some(ent.as_str()),
            sale.to_string().into_bytes(),
            None,
            "field",
        ),
        // An array of the record's values: a derived decoder would read it field by field.
        (
            EventKind::Sales,
            Some(ent.as_str()),
            serde_json::Value::Array(
                with_id("X-array")
                    .parse::<serde_json::Value>()
                    .unwrap()
                    .as_object()
                    .unwrap()
                    .values()
                    .cloned()
                    .collect(),
            )
            .to_string()
            .into_bytes(),
            Some("-"),
            "JSON array",
        ),
        (
            EventKind::Sales,
            None,
            with_id("X-no-key").into_bytes(),
            Some("key"),
            "no message key",
        ),
        (
            EventKind::Sales,
            Some(other.as_str()),
            with_id("X-other-key").into_bytes(),
            Some("key"),
            "is not the record's enterprise",
        ),
        (
            EventKind::Sales,
            Some(ent.as_str()),
            with("event_time", serde_json::json!("2099-01-01T08:00:00+08:00")).into_bytes(),
            Some("event_time"),
            "ahead of the clock",
        ),
        (
            EventKind::Sales,
            Some(ent.as_str()),
            out_of_range.into_bytes(),
            None,
            "out of range",
        ),
        (
            EventKind::Sales,
            Some(ent.as_str()),
            not_utf8.clone(),
            Some("-"),
            "invalid JSON",
        ),
        (
            EventKind::Sales,
            Some(ent.as_str()),
            huge.clone().into_bytes(),
            Some("padding"),
            "unknown field `padding`",
        ),
        (
            EventKind::Sales,
            Some(ent.as_str()),
            Vec::new(),
            Some("-"),
            "empty",
        ),
        // The first sale again: counted once.
        (
            EventKind::Sales,
            Some(ent.as_str()),
            sale.to_string().into_bytes(),
            Some("event_id"),
            "a repeat of the record already accepted",
        ),
        // Its event id on other content (a false inventory mismatch if it were counted).
        (
            EventKind::Sales,
            Some(ent.as_str()),
            reused.clone().into_bytes(),
            Some("event_id"),
            "with other content",
        ),
    ];
    let mut msgs: Vec<(EventKind, Option<&str>, Vec<u8>)> = vec![(
        EventKind::Sales,
        Some(ent.as_str()),
        sale.to_string().into_bytes(),
    )];
    msgs.extend(bad.iter().map(|(k, key, p, _, _)| (*k, *key, p.clone())));
    let mut good2 = sale.clone();
    good2["event_id"] = serde_json::json!(format!("{}-second", sale["event_id"].as_str().unwrap()));
    msgs.push((
        EventKind::Sales,
        Some(ent.as_str()),
        good2.to_string().into_bytes(),
    ));
    produce_bytes(&env.cfg, &msgs).await;

    let summary = run_until_idle(&env.cfg, 3.0).await;
    assert_eq!(summary.consumed, msgs.len() as u64);
    assert_eq!(summary.accepted, 2);
    assert_eq!(summary.rejected, bad.len() as u64);
    assert_counts_reconcile(&env.cfg.store, msgs.len());

    let store = Store::open(&env.cfg.store).unwrap();
    let dead = store.dead_letters().unwrap();
    assert_eq!(dead.len(), bad.len());
    for (kind, _, payload, field, reason) in &bad {
        let lossy = String::from_utf8_lossy(payload);
        let d = dead
            .iter()
            .find(|d| {
                d.raw == lossy && d.kind == kind.as_str() && field.is_none_or(|f| d.field == f)
            })
            .unwrap_or_else(|| panic!("no dead letter for {lossy:.200}: {dead:.300?}"));
        if let Some(field) = field {
            assert_eq!(&d.field, field, "{:.300}", format!("{d:?}"));
        }
        assert!(!d.field.is_empty());
        assert!(
            d.reason.contains(reason),
            "{:.300} should say {reason:?}",
            format!("{d:?}")
        );
        assert!(d.offset >= 0);
    }
    // The bytes that are not UTF-8 are kept exactly.
    let kept = dead
        .iter()
        .find_map(|d| d.raw_base64.clone())
        .expect("the non-UTF-8 message's bytes");
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(kept)
            .unwrap(),
        not_utf8
    );
    // Every dead letter reaches the topic, the huge one cut to its first 64 KiB with its
    // length and digest (the store keeps it whole).
    let topic = read_topic(&env.cfg.brokers, &env.cfg.dead_letter_topic);
    assert_eq!(topic.len(), bad.len());
    for (key, v, h) in &topic {
        let src = v["source_topic"].as_str().unwrap();
        assert_eq!(
            key,
            &format!("{src}/{}/{}", v["partition"], v["offset"]),
            "keyed by source coordinates"
        );
        assert!(!v["reason"].as_str().unwrap().is_empty());
        assert!(v["raw"].is_string());
        assert_eq!(
            h.get("pharmwatch-kind").map(String::as_str),
            Some("dead_letter")
        );
    }
    let cut = topic
        .iter()
        .find(|(_, v, _)| v["raw_truncated"] == true)
        .expect("the huge message's dead letter, cut");
    assert_eq!(cut.1["raw_bytes"], huge.len());
    assert!(cut.1["raw"].as_str().unwrap().len() <= 64 * 1024);
    assert!(huge.starts_with(cut.1["raw"].as_str().unwrap()));
    assert_eq!(cut.1["raw_sha256"].as_str().unwrap().len(), 64);
    assert!(store.dead_letters().unwrap().iter().any(|d| d.raw == huge));
    // The rejected-messages metric names contract fields, `key` or `-`; a field a sender made
    // up is `other` (bounded series).
    let m = pharmwatch::stream::metrics::stream();
    let made_up = m.rejected.with_label_values(&["sales", "other"]).get();
    assert!(
        made_up >= 2,
        "discount and padding counted as other: {made_up}"
    );
    // A repeat after a restart is found in the partition's lake files and refused. The
    // restarted instance joins under a group of its own: the test broker (tansu 0.6) does not
    // always hand the partitions back to a static member that returns — the restart then
    // waited for an assignment for ever — and the store's offsets are where the service
    // resumes either way.
    let mut restarted = env.cfg.clone();
    restarted.group_id = format!("{}-restarted", env.cfg.group_id);
    restarted.instance_id = None;
    produce_bytes(
        &env.cfg,
        &[(
            EventKind::Sales,
            Some(ent.as_str()),
            good2.to_string().into_bytes(),
        )],
    )
    .await;
    let again = run_until_idle(&restarted, 3.0).await;
    assert_eq!((again.accepted, again.rejected), (0, 1), "{again:?}");
    assert!(
        store
            .dead_letters()
            .unwrap()
            .iter()
            .any(|d| d.field == "event_id" && d.reason.contains("already accepted at the lake")),
        "the repeat after the restart is refused as such"
    );
    // The accepted records landed; the rejected did not.
    let landed = lake_event_ids(&env.cfg.lake, f.first, f.first, true).await;
    assert_eq!(landed.get("sales").map(|s| s.len()), Some(2));
    assert_eq!(landed.len(), 1);
}

fn spawn_stream(config: &Path, extra: &[&str], log: &Path) -> Child {
    spawn_stream_with(config, extra, &[], log)
}

/// [`spawn_stream`] with environment variables set for the process.
fn spawn_stream_with(config: &Path, extra: &[&str], vars: &[(&str, &str)], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_pharmwatch"))
        .arg("stream")
        .arg("--config")
        .arg(config)
        .args(extra)
        .envs(vars.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

/// The environment of a crash test: three partitions, batches of 300 records, a plain group
/// member whose session times out after `SESSION_MS` (restarted the way systemd restarts it:
/// after the broker dropped the killed member), its configuration file, and the fixture
/// produced into the topics; returns the number of records produced.
async fn crash_env(name: &str) -> (Env, PathBuf, i64) {
    let f = fixture();
    let mut env = env(name, 3, true).await;
    env.cfg.batch_max_records = 300;
    env.cfg.instance_id = None;
    env.cfg
        .kafka
        .insert("session.timeout.ms".into(), SESSION_MS.to_string());
    let config = env.dir.path().join("pharmwatch.toml");
    std::fs::write(&config, pharmwatch::config::file_text(&env.cfg).unwrap()).unwrap();
    let sent = pharmwatch::produce::produce(&env.cfg, &f.lake, Some(f.first), Some(f.last), None)
        .await
        .unwrap();
    (env, config, sent.sent as i64)
}

/// Records the stream has committed, read through a read-only connection: opening the store
/// for writing (migrations) would wait for the stream's write lock, and the stream could run to
/// the end while the test waits to kill it.
fn consumed_so_far(store: &Path) -> i64 {
    if !pharmwatch_core::db::is_postgres(store) && !store.exists() {
        return 0;
    }
    pharmwatch_core::db::Conn::open_read_only(store)
        .ok()
        .and_then(|c| {
            c.query_row(
                "SELECT COALESCE(SUM(consumed), 0) FROM stream_counts",
                [],
                |r| r.get::<_, i64>(0),
            )
            .ok()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_stream_then_restart_loses_nothing_and_repeats_nothing() {
    // A plain member, restarted the way a supervisor (systemd) restarts it: after the group's
    // session timeout, so the broker has evicted the killed member when the new one joins.
    let (env, config, total) = crash_env("kill9").await;

    // Two hard kills at different points of the stream.
    for (round, share) in [(1, 0.2), (2, 0.55)] {
        let log = env.dir.path().join(format!("stream-{round}.log"));
        let mut child = spawn_stream(&config, &[], &log);
        let started = Instant::now();
        while consumed_so_far(&env.cfg.store) < (share * total as f64) as i64 {
            assert!(
                started.elapsed() < Duration::from_secs(240),
                "round {round}: no progress; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "stream exited early: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(SESSION_MS + 1000));
        let at = consumed_so_far(&env.cfg.store);
        assert!(
            at < total,
            "round {round}: the kill came after the end ({at} of {total})"
        );
    }

    // Restart and let it finish; then stop it with SIGTERM like an operator would.
    let log = env.dir.path().join("stream-final.log");
    let mut child = spawn_stream(&config, &[], &log);
    wait_until_consumed(&env.cfg.store, total, &log);
    // The service is up: health and metrics answer.
    let (code, body) =
        crate::common::http_get(&env.cfg.metrics_listen, "/healthz").expect("healthz answers");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("assigned_partitions"), "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["store"]["backend"], "sqlite", "{body}");
    assert!(health["store"]["ms"].as_f64().is_some(), "{body}");
    let (code, metrics) =
        crate::common::http_get(&env.cfg.metrics_listen, "/metrics").expect("metrics answer");
    assert_eq!(code, 200);
    for name in [
        "pharmwatch_stream_consumed_total",
        "pharmwatch_stream_accepted_total",
        "pharmwatch_stream_batch_seconds_bucket",
        "pharmwatch_stream_consumer_lag",
        "pharmwatch_stream_replayed_total",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    let_days_settle(&env);
    stop_with_sigterm(&mut child, &log);
    assert_exactly_once(&env, total).await;
}

/// Waits (up to 240 s) until the stream has committed `total` records.
fn wait_until_consumed(store: &Path, total: i64, log: &Path) {
    let started = Instant::now();
    while consumed_so_far(store) < total {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "no completion; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (up to 60 s) until the store holds as many risk events as the nightly found: a day
/// whose watermark passed in the last batches closes after its grace (`close_grace_ms`), at
/// the next pass whose high watermarks can be asked (after a broker outage, once the
/// producer's connection is back too).
fn let_days_settle(env: &Env) {
    let expected = fixture().expected.len() as i64;
    let started = Instant::now();
    while stored_event_count(&env.cfg.store) < expected
        && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Risk events in the store, read through a read-only connection (see [`consumed_so_far`]).
fn stored_event_count(store: &Path) -> i64 {
    pharmwatch_core::db::Conn::open_read_only(store)
        .ok()
        .and_then(|c| {
            c.query_row("SELECT COUNT(*) FROM risk_events", [], |r| {
                r.get::<_, i64>(0)
            })
            .ok()
        })
        .unwrap_or(0)
}

/// Stops the stream the way an operator does, with SIGTERM; it must exit 0 within 60 s.
fn stop_with_sigterm(child: &mut Child, log: &Path) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit within 60 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        exit.success(),
        "SIGTERM exit: {exit:?}; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// What one clean run of the fixture leaves, whatever crashes came before: the counts
/// reconcile with the `total` produced, the stored events are the nightly's, the risk-events
/// topic holds exactly the stored events (after dedupe by id), and the lake holds exactly the
/// produced records.
async fn assert_exactly_once(env: &Env, total: i64) {
    let f = fixture();
    assert_counts_reconcile(&env.cfg.store, total as usize);
    let (events, ids) = stored_events(&env.cfg.store);
    compare_events(&events, &f.expected);
    let topic = read_topic(&env.cfg.brokers, &env.cfg.risk_events_topic);
    let topic_ids: BTreeSet<String> = topic.iter().map(|(k, _, _)| k.clone()).collect();
    assert_eq!(
        topic_ids, ids,
        "after dedupe by id the topic holds exactly the stored events"
    );
    let landed = lake_event_ids(&env.cfg.lake, f.first, f.last, true).await;
    assert_eq!(landed, f.produced, "lake rows equal what was produced");
}

/// Crashes the stream (abort: no destructor, no commit — a `kill -9` at that very line) at the
/// `nth` pass of fault point `point` of its micro-batch, restarts it after the group's session
/// timeout and lets it finish: nothing is lost, nothing is repeated.
async fn crash_at_then_restart(name: &str, point: &str, nth: u32) {
    use std::os::unix::process::ExitStatusExt;
    let (env, config, total) = crash_env(name).await;

    let log = env.dir.path().join("stream-crashed.log");
    let fault = format!("{point}@{nth}");
    let mut child = Reap(vec![spawn_stream_with(
        &config,
        &[],
        &[(pharmwatch::faults::FAULT_ENV, &fault)],
        &log,
    )]);
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(s) = child.0[0].try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "{point} was never reached");
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.signal(), Some(6), "{point}: {status:?}\n{text}");
    assert!(
        text.contains(&format!("fault point {point} hit {nth}: aborting")),
        "{point}: {text}"
    );
    let at = consumed_so_far(&env.cfg.store);
    assert!(
        at < total,
        "{point}: the crash came after the end ({at} of {total})"
    );
    std::thread::sleep(Duration::from_millis(SESSION_MS + 1000));

    let log = env.dir.path().join("stream-restarted.log");
    let mut child = Reap(vec![spawn_stream(&config, &[], &log)]);
    wait_until_consumed(&env.cfg.store, total, &log);
    let_days_settle(&env);
    stop_with_sigterm(&mut child.0[0], &log);
    assert_exactly_once(&env, total).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_the_lake_files_before_the_store_commit_loses_and_repeats_nothing() {
    crash_at_then_restart("f-lake", "stream.after_lake_files", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_inside_the_store_transaction_loses_and_repeats_nothing() {
    crash_at_then_restart("f-tx", "stream.in_transaction", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_the_store_commit_before_publishing_loses_and_repeats_nothing() {
    crash_at_then_restart("f-commit", "stream.after_commit", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_publishing_before_the_outbox_is_marked_repeats_nothing_after_dedupe() {
    crash_at_then_restart("f-publish", "stream.after_publish_send", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_before_the_kafka_offset_commit_loses_and_repeats_nothing() {
    crash_at_then_restart("f-offsets", "stream.before_offset_commit", 6).await;
}

/// The lake's disk full (fault point `lake.write` failing as ENOSPC): while it stays full the
/// batch is judged again with backoff, then the service stops with status 1 and a message
/// naming the file and the cause, its batch not committed; restarted while the disk is still
/// full for a few more writes, it waits them out and finishes — nothing lost, nothing repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_lake_disk_stops_or_delays_the_stream_and_loses_nothing() {
    use std::os::unix::process::ExitStatusExt;
    let (env, config, total) = crash_env("disk-full").await;

    let log = env.dir.path().join("stream-full.log");
    let mut child = Reap(vec![spawn_stream_with(
        &config,
        &[],
        &[(pharmwatch::faults::FAULT_ENV, "lake.write@2:full1000")],
        &log,
    )]);
    let status = exit_within(&mut child.0[0], Duration::from_secs(120), &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        (status.code(), status.signal()),
        (Some(1), None),
        "stops with status 1 once the retries are spent:\n{text}"
    );
    assert!(
        text.contains("batch failed; judging it again")
            && text.contains(".parquet.tmp")
            && text.to_lowercase().contains("space"),
        "the log says which file and why:\n{text}"
    );
    let at = consumed_so_far(&env.cfg.store);
    assert!(
        at < total,
        "the full disk came after the end ({at} of {total})"
    );
    std::thread::sleep(Duration::from_millis(SESSION_MS + 1000));

    // Space comes back after three more failed writes.
    let log = env.dir.path().join("stream-space-back.log");
    let mut child = Reap(vec![spawn_stream_with(
        &config,
        &[],
        &[(pharmwatch::faults::FAULT_ENV, "lake.write@1:full3")],
        &log,
    )]);
    wait_until_consumed(&env.cfg.store, total, &log);
    let_days_settle(&env);
    stop_with_sigterm(&mut child.0[0], &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        text.matches("batch failed; judging it again").count(),
        3,
        "{text}"
    );
    assert_exactly_once(&env, total).await;
    let leftovers: Vec<_> = walk_files(&env.cfg.lake)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "half-written files left: {leftovers:?}"
    );
}

/// Waits (up to `limit`) for the child to exit.
fn exit_within(child: &mut Child, limit: Duration, log: &Path) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "no exit within {limit:?}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every file under `dir`.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn two_instances_in_one_group_find_what_one_finds() {
    let f = fixture();
    let mut env = env("pair", 4, true).await;
    env.cfg.instance_id = None;
    // The traffic below runs event time about 19,000 times faster than real time, so the
    // default ten minutes of allowed lateness would be 30 ms of delivery jitter between two
    // topics of a partition (a producer batch sent a little later on a loaded machine). Two
    // hours here are the same order of tolerance as ten minutes of a real day's traffic.
    env.cfg.allowed_lateness_secs = 2 * 3600;
    let mut second = env.cfg.clone();
    second.metrics_listen = format!("127.0.0.1:{}", crate::common::free_port());

    let a = tokio::spawn({
        let cfg = env.cfg.clone();
        async move { run_until_idle(&cfg, 12.0).await }
    });
    let b = tokio::spawn({
        let cfg = second.clone();
        async move { run_until_idle(&cfg, 12.0).await }
    });
    // Both must hold partitions before the records arrive.
    wait_assigned(&env.cfg.metrics_listen).await;
    wait_assigned(&second.metrics_listen).await;
    // Live traffic, paced: two days of event time in about nine seconds. Unpaced, a
    // partition's inventory batch can reach the broker after the next day's sales (hours of
    // event time in milliseconds), which the watermark rightly treats as late.
    let sent =
        pharmwatch::produce::produce(&env.cfg, &f.lake, Some(f.first), Some(f.last), Some(2500.0))
            .await
            .unwrap();
    let (ra, rb) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(
        ra.late + rb.late,
        0,
        "paced traffic is never late: {ra:?} {rb:?}"
    );
    assert!(
        ra.consumed > 0 && rb.consumed > 0,
        "both instances worked: {ra:?} {rb:?}"
    );
    assert_eq!(ra.consumed + rb.consumed, sent.sent);
    assert_counts_reconcile(&env.cfg.store, sent.sent as usize);
    let (events, _) = stored_events(&env.cfg.store);
    compare_events(&events, &f.expected);
    let landed = lake_event_ids(&env.cfg.lake, f.first, f.last, true).await;
    assert_eq!(landed, f.produced);
}

/// Waits (up to 60 s) until the service answering at `addr` holds partitions.
async fn wait_assigned(addr: &str) {
    let started = Instant::now();
    loop {
        let held = crate::common::http_get(addr, "/healthz").is_some_and(|(_, body)| {
            serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["assigned_partitions"].as_array().map(|a| !a.is_empty()))
                .unwrap_or(false)
        });
        if held {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no partitions assigned at {addr}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A producer's batches for two topics reach the broker in any order: here a burst into an
/// idle service brings two days of every kind but purchases, and the purchases of both days
/// reach the broker 2.5 s later. The first day's watermark passes its close with purchases
/// read to their (stale) end; it must not close before they are read: no record is late and
/// the day-close events are exactly the nightly's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_into_an_idle_service_closes_no_day_before_its_slower_topic_arrives() {
    let f = fixture();
    let env = env("burst", 2, true).await;
    let service = tokio::spawn({
        let cfg = env.cfg.clone();
        async move { run_until_idle(&cfg, 10.0).await }
    });
    wait_assigned(&env.cfg.metrics_listen).await;
    // Idle for a while: the statistics' high watermarks say every topic is read to its end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ahead, behind) = (env.dir.path().join("ahead"), env.dir.path().join("behind"));
    for kind in EventKind::ALL {
        let to = if *kind == EventKind::Purchase {
            &behind
        } else {
            &ahead
        };
        for (_, dir) in lake::partitions(&f.lake, *kind, f.first, f.last).unwrap() {
            let rel = dir.strip_prefix(&f.lake).unwrap();
            copy_tree(&dir, &to.join(rel));
        }
    }
    let first = pharmwatch::produce::produce(&env.cfg, &ahead, Some(f.first), Some(f.last), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = pharmwatch::produce::produce(&env.cfg, &behind, Some(f.first), Some(f.last), None)
        .await
        .unwrap();
    let run = service.await.unwrap();
    assert_eq!(run.consumed, first.sent + second.sent, "{run:?}");
    assert_eq!(run.late, 0, "nothing is late: {run:?}");
    assert_counts_reconcile(&env.cfg.store, (first.sent + second.sent) as usize);
    let (events, _) = stored_events(&env.cfg.store);
    compare_events(&events, &f.expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_records_are_counted_landed_and_seen_by_the_next_nightly_run() {
    let f = fixture();
    let mut env = env("late", 1, false).await;
    env.cfg.allowed_lateness_secs = 60;
    let sale = valid_sale(f).await;
    let ent = sale["enterprise_id"].as_str().unwrap().to_string();
    let day = f.first;
    let at = |h: u32, id: &str| {
        let mut s = sale.clone();
        s["event_time"] = serde_json::json!(format!("{day}T{h:02}:00:00+08:00"));
        s["event_id"] = serde_json::json!(id);
        s["trace_code"] = serde_json::Value::Null;
        s.to_string()
    };
    produce_raw(
        &env.cfg,
        &[
            (EventKind::Sales, ent.as_str(), at(9, "LATE-TEST-1")),
            (EventKind::Sales, ent.as_str(), at(20, "LATE-TEST-2")),
        ],
    )
    .await;
    let first = run_until_idle(&env.cfg, 2.0).await;
    assert_eq!((first.accepted, first.late), (2, 0));
    // Eleven hours behind the watermark, far beyond the 60 s allowed.
    produce_raw(
        &env.cfg,
        &[(EventKind::Sales, ent.as_str(), at(9, "LATE-TEST-3"))],
    )
    .await;
    // Restarted under a group of its own (see the malformed-messages test): it resumes from
    // the store's offsets.
    let mut restarted = env.cfg.clone();
    restarted.group_id = format!("{}-restarted", env.cfg.group_id);
    restarted.instance_id = None;
    let second = run_until_idle(&restarted, 2.0).await;
    assert_eq!((second.accepted, second.late), (1, 1), "{second:?}");
    let counts = Store::open(&env.cfg.store)
        .unwrap()
        .stream_counts()
        .unwrap();
    assert_eq!(counts.iter().map(|c| c.late).sum::<i64>(), 1);
    assert_counts_reconcile(&env.cfg.store, 3);
    // Landed like any record, so the next nightly run reads it.
    let landed = lake_event_ids(&env.cfg.lake, day, day, true).await;
    assert!(landed["sales"].contains("LATE-TEST-3"), "{landed:?}");
    let out = env.dir.path().join("nightly");
    let n = nightly::run(&NightlyConfig {
        lake: Some(env.cfg.lake.clone()),
        reference: None,
        inputs: Vec::new(),
        from: day,
        to: day,
        out: out.clone(),
        thresholds: Thresholds::default(),
        top: 5,
        progress: false,
        model: ModelSource::Off,
        anomaly_threshold: pharmwatch::anomaly::DEFAULT_THRESHOLD,
    })
    .await
    .unwrap();
    let sales = n
        .summary
        .lake_records
        .iter()
        .find(|(k, _)| k == "sales")
        .map(|(_, c)| *c);
    assert_eq!(
        sales,
        Some(3),
        "the nightly run reads the late record: {:?}",
        n.summary.lake_records
    );
}

#[test]
fn an_unreachable_broker_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture();
    let lake_dir = dir.path().join("lake");
    copy_reference(f, &lake_dir);
    let port = crate::common::free_port(); // bound and released: nothing listens there
    let out = Command::new(env!("CARGO_BIN_EXE_pharmwatch"))
        .args(["stream"])
        .env("PHARMWATCH_BROKERS", format!("127.0.0.1:{port}"))
        .env("PHARMWATCH_STARTUP_TIMEOUT_SECS", "2")
        .env("PHARMWATCH_LAKE", &lake_dir)
        .env("PHARMWATCH_STORE", dir.path().join("pharmwatch.db"))
        .env(
            "PHARMWATCH_METRICS_LISTEN",
            format!("127.0.0.1:{}", crate::common::free_port()),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("cannot reach the broker"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn producing_the_lake_the_stream_lands_in_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture();
    let lake_dir = dir.path().join("lake");
    copy_reference(f, &lake_dir);
    let run = |lake: &Path| {
        Command::new(env!("CARGO_BIN_EXE_pharmwatch"))
            .args(["produce", "--lake"])
            .arg(lake)
            .env("PHARMWATCH_LAKE", &lake_dir)
            .env("PHARMWATCH_BROKERS", "127.0.0.1:9")
            .output()
            .unwrap()
    };
    // The same folder, spelled another way: refused before any message is sent.
    let out = run(&dir.path().join("./lake/"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("lands its records"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_held_by_another_writer_is_waited_out_and_the_batch_judged_again() {
    let f = fixture();
    let mut env = env("busy", 1, true).await;
    env.cfg.store_busy_timeout_ms = 100;
    env.cfg.batch_max_records = 500;
    let first = pharmwatch::produce::produce(&env.cfg, &f.lake, Some(f.first), Some(f.first), None)
        .await
        .unwrap();
    let cfg = env.cfg.clone();
    let service = tokio::spawn(async move { run_until_idle(&cfg, 6.0).await });
    let deadline = Instant::now() + Duration::from_secs(120);
    while consumed_so_far(&env.cfg.store) == 0 {
        assert!(Instant::now() < deadline, "the first batch never committed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another writer (a nightly run, say) takes the store's write lock for 1.5 s, 15 busy
    // timeouts of the stream, while the rest of the days arrive.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let store = env.cfg.store.clone();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&store).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        conn.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    let rest = pharmwatch::produce::produce(
        &env.cfg,
        &f.lake,
        Some(f.first + Days::days(1)),
        Some(f.last),
        None,
    )
    .await
    .unwrap();
    holder.join().unwrap();
    let summary = service.await.unwrap();
    assert!(
        (1..=5).contains(&summary.retries),
        "the locked store makes batches fail as retryable and pass afterwards: {summary:?}"
    );
    let sent = first.sent + rest.sent;
    assert_eq!(summary.consumed, sent);
    assert_eq!(summary.rejected, 0);
    assert_counts_reconcile(&env.cfg.store, sent as usize);
    // Judged again, not twice: the same events as an undisturbed run, each record landed once.
    let (events, _) = stored_events(&env.cfg.store);
    compare_events(&events, &f.expected);
    let landed = lake_event_ids(&env.cfg.lake, f.first, f.last, true).await;
    assert_eq!(landed, f.produced);
}

/// The stream's partitions of host `cfg`, from its health endpoint (empty while it has none
/// or does not answer).
fn assigned(cfg: &StreamConfig) -> Vec<i64> {
    crate::common::http_get(&cfg.metrics_listen, "/healthz")
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| {
            v["assigned_partitions"]
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_i64).collect())
        })
        .unwrap_or_default()
}

/// A province on three hosts: three stream processes, each in a working directory of its own
/// with no shared local file, one broker, one PostgreSQL store and one bucket for the lake.
/// They find exactly the events one instance finds; `kill -9` of one hands its partitions to
/// the others with nothing lost or repeated (the counts reconcile, the bucket holds every
/// record once); a nightly run from a fourth directory reads the lake the hosts wrote and
/// writes its risk list to the same store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hosts_on_one_postgres_store_and_one_bucket_lose_nothing_when_one_dies() {
    use crate::object_lake::{create_bucket, s3_command, s3_keys, s3_put, start_s3, text};
    let f = fixture();
    let mut env = env("hosts", 6, true).await;
    let (_s3, addr) = start_s3(env.dir.path());
    create_bucket(&addr, "lake");
    for e in std::fs::read_dir(f.lake.join(lake::REFERENCE_DIR)).unwrap() {
        let e = e.unwrap();
        let key = format!("hosts/reference/{}", e.file_name().to_string_lossy());
        s3_put(&addr, "lake", &key, &e.path());
    }
    let store = pharmwatch_core::db::scratch_postgres(&env.dir.path().join("pg"));
    // The operator applies the migrations first (the test server trusts loopback, so the
    // password is ignored by it; it must not show in what the command prints).
    let with_password =
        store
            .to_string_lossy()
            .replacen("://postgres@", "://postgres:not-shown@", 1);
    assert!(with_password.contains("not-shown"), "{with_password}");
    let o = s3_command(&addr, &["migrate", "--out", "unused"])
        .env("PHARMWATCH__STORE__URL", &with_password)
        .output()
        .unwrap();
    let listed = text(&o);
    assert!(o.status.success(), "{listed}");
    let all = pharmwatch::store::PG_MIGRATIONS.len();
    assert!(
        listed.contains(&format!("{all} migration(s) applied now, {all} in all")),
        "{listed}"
    );
    assert!(!listed.contains("not-shown"), "{listed}");
    env.cfg.instance_id = None;
    env.cfg.batch_max_records = 300;
    env.cfg
        .kafka
        .insert("session.timeout.ms".into(), SESSION_MS.to_string());
    env.cfg.lake = PathBuf::from("s3://lake/hosts");
    env.cfg.store = store.clone();
    let sent = pharmwatch::produce::produce(&env.cfg, &f.lake, Some(f.first), Some(f.last), None)
        .await
        .unwrap();
    let total = sent.sent as i64;

    let mut hosts = Hosts(Vec::new());
    let start_host = |h: usize| {
        let home = env.dir.path().join(format!("host-{h}"));
        std::fs::create_dir_all(&home).unwrap();
        let mut cfg = env.cfg.clone();
        cfg.metrics_listen = format!("127.0.0.1:{}", crate::common::free_port());
        // The nightly baseline, copied: the host reads nothing another host wrote locally.
        let baseline = home.join("baseline");
        copy_tree(&f.baseline_out, &baseline);
        cfg.baseline = Some(baseline);
        let config = home.join("pharmwatch.toml");
        std::fs::write(&config, pharmwatch::config::file_text(&cfg).unwrap()).unwrap();
        let log = home.join("stream.log");
        let child = s3_command(&addr, &["stream", "--config", "pharmwatch.toml"])
            .current_dir(&home)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        (child, cfg, log)
    };
    for h in 0..3 {
        hosts.0.push(start_host(h));
    }
    let logs = |hosts: &Hosts| -> String {
        hosts
            .0
            .iter()
            .map(|(_, _, l)| std::fs::read_to_string(l).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };

    // Host 2 dies once it holds partitions and a third of the records are committed.
    let started = Instant::now();
    while assigned(&hosts.0[2].1).is_empty() || consumed_so_far(&store) < total / 3 {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "no progress on three hosts; logs:\n{}",
            logs(&hosts)
        );
        let exited = hosts
            .0
            .iter_mut()
            .any(|(c, _, _)| c.try_wait().unwrap().is_some());
        assert!(!exited, "a host exited: {}", logs(&hosts));
        std::thread::sleep(Duration::from_millis(20));
    }
    let lost = assigned(&hosts.0[2].1);
    // Each host's health names the shared store, probed on a connection of its own.
    for (_, cfg, _) in &hosts.0 {
        let (code, body) =
            crate::common::http_get(&cfg.metrics_listen, "/healthz").expect("healthz answers");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (code, &v["store"]["backend"]),
            (200, &serde_json::json!("postgres")),
            "{body}"
        );
    }
    hosts.0[2].0.kill().unwrap(); // SIGKILL
    hosts.0[2].0.wait().unwrap();
    let at = consumed_so_far(&store);
    assert!(at < total, "the kill came after the end ({at} of {total})");
    // The supervisor brings a host back in a fresh working directory. (The test broker, tansu
    // 0.6, does not evict a member whose session times out; a member joining starts the
    // rebalance that does, as on a Kafka cluster the session timeout alone would.)
    std::thread::sleep(Duration::from_millis(SESSION_MS + 1000));
    hosts.0.push(start_host(3));

    // The others take its partitions over and finish.
    let started = Instant::now();
    while consumed_so_far(&store) < total {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the survivors did not finish ({} of {total}); logs:\n{}",
            consumed_so_far(&store),
            logs(&hosts)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let live = [0, 1, 3];
    assert!(!lost.is_empty(), "the dead host held partitions");
    let_days_settle(&env);
    let epochs: Vec<(i64, i64)> = {
        let c = pharmwatch_core::db::Conn::open(&store).unwrap();
        let mut st = c
            .prepare("SELECT partition, epoch FROM stream_partitions ORDER BY partition")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    for p in &lost {
        let epoch = epochs.iter().find(|(q, _)| q == p).map(|(_, e)| *e);
        assert!(
            epoch.is_some_and(|e| e >= 2),
            "partition {p} of the dead host was taken over with a new epoch: {epochs:?}"
        );
    }
    for h in live {
        let child = &mut hosts.0[h].0;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    for h in live {
        let (child, _, log) = &mut hosts.0[h];
        let exit = child.wait().unwrap();
        assert!(
            exit.success(),
            "SIGTERM exit {exit:?}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    assert_counts_reconcile(&store, total as usize);
    let (events, ids) = stored_events(&store);
    compare_events(&events, &f.expected);
    let topic = read_topic(&env.cfg.brokers, &env.cfg.risk_events_topic);
    let topic_ids: BTreeSet<String> = topic.iter().map(|(k, _, _)| k.clone()).collect();
    assert_eq!(topic_ids, ids, "the topic holds exactly the stored events");
    let keys = s3_keys(&addr, "lake", "hosts/");
    assert!(
        keys.iter().all(|k| !k.ends_with(".tmp")),
        "no temporary object: {keys:?}"
    );

    // A fourth working directory: the nightly job over the bucket, into the same store.
    let fourth = env.dir.path().join("nightly-host");
    std::fs::create_dir_all(&fourth).unwrap();
    let day_before = (f.first - Days::days(1)).to_string();
    let o = s3_command(
        &addr,
        &[
            "nightly",
            "--lake",
            "s3://lake/hosts",
            "--from",
            &day_before,
            "--to",
            &f.last.to_string(),
            "--no-model",
            "--out",
            "out",
        ],
    )
    .current_dir(&fourth)
    .env("PHARMWATCH__STORE__URL", &store)
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fourth.join("out/run.json")).unwrap())
            .unwrap();
    let read: i64 = run["lake_records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv[1].as_i64().unwrap())
        .sum();
    assert_eq!(read, total, "every record once: {}", run["lake_records"]);
    let days = Store::open(&store).unwrap().risk_list_days().unwrap();
    assert!(
        days.contains(&f.last.to_string()),
        "the nightly risk list is in the shared store: {days:?}"
    );
}

/// The stream processes of a test, killed when it ends (also when an assertion fails).
struct Hosts(Vec<(Child, StreamConfig, PathBuf)>);

impl Drop for Hosts {
    fn drop(&mut self) {
        for (child, _, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Child processes killed when a test ends (also when an assertion fails).
struct Reap(Vec<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Copies directory `from` (files and subdirectories) to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A zombie is fenced: instance A stops (SIGSTOP, at a known line: its batch routed, the
/// ownership check not yet made) past the group's session timeout; the group gives every
/// partition to B, which raises their ownership epochs and goes on; A resumes (SIGCONT) and its
/// commit for the partitions it lost is refused and counted (`pharmwatch_stream_fenced_total`);
/// the output is exactly one instance's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_instance_that_lost_its_partitions_cannot_commit_for_them() {
    let (env, config_a, total) = crash_env("zombie").await;
    let mut second = env.cfg.clone();
    second.metrics_listen = format!("127.0.0.1:{}", crate::common::free_port());
    let config_b = env.dir.path().join("b.toml");
    std::fs::write(&config_b, pharmwatch::config::file_text(&second).unwrap()).unwrap();

    let log_a = env.dir.path().join("a.log");
    let mut a = Reap(vec![spawn_stream_with(
        &config_a,
        &[],
        &[(pharmwatch::faults::FAULT_ENV, "stream.before_fence@3:stop")],
        &log_a,
    )]);
    let a_pid = a.0[0].id().to_string();
    let started = Instant::now();
    while !std::fs::read_to_string(&log_a)
        .unwrap_or_default()
        .contains("stream.before_fence hit 3: stopping")
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "A never reached its third batch: {}",
            std::fs::read_to_string(&log_a).unwrap_or_default()
        );
        assert!(a.0[0].try_wait().unwrap().is_none(), "A exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stat = || std::fs::read_to_string(format!("/proc/{a_pid}/stat")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(stat().contains(") T "), "A is not stopped: {}", stat());
    let at_pause = consumed_so_far(&env.cfg.store);
    assert!(at_pause < total);

    // B joins; once the broker has dropped the silent A, B holds every partition and goes on.
    let log_b = env.dir.path().join("b.log");
    a.0.push(spawn_stream(&config_b, &[], &log_b));
    let started = Instant::now();
    while assigned(&second).len() < 3 || consumed_so_far(&env.cfg.store) <= at_pause {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "B never took every partition over: {:?}; log:\n{}",
            assigned(&second),
            std::fs::read_to_string(&log_b).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A wakes up with its batch in hand: the commit is refused and counted.
    let status = Command::new("kill")
        .args(["-CONT", &a_pid])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let fenced = loop {
        let (_, metrics) = crate::common::http_get(&env.cfg.metrics_listen, "/metrics")
            .unwrap_or((0, String::new()));
        let n: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("pharmwatch_stream_fenced_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if n > 0.0 {
            break n;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "A's commit was not refused; log:\n{}",
            std::fs::read_to_string(&log_a).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(fenced >= 1.0);
    let text = std::fs::read_to_string(&log_a).unwrap();
    assert!(
        text.contains("fault point stream.before_fence: resumed"),
        "{text}"
    );
    assert!(text.contains("its commit refused"), "{text}");

    wait_until_consumed(&env.cfg.store, total, &log_b);
    let_days_settle(&env);
    stop_with_sigterm(&mut a.0[1], &log_b);
    stop_with_sigterm(&mut a.0[0], &log_a);
    assert_exactly_once(&env, total).await;
}

/// The tansu binary the test script installs (on the PATH or in cargo's bin folder).
fn tansu() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    });
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin/tansu"))
        .filter(|p| p.is_file());
    on_path.or(cargo_bin).unwrap_or_else(|| {
        panic!(
            "the broker-outage test starts and stops a broker of its own: tansu is not installed. \
             Run scripts/test.sh (it installs it), or `cargo install tansu --version 0.6.0 --locked \
             --features dynostore,libsql`"
        )
    })
}

/// A broker of the test's own on `port`, keeping its topics in a SQLite file under `dir`, so
/// what it holds survives a stop and a start.
fn start_broker(dir: &Path, port: u16, log: &Path) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    Command::new(tansu())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "sqlite://./tansu.db"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .unwrap()
}

/// Waits until the broker started with log `log` listens on `port`; fails with its log.
fn wait_listening(port: u16, log: &Path) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the broker did not listen on 127.0.0.1:{port} within 30 s (it keeps its topics in \
             SQLite: tansu needs the `libsql` feature, `cargo install tansu --version 0.6.0 \
             --locked --features dynostore,libsql`); its log {}:\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `/healthz` status code of the instance at `addr` (0 when it does not answer).
fn health_code(addr: &str) -> u16 {
    crate::common::http_get(addr, "/healthz").map_or(0, |(code, _)| code)
}

/// The broker stopped mid-stream (`kill -9`) for several seconds and started again: the service
/// waits with `/healthz` answering 503, reconnects by itself, resumes and finishes — nothing lost,
/// nothing repeated, the risk events published once the broker is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_outage_mid_stream_is_waited_out_with_nothing_lost() {
    let f = fixture();
    let mut env = env("outage", 3, true).await;
    let broker_dir = env.dir.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let port = crate::common::free_port();
    let broker_log = env.dir.path().join("broker-1.log");
    let mut broker = Reap(vec![start_broker(&broker_dir, port, &broker_log)]);
    wait_listening(port, &broker_log);
    env.cfg.brokers = format!("127.0.0.1:{port}");
    env.cfg.batch_max_records = 300;
    // The outage (about ten seconds) stays within the group session, as Kafka's default of
    // 45 s would: the test broker does not hand the partitions back to a member whose session
    // expired while it was away.
    env.cfg
        .kafka
        .insert("session.timeout.ms".into(), "30000".into());
    service::create_topics(&env.cfg, 3).await.unwrap();
    let config = env.dir.path().join("pharmwatch.toml");
    std::fs::write(&config, pharmwatch::config::file_text(&env.cfg).unwrap()).unwrap();
    let sent = pharmwatch::produce::produce(&env.cfg, &f.lake, Some(f.first), Some(f.last), None)
        .await
        .unwrap();
    let total = sent.sent as i64;

    let log = env.dir.path().join("stream.log");
    let mut stream = Reap(vec![spawn_stream(&config, &[], &log)]);
    let started = Instant::now();
    while consumed_so_far(&env.cfg.store) < total / 4 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no progress; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(health_code(&env.cfg.metrics_listen), 200);

    // The broker dies; the service says it is not ready and waits.
    broker.0[0].kill().unwrap();
    broker.0[0].wait().unwrap();
    let down_at = consumed_so_far(&env.cfg.store);
    let started = Instant::now();
    // Within seconds: a batch publishing when the broker died waits for its deliveries a few
    // seconds at most (the statistics show the loss within their 250 ms interval).
    while health_code(&env.cfg.metrics_listen) != 503 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "/healthz did not say not ready within 10 s; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        stream.0[0].try_wait().unwrap().is_none(),
        "the service stopped while the broker was away: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(down_at < total, "the outage came after the end");

    // The broker is back on the same port: the service reconnects and finishes.
    let broker_log = env.dir.path().join("broker-2.log");
    broker.0.push(start_broker(&broker_dir, port, &broker_log));
    wait_listening(port, &broker_log);
    wait_until_consumed(&env.cfg.store, total, &log);
    let started = Instant::now();
    while health_code(&env.cfg.metrics_listen) != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "/healthz never said ready again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("no broker connected"), "{text}");
    assert!(text.contains("the broker is back"), "{text}");
    let_days_settle(&env);
    stop_with_sigterm(&mut stream.0[0], &log);
    assert_exactly_once(&env, total).await;
}
