//! The province's regions (GB/T 2260 prefecture-level divisions of Inner Mongolia): codes,
//! Chinese names and the share of enterprises the simulator places in each. The risk list and
//! the report name regions through here.

/// Inner Mongolia's 12 prefecture-level divisions: GB/T 2260 code, Chinese name, share of
/// enterprises (roughly by population).
pub const REGIONS: &[(&str, &str, f64)] = &[
    ("150100", "呼和浩特市", 0.15),
    ("150200", "包头市", 0.13),
    ("150300", "乌海市", 0.03),
    ("150400", "赤峰市", 0.17),
    ("150500", "通辽市", 0.12),
    ("150600", "鄂尔多斯市", 0.09),
    ("150700", "呼伦贝尔市", 0.09),
    ("150800", "巴彦淖尔市", 0.06),
    ("150900", "乌兰察布市", 0.06),
    ("152200", "兴安盟", 0.05),
    ("152500", "锡林郭勒盟", 0.04),
    ("152900", "阿拉善盟", 0.01),
];

/// Region name for a code, if it is one of Inner Mongolia's.
pub fn region_name(code: &str) -> Option<&'static str> {
    REGIONS
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, n, _)| *n)
}
