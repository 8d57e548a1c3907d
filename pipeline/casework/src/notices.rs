//! Documents (执法文书): the four documents of the measures ladder — the caution notice
//! (行政告诫书), interview notice (约谈通知书), sales suspension decision (暂停销售决定书) and
//! lifting notice (解除通知书) — and the four of a referred case's penalty procedure — the filing
//! approval form (立案审批表), the notice of the proposed penalty (行政处罚告知书), the hearing
//! notice (听证通知书) and the penalty decision (行政处罚决定书) — rendered from the minijinja
//! templates in `pipeline/templates/` (embedded at compile time) to HTML and Markdown, numbered
//! and recorded in the case ledger.
//!
//! Every letter has the parts the domain brief lists: heading with the document number,
//! addressee with credit code, licence and lead, the facts with the risk list's evidence, the
//! legal basis (`[documents]` of the rules and the measure's article), the demands with the due
//! date, the consequences, the contact, the issuing authority and date, and a proof of service
//! (送达回证). A first minor violation (observation period, fault-tolerance list) gets the soft
//! wording of 蒙药监 (六) and no penalty language. The penalty documents state what a person
//! wrote into the draft ([`Particulars`]: the penalty, its basis, the provision violated, the
//! hearing's place) — the system never proposes a penalty — and the party's periods and remedies
//! from the rules. The filing approval form is the authority's internal record: it is never
//! delivered to, nor shown to, the enterprise.
//!
//! Invariants: the number `<series>〔<year>〕<seq>号` is allocated as `MAX(seq) + 1` per series
//! (authority abbreviation + kind word, e.g. 蒙药监告) and year inside the IMMEDIATE transaction
//! that stores the rendered text and appends the `notice_issued` event: concurrent issuers get
//! 1, 2, 3 … without gaps or duplicates, and a failed render consumes no number. A penalty
//! document is issued only at its stage of the procedure ([`crate::penalty::may_issue`]);
//! issuing the filing form files the case and issuing the decision decides it, in the same
//! transaction. The files under `OUT/notices/` are written after the commit, from the stored
//! text.

use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, Value, context};
use pharmwatch_regulation::{MeasureCode, Rules, WorkingDayCount};
use serde::{Deserialize, Serialize};

use crate::error::{CaseworkError, Result};
pub use crate::kinds::{DocumentKind, Particulars};
use crate::ledger::{CaseDetail, IssuedDocument, Ledger, append_event, parse_code};
use pharmwatch_core::config::Section;
use pharmwatch_core::display::indicator_zh;
use pharmwatch_core::error::CoreError;
use pharmwatch_core::risk::RiskItem;
use pharmwatch_core::store::sql_err;

/// The templates, by file name.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html.j2", include_str!("../../templates/base.html.j2")),
    ("base.md.j2", include_str!("../../templates/base.md.j2")),
    (
        "caution_notice.j2",
        include_str!("../../templates/caution_notice.j2"),
    ),
    (
        "interview_notice.j2",
        include_str!("../../templates/interview_notice.j2"),
    ),
    (
        "suspension_decision.j2",
        include_str!("../../templates/suspension_decision.j2"),
    ),
    (
        "lifting_notice.j2",
        include_str!("../../templates/lifting_notice.j2"),
    ),
    ("form.html.j2", include_str!("../../templates/form.html.j2")),
    ("form.md.j2", include_str!("../../templates/form.md.j2")),
    (
        "filing_approval.j2",
        include_str!("../../templates/filing_approval.j2"),
    ),
    (
        "penalty_notice.j2",
        include_str!("../../templates/penalty_notice.j2"),
    ),
    (
        "hearing_notice.j2",
        include_str!("../../templates/hearing_notice.j2"),
    ),
    (
        "penalty_decision.j2",
        include_str!("../../templates/penalty_decision.j2"),
    ),
];

/// Directory of the written documents inside an output directory.
pub const NOTICES_DIR: &str = "notices";

