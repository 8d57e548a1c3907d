//! Risk scoring and the risk list (风险清单).
//!
//! Score: each indicator has a severity weight wᵢ in (0, 1) ([`severity`]); an enterprise-day's
//! score is `100 × (1 − Π(1 − wᵢ))` over the distinct indicators it hit (a noisy-OR: several
//! independent signals raise the risk, none alone reaches 100), then multiplied by the credit
//! factor (grade A/B 1.0, C 1.1, D 1.2) and capped at 100. Grade: A (low) below 25, B below 50,
//! C below 75, D (high) from 75.
//!
//! The anomaly model joins the same noisy-OR with severity 0.35 on an enterprise-day it flags
//! (percentile at or above the threshold, see [`crate::anomaly`]). Flagged by the model alone,
//! the enterprise appears with a `model_anomaly` item carrying the model's top reasons (score
//! 35, grade B). Flagged beside rule hits, the model adds no item but raises the score (a
//! sales spike alone scores 20, with the model's agreement 48), and its reasons stand in the
//! row's `anomaly_reasons`. Every row of a scored enterprise-day carries `anomaly_score`,
//! `anomaly_percentile` and `anomaly_reasons`, flagged or not.
//!
//! Invariants: one row per enterprise and business day with at least one hit; rows of a day are
//! ranked by score (ties by credit code); every item carries its evidence (window, observed,
//! expected, detail) and a one-line reason built from it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use pharmwatch_schemas::{Enterprise, EnterpriseType, Product};

use crate::anomaly::AnomalyScore;
use crate::error::{CoreError, Result};
use crate::indicators::{Hit, RULE_VERSION};
use crate::lake::{rows_to_batch, write_parquet};
use crate::regions::region_name;

/// Severity weight of an indicator.
pub fn severity(indicator: &str) -> f64 {
    match indicator {
        "failed_batch_sold" => 0.6,
        "expired_batch_sold" | "trace_code_duplicate" => 0.5,
        "sold_not_bought" | "special_drug_volume" => 0.45,
        "price_below_median" => 0.4,
        "inventory_mismatch" | "reporting_stopped" => 0.3,
        "production_spike" => 0.25,
        "model_anomaly" => 0.35,
        "sales_spike" | "purchase_spike" => 0.2,
        _ => 0.2,
    }
}

/// Grade for a score.
pub fn grade(score: f64) -> &'static str {
    if score >= 75.0 {
        "D"
    } else if score >= 50.0 {
        "C"
    } else if score >= 25.0 {
        "B"
    } else {
        "A"
    }
}

fn credit_factor(credit_grade: &str) -> f64 {
    match credit_grade {
        "C" => 1.1,
        "D" => 1.2,
        _ => 1.0,
    }
}

/// One risk item: an indicator hit with its evidence and reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskItem {
    /// Indicator name.
    pub indicator: String,
    /// Product id, if per product.
    pub product_id: Option<String>,
    /// Product name, if known.
    pub product_name: Option<String>,
    /// First day of the evidence window.
    pub window_start: NaiveDate,
    /// Last day of the evidence window.
    pub window_end: NaiveDate,
    /// Observed value.
    pub observed: f64,
    /// Expected value.
    pub expected: f64,
    /// One-line reason a supervisor reads.
    pub reason: String,
    /// Evidence details (`key=value;…`).
    pub evidence: String,
    /// Severity weight.
    pub severity: f64,
}

