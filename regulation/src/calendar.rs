//! The working-day calendar (工作日历) that every regulatory deadline is counted in.
//!
//! Drug-supervision deadlines are given in working days (工作日). Which days are working days
//! is set each year by the State Council: statutory holidays (`holiday_off`) are days off even
//! on a weekday, and some Saturdays and Sundays are declared make-up working days (调休上班,
//! `makeup_workday`). The calendar is data, a CSV file with the header
//! `date,kind,name,source_url`; the file shipped in `regulation/data/` covers 2025 and 2026 and
//! is embedded at compile time ([`Calendar::embedded`], also [`Calendar::default`]). A province
//! loads a newer file with [`Calendar::from_path`].
//!
//! # Counting convention
//!
//! "N working days after a date" starts counting on the day *after* the date: the result is the
//! N-th working day strictly after it ([`Calendar::add_working_days`]). The triggering date
//! itself never counts, whether or not it is a working day; `n = 0` gives the date back. A day
//! is a working day when it is a make-up working day, or a Monday–Friday that is not a
//! statutory holiday. Examples (all checked by tests): 2025-09-26 + 5 → 2025-10-10 (across
//! National Day, with the make-up Sunday 2025-09-28 counted); 2026-02-13 + 5 → 2026-02-27
//! (across the Spring Festival); 2026-04-30 + 10 → 2026-05-18; 2025-12-31 + 3 → 2026-01-06.
//!
//! # Invariants
//!
//! A [`Calendar`] is only built by parsing a file, and parsing guarantees:
//! - the covered years are a non-empty contiguous range, each year with at least one entry (a
//!   year without entries is a missing year, not a year without holidays);
//! - a date appears at most once (never both a holiday and a make-up day);
//! - a make-up working day is a Saturday or a Sunday;
//! - every entry has a name and a source.
//!
//! Nothing outside the covered years is guessed: any question about such a date, including a
//! count that walks past the last covered day, is [`Error::CalendarNotCovered`]. The measures
//! engine turns a count past the last covered day into a deadline *pending the calendar*
//! ([`crate::deadline::WorkingDayCount`]) rather than a refusal.
//!
//! # A new year
//!
//! The State Council publishes each year's schedule late in the year before. An operator adds
//! it from a year file ([`CalendarYear`], module [`year`]) with [`Calendar::with_year`]: the
//! year must follow the last covered year (or precede the first), so the covered years stay
//! contiguous; a year already covered is replaced only when asked.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;

use chrono::{Datelike, NaiveDate, Weekday};

use crate::error::{Error, Result};

pub mod year;

pub use year::{CalendarYear, Holiday, MAX_HOLIDAY_DAYS};

/// The calendar file shipped with the crate.
const EMBEDDED_CSV: &str = include_str!("../data/cn_holidays_2025_2026.csv");

/// The file name used in errors about the embedded calendar.
const EMBEDDED_NAME: &str = "embedded";

/// The header a calendar file must start with.
const HEADER: [&str; 4] = ["date", "kind", "name", "source_url"];

/// Years a calendar file may mention: four-digit years keep every neighbour of a covered date
/// representable.
const YEAR_LIMITS: RangeInclusive<i32> = 1000..=9998;

/// What a listed date is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DayKind {
    /// A statutory holiday: no work, even on a weekday (`holiday_off`).
    HolidayOff,
    /// A Saturday or Sunday declared a working day (`makeup_workday`, 调休上班).
    MakeupWorkday,
}

impl DayKind {
    /// The name used in the calendar file.
    pub fn as_str(self) -> &'static str {
        match self {
            DayKind::HolidayOff => "holiday_off",
            DayKind::MakeupWorkday => "makeup_workday",
        }
    }
}

/// One listed date of the calendar file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialDay {
    /// Holiday or make-up working day.
    pub kind: DayKind,
    /// The holiday it belongs to (e.g. 春节).
    pub name: String,
    /// The notice that set it.
    pub source_url: String,
}

/// What kind of day a date is, as a supervisor is told (`pharmwatch calendar is-working-day`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DayClass {
    /// An ordinary Monday–Friday working day.
    Workday,
    /// A Saturday or Sunday that is neither a listed holiday nor a make-up working day.
    Weekend,
    /// A statutory day off (`holiday_off`), whether it falls on a weekday or a weekend.
    Holiday {
        /// The holiday's name as listed, e.g. `春节`.
        name: String,
    },
    /// A Saturday or Sunday declared a working day (`makeup_workday`).
    MakeupWorkday {
        /// The holiday the make-up day belongs to, e.g. `春节`.
        name: String,
    },
}

impl DayClass {
    /// Whether a day of this class counts towards a working-day deadline.
    pub fn is_working_day(&self) -> bool {
        matches!(self, Self::Workday | Self::MakeupWorkday { .. })
    }

    /// The class in words, e.g. `statutory holiday (春节)`.
    pub fn describe(&self) -> String {
        match self {
            Self::Workday => "ordinary working day".to_string(),
            Self::Weekend => "weekend".to_string(),
            Self::Holiday { name } => format!("statutory holiday ({name})"),
            Self::MakeupWorkday { name } => format!("make-up working day ({name})"),
        }
    }
}

/// A working-day calendar covering a contiguous range of years.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    source: String,
    years: RangeInclusive<i32>,
    days: BTreeMap<NaiveDate, SpecialDay>,
}

impl Default for Calendar {
    /// The calendar shipped with the crate (2025–2026).
    ///
    /// # Panics
    ///
    /// Never for the shipped file: a unit test parses it. Use [`Calendar::embedded`] to get the
    /// error instead.
    fn default() -> Self {
        Self::embedded().expect("the embedded calendar file is valid (checked by a unit test)")
    }
}

impl Calendar {
    /// The calendar shipped with the crate (`regulation/data/cn_holidays_2025_2026.csv`).
    pub fn embedded() -> Result<Self> {
        Self::from_csv_str(EMBEDDED_CSV, EMBEDDED_NAME)
    }

