//! The rules of the measures engine: thresholds, deadlines, the conclusion vocabulary, the
//! condition flags and every citation printed in a measure or a document, as data a province
//! can edit.
//!
//! The default rules are `regulation/data/rules.toml`, embedded at compile time
//! ([`Rules::default`], [`Rules::embedded`]); [`Rules::from_path`] reads an edited copy. The file
//! is commented key by key with the article each value comes from.
//!
//! Invariants checked when a file is loaded ([`Rules::validate`]), so that the engine never
//! meets them at decision time:
//! - no unknown key anywhere (a typo is an error, not a silent default);
//! - every role of `[articles]` is present and cites something (no role falls back to another
//!   province's citation);
//! - flag names are snake_case, every flag names an article and at least one measure;
//! - report deadlines are at least one working day;
//! - the escalation ladder is non-empty and has no repeated step;
//! - no risk grade is both low-risk and key-monitoring; the soft-measure list is non-empty;
//! - every flag in `leniency.excluding_flags` is a known flag;
//! - inspection shares are in `(0, 1]` for every grade, at least two inspectors per enterprise,
//!   every checklist item names its article and known enterprise types.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::codes::{MeasureKind, RiskGrade};
use crate::error::{Error, Result};

/// The rules file shipped with the crate.
const EMBEDDED_TOML: &str = include_str!("../data/rules.toml");

/// The citation of each role an article plays, in full as it is printed (`[articles]` in the
/// rules file), e.g. `赣药监 第十条(一)`. Nothing is cited from code: a province whose regulations
/// number their articles differently edits the file. Two roles that cite the same article today
/// are two fields, so that a province may cite them apart. Every field is required and none may
/// be empty ([`Rules::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Articles {
    /// Deadline rectification for any deviation found at the inspection (赣药监 第七条、第二十一条).
    pub deadline_rectification: String,
    /// Caution letter of a pending conclusion by the defect thresholds (赣药监 第十条(一)).
    pub caution: String,
    /// Interview of a pending conclusion by the defect thresholds (赣药监 第十二条(一)).
    pub interview: String,
    /// The report due after a caution letter or an interview (赣药监 第二十二条).
    pub notice_report: String,
    /// The last day to ask for another interview date (赣药监 第二十二条).
    pub interview_rescheduling: String,
    /// The next escalation step after an interview refused without good reason (赣药监
    /// 第二十二条).
    pub interview_refused: String,
    /// Sales suspension of a non-compliant overall conclusion (赣药监 第十五条(一)).
    pub non_compliant_suspension: String,
    /// A suspension limited to business-scope classes or named drugs (赣药监 第十五条(二)).
    pub partial_suspension: String,
    /// A recall beside a partial or named-drug suspension (赣药监 第十五条(二)).
    pub recall_beside_suspension: String,
    /// A recall naming the drugs it covers (赣药监 第五条(三)).
    pub named_drug_recall: String,
    /// How a sales suspension is lifted, cited in its detail (赣药监 第二十三条).
    pub suspension_lifting: String,
    /// The next escalation step when the risk rose during the measures (赣药监 第二十四条).
    pub risk_escalation: String,
    /// Follow-up: the inspection agency's overall assessment (赣药监 第二十条).
    pub agency_assessment: String,
    /// Follow-up: the provincial bureau's risk assessment and decision (赣药监 第二十条).
    pub bureau_decision: String,
    /// Follow-up: the safety credit file entry of administrative measures (赣药监 第二十五条).
    pub credit_file_entry: String,
    /// Follow-up: notifying the province storing or transporting the drugs (赣药监
    /// 第二十五条).
    pub notify_province_regulator: String,
    /// A case referred for investigation by hand on a suspected violation (赣药监 第十八条,
    /// 第五条（三）).
    pub case_referral: String,
    /// A case closed by hand: the enterprise found at an acceptable state of compliance
    /// (赣药监 第二十二条).
    pub closed_compliant: String,
    /// A case closed by hand: transferred to the investigating unit or merged with its case
    /// (赣药监 第十八条).
    pub closed_transferred: String,
    /// The basis of an inspection plan's checklists (蒙药监 (一)(十三)).
    pub checklist: String,
    /// The low-risk list of a case rectified under a compliance commitment (蒙药监 (五)).
    pub low_risk_list: String,
    /// The new rectification deadline when the rectification fell short (蒙药监 (五)).
    pub follow_up_rectification: String,
    /// The key-monitoring list when the rectification fell short (蒙药监 (五)).
    pub shortfall_key_monitoring: String,
    /// The new rectification deadline the nightly sweep gives when a deadline passed (蒙药监
    /// (五)).
    pub overdue_rectification: String,
    /// The key-monitoring list when a rectification deadline passed (蒙药监 (五)).
    pub overdue_key_monitoring: String,
    /// Case referral when the rectification is still not done after the deadline (蒙药监
    /// (五)).
    pub overdue_case_referral: String,
    /// The observation period of a first, minor violation (蒙药监 (六)).
    pub observation_period: String,
    /// The fault-tolerance list of a first, minor violation (蒙药监 (六)).
    pub fault_tolerance_list: String,
    /// The further basis a caution notice cites for a first, minor violation (蒙药监 (六)).
    pub soft_notice: String,
    /// Case referral of an intentional, repeated or egregious violation (蒙药监 (六)).
    pub aggravated_referral: String,
    /// The guidance interview of a self-reporting enterprise (蒙药监 (八)).
    pub self_report_interview: String,
    /// The guidance interview of a diligent enterprise without fault (蒙药监 (九)). The credit
    /// file and the guidance recognise a diligent case by a measure citing it.
    pub diligent_interview: String,
    /// The shortened publicity of a diligent enterprise's penalty information (蒙药监 (十)).
    pub shortened_publicity: String,
    /// Credit repair through the green channel (蒙药监 (十)).
    pub credit_repair: String,
    /// The key-monitoring list of a high risk grade (蒙药监 (十三)).
    pub risk_grade_key_monitoring: String,
}