/// One row of the risk list: an enterprise on a business day. `I` is the items' form: a list
/// of [`RiskItem`]s, or a JSON string in the CSV ([`CsvRow`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskRow<I = Vec<RiskItem>> {
    /// Risk list id: `RL-<province>-<date>`.
    pub list_id: String,
    /// Business day.
    pub date: NaiveDate,
    /// Rank within the day (1 = highest score).
    pub rank: u32,
    /// Enterprise credit code.
    pub enterprise_id: String,
    /// Enterprise name.
    pub enterprise_name: String,
    /// Enterprise type.
    pub enterprise_type: String,
    /// Region code.
    pub region_code: String,
    /// Region name.
    pub region_name: String,
    /// Licence number.
    pub licence_no: String,
    /// Credit grade.
    pub credit_grade: String,
    /// Risk score 0–100.
    pub score: f64,
    /// Risk grade A (low) – D (high).
    pub grade: String,
    /// Distinct indicators hit, comma-separated.
    pub indicators: String,
    /// The reason of the most severe item.
    pub top_reason: String,
    /// Unit responsible for follow-up.
    pub responsible_unit: String,
    /// Case status: 待处置 (pending) on a new list.
    pub status: String,
    /// Rule-set version.
    pub rule_version: String,
    /// Anomaly model score of the enterprise-day (None when the model did not score it).
    pub anomaly_score: Option<f64>,
    /// Its percentile in the segment's training distribution (0–1).
    pub anomaly_percentile: Option<f64>,
    /// The model's top reasons, `; `-separated (upper tail only).
    pub anomaly_reasons: String,
    /// The model's top reasons in Chinese, `；`-separated.
    #[serde(default)]
    pub anomaly_reasons_zh: String,
    /// The reference credit grade (enterprise reference table) before the credit file.
    /// `credit_grade` is the effective grade the score used; they differ when entries of the
    /// credit file are within their publicity period on the row's day ([`pharmwatch_casework::credit`]).
    #[serde(default)]
    pub reference_credit_grade: String,
    /// Why the effective grade differs from the reference grade: one `; `-separated reason per
    /// credit-file entry (case, measure, day decided, public until). Empty when they agree.
    #[serde(default)]
    pub credit_reasons: String,
    /// The items.
    pub items: I,
}

/// The one-line reason of a risk item in Chinese, built from the same figures as the English
/// [`reason`] (observed, expected and the evidence's `key=value` pairs), for Chinese readers of
/// the workbench and the report.
pub fn reason_zh(item: &RiskItem) -> String {
    let o = item.observed;
    let x = item.expected;
    let ratio = if x > 0.0 { o / x } else { f64::INFINITY };
    let ev = |key: &str| -> String {
        item.evidence
            .split(';')
            .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .unwrap_or("?")
            .to_string()
    };
    match item.indicator.as_str() {
        "inventory_mismatch" => format!(
            "期末库存 {o:.0}，按进销存记录应为 {x:.0}（期初 {} + 购进 {} − 销售 {}），差异 {:+.0} 盒",
            ev("opening"),
            ev("inflow"),
            ev("sold"),
            o - x
        ),
        "sold_not_bought" => {
            format!("销售 {o:.0} 盒，而期初库存、购进和生产合计只有 {x:.0} 盒")
        }
        "sales_spike" => {
            format!("零售 {o:.0} 盒，前 28 日日均 {x:.1} 盒（{ratio:.1} 倍）")
        }
        "special_drug_volume" => {
            if ev("basis") == "purchase" {
                format!("特殊管理药品：购进 {o:.0} 盒，前 28 日单日最多 {x:.0} 盒（{ratio:.1} 倍）")
            } else {
                format!("特殊管理药品：销售 {o:.0} 盒，前 28 日日均 {x:.1} 盒（{ratio:.1} 倍）")
            }
        }
        "purchase_spike" => {
            format!("购进 {o:.0} 盒，前 28 日单日最多 {x:.0} 盒（{ratio:.1} 倍）")
        }
        "production_spike" => {
            format!("生产 {o:.0} 盒，前 28 日单批最多 {x:.0} 盒（{ratio:.1} 倍）")
        }
        "expired_batch_sold" => format!(
            "销售已于 {} 过期的批号 {} 共 {o:.0} 盒",
            ev("expiry"),
            ev("batch")
        ),
        "failed_batch_sold" => {
            let failed = ev("failed_on");
            if failed == "?" {
                format!("销售未经放行的批号 {} 共 {o:.0} 盒", ev("batch"))
            } else {
                format!(
                    "批号 {} 于 {failed} 检验不合格后仍销售 {o:.0} 盒",
                    ev("batch")
                )
            }
        }
        "trace_code_duplicate" => format!(
            "{o:.0} 盒以已售出的追溯码销售，如追溯码 {} 已于 {} 售出",
            ev("code"),
            ev("first_sold")
        ),
        "price_below_median" => format!(
            "平均零售价 {o:.2} 元，为全省市场价 {x:.2} 元的 {:.0}%",
            if x > 0.0 { 100.0 * o / x } else { 0.0 }
        ),
        "reporting_stopped" => format!(
            "自 {} 起 {o:.0} 日无数据上报（此前 {} 日有上报）",
            ev("last_report"),
            ev("active_days")
        ),
        "model_anomaly" => "异常检测模型标记该企业当日数据异常".to_string(),
        other => format!(
            "{}：观测值 {o:.2}，预期 {x:.2}",
            crate::display::indicator_zh(other)
        ),
    }
}