/// The issuing authority, as printed on every document. Every field is required and has no
/// default: a document with legal force names the authority that really issues it, so
/// `pharmwatch.toml` must say who that is ([`AuthorityConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityConfig {
    /// Full name, printed at the head of every document (内蒙古自治区药品监督管理局).
    pub name: String,
    /// The name on the seal the signature carries (e.g. the same name, or its 执法专用章).
    pub seal_name: String,
    /// Abbreviation that starts the document numbers (蒙药监).
    pub abbreviation: String,
    /// Department to contact.
    pub contact_department: String,
    /// Telephone number to contact.
    pub contact_phone: String,
    /// Postal address.
    pub address: String,
}

impl AuthorityConfig {
    /// Refuses an authority with an empty field or a placeholder telephone number (all
    /// zeros after the area code), naming the field.
    pub fn validate(&self) -> Result<()> {
        let fields = [
            ("name", &self.name),
            ("seal_name", &self.seal_name),
            ("abbreviation", &self.abbreviation),
            ("contact_department", &self.contact_department),
            ("contact_phone", &self.contact_phone),
            ("address", &self.address),
        ];
        for (field, value) in fields {
            if value.trim().is_empty() {
                return Err(CoreError::Config(format!(
                    "[notices.authority] {field} is empty: every document names its issuing \
                     authority, seal, address and telephone"
                ))
                .into());
            }
        }
        let digits: String = self
            .contact_phone
            .rsplit('-')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        if digits.is_empty() || digits.chars().all(|c| c == '0') {
            return Err(CoreError::Config(format!(
                "[notices.authority] contact_phone `{}` is not a telephone number an enterprise \
                 can call",
                self.contact_phone
            ))
            .into());
        }
        Ok(())
    }
}

/// How the nightly job turns selected risk-list rows into documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueMode {
    /// Propose drafts: an inspector reviews and submits, an approver approves, and only then
    /// is the number taken and the delivery queued (the default).
    #[default]
    Draft,
    /// Issue numbered documents at once, without review. Only where a bureau has decided so
    /// in writing; needs `[notices.authority]`.
    Direct,
}

/// Which risk-list rows the nightly run proposes a caution notice for, and who signs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticesConfig {
    /// Propose notices at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `draft` (the default): the nightly job proposes drafts for a person to review and
    /// approve; `direct`: it issues numbered documents itself.
    #[serde(default)]
    pub issue: IssueMode,
    /// Risk grades that get a caution notice.
    #[serde(default = "default_grades")]
    pub grades: Vec<String>,
    /// Indicators that qualify a row (any one of them); empty: every indicator.
    #[serde(default)]
    pub indicators: Vec<String>,
    /// Risk grades counted as minor: a first violation at such a grade gets the observation
    /// period and the soft wording (蒙药监 (六)).
    #[serde(default = "default_minor_grades")]
    pub minor_grades: Vec<String>,
    /// The issuing authority: required to issue any document (no built-in default).
    #[serde(default)]
    pub authority: Option<AuthorityConfig>,
    /// The enterprise leads' registered contacts (`contacts.json`, the delivery's): a notice
    /// addresses the lead of the enterprise's first contact by name. The nightly job uses
    /// `LAKE/reference/contacts.json` and `serve` the delivery's contacts when this is unset.
    #[serde(default)]
    pub contacts: Option<std::path::PathBuf>,
}

fn default_true() -> bool {
    true
}
fn default_grades() -> Vec<String> {
    vec!["C".to_string(), "D".to_string()]
}
fn default_minor_grades() -> Vec<String> {
    vec!["C".to_string()]
}

impl Default for NoticesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            issue: IssueMode::Draft,
            grades: default_grades(),
            indicators: Vec::new(),
            minor_grades: default_minor_grades(),
            authority: None,
            contacts: None,
        }
    }
}

impl Section for NoticesConfig {
    const NAME: &'static str = "notices";
}

