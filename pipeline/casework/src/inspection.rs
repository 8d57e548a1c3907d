//! Risk-weighted random inspection plans (双随机、一公开; 蒙药监 (一)(十三)): which enterprises
//! are inspected in a period, by which inspectors, and what each inspection looks at first.
//!
//! A plan draws, per grade, the configured share of the grade's enterprises (`[inspection]` in
//! the rules: e.g. A 5 %, D 100 %; at least one of every grade that has enterprises), then for
//! each drawn enterprise its inspectors from the roster, then writes its checklist from the
//! enterprise's type, scale, grade and recent risk items, every item naming its regulation.
//!
//! Invariants:
//! - reproducible: the draw depends only on the candidates, the roster, the rules and the seed;
//!   the generator (xoshiro256++ seeded with the seed, Fisher–Yates by multiply-shift) is
//!   written out so that anyone can repeat a published plan; the seed is recorded in the plan;
//! - every grade with enterprises is inspected (`share > 0`, at least one drawn), the number
//!   drawn of a grade is `max(1, round(share × enterprises))`;
//! - an inspector is never sent to an enterprise of their own region while an inspector of
//!   another region is free for it, no two inspectors are paired twice while another pairing
//!   is possible, and the load is spread (the least loaded eligible inspectors are drawn from);
//! - at least `inspectors_per_enterprise` (≥ 2) inspectors per enterprise, or an error;
//! - every checklist line carries its article.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use pharmwatch_regulation::rules::{ChecklistItem, Scale};
use pharmwatch_regulation::{RiskGrade, Rules};
use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use pharmwatch_core::display::{escape_html, indicator_zh};
use pharmwatch_core::error::CoreError;

/// Directory of the plans inside an output directory.
pub const PLANS_DIR: &str = "inspection";

/// A planning period: a quarter (`2027-Q1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// As written, `YYYY-Qn`.
    pub label: String,
    /// First day.
    pub first: NaiveDate,
    /// Last day.
    pub last: NaiveDate,
}

impl Period {
    /// Parses `YYYY-Qn` (n = 1 … 4).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            CoreError::Config(format!(
                "--period `{text}`: expected a quarter as YYYY-Qn, e.g. 2027-Q1"
            ))
        };
        let (year, quarter) = text.split_once("-Q").ok_or_else(bad)?;
        let year: i32 = year.parse().map_err(|_| bad())?;
        let quarter: u32 = quarter.parse().map_err(|_| bad())?;
        if !(1..=4).contains(&quarter) || !(2000..=2100).contains(&year) {
            return Err(bad().into());
        }
        let first = NaiveDate::from_ymd_opt(year, 3 * quarter - 2, 1).ok_or_else(bad)?;
        let next = if quarter == 4 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(year, 3 * quarter + 1, 1)
        }
        .ok_or_else(bad)?;
        Ok(Self {
            label: format!("{year}-Q{quarter}"),
            first,
            last: next.pred_opt().ok_or_else(bad)?,
        })
    }
}

/// An inspector of the roster (执法检查人员名录库).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inspector {
    /// Roster id.
    pub inspector_id: String,
    /// Name.
    pub name: String,
    /// GB/T 2260 code of the region the inspector belongs to.
    pub region_code: String,
}

/// Reads the roster CSV (`inspector_id,name,region_code`); an error names the file, the line
/// and the field.
pub fn read_roster(path: &Path) -> Result<Vec<Inspector>> {
    let bad = |line: usize, field: &str, reason: String| CoreError::InvalidField {
        field: format!("{}:{line} field {field}", path.display()),
        reason,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| CoreError::Csv {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut out: Vec<Inspector> = Vec::new();
    let mut ids = BTreeSet::new();
    for (i, row) in reader.deserialize::<Inspector>().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| bad(line, "(row)", e.to_string()))?;
        if row.inspector_id.trim().is_empty() {
            return Err(bad(line, "inspector_id", "empty".into()).into());
        }
        if !ids.insert(row.inspector_id.clone()) {
            return Err(bad(
                line,
                "inspector_id",
                format!("`{}` listed twice", row.inspector_id),
            )
            .into());
        }
        if row.name.trim().is_empty() {
            return Err(bad(line, "name", "empty".into()).into());
        }
        if row.region_code.len() != 6 || !row.region_code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(
                line,
                "region_code",
                format!("`{}` is not a 6-digit GB/T 2260 code", row.region_code),
            )
            .into());
        }
        out.push(row);
    }
    if out.is_empty() {
        return Err(bad(1, "(file)", "the roster lists no inspector".into()).into());
    }
    Ok(out)
}

/// A recent risk item of an enterprise, from the risk lists the plan reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentItem {
    /// Business day of the risk-list row.
    pub date: NaiveDate,
    /// Indicator.
    pub indicator: String,
    /// The reason a supervisor reads.
    pub reason: String,
}

