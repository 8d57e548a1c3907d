//! Working-day calendar for Chinese regulatory deadlines.
//!
//! Deadlines in drug supervision are counted in *working days* (工作日). Which days are
//! working days is decided each year by the State Council: statutory holidays are days off
//! even when they fall on a weekday, and some Saturdays or Sundays are declared make-up
//! working days (调休上班). This module keeps that calendar as **data** — a CSV file with
//! the columns `date,kind,name,source_url`, where `kind` is `holiday_off` or
//! `makeup_workday` — and answers working-day questions from it.
//!
//! The file shipped with the crate (`pipeline/data/cn_holidays_2025_2026.csv`) is embedded
//! at compile time and available through [`WorkingCalendar::embedded`].
//!
//! # Counting rule
//!
//! A deadline of `N` working days starts the day *after* the triggering date. A day counts
//! when it is a make-up working day, or when it is a Monday–Friday that is not a statutory
//! holiday. Weekends and `holiday_off` days do not count. See
//! [`WorkingCalendar::add_working_days`] and [`WorkingCalendar::working_days_between`].
//!
//! # Invariants
//!
//! A [`WorkingCalendar`] can only be built by parsing a calendar file, and parsing
//! guarantees:
//!
//! * the covered years are exactly the years that appear in the file, and they are a
//!   non-empty, contiguous range (a gap year is rejected, since a year with no entries at
//!   all is almost certainly a missing year rather than a year without holidays);
//! * every date appears at most once, so no date is both a holiday and a make-up day;
//! * every make-up working day is a Saturday or a Sunday (a `holiday_off` date that is
//!   already a weekend is allowed — official notices list whole holiday spans);
//! * every listed date has a non-empty name.
//!
//! Nothing is guessed outside the data: any query that touches a date in a year the
//! calendar does not cover — including a walk that crosses into such a year — fails with
//! [`CalendarError::Uncovered`], naming the date and the covered years.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::Path;

use chrono::{Datelike, NaiveDate, Weekday};
use thiserror::Error;

/// The calendar file shipped with the crate, embedded at compile time.
const EMBEDDED_CSV: &str = include_str!("../data/cn_holidays_2025_2026.csv");

/// The `source_name` used in errors about the embedded calendar file.
const EMBEDDED_SOURCE_NAME: &str = "embedded";

/// The header a calendar file must have, in this order.
const EXPECTED_HEADER: [&str; 4] = ["date", "kind", "name", "source_url"];

/// The range of years a calendar file may mention. Four-digit years keep every date and
/// its neighbours representable, so walking one day past a covered year is always possible.
const SUPPORTED_YEARS: RangeInclusive<i32> = 1000..=9999;

/// An error while loading a calendar file or answering a query.
#[derive(Debug, Error)]
pub enum CalendarError {
    /// The calendar file could not be read.
    #[error("cannot read calendar file {source_name}: {source}")]
    Io {
        /// The path of the file.
        source_name: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A field of the calendar file could not be parsed.
    #[error("{source_name}:{line}: invalid {field}: {reason}")]
    Parse {
        /// The file path, or `"embedded"` for the shipped calendar.
        source_name: String,
        /// The 1-based line of the file (the header is line 1).
        line: u64,
        /// The column (`date`, `kind`, `name`), or `header` / `record` for structural problems.
        field: &'static str,
        /// What is wrong with the value.
        reason: String,
    },

    /// The calendar file parses but contradicts itself or the calendar rules
    /// (a duplicate date, a make-up working day on a weekday, a missing year, no entries).
    #[error("{source_name}:{line}: inconsistent calendar: {reason}")]
    Inconsistent {
        /// The file path, or `"embedded"` for the shipped calendar.
        source_name: String,
        /// The 1-based line of the file the problem was found at (the header is line 1).
        line: u64,
        /// What is inconsistent.
        reason: String,
    },

    /// A query touched a date in a year the calendar does not cover.
    #[error("date {date} is outside the working-day calendar, which covers {covered}")]
    Uncovered {
        /// The first date that could not be classified.
        date: NaiveDate,
        /// The covered years, e.g. `"2025–2026"`.
        covered: String,
    },

    /// A whole-year query asked for a year the calendar does not cover.
    #[error("year {year} is outside the working-day calendar, which covers {covered}")]
    UncoveredYear {
        /// The requested year.
        year: i32,
        /// The covered years, e.g. `"2025–2026"`.
        covered: String,
    },
}

/// What kind of day a date is, according to a [`WorkingCalendar`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DayKind {
    /// An ordinary Monday–Friday working day.
    Workday,
    /// A Saturday or Sunday that is neither a listed holiday nor a make-up working day.
    Weekend,
    /// A statutory day off (`holiday_off`), whether it falls on a weekday or a weekend.
    Holiday {
        /// The holiday's name as given in the calendar file, e.g. `春节`.
        name: String,
    },
    /// A Saturday or Sunday declared a working day (`makeup_workday`).
    MakeupWorkday {
        /// The name of the holiday the make-up day belongs to, e.g. `春节`.
        name: String,
    },
}

