//! The codes the rest of the crate shares: the measures a decision imposes ([`MeasureCode`]),
//! the measure families a rules file names ([`MeasureKind`]), and an enterprise's risk grade
//! ([`RiskGrade`]). They sit apart so that the rules, the findings and the decision engine
//! depend on them and not on each other.
//!
//! Invariant: each wire name (`as_str`, serde's snake_case) is stable — it is stored in the
//! case ledger and printed in decisions.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A measure imposed on the enterprise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureCode {
    /// 限期整改: rectify within a deadline and report.
    DeadlineRectification,
    /// 告诫: caution letter.
    Caution,
    /// 约谈: interview of the enterprise's leads.
    Interview,
    /// 暂停全部经营范围销售: suspend sales of the whole business scope.
    SuspendSalesAll,
    /// 暂停部分经营范围销售: suspend sales of part of the business scope.
    SuspendSalesPartial,
    /// 暂停相关药品销售: suspend sales of named drugs.
    SuspendSalesProducts,
    /// 召回: recall (with the marketing authorisation holder).
    Recall,
    /// 立案调查: refer for case investigation (administrative penalty).
    CaseReferral,
    /// 观察期: correction observation period.
    ObservationPeriod,
    /// 容错清单: fault-tolerance list, soft measures preferred.
    FaultToleranceList,
    /// 重点监控名单: key-monitoring list.
    KeyMonitoringList,
    /// 低风险名单: low-risk list, fewer inspections.
    LowRiskList,
}

impl MeasureCode {
    /// Every code, in decision order.
    pub const ALL: [MeasureCode; 12] = [
        MeasureCode::DeadlineRectification,
        MeasureCode::Caution,
        MeasureCode::Interview,
        MeasureCode::SuspendSalesAll,
        MeasureCode::SuspendSalesPartial,
        MeasureCode::SuspendSalesProducts,
        MeasureCode::Recall,
        MeasureCode::CaseReferral,
        MeasureCode::ObservationPeriod,
        MeasureCode::FaultToleranceList,
        MeasureCode::KeyMonitoringList,
        MeasureCode::LowRiskList,
    ];

    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MeasureCode::DeadlineRectification => "deadline_rectification",
            MeasureCode::Caution => "caution",
            MeasureCode::Interview => "interview",
            MeasureCode::SuspendSalesAll => "suspend_sales_all",
            MeasureCode::SuspendSalesPartial => "suspend_sales_partial",
            MeasureCode::SuspendSalesProducts => "suspend_sales_products",
            MeasureCode::Recall => "recall",
            MeasureCode::CaseReferral => "case_referral",
            MeasureCode::ObservationPeriod => "observation_period",
            MeasureCode::FaultToleranceList => "fault_tolerance_list",
            MeasureCode::KeyMonitoringList => "key_monitoring_list",
            MeasureCode::LowRiskList => "low_risk_list",
        }
    }

    /// Whether this is one of the three sales suspensions.
    pub fn is_suspension(self) -> bool {
        matches!(
            self,
            MeasureCode::SuspendSalesAll
                | MeasureCode::SuspendSalesPartial
                | MeasureCode::SuspendSalesProducts
        )
    }

    /// Whether this is an administrative measure of the measures regulation (限期整改, 告诫,
    /// 约谈, 暂停销售, and the recall ordered with them), which 第二十五条 puts in the
    /// enterprise's safety credit file. The lists and the observation period are not.
    pub fn is_administrative_measure(self) -> bool {
        matches!(
            self,
            MeasureCode::DeadlineRectification
                | MeasureCode::Caution
                | MeasureCode::Interview
                | MeasureCode::Recall
        ) || self.is_suspension()
    }

    /// The measure family of the rules (escalation ladder), if the code is on it.
    pub fn kind(self) -> Option<MeasureKind> {
        Some(match self {
            MeasureCode::DeadlineRectification => MeasureKind::DeadlineRectification,
            MeasureCode::Caution => MeasureKind::Caution,
            MeasureCode::Interview => MeasureKind::Interview,
            MeasureCode::SuspendSalesAll
            | MeasureCode::SuspendSalesPartial
            | MeasureCode::SuspendSalesProducts => MeasureKind::SuspendSales,
            MeasureCode::Recall => MeasureKind::Recall,
            MeasureCode::CaseReferral => MeasureKind::CaseReferral,
            MeasureCode::KeyMonitoringList => MeasureKind::KeyMonitoringList,
            MeasureCode::ObservationPeriod
            | MeasureCode::FaultToleranceList
            | MeasureCode::LowRiskList => return None,
        })
    }
}

/// The measure families a rules file may name (in flags and the escalation ladder). A
/// `suspend_sales` is resolved to all, partial or named products from the finding's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureKind {
    /// 限期整改.
    DeadlineRectification,
    /// 告诫.
    Caution,
    /// 约谈.
    Interview,
    /// 暂停销售, scope resolved from the finding.
    SuspendSales,
    /// 召回.
    Recall,
    /// 立案调查.
    CaseReferral,
    /// 重点监控名单.
    KeyMonitoringList,
}

impl MeasureKind {
    /// The snake_case name used in rules files.
    pub fn as_str(self) -> &'static str {
        match self {
            MeasureKind::DeadlineRectification => "deadline_rectification",
            MeasureKind::Caution => "caution",
            MeasureKind::Interview => "interview",
            MeasureKind::SuspendSales => "suspend_sales",
            MeasureKind::Recall => "recall",
            MeasureKind::CaseReferral => "case_referral",
            MeasureKind::KeyMonitoringList => "key_monitoring_list",
        }
    }
}

impl fmt::Display for MeasureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The enterprise's risk grade, A (low) to D (high), from the risk + credit model (蒙药监 (十三)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RiskGrade {
    /// Low risk.
    A,
    /// Moderate risk.
    B,
    /// Elevated risk.
    C,
    /// High risk.
    D,
}

impl RiskGrade {
    /// The grade of a letter `A` … `D`; `None` for anything else.
    pub fn from_letter(text: &str) -> Option<Self> {
        Some(match text {
            "A" => Self::A,
            "B" => Self::B,
            "C" => Self::C,
            "D" => Self::D,
            _ => return None,
        })
    }
}

impl fmt::Display for RiskGrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RiskGrade::A => "A",
            RiskGrade::B => "B",
            RiskGrade::C => "C",
            RiskGrade::D => "D",
        })
    }
}
