//! The sweep's page (`evaluation.html`, 检出率曲线): for each anomaly kind an inline SVG line
//! chart of the detection rate against the magnitude band — with any item and with the
//! intended indicator, ± the seed-to-seed standard deviation, the targets marked — then the
//! table of the same figures and the false alarms on enterprises without labels.
//!
//! Invariants: one self-contained file (no script, no external file), rendered through the
//! project's template environment ([`pharmwatch_core::display::templates`]), so every text
//! from the data is escaped; the chart geometry is numbers this module computes, so the
//! template never marks anything safe. Written whole (temporary file, then rename).

use std::path::Path;

use minijinja::{Value, context};

use super::{BAND_NAMES, FalseAlarmSummary, KindSummary, Rate, SweepSettings, SweepSummary};
use super::{TARGET_FALSE_ALARMS, TARGET_FALSE_ALARMS_CD};
use crate::evaluate::{MODEL, SUBTLE};
use pharmwatch_batch::{BatchError, Result};
use pharmwatch_core::display::indicator_zh;
use pharmwatch_core::error::CoreError;

const TEMPLATE: &str = include_str!("../../../templates/evaluation.html.j2");
const TEMPLATE_NAME: &str = "evaluation.html.j2";

/// Chart size and plot area (pixels).
const WIDTH: f64 = 300.0;
const HEIGHT: f64 = 190.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 36.0;

/// The Chinese name of a planted kind.
pub fn kind_zh(kind: &str) -> &'static str {
    if kind == SUBTLE {
        "多项轻微异常叠加（隐蔽流弊）"
    } else {
        indicator_zh(kind)
    }
}

fn x_of(band: usize) -> f64 {
    LEFT + (band as f64 + 0.5) * (WIDTH - LEFT - RIGHT) / super::BANDS as f64
}

fn y_of(rate: f64) -> f64 {
    TOP + (1.0 - rate.clamp(0.0, 1.0)) * (HEIGHT - TOP - BOTTOM)
}

/// One series (any item or intended): the polyline and the points with their error bars.
fn series(k: &KindSummary, pick: fn(&super::BandSummary) -> &Rate) -> Value {
    let mut points = Vec::new();
    let mut marks = Vec::new();
    for b in k.bands.iter().filter(|b| b.labels > 0) {
        let r = pick(b);
        let (x, y) = (x_of(b.band), y_of(r.pooled));
        points.push(format!("{x:.1},{y:.1}"));
        marks.push(context! {
            x => format!("{x:.1}"),
            y => format!("{y:.1}"),
            lo => format!("{:.1}", y_of(r.pooled - r.sd)),
            hi => format!("{:.1}", y_of(r.pooled + r.sd)),
            title => format!("{} {:.2} ± {:.2} (n={})", BAND_NAMES[b.band].1, r.pooled, r.sd, b.labels),
        });
    }
    context! { points => points.join(" "), marks => marks }
}

fn kind_context(k: &KindSummary) -> Value {
    let targets: Vec<Value> = k
        .bands
        .iter()
        .filter_map(|b| {
            b.target.map(|t| {
                let x = x_of(b.band);
                context! {
                    x1 => format!("{:.1}", x - 22.0),
                    x2 => format!("{:.1}", x + 22.0),
                    y => format!("{:.1}", y_of(t)),
                }
            })
        })
        .collect();
    let rows: Vec<Value> = k
        .bands
        .iter()
        .map(|b| {
            context! {
                band => BAND_NAMES[b.band].0,
                band_zh => BAND_NAMES[b.band].1,
                magnitudes => format!("{:.2}–{:.2}", b.magnitude_lo, b.magnitude_hi),
                labels => b.labels,
                any_item => rate_text(b.labels, &b.any_item),
                intended => rate_text(b.labels, &b.intended),
                target => b.target.map_or(String::new(), |t| format!("≥ {t:.2}")),
                misses => b.misses_target(),
            }
        })
        .collect();
    context! {
        kind => &k.kind,
        zh => kind_zh(&k.kind),
        unit => &k.unit,
        intended => &k.intended_indicator,
        intended_zh => if k.intended_indicator == MODEL { indicator_zh(MODEL) } else { kind_zh(&k.kind) },
        labels => k.labels(),
        any_item => series(k, |b| &b.any_item),
        intended_series => series(k, |b| &b.intended),
        targets => targets,
        rows => rows,
    }
}

fn rate_text(labels: usize, r: &Rate) -> String {
    if labels == 0 {
        "—".into()
    } else {
        format!(
            "{:.2} ± {:.2} (mean {:.2}, {} seeds)",
            r.pooled, r.sd, r.mean, r.seeds
        )
    }
}

fn false_alarm_context(fa: &FalseAlarmSummary) -> Value {
    let mut by: Vec<(&String, &u64)> = fa.by_indicator.iter().collect();
    by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let by: Vec<Value> = by
        .into_iter()
        .map(|(k, v)| context! { indicator => k, zh => indicator_zh(k), days => v })
        .collect();
    let pct = |r: f64| format!("{:.3} %", r * 100.0);
    context! {
        enterprise_days => fa.enterprise_days,
        listed => fa.listed,
        listed_cd => fa.listed_cd,
        rate => pct(fa.rate.pooled),
        rate_sd => pct(fa.rate.sd),
        rate_cd => pct(fa.rate_cd.pooled),
        rate_cd_sd => pct(fa.rate_cd.sd),
        target => pct(TARGET_FALSE_ALARMS),
        target_cd => pct(TARGET_FALSE_ALARMS_CD),
        above => fa.rate.pooled > TARGET_FALSE_ALARMS,
        above_cd => fa.rate_cd.pooled > TARGET_FALSE_ALARMS_CD,
        by_indicator => by,
    }
}

/// The page as HTML.
pub fn render(settings: &SweepSettings, s: &SweepSummary) -> Result<String> {
    let grid: Vec<Value> = [0.0, 0.25, 0.5, 0.75, 1.0]
        .iter()
        .map(|r| context! { y => format!("{:.1}", y_of(*r)), label => format!("{r:.2}") })
        .collect();
    let xlabels: Vec<Value> = (0..super::BANDS)
        .map(|b| context! { x => format!("{:.1}", x_of(b)), zh => BAND_NAMES[b].1 })
        .collect();
    let ctx = context! {
        seeds => s.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        settings => context! {
            enterprises => settings.enterprises,
            days => settings.days,
            report_days => settings.report_days,
            noise => settings.noise,
            model => &settings.model,
        },
        width => WIDTH,
        height => HEIGHT,
        left => LEFT,
        right => WIDTH - RIGHT,
        top => TOP,
        bottom => HEIGHT - BOTTOM,
        grid => grid,
        xlabels => xlabels,
        axis_y => format!("{:.1}", HEIGHT - 6.0),
        kinds => s.kinds.iter().map(kind_context).collect::<Vec<_>>(),
        false_alarms => false_alarm_context(&s.false_alarms),
    };
    let mut env = pharmwatch_core::display::templates();
    env.add_template(TEMPLATE_NAME, TEMPLATE)
        .and_then(|()| env.get_template(TEMPLATE_NAME))
        .and_then(|t| t.render(ctx))
        .map_err(|e| BatchError::Template {
            template: TEMPLATE_NAME.into(),
            source: e,
        })
}

/// Writes the page to `path`.
pub fn write(path: &Path, settings: &SweepSettings, s: &SweepSummary) -> Result<()> {
    let text = render(settings, s)?;
    let tmp = path.with_extension("html.tmp");
    std::fs::write(&tmp, text).map_err(|e| CoreError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| CoreError::io(path, e))?;
    Ok(())
}
