//! One year of the working-day calendar, as an operator loads it when the State Council
//! publishes the next year's holiday schedule (国务院办公厅关于部分节假日安排的通知).
//!
//! The year file mirrors the notice: one entry per holiday with its first and last day off
//! (放假调休) and the weekend days declared working days (上班). TOML, for example:
//!
//! ```toml
//! year = 2027
//! notice = "国办发明电〔2026〕N号"
//! source_url = "https://www.gov.cn/zhengce/content/…"
//!
//! [[holiday]]
//! name = "春节"
//! from = 2027-02-06          # first day off (a TOML date or a "YYYY-MM-DD" string)
//! to = 2027-02-13            # last day off, inclusive
//! makeup_workdays = [2027-02-14, 2027-02-20]
//! ```
//!
//! A CSV of the calendar's own format (`date,kind,name,source_url`) listing one year is read
//! too ([`CalendarYear::from_csv_str`]), so the shipped reference file of a year can be loaded.
//!
//! # Invariants of a parsed year
//!
//! - every date lies in `year` (days of a holiday that began the year before belong to that
//!   year's file);
//! - a holiday has a name, `from ≤ to`, and lasts at most [`MAX_HOLIDAY_DAYS`] days (a longer
//!   range is a typo, not a holiday);
//! - no date is listed twice: holidays do not overlap each other, a make-up working day is not
//!   inside a holiday, and is a Saturday or a Sunday;
//! - the year lists at least one holiday (a year without entries is a missing year);
//! - the notice and its address are named (each day keeps its source).
//!
//! Errors name the file, the line and the reason ([`Error::CalendarFile`]).

use std::collections::BTreeMap;
use std::ops::Range;

use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use toml::Spanned;

use super::{DayKind, SpecialDay, YEAR_LIMITS, is_weekend, parse_date};
use crate::error::{Error, Result};

/// The longest holiday a year file may list, in days: the Spring Festival and National Day
/// breaks are eight or nine days; a longer range is a typo.
pub const MAX_HOLIDAY_DAYS: i64 = 15;