impl NoticesConfig {
    /// Reads the `[notices]` table of `pharmwatch.toml` (if given) over the defaults, with
    /// `PHARMWATCH__NOTICES__*` overrides; unknown keys are refused.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        Ok(pharmwatch_core::config::load(path)?)
    }

    /// The issuing authority, validated; refused when none is configured.
    pub fn authority(&self) -> Result<&AuthorityConfig> {
        let a = self.authority.as_ref().ok_or_else(|| {
            CaseworkError::from(CoreError::Config(
                "no issuing authority is configured: set [notices.authority] name, seal_name, \
                 abbreviation, address, contact_department and contact_phone in pharmwatch.toml \
                 (a document is never issued under a built-in name)"
                    .into(),
            ))
        })?;
        a.validate()?;
        Ok(a)
    }

    /// The lead of `enterprise_id` as its registered contacts name them (first by priority);
    /// empty without contacts or without one of the enterprise. A contacts file that cannot be
    /// read is an error: a notice is not issued to a guessed addressee.
    pub fn lead_of(&self, enterprise_id: &str) -> Result<String> {
        let Some(path) = &self.contacts else {
            return Ok(String::new());
        };
        let dir = pharmwatch_core::contacts::Directory::load(path)?;
        Ok(dir
            .contacts_of(enterprise_id)
            .first()
            .map(|c| c.lead_name.clone())
            .unwrap_or_default())
    }

    /// Whether a risk-list row with this grade and these indicators gets a notice.
    pub fn selects(&self, grade: &str, indicators: &str) -> bool {
        self.enabled
            && self.grades.iter().any(|g| g == grade)
            && (self.indicators.is_empty()
                || indicators
                    .split(',')
                    .any(|i| self.indicators.iter().any(|w| w == i.trim())))
    }
}

/// The addressee of a document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addressee {
    /// Enterprise name.
    pub name: String,
    /// Unified social credit code.
    pub credit_code: String,
    /// Licence number.
    pub licence_no: String,
    /// Enterprise lead (企业负责人).
    #[serde(default)]
    pub lead_name: String,
}

/// A rendered document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// HTML.
    pub html: String,
    /// Markdown.
    pub markdown: String,
}

/// `2026年3月2日`.
pub fn date_zh(d: NaiveDate) -> String {
    format!("{}年{}月{}日", d.year(), d.month(), d.day())
}

/// A deadline still waiting for the calendar, as an official document states it:
/// `自2026年12月3日起30个工作日内（具体日期待2027年节假日安排公布后确定并另行告知）`. With several
/// counts, the earliest applies: each is named, joined by `或`.
pub fn pending_due_zh(counts: &[WorkingDayCount], needs_year: i32) -> String {
    let spans: Vec<String> = counts
        .iter()
        .map(|c| format!("自{}起{}个工作日内", date_zh(c.from), c.working_days))
        .collect();
    let spans = if spans.is_empty() {
        "本局规定的期限内".to_string()
    } else {
        spans.join("或")
    };
    format!("{spans}（具体日期待{needs_year}年节假日安排公布后确定并另行告知）")
}