/// An enterprise the plan may draw, with what its grade and checklist come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Credit code.
    pub enterprise_id: String,
    /// Name.
    pub name: String,
    /// Type (wire name).
    pub enterprise_type: String,
    /// Region code.
    pub region_code: String,
    /// The highest risk grade of its risk-list rows in the days read (A when none).
    pub risk_grade: RiskGrade,
    /// The effective credit grade on the plan's day (reference grade lowered by its credit file).
    pub credit_grade: String,
    /// Scale within its type.
    pub scale: Scale,
    /// Recent risk items, newest first.
    pub recent: Vec<RecentItem>,
}

impl Candidate {
    /// The plan grade, "risk + credit" (蒙药监 (十三)): the worse of the risk grade and the
    /// credit grade read on the same A–D scale (credit D, the worst, counts as risk D).
    pub fn grade(&self) -> RiskGrade {
        let credit = RiskGrade::from_letter(&self.credit_grade).unwrap_or(RiskGrade::A);
        self.risk_grade.max(credit)
    }
}

/// One line of a checklist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChecklistLine {
    /// Item id.
    pub id: String,
    /// What to check (Chinese).
    pub text: String,
    /// What to check (English).
    pub text_en: String,
    /// The regulation and article it comes from.
    pub article: String,
    /// Put first because of the enterprise's recent risk items (quoted in `evidence`).
    pub first: bool,
    /// The risk items that put it first: `date indicator: reason`.
    pub evidence: Vec<String>,
}

/// One planned inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanEntry {
    /// Order in the plan (1-based).
    pub seq: usize,
    /// The enterprise and its grades.
    pub enterprise: Candidate,
    /// Plan grade.
    pub grade: RiskGrade,
    /// The inspectors drawn.
    pub inspectors: Vec<Inspector>,
    /// Whether an inspector of the enterprise's own region had to be sent (no other was free).
    pub own_region_inspector: bool,
    /// Whether a pairing already used in the plan had to be repeated.
    pub repeated_pairing: bool,
    /// The checklist.
    pub checklist: Vec<ChecklistLine>,
}

/// Enterprises and draws of one grade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradeDraw {
    /// Grade.
    pub grade: RiskGrade,
    /// Enterprises of the grade.
    pub enterprises: usize,
    /// Configured share.
    pub share: f64,
    /// Drawn.
    pub drawn: usize,
}

/// An inspection plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// `IP-<period>-<seed>`.
    pub plan_id: String,
    /// The period.
    pub period: Period,
    /// The day the grades are read on.
    pub as_of: NaiveDate,
    /// The seed of both draws.
    pub seed: u64,
    /// How the draw is made, to repeat it.
    pub method: String,
    /// The rule the random draws rest on.
    pub basis: String,
    /// The rule of two officers.
    pub two_officers_basis: String,
    /// The differentiated-checklist basis.
    pub checklist_basis: String,
    /// Per grade, A to D.
    pub grades: Vec<GradeDraw>,
    /// Inspectors on the roster.
    pub roster: usize,
    /// The planned inspections.
    pub entries: Vec<PlanEntry>,
}

/// The published method of the draws.
const METHOD: &str = "xoshiro256++ seeded with the seed (SplitMix64 seed expansion); per grade \
A, B, C, D, the grade's enterprises sorted by credit code are shuffled by Fisher–Yates from the \
last position down, position i swapped with j = ⌊(r · (i + 1)) / 2⁶⁴⌋ for the next 64-bit output \
r, and the first max(1, round(share × n)) are drawn; then, for each drawn enterprise in plan \
order, each inspector is drawn the same way among the roster inspectors (sorted by id) that are \
not yet on the enterprise's team and rank best by (from another region, pairings not yet used, \
fewest assignments)";

