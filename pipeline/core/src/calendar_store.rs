//! Working-day calendar years kept in the store (tables of migration 040), so that a year an
//! operator loads once (`pharmwatch calendar import`) is seen by every process of the
//! deployment: the nightly job, `measures decide --out`, the case commands and `serve` all read
//! their calendar as the embedded years plus the stored ones ([`load`]).
//!
//! Invariants:
//! - a stored year was validated as a year file ([`CalendarYear`]) before it was written, and is
//!   validated again when read: a hand-edited row is an error, never a silent calendar change;
//! - the stored years and the embedded ones form one contiguous range (a stored year replaces
//!   an embedded one of the same number, which is how a correction of a shipped year is loaded);
//! - the import of a year, and the deadlines it sets or changes in the case ledger, commit in
//!   one transaction ([`pharmwatch_casework::ledger::Ledger::import_calendar_year`]).

use std::collections::BTreeMap;

use crate::db::Conn as Connection;
use crate::params;
use chrono::NaiveDate;
use pharmwatch_regulation::calendar::CalendarYear;
use serde::Serialize;

use crate::error::{CoreError, Result};
use crate::store::sql_err;
use pharmwatch_regulation::Calendar;

/// A year loaded into the store, as `calendar status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredYear {
    /// The year.
    pub year: i32,
    /// The State Council notice it comes from.
    pub notice: String,
    /// Where the notice is published.
    pub source_url: String,
    /// The file it was imported from.
    pub source_file: String,
    /// Its working days (a check figure: 2025 and 2026 have 248).
    pub working_days: u32,
    /// When it was imported (UTC, RFC 3339).
    pub imported_at: String,
    /// Who imported it.
    pub imported_by: String,
}

