//! Compliance guidance for one enterprise (合规指引, "免罚早知道、整改有导航", 蒙药监 (七)): what
//! currently applies to it, read from the case ledger, for the enterprise lead. Serves
//! `pharmwatch guidance ENTERPRISE_ID` and is meant to be reused by the HTTP server.
//!
//! What it gathers: the open cases with their measures, articles, due dates and the working
//! days left; the observation periods still running and their end (蒙药监 (六)); the lists the
//! enterprise is on (low-risk, key-monitoring, fault-tolerance; 蒙药监 (五)(六)); the exemptions
//! it may qualify for (first minor violation corrected within the observation period → no
//! penalty; self-report or proven diligence → guidance interview instead of a penalty, shortened
//! publicity and credit repair; 蒙药监 (六)(八)(九)(十)); and for each measure still awaiting
//! the enterprise, what to submit next and by when.
//!
//! Invariants:
//! - read-only: computing guidance never writes to the ledger;
//! - the enterprise id is validated as a unified social credit code first; an invalid one is a
//!   [`CoreError::InvalidField`] naming `enterprise_id`, never an empty answer;
//! - the ledger is read as it is now; `on` is the reference day from which working days left
//!   (via the calendar) and running periods are counted. A due date the calendar does not cover
//!   gives no working-day count (`working_days_left: null`), never a guess; a deadline whose
//!   date waits for next year's calendar is stated as its count (`due_pending`), and shows its
//!   date as soon as an operator loads that year;
//! - a measure whose state is `done` has no next step; a closed case is never listed as open;
//! - [`Guidance::nothing_applies`] is true exactly when there is no open case, no running
//!   observation period, no current list entry and no exemption.

use chrono::NaiveDate;
use pharmwatch_regulation::{Articles, MeasureCode, Rules};
use serde::Serialize;

use crate::error::Result;
use crate::ledger::{CaseDetail, CaseMeasure, Ledger, parse_code};
pub use pharmwatch_core::ids::validate_enterprise_id;
use pharmwatch_regulation::Calendar;

/// What applies to one enterprise on a given day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Guidance {
    /// The enterprise's unified social credit code.
    pub enterprise_id: String,
    /// Its name as recorded in its cases (empty when unknown).
    pub enterprise_name: String,
    /// The reference day.
    pub on: NaiveDate,
    /// Nothing applies: no open case, observation period, list entry or exemption.
    pub nothing_applies: bool,
    /// The open cases, oldest first.
    pub open_cases: Vec<OpenCase>,
    /// Observation periods still running on `on`.
    pub observation_periods: Vec<ObservationPeriod>,
    /// The lists the enterprise is on.
    pub lists: Vec<ListMembership>,
    /// Exemptions and lighter treatment it may qualify for.
    pub exemptions: Vec<Exemption>,
    /// Number of closed cases on record.
    pub closed_cases: usize,
}

/// An open case and its measures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenCase {
    /// Case id.
    pub case_id: String,
    /// `finding` (inspection) or `risk_list` (remote monitoring).
    pub origin: String,
    /// Day opened.
    pub opened_on: String,
    /// A first minor violation (observation period, soft measures).
    pub first_minor: bool,
    /// Its measures on the enterprise (lists and the observation period are reported apart).
    pub measures: Vec<MeasureGuidance>,
}

/// One measure of an open case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasureGuidance {
    /// Measure code (snake_case).
    pub code: String,
    /// Chinese name with the English term.
    pub name: String,
    /// Article(s) it rests on.
    pub article: String,
    /// `open`, `reported`, `done` or `overdue`.
    pub state: String,
    /// The state in words.
    pub state_name: String,
    /// Due date, if any.
    pub due_date: Option<NaiveDate>,
    /// Working days from `on` (exclusive) to the due date (inclusive); negative when overdue;
    /// `None` without a due date or outside the calendar.
    pub working_days_left: Option<i64>,
    /// While the due date waits for the next year's working-day calendar: the deadline in
    /// words (how many working days from which date), as the notice states it.
    pub due_pending: Option<String>,
    /// The measure's detail as decided.
    pub detail: Option<String>,
    /// What the enterprise must do next; `None` when the measure is done.
    pub next_step: Option<NextStep>,
}

