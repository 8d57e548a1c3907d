//! The message catalogue of the workbench and the enterprise end: Chinese first, English
//! available (`?lang=en` once, remembered in a cookie). Templates call `t("key")`; a key
//! missing from the catalogue shows as itself, and a test checks every `t("…")` of the
//! templates has both languages.

use axum::http::HeaderMap;

/// A language of the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// 简体中文 (the default).
    Zh,
    /// English.
    En,
}

impl Lang {
    /// `zh` or `en`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Zh => "zh",
            Self::En => "en",
        }
    }

    /// One of two texts.
    pub fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Self::Zh => zh,
            Self::En => en,
        }
    }

    /// The language of a request: `?lang=` first, then the cookie, else Chinese.
    pub fn of(headers: &HeaderMap, query_lang: Option<&str>) -> Self {
        let chosen = query_lang
            .map(str::to_string)
            .or_else(|| crate::cookies::cookie(headers, crate::cookies::LANG_COOKIE));
        match chosen.as_deref() {
            Some("en") => Self::En,
            _ => Self::Zh,
        }
    }
}

/// The catalogue: key, Chinese, English.
pub const MESSAGES: &[(&str, &str, &str)] = &[
    (
        "app",
        "药品安全风险预警工作台",
        "Drug safety risk early-warning workbench",
    ),
    ("sign_in", "登录", "Sign in"),
    ("sign_out", "退出", "Sign out"),
    ("username", "用户名", "User name"),
    ("password", "密码", "Password"),
    (
        "bad_login",
        "用户名或密码错误，或账号已停用。",
        "Wrong user name or password, or the account is disabled.",
    ),
    ("home", "工作台", "Home"),
    ("risk_list", "风险清单", "Risk list"),
    ("cases", "案件", "Cases"),
    ("audit", "操作日志", "Audit trail"),
    ("queues", "待办事项", "Queues"),
    (
        "q_review",
        "待我审核的文书草稿",
        "Drafts awaiting my review",
    ),
    ("q_approval", "待审批的文书", "Documents awaiting approval"),
    ("q_due_week", "本周到期", "Due this week"),
    ("q_overdue", "已逾期", "Overdue"),
    (
        "q_verify",
        "待我复核的整改报告",
        "Rectification reports awaiting my verification",
    ),
    ("q_manual", "需人工送达", "Awaiting service by hand"),
    ("none", "无", "None"),
    ("date", "日期", "Date"),
    ("rank", "排名", "Rank"),
    ("enterprise", "企业", "Enterprise"),
    ("credit_code", "统一社会信用代码", "Credit code"),
    ("type", "类型", "Type"),
    ("region", "地区", "Region"),
    ("score", "风险分", "Score"),
    ("grade", "风险等级", "Grade"),
    ("indicators", "风险指标", "Indicators"),
    ("evidence", "证据", "Evidence"),
    ("model_reasons", "模型依据", "Model reasons"),
    ("proposal", "系统建议", "Proposal"),
    (
        "proposal_caution",
        "建议开展行政告诫",
        "Proposed: caution notice",
    ),
    ("disposition", "处置", "Disposition"),
    ("confirm", "确认并立案", "Confirm and open a case"),
    ("dismiss", "排除", "Dismiss"),
    ("watch", "关注", "Watch"),
    ("reason", "理由", "Reason"),
    ("filter", "筛选", "Filter"),
    ("all", "全部", "All"),
    ("history", "企业档案", "Enterprise history"),
    ("earlier_lists", "历次风险清单", "Earlier risk lists"),
    ("credit_file", "信用档案", "Credit file"),
    ("draft", "文书草稿", "Draft"),
    ("drafts", "文书草稿", "Drafts"),
    ("state", "状态", "State"),
    (
        "inspector_note",
        "核查情况（写入文书“查明的事实”）",
        "Inspector's statement (printed in the facts)",
    ),
    ("exclude", "不列入文书", "Leave out"),
    (
        "penalty_content",
        "处罚内容（由办案人员填写，系统不提出处罚）",
        "Penalty (written by the case officer; the system proposes none)",
    ),
    ("penalty_basis", "处罚依据", "Legal basis of the penalty"),
    ("violated", "违反的规定", "Provision violated"),
    ("hearing_place", "听证地点", "Hearing place"),
    ("save", "保存", "Save"),
    ("submit", "提交审批", "Submit for approval"),
    ("approve", "批准签发", "Approve and issue"),
    ("return", "退回修改", "Return"),
    ("withdraw", "撤回", "Withdraw"),
    ("preview", "文书预览", "Preview"),
    ("case", "案件", "Case"),
    ("timeline", "办理过程", "Timeline"),
    ("measures", "措施与期限", "Measures and deadlines"),
    ("due", "期限", "Due"),
    ("article", "依据", "Article"),
    ("documents", "执法文书", "Documents"),
    ("deliveries", "送达情况", "Deliveries"),
    ("comments", "意见", "Comments"),
    ("add_comment", "添加意见", "Add a comment"),
    ("attachments", "附件", "Attachments"),
    ("upload", "上传", "Upload"),
    ("assignee", "承办人", "Assigned to"),
    ("assign", "指派", "Assign"),
    ("actions", "办理", "Actions"),
    ("report_received", "收到整改报告", "Report received"),
    ("verified", "整改复核通过", "Rectification verified"),
    ("served_by_hand", "已直接送达", "Served by hand"),
    (
        "resume_request",
        "收到恢复销售申请",
        "Resume request received",
    ),
    ("lifted", "解除暂停销售", "Suspension lifted"),
    ("escalate", "升级处置", "Escalate"),
    (
        "ground_risk_increased",
        "措施期间风险升高",
        "The risk rose during the measures",
    ),
    (
        "ground_interview_refused",
        "无正当理由拒不接受约谈",
        "Interview refused without good reason",
    ),
    ("facts", "事实与理由", "Facts and grounds"),
    ("refer", "移交立案查处", "Refer for investigation"),
    ("close_case", "结案", "Close the case"),
    (
        "ground_compliant",
        "经研判已达到可接受的合规状态",
        "Acceptable compliance reached",
    ),
    (
        "ground_transferred",
        "移交案件查办单位或并案处理",
        "Transferred to investigation or merged",
    ),
    (
        "ground_ceased",
        "企业已注销许可或停止经营",
        "The enterprise ceased trading",
    ),
    ("approver_actions", "负责人决定", "Approver's decisions"),
    ("event", "事项", "Event"),
    ("actor", "办理人", "By"),
    ("note", "说明", "Note"),
    ("my_notices", "本企业收到的文书", "Our notices"),
    ("open_notice", "查看文书", "Open the notice"),
    (
        "confirm_receipt",
        "我已阅读本文书，确认签收",
        "I have read this notice and confirm receipt",
    ),
    ("receipt_confirmed", "已确认签收", "Receipt confirmed"),
    ("not_confirmed", "尚未确认签收", "Receipt not yet confirmed"),
    (
        "rectification_report",
        "提交整改报告",
        "Submit the rectification report",
    ),
    ("report_text", "整改情况说明", "What was rectified"),
    (
        "file",
        "附件（PDF、JPEG、PNG，不超过 10 MB）",
        "File (PDF, JPEG or PNG, at most 10 MB)",
    ),
    (
        "guidance",
        "合规指引（免罚早知道、整改有导航）",
        "Compliance guidance",
    ),
    ("working_days_left", "剩余工作日", "Working days left"),
    ("overdue", "已逾期", "Overdue"),
    ("language", "English", "中文"),
    ("error", "无法完成", "Could not be done"),
    ("back", "返回", "Back"),
    (
        "no_authority",
        "未配置签发机关：批准前请在 pharmwatch.toml 中设置 [notices.authority]。",
        "No issuing authority is configured: set [notices.authority] in pharmwatch.toml before approving.",
    ),
];

