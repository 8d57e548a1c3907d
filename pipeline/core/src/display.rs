//! Display helpers shared by every role that prints for people: HTML escaping of data put
//! into pages and e-mails, and the Chinese names of indicators, enterprise types and document
//! kinds (a document speaks its addressee's language; codes stay English in data).

/// HTML-escapes text from the data (also for the e-mail bodies of the delivery worker).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// The Chinese name of a document kind (`其他文书` when unknown).
pub fn document_zh(kind: &str) -> &'static str {
    match kind {
        "caution_notice" => "行政告诫书",
        "interview_notice" => "约谈通知书",
        "suspension_decision" => "暂停销售决定书",
        "lifting_notice" => "解除通知书",
        _ => "其他文书",
    }
}

/// The Chinese name of an enterprise type (the code itself when unknown).
pub fn enterprise_type_zh(t: &str) -> &str {
    pharmwatch_schemas::EnterpriseType::parse(t).map_or(t, |e| e.zh())
}

/// The Chinese name of a risk indicator, for documents (the risk list keeps its English
/// explanation; a notice speaks the addressee's language).
pub fn indicator_zh(indicator: &str) -> &'static str {
    match indicator {
        "failed_batch_sold" => "销售抽检不合格或未放行批次的药品",
        "expired_batch_sold" => "销售超过有效期批次的药品",
        "trace_code_duplicate" => "药品追溯码重复销售",
        "sold_not_bought" => "销售无购进记录的药品",
        "special_drug_volume" => "特殊管理药品销量异常增长",
        "price_below_median" => "零售价格明显低于全省中位价",
        "inventory_mismatch" => "库存数据与进销记录不符",
        "reporting_stopped" => "停止报送进销存数据",
        "production_spike" => "生产量异常增长",
        "sales_spike" => "销售量异常增长",
        "purchase_spike" => "采购量异常增长",
        "model_anomaly" => "经营数据综合异常（模型识别）",
        _ => "其他风险信号",
    }
}
