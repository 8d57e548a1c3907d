//! Delivery end to end, against real receivers on loopback: an HTTP server (inside the test)
//! that verifies the webhook signatures and DingTalk's signed URLs, dedupes by idempotency key
//! and fails the first attempts (500, a stalled answer past the time limit, connection refused);
//! a real SMTP server (aiosmtpd from PyPI, see `support/smtp_sink.py`; `scripts/test.sh` makes
//! the venv and sets `PHARMWATCH_TEST_PYTHON`); the `pharmwatch deliver` worker killed in the
//! middle of its retries and started again; the receipt server's signed links (own enterprise
//! only, tampered and expired refused); and headless Chromium opening the link a lead received.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::d;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine as _;
use pharmwatch::contacts::{Channel, Contact};
use pharmwatch::delivery::channels::{EnterpriseRef, Message, MessageKind, Outcome, Sender};
use pharmwatch::delivery::{DeliveryConfig, Worker};
use pharmwatch::ledger::Ledger;
use pharmwatch::links::{Claims, Purpose, Signer};
use pharmwatch::measures;
use pharmwatch::notices::{self, DocumentKind};
use pharmwatch::serve::{self, ServeState};
use ring::hmac;

/// The link-signing key of the tests (≥ 32 bytes).
const LINK_KEY: &str = "pharmwatch-test-link-key-0123456789abcdef";

/// A valid credit code per test enterprise.
fn code(i: u64) -> String {
    pharmwatch_schemas::ids::make_credit_code('9', '1', "150100", 7_000 + i).unwrap()
}

/// Decides a caution finding for `enterprise` as case `case_id` and issues its caution notice
/// (行政告诫书); returns the document number.
fn issue_notice(out: &Path, case_id: &str, enterprise: &str) -> String {
    std::fs::create_dir_all(out).unwrap();
    let finding = format!(
        r#"[{{"case_id":"{case_id}","enterprise_id":"{enterprise}","inspection_date":"2026-03-02",
            "conclusion":"pending_rectification","defects":{{"critical":0,"major":2,"general":16}}}}]"#
    );
    let mut ledger = crate::common::decide_and_record(out, &finding, d("2026-03-02"));
    let rules = measures::load_rules(None).unwrap();
    let (doc, _) = notices::issue(
        &mut ledger,
        case_id,
        DocumentKind::CautionNotice,
        d("2026-03-02"),
        "检查员甲",
        &crate::common::test_authority(),
        &rules,
        Some(out),
    )
    .unwrap();
    doc.number
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn contact(
    enterprise: &str,
    priority: u32,
    channel: Channel,
    address: String,
    secret: Option<&str>,
) -> Contact {
    Contact {
        enterprise_id: enterprise.to_string(),
        priority,
        lead_name: format!("负责人{priority}"),
        channel,
        address,
        secret_ref: secret.map(str::to_string),
    }
}

/// What the HTTP receiver does with the n-th request of one idempotency key.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Answer with this status without processing.
    Status(u16),
    /// Process the notice, then answer only after this long (the sender has given up by then:
    /// its retry must be recognised as a duplicate).
    ProcessThenStall(Duration),
}

/// A receiver of every enterprise's webhooks and robots on one loopback port.
#[derive(Default)]
struct Hooks {
    /// Webhook secret per enterprise (what the enterprise registered).
    secrets: HashMap<String, String>,
    /// DingTalk robot secret.
    dingtalk_secret: String,
    /// Behaviours of the 1st, 2nd … request of a key, per enterprise; then success.
    plan: HashMap<String, Vec<Behaviour>>,
    /// Enterprises whose webhook always answers with this status.
    always: HashMap<String, u16>,
    got: Mutex<Received>,
}

#[derive(Default, Debug)]
struct Received {
    /// Requests per idempotency key.
    seen: HashMap<String, usize>,
    /// Requests per path enterprise.
    per_path: HashMap<String, usize>,
    /// Processed notices: key → (path enterprise, body).
    accepted: BTreeMap<String, (String, serde_json::Value)>,
    /// Retries of processed notices, answered as duplicates.
    duplicates: usize,
    /// Requests whose signature did not verify.
    bad_signatures: usize,
    /// Bodies about another enterprise than the path's.
    cross_enterprise: usize,
    /// Robot messages: (channel, token, body).
    robots: Vec<(String, String, serde_json::Value)>,
    /// Robot requests refused with a rate-limit code.
    robot_throttled: usize,
    /// Webhook requests being answered now, and the most at once.
    in_flight: usize,
    max_in_flight: usize,
}

/// Counts a webhook request in flight until it is answered.
struct InFlight<'a>(&'a Hooks);

impl InFlight<'_> {
    fn enter(h: &Hooks) -> InFlight<'_> {
        let mut g = h.got.lock().unwrap();
        g.in_flight += 1;
        g.max_in_flight = g.max_in_flight.max(g.in_flight);
        InFlight(h)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut g) = self.0.got.lock() {
            g.in_flight -= 1;
        }
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

async fn webhook(
    State(h): State<Arc<Hooks>>,
    UrlPath(enterprise): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (key, ts, sig) = (
        header("idempotency-key"),
        header("x-pharmwatch-timestamp"),
        header("x-pharmwatch-signature"),
    );
    let _counted = InFlight::enter(&h);
    // Verify independently of the sender's code: HMAC-SHA256(secret, ts "." body), fresh.
    let valid = h.secrets.get(&enterprise).is_some_and(|secret| {
        let fresh = ts
            .parse::<i64>()
            .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() <= 300);
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let mut signed = format!("{ts}.").into_bytes();
        signed.extend_from_slice(&body);
        fresh
            && sig
                .strip_prefix("sha256=")
                .and_then(unhex)
                .is_some_and(|s| hmac::verify(&key, &signed, &s).is_ok())
    });
    let behaviour = {
        let mut g = h.got.lock().unwrap();
        *g.per_path.entry(enterprise.clone()).or_default() += 1;
        if !valid {
            g.bad_signatures += 1;
            return (StatusCode::UNAUTHORIZED, "bad signature".into());
        }
        let n = {
            let c = g.seen.entry(key.clone()).or_default();
            *c += 1;
            *c
        };
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if parsed["enterprise"]["credit_code"] != enterprise.as_str() {
            g.cross_enterprise += 1;
            return (
                StatusCode::BAD_REQUEST,
                "not this enterprise's notice".into(),
            );
        }
        if let Some(s) = h.always.get(&enterprise) {
            return (StatusCode::from_u16(*s).unwrap(), "always".into());
        }
        let b = h.plan.get(&enterprise).and_then(|p| p.get(n - 1)).copied();
        if let Some(Behaviour::Status(s)) = b {
            return (StatusCode::from_u16(s).unwrap(), "planned failure".into());
        }
        if g.accepted.contains_key(&key) {
            g.duplicates += 1;
            return (StatusCode::OK, "duplicate".into());
        }
        g.accepted.insert(key, (enterprise.clone(), parsed));
        b
    };
    if let Some(Behaviour::ProcessThenStall(t)) = behaviour {
        tokio::time::sleep(t).await;
    }
    (StatusCode::OK, "accepted".into())
}

fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        })
        .collect()
}

async fn dingtalk(State(h): State<Arc<Hooks>>, uri: Uri, body: Bytes) -> String {
    let q = query(&uri);
    let ts = q.get("timestamp").cloned().unwrap_or_default();
    let key = hmac::Key::new(hmac::HMAC_SHA256, h.dingtalk_secret.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD
        .encode(hmac::sign(&key, format!("{ts}\n{}", h.dingtalk_secret).as_bytes()).as_ref());
    let mut g = h.got.lock().unwrap();
    if q.get("sign") != Some(&expected) {
        g.bad_signatures += 1;
        return r#"{"errcode":310000,"errmsg":"sign not match"}"#.into();
    }
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    // The first message is refused as too fast (130101): the sender must retry.
    if g.robot_throttled == 0 {
        g.robot_throttled += 1;
        return r#"{"errcode":130101,"errmsg":"send too fast"}"#.into();
    }
    let token = q.get("access_token").cloned().unwrap_or_default();
    g.robots.push(("dingtalk".into(), token, parsed));
    r#"{"errcode":0,"errmsg":"ok"}"#.into()
}

async fn wecom(State(h): State<Arc<Hooks>>, uri: Uri, body: Bytes) -> String {
    let q = query(&uri);
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut g = h.got.lock().unwrap();
    g.robots.push((
        "wecom".into(),
        q.get("key").cloned().unwrap_or_default(),
        parsed,
    ));
    r#"{"errcode":0,"errmsg":"ok"}"#.into()
}

/// Serves `hooks` on `port` in a runtime of its own (the receiver outlives no test).
fn start_receiver(hooks: Arc<Hooks>, port: u16) -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .unwrap();
    let app = axum::Router::new()
        .route("/hooks/{enterprise}", axum::routing::post(webhook))
        .route("/robot/dingtalk", axum::routing::post(dingtalk))
        .route("/robot/wecom", axum::routing::post(wecom))
        .with_state(hooks);
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    rt
}

/// The Python with aiosmtpd (`PHARMWATCH_TEST_PYTHON`); the test fails, never skips, without it.
fn smtp_python() -> String {
    let how = "the delivery tests need a real SMTP server: aiosmtpd from PyPI in a venv. Run \
               scripts/test.sh (it creates the venv and exports PHARMWATCH_TEST_PYTHON), or: \
               python3 -m venv ~/.cache/pharmwatch/venv && ~/.cache/pharmwatch/venv/bin/pip \
               install aiosmtpd && export PHARMWATCH_TEST_PYTHON=~/.cache/pharmwatch/venv/bin/python";
    let py = std::env::var("PHARMWATCH_TEST_PYTHON")
        .unwrap_or_else(|_| panic!("PHARMWATCH_TEST_PYTHON is not set: {how}"));
    let ok = Command::new(&py)
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "{py} cannot import aiosmtpd: {how}");
    py
}