/// What the enterprise submits or does next for a measure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextStep {
    /// `rectification_report`, `await_verification`, `attend_interview`, `resume_request`,
    /// `await_lifting`, `recall_report` or `cooperate_investigation`.
    pub action: String,
    /// The step in words.
    pub text: String,
    /// The day it is due, if any.
    pub by: Option<NaiveDate>,
}

/// A running observation period (观察期, 蒙药监 (六)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservationPeriod {
    /// The case.
    pub case_id: String,
    /// Day it started (the decision day).
    pub started_on: String,
    /// Last day.
    pub ends_on: NaiveDate,
    /// Calendar days from `on` to its end.
    pub days_left: i64,
    /// Article.
    pub article: String,
}

/// A list the enterprise is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListMembership {
    /// `low_risk`, `key_monitoring` or `fault_tolerance`.
    pub list: String,
    /// Chinese name with the English term.
    pub name: String,
    /// The case that put it there.
    pub case_id: String,
    /// Day entered.
    pub entered_on: String,
    /// End (fault-tolerance list: the end of the observation period).
    pub until_date: Option<String>,
    /// Article.
    pub article: String,
    /// What being on the list means for the enterprise.
    pub effect: String,
}

/// An exemption or lighter treatment (免罚、从轻).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exemption {
    /// `first_minor_no_penalty`, `self_report_interview`, `diligent_exemption`,
    /// `shortened_publicity` or `credit_repair`.
    pub code: String,
    /// `applies` (decided on a case), `conditional` (applies if the condition is met in time),
    /// `met` (condition met), `lapsed` (condition no longer met) or `available` (the enterprise
    /// may claim it by showing the condition).
    pub status: String,
    /// The case it comes from, if any.
    pub case_id: Option<String>,
    /// Article.
    pub article: String,
    /// The exemption and its condition in words.
    pub text: String,
}

/// The Chinese name of a measure code, with the English term.
pub fn measure_name(code: &str) -> String {
    let name = match parse_code(code) {
        Some(MeasureCode::DeadlineRectification) => "限期整改 (deadline rectification)",
        Some(MeasureCode::Caution) => "告诫 (caution)",
        Some(MeasureCode::Interview) => "约谈 (interview)",
        Some(MeasureCode::SuspendSalesAll) => {
            "暂停全部经营范围销售 (sales suspension, whole scope)"
        }
        Some(MeasureCode::SuspendSalesPartial) => {
            "暂停部分经营范围销售 (sales suspension, part of the scope)"
        }
        Some(MeasureCode::SuspendSalesProducts) => {
            "暂停相关药品销售 (sales suspension, named drugs)"
        }
        Some(MeasureCode::Recall) => "召回 (recall)",
        Some(MeasureCode::CaseReferral) => "立案调查 (case referral)",
        Some(MeasureCode::ObservationPeriod) => "观察期 (observation period)",
        Some(MeasureCode::FaultToleranceList) => "容错清单 (fault-tolerance list)",
        Some(MeasureCode::KeyMonitoringList) => "重点监控名单 (key-monitoring list)",
        Some(MeasureCode::LowRiskList) => "低风险名单 (low-risk list)",
        None => return code.to_string(),
    };
    name.to_string()
}

fn state_name(state: &str) -> String {
    match state {
        "open" => "待办理 (open)",
        "reported" => "已提交报告，待复核 (reported)",
        "done" => "已完成 (done)",
        "overdue" => "已逾期 (overdue)",
        other => other,
    }
    .to_string()
}

/// Working days from `on` to `due`: positive or zero when due is ahead, negative when past.
fn working_days_left(cal: &Calendar, on: NaiveDate, due: NaiveDate) -> Option<i64> {
    if due >= on {
        cal.working_days_between(on, due).ok().map(i64::from)
    } else {
        cal.working_days_between(due, on)
            .ok()
            .map(|n| -i64::from(n))
    }
}

fn parse_day(s: Option<&str>) -> Option<NaiveDate> {
    s.and_then(|d| d.parse::<NaiveDate>().ok())
}

/// The earliest open or overdue report deadline of a case (one rectification report answers
/// every deadline measure of the case).
fn report_due(d: &CaseDetail) -> Option<NaiveDate> {
    d.measures
        .iter()
        .filter(|m| {
            matches!(m.state.as_str(), "open" | "overdue")
                && parse_code(&m.code).is_some_and(|c| {
                    matches!(
                        c,
                        MeasureCode::DeadlineRectification
                            | MeasureCode::Caution
                            | MeasureCode::Interview
                    )
                })
        })
        .filter_map(|m| parse_day(m.due_date.as_deref()))
        .min()
}

