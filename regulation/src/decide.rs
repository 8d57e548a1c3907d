//! The measures decision engine: from a [`Finding`] to the measures the regulations call for,
//! each with the article it rests on and its deadline; and the ledger sweep ([`escalate`]) that
//! escalates a case whose deadline passed or whose risk rose.
//!
//! # What is decided
//!
//! Below with the shipped citations; each citation a measure prints is a role of the rules'
//! `[articles]` (or a flag's `article`), so a province's file renumbers them all.
//!
//! From the measures regulation (赣药监):
//! - 第七条, 第二十一条: any deviation (a defect, or a conclusion other than compliant) → deadline
//!   rectification, the report due 30 working days after the inspection, +10 when the form was
//!   re-issued. Not repeated once the rectification has been assessed (`after_rectification`).
//! - 第十条(一): conclusion pending, no critical defect, major ≤ 5, general > 15 → caution.
//! - 第十二条(一): conclusion pending, no critical defect, major > 5 → interview.
//! - 第十条(二)–(四), 第十二条(二)–(十), 第十五条(一)(三)–(六), 第五条(三): the measures of each
//!   condition flag, as listed in the rules.
//! - 第十五条(一), 第七条: overall conclusion non-compliant (on site or after rectification) →
//!   sales suspension. 第十四条, 第十五条(二): the suspension covers the whole business scope,
//!   or only the `affected_scope` classes (partial), or only the `affected_products` (named
//!   drugs); a recall (第五条(三)) then cites 第十五条(二) as well.
//! - 第二十二条: a caution or an interview carries a report due 30 working days after the
//!   decision day; with an `interview_date`, the detail names the last day to ask for another.
//! - 第二十三条: the suspension detail states how it is lifted.
//! - 第二十条, 第二十五条: the regulator's own follow-ups (assessment and decision deadlines for
//!   suspensions and case referrals; the safety credit file entry for administrative measures;
//!   notifying another province).
//!
//! From the inclusive-supervision measures (蒙药监):
//! - (五): rectified and committed → low-risk list; rectification fell short → a new deadline and
//!   the key-monitoring list; a deadline missed → case referral.
//! - (六): a first, minor violation with no or slight harm → 30-day observation period and the
//!   fault-tolerance list with the soft measures; an aggravated violation → case referral.
//! - (八)(九)(十): self-reported or diligent enterprise → guidance interview with exemption or
//!   a lighter penalty; diligent → 3-month publicity and the credit-repair green channel.
//! - (十三): a risk grade configured as high → key-monitoring list.
//!
//! # Invariants of a [`Decision`]
//!
//! - one [`Measure`] per code, in the order of [`MeasureCode`]; when several articles call for
//!   the same measure, its `article` lists them all and its `due_date` is the earliest;
//! - every `article` is made of citations of the rules (`[articles]` and the flags' `article`),
//!   never of text of the code, so a province's own citations replace every shipped one;
//! - every working-day `due_date` is a working day of the calendar, and `due_counts` says how
//!   it was counted (N working days after which date); nothing is guessed for a date the
//!   calendar does not cover: a deadline that runs past the last covered year has no
//!   `due_date` but `due_pending` (the year to load) and the counts that will give it, and the
//!   measure is decided all the same;
//! - measures are never dropped to make room for others (several apply at once, 第五条(二)), and
//!   a measure never stands in for a penalty: suspected violations also get a case referral.

use std::collections::BTreeMap;

use chrono::{Datelike, Days, NaiveDate};
use pharmwatch_schemas::Conclusion;
use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::codes::{MeasureCode, MeasureKind};
use crate::deadline::{self, DuePending, Resolution, WorkingDayCount};
use crate::error::{Error, Result};
use crate::finding::{AfterRectification, Finding, FindingError, Harm, parse_findings};
use crate::rules::Rules;

/// The name of the ledger sweep's day in working-day counts and errors.
pub const SWEEP_DATE: &str = "sweep_date";

/// One measure of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    /// What to do.
    pub code: MeasureCode,
    /// The regulation and article(s) it rests on, e.g. `赣药监 第十条(一)` or
    /// `赣药监 第十二条(二)、第十二条(六); 蒙药监 (八)`.
    pub article: String,
    /// The deadline: the report's due day (working days) or the end of the observation period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<NaiveDate>,
    /// How a working-day deadline is counted: the count that gives `due_date`, or, while the
    /// date is pending, the counts that will give it (the earliest wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub due_counts: Vec<WorkingDayCount>,
    /// Set when the deadline falls beyond the years the calendar covers: the measure stands,
    /// its due date waits for the named year's calendar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_pending: Option<DuePending>,
    /// Why, and what it covers, in one or more `; `-separated sentences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A duty of the regulator that follows from a decision (not a measure on the enterprise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowUpCode {
    /// 第二十条: the inspection agency's overall assessment and proposal.
    AgencyAssessment,
    /// 第二十条: the provincial bureau's risk assessment and decision.
    BureauDecision,
    /// 第二十五条: record the measures in the enterprise's safety credit file (安全信用档案).
    CreditFileEntry,
    /// 第二十五条: notify the regulator of the province storing or transporting the drugs.
    NotifyProvinceRegulator,
    /// 蒙药监 (十): shortened publicity of penalty information.
    ShortenedPublicity,
    /// 蒙药监 (十): credit repair through the green channel.
    CreditRepair,
}

