//! The crate's error type.
//!
//! One enum for the whole crate. Every variant carries the context an operator needs to fix the
//! input without reading the code: the file and line of a bad calendar row, the rules file and
//! the key, the finding field. Nothing in this crate is retryable: all errors are about data
//! (a bad file, a date the calendar does not cover, a malformed finding), so retrying the same
//! call gives the same answer.

use std::ops::RangeInclusive;
use std::path::PathBuf;

use chrono::NaiveDate;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the calendar, the rules and the decision engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A calendar or rules file could not be read.
    #[error("cannot read {what} file {}: {source}", path.display())]
    Io {
        /// What kind of file it is (`calendar`, `rules`).
        what: &'static str,
        /// The path given.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A line of a calendar file is invalid.
    #[error("calendar file {file}, line {line}: {reason}")]
    CalendarFile {
        /// The file path, or `embedded` for the calendar shipped with the crate.
        file: String,
        /// The 1-based line (the header is line 1); 0 when the problem is the whole file.
        line: u64,
        /// What is wrong.
        reason: String,
    },

    /// A date lies in a year the calendar does not cover. The engine never guesses which days
    /// of such a year are working days: the State Council publishes each year's schedule, and
    /// until it is in the calendar file, deadlines in that year cannot be computed.
    #[error(
        "date {date} is outside the working-day calendar, which covers {}–{}",
        years.start(),
        years.end()
    )]
    CalendarNotCovered {
        /// The date that is not covered (for a count that runs past the end, the first date
        /// beyond the covered years).
        date: NaiveDate,
        /// The years the calendar covers.
        years: RangeInclusive<i32>,
    },

    /// A calendar year cannot be added: it is already covered, or it would leave a gap.
    #[error("calendar year {year}: {reason}")]
    CalendarYear {
        /// The year of the file.
        year: i32,
        /// Why, and what to do.
        reason: String,
    },

    /// The rules file is not valid TOML, has an unknown key, or breaks a rule invariant.
    #[error("rules file {file}: {reason}")]
    Rules {
        /// The file path, or `embedded` for the rules shipped with the crate.
        file: String,
        /// What is wrong, naming the key.
        reason: String,
    },

    /// A field of a finding or a case state has a value the engine refuses.
    #[error("field `{field}`: {reason}")]
    InvalidField {
        /// The field, as a JSON path (`flags[2]`, `defects.major`).
        field: String,
        /// Why it was refused.
        reason: String,
    },

    /// A deadline could not be counted: its start lies before the first year the calendar
    /// covers. (A count that runs past the last covered year is not an error: the deadline is
    /// pending the calendar.)
    #[error("{deadline}: {source}")]
    Deadline {
        /// The deadline being computed: the measure and its count, e.g. `caution: 30 working
        /// days after decision_date 2024-12-20`.
        deadline: String,
        /// The date field the count starts from.
        field: String,
        /// The calendar error.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// The field of a finding this error is about, when it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::InvalidField { field, .. } | Error::Deadline { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The reason without the field prefix, for reports that show the field separately.
    pub fn reason(&self) -> String {
        match self {
            Error::InvalidField { reason, .. } => reason.clone(),
            Error::Deadline {
                deadline, source, ..
            } => format!("{deadline}: {source}"),
            other => other.to_string(),
        }
    }
}
