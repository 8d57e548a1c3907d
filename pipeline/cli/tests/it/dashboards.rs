//! The dashboards and alert rules against the real thing: a Prometheus (Debian package
//! `prometheus`) scraping a running `pharmwatch stream` while a simulated day flows through the
//! real broker (tansu, `PHARMWATCH_TEST_BROKER`, started by `scripts/test.sh`), and
//! node_exporter (`prometheus-node-exporter`) serving the nightly job's textfile. Every PromQL
//! expression of every dashboard and alert rule is evaluated through Prometheus's HTTP API:
//! each must parse and return data. The SQL panels run against the store the same nightly runs
//! wrote, and the supervisors' report (`OUT/report.html`) is opened in headless Chromium.
//!
//! Static checks need no service: every panel has a description and a Chinese title, every
//! Prometheus panel selects its datasource through `$datasource`, and every metric (and label)
//! a query names is one the code defines (`pharmwatch::metrics::defined`).
//!
//! Nothing is skipped: a missing Prometheus, node_exporter, promtool, Chromium or broker fails
//! the test with the command that installs or starts it. The seed of the simulated province is
//! `PHARMWATCH_TEST_SEED` (default 7).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use pharmwatch::anomaly::ModelSource;
use pharmwatch::closedloop::ClosedLoop;
use pharmwatch::indicators::Thresholds;
use pharmwatch::measures;
use pharmwatch::metrics::{self, Family, FamilyType};
use pharmwatch::nightly::{self, NightlyConfig};
use pharmwatch::notices::NoticesConfig;
use pharmwatch::simulate::{self, SimConfig};
use pharmwatch::stream::config::StreamConfig;
use pharmwatch::stream::service;
use pharmwatch_regulation::Calendar;
use pharmwatch_schemas::EventKind;
use serde_json::Value;

/// The dashboards, in `dashboards/`.
const DASHBOARDS: &[&str] = &[
    "pharmwatch-supervisors.json",
    "pharmwatch-pipeline.json",
    "pharmwatch-risk-list.json",
];
const NIGHTLY_TEXTFILE: &str = "pharmwatch_nightly.prom";

/// The repository's root (this crate is `pipeline/cli`).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

fn seed() -> u64 {
    std::env::var("PHARMWATCH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
}

fn dashboard(name: &str) -> Value {
    let path = repo().join("dashboards").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel of a dashboard, the panels of collapsed rows included.
fn panels(d: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p.clone());
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner.iter().cloned());
        }
    }
    out
}

/// (dashboard, panel title, query) of every panel target with the query in `field`.
fn targets(field: &str) -> Vec<(String, String, String)> {
    let mut v = Vec::new();
    for name in DASHBOARDS {
        for p in panels(&dashboard(name)) {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(q) = t[field].as_str() {
                    v.push((
                        name.to_string(),
                        p["title"].as_str().unwrap_or_default().to_string(),
                        q.to_string(),
                    ));
                }
            }
        }
    }
    v
}

/// (dashboard, panel title, expression) of every Prometheus query.
fn promql_targets() -> Vec<(String, String, String)> {
    targets("expr")
}

/// (panel title, SQL) of every SQLite query.
fn sql_targets() -> Vec<(String, String)> {
    targets("rawQueryText")
        .into_iter()
        .map(|(_, title, sql)| (title, sql))
        .collect()
}

/// (dashboard, variable, metric, label) of every `label_values(METRIC, LABEL)` variable.
fn label_value_variables() -> Vec<(String, String, String, String)> {
    let mut v = Vec::new();
    for name in DASHBOARDS {
        for var in dashboard(name)["templating"]["list"].as_array().unwrap() {
            let q = var["query"]["query"]
                .as_str()
                .or_else(|| var["definition"].as_str())
                .unwrap_or_default();
            if let Some(args) = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
            {
                let (metric, label) = args.split_once(',').unwrap();
                v.push((
                    name.to_string(),
                    var["name"].as_str().unwrap().to_string(),
                    metric.trim().to_string(),
                    label.trim().to_string(),
                ));
            }
        }
    }
    v
}