impl Articles {
    /// Every role with its citation, in the order of the fields.
    pub fn roles(&self) -> [(&'static str, &str); 35] {
        [
            ("deadline_rectification", &self.deadline_rectification),
            ("caution", &self.caution),
            ("interview", &self.interview),
            ("notice_report", &self.notice_report),
            ("interview_rescheduling", &self.interview_rescheduling),
            ("interview_refused", &self.interview_refused),
            ("non_compliant_suspension", &self.non_compliant_suspension),
            ("partial_suspension", &self.partial_suspension),
            ("recall_beside_suspension", &self.recall_beside_suspension),
            ("named_drug_recall", &self.named_drug_recall),
            ("suspension_lifting", &self.suspension_lifting),
            ("risk_escalation", &self.risk_escalation),
            ("agency_assessment", &self.agency_assessment),
            ("bureau_decision", &self.bureau_decision),
            ("credit_file_entry", &self.credit_file_entry),
            ("notify_province_regulator", &self.notify_province_regulator),
            ("case_referral", &self.case_referral),
            ("closed_compliant", &self.closed_compliant),
            ("closed_transferred", &self.closed_transferred),
            ("checklist", &self.checklist),
            ("low_risk_list", &self.low_risk_list),
            ("follow_up_rectification", &self.follow_up_rectification),
            ("shortfall_key_monitoring", &self.shortfall_key_monitoring),
            ("overdue_rectification", &self.overdue_rectification),
            ("overdue_key_monitoring", &self.overdue_key_monitoring),
            ("overdue_case_referral", &self.overdue_case_referral),
            ("observation_period", &self.observation_period),
            ("fault_tolerance_list", &self.fault_tolerance_list),
            ("soft_notice", &self.soft_notice),
            ("aggravated_referral", &self.aggravated_referral),
            ("self_report_interview", &self.self_report_interview),
            ("diligent_interview", &self.diligent_interview),
            ("shortened_publicity", &self.shortened_publicity),
            ("credit_repair", &self.credit_repair),
            ("risk_grade_key_monitoring", &self.risk_grade_key_monitoring),
        ]
    }
}

/// The wording of each on-site conclusion, used in measure details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConclusionLabels {
    /// 符合要求.
    pub compliant: String,
    /// 待整改后评定.
    pub pending_rectification: String,
    /// 不符合要求.
    pub non_compliant: String,
}

/// Defect-count thresholds of 第十条(一) and 第十二条(一).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefectThresholds {
    /// Items (一) apply only with at most this many critical defects.
    pub max_critical: u32,
    /// Caution when major defects are at most this many ...
    pub caution_max_major: u32,
    /// ... and general defects are more than this many.
    pub caution_general_above: u32,
    /// Interview when major defects are more than this many.
    pub interview_major_above: u32,
}

/// Deadlines, in working days unless the name says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deadlines {
    /// 第二十一条: rectification report after the inspection.
    pub rectification_report_working_days: u32,
    /// 第二十一条: extension when the inspection form is re-issued.
    pub reissue_extension_working_days: u32,
    /// 第二十二条: report after a caution letter or an interview.
    pub caution_interview_report_working_days: u32,
    /// 第二十二条: notice needed to reschedule an interview.
    pub interview_reschedule_notice_working_days: u32,
    /// 第二十条: the agency's overall assessment.
    pub agency_assessment_working_days: u32,
    /// 第二十条: the bureau's decision after the assessment.
    pub bureau_decision_working_days: u32,
    /// 蒙药监 (五): the new deadline after a rectification that fell short.
    pub follow_up_rectification_working_days: u32,
}