fn environment(html: bool) -> Result<Environment<'static>> {
    let mut env = pharmwatch_core::display::templates();
    env.set_auto_escape_callback(move |_| {
        if html {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    for (name, text) in TEMPLATES {
        env.add_template(name, text)
            .map_err(|e| CaseworkError::Template {
                template: (*name).to_string(),
                source: e,
            })?;
    }
    Ok(env)
}

/// What a person changed in a draft before it is issued: a statement added to the facts
/// (经核查 …), the risk items left out (0-based positions in the case's facts), e.g. an
/// item the inspector found explained on the telephone, and for a penalty document what the
/// case officer writes into it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edits {
    /// The inspector's statement, printed after the facts.
    pub note: String,
    /// Positions of the facts left out.
    pub excluded_items: Vec<usize>,
    /// The particulars of a penalty document (empty for the measure documents).
    #[serde(default)]
    pub particulars: Particulars,
}

/// Renders document `i.kind` of case `case` with `number` (the approver, when there is one
/// yet, is `i.actor`).
pub fn render(number: &str, case: &CaseDetail, i: &Issuing<'_>) -> Result<Rendered> {
    let (kind, rules, edits) = (i.kind, i.rules, i.edits);
    let measure = case
        .measures
        .iter()
        .find(|m| parse_code(&m.code).is_some_and(|c| kind.serves(c)))
        .ok_or_else(|| {
            CaseworkError::ledger(
                &case.case.case_id,
                format!("has no measure a {} serves", kind.title()),
            )
        })?;
    let facts: Vec<RiskItem> = serde_json::from_str::<Vec<RiskItem>>(&case.facts_json)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !edits.excluded_items.contains(i))
        .map(|(_, f)| f)
        .collect();
    let addressee = addressee_of(case);
    let due = measure
        .due_date
        .as_deref()
        .and_then(|d| d.parse::<NaiveDate>().ok());
    let report_days = rules.deadlines.caution_interview_report_working_days;
    // What the enterprise must do by when, as the sentence reads: a date, or while the
    // calendar does not reach it, the count with a promise to notify the date.
    let due_clause = match (due, measure.due_pending_year) {
        (Some(d), _) if kind == DocumentKind::SuspensionDecision => {
            format!("于{}前", date_zh(d))
        }
        (Some(d), _) => format!("于{}前（{report_days}个工作日内）", date_zh(d)),
        (None, Some(year)) => pending_due_zh(&measure.due_counts, year),
        (None, None) => "于本局规定的期限前".to_string(),
    };
    let observation_until = case
        .measures
        .iter()
        .find(|m| m.code == MeasureCode::ObservationPeriod.as_str())
        .and_then(|m| m.due_date.as_deref())
        .and_then(|d| d.parse::<NaiveDate>().ok());
    let soft = case.first_minor && kind == DocumentKind::CautionNotice;
    let Headings {
        basis: basis_heading,
        demands: demands_heading,
        consequences: consequences_heading,
        action: basis_action,
    } = headings(kind);
    let suspension_scope = match measure.code.as_str() {
        "suspend_sales_partial" => format!(
            "暂停你单位以下经营范围的药品销售：{}",
            measure.detail.clone().unwrap_or_default()
        ),
        "suspend_sales_products" => format!(
            "暂停销售以下药品：{}",
            measure.detail.clone().unwrap_or_default()
        ),
        _ => "暂停你单位全部经营范围的药品销售".to_string(),
    };
    let facts_text = if facts.is_empty() {
        "监督检查中发现的缺陷和问题，详见检查记录".to_string()
    } else {
        String::new()
    };
    let procedure = if kind.is_penalty() {
        Some(ProcedureText::of(case, measure, i)?)
    } else {
        None
    };
    let ctx = |base: &str| {
        context! {
            base => base,
            title => kind.title(),
            number => number,
            authority => Value::from(Serde(i.authority)),
            addressee => Value::from(Serde(&addressee)),
            detection => match (kind.is_penalty(), facts.is_empty()) {
                (true, _) => "经立案前核查，结合药品智慧监管平台远程数据监测",
                (false, true) => "经监督检查",
                (false, false) => "本局通过药品智慧监管平台远程数据监测",
            },
            basis_heading => basis_heading,
            facts => Value::from(Serde(&fact_rows(&facts))),
            facts_text => &facts_text,
            inspector_note => edits.note.trim(),
            measures_basis => &rules.documents.measures_basis,
            measure_article => &measure.article,
            extra_basis => if soft { rules.articles.soft_notice.clone() } else { String::new() },
            basis_action => basis_action,
            demands_heading => demands_heading,
            consequences_heading => consequences_heading,
            soft => soft,
            observation_days => rules.leniency.observation_period_days,
            observation_until_zh => observation_until.map(date_zh).unwrap_or_default(),
            due_working_days => report_days,
            due_clause => &due_clause,
            interview_date_zh => "",
            reschedule_days => rules.deadlines.interview_reschedule_notice_working_days,
            suspension_scope => &suspension_scope,
            issued_on_zh => date_zh(i.issued_on),
            p => Value::from(Serde(&procedure)),
            docs => Value::from(Serde(&rules.documents)),
        }
    };
    let template = format!("{}.j2", kind.as_str());
    let (html_base, md_base) = if kind.is_internal() {
        ("form.html.j2", "form.md.j2")
    } else {
        ("base.html.j2", "base.md.j2")
    };
    let run = |html: bool, base: &str| -> Result<String> {
        let env = environment(html)?;
        let t = env
            .get_template(&template)
            .map_err(|e| CaseworkError::Template {
                template: template.clone(),
                source: e,
            })?;
        t.render(ctx(base)).map_err(|e| CaseworkError::Template {
            template: template.clone(),
            source: e,
        })
    };
    Ok(Rendered {
        html: run(true, html_base)?,
        markdown: run(false, md_base)?,
    })
}