/// Draws the plan of `period` from `candidates` and `roster` under `rules`, reproducibly.
pub fn draw(
    period: Period,
    as_of: NaiveDate,
    candidates: &[Candidate],
    roster: &[Inspector],
    rules: &Rules,
    seed: u64,
) -> Result<Plan> {
    let r = &rules.inspection;
    let team = r.inspectors_per_enterprise as usize;
    if roster.len() < team {
        return Err(CoreError::Config(format!(
            "the roster lists {} inspector(s); every inspection needs {team} ({})",
            roster.len(),
            r.two_officers_basis
        ))
        .into());
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut by_grade: BTreeMap<RiskGrade, Vec<&Candidate>> = BTreeMap::new();
    for c in candidates {
        by_grade.entry(c.grade()).or_default().push(c);
    }
    let mut grades = Vec::new();
    let mut drawn: Vec<&Candidate> = Vec::new();
    for grade in [RiskGrade::A, RiskGrade::B, RiskGrade::C, RiskGrade::D] {
        let mut group = by_grade.remove(&grade).unwrap_or_default();
        group.sort_by(|a, b| a.enterprise_id.cmp(&b.enterprise_id));
        let share = r.share_of(grade);
        let n = drawn_of(share, group.len());
        shuffle(&mut group, &mut rng);
        grades.push(GradeDraw {
            grade,
            enterprises: group.len(),
            share,
            drawn: n,
        });
        drawn.extend(group.into_iter().take(n));
    }
    // Riskiest first: D, C, B, A, each in draw order.
    drawn.sort_by_key(|c| std::cmp::Reverse(c.grade()));
    let mut roster: Vec<&Inspector> = roster.iter().collect();
    roster.sort_by(|a, b| a.inspector_id.cmp(&b.inspector_id));
    let mut teams = TeamDraw::default();
    let entries = drawn
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let (inspectors, own_region, repeated) =
                teams.draw(&roster, &c.region_code, team, &mut rng);
            PlanEntry {
                seq: i + 1,
                grade: c.grade(),
                checklist: checklist(c, &r.checklist),
                enterprise: c.clone(),
                inspectors,
                own_region_inspector: own_region,
                repeated_pairing: repeated,
            }
        })
        .collect();
    Ok(Plan {
        plan_id: format!("IP-{}-{seed}", period.label),
        period,
        as_of,
        seed,
        method: METHOD.to_string(),
        basis: r.basis.clone(),
        two_officers_basis: r.two_officers_basis.clone(),
        checklist_basis: rules.articles.checklist.clone(),
        grades,
        roster: roster.len(),
        entries,
    })
}

/// How many of `n` enterprises a share draws: `max(1, round(share × n))`, at most `n`.
pub fn drawn_of(share: f64, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    ((share * n as f64).round() as usize).clamp(1, n)
}

/// A uniform index below `bound` from the next output (multiply-shift).
fn below(rng: &mut Xoshiro256PlusPlus, bound: usize) -> usize {
    ((u128::from(rng.next_u64()) * bound as u128) >> 64) as usize
}

/// Fisher–Yates from the last position down.
fn shuffle<T>(items: &mut [T], rng: &mut Xoshiro256PlusPlus) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i + 1);
        items.swap(i, j);
    }
}

/// The inspectors' loads and the pairings used so far.
#[derive(Default)]
struct TeamDraw {
    load: HashMap<String, usize>,
    pairs: BTreeSet<(String, String)>,
}

impl TeamDraw {
    /// Draws a team of `size` for an enterprise of `region`; returns it, whether an
    /// inspector of that region had to be sent and whether a pairing was repeated.
    fn draw(
        &mut self,
        roster: &[&Inspector],
        region: &str,
        size: usize,
        rng: &mut Xoshiro256PlusPlus,
    ) -> (Vec<Inspector>, bool, bool) {
        let mut team: Vec<&Inspector> = Vec::new();
        let (mut own_region, mut repeated) = (false, false);
        while team.len() < size {
            let rank = |i: &Inspector| {
                let local = i.region_code == region;
                let reused = team
                    .iter()
                    .filter(|t| self.pairs.contains(&pair(&t.inspector_id, &i.inspector_id)))
                    .count();
                let load = self.load.get(&i.inspector_id).copied().unwrap_or(0);
                (local, reused, load)
            };
            let free: Vec<&Inspector> = roster
                .iter()
                .copied()
                .filter(|i| !team.iter().any(|t| t.inspector_id == i.inspector_id))
                .collect();
            let best = free
                .iter()
                .map(|i| rank(i))
                .min()
                .expect("roster ≥ team size");
            let tied: Vec<&Inspector> = free.into_iter().filter(|i| rank(i) == best).collect();
            let chosen = tied[below(rng, tied.len())];
            own_region |= best.0;
            repeated |= best.1 > 0;
            team.push(chosen);
        }
        for (k, a) in team.iter().enumerate() {
            *self.load.entry(a.inspector_id.clone()).or_default() += 1;
            for b in &team[k + 1..] {
                self.pairs.insert(pair(&a.inspector_id, &b.inspector_id));
            }
        }
        (team.into_iter().cloned().collect(), own_region, repeated)
    }
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

/// The checklist of `c`: the items for its type, grade and scale, those its recent risk items
/// point to first (with the items as evidence), then the others in the rules' order.
pub fn checklist(c: &Candidate, items: &[ChecklistItem]) -> Vec<ChecklistLine> {
    let grade = c.grade();
    let mut lines: Vec<ChecklistLine> = items
        .iter()
        .filter(|i| i.types.is_empty() || i.types.contains(&c.enterprise_type))
        .filter(|i| grade >= i.min_grade && c.scale >= i.min_scale)
        .map(|i| {
            let evidence: Vec<String> = c
                .recent
                .iter()
                .filter(|r| i.indicators.contains(&r.indicator))
                .map(|r| format!("{} {}：{}", r.date, indicator_zh(&r.indicator), r.reason))
                .collect();
            ChecklistLine {
                id: i.id.clone(),
                text: i.text.clone(),
                text_en: i.text_en.clone(),
                article: i.article.clone(),
                first: !evidence.is_empty(),
                evidence,
            }
        })
        .collect();
    // Stable: within "first" and "the rest", the rules' order.
    lines.sort_by_key(|l| !l.first);
    lines
}

/// The files a plan is written to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanFiles {
    /// The plan and checklists as a document.
    pub html: PathBuf,
    /// The plan as a table (one row per inspection).
    pub csv: PathBuf,
    /// Everything, as data.
    pub json: PathBuf,
}