/// The inclusive-supervision rules (observation period, lists, publicity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leniency {
    /// 蒙药监 (六): observation period in calendar days.
    pub observation_period_days: u32,
    /// 蒙药监 (十): shortened publicity period in months.
    pub publicity_period_months: u32,
    /// 蒙药监 (六): soft measures to prefer, mildest first.
    pub soft_measures: Vec<String>,
    /// Flags that exclude the observation period (repeated violations).
    pub excluding_flags: Vec<String>,
    /// Risk grades allowed on the low-risk list.
    pub low_risk_grades: Vec<RiskGrade>,
    /// Risk grades that put an enterprise on the key-monitoring list.
    pub key_monitoring_grades: Vec<RiskGrade>,
}

/// The safety credit file (安全信用档案, 赣药监 第二十五条) and the credit grade it feeds
/// (蒙药监 (十)(十三)). Keys of the maps are measure codes (`caution`, `interview`,
/// `suspend_sales_all`, …, `key_monitoring_list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CreditRules {
    /// Months an entry stays public (and lowers the grade) unless `publicity_months` says
    /// otherwise.
    pub default_publicity_months: u32,
    /// Per measure code: months it stays public.
    pub publicity_months: BTreeMap<String, u32>,
    /// Per measure code: grade steps it costs while public (A → B is one step; floor D). A code
    /// not listed costs nothing (it is still in the file).
    pub grade_steps: BTreeMap<String, u32>,
    /// Months a case's measures must have been public before its credit repair may be applied
    /// for (0: at once). A 蒙药监 (十) case opens the green channel at once.
    pub repair_min_months: u32,
    /// The rule credit repair rests on.
    pub repair_basis: String,
}

impl Default for CreditRules {
    fn default() -> Self {
        let steps = [
            ("caution", 1),
            ("interview", 1),
            ("key_monitoring_list", 1),
            ("suspend_sales_all", 2),
            ("suspend_sales_partial", 2),
            ("suspend_sales_products", 2),
            ("case_referral", 2),
        ];
        Self {
            default_publicity_months: 12,
            publicity_months: BTreeMap::new(),
            grade_steps: steps.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            repair_min_months: 3,
            repair_basis: "市场监督管理信用修复管理办法".to_string(),
        }
    }
}

/// Risk-weighted random inspection plans (双随机、一公开; 蒙药监 (一)(十三)): the share of each
/// grade drawn per period, the inspectors per enterprise and the checklist items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectionRules {
    /// The national rule the random draws rest on.
    pub basis: String,
    /// The rule that an inspection is made by at least two officers.
    pub two_officers_basis: String,
    /// Per grade (`A` … `D`): share of its enterprises drawn per period, `0 < share ≤ 1`.
    pub share: BTreeMap<String, f64>,
    /// Inspectors drawn per enterprise (at least 2).
    pub inspectors_per_enterprise: u32,
    /// Days of risk lists up to the plan's day that the plan reads.
    pub risk_days: u32,
    /// Checklist items.
    pub checklist: Vec<ChecklistItem>,
}

impl InspectionRules {
    /// The share drawn of grade `grade` (validated: present for every grade).
    pub fn share_of(&self, grade: RiskGrade) -> f64 {
        self.share.get(&grade.to_string()).copied().unwrap_or(1.0)
    }
}

/// The administrative-penalty procedure after a referral: its statutory clocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PenaltyRules {
    /// Working days before a hearing its notice must be served.
    pub hearing_notice_working_days: u32,
    /// The article of that rule.
    pub hearing_notice_article: String,
    /// The stages' clocks.
    pub clock: Vec<crate::penalty::ClockRule>,
}

/// What the documents cite besides a measure's own article, and the periods they state
/// (`[documents]`). Every field is required: a province names its own basis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentRules {
    /// The law the four measure documents rest on (药品管理法 第九十九条第三款).
    pub measures_basis: String,
    /// 立案审批表: the rule on filing a case.
    pub filing_basis: String,
    /// 行政处罚告知书: telling the party the proposed penalty and its rights.
    pub penalty_notice_basis: String,
    /// 听证通知书: the hearing's notice and the party's rights at it.
    pub hearing_notice_basis: String,
    /// 行政处罚决定书: the decision and what it states.
    pub penalty_decision_basis: String,
    /// Days after service within which a fine is paid.
    pub payment_days: u32,
    /// The article of that period.
    pub payment_article: String,
    /// The article of the late-payment surcharge and enforcement.
    pub late_payment_article: String,
    /// Days within which the party may apply for administrative review.
    pub review_days: u32,
    /// The article of that right.
    pub review_article: String,
    /// Months within which the party may sue.
    pub lawsuit_months: u32,
    /// The article of that right.
    pub lawsuit_article: String,
}

