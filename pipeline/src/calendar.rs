//! Working-day calendar for Chinese regulatory deadlines: a thin adapter over the regulation
//! crate's [`pharmwatch_regulation::Calendar`].
//!
//! Deadlines in drug supervision are counted in *working days* (工作日): statutory holidays are
//! days off even on a weekday, and some Saturdays or Sundays are make-up working days (调休上班).
//! The calendar is **data** (a CSV file `date,kind,name,source_url`); there is one parser and one
//! counting rule in the workspace, in `pharmwatch-regulation` (`regulation/data/` holds the file
//! embedded by [`WorkingCalendar::embedded`]). This module keeps the pipeline's historical API —
//! [`WorkingCalendar`], [`DayKind`] with holiday names, [`CalendarError`] with covered-year
//! labels — so the simulator and the stream service need not change, and hands the underlying
//! calendar to the measures engine through [`WorkingCalendar::regulation`].
//!
//! # Counting rule
//!
//! A deadline of `N` working days starts the day *after* the triggering date. A day counts
//! when it is a make-up working day, or a Monday–Friday that is not a statutory holiday.
//!
//! # Invariants
//!
//! Those of [`pharmwatch_regulation::calendar`]: the covered years are a non-empty contiguous
//! range, each date is listed once, make-up days are weekends. Nothing is guessed outside the
//! data: any query touching a date in a year the calendar does not cover — including a walk
//! that crosses into such a year — fails with [`CalendarError::Uncovered`].

use std::ops::RangeInclusive;
use std::path::Path;

use chrono::{Datelike, NaiveDate, Weekday};
use pharmwatch_regulation::Calendar;
use pharmwatch_regulation::calendar::DayKind as ListedKind;
use thiserror::Error;

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

    /// The calendar file is malformed or contradicts the calendar rules (bad date or kind, a
    /// duplicate date, a make-up working day on a weekday, a missing year, no entries).
    #[error("{source_name}:{line}: {reason}")]
    File {
        /// The file path, or `"embedded"` for the shipped calendar.
        source_name: String,
        /// The 1-based line of the file (the header is line 1); 0 for the file as a whole.
        line: u64,
        /// What is wrong, naming the column.
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

/// The covered years as text, e.g. `"2025–2026"` (or `"2025"` for a single year).
fn label(years: &RangeInclusive<i32>) -> String {
    if years.start() == years.end() {
        years.start().to_string()
    } else {
        format!("{}–{}", years.start(), years.end())
    }
}

impl From<pharmwatch_regulation::Error> for CalendarError {
    fn from(e: pharmwatch_regulation::Error) -> Self {
        use pharmwatch_regulation::Error as E;
        match e {
            E::Io { path, source, .. } => Self::Io {
                source_name: path.display().to_string(),
                source,
            },
            E::CalendarFile { file, line, reason } => Self::File {
                source_name: file,
                line,
                reason,
            },
            E::CalendarNotCovered { date, years } => Self::Uncovered {
                date,
                covered: label(&years),
            },
            E::Deadline { source, .. } => Self::from(*source),
            other => Self::File {
                source_name: "calendar".to_string(),
                line: 0,
                reason: other.to_string(),
            },
        }
    }
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

    /// How the day is described to a supervisor, e.g. `statutory holiday (春节)`.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Workday => "ordinary working day".to_string(),
            Self::Weekend => "weekend".to_string(),
            Self::Holiday { name } => format!("statutory holiday ({name})"),
            Self::MakeupWorkday { name } => format!("make-up working day ({name})"),
        }
    }
}

/// A working-day calendar for a contiguous range of years, loaded from data.
///
/// Build one with [`WorkingCalendar::embedded`], [`WorkingCalendar::from_csv_path`] or
/// [`WorkingCalendar::from_csv_str`], or from a regulation [`Calendar`] with `From`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingCalendar {
    inner: Calendar,
}

impl From<Calendar> for WorkingCalendar {
    fn from(inner: Calendar) -> Self {
        Self { inner }
    }
}

fn is_weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

impl WorkingCalendar {
    /// The calendar shipped with the workspace (`regulation/data/cn_holidays_2025_2026.csv`,
    /// embedded at compile time).
    ///
    /// # Errors
    ///
    /// Never in practice (a unit test parses the embedded file).
    pub fn embedded() -> Result<Self, CalendarError> {
        Ok(Calendar::embedded()?.into())
    }