fn next_step(
    d: &CaseDetail,
    code: MeasureCode,
    state: &str,
    due: Option<NaiveDate>,
    pending: Option<&str>,
    rules: &Rules,
) -> Option<NextStep> {
    if state == "done" {
        return None;
    }
    let happened = |name: &str| d.events.iter().any(|e| e.event == name);
    let step = |action: &str, text: String, by: Option<NaiveDate>| NextStep {
        action: action.to_string(),
        text,
        by,
    };
    if code.is_suspension() {
        return Some(if !happened("verified") {
            let by = report_due(d);
            step(
                "rectification_report",
                format!(
                    "完成整改并提交整改报告 (rectification report){}；复核通过后提交恢复销售书面申请 \
                     (written resume request)，经 GSP 符合性检查合格后解除暂停 ({})",
                    by.map(|b| format!("，{b} 前")).unwrap_or_default(),
                    rules.articles.suspension_lifting
                ),
                by,
            )
        } else if !happened("resume_requested") {
            step(
                "resume_request",
                format!(
                    "整改已复核通过：提交恢复销售书面申请 (written resume request)，之后接受 GSP \
                     符合性检查 ({})",
                    rules.articles.suspension_lifting
                ),
                None,
            )
        } else {
            step(
                "await_lifting",
                "已提交恢复销售申请：等待 GSP 符合性检查和解除通知 (lifting notice)；解除前不得恢复销售"
                    .to_string(),
                None,
            )
        });
    }
    Some(match (code, state) {
        (MeasureCode::Recall, _) => step(
            "recall_report",
            "按要求实施召回并提交召回报告 (recall report)".to_string(),
            due,
        ),
        (MeasureCode::CaseReferral, _) => step(
            "cooperate_investigation",
            "已移送立案调查 (case referral)：配合调查，如实提供资料".to_string(),
            None,
        ),
        (_, "reported") => step(
            "await_verification",
            "整改报告已收到：等待复核 (verification)，配合现场或远程核查".to_string(),
            None,
        ),
        (MeasureCode::Interview, _) if due.is_none() => step(
            "attend_interview",
            format!(
                "按通知参加约谈 (interview)；如需改期，至少提前 {} 个工作日书面申请 ({})",
                rules.deadlines.interview_reschedule_notice_working_days,
                rules.articles.interview_rescheduling
            ),
            None,
        ),
        (_, "overdue") => step(
            "rectification_report",
            format!(
                "整改报告已逾期{}：立即提交整改报告 (rectification report)；逾期仍未整改将列入\
                 重点监控名单并可能立案 ({})",
                due.map(|b| format!("（原定 {b}）")).unwrap_or_default(),
                rules.articles.overdue_key_monitoring
            ),
            due,
        ),
        _ => step(
            "rectification_report",
            match (due, pending) {
                (Some(b), _) => format!("{b} 前提交整改报告 (rectification report)"),
                (None, Some(p)) => format!("{p}提交整改报告 (rectification report)"),
                (None, None) => "提交整改报告 (rectification report)".to_string(),
            },
            due,
        ),
    })
}

fn list_name(list: &str) -> String {
    match list {
        "low_risk" => "低风险名单 (low-risk list)",
        "key_monitoring" => "重点监控名单 (key-monitoring list)",
        "fault_tolerance" => "容错清单 (fault-tolerance list)",
        other => other,
    }
    .to_string()
}

fn list_effect(list: &str, rules: &Rules) -> String {
    match list {
        "low_risk" => "减少现场检查频次，以非现场监管为主 (fewer inspections)".to_string(),
        "key_monitoring" => "加强监控和检查 (closer monitoring)；整改期限再次逾期将启动立案程序 \
                             (case filing)"
            .to_string(),
        "fault_tolerance" => format!(
            "优先采用柔性措施 (soft measures preferred)：{}",
            rules.leniency.soft_measures.join(" → ")
        ),
        _ => String::new(),
    }
}

