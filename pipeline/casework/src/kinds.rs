//! The kinds of document (执法文书) a case may carry — the four of the measures ladder and the
//! four of a referred case's penalty procedure — with their titles, number series, the measure
//! each serves, and what a case officer writes into a penalty document ([`Particulars`]).
//!
//! Invariants: a kind's wire name (`caution_notice` …) is what the ledger stores and never
//! changes; the filing approval form is the only internal kind (never delivered nor shown to
//! the enterprise); the notice and the decision need the penalty, its basis and the provision
//! violated, the hearing notice its place, before a person may submit or approve them.

use pharmwatch_regulation::MeasureCode;
use serde::{Deserialize, Serialize};

/// The kinds of document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// 行政告诫书: the caution letter of a caution measure.
    CautionNotice,
    /// 约谈通知书: the notice of an interview.
    InterviewNotice,
    /// 暂停销售决定书: the sales suspension decision.
    SuspensionDecision,
    /// 解除通知书: lifting the sales suspension.
    LiftingNotice,
    /// 立案审批表: the internal form on which the head of the authority files a referred case.
    FilingApproval,
    /// 行政处罚告知书: the notice of the proposed penalty and the party's rights.
    PenaltyNotice,
    /// 听证通知书: the hearing's time and place, on the party's request.
    HearingNotice,
    /// 行政处罚决定书: the penalty decision.
    PenaltyDecision,
}

impl DocumentKind {
    /// Every kind, in ledger order.
    pub const ALL: [DocumentKind; 8] = [
        DocumentKind::CautionNotice,
        DocumentKind::InterviewNotice,
        DocumentKind::SuspensionDecision,
        DocumentKind::LiftingNotice,
        DocumentKind::FilingApproval,
        DocumentKind::PenaltyNotice,
        DocumentKind::HearingNotice,
        DocumentKind::PenaltyDecision,
    ];

    /// The kind of a stored wire name (`caution_notice` …).
    pub fn parse(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// The snake_case name (template and file names).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CautionNotice => "caution_notice",
            Self::InterviewNotice => "interview_notice",
            Self::SuspensionDecision => "suspension_decision",
            Self::LiftingNotice => "lifting_notice",
            Self::FilingApproval => "filing_approval",
            Self::PenaltyNotice => "penalty_notice",
            Self::HearingNotice => "hearing_notice",
            Self::PenaltyDecision => "penalty_decision",
        }
    }

    /// The title printed on the document.
    pub fn title(self) -> &'static str {
        match self {
            Self::CautionNotice => "行政告诫书",
            Self::InterviewNotice => "约谈通知书",
            Self::SuspensionDecision => "暂停销售决定书",
            Self::LiftingNotice => "解除暂停销售通知书",
            Self::FilingApproval => "立案审批表",
            Self::PenaltyNotice => "行政处罚告知书",
            Self::HearingNotice => "听证通知书",
            Self::PenaltyDecision => "行政处罚决定书",
        }
    }

    /// The word of the number series after the authority abbreviation (蒙药监**告**〔2026〕1号).
    pub fn series_word(self) -> &'static str {
        match self {
            Self::CautionNotice => "告",
            Self::InterviewNotice => "约",
            Self::SuspensionDecision => "停",
            Self::LiftingNotice => "解",
            Self::FilingApproval => "立",
            Self::PenaltyNotice => "罚告",
            Self::HearingNotice => "听",
            Self::PenaltyDecision => "罚",
        }
    }

    /// Whether the case's measure `code` is the one this document serves.
    pub fn serves(self, code: MeasureCode) -> bool {
        match self {
            Self::CautionNotice => code == MeasureCode::Caution,
            Self::InterviewNotice => code == MeasureCode::Interview,
            Self::SuspensionDecision | Self::LiftingNotice => code.is_suspension(),
            Self::FilingApproval
            | Self::PenaltyNotice
            | Self::HearingNotice
            | Self::PenaltyDecision => code == MeasureCode::CaseReferral,
        }
    }

    /// A document of the penalty procedure (立案 and after).
    pub fn is_penalty(self) -> bool {
        matches!(
            self,
            Self::FilingApproval
                | Self::PenaltyNotice
                | Self::HearingNotice
                | Self::PenaltyDecision
        )
    }

    /// The authority's internal record, never delivered to nor shown to the enterprise (the
    /// filing approval form).
    pub fn is_internal(self) -> bool {
        self == Self::FilingApproval
    }

    /// What a person must have written into the draft before it is approved: the penalty and
    /// its basis for the notice and the decision (the system never proposes a penalty), the
    /// hearing's place for the hearing notice.
    fn missing_particulars(self, p: &Particulars) -> Vec<&'static str> {
        let need: &[(&str, &String)] = match self {
            Self::PenaltyNotice | Self::PenaltyDecision => &[
                ("penalty", &p.penalty),
                ("penalty_basis", &p.penalty_basis),
                ("violated", &p.violated),
            ],
            Self::HearingNotice => &[("hearing_place", &p.hearing_place)],
            _ => &[],
        };
        need.iter()
            .filter(|(_, v)| v.trim().is_empty())
            .map(|(k, _)| *k)
            .collect()
    }
}

impl DocumentKind {
    /// Refuses particulars that miss what this kind needs, naming the missing fields (the
    /// reason, for the caller's error).
    pub fn check_particulars(self, p: &Particulars) -> std::result::Result<(), String> {
        let missing = self.missing_particulars(p);
        if missing.is_empty() {
            return Ok(());
        }
        Err(format!(
            "its {} needs what the case officer writes into it: {} (the system never proposes \
             a penalty)",
            self.title(),
            missing.join(", ")
        ))
    }
}

/// What a case officer writes into a penalty document: the system proposes no penalty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Particulars {
    /// The penalty proposed (告知书) or decided (决定书), e.g. `没收违法所得人民币叁仟元，并处罚款人民币伍万元`.
    pub penalty: String,
    /// Its legal basis, e.g. `《中华人民共和国药品管理法》第一百二十六条`.
    pub penalty_basis: String,
    /// The provision violated, e.g. `《药品经营质量管理规范》第九十二条`.
    pub violated: String,
    /// Where the hearing is held (听证通知书).
    pub hearing_place: String,
}

impl Particulars {
    /// Whether nothing is written.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}