/// PromQL functions and keywords (everything an identifier outside a matcher may be besides a
/// metric name).
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "topk",
    "bottomk",
    "quantile",
    "stddev",
    "stdvar",
    "group",
    "count_values",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "histogram_quantile",
    "time",
    "absent",
    "clamp_min",
    "clamp_max",
    "min_over_time",
    "max_over_time",
    "avg_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "label_replace",
    "vector",
    "scalar",
    "abs",
    "round",
    "humanize",
];

/// The metric names and the label names a PromQL expression uses: identifiers outside strings
/// and matchers that are not functions or keywords are metric names; identifiers in `{…}`
/// before an operator, and in the lists after `by`, `without`, `on`, `ignoring`, are labels.
fn promql_names(expr: &str) -> Result<(BTreeSet<String>, BTreeSet<String>), String> {
    let mut metrics = BTreeSet::new();
    let mut labels = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut in_braces = false;
    let mut label_list = false;
    let mut prev_word = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            let q = c;
            i += 1;
            while i < chars.len() && chars[i] != q {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
            continue;
        }
        if c == '{' {
            in_braces = true;
        } else if c == '}' {
            in_braces = false;
        } else if c == '(' {
            label_list = [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&prev_word.as_str());
        } else if c == ')' {
            label_list = false;
        }
        if c.is_ascii_digit() {
            // A number or a duration (`0.95`, `1e-9`, `26`, `1d`): no name in it.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            prev_word.clear();
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            let next = chars.get(j).copied().unwrap_or(' ');
            if in_braces || label_list {
                labels.insert(word.clone());
            } else if next == '(' || PROMQL_WORDS.contains(&word.as_str()) {
                if !PROMQL_WORDS.contains(&word.as_str()) {
                    return Err(format!("`{expr}`: unknown function or keyword {word}"));
                }
            } else {
                metrics.insert(word.clone());
            }
            prev_word = word;
            continue;
        }
        if !c.is_whitespace() {
            prev_word.clear();
        }
        i += 1;
    }
    Ok((metrics, labels))
}

/// Checks that an expression names only defined metrics and their labels; returns the metrics.
fn names_defined(expr: &str, defined: &[Family]) -> Result<BTreeSet<String>, String> {
    let (names, labels) = promql_names(expr)?;
    let mut families = Vec::new();
    for n in &names {
        let f = defined
            .iter()
            .find(|f| f.series_names().contains(n))
            .ok_or_else(|| {
                format!("`{expr}` queries {n}, which pipeline/src/metrics.rs does not define")
            })?;
        families.push(f);
    }
    if names.is_empty() {
        return Err(format!("`{expr}` queries no metric"));
    }
    let mut known: BTreeSet<String> = ["instance", "job"].iter().map(|s| s.to_string()).collect();
    for f in &families {
        known.extend(f.labels.iter().cloned());
        if f.kind == FamilyType::Histogram {
            known.insert("le".into());
        }
    }
    if let Some(l) = labels.iter().find(|l| !known.contains(*l)) {
        return Err(format!(
            "`{expr}` uses label {l}, which none of its metrics has ({known:?})"
        ));
    }
    Ok(names)
}