    /// Loads a calendar file from disk.
    ///
    /// # Errors
    ///
    /// [`CalendarError::Io`] if the file cannot be read, [`CalendarError::File`] if it is
    /// invalid.
    pub fn from_csv_path(path: &Path) -> Result<Self, CalendarError> {
        Ok(Calendar::from_path(path)?.into())
    }

    /// Parses calendar CSV text; `source_name` names the file in errors.
    ///
    /// # Errors
    ///
    /// [`CalendarError::File`] naming the line and what is wrong.
    pub fn from_csv_str(source_name: &str, text: &str) -> Result<Self, CalendarError> {
        Ok(Calendar::from_csv_str(text, source_name)?.into())
    }

    /// The regulation crate's calendar, for the measures engine.
    #[must_use]
    pub fn regulation(&self) -> &Calendar {
        &self.inner
    }

    /// Whether `date` falls in a covered year.
    #[must_use]
    pub fn covers(&self, date: NaiveDate) -> bool {
        self.inner.covers(date)
    }

    /// The covered years.
    #[must_use]
    pub fn covered_years(&self) -> RangeInclusive<i32> {
        self.inner.years()
    }

    /// Whether `year` is covered.
    #[must_use]
    pub fn covers_year(&self, year: i32) -> bool {
        self.inner.years().contains(&year)
    }

    /// Whether `date` counts as a working day (see [`DayKind::is_working_day`]).
    ///
    /// # Errors
    ///
    /// [`CalendarError::Uncovered`] if `date` is not in a covered year.
    pub fn is_working_day(&self, date: NaiveDate) -> Result<bool, CalendarError> {
        Ok(self.inner.is_working_day(date)?)
    }

    /// Classifies `date`. A listed holiday is [`DayKind::Holiday`] even when it falls on a
    /// weekend.
    ///
    /// # Errors
    ///
    /// [`CalendarError::Uncovered`] if `date` is not in a covered year.
    pub fn day_kind(&self, date: NaiveDate) -> Result<DayKind, CalendarError> {
        self.inner.is_working_day(date)?;
        Ok(match self.inner.special_day(date) {
            Some(d) if d.kind == ListedKind::MakeupWorkday => DayKind::MakeupWorkday {
                name: d.name.clone(),
            },
            Some(d) => DayKind::Holiday {
                name: d.name.clone(),
            },
            None if is_weekend(date) => DayKind::Weekend,
            None => DayKind::Workday,
        })
    }

    /// The deadline date `n` working days after `date`: counting starts the day after
    /// `date`, and the result is the `n`th working day found; `date` itself for `n == 0`.
    ///
    /// # Errors
    ///
    /// [`CalendarError::Uncovered`] if `date` is not covered, or naming the first
    /// uncovered date if the walk runs past the last covered year.
    pub fn add_working_days(&self, date: NaiveDate, n: u32) -> Result<NaiveDate, CalendarError> {
        Ok(self.inner.add_working_days(date, n)?)
    }

    /// The number of working days in the half-open interval `(from, to]`; zero if `to <= from`.
    ///
    /// # Errors
    ///
    /// [`CalendarError::Uncovered`] if `from` or `to` is not in a covered year.
    pub fn working_days_between(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<u32, CalendarError> {
        Ok(self.inner.working_days_between(from, to)?)
    }

    /// The number of working days in calendar year `year`.
    ///
    /// # Errors
    ///
    /// [`CalendarError::UncoveredYear`] if `year` is not covered.
    pub fn working_days_in_year(&self, year: i32) -> Result<u32, CalendarError> {
        let years = self.inner.years();
        if !years.contains(&year) {
            return Err(CalendarError::UncoveredYear {
                year,
                covered: label(&years),
            });
        }
        Ok(self.inner.working_days_in_year(year)?)
    }

    /// The name of the statutory holiday (`holiday_off`) on `date`, if any. Make-up working
    /// days and uncovered dates return `None`.
    #[must_use]
    pub fn holiday_name(&self, date: NaiveDate) -> Option<&str> {
        self.inner
            .special_day(date)
            .filter(|d| d.kind == ListedKind::HolidayOff)
            .map(|d| d.name.as_str())
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
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../regulation/data/cn_holidays_2025_2026.csv");
        let from_disk = WorkingCalendar::from_csv_path(&path).unwrap();
        let embedded = cal();
        assert_eq!(from_disk.covered_years(), embedded.covered_years());
        for day in d(2025, 1, 1)
            .iter_days()
            .take_while(|day| day.year() <= 2026)
        {
            assert_eq!(
                from_disk.day_kind(day).unwrap(),
                embedded.day_kind(day).unwrap()
            );
        }
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
            CalendarError::File {
                source_name,
                line,
                reason,
            } => {
                assert_eq!(source_name, "test.csv");
                assert_eq!(line, 3);
                assert!(reason.contains("2025-02-30"), "{reason}");
            }
            other => panic!("expected File, got {other:?}"),
        }
    }