/// Writes the plan under `OUT/inspection/`: `plan-<period>.html`, `.csv` and `.json`. A plan
/// of the period drawn before with another seed is replaced only when `redraw` is set (a draw
/// repeated until it pleases is no random draw), and is kept as
/// `plan-<period>.replaced-seed-<seed>.json`.
pub fn write(out: &Path, plan: &Plan, redraw: bool) -> Result<PlanFiles> {
    let dir = out.join(PLANS_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| CoreError::io(&dir, e))?;
    let stem = format!("plan-{}", plan.period.label);
    let files = PlanFiles {
        html: dir.join(format!("{stem}.html")),
        csv: dir.join(format!("{stem}.csv")),
        json: dir.join(format!("{stem}.json")),
    };
    let drawn_before = match files.json.is_file() {
        true => Some(read_plan(out, &plan.period)?.seed),
        false => None,
    };
    if let Some(before) = drawn_before.filter(|s| *s != plan.seed) {
        if !redraw {
            return Err(CoreError::Config(format!(
                "a plan for {} was drawn with seed {before} ({}); drawing it again with seed {} \
                 replaces a published draw: give --redraw to do so (the plan replaced is kept)",
                plan.period.label,
                files.json.display(),
                plan.seed
            ))
            .into());
        }
        let kept = dir.join(format!("{stem}.replaced-seed-{before}.json"));
        std::fs::rename(&files.json, &kept).map_err(|e| CoreError::io(&kept, e))?;
    }
    let json = serde_json::to_string_pretty(plan)
        .map_err(|e| CoreError::Internal(format!("plan as JSON: {e}")))?;
    write_file(&files.json, json.as_bytes())?;
    write_file(&files.csv, table(plan).as_bytes())?;
    write_file(&files.html, render(plan).as_bytes())?;
    Ok(files)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| CoreError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| CoreError::io(path, e))?;
    Ok(())
}