fn check_names(what: &str, expr: &str, defined: &[Family]) -> BTreeSet<String> {
    names_defined(expr, defined).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Panels titled in Chinese, described in English, with a datasource variable.
#[test]
fn every_panel_is_described_and_queries_metrics_the_code_defines() {
    let defined = metrics::defined();
    let mut queries = 0;
    for name in DASHBOARDS {
        let d = dashboard(name);
        let vars = d["templating"]["list"].as_array().unwrap();
        let ds_vars: Vec<&str> = vars
            .iter()
            .filter(|v| v["type"] == "datasource")
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert!(!ds_vars.is_empty(), "{name}: no datasource variable");
        assert!(d["description"].as_str().is_some_and(|s| !s.is_empty()));
        let mut ids = BTreeSet::new();
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(ids.insert(p["id"].as_i64().unwrap()), "{name}: id twice");
            let desc = p["description"].as_str().unwrap_or_default();
            assert!(
                desc.len() >= 20,
                "{name}: panel {title:?} has no description"
            );
            assert!(
                title
                    .chars()
                    .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{name}: panel title {title:?} is not Chinese"
            );
            assert!(
                desc.chars().take(12).all(|c| c.is_ascii()),
                "{name}: {title}: the description starts in English: {desc}"
            );
            if p["type"] == "row" {
                continue;
            }
            let uid = p["datasource"]["uid"].as_str().unwrap_or_default();
            assert!(
                ds_vars.iter().any(|v| uid == format!("${{{v}}}")),
                "{name}: {title}: datasource {uid:?} is not a datasource variable"
            );
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}: {title}: no query");
            for t in targets {
                if let Some(e) = t["expr"].as_str() {
                    check_names(&format!("{name}: {title}"), e, &defined);
                    queries += 1;
                } else {
                    assert!(t["rawQueryText"].as_str().is_some(), "{name}: {title}: {t}");
                }
            }
        }
    }
    assert!(queries >= 30, "{queries}");
    let vars = label_value_variables();
    assert!(!vars.is_empty());
    for (dash, var, metric, label) in &vars {
        check_names(
            &format!("{dash}: variable {var}"),
            &format!("{metric}{{{label}=\"\"}}"),
            &defined,
        );
    }
    // The checker itself: a misspelt metric or a label the metric lacks is caught.
    let caught = |e: &str| names_defined(e, &defined).is_err();
    assert!(caught("sum(rate(pharmwatch_stream_consumd_total[5m]))"));
    assert!(caught(
        "sum by (enterprise_id) (pharmwatch_stream_consumed_total)"
    ));
    assert!(caught("pharmwatch_risk_list_rows{enterprise_id=\"x\"}"));
    assert!(caught("sum(rat(pharmwatch_stream_consumed_total[5m]))"));
    assert!(!caught(
        "histogram_quantile(0.9, sum by (le) (rate(pharmwatch_stream_batch_seconds_bucket[5m])))"
    ));
    assert_eq!(
        promql_names(
            "pharmwatch_cases_overdue - pharmwatch_cases_overdue offset 1d > 1e-9 \
             and on (instance) sum by (instance) (pharmwatch_cases_open{job=\"n\"}) > 0"
        )
        .unwrap(),
        (
            ["pharmwatch_cases_open", "pharmwatch_cases_overdue"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ["instance", "job"].iter().map(|s| s.to_string()).collect()
        )
    );
}

/// A required program, or a failure saying how to install it.
fn program(bin: &str, package: &str) -> String {
    let ok = Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{bin} is missing: `apt-get install {package}` (Debian package; scripts/test.sh installs it)"
    );
    bin.to_string()
}

#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    let promtool = program("promtool", "prometheus");
    let dir = repo().join("dashboards");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A simulated province of 46 days; two nightly runs into one output directory (an earlier run
/// that opened cases whose deadlines have passed by the later one, and last night's run by the
/// binary with the metrics textfile); the last day is left for the stream service, which starts
/// from last night's baseline. Built once per test binary.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    lake: PathBuf,
    out: PathBuf,
    textfiles: PathBuf,
    /// Tonight's business day (the nightly run's).
    day: NaiveDate,
    /// The day after, which flows through the stream service.
    stream_day: NaiveDate,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| std::thread::spawn(build_fixture).join().unwrap())
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pharmwatch")
}

fn build_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let lake = root.join("lake");
    let out = root.join("out");
    let textfiles = root.join("textfiles");
    let cal = Calendar::embedded().unwrap();
    let sim = simulate::run(
        &SimConfig {
            enterprises: 60,
            days: 46,
            start: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
            seed: seed(),
            anomaly_days: 10,
            anomalies_per_kind: Some(2),
            out: lake.clone(),
            progress: false,
            noise: pharmwatch_sim::simulate::noise::NoiseConfig::off(),
        },
        &cal,
    )
    .unwrap();
    let stream_day = sim.end;
    let day = stream_day - chrono::Duration::days(1);
    // The earlier nights: 29 days of risk lists; their notices dated far enough back that the
    // rectification deadlines (30 working days) have passed on `day`.
    let cfg = NightlyConfig {
        lake: Some(lake.clone()),
        reference: None,
        inputs: Vec::new(),
        from: day - chrono::Duration::days(29),
        to: day - chrono::Duration::days(1),
        out: out.clone(),
        thresholds: Thresholds::default(),
        top: 5,
        progress: false,
        model: ModelSource::Off,
        anomaly_threshold: pharmwatch::anomaly::DEFAULT_THRESHOLD,
    };
    let cl = ClosedLoop {
        notices: NoticesConfig {
            grades: vec!["B".into(), "C".into(), "D".into()],
            issue: pharmwatch::notices::IssueMode::Direct,
            authority: Some(crate::common::test_authority()),
            ..NoticesConfig::default()
        },
        rules: measures::load_rules(None).unwrap(),
        calendar: cal,
        run_date: Some(day - chrono::Duration::days(50)),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_, summary) = rt.block_on(nightly::run_with(&cfg, Some(&cl))).unwrap();
    assert!(summary.unwrap().cases_opened >= 2);
    // Tonight's run: the binary, as the timer runs it, with the model and the textfile.
    let run = Command::new(bin())
        .args(["nightly", "--quiet", "--lake"])
        .arg(&lake)
        .args(["--date", &day.to_string(), "--out"])
        .arg(&out)
        .arg("--metrics-textfile")
        .arg(textfiles.join(NIGHTLY_TEXTFILE))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "nightly: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    Fixture {
        _dir: dir,
        root,
        lake,
        out,
        textfiles,
        day,
        stream_day,
    }
}

