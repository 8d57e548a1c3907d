//! The supervisors' daily report (`OUT/report.html`, 风险日报) and the nightly run's metrics.
//!
//! After a nightly run, [`Snapshot::load`] reads from the risk store what a supervisor asks
//! first: the day's risk list by grade and region, the 30-day trend, the top indicators, the
//! notices issued and the open and overdue cases. [`write_html`] renders it as one
//! self-contained HTML file (no script, no external file): the charts are inline SVG drawn with
//! plotters, their labels SVG text, so the browser renders the Chinese with the reader's fonts.
//! `crate::metrics::run_metrics` turns the same snapshot and the run's output into metrics for
//! node_exporter's textfile collector.
//!
//! Invariants: everything shown comes from the store (the report of a rerun shows what the
//! store holds, not only what this run computed); the file is written whole (temporary file,
//! then rename); names from the data are HTML-escaped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{Datelike, Duration, NaiveDate};
use pharmwatch_core::params;
use plotters::prelude::*;

use crate::error::{BatchError, Result};
use minijinja::context;
use pharmwatch_core::display::{document_zh, enterprise_type_zh, indicator_zh};
use pharmwatch_core::error::CoreError;
use pharmwatch_core::metrics::GRADES;
use pharmwatch_core::store::{Store, sql_err};

/// File name of the report inside the output directory.
pub const REPORT_FILE: &str = "report.html";
/// Days of the trend chart.
pub const TREND_DAYS: i64 = 30;

const DAY_LIST_SQL: &str = include_str!("../../sql/report/day_list.sql");
const TREND_SQL: &str = include_str!("../../sql/report/trend.sql");
const DOCUMENTS_SQL: &str = include_str!("../../sql/report/documents.sql");
const CASES_SQL: &str = include_str!("../../sql/report/cases.sql");
const OVERDUE_SQL: &str = include_str!("../../sql/report/overdue.sql");
const PENDING_SQL: &str = include_str!("../../sql/report/pending_deadlines.sql");

/// A row of the day's risk list as the report shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DayRow {
    /// Rank within the day.
    pub rank: i64,
    /// Enterprise name.
    pub enterprise_name: String,
    /// Enterprise type.
    pub enterprise_type: String,
    /// Region code.
    pub region_code: String,
    /// Region name (the code when the store does not know it).
    pub region_name: String,
    /// Risk grade A–D.
    pub grade: String,
    /// Score 0–100.
    pub score: f64,
    /// Indicators hit, comma-separated.
    pub indicators: String,
    /// The most severe item's reason.
    pub top_reason: String,
    /// The same reason in Chinese (empty when the items cannot be read).
    pub top_reason_zh: String,
}

/// Documents of one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentCount {
    /// Document kind (`caution_notice` …).
    pub kind: String,
    /// In the ledger.
    pub total: i64,
    /// Issued on the run date.
    pub on_day: i64,
}

/// An open case with an overdue measure.
#[derive(Debug, Clone, PartialEq)]
pub struct OverdueCase {
    /// Case id.
    pub case_id: String,
    /// Enterprise name.
    pub enterprise_name: String,
    /// Measure code.
    pub measure: String,
    /// Its legal basis.
    pub article: String,
    /// Its due date.
    pub due_date: String,
}

/// What the report shows, read from the store.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The business day of the list.
    pub day: NaiveDate,
    /// The run date (notices issued on it count as the day's).
    pub run_date: NaiveDate,
    /// The day's risk list by rank.
    pub rows: Vec<DayRow>,
    /// Per day of the trend window: rows per grade, in [`GRADES`] order.
    pub trend: Vec<(NaiveDate, [i64; 4])>,
    /// Documents per kind.
    pub documents: Vec<DocumentCount>,
    /// Open cases.
    pub cases_open: i64,
    /// Open cases with an overdue measure.
    pub cases_overdue: i64,
    /// Escalations recorded.
    pub escalations: i64,
    /// The overdue cases.
    pub overdue: Vec<OverdueCase>,
    /// The last day the working-day calendar covers (built-in and loaded years).
    pub calendar_covered_until: NaiveDate,
    /// Deadlines of open measures waiting for a year the calendar does not cover yet.
    pub deadlines_pending: i64,
    /// Overdue stages of referred cases' penalty procedures (filled by the nightly job, which
    /// holds the rules; empty when loaded alone).
    pub penalty_overdue: Vec<pharmwatch_casework::penalty::OverdueStage>,
}

/// The index of grade `g` in [`GRADES`] (most severe first).
pub fn grade_index(g: &str) -> Option<usize> {
    GRADES.iter().position(|x| *x == g)
}