/// The addressee of a case's documents, with the case's own names where the stored addressee
/// lacks them.
fn addressee_of(case: &CaseDetail) -> Addressee {
    let mut addressee: Addressee = serde_json::from_str(&case.addressee_json).unwrap_or_default();
    if addressee.name.is_empty() {
        addressee.name = if case.case.enterprise_name.is_empty() {
            case.case.enterprise_id.clone()
        } else {
            case.case.enterprise_name.clone()
        };
    }
    if addressee.credit_code.is_empty() {
        addressee.credit_code = case.case.enterprise_id.clone();
    }
    if addressee.licence_no.is_empty() {
        addressee.licence_no = "（未登记）".to_string();
    }
    addressee
}

/// The second, third and fourth headings of a letter and the action its basis announces.
struct Headings {
    basis: &'static str,
    demands: &'static str,
    consequences: &'static str,
    action: &'static str,
}

fn headings(kind: DocumentKind) -> Headings {
    let h = |basis, demands, consequences, action| Headings {
        basis,
        demands,
        consequences,
        action,
    };
    match kind {
        DocumentKind::CautionNotice => h(
            "依据",
            "整改要求和期限",
            "不按期整改的后果",
            "对你单位予以告诫",
        ),
        DocumentKind::InterviewNotice => h(
            "依据",
            "约谈事项和整改期限",
            "不接受约谈的后果",
            "决定对你单位进行约谈",
        ),
        DocumentKind::SuspensionDecision => h(
            "依据",
            "决定内容和整改期限",
            "违反本决定的后果",
            "决定对你单位采取暂停销售措施",
        ),
        DocumentKind::LiftingNotice => h("依据", "解除事项", "后续要求", "决定解除暂停销售措施"),
        DocumentKind::FilingApproval => h("依据", "", "", "立案调查"),
        DocumentKind::PenaltyNotice => h(
            "拟作出的行政处罚及其理由、依据",
            "你单位享有的权利",
            "逾期未行使权利的后果",
            "拟对你单位作出行政处罚",
        ),
        DocumentKind::HearingNotice => h(
            "听证的时间、地点和事项",
            "你单位在听证中的权利",
            "不出席听证的后果",
            "举行听证",
        ),
        DocumentKind::PenaltyDecision => h(
            "处罚的理由、依据和内容",
            "履行方式和期限",
            "救济途径和逾期不履行的后果",
            "对你单位作出行政处罚",
        ),
    }
}

/// What a penalty document states of its procedure: the referral, the filing, the notice and
/// the hearing from the case's trail, the periods from the rules, and what the case officer
/// wrote (a placeholder where the draft does not say yet: the approval refuses it).
#[derive(Debug, Clone, Serialize)]
struct ProcedureText {
    cause: String,
    referred_on_zh: String,
    referral_article: String,
    filed_on_zh: String,
    notice_number: String,
    notice_served_zh: String,
    hearing_on_zh: String,
    statement_days: u32,
    hearing_request_days: u32,
    penalty: String,
    penalty_basis: String,
    violated: String,
    hearing_place: String,
    case_officer: String,
    approver: String,
}