impl DayKind {
    /// Whether a day of this kind counts towards a working-day deadline.
    #[must_use]
    pub fn is_working_day(&self) -> bool {
        matches!(self, Self::Workday | Self::MakeupWorkday { .. })
    }
}

/// A working-day calendar for a contiguous range of years, loaded from data.
///
/// Build one with [`WorkingCalendar::embedded`], [`WorkingCalendar::from_csv_path`] or
/// [`WorkingCalendar::from_csv_str`]; see the [module documentation](self) for the
/// invariants every instance satisfies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingCalendar {
    /// First covered year.
    first_year: i32,
    /// Last covered year (inclusive); `first_year <= last_year`.
    last_year: i32,
    /// Statutory days off (`holiday_off`).
    holiday_off: BTreeSet<NaiveDate>,
    /// Weekend days declared working days (`makeup_workday`); disjoint from `holiday_off`.
    makeup: BTreeSet<NaiveDate>,
    /// The name of every date in `holiday_off` or `makeup`.
    names: BTreeMap<NaiveDate, String>,
}

/// The kind column of a calendar file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    HolidayOff,
    MakeupWorkday,
}

fn is_weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

/// Parses a `date` field: a `YYYY-MM-DD` date in [`SUPPORTED_YEARS`].
fn parse_date(raw: &str) -> Result<NaiveDate, String> {
    let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|err| format!("`{raw}` is not a YYYY-MM-DD date: {err}"))?;
    if SUPPORTED_YEARS.contains(&date.year()) {
        Ok(date)
    } else {
        Err(format!(
            "`{raw}` is outside the supported years {}–{}",
            SUPPORTED_YEARS.start(),
            SUPPORTED_YEARS.end()
        ))
    }
}

/// Parses a `kind` field.
fn parse_kind(raw: &str) -> Result<EntryKind, String> {
    match raw {
        "holiday_off" => Ok(EntryKind::HolidayOff),
        "makeup_workday" => Ok(EntryKind::MakeupWorkday),
        other => Err(format!(
            "unknown kind `{other}` (expected `holiday_off` or `makeup_workday`)"
        )),
    }
}

/// The first and last year of `years` (year → first line it appears on), or the line and
/// reason to report if there are no years or the years are not contiguous.
fn contiguous_years(years: &BTreeMap<i32, u64>) -> Result<(i32, i32), (u64, String)> {
    let (Some((&first_year, _)), Some((&last_year, _))) =
        (years.first_key_value(), years.last_key_value())
    else {
        return Err((
            1,
            "the calendar has no entries, so it covers no years".to_owned(),
        ));
    };
    let mut previous = first_year;
    for (&year, &line) in years.range(first_year + 1..) {
        if year != previous + 1 {
            return Err((
                line,
                format!(
                    "covered years must be contiguous, but there are entries for {previous} \
                     and {year} and none for {}",
                    previous + 1
                ),
            ));
        }
        previous = year;
    }
    Ok((first_year, last_year))
}

