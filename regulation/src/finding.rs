//! Findings: what an inspection (or a remote check) established about one enterprise, as the
//! measures engine reads it.
//!
//! The wire format is JSON, documented in `schemas/contracts/findings.md`: a finding names the
//! case and the enterprise, the inspection date, the on-site conclusion, the defect counts and
//! the condition flags of 赣药监 第十条, 第十二条 and 第十五条 (and 第五条(三)), plus the optional
//! facts the inclusive-supervision rules (蒙药监) need. Unknown fields are refused.
//!
//! Invariants of a finding that passed [`Finding::validate`]:
//! - `case_id` is 1–64 characters and `enterprise_id` a valid unified social credit code;
//! - every flag is a flag of the rules, listed once;
//! - `after_rectification` is only given for the conclusion `pending_rectification`;
//! - no date lies before the first year the calendar covers (a date after the covered years
//!   is accepted: its deadlines are pending the calendar), and `decision_date` /
//!   `interview_date` are not before `inspection_date`;
//! - scope and product names are non-empty.
//!
//! Errors of a batch ([`FindingError`]) name the finding by its index in the JSON array and
//! its `case_id` when that much is readable, and the field as a JSON path.

use std::collections::BTreeSet;
use std::fmt;

use chrono::NaiveDate;
use pharmwatch_schemas::Conclusion;
use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::codes::RiskGrade;
use crate::error::{Error, Result};
use crate::rules::Rules;

/// Longest accepted `case_id`, in characters.
pub const CASE_ID_MAX_CHARS: usize = 64;

/// The overall assessment after the enterprise's rectification (整改后综合评定结论).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterRectification {
    /// 符合要求.
    Compliant,
    /// 不符合要求: the rectification fell short (整改不到位).
    NonCompliant,
}

/// How much harm the violation caused (危害后果), for 蒙药监 (六).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Harm {
    /// No harm (未造成危害后果).
    None,
    /// Slight harm (危害后果轻微).
    Slight,
    /// Serious harm.
    Serious,
}

/// Defect counts by class: 严重缺陷 > 主要缺陷 > 一般缺陷.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defects {
    /// Critical defects (严重缺陷).
    pub critical: u32,
    /// Major defects (主要缺陷).
    pub major: u32,
    /// General defects (一般缺陷).
    pub general: u32,
}

impl Defects {
    /// All defects together.
    pub fn total(&self) -> u64 {
        u64::from(self.critical) + u64::from(self.major) + u64::from(self.general)
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// One finding, the input of [`crate::decide()`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// The case (inspection) id, 1–64 characters.
    pub case_id: String,
    /// The enterprise's unified social credit code (统一社会信用代码).
    pub enterprise_id: String,
    /// The day of the on-site inspection; the rectification report is due 30 working days
    /// after it (赣药监 第二十一条).
    pub inspection_date: NaiveDate,
    /// The on-site conclusion.
    pub conclusion: Conclusion,
    /// The overall assessment after rectification; only for `pending_rectification`. When
    /// present, the finding describes the case after the rectification report was assessed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_rectification: Option<AfterRectification>,
    /// Defect counts.
    pub defects: Defects,
    /// Condition flags (snake_case names from the rules' `[flags]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// The business-scope classes (经营范围) concerned when only part of the business is at
    /// fault: a suspension then covers these classes only (第十五条(二)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected_scope: Vec<String>,
    /// The drugs concerned (product ids or approval numbers): a suspension then names them
    /// (第十五条(二)) and a recall lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected_products: Vec<String>,
    /// The enterprise's first violation (首次违法), for 蒙药监 (六).
    #[serde(default, skip_serializing_if = "is_false")]
    pub first_violation: bool,
    /// The harm caused, for 蒙药监 (六); the observation period needs `none` or `slight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harm: Option<Harm>,
    /// Intentional, repeated despite orders, or egregious (主观故意、屡教不改、性质恶劣):
    /// no leniency, case referral (蒙药监 (六)).
    #[serde(default, skip_serializing_if = "is_false")]
    pub aggravating: bool,
    /// The enterprise found a counterfeit, substandard or suspect drug itself, stopped selling
    /// it, sealed it and reported it, without fault of its own (蒙药监 (八)).
    #[serde(default, skip_serializing_if = "is_false")]
    pub self_reported: bool,
    /// The enterprise proves it did its purchase checks and records (进货查验、记录追溯), is
    /// without fault, and the drugs are unsold or recalled and destroyed under supervision
    /// (蒙药监 (九)(十)).
    #[serde(default, skip_serializing_if = "is_false")]
    pub diligent: bool,
    /// The enterprise made a written commitment to lawful operation (依法生产经营承诺),
    /// for the low-risk list (蒙药监 (五)).
    #[serde(default, skip_serializing_if = "is_false")]
    pub compliance_commitment: bool,
    /// The enterprise's risk grade (蒙药监 (十三)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_grade: Option<RiskGrade>,
    /// A rectification deadline of this case passed without rectification (逾期仍未完成整改,
    /// 蒙药监 (五)).
    #[serde(default, skip_serializing_if = "is_false")]
    pub deadline_missed: bool,
    /// How many times the inspection form was re-issued after the defects were adjusted; any
    /// re-issue extends the rectification deadline once (第二十一条).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissue_count: Option<u32>,
    /// The day the measures are decided and the caution letter or interview notice served;
    /// reports after a caution or an interview count from it (第二十二条). Defaults to
    /// `inspection_date`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_date: Option<NaiveDate>,
    /// The scheduled interview day, when known: the decision then states the last day to
    /// request another date (第二十二条).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interview_date: Option<NaiveDate>,
    /// The enterprise has drugs stored or transported by another province's enterprise
    /// (跨省委托储存运输): that province's regulator is notified (第二十五条).
    #[serde(default, skip_serializing_if = "is_false")]
    pub cross_province_storage: bool,
}

impl Finding {
    /// The day measures are decided (`decision_date`, or else `inspection_date`).
    pub fn decision_day(&self) -> NaiveDate {
        self.decision_date.unwrap_or(self.inspection_date)
    }