/// Builds the one-line reason of a hit.
pub fn reason(hit: &Hit) -> String {
    let o = hit.observed;
    let x = hit.expected;
    let ratio = if x > 0.0 { o / x } else { f64::INFINITY };
    match hit.indicator.as_str() {
        "inventory_mismatch" => format!(
            "closing stock {o:.0} but the records give {x:.0} (opening {} + inflow {} − sold {}): gap {:+.0} packages",
            hit.detail_value("opening").unwrap_or("?"),
            hit.detail_value("inflow").unwrap_or("?"),
            hit.detail_value("sold").unwrap_or("?"),
            o - x
        ),
        "sold_not_bought" => format!(
            "sold {o:.0} packages with only {x:.0} available from opening stock, purchases and production"
        ),
        "sales_spike" => format!(
            "retail sales {o:.0} packages vs {x:.1}/day over the prior 28 days ({ratio:.1}×)"
        ),
        "special_drug_volume" => {
            let basis = hit
                .detail_value("basis")
                .unwrap_or("retail_sales")
                .replace('_', " ");
            let class = hit.detail_value("class").unwrap_or("special");
            if basis == "purchase" {
                format!(
                    "{class} product: purchased {o:.0} packages vs largest day {x:.0} in the prior 28 days ({ratio:.1}×)"
                )
            } else {
                format!(
                    "{class} product: {basis} {o:.0} packages vs {x:.1}/day over the prior 28 days ({ratio:.1}×)"
                )
            }
        }
        "purchase_spike" => format!(
            "purchased {o:.0} packages vs largest day {x:.0} in the prior 28 days ({ratio:.1}×)"
        ),
        "production_spike" => format!(
            "produced {o:.0} packages vs largest run {x:.0} in the prior 28 days ({ratio:.1}×)"
        ),
        "expired_batch_sold" => format!(
            "sold {o:.0} packages of batch {} which expired on {}",
            hit.detail_value("batch").unwrap_or("?"),
            hit.detail_value("expiry").unwrap_or("?")
        ),
        "failed_batch_sold" => match hit.detail_value("failed_on") {
            Some(day) => format!(
                "sold {o:.0} packages of batch {} after it failed a test on {day}",
                hit.detail_value("batch").unwrap_or("?")
            ),
            None => format!(
                "sold {o:.0} packages of batch {} which was never released",
                hit.detail_value("batch").unwrap_or("?")
            ),
        },
        "trace_code_duplicate" => format!(
            "{o:.0} package(s) sold with a traceability code already sold, e.g. {} first sold on {} by {}",
            hit.detail_value("code").unwrap_or("?"),
            hit.detail_value("first_sold").unwrap_or("?"),
            hit.detail_value("first_seller").unwrap_or("?")
        ),
        "price_below_median" => format!(
            "average retail price {o:.2} yuan is {:.0}% of the province's market price {x:.2} yuan",
            if x > 0.0 { 100.0 * o / x } else { 0.0 }
        ),
        "reporting_stopped" => format!(
            "no records for {o:.0} days since {} after reporting on {} of the prior days",
            hit.detail_value("last_report").unwrap_or("?"),
            hit.detail_value("active_days").unwrap_or("?")
        ),
        other => format!("{other}: observed {o:.2}, expected {x:.2}"),
    }
}

