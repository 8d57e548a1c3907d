//! The workbench over HTTP on loopback: the whole maker–checker loop through the pages (risk
//! row confirmed → case with a draft → edited and submitted → approved by another person →
//! the lead opens the notice, confirms receipt, uploads the report → verified, case closed),
//! and an authorisation matrix: every endpoint as every role, other regions and other
//! enterprises, CSRF and session fixation, and no GET that records anything.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use pharmwatch_casework::closedloop::ClosedLoop;
use pharmwatch_casework::ledger::Ledger;
use pharmwatch_casework::links::Signer;
use pharmwatch_casework::notices::{AuthorityConfig, NoticesConfig};
use pharmwatch_core::pool::PoolLimits;
use pharmwatch_core::risk::RiskRow;
use pharmwatch_core::store::Store;
use pharmwatch_serve::ServeState;
use pharmwatch_serve::accounts::{self, NewAccount, Role};

const PASSWORD: &str = "correct horse battery";

fn code(region: &str, n: u64) -> String {
    pharmwatch_schemas::ids::make_credit_code('9', '1', region, 8_000 + n).unwrap()
}

fn row(enterprise: &str, name: &str, region: &str, rank: u32) -> RiskRow {
    serde_json::from_value(serde_json::json!({
        "list_id": "RL-150000-2026-11-20", "date": "2026-11-20", "rank": rank,
        "enterprise_id": enterprise, "enterprise_name": name, "enterprise_type": "retail",
        "region_code": region, "region_name": "", "licence_no": "蒙AA1234567",
        "credit_grade": "B", "score": 80.0, "grade": "D",
        "indicators": "inventory_mismatch", "top_reason": "gap 12 packages",
        "responsible_unit": "", "status": "待处置", "rule_version": "test",
        "anomaly_score": 3.2, "anomaly_percentile": 0.999,
        "anomaly_reasons": "stock_gap z=6.1", "items": [{
            "indicator": "inventory_mismatch", "product_id": "P1", "product_name": "阿莫西林胶囊",
            "window_start": "2026-11-20", "window_end": "2026-11-20", "observed": 30.0,
            "expected": 18.0, "reason": "closing stock 30 but the records give 18",
            "evidence": "opening=20;inflow=0;sold=2", "severity": 0.6
        }]
    }))
    .unwrap()
}

fn authority() -> AuthorityConfig {
    AuthorityConfig {
        name: "包头市市场监督管理局".into(),
        seal_name: "包头市市场监督管理局".into(),
        abbreviation: "包市监".into(),
        contact_department: "药品科".into(),
        contact_phone: "0472-5123456".into(),
        address: "包头市昆都仑区".into(),
    }
}

struct World {
    base: String,
    state: Arc<ServeState>,
    out: std::path::PathBuf,
    ent_a: String,
    ent_b: String,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    world_with(pharmwatch_core::store::StoreConfig::default().pool_limits())
}

fn world_with(limits: PoolLimits) -> World {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (ent_a, ent_b) = (code("150200", 1), code("150100", 2));
    {
        let mut store = Store::open(&pharmwatch_core::db::scratch_store(&out)).unwrap();
        store
            .write_risk_list(&[
                row(&ent_a, "包头甲药店", "150200", 1),
                row(&ent_b, "呼市乙药店", "150100", 2),
            ])
            .unwrap();
        let (conn, path) = (store.conn_ref(), store.path().to_path_buf());
        let add = |u: &str, role: Role, regions: &[&str], ent: &str| {
            let regions: Vec<String> = regions.iter().map(|r| (*r).to_string()).collect();
            accounts::create(
                conn,
                &path,
                &NewAccount {
                    username: u,
                    display_name: u,
                    role,
                    regions: &regions,
                    enterprise_id: ent,
                    password: PASSWORD,
                },
            )
            .unwrap();
        };
        add("insp.bt", Role::Inspector, &["150200"], "");
        add("insp.bt2", Role::Inspector, &["150200"], "");
        add("insp.hh", Role::Inspector, &["150100"], "");
        add("appr.bt", Role::Approver, &["150200"], "");
        add("appr.hh", Role::Approver, &["150100"], "");
        add("sup", Role::ProvinceSupervisor, &[], "");
        add("aud", Role::Auditor, &[], "");
        add("lead.a", Role::EnterpriseLead, &[], &ent_a);
        add("lead.b", Role::EnterpriseLead, &[], &ent_b);
    }
    let state = ServeState::with_pool(
        Ledger::open_file(&pharmwatch_core::db::scratch_store(&out)).unwrap(),
        limits,
        Signer::new(&[7u8; 32], "http://127.0.0.1", 30).unwrap(),
        ClosedLoop {
            notices: NoticesConfig {
                authority: Some(authority()),
                ..Default::default()
            },
            rules: pharmwatch_casework::measures::load_rules(None).unwrap(),
            calendar: pharmwatch_casework::measures::load_calendar(None).unwrap(),
            run_date: None,
        },
        out.clone(),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = Arc::new(state);
    let (addr, _) = rt
        .block_on(pharmwatch_serve::spawn("127.0.0.1:0", state.clone()))
        .unwrap();
    World {
        base: format!("http://{addr}"),
        state,
        out,
        ent_a,
        ent_b,
        _rt: rt,
        _dir: dir,
    }
}

/// One browser: its cookies and the last page's CSRF token.
struct Browser<'w> {
    w: &'w World,
    cookies: HashMap<String, String>,
    client: Http,
}