impl FollowUpCode {
    /// Every code, in decision order.
    pub const ALL: [FollowUpCode; 6] = [
        FollowUpCode::AgencyAssessment,
        FollowUpCode::BureauDecision,
        FollowUpCode::CreditFileEntry,
        FollowUpCode::NotifyProvinceRegulator,
        FollowUpCode::ShortenedPublicity,
        FollowUpCode::CreditRepair,
    ];

    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FollowUpCode::AgencyAssessment => "agency_assessment",
            FollowUpCode::BureauDecision => "bureau_decision",
            FollowUpCode::CreditFileEntry => "credit_file_entry",
            FollowUpCode::NotifyProvinceRegulator => "notify_province_regulator",
            FollowUpCode::ShortenedPublicity => "shortened_publicity",
            FollowUpCode::CreditRepair => "credit_repair",
        }
    }
}

/// A follow-up duty of the regulator, same shape as a [`Measure`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowUp {
    /// What to do.
    pub code: FollowUpCode,
    /// The regulation and article(s).
    pub article: String,
    /// When it is due, if the regulation sets a deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<NaiveDate>,
    /// How the deadline is counted (see [`Measure::due_counts`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub due_counts: Vec<WorkingDayCount>,
    /// Set while the deadline waits for the calendar (see [`Measure::due_pending`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_pending: Option<DuePending>,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The measures decided for one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// The case id of the finding.
    pub case_id: String,
    /// The enterprise.
    pub enterprise_id: String,
    /// The measures, one per code, in [`MeasureCode`] order; empty when nothing is called for.
    pub measures: Vec<Measure>,
    /// The regulator's follow-up duties.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follow_up: Vec<FollowUp>,
}

impl Decision {
    /// The measure with this code, if decided.
    pub fn measure(&self, code: MeasureCode) -> Option<&Measure> {
        self.measures.iter().find(|m| m.code == code)
    }

    /// The codes decided, in order.
    pub fn codes(&self) -> Vec<MeasureCode> {
        self.measures.iter().map(|m| m.code).collect()
    }

    /// The follow-up with this code, if any.
    pub fn follow_up(&self, code: FollowUpCode) -> Option<&FollowUp> {
        self.follow_up.iter().find(|m| m.code == code)
    }
}

/// How an entry's due date is set.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Due {
    /// No deadline from this source.
    None,
    /// A date in calendar days (the end of an observation period).
    On(NaiveDate),
    /// A working-day count, resolved with the calendar when the decision is finished.
    Count(WorkingDayCount),
    /// The 第二十二条 report after a caution letter or an interview, counted once at the end.
    NoticeReport,
}

#[derive(Debug, Default)]
struct Entry {
    articles: Vec<String>,
    due: Option<NaiveDate>,
    counts: Vec<WorkingDayCount>,
    notice_report: bool,
    details: Vec<String>,
}

/// A merged entry, ready to become a [`Measure`] or a [`FollowUp`].
struct Row<C> {
    code: C,
    article: String,
    due_date: Option<NaiveDate>,
    due_counts: Vec<WorkingDayCount>,
    due_pending: Option<DuePending>,
    detail: Option<String>,
}

/// A code of a decision entry, named in errors.
trait Code: Ord + Copy {
    fn name(self) -> &'static str;
}

