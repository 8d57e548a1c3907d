//! The metric machinery every component uses: a [`Builder`] that registers a component's
//! families and remembers them, the text exposition, the process's exposed registries and the
//! atomic textfile writer. Each component defines its own set beside its code (the stream's,
//! the delivery worker's, serve's, the nightly job's); the facade crate lists them all for the
//! dashboard test. Names carry the
//! `pharmwatch_` prefix; labels are bounded (event kind, field, indicator, grade, region,
//! enterprise type, segment, document kind, channel, outcome, partition number) and never an
//! enterprise id.
//!
//! The sets, one registry each: `pharmwatch_stream::metrics::StreamMetrics` (`pharmwatch
//! stream`), `pharmwatch_delivery::metrics::DeliveryMetrics` (the delivery worker),
//! `pharmwatch_serve::metrics::ServeMetrics` (acknowledgements) and
//! `pharmwatch_batch::metrics::NightlyMetrics` (`pharmwatch nightly`, written to a file for
//! node_exporter's textfile collector with [`write_textfile`]).
//!
//! Invariants: bounded label sets are initialised at zero when a set is created (every kind,
//! channel × outcome, indicator × grade …), so a dashboard panel has a series before the first
//! event; `pharmwatch::metrics::defined` lists every family, which the dashboard test checks
//! queries against.

use std::path::Path;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::error::{CoreError, Result};

/// Delivery channels (the `channel` label).
pub const CHANNELS: &[&str] = &["webhook", "dingtalk", "wecom", "email", "manual"];
/// Outcomes of a delivery attempt (the `outcome` label).
pub const OUTCOMES: &[&str] = &["success", "retry", "final_failure"];
/// Risk grades, most severe first (the `grade` label).
pub const GRADES: &[&str] = &["D", "C", "B", "A"];
/// Document kinds the ledger issues (the `kind` label of notices).
pub const DOCUMENT_KINDS: &[&str] = &[
    "caution_notice",
    "interview_notice",
    "suspension_decision",
    "lifting_notice",
];

/// The type of a metric family, as the exposition format names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyType {
    /// A counter (`_total`).
    Counter,
    /// A gauge.
    Gauge,
    /// A histogram (`_bucket`, `_sum`, `_count` series).
    Histogram,
}

/// A metric family pharmwatch defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: FamilyType,
    /// Its labels.
    pub labels: Vec<String>,
}

impl Family {
    /// The series names a query may use: the name, and for a histogram its `_bucket`, `_sum`
    /// and `_count` series.
    pub fn series_names(&self) -> Vec<String> {
        match self.kind {
            FamilyType::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{}{s}", self.name))
                .chain([self.name.clone()])
                .collect(),
            _ => vec![self.name.clone()],
        }
    }
}

/// Registers collectors in one registry and remembers their families: each component builds
/// its metric set with one.
#[derive(Default)]
pub struct Builder {
    /// The registry the collectors are registered in.
    pub registry: Registry,
    /// The families registered so far.
    pub families: Vec<Family>,
}

impl Builder {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            registry: Registry::new(),
            families: Vec::new(),
        }
    }

    /// Registers a collector of `kind`, remembering its families.
    pub fn add<C: Collector + Clone + 'static>(&mut self, c: C, kind: FamilyType) -> C {
        for d in c.desc() {
            self.families.push(Family {
                name: d.fq_name.clone(),
                kind,
                labels: d.variable_labels.clone(),
            });
        }
        must(self.registry.register(Box::new(c.clone())));
        c
    }

    /// A labelled integer counter.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let c = must(IntCounterVec::new(Opts::new(name, help), labels));
        self.add(c, FamilyType::Counter)
    }

    /// A labelled integer gauge.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let g = must(IntGaugeVec::new(Opts::new(name, help), labels));
        self.add(g, FamilyType::Gauge)
    }

    /// An unlabelled float gauge.
    pub fn float_gauge(&mut self, name: &str, help: &str) -> Gauge {
        let g = must(Gauge::new(name, help));
        self.add(g, FamilyType::Gauge)
    }

    /// A labelled histogram with `buckets`.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> HistogramVec {
        let h = must(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets),
            labels,
        ));
        self.add(h, FamilyType::Histogram)
    }
}