/// The async client with a runtime of its own (the server runs on another).
struct Http {
    inner: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
    location: String,
}

impl<'w> Browser<'w> {
    fn new(w: &'w World) -> Self {
        Self {
            w,
            cookies: HashMap::new(),
            client: Http {
                inner: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap(),
                rt: tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap(),
            },
        }
    }

    fn send(&mut self, b: reqwest::RequestBuilder) -> Answer {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let b = if cookie.is_empty() {
            b
        } else {
            b.header("cookie", cookie.join("; "))
        };
        let (status, set, location, body, content_type) = self.client.rt.block_on(async {
            let r = b.send().await.unwrap();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let set: Vec<String> = r
                .headers()
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            let location = r
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (
                r.status().as_u16(),
                set,
                location,
                r.text().await.unwrap_or_default(),
                ct,
            )
        });
        for c in set {
            let kv = c.split(';').next().unwrap();
            let (k, v) = kv.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        Answer {
            status,
            content_type,
            body,
            location,
        }
    }

    fn get(&mut self, path: &str) -> Answer {
        let b = self.client.inner.get(format!("{}{path}", self.w.base));
        self.send(b)
    }

    fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let b = self
            .client
            .inner
            .post(format!("{}{path}", self.w.base))
            .form(form);
        self.send(b)
    }

    fn login(&mut self, user: &str) -> String {
        let page = self.get("/login");
        assert_eq!(page.content_type, "text/html; charset=utf-8");
        let token = field(&page.body, "login_token");
        let a = self.post(
            "/login",
            &[
                ("username", user),
                ("password", PASSWORD),
                ("login_token", &token),
            ],
        );
        assert_eq!(a.status, 303, "sign-in of {user}: {}", a.body);
        let home = self.get(&a.location);
        assert_eq!(home.status, 200, "{}", home.body);
        field(&home.body, "csrf")
    }
}

fn field(html: &str, name: &str) -> String {
    let pat = format!("name=\"{name}\" value=\"");
    let i = html
        .find(&pat)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + pat.len();
    html[i..].split('"').next().unwrap().to_string()
}