/// What applies to `enterprise_id` on `on`, from the ledger.
pub fn guidance(
    ledger: &Ledger,
    enterprise_id: &str,
    on: NaiveDate,
    rules: &Rules,
    cal: &Calendar,
) -> Result<Guidance> {
    validate_enterprise_id(enterprise_id)?;
    let mut cases = ledger.list(false, Some(enterprise_id))?;
    cases.sort_by(|a, b| (&a.opened_on, &a.case_id).cmp(&(&b.opened_on, &b.case_id)));
    let mut out = Guidance {
        enterprise_id: enterprise_id.to_string(),
        enterprise_name: cases
            .iter()
            .rev()
            .map(|c| c.enterprise_name.clone())
            .find(|n| !n.is_empty())
            .unwrap_or_default(),
        on,
        nothing_applies: false,
        open_cases: Vec::new(),
        observation_periods: Vec::new(),
        lists: Vec::new(),
        exemptions: Vec::new(),
        closed_cases: cases.iter().filter(|c| c.status == "closed").count(),
    };
    let cite = &rules.articles;
    let mut claimed = Claimed::default();
    for summary in &cases {
        let d = ledger.show(&summary.case_id)?;
        let obs = observation(&d, on, cite, &mut out);
        if d.case.status != "open" {
            continue;
        }
        let mut measures = Vec::new();
        for m in &d.measures {
            let Some(code) = parse_code(&m.code) else {
                continue;
            };
            if code.kind().is_none() || code == MeasureCode::KeyMonitoringList {
                // Lists and the observation period are reported in their own sections.
                continue;
            }
            if code == MeasureCode::Interview {
                interview_exemptions(&d, m, cite, rules, &mut claimed, &mut out);
            }
            measures.push(measure_guidance(&d, m, code, on, cal, rules));
        }
        out.open_cases.push(OpenCase {
            case_id: d.case.case_id.clone(),
            origin: d.case.origin.clone(),
            opened_on: d.case.opened_on.clone(),
            first_minor: d.first_minor || obs,
            measures,
        });
    }
    // Lists: every entry of the enterprise, the fault-tolerance list only until its end.
    for l in ledger.list_entries(None)? {
        if l.enterprise_id != enterprise_id {
            continue;
        }
        if parse_day(l.until_date.as_deref()).is_some_and(|u| u < on) {
            continue;
        }
        out.lists.push(ListMembership {
            effect: list_effect(&l.list_name, rules),
            name: list_name(&l.list_name),
            list: l.list_name,
            case_id: l.case_id,
            entered_on: l.entered_on,
            until_date: l.until_date,
            article: l.article,
        });
    }
    // With a case open, say which exemptions the enterprise may still claim (免罚早知道).
    if !out.open_cases.is_empty() {
        available_exemptions(cite, rules, &claimed, &mut out);
    }
    out.nothing_applies = out.open_cases.is_empty()
        && out.observation_periods.is_empty()
        && out.lists.is_empty()
        && out.exemptions.is_empty();
    Ok(out)
}

/// Exemptions an open case already claims (so they are not offered again).
#[derive(Default)]
struct Claimed {
    self_report: bool,
    diligent: bool,
}

/// The case's observation period (蒙药监 (六)): the measure's end, or the fault-tolerance
/// list's; a running one is listed, and the no-penalty exemption is stated as it stands
/// (conditional, lapsed or met). Returns whether the case has an observation period.
fn observation(d: &CaseDetail, on: NaiveDate, cite: &Articles, out: &mut Guidance) -> bool {
    let open = d.case.status == "open";
    let obs = d
        .measures
        .iter()
        .find(|m| m.code == MeasureCode::ObservationPeriod.as_str());
    let obs_end = obs
        .and_then(|m| parse_day(m.due_date.as_deref()))
        .or_else(|| {
            d.lists
                .iter()
                .find(|l| l.list_name == "fault_tolerance")
                .and_then(|l| parse_day(l.until_date.as_deref()))
        });
    let Some(end) = obs_end else {
        return obs.is_some();
    };
    let article = obs.map_or_else(|| cite.observation_period.clone(), |m| m.article.clone());
    let started = obs.map_or_else(|| d.case.opened_on.clone(), |m| m.decided_on.clone());
    if end >= on {
        out.observation_periods.push(ObservationPeriod {
            case_id: d.case.case_id.clone(),
            started_on: started,
            ends_on: end,
            days_left: (end - on).num_days(),
            article: article.clone(),
        });
    }
    let closed_on = parse_day(d.case.closed_on.as_deref());
    let exemption = if open && end >= on {
        Some((
            "conditional",
            format!(
                "首次轻微违法 (first minor violation)：在观察期内（{end} 前）完成改正的，\
                 依法免予行政处罚 (no penalty if corrected within the observation period)"
            ),
        ))
    } else if open {
        Some((
            "lapsed",
            format!(
                "观察期已于 {end} 结束而未完成改正：观察期内改正免罚不再适用 \
                 (observation period ended without correction)"
            ),
        ))
    } else if closed_on.is_some_and(|c| c <= end) && end >= on {
        Some((
            "met",
            format!(
                "已在观察期内（{end} 前）完成改正：依法免予行政处罚 \
                 (corrected within the observation period: no penalty)"
            ),
        ))
    } else {
        None
    };
    if let Some((status, text)) = exemption {
        out.exemptions.push(Exemption {
            code: "first_minor_no_penalty".to_string(),
            status: status.to_string(),
            case_id: Some(d.case.case_id.clone()),
            article,
            text,
        });
    }
    obs.is_some()
}