/// The unit that follows up an enterprise's risk: city bureaus for retail, the provincial
/// administration for manufacturers and wholesale.
pub fn responsible_unit(e: &Enterprise) -> String {
    let region = region_name(&e.region_code).unwrap_or("");
    if e.enterprise_type.is_retail() {
        format!("{region}市场监督管理局")
    } else {
        "内蒙古自治区药品监督管理局".to_string()
    }
}

/// The `model_anomaly` item of a flagged enterprise-day.
pub fn model_item(a: &AnomalyScore) -> RiskItem {
    let reasons = if a.reasons.is_empty() {
        String::new()
    } else {
        format!(": {}", a.reasons.join("; "))
    };
    RiskItem {
        indicator: "model_anomaly".to_string(),
        product_id: None,
        product_name: None,
        window_start: a.date,
        window_end: a.date,
        observed: round4(a.percentile),
        expected: a.threshold,
        reason: format!(
            "unusual combination for a {} (anomaly percentile {:.1}%){reasons}",
            a.segment,
            100.0 * a.percentile
        ),
        evidence: format!(
            "score={};percentile={};segment={};threshold={}",
            round4(a.score),
            round4(a.percentile),
            a.segment,
            a.threshold
        ),
        severity: severity("model_anomaly"),
    }
}

/// The risk item of a hit: its evidence, reason and severity.
pub fn item<S: std::hash::BuildHasher>(
    h: &Hit,
    products: &HashMap<String, Product, S>,
) -> RiskItem {
    RiskItem {
        indicator: h.indicator.clone(),
        product_id: h.product_id.clone(),
        product_name: h
            .product_id
            .as_ref()
            .and_then(|p| products.get(p))
            .map(|p| p.name.clone()),
        window_start: h.window_start,
        window_end: h.window_end,
        observed: round4(h.observed),
        expected: round4(h.expected),
        reason: reason(h),
        evidence: h.detail.clone(),
        severity: severity(&h.indicator),
    }
}

/// Score and grade of a single item on an enterprise of `credit_grade` (a real-time event).
pub fn single_item_score(indicator: &str, credit_grade: &str) -> (f64, &'static str) {
    let score = round4((100.0 * severity(indicator) * credit_factor(credit_grade)).min(100.0));
    (score, grade(score))
}

/// The credit grades, best first.
pub const CREDIT_GRADES: [&str; 4] = ["A", "B", "C", "D"];

/// The grade `steps` below `reference` (floor D); an unknown reference grade is kept as is.
pub fn lower_grade(reference: &str, steps: u32) -> String {
    match CREDIT_GRADES.iter().position(|g| *g == reference) {
        Some(i) => CREDIT_GRADES[(i + steps as usize).min(CREDIT_GRADES.len() - 1)].to_string(),
        None => reference.to_string(),
    }
}

/// The effective credit grade of an enterprise on a day and why it differs from the reference
/// grade (see [`pharmwatch_casework::credit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveCredit {
    /// The grade the score uses.
    pub grade: String,
    /// Why it differs from the reference grade, `; `-separated; empty when it does not.
    pub reasons: String,
}

/// Groups hits and the model's verdicts into risk-list rows: one row per enterprise-day with a
/// rule hit or a model flag. The credit factor uses each enterprise's reference credit grade.
pub fn build(
    hits: &[Hit],
    anomalies: &[AnomalyScore],
    enterprises: &HashMap<String, Enterprise>,
    products: &HashMap<String, Product>,
) -> Vec<RiskRow> {
    build_with_credit(hits, anomalies, enterprises, products, &|_, _, _| None)
}

