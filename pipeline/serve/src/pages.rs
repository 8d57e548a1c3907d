//! The pages of the workbench (`/wb/…`), the enterprise end (`/ent/…`) and the sign-in.
//! Each handler finds who is asking ([`ServeState::principal`]), calls one action of
//! [`crate::actions`] and renders its template; every form is a POST carrying the session's
//! CSRF token, answered with a redirect (post–redirect–get).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Multipart, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use crate::ServeState;
use crate::accounts::{self, Role};
use crate::actions::{CaseAct, RiskQuery, actor, today};
use crate::i18n::Lang;
use crate::web::{
    self, Denied, LANG_COOKIE, LOGIN_COOKIE, Principal, SESSION_COOKIE, secure_headers, set_cookie,
};
use pharmwatch_casework::audit::{self, Subject};
use pharmwatch_casework::notices::{Edits, Particulars};

type S = State<Arc<ServeState>>;

/// `?lang=` of any page.
#[derive(Debug, Default, Deserialize)]
pub struct LangQuery {
    lang: Option<String>,
}

fn v<T: serde::Serialize>(x: &T) -> Value {
    Value::from(minijinja::value::Serde(x))
}

/// Remembers `?lang=en|zh` of any page in a cookie, so the following pages keep the language.
pub async fn remember_lang(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let lang = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("lang=")))
        .filter(|l| *l == "en" || *l == "zh")
        .map(str::to_string);
    let r = next.run(req).await;
    with_lang(r, lang.as_deref())
}

fn with_lang(mut r: Response, q: Option<&str>) -> Response {
    if let Some(l) = q.filter(|l| *l == "en" || *l == "zh") {
        r.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(LANG_COOKIE, l, 31_536_000, false),
        );
    }
    r
}

fn see_other(to: &str) -> Response {
    secure_headers(Redirect::to(to).into_response())
}

/// `GET /login`.
pub async fn login_page(State(s): S, headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    let token = match accounts::secret() {
        Ok(t) => t,
        Err(e) => return s.refused_page(lang, &Denied::Internal(e.to_string())),
    };
    let mut r = s.render(
        StatusCode::OK,
        "wb_login.html.j2",
        lang,
        context! { login_token => &token, failed => false },
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &token, 600, s.secure_cookies),
    );
    r
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    login_token: String,
}

/// `POST /login`: a new session on success (whatever session cookie came with the request is
/// ignored and replaced: no session fixation).
pub async fn login(State(s): S, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    let lang = Lang::of(&headers, None);
    let pre = web::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if pre.is_empty() || !web::same_secret(&pre, &f.login_token) {
        return s.refused_page(lang, &Denied::Forbidden);
    }
    let result = (|| -> web::Act<Option<(accounts::Account, String)>> {
        let l = s.lock()?;
        let Some(a) = accounts::authenticate(l.conn(), l.path(), &f.username, &f.password)? else {
            audit::append(
                l.conn(),
                l.path(),
                &audit::Actor {
                    name: f.username.chars().take(40).collect(),
                    role: "-".into(),
                },
                "sign_in_failed",
                Subject::default(),
                "",
            )?;
            return Ok(None);
        };
        let (id, _csrf) = accounts::start_session(l.conn(), l.path(), &a.username)?;
        audit::append(
            l.conn(),
            l.path(),
            &actor(&a),
            "signed_in",
            Subject {
                target: &format!("account:{}", a.username),
                ..Subject::default()
            },
            "",
        )?;
        Ok(Some((a, id)))
    })();
    match result {
        Ok(Some((a, id))) => {
            let mut r = see_other(if a.role == Role::EnterpriseLead {
                "/ent"
            } else {
                "/wb"
            });
            r.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(
                    SESSION_COOKIE,
                    &id,
                    accounts::SESSION_SECS,
                    s.secure_cookies,
                ),
            );
            r.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(LOGIN_COOKIE, "", 0, s.secure_cookies),
            );
            r
        }
        Ok(None) => {
            let token = accounts::secret().unwrap_or_default();
            let mut r = s.render(
                StatusCode::UNAUTHORIZED,
                "wb_login.html.j2",
                lang,
                context! { login_token => &token, failed => true },
            );
            r.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(LOGIN_COOKIE, &token, 600, s.secure_cookies),
            );
            r
        }
        Err(d) => s.refused_page(lang, &d),
    }
}