    #[test]
    fn unknown_kind_is_a_parse_error_with_line() {
        let err = parse("2025-01-01,holiday_off,元旦,u\n2025-01-02,day_off,元旦,u\n").unwrap_err();
        match err {
            CalendarError::File { line, reason, .. } => {
                assert_eq!(line, 3);
                assert!(reason.contains("kind"), "{reason}");
                assert!(reason.contains("day_off"), "{reason}");
            }
            other => panic!("expected File, got {other:?}"),
        }
    }

    #[test]
    fn makeup_on_a_weekday_is_inconsistent() {
        // 2025-01-27 is a Monday.
        let err = parse("2025-01-26,makeup_workday,春节,u\n2025-01-27,makeup_workday,春节,u\n")
            .unwrap_err();
        match err {
            CalendarError::File {
                source_name,
                line,
                reason,
            } => {
                assert_eq!(source_name, "test.csv");
                assert_eq!(line, 3);
                assert!(reason.contains("2025-01-27"), "{reason}");
            }
            other => panic!("expected File, got {other:?}"),
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
            CalendarError::File { line, reason, .. } => {
                assert_eq!(line, 4);
                assert!(reason.contains("listed twice"), "{reason}");
            }
            other => panic!("expected File, got {other:?}"),
        }
    }

    #[test]
    fn same_date_as_holiday_and_makeup_is_inconsistent() {
        let err =
            parse("2025-01-26,makeup_workday,春节,u\n2025-01-26,holiday_off,春节,u\n").unwrap_err();
        assert!(matches!(err, CalendarError::File { line: 3, .. }));
    }

    #[test]
    fn empty_name_is_a_parse_error() {
        let err = parse("2025-01-01,holiday_off,,u\n").unwrap_err();
        assert!(
            matches!(&err, CalendarError::File { line: 2, reason, .. } if reason.contains("name")),
            "{err:?}"
        );
    }

    #[test]
    fn wrong_header_is_a_parse_error() {
        let err = WorkingCalendar::from_csv_str("x", "day,kind,name,source_url\n").unwrap_err();
        assert!(
            matches!(&err, CalendarError::File { line: 1, reason, .. } if reason.contains("header")),
            "{err:?}"
        );
    }

    #[test]
    fn short_record_is_a_parse_error_with_line() {
        let err = parse("2025-01-01,holiday_off,元旦,u\n2025-01-02,holiday_off\n").unwrap_err();
        assert!(
            matches!(&err, CalendarError::File { line: 3, reason, .. } if reason.contains("columns")),
            "{err:?}"
        );
    }

    #[test]
    fn no_entries_is_inconsistent() {
        assert!(matches!(
            parse(""),
            Err(CalendarError::File { reason, .. }) if reason.contains("no dates")
        ));
        assert!(matches!(
            WorkingCalendar::from_csv_str("x", ""),
            Err(CalendarError::File { reason, .. }) if reason.contains("header")
        ));
    }

    #[test]
    fn gap_in_years_is_inconsistent() {
        let err =
            parse("2025-01-01,holiday_off,元旦,u\n2027-01-01,holiday_off,元旦,u\n").unwrap_err();
        match err {
            CalendarError::File { reason, .. } => {
                assert!(reason.contains("2026"), "{reason}");
            }
            other => panic!("expected File, got {other:?}"),
        }
    }

    #[test]
    fn error_messages_name_source_and_line() {
        let err = parse("2025-13-01,holiday_off,元旦,u\n").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("test.csv:2: date"), "{message}");
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