impl DocumentRules {
    /// Every field named and filled: `(key, reason)` of the first that is not.
    fn validate(&self) -> std::result::Result<(), String> {
        for (key, value) in [
            ("measures_basis", &self.measures_basis),
            ("filing_basis", &self.filing_basis),
            ("penalty_notice_basis", &self.penalty_notice_basis),
            ("hearing_notice_basis", &self.hearing_notice_basis),
            ("penalty_decision_basis", &self.penalty_decision_basis),
            ("payment_article", &self.payment_article),
            ("late_payment_article", &self.late_payment_article),
            ("review_article", &self.review_article),
            ("lawsuit_article", &self.lawsuit_article),
        ] {
            if value.trim().is_empty() {
                return Err(format!(
                    "`documents.{key}` is empty: every document cites the rule it rests on"
                ));
            }
        }
        for (key, value) in [
            ("payment_days", self.payment_days),
            ("review_days", self.review_days),
            ("lawsuit_months", self.lawsuit_months),
        ] {
            if value == 0 {
                return Err(format!("`documents.{key}` must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Scale of an enterprise within its type, for its checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// The lower third of its type by volume.
    Small,
    /// The middle third.
    Medium,
    /// The upper third.
    Large,
}

impl Scale {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Small => "small",
            Self::Medium => "medium",
            Self::Large => "large",
        }
    }

    /// The Chinese name.
    pub fn zh(self) -> &'static str {
        match self {
            Self::Small => "小型",
            Self::Medium => "中型",
            Self::Large => "大型",
        }
    }
}

/// One item of an inspection checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecklistItem {
    /// Stable id (snake_case).
    pub id: String,
    /// What to check, in Chinese.
    pub text: String,
    /// What to check, in English.
    pub text_en: String,
    /// The regulation and article it comes from.
    pub article: String,
    /// Enterprise types it applies to (wire names); all when empty.
    pub types: Vec<String>,
    /// Lowest grade it applies to.
    pub min_grade: RiskGrade,
    /// Lowest scale it applies to.
    pub min_scale: Scale,
    /// Risk indicators that put it first when the enterprise was recently flagged for one.
    pub indicators: Vec<String>,
}

/// The escalation ladder of 第二十四条.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    /// Measure families, mildest first.
    pub ladder: Vec<MeasureKind>,
}

/// A condition flag: the article it comes from and the measures it triggers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagRule {
    /// The full citation, as a measure prints it (e.g. `赣药监 第十二条(二)`).
    pub article: String,
    /// The measures the flag triggers.
    pub measures: Vec<MeasureKind>,
    /// What the condition means, in one sentence.
    pub description: String,
}

/// Everything the engine decides by. See the module documentation and `data/rules.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// The citation of each role (`[articles]`).
    pub articles: Articles,
    /// Conclusion wording.
    pub conclusions: ConclusionLabels,
    /// Defect thresholds.
    pub defects: DefectThresholds,
    /// Deadlines.
    pub deadlines: Deadlines,
    /// Inclusive-supervision rules.
    pub leniency: Leniency,
    /// Escalation ladder.
    pub escalation: Escalation,
    /// The safety credit file (赣药监 第二十五条): how long each measure stays public and how
    /// many grade steps it costs. Optional in a rules file (defaults: [`CreditRules::default`]).
    #[serde(default)]
    pub credit: CreditRules,
    /// Condition flags by snake_case name.
    pub flags: BTreeMap<String, FlagRule>,
    /// Inspection plans and checklists.
    pub inspection: InspectionRules,
    /// The penalty procedure's clocks.
    pub penalty: PenaltyRules,
    /// What the documents cite and the periods they state.
    pub documents: DocumentRules,
}

impl Default for Rules {
    /// The rules shipped with the crate.
    ///
    /// # Panics
    ///
    /// Never for the shipped file: a unit test parses and validates it. Use
    /// [`Rules::embedded`] to get the error instead.
    fn default() -> Self {
        Self::embedded().expect("the embedded rules file is valid (checked by a unit test)")
    }
}

impl Rules {
    /// The rules shipped with the crate (`regulation/data/rules.toml`).
    pub fn embedded() -> Result<Self> {
        Self::from_toml_str(EMBEDDED_TOML, "embedded")
    }