/// The text exposition format of several registries (e.g. `/metrics` of the stream service,
/// which serves the stream and the delivery metrics).
pub fn render(registries: &[&Registry]) -> String {
    let mut families = Vec::new();
    for r in registries {
        families.extend(r.gather());
    }
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
        return format!("# encoding failed: {e}\n");
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Now, Unix seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Writes `text` to `path` whole: to `path.tmp` in the same directory, then renamed over
/// `path`, so the textfile collector never reads half a file.
pub fn write_textfile(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(|e| CoreError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| CoreError::io(path, e))
}

/// The value of a metric definition; a failure is a programming error caught by the tests.
pub fn must<T>(r: prometheus::Result<T>) -> T {
    match r {
        Ok(v) => v,
        // Metric definitions are constants: a failure is a programming error caught by tests.
        Err(e) => panic!("metric definition: {e}"),
    }
}
/// The family a line of the text format belongs to (`# HELP name …`, `# TYPE name …`,
/// `name{…} v`, `name v`).
pub fn family_of_line(line: &str) -> &str {
    let rest = line
        .strip_prefix("# HELP ")
        .or_else(|| line.strip_prefix("# TYPE "))
        .unwrap_or(line);
    let end = rest.find(['{', ' ']).unwrap_or(rest.len());
    &rest[..end]
}

/// The registries this process exposes on `/metrics`: each component's set registers itself
/// when it is first created, so a process running several components (the stream with its
/// delivery worker, serve with the worker) serves them all from one endpoint.
fn exposed() -> &'static std::sync::Mutex<Vec<Registry>> {
    static R: std::sync::OnceLock<std::sync::Mutex<Vec<Registry>>> = std::sync::OnceLock::new();
    R.get_or_init(|| std::sync::Mutex::new(Vec::new()))
}

/// Adds `registry` to what this process serves on `/metrics`.
pub fn expose(registry: &Registry) {
    if let Ok(mut list) = exposed().lock() {
        list.push(registry.clone());
    }
}

/// The text exposition of every registry this process exposes ([`expose`]).
pub fn render_exposed() -> String {
    let list = exposed().lock().map(|l| l.clone()).unwrap_or_default();
    render(&list.iter().collect::<Vec<_>>())
}

/// The store's metrics (`pharmwatch_store_*`): the latency of calls to a PostgreSQL store and
/// the connections it had to re-open. Created and exposed by the first call that records
/// into it, so every process that talks to a PostgreSQL store serves them on `/metrics`.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    /// Seconds per call to the database server (a statement, a transaction's begin or end).
    pub seconds: HistogramVec,
    /// Calls tried again, by reason (`connection_lost`).
    pub retries: IntCounterVec,
    /// Connections of the workbench's pool, by state (`in_use`, `idle`).
    pub pool_connections: IntGaugeVec,
    /// Requests that had to wait for a pooled connection.
    pub pool_waits: IntCounterVec,
    /// Requests refused because every pooled connection stayed busy.
    pub pool_timeouts: IntCounterVec,
    /// The families, for the facade's list.
    pub families: Vec<Family>,
}

impl StoreMetrics {
    /// A new set in its own registry.
    pub fn new() -> (Self, Registry) {
        let mut b = Builder::new();
        let seconds = b.histogram(
            "pharmwatch_store_seconds",
            "Seconds per call to the PostgreSQL store",
            &["backend"],
            vec![
                0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ],
        );
        let retries = b.counter(
            "pharmwatch_store_retries_total",
            "Store calls tried again after a lost connection",
            &["reason"],
        );
        retries.with_label_values(&["connection_lost"]);
        let pool_connections = b.gauge(
            "pharmwatch_store_pool_connections",
            "Store connections of the pool, by state",
            &["state"],
        );
        for s in ["in_use", "idle"] {
            pool_connections.with_label_values(&[s]);
        }
        let pool_waits = b.counter(
            "pharmwatch_store_pool_waits_total",
            "Requests that waited for a pooled store connection",
            &[],
        );
        pool_waits.with_label_values(&[] as &[&str]);
        let pool_timeouts = b.counter(
            "pharmwatch_store_pool_timeouts_total",
            "Requests refused because every pooled store connection stayed busy",
            &[],
        );
        pool_timeouts.with_label_values(&[] as &[&str]);
        (
            Self {
                seconds,
                retries,
                pool_connections,
                pool_waits,
                pool_timeouts,
                families: b.families,
            },
            b.registry,
        )
    }
}

fn store_metrics() -> &'static StoreMetrics {
    static M: std::sync::OnceLock<StoreMetrics> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        let (m, registry) = StoreMetrics::new();
        expose(&registry);
        m
    })
}

/// Records the latency of one call to the PostgreSQL store.
pub fn store_latency(d: std::time::Duration) {
    store_metrics()
        .seconds
        .with_label_values(&["postgres"])
        .observe(d.as_secs_f64());
}

/// Sets the pool's connection gauges.
pub fn store_pool(in_use: usize, idle: usize) {
    let m = store_metrics();
    m.pool_connections
        .with_label_values(&["in_use"])
        .set(in_use as i64);
    m.pool_connections
        .with_label_values(&["idle"])
        .set(idle as i64);
}

/// Counts one request that waited for a pooled connection.
pub fn store_pool_wait() {
    store_metrics()
        .pool_waits
        .with_label_values(&[] as &[&str])
        .inc();
}

/// Counts one request refused for want of a pooled connection.
pub fn store_pool_timeout() {
    store_metrics()
        .pool_timeouts
        .with_label_values(&[] as &[&str])
        .inc();
}

/// Counts one store call tried again, by `reason`.
pub fn store_retry(reason: &str) {
    store_metrics().retries.with_label_values(&[reason]).inc();
}