/// [`build`] with the effective credit grade: `credit(enterprise_id, day, reference_grade)`
/// returns the grade the credit file gives on that day (`None`: the reference grade applies).
pub fn build_with_credit(
    hits: &[Hit],
    anomalies: &[AnomalyScore],
    enterprises: &HashMap<String, Enterprise>,
    products: &HashMap<String, Product>,
    credit: &dyn Fn(&str, NaiveDate, &str) -> Option<EffectiveCredit>,
) -> Vec<RiskRow> {
    let mut groups: BTreeMap<(NaiveDate, String), Vec<&Hit>> = BTreeMap::new();
    for h in hits {
        groups
            .entry((h.date, h.enterprise_id.clone()))
            .or_default()
            .push(h);
    }
    let verdicts: HashMap<(NaiveDate, &str), &AnomalyScore> = anomalies
        .iter()
        .map(|a| ((a.date, a.enterprise_id.as_str()), a))
        .collect();
    for a in anomalies.iter().filter(|a| a.flagged) {
        groups.entry((a.date, a.enterprise_id.clone())).or_default();
    }
    let mut rows: Vec<RiskRow> = Vec::new();
    for ((date, ent), hs) in groups {
        let e = enterprises.get(&ent);
        let verdict = verdicts.get(&(date, ent.as_str())).copied();
        let mut items: Vec<RiskItem> = hs.iter().map(|h| item(h, products)).collect();
        let flagged = verdict.filter(|a| a.flagged);
        // The model is an item of its own only when no rule fired; otherwise its verdict
        // raises the score (below) and its reasons stand in the anomaly columns.
        if let Some(a) = flagged.filter(|_| items.is_empty()) {
            items.push(model_item(a));
        }
        items.sort_by(|a, b| {
            b.severity
                .total_cmp(&a.severity)
                .then_with(|| a.indicator.cmp(&b.indicator))
                .then_with(|| a.product_id.cmp(&b.product_id))
        });
        let distinct: BTreeSet<&str> = items.iter().map(|i| i.indicator.as_str()).collect();
        let mut keep: f64 = distinct.iter().map(|i| 1.0 - severity(i)).product();
        if flagged.is_some() && !distinct.contains("model_anomaly") {
            keep *= 1.0 - severity("model_anomaly");
        }
        let reference = e.map(|e| e.credit_grade.as_str()).unwrap_or("B");
        let effective = credit(&ent, date, reference);
        let credit = effective.as_ref().map_or(reference, |c| c.grade.as_str());
        let score = round4((100.0 * (1.0 - keep) * credit_factor(credit)).min(100.0));
        rows.push(RiskRow {
            list_id: format!("RL-15-{}", date.format("%Y%m%d")),
            date,
            rank: 0,
            enterprise_id: ent.clone(),
            enterprise_name: e.map(|e| e.name.clone()).unwrap_or_default(),
            enterprise_type: e
                .map(|e| e.enterprise_type.as_str().to_string())
                .unwrap_or_default(),
            region_code: e.map(|e| e.region_code.clone()).unwrap_or_default(),
            region_name: e
                .and_then(|e| region_name(&e.region_code))
                .unwrap_or_default()
                .to_string(),
            licence_no: e.map(|e| e.licence_no.clone()).unwrap_or_default(),
            credit_grade: credit.to_string(),
            score,
            grade: grade(score).to_string(),
            indicators: distinct.iter().copied().collect::<Vec<_>>().join(","),
            top_reason: items.first().map(|i| i.reason.clone()).unwrap_or_default(),
            responsible_unit: e.map(responsible_unit).unwrap_or_default(),
            status: "待处置".to_string(),
            rule_version: RULE_VERSION.to_string(),
            anomaly_score: verdict.map(|a| round4(a.score)),
            anomaly_percentile: verdict.map(|a| round4(a.percentile)),
            anomaly_reasons: verdict.map(|a| a.reasons.join("; ")).unwrap_or_default(),
            anomaly_reasons_zh: verdict.map(|a| a.reasons_zh.join("；")).unwrap_or_default(),
            reference_credit_grade: reference.to_string(),
            credit_reasons: effective.map(|c| c.reasons).unwrap_or_default(),
            items,
        });
    }
    rows.sort_by(|a, b| {
        a.date
            .cmp(&b.date)
            .then_with(|| b.score.total_cmp(&a.score))
            .then_with(|| a.enterprise_id.cmp(&b.enterprise_id))
    });
    let mut rank = 0;
    let mut day = None;
    for r in &mut rows {
        if day != Some(r.date) {
            day = Some(r.date);
            rank = 0;
        }
        rank += 1;
        r.rank = rank;
    }
    rows
}