    /// Reads a calendar file (`date,kind,name,source_url`).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            what: "calendar",
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_csv_str(&text, &path.display().to_string())
    }

    /// Parses calendar CSV text; `source_name` names the file in errors.
    pub fn from_csv_str(text: &str, source_name: &str) -> Result<Self> {
        let fail = |line: u64, reason: String| Error::CalendarFile {
            file: source_name.to_string(),
            line,
            reason,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut days = BTreeMap::new();
        let mut header_seen = false;
        for record in reader.records() {
            let record = record.map_err(|err| {
                let line = err.position().map_or(0, |p| p.line());
                fail(line, format!("not a CSV record: {err}"))
            })?;
            let line = record.position().map_or(0, |p| p.line());
            if !header_seen {
                let header: Vec<&str> = record.iter().map(str::trim).collect();
                if header != HEADER {
                    return Err(fail(
                        line,
                        format!(
                            "header must be `{}`, found `{}`",
                            HEADER.join(","),
                            header.join(",")
                        ),
                    ));
                }
                header_seen = true;
                continue;
            }
            if record.len() != HEADER.len() {
                return Err(fail(
                    line,
                    format!("expected {} columns, found {}", HEADER.len(), record.len()),
                ));
            }
            let field = |i: usize| record.get(i).unwrap_or("").trim();
            let date = parse_date(field(0)).map_err(|reason| fail(line, reason))?;
            let kind = match field(1) {
                "holiday_off" => DayKind::HolidayOff,
                "makeup_workday" => DayKind::MakeupWorkday,
                other => {
                    return Err(fail(
                        line,
                        format!("kind must be holiday_off or makeup_workday, found `{other}`"),
                    ));
                }
            };
            if kind == DayKind::MakeupWorkday && !is_weekend(date) {
                return Err(fail(
                    line,
                    format!(
                        "make-up working day {date} is a {}, not a Saturday or Sunday",
                        date.weekday()
                    ),
                ));
            }
            let name = field(2);
            if name.is_empty() {
                return Err(fail(line, "name is empty".to_string()));
            }
            let source_url = field(3);
            if source_url.is_empty() {
                return Err(fail(line, "source_url is empty".to_string()));
            }
            let day = SpecialDay {
                kind,
                name: name.to_string(),
                source_url: source_url.to_string(),
            };
            if let Some(previous) = days.insert(date, day) {
                return Err(fail(
                    line,
                    format!(
                        "date {date} is listed twice (already as {} {})",
                        previous.kind.as_str(),
                        previous.name
                    ),
                ));
            }
        }
        if !header_seen {
            return Err(fail(0, "the file is empty (no header)".to_string()));
        }
        let (Some(first), Some(last)) = (days.keys().next(), days.keys().next_back()) else {
            return Err(fail(0, "the file lists no dates".to_string()));
        };
        let years = first.year()..=last.year();
        for year in years.clone() {
            let start = NaiveDate::from_ymd_opt(year, 1, 1);
            let end = NaiveDate::from_ymd_opt(year, 12, 31);
            let listed = match (start, end) {
                (Some(start), Some(end)) => days.range(start..=end).next().is_some(),
                _ => false,
            };
            if !listed {
                return Err(fail(
                    0,
                    format!(
                        "no entry for {year} although the file covers {}–{}: a year without \
                         entries is a missing year",
                        years.start(),
                        years.end()
                    ),
                ));
            }
        }
        Ok(Self {
            source: source_name.to_string(),
            years,
            days,
        })
    }

    /// The file the calendar was read from (`embedded` for the shipped one).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The years the calendar covers.
    pub fn years(&self) -> RangeInclusive<i32> {
        self.years.clone()
    }

    /// Whether the calendar covers the year of `date`.
    pub fn covers(&self, date: NaiveDate) -> bool {
        self.years.contains(&date.year())
    }

    /// The first day the calendar covers (1 January of its first year).
    pub fn first_covered_day(&self) -> NaiveDate {
        NaiveDate::from_ymd_opt(*self.years.start(), 1, 1).unwrap_or(NaiveDate::MIN)
    }

    /// The last day the calendar covers (31 December of its last year).
    pub fn last_covered_day(&self) -> NaiveDate {
        NaiveDate::from_ymd_opt(*self.years.end(), 12, 31).unwrap_or(NaiveDate::MAX)
    }

    /// The listed days of `year` (empty when the year is not covered).
    pub fn year_days(&self, year: i32) -> impl Iterator<Item = (&NaiveDate, &SpecialDay)> {
        let range = match (
            NaiveDate::from_ymd_opt(year, 1, 1),
            NaiveDate::from_ymd_opt(year, 12, 31),
        ) {
            (Some(first), Some(last)) => first..=last,
            _ => NaiveDate::MAX..=NaiveDate::MIN,
        };
        self.days.range(range)
    }

    /// This calendar with `year` added: the year must follow the last covered year or precede
    /// the first, so the covered years stay contiguous. A covered year is refused unless
    /// `replace` is set, and then its days are replaced by the file's.
    ///
    /// Fails with [`Error::CalendarYear`] naming the year and what to do.
    pub fn with_year(&self, year: &CalendarYear, replace: bool) -> Result<Calendar> {
        let y = year.year;
        let (first, last) = (*self.years.start(), *self.years.end());
        let refuse = |reason: String| Error::CalendarYear { year: y, reason };
        let years = if self.years.contains(&y) {
            if !replace {
                return Err(refuse(format!(
                    "{y} is already loaded (the calendar covers {first}–{last}): give --replace to replace it"
                )));
            }
            self.years.clone()
        } else if y == last + 1 {
            first..=y
        } else if y == first - 1 {
            y..=last
        } else {
            return Err(refuse(format!(
                "the calendar covers {first}–{last}; years are added in order, so load {} first",
                if y > last { last + 1 } else { first - 1 }
            )));
        };
        let mut days: BTreeMap<NaiveDate, SpecialDay> = self
            .days
            .iter()
            .filter(|(date, _)| date.year() != y)
            .map(|(date, day)| (*date, day.clone()))
            .collect();
        days.extend(year.days.iter().map(|(date, day)| (*date, day.clone())));
        Ok(Calendar {
            source: format!("{} + {y} ({})", self.source, year.notice),
            years,
            days,
        })
    }

    /// The listed holiday or make-up day on `date`, if any.
    pub fn special_day(&self, date: NaiveDate) -> Option<&SpecialDay> {
        self.days.get(&date)
    }

    /// The name of the statutory holiday on `date`, if any (make-up days and uncovered dates
    /// have none).
    pub fn holiday_name(&self, date: NaiveDate) -> Option<&str> {
        self.days
            .get(&date)
            .filter(|d| d.kind == DayKind::HolidayOff)
            .map(|d| d.name.as_str())
    }

    /// What kind of day `date` is; an error when its year is not covered. A listed holiday is
    /// [`DayClass::Holiday`] even on a weekend.
    pub fn day_class(&self, date: NaiveDate) -> Result<DayClass> {
        self.check_covered(date)?;
        Ok(match self.days.get(&date) {
            Some(d) if d.kind == DayKind::MakeupWorkday => DayClass::MakeupWorkday {
                name: d.name.clone(),
            },
            Some(d) => DayClass::Holiday {
                name: d.name.clone(),
            },
            None if is_weekend(date) => DayClass::Weekend,
            None => DayClass::Workday,
        })
    }

    /// Whether `date` is a working day; an error when its year is not covered.
    pub fn is_working_day(&self, date: NaiveDate) -> Result<bool> {
        self.check_covered(date)?;
        Ok(match self.days.get(&date).map(|d| d.kind) {
            Some(DayKind::MakeupWorkday) => true,
            Some(DayKind::HolidayOff) => false,
            None => !is_weekend(date),
        })
    }

    /// The `n`-th working day strictly after `date` (see the module's counting convention);
    /// `date` itself when `n` is 0.
    ///
    /// Fails with [`Error::CalendarNotCovered`] when `date` is not covered or the count walks
    /// past the last covered day (the error names the first uncovered date).
    pub fn add_working_days(&self, date: NaiveDate, n: u32) -> Result<NaiveDate> {
        self.check_covered(date)?;
        let mut day = date;
        let mut counted = 0;
        while counted < n {
            day = self.step(day, 1)?;
            if self.is_working_day(day)? {
                counted += 1;
            }
        }
        Ok(day)
    }

    /// The `n`-th working day strictly before `date`; `date` itself when `n` is 0. The mirror
    /// of [`Calendar::add_working_days`], used for "at least N working days in advance".
    pub fn sub_working_days(&self, date: NaiveDate, n: u32) -> Result<NaiveDate> {
        self.check_covered(date)?;
        let mut day = date;
        let mut counted = 0;
        while counted < n {
            day = self.step(day, -1)?;
            if self.is_working_day(day)? {
                counted += 1;
            }
        }
        Ok(day)
    }

    /// The number of working days `d` with `from < d ≤ to` (0 when `to ≤ from`), so that
    /// `working_days_between(d, add_working_days(d, n)) == n`.
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate) -> Result<u32> {
        self.check_covered(from)?;
        self.check_covered(to)?;
        let mut count = 0;
        let mut day = from;
        while day < to {
            day = self.step(day, 1)?;
            if self.is_working_day(day)? {
                count += 1;
            }
        }
        Ok(count)
    }

    /// The number of working days in `year`; an error when the year is not covered.
    pub fn working_days_in_year(&self, year: i32) -> Result<u32> {
        let not_covered = || Error::CalendarNotCovered {
            date: NaiveDate::from_ymd_opt(year, 1, 1).unwrap_or(NaiveDate::MIN),
            years: self.years.clone(),
        };
        if !self.years.contains(&year) {
            return Err(not_covered());
        }
        let first = NaiveDate::from_ymd_opt(year, 1, 1).ok_or_else(not_covered)?;
        let mut count = 0;
        for day in first.iter_days().take_while(|day| day.year() == year) {
            if self.is_working_day(day)? {
                count += 1;
            }
        }
        Ok(count)
    }

    /// One day forward (`+1`) or back (`-1`), refusing to leave the covered years.
    fn step(&self, day: NaiveDate, direction: i8) -> Result<NaiveDate> {
        let next = if direction > 0 {
            day.succ_opt()
        } else {
            day.pred_opt()
        };
        let next = next.ok_or_else(|| Error::CalendarNotCovered {
            date: day,
            years: self.years.clone(),
        })?;
        self.check_covered(next)?;
        Ok(next)
    }

    fn check_covered(&self, date: NaiveDate) -> Result<()> {
        if self.covers(date) {
            Ok(())
        } else {
            Err(Error::CalendarNotCovered {
                date,
                years: self.years.clone(),
            })
        }
    }
}