/// A form with only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout`.
pub async fn logout(State(s): S, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let lang = Lang::of(&headers, None);
    if let Ok(Principal::Session(id, sess)) = s.principal(&headers) {
        if !web::same_secret(&f.csrf, &sess.csrf) {
            return s.refused_page(lang, &Denied::Forbidden);
        }
        if let Ok(l) = s.lock() {
            let _ = accounts::end_session(l.conn(), l.path(), &id);
            let _ = audit::append(
                l.conn(),
                l.path(),
                &actor(&sess.account),
                "signed_out",
                Subject::default(),
                "",
            );
        }
    }
    let mut r = see_other("/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, s.secure_cookies),
    );
    r
}

/// `GET /`.
pub async fn root(State(s): S, headers: HeaderMap) -> Response {
    match s.principal(&headers) {
        Ok(p) => match p.account() {
            Some(a) if a.role == Role::EnterpriseLead => see_other("/ent"),
            Some(_) => see_other("/wb"),
            None => see_other("/login"),
        },
        Err(_) => see_other("/login"),
    }
}

fn page<T>(s: &ServeState, lang: Lang, r: web::Act<T>, ok: impl FnOnce(T) -> Response) -> Response {
    match r {
        Ok(x) => ok(x),
        Err(d) => s.refused_page(lang, &d),
    }
}

/// A page that only reads: who asks, what `load` gives that account, rendered with `me` and
/// the context `ctx` makes of it; a refusal gets its page.
fn view<T>(
    s: &ServeState,
    headers: &HeaderMap,
    lang: Lang,
    template: &str,
    load: impl FnOnce(&accounts::Account) -> web::Act<T>,
    ctx: impl FnOnce(T) -> Value,
) -> Response {
    let r = s
        .reader(headers)
        .and_then(|(a, csrf)| Ok((load(&a)?, a, csrf)));
    page(s, lang, r, |(x, a, csrf)| {
        let extra = ctx(x);
        s.render(
            StatusCode::OK,
            template,
            lang,
            context! { me => me(&a, &csrf), ..extra },
        )
    })
}

fn me(a: &accounts::Account, csrf: &Option<String>) -> Value {
    context! { username => &a.username, display_name => &a.display_name, role => a.role.as_str(),
    role_zh => a.role.name_zh(), csrf => csrf.clone().unwrap_or_default(),
    regions => a.regions.join(", ") }
}

/// `GET /wb`: the queues.
pub async fn home(State(s): S, headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    view(
        &s,
        &headers,
        lang,
        "wb_home.html.j2",
        |a| s.queues(a),
        |queues| {
            context! { q => v(&queues) }
        },
    )
}

/// `GET /wb/risk`.
pub async fn risk(State(s): S, headers: HeaderMap, Query(q): Query<RiskQuery>) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    let r = s
        .reader(&headers)
        .and_then(|(a, csrf)| Ok((s.risk_list(&a, &q)?, a, csrf)));
    page(&s, lang, r, |((date, days, rows), a, csrf)| {
        let can_triage = matches!(a.role, Role::ProvinceSupervisor | Role::Inspector);
        s.render(StatusCode::OK, "wb_risk.html.j2", lang, context! {
            me => me(&a, &csrf), date, days, rows => v(&rows), q => v(&q), can_triage,
            regions => v(&pharmwatch_core::regions::REGIONS.iter().map(|(c, n, _)| (c, n)).collect::<Vec<_>>()),
        })
    })
}