fn round4(x: f64) -> f64 {
    if x.is_finite() {
        (x * 10_000.0).round() / 10_000.0
    } else {
        x
    }
}

fn item_fields() -> Fields {
    Fields::from(vec![
        Field::new("indicator", DataType::Utf8, false),
        Field::new("product_id", DataType::Utf8, true),
        Field::new("product_name", DataType::Utf8, true),
        Field::new("window_start", DataType::Date32, false),
        Field::new("window_end", DataType::Date32, false),
        Field::new("observed", DataType::Float64, true),
        Field::new("expected", DataType::Float64, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("evidence", DataType::Utf8, false),
        Field::new("severity", DataType::Float64, false),
    ])
}

/// Arrow schema of the risk list (items as a list of structs).
pub fn schema() -> SchemaRef {
    let text = |n: &str| Field::new(n, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        text("list_id"),
        Field::new("date", DataType::Date32, false),
        Field::new("rank", DataType::UInt32, false),
        text("enterprise_id"),
        text("enterprise_name"),
        text("enterprise_type"),
        text("region_code"),
        text("region_name"),
        text("licence_no"),
        text("credit_grade"),
        Field::new("score", DataType::Float64, false),
        text("grade"),
        text("indicators"),
        text("top_reason"),
        text("responsible_unit"),
        text("status"),
        text("rule_version"),
        Field::new("anomaly_score", DataType::Float64, true),
        Field::new("anomaly_percentile", DataType::Float64, true),
        text("anomaly_reasons"),
        text("anomaly_reasons_zh"),
        text("reference_credit_grade"),
        text("credit_reasons"),
        Field::new(
            "items",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(item_fields()),
                true,
            ))),
            false,
        ),
    ]))
}

/// The CSV shape: one column per field, items as a JSON string.
pub type CsvRow = RiskRow<String>;

impl<I> RiskRow<I> {
    /// The same row with its items in another form.
    pub fn with_items<J>(self, items: J) -> RiskRow<J> {
        RiskRow {
            list_id: self.list_id,
            date: self.date,
            rank: self.rank,
            enterprise_id: self.enterprise_id,
            enterprise_name: self.enterprise_name,
            enterprise_type: self.enterprise_type,
            region_code: self.region_code,
            region_name: self.region_name,
            licence_no: self.licence_no,
            credit_grade: self.credit_grade,
            score: self.score,
            grade: self.grade,
            indicators: self.indicators,
            top_reason: self.top_reason,
            responsible_unit: self.responsible_unit,
            status: self.status,
            rule_version: self.rule_version,
            anomaly_score: self.anomaly_score,
            anomaly_percentile: self.anomaly_percentile,
            anomaly_reasons: self.anomaly_reasons,
            anomaly_reasons_zh: self.anomaly_reasons_zh,
            reference_credit_grade: self.reference_credit_grade,
            credit_reasons: self.credit_reasons,
            items,
        }
    }
}

impl CsvRow {
    /// The items, parsed back from JSON.
    pub fn parse_items(&self) -> std::result::Result<Vec<RiskItem>, serde_json::Error> {
        serde_json::from_str(&self.items)
    }
}