/// The Chinese reason of the most severe item of a row's items (JSON), as the English
/// `top_reason` is of the same item.
fn top_reason_zh(items_json: &str) -> String {
    let items: Vec<pharmwatch_core::risk::RiskItem> =
        serde_json::from_str(items_json).unwrap_or_default();
    items
        .iter()
        .max_by(|a, b| a.severity.total_cmp(&b.severity))
        .map(pharmwatch_core::risk::reason_zh)
        .unwrap_or_default()
}

impl Snapshot {
    /// Reads the report of business day `day` (notices of `run_date`) from the store.
    pub fn load(store: &Store, day: NaiveDate, run_date: NaiveDate) -> Result<Self> {
        let conn = store.conn_ref();
        let path = store.path();
        let err = |what: &'static str| move |e| sql_err(path, what, e);
        let rows = {
            let mut st = conn.prepare(DAY_LIST_SQL).map_err(err("day list"))?;
            st.query_map([day.to_string()], |r| {
                Ok(DayRow {
                    rank: r.get(0)?,
                    enterprise_name: r.get(1)?,
                    enterprise_type: r.get(2)?,
                    region_code: r.get(3)?,
                    region_name: r.get(4)?,
                    grade: r.get(5)?,
                    score: r.get(6)?,
                    indicators: r.get(7)?,
                    top_reason: r.get(8)?,
                    top_reason_zh: top_reason_zh(&r.get::<_, String>(9)?),
                })
            })
            .map_err(err("day list"))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(err("day list"))?
        };
        let first = day - Duration::days(TREND_DAYS - 1);
        let mut per_day: BTreeMap<NaiveDate, [i64; 4]> = (0..TREND_DAYS)
            .map(|i| (first + Duration::days(i), [0; 4]))
            .collect();
        {
            let mut st = conn.prepare(TREND_SQL).map_err(err("trend"))?;
            let it = st
                .query_map(params![first.to_string(), day.to_string()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(err("trend"))?;
            for row in it {
                let (d, g, n) = row.map_err(err("trend"))?;
                if let (Ok(d), Some(gi)) = (d.parse::<NaiveDate>(), grade_index(&g))
                    && let Some(slot) = per_day.get_mut(&d)
                {
                    slot[gi] += n;
                }
            }
        }
        let documents = {
            let mut st = conn.prepare(DOCUMENTS_SQL).map_err(err("documents"))?;
            st.query_map([run_date.to_string()], |r| {
                Ok(DocumentCount {
                    kind: r.get(0)?,
                    total: r.get(1)?,
                    on_day: r.get(2)?,
                })
            })
            .map_err(err("documents"))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(err("documents"))?
        };
        let (cases_open, cases_overdue, escalations) = conn
            .query_row(CASES_SQL, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(err("cases"))?;
        let overdue = {
            let mut st = conn.prepare(OVERDUE_SQL).map_err(err("overdue cases"))?;
            st.query_map([], |r| {
                Ok(OverdueCase {
                    case_id: r.get(0)?,
                    enterprise_name: r.get(1)?,
                    measure: r.get(2)?,
                    article: r.get(3)?,
                    due_date: r.get(4)?,
                })
            })
            .map_err(err("overdue cases"))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(err("overdue cases"))?
        };
        let base = pharmwatch_regulation::Calendar::embedded()?;
        let calendar = pharmwatch_core::calendar_store::load(conn, path, &base)?;
        let deadlines_pending = conn
            .query_row(PENDING_SQL, [], |r| r.get(0))
            .map_err(err("pending deadlines"))?;
        Ok(Self {
            day,
            run_date,
            rows,
            trend: per_day.into_iter().collect(),
            documents,
            cases_open,
            cases_overdue,
            escalations,
            overdue,
            calendar_covered_until: calendar.last_covered_day(),
            deadlines_pending,
            penalty_overdue: Vec::new(),
        })
    }

    /// Rows of the day per region name and grade, regions by rows (most first).
    pub fn by_region(&self) -> Vec<(String, [i64; 4])> {
        let mut m: BTreeMap<String, [i64; 4]> = BTreeMap::new();
        for r in &self.rows {
            if let Some(gi) = grade_index(&r.grade) {
                m.entry(r.region_name.clone()).or_default()[gi] += 1;
            }
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by(|a, b| {
            b.1.iter()
                .sum::<i64>()
                .cmp(&a.1.iter().sum::<i64>())
                .then_with(|| a.0.cmp(&b.0))
        });
        v
    }

    /// Rows of the day per indicator (a row counts once for every indicator it hit), most first.
    pub fn by_indicator(&self) -> Vec<(String, i64)> {
        let mut m: BTreeMap<String, i64> = BTreeMap::new();
        for r in &self.rows {
            for i in r
                .indicators
                .split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
            {
                *m.entry(i.to_string()).or_default() += 1;
            }
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }
}

/// Colours of grades D, C, B, A (most severe first).
const GRADE_COLOURS: [RGBColor; 4] = [
    RGBColor(192, 57, 43),
    RGBColor(230, 126, 34),
    RGBColor(241, 196, 15),
    RGBColor(39, 174, 96),
];
const FONT: &str = "Noto Sans CJK SC";

fn chart_err(chart: &str) -> impl Fn(String) -> BatchError + '_ {
    move |reason| BatchError::Chart {
        chart: chart.to_string(),
        reason,
    }
}

/// Stacked bars: the day's rows per region, one segment per grade.
fn region_chart(snap: &Snapshot) -> Result<String> {
    let data = snap.by_region();
    let e = chart_err("region");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (820, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
        let ymax = data
            .iter()
            .map(|(_, c)| c.iter().sum::<i64>())
            .max()
            .unwrap_or(0)
            .max(1);
        // Regions at integer x, bars centred on them.
        let n = data.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption("当日风险清单：各地区按风险等级", (FONT, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(44)
            .build_cartesian_2d(-0.5..(n - 0.5), 0..(ymax + ymax / 10 + 1))
            .map_err(|x| e(x.to_string()))?;
        let names: Vec<String> = data.iter().map(|(r, _)| r.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(data.len().max(1) + 1)
            .x_label_formatter(&|x: &f64| {
                if (x - x.round()).abs() < 1e-6 && *x >= 0.0 {
                    names.get(x.round() as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_label_style((FONT, 15))
            .y_desc("企业·日（条）")
            .y_label_style((FONT, 15))
            .draw()
            .map_err(|x| e(x.to_string()))?;
        for (gi, g) in GRADES.iter().enumerate() {
            let colour = GRADE_COLOURS[gi];
            chart
                .draw_series(data.iter().enumerate().filter(|(_, (_, c))| c[gi] > 0).map(
                    |(i, (_, c))| {
                        let below: i64 = c[..gi].iter().sum();
                        let x = i as f64;
                        Rectangle::new(
                            [(x - 0.35, below), (x + 0.35, below + c[gi])],
                            colour.filled(),
                        )
                    },
                ))
                .map_err(|x| e(x.to_string()))?
                .label(format!("{g}级"))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled())
                });
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 15))
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|x| e(x.to_string()))?;
        root.present().map_err(|x| e(x.to_string()))?;
    }
    Ok(svg)
}

/// Lines: rows per grade per day over the trend window.
fn trend_chart(snap: &Snapshot) -> Result<String> {
    let e = chart_err("trend");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (820, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
        let ymax = snap
            .trend
            .iter()
            .flat_map(|(_, c)| c.iter().copied())
            .max()
            .unwrap_or(0)
            .max(1);
        let n = snap.trend.len().max(2) as i32;
        let days: Vec<NaiveDate> = snap.trend.iter().map(|(d, _)| *d).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("近{TREND_DAYS}日风险清单趋势（按等级）"),
                (FONT, 22),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0..(n - 1), 0..(ymax + ymax / 10 + 1))
            .map_err(|x| e(x.to_string()))?;
        chart
            .configure_mesh()
            .x_labels(10)
            .x_label_formatter(&|i| {
                days.get(*i as usize)
                    .map(|d| d.format("%m-%d").to_string())
                    .unwrap_or_default()
            })
            .x_label_style((FONT, 15))
            .y_desc("企业·日（条）")
            .y_label_style((FONT, 15))
            .draw()
            .map_err(|x| e(x.to_string()))?;
        for (gi, g) in GRADES.iter().enumerate() {
            let colour = GRADE_COLOURS[gi];
            chart
                .draw_series(LineSeries::new(
                    snap.trend
                        .iter()
                        .enumerate()
                        .map(|(i, (_, c))| (i as i32, c[gi])),
                    colour.stroke_width(2),
                ))
                .map_err(|x| e(x.to_string()))?
                .label(format!("{g}级"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 15))
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|x| e(x.to_string()))?;
        root.present().map_err(|x| e(x.to_string()))?;
    }
    Ok(svg)
}

/// Horizontal bars: the day's rows per indicator (Chinese names), most first.
fn indicator_chart(snap: &Snapshot) -> Result<String> {
    let data: Vec<(String, i64)> = snap.by_indicator().into_iter().take(10).collect();
    let e = chart_err("indicators");
    let mut svg = String::new();
    {
        let h = 60 + 30 * data.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (820, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
        let xmax = data.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
        let n = data.len().max(1) as i32;
        let labels: Vec<&str> = data.iter().map(|(i, _)| indicator_zh(i)).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption("当日主要风险指标", (FONT, 22))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(250)
            .build_cartesian_2d(0..(xmax + xmax / 10 + 1), 0..n)
            .map_err(|x| e(x.to_string()))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(data.len().max(1))
            .y_label_formatter(&|i| {
                // Most frequent at the top.
                let idx = (n - 1 - *i) as usize;
                labels.get(idx).map(|s| s.to_string()).unwrap_or_default()
            })
            .y_label_style((FONT, 15))
            .x_label_style((FONT, 15))
            .x_desc("风险清单条数")
            .draw()
            .map_err(|x| e(x.to_string()))?;
        chart
            .draw_series(data.iter().enumerate().map(|(i, (_, v))| {
                let y = n - 1 - i as i32;
                let mut bar =
                    Rectangle::new([(0, y), (*v, y + 1)], RGBColor(41, 128, 185).filled());
                bar.set_margin(5, 5, 0, 0);
                bar
            }))
            .map_err(|x| e(x.to_string()))?;
        root.present().map_err(|x| e(x.to_string()))?;
    }
    Ok(svg)
}

/// Rows of the day's list shown in the report's table.
pub const TABLE_ROWS: usize = 50;

const REPORT_TEMPLATE: &str = include_str!("../../templates/report.html.j2");

/// The report as one self-contained HTML page.
pub fn html(snap: &Snapshot) -> Result<String> {
    let by_grade = |g: &str| snap.rows.iter().filter(|r| r.grade == g).count();
    let rows: Vec<minijinja::Value> = snap
        .rows
        .iter()
        .take(TABLE_ROWS)
        .map(|r| {
            let inds: Vec<&str> = r
                .indicators
                .split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .map(indicator_zh)
                .collect();
            context! {
                rank => r.rank,
                enterprise_name => &r.enterprise_name,
                enterprise_type => enterprise_type_zh(&r.enterprise_type),
                region_name => &r.region_name,
                grade => &r.grade,
                score => format!("{:.1}", r.score),
                indicators => inds.join("、"),
                top_reason => if r.top_reason_zh.is_empty() { &r.top_reason } else { &r.top_reason_zh },
            }
        })
        .collect();
    let documents: Vec<minijinja::Value> = snap
        .documents
        .iter()
        .map(|d| context! { title => document_zh(&d.kind), on_day => d.on_day, total => d.total })
        .collect();
    let overdue: Vec<minijinja::Value> = snap
        .overdue
        .iter()
        .map(|c| {
            context! {
                case_id => &c.case_id,
                enterprise_name => &c.enterprise_name,
                measure => pharmwatch_casework::guidance::measure_name(&c.measure),
                article => &c.article,
                due_date => &c.due_date,
            }
        })
        .collect();
    let ctx = context! {
        day => snap.day.to_string(),
        run_date => snap.run_date.to_string(),
        rows_total => snap.rows.len(),
        grade_d => by_grade("D"),
        grade_c => by_grade("C"),
        issued => snap.documents.iter().map(|d| d.on_day).sum::<i64>(),
        cases_open => snap.cases_open,
        cases_overdue => snap.cases_overdue,
        escalations => snap.escalations,
        calendar_notice => calendar_notice(snap),
        region_bars => snap.by_region().len(),
        region_svg => region_chart(snap)?,
        trend_days => TREND_DAYS,
        trend_points => snap.trend.len(),
        trend_svg => trend_chart(snap)?,
        indicator_bars => snap.by_indicator().len().min(10),
        indicator_svg => indicator_chart(snap)?,
        rows => rows,
        documents => documents,
        overdue => overdue,
    };
    // Every value from the data is escaped by the template; the charts are SVG the report
    // drew itself (their text escaped by plotters), inserted as they are.
    let mut env = pharmwatch_core::display::templates();
    env.add_template("report.html.j2", REPORT_TEMPLATE)
        .and_then(|()| env.get_template("report.html.j2"))
        .and_then(|t| t.render(ctx))
        .map_err(|e| BatchError::Template {
            template: "report.html.j2".into(),
            source: e,
        })
}

/// The report's warning about the working-day calendar, in words: deadlines waiting for next
/// year's schedule, or coverage ending within the warning period. Empty when neither applies.
fn calendar_notice(snap: &Snapshot) -> String {
    let left = (snap.calendar_covered_until - snap.run_date).num_days();
    let next = snap.calendar_covered_until.year() + 1;
    let mut parts = Vec::new();
    if snap.deadlines_pending > 0 {
        parts.push(format!(
            "{} 项整改期限待{next}年工作日历公布后确定（deadlines pending the {next} calendar）",
            snap.deadlines_pending
        ));
    }
    if left < pharmwatch_casework::measures::COVERAGE_WARNING_DAYS {
        parts.push(format!(
            "工作日历仅覆盖至 {}（还剩 {left} 天），请在国务院公布{next}年节假日安排后执行 \
             pharmwatch calendar import",
            snap.calendar_covered_until
        ));
    }
    parts.join("；")
}

/// Writes the report into `out_dir` whole; returns its path.
pub fn write_html(out_dir: &Path, snap: &Snapshot) -> Result<PathBuf> {
    let text = html(snap)?;
    let path = out_dir.join(REPORT_FILE);
    let tmp = out_dir.join(format!("{REPORT_FILE}.tmp"));
    std::fs::write(&tmp, text).map_err(|e| CoreError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| CoreError::io(&path, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(grade: &str, region: &str, indicators: &str) -> DayRow {
        DayRow {
            rank: 1,
            enterprise_name: "<康泰>大药房".into(),
            enterprise_type: "retail_pharmacy".into(),
            region_code: "150200".into(),
            region_name: region.into(),
            grade: grade.into(),
            score: 80.0,
            indicators: indicators.into(),
            top_reason: "reason".into(),
            top_reason_zh: String::new(),
        }
    }

    fn snapshot() -> Snapshot {
        let day = NaiveDate::from_ymd_opt(2026, 4, 15).unwrap_or_default();
        Snapshot {
            day,
            run_date: day,
            rows: vec![
                row("D", "包头市", "expired_batch_sold,sales_spike"),
                row("C", "包头市", "sales_spike"),
                row("D", "赤峰市", "sales_spike"),
            ],
            trend: (0..TREND_DAYS)
                .map(|i| (day - Duration::days(TREND_DAYS - 1 - i), [i % 3, 1, 2, 0]))
                .collect(),
            documents: vec![DocumentCount {
                kind: "caution_notice".into(),
                total: 5,
                on_day: 2,
            }],
            cases_open: 4,
            cases_overdue: 1,
            calendar_covered_until: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap_or_default(),
            deadlines_pending: 0,
            escalations: 1,
            overdue: Vec::new(),
            penalty_overdue: Vec::new(),
        }
    }

    #[test]
    fn the_store_names_every_region_the_simulator_knows() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&pharmwatch_core::db::scratch_store(dir.path()))
            .unwrap_or_else(|e| panic!("{e}"));
        for (code, name, _) in pharmwatch_core::regions::REGIONS {
            let stored: String = store
                .conn_ref()
                .query_row("SELECT name FROM regions WHERE code = ?1", [code], |r| {
                    r.get(0)
                })
                .unwrap_or_else(|e| panic!("{code}: {e}"));
            assert_eq!(stored, *name);
        }
    }

    #[test]
    fn regions_and_indicators_are_counted_most_first() {
        let s = snapshot();
        assert_eq!(
            s.by_region(),
            vec![
                ("包头市".to_string(), [1, 1, 0, 0]),
                ("赤峰市".to_string(), [1, 0, 0, 0])
            ]
        );
        assert_eq!(s.by_indicator()[0], ("sales_spike".to_string(), 3));
    }

    #[test]
    fn the_report_is_self_contained_with_chinese_svg_text_and_escaped_names() {
        let h = html(&snapshot()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.matches("<svg").count(), 3);
        assert!(!h.contains("<script") && !h.contains("src=\""));
        assert!(
            h.contains("包头市") && h.contains("销售量异常增长"),
            "SVG text in Chinese"
        );
        assert!(h.contains("&lt;康泰&gt;大药房") && !h.contains("<康泰>"));
        // One trend line of 30 points per grade.
        let lines = h
            .split("<polyline")
            .skip(1)
            .filter(|p| {
                let pts = p.split("points=\"").nth(1).unwrap_or("");
                let pts = &pts[..pts.find('"').unwrap_or(0)];
                pts.split_whitespace().count() == TREND_DAYS as usize
            })
            .count();
        assert_eq!(lines, 4);
        // Three grade segments in the region chart, one bar per indicator.
        assert!(h.contains("fill=\"#C0392B\""), "grade D bars");
    }
}