    /// Checks the invariants listed in the module documentation.
    pub fn validate(&self, rules: &Rules, calendar: &Calendar) -> Result<()> {
        let invalid = |field: &str, reason: String| Error::InvalidField {
            field: field.to_string(),
            reason,
        };
        let id_chars = self.case_id.chars().count();
        if id_chars == 0 || id_chars > CASE_ID_MAX_CHARS || self.case_id.trim() != self.case_id {
            return Err(invalid(
                "case_id",
                format!("must be 1–{CASE_ID_MAX_CHARS} characters without surrounding whitespace"),
            ));
        }
        // A case id is printed on documents, in file names (made safe there) and log lines:
        // no control characters (a newline would forge a log line, a NUL cut a name).
        if self.case_id.chars().any(char::is_control) {
            return Err(invalid(
                "case_id",
                "must not contain control characters (newline, tab, NUL …)".into(),
            ));
        }
        pharmwatch_schemas::ids::validate_credit_code(&self.enterprise_id)
            .map_err(|err| invalid("enterprise_id", err.to_string()))?;
        let mut seen = BTreeSet::new();
        for (i, flag) in self.flags.iter().enumerate() {
            if rules.flag(flag).is_none() {
                return Err(invalid(
                    &format!("flags[{i}]"),
                    format!(
                        "unknown flag `{flag}` (known: {})",
                        rules.flags.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if !seen.insert(flag) {
                return Err(invalid(
                    &format!("flags[{i}]"),
                    format!("flag `{flag}` is listed twice"),
                ));
            }
        }
        if self.after_rectification.is_some() && self.conclusion != Conclusion::PendingRectification
        {
            return Err(invalid(
                "after_rectification",
                format!(
                    "only applies to the conclusion pending_rectification, not {}",
                    self.conclusion
                ),
            ));
        }
        for (field, list) in [
            ("affected_scope", &self.affected_scope),
            ("affected_products", &self.affected_products),
        ] {
            if let Some(i) = list.iter().position(|s| s.trim().is_empty()) {
                return Err(invalid(
                    &format!("{field}[{i}]"),
                    "must not be empty".into(),
                ));
            }
        }
        let dates = [
            ("inspection_date", Some(self.inspection_date)),
            ("decision_date", self.decision_date),
            ("interview_date", self.interview_date),
        ];
        for (field, date) in dates {
            let Some(date) = date else { continue };
            // A date after the covered years is fine: its deadlines wait for the calendar. A
            // date before them has no calendar to come.
            if date < calendar.first_covered_day() {
                let years = calendar.years();
                return Err(invalid(
                    field,
                    format!(
                        "{date} is before the working-day calendar, which covers {}–{}: load that year's calendar (pharmwatch calendar import) to decide it",
                        years.start(),
                        years.end()
                    ),
                ));
            }
            if date < self.inspection_date {
                return Err(invalid(
                    field,
                    format!(
                        "{date} is before the inspection date {}",
                        self.inspection_date
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A finding that could not be read or decided: which one, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct FindingError {
    /// The 0-based index of the finding in the input array; absent when the input as a whole is
    /// not an array of findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The finding's `case_id`, when it is readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_id: Option<String>,
    /// The field, as a JSON path (`defects.major`, `flags[1]`), when the error is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Why the finding was refused.
    pub reason: String,
}

impl fmt::Display for FindingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(index) => write!(f, "finding [{index}]")?,
            None => f.write_str("findings")?,
        }
        if let Some(case_id) = &self.case_id {
            // Shown escaped when it holds control characters: a newline in a case id must not
            // start a line of its own in the output.
            if case_id.chars().any(char::is_control) {
                write!(f, " (case_id {case_id:?})")?;
            } else {
                write!(f, " (case_id {case_id})")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ", field `{field}`")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl FindingError {
    /// Wraps an engine error about the finding at `index`.
    pub fn from_error(index: Option<usize>, case_id: Option<String>, err: &Error) -> Self {
        Self {
            index,
            case_id,
            field: err.field().map(str::to_string),
            reason: err.reason(),
        }
    }
}

/// Reads a JSON array of findings. Returns each readable finding with its index, and one
/// error per unreadable finding (or a single error when the input is not a JSON array).
/// Only the form is checked here; [`Finding::validate`] checks the rest.
pub fn parse_findings(input: &str) -> (Vec<(usize, Finding)>, Vec<FindingError>) {
    let whole = |reason: String| FindingError {
        index: None,
        case_id: None,
        field: None,
        reason,
    };
    let value: serde_json::Value = match serde_json::from_str(input) {
        Ok(value) => value,
        Err(err) => return (Vec::new(), vec![whole(format!("not valid JSON: {err}"))]),
    };
    let serde_json::Value::Array(items) = value else {
        return (
            Vec::new(),
            vec![whole("expected a JSON array of findings".to_string())],
        );
    };
    let mut findings = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let case_id = item
            .get("case_id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string);
        match serde_path_to_error::deserialize::<_, Finding>(item) {
            Ok(finding) => findings.push((index, finding)),
            Err(err) => {
                let (field, reason) = describe_serde_error(&err);
                errors.push(FindingError {
                    index: Some(index),
                    case_id,
                    field,
                    reason,
                });
            }
        }
    }
    (findings, errors)
}

/// The field path and reason of a deserialisation error. serde reports a missing field at its
/// parent's path, so the name in backticks is appended to the path.
fn describe_serde_error(
    err: &serde_path_to_error::Error<serde_json::Error>,
) -> (Option<String>, String) {
    let path = err.path().to_string();
    let parent = if path == "." { None } else { Some(path) };
    let message = err.inner().to_string();
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    let field = match (parent, named) {
        // An unknown field is already the last segment of the path; a missing one is not.
        (Some(parent), Some(name)) if parent == name || parent.ends_with(&format!(".{name}")) => {
            Some(parent)
        }
        (Some(parent), Some(name)) => Some(format!("{parent}.{name}")),
        (None, Some(name)) => Some(name.to_string()),
        (parent, None) => parent,
    };
    let reason = match &field {
        Some(f) if f.ends_with("_date") && named.is_none() => {
            format!("expected a date YYYY-MM-DD: {message}")
        }
        _ => message,
    };
    (field, reason)
}

#[cfg(test)]
mod properties {
    //! Random text and near-valid findings through `parse_findings` and validation: no panic;
    //! every refusal has a reason, and one about a finding names its index.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn valid() -> serde_json::Value {
        serde_json::json!([{"case_id": "JX-1", "enterprise_id": "91110000600037341L",
            "inspection_date": "2026-03-02", "conclusion": "pending_rectification",
            "defects": {"critical": 0, "major": 1, "general": 0}}])
    }

    #[test]
    fn the_unchanged_finding_parses() {
        let (ok, errors) = parse_findings(&valid().to_string());
        assert_eq!((ok.len(), errors.len()), (1, 0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn random_text_is_refused_with_a_reason(text in ".{0,200}") {
            let (_, errors) = parse_findings(&text);
            for e in errors {
                prop_assert!(!e.reason.is_empty(), "{e}");
            }
        }

        #[test]
        fn a_changed_field_is_refused_naming_the_finding(
            field in proptest::sample::select(vec!["case_id", "enterprise_id",
                "inspection_date", "conclusion", "defects", "flags", "extra"]),
            value in prop_oneof![
                Just(serde_json::Value::Null),
                any::<i64>().prop_map(serde_json::Value::from),
                ".{0,30}".prop_map(serde_json::Value::from),
                Just(serde_json::json!(["sampling_failures"])),
                Just(serde_json::json!({"critical": -1})),
            ]) {
            let mut v = valid();
            v[0][field] = value;
            let (ok, errors) = parse_findings(&v.to_string());
            prop_assert_eq!(ok.len() + errors.len(), 1);
            for e in errors {
                prop_assert_eq!(e.index, Some(0), "{}", e);
                prop_assert!(!e.reason.is_empty());
            }
            for (_, f) in ok {
                // A finding that parsed is validated next: that may refuse it, never panic.
                let _ = f.validate(&crate::Rules::default(), &crate::Calendar::default());
            }
        }
    }
}