/// Kills a child process on drop (a failing assertion leaves no server behind).
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the SMTP sink on `port`, writing into `dir`, failing the first `fail_first` messages.
fn start_smtp(port: u16, dir: &Path, fail_first: u32) -> Reaper {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
    let mut child = Command::new(smtp_python())
        .arg(script)
        .arg(port.to_string())
        .arg(dir)
        .arg(fail_first.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
    Reaper(child)
}

/// The messages the SMTP sink accepted (decoded by Python's e-mail parser).
fn mails(dir: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

fn write_config(
    dir: &Path,
    contacts: &[Contact],
    secrets: &[(&str, &str)],
    extra: &str,
) -> PathBuf {
    let cpath = dir.join("contacts.json");
    std::fs::write(&cpath, serde_json::to_string_pretty(contacts).unwrap()).unwrap();
    let spath = dir.join("secrets.toml");
    let s: String = secrets
        .iter()
        .map(|(k, v)| format!("\"{k}\" = \"{v}\"\n"))
        .collect();
    std::fs::write(&spath, s).unwrap();
    let cfg = dir.join("delivery.toml");
    std::fs::write(
        &cfg,
        // The [delivery] table of a pharmwatch.toml; the extra settings' own tables nest in it.
        format!(
            "[delivery]\ncontacts = \"{}\"\nsecrets_file = \"{}\"\n{}",
            cpath.display(),
            spath.display(),
            extra.replace("\n[", "\n[delivery.")
        ),
    )
    .unwrap();
    cfg
}

/// Enterprise `a`'s one contact, a webhook at a receiver of its own on a free port that knows
/// its secret (`file:A` = `secret-of-a`), with the [`FAST`] settings: the configuration's path,
/// the receiver's record and its runtime (the receiver stops when it is dropped).
fn webhook_of(dir: &Path, a: &str) -> (PathBuf, Arc<Hooks>, tokio::runtime::Runtime) {
    let port = free_port();
    let contacts = vec![contact(
        a,
        1,
        Channel::Webhook,
        format!("http://127.0.0.1:{port}/hooks/{a}"),
        Some("file:A"),
    )];
    // One send at a time: a crash between a send and its record repeats exactly that send
    // (with more in flight it repeats each of them, all deduped by their keys).
    let cfg = write_config(
        dir,
        &contacts,
        &[("A", "secret-of-a")],
        &format!("per_host = 1\n{FAST}"),
    );
    let hooks = Arc::new(Hooks {
        secrets: [(a.to_string(), "secret-of-a".to_string())].into(),
        got: Mutex::new(Received::default()),
        ..Hooks::default()
    });
    let rt = start_receiver(hooks.clone(), port);
    (cfg, hooks, rt)
}

/// Delays short enough for a test: 7 attempts per contact within about 6 s.
const FAST: &str = r#"
retry_delays_secs = [0.3, 0.6, 0.9, 1.2, 1.5, 1.8]
jitter = 0.1
jitter_seed = 6
attempt_timeout_secs = 1.0
lease_secs = 2.0
poll_interval_ms = 100
[rate_limits]
webhook = 60000
dingtalk = 60000
wecom = 60000
email = 60000
"#;

fn pharmwatch(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pharmwatch"));
    c.args(args).env("PHARMWATCH_LINK_KEY", LINK_KEY);
    c
}

fn start_worker(out: &Path, cfg: &Path, log: &Path) -> Reaper {
    start_worker_with(out, cfg, log, &[])
}

/// [`start_worker`] with more environment variables (a fault point).
fn start_worker_with(out: &Path, cfg: &Path, log: &Path, vars: &[(&str, &str)]) -> Reaper {
    let log = std::fs::File::create(log).unwrap();
    Reaper(
        pharmwatch(&[
            "deliver",
            "--out",
            out.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ])
        .env("PW_TEST_SECRET_B", "secret-of-b-from-the-environment")
        .envs(vars.iter().copied())
        .stderr(log)
        .stdout(Stdio::null())
        .spawn()
        .unwrap(),
    )
}

fn db(out: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(out.join("pharmwatch.db")).unwrap()
}

fn count(out: &Path, sql: &str) -> i64 {
    db(out).query_row(sql, [], |r| r.get(0)).unwrap()
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_notice_is_delivered_once_through_failures_and_worker_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let [a, b, c, dd, e, f, g, h] = [0, 1, 2, 3, 4, 5, 6, 7].map(code);
    // Nine notices: two for A, one for each other enterprise.
    let mut docs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, ent) in [&a, &a, &b, &c, &dd, &e, &f, &g, &h]
        .into_iter()
        .enumerate()
    {
        let number = issue_notice(&out, &format!("CASE-D{i}"), ent);
        docs.entry(ent.clone()).or_default().push(number);
    }
    // The outbox row is written with the document: one per notice, before any worker runs.
    assert_eq!(
        count(
            &out,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'"
        ),
        9
    );
    assert_eq!(
        count(
            &out,
            "SELECT COUNT(*) FROM documents d JOIN deliveries x ON x.document_no = d.number"
        ),
        9
    );

    let http_port = free_port();
    let refused_port = free_port(); // B's webhook: nobody listens there at first.
    let smtp_port = free_port();
    let mail_dir = dir.path().join("mail");
    let hook = |ent: &str| format!("http://127.0.0.1:{http_port}/hooks/{ent}");
    let email = |ent: &str| format!("lead@{}.example.com", ent.to_lowercase());
    let contacts = vec![
        contact(&a, 1, Channel::Webhook, hook(&a), Some("file:A")),
        contact(&a, 2, Channel::Email, email(&a), None),
        contact(
            &b,
            1,
            Channel::Webhook,
            format!("http://127.0.0.1:{refused_port}/hooks/{b}"),
            Some("env:PW_TEST_SECRET_B"),
        ),
        contact(&c, 1, Channel::Webhook, hook(&c), Some("file:C")),
        contact(&c, 2, Channel::Email, email(&c), None),
        contact(&dd, 1, Channel::Email, email(&dd), None),
        contact(&e, 1, Channel::Webhook, hook(&e), Some("file:E")),
        // F has no registered contact at all.
        contact(
            &g,
            1,
            Channel::Dingtalk,
            format!("http://127.0.0.1:{http_port}/robot/dingtalk?access_token=tok-g"),
            Some("file:G"),
        ),
        contact(
            &h,
            1,
            Channel::Wecom,
            format!("http://127.0.0.1:{http_port}/robot/wecom?key=key-h"),
            None,
        ),
    ];
    let secrets = [
        ("A", "secret-of-a"),
        ("C", "secret-of-c"),
        ("E", "secret-of-e"),
        ("G", "SECsecret-of-g"),
    ];
    let cfg = write_config(
        dir.path(),
        &contacts,
        &secrets,
        &format!(
            // One send at a time: the worker killed below repeats at most the one send it
            // interrupted (an e-mail has no key a relay dedupes on).
            "max_in_flight = 1\nlink_base_url = \"http://127.0.0.1:{}\"\n{FAST}\n[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\n",
            free_port()
        ),
    );

    // What would be sent: masked, and nothing is sent or written.
    let dry = pharmwatch(&[
        "deliver",
        "--dry-run",
        "--out",
        out.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ])
    .env("PW_TEST_SECRET_B", "secret-of-b-from-the-environment")
    .output()
    .unwrap();
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let dry = String::from_utf8(dry.stdout).unwrap();
    assert!(dry.contains("9 due now"), "{dry}");
    assert!(
        dry.contains(&format!("l***@{}.example.com", dd.to_lowercase())),
        "{dry}"
    );
    assert!(
        !dry.contains(&email(&dd)),
        "an e-mail address in clear: {dry}"
    );
    assert!(
        dry.contains("access_token=***") && !dry.contains("tok-g"),
        "{dry}"
    );
    assert!(!dry.contains("secret-of"), "{dry}");
    assert!(dry.contains("no registered contact"), "{dry}");
    assert_eq!(count(&out, "SELECT COUNT(*) FROM delivery_attempts"), 0);

    let hooks = Arc::new(Hooks {
        secrets: [
            (a.clone(), "secret-of-a".to_string()),
            (b.clone(), "secret-of-b-from-the-environment".to_string()),
            (c.clone(), "secret-of-c".to_string()),
            (e.clone(), "secret-of-e".to_string()),
        ]
        .into(),
        dingtalk_secret: "SECsecret-of-g".into(),
        plan: [(
            a.clone(),
            vec![
                Behaviour::Status(500),
                Behaviour::ProcessThenStall(Duration::from_millis(1800)),
            ],
        )]
        .into(),
        always: [(c.clone(), 400), (e.clone(), 500)].into(),
        got: Mutex::new(Received::default()),
    });
    let _rt = start_receiver(hooks.clone(), http_port);
    let _smtp = start_smtp(smtp_port, &mail_dir, 1);

    // Worker 1: killed once both of A's notices got their 500 and their stalled attempt.
    let t0 = Instant::now();
    let mut w1 = start_worker(&out, &cfg, &dir.path().join("worker1.log"));
    wait_for("A's first two attempts", Duration::from_secs(30), || {
        hooks
            .got
            .lock()
            .unwrap()
            .per_path
            .get(&a)
            .copied()
            .unwrap_or(0)
            >= 4
    });
    w1.0.kill().unwrap();
    w1.0.wait().unwrap();
    let killed_at = t0.elapsed();
    let pending_at_kill = count(
        &out,
        "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'",
    );
    assert!(
        pending_at_kill >= 3,
        "the worker was killed mid-retries ({pending_at_kill} pending)"
    );
    let refused_attempts = count(
        &out,
        "SELECT COUNT(*) FROM delivery_attempts WHERE detail LIKE 'connection failed%'",
    );
    assert!(refused_attempts >= 1, "B's closed port was tried");

    // B's receiver comes up; worker 2 takes over (after the dead worker's leases run out).
    let _rt_b = start_receiver(hooks.clone(), refused_port);
    let _w2 = start_worker(&out, &cfg, &dir.path().join("worker2.log"));
    wait_for("every delivery to settle", Duration::from_secs(60), || {
        count(
            &out,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'",
        ) == 0
    });
    let settled_at = t0.elapsed();
    drop(_w2);

    // Delivered on the expected channel, or failed; exactly the expected set.
    let states: BTreeMap<String, (String, Option<String>)> = {
        let conn = db(&out);
        let mut st = conn
            .prepare(
                "SELECT document_no, status, COALESCE(delivered_channel, channel) FROM deliveries",
            )
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    let expect = |ent: &str, status: &str, channel: Option<&str>| {
        for n in &docs[ent] {
            assert_eq!(
                states[n],
                (status.to_string(), channel.map(str::to_string)),
                "{n} of {ent}"
            );
        }
    };
    expect(&a, "delivered", Some("webhook"));
    expect(&b, "delivered", Some("webhook"));
    expect(&c, "delivered", Some("email"));
    expect(&dd, "delivered", Some("email"));
    expect(&e, "failed", Some("webhook"));
    expect(&f, "failed", Some("manual"));
    expect(&g, "delivered", Some("dingtalk"));
    expect(&h, "delivered", Some("wecom"));

    // The webhook receiver: every signature valid, nothing about another enterprise, each of
    // A's and B's notices processed exactly once (the retry after the stalled answer was a
    // duplicate and deduped by its key).
    let got = hooks.got.lock().unwrap();
    assert_eq!(got.bad_signatures, 0);
    assert_eq!(got.cross_enterprise, 0);
    let processed: BTreeMap<String, Vec<String>> =
        got.accepted
            .values()
            .fold(BTreeMap::new(), |mut m, (ent, body)| {
                m.entry(ent.clone())
                    .or_default()
                    .push(body["document"]["number"].as_str().unwrap().to_string());
                m
            });
    let mut want_a = docs[&a].clone();
    want_a.sort();
    let mut got_a = processed[&a].clone();
    got_a.sort();
    assert_eq!(got_a, want_a);
    assert_eq!(processed[&b], docs[&b]);
    assert_eq!(
        processed.len(),
        2,
        "only A's and B's webhooks accept: {processed:?}"
    );
    let duplicates = got.duplicates;
    assert!(
        got.duplicates >= 2,
        "A's retries after the stalled answers were deduped"
    );
    for (key, (ent, body)) in &got.accepted {
        assert_eq!(body["notice_id"], key.as_str());
        assert_eq!(body["type"], "notice");
        assert_eq!(body["enterprise"]["credit_code"], ent.as_str());
        assert_eq!(body["document"]["kind"], "caution_notice");
        assert!(
            body["due_date"]
                .as_str()
                .is_some_and(|x| x.starts_with("2026-"))
        );
        assert!(
            body["link"]
                .as_str()
                .unwrap()
                .contains(&format!("/e/{ent}/ack/"))
        );
    }
    // C's webhook answered 400 once (final, no retry) and E's 500 seven times.
    assert_eq!(got.per_path[&c], 1, "a 400 is not retried");
    assert_eq!(
        got.per_path[&e], 7,
        "a 500 is retried up to the last attempt"
    );
    // Robots: DingTalk (signed URL, the first message throttled and retried) and WeCom.
    assert_eq!(got.robot_throttled, 1);
    assert_eq!(got.robots.len(), 2);
    for (channel, token, body) in &got.robots {
        assert_eq!(body["msgtype"], "markdown");
        let text = if channel == "dingtalk" {
            assert_eq!(token, "tok-g");
            body["markdown"]["text"].as_str().unwrap()
        } else {
            assert_eq!(token, "key-h");
            body["markdown"]["content"].as_str().unwrap()
        };
        let ent = if channel == "dingtalk" { &g } else { &h };
        assert!(text.contains(&docs[ent][0]), "{text}");
        assert!(text.contains("确认送达"));
    }
    drop(got);

    // E-mail: exactly C's and D's notices, each once, each to its own lead only, with the notice
    // as HTML body and attachment; the first DATA was refused (451) and retried.
    let mails = mails(&mail_dir);
    let ids: BTreeSet<&str> = mails
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "two distinct notices by e-mail");
    assert_eq!(mails.len(), 2, "no e-mail sent twice");
    for m in &mails {
        let rcpt: Vec<&str> = m["rcpt_tos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let ent = [&c, &dd]
            .into_iter()
            .find(|x| rcpt == [email(x).as_str()])
            .unwrap_or_else(|| panic!("unexpected recipients {rcpt:?}"));
        let parts = m["parts"].as_array().unwrap();
        let html = parts
            .iter()
            .find(|p| p["content_type"] == "text/html" && p["disposition"].is_null())
            .unwrap();
        let html = html["text"].as_str().unwrap();
        assert!(html.contains(&docs[ent][0]) && html.contains("行政告诫书"));
        assert!(
            html.contains(&format!("/e/{ent}/ack/")),
            "the ack link is in the e-mail"
        );
        let attachment = parts
            .iter()
            .find(|p| p["disposition"] == "attachment")
            .unwrap();
        assert!(attachment["filename"].as_str().unwrap().ends_with(".html"));
        assert!(attachment["text"].as_str().unwrap().contains(&docs[ent][0]));
        assert!(parts.iter().any(|p| p["content_type"] == "text/plain"));
    }
    assert!(
        count(
            &out,
            "SELECT COUNT(*) FROM delivery_attempts WHERE channel = 'email' AND outcome = 'retry'"
        ) >= 1,
        "the 451 was retried"
    );
    // Nobody else's address ever appears in an attempt.
    let recipients: Vec<String> = {
        let conn = db(&out);
        let mut st = conn
            .prepare(
                "SELECT DISTINCT x.enterprise_id || ' ' || a.recipient FROM delivery_attempts a
                 JOIN deliveries x ON x.delivery_id = a.delivery_id",
            )
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    for r in &recipients {
        let (ent, to) = r.split_once(' ').unwrap();
        assert!(
            to == "-"
                || to.contains(&ent.to_lowercase())
                || to.contains(ent)
                || to.contains("robot"),
            "{r}: a recipient that is not the enterprise's own"
        );
        assert!(!to.contains("lead@"), "recipients are stored masked: {to}");
    }

    // The failure is shown in `case show` and on the manual-service list.
    let e_case = "CASE-D5";
    let show = pharmwatch(&["case", "show", e_case, "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let show = String::from_utf8(show.stdout).unwrap();
    assert!(show.contains("deliveries:"), "{show}");
    assert!(
        show.contains("FAILED") && show.contains("manual-service list"),
        "{show}"
    );
    assert!(show.contains("webhook ×7 final_failure"), "{show}");
    let manual = pharmwatch(&[
        "deliver",
        "--manual",
        "--out",
        out.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let manual = String::from_utf8(manual.stdout).unwrap();
    assert!(manual.contains("2 delivery(ies)"), "{manual}");
    assert!(
        manual.contains(&e) && manual.contains(&f),
        "the desk sees whom to serve: {manual}"
    );
    assert!(
        manual.contains(&docs[&e][0]) && manual.contains(&docs[&f][0]),
        "{manual}"
    );
    // The logs mask recipients.
    let logs = std::fs::read_to_string(dir.path().join("worker1.log")).unwrap()
        + &std::fs::read_to_string(dir.path().join("worker2.log")).unwrap();
    assert!(
        !logs.contains(&email(&dd)) && !logs.contains("tok-g"),
        "{logs}"
    );
    assert!(logs.contains("retry in"), "{logs}");
    let attempts = count(&out, "SELECT COUNT(*) FROM delivery_attempts");
    let retries = count(
        &out,
        "SELECT COUNT(*) FROM delivery_attempts WHERE outcome = 'retry'",
    );
    eprintln!(
        "delivery: 9 notices, {attempts} attempts ({retries} retries), {duplicates} duplicate \
         request(s) deduped by the receiver, worker 1 killed at {:.1} s with {pending_at_kill} \
         pending, all settled at {:.1} s",
        killed_at.as_secs_f64(),
        settled_at.as_secs_f64()
    );
}

/// A serve state over `out` with the test key.
fn serve_state(out: &Path) -> Arc<ServeState> {
    serve_state_with(
        out,
        Signer::new(LINK_KEY.as_bytes(), "http://127.0.0.1", 30).unwrap(),
    )
}

/// A serve state over `out` with the link keys of `signer`.
fn serve_state_with(out: &Path, signer: Signer) -> Arc<ServeState> {
    Arc::new(
        ServeState::new(
            Ledger::open(out).unwrap(),
            signer,
            pharmwatch::closedloop::ClosedLoop {
                notices: pharmwatch::notices::NoticesConfig {
                    authority: Some(crate::common::test_authority()),
                    ..Default::default()
                },
                rules: measures::load_rules(None).unwrap(),
                calendar: measures::load_calendar(None).unwrap(),
                run_date: None,
            },
            out.to_path_buf(),
        )
        .unwrap(),
    )
}

fn delivered_events(out: &Path, number: &str) -> i64 {
    db(out)
        .query_row(
            "SELECT COUNT(*) FROM case_events WHERE event = 'delivered' AND document_no = ?1",
            [number],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn links_open_only_their_own_enterprise_and_refuse_tampered_or_expired_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (a, b) = (code(20), code(21));
    let doc_a = issue_notice(&out, "CASE-LA", &a);
    let doc_b = issue_notice(&out, "CASE-LB", &b);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (addr, _server) = rt
        .block_on(serve::spawn("127.0.0.1:0", serve_state(&out)))
        .unwrap();
    pharmwatch::delivery::channels::install_tls_provider();
    let client = reqwest::Client::new();
    let get = |path: String| {
        rt.block_on(async {
            let r = client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let cache = r
                .headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap().to_string());
            (status, r.text().await.unwrap(), cache)
        })
    };
    let signer = Signer::new(LINK_KEY.as_bytes(), "http://127.0.0.1", 30).unwrap();
    let future = chrono::Utc::now().timestamp() + 3600;
    let token = |purpose, ent: &str, subject: &str, expires| {
        signer.token(&Claims {
            purpose,
            enterprise_id: ent.to_string(),
            subject: subject.to_string(),
            expires,
            issued: chrono::Utc::now().timestamp(),
        })
    };
    let ack_a = token(Purpose::Ack, &a, &doc_a, future);

    // A's link under B's address: refused, nothing recorded for anyone.
    let (s, page, _) = get(format!("/e/{b}/ack/{ack_a}"));
    assert_eq!(s, 403);
    assert!(
        page.contains("链接无效") && page.contains("不属于该企业"),
        "{page}"
    );
    assert_eq!(
        delivered_events(&out, &doc_a) + delivered_events(&out, &doc_b),
        0
    );
    // A's acknowledgement link cannot open A's guidance page either (wrong purpose).
    assert_eq!(get(format!("/e/{a}/guidance/{ack_a}")).0, 403);
    // A signed link of A naming B's document: refused, B's notice stays unacknowledged.
    let (s, _, _) = get(format!(
        "/e/{a}/ack/{}",
        token(Purpose::Ack, &a, &doc_b, future)
    ));
    assert_eq!(s, 403);
    assert_eq!(delivered_events(&out, &doc_b), 0);
    // Tampered: one character of the signature changed; and a token signed with another key.
    let mut tampered = ack_a.clone().into_bytes();
    let i = tampered.len() - 3;
    tampered[i] = if tampered[i] == b'x' { b'y' } else { b'x' };
    let (s, page, _) = get(format!(
        "/e/{a}/ack/{}",
        String::from_utf8(tampered).unwrap()
    ));
    assert_eq!(s, 403);
    assert!(page.contains("无法验证"), "{page}");
    let other = Signer::new(&[9u8; 32], "http://127.0.0.1", 30).unwrap();
    let foreign = other.token(&Claims {
        purpose: Purpose::Ack,
        enterprise_id: a.clone(),
        subject: doc_a.clone(),
        expires: future,
        issued: 0,
    });
    assert_eq!(get(format!("/e/{a}/ack/{foreign}")).0, 403);
    // Expired: 410 with a page that says so.
    let expired = token(Purpose::Ack, &a, &doc_a, chrono::Utc::now().timestamp() - 1);
    let (s, page, _) = get(format!("/e/{a}/ack/{expired}"));
    assert_eq!(s, 410);
    assert!(page.contains("链接已过期"), "{page}");
    assert_eq!(delivered_events(&out, &doc_a), 0);

    // The real link: opening it (GET, again, HEAD) shows the document and the confirmation
    // button and records nothing — a link preview or a mail scanner serves no one.
    let (s, page, cache) = get(format!("/e/{a}/ack/{ack_a}"));
    assert_eq!(s, 200, "{page}");
    assert_eq!(cache.as_deref(), Some("no-store"));
    assert!(
        page.contains("确认签收") && page.contains(&doc_a) && page.contains("行政告诫书"),
        "{page}"
    );
    // The page names the authority the document was issued under, with its telephone.
    assert!(page.contains("0471-6945678"), "{page}");
    assert_eq!(get(format!("/e/{a}/ack/{ack_a}")).0, 200);
    let head = rt.block_on(async {
        client
            .head(format!("http://{addr}/e/{a}/ack/{ack_a}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(head, 200);
    assert_eq!(
        delivered_events(&out, &doc_a),
        0,
        "a GET or HEAD recorded service"
    );
    // The explicit confirmation (POST of the page's button) records it, once.
    let post = |path: String| {
        rt.block_on(async {
            let r = client
                .post(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let (s, page) = post(format!("/e/{a}/ack/{ack_a}"));
    assert_eq!(s, 200, "{page}");
    assert!(
        page.contains("已确认送达") && page.contains(&doc_a),
        "{page}"
    );
    let (s, page) = post(format!("/e/{a}/ack/{ack_a}"));
    assert_eq!(s, 200);
    assert!(page.contains("无需重复确认"), "{page}");
    // A POST of A's link under B's address records nothing.
    assert_eq!(post(format!("/e/{b}/ack/{ack_a}")).0, 403);
    assert_eq!(delivered_events(&out, &doc_a), 1);
    assert_eq!(delivered_events(&out, &doc_b), 0);
    let ledger = Ledger::open(&out).unwrap();
    let ev = ledger
        .show("CASE-LA")
        .unwrap()
        .events
        .into_iter()
        .find(|e| e.event == "delivered")
        .unwrap();
    assert_eq!(ev.document_no.as_deref(), Some(doc_a.as_str()));

    // Guidance: A's link shows A's case only; under B's address it is refused.
    let guide_a = token(Purpose::Guidance, &a, &doc_a, future);
    let (s, page, _) = get(format!("/e/{a}/guidance/{guide_a}"));
    assert_eq!(s, 200);
    assert!(
        page.contains("合规指引") && page.contains("CASE-LA"),
        "{page}"
    );
    assert!(!page.contains("CASE-LB") && !page.contains(&b), "{page}");
    let (s, page, _) = get(format!("/e/{b}/guidance/{guide_a}"));
    assert_eq!(s, 403);
    assert!(!page.contains("CASE-LB"));

    // The acknowledgement is counted.
    let (_, metrics, _) = get("/metrics".into());
    assert!(
        metrics.contains("pharmwatch_delivery_acknowledged_total{kind=\"caution_notice\"} 1"),
        "{metrics}"
    );
}

/// Rotation and revocation of the links: a link signed with the retired key still opens while
/// the retired key is kept, and is gone (410) once it is removed; a document's links revoked by
/// `pharmwatch links revoke` are gone with the reason shown and record nothing, while a link
/// sent after the revocation opens.
#[test]
fn a_rotated_key_keeps_links_in_flight_and_a_revoked_document_refuses_its_links() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let a = code(22);
    let doc = issue_notice(&out, "CASE-RV", &a);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let new_key = [5u8; 32];
    let ring = |retired: bool| {
        let old: Vec<(&str, &[u8])> = if retired {
            vec![("k1", LINK_KEY.as_bytes())]
        } else {
            Vec::new()
        };
        Signer::with_keys(("k2", &new_key), &old, "http://127.0.0.1", 30).unwrap()
    };
    let (addr, _server) = rt
        .block_on(serve::spawn(
            "127.0.0.1:0",
            serve_state_with(&out, ring(true)),
        ))
        .unwrap();
    let (bare_addr, _bare) = rt
        .block_on(serve::spawn(
            "127.0.0.1:0",
            serve_state_with(&out, ring(false)),
        ))
        .unwrap();
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, at: std::net::SocketAddr, path: String| {
        rt.block_on(async {
            let r = client
                .request(method, format!("http://{at}{path}"))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let now = chrono::Utc::now().timestamp();
    let claims = |purpose, issued| Claims {
        purpose,
        enterprise_id: a.clone(),
        subject: doc.clone(),
        expires: now + 3600,
        issued,
    };
    let old = Signer::new(LINK_KEY.as_bytes(), "http://127.0.0.1", 30).unwrap();
    let in_flight = old.token(&claims(Purpose::Ack, now - 60));
    let fresh = ring(true).token(&claims(Purpose::Ack, now - 30));
    assert!(in_flight.starts_with("k1.") && fresh.starts_with("k2."));
    for t in [&in_flight, &fresh] {
        let (s, page) = call(reqwest::Method::GET, addr, format!("/e/{a}/ack/{t}"));
        assert_eq!(s, 200, "{page}");
    }
    // The retired key removed: its links are gone, the new key's still open.
    let (s, page) = call(
        reqwest::Method::GET,
        bare_addr,
        format!("/e/{a}/ack/{in_flight}"),
    );
    assert_eq!(s, 410);
    assert!(page.contains("密钥已停用"), "{page}");
    assert_eq!(
        call(
            reqwest::Method::GET,
            bare_addr,
            format!("/e/{a}/ack/{fresh}")
        )
        .0,
        200
    );

    // Revocation: refused without a reason or for a subject the ledger does not know.
    let revoke = |subject: &str, reason: &str| {
        pharmwatch(&[
            "links",
            "revoke",
            subject,
            "--reason",
            reason,
            "--by",
            "li.supervisor",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap()
    };
    let o = revoke("蒙药监告〔2026〕999号", "wrong contact");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("subject") && err.contains("999号"), "{err}");
    let o = revoke(&doc, "  ");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("reason"));
    let o = revoke(&doc, "sent to the wrong contact");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains(&doc) && said.contains(&a), "{said}");

    // Every link issued until then is gone, with the reason, and records nothing.
    for t in [&in_flight, &fresh] {
        let (s, page) = call(reqwest::Method::GET, addr, format!("/e/{a}/ack/{t}"));
        assert_eq!(s, 410);
        assert!(
            page.contains("链接已撤回") && page.contains("sent to the wrong contact"),
            "{page}"
        );
        assert_eq!(
            call(reqwest::Method::POST, addr, format!("/e/{a}/ack/{t}")).0,
            410
        );
    }
    let guide = ring(true).token(&claims(Purpose::Guidance, now - 30));
    assert_eq!(
        call(
            reqwest::Method::GET,
            addr,
            format!("/e/{a}/guidance/{guide}")
        )
        .0,
        410
    );
    assert_eq!(delivered_events(&out, &doc), 0);
    // A link sent after the revocation (a resend to the right contact) opens. (Not pressed:
    // the acknowledgement counter is the process's, asserted exactly by another test.)
    let resent = ring(true).token(&claims(Purpose::Ack, chrono::Utc::now().timestamp() + 1));
    let (s, page) = call(reqwest::Method::GET, addr, format!("/e/{a}/ack/{resent}"));
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("确认签收") && page.contains(&doc), "{page}");
    assert_eq!(
        count(
            &out,
            "SELECT COUNT(*) FROM audit_trail WHERE action = 'links_revoked' \
             AND actor = 'li.supervisor' AND detail LIKE '%wrong contact%'"
        ),
        1
    );
}

/// Outages on the way out: the first contact's webhook receiver is down for longer than the
/// whole retry schedule (nobody ever listens), and the SMTP relay of the second contact answers
/// 451 twice before it accepts. The notice is delivered once, by e-mail; the attempts record
/// the webhook's retries and its final failure, then the relay's refusals; the operator sees
/// the change of contact in the log, and nothing reaches the manual-service list.
#[test]
fn a_webhook_down_past_its_schedule_falls_back_to_email_through_smtp_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let ent = code(23);
    let number = issue_notice(&out, "CASE-OUT", &ent);
    let (smtp_port, mail_dir) = (free_port(), dir.path().join("mail"));
    std::fs::create_dir_all(&mail_dir).unwrap();
    let _smtp = start_smtp(smtp_port, &mail_dir, 2);
    let contacts = vec![
        contact(
            &ent,
            1,
            Channel::Webhook,
            format!("http://127.0.0.1:{}/hooks/{ent}", free_port()),
            Some("file:X"),
        ),
        contact(
            &ent,
            2,
            Channel::Email,
            format!("lead@{}.example.com", ent.to_lowercase()),
            None,
        ),
    ];
    let cfg = write_config(
        dir.path(),
        &contacts,
        &[("X", "secret-of-x")],
        &format!(
            "link_base_url = \"http://127.0.0.1:{}\"\n{FAST}\n[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\n",
            free_port()
        ),
    );
    let log = dir.path().join("worker.log");
    let _worker = start_worker(&out, &cfg, &log);
    wait_for("the notice delivered", Duration::from_secs(60), || {
        count(
            &out,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'",
        ) == 1
    });
    let attempts: Vec<(String, String)> = {
        let c = db(&out);
        let mut st = c
            .prepare("SELECT channel, outcome FROM delivery_attempts ORDER BY attempt_id")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    let of = |ch: &str, outcome: &str| {
        attempts
            .iter()
            .filter(|(c, o)| c == ch && o == outcome)
            .count()
    };
    // The webhook: one attempt per wait of the schedule plus the first, the last one final.
    assert_eq!(of("webhook", "retry"), 6, "{attempts:?}");
    assert_eq!(of("webhook", "final_failure"), 1, "{attempts:?}");
    // The relay: two 451s, then accepted.
    assert_eq!(
        (of("email", "retry"), of("email", "success")),
        (2, 1),
        "{attempts:?}"
    );
    let mail = mails(&mail_dir);
    assert_eq!(mail.len(), 1, "delivered once");
    assert!(mail[0].to_string().contains(&number), "{}", mail[0]);
    assert_eq!(
        count(
            &out,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'failed'"
        ),
        0,
        "nothing for the manual-service list"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("451"),
        "the relay's answer is logged:\n{text}"
    );
    assert!(
        text.contains("next contact") || text.contains("fall"),
        "the change of contact is logged:\n{text}"
    );
}

/// Concurrent sends: a receiver that takes 1.5 s per message delays only the rows on its own
/// host. Six notices of a slow enterprise and four of a fast one (another host) are due at
/// once; the fast host's are all delivered while the slow host's first sends are still in
/// flight, and the slow host never has more than `per_host` (2) requests in flight.
#[test]
fn a_slow_receiver_holds_up_only_its_own_host() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (slow, fast) = (code(24), code(25));
    for i in 0..6 {
        issue_notice(&out, &format!("CASE-SLOW{i}"), &slow);
    }
    for i in 0..4 {
        issue_notice(&out, &format!("CASE-FAST{i}"), &fast);
    }
    let (slow_port, fast_port) = (free_port(), free_port());
    let contacts = vec![
        contact(
            &slow,
            1,
            Channel::Webhook,
            format!("http://127.0.0.1:{slow_port}/hooks/{slow}"),
            Some("file:S"),
        ),
        contact(
            &fast,
            1,
            Channel::Webhook,
            format!("http://127.0.0.1:{fast_port}/hooks/{fast}"),
            Some("file:F"),
        ),
    ];
    let cfg_path = write_config(
        dir.path(),
        &contacts,
        &[("S", "secret-of-s"), ("F", "secret-of-f")],
        "attempt_timeout_secs = 5.0\nlease_secs = 60.0\nmax_in_flight = 8\nper_host = 2\n\
         [rate_limits]\nwebhook = 60000\n",
    );
    let hooks = |ent: &str, secret: &str, stall: u64| {
        Arc::new(Hooks {
            secrets: [(ent.to_string(), secret.to_string())].into(),
            plan: [(
                ent.to_string(),
                vec![Behaviour::ProcessThenStall(Duration::from_millis(stall))],
            )]
            .into(),
            got: Mutex::new(Received::default()),
            ..Hooks::default()
        })
    };
    let (slow_hooks, fast_hooks) = (
        hooks(&slow, "secret-of-s", 1500),
        hooks(&fast, "secret-of-f", 0),
    );
    let rt = start_receiver(slow_hooks.clone(), slow_port);
    let _fast_rt = start_receiver(fast_hooks.clone(), fast_port);
    let cfg = DeliveryConfig::load(&cfg_path).unwrap();
    let mut worker = Worker::with_signer(
        &cfg,
        &out.join("pharmwatch.db"),
        Signer::new(LINK_KEY.as_bytes(), &cfg.link_base_url, 30).unwrap(),
    )
    .unwrap()
    .quiet(true);
    let started = Instant::now();
    let running = rt.spawn(async move { worker.pass().await });
    wait_for("the fast host's notices", Duration::from_secs(20), || {
        fast_hooks.got.lock().unwrap().accepted.len() == 4
    });
    let fast_done = started.elapsed();
    let s = rt.block_on(running).unwrap().unwrap();
    let all_done = started.elapsed();
    assert_eq!(s.delivered, 10, "{s:?}");
    assert!(
        fast_done < Duration::from_millis(1500),
        "the fast host waited for the slow one: {fast_done:?}"
    );
    // Six slow sends, two at a time: three rounds of 1.5 s.
    assert!(
        all_done >= Duration::from_millis(4400) && all_done < Duration::from_secs(9),
        "{all_done:?}"
    );
    let got = slow_hooks.got.lock().unwrap();
    assert_eq!(got.accepted.len(), 6);
    assert_eq!(
        got.max_in_flight, 2,
        "per_host bounds the slow host's requests"
    );
}

/// Starts `tests/support/tls_servers.py` with its certificates in `dir/tls`: that folder, the
/// servers' ports by name, and the process (killed on drop).
fn start_tls_servers(dir: &Path) -> (PathBuf, HashMap<String, u16>, Reaper) {
    let certs = dir.join("tls");
    std::fs::create_dir_all(&certs).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tls_servers.py");
    let mut child = Command::new(smtp_python())
        .arg(script)
        .arg(&certs)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let servers = Reaper(child);
    let ports: HashMap<String, u16> = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the TLS servers did not start ({e}): {line}"));
    (certs, ports, servers)
}

/// TLS wherever the delivery goes, certificates made at test time (`tests/support/tls_servers.py`)
/// and verified: a webhook over HTTPS whose certificate chains to the configured `ca_file` is
/// delivered; one with a certificate nobody trusts gets nothing (its attempt says why); e-mail
/// through a relay that requires STARTTLS, and through one that speaks TLS from the first byte,
/// arrives.
#[test]
fn deliveries_verify_certificates_over_https_starttls_and_implicit_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, ports, _servers) = start_tls_servers(dir.path());
    let [ok, rogue, starttls, implicit] = [26, 27, 28, 29].map(code);
    let out = dir.path().join("out");
    // The last enterprise's notice is issued after the first pass (the relay is the worker's).
    let docs: Vec<String> = [&ok, &rogue, &starttls]
        .iter()
        .enumerate()
        .map(|(i, e)| issue_notice(&out, &format!("CASE-TLS{i}"), e))
        .collect();
    let contacts = vec![
        contact(
            &ok,
            1,
            Channel::Webhook,
            format!("https://127.0.0.1:{}/hooks/{ok}", ports["https_ok"]),
            Some("file:K"),
        ),
        contact(
            &rogue,
            1,
            Channel::Webhook,
            format!(
                "https://127.0.0.1:{}/hooks/{rogue}",
                ports["https_untrusted"]
            ),
            Some("file:K"),
        ),
        contact(
            &starttls,
            1,
            Channel::Email,
            "lead@tls.example.com".into(),
            None,
        ),
        contact(
            &implicit,
            1,
            Channel::Email,
            "lead@tls.example.com".into(),
            None,
        ),
    ];
    let pass = |smtp_port: u16, mode: &str| {
        let cfg_dir = dir.path().join(mode);
        std::fs::create_dir_all(&cfg_dir).unwrap();
        let cfg_path = write_config(
            &cfg_dir,
            &contacts,
            &[("K", "secret-of-k")],
            &format!(
                "ca_file = \"{}\"\n{FAST}\n[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\n\
                 tls = \"{mode}\"\n",
                certs.join("ca.pem").display()
            ),
        );
        let cfg = DeliveryConfig::load(&cfg_path).unwrap();
        let mut worker = Worker::with_signer(
            &cfg,
            &out.join("pharmwatch.db"),
            Signer::new(LINK_KEY.as_bytes(), &cfg.link_base_url, 30).unwrap(),
        )
        .unwrap()
        .quiet(true);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(worker.pass()).unwrap()
    };
    // The first pass: both webhooks, and the mails through the STARTTLS relay.
    pass(ports["smtp_starttls"], "starttls_required");
    let status = |ent: &str| -> String {
        db(&out)
            .query_row(
                "SELECT status FROM deliveries WHERE enterprise_id = ?1",
                [ent],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(status(&ok), "delivered");
    assert_eq!(status(&starttls), "delivered");
    assert_eq!(status(&rogue), "pending", "a retry is due later");
    let detail: String = db(&out)
        .query_row(
            "SELECT a.detail FROM delivery_attempts a JOIN deliveries d USING (delivery_id)
             WHERE d.enterprise_id = ?1",
            [&rogue],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        detail.to_lowercase().contains("certificate"),
        "the untrusted receiver's attempt says why: {detail}"
    );
    let files: Vec<String> = std::fs::read_dir(&certs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !files.iter().any(|f| f.starts_with("https-untrusted")),
        "nothing reached the receiver with the untrusted certificate: {files:?}"
    );
    let read = |prefix: &str| -> String {
        let mut names: Vec<&String> = files.iter().filter(|f| f.starts_with(prefix)).collect();
        names.sort();
        names
            .iter()
            .map(|f| std::fs::read_to_string(certs.join(f)).unwrap())
            .collect()
    };
    assert!(read("https-ok").contains(&docs[0]), "{files:?}");
    // The mail's subject is encoded; the body carries the number.
    let starttls_mail = read("mail-starttls");
    assert!(!starttls_mail.is_empty(), "{files:?}");
    // The second pass: the last notice's mail through the relay that speaks TLS from the first
    // byte (the STARTTLS relay's mail was already delivered and is not sent again).
    issue_notice(&out, "CASE-TLS3", &implicit);
    pass(ports["smtp_tls"], "tls");
    assert_eq!(status(&implicit), "delivered");
    let files: Vec<String> = std::fs::read_dir(&certs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files.iter().filter(|f| f.starts_with("mail-")).count(),
        2,
        "{files:?}"
    );
    assert!(files.iter().any(|f| f.starts_with("mail-tls")), "{files:?}");
}

/// `serve` over HTTPS with its own certificate (`[serve] tls_cert`, `tls_key`): a client that
/// trusts the certificate's authority opens `/healthz` and a notice's signed link; one that
/// does not is refused by its own verification; plain HTTP on the port gets no page.
#[test]
fn serve_answers_over_https_with_its_certificate_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, _, _servers) = start_tls_servers(dir.path());
    let out = dir.path().join("out");
    let ent = code(32);
    let number = issue_notice(&out, "CASE-HTTPS", &ent);
    let port = free_port();
    let cfg = write_config(
        dir.path(),
        &[],
        &[],
        &format!("link_base_url = \"https://127.0.0.1:{port}\"\n"),
    );
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[serve]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        certs.join("server.pem").display(),
        certs.join("server.key").display()
    ));
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("serve.log");
    let _serve = Reaper(
        pharmwatch(&[
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--no-worker",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap(),
    );
    pharmwatch::delivery::channels::install_tls_provider();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.pem")).unwrap()).unwrap();
    let trusting = reqwest::Client::builder()
        .tls_certs_merge([ca])
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let get =
        |client: &reqwest::Client, url: String| rt.block_on(async { client.get(url).send().await });
    wait_for("serve over HTTPS", Duration::from_secs(30), || {
        get(&trusting, format!("https://127.0.0.1:{port}/healthz"))
            .is_ok_and(|r| r.status().as_u16() == 200)
    });
    let signer = Signer::new(
        LINK_KEY.as_bytes(),
        &format!("https://127.0.0.1:{port}"),
        30,
    )
    .unwrap();
    let link = signer.url(&Claims {
        purpose: Purpose::Ack,
        enterprise_id: ent.clone(),
        subject: number.clone(),
        expires: chrono::Utc::now().timestamp() + 3600,
        issued: chrono::Utc::now().timestamp(),
    });
    assert!(link.starts_with("https://"), "{link}");
    let page = get(&trusting, link).unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let page = rt.block_on(page.text()).unwrap();
    assert!(
        page.contains(&number) && page.contains("确认签收"),
        "{page}"
    );
    // A client without the authority: its verification refuses the certificate.
    let plain_trust = reqwest::Client::builder().build().unwrap();
    let refused = get(&plain_trust, format!("https://127.0.0.1:{port}/healthz"));
    let err = format!(
        "{:?}",
        refused.expect_err("an unknown authority is refused")
    );
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Plain HTTP on the HTTPS port: no page.
    let http = get(&plain_trust, format!("http://127.0.0.1:{port}/healthz"));
    assert!(
        http.is_err() || http.is_ok_and(|r| r.status().as_u16() != 200),
        "plain HTTP got a page"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("https://127.0.0.1:{port}")),
        "{text}"
    );
}

#[test]
fn a_notice_never_reaches_another_enterprises_contacts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (a, b) = (code(30), code(31));
    let doc_a = issue_notice(&out, "CASE-XA", &a);
    let doc_b = issue_notice(&out, "CASE-XB", &b);
    // Only A registered a contact; B's notice must not go to it.
    let (cfg_path, hooks, rt) = webhook_of(dir.path(), &a);
    let cfg = DeliveryConfig::load(&cfg_path).unwrap();
    let signer = Signer::new(LINK_KEY.as_bytes(), &cfg.link_base_url, 30).unwrap();
    let mut worker = Worker::with_signer(&cfg, &out.join("pharmwatch.db"), signer)
        .unwrap()
        .quiet(true);
    let s = rt.block_on(worker.pass()).unwrap();
    assert_eq!((s.delivered, s.failed), (1, 1), "{s:?}");
    let got = hooks.got.lock().unwrap();
    assert_eq!(got.accepted.len(), 1);
    let (ent, body) = got.accepted.values().next().unwrap();
    assert_eq!(
        (ent.as_str(), body["document"]["number"].as_str()),
        (a.as_str(), Some(doc_a.as_str()))
    );
    assert!(
        !serde_json::to_string(&got.accepted)
            .unwrap()
            .contains(&doc_b)
    );
    drop(got);
    assert_eq!(
        count(
            &out,
            &format!(
                "SELECT COUNT(*) FROM deliveries WHERE document_no = '{doc_b}' AND status = 'failed'
                 AND last_error LIKE '%no registered contact%'"
            )
        ),
        1
    );

    // The sender itself refuses a contact of another enterprise.
    let sender = Sender::new(&cfg).unwrap();
    let msg = Message {
        notice_id: "k".into(),
        kind: MessageKind::Notice,
        enterprise: EnterpriseRef {
            credit_code: b.clone(),
            name: "B".into(),
        },
        document: None,
        case_id: None,
        due_date: None,
        summary: String::new(),
        link: String::new(),
        guidance_link: String::new(),
        issued_at: String::new(),
    };
    let contacts: Vec<Contact> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("contacts.json")).unwrap())
            .unwrap();
    let outcome = rt.block_on(sender.send(&contacts[0], &msg));
    assert!(
        matches!(outcome, Outcome::Final(ref d) if d.contains("refused")),
        "{outcome:?}"
    );
    assert_eq!(hooks.got.lock().unwrap().per_path.get(&a), Some(&1));
}

/// A plain HTTP/1.0 GET on loopback; returns the whole answer.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn a_lead_opens_the_received_links_in_a_browser() {
    let bin = crate::common::chromium();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let a = code(40);
    let number = issue_notice(&out, "CASE-BR", &a);
    let (hook_port, serve_port) = (free_port(), free_port());
    let contacts = vec![contact(
        &a,
        1,
        Channel::Webhook,
        format!("http://127.0.0.1:{hook_port}/hooks/{a}"),
        Some("file:A"),
    )];
    let cfg = write_config(
        dir.path(),
        &contacts,
        &[("A", "secret-of-a")],
        &format!("link_base_url = \"http://127.0.0.1:{serve_port}\"\n{FAST}"),
    );
    let hooks = Arc::new(Hooks {
        secrets: [(a.clone(), "secret-of-a".to_string())].into(),
        got: Mutex::new(Received::default()),
        ..Hooks::default()
    });
    let _rt = start_receiver(hooks.clone(), hook_port);
    // `pharmwatch serve` runs the delivery worker: the lead receives the notice …
    let _serve = Reaper(
        pharmwatch(&[
            "serve",
            "--listen",
            &format!("127.0.0.1:{serve_port}"),
            "--out",
            out.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    wait_for(
        "the notice at the lead's webhook",
        Duration::from_secs(30),
        || !hooks.got.lock().unwrap().accepted.is_empty(),
    );
    let body = hooks
        .got
        .lock()
        .unwrap()
        .accepted
        .values()
        .next()
        .unwrap()
        .1
        .clone();
    let ack = body["link"].as_str().unwrap().to_string();
    let guide = body["guidance_link"].as_str().unwrap().to_string();
    assert!(ack.starts_with(&format!("http://127.0.0.1:{serve_port}/e/{a}/ack/")));
    // … and opens its links, served by the same process: the acknowledgement link shows the
    // document and the confirmation button, and opening it records nothing.
    let dom = crate::common::headless_url(&bin, &ack, (1000, 1000), &["--dump-dom".to_string()]);
    for part in [
        "确认签收",
        "行政告诫书",
        number.as_str(),
        "CASE-BR",
        "0471-6945678",
    ] {
        assert!(
            dom.contains(part),
            "{part} missing from the acknowledgement page:\n{dom}"
        );
    }
    assert_eq!(
        delivered_events(&out, &number),
        0,
        "opening the link recorded service"
    );
    // The lead's explicit confirmation (the page's form posts to the same address).
    pharmwatch::delivery::channels::install_tls_provider();
    let confirmed = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::Client::new()
            .post(&ack)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    for part in ["已确认送达", "行政告诫书", number.as_str(), "合规指引"] {
        assert!(
            confirmed.contains(part),
            "{part} missing after confirming:\n{confirmed}"
        );
    }
    assert_eq!(
        delivered_events(&out, &number),
        1,
        "the confirmation recorded the service once"
    );
    let metrics = http_get(serve_port, "/metrics");
    for line in [
        "pharmwatch_delivery_delivered_total{channel=\"webhook\"} 1",
        "pharmwatch_delivery_attempts_total{channel=\"webhook\",outcome=\"success\"} 1",
        "pharmwatch_delivery_acknowledged_total{kind=\"caution_notice\"} 1",
    ] {
        assert!(
            metrics.contains(line),
            "{line} missing from /metrics:\n{metrics}"
        );
    }
    let dom = crate::common::headless_url(&bin, &guide, (1000, 1000), &["--dump-dom".to_string()]);
    let rules = measures::load_rules(None).unwrap();
    let cal = measures::load_calendar(None).unwrap();
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    let g = pharmwatch::guidance::guidance(&Ledger::open(&out).unwrap(), &a, today, &rules, &cal)
        .unwrap();
    let case = &g.open_cases[0];
    assert!(dom.contains("合规指引") && dom.contains("CASE-BR"), "{dom}");
    for m in &case.measures {
        assert!(dom.contains(&m.name), "measure {} missing:\n{dom}", m.name);
        if let Some(next) = &m.next_step {
            assert!(
                dom.contains(&next.text),
                "next step {} missing:\n{dom}",
                next.text
            );
        }
    }
    // Another enterprise's address with this link: the browser sees the refusal page.
    let other = guide.replace(&format!("/e/{a}/"), &format!("/e/{}/", code(41)));
    let dom = crate::common::headless_url(&bin, &other, (1000, 1000), &["--dump-dom".to_string()]);
    assert!(
        dom.contains("链接无效") && !dom.contains("CASE-BR"),
        "{dom}"
    );
}

#[test]
fn a_real_time_risk_warning_is_queued_with_its_event_and_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    drop(Ledger::open(&out).unwrap()); // the store with every migration
    let a = code(50);
    // The stream's insert (see stream::service): a rolled-back batch queues nothing, a
    // committed one queues exactly its new events (a replayed event id inserts nothing).
    let insert = |conn: &rusqlite::Connection, id: &str| {
        conn.execute(
            "INSERT INTO risk_events (id, indicator, enterprise_id, product_id, biz_date,
                 event_time, detected_at, source_topic, source_partition, source_offset, score,
                 grade, item_json)
             VALUES (?1, 'expired_batch_sold', ?2, 'P1', '2026-03-02', '2026-03-02T10:00:00+08:00',
                     '2026-03-02T10:00:01+08:00', 'pw.sales', 0, 7, 90.0, 'D',
                     '{\"evidence\":\"batch B1 expired 2026-02-28, 12 units sold\"}')
             ON CONFLICT DO NOTHING",
            rusqlite::params![id, a],
        )
        .unwrap()
    };
    let mut conn = db(&out);
    let tx = conn.transaction().unwrap();
    insert(&tx, "ev-rolled-back");
    tx.rollback().unwrap();
    let tx = conn.transaction().unwrap();
    insert(&tx, "ev-1");
    insert(&tx, "ev-1");
    // A duplicated traceability code (its evidence names the first seller) and a special-drug
    // surge stay with the supervisors under the default policy: no delivery row.
    for (id, indicator) in [
        ("ev-trace", "trace_code_duplicate"),
        ("ev-special", "special_drug_volume"),
    ] {
        tx.execute(
            "INSERT INTO risk_events (id, indicator, enterprise_id, product_id, biz_date,
                 event_time, detected_at, source_topic, source_partition, source_offset, score,
                 grade, item_json)
             VALUES (?1, ?2, ?3, 'P1', '2026-03-02', '2026-03-02T10:00:00+08:00',
                     '2026-03-02T10:00:01+08:00', 'pw.sales', 0, 8, 90.0, 'D', ?4)",
            rusqlite::params![
                id,
                indicator,
                a,
                format!("{{\"evidence\":\"code=1;first_seller={}\"}}", code(51))
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    assert_eq!(
        count(
            &out,
            "SELECT COUNT(*) FROM deliveries WHERE kind = 'risk_warning'"
        ),
        1
    );
    assert_eq!(count(&out, "SELECT COUNT(*) FROM risk_events"), 3);

    let port = free_port();
    let contacts = vec![contact(
        &a,
        1,
        Channel::Webhook,
        format!("http://127.0.0.1:{port}/hooks/{a}"),
        Some("file:A"),
    )];
    let cfg_path = write_config(dir.path(), &contacts, &[("A", "secret-of-a")], FAST);
    let hooks = Arc::new(Hooks {
        secrets: [(a.clone(), "secret-of-a".to_string())].into(),
        got: Mutex::new(Received::default()),
        ..Hooks::default()
    });
    let rt = start_receiver(hooks.clone(), port);
    let cfg = DeliveryConfig::load(&cfg_path).unwrap();
    let signer = Signer::new(LINK_KEY.as_bytes(), &cfg.link_base_url, 30).unwrap();
    let mut worker = Worker::with_signer(&cfg, &out.join("pharmwatch.db"), signer)
        .unwrap()
        .quiet(true);
    let s = rt.block_on(worker.pass()).unwrap();
    assert_eq!(s.delivered, 1, "{s:?}");
    let got = hooks.got.lock().unwrap();
    let (key, (_, body)) = got.accepted.iter().next().unwrap();
    assert_eq!(key, "risk-ev-1");
    assert_eq!(body["type"], "risk_warning");
    assert!(body["document"].is_null());
    let summary = body["summary"].as_str().unwrap();
    assert!(
        summary.contains("销售超过有效期批次的药品") && summary.contains("batch B1"),
        "{summary}"
    );
    assert!(
        body["link"]
            .as_str()
            .unwrap()
            .contains(&format!("/e/{a}/guidance/"))
    );
}

#[test]
fn rate_limits_space_the_sends_and_required_starttls_never_falls_back_to_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (a, b) = (code(60), code(61));
    for i in 0..3 {
        issue_notice(&out, &format!("CASE-R{i}"), &a);
    }
    issue_notice(&out, "CASE-TLS", &b);
    let (port, smtp_port) = (free_port(), free_port());
    let mail_dir = dir.path().join("mail");
    let _smtp = start_smtp(smtp_port, &mail_dir, 0);
    let contacts = vec![
        contact(
            &a,
            1,
            Channel::Webhook,
            format!("http://127.0.0.1:{port}/hooks/{a}"),
            Some("file:A"),
        ),
        contact(
            &b,
            1,
            Channel::Email,
            format!("lead@{}.example.com", b.to_lowercase()),
            None,
        ),
    ];
    // 120 webhook messages a minute: one every 0.5 s. The relay does not offer STARTTLS, and
    // the configuration requires it: one attempt, then the manual-service list.
    let cfg_path = write_config(
        dir.path(),
        &contacts,
        &[("A", "secret-of-a")],
        &format!(
            "retry_delays_secs = []\nattempt_timeout_secs = 2.0\n[rate_limits]\nwebhook = 120\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"starttls_required\"\n"
        ),
    );
    let hooks = Arc::new(Hooks {
        secrets: [(a.clone(), "secret-of-a".to_string())].into(),
        got: Mutex::new(Received::default()),
        ..Hooks::default()
    });
    let rt = start_receiver(hooks.clone(), port);
    let cfg = DeliveryConfig::load(&cfg_path).unwrap();
    let signer = Signer::new(LINK_KEY.as_bytes(), &cfg.link_base_url, 30).unwrap();
    let mut worker = Worker::with_signer(&cfg, &out.join("pharmwatch.db"), signer)
        .unwrap()
        .quiet(true);
    let t0 = Instant::now();
    let s = rt.block_on(worker.pass()).unwrap();
    let took = t0.elapsed();
    assert_eq!((s.delivered, s.failed), (3, 1), "{s:?}");
    assert!(
        took >= Duration::from_millis(950),
        "three webhook sends at 120/min take ≥ 1 s, took {took:?}"
    );
    assert_eq!(hooks.got.lock().unwrap().accepted.len(), 3);
    // Nothing went over plain SMTP, and the attempt says why.
    assert!(
        mails(&mail_dir).is_empty(),
        "a message was sent without TLS"
    );
    let detail: String = db(&out)
        .query_row(
            "SELECT a.detail FROM delivery_attempts a JOIN deliveries d
             ON d.delivery_id = a.delivery_id WHERE d.enterprise_id = ?1",
            [&b],
            |r| r.get(0),
        )
        .unwrap();
    assert!(detail.to_lowercase().contains("tls"), "{detail}");
}

#[test]
fn a_stopped_worker_finishes_only_the_send_in_hand_and_links_live_from_the_send() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let a = code(70);
    for i in 0..5 {
        issue_notice(&out, &format!("CASE-S{i}"), &a);
    }
    // Queued three days ago (the receiver was down, say), links live one day.
    let three_days_ago = (chrono::Utc::now() - chrono::Duration::days(3))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    db(&out)
        .execute("UPDATE deliveries SET created_at = ?1", [&three_days_ago])
        .unwrap();
    let port = free_port();
    let contacts = vec![contact(
        &a,
        1,
        Channel::Webhook,
        format!("http://127.0.0.1:{port}/hooks/{a}"),
        Some("file:A"),
    )];
    let cfg_path = write_config(
        dir.path(),
        &contacts,
        &[("A", "secret-of-a")],
        "link_ttl_days = 1\nattempt_timeout_secs = 5.0\nlease_secs = 60.0\n\
         poll_interval_ms = 100\nper_host = 1\n[rate_limits]\nwebhook = 60000\n",
    );
    // Every send takes 0.6 s at the receiver; one at a time to its host (`per_host = 1`), so
    // the stop finds exactly one send in flight.
    let hooks = Arc::new(Hooks {
        secrets: [(a.clone(), "secret-of-a".to_string())].into(),
        plan: [(
            a.clone(),
            vec![Behaviour::ProcessThenStall(Duration::from_millis(600))],
        )]
        .into(),
        got: Mutex::new(Received::default()),
        ..Hooks::default()
    });
    let rt = start_receiver(hooks.clone(), port);
    let cfg = DeliveryConfig::load(&cfg_path).unwrap();
    let signer = || Signer::new(LINK_KEY.as_bytes(), &cfg.link_base_url, 1).unwrap();
    let mut worker = Worker::with_signer(&cfg, &out.join("pharmwatch.db"), signer())
        .unwrap()
        .quiet(true);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let running = rt.spawn(async move { worker.run(flag, false).await });
    wait_for("the first send", Duration::from_secs(20), || {
        !hooks.got.lock().unwrap().seen.is_empty()
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let asked = Instant::now();
    let s = rt.block_on(running).unwrap().unwrap();
    let took = asked.elapsed();
    // The send in hand is finished and recorded; nothing more is sent.
    assert!(took < Duration::from_millis(1500), "stopped after {took:?}");
    let sent = hooks.got.lock().unwrap().seen.len();
    assert_eq!(sent, 1, "one send in hand when the stop came");
    assert_eq!(s.delivered, 1, "{s:?}");
    // The rows not sent are given back at once, not held until their lease runs out.
    assert_eq!(
        count(
            &out,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND lease_until = 0"
        ),
        4
    );
    // A restart sends the rest, each once; every link is alive half a day after its send
    // although the rows were queued three days ago.
    let mut again = Worker::with_signer(&cfg, &out.join("pharmwatch.db"), signer())
        .unwrap()
        .quiet(true);
    let s = rt.block_on(again.pass()).unwrap();
    assert_eq!(s.delivered, 4, "{s:?}");
    let got = hooks.got.lock().unwrap();
    assert_eq!((got.accepted.len(), got.duplicates), (5, 0));
    let later = chrono::Utc::now().timestamp() + 12 * 3600;
    for (_, body) in got.accepted.values() {
        let link = body["link"].as_str().unwrap();
        let token = link.rsplit('/').next().unwrap();
        assert!(
            signer().verify(Purpose::Ack, &a, token, later).is_ok(),
            "a link dead on arrival: {link}"
        );
    }
}

#[test]
fn a_missing_secret_is_named_at_start_up_and_by_the_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (a, b) = (code(80), code(81));
    issue_notice(&out, "CASE-SEC", &a);
    let contacts = vec![
        contact(
            &a,
            1,
            Channel::Webhook,
            "http://127.0.0.1:9/hooks/a".to_string(),
            Some("env:PW_TEST_SECRET_NEVER_SET"),
        ),
        contact(
            &b,
            1,
            Channel::Webhook,
            "http://127.0.0.1:9/hooks/b".to_string(),
            Some("file:B"),
        ),
    ];
    let cfg = write_config(dir.path(), &contacts, &[("B", "secret-of-b")], FAST);
    let args = |extra: &str| {
        let mut v = vec![
            "deliver".to_string(),
            "--out".into(),
            out.to_str().unwrap().into(),
            "--config".into(),
            cfg.to_str().unwrap().into(),
        ];
        v.push(extra.into());
        v
    };
    let dry = pharmwatch(
        &args("--dry-run")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .env_remove("PW_TEST_SECRET_NEVER_SET")
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(dry.status.code(), Some(2), "{text}");
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("PROBLEM")).collect();
    assert_eq!(problems.len(), 1, "{text}");
    assert!(
        problems[0].contains(&a) && problems[0].contains("env:PW_TEST_SECRET_NEVER_SET"),
        "{text}"
    );
    // Nothing was attempted by the dry run, and the worker refuses to start, naming it.
    let once = pharmwatch(
        &args("--once")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .env_remove("PW_TEST_SECRET_NEVER_SET")
    .output()
    .unwrap();
    assert!(!once.status.success());
    let err = String::from_utf8_lossy(&once.stderr);
    assert!(
        err.contains(&a) && err.contains("PW_TEST_SECRET_NEVER_SET"),
        "{err}"
    );
    assert_eq!(count(&out, "SELECT COUNT(*) FROM delivery_attempts"), 0);
}

/// Waits up to `limit` for `child` to end; its status.
fn exit_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            t0.elapsed() < limit,
            "the process did not end within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The worker crashed (as by `kill -9`) at each step of a send — after leasing its rows, after
/// the receiver got the notice, before the attempt is recorded — and started again: every
/// notice reaches its enterprise exactly once (a repeated send is the receiver's duplicate,
/// recognised by its idempotency key), every row ends delivered with one recorded successful
/// attempt, and no secret shows in a log line or a stored attempt.
#[test]
fn a_worker_crashed_at_each_step_of_a_send_delivers_every_notice_once() {
    use pharmwatch::faults::FAULT_ENV;
    use std::os::unix::process::ExitStatusExt;
    for (i, (point, nth, repeated)) in [
        ("delivery.after_lease", 1, 0),
        ("delivery.after_send", 2, 1),
        ("delivery.before_record", 3, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let a = code(80 + i as u64);
        let numbers: Vec<String> = (0..4)
            .map(|n| issue_notice(&out, &format!("CASE-F{i}{n}"), &a))
            .collect();
        let (cfg, hooks, _rt) = webhook_of(dir.path(), &a);
        let log = dir.path().join("crashed.log");
        let fault = format!("{point}@{nth}");
        let mut crashed = start_worker_with(&out, &cfg, &log, &[(FAULT_ENV, &fault)]);
        let status = exit_within(&mut crashed.0, Duration::from_secs(60));
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(status.signal(), Some(6), "{point}: {status:?}\n{text}");
        assert!(
            text.contains(&format!("fault point {point} hit {nth}: aborting")),
            "{point}: {text}"
        );
        let before = count(
            &out,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'",
        );
        assert!(before < 4, "{point}: the crash came after the last send");

        let _worker = start_worker(&out, &cfg, &dir.path().join("worker.log"));
        wait_for(
            &format!("{point}: every notice delivered"),
            Duration::from_secs(60),
            || {
                count(
                    &out,
                    "SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'",
                ) == 4
            },
        );
        let got = hooks.got.lock().unwrap();
        let keys: BTreeSet<&str> = got.accepted.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4, "{point}: {got:?}");
        assert_eq!(got.duplicates, repeated, "{point}: {got:?}");
        assert_eq!(
            got.accepted.values().filter(|(e, _)| *e == a).count(),
            4,
            "{point}: a notice at another enterprise's address"
        );
        // One recorded successful attempt per notice: a send the crash cut off before its
        // record left no row, and its repetition is the one recorded.
        for number in &numbers {
            let sql = format!(
                "SELECT COUNT(*) FROM delivery_attempts a JOIN deliveries d USING (delivery_id)
                 WHERE d.document_no = '{number}' AND a.outcome = 'success'"
            );
            assert_eq!(count(&out, &sql), 1, "{point}: {number}");
        }
        assert_eq!(
            count(
                &out,
                "SELECT COUNT(*) FROM deliveries WHERE status <> 'delivered'"
            ),
            0,
            "{point}"
        );
        // No secret in any log line or stored attempt.
        let mut seen = std::fs::read_to_string(&log).unwrap();
        seen += &std::fs::read_to_string(dir.path().join("worker.log")).unwrap();
        let conn = db(&out);
        let mut st = conn
            .prepare("SELECT recipient || ' ' || detail FROM delivery_attempts")
            .unwrap();
        for row in st.query_map([], |r| r.get::<_, String>(0)).unwrap() {
            seen += &row.unwrap();
        }
        for secret in ["secret-of-a", LINK_KEY] {
            assert!(!seen.contains(secret), "{point}: {secret} shown:\n{seen}");
        }
    }
}