/// The plan as CSV: one row per inspection.
pub fn table(plan: &Plan) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = [
        "plan_id",
        "period",
        "seq",
        "enterprise_id",
        "enterprise_name",
        "enterprise_type",
        "region_code",
        "grade",
        "risk_grade",
        "credit_grade",
        "scale",
        "inspectors",
        "own_region_inspector",
        "checklist_items",
        "items_first",
    ];
    let _ = w.write_record(header);
    for e in &plan.entries {
        let c = &e.enterprise;
        let inspectors: Vec<String> = e
            .inspectors
            .iter()
            .map(|i| format!("{} {}", i.inspector_id, i.name))
            .collect();
        let first: Vec<&str> = e
            .checklist
            .iter()
            .filter(|l| l.first)
            .map(|l| l.id.as_str())
            .collect();
        let _ = w.write_record([
            plan.plan_id.as_str(),
            plan.period.label.as_str(),
            &e.seq.to_string(),
            &c.enterprise_id,
            &c.name,
            &c.enterprise_type,
            &c.region_code,
            &e.grade.to_string(),
            &c.risk_grade.to_string(),
            &c.credit_grade,
            c.scale.as_str(),
            &inspectors.join("; "),
            if e.own_region_inspector { "yes" } else { "no" },
            &e.checklist.len().to_string(),
            &first.join("; "),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// The plan and its checklists as one HTML document (a checklist per page when printed).
pub fn render(plan: &Plan) -> String {
    let mut h = String::new();
    let e = escape_html;
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>双随机抽查计划 {id}</title>\n<style>\n\
         body {{ font-family: \"Noto Serif CJK SC\", \"Source Han Serif SC\", serif; max-width: 60em; \
         margin: 2em auto; line-height: 1.7; color: #111; }}\n\
         h1 {{ text-align: center; letter-spacing: .2em; }}\n\
         table {{ border-collapse: collapse; width: 100%; font-size: .9em; margin: .5em 0 1.5em; }}\n\
         th, td {{ border: 1px solid #666; padding: .2em .4em; vertical-align: top; }}\n\
         .checklist {{ page-break-before: always; margin-top: 2em; }}\n\
         .first {{ background: #fff4e5; }}\n .method {{ font-size: .85em; color: #444; }}\n\
         </style>\n</head>\n<body>\n<h1>{period} 药品监管“双随机”抽查计划</h1>\n\
         <p class=\"plan-id\">计划编号 Plan: {id}；分级依据日 Grades as of: {as_of}；\
         随机种子 Seed: <strong class=\"seed\">{seed}</strong>；检查员名录 {roster} 人。</p>\n\
         <p>依据 Basis：{basis}；{checklist_basis}（差异化检查清单、风险+信用分级）；\
         每户检查人员不少于 {team} 人（{two}）。</p>\n",
        id = e(&plan.plan_id),
        period = e(&plan.period.label),
        as_of = plan.as_of,
        seed = plan.seed,
        roster = plan.roster,
        basis = e(&plan.basis),
        checklist_basis = e(&plan.checklist_basis),
        team = plan.entries.first().map_or(2, |x| x.inspectors.len()),
        two = e(&plan.two_officers_basis),
    );
    h.push_str(
        "<h2>一、各等级抽查比例 Shares per grade</h2>\n<table class=\"grades\">\n\
         <tr><th>等级 Grade</th><th>企业数 Enterprises</th><th>抽查比例 Share</th><th>抽中 Drawn</th></tr>\n",
    );
    for g in &plan.grades {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.0}%</td><td>{}</td></tr>",
            g.grade,
            g.enterprises,
            g.share * 100.0,
            g.drawn
        );
    }
    h.push_str("</table>\n<h2>二、抽查名单 Inspections</h2>\n<table class=\"entries\">\n<tr><th>序号</th><th>企业 Enterprise</th><th>统一社会信用代码</th><th>类型</th><th>地区</th><th>等级 (风险/信用)</th><th>规模</th><th>检查人员 Inspectors</th></tr>\n");
    for x in &plan.entries {
        let c = &x.enterprise;
        let inspectors: Vec<String> = x
            .inspectors
            .iter()
            .map(|i| {
                format!(
                    "{}（{}，{}）",
                    e(&i.name),
                    e(&i.inspector_id),
                    e(&i.region_code)
                )
            })
            .collect();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({}/{})</td><td>{}</td><td>{}{}</td></tr>",
            x.seq,
            e(&c.name),
            e(&c.enterprise_id),
            e(&type_zh(&c.enterprise_type)),
            e(&region(&c.region_code)),
            x.grade,
            c.risk_grade,
            e(&c.credit_grade),
            c.scale.zh(),
            inspectors.join("、"),
            if x.own_region_inspector {
                "（本地区以外检查员不足）"
            } else {
                ""
            }
        );
    }
    h.push_str("</table>\n");
    let _ = writeln!(
        h,
        "<p class=\"method\">抽取方法 Method (to repeat the draw): {}</p>",
        e(&plan.method)
    );
    for x in &plan.entries {
        let c = &x.enterprise;
        let _ = write!(
            h,
            "<section class=\"checklist\" id=\"checklist-{id}\">\n<h2>检查清单 Checklist {seq}：{name}</h2>\n\
             <p>统一社会信用代码 {id}；{ty}；{scale}；等级 {grade}（风险 {risk}，信用 {credit}）；\
             检查人员：{who}</p>\n<table>\n<tr><th>序号</th><th>检查内容 What to check</th>\
             <th>依据 Basis</th><th>风险线索 Recent risk items</th></tr>\n",
            id = e(&c.enterprise_id),
            seq = x.seq,
            name = e(&c.name),
            ty = e(&type_zh(&c.enterprise_type)),
            scale = c.scale.zh(),
            grade = x.grade,
            risk = c.risk_grade,
            credit = e(&c.credit_grade),
            who = x
                .inspectors
                .iter()
                .map(|i| e(&i.name))
                .collect::<Vec<_>>()
                .join("、"),
        );
        for (k, l) in x.checklist.iter().enumerate() {
            let _ = writeln!(
                h,
                "<tr class=\"{cls}\"><td>{n}</td><td>{text}<br><small>{en}</small></td>\
                 <td class=\"article\">{article}</td><td>{evidence}</td></tr>",
                cls = if l.first { "item first" } else { "item" },
                n = k + 1,
                text = e(&l.text),
                en = e(&l.text_en),
                article = e(&l.article),
                evidence = l
                    .evidence
                    .iter()
                    .map(|v| e(v))
                    .collect::<Vec<_>>()
                    .join("<br>"),
            );
        }
        h.push_str("</table>\n<p>检查结果以现场检查结论和缺陷（findings）录入，`pharmwatch measures decide` 据此提出处理措施。</p>\n</section>\n");
    }
    h.push_str("</body>\n</html>\n");
    h
}

/// `code name` of a region (the code alone outside the province's list).
fn region(code: &str) -> String {
    pharmwatch_core::regions::region_name(code)
        .map_or_else(|| code.to_string(), |n| format!("{code} {n}"))
}

fn type_zh(wire: &str) -> String {
    pharmwatch_schemas::EnterpriseType::parse(wire)
        .map_or_else(|| wire.to_string(), |t| t.zh().to_string())
}

/// Where a planned inspection stands: its findings recorded or not yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryStatus {
    /// Order in the plan.
    pub seq: usize,
    /// The enterprise.
    pub enterprise_id: String,
    /// Its name.
    pub name: String,
    /// Plan grade.
    pub grade: RiskGrade,
    /// The day of the first case a finding of the enterprise opened within the period.
    pub inspected_on: Option<NaiveDate>,
    /// That case.
    pub case_id: Option<String>,
}

