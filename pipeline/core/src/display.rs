//! Display helpers shared by every role that prints for people: the Chinese names of
//! indicators, enterprise types and document kinds (a document speaks its addressee's
//! language; codes stay English in data). HTML is never escaped by hand: pages, documents and
//! e-mails are minijinja templates with auto-escaping, from [`templates`].
//!
//! Invariant: in an HTML template every value that is not marked safe is escaped — `&`, `<`,
//! `>`, `"` and `'` — and nothing else, so a URL stays readable in the source of a page or an
//! e-mail (`/` is not special in HTML text or quoted attributes).

use minijinja::value::ValueKind;
use minijinja::{AutoEscape, Environment, Output, State, Value};

/// A template environment whose `.html.j2` templates (and `render_str`) escape HTML, with
/// strict undefined values: a missing variable is an error, not an empty string.
pub fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".md.j2") || name.ends_with(".txt.j2") {
            AutoEscape::None
        } else {
            AutoEscape::Html
        }
    });
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_formatter(html_formatter);
    env
}

/// Writes a value, escaping strings the way [`escape_html`] does when the template escapes
/// HTML; everything else as minijinja's own formatter writes it.
fn html_formatter(
    out: &mut Output<'_>,
    state: &mut State<'_, '_>,
    value: &Value,
) -> Result<(), minijinja::Error> {
    if matches!(state.auto_escape(), AutoEscape::Html)
        && !value.is_safe()
        && value.kind() == ValueKind::String
        && let Some(s) = value.as_str()
    {
        return out
            .write_str(&escape_html(s))
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()));
    }
    minijinja::escape_formatter(out, state, value)
}

/// `text` with `&`, `<`, `>`, `"` and `'` replaced by their character references.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_templates_escape_markup_and_keep_urls_readable() {
        let env = templates();
        let out = env
            .render_str(
                "<a href=\"{{ url }}\">{{ name }}</a> {{ n }} {{ safe }}",
                minijinja::context! {
                    url => "https://x.example/e/91/ack/abc?x=1&y='2'",
                    name => "<b>药店</b> & \"co\"",
                    n => 3,
                    safe => Value::from_safe_string("<i>ok</i>".into()),
                },
            )
            .unwrap();
        assert_eq!(
            out,
            "<a href=\"https://x.example/e/91/ack/abc?x=1&amp;y=&#39;2&#39;\">\
             &lt;b&gt;药店&lt;/b&gt; &amp; &quot;co&quot;</a> 3 <i>ok</i>"
        );
    }
}