fn count(out: &Path, sql: &str) -> i64 {
    pharmwatch_core::db::Conn::open(&pharmwatch_core::db::scratch_store(out))
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

fn case_of(w: &World) -> String {
    format!("RL-2026-11-20-{}", w.ent_a)
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[test]
fn the_whole_loop_goes_through_a_person_at_every_legal_act() {
    let w = world();
    let mut insp = Browser::new(&w);
    let csrf = insp.login("insp.bt");
    // The risk list shows the inspector's region only, with evidence, model reasons, proposal.
    let list = insp.get("/wb/risk");
    assert_eq!(list.status, 200);
    for part in [
        "包头甲药店",
        "期末库存 30，按进销存记录应为 18",
        "stock_gap z=6.1",
        "建议开展行政告诫",
        "包头市",
    ] {
        assert!(list.body.contains(part), "{part} missing:\n{}", list.body);
    }
    assert!(
        !list.body.contains("呼市乙药店"),
        "another region's row is shown"
    );
    // English on request, remembered in a cookie for the next pages.
    let en = insp.get("/wb/risk?lang=en");
    assert!(
        en.body.contains("closing stock 30") && en.body.contains("Risk list"),
        "{}",
        en.body
    );
    assert!(insp.get("/wb").body.contains("Drafts awaiting my review"));
    assert!(insp.get("/wb?lang=zh").body.contains("待我审核的文书草稿"));
    // Confirm without the CSRF token: refused, nothing opened.
    let a = insp.post(
        "/wb/risk/disposition",
        &[
            ("list_id", "RL-150000-2026-11-20"),
            ("enterprise_id", &w.ent_a),
            ("disposition", "confirmed"),
        ],
    );
    assert_eq!(a.status, 403);
    assert_eq!(count(&w.out, "SELECT COUNT(*) FROM cases"), 0);
    // Confirm: the case opens with its draft; no number is taken, nothing is queued.
    let a = insp.post(
        "/wb/risk/disposition",
        &[
            ("csrf", &csrf),
            ("list_id", "RL-150000-2026-11-20"),
            ("enterprise_id", &w.ent_a),
            ("disposition", "confirmed"),
        ],
    );
    assert_eq!(a.status, 303, "{}", a.body);
    assert!(a.location.contains("/wb/cases/"), "{}", a.location);
    assert_eq!(
        count(
            &w.out,
            "SELECT COUNT(*) FROM drafts WHERE state = 'proposed'"
        ),
        1
    );
    assert_eq!(count(&w.out, "SELECT COUNT(*) FROM documents"), 0);
    assert_eq!(count(&w.out, "SELECT COUNT(*) FROM deliveries"), 0);
    let draft: i64 = count(&w.out, "SELECT draft_id FROM drafts");
    // Edit (a statement of fact) and submit.
    let a = insp.post(
        &format!("/wb/drafts/{draft}/edit"),
        &[
            ("csrf", &csrf),
            ("note", "经电话核实，企业承认盘点差错未及时更正。"),
        ],
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let page = insp.get(&format!("/wb/drafts/{draft}"));
    assert!(
        page.body.contains("经核查：经电话核实") && page.body.contains("文号待审批后生成"),
        "{}",
        page.body
    );
    assert_eq!(
        insp.post(&format!("/wb/drafts/{draft}/submit"), &[("csrf", &csrf)])
            .status,
        303
    );
    // The inspector cannot approve (role), nor can a second inspector.
    assert_eq!(
        insp.post(&format!("/wb/drafts/{draft}/approve"), &[("csrf", &csrf)])
            .status,
        403
    );
    // An approver of another region does not see it.
    let mut appr_hh = Browser::new(&w);
    let c = appr_hh.login("appr.hh");
    assert_eq!(appr_hh.get(&format!("/wb/drafts/{draft}")).status, 404);
    assert_eq!(
        appr_hh
            .post(&format!("/wb/drafts/{draft}/approve"), &[("csrf", &c)])
            .status,
        404
    );
    // The approver returns it with a reason, the inspector resubmits, the approver approves.
    let mut appr = Browser::new(&w);
    let ca = appr.login("appr.bt");
    let home = appr.get("/wb");
    assert!(
        home.body.contains("queue-approval") && home.body.contains(&format!("/wb/drafts/{draft}")),
        "{}",
        home.body
    );
    assert_eq!(
        appr.post(&format!("/wb/drafts/{draft}/return"), &[("csrf", &ca)])
            .status,
        409,
        "a return without a reason"
    );
    assert_eq!(
        appr.post(
            &format!("/wb/drafts/{draft}/return"),
            &[("csrf", &ca), ("reason", "请补充核查日期")]
        )
        .status,
        303
    );
    assert!(
        insp.get(&format!("/wb/drafts/{draft}"))
            .body
            .contains("请补充核查日期")
    );
    assert_eq!(
        insp.post(
            &format!("/wb/drafts/{draft}/edit"),
            &[
                ("csrf", &csrf),
                ("note", "2026年11月21日经电话核实，企业承认盘点差错。")
            ]
        )
        .status,
        303
    );
    assert_eq!(
        insp.post(&format!("/wb/drafts/{draft}/submit"), &[("csrf", &csrf)])
            .status,
        303
    );
    let a = appr.post(&format!("/wb/drafts/{draft}/approve"), &[("csrf", &ca)]);
    assert_eq!(a.status, 303, "{}", a.body);
    let page = appr.get(&format!("/wb/drafts/{draft}"));
    let number = page
        .body
        .split("id=\"document-number\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    assert!(
        number.starts_with("包市监告〔") && number.ends_with("〕1号"),
        "{number}"
    );
    assert_eq!(
        count(
            &w.out,
            "SELECT COUNT(*) FROM deliveries WHERE kind = 'notice'"
        ),
        1
    );
    assert_eq!(
        count(
            &w.out,
            "SELECT COUNT(*) FROM documents WHERE approved_by = 'appr.bt'"
        ),
        1
    );
    // A second approval takes no second number.
    assert_eq!(
        appr.post(&format!("/wb/drafts/{draft}/approve"), &[("csrf", &ca)])
            .status,
        409
    );
    assert_eq!(count(&w.out, "SELECT COUNT(*) FROM documents"), 1);

    // The lead of A sees the notice; opening it records nothing; the explicit act does.
    let mut lead = Browser::new(&w);
    let cl = lead.login("lead.a");
    let home = lead.get("/ent");
    assert!(
        home.body.contains(&number) && home.body.contains("尚未确认签收"),
        "{}",
        home.body
    );
    let path = format!("/ent/notices/{}", enc(&number));
    let notice = lead.get(&path);
    assert!(
        notice.body.contains("2026年11月21日经电话核实") && notice.body.contains("0472-5123456"),
        "{}",
        notice.body
    );
    lead.get(&path);
    assert_eq!(
        count(
            &w.out,
            "SELECT COUNT(*) FROM case_events WHERE event = 'delivered'"
        ),
        0
    );
    assert_eq!(
        lead.post(&format!("{path}/receipt"), &[("csrf", &cl)])
            .status,
        303
    );
    assert_eq!(
        count(
            &w.out,
            "SELECT COUNT(*) FROM case_events WHERE event = 'delivered'"
        ),
        1
    );
    // The lead of B sees none of it.
    let mut lead_b = Browser::new(&w);
    let cb = lead_b.login("lead.b");
    assert_eq!(lead_b.get(&path).status, 404);
    assert_eq!(
        lead_b
            .post(&format!("{path}/receipt"), &[("csrf", &cb)])
            .status,
        404
    );
    assert!(!lead_b.get("/ent").body.contains(&number));
    // The rectification report: a PNG with the report text; a text file is refused.
    let case = case_of(&w);
    let png = [
        &[0x89u8, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A][..],
        &[0u8; 64],
    ]
    .concat();
    let upload = |b: &mut Browser, bytes: Vec<u8>, name: &str, csrf: &str| {
        let form = reqwest::multipart::Form::new()
            .text("csrf", csrf.to_string())
            .text("note", "已重新盘点并更正台账")
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
            );
        let rb = b
            .client
            .inner
            .post(format!("{}/ent/cases/{}/report", b.w.base, enc(&case)))
            .multipart(form);
        b.send(rb)
    };
    assert_eq!(
        upload(&mut lead, b"just text".to_vec(), "r.txt", &cl).status,
        400
    );
    assert_eq!(upload(&mut lead_b, png.clone(), "r.png", &cb).status, 404);
    let a = upload(&mut lead, png, "整改报告.png", &cl);
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(
        count(
            &w.out,
            "SELECT COUNT(*) FROM case_events WHERE event = 'report_received'"
        ),
        1
    );
    // The inspector verifies; the case closes and the credit file shows it.
    let home = insp.get("/wb");
    assert!(
        home.body.contains("queue-verify") && home.body.contains(&case),
        "{}",
        home.body
    );
    let a = insp.post(
        &format!("/wb/cases/{}/event", enc(&case)),
        &[
            ("csrf", &csrf),
            ("event", "verified"),
            ("note", "现场复核通过"),
        ],
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let page = insp.get(&format!("/wb/cases/{}", enc(&case)));
    assert!(
        page.body.contains("<strong>closed</strong>") && page.body.contains("整改报告.png"),
        "{}",
        page.body
    );
    // The enterprise's history beside the row: the confirmation, the case, the credit file.
    let history = insp.get(&format!("/wb/enterprises/{}", w.ent_a));
    assert!(
        history.body.contains("confirmed")
            && history.body.contains(&case)
            && history.body.contains("history-credit"),
        "{}",
        history.body
    );
    let credit = lead.get("/ent");
    assert!(
        credit.body.contains(&case) && credit.body.contains("credit-entries"),
        "{}",
        credit.body
    );
    // The supervisor dismisses the other region's row; the dispositions score the list.
    let mut sup = Browser::new(&w);
    let cs = sup.login("sup");
    let a = sup.post(
        "/wb/risk/disposition",
        &[
            ("csrf", &cs),
            ("list_id", "RL-150000-2026-11-20"),
            ("enterprise_id", &w.ent_b),
            ("disposition", "dismissed"),
            ("reason", "盘点时点差异，已核实"),
        ],
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let score = pharmwatch_serve::labels::score(
        &Store::open(&pharmwatch_core::db::scratch_store(&w.out)).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (score.all.rows, score.all.confirmed, score.all.dismissed),
        (2, 1, 1)
    );
    assert_eq!(score.all.precision(), Some(0.5));
    assert_eq!(score.by_indicator["inventory_mismatch"].confirmed, 1);
    assert_eq!(score.model_flagged.rows, 2);
    assert_eq!(score.dismissal_reasons["盘点时点差异，已核实"], 1);
    assert!(pharmwatch_serve::labels::report(&score).contains("0.500"));
    // Every step is in the audit trail with who did it.
    for (who, action) in [
        ("insp.bt", "risk_confirmed"),
        ("insp.bt", "draft_submitted"),
        ("appr.bt", "draft_returned"),
        ("appr.bt", "draft_approved"),
        ("lead.a", "receipt_confirmed"),
        ("lead.a", "attachment_uploaded"),
        ("insp.bt", "case_verified"),
        ("sup", "risk_dismissed"),
    ] {
        let n = count(
            &w.out,
            &format!(
                "SELECT COUNT(*) FROM audit_trail WHERE action = '{action}' AND actor LIKE '%{who}%'"
            ),
        );
        assert!(n >= 1, "{action} by {who} missing from the audit trail");
    }
}

#[test]
fn every_endpoint_answers_each_role_as_its_jurisdiction_allows() {
    let w = world();
    // Open A's case with a draft through the API with a token (a system acting as insp.bt).
    let token = {
        let l = Ledger::open_file(&pharmwatch_core::db::scratch_store(&w.out)).unwrap();
        accounts::create_token(l.conn(), l.path(), "insp.bt", "platform").unwrap()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let api = |method: &str, path: &str, bearer: Option<&str>, body: serde_json::Value| -> u16 {
        rt.block_on(async {
            let url = format!("{}{path}", w.base);
            let mut b = if method == "GET" {
                http.get(url)
            } else {
                http.post(url).json(&body)
            };
            if let Some(t) = bearer {
                b = b.bearer_auth(t);
            }
            b.send().await.unwrap().status().as_u16()
        })
    };
    // Health: the store answers, on the backend the test runs on.
    let health: serde_json::Value = rt.block_on(async {
        let r = http
            .get(format!("{}/healthz", w.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json().await.unwrap()
    });
    let backend = if pharmwatch_core::db::is_postgres(&pharmwatch_core::db::scratch_store(&w.out)) {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["store"]["backend"], backend, "{health}");
    assert!(health["store"]["ms"].as_f64().is_some(), "{health}");
    let confirm = serde_json::json!({"list_id": "RL-150000-2026-11-20", "enterprise_id": w.ent_a, "disposition": "confirmed"});
    assert_eq!(
        api(
            "POST",
            "/api/v1/risk-list/disposition",
            None,
            confirm.clone()
        ),
        401
    );
    assert_eq!(
        api(
            "POST",
            "/api/v1/risk-list/disposition",
            Some("pwt_forged"),
            confirm.clone()
        ),
        401
    );
    assert_eq!(
        api(
            "POST",
            "/api/v1/risk-list/disposition",
            Some(&token),
            confirm
        ),
        200
    );
    let dismiss_b = serde_json::json!({"list_id": "RL-150000-2026-11-20", "enterprise_id": w.ent_b, "disposition": "dismissed", "reason": "x"});
    assert_eq!(
        api(
            "POST",
            "/api/v1/risk-list/disposition",
            Some(&token),
            dismiss_b
        ),
        404,
        "another region's row"
    );
    // Findings pushed by the platform: decided, recorded, documents proposed; a finding of
    // another region is refused in the answer, a lead may not push.
    let findings = format!(
        r#"[{{"case_id":"F-1","enterprise_id":"{}","inspection_date":"2026-11-25",
              "conclusion":"pending_rectification","defects":{{"critical":0,"major":6,"general":0}}}},
            {{"case_id":"F-2","enterprise_id":"{}","inspection_date":"2026-11-25",
              "conclusion":"pending_rectification","defects":{{"critical":0,"major":6,"general":0}}}}]"#,
        w.ent_a, w.ent_b
    );
    let (status, answer) = rt.block_on(async {
        let r = http
            .post(format!("{}/api/v1/findings", w.base))
            .bearer_auth(&token)
            .body(findings.clone())
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    });
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decisions"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["errors"][0]["case_id"], "F-2", "{answer}");
    assert!(
        !answer["drafts_proposed"].as_array().unwrap().is_empty(),
        "{answer}"
    );
    assert_eq!(
        count(&w.out, "SELECT COUNT(*) FROM cases WHERE case_id = 'F-1'"),
        1
    );
    assert_eq!(
        count(&w.out, "SELECT COUNT(*) FROM cases WHERE case_id = 'F-2'"),
        0
    );
    let lead_token = {
        let l = Ledger::open_file(&pharmwatch_core::db::scratch_store(&w.out)).unwrap();
        accounts::create_token(l.conn(), l.path(), "lead.a", "x").unwrap()
    };
    let lead_push = rt.block_on(async {
        http.post(format!("{}/api/v1/findings", w.base))
            .bearer_auth(&lead_token)
            .body(findings)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(lead_push, 403);
    let draft = count(&w.out, "SELECT MIN(draft_id) FROM drafts");
    let case = enc(&case_of(&w));
    let drafts_before = count(&w.out, "SELECT COUNT(*) FROM audit_trail");

    // Every GET page as every role: 200 where allowed, 403 for the role, 404 outside the
    // jurisdiction, 303 to the sign-in page for nobody.
    let gets: Vec<(String, [u16; 10])> = vec![
        //                    anon  sup  insp.bt insp.hh appr.bt appr.hh aud lead.a lead.b insp.bt2
        (
            "/wb".into(),
            [303, 200, 200, 200, 200, 200, 200, 403, 403, 200],
        ),
        (
            "/wb/risk".into(),
            [303, 200, 200, 200, 200, 200, 200, 403, 403, 200],
        ),
        (
            "/wb/cases".into(),
            [303, 200, 200, 200, 200, 200, 200, 403, 403, 200],
        ),
        (
            format!("/wb/cases/{case}"),
            [303, 200, 200, 404, 200, 404, 200, 403, 403, 200],
        ),
        (
            format!("/wb/drafts/{draft}"),
            [303, 200, 200, 404, 200, 404, 200, 403, 403, 200],
        ),
        (
            format!("/wb/enterprises/{}", w.ent_a),
            [303, 200, 200, 404, 200, 404, 200, 403, 403, 200],
        ),
        (
            "/wb/audit".into(),
            [303, 200, 403, 403, 403, 403, 200, 403, 403, 403],
        ),
        (
            "/ent".into(),
            [303, 403, 403, 403, 403, 403, 403, 200, 200, 403],
        ),
        (
            "/api/v1/cases".into(),
            [401, 200, 200, 200, 200, 200, 200, 403, 403, 200],
        ),
        (
            format!("/api/v1/cases/{case}"),
            [401, 200, 200, 404, 200, 404, 200, 403, 403, 200],
        ),
        (
            "/api/v1/enterprise/notices".into(),
            [401, 403, 403, 403, 403, 403, 403, 200, 200, 403],
        ),
    ];
    let users = [
        "", "sup", "insp.bt", "insp.hh", "appr.bt", "appr.hh", "aud", "lead.a", "lead.b",
        "insp.bt2",
    ];
    let mut browsers: Vec<(Browser, String)> = users
        .iter()
        .map(|u| {
            let mut b = Browser::new(&w);
            let c = if u.is_empty() {
                String::new()
            } else {
                b.login(u)
            };
            (b, c)
        })
        .collect();
    let mut wrong = Vec::new();
    for (path, expected) in &gets {
        for (i, (b, _)) in browsers.iter_mut().enumerate() {
            let got = b.get(path).status;
            if got != expected[i] {
                wrong.push(format!(
                    "GET {path} as {:?}: {got}, expected {}",
                    users[i], expected[i]
                ));
            }
        }
    }
    // No GET recorded anything but sign-ins.
    let after = count(
        &w.out,
        "SELECT COUNT(*) FROM audit_trail WHERE action NOT IN ('signed_in')",
    );
    assert_eq!(after, drafts_before, "a GET wrote to the audit trail");

    // State-changing forms as every role (with each session's own CSRF token).
    type Post<'a> = (String, Vec<(&'a str, &'a str)>, [u16; 10]);
    let posts: Vec<Post> = vec![
        (
            format!("/wb/cases/{case}/comment"),
            vec![("body", "请尽快复核")],
            [303, 303, 303, 404, 303, 404, 403, 403, 403, 303],
        ),
        (
            format!("/wb/drafts/{draft}/edit"),
            vec![("note", "补充")],
            [303, 303, 303, 404, 403, 404, 403, 403, 403, 303],
        ),
        (
            format!("/wb/cases/{case}/assign"),
            vec![("inspector", "insp.bt2")],
            [303, 303, 403, 403, 303, 404, 403, 403, 403, 403],
        ),
    ];
    for (path, form, expected) in &posts {
        for (i, (b, csrf)) in browsers.iter_mut().enumerate() {
            let mut f = form.clone();
            f.push(("csrf", csrf.as_str()));
            let got = b.post(path, &f).status;
            // Nobody signed in is sent to the sign-in page.
            let got = if users[i].is_empty() && got == 303 {
                303
            } else {
                got
            };
            if got != expected[i] {
                wrong.push(format!(
                    "POST {path} as {:?}: {got}, expected {}",
                    users[i], expected[i]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Another session's CSRF token does not work.
    let other_csrf = browsers[2].1.clone();
    let (sup, _) = &mut browsers[1];
    assert_eq!(
        sup.post(
            &format!("/wb/cases/{case}/comment"),
            &[("csrf", &other_csrf), ("body", "x")]
        )
        .status,
        403
    );

    // Escalation on a ground, with its facts: the engine's next measures with their articles,
    // an `escalated` event, an audit entry, and drafts for the documents they call for.
    let measures_before = count(&w.out, "SELECT COUNT(*) FROM case_measures");
    let (insp, c_insp) = &mut browsers[2];
    let c_insp = c_insp.clone();
    let path = format!("/wb/cases/{case}/escalate");
    assert_eq!(
        insp.post(&path, &[("csrf", &c_insp), ("ground", "risk_increased")])
            .status,
        400
    );
    assert_eq!(
        insp.post(
            &path,
            &[
                ("csrf", &c_insp),
                ("ground", "risk_increased"),
                ("note", "复查发现继续销售过期批号")
            ]
        )
        .status,
        303
    );
    let added = count(&w.out, "SELECT COUNT(*) FROM case_measures") - measures_before;
    let articles = count(
        &w.out,
        "SELECT COUNT(*) FROM case_measures WHERE article = ''",
    );
    assert!(
        added >= 1 && articles == 0,
        "added {added} measures, {articles} without article"
    );
    assert_eq!(
        count(
            &w.out,
            "SELECT COUNT(*) FROM case_events WHERE event = 'escalated' AND note LIKE '%第二十四条%'"
        ),
        1
    );
    assert_eq!(
        count(
            &w.out,
            "SELECT COUNT(*) FROM audit_trail WHERE action = 'case_escalated' AND actor = 'insp.bt'"
        ),
        1
    );
    let (hh, c_hh) = &mut browsers[3];
    let c_hh = c_hh.clone();
    assert_eq!(
        hh.post(
            &path,
            &[("csrf", &c_hh), ("ground", "risk_increased"), ("note", "x")]
        )
        .status,
        404
    );
    let (aud, c_aud) = &mut browsers[6];
    let c_aud = c_aud.clone();
    assert_eq!(
        aud.post(
            &path,
            &[
                ("csrf", &c_aud),
                ("ground", "risk_increased"),
                ("note", "x")
            ]
        )
        .status,
        403
    );
    // The caution's deadline had not run out: the rise in risk brings the interview (第二十二条)
    // forward, proposed as its notice's draft beside the caution's.
    assert_eq!(added, 1);
    assert_eq!(
        count(
            &w.out,
            "SELECT COUNT(*) FROM case_measures WHERE code = 'interview' AND case_id LIKE 'RL-%'"
        ),
        1
    );
    assert_eq!(
        count(
            &w.out,
            "SELECT COUNT(*) FROM drafts WHERE kind = 'interview_notice' AND state = 'proposed' AND case_id LIKE 'RL-%'"
        ),
        1
    );

    // Referral and closing by hand are the approver's decisions (负责人), in the approver's
    // jurisdiction, each with its facts or reason; they carry their articles.
    let refer = format!("/wb/cases/{case}/refer");
    let (insp, c_insp) = &mut browsers[2];
    let c_insp = c_insp.clone();
    assert_eq!(
        insp.post(&refer, &[("csrf", &c_insp), ("note", "x")])
            .status,
        403
    );
    let (appr_hh, c_appr_hh) = &mut browsers[5];
    let c_appr_hh = c_appr_hh.clone();
    assert_eq!(
        appr_hh
            .post(&refer, &[("csrf", &c_appr_hh), ("note", "x")])
            .status,
        404
    );
    let (appr, c_appr) = &mut browsers[4];
    let c_appr = c_appr.clone();
    assert_eq!(appr.post(&refer, &[("csrf", &c_appr)]).status, 400);
    let page = appr.get(&format!("/wb/cases/{case}"));
    assert!(
        page.body.contains("id=\"refer-form\"") && page.body.contains("id=\"close-form\""),
        "the approver sees the referral and closing forms"
    );
    assert_eq!(
        appr.post(&refer, &[("csrf", &c_appr), ("note", "账外购进疑似假药")])
            .status,
        303
    );
    assert_eq!(
        count(
            &w.out,
            "SELECT COUNT(*) FROM case_measures WHERE code = 'case_referral' AND article LIKE '%第十八条%'"
        ),
        1
    );
    assert_eq!(
        count(
            &w.out,
            "SELECT COUNT(*) FROM audit_trail WHERE action = 'case_referred' AND actor = 'appr.bt'"
        ),
        1
    );
    assert_eq!(
        appr.post(&refer, &[("csrf", &c_appr), ("note", "再次")])
            .status,
        409,
        "referred once"
    );
    // The same actions through the API: an inspector's token comments, an approver's token
    // closes the case on a ground; without a reason, or as the inspector, it is refused.
    let appr_token = {
        let l = Ledger::open_file(&pharmwatch_core::db::scratch_store(&w.out)).unwrap();
        accounts::create_token(l.conn(), l.path(), "appr.bt", "platform").unwrap()
    };
    let case_api = |action: &str, bearer: &str, body: serde_json::Value| -> u16 {
        api(
            "POST",
            &format!("/api/v1/cases/{case}/{action}"),
            Some(bearer),
            body,
        )
    };
    assert_eq!(
        case_api(
            "comment",
            &token,
            serde_json::json!({"body": "已电话联系企业"})
        ),
        200
    );
    assert_eq!(
        case_api(
            "close",
            &token,
            serde_json::json!({"ground": "transferred", "note": "x"})
        ),
        403
    );
    assert_eq!(
        case_api(
            "close",
            &appr_token,
            serde_json::json!({"ground": "transferred"})
        ),
        400
    );
    assert_eq!(
        case_api(
            "close",
            &appr_token,
            serde_json::json!({"ground": "reopened", "note": "x"})
        ),
        400
    );
    let live_drafts = count(
        &w.out,
        "SELECT COUNT(*) FROM drafts WHERE state IN ('proposed', 'submitted', 'returned') AND case_id LIKE 'RL-%'",
    );
    assert!(live_drafts >= 1, "the escalation left a live draft");
    assert_eq!(
        case_api(
            "close",
            &appr_token,
            serde_json::json!({"ground": "transferred", "note": "已移交稽查支队立案"})
        ),
        200
    );
    assert_eq!(
        count(
            &w.out,
            "SELECT COUNT(*) FROM cases WHERE status = 'closed' AND case_id LIKE 'RL-%'"
        ),
        1
    );
    assert_eq!(
        count(
            &w.out,
            "SELECT COUNT(*) FROM drafts WHERE state IN ('proposed', 'submitted', 'returned') AND case_id LIKE 'RL-%'"
        ),
        0,
        "closing withdrew the live drafts"
    );
    assert_eq!(
        count(
            &w.out,
            "SELECT COUNT(*) FROM case_events WHERE event = 'closed' AND note LIKE '%第十八条%已移交稽查支队立案%'"
        ),
        1
    );
    assert_eq!(
        count(
            &w.out,
            "SELECT COUNT(*) FROM audit_trail WHERE action = 'case_closed' AND actor = 'appr.bt'"
        ),
        1
    );
    assert_eq!(
        case_api(
            "close",
            &appr_token,
            serde_json::json!({"ground": "compliant", "note": "x"})
        ),
        409,
        "closed once"
    );
    assert_eq!(case_api("dance", &appr_token, serde_json::json!({})), 400);

    // Session fixation: a session id planted before sign-in is not the one signed in.
    let mut b = Browser::new(&w);
    b.cookies
        .insert("pw_session".into(), "planted-session-id".into());
    b.login("sup");
    assert_ne!(
        b.cookies.get("pw_session").map(String::as_str),
        Some("planted-session-id")
    );
    let mut planted = Browser::new(&w);
    planted
        .cookies
        .insert("pw_session".into(), "planted-session-id".into());
    assert_eq!(planted.get("/wb").status, 303);
    // Sign-out ends the session on the server.
    let (b1, c1) = &mut browsers[1];
    let sid = b1.cookies.get("pw_session").cloned().unwrap();
    assert_eq!(b1.post("/logout", &[("csrf", c1.as_str())]).status, 303);
    let mut replay = Browser::new(&w);
    replay.cookies.insert("pw_session".into(), sid);
    assert_eq!(replay.get("/wb").status, 303);
    // A sign-in form without its pre-sign-in token is refused (login CSRF).
    let mut x = Browser::new(&w);
    assert_eq!(
        x.post(
            "/login",
            &[
                ("username", "sup"),
                ("password", PASSWORD),
                ("login_token", "x")
            ]
        )
        .status,
        403
    );
    // The OpenAPI document is served.
    let doc = rt.block_on(async {
        http.get(format!("{}/api/openapi.json", w.base))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    });
    assert_eq!(doc["openapi"], "3.0.3");
}

#[test]
fn requests_share_a_bounded_pool_of_store_connections_and_are_refused_503_when_it_stays_busy() {
    let w = world_with(PoolLimits {
        size: 2,
        acquire_timeout: std::time::Duration::from_millis(700),
    });
    let health = |b: &mut Browser<'_>| {
        let a = b.get("/healthz");
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        (a.status, v)
    };
    let mut b = Browser::new(&w);
    let csrf = b.login("insp.bt");
    assert!(!csrf.is_empty());
    let (status, v) = health(&mut b);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["store"]["pool"]["size"], 2, "{v}");
    assert_eq!(v["store"]["pool"]["in_use"], 0, "{v}");
    // Both connections held (two requests stalled on a slow database, say): the next request
    // waits the pool's timeout and is refused with 503 and Retry-After, in either language.
    let held = (w.state.lock().unwrap(), w.state.lock().unwrap());
    let started = std::time::Instant::now();
    let page = b.get("/wb/risk");
    let waited = started.elapsed();
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains("服务器繁忙"), "{}", page.body);
    assert!(
        waited >= std::time::Duration::from_millis(650),
        "refused after {waited:?}, before the pool's wait"
    );
    let api = b.client.rt.block_on(async {
        let r = b
            .client
            .inner
            .get(format!("{}/api/v1/risk-list", w.base))
            .bearer_auth("pwt_any")
            .send()
            .await
            .unwrap();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (r.status().as_u16(), retry)
    });
    assert_eq!(api, (503, Some("2".to_string())));
    let (status, v) = health(&mut b);
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["store"]["pool"]["in_use"], 2, "{v}");
    // One handed back: a waiting request is served with it; no third connection is opened.
    let waiter = {
        let base = w.base.clone();
        let cookie: Vec<String> = b.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                reqwest::Client::new()
                    .get(format!("{base}/wb/risk"))
                    .header("cookie", cookie.join("; "))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(250));
    drop(held.0);
    assert_eq!(waiter.join().unwrap(), 200);
    drop(held.1);
    let page = b.get("/wb/risk");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("包头甲药店"));
    let (status, v) = health(&mut b);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["store"]["pool"]["in_use"].as_u64(),
            v["store"]["pool"]["idle"].as_u64()
        ),
        (Some(0), Some(2)),
        "{v}"
    );
}