/// Writes `risk_list.parquet`, `risk_list.csv` and `risk_list.json` into `dir`.
pub fn write_list(dir: &Path, rows: &[RiskRow]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
    let batch = rows_to_batch(schema(), rows, "risk list")?;
    write_parquet(&dir.join("risk_list.parquet"), schema(), &[batch])?;

    let json_path = dir.join("risk_list.json");
    let text =
        serde_json::to_string_pretty(rows).map_err(|e| CoreError::Internal(e.to_string()))?;
    std::fs::write(&json_path, text + "\n").map_err(|e| CoreError::io(&json_path, e))?;

    let mut csv_rows: Vec<CsvRow> = Vec::with_capacity(rows.len());
    for r in rows {
        let items =
            serde_json::to_string(&r.items).map_err(|e| CoreError::Internal(e.to_string()))?;
        csv_rows.push(r.clone().with_items(items));
    }
    crate::lake::write_csv(&dir.join("risk_list.csv"), &csv_rows)
}

/// Reads a risk list CSV.
pub fn read_csv(path: &Path) -> Result<Vec<CsvRow>> {
    crate::lake::read_csv(path)
}

/// Type name for display (Chinese).
pub fn type_zh(t: &str) -> &'static str {
    EnterpriseType::parse(t)
        .map(EnterpriseType::zh)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(ind: &str, ent: &str) -> Hit {
        Hit {
            enterprise_id: ent.into(),
            product_id: Some("P00001".into()),
            date: NaiveDate::from_ymd_opt(2026, 10, 20).unwrap(),
            indicator: ind.into(),
            window_start: NaiveDate::from_ymd_opt(2026, 10, 20).unwrap(),
            window_end: NaiveDate::from_ymd_opt(2026, 10, 20).unwrap(),
            observed: 12.0,
            expected: 3.0,
            detail: "batch=B1;expiry=2026-09-30".into(),
        }
    }

    #[test]
    fn score_is_a_noisy_or_of_distinct_indicators() {
        let hits = vec![
            hit("sales_spike", "E1"),
            hit("sales_spike", "E1"),
            hit("failed_batch_sold", "E1"),
        ];
        let rows = build(&hits, &[], &HashMap::new(), &HashMap::new());
        assert_eq!(rows.len(), 1);
        let expect = 100.0 * (1.0 - (1.0 - 0.2) * (1.0 - 0.6));
        assert!((rows[0].score - expect).abs() < 1e-9, "{}", rows[0].score);
        assert_eq!(rows[0].grade, "C");
        assert_eq!(rows[0].items.len(), 3);
        assert_eq!(
            rows[0].items[0].indicator, "failed_batch_sold",
            "most severe first"
        );
        assert_eq!(rows[0].indicators, "failed_batch_sold,sales_spike");
    }

    #[test]
    fn grades_cut_at_25_50_75() {
        assert_eq!(grade(0.0), "A");
        assert_eq!(grade(24.99), "A");
        assert_eq!(grade(25.0), "B");
        assert_eq!(grade(50.0), "C");
        assert_eq!(grade(75.0), "D");
        assert_eq!(grade(100.0), "D");
    }

    #[test]
    fn rows_are_ranked_per_day_by_score() {
        let mut hits = vec![hit("sales_spike", "E1"), hit("expired_batch_sold", "E2")];
        let mut later = hit("sales_spike", "E3");
        later.date = NaiveDate::from_ymd_opt(2026, 10, 21).unwrap();
        hits.push(later);
        let rows = build(&hits, &[], &HashMap::new(), &HashMap::new());
        let ranks: Vec<(String, u32)> = rows
            .iter()
            .map(|r| (r.enterprise_id.clone(), r.rank))
            .collect();
        assert_eq!(
            ranks,
            vec![("E2".into(), 1), ("E1".into(), 2), ("E3".into(), 1)]
        );
    }

    #[test]
    fn reasons_state_the_evidence() {
        let r = reason(&hit("expired_batch_sold", "E1"));
        assert_eq!(
            r,
            "sold 12 packages of batch B1 which expired on 2026-09-30"
        );
        let r = reason(&hit("sales_spike", "E1"));
        assert!(r.contains("4.0×"), "{r}");
    }
}