impl Code for MeasureCode {
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl Code for FollowUpCode {
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// Collects entries by code, merging articles, due dates and details.
#[derive(Debug)]
struct Collector<C> {
    entries: BTreeMap<C, Entry>,
}

impl<C: Code> Collector<C> {
    fn new() -> Self {
        Self {
            entries: BTreeMap::new(),
        }
    }

    fn add(&mut self, code: C, article: String, due: Due, detail: Option<String>) {
        let entry = self.entries.entry(code).or_default();
        if !entry.articles.contains(&article) {
            entry.articles.push(article);
        }
        match due {
            Due::None => {}
            Due::On(date) => entry.due = Some(entry.due.map_or(date, |d| d.min(date))),
            Due::Count(count) => {
                if !entry.counts.contains(&count) {
                    entry.counts.push(count);
                }
            }
            Due::NoticeReport => entry.notice_report = true,
        }
        if let Some(detail) = detail
            && !entry.details.contains(&detail)
        {
            entry.details.push(detail);
        }
    }

    fn has(&self, code: C) -> bool {
        self.entries.contains_key(&code)
    }

    fn any(&self, pred: impl Fn(C) -> bool) -> bool {
        self.entries.keys().any(|c| pred(*c))
    }

    /// Resolves every entry's deadline with the calendar and returns the rows in code order.
    /// Entries with a notice report count `notice` too and cite `notice_article`, the article
    /// of that deadline. The earliest resolved date wins; when none resolves, the deadline is
    /// pending and the detail says so.
    fn finish(
        self,
        notice_article: &str,
        notice: &WorkingDayCount,
        calendar: &Calendar,
    ) -> Result<Vec<Row<C>>> {
        let mut rows = Vec::with_capacity(self.entries.len());
        for (code, mut entry) in self.entries {
            if entry.notice_report {
                if !entry.counts.contains(notice) {
                    entry.counts.push(notice.clone());
                }
                if !entry.articles.iter().any(|a| a == notice_article) {
                    entry.articles.push(notice_article.to_string());
                }
            }
            let resolved =
                deadline::resolve_earliest(&entry.counts, calendar).map_err(|e| match e {
                    Error::Deadline {
                        deadline,
                        field,
                        source,
                    } => Error::Deadline {
                        deadline: format!("{}: {deadline}", code.name()),
                        field,
                        source,
                    },
                    other => other,
                })?;
            let (mut due_date, mut due_counts, mut due_pending) = (entry.due, Vec::new(), None);
            match resolved {
                Some((Resolution::On(date), counts)) => {
                    if entry.due.is_none_or(|d| date <= d) {
                        due_counts = counts;
                    }
                    due_date = Some(entry.due.map_or(date, |d| d.min(date)));
                }
                Some((Resolution::Pending(pending), counts)) if entry.due.is_none() => {
                    entry.details.push(format!(
                        "{}: {}",
                        pending.describe(),
                        counts
                            .iter()
                            .map(WorkingDayCount::describe)
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ));
                    due_counts = counts;
                    due_pending = Some(pending);
                }
                // A calendar-day date ends before any pending working-day count.
                Some((Resolution::Pending(_), _)) | None => {}
            }
            let detail = (!entry.details.is_empty()).then(|| entry.details.join("; "));
            rows.push(Row {
                code,
                article: join_articles(&entry.articles),
                due_date,
                due_counts,
                due_pending,
                detail,
            });
        }
        Ok(rows)
    }
}

/// The single citations of a joined article (`赣药监 第十条(一)、第十条(三); 蒙药监 (五)` →
/// `赣药监 第十条(一)`, `赣药监 第十条(三)`, `蒙药监 (五)`): the inverse of [`join_articles`].
fn single_citations(joined: &str) -> Vec<String> {
    joined
        .split("; ")
        .flat_map(|group| {
            let (prefix, items) = match group.split_once(' ') {
                Some((p, rest)) => (Some(p), rest),
                None => (None, group),
            };
            items.split('、').map(move |item| match prefix {
                Some(p) => format!("{p} {}", item.trim()),
                None => item.trim().to_string(),
            })
        })
        .filter(|c| !c.trim().is_empty())
        .collect()
}

/// Whether a measure's (joined) article cites `citation` — every single citation of it, as
/// `join_articles` groups them: `蒙药监 (八)、(九)` cites `蒙药监 (九)`; `蒙药监 (十九)` does not.
pub fn cites(article: &str, citation: &str) -> bool {
    let have = single_citations(article);
    let want = single_citations(citation);
    !want.is_empty() && want.iter().all(|c| have.contains(c))
}

/// Joins citations, grouped by regulation in order of first appearance:
/// `赣药监 第十条(一)、第十条(三); 蒙药监 (五)`.
fn join_articles(articles: &[String]) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for article in articles {
        let (prefix, rest) = article.split_once(' ').unwrap_or(("", article.as_str()));
        match groups.iter_mut().find(|(p, _)| *p == prefix) {
            Some((_, items)) => items.push(rest),
            None => groups.push((prefix, vec![rest])),
        }
    }
    groups
        .into_iter()
        .map(|(prefix, items)| {
            if prefix.is_empty() {
                items.join("、")
            } else {
                format!("{prefix} {}", items.join("、"))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The suspension measure(s) for a scope: partial for business-scope classes, named products,
/// or the whole business scope when neither is given (第十四条, 第十五条(二)).
fn add_suspension(
    measures: &mut Collector<MeasureCode>,
    rules: &Rules,
    trigger: String,
    trigger_detail: Option<String>,
    scope: &[String],
    products: &[String],
) {
    let lifting = format!(
        "lifted only after rectification, a written request to resume and a passed GSP \
         compliance inspection ({})",
        rules.articles.suspension_lifting
    );
    let mut targets = Vec::new();
    if !scope.is_empty() {
        targets.push((
            MeasureCode::SuspendSalesPartial,
            format!("business-scope classes: {}", scope.join(", ")),
        ));
    }
    if !products.is_empty() {
        targets.push((
            MeasureCode::SuspendSalesProducts,
            format!("drugs: {}", products.join(", ")),
        ));
    }
    let partial = !targets.is_empty();
    if !partial {
        targets.push((
            MeasureCode::SuspendSalesAll,
            "the whole business scope".to_string(),
        ));
    }
    for (code, what) in targets {
        measures.add(code, trigger.clone(), Due::None, Some(what));
        if partial {
            measures.add(
                code,
                rules.articles.partial_suspension.clone(),
                Due::None,
                None,
            );
        }
        if let Some(detail) = &trigger_detail {
            measures.add(code, trigger.clone(), Due::None, Some(detail.clone()));
        }
        measures.add(code, trigger.clone(), Due::None, Some(lifting.clone()));
    }
}

/// What a suspension or a recall covers: business-scope classes and named drugs.
#[derive(Debug, Clone, Copy)]
struct Coverage<'a> {
    scope: &'a [String],
    products: &'a [String],
}

/// Adds the measures of one rules family (from a flag or the escalation ladder).
fn add_kind(
    measures: &mut Collector<MeasureCode>,
    rules: &Rules,
    kind: MeasureKind,
    article: String,
    detail: Option<String>,
    coverage: Coverage<'_>,
    rectification_due: Due,
) {
    let Coverage { scope, products } = coverage;
    match kind {
        MeasureKind::DeadlineRectification => measures.add(
            MeasureCode::DeadlineRectification,
            article,
            rectification_due,
            detail,
        ),
        MeasureKind::Caution => {
            measures.add(MeasureCode::Caution, article, Due::NoticeReport, detail)
        }
        MeasureKind::Interview => {
            measures.add(MeasureCode::Interview, article, Due::NoticeReport, detail)
        }
        MeasureKind::SuspendSales => {
            add_suspension(measures, rules, article, detail, scope, products)
        }
        MeasureKind::Recall => {
            let what = (!products.is_empty()).then(|| format!("drugs: {}", products.join(", ")));
            measures.add(MeasureCode::Recall, article, Due::None, detail);
            if let Some(what) = what {
                measures.add(
                    MeasureCode::Recall,
                    rules.articles.named_drug_recall.clone(),
                    Due::None,
                    Some(what),
                );
            }
        }
        MeasureKind::CaseReferral => {
            measures.add(MeasureCode::CaseReferral, article, Due::None, detail)
        }
        MeasureKind::KeyMonitoringList => {
            measures.add(MeasureCode::KeyMonitoringList, article, Due::None, detail)
        }
    }
}

/// Decides the measures for one finding (see the module documentation for the rules applied).
///
/// Fails with [`Error::InvalidField`] when the finding breaks an invariant of
/// [`Finding::validate`] (unknown flag, bad credit code, …) and with [`Error::Deadline`] when a
/// date is outside the calendar or a deadline runs past it.
pub fn decide(finding: &Finding, rules: &Rules, calendar: &Calendar) -> Result<Decision> {
    finding.validate(rules, calendar)?;
    let cx = DecisionContext::new(finding, rules, calendar);
    let mut m = Collector::new();

    // The phases run in this order: later ones look at the measures the earlier ones decided.
    add_deadline_rectification(&cx, &mut m);
    add_defect_thresholds(&cx, &mut m);
    add_flag_measures(&cx, &mut m);
    add_non_compliant_suspension(&cx, &mut m);
    add_rectification_outcome(&cx, &mut m);
    add_risk_grade_monitoring(&cx, &mut m);
    add_aggravated_referral(&cx, &mut m);
    add_observation_period(&cx, &mut m)?;
    add_guidance_interviews(&cx, &mut m);
    add_interview_rescheduling(&cx, &mut m)?;
    add_low_risk_list(&cx, &mut m);
    let follow = decision_follow_ups(&cx, &m);

    let notice_article = &rules.articles.notice_report;
    let notice = deadline::notice_report_count(cx.decided, cx.decided_field, rules);
    Ok(Decision {
        case_id: finding.case_id.clone(),
        enterprise_id: finding.enterprise_id.clone(),
        measures: into_measures(m.finish(notice_article, &notice, calendar)?),
        follow_up: into_follow_ups(follow.finish(notice_article, &notice, calendar)?),
    })
}

/// What every phase of [`decide`] reads: the finding, the rules, the calendar, and the values
/// computed once from them.
struct DecisionContext<'a> {
    finding: &'a Finding,
    rules: &'a Rules,
    calendar: &'a Calendar,
    /// The day measures are decided ([`Finding::decision_day`]).
    decided: NaiveDate,
    /// The field `decided` comes from, named in working-day counts and errors.
    decided_field: &'static str,
    /// The assessment of the rectification, if it was assessed.
    after: Option<AfterRectification>,
    /// The overall conclusion is non-compliant, on site or after rectification.
    non_compliant: bool,
    /// What a suspension or a recall covers.
    coverage: Coverage<'a>,
}

impl<'a> DecisionContext<'a> {
    /// Computes the shared values once: the decision day, and whether the overall conclusion
    /// is non-compliant (赣药监 第十五条(一), 第七条: on site or after rectification).
    fn new(finding: &'a Finding, rules: &'a Rules, calendar: &'a Calendar) -> Self {
        let after = finding.after_rectification;
        Self {
            finding,
            rules,
            calendar,
            decided: finding.decision_day(),
            decided_field: if finding.decision_date.is_some() {
                "decision_date"
            } else {
                "inspection_date"
            },
            after,
            non_compliant: finding.conclusion == Conclusion::NonCompliant
                || after == Some(AfterRectification::NonCompliant),
            coverage: Coverage {
                scope: finding.affected_scope.as_slice(),
                products: finding.affected_products.as_slice(),
            },
        }
    }
}

/// 赣药监 第七条, 第二十一条: any deviation → deadline rectification, unless it was already
/// assessed.
fn add_deadline_rectification(cx: &DecisionContext<'_>, m: &mut Collector<MeasureCode>) {
    let (f, rules) = (cx.finding, cx.rules);
    let deviation = f.conclusion != Conclusion::Compliant || f.defects.total() > 0;
    if !deviation || cx.after.is_some() {
        return;
    }
    let reissued = f.reissue_count.unwrap_or(0) > 0;
    let due = deadline::rectification_report_count(f.inspection_date, reissued, rules);
    let mut detail = format!(
        "conclusion {}, defects critical {} / major {} / general {}; rectification report \
         due {} working days after the inspection",
        rules.conclusion_label(f.conclusion),
        f.defects.critical,
        f.defects.major,
        f.defects.general,
        rules.deadlines.rectification_report_working_days
    );
    if reissued {
        detail.push_str(&format!(
            ", extended by {} working days because the inspection form was re-issued",
            rules.deadlines.reissue_extension_working_days
        ));
    }
    m.add(
        MeasureCode::DeadlineRectification,
        rules.articles.deadline_rectification.clone(),
        Due::Count(due),
        Some(detail),
    );
}

/// 赣药监 第十条(一) and 第十二条(一): defect thresholds of a pending conclusion (caution,
/// interview).
fn add_defect_thresholds(cx: &DecisionContext<'_>, m: &mut Collector<MeasureCode>) {
    let (f, rules) = (cx.finding, cx.rules);
    let pending = f.conclusion == Conclusion::PendingRectification;
    let critical_ok = f.defects.critical <= rules.defects.max_critical;
    if !(pending && critical_ok) {
        return;
    }
    let d = &rules.defects;
    if f.defects.major <= d.caution_max_major && f.defects.general > d.caution_general_above {
        m.add(
            MeasureCode::Caution,
            rules.articles.caution.clone(),
            Due::NoticeReport,
            Some(format!(
                "no critical defect, {} major (at most {}), {} general (more than {})",
                f.defects.major, d.caution_max_major, f.defects.general, d.caution_general_above
            )),
        );
    }
    if f.defects.major > d.interview_major_above {
        m.add(
            MeasureCode::Interview,
            rules.articles.interview.clone(),
            Due::NoticeReport,
            Some(format!(
                "no critical defect, {} major (more than {})",
                f.defects.major, d.interview_major_above
            )),
        );
    }
}

/// 赣药监 第十条(二)–(四), 第十二条(二)–(十), 第十五条(一)(三)–(六), 第五条(三): the measures of
/// each condition flag, with the article the rules give it.
fn add_flag_measures(cx: &DecisionContext<'_>, m: &mut Collector<MeasureCode>) {
    let (f, rules) = (cx.finding, cx.rules);
    for name in &f.flags {
        let Some(flag) = rules.flag(name) else {
            continue; // validate() refused unknown flags already
        };
        for kind in &flag.measures {
            let rectification_due = if *kind == MeasureKind::DeadlineRectification {
                Due::Count(deadline::rectification_report_count(
                    f.inspection_date,
                    false,
                    rules,
                ))
            } else {
                Due::None
            };
            add_kind(
                m,
                rules,
                *kind,
                flag.article.clone(),
                Some(format!(
                    "{name}: {}",
                    flag.description.trim_end_matches('.')
                )),
                cx.coverage,
                rectification_due,
            );
        }
    }
}

/// 赣药监 第十五条(一), 第七条: overall conclusion non-compliant → sales suspension; and
/// 第十五条(二): a recall beside a partial or named-drug suspension rests on it as well.
fn add_non_compliant_suspension(cx: &DecisionContext<'_>, m: &mut Collector<MeasureCode>) {
    let rules = cx.rules;
    if cx.non_compliant {
        let stage = if cx.after.is_some() {
            "after rectification"
        } else {
            "on site"
        };
        add_suspension(
            m,
            rules,
            rules.articles.non_compliant_suspension.clone(),
            Some(format!(
                "overall conclusion {} {stage}",
                rules.conclusion_label(Conclusion::NonCompliant)
            )),
            cx.coverage.scope,
            cx.coverage.products,
        );
    }
    // A recall beside a partial or named-drug suspension also rests on 第十五条(二).
    if m.has(MeasureCode::Recall)
        && (m.has(MeasureCode::SuspendSalesPartial) || m.has(MeasureCode::SuspendSalesProducts))
    {
        m.add(
            MeasureCode::Recall,
            rules.articles.recall_beside_suspension.clone(),
            Due::None,
            None,
        );
    }
}

/// 蒙药监 (五): rectification fell short → a new deadline and the key-monitoring list; still
/// not rectified after the deadline → the key-monitoring list and case filing.
fn add_rectification_outcome(cx: &DecisionContext<'_>, m: &mut Collector<MeasureCode>) {
    let rules = cx.rules;
    if cx.after == Some(AfterRectification::NonCompliant) {
        let due = deadline::follow_up_rectification_count(cx.decided, cx.decided_field, rules);
        m.add(
            MeasureCode::DeadlineRectification,
            rules.articles.follow_up_rectification.clone(),
            Due::Count(due),
            Some(format!(
                "rectification fell short: new deadline of {} working days",
                rules.deadlines.follow_up_rectification_working_days
            )),
        );
        m.add(
            MeasureCode::KeyMonitoringList,
            rules.articles.shortfall_key_monitoring.clone(),
            Due::None,
            Some("rectification fell short".to_string()),
        );
    }
    // 蒙药监 (五): still not rectified after the deadline → case filing.
    if cx.finding.deadline_missed {
        m.add(
            MeasureCode::KeyMonitoringList,
            rules.articles.overdue_key_monitoring.clone(),
            Due::None,
            Some("rectification deadline missed".to_string()),
        );
        m.add(
            MeasureCode::CaseReferral,
            rules.articles.overdue_case_referral.clone(),
            Due::None,
            Some("rectification still not done after the deadline: case filing".to_string()),
        );
    }
}

/// 蒙药监 (十三): a risk grade configured as high → key-monitoring list.
fn add_risk_grade_monitoring(cx: &DecisionContext<'_>, m: &mut Collector<MeasureCode>) {
    let rules = cx.rules;
    if let Some(grade) = cx.finding.risk_grade
        && rules.leniency.key_monitoring_grades.contains(&grade)
    {
        m.add(
            MeasureCode::KeyMonitoringList,
            rules.articles.risk_grade_key_monitoring.clone(),
            Due::None,
            Some(format!("risk grade {grade}")),
        );
    }
}

/// 蒙药监 (六): intentional, repeated or egregious → punished severely (case referral).
fn add_aggravated_referral(cx: &DecisionContext<'_>, m: &mut Collector<MeasureCode>) {
    if cx.finding.aggravating {
        m.add(
            MeasureCode::CaseReferral,
            cx.rules.articles.aggravated_referral.clone(),
            Due::None,
            Some("intentional, repeated or egregious violation: no leniency".to_string()),
        );
    }
}

/// 蒙药监 (六): first, minor violation with no or slight harm → observation period and the
/// fault-tolerance list. "Minor" here: no critical defect, not non-compliant, and nothing that
/// calls for a suspension or a case (so it runs after every phase that may decide those).
///
/// Fails with [`Error::InvalidField`] when the observation period ends beyond the supported
/// dates.
fn add_observation_period(cx: &DecisionContext<'_>, m: &mut Collector<MeasureCode>) -> Result<()> {
    let (f, rules) = (cx.finding, cx.rules);
    let excluded_by_flag = f
        .flags
        .iter()
        .any(|flag| rules.leniency.excluding_flags.contains(flag));
    let lenient = f.first_violation
        && matches!(f.harm, Some(Harm::None | Harm::Slight))
        && !f.aggravating
        && f.defects.critical == 0
        && !cx.non_compliant
        && !excluded_by_flag
        && !m.any(|c| c.is_suspension() || c == MeasureCode::CaseReferral);
    if !lenient {
        return Ok(());
    }
    let end = cx
        .decided
        .checked_add_days(Days::new(u64::from(rules.leniency.observation_period_days)))
        .ok_or_else(|| Error::InvalidField {
            field: cx.decided_field.to_string(),
            reason: "observation period ends beyond the supported dates".to_string(),
        })?;
    m.add(
        MeasureCode::ObservationPeriod,
        rules.articles.observation_period.clone(),
        Due::On(end),
        Some(format!(
            "first violation, minor, harm {}: {}-day correction period, prudent case filing",
            if f.harm == Some(Harm::None) {
                "none"
            } else {
                "slight"
            },
            rules.leniency.observation_period_days
        )),
    );
    m.add(
        MeasureCode::FaultToleranceList,
        rules.articles.fault_tolerance_list.clone(),
        Due::None,
        Some(format!(
            "soft measures preferred, in this order: {}",
            rules.leniency.soft_measures.join(" → ")
        )),
    );
    Ok(())
}

/// 蒙药监 (八)(九): self-reported or diligent → guidance interview, exemption.
fn add_guidance_interviews(cx: &DecisionContext<'_>, m: &mut Collector<MeasureCode>) {
    let (f, rules) = (cx.finding, cx.rules);
    if f.self_reported {
        m.add(
            MeasureCode::Interview,
            rules.articles.self_report_interview.clone(),
            Due::None,
            Some(
                "guidance interview (约谈引导): found and reported the drug itself; penalty \
                 exempted or reduced (criminal liability excepted)"
                    .to_string(),
            ),
        );
    }
    if f.diligent {
        m.add(
            MeasureCode::Interview,
            rules.articles.diligent_interview.clone(),
            Due::None,
            Some(
                "guidance interview (约谈引导): purchase checks and traceability duties proven, \
                 no fault; exempted from penalty"
                    .to_string(),
            ),
        );
    }
}

/// 赣药监 第二十二条: an interview with an `interview_date` names the last day to ask for
/// another date (pending while that day is beyond the calendar).
///
/// Fails with [`Error::Deadline`] when that day cannot be counted within the calendar.
fn add_interview_rescheduling(
    cx: &DecisionContext<'_>,
    m: &mut Collector<MeasureCode>,
) -> Result<()> {
    let (rules, calendar) = (cx.rules, cx.calendar);
    let Some(interview_date) = cx.finding.interview_date else {
        return Ok(());
    };
    if !m.has(MeasureCode::Interview) {
        return Ok(());
    }
    let notice_days = rules.deadlines.interview_reschedule_notice_working_days;
    let last = if interview_date > calendar.last_covered_day() {
        None
    } else {
        let last = deadline::reschedule_request_deadline(interview_date, rules, calendar).map_err(
            |source| Error::Deadline {
                deadline: format!(
                    "interview: last day to ask for another date, {notice_days} working days \
                     before interview_date {interview_date}"
                ),
                field: "interview_date".to_string(),
                source: Box::new(source),
            },
        )?;
        Some(last)
    };
    let by = match last {
        Some(last) => format!("by {last}"),
        None => format!(
            "by a day set once the {} working-day calendar is loaded",
            calendar.last_covered_day().year() + 1
        ),
    };
    m.add(
        MeasureCode::Interview,
        rules.articles.interview_rescheduling.clone(),
        Due::None,
        Some(format!(
            "interview on {interview_date}; a written request for another date must be filed \
             {by} (at least {notice_days} working days before)"
        )),
    );
    Ok(())
}

/// 蒙药监 (五): rectified (or compliant) and committed → low-risk list, when nothing else
/// weighs against it (so it runs after every other measure is decided).
fn add_low_risk_list(cx: &DecisionContext<'_>, m: &mut Collector<MeasureCode>) {
    let (f, rules) = (cx.finding, cx.rules);
    let rectified = cx.after == Some(AfterRectification::Compliant)
        || (f.conclusion == Conclusion::Compliant && f.defects.total() == 0);
    let grade_allows = f
        .risk_grade
        .is_none_or(|g| rules.leniency.low_risk_grades.contains(&g));
    let weighs_against = m.any(|c| {
        matches!(
            c,
            MeasureCode::Caution
                | MeasureCode::Interview
                | MeasureCode::CaseReferral
                | MeasureCode::KeyMonitoringList
                | MeasureCode::Recall
        ) || c.is_suspension()
    });
    if f.compliance_commitment && rectified && grade_allows && !weighs_against {
        m.add(
            MeasureCode::LowRiskList,
            rules.articles.low_risk_list.clone(),
            Due::None,
            Some("rectified and committed to lawful operation: fewer inspections".to_string()),
        );
    }
}

/// The regulator's follow-ups of the decided measures: 赣药监 第二十条 (assessment and decision
/// deadlines for suspensions and case referrals), 第二十五条 (the safety credit file entry for
/// administrative measures; notifying another province) and 蒙药监 (十) (shortened publicity
/// and credit repair for a diligent enterprise).
fn decision_follow_ups(
    cx: &DecisionContext<'_>,
    m: &Collector<MeasureCode>,
) -> Collector<FollowUpCode> {
    let (f, rules) = (cx.finding, cx.rules);
    let mut follow = Collector::new();
    if m.any(|c| c.is_suspension() || c == MeasureCode::CaseReferral) {
        let (agency, bureau) = deadline::assessment_counts(f.inspection_date, rules);
        follow.add(
            FollowUpCode::AgencyAssessment,
            rules.articles.agency_assessment.clone(),
            Due::Count(agency),
            Some(format!(
                "overall assessment and proposed measures within {} working days of the inspection",
                rules.deadlines.agency_assessment_working_days
            )),
        );
        follow.add(
            FollowUpCode::BureauDecision,
            rules.articles.bureau_decision.clone(),
            Due::Count(bureau),
            Some(format!(
                "risk assessment and decision within {} working days of the proposal",
                rules.deadlines.bureau_decision_working_days
            )),
        );
    }
    if m.any(MeasureCode::is_administrative_measure) {
        follow.add(
            FollowUpCode::CreditFileEntry,
            rules.articles.credit_file_entry.clone(),
            Due::None,
            Some("record the measures and their execution in the safety credit file".to_string()),
        );
        if f.cross_province_storage {
            follow.add(
                FollowUpCode::NotifyProvinceRegulator,
                rules.articles.notify_province_regulator.clone(),
                Due::None,
                Some(
                    "notify the regulator of the province storing or transporting the drugs"
                        .to_string(),
                ),
            );
        }
    }
    if f.diligent {
        follow.add(
            FollowUpCode::ShortenedPublicity,
            rules.articles.shortened_publicity.clone(),
            Due::None,
            Some(format!(
                "publicity of any penalty information limited to {} months",
                rules.leniency.publicity_period_months
            )),
        );
        follow.add(
            FollowUpCode::CreditRepair,
            rules.articles.credit_repair.clone(),
            Due::None,
            Some("credit repair through the green channel".to_string()),
        );
    }
    follow
}

fn into_measures(rows: Vec<Row<MeasureCode>>) -> Vec<Measure> {
    rows.into_iter()
        .map(|row| Measure {
            code: row.code,
            article: row.article,
            due_date: row.due_date,
            due_counts: row.due_counts,
            due_pending: row.due_pending,
            detail: row.detail,
        })
        .collect()
}

fn into_follow_ups(rows: Vec<Row<FollowUpCode>>) -> Vec<FollowUp> {
    rows.into_iter()
        .map(|row| FollowUp {
            code: row.code,
            article: row.article,
            due_date: row.due_date,
            due_counts: row.due_counts,
            due_pending: row.due_pending,
            detail: row.detail,
        })
        .collect()
}

/// Decides every finding of a JSON array (the `pharmwatch measures decide` input).
///
/// Returns the decisions of the findings that could be decided, in input order, and one
/// [`FindingError`] per finding that could not (malformed, unknown flag, date outside the
/// calendar …), naming its index, its `case_id` when readable, and the field. A bad finding
/// never stops the others.
pub fn decide_json(
    input: &str,
    rules: &Rules,
    calendar: &Calendar,
) -> (Vec<Decision>, Vec<FindingError>) {
    let (findings, mut errors) = parse_findings(input);
    let mut decisions = Vec::with_capacity(findings.len());
    for (index, finding) in findings {
        match decide(&finding, rules, calendar) {
            Ok(decision) => decisions.push(decision),
            Err(err) => errors.push(FindingError::from_error(
                Some(index),
                Some(finding.case_id.clone()),
                &err,
            )),
        }
    }
    errors.sort_by_key(|e| e.index);
    (decisions, errors)
}

/// A measure of a case that still awaits the enterprise's report or action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenMeasure {
    /// The measure.
    pub code: MeasureCode,
    /// Its deadline, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<NaiveDate>,
}

/// What the case ledger knows about a case, for the nightly sweep ([`escalate`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseState {
    /// The case id.
    pub case_id: String,
    /// The enterprise.
    pub enterprise_id: String,
    /// Measures still open (not yet verified and closed).
    #[serde(default)]
    pub open_measures: Vec<OpenMeasure>,
    /// The enterprise is already on the key-monitoring list for this case.
    #[serde(default)]
    pub on_key_monitoring_list: bool,
    /// The case was already referred for investigation.
    #[serde(default)]
    pub case_referred: bool,
    /// The supervisors judged that the risk has risen during the measures (第二十四条).
    #[serde(default)]
    pub risk_increased: bool,
    /// The enterprise refused an interview without good reason (第二十二条).
    #[serde(default)]
    pub interview_refused: bool,
    /// Business-scope classes concerned, for a suspension reached by escalation.
    #[serde(default)]
    pub affected_scope: Vec<String>,
    /// Drugs concerned, for a suspension reached by escalation.
    #[serde(default)]
    pub affected_products: Vec<String>,
}

/// The nightly ledger sweep of one case on `today`: the measures to add.
///
/// - An open measure whose `due_date` is before `today` is overdue. The first time, the case goes
///   on the key-monitoring list with a new rectification deadline; when it is already there, the
///   case is referred for investigation (蒙药监 (五)); when it is already referred, nothing more.
/// - Risen risk (第二十四条): the next step of the rules' escalation ladder above the highest
///   open measure (the first step when none is on the ladder).
/// - A refused interview (第二十二条): the next step above the interview (or above the highest
///   open measure, if higher).
///
/// An empty `measures` list means nothing to escalate. `today` must not lie before the
/// calendar's first year; new deadlines past its last year are pending the calendar.
pub fn escalate(
    state: &CaseState,
    today: NaiveDate,
    rules: &Rules,
    calendar: &Calendar,
) -> Result<Decision> {
    check_sweep_date(today, calendar)?;
    let mut m = Collector::new();
    add_overdue_escalation(state, today, rules, &mut m);
    add_ladder_escalation(state, today, rules, &mut m)?;

    let mut follow = Collector::new();
    if m.any(MeasureCode::is_administrative_measure) {
        follow.add(
            FollowUpCode::CreditFileEntry,
            rules.articles.credit_file_entry.clone(),
            Due::None,
            Some("record the escalation in the safety credit file".to_string()),
        );
    }
    let notice_article = &rules.articles.notice_report;
    let notice = deadline::notice_report_count(today, SWEEP_DATE, rules);
    Ok(Decision {
        case_id: state.case_id.clone(),
        enterprise_id: state.enterprise_id.clone(),
        measures: into_measures(m.finish(notice_article, &notice, calendar)?),
        follow_up: into_follow_ups(follow.finish(notice_article, &notice, calendar)?),
    })
}

/// The sweep's day must not lie before the calendar (the working-day counts of 赣药监 第二十一条,
/// 第二十二条 and 蒙药监 (五) start from it): fails with [`Error::InvalidField`] otherwise.
fn check_sweep_date(today: NaiveDate, calendar: &Calendar) -> Result<()> {
    if today < calendar.first_covered_day() {
        let years = calendar.years();
        return Err(Error::InvalidField {
            field: SWEEP_DATE.to_string(),
            reason: format!(
                "{today} is before the working-day calendar, which covers {}–{}",
                years.start(),
                years.end()
            ),
        });
    }
    Ok(())
}

/// 蒙药监 (五): an open measure past its deadline → the key-monitoring list with a new
/// rectification deadline; already on the list → case referral; already referred → nothing.
fn add_overdue_escalation(
    state: &CaseState,
    today: NaiveDate,
    rules: &Rules,
    m: &mut Collector<MeasureCode>,
) {
    let overdue: Vec<&OpenMeasure> = state
        .open_measures
        .iter()
        .filter(|o| o.due_date.is_some_and(|due| due < today))
        .collect();
    if overdue.is_empty() {
        return;
    }
    let which = overdue
        .iter()
        .map(|o| {
            format!(
                "{} due {}",
                o.code.as_str(),
                o.due_date.map(|d| d.to_string()).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    if !state.on_key_monitoring_list {
        let due = deadline::follow_up_rectification_count(today, SWEEP_DATE, rules);
        m.add(
            MeasureCode::KeyMonitoringList,
            rules.articles.overdue_key_monitoring.clone(),
            Due::None,
            Some(format!("deadline passed: {which}")),
        );
        m.add(
            MeasureCode::DeadlineRectification,
            rules.articles.overdue_rectification.clone(),
            Due::Count(due),
            Some(format!(
                "deadline passed ({which}): new deadline of {} working days",
                rules.deadlines.follow_up_rectification_working_days
            )),
        );
    } else if !state.case_referred {
        m.add(
            MeasureCode::CaseReferral,
            rules.articles.overdue_case_referral.clone(),
            Due::None,
            Some(format!(
                "still not rectified after the deadline on the key-monitoring list ({which}): \
                 case filing"
            )),
        );
    }
}

/// 赣药监 第二十四条: risen risk → the next step of the escalation ladder above the highest open
/// measure; 第二十二条: an interview refused without good reason → the next step above the
/// interview (or above the highest open measure, if higher).
fn add_ladder_escalation(
    state: &CaseState,
    today: NaiveDate,
    rules: &Rules,
    m: &mut Collector<MeasureCode>,
) -> Result<()> {
    let scope = state.affected_scope.as_slice();
    let products = state.affected_products.as_slice();
    let ladder = &rules.escalation.ladder;
    let highest_open = state
        .open_measures
        .iter()
        .filter_map(|o| o.code.kind())
        .filter_map(|kind| ladder.iter().position(|step| *step == kind))
        .max();
    let mut climb = |from: Option<usize>, article: String, why: &str| -> Result<()> {
        let next = from.map_or(0, |i| i + 1);
        let Some(kind) = ladder.get(next) else {
            return Ok(()); // already at the top of the ladder
        };
        if *kind == MeasureKind::CaseReferral && state.case_referred {
            return Ok(());
        }
        let rectification_due = if *kind == MeasureKind::DeadlineRectification {
            Due::Count(deadline::follow_up_rectification_count(
                today, SWEEP_DATE, rules,
            ))
        } else {
            Due::None
        };
        add_kind(
            m,
            rules,
            *kind,
            article,
            Some(why.to_string()),
            Coverage { scope, products },
            rectification_due,
        );
        Ok(())
    };
    if state.risk_increased {
        climb(
            highest_open,
            rules.articles.risk_escalation.clone(),
            "risk rose during the measures: escalated one step",
        )?;
    }
    if state.interview_refused {
        let interview = ladder.iter().position(|s| *s == MeasureKind::Interview);
        let from = match (highest_open, interview) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        climb(
            from,
            rules.articles.interview_refused.clone(),
            "interview refused without good reason: further measures",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