#[test]
fn the_sql_panels_return_rows_from_the_store() {
    let f = fixture();
    let conn = rusqlite::Connection::open_with_flags(
        f.out.join("pharmwatch.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    // The risk-list dashboard's `day` variable, as Grafana would fill it: its first value.
    let day_var = dashboard("pharmwatch-risk-list.json")["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "day")
        .unwrap()["query"]
        .as_str()
        .unwrap()
        .to_string();
    let day: String = conn.query_row(&day_var, [], |r| r.get(0)).unwrap();
    assert_eq!(day, f.day.to_string());
    let targets = sql_targets();
    assert!(targets.len() >= 8, "{targets:?}");
    let mut total = 0;
    for (title, sql) in &targets {
        let sql = sql.replace("$day", &day);
        assert!(
            !sql.contains('$'),
            "{title}: unsubstituted variable in {sql}"
        );
        let mut st = conn
            .prepare(&sql)
            .unwrap_or_else(|e| panic!("{title}: {e}\n{sql}"));
        let cols = st.column_count();
        let mut rows = st.query([]).unwrap();
        let mut n = 0;
        while let Some(r) = rows.next().unwrap() {
            for c in 0..cols {
                r.get_ref(c).unwrap();
            }
            n += 1;
        }
        assert!(n > 0, "{title}: no rows\n{sql}");
        total += n;
        eprintln!("SQL panel {title}: {n} rows, {cols} columns");
    }
    eprintln!("{} SQL panels, {total} rows", targets.len());
}

/// A child process killed when the test ends (pass or fail).
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        Self { name, child, log }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited ({status}):\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// A `[delivery]` table whose contacts are the simulated ones with every channel turned into
/// a webhook on a loopback port nobody listens on: every attempt fails (and is retried), so the
/// delivery panels have failures and a queue to show, and nothing leaves the machine.
fn loopback_delivery(lake: &Path, work: &Path) -> String {
    let refs = lake.join(pharmwatch::lake::REFERENCE_DIR);
    let text = std::fs::read_to_string(refs.join("contacts.json")).unwrap();
    let mut contacts: Vec<pharmwatch::contacts::Contact> = serde_json::from_str(&text).unwrap();
    let hook = format!("http://127.0.0.1:{}/hook", crate::common::free_port());
    for c in &mut contacts {
        c.channel = pharmwatch::contacts::Channel::Webhook;
        c.address = hook.clone();
        c.secret_ref = Some("env:PHARMWATCH_TEST_HOOK_SECRET".into());
    }
    let contacts_path = work.join("contacts.json");
    std::fs::write(&contacts_path, serde_json::to_string(&contacts).unwrap()).unwrap();
    let secrets = work.join("secrets.toml");
    std::fs::write(&secrets, "").unwrap();
    format!(
        "[delivery]\ncontacts = \"{}\"\nsecrets_file = \"{}\"\n\
         link_base_url = \"http://127.0.0.1:9\"\npoll_interval_ms = 200\n",
        contacts_path.display(),
        secrets.display()
    )
}

fn urlencode(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// An instant query: Ok(result array) or Err(Prometheus's error).
fn query(prom: &str, expr: &str) -> Result<Vec<Value>, String> {
    let (status, body) =
        crate::common::http_get(prom, &format!("/api/v1/query?query={}", urlencode(expr)))
            .ok_or_else(|| "no answer from Prometheus".to_string())?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("{}: {}", v["errorType"], v["error"]));
    }
    match v["data"]["resultType"].as_str() {
        Some("scalar") | Some("string") => Ok(vec![v["data"]["result"].clone()]),
        _ => Ok(v["data"]["result"].as_array().cloned().unwrap_or_default()),
    }
}

fn sample_value(series: &Value) -> f64 {
    let v = if series.is_array() {
        &series[1]
    } else {
        &series["value"][1]
    };
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool, procs: &mut [&mut Proc]) {
    let started = Instant::now();
    while !ok() {
        for p in procs.iter_mut() {
            p.assert_running();
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "waited {secs} s for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Grafana's variables, filled as Grafana would for a 1-hour view of this short run.
fn grafana_vars(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__range", "1h")
        .replace("$__interval", "15s")
        .replace("$region", ".*")
}

#[test]
fn prometheus_evaluates_every_dashboard_query_and_alert_rule_against_a_running_pipeline() {
    let prometheus = program("prometheus", "prometheus");
    let node_exporter = program("prometheus-node-exporter", "prometheus-node-exporter");
    let brokers = crate::common::broker();
    let f = fixture();
    let started = Instant::now();
    let work = f.root.join(format!("live-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();

    // The stream service: own topics, a lake with the reference tables, the nightly store
    // (shared, as in production) and last night's baseline; today's records flow through it.
    let unique = format!(
        "dash-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let stream_lake = work.join("lake");
    let refs = stream_lake.join(pharmwatch::lake::REFERENCE_DIR);
    std::fs::create_dir_all(&refs).unwrap();
    for e in std::fs::read_dir(f.lake.join(pharmwatch::lake::REFERENCE_DIR)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), refs.join(e.file_name())).unwrap();
    }
    let stream_addr = format!("127.0.0.1:{}", crate::common::free_port());
    let cfg = StreamConfig {
        brokers: brokers.clone(),
        group_id: format!("g-{unique}"),
        topic_prefix: format!("t-{unique}."),
        dead_letter_topic: format!("t-{unique}.dead-letter"),
        risk_events_topic: format!("t-{unique}.risk-events"),
        lake: stream_lake,
        store: f.out.join("pharmwatch.db"),
        baseline: Some(f.out.clone()),
        metrics_listen: stream_addr.clone(),
        batch_max_records: 500,
        ..StreamConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(service::create_topics(&cfg, 2)).unwrap();
    let cfg_path = work.join("pharmwatch.toml");
    let config = format!(
        "{}\n{}",
        pharmwatch::config::file_text(&cfg).unwrap(),
        loopback_delivery(&f.lake, &work)
    );
    std::fs::write(&cfg_path, config).unwrap();
    // The delivery worker runs beside the stream (its metrics are on the same /metrics).
    let mut stream = Proc::spawn(
        "pharmwatch stream",
        Command::new(bin())
            .args(["stream", "--deliver", "--config"])
            .arg(&cfg_path)
            .env("PHARMWATCH_LINK_KEY", "0123456789abcdef0123456789abcdef")
            .env("PHARMWATCH_TEST_HOOK_SECRET", "dashboards-test-secret"),
        work.join("stream.log"),
    );

    // node_exporter serving the nightly textfile, and Prometheus scraping both every second
    // with the alert rules loaded.
    let node_addr = format!("127.0.0.1:{}", crate::common::free_port());
    let mut node = Proc::spawn(
        "prometheus-node-exporter",
        Command::new(&node_exporter)
            .arg(format!("--web.listen-address={node_addr}"))
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .arg(format!(
                "--collector.textfile.directory={}",
                f.textfiles.display()
            )),
        work.join("node_exporter.log"),
    );
    let prom_addr = format!("127.0.0.1:{}", crate::common::free_port());
    let alerts = repo().join("dashboards").join("alerts.yml");
    std::fs::write(
        work.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: pharmwatch-stream\n    static_configs:\n      - targets: [\"{stream_addr}\"]\n\
             \x20 - job_name: pharmwatch-nightly\n    static_configs:\n      - targets: [\"{node_addr}\"]\n",
            alerts.display()
        ),
    )
    .unwrap();
    let mut prom = Proc::spawn(
        "prometheus",
        Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                work.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}")),
        work.join("prometheus.log"),
    );
    wait_for(
        "Prometheus to be ready",
        60,
        || crate::common::http_get(&prom_addr, "/-/ready").is_some_and(|(s, _)| s == 200),
        &mut [&mut prom, &mut stream, &mut node],
    );
    wait_for(
        "both targets to be up",
        60,
        || {
            query(&prom_addr, "sum(up)")
                .ok()
                .and_then(|r| r.first().map(sample_value))
                == Some(2.0)
        },
        &mut [&mut prom, &mut stream, &mut node],
    );

    // A simulated day through the broker, and some messages the stream must reject.
    let sent = rt
        .block_on(pharmwatch::produce::produce(
            &cfg,
            &f.lake,
            Some(f.stream_day),
            Some(f.stream_day),
            None,
        ))
        .unwrap();
    let bad = 12u64;
    rt.block_on(async {
        use rdkafka::config::ClientConfig;
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let p: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        for i in 0..bad {
            let payload = if i % 2 == 0 {
                "not json".to_string()
            } else {
                format!("{{\"event_id\":\"bad-{i}\",\"quantity\":\"many\"}}")
            };
            p.send(
                FutureRecord::to(&cfg.topic(EventKind::Sales))
                    .key("bad")
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        }
    });
    let total = sent.sent + bad;
    wait_for(
        "the stream to consume the day (as Prometheus sees it)",
        240,
        || {
            query(&prom_addr, "sum(pharmwatch_stream_consumed_total)")
                .ok()
                .and_then(|r| r.first().map(sample_value))
                == Some(total as f64)
        },
        &mut [&mut prom, &mut stream, &mut node],
    );
    let flowed = started.elapsed();
    // A few more scrapes so every rate window holds the whole run.
    std::thread::sleep(Duration::from_secs(3));

    // What Prometheus holds is what happened: the rejects, tonight's list, the ledger.
    let value = |expr: &str| {
        query(&prom_addr, expr)
            .unwrap()
            .first()
            .map(sample_value)
            .unwrap_or(f64::NAN)
    };
    assert_eq!(value("sum(pharmwatch_stream_rejected_total)"), bad as f64);
    let snap = {
        let store = pharmwatch::store::Store::open(&f.out.join("pharmwatch.db")).unwrap();
        pharmwatch::report::Snapshot::load(&store, f.day, f.day).unwrap()
    };
    assert_eq!(
        value("sum(pharmwatch_risk_list_rows)"),
        snap.rows.len() as f64
    );
    assert_eq!(
        value("sum(pharmwatch_risk_list_rows{grade=\"D\"})"),
        snap.rows.iter().filter(|r| r.grade == "D").count() as f64
    );
    assert_eq!(value("pharmwatch_cases_overdue"), snap.cases_overdue as f64);
    assert!(snap.cases_overdue > 0);
    assert_eq!(value("pharmwatch_cases_open"), snap.cases_open as f64);
    assert_eq!(value("pharmwatch_nightly_last_run_success"), 1.0);
    let risk_events = value("sum(pharmwatch_stream_risk_events_total)");
    // The worker beside the stream tried the queued notices and warnings and failed them all.
    assert!(value("sum(pharmwatch_delivery_attempts_total{outcome!=\"success\"})") > 0.0);
    assert_eq!(
        value("sum(pharmwatch_delivery_attempts_total{outcome=\"success\"}) or vector(0)"),
        0.0
    );
    assert!(value("sum(pharmwatch_delivery_pending)") > 0.0);

    // Every dashboard query parses and returns data.
    let defined = metrics::defined();
    let targets = promql_targets();
    let mut series = 0usize;
    let mut per_dashboard: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (dash, title, expr) in &targets {
        let q = grafana_vars(expr);
        match query(&prom_addr, &q) {
            Err(e) => failures.push(format!("{dash}: {title}: `{q}`: {e}")),
            Ok(r) if r.is_empty() => failures.push(format!("{dash}: {title}: `{q}`: no data")),
            Ok(r) => {
                if !r.iter().map(sample_value).any(f64::is_finite) {
                    failures.push(format!("{dash}: {title}: `{q}`: only NaN"));
                }
                series += r.len();
                *per_dashboard.entry(dash.clone()).or_default() += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries failed:\n{}",
        failures.len(),
        targets.len(),
        failures.join("\n")
    );

    // Every `label_values` variable offers values.
    for (dash, var, metric, label) in label_value_variables() {
        let (_, body) = crate::common::http_get(
            &prom_addr,
            &format!(
                "/api/v1/label/{label}/values?match[]={}",
                urlencode(&metric)
            ),
        )
        .unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["data"].as_array().is_some_and(|a| !a.is_empty()),
            "{dash}: variable {var} has no values: {body}"
        );
    }

    // Every alert rule is loaded, evaluates without error, and each metric it reads has series.
    let rules_in_file = std::fs::read_to_string(&alerts)
        .unwrap()
        .matches("- alert:")
        .count();
    let mut rules: Vec<(String, String)> = Vec::new();
    wait_for(
        "every alert rule to be evaluated",
        60,
        || {
            let Some((_, body)) = crate::common::http_get(&prom_addr, "/api/v1/rules") else {
                return false;
            };
            let v: Value = serde_json::from_str(&body).unwrap();
            rules.clear();
            let mut ok = true;
            for g in v["data"]["groups"].as_array().into_iter().flatten() {
                for r in g["rules"].as_array().into_iter().flatten() {
                    ok &= r["health"] == "ok" && r["lastError"].as_str().unwrap_or("").is_empty();
                    rules.push((
                        r["name"].as_str().unwrap().to_string(),
                        r["query"].as_str().unwrap().to_string(),
                    ));
                }
            }
            ok && rules.len() == rules_in_file
        },
        &mut [&mut prom],
    );
    let mut alert_inputs = 0;
    for (name, expr) in &rules {
        query(&prom_addr, expr).unwrap_or_else(|e| panic!("alert {name}: `{expr}`: {e}"));
        for m in check_names(&format!("alert {name}"), expr, &defined) {
            let r = query(&prom_addr, &format!("count({m})")).unwrap();
            assert!(!r.is_empty(), "alert {name}: no series of {m}");
            alert_inputs += 1;
        }
    }
    // Nothing is wrong yet: no alert fires (the overdue cases rose before Prometheus started),
    // except the calendar's when the embedded years end within 60 days of today's clock (in
    // December, before next year's calendar is loaded, as an operator would see it).
    let firing = query(&prom_addr, "ALERTS{alertstate=\"firing\"}").unwrap();
    let firing: Vec<&str> = firing
        .iter()
        .map(|a| a["metric"]["alertname"].as_str().unwrap())
        .collect();
    let covered_until = value("min(pharmwatch_calendar_covered_until_timestamp_seconds)");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let expected: Vec<&str> = if covered_until - now < 60.0 * 86400.0 {
        vec!["PharmwatchCalendarEndingSoon"]
    } else {
        Vec::new()
    };
    assert_eq!(firing, expected, "covered until {covered_until}, now {now}");

    // A failed nightly run: the status flips, the last good numbers stay, the alert fires.
    let failed = Command::new(bin())
        .args(["nightly", "--quiet", "--no-notices", "--lake"])
        .arg(&f.lake)
        .args([
            "--date",
            &(f.day + chrono::Duration::days(90)).to_string(),
            "--out",
        ])
        .arg(work.join("failed-out"))
        .arg("--metrics-textfile")
        .arg(f.textfiles.join(NIGHTLY_TEXTFILE))
        .output()
        .unwrap();
    assert!(!failed.status.success());
    wait_for(
        "PharmwatchNightlyRunFailed to fire",
        60,
        || {
            query(
                &prom_addr,
                "ALERTS{alertname=\"PharmwatchNightlyRunFailed\",alertstate=\"firing\"}",
            )
            .is_ok_and(|r| !r.is_empty())
        },
        &mut [&mut prom, &mut node],
    );
    let rows = query(&prom_addr, "sum(pharmwatch_risk_list_rows)").unwrap();
    assert!(
        rows.first().map(sample_value).unwrap_or(0.0) > 0.0,
        "the last good run's risk list stays visible"
    );
    stream.assert_running();
    drop((stream, node, prom));
    // The Prometheus TSDB and the stream's lake (the fixture's directory lives as long as the
    // test binary).
    std::fs::remove_dir_all(&work).unwrap();
    eprintln!(
        "dashboards: {} PromQL queries ({per_dashboard:?}) returned {series} series; {} alert rules \
         evaluated ok, {alert_inputs} inputs with series; {} messages flowed in {:.1} s ({risk_events} real-time risk events); total {:.1} s",
        targets.len(),
        rules.len(),
        total,
        flowed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// The `<figure data-chart=NAME …>…</figure>` of the dumped DOM.
fn figure<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!("data-chart=\"{name}\""))
        .unwrap_or_else(|| panic!("no {name} chart in the report"));
    let end = dom[start..].find("</figure>").unwrap() + start;
    &dom[start..end]
}

fn attr<'a>(el: &'a str, name: &str) -> &'a str {
    let k = format!("{name}=\"");
    let s = el.find(&k).map(|i| i + k.len()).unwrap_or(el.len());
    &el[s..s + el[s..].find('"').unwrap_or(0)]
}

#[test]
fn the_supervisors_report_renders_its_charts_in_chromium() {
    let chrome = crate::common::chromium();
    let f = fixture();
    let page = f.out.join(pharmwatch::report::REPORT_FILE);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("<script") && !html.contains(" src="),
        "self-contained"
    );
    let store = pharmwatch::store::Store::open(&f.out.join("pharmwatch.db")).unwrap();
    let snap = pharmwatch::report::Snapshot::load(&store, f.day, f.day).unwrap();
    assert!(!snap.rows.is_empty() && snap.cases_overdue > 0, "{snap:?}");

    let dom = crate::common::headless(&chrome, &page, (1000, 2400), &["--dump-dom".to_string()]);
    assert_eq!(dom.matches("<svg").count(), 3, "three charts");
    // Trend: one line per grade through all 30 days, data-driven (not all on the axis).
    let trend = figure(&dom, "trend");
    let lines: Vec<Vec<(f64, f64)>> = trend
        .split("<polyline")
        .skip(1)
        .map(|p| {
            attr(p, "points")
                .split_whitespace()
                .filter_map(|xy| xy.split_once(','))
                .map(|(x, y)| (x.parse().unwrap(), y.parse().unwrap()))
                .collect()
        })
        .filter(|pts: &Vec<(f64, f64)>| pts.len() == pharmwatch::report::TREND_DAYS as usize)
        .collect();
    assert_eq!(lines.len(), 4, "a line per grade");
    let heights: BTreeSet<i64> = lines.iter().flatten().map(|(_, y)| *y as i64).collect();
    assert!(heights.len() > 2, "the trend lines vary with the data");
    // Region bars: one rect per (region, grade) with rows; indicator bars: one per indicator.
    let grade_fills = ["#C0392B", "#E67E22", "#F1C40F", "#27AE60"];
    let region = figure(&dom, "region");
    let region_bars = region
        .split("<rect")
        .filter(|r| grade_fills.contains(&attr(r, "fill")) && attr(r, "width") != "12")
        .count();
    let cells: usize = snap
        .by_region()
        .iter()
        .map(|(_, c)| c.iter().filter(|n| **n > 0).count())
        .sum();
    // The legend's swatches are rects of the same fills too: 4 of them, 12 px wide.
    assert_eq!(region_bars, cells, "{region}");
    let indicators = figure(&dom, "indicators");
    let bars = indicators
        .split("<rect")
        .filter(|r| attr(r, "fill") == "#2980B9")
        .count();
    assert_eq!(bars, snap.by_indicator().len().min(10));
    // Chinese labels are SVG text the browser draws.
    assert!(region.contains("<text") && region.contains(&snap.by_region()[0].0));
    assert!(indicators.contains(pharmwatch::display::indicator_zh(&snap.by_indicator()[0].0)));
    assert!(dom.contains("逾期未整改"));

    // What a supervisor sees: a page with real content, far more than an empty page.
    crate::common::assert_screenshot_has_content(&chrome, &page, (1000, 2400), 20, "report");
}