/// One year of holidays and make-up working days, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarYear {
    /// The year.
    pub year: i32,
    /// The notice that set it (e.g. `国办发明电〔2026〕N号`), or the file name for a CSV.
    pub notice: String,
    /// Where the notice is published.
    pub source_url: String,
    /// The listed days of the year.
    pub days: BTreeMap<NaiveDate, SpecialDay>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YearFile {
    year: Spanned<i64>,
    notice: Spanned<String>,
    source_url: Spanned<String>,
    #[serde(default)]
    holiday: Vec<HolidayEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayEntry {
    name: Spanned<String>,
    from: Spanned<toml::Value>,
    to: Spanned<toml::Value>,
    #[serde(default)]
    makeup_workdays: Vec<Spanned<toml::Value>>,
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> u64 {
    let end = at.min(text.len());
    1 + text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count() as u64
}

/// A date from a TOML value: a local date (`2027-02-06`) or a `"YYYY-MM-DD"` string.
fn toml_date(value: &toml::Value) -> std::result::Result<NaiveDate, String> {
    match value {
        toml::Value::String(text) => parse_date(text),
        toml::Value::Datetime(dt) => match (dt.date, dt.time, dt.offset) {
            (Some(d), None, None) => {
                parse_date(&format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
            }
            _ => Err(format!(
                "expected a date YYYY-MM-DD, found the date-time {dt}"
            )),
        },
        other => Err(format!(
            "expected a date YYYY-MM-DD, found a {}",
            other.type_str()
        )),
    }
}

impl CalendarYear {
    /// Parses a year file (TOML, see the module documentation); `source_name` names the file
    /// in errors.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Self> {
        let fail = |span: Range<usize>, reason: String| Error::CalendarFile {
            file: source_name.to_string(),
            line: line_of(text, span.start),
            reason,
        };
        let file: YearFile = toml::from_str(text).map_err(|err| {
            let line = err.span().map_or(0, |s| line_of(text, s.start));
            Error::CalendarFile {
                file: source_name.to_string(),
                line,
                reason: err.message().trim().to_string(),
            }
        })?;
        let year_value = *file.year.get_ref();
        let year = i32::try_from(year_value)
            .ok()
            .filter(|y| YEAR_LIMITS.contains(y))
            .ok_or_else(|| {
                fail(
                    file.year.span(),
                    format!(
                        "year {year_value} is outside {}–{}",
                        YEAR_LIMITS.start(),
                        YEAR_LIMITS.end()
                    ),
                )
            })?;
        for (field, value) in [("notice", &file.notice), ("source_url", &file.source_url)] {
            if value.get_ref().trim().is_empty() {
                return Err(fail(value.span(), format!("{field} is empty")));
            }
        }
        let source_url = file.source_url.get_ref().trim().to_string();
        let in_year = |value: &Spanned<toml::Value>, what: &str| -> Result<NaiveDate> {
            let date = toml_date(value.get_ref())
                .map_err(|reason| fail(value.span(), format!("{what}: {reason}")))?;
            if date.year() != year {
                return Err(fail(
                    value.span(),
                    format!(
                        "{what} {date} is not in {year}: a year file lists only the days of its \
                         year (days of a holiday that began the year before belong to that \
                         year's file)"
                    ),
                ));
            }
            Ok(date)
        };
        let mut days: BTreeMap<NaiveDate, SpecialDay> = BTreeMap::new();
        // The holidays first, so that a make-up day inside any holiday is caught whatever the
        // order of the entries.
        let mut makeups = Vec::new();
        for entry in &file.holiday {
            let name = entry.name.get_ref().trim();
            if name.is_empty() {
                return Err(fail(entry.name.span(), "holiday name is empty".to_string()));
            }
            let from = in_year(&entry.from, &format!("{name}: from"))?;
            let to = in_year(&entry.to, &format!("{name}: to"))?;
            if to < from {
                return Err(fail(
                    entry.to.span(),
                    format!("{name}: to {to} is before from {from}"),
                ));
            }
            let length = (to - from).num_days() + 1;
            if length > MAX_HOLIDAY_DAYS {
                return Err(fail(
                    entry.to.span(),
                    format!(
                        "{name}: {from} … {to} is {length} days, longer than any holiday \
                         ({MAX_HOLIDAY_DAYS} at most): check the dates"
                    ),
                ));
            }
            for date in from.iter_days().take_while(|d| *d <= to) {
                let day = SpecialDay {
                    kind: DayKind::HolidayOff,
                    name: name.to_string(),
                    source_url: source_url.clone(),
                };
                if let Some(previous) = days.insert(date, day) {
                    return Err(fail(
                        entry.from.span(),
                        format!(
                            "{name}: {date} is already a day off of {}: holidays must not overlap",
                            previous.name
                        ),
                    ));
                }
            }
            for value in &entry.makeup_workdays {
                makeups.push((name.to_string(), value));
            }
        }
        for (name, value) in makeups {
            let date = in_year(value, &format!("{name}: make-up working day"))?;
            if !is_weekend(date) {
                return Err(fail(
                    value.span(),
                    format!(
                        "{name}: make-up working day {date} is a {}, not a Saturday or Sunday",
                        date.weekday()
                    ),
                ));
            }
            let day = SpecialDay {
                kind: DayKind::MakeupWorkday,
                name: name.clone(),
                source_url: source_url.clone(),
            };
            if let Some(previous) = days.insert(date, day) {
                let reason = match previous.kind {
                    DayKind::HolidayOff => format!(
                        "{name}: make-up working day {date} is a day off of {}: a day cannot be \
                         both",
                        previous.name
                    ),
                    DayKind::MakeupWorkday => {
                        format!("{name}: make-up working day {date} is listed twice")
                    }
                };
                return Err(fail(value.span(), reason));
            }
        }
        if days.is_empty() {
            return Err(fail(
                file.year.span(),
                format!("{year} lists no holiday: a year without entries is a missing year"),
            ));
        }
        Ok(Self {
            year,
            notice: file.notice.get_ref().trim().to_string(),
            source_url,
            days,
        })
    }

    /// Reads one year from the calendar's CSV format (`date,kind,name,source_url`); every row
    /// must lie in one year.
    pub fn from_csv_str(text: &str, source_name: &str) -> Result<Self> {
        let calendar = super::Calendar::from_csv_str(text, source_name)?;
        let years = calendar.years();
        if years.start() != years.end() {
            return Err(Error::CalendarFile {
                file: source_name.to_string(),
                line: 0,
                reason: format!(
                    "the file lists {}–{}: a year file lists one year (split it, or import \
                     each year)",
                    years.start(),
                    years.end()
                ),
            });
        }
        let source_url = calendar
            .days
            .values()
            .next()
            .map(|d| d.source_url.clone())
            .unwrap_or_default();
        Ok(Self {
            year: *years.start(),
            notice: source_name.to_string(),
            source_url,
            days: calendar.days,
        })
    }

    /// Reads a year file: TOML unless the name ends in `.csv`.
    pub fn from_path(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            what: "calendar",
            path: path.to_path_buf(),
            source,
        })?;
        let name = path.display().to_string();
        let is_csv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if is_csv {
            Self::from_csv_str(&text, &name)
        } else {
            Self::from_toml_str(&text, &name)
        }
    }

    /// The number of working days of the year.
    pub fn working_days(&self) -> u32 {
        let Some(first) = NaiveDate::from_ymd_opt(self.year, 1, 1) else {
            return 0;
        };
        let mut count = 0;
        for day in first.iter_days().take_while(|d| d.year() == self.year) {
            let working = match self.days.get(&day).map(|d| d.kind) {
                Some(DayKind::MakeupWorkday) => true,
                Some(DayKind::HolidayOff) => false,
                None => !is_weekend(day),
            };
            if working {
                count += 1;
            }
        }
        count
    }

    /// The holidays, in date order, with their make-up working days.
    pub fn holidays(&self) -> Vec<Holiday> {
        let mut out: Vec<Holiday> = Vec::new();
        for (date, day) in &self.days {
            if day.kind != DayKind::HolidayOff {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.name == day.name && last.to.succ_opt() == Some(*date) => {
                    last.to = *date;
                }
                _ => out.push(Holiday {
                    name: day.name.clone(),
                    from: *date,
                    to: *date,
                    makeup_workdays: Vec::new(),
                }),
            }
        }
        for (date, day) in &self.days {
            if day.kind == DayKind::MakeupWorkday
                && let Some(h) = out.iter_mut().find(|h| h.name == day.name)
            {
                h.makeup_workdays.push(*date);
            }
        }
        out
    }
}