impl ProcedureText {
    fn of(
        case: &CaseDetail,
        referral: &crate::ledger::CaseMeasure,
        i: &Issuing<'_>,
    ) -> Result<Self> {
        let trail = crate::penalty::case_of(case, i.issued_on)?.unwrap_or_default();
        let on = |d: Option<NaiveDate>| d.map(date_zh).unwrap_or_default();
        let clock = |stage: &str| {
            i.rules
                .penalty
                .clock
                .iter()
                .find(|c| c.stage == stage)
                .map_or(0, |c| c.length)
        };
        let written = |v: &str| {
            if v.trim().is_empty() {
                "（待办案人员填写）".to_string()
            } else {
                v.trim().to_string()
            }
        };
        let p = &i.edits.particulars;
        let detail = referral.detail.as_deref().unwrap_or_default();
        let cause = detail
            .strip_prefix(crate::ledger::REFERRAL_DETAIL)
            .unwrap_or(detail)
            .to_string();
        let notice = crate::penalty::document_of(case, DocumentKind::PenaltyNotice);
        Ok(Self {
            cause,
            referred_on_zh: on(trail.lead_received),
            referral_article: referral.article.clone(),
            filed_on_zh: on(trail.filed),
            notice_number: notice.unwrap_or_default().to_string(),
            notice_served_zh: on(trail.notice_served),
            hearing_on_zh: on(trail.hearing_on),
            statement_days: clock("statement_period"),
            hearing_request_days: clock("hearing_request"),
            penalty: written(&p.penalty),
            penalty_basis: written(&p.penalty_basis),
            violated: written(&p.violated),
            hearing_place: written(&p.hearing_place),
            case_officer: if i.officer.trim().is_empty() {
                "（待提交）".to_string()
            } else {
                i.officer.to_string()
            },
            approver: if i.actor.trim().is_empty() {
                "（待审批）".to_string()
            } else {
                i.actor.to_string()
            },
        })
    }
}

/// Issues document `kind` for `case_id`: allocates the next number of the series and year,
/// renders, stores the text and appends the `notice_issued` event — all in one IMMEDIATE
/// transaction — then writes `OUT/notices/<number>.{html,md}` when `out` is given. `actor` is
/// the person who approved the document (or the job, in `direct` mode).
#[allow(clippy::too_many_arguments)]
pub fn issue(
    ledger: &mut Ledger,
    case_id: &str,
    kind: DocumentKind,
    issued_on: NaiveDate,
    actor: &str,
    authority: &AuthorityConfig,
    rules: &Rules,
    out: Option<&Path>,
) -> Result<(IssuedDocument, Option<PathBuf>)> {
    authority.validate()?;
    let case = ledger.show(case_id)?;
    let issuing = Issuing {
        kind,
        issued_on,
        actor,
        officer: "",
        authority,
        rules,
        edits: &Edits::default(),
    };
    let (doc, rendered) = ledger.immediate(|tx, path| issue_in(tx, path, &case, &issuing))?;
    pharmwatch_core::faults::point("closed_loop.after_numbering");
    let written = match out {
        Some(dir) => Some(write_files(dir, &doc, &rendered)?),
        None => None,
    };
    pharmwatch_core::faults::point("closed_loop.after_files");
    Ok((doc, written))
}

/// What an issue needs besides the case.
#[derive(Debug, Clone, Copy)]
pub struct Issuing<'a> {
    /// The kind of document.
    pub kind: DocumentKind,
    /// Its date.
    pub issued_on: NaiveDate,
    /// Who approved it (empty in a preview).
    pub actor: &'a str,
    /// Who submitted the draft: the case officer (承办人) a penalty document names (empty in a
    /// direct issue or a preview before submission).
    pub officer: &'a str,
    /// The authority it is issued under (validated by the caller).
    pub authority: &'a AuthorityConfig,
    /// The measures rules.
    pub rules: &'a Rules,
    /// The inspector's edits.
    pub edits: &'a Edits,
}