fn is_weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

/// Parses a `YYYY-MM-DD` date, strictly (zero-padded, four-digit year in range).
fn parse_date(text: &str) -> std::result::Result<NaiveDate, String> {
    let well_formed = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !well_formed {
        return Err(format!("date must be YYYY-MM-DD, found `{text}`"));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|err| format!("date `{text}` is not a calendar date: {err}"))?;
    if !YEAR_LIMITS.contains(&date.year()) {
        return Err(format!(
            "date `{text}` is outside the years {}–{} a calendar may cover",
            YEAR_LIMITS.start(),
            YEAR_LIMITS.end()
        ));
    }
    Ok(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("test date")
    }

    fn cal() -> Calendar {
        Calendar::embedded().expect("embedded calendar parses")
    }

    #[test]
    fn embedded_calendar_covers_2025_and_2026() {
        let cal = cal();
        assert_eq!(cal.years(), 2025..=2026);
        assert_eq!(cal.source(), "embedded");
        assert_eq!(Calendar::default(), cal);
        assert!(cal.covers(d("2025-01-01")));
        assert!(cal.covers(d("2026-12-31")));
        assert!(!cal.covers(d("2024-12-31")));
        assert!(!cal.covers(d("2027-01-01")));
    }

    #[test]
    fn each_covered_year_has_248_working_days() {
        let cal = cal();
        for year in [2025, 2026] {
            assert_eq!(
                cal.working_days_in_year(year).expect("covered"),
                248,
                "{year}"
            );
        }
    }

    #[test]
    fn worked_examples_from_the_domain_brief() {
        let cal = cal();
        let cases = [
            ("2025-09-26", 5, "2025-10-10"),
            ("2026-02-13", 5, "2026-02-27"),
            ("2026-04-30", 10, "2026-05-18"),
            ("2025-12-31", 3, "2026-01-06"),
        ];
        for (from, n, expected) in cases {
            assert_eq!(
                cal.add_working_days(d(from), n).expect("covered"),
                d(expected),
                "{from} + {n}"
            );
        }
    }

    #[test]
    fn working_day_classification() {
        let cal = cal();
        let cases = [
            (
                "2026-02-14",
                true,
                "Saturday make-up day of the Spring Festival",
            ),
            ("2026-02-15", false, "Sunday inside the Spring Festival"),
            ("2026-02-16", false, "Monday holiday"),
            (
                "2026-02-24",
                true,
                "first weekday after the Spring Festival",
            ),
            (
                "2026-02-28",
                true,
                "Saturday make-up day after the Spring Festival",
            ),
            ("2026-03-01", false, "ordinary Sunday"),
            ("2026-10-01", false, "National Day"),
            (
                "2026-10-08",
                true,
                "Thursday after the National Day week is not a holiday in 2026",
            ),
            (
                "2026-10-10",
                true,
                "Saturday make-up day after National Day",
            ),
            (
                "2025-10-08",
                false,
                "last day of the 2025 National Day holiday",
            ),
            ("2025-10-11", true, "Saturday make-up day 2025"),
            ("2026-01-04", true, "Sunday make-up day of New Year"),
            ("2026-03-02", true, "ordinary Monday"),
        ];
        for (date, expected, why) in cases {
            assert_eq!(
                cal.is_working_day(d(date)).expect("covered"),
                expected,
                "{date}: {why}"
            );
        }
    }

    #[test]
    fn deadlines_across_holidays() {
        let cal = cal();
        let cases = [
            // Zero days: the date itself, even when it is a holiday.
            ("2026-02-16", 0, "2026-02-16"),
            // From a holiday, counting starts on the next working day.
            ("2026-02-16", 1, "2026-02-24"),
            // The Friday before the Spring Festival: the make-up Saturday is day 1.
            ("2026-02-13", 1, "2026-02-14"),
            ("2026-02-13", 2, "2026-02-24"),
            // National Day 2026: the make-up Sunday 2026-09-20 and Saturday 2026-10-10 count.
            ("2026-09-18", 1, "2026-09-20"),
            ("2026-09-30", 1, "2026-10-08"),
            ("2026-09-30", 3, "2026-10-10"),
            ("2026-09-30", 4, "2026-10-12"),
        ];
        for (from, n, expected) in cases {
            assert_eq!(
                cal.add_working_days(d(from), n).expect("covered"),
                d(expected),
                "{from} + {n}"
            );
        }
    }

    #[test]
    fn sub_working_days_mirrors_add() {
        let cal = cal();
        let cases = [
            ("2026-02-24", 1, "2026-02-14"),
            ("2026-02-24", 2, "2026-02-13"),
            ("2026-03-04", 2, "2026-03-02"),
            ("2026-10-08", 1, "2026-09-30"),
        ];
        for (from, n, expected) in cases {
            assert_eq!(
                cal.sub_working_days(d(from), n).expect("covered"),
                d(expected),
                "{from} - {n}"
            );
        }
    }

    #[test]
    fn dates_outside_the_calendar_are_errors() {
        let cal = cal();
        let err = cal
            .is_working_day(d("2027-03-01"))
            .expect_err("2027 not covered");
        assert!(matches!(
            err,
            Error::CalendarNotCovered { date, ref years } if date == d("2027-03-01") && *years == (2025..=2026)
        ));
        assert!(err.to_string().contains("2025–2026"), "{err}");
        assert!(cal.add_working_days(d("2024-12-31"), 1).is_err());
        // A count that runs past the end names the first uncovered date.
        match cal.add_working_days(d("2026-12-28"), 5) {
            Err(Error::CalendarNotCovered { date, .. }) => assert_eq!(date, d("2027-01-01")),
            other => panic!("expected CalendarNotCovered, got {other:?}"),
        }
        match cal.sub_working_days(d("2025-01-03"), 3) {
            Err(Error::CalendarNotCovered { date, .. }) => assert_eq!(date, d("2024-12-31")),
            other => panic!("expected CalendarNotCovered, got {other:?}"),
        }
        assert!(cal.working_days_in_year(2027).is_err());
        // The last covered working day can still be reached.
        assert_eq!(
            cal.add_working_days(d("2026-12-30"), 1).expect("covered"),
            d("2026-12-31")
        );
    }

    #[test]
    fn bad_files_name_line_and_reason() {
        let header = "date,kind,name,source_url\n";
        let cases: [(&str, String, u64, &str); 9] = [
            ("empty", String::new(), 0, "empty"),
            (
                "bad header",
                "day,kind,name,source_url\n".to_string(),
                1,
                "header",
            ),
            ("no rows", header.to_string(), 0, "no dates"),
            (
                "bad date",
                format!("{header}2026-02-30,holiday_off,x,u\n"),
                2,
                "not a calendar date",
            ),
            (
                "short date",
                format!("{header}2026-2-3,holiday_off,x,u\n"),
                2,
                "YYYY-MM-DD",
            ),
            (
                "bad kind",
                format!("{header}2026-02-16,vacation,x,u\n"),
                2,
                "kind",
            ),
            (
                "weekday make-up",
                format!("{header}2026-02-16,makeup_workday,x,u\n"),
                2,
                "not a Saturday or Sunday",
            ),
            (
                "duplicate",
                format!("{header}2026-02-16,holiday_off,x,u\n2026-02-16,holiday_off,x,u\n"),
                3,
                "twice",
            ),
            (
                "gap year",
                format!("{header}2024-02-16,holiday_off,x,u\n2026-02-16,holiday_off,x,u\n"),
                0,
                "missing year",
            ),
        ];
        for (what, text, line, reason) in cases {
            match Calendar::from_csv_str(&text, "test.csv") {
                Err(Error::CalendarFile {
                    file,
                    line: got_line,
                    reason: got_reason,
                }) => {
                    assert_eq!(file, "test.csv", "{what}");
                    assert_eq!(got_line, line, "{what}: {got_reason}");
                    assert!(got_reason.contains(reason), "{what}: {got_reason}");
                }
                other => panic!("{what}: expected a calendar file error, got {other:?}"),
            }
        }
        let short = format!("{header}2026-02-16,holiday_off,x\n");
        let err = Calendar::from_csv_str(&short, "f.csv").expect_err("three columns");
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(err.to_string().contains("columns"), "{err}");
        let empty_name = format!("{header}2026-02-16,holiday_off,,u\n");
        let err = Calendar::from_csv_str(&empty_name, "f.csv").expect_err("empty name");
        assert!(err.to_string().contains("name is empty"), "{err}");
    }

    #[test]
    fn from_path_reads_a_file_and_reports_missing_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cal.csv");
        std::fs::write(
            &path,
            "date,kind,name,source_url\n2027-01-01,holiday_off,元旦,https://example.invalid\n",
        )
        .expect("write");
        let cal = Calendar::from_path(&path).expect("valid file");
        assert_eq!(cal.years(), 2027..=2027);
        assert!(!cal.is_working_day(d("2027-01-01")).expect("covered"));
        assert!(cal.is_working_day(d("2027-01-04")).expect("covered"));
        assert_eq!(cal.source(), path.display().to_string());
        let err = Calendar::from_path(dir.path().join("missing.csv")).expect_err("missing");
        assert!(
            matches!(
                err,
                Error::Io {
                    what: "calendar",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_year_is_added_in_order_and_replaced_only_when_asked() {
        let year = |y: i32| {
            CalendarYear::from_toml_str(
                &format!(
                    "year = {y}\nnotice = \"n{y}\"\nsource_url = \"u\"\n[[holiday]]\n\
                     name = \"元旦\"\nfrom = {y}-01-01\nto = {y}-01-01\n"
                ),
                "y.toml",
            )
            .expect("valid year")
        };
        let cal = cal();
        let with = cal.with_year(&year(2027), false).expect("2027 follows");
        assert_eq!(with.years(), 2025..=2027);
        assert_eq!(with.last_covered_day(), d("2027-12-31"));
        assert!(!with.is_working_day(d("2027-01-01")).expect("covered"));
        assert!(with.source().contains("n2027"), "{}", with.source());
        // 2025–2026 are unchanged.
        for y in [2025, 2026] {
            assert_eq!(with.working_days_in_year(y).expect("covered"), 248);
        }
        let before = cal.with_year(&year(2024), false).expect("2024 precedes");
        assert_eq!(before.first_covered_day(), d("2024-01-01"));
        // A gap, or a year already there without `replace`, is refused with what to do.
        let err = cal.with_year(&year(2028), false).expect_err("gap");
        assert!(
            matches!(&err, Error::CalendarYear { year: 2028, reason } if reason.contains("load 2027 first")),
            "{err}"
        );
        let err = with.with_year(&year(2027), false).expect_err("twice");
        assert!(err.to_string().contains("--replace"), "{err}");
        // Replacing swaps the year's days: the replacement has no holiday on 01-01 but 01-04.
        let other = CalendarYear::from_toml_str(
            "year = 2027\nnotice = \"fix\"\nsource_url = \"u\"\n[[holiday]]\nname = \"x\"\n\
             from = 2027-01-04\nto = 2027-01-04\n",
            "fix.toml",
        )
        .expect("valid");
        let replaced = with.with_year(&other, true).expect("replace");
        assert!(replaced.is_working_day(d("2027-01-01")).expect("covered"));
        assert!(!replaced.is_working_day(d("2027-01-04")).expect("covered"));
        assert_eq!(replaced.year_days(2027).count(), 1);
        assert_eq!(
            replaced.year_days(2026).count(),
            with.year_days(2026).count()
        );
    }

    #[test]
    fn day_classes_and_holiday_names() {
        let cal = cal();
        let cases = [
            ("2025-03-03", DayClass::Workday),
            ("2025-03-08", DayClass::Weekend),
            (
                "2025-10-01",
                DayClass::Holiday {
                    name: "国庆节、中秋节".to_owned(),
                },
            ),
            // A holiday_off on a Saturday is still a holiday.
            (
                "2025-02-01",
                DayClass::Holiday {
                    name: "春节".to_owned(),
                },
            ),
            (
                "2026-02-14",
                DayClass::MakeupWorkday {
                    name: "春节".to_owned(),
                },
            ),
        ];
        for (date, class) in cases {
            let got = cal.day_class(d(date)).expect("covered");
            assert_eq!(
                got.is_working_day(),
                cal.is_working_day(d(date)).expect("covered")
            );
            assert_eq!(got, class, "{date}");
        }
        assert_eq!(
            DayClass::Holiday {
                name: "春节".into()
            }
            .describe(),
            "statutory holiday (春节)"
        );
        assert!(cal.day_class(d("2027-01-01")).is_err());
        assert_eq!(cal.holiday_name(d("2026-01-01")), Some("元旦"));
        assert_eq!(cal.holiday_name(d("2026-09-25")), Some("中秋节"));
        assert_eq!(cal.holiday_name(d("2026-01-04")), None, "make-up day");
        assert_eq!(cal.holiday_name(d("2025-03-03")), None);
        assert_eq!(cal.holiday_name(d("2024-10-01")), None);
    }

    #[test]
    fn the_shipped_file_read_from_disk_is_the_embedded_calendar() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cn_holidays_2025_2026.csv");
        let from_disk = Calendar::from_path(&path).expect("valid");
        let embedded = cal();
        assert_eq!(from_disk.years(), embedded.years());
        for day in d("2025-01-01")
            .iter_days()
            .take_while(|day| day.year() <= 2026)
        {
            assert_eq!(
                from_disk.day_class(day).expect("covered"),
                embedded.day_class(day).expect("covered")
            );
        }
    }

    #[test]
    fn working_days_between_is_zero_for_non_increasing_ranges() {
        let cal = cal();
        assert_eq!(
            cal.working_days_between(d("2025-03-03"), d("2025-03-03"))
                .expect("covered"),
            0
        );
        assert_eq!(
            cal.working_days_between(d("2025-03-10"), d("2025-03-03"))
                .expect("covered"),
            0
        );
        // (Fri, next Fri] = Mon … Fri.
        assert_eq!(
            cal.working_days_between(d("2025-03-07"), d("2025-03-14"))
                .expect("covered"),
            5
        );
    }

    // The tests below were the unit tests of the pipeline's former `WorkingCalendar` adapter,
    // kept under their names and expressed against this module's API. The adapter's
    // `DayKind` is `DayClass` here, its `CalendarError::File` is `Error::CalendarFile`, and its
    // `Uncovered`/`UncoveredYear` are `Error::CalendarNotCovered` (a year is reported as its
    // 1 January). `each_covered_year_has_248_working_days` and
    // `working_days_between_is_zero_for_non_increasing_ranges` above are the same in both.

    const HEADER_LINE: &str = "date,kind,name,source_url\n";

    /// Parses `body` after the header, as the file `test.csv`.
    fn parse(body: &str) -> Result<Calendar> {
        Calendar::from_csv_str(&format!("{HEADER_LINE}{body}"), "test.csv")
    }

    #[test]
    fn embedded_calendar_loads_and_covers_2025_2026() {
        let cal = cal();
        assert_eq!(cal.years(), 2025..=2026);
        assert!(cal.covers(d("2025-01-01")));
        assert!(cal.covers(d("2026-12-31")));
        assert!(!cal.covers(d("2024-12-31")));
        assert!(!cal.covers(d("2027-01-01")));
    }

    #[test]
    fn from_csv_path_reads_the_shipped_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cn_holidays_2025_2026.csv");
        let from_disk = Calendar::from_path(&path).expect("valid");
        let embedded = cal();
        assert_eq!(from_disk.years(), embedded.years());
        for day in d("2025-01-01")
            .iter_days()
            .take_while(|day| day.year() <= 2026)
        {
            assert_eq!(
                from_disk.day_class(day).expect("covered"),
                embedded.day_class(day).expect("covered")
            );
        }
    }

    #[test]
    fn from_csv_path_missing_file_is_io_error() {
        let err = Calendar::from_path("/nonexistent/calendar.csv").expect_err("missing file");
        match err {
            Error::Io { what, path, .. } => {
                assert_eq!(what, "calendar");
                assert_eq!(path.display().to_string(), "/nonexistent/calendar.csv");
            }
            other => panic!("expected Io, got {other:?}"),
        }
    }

    // Worked examples from the domain brief.

    #[test]
    fn worked_example_national_day_2025() {
        // 2025-09-28 (Sunday) is a make-up working day; 10-01..10-08 are off.
        assert_eq!(
            cal().add_working_days(d("2025-09-26"), 5).expect("covered"),
            d("2025-10-10")
        );
    }

    #[test]
    fn worked_example_spring_festival_2026() {
        assert_eq!(
            cal().add_working_days(d("2026-02-13"), 5).expect("covered"),
            d("2026-02-27")
        );
    }

    #[test]
    fn worked_example_labour_day_2026() {
        assert_eq!(
            cal()
                .add_working_days(d("2026-04-30"), 10)
                .expect("covered"),
            d("2026-05-18")
        );
    }

    #[test]
    fn worked_example_across_new_year() {
        assert_eq!(
            cal().add_working_days(d("2025-12-31"), 3).expect("covered"),
            d("2026-01-06")
        );
    }

    #[test]
    fn worked_examples_round_trip_through_working_days_between() {
        let cal = cal();
        for (from, n, to) in [
            ("2025-09-26", 5, "2025-10-10"),
            ("2026-02-13", 5, "2026-02-27"),
            ("2026-04-30", 10, "2026-05-18"),
            ("2025-12-31", 3, "2026-01-06"),
        ] {
            assert_eq!(
                cal.working_days_between(d(from), d(to)).expect("covered"),
                n,
                "{from} → {to}"
            );
        }
    }

    #[test]
    fn working_days_in_uncovered_year_is_an_error() {
        let err = cal()
            .working_days_in_year(2027)
            .expect_err("2027 not covered");
        assert!(
            matches!(
                &err,
                Error::CalendarNotCovered { date, years }
                    if *date == d("2027-01-01") && *years == (2025..=2026)
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("2025–2026"), "{err}");
    }

    #[test]
    fn zero_working_days_returns_the_date_itself() {
        let cal = cal();
        assert_eq!(
            cal.add_working_days(d("2025-10-01"), 0).expect("covered"),
            d("2025-10-01")
        );
        assert_eq!(
            cal.add_working_days(d("2025-03-03"), 0).expect("covered"),
            d("2025-03-03")
        );
    }

    #[test]
    fn day_kinds() {
        let cal = cal();
        assert_eq!(
            cal.day_class(d("2025-03-03")).expect("covered"),
            DayClass::Workday
        );
        assert_eq!(
            cal.day_class(d("2025-03-08")).expect("covered"),
            DayClass::Weekend
        );
        assert_eq!(
            cal.day_class(d("2025-10-01")).expect("covered"),
            DayClass::Holiday {
                name: "国庆节、中秋节".to_owned()
            }
        );
        // A holiday_off that falls on a Saturday is still a holiday.
        assert_eq!(
            cal.day_class(d("2025-02-01")).expect("covered"),
            DayClass::Holiday {
                name: "春节".to_owned()
            }
        );
        assert_eq!(
            cal.day_class(d("2026-02-14")).expect("covered"),
            DayClass::MakeupWorkday {
                name: "春节".to_owned()
            }
        );
        assert!(cal.is_working_day(d("2026-02-14")).expect("covered"));
        assert!(!cal.is_working_day(d("2026-02-16")).expect("covered"));
        assert!(!cal.is_working_day(d("2025-03-08")).expect("covered"));
        assert!(cal.is_working_day(d("2025-03-03")).expect("covered"));
    }

    #[test]
    fn holiday_names() {
        let cal = cal();
        assert_eq!(cal.holiday_name(d("2026-01-01")), Some("元旦"));
        assert_eq!(cal.holiday_name(d("2026-09-25")), Some("中秋节"));
        assert_eq!(
            cal.holiday_name(d("2026-01-04")),
            None,
            "make-up day is not a holiday"
        );
        assert_eq!(cal.holiday_name(d("2025-03-03")), None);
        assert_eq!(cal.holiday_name(d("2024-10-01")), None);
    }

    // Uncovered years.

    #[test]
    fn is_working_day_before_coverage_is_an_error() {
        let err = cal()
            .is_working_day(d("2024-12-31"))
            .expect_err("2024 not covered");
        match &err {
            Error::CalendarNotCovered { date, years } => {
                assert_eq!(*date, d("2024-12-31"));
                assert_eq!(*years, 2025..=2026);
            }
            other => panic!("expected CalendarNotCovered, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("2024-12-31") && message.contains("2025–2026"),
            "{message}"
        );
    }

    #[test]
    fn walking_into_an_uncovered_year_is_an_error() {
        let err = cal()
            .add_working_days(d("2026-12-30"), 5)
            .expect_err("walks into 2027");
        match err {
            Error::CalendarNotCovered { date, years } => {
                assert_eq!(date, d("2027-01-01"));
                assert_eq!(years, 2025..=2026);
            }
            other => panic!("expected CalendarNotCovered, got {other:?}"),
        }
    }

    #[test]
    fn uncovered_trigger_or_end_date_is_an_error() {
        let cal = cal();
        assert!(matches!(
            cal.add_working_days(d("2024-12-31"), 1),
            Err(Error::CalendarNotCovered { .. })
        ));
        assert!(matches!(
            cal.working_days_between(d("2026-06-01"), d("2027-01-04")),
            Err(Error::CalendarNotCovered { .. })
        ));
        assert!(matches!(
            cal.day_class(d("2027-01-01")),
            Err(Error::CalendarNotCovered { .. })
        ));
    }

    // Parse and consistency errors.

    #[test]
    fn bad_date_is_a_parse_error_with_line() {
        let err = parse("2025-01-01,holiday_off,元旦,u\n2025-02-30,holiday_off,春节,u\n")
            .expect_err("2025-02-30");
        match err {
            Error::CalendarFile { file, line, reason } => {
                assert_eq!(file, "test.csv");
                assert_eq!(line, 3);
                assert!(reason.contains("2025-02-30"), "{reason}");
            }
            other => panic!("expected CalendarFile, got {other:?}"),
        }
    }

    #[test]
    fn unknown_kind_is_a_parse_error_with_line() {
        let err = parse("2025-01-01,holiday_off,元旦,u\n2025-01-02,day_off,元旦,u\n")
            .expect_err("unknown kind");
        match err {
            Error::CalendarFile { line, reason, .. } => {
                assert_eq!(line, 3);
                assert!(reason.contains("kind"), "{reason}");
                assert!(reason.contains("day_off"), "{reason}");
            }
            other => panic!("expected CalendarFile, got {other:?}"),
        }
    }

    #[test]
    fn makeup_on_a_weekday_is_inconsistent() {
        // 2025-01-27 is a Monday.
        let err = parse("2025-01-26,makeup_workday,春节,u\n2025-01-27,makeup_workday,春节,u\n")
            .expect_err("weekday make-up");
        match err {
            Error::CalendarFile { file, line, reason } => {
                assert_eq!(file, "test.csv");
                assert_eq!(line, 3);
                assert!(reason.contains("2025-01-27"), "{reason}");
            }
            other => panic!("expected CalendarFile, got {other:?}"),
        }
    }

    #[test]
    fn holiday_on_a_weekend_is_allowed() {
        // 2025-02-01 is a Saturday.
        let cal = parse("2025-02-01,holiday_off,春节,u\n").expect("valid");
        assert_eq!(cal.holiday_name(d("2025-02-01")), Some("春节"));
        assert_eq!(cal.years(), 2025..=2025);
    }

    #[test]
    fn duplicate_date_is_inconsistent() {
        let err = parse(
            "2025-01-01,holiday_off,元旦,u\n2025-04-04,holiday_off,清明节,u\n\
             2025-01-01,holiday_off,元旦,u\n",
        )
        .expect_err("duplicate");
        match err {
            Error::CalendarFile { line, reason, .. } => {
                assert_eq!(line, 4);
                assert!(reason.contains("listed twice"), "{reason}");
            }
            other => panic!("expected CalendarFile, got {other:?}"),
        }
    }

    #[test]
    fn same_date_as_holiday_and_makeup_is_inconsistent() {
        let err = parse("2025-01-26,makeup_workday,春节,u\n2025-01-26,holiday_off,春节,u\n")
            .expect_err("holiday and make-up");
        assert!(
            matches!(err, Error::CalendarFile { line: 3, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn empty_name_is_a_parse_error() {
        let err = parse("2025-01-01,holiday_off,,u\n").expect_err("empty name");
        assert!(
            matches!(&err, Error::CalendarFile { line: 2, reason, .. } if reason.contains("name")),
            "{err:?}"
        );
    }

    #[test]
    fn wrong_header_is_a_parse_error() {
        let err = Calendar::from_csv_str("day,kind,name,source_url\n", "x").expect_err("header");
        assert!(
            matches!(&err, Error::CalendarFile { line: 1, reason, .. } if reason.contains("header")),
            "{err:?}"
        );
    }

    #[test]
    fn short_record_is_a_parse_error_with_line() {
        let err = parse("2025-01-01,holiday_off,元旦,u\n2025-01-02,holiday_off\n")
            .expect_err("short record");
        assert!(
            matches!(&err, Error::CalendarFile { line: 3, reason, .. } if reason.contains("columns")),
            "{err:?}"
        );
    }

    #[test]
    fn no_entries_is_inconsistent() {
        assert!(matches!(
            parse(""),
            Err(Error::CalendarFile { reason, .. }) if reason.contains("no dates")
        ));
        assert!(matches!(
            Calendar::from_csv_str("", "x"),
            Err(Error::CalendarFile { reason, .. }) if reason.contains("header")
        ));
    }

    #[test]
    fn gap_in_years_is_inconsistent() {
        let err = parse("2025-01-01,holiday_off,元旦,u\n2027-01-01,holiday_off,元旦,u\n")
            .expect_err("2026 missing");
        match err {
            Error::CalendarFile { reason, .. } => {
                assert!(reason.contains("2026"), "{reason}");
            }
            other => panic!("expected CalendarFile, got {other:?}"),
        }
    }

    #[test]
    fn error_messages_name_source_and_line() {
        // The adapter wrote `test.csv:2: date …`; this crate writes the same source, line and
        // reason as `calendar file test.csv, line 2: date …`.
        let err = parse("2025-13-01,holiday_off,元旦,u\n").expect_err("month 13");
        let message = err.to_string();
        assert!(
            message.starts_with("calendar file test.csv, line 2: date"),
            "{message}"
        );
    }

    proptest::proptest! {
        /// The adapter's property: from any start up to 2026-10-31, a count of 1 to 30 working
        /// days stays inside the calendar and round-trips through `working_days_between`.
        #[test]
        fn add_then_count_round_trips(
            offset in 0..=d("2026-10-31").signed_duration_since(d("2025-01-01")).num_days(),
            n in 1u32..=30,
        ) {
            let cal = cal();
            let start = d("2025-01-01") + chrono::Duration::days(offset);
            let end = cal.add_working_days(start, n).expect("covered");
            proptest::prop_assert!(end > start);
            proptest::prop_assert!(cal.is_working_day(end).expect("covered"));
            proptest::prop_assert!(cal.day_class(end).expect("covered").is_working_day());
            proptest::prop_assert_eq!(cal.working_days_between(start, end).expect("covered"), n);
            // The deadline is the *first* date reaching n working days.
            let day_before = end.pred_opt().expect("a covered date has a predecessor");
            proptest::prop_assert_eq!(
                cal.working_days_between(start, day_before).expect("covered"),
                n - 1
            );
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn add_then_count_round_trips(offset in 0i64..700, n in 0u32..40) {
                let cal = cal();
                let start = d("2025-01-01") + chrono::Duration::days(offset);
                if let Ok(end) = cal.add_working_days(start, n) {
                    prop_assert_eq!(cal.working_days_between(start, end).expect("covered"), n);
                    prop_assert!(end >= start);
                    if n > 0 {
                        prop_assert!(cal.is_working_day(end).expect("covered"));
                        // Walking back may leave the covered years near 2025-01-01.
                        if let Ok(back) = cal.sub_working_days(end, n) {
                            prop_assert!(back <= start);
                            prop_assert_eq!(cal.add_working_days(back, n).expect("covered"), end);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod decoder_properties {
    //! Random text through the calendar decoders (the full CSV, a year's TOML and CSV): no
    //! panic; a refusal names its source.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn random_text_is_refused_naming_the_source(text in "(?s).{0,200}") {
            if let Err(e) = Calendar::from_csv_str(&text, "cal.csv") {
                prop_assert!(e.to_string().contains("cal.csv"), "{e}");
            }
            if let Err(e) = year::CalendarYear::from_toml_str(&text, "year.toml") {
                prop_assert!(!e.to_string().is_empty());
            }
            if let Err(e) = year::CalendarYear::from_csv_str(&text, "year.csv") {
                prop_assert!(!e.to_string().is_empty());
            }
        }

        #[test]
        fn near_valid_lines_are_refused_naming_the_line(
            date in "20[0-9]{2}-[0-9]{2}-[0-9]{2}",
            kind in proptest::sample::select(vec!["holiday", "workday", "weekend", "", "x"]),
        ) {
            let text = format!("date,kind,name,source_url\n{date},{kind},节日,https://example.invalid\n");
            if let Err(e) = Calendar::from_csv_str(&text, "cal.csv") {
                let t = e.to_string();
                prop_assert!(t.contains("cal.csv"), "{t}");
            }
        }
    }
}