    /// The text of the shipped rules file, to start an edited copy from.
    pub fn embedded_text() -> &'static str {
        EMBEDDED_TOML
    }

    /// Reads and validates a rules file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            what: "rules",
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and validates rules TOML; `source_name` names the file in errors.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Self> {
        let rules: Rules = toml::from_str(text).map_err(|err| Error::Rules {
            file: source_name.to_string(),
            reason: err.to_string().trim_end().to_string(),
        })?;
        rules.validate().map_err(|reason| Error::Rules {
            file: source_name.to_string(),
            reason,
        })?;
        Ok(rules)
    }

    /// The inspection section's invariants: a share in `(0, 1]` for every grade, at least two
    /// inspectors, every checklist item with a snake_case id used once, an article, its
    /// texts, known enterprise types.
    fn validate_inspection(&self) -> std::result::Result<(), String> {
        let i = &self.inspection;
        if let Some(k) = i
            .share
            .keys()
            .find(|k| !["A", "B", "C", "D"].contains(&k.as_str()))
        {
            return Err(format!("`inspection.share` names an unknown grade `{k}`"));
        }
        for grade in ["A", "B", "C", "D"] {
            match i.share.get(grade) {
                Some(s) if *s > 0.0 && *s <= 1.0 => {}
                Some(s) => {
                    return Err(format!(
                        "`inspection.share.{grade}` must be above 0 and at most 1, found {s}"
                    ));
                }
                None => return Err(format!("`inspection.share` has no share for grade {grade}")),
            }
        }
        if i.inspectors_per_enterprise < 2 {
            return Err(format!(
                "`inspection.inspectors_per_enterprise` must be at least 2 ({}), found {}",
                i.two_officers_basis, i.inspectors_per_enterprise
            ));
        }
        if i.risk_days == 0 {
            return Err("`inspection.risk_days` must be at least 1".to_string());
        }
        for (key, value) in [
            ("inspection.basis", &i.basis),
            ("inspection.two_officers_basis", &i.two_officers_basis),
        ] {
            if value.trim().is_empty() {
                return Err(format!("`{key}` must not be empty"));
            }
        }
        if i.checklist.is_empty() {
            return Err("`inspection.checklist` must list at least one item".to_string());
        }
        let mut ids = BTreeSet::new();
        for item in &i.checklist {
            if !is_snake_case(&item.id) || !ids.insert(item.id.as_str()) {
                return Err(format!(
                    "checklist item id `{}` must be snake_case and used once",
                    item.id
                ));
            }
            for (field, value) in [
                ("article", &item.article),
                ("text", &item.text),
                ("text_en", &item.text_en),
            ] {
                if value.trim().is_empty() {
                    return Err(format!("checklist item `{}` has no {field}", item.id));
                }
            }
            if let Some(t) = item
                .types
                .iter()
                .find(|t| pharmwatch_schemas::EnterpriseType::parse(t).is_none())
            {
                return Err(format!(
                    "checklist item `{}` names an unknown enterprise type `{t}`",
                    item.id
                ));
            }
        }
        Ok(())
    }

    /// The penalty section's invariants: stage ids snake_case and used once, each clock at
    /// least one unit long and naming its article.
    fn validate_penalty(&self) -> std::result::Result<(), String> {
        let p = &self.penalty;
        if p.hearing_notice_working_days == 0 || p.hearing_notice_article.trim().is_empty() {
            return Err(
                "`penalty.hearing_notice_working_days` must be at least 1 and name its article"
                    .to_string(),
            );
        }
        let mut stages = BTreeSet::new();
        for c in &p.clock {
            if !is_snake_case(&c.stage) || !stages.insert(c.stage.as_str()) {
                return Err(format!(
                    "penalty clock stage `{}` must be snake_case and used once",
                    c.stage
                ));
            }
            if c.length == 0 {
                return Err(format!(
                    "penalty clock `{}` must be at least 1 long",
                    c.stage
                ));
            }
            if c.article.trim().is_empty() || c.name.trim().is_empty() {
                return Err(format!(
                    "penalty clock `{}` must name itself and its article",
                    c.stage
                ));
            }
        }
        Ok(())
    }

    /// Checks the invariants listed in the module documentation; the reason names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (key, value) in self.articles.roles() {
            if value.trim().is_empty() {
                return Err(format!(
                    "[articles] {key} is empty: every measure cites its article"
                ));
            }
        }
        for (key, value) in [
            ("conclusions.compliant", &self.conclusions.compliant),
            (
                "conclusions.pending_rectification",
                &self.conclusions.pending_rectification,
            ),
            ("conclusions.non_compliant", &self.conclusions.non_compliant),
        ] {
            if value.trim().is_empty() {
                return Err(format!("`{key}` must not be empty"));
            }
        }
        let d = &self.deadlines;
        for (key, value) in [
            (
                "deadlines.rectification_report_working_days",
                d.rectification_report_working_days,
            ),
            (
                "deadlines.caution_interview_report_working_days",
                d.caution_interview_report_working_days,
            ),
            (
                "deadlines.agency_assessment_working_days",
                d.agency_assessment_working_days,
            ),
            (
                "deadlines.bureau_decision_working_days",
                d.bureau_decision_working_days,
            ),
            (
                "deadlines.follow_up_rectification_working_days",
                d.follow_up_rectification_working_days,
            ),
            (
                "leniency.observation_period_days",
                self.leniency.observation_period_days,
            ),
            (
                "leniency.publicity_period_months",
                self.leniency.publicity_period_months,
            ),
        ] {
            if value == 0 {
                return Err(format!("`{key}` must be at least 1"));
            }
        }
        if self.leniency.soft_measures.is_empty() {
            return Err("`leniency.soft_measures` must list at least one measure".to_string());
        }
        let low: BTreeSet<_> = self.leniency.low_risk_grades.iter().collect();
        if let Some(grade) = self
            .leniency
            .key_monitoring_grades
            .iter()
            .find(|g| low.contains(g))
        {
            return Err(format!(
                "risk grade {grade} is in both `leniency.low_risk_grades` and \
                 `leniency.key_monitoring_grades`"
            ));
        }
        self.validate_inspection()?;
        self.validate_penalty()?;
        self.documents.validate()?;
        if self.escalation.ladder.is_empty() {
            return Err("`escalation.ladder` must not be empty".to_string());
        }
        let mut seen = BTreeSet::new();
        for step in &self.escalation.ladder {
            if !seen.insert(step) {
                return Err(format!("`escalation.ladder` lists `{step}` twice"));
            }
        }
        for (name, flag) in &self.flags {
            if !is_snake_case(name) {
                return Err(format!(
                    "flag name `{name}` must be snake_case (a-z, 0-9, _; starting with a letter)"
                ));
            }
            if flag.article.trim().is_empty() {
                return Err(format!("`flags.{name}.article` must not be empty"));
            }
            if flag.measures.is_empty() {
                return Err(format!(
                    "`flags.{name}.measures` must name at least one measure"
                ));
            }
        }
        for name in &self.leniency.excluding_flags {
            if !self.flags.contains_key(name) {
                return Err(format!(
                    "`leniency.excluding_flags` names `{name}`, which is not a flag in `[flags]`"
                ));
            }
        }
        for (table, map) in [
            ("credit.publicity_months", &self.credit.publicity_months),
            ("credit.grade_steps", &self.credit.grade_steps),
        ] {
            for key in map.keys() {
                if !crate::codes::MeasureCode::ALL
                    .iter()
                    .any(|c| c.as_str() == key)
                {
                    return Err(format!("`{table}.{key}` is not a measure code"));
                }
            }
        }
        if self.credit.default_publicity_months == 0 {
            return Err("`credit.default_publicity_months` must be at least 1".to_string());
        }
        Ok(())
    }

    /// The rule of a flag, if the flag is known.
    pub fn flag(&self, name: &str) -> Option<&FlagRule> {
        self.flags.get(name)
    }

    /// The wording of a conclusion.
    pub fn conclusion_label(&self, conclusion: pharmwatch_schemas::Conclusion) -> &str {
        use pharmwatch_schemas::Conclusion;
        match conclusion {
            Conclusion::Compliant => &self.conclusions.compliant,
            Conclusion::PendingRectification => &self.conclusions.pending_rectification,
            Conclusion::NonCompliant => &self.conclusions.non_compliant,
        }
    }
}