/// The triage form.
#[derive(Debug, Deserialize)]
pub struct DispositionForm {
    #[serde(default)]
    csrf: String,
    list_id: String,
    enterprise_id: String,
    disposition: String,
    #[serde(default)]
    reason: String,
}

/// `POST /wb/risk/disposition`.
pub async fn disposition(
    State(s): S,
    headers: HeaderMap,
    Form(f): Form<DispositionForm>,
) -> Response {
    let lang = Lang::of(&headers, None);
    let r = s
        .actor(&headers, Some(&f.csrf))
        .and_then(|a| s.dispose(&a, &f.list_id, &f.enterprise_id, &f.disposition, &f.reason));
    page(&s, lang, r, |case| match case {
        Some(c) => see_other(&format!("/wb/cases/{}", enc(&c))),
        None => see_other("/wb/risk"),
    })
}

/// Percent-encodes a path segment.
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `GET /wb/enterprises/{id}`: earlier risk lists, cases and credit file of one enterprise.
pub async fn enterprise(
    State(s): S,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    view(
        &s,
        &headers,
        lang,
        "wb_enterprise.html.j2",
        |a| s.enterprise_history(a, &id),
        |h| {
            context! { h => v(&h) }
        },
    )
}

/// `GET /wb/drafts/{id}`.
pub async fn draft(
    State(s): S,
    headers: HeaderMap,
    UrlPath(id): UrlPath<i64>,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    let r = s
        .reader(&headers)
        .and_then(|(a, csrf)| Ok((s.draft(&a, id)?, a, csrf)));
    page(&s, lang, r, |((d, html), a, csrf)| {
        let facts: Vec<pharmwatch_core::risk::RiskItem> = s
            .lock()
            .ok()
            .and_then(|l| l.show(&d.case_id).ok())
            .and_then(|c| serde_json::from_str(&c.facts_json).ok())
            .unwrap_or_default();
        let editable = matches!(
            d.state,
            pharmwatch_casework::drafts::DraftState::Proposed
                | pharmwatch_casework::drafts::DraftState::Returned
        ) && matches!(a.role, Role::ProvinceSupervisor | Role::Inspector);
        let approvable = d.state == pharmwatch_casework::drafts::DraftState::Submitted
            && a.role == Role::Approver;
        s.render(
            StatusCode::OK,
            "wb_draft.html.j2",
            lang,
            context! {
                me => me(&a, &csrf), d => v(&d), state_zh => d.state.name_zh(), preview => html,
                facts => v(&facts), editable, approvable,
                authority_missing => s.closed_loop.notices.authority.is_none(),
                penalty_kind => pharmwatch_casework::notices::DocumentKind::parse(&d.kind)
                    .map(|k| k.as_str()).filter(|k| k.starts_with("penalty_")),
                hearing_kind => d.kind == "hearing_notice",
            },
        )
    })
}