impl WorkingCalendar {
    /// Loads the calendar file shipped with the crate
    /// (`pipeline/data/cn_holidays_2025_2026.csv`, embedded at compile time).
    ///
    /// # Errors
    ///
    /// Returns [`CalendarError::Parse`] or [`CalendarError::Inconsistent`] (with
    /// `source_name` `"embedded"`) if the shipped file is malformed; the crate's tests
    /// check that it is not.
    pub fn embedded() -> Result<Self, CalendarError> {
        Self::from_csv_str(EMBEDDED_SOURCE_NAME, EMBEDDED_CSV)
    }

    /// Loads a calendar file from disk. The path is used as `source_name` in errors.
    ///
    /// # Errors
    ///
    /// Returns [`CalendarError::Io`] if the file cannot be read (or is not UTF-8), and
    /// otherwise the errors of [`WorkingCalendar::from_csv_str`].
    pub fn from_csv_path(path: &Path) -> Result<Self, CalendarError> {
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CalendarError::Io {
            source_name: source_name.clone(),
            source,
        })?;
        Self::from_csv_str(&source_name, &text)
    }

    /// Parses a calendar from CSV text with the header `date,kind,name,source_url`.
    ///
    /// `date` is `YYYY-MM-DD`; `kind` is `holiday_off` or `makeup_workday`; `name` must not
    /// be empty; `source_url` is carried for provenance and may be empty. Surrounding
    /// whitespace in fields is ignored. `source_name` identifies the text in errors.
    ///
    /// # Errors
    ///
    /// * [`CalendarError::Parse`] for a wrong header, a malformed record, an invalid date,
    ///   a year outside 1000–9999, an unknown kind or an empty name;
    /// * [`CalendarError::Inconsistent`] for a duplicate date, a make-up working day that
    ///   is not a Saturday or Sunday, a gap in the covered years, or a file with no entries.
    pub fn from_csv_str(source_name: &str, text: &str) -> Result<Self, CalendarError> {
        let parse_error = |line: u64, field: &'static str, reason: String| CalendarError::Parse {
            source_name: source_name.to_owned(),
            line,
            field,
            reason,
        };
        let inconsistent = |line: u64, reason: String| CalendarError::Inconsistent {
            source_name: source_name.to_owned(),
            line,
            reason,
        };
        let csv_error = |err: csv::Error| {
            let line = err.position().map_or(1, csv::Position::line);
            parse_error(line, "record", err.to_string())
        };

        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());

        let header = reader.headers().map_err(csv_error)?;
        if !header.iter().eq(EXPECTED_HEADER) {
            return Err(parse_error(
                1,
                "header",
                format!(
                    "expected `{}`, found `{}`",
                    EXPECTED_HEADER.join(","),
                    header.iter().collect::<Vec<_>>().join(",")
                ),
            ));
        }

        let mut holiday_off = BTreeSet::new();
        let mut makeup = BTreeSet::new();
        let mut names = BTreeMap::new();
        // Line each date was first seen at, for duplicate reports.
        let mut seen: BTreeMap<NaiveDate, u64> = BTreeMap::new();
        // First line each year was seen at, for gap reports.
        let mut years: BTreeMap<i32, u64> = BTreeMap::new();

        for record in reader.records() {
            let record = record.map_err(csv_error)?;
            let line = record.position().map_or(0, csv::Position::line);
            // The header check and the reader's equal-length rule guarantee four fields.
            let field = |index: usize| record.get(index).unwrap_or_default();

            let date = parse_date(field(0)).map_err(|reason| parse_error(line, "date", reason))?;
            let kind = parse_kind(field(1)).map_err(|reason| parse_error(line, "kind", reason))?;

            let name = field(2);
            if name.is_empty() {
                return Err(parse_error(line, "name", format!("empty name for {date}")));
            }

            if let Some(first_line) = seen.get(&date) {
                return Err(inconsistent(
                    line,
                    format!("duplicate date {date} (first listed on line {first_line})"),
                ));
            }
            if kind == EntryKind::MakeupWorkday && !is_weekend(date) {
                return Err(inconsistent(
                    line,
                    format!(
                        "make-up working day {date} is a {}, not a Saturday or Sunday",
                        date.weekday()
                    ),
                ));
            }

            seen.insert(date, line);
            years.entry(date.year()).or_insert(line);
            names.insert(date, name.to_owned());
            match kind {
                EntryKind::HolidayOff => holiday_off.insert(date),
                EntryKind::MakeupWorkday => makeup.insert(date),
            };
        }

        let (first_year, last_year) =
            contiguous_years(&years).map_err(|(line, reason)| inconsistent(line, reason))?;

        Ok(Self {
            first_year,
            last_year,
            holiday_off,
            makeup,
            names,
        })
    }

    /// Whether `date` falls in a covered year.
    #[must_use]
    pub fn covers(&self, date: NaiveDate) -> bool {
        self.covered_years().contains(&date.year())
    }

    /// The covered years: exactly the (contiguous) years that appear in the calendar file.
    #[must_use]
    pub fn covered_years(&self) -> RangeInclusive<i32> {
        self.first_year..=self.last_year
    }

    /// Whether `date` counts as a working day (see [`DayKind::is_working_day`]).
    ///
    /// # Errors
    ///
    /// [`CalendarError::Uncovered`] if `date` is not in a covered year.
    pub fn is_working_day(&self, date: NaiveDate) -> Result<bool, CalendarError> {
        self.ensure_covered(date)?;
        Ok(self.makeup.contains(&date) || (!self.holiday_off.contains(&date) && !is_weekend(date)))
    }

    /// Classifies `date`. A listed holiday is [`DayKind::Holiday`] even when it falls on a
    /// weekend.
    ///
    /// # Errors
    ///
    /// [`CalendarError::Uncovered`] if `date` is not in a covered year.
    pub fn day_kind(&self, date: NaiveDate) -> Result<DayKind, CalendarError> {
        self.ensure_covered(date)?;
        let name = || self.names.get(&date).cloned().unwrap_or_default();
        Ok(if self.makeup.contains(&date) {
            DayKind::MakeupWorkday { name: name() }
        } else if self.holiday_off.contains(&date) {
            DayKind::Holiday { name: name() }
        } else if is_weekend(date) {
            DayKind::Weekend
        } else {
            DayKind::Workday
        })
    }

    /// The deadline date `n` working days after `date`: counting starts the day after
    /// `date`, and the result is the `n`th working day found. The result is always a
    /// working day when `n >= 1`. For `n == 0` the result is `date` itself (which need
    /// not be a working day).
    ///
    /// `date` itself must be covered even though it is not counted, and so must every day
    /// walked over.
    ///
    /// # Errors
    ///
    /// [`CalendarError::Uncovered`] if `date` is not covered, or naming the first
    /// uncovered date if the walk runs past the last covered year.
    pub fn add_working_days(&self, date: NaiveDate, n: u32) -> Result<NaiveDate, CalendarError> {
        self.ensure_covered(date)?;
        let mut current = date;
        let mut remaining = n;
        while remaining > 0 {
            current = current.succ_opt().ok_or_else(|| self.uncovered(current))?;
            if self.is_working_day(current)? {
                remaining -= 1;
            }
        }
        Ok(current)
    }

    /// The number of working days in the half-open interval `(from, to]` — the number of
    /// working days elapsed between a triggering date `from` and `to`. Zero if `to <= from`.
    ///
    /// For `n >= 1`, `working_days_between(d, add_working_days(d, n)?)` is `n`.
    ///
    /// # Errors
    ///
    /// [`CalendarError::Uncovered`] if `from` or `to` is not in a covered year (checked
    /// even when `to <= from`).
    pub fn working_days_between(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<u32, CalendarError> {
        self.ensure_covered(from)?;
        self.ensure_covered(to)?;
        let mut count = 0;
        for day in from.iter_days().skip(1).take_while(|day| *day <= to) {
            if self.is_working_day(day)? {
                count += 1;
            }
        }
        Ok(count)
    }

    /// The number of working days in calendar year `year`.
    ///
    /// # Errors
    ///
    /// [`CalendarError::UncoveredYear`] if `year` is not covered.
    pub fn working_days_in_year(&self, year: i32) -> Result<u32, CalendarError> {
        let uncovered = || CalendarError::UncoveredYear {
            year,
            covered: self.covered_label(),
        };
        if !self.covered_years().contains(&year) {
            return Err(uncovered());
        }
        let first_day = NaiveDate::from_ymd_opt(year, 1, 1).ok_or_else(uncovered)?;
        let mut count = 0;
        for day in first_day.iter_days().take_while(|day| day.year() == year) {
            if self.is_working_day(day)? {
                count += 1;
            }
        }
        Ok(count)
    }

    /// The name of the statutory holiday (`holiday_off`) on `date`, if any.
    ///
    /// Make-up working days are *not* holidays and return `None`; their associated holiday
    /// name is available through [`WorkingCalendar::day_kind`]. Uncovered dates return
    /// `None` as well — use [`WorkingCalendar::covers`] or `day_kind` to tell them apart.
    #[must_use]
    pub fn holiday_name(&self, date: NaiveDate) -> Option<&str> {
        if self.holiday_off.contains(&date) {
            self.names.get(&date).map(String::as_str)
        } else {
            None
        }
    }

    /// The covered years as text, e.g. `"2025–2026"` (or `"2025"` for a single year).
    fn covered_label(&self) -> String {
        if self.first_year == self.last_year {
            self.first_year.to_string()
        } else {
            format!("{}–{}", self.first_year, self.last_year)
        }
    }

    fn uncovered(&self, date: NaiveDate) -> CalendarError {
        CalendarError::Uncovered {
            date,
            covered: self.covered_label(),
        }
    }

    fn ensure_covered(&self, date: NaiveDate) -> Result<(), CalendarError> {
        if self.covers(date) {
            Ok(())
        } else {
            Err(self.uncovered(date))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEADER: &str = "date,kind,name,source_url\n";

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn cal() -> WorkingCalendar {
        WorkingCalendar::embedded().unwrap()
    }

    fn parse(body: &str) -> Result<WorkingCalendar, CalendarError> {
        WorkingCalendar::from_csv_str("test.csv", &format!("{HEADER}{body}"))
    }

    #[test]
    fn embedded_calendar_loads_and_covers_2025_2026() {
        let cal = cal();
        assert_eq!(cal.covered_years(), 2025..=2026);
        assert!(cal.covers(d(2025, 1, 1)));
        assert!(cal.covers(d(2026, 12, 31)));
        assert!(!cal.covers(d(2024, 12, 31)));
        assert!(!cal.covers(d(2027, 1, 1)));
    }

    #[test]
    fn from_csv_path_reads_the_shipped_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cn_holidays_2025_2026.csv");
        let from_disk = WorkingCalendar::from_csv_path(&path).unwrap();
        assert_eq!(from_disk, cal());
    }

    #[test]
    fn from_csv_path_missing_file_is_io_error() {
        let err =
            WorkingCalendar::from_csv_path(Path::new("/nonexistent/calendar.csv")).unwrap_err();
        match err {
            CalendarError::Io { source_name, .. } => {
                assert_eq!(source_name, "/nonexistent/calendar.csv");
            }
            other => panic!("expected Io, got {other:?}"),
        }
    }

    // Worked examples from the domain brief.

    #[test]
    fn worked_example_national_day_2025() {
        // 2025-09-28 (Sunday) is a make-up working day; 10-01..10-08 are off.
        assert_eq!(
            cal().add_working_days(d(2025, 9, 26), 5).unwrap(),
            d(2025, 10, 10)
        );
    }

    #[test]
    fn worked_example_spring_festival_2026() {
        assert_eq!(
            cal().add_working_days(d(2026, 2, 13), 5).unwrap(),
            d(2026, 2, 27)
        );
    }

    #[test]
    fn worked_example_labour_day_2026() {
        assert_eq!(
            cal().add_working_days(d(2026, 4, 30), 10).unwrap(),
            d(2026, 5, 18)
        );
    }

    #[test]
    fn worked_example_across_new_year() {
        assert_eq!(
            cal().add_working_days(d(2025, 12, 31), 3).unwrap(),
            d(2026, 1, 6)
        );
    }

    #[test]
    fn worked_examples_round_trip_through_working_days_between() {
        let cal = cal();
        for (from, n, to) in [
            (d(2025, 9, 26), 5, d(2025, 10, 10)),
            (d(2026, 2, 13), 5, d(2026, 2, 27)),
            (d(2026, 4, 30), 10, d(2026, 5, 18)),
            (d(2025, 12, 31), 3, d(2026, 1, 6)),
        ] {
            assert_eq!(
                cal.working_days_between(from, to).unwrap(),
                n,
                "{from} → {to}"
            );
        }
    }

    #[test]
    fn each_covered_year_has_248_working_days() {
        let cal = cal();
        assert_eq!(cal.working_days_in_year(2025).unwrap(), 248);
        assert_eq!(cal.working_days_in_year(2026).unwrap(), 248);
    }

    #[test]
    fn working_days_in_uncovered_year_is_an_error() {
        let err = cal().working_days_in_year(2027).unwrap_err();
        assert!(matches!(
            &err,
            CalendarError::UncoveredYear { year: 2027, covered } if covered == "2025–2026"
        ));
    }

    #[test]
    fn zero_working_days_returns_the_date_itself() {
        let cal = cal();
        assert_eq!(
            cal.add_working_days(d(2025, 10, 1), 0).unwrap(),
            d(2025, 10, 1)
        );
        assert_eq!(
            cal.add_working_days(d(2025, 3, 3), 0).unwrap(),
            d(2025, 3, 3)
        );
    }

    #[test]
    fn working_days_between_is_zero_for_non_increasing_ranges() {
        let cal = cal();
        assert_eq!(
            cal.working_days_between(d(2025, 3, 3), d(2025, 3, 3))
                .unwrap(),
            0
        );
        assert_eq!(
            cal.working_days_between(d(2025, 3, 10), d(2025, 3, 3))
                .unwrap(),
            0
        );
        // (Fri, next Fri] = Mon..Fri.
        assert_eq!(
            cal.working_days_between(d(2025, 3, 7), d(2025, 3, 14))
                .unwrap(),
            5
        );
    }

    #[test]
    fn day_kinds() {
        let cal = cal();
        assert_eq!(cal.day_kind(d(2025, 3, 3)).unwrap(), DayKind::Workday);
        assert_eq!(cal.day_kind(d(2025, 3, 8)).unwrap(), DayKind::Weekend);
        assert_eq!(
            cal.day_kind(d(2025, 10, 1)).unwrap(),
            DayKind::Holiday {
                name: "国庆节、中秋节".to_owned()
            }
        );
        // A holiday_off that falls on a Saturday is still a holiday.
        assert_eq!(
            cal.day_kind(d(2025, 2, 1)).unwrap(),
            DayKind::Holiday {
                name: "春节".to_owned()
            }
        );
        assert_eq!(
            cal.day_kind(d(2026, 2, 14)).unwrap(),
            DayKind::MakeupWorkday {
                name: "春节".to_owned()
            }
        );
        assert!(cal.is_working_day(d(2026, 2, 14)).unwrap());
        assert!(!cal.is_working_day(d(2026, 2, 16)).unwrap());
        assert!(!cal.is_working_day(d(2025, 3, 8)).unwrap());
        assert!(cal.is_working_day(d(2025, 3, 3)).unwrap());
    }

    #[test]
    fn holiday_names() {
        let cal = cal();
        assert_eq!(cal.holiday_name(d(2026, 1, 1)), Some("元旦"));
        assert_eq!(cal.holiday_name(d(2026, 9, 25)), Some("中秋节"));
        assert_eq!(
            cal.holiday_name(d(2026, 1, 4)),
            None,
            "make-up day is not a holiday"
        );
        assert_eq!(cal.holiday_name(d(2025, 3, 3)), None);
        assert_eq!(cal.holiday_name(d(2024, 10, 1)), None);
    }

    // Uncovered years.

    #[test]
    fn is_working_day_before_coverage_is_an_error() {
        let err = cal().is_working_day(d(2024, 12, 31)).unwrap_err();
        match &err {
            CalendarError::Uncovered { date, covered } => {
                assert_eq!(*date, d(2024, 12, 31));
                assert_eq!(covered, "2025–2026");
            }
            other => panic!("expected Uncovered, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("2024-12-31") && message.contains("2025–2026"),
            "{message}"
        );
    }

    #[test]
    fn walking_into_an_uncovered_year_is_an_error() {
        let err = cal().add_working_days(d(2026, 12, 30), 5).unwrap_err();
        match err {
            CalendarError::Uncovered { date, covered } => {
                assert_eq!(date, d(2027, 1, 1));
                assert_eq!(covered, "2025–2026");
            }
            other => panic!("expected Uncovered, got {other:?}"),
        }
    }

    #[test]
    fn uncovered_trigger_or_end_date_is_an_error() {
        let cal = cal();
        assert!(matches!(
            cal.add_working_days(d(2024, 12, 31), 1),
            Err(CalendarError::Uncovered { .. })
        ));
        assert!(matches!(
            cal.working_days_between(d(2026, 6, 1), d(2027, 1, 4)),
            Err(CalendarError::Uncovered { .. })
        ));
        assert!(matches!(
            cal.day_kind(d(2027, 1, 1)),
            Err(CalendarError::Uncovered { .. })
        ));
    }

    // Parse and consistency errors.

    #[test]
    fn bad_date_is_a_parse_error_with_line() {
        let err =
            parse("2025-01-01,holiday_off,元旦,u\n2025-02-30,holiday_off,春节,u\n").unwrap_err();
        match err {
            CalendarError::Parse {
                source_name,
                line,
                field,
                ..
            } => {
                assert_eq!(source_name, "test.csv");
                assert_eq!(line, 3);
                assert_eq!(field, "date");
            }
            other => panic!("expected Parse, got {other:?}"),
        }
    }

    #[test]
    fn unknown_kind_is_a_parse_error_with_line() {
        let err = parse("2025-01-01,holiday_off,元旦,u\n2025-01-02,day_off,元旦,u\n").unwrap_err();
        match err {
            CalendarError::Parse {
                line,
                field,
                reason,
                ..
            } => {
                assert_eq!(line, 3);
                assert_eq!(field, "kind");
                assert!(reason.contains("day_off"), "{reason}");
            }
            other => panic!("expected Parse, got {other:?}"),
        }
    }

    #[test]
    fn makeup_on_a_weekday_is_inconsistent() {
        // 2025-01-27 is a Monday.
        let err = parse("2025-01-26,makeup_workday,春节,u\n2025-01-27,makeup_workday,春节,u\n")
            .unwrap_err();
        match err {
            CalendarError::Inconsistent {
                source_name,
                line,
                reason,
            } => {
                assert_eq!(source_name, "test.csv");
                assert_eq!(line, 3);
                assert!(reason.contains("2025-01-27"), "{reason}");
            }
            other => panic!("expected Inconsistent, got {other:?}"),
        }
    }

    #[test]
    fn holiday_on_a_weekend_is_allowed() {
        // 2025-02-01 is a Saturday.
        let cal = parse("2025-02-01,holiday_off,春节,u\n").unwrap();
        assert_eq!(cal.holiday_name(d(2025, 2, 1)), Some("春节"));
        assert_eq!(cal.covered_years(), 2025..=2025);
    }

    #[test]
    fn duplicate_date_is_inconsistent() {
        let err = parse(
            "2025-01-01,holiday_off,元旦,u\n2025-04-04,holiday_off,清明节,u\n\
             2025-01-01,holiday_off,元旦,u\n",
        )
        .unwrap_err();
        match err {
            CalendarError::Inconsistent { line, reason, .. } => {
                assert_eq!(line, 4);
                assert!(reason.contains("line 2"), "{reason}");
            }
            other => panic!("expected Inconsistent, got {other:?}"),
        }
    }

    #[test]
    fn same_date_as_holiday_and_makeup_is_inconsistent() {
        let err =
            parse("2025-01-26,makeup_workday,春节,u\n2025-01-26,holiday_off,春节,u\n").unwrap_err();
        assert!(matches!(err, CalendarError::Inconsistent { line: 3, .. }));
    }

    #[test]
    fn empty_name_is_a_parse_error() {
        let err = parse("2025-01-01,holiday_off,,u\n").unwrap_err();
        assert!(matches!(
            err,
            CalendarError::Parse {
                line: 2,
                field: "name",
                ..
            }
        ));
    }

    #[test]
    fn wrong_header_is_a_parse_error() {
        let err = WorkingCalendar::from_csv_str("x", "day,kind,name,source_url\n").unwrap_err();
        assert!(matches!(
            err,
            CalendarError::Parse {
                line: 1,
                field: "header",
                ..
            }
        ));
    }

    #[test]
    fn short_record_is_a_parse_error_with_line() {
        let err = parse("2025-01-01,holiday_off,元旦,u\n2025-01-02,holiday_off\n").unwrap_err();
        assert!(
            matches!(
                err,
                CalendarError::Parse {
                    line: 3,
                    field: "record",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn no_entries_is_inconsistent() {
        assert!(matches!(parse(""), Err(CalendarError::Inconsistent { .. })));
        assert!(matches!(
            WorkingCalendar::from_csv_str("x", ""),
            Err(CalendarError::Parse {
                field: "header",
                ..
            })
        ));
    }

    #[test]
    fn gap_in_years_is_inconsistent() {
        let err =
            parse("2025-01-01,holiday_off,元旦,u\n2027-01-01,holiday_off,元旦,u\n").unwrap_err();
        match err {
            CalendarError::Inconsistent { line, reason, .. } => {
                assert_eq!(line, 3);
                assert!(reason.contains("2026"), "{reason}");
            }
            other => panic!("expected Inconsistent, got {other:?}"),
        }
    }

    #[test]
    fn error_messages_name_source_and_line() {
        let err = parse("2025-13-01,holiday_off,元旦,u\n").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("test.csv:2: invalid date"), "{message}");
    }

    fn first_day() -> NaiveDate {
        d(2025, 1, 1)
    }

    proptest! {
        #[test]
        fn add_then_count_round_trips(
            offset in 0..=d(2026, 10, 31).signed_duration_since(first_day()).num_days(),
            n in 1u32..=30,
        ) {
            let cal = cal();
            let start = first_day() + chrono::Duration::days(offset);
            let end = cal.add_working_days(start, n).unwrap();
            prop_assert!(end > start);
            prop_assert!(cal.is_working_day(end).unwrap());
            prop_assert!(cal.day_kind(end).unwrap().is_working_day());
            prop_assert_eq!(cal.working_days_between(start, end).unwrap(), n);
            // The deadline is the *first* date reaching n working days.
            let day_before = end.pred_opt().unwrap();
            prop_assert_eq!(cal.working_days_between(start, day_before).unwrap(), n - 1);
        }
    }
}