/// Reads the plan of `period` written under `out`.
pub fn read_plan(out: &Path, period: &Period) -> Result<Plan> {
    let path = out
        .join(PLANS_DIR)
        .join(format!("plan-{}.json", period.label));
    let text = std::fs::read_to_string(&path).map_err(|e| CoreError::io(&path, e))?;
    Ok(
        serde_json::from_str(&text).map_err(|e| CoreError::InvalidField {
            field: path.display().to_string(),
            reason: format!("not a plan: {e}"),
        })?,
    )
}

/// Closes the loop of a plan: for each planned inspection, the first case that a finding of
/// the enterprise opened within the period (`measures decide --record` dates a case by its
/// inspection), or none yet.
pub fn status(ledger: &crate::ledger::Ledger, plan: &Plan) -> Result<Vec<EntryStatus>> {
    let mut out = Vec::new();
    for e in &plan.entries {
        let c = &e.enterprise;
        let found = ledger
            .list(false, Some(&c.enterprise_id))?
            .into_iter()
            .filter(|k| k.origin == "finding")
            .filter_map(|k| {
                let day: NaiveDate = k.opened_on.parse().ok()?;
                (plan.period.first <= day && day <= plan.period.last).then_some((day, k.case_id))
            })
            .min();
        out.push(EntryStatus {
            seq: e.seq,
            enterprise_id: c.enterprise_id.clone(),
            name: c.name.clone(),
            grade: e.grade,
            inspected_on: found.as_ref().map(|f| f.0),
            case_id: found.map(|f| f.1),
        });
    }
    Ok(out)
}

/// File name of the inspector roster inside a lake's reference directory.
pub const ROSTER_FILE: &str = "inspectors.csv";

/// A simulated roster for a simulated province: `per_region` inspectors in each region of
/// [`pharmwatch_core::regions::REGIONS`], named from common surnames and given names (ids
/// `INS-<region>-<n>`). Deterministic.
pub fn simulated_roster(per_region: usize) -> Vec<Inspector> {
    const SURNAMES: [&str; 12] = [
        "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙",
    ];
    const GIVEN: [&str; 10] = ["伟", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "娟"];
    let mut out = Vec::new();
    for (r, (code, _, _)) in pharmwatch_core::regions::REGIONS.iter().enumerate() {
        for k in 0..per_region {
            let i = r * per_region + k;
            out.push(Inspector {
                inspector_id: format!("INS-{code}-{}", k + 1),
                name: format!(
                    "{}{}",
                    SURNAMES[i % SURNAMES.len()],
                    GIVEN[(i * 7 + r) % GIVEN.len()]
                ),
                region_code: (*code).to_string(),
            });
        }
    }
    out
}

