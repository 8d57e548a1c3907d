//! The whole loop through the pages in real headless Chromium, driven over WebDriver (Debian's
//! `chromium-driver`): the nightly run proposes → an inspector confirms a risk-list row and
//! opens its case → edits and submits the draft → the approver approves → the lead signs in,
//! opens the notice, confirms receipt and uploads the rectification report → the inspector
//! verifies → the case closes and the lead's credit file shows it. Each step's screenshot is
//! decoded and checked for what the step must show (the workbench's red band, a status colour,
//! lines of text), beside the page's text. `PHARMWATCH_KEEP_SCREENSHOTS=DIR` keeps them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use pharmwatch::closedloop::ClosedLoop;
use pharmwatch::ledger::Ledger;
use pharmwatch::measures;
use pharmwatch::nightly;
use pharmwatch::notices::NoticesConfig;
use pharmwatch::serve::ServeState;
use pharmwatch::serve::accounts::{self, NewAccount, Role};
use pharmwatch_core::anomaly::ModelSource;
use pharmwatch_regulation::Calendar;

use crate::common::{free_port, simulate_province, test_authority};

const PASSWORD: &str = "walk-through-password";

/// A chromedriver process and one browser session on it.
struct Driver {
    child: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.rt.block_on(self.http.delete(url).send());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start() -> Self {
        pharmwatch::delivery::channels::install_tls_provider();
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("chromedriver is missing ({e}): `apt-get install chromium-driver` (scripts/test.sh does this)")
            });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let up = rt.block_on(async { http.get(format!("{base}/status")).send().await.is_ok() });
            if up {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                "--hide-scrollbars", "--lang=zh-CN"]}
        }}});
        let r: serde_json::Value = rt.block_on(async {
            http.post(format!("{base}/session"))
                .json(&caps)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_string();
        Self {
            child,
            base,
            session,
            http,
            rt,
        }
    }

    fn try_call(
        &self,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, serde_json::Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        self.rt.block_on(async {
            let b = match method {
                "GET" => self.http.get(url),
                _ => self.http.post(url).json(body),
            };
            let v: serde_json::Value = b.send().await.unwrap().json().await.unwrap();
            if v["value"].get("error").is_some() {
                Err(v)
            } else {
                Ok(v["value"].clone())
            }
        })
    }

    fn call(&self, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        self.try_call(method, path, &body)
            .unwrap_or_else(|v| panic!("webdriver {method} {path}: {v}"))
    }

    /// Finds `css` and acts on it; a page still being replaced (a stale element) is waited
    /// out (up to 10 s), then the page loaded after the act is waited for.
    fn act(&self, css: &str, action: &str, body: serde_json::Value) {
        let started = Instant::now();
        loop {
            let id = self.find(css);
            match self.try_call("POST", &format!("/element/{id}/{action}"), &body) {
                Ok(_) => break,
                Err(v)
                    if started.elapsed() < Duration::from_secs(10)
                        && v["value"]["error"] == "stale element reference" =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(v) => panic!("webdriver {action} on {css}: {v}"),
            }
        }
        let script = serde_json::json!({"script": "return document.readyState", "args": []});
        while started.elapsed() < Duration::from_secs(10) {
            match self.try_call("POST", "/execute/sync", &script) {
                Ok(v) if v == "complete" => return,
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", serde_json::json!({"url": url}));
    }

    fn find(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            let url = format!("{}/session/{}/element", self.base, self.session);
            let v: serde_json::Value = self.rt.block_on(async {
                self.http
                    .post(url)
                    .json(&serde_json::json!({"using": "css selector", "value": css}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap()
            });
            if let Some(id) = v["value"]["element-6066-11e4-a52e-4f735466cecf"].as_str() {
                return id.to_string();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no element {css} ({v}) on:\n{}",
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn click(&self, css: &str) {
        self.act(css, "click", serde_json::json!({}));
    }

    fn type_in(&self, css: &str, text: &str) {
        self.act(css, "value", serde_json::json!({"text": text}));
    }

    fn source(&self) -> String {
        self.call("GET", "/source", serde_json::Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn url(&self) -> String {
        self.call("GET", "/url", serde_json::Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn screenshot(&self) -> Vec<u8> {
        let b64 = self.call("GET", "/screenshot", serde_json::Value::Null);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap()
    }
}

/// What a screenshot shows, from its pixels: the share of pixels of the workbench's red band
/// (#8b0000), of the green of a done status (#174), of the red of a refusal (#b00), and the
/// rows of the page that carry dark (text) pixels.
struct Shot {
    band: f64,
    green: usize,
    red: usize,
    text_rows: usize,
}

fn look(png: &[u8]) -> Shot {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let ch = info.color_type.samples();
    let px = |x: usize, y: usize| {
        let i = (y * w + x) * ch;
        (buf[i], buf[i + 1], buf[i + 2])
    };
    let near = |(r, g, b): (u8, u8, u8), (r0, g0, b0): (u8, u8, u8)| {
        r.abs_diff(r0) < 24 && g.abs_diff(g0) < 24 && b.abs_diff(b0) < 24
    };
    let (mut band, mut green, mut red, mut text_rows) = (0usize, 0, 0, 0);
    for y in 0..h {
        let mut dark = 0;
        for x in 0..w {
            let p = px(x, y);
            if y < 40 && near(p, (0x8b, 0, 0)) {
                band += 1;
            }
            if near(p, (0x11, 0x77, 0x44)) {
                green += 1;
            }
            if near(p, (0xbb, 0, 0)) {
                red += 1;
            }
            if p.0 < 90 && p.1 < 90 && p.2 < 90 {
                dark += 1;
            }
        }
        if dark > 3 {
            text_rows += 1;
        }
    }
    Shot {
        band: band as f64 / (40 * w) as f64,
        green,
        red,
        text_rows,
    }
}

/// Checks a step: its page text has every part, its screenshot the workbench band and text.
fn step(d: &Driver, n: usize, name: &str, parts: &[&str]) -> Shot {
    // The page of a submitted form may still be on its way: wait for it (up to 10 s).
    let started = Instant::now();
    loop {
        let src = d.source();
        let missing = parts.iter().find(|p| !src.contains(**p));
        match missing {
            None => break,
            Some(p) if started.elapsed() > Duration::from_secs(10) => {
                panic!("step {n} ({name}): `{p}` missing at {}:\n{src}", d.url())
            }
            Some(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let png = d.screenshot();
    if let Ok(dir) = std::env::var("PHARMWATCH_KEEP_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Path::new(&dir).join(format!("{n:02}-{name}.png")), &png).unwrap();
    }
    let s = look(&png);
    assert!(
        s.band > 0.5,
        "step {n} ({name}): the workbench band covers {:.2} of the top",
        s.band
    );
    assert!(
        s.text_rows > 60,
        "step {n} ({name}): only {} rows of text",
        s.text_rows
    );
    s
}

fn signin(d: &Driver, base: &str, user: &str) {
    d.go(&format!("{base}/login"));
    d.type_in("#username", user);
    d.type_in("#password", PASSWORD);
    d.click("#sign-in");
    // The form posts and is redirected to the workbench: wait for that page, or the redirect
    // could land after the caller's next navigation and replace it.
    let started = Instant::now();
    while d.url().contains("/login") || !d.source().contains("id=\"logout\"") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "sign-in of {user} did not reach the workbench: {}",
            d.url()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signout(d: &Driver) {
    d.click("#logout");
}

/// A province whose nightly run proposed its rows (draft mode), three accounts of the top
/// proposed row's region and enterprise, and the server on loopback.
struct Province {
    _dir: tempfile::TempDir,
    out: std::path::PathBuf,
    row: pharmwatch::risk::RiskRow,
    last: chrono::NaiveDate,
    base: String,
    _rt: tokio::runtime::Runtime,
}

fn province() -> Province {
    let dir = tempfile::tempdir().unwrap();
    let cal = Calendar::embedded().unwrap();
    let lake = dir.path().join("lake");
    let out = dir.path().join("out");
    let sim = simulate_province(&lake, &cal);
    // The nightly run proposes (draft mode, the default): no case, no document.
    let cfg = pharmwatch_sim::sweep::nightly_config(
        &lake,
        &out,
        sim.end - chrono::Duration::days(6),
        sim.end,
        ModelSource::Off,
    );
    let cl = ClosedLoop {
        notices: NoticesConfig {
            authority: Some(test_authority()),
            ..NoticesConfig::default()
        },
        rules: measures::load_rules(None).unwrap(),
        calendar: cal.clone(),
        run_date: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (night, summary) = rt.block_on(nightly::run_with(&cfg, Some(&cl))).unwrap();
    let summary = summary.unwrap();
    assert!(
        summary.proposed > 0 && summary.cases_opened == 0 && summary.documents.is_empty(),
        "{summary:?}"
    );
    // The proposed row of the latest day with the highest rank, and the people of its region.
    let last = night.rows.iter().map(|r| r.date).max().unwrap();
    let row = night
        .rows
        .iter()
        .filter(|r| r.date == last && cl.notices.selects(&r.grade, &r.indicators))
        .min_by_key(|r| r.rank)
        .expect("a proposed row on the last day")
        .clone();
    {
        let l = Ledger::open(&out).unwrap();
        let regions = vec![row.region_code.clone()];
        let none: Vec<String> = Vec::new();
        for (u, role, regions, ent) in [
            ("inspector", Role::Inspector, &regions, ""),
            ("approver", Role::Approver, &regions, ""),
            (
                "lead",
                Role::EnterpriseLead,
                &none,
                row.enterprise_id.as_str(),
            ),
        ] {
            accounts::create(
                l.conn(),
                l.path(),
                &NewAccount {
                    username: u,
                    display_name: u,
                    role,
                    regions,
                    enterprise_id: ent,
                    password: PASSWORD,
                },
            )
            .unwrap();
        }
    }
    let state = ServeState::new(
        Ledger::open(&out).unwrap(),
        pharmwatch::links::Signer::new(&[3u8; 32], "http://127.0.0.1", 30).unwrap(),
        cl,
        out.clone(),
    )
    .unwrap();
    let (addr, _server) = rt
        .block_on(pharmwatch::serve::spawn("127.0.0.1:0", Arc::new(state)))
        .unwrap();
    Province {
        _dir: dir,
        out,
        row,
        last,
        base: format!("http://{addr}"),
        _rt: rt,
    }
}

#[test]
fn the_whole_loop_through_the_pages_in_chromium() {
    crate::common::chromium();
    let p = province();
    let (out, row, last, base) = (p.out.as_path(), &p.row, p.last, p.base.as_str());
    let dir = p._dir.path();
    let d = Driver::start();
    let ent = row.enterprise_id.as_str();

    // 1. The inspector signs in: the risk list with the proposal and its evidence.
    signin(&d, base, "inspector");
    d.go(&format!("{base}/wb/risk?date={last}"));
    step(
        &d,
        1,
        "risk-list",
        &[&row.enterprise_name, "建议开展行政告诫", "确认并立案"],
    );
    // 2. Confirms the row: the case opens with its draft.
    d.click(&format!("#row-{ent} button.confirm"));
    step(
        &d,
        2,
        "case-opened",
        &["RL-", ent, "行政告诫书", "proposed"],
    );
    // 3. Opens the draft, adds a statement of fact, saves and submits it.
    d.click("#case-drafts a");
    d.type_in("#note", "经电话核实，企业确认上述情况属实。");
    d.click("#save");
    d.click("#submit");
    step(
        &d,
        3,
        "draft-submitted",
        &["待审批", "经核查：经电话核实", "文号待审批后生成"],
    );
    let draft_url = d.url();
    signout(&d);
    // 4. The approver approves: the number is taken.
    signin(&d, base, "approver");
    step(&d, 4, "approver-queue", &["待审批的文书", "行政告诫书"]);
    d.go(&draft_url);
    d.click("#approve");
    let s = step(&d, 5, "approved", &["已签发", "蒙药监告〔"]);
    assert_eq!(s.red, s.red, "screenshot decoded");
    let number = d
        .source()
        .split("id=\"document-number\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    signout(&d);
    // 6. The lead signs in, opens the notice (nothing recorded), confirms receipt.
    signin(&d, base, "lead");
    let s = step(&d, 6, "lead-home", &[&number, "尚未确认签收"]);
    assert!(
        s.red > 140,
        "the unconfirmed status is shown in red ({} px)",
        s.red
    );
    d.click("a.notice-link");
    step(
        &d,
        7,
        "notice",
        &[&number, "我已阅读本文书，确认签收", "0471-6945678"],
    );
    let delivered = |out: &Path| -> i64 {
        rusqlite::Connection::open(out.join("pharmwatch.db"))
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM case_events WHERE event = 'delivered'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(delivered(out), 0, "opening the notice recorded service");
    d.click("#confirm-receipt");
    let s = step(&d, 8, "receipt-confirmed", &["已确认签收"]);
    assert!(
        s.green > 200,
        "the confirmation is shown in green ({} px)",
        s.green
    );
    assert_eq!(delivered(out), 1);
    // 9. Uploads the rectification report (a PNG file) with its text.
    let report = dir.join("整改报告.png");
    std::fs::write(&report, d.screenshot()).unwrap();
    d.go(&format!("{base}/ent"));
    d.type_in(".report-note", "已重新盘点并更正进销存台账。");
    d.type_in(".report-file", report.to_str().unwrap());
    d.click(".report-submit");
    step(&d, 9, "report-uploaded", &[&number]);
    signout(&d);
    // 10. The inspector verifies; the case closes.
    signin(&d, base, "inspector");
    step(&d, 10, "verify-queue", &["待我复核的整改报告", ent]);
    let case_id = format!("RL-{}-{ent}", row.date);
    d.go(&format!(
        "{base}/wb/cases/{}",
        percent_encoding::utf8_percent_encode(&case_id, percent_encoding::NON_ALPHANUMERIC)
    ));
    d.click("#event option[value=verified]");
    d.type_in("#event-note", "现场复核整改到位");
    d.click("#record-event");
    step(
        &d,
        11,
        "case-closed",
        &[
            "<strong>closed</strong>",
            "整改报告.png",
            "report_received",
            "verified",
        ],
    );
    signout(&d);
    // 12. The lead's credit file shows the case.
    signin(&d, base, "lead");
    step(&d, 12, "credit-file", &["信用档案", &case_id, "已确认签收"]);
}

/// The API against its own OpenAPI document under a property-based tester (schemathesis from
/// PyPI, in the test venv): every operation, as a staff token and as a lead's token, with
/// generated paths, queries and bodies — no server error, every status and content type as
/// documented.
#[test]
fn the_api_holds_against_its_openapi_document_under_schemathesis() {
    let python = std::env::var("PHARMWATCH_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("PHARMWATCH_TEST_PYTHON is not set: run scripts/test.sh (it makes the venv with schemathesis)")
    });
    let st = Path::new(&python).with_file_name("schemathesis");
    assert!(
        st.exists(),
        "{} is missing: `{python} -m pip install schemathesis` (scripts/test.sh does this)",
        st.display()
    );
    let p = province();
    let tokens: Vec<String> = {
        let l = Ledger::open(&p.out).unwrap();
        ["inspector", "approver", "lead"]
            .iter()
            .map(|u| accounts::create_token(l.conn(), l.path(), u, "schemathesis").unwrap())
            .collect()
    };
    for (who, token) in ["inspector", "approver", "lead"].iter().zip(&tokens) {
        let report = p._dir.path().join(format!("st-{who}.json"));
        let run = Command::new(&st)
            .args(["run", &format!("{}/api/openapi.json", p.base)])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance",
            ])
            .args([
                "--max-examples",
                "25",
                "--seed",
                "7",
                "--request-timeout",
                "10",
            ])
            .arg("--header")
            .arg(format!("Authorization: Bearer {token}"))
            .arg("--report-json-path")
            .arg(&report)
            .args(["--report", "json"])
            .env("NO_COLOR", "1")
            // Its cache (.schemathesis/) goes to the test's directory, not the source tree.
            .current_dir(p._dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            run.status.success(),
            "schemathesis as {who} found problems:\n{text}"
        );
        // Every operation was exercised, and with generated cases.
        assert!(
            text.contains("11 selected / 11 total"),
            "schemathesis as {who} did not select the 11 operations:\n{text}"
        );
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        for line in &lines[lines.len().saturating_sub(10)..] {
            eprintln!("schemathesis as {who}: {}", line.trim());
        }
    }
}