/// Takes the number and stores the document inside the caller's IMMEDIATE transaction: the
/// number is `MAX(seq) + 1` of the series and year, the document row (whose trigger queues
/// the delivery) and the `notice_issued` event go in with it.
pub fn issue_in(
    tx: &pharmwatch_core::db::Transaction<'_>,
    path: &Path,
    case: &CaseDetail,
    i: &Issuing<'_>,
) -> Result<(IssuedDocument, Rendered)> {
    let case_id = case.case.case_id.as_str();
    let series = format!("{}{}", i.authority.abbreviation, i.kind.series_word());
    let year = i.issued_on.year();
    let seq: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM documents WHERE series = ?1 AND year = ?2",
            pharmwatch_core::params![series, year],
            |r| r.get(0),
        )
        .map_err(|e| sql_err(path, "next document number", e))?;
    let number = format!("{series}〔{year}〕{seq}号");
    if i.kind.is_penalty() {
        crate::penalty::may_issue(case, i.kind)?;
        i.kind
            .check_particulars(&i.edits.particulars)
            .map_err(|why| CaseworkError::ledger(case_id, why))?;
    }
    let rendered = render(&number, case, i)?;
    pharmwatch_core::faults::point("closed_loop.after_rendering");
    let authority_json =
        serde_json::to_string(i.authority).map_err(|e| CoreError::Internal(e.to_string()))?;
    tx.execute(
        "INSERT INTO documents (series, year, seq, number, kind, case_id, issued_on, html,
                                markdown, authority_json, approved_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        pharmwatch_core::params![
            series,
            year,
            seq,
            number,
            i.kind.as_str(),
            case_id,
            i.issued_on.to_string(),
            rendered.html,
            rendered.markdown,
            authority_json,
            i.actor
        ],
    )
    .map_err(|e| sql_err(path, "store document", e))?;
    append_event(
        tx,
        path,
        case_id,
        "notice_issued",
        i.issued_on,
        i.actor,
        i.kind.title(),
        Some(&number),
    )?;
    // Approving the filing form files the case (负责人批准立案); approving the decision decides
    // it: the procedure's stage is the document's day, in the same transaction.
    let stage = match i.kind {
        DocumentKind::FilingApproval => Some("penalty_filed"),
        DocumentKind::PenaltyDecision => Some("penalty_decided"),
        _ => None,
    };
    if let Some(event) = stage {
        append_event(
            tx,
            path,
            case_id,
            event,
            i.issued_on,
            i.actor,
            i.kind.title(),
            Some(&number),
        )?;
    }
    Ok((
        IssuedDocument {
            number,
            series,
            year,
            seq,
            kind: i.kind.as_str().to_string(),
            case_id: case_id.to_string(),
            issued_on: i.issued_on.to_string(),
        },
        rendered,
    ))
}

/// The authority a document was issued under (stored with it), when it was recorded.
pub fn document_authority(
    conn: &pharmwatch_core::db::Conn,
    path: &Path,
    number: &str,
) -> Result<Option<AuthorityConfig>> {
    use pharmwatch_core::db::OptionalExtension;
    let json: Option<String> = conn
        .query_row(
            "SELECT authority_json FROM documents WHERE number = ?1",
            [number],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| sql_err(path, "document authority", e))?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

/// The file stem of a document under `OUT/notices/`: kind, year, number in the series and
/// the case id's safe characters (the case id comes from a person or a file).
fn file_stem(kind: &str, year: i32, seq: i64, case_id: &str) -> String {
    let case: String = case_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{kind}_{year}_{seq:04}_{case}")
}

/// Writes `text` to `path` through a temporary file renamed over it: a reader (or a crash)
/// never sees half a document.
fn write_whole(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, text).map_err(|e| CoreError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| CoreError::io(path, e))?;
    Ok(())
}

/// Writes a document's HTML and Markdown under `OUT/notices/`; returns the HTML path.
pub fn write_files(out: &Path, doc: &IssuedDocument, r: &Rendered) -> Result<PathBuf> {
    let dir = out.join(NOTICES_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| CoreError::io(&dir, e))?;
    let stem = file_stem(&doc.kind, doc.year, doc.seq, &doc.case_id);
    let html = dir.join(format!("{stem}.html"));
    write_whole(&html, &r.html)?;
    let md = dir.join(format!("{stem}.md"));
    write_whole(&md, &r.markdown)?;
    Ok(html)
}