/// The exemptions a guidance interview grants (蒙药监 (八)(九)(十)): a self-report's, and a
/// diligent enterprise's with its shortened publicity and credit repair.
fn interview_exemptions(
    d: &CaseDetail,
    m: &CaseMeasure,
    cite: &Articles,
    rules: &Rules,
    claimed: &mut Claimed,
    out: &mut Guidance,
) {
    let case_id = Some(d.case.case_id.clone());
    let applies = |code: &str, article: &str, text: String| Exemption {
        code: code.to_string(),
        status: "applies".to_string(),
        case_id: case_id.clone(),
        article: article.to_string(),
        text,
    };
    if m.article.contains(&cite.self_report_interview) {
        claimed.self_report = true;
        out.exemptions.push(applies(
            "self_report_interview",
            &cite.self_report_interview,
            "主动发现并报告问题药品 (self-report)：以约谈引导代替处罚，依法免予或减轻\
             处罚 (guidance interview instead of a penalty)"
                .to_string(),
        ));
    }
    if pharmwatch_regulation::cites(&m.article, &cite.diligent_interview) {
        claimed.diligent = true;
        out.exemptions.push(applies(
            "diligent_exemption",
            &cite.diligent_interview,
            "已履行进货查验和追溯义务、无过错 (diligent)：约谈引导，依法免予处罚 \
             (guidance interview, exempted from penalty)"
                .to_string(),
        ));
        out.exemptions.push(applies(
            "shortened_publicity",
            &cite.shortened_publicity,
            format!(
                "行政处罚信息公示期缩短为 {} 个月 (shortened publicity)",
                rules.leniency.publicity_period_months
            ),
        ));
        out.exemptions.push(applies(
            "credit_repair",
            &cite.credit_repair,
            "可通过信用修复绿色通道申请信用修复 (credit-repair green channel)".to_string(),
        ));
    }
}

/// One measure of an open case: its due date (or the count it waits on), working days left
/// and the next step.
fn measure_guidance(
    d: &CaseDetail,
    m: &CaseMeasure,
    code: MeasureCode,
    on: NaiveDate,
    cal: &Calendar,
    rules: &Rules,
) -> MeasureGuidance {
    let due = parse_day(m.due_date.as_deref());
    let pending = match (due, m.due_pending_year) {
        (None, Some(year)) => Some(crate::notices::pending_due_zh(&m.due_counts, year)),
        _ => None,
    };
    let next = next_step(d, code, &m.state, due, pending.as_deref(), rules);
    MeasureGuidance {
        code: m.code.clone(),
        name: measure_name(&m.code),
        article: m.article.clone(),
        state: m.state.clone(),
        state_name: state_name(&m.state),
        due_date: due,
        working_days_left: due.and_then(|x| working_days_left(cal, on, x)),
        due_pending: pending,
        detail: m.detail.clone(),
        next_step: next,
    }
}

/// The exemptions an enterprise with an open case may still claim (免罚早知道).
fn available_exemptions(cite: &Articles, rules: &Rules, claimed: &Claimed, out: &mut Guidance) {
    if !claimed.self_report {
        out.exemptions.push(Exemption {
            code: "self_report_interview".to_string(),
            status: "available".to_string(),
            case_id: None,
            article: cite.self_report_interview.clone(),
            text:
                "如系本企业自行发现假劣药品并停售、封存、报告，且无过错：可申请以约谈引导代替处罚，\
                   依法免予或减轻处罚 (self-report)"
                    .to_string(),
        });
    }
    if !claimed.diligent {
        out.exemptions.push(Exemption {
            code: "diligent_exemption".to_string(),
            status: "available".to_string(),
            case_id: None,
            article: cite.diligent_interview.clone(),
            text: format!(
                "如能证明已履行进货查验、记录追溯义务且无过错：可申请免予处罚，处罚信息公示期缩短为 \
                 {} 个月并走信用修复绿色通道 (diligent; shortened publicity; credit repair, {})",
                rules.leniency.publicity_period_months, cite.shortened_publicity
            ),
        });
    }
}