/// `POST /wb/drafts/{id}/{action}`: the form's `csrf`, `note`, `reason`, one `exclude`
/// per risk item left out (its 0-based position) and, on a penalty document, `penalty`,
/// `penalty_basis`, `violated` and `hearing_place`.
pub async fn draft_action(
    State(s): S,
    headers: HeaderMap,
    UrlPath((id, action)): UrlPath<(i64, String)>,
    Form(f): Form<Vec<(String, String)>>,
) -> Response {
    let lang = Lang::of(&headers, None);
    let field = |k: &str| {
        f.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let edits = Edits {
        note: field("note"),
        excluded_items: f
            .iter()
            .filter(|(n, _)| n == "exclude")
            .filter_map(|(_, v)| v.trim().parse().ok())
            .collect(),
        particulars: Particulars {
            penalty: field("penalty"),
            penalty_basis: field("penalty_basis"),
            violated: field("violated"),
            hearing_place: field("hearing_place"),
        },
    };
    let csrf = field("csrf");
    let r = s
        .actor(&headers, Some(&csrf))
        .and_then(|a| s.draft_action(&a, id, &action, &edits, &field("reason")));
    page(&s, lang, r, |_| see_other(&format!("/wb/drafts/{id}")))
}

/// `GET /wb/cases`.
pub async fn cases(State(s): S, headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    view(
        &s,
        &headers,
        lang,
        "wb_cases.html.j2",
        |a| s.cases(a, false),
        |rows| {
            context! { rows => v(&rows) }
        },
    )
}

/// `GET /wb/cases/{id}`.
pub async fn case(
    State(s): S,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    let r = s
        .reader(&headers)
        .and_then(|(a, csrf)| Ok((s.case_page(&a, &id)?, a, csrf)));
    page(&s, lang, r, |(c, a, csrf)| {
        let handler = matches!(a.role, Role::ProvinceSupervisor | Role::Inspector);
        s.render(
            StatusCode::OK,
            "wb_case.html.j2",
            lang,
            context! {
                me => me(&a, &csrf), c => v(&c), case_url => enc(&id), handler,
                can_assign => matches!(a.role, Role::ProvinceSupervisor | Role::Approver),
                approver => a.role == Role::Approver,
                can_comment => a.role != Role::Auditor,
                articles => v(&s.closed_loop.rules.articles),
            },
        )
    })
}

/// A case's form.
#[derive(Debug, Deserialize)]
pub struct CaseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    commitment: Option<String>,
    #[serde(default)]
    body: String,
    #[serde(default)]
    inspector: String,
    #[serde(default)]
    ground: String,
}

/// `POST /wb/cases/{id}/{action}`: `event`, `comment`, `assign`, `escalate`, `refer` or `close`.
pub async fn case_action(
    State(s): S,
    headers: HeaderMap,
    UrlPath((id, action)): UrlPath<(String, String)>,
    Form(f): Form<CaseForm>,
) -> Response {
    let lang = Lang::of(&headers, None);
    let act = CaseAct {
        event: f.event,
        note: f.note,
        commitment: f.commitment.is_some(),
        body: f.body,
        inspector: f.inspector,
        ground: f.ground,
    };
    let r = s
        .actor(&headers, Some(&f.csrf))
        .and_then(|a| s.case_act(&a, &id, &action, &act));
    page(&s, lang, r, |()| {
        see_other(&format!("/wb/cases/{}", enc(&id)))
    })
}

/// Reads a multipart upload: the CSRF token, the note and one file.
async fn upload(mut m: Multipart) -> web::Act<(String, String, String, String, Vec<u8>)> {
    let (mut csrf, mut note, mut name, mut ctype, mut bytes) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        Vec::new(),
    );
    while let Some(field) = m
        .next_field()
        .await
        .map_err(|e| Denied::Bad(format!("upload: {e}")))?
    {
        match field.name().unwrap_or_default() {
            "csrf" => csrf = field.text().await.map_err(|e| Denied::Bad(e.to_string()))?,
            "note" => note = field.text().await.map_err(|e| Denied::Bad(e.to_string()))?,
            "file" => {
                name = field.file_name().unwrap_or("upload").to_string();
                ctype = field.content_type().unwrap_or_default().to_string();
                bytes = field
                    .bytes()
                    .await
                    .map_err(|e| Denied::Bad(format!("upload: {e}")))?
                    .to_vec();
            }
            _ => {}
        }
    }
    if bytes.is_empty() {
        return Err(Denied::Bad("未选择文件 (no file)".into()));
    }
    Ok((csrf, note, name, ctype, bytes))
}

/// `POST /wb/cases/{id}/attach` and `POST /ent/cases/{id}/report`.
pub async fn attach(
    State(s): S,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    m: Multipart,
) -> Response {
    let lang = Lang::of(&headers, None);
    let r = match upload(m).await {
        Ok((csrf, note, name, ctype, bytes)) => s
            .actor(&headers, Some(&csrf))
            .and_then(|a| Ok((s.attach(&a, &id, &name, &ctype, &bytes, &note)?, a))),
        Err(d) => Err(d),
    };
    page(&s, lang, r, |(_, a)| {
        if a.role == Role::EnterpriseLead {
            see_other("/ent")
        } else {
            see_other(&format!("/wb/cases/{}", enc(&id)))
        }
    })
}