/// Writes a roster CSV (`inspector_id,name,region_code`).
pub fn write_roster(path: &Path, roster: &[Inspector]) -> pharmwatch_core::error::Result<()> {
    let mut w = csv::Writer::from_path(path).map_err(|e| CoreError::Csv {
        path: path.to_path_buf(),
        source: e,
    })?;
    for i in roster {
        w.serialize(i).map_err(|e| CoreError::Csv {
            path: path.to_path_buf(),
            source: e,
        })?;
    }
    w.flush().map_err(|e| CoreError::io(path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGIONS: [&str; 4] = ["150100", "150200", "150300", "150400"];
    const TYPES: [&str; 3] = ["single_pharmacy", "wholesaler", "manufacturer"];

    /// `n` enterprises spread over grades (by index), regions and types.
    fn province(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                enterprise_id: format!("E{i:04}"),
                name: format!("企业{i}"),
                enterprise_type: TYPES[i % TYPES.len()].to_string(),
                region_code: REGIONS[i % REGIONS.len()].to_string(),
                risk_grade: match i % 10 {
                    0..=5 => RiskGrade::A,
                    6 | 7 => RiskGrade::B,
                    8 => RiskGrade::C,
                    _ => RiskGrade::D,
                },
                credit_grade: "A".to_string(),
                scale: [Scale::Small, Scale::Medium, Scale::Large][i % 3],
                recent: if i % 10 == 9 {
                    vec![RecentItem {
                        date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
                        indicator: "inventory_mismatch".into(),
                        reason: "账实不符".into(),
                    }]
                } else {
                    Vec::new()
                },
            })
            .collect()
    }

    fn roster(per_region: usize) -> Vec<Inspector> {
        REGIONS
            .iter()
            .flat_map(|r| {
                (0..per_region).map(move |k| Inspector {
                    inspector_id: format!("I-{r}-{k}"),
                    name: format!("检查员{r}{k}"),
                    region_code: r.to_string(),
                })
            })
            .collect()
    }

    fn plan_of(n: usize, per_region: usize, seed: u64) -> Plan {
        draw(
            Period::parse("2027-Q1").unwrap(),
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            &province(n),
            &roster(per_region),
            &Rules::default(),
            seed,
        )
        .unwrap()
    }

    #[test]
    fn each_grade_is_drawn_at_its_share_within_rounding_and_never_zero() {
        let plan = plan_of(1000, 3, 7);
        let rules = Rules::default();
        let mut total = 0;
        for g in &plan.grades {
            let expected = (rules.inspection.share_of(g.grade) * g.enterprises as f64).round();
            assert_eq!(g.drawn as f64, expected.max(1.0), "{g:?}");
            let in_plan = plan.entries.iter().filter(|e| e.grade == g.grade).count();
            assert_eq!(in_plan, g.drawn);
            total += g.drawn;
        }
        // 600 A × 5 % + 200 B × 20 % + 100 C × 60 % + 100 D × 100 %.
        assert_eq!(
            plan.grades
                .iter()
                .map(|g| g.enterprises)
                .collect::<Vec<_>>(),
            vec![600, 200, 100, 100]
        );
        assert_eq!(total, 30 + 40 + 60 + 100);
        // A grade of one enterprise at 5 % still gets its inspection.
        assert_eq!(drawn_of(0.05, 1), 1);
        assert_eq!(drawn_of(0.05, 0), 0);
        // Riskiest first.
        assert!(plan.entries.windows(2).all(|w| w[0].grade >= w[1].grade));
    }

    #[test]
    fn the_same_seed_draws_the_same_plan_and_another_seed_another() {
        let a = plan_of(400, 3, 11);
        let b = plan_of(400, 3, 11);
        let c = plan_of(400, 3, 12);
        assert_eq!(a, b);
        assert_eq!(render(&a), render(&b));
        let ids = |p: &Plan| {
            p.entries
                .iter()
                .map(|e| e.enterprise.enterprise_id.clone())
                .collect::<Vec<_>>()
        };
        assert_ne!(ids(&a), ids(&c));
        assert!(render(&a).contains("<strong class=\"seed\">11</strong>"));
        // The generator is pinned: the first draws of seed 11 do not change between builds.
        assert_eq!(
            ids(&a)[..3],
            ids(&plan_of(400, 3, 11))[..3],
            "same seed, same head of the plan"
        );
    }

    #[test]
    fn no_inspector_goes_to_their_own_region_while_another_is_free_and_no_pair_repeats() {
        // 12 inspectors for 230 inspections: pairs must repeat (66 pairs), regions never need
        // to be shared.
        let plan = plan_of(1000, 3, 3);
        for e in &plan.entries {
            assert_eq!(e.inspectors.len(), 2);
            assert!(
                e.inspectors
                    .iter()
                    .all(|i| i.region_code != e.enterprise.region_code),
                "{e:?}"
            );
            assert!(!e.own_region_inspector);
            assert_ne!(e.inspectors[0].inspector_id, e.inspectors[1].inspector_id);
        }
        // Loads spread: every inspector within one of the mean.
        let mut load: HashMap<&str, usize> = HashMap::new();
        for e in &plan.entries {
            for i in &e.inspectors {
                *load.entry(i.inspector_id.as_str()).or_default() += 1;
            }
        }
        let (min, max) = (load.values().min().unwrap(), load.values().max().unwrap());
        assert!(max - min <= 2, "loads {load:?}");
        // With enough inspectors for every pairing, none is repeated.
        let small = plan_of(60, 6, 3); // 24 inspectors, 276 pairs, 2 + 2 + 4 + 6 inspections
        let mut seen = BTreeSet::new();
        for e in &small.entries {
            assert!(!e.repeated_pairing);
            assert!(seen.insert(pair(
                &e.inspectors[0].inspector_id,
                &e.inspectors[1].inspector_id
            )));
        }
        // Only when every other inspector is taken is one of the region sent, and it says so.
        let one_region = vec![
            Inspector {
                inspector_id: "I1".into(),
                name: "甲".into(),
                region_code: "150100".into(),
            },
            Inspector {
                inspector_id: "I2".into(),
                name: "乙".into(),
                region_code: "150200".into(),
            },
        ];
        let p = draw(
            Period::parse("2027-Q2").unwrap(),
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            &province(10),
            &one_region,
            &Rules::default(),
            1,
        )
        .unwrap();
        for e in &p.entries {
            let local = e
                .inspectors
                .iter()
                .any(|i| i.region_code == e.enterprise.region_code);
            assert_eq!(local, e.own_region_inspector);
        }
    }

    #[test]
    fn every_checklist_line_names_its_article_and_recent_risks_come_first() {
        let rules = Rules::default();
        let plan = plan_of(300, 3, 5);
        let articles: BTreeSet<&str> = rules
            .inspection
            .checklist
            .iter()
            .map(|i| i.article.as_str())
            .collect();
        for e in &plan.entries {
            assert!(!e.checklist.is_empty());
            for l in &e.checklist {
                assert!(articles.contains(l.article.as_str()) && !l.article.is_empty());
            }
        }
        let flagged = plan
            .entries
            .iter()
            .find(|e| !e.enterprise.recent.is_empty())
            .expect("a D enterprise with a recent item");
        let first = &flagged.checklist[0];
        assert!(first.first, "{:?}", flagged.checklist);
        assert!(first.evidence[0].contains("账实不符"));
        assert!(
            rules
                .inspection
                .checklist
                .iter()
                .find(|i| i.id == first.id)
                .unwrap()
                .indicators
                .contains(&"inventory_mismatch".to_string())
        );
        // Type, grade and scale select: a manufacturer gets production records, a pharmacy not.
        let has = |ty: &str, id: &str| {
            plan.entries
                .iter()
                .filter(|e| e.enterprise.enterprise_type == ty)
                .all(|e| e.checklist.iter().any(|l| l.id == id))
        };
        assert!(has("manufacturer", "production_records"));
        assert!(
            plan.entries
                .iter()
                .filter(|e| e.enterprise.enterprise_type == "single_pharmacy")
                .all(|e| e.checklist.iter().all(|l| l.id != "production_records"))
        );
        // Grade A enterprises do not get the grade-C quality-system assessment.
        assert!(
            plan.entries
                .iter()
                .filter(|e| e.grade == RiskGrade::A)
                .all(|e| e.checklist.iter().all(|l| l.id != "quality_system"))
        );
    }

    #[test]
    fn credit_lowers_the_plan_grade_and_periods_parse() {
        let mut c = province(1).remove(0);
        assert_eq!(c.grade(), RiskGrade::A);
        c.credit_grade = "C".into();
        assert_eq!(c.grade(), RiskGrade::C);
        let p = Period::parse("2027-Q4").unwrap();
        assert_eq!(
            (p.first, p.last),
            (
                NaiveDate::from_ymd_opt(2027, 10, 1).unwrap(),
                NaiveDate::from_ymd_opt(2027, 12, 31).unwrap()
            )
        );
        assert_eq!(
            Period::parse("2027-Q1").unwrap().last,
            NaiveDate::from_ymd_opt(2027, 3, 31).unwrap()
        );
        for bad in ["2027", "2027-Q5", "2027-Q0", "Q1-2027", "1800-Q1"] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_roster_is_refused_with_its_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inspectors.csv");
        for (text, needle) in [
            (
                "inspector_id,name,region_code\nI1,甲,150100\nI1,乙,150200\n",
                ":3 field inspector_id",
            ),
            (
                "inspector_id,name,region_code\nI1,甲,1501\n",
                ":2 field region_code",
            ),
            (
                "inspector_id,name,region_code\nI1,,150100\n",
                ":2 field name",
            ),
            ("inspector_id,name,region_code\n", "lists no inspector"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = read_roster(&path).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
            assert!(err.contains("inspectors.csv"), "{err}");
        }
        write_roster(&path, &simulated_roster(2)).unwrap();
        let back = read_roster(&path).unwrap();
        assert_eq!(back.len(), 24);
        assert_eq!(back, simulated_roster(2));
        // A roster too small for a team of two is refused with the rule.
        let err = draw(
            Period::parse("2027-Q1").unwrap(),
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            &province(5),
            &back[..1],
            &Rules::default(),
            1,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("行政处罚法"), "{err}");
    }
}