fn days_left_text(n: Option<i64>) -> String {
    match n {
        Some(0) => "（今天到期 due today）".to_string(),
        Some(n) if n > 0 => format!("（剩余 {n} 个工作日 working days left）"),
        Some(n) => format!("（已逾期 {} 个工作日 overdue）", -n),
        None => String::new(),
    }
}

fn status_name(status: &str) -> &str {
    match status {
        "applies" => "适用 applies",
        "conditional" => "有条件 conditional",
        "met" => "已满足 met",
        "lapsed" => "已失效 lapsed",
        "available" => "可申请 available",
        other => other,
    }
}

/// The text `pharmwatch guidance` prints (Chinese, English terms in parentheses).
pub fn format_text(g: &Guidance) -> String {
    let mut out = format!(
        "企业 {}{} 合规指引 (compliance guidance)，截至 {}\n",
        g.enterprise_id,
        if g.enterprise_name.is_empty() {
            String::new()
        } else {
            format!(" {}", g.enterprise_name)
        },
        g.on
    );
    if g.nothing_applies {
        out.push_str(
            "目前没有适用于本企业的措施、名单、观察期或免罚事项 (nothing applies)：无未结案件、\
             无名单、无观察期。\n",
        );
        if g.closed_cases > 0 {
            out.push_str(&format!("已结案件 (closed cases)：{} 件\n", g.closed_cases));
        }
        return out;
    }
    out.push_str(&format!(
        "未结案件 (open cases)：{} 件\n",
        g.open_cases.len()
    ));
    for c in &g.open_cases {
        out.push_str(&format!(
            "  案件 {}  开立于 {}（{}）{}\n",
            c.case_id,
            c.opened_on,
            if c.origin == "risk_list" {
                "远程监测 remote monitoring"
            } else {
                "检查发现 inspection"
            },
            if c.first_minor {
                "  首次轻微违法 (first minor violation)"
            } else {
                ""
            }
        ));
        for m in &c.measures {
            out.push_str(&format!(
                "    {}  {}  期限 (due) {}{}\n      依据 (article) {}\n",
                m.name,
                m.state_name,
                match (m.due_date, &m.due_pending) {
                    (Some(d), _) => d.to_string(),
                    (None, Some(p)) => format!("{p} (pending the next year's calendar)"),
                    (None, None) => "-".to_string(),
                },
                if m.state == "done" {
                    String::new()
                } else {
                    days_left_text(m.working_days_left)
                },
                m.article
            ));
            if let Some(s) = &m.next_step {
                out.push_str(&format!("      → 下一步 (next)：{}\n", s.text));
            }
        }
    }
    if !g.observation_periods.is_empty() {
        out.push_str("观察期 (observation periods)：\n");
        for p in &g.observation_periods {
            out.push_str(&format!(
                "  案件 {}  {} 至 {}（还剩 {} 天 days left）  {}\n",
                p.case_id, p.started_on, p.ends_on, p.days_left, p.article
            ));
        }
    }
    if !g.lists.is_empty() {
        out.push_str("名单 (lists)：\n");
        for l in &g.lists {
            out.push_str(&format!(
                "  {}  自 {}{}  案件 {}  {}\n    {}\n",
                l.name,
                l.entered_on,
                l.until_date
                    .as_deref()
                    .map(|u| format!(" 至 {u}"))
                    .unwrap_or_default(),
                l.case_id,
                l.article,
                l.effect
            ));
        }
    }
    if !g.exemptions.is_empty() {
        out.push_str("免罚与从轻 (exemptions)：\n");
        for e in &g.exemptions {
            out.push_str(&format!(
                "  [{}] {}  {}{}\n",
                status_name(&e.status),
                e.text,
                e.article,
                e.case_id
                    .as_deref()
                    .map(|c| format!("  案件 {c}"))
                    .unwrap_or_default()
            ));
        }
    }
    out
}