/// Writes the files of every stored document that lacks them under `OUT/notices/` (the
/// number was taken and the text stored, and the process stopped before the files were
/// written), from the stored text; returns how many documents were restored. The nightly
/// closed loop calls it first, so the files always match the store after a crash.
pub fn restore_files(ledger: &Ledger, out: &Path) -> Result<usize> {
    let path = ledger.store().path().to_path_buf();
    let dir = out.join(NOTICES_DIR);
    let mut st = ledger
        .store()
        .conn_ref()
        .prepare(
            "SELECT kind, year, seq, case_id, html, markdown FROM documents
             ORDER BY series, year, seq",
        )
        .map_err(|e| sql_err(&path, "documents", e))?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .map_err(|e| sql_err(&path, "documents", e))?;
    let mut restored = 0;
    for row in rows {
        let (kind, year, seq, case_id, html, markdown) =
            row.map_err(|e| sql_err(&path, "documents", e))?;
        let stem = file_stem(&kind, year as i32, seq, &case_id);
        let (h, m) = (
            dir.join(format!("{stem}.html")),
            dir.join(format!("{stem}.md")),
        );
        if h.exists() && m.exists() {
            continue;
        }
        std::fs::create_dir_all(&dir).map_err(|e| CoreError::io(&dir, e))?;
        write_whole(&h, &html)?;
        write_whole(&m, &markdown)?;
        restored += 1;
    }
    Ok(restored)
}

/// The facts table of a notice: each risk item with the Chinese name of its indicator.
fn fact_rows(facts: &[RiskItem]) -> Vec<serde_json::Value> {
    facts
        .iter()
        .map(|f| {
            let mut v = serde_json::to_value(f).unwrap_or(serde_json::Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "label".into(),
                    serde_json::Value::from(indicator_zh(&f.indicator)),
                );
            }
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_example_configuration_parses_and_selects_rows() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/pharmwatch.example.toml");
        let cfg: NoticesConfig =
            pharmwatch_core::config::load_with(Some(&path), Vec::new()).unwrap();
        // No authority is configured by the example: nothing can be issued until one is.
        assert!(cfg.authority.is_none());
        assert_eq!(cfg.issue, IssueMode::Draft);
        let refusal = cfg.authority().unwrap_err().to_string();
        assert!(refusal.contains("no issuing authority"), "{refusal}");
        assert!(cfg.selects("D", "sales_spike"));
        assert!(!cfg.selects("A", "sales_spike"));
        let only = NoticesConfig {
            indicators: vec!["expired_batch_sold".into()],
            ..cfg
        };
        assert!(only.selects("D", "sales_spike,expired_batch_sold"));
        assert!(!only.selects("D", "sales_spike"));
        assert!(toml::from_str::<NoticesConfig>("grade = [\"D\"]").is_err());
    }

    #[test]
    fn an_authority_with_an_empty_field_or_a_placeholder_telephone_is_refused() {
        let ok = AuthorityConfig {
            name: "某市市场监督管理局".into(),
            seal_name: "某市市场监督管理局".into(),
            abbreviation: "某市监".into(),
            contact_department: "药品科".into(),
            contact_phone: "0471-6601234".into(),
            address: "某市某路1号".into(),
        };
        assert!(ok.validate().is_ok());
        let zeros = AuthorityConfig {
            contact_phone: "0471-0000000".into(),
            ..ok.clone()
        };
        assert!(
            zeros
                .validate()
                .unwrap_err()
                .to_string()
                .contains("contact_phone")
        );
        let no_seal = AuthorityConfig {
            seal_name: " ".into(),
            ..ok
        };
        assert!(
            no_seal
                .validate()
                .unwrap_err()
                .to_string()
                .contains("seal_name")
        );
        // A configuration naming fewer than the six fields is refused when read.
        assert!(toml::from_str::<AuthorityConfig>("name = \"x\"").is_err());
    }

    #[test]
    fn chinese_dates() {
        assert_eq!(
            date_zh(NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()),
            "2026年3月2日"
        );
    }
}
