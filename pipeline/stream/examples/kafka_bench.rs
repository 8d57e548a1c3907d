//! The peer of the stream benchmark (`scripts/bench_stream.sh`): a bare rdkafka consumer.
//!
//! `kafka_bench raw BROKERS GROUP EXPECT TOPIC...` consumes EXPECT messages from the topics
//! with a fresh consumer group (same librdkafka settings as the service, nothing else done
//! with the messages) and prints `{"messages":N,"seconds":S,"rate":R}` where S runs from the
//! first message to the last.
//!
//! `kafka_bench latency BROKERS TOPIC` reads a risk-events topic from the start until it has
//! been quiet for 5 s and prints the distribution of (risk event's Kafka timestamp − triggering
//! record's Kafka timestamp), in milliseconds, over events judged at a record (not at a day
//! close).

use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

fn consumer(brokers: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("partition.assignment.strategy", "range")
        .create()
        .unwrap_or_else(|e| panic!("consumer for {brokers}: {e}"))
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("raw") if args.len() >= 6 => {
            let (brokers, group) = (&args[2], &args[3]);
            let expect: u64 = args[4].parse().expect("EXPECT is a number");
            let topics: Vec<&str> = args[5..].iter().map(String::as_str).collect();
            let c = consumer(brokers, group);
            c.subscribe(&topics).expect("subscribe");
            let mut n = 0u64;
            let mut bytes = 0usize;
            let mut first: Option<Instant> = None;
            let mut last = Instant::now();
            let started = Instant::now();
            while n < expect {
                match c.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        first.get_or_insert_with(Instant::now);
                        bytes += m.payload().map_or(0, <[u8]>::len);
                        n += 1;
                        last = Instant::now();
                    }
                    Some(Err(e)) => eprintln!("consumer error: {e}"),
                    None => {}
                }
                if started.elapsed() > Duration::from_secs(600) {
                    panic!("only {n} of {expect} messages in 600 s");
                }
            }
            let secs = first.map_or(0.0, |f| (last - f).as_secs_f64());
            println!(
                "{{\"messages\":{n},\"bytes\":{bytes},\"seconds\":{secs:.4},\"rate\":{:.1}}}",
                n as f64 / secs.max(1e-9)
            );
        }
        Some("latency") if args.len() == 4 => {
            let c = consumer(&args[2], &format!("latency-{}", std::process::id()));
            c.subscribe(&[args[3].as_str()]).expect("subscribe");
            let mut lat = Vec::new();
            let mut events = 0u64;
            let mut quiet = Instant::now();
            while quiet.elapsed() < Duration::from_secs(5) {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                    quiet = Instant::now();
                    events += 1;
                    let Some(ts) = m.timestamp().to_millis() else {
                        continue;
                    };
                    let v: serde_json::Value =
                        serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default();
                    if let Some(src) = v["source_timestamp_ms"].as_i64() {
                        lat.push((ts - src) as f64);
                    }
                }
            }
            lat.sort_by(f64::total_cmp);
            println!(
                "{{\"events\":{events},\"timed\":{},\"p50_ms\":{:.1},\"p90_ms\":{:.1},\"p99_ms\":{:.1},\"max_ms\":{:.1}}}",
                lat.len(),
                quantile(&lat, 0.5),
                quantile(&lat, 0.9),
                quantile(&lat, 0.99),
                lat.last().copied().unwrap_or(f64::NAN)
            );
        }
        _ => {
            eprintln!(
                "usage: kafka_bench raw BROKERS GROUP EXPECT TOPIC... | kafka_bench latency BROKERS TOPIC"
            );
            std::process::exit(2);
        }
    }
}