/// `GET /attachments/{id}`.
pub async fn attachment(State(s): S, headers: HeaderMap, UrlPath(id): UrlPath<i64>) -> Response {
    let lang = Lang::of(&headers, None);
    let r = s.reader(&headers).and_then(|(a, _)| s.attachment(&a, id));
    page(&s, lang, r, |(row, bytes)| {
        let mut r = (StatusCode::OK, bytes).into_response();
        let h = r.headers_mut();
        if let Ok(v) = row.content_type.parse() {
            h.insert(header::CONTENT_TYPE, v);
        }
        if let Ok(v) = format!("attachment; filename*=UTF-8''{}", enc(&row.file_name)).parse() {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        secure_headers(r)
    })
}

/// `GET /wb/audit`.
pub async fn audit_page(State(s): S, headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    view(
        &s,
        &headers,
        lang,
        "wb_audit.html.j2",
        |a| s.audit_trail(a),
        |rows| {
            context! { rows => v(&rows) }
        },
    )
}

/// `GET /ent`: the lead's notices, guidance and credit file.
pub async fn ent_home(State(s): S, headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    let r = s.reader(&headers).and_then(|(a, csrf)| {
        let notices = s.enterprise_notices(&a)?;
        let l = s.lock()?;
        let cal = l.calendar(&s.closed_loop.calendar)?;
        let g = pharmwatch_casework::guidance::guidance(
            &l,
            &a.enterprise_id,
            today(),
            &s.closed_loop.rules,
            &cal,
        )?;
        // The reference grade is the latest risk list's for the enterprise (B, the register's
        // default, when it was never listed).
        let reference = l
            .store()
            .risk_rows(None, Some(&a.enterprise_id))?
            .into_iter()
            .next_back()
            .map(|r| {
                if r.reference_credit_grade.is_empty() {
                    r.credit_grade
                } else {
                    r.reference_credit_grade
                }
            })
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| "B".to_string());
        let credit = pharmwatch_casework::credit::credit_file(
            &l,
            &a.enterprise_id,
            &g.enterprise_name,
            &reference,
            today(),
            &s.closed_loop.rules,
        )?;
        Ok((notices, g, credit, a, csrf))
    });

    page(&s, lang, r, |(notices, g, credit, a, csrf)| {
        s.render(
            StatusCode::OK,
            "wb_ent.html.j2",
            lang,
            context! {
                me => me(&a, &csrf), notices => v(&notices), g => v(&g), credit => v(&credit),
                enterprise_id => &a.enterprise_id,
            },
        )
    })
}

/// `GET /ent/notices/{number}`: the document and the confirmation form; records nothing.
pub async fn ent_notice(
    State(s): S,
    headers: HeaderMap,
    UrlPath(number): UrlPath<String>,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = Lang::of(&headers, q.lang.as_deref());
    let r = s
        .reader(&headers)
        .and_then(|(a, csrf)| Ok((s.enterprise_notice(&a, &number)?, a, csrf)));
    page(&s, lang, r, |((n, html), a, csrf)| {
        s.render(StatusCode::OK, "wb_notice.html.j2", lang, context! {
            me => me(&a, &csrf), n => v(&n), document => html, action => format!("/ent/notices/{}/receipt", enc(&number)),
        })
    })
}

/// `POST /ent/notices/{number}/receipt`: the lead's explicit confirmation (送达).
pub async fn ent_receipt(
    State(s): S,
    headers: HeaderMap,
    UrlPath(number): UrlPath<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let lang = Lang::of(&headers, None);
    let r = s
        .actor(&headers, Some(&f.csrf))
        .and_then(|a| s.confirm_receipt(&a, &number));
    page(&s, lang, r, |_| {
        see_other(&format!("/ent/notices/{}", enc(&number)))
    })
}