/// One holiday of a year: its days off and the weekend days worked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holiday {
    /// Its name (e.g. 春节).
    pub name: String,
    /// The first day off.
    pub from: NaiveDate,
    /// The last day off.
    pub to: NaiveDate,
    /// The make-up working days that belong to it.
    pub makeup_workdays: Vec<NaiveDate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("test date")
    }

    /// A made-up 2027 (test data, not the State Council's schedule).
    const GOOD: &str = r#"year = 2027
notice = "test notice"
source_url = "https://example.invalid/2027"

[[holiday]]
name = "元旦"
from = 2027-01-01
to = "2027-01-03"

[[holiday]]
name = "春节"
from = 2027-02-06
to = 2027-02-13
makeup_workdays = [2027-02-14, "2027-02-20"]
"#;

    #[test]
    fn a_year_file_lists_its_holidays_and_make_up_days() {
        let year = CalendarYear::from_toml_str(GOOD, "y.toml").expect("valid");
        assert_eq!(year.year, 2027);
        assert_eq!(year.notice, "test notice");
        assert_eq!(year.days.len(), 3 + 8 + 2);
        assert_eq!(year.days[&d("2027-02-14")].kind, DayKind::MakeupWorkday);
        assert_eq!(year.days[&d("2027-01-02")].kind, DayKind::HolidayOff);
        assert_eq!(year.days[&d("2027-01-02")].name, "元旦");
        // 261 weekdays in 2027; 元旦 takes Fri 01-01, 春节 Mon–Fri 02-08 … 02-12; two
        // make-up Sundays/Saturdays add two.
        assert_eq!(year.working_days(), 261 - 1 - 5 + 2);
        let holidays = year.holidays();
        assert_eq!(holidays.len(), 2);
        assert_eq!(
            holidays[1],
            Holiday {
                name: "春节".to_string(),
                from: d("2027-02-06"),
                to: d("2027-02-13"),
                makeup_workdays: vec![d("2027-02-14"), d("2027-02-20")]
            }
        );
    }

    #[test]
    fn bad_year_files_name_the_line_and_the_reason() {
        let cases: [(&str, String, u64, &str); 10] = [
            (
                "date in another year",
                GOOD.replace("from = 2027-01-01", "from = 2026-12-31"),
                7,
                "not in 2027",
            ),
            (
                "make-up day on a weekday",
                GOOD.replace("2027-02-14, ", "2027-02-15, "),
                14,
                "not a Saturday or Sunday",
            ),
            (
                "make-up day inside a holiday",
                GOOD.replace("2027-02-14, ", "2027-02-13, "),
                14,
                "cannot be both",
            ),
            (
                "overlapping holidays",
                format!("{GOOD}\n[[holiday]]\nname = \"x\"\nfrom = 2027-02-10\nto = 2027-02-11\n"),
                18,
                "must not overlap",
            ),
            (
                "backwards range",
                GOOD.replace("to = 2027-02-13", "to = 2027-02-01"),
                13,
                "before from",
            ),
            (
                "too long",
                GOOD.replace("to = 2027-02-13", "to = 2027-03-13"),
                13,
                "longer than any holiday",
            ),
            (
                "not a date",
                GOOD.replace("to = \"2027-01-03\"", "to = \"2027-01-32\""),
                8,
                "not a calendar date",
            ),
            (
                "unknown key",
                GOOD.replace("name = \"元旦\"", "name = \"元旦\"\ndays = 3"),
                7,
                "unknown field",
            ),
            (
                "empty notice",
                GOOD.replace("notice = \"test notice\"", "notice = \"\""),
                2,
                "notice is empty",
            ),
            (
                "no holiday",
                "year = 2027\nnotice = \"n\"\nsource_url = \"u\"\n".to_string(),
                1,
                "missing year",
            ),
        ];
        for (what, text, line, reason) in cases {
            match CalendarYear::from_toml_str(&text, "y.toml") {
                Err(Error::CalendarFile {
                    file,
                    line: got_line,
                    reason: got_reason,
                }) => {
                    assert_eq!(file, "y.toml", "{what}");
                    assert_eq!(got_line, line, "{what}: {got_reason}");
                    assert!(got_reason.contains(reason), "{what}: {got_reason}");
                }
                other => panic!("{what}: expected a calendar file error, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_example_year_file_parses() {
        let text = include_str!("../../data/year.example.toml");
        let year = CalendarYear::from_toml_str(text, "year.example.toml").expect("valid");
        assert_eq!(year.year, 2099);
        assert_eq!(year.holidays().len(), 2);
        assert_eq!(
            year.days
                .values()
                .filter(|d| d.kind == DayKind::MakeupWorkday)
                .count(),
            2
        );
    }

    #[test]
    fn a_csv_of_one_year_is_a_year_file_and_two_years_are_refused() {
        let csv = "date,kind,name,source_url\n2027-01-01,holiday_off,元旦,u\n";
        let year = CalendarYear::from_csv_str(csv, "y.csv").expect("one year");
        assert_eq!(year.year, 2027);
        assert_eq!(year.source_url, "u");
        let two = format!("{csv}2028-01-01,holiday_off,元旦,u\n");
        let err = CalendarYear::from_csv_str(&two, "y.csv").expect_err("two years");
        assert!(err.to_string().contains("one year"), "{err}");
    }
}