fn is_snake_case(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && !name.ends_with('_')
        && !name.contains("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_rules_parse_and_carry_the_regulation_numbers() {
        let rules = Rules::embedded().expect("embedded rules are valid");
        assert_eq!(rules, Rules::default());
        assert_eq!(rules.defects.max_critical, 0);
        assert_eq!(rules.defects.caution_max_major, 5);
        assert_eq!(rules.defects.caution_general_above, 15);
        assert_eq!(rules.defects.interview_major_above, 5);
        assert_eq!(rules.deadlines.rectification_report_working_days, 30);
        assert_eq!(rules.deadlines.reissue_extension_working_days, 10);
        assert_eq!(rules.deadlines.caution_interview_report_working_days, 30);
        assert_eq!(rules.deadlines.interview_reschedule_notice_working_days, 2);
        assert_eq!(rules.deadlines.agency_assessment_working_days, 10);
        assert_eq!(rules.deadlines.bureau_decision_working_days, 5);
        assert_eq!(rules.leniency.observation_period_days, 30);
        assert_eq!(rules.leniency.publicity_period_months, 3);
        assert_eq!(rules.leniency.soft_measures.len(), 6);
        assert_eq!(rules.articles.caution, "赣药监 第十条(一)");
        assert_eq!(rules.articles.observation_period, "蒙药监 (六)");
    }

    #[test]
    fn embedded_flags_cover_articles_10_12_and_15() {
        let rules = Rules::default();
        let expected = [
            ("residual_risk", "第十条(二)", MeasureKind::Caution),
            (
                "special_inspection_failed",
                "第十条(三)",
                MeasureKind::Caution,
            ),
            ("other_caution", "第十条(四)", MeasureKind::Caution),
            (
                "systemic_qms_problem",
                "第十二条(二)",
                MeasureKind::Interview,
            ),
            (
                "key_personnel_changes",
                "第十二条(三)",
                MeasureKind::Interview,
            ),
            (
                "repeated_rectification_orders",
                "第十二条(四)",
                MeasureKind::Interview,
            ),
            (
                "complaints_or_media",
                "第十二条(五)",
                MeasureKind::Interview,
            ),
            ("sampling_failures", "第十二条(六)", MeasureKind::Interview),
            ("changes_not_filed", "第十二条(七)", MeasureKind::Interview),
            (
                "annual_report_missing",
                "第十二条(八)",
                MeasureKind::Interview,
            ),
            (
                "prior_defects_unrectified",
                "第十二条(九)",
                MeasureKind::Interview,
            ),
            ("other_interview", "第十二条(十)", MeasureKind::Interview),
            ("major_hazard", "第十五条(一)", MeasureKind::SuspendSales),
            (
                "suspected_violation_major_risk",
                "第十五条(三)",
                MeasureKind::SuspendSales,
            ),
            (
                "records_falsified",
                "第十五条(四)",
                MeasureKind::SuspendSales,
            ),
            (
                "inspection_refused",
                "第十五条(四)",
                MeasureKind::SuspendSales,
            ),
            ("nmpa_required", "第十五条(五)", MeasureKind::SuspendSales),
            (
                "other_suspension",
                "第十五条(六)",
                MeasureKind::SuspendSales,
            ),
            (
                "nonconforming_marketed_drugs",
                "第五条(三)",
                MeasureKind::Recall,
            ),
        ];
        assert_eq!(rules.flags.len(), expected.len());
        for (name, article, measure) in expected {
            let flag = rules
                .flag(name)
                .unwrap_or_else(|| panic!("flag {name} missing"));
            assert_eq!(flag.article, format!("赣药监 {article}"), "{name}");
            assert!(flag.measures.contains(&measure), "{name}");
            assert!(!flag.description.is_empty(), "{name}");
        }
        for name in [
            "suspected_violation_major_risk",
            "records_falsified",
            "inspection_refused",
        ] {
            assert!(
                rules.flags[name]
                    .measures
                    .contains(&MeasureKind::CaseReferral),
                "{name}"
            );
        }
    }

    fn edited(from: &str, to: &str) -> String {
        let text = Rules::embedded_text();
        assert!(text.contains(from), "the rules file contains `{from}`");
        text.replacen(from, to, 1)
    }

    #[test]
    fn invalid_rules_files_are_refused_naming_the_key() {
        let cases = [
            (
                "unknown top-level key",
                edited("[defects]", "typo = 1\n[defects]"),
                "typo",
            ),
            (
                "unknown nested key",
                edited("max_critical = 0", "max_critical = 0\nmax_critcal = 1"),
                "max_critcal",
            ),
            (
                "unknown flag key",
                edited(
                    "description = \"Key personnel",
                    "severity = 3\ndescription = \"Key personnel",
                ),
                "severity",
            ),
            (
                "unknown measure in a flag",
                edited("measures = [\"caution\"]", "measures = [\"warning\"]"),
                "warning",
            ),
            (
                "zero report deadline",
                edited(
                    "rectification_report_working_days = 30",
                    "rectification_report_working_days = 0",
                ),
                "rectification_report_working_days",
            ),
            (
                "negative threshold",
                edited("caution_max_major = 5", "caution_max_major = -5"),
                "caution_max_major",
            ),
            (
                "grade in both lists",
                edited(
                    "key_monitoring_grades = [\"D\"]",
                    "key_monitoring_grades = [\"B\"]",
                ),
                "both",
            ),
            (
                "repeated ladder step",
                edited("\"caution\", \"interview\"", "\"caution\", \"caution\""),
                "twice",
            ),
            (
                "flag not snake_case",
                edited("[flags.other_caution]", "[flags.OtherCaution]"),
                "snake_case",
            ),
            (
                "flag without measures",
                edited(
                    "measures = [\"interview\"]\ndescription = \"Another",
                    "measures = []\ndescription = \"Another",
                ),
                "other_interview.measures",
            ),
            (
                "unknown excluding flag",
                edited(
                    "excluding_flags = [\"repeated_rectification_orders\"]",
                    "excluding_flags = [\"repeat\"]",
                ),
                "repeat",
            ),
        ];
        for (what, text, needle) in cases {
            match Rules::from_toml_str(&text, "province.toml") {
                Err(Error::Rules { file, reason }) => {
                    assert_eq!(file, "province.toml", "{what}");
                    assert!(reason.contains(needle), "{what}: {reason}");
                }
                other => panic!("{what}: expected a rules error, got {other:?}"),
            }
        }
    }

    /// The embedded rules with the line of `[articles]` that sets `role` replaced by `to` (the
    /// line removed when `to` is `None`).
    fn articles_edited(role: &str, to: Option<&str>) -> String {
        let mut in_articles = false;
        let mut found = false;
        let mut out = Vec::new();
        for line in Rules::embedded_text().lines() {
            if line.starts_with('[') {
                in_articles = line == "[articles]";
            }
            if in_articles && line.starts_with(&format!("{role} = ")) {
                found = true;
                out.extend(to);
            } else {
                out.push(line);
            }
        }
        assert!(found, "`[articles]` sets `{role}`");
        out.join("\n")
    }

    fn rules_error(text: &str) -> String {
        match Rules::from_toml_str(text, "province.toml") {
            Err(Error::Rules { file, reason }) => {
                assert_eq!(file, "province.toml");
                reason
            }
            other => panic!("expected a rules error, got {other:?}"),
        }
    }

    #[test]
    fn every_role_of_articles_is_listed_once_and_cited_by_the_shipped_rules() {
        let rules = Rules::default();
        let roles = rules.articles.roles();
        let listed: BTreeSet<&str> = roles.iter().map(|(k, _)| *k).collect();
        assert_eq!(listed.len(), roles.len(), "a role listed twice");
        // `roles()` lists exactly the fields the file sets (it is what validation walks).
        let serialised = toml::Value::try_from(&rules.articles).expect("articles serialise");
        let serialised = serialised.as_table().expect("a table");
        let fields: BTreeSet<&str> = serialised.keys().map(String::as_str).collect();
        assert_eq!(listed, fields);
        for (role, citation) in roles {
            assert!(
                citation.starts_with("赣药监 ") || citation.starts_with("蒙药监 "),
                "{role}: {citation}"
            );
            assert_eq!(
                serialised[role].as_str(),
                Some(citation),
                "roles() pairs {role} with its own field"
            );
        }
        assert_eq!(
            rules.articles.deadline_rectification,
            "赣药监 第七条、第二十一条"
        );
        assert_eq!(rules.articles.notice_report, "赣药监 第二十二条");
        assert_eq!(rules.articles.checklist, "蒙药监 (一)(十三)");
        assert_eq!(rules.articles.low_risk_list, "蒙药监 (五)");
        assert_eq!(
            rules.articles.case_referral,
            "赣药监 第十八条、赣药监 第五条（三）"
        );
    }

    #[test]
    fn articles_with_a_missing_or_an_unknown_role_are_refused_naming_it() {
        for (role, _) in Rules::default().articles.roles() {
            let reason = rules_error(&articles_edited(role, None));
            assert!(
                reason.contains(&format!("missing field `{role}`")),
                "{role}: {reason}"
            );
        }
        let unknown = articles_edited(
            "caution",
            Some("caution = \"赣药监 第十条(一)\"\ncaution_letter = \"赣药监 第十条\""),
        );
        let reason = rules_error(&unknown);
        assert!(
            reason.contains("unknown field `caution_letter`"),
            "{reason}"
        );
        // The prefixes of the old `[citation]` table are refused too: nothing reads them.
        let old = Rules::embedded_text().replacen(
            "\n[articles]\n",
            "\n[citation]\nmeasures_regulation = \"赣药监\"\n\n[articles]\n",
            1,
        );
        let reason = rules_error(&old);
        assert!(reason.contains("unknown field `citation`"), "{reason}");
    }

    #[test]
    fn an_empty_article_is_refused_naming_its_role() {
        for (role, _) in Rules::default().articles.roles() {
            for empty in ["\"\"", "\"  \""] {
                let reason =
                    rules_error(&articles_edited(role, Some(&format!("{role} = {empty}"))));
                assert_eq!(
                    reason,
                    format!("[articles] {role} is empty: every measure cites its article"),
                );
            }
        }
        let flag = Rules::embedded_text().replacen(
            "article = \"赣药监 第十条(三)\"",
            "article = \" \"",
            1,
        );
        let reason = rules_error(&flag);
        assert!(
            reason.contains("flags.special_inspection_failed.article"),
            "{reason}"
        );
    }

    #[test]
    fn from_path_reads_an_edited_copy() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rules.toml");
        std::fs::write(
            &path,
            edited("caution_general_above = 15", "caution_general_above = 20"),
        )
        .expect("write");
        let rules = Rules::from_path(&path).expect("valid edited rules");
        assert_eq!(rules.defects.caution_general_above, 20);
        let err = Rules::from_path(dir.path().join("missing.toml")).expect_err("missing file");
        assert!(matches!(err, Error::Io { what: "rules", .. }), "{err}");
    }
}