/// The text of `key` in `lang` (the key itself when the catalogue lacks it).
pub fn text(key: &str, lang: &str) -> String {
    MESSAGES
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, zh, en)| if lang == "en" { *en } else { *zh })
        .unwrap_or(key)
        .to_string()
}

/// Adds `t(key)` to a template environment: the text in the page's `lang`.
pub fn install(env: &mut minijinja::Environment<'static>) {
    env.add_function("t", |state: &minijinja::State<'_, '_>, key: &str| {
        let lang = state
            .lookup("lang")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        text(key, &lang)
    });
    env.add_filter("region", |code: &str| {
        pharmwatch_core::regions::region_name(code)
            .unwrap_or(code)
            .to_string()
    });
    env.add_filter("measure", |code: &str| {
        pharmwatch_casework::guidance::measure_name(code)
    });
    env.add_filter("urlencode", |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    });
    env.add_filter("indicator", |name: &str| {
        pharmwatch_core::display::indicator_zh(name).to_string()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_the_templates_is_in_the_catalogue_in_both_languages() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
        let mut missing = Vec::new();
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.starts_with("wb_") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for part in text.split("t(\"").skip(1) {
                let key = part.split('"').next().unwrap_or_default();
                checked += 1;
                match MESSAGES.iter().find(|(k, _, _)| *k == key) {
                    Some((_, zh, en)) if !zh.is_empty() && !en.is_empty() => {}
                    _ => missing.push(format!("{name}: {key}")),
                }
            }
        }
        assert!(checked > 50, "only {checked} keys found in the templates");
        assert!(
            missing.is_empty(),
            "missing from the catalogue: {missing:?}"
        );
    }
}