/// The years loaded into the store with their days, in year order.
pub fn stored_years(
    conn: &Connection,
    path: &std::path::Path,
) -> Result<Vec<(StoredYear, CalendarYear)>> {
    let mut st = conn
        .prepare(
            "SELECT year, notice, source_url, source_file, working_days, imported_at, imported_by
             FROM calendar_years ORDER BY year",
        )
        .map_err(|e| sql_err(path, "calendar years", e))?;
    let years = st
        .query_map([], |r| {
            Ok(StoredYear {
                year: r.get(0)?,
                notice: r.get(1)?,
                source_url: r.get(2)?,
                source_file: r.get(3)?,
                working_days: r.get(4)?,
                imported_at: r.get(5)?,
                imported_by: r.get(6)?,
            })
        })
        .map_err(|e| sql_err(path, "calendar years", e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| sql_err(path, "calendar years", e))?;
    let mut days_st = conn
        .prepare(
            "SELECT date, kind, name, source_url FROM calendar_days WHERE year = ?1 ORDER BY date",
        )
        .map_err(|e| sql_err(path, "calendar days", e))?;
    let mut out = Vec::with_capacity(years.len());
    for y in years {
        let rows = days_st
            .query_map([y.year], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(|e| sql_err(path, "calendar days", e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| sql_err(path, "calendar days", e))?;
        // Read back through the year-file checks (a CSV of the year), so a damaged row is
        // refused with its date and reason.
        let mut csv = String::from("date,kind,name,source_url\n");
        for (date, kind, name, url) in &rows {
            csv.push_str(&format!(
                "{date},{kind},\"{}\",\"{}\"\n",
                name.replace('"', "\"\""),
                url.replace('"', "\"\"")
            ));
        }
        let name = format!("{} (calendar_days of {})", path.display(), y.year);
        let mut parsed = CalendarYear::from_csv_str(&csv, &name)
            .map_err(|e| CoreError::regulation(format!("stored calendar year {}", y.year), e))?;
        if parsed.year != y.year {
            return Err(CoreError::StoreContent {
                path: path.to_path_buf(),
                reason: format!("calendar_days of {} list days of {}", y.year, parsed.year),
            });
        }
        parsed.notice = y.notice.clone();
        parsed.source_url = y.source_url.clone();
        out.push((y, parsed));
    }
    Ok(out)
}

/// `base` (the embedded calendar, or the one given with `--calendar`) with the store's years:
/// earlier years before it, later ones after it, and a stored year of a covered number
/// replacing that year.
pub fn with_years(base: &Calendar, years: &[(StoredYear, CalendarYear)]) -> Result<Calendar> {
    let mut cal = base.clone();
    let covered = cal.years();
    let (mut before, rest): (Vec<_>, Vec<_>) = years
        .iter()
        .map(|(_, y)| y)
        .partition(|y| y.year < *covered.start());
    before.sort_by_key(|y| std::cmp::Reverse(y.year));
    for y in before.into_iter().chain(rest) {
        let replace = cal.years().contains(&y.year);
        cal = cal
            .with_year(y, replace)
            .map_err(|e| CoreError::regulation("the calendar years of the store", e))?;
    }
    Ok(cal)
}

/// `base` with the years of the store at `conn` (see [`with_years`]).
pub fn load(conn: &Connection, path: &std::path::Path, base: &Calendar) -> Result<Calendar> {
    with_years(base, &stored_years(conn, path)?)
}

/// Writes `year` into the store (replacing its rows when present), inside the caller's
/// transaction.
pub fn write_year(
    conn: &Connection,
    path: &std::path::Path,
    year: &CalendarYear,
    source_file: &str,
    actor: &str,
) -> Result<()> {
    conn.execute("DELETE FROM calendar_days WHERE year = ?1", [year.year])
        .map_err(|e| sql_err(path, "replace calendar days", e))?;
    conn.execute(
        "INSERT INTO calendar_years (year, notice, source_url, source_file, working_days,
                                     imported_at, imported_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (year) DO UPDATE SET notice = excluded.notice,
             source_url = excluded.source_url, source_file = excluded.source_file,
             working_days = excluded.working_days, imported_at = excluded.imported_at,
             imported_by = excluded.imported_by",
        params![
            year.year,
            year.notice,
            year.source_url,
            source_file,
            year.working_days(),
            chrono::Utc::now().to_rfc3339(),
            actor
        ],
    )
    .map_err(|e| sql_err(path, "calendar year", e))?;
    let mut ins = conn
        .prepare(
            "INSERT INTO calendar_days (date, year, kind, name, source_url)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(|e| sql_err(path, "calendar days", e))?;
    for (date, day) in &year.days {
        ins.execute(params![
            date.to_string(),
            year.year,
            day.kind.as_str(),
            day.name,
            day.source_url
        ])
        .map_err(|e| sql_err(path, "calendar day", e))?;
    }
    Ok(())
}

/// One covered year as `calendar status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct YearCoverage {
    /// The year.
    pub year: i32,
    /// Working days of the year.
    pub working_days: u32,
    /// `built in` or the import (notice, file, who, when).
    pub source: String,
}

/// The calendar's coverage: each year and where it comes from, and the last covered day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// The covered years, in order.
    pub years: Vec<YearCoverage>,
    /// The last day the calendar covers.
    pub covered_until: NaiveDate,
}

/// The coverage of `cal`, naming the stored years' imports.
pub fn coverage(cal: &Calendar, stored: &[(StoredYear, CalendarYear)]) -> Result<Coverage> {
    let by_year: BTreeMap<i32, &StoredYear> = stored.iter().map(|(s, _)| (s.year, s)).collect();
    let mut years = Vec::new();
    for year in cal.years() {
        let source = match by_year.get(&year) {
            Some(s) => format!(
                "{} ({}), imported from {} by {} at {}",
                s.notice, s.source_url, s.source_file, s.imported_by, s.imported_at
            ),
            None => "built in".to_string(),
        };
        years.push(YearCoverage {
            year,
            working_days: cal.working_days_in_year(year)?,
            source,
        });
    }
    Ok(Coverage {
        years,
        covered_until: cal.last_covered_day(),
    })
}
