//! The deadlines of the measures regulation (赣药监 第二十条 to 第二十二条), computed in working
//! days with a [`Calendar`] and the numbers of the [`Rules`].
//!
//! Every function counts with [`Calendar::add_working_days`] (the day after the triggering date
//! is day 1), so every result is a working day, and a count that leaves the covered years is
//! an error rather than a guess.
//!
//! The decision engine keeps each deadline as a [`WorkingDayCount`] (N working days after a
//! date) beside the date it gives. A count that runs past the last covered year resolves to
//! [`Resolution::Pending`]: the measure is decided and its due date waits for the next year's
//! calendar; once that year is loaded, [`resolve_earliest`] gives the date. Only a count that
//! starts before the first covered year is an error (the calendar of the past is simply
//! missing; it is never pending).

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::error::{Error, Result};
use crate::rules::Rules;

/// A deadline in working days: the `working_days`-th working day after `from`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkingDayCount {
    /// The day counting starts after.
    pub from: NaiveDate,
    /// What `from` is: the finding's field (`inspection_date`, `decision_date`), or
    /// `sweep_date` for a deadline set by the nightly ledger sweep.
    pub from_field: String,
    /// The number of working days.
    pub working_days: u32,
}

impl WorkingDayCount {
    /// `working_days` after `from`, which is the date of `from_field`.
    pub fn new(from: NaiveDate, from_field: &str, working_days: u32) -> Self {
        Self {
            from,
            from_field: from_field.to_string(),
            working_days,
        }
    }

    /// `30 working days after inspection_date 2026-11-20`.
    pub fn describe(&self) -> String {
        format!(
            "{} working days after {} {}",
            self.working_days, self.from_field, self.from
        )
    }

    /// The due date, or [`Resolution::Pending`] when the count runs past the last covered
    /// year. An error only when `from` lies before the first covered year.
    pub fn resolve(&self, calendar: &Calendar) -> Result<Resolution> {
        if self.from < calendar.first_covered_day() {
            return Err(Error::Deadline {
                deadline: self.describe(),
                field: self.from_field.clone(),
                source: Box::new(Error::CalendarNotCovered {
                    date: self.from,
                    years: calendar.years(),
                }),
            });
        }
        if self.from > calendar.last_covered_day() {
            return Ok(Resolution::Pending(DuePending::after(calendar)));
        }
        match calendar.add_working_days(self.from, self.working_days) {
            Ok(date) => Ok(Resolution::On(date)),
            Err(Error::CalendarNotCovered { date, .. }) if date > calendar.last_covered_day() => {
                Ok(Resolution::Pending(DuePending::after(calendar)))
            }
            Err(source) => Err(Error::Deadline {
                deadline: self.describe(),
                field: self.from_field.clone(),
                source: Box::new(source),
            }),
        }
    }

    /// Whether this count ends no later than `other` whatever the calendar says: it starts no
    /// later and counts no more days.
    fn dominates(&self, other: &Self) -> bool {
        self.from <= other.from && self.working_days <= other.working_days
    }
}

/// Why a due date is not known yet: the calendar does not reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuePending {
    /// The year that must be loaded next (`pharmwatch calendar import`).
    pub needs_year: i32,
    /// The last day the calendar covered when the deadline was counted.
    pub covered_until: NaiveDate,
}

impl DuePending {
    fn after(calendar: &Calendar) -> Self {
        let covered_until = calendar.last_covered_day();
        Self {
            needs_year: covered_until.year() + 1,
            covered_until,
        }
    }

    /// `due date pending the 2027 working-day calendar (the calendar covers up to 2026-12-31)`.
    pub fn describe(&self) -> String {
        format!(
            "due date pending the {} working-day calendar (the calendar covers up to {})",
            self.needs_year, self.covered_until
        )
    }
}

/// A resolved deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The due date.
    On(NaiveDate),
    /// Not computable until the calendar covers the year it falls in.
    Pending(DuePending),
}

/// The earliest of several counts of one deadline: the earliest date when any count resolves
/// (a pending count ends after the last covered day, so after every resolved one), or pending
/// with the counts that may still turn out earliest. `None` for no counts.
pub fn resolve_earliest(
    counts: &[WorkingDayCount],
    calendar: &Calendar,
) -> Result<Option<(Resolution, Vec<WorkingDayCount>)>> {
    let mut best: Option<(NaiveDate, Vec<WorkingDayCount>)> = None;
    let mut pending: Option<(DuePending, Vec<WorkingDayCount>)> = None;
    for count in counts {
        match count.resolve(calendar)? {
            Resolution::On(date) => match &mut best {
                Some((d, winners)) if *d == date => {
                    if !winners.contains(count) {
                        winners.push(count.clone());
                    }
                }
                Some((d, _)) if *d < date => {}
                _ => best = Some((date, vec![count.clone()])),
            },
            Resolution::Pending(p) => {
                let (_, open) = pending.get_or_insert_with(|| (p, Vec::new()));
                if !open.iter().any(|o| o.dominates(count)) {
                    open.retain(|o| !count.dominates(o));
                    open.push(count.clone());
                }
            }
        }
    }
    Ok(match (best, pending) {
        (Some((date, winners)), _) => Some((Resolution::On(date), winners)),
        (None, Some((p, open))) => Some((Resolution::Pending(p), open)),
        (None, None) => None,
    })
}

/// The count of the rectification report after an inspection (第二十一条), with the re-issue
/// extension when the form was re-issued (one count: N + M working days after the inspection
/// is the M-th working day after the N-th).
pub fn rectification_report_count(
    inspection_date: NaiveDate,
    reissued: bool,
    rules: &Rules,
) -> WorkingDayCount {
    let d = &rules.deadlines;
    let extension = if reissued {
        d.reissue_extension_working_days
    } else {
        0
    };
    WorkingDayCount::new(
        inspection_date,
        "inspection_date",
        d.rectification_report_working_days + extension,
    )
}

/// The count of the report after a caution letter or an interview (第二十二条), from the day
/// named by `from_field`.
pub fn notice_report_count(from: NaiveDate, from_field: &str, rules: &Rules) -> WorkingDayCount {
    WorkingDayCount::new(
        from,
        from_field,
        rules.deadlines.caution_interview_report_working_days,
    )
}

/// The count of the new deadline after a rectification that fell short (蒙药监 (五)).
pub fn follow_up_rectification_count(
    from: NaiveDate,
    from_field: &str,
    rules: &Rules,
) -> WorkingDayCount {
    WorkingDayCount::new(
        from,
        from_field,
        rules.deadlines.follow_up_rectification_working_days,
    )
}

/// The counts of the regulator's own 第二十条 deadlines after an inspection: the agency's
/// proposal, and the bureau's decision counted from the latest day the proposal may arrive.
pub fn assessment_counts(
    inspection_date: NaiveDate,
    rules: &Rules,
) -> (WorkingDayCount, WorkingDayCount) {
    let d = &rules.deadlines;
    (
        WorkingDayCount::new(
            inspection_date,
            "inspection_date",
            d.agency_assessment_working_days,
        ),
        WorkingDayCount::new(
            inspection_date,
            "inspection_date",
            d.agency_assessment_working_days + d.bureau_decision_working_days,
        ),
    )
}

/// The day the rectification report is due after an inspection (第二十一条): the configured
/// working days after `inspection_date`, extended once by the re-issue extension when the
/// inspection form was re-issued after the defects were adjusted.
pub fn rectification_report_due(
    inspection_date: NaiveDate,
    reissued: bool,
    rules: &Rules,
    calendar: &Calendar,
) -> Result<NaiveDate> {
    let due = calendar.add_working_days(
        inspection_date,
        rules.deadlines.rectification_report_working_days,
    )?;
    if reissued {
        calendar.add_working_days(due, rules.deadlines.reissue_extension_working_days)
    } else {
        Ok(due)
    }
}

/// The day the report is due after a caution letter was received or an interview held
/// (第二十二条).
pub fn notice_report_due(
    notice_date: NaiveDate,
    rules: &Rules,
    calendar: &Calendar,
) -> Result<NaiveDate> {
    calendar.add_working_days(
        notice_date,
        rules.deadlines.caution_interview_report_working_days,
    )
}

/// The new deadline given when a rectification fell short (蒙药监 (五)).
pub fn follow_up_rectification_due(
    from: NaiveDate,
    rules: &Rules,
    calendar: &Calendar,
) -> Result<NaiveDate> {
    calendar.add_working_days(from, rules.deadlines.follow_up_rectification_working_days)
}

/// The last day on which a request to reschedule an interview on `interview_date` is on time
/// (第二十二条: at least N working days before it): the N-th working day before the interview.
///
/// A request filed on a later day is late, and so is one filed on a non-working day after that
/// working day: it is received on the next working day, which is fewer than N working days
/// before the interview.
pub fn reschedule_request_deadline(
    interview_date: NaiveDate,
    rules: &Rules,
    calendar: &Calendar,
) -> Result<NaiveDate> {
    calendar.sub_working_days(
        interview_date,
        rules.deadlines.interview_reschedule_notice_working_days,
    )
}

/// Whether a request to reschedule, filed on `request_date`, is on time for an interview on
/// `interview_date` (see [`reschedule_request_deadline`]).
pub fn reschedule_request_on_time(
    request_date: NaiveDate,
    interview_date: NaiveDate,
    rules: &Rules,
    calendar: &Calendar,
) -> Result<bool> {
    calendar.is_working_day(request_date)?;
    Ok(request_date <= reschedule_request_deadline(interview_date, rules, calendar)?)
}

/// The regulator's own deadlines after an inspection that found violations or serious
/// deviations (第二十条).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssessmentDeadlines {
    /// The inspection agency's overall assessment and proposal.
    pub agency_assessment: NaiveDate,
    /// The provincial bureau's risk assessment and decision, counted from the proposal
    /// deadline (the latest the proposal can arrive).
    pub bureau_decision: NaiveDate,
}

/// The 第二十条 deadlines counted from the inspection date.
pub fn assessment_deadlines(
    inspection_date: NaiveDate,
    rules: &Rules,
    calendar: &Calendar,
) -> Result<AssessmentDeadlines> {
    let agency_assessment = calendar.add_working_days(
        inspection_date,
        rules.deadlines.agency_assessment_working_days,
    )?;
    let bureau_decision = calendar.add_working_days(
        agency_assessment,
        rules.deadlines.bureau_decision_working_days,
    )?;
    Ok(AssessmentDeadlines {
        agency_assessment,
        bureau_decision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("test date")
    }

    #[test]
    fn rectification_report_deadlines_across_holidays() {
        let (rules, cal) = (Rules::default(), Calendar::default());
        let n = rules.deadlines.rectification_report_working_days;
        let ext = rules.deadlines.reissue_extension_working_days;
        let cases = [
            // Just before the Spring Festival: the make-up Saturdays 02-14 and 02-28 count.
            ("2026-02-06", false),
            ("2026-02-06", true),
            // Across National Day 2026 (make-up 09-20 and 10-10).
            ("2026-09-15", false),
            ("2026-09-15", true),
            // Across New Year 2026 (make-up Sunday 01-04).
            ("2025-12-15", false),
        ];
        for (from, reissued) in cases {
            let due = rectification_report_due(d(from), reissued, &rules, &cal).expect("covered");
            let expected_days = if reissued { n + ext } else { n };
            assert_eq!(
                cal.working_days_between(d(from), due).expect("covered"),
                expected_days,
                "{from} reissued={reissued}"
            );
            assert!(
                cal.is_working_day(due).expect("covered"),
                "{from}: due {due}"
            );
        }
        // Hand-counted: 2026-02-06 (Fri) + 30 working days. Feb: 09–13 (5), 14 make-up (6),
        // 24–27 (10), 28 make-up (11); Mar 02–06 (16), 09–13 (21), 16–20 (26), 23–26 (30).
        assert_eq!(
            rectification_report_due(d("2026-02-06"), false, &rules, &cal).expect("covered"),
            d("2026-03-26")
        );
        // Re-issued: 10 more working days, 03-27, 03-30 … 04-03 (6), 04-07 … 04-10 (10): the
        // Qingming holiday 04-06 does not count.
        assert_eq!(
            rectification_report_due(d("2026-02-06"), true, &rules, &cal).expect("covered"),
            d("2026-04-10")
        );
    }

    #[test]
    fn deadlines_past_the_calendar_are_errors() {
        let (rules, cal) = (Rules::default(), Calendar::default());
        let err = rectification_report_due(d("2026-12-01"), false, &rules, &cal)
            .expect_err("runs into 2027");
        assert!(matches!(err, Error::CalendarNotCovered { .. }), "{err}");
        assert!(notice_report_due(d("2027-01-05"), &rules, &cal).is_err());
    }

    #[test]
    fn interview_rescheduling_needs_two_working_days_notice() {
        let (rules, cal) = (Rules::default(), Calendar::default());
        let cases = [
            // (interview, last day to request)
            ("2026-03-04", "2026-03-02"), // Wed → Mon
            ("2026-03-09", "2026-03-05"), // Mon → Thu before (the weekend does not count)
            ("2026-03-02", "2026-02-27"), // the make-up Saturday 02-28 counts
            ("2026-02-24", "2026-02-13"), // after the Spring Festival: make-up Sat 02-14 is one
            ("2026-10-08", "2026-09-29"), // after National Day
            ("2026-10-12", "2026-10-09"), // make-up Saturday 10-10 counts
        ];
        for (interview, last) in cases {
            assert_eq!(
                reschedule_request_deadline(d(interview), &rules, &cal).expect("covered"),
                d(last),
                "interview {interview}"
            );
        }
        let on_time = |req: &str, interview: &str| {
            reschedule_request_on_time(d(req), d(interview), &rules, &cal).expect("covered")
        };
        assert!(on_time("2026-03-02", "2026-03-04"));
        assert!(on_time("2026-02-27", "2026-03-04"));
        assert!(!on_time("2026-03-03", "2026-03-04"));
        assert!(
            !on_time("2026-03-01", "2026-03-03"),
            "Sunday request for a Tuesday interview"
        );
        assert!(on_time("2026-02-27", "2026-03-03"));
        assert!(
            reschedule_request_on_time(d("2027-01-04"), d("2027-01-06"), &rules, &cal).is_err()
        );
    }

    /// A made-up 2027 with a holiday on the first working days (test data, not the State
    /// Council's schedule).
    fn calendar_with_2027() -> Calendar {
        let year = crate::calendar::CalendarYear::from_toml_str(
            "year = 2027\nnotice = \"test\"\nsource_url = \"https://example.invalid\"\n\
             [[holiday]]\nname = \"元旦\"\nfrom = 2027-01-01\nto = 2027-01-05\n\
             makeup_workdays = [2027-01-09]\n",
            "test.toml",
        )
        .expect("valid year");
        Calendar::default()
            .with_year(&year, false)
            .expect("2027 follows 2026")
    }

    #[test]
    fn counts_past_the_calendar_are_pending_until_the_year_is_loaded() {
        let (rules, cal) = (Rules::default(), Calendar::default());
        let count = notice_report_count(d("2026-12-03"), "decision_date", &rules);
        let pending = match count.resolve(&cal).expect("not an error") {
            Resolution::Pending(p) => p,
            other => panic!("expected pending, got {other:?}"),
        };
        assert_eq!(pending.needs_year, 2027);
        assert_eq!(pending.covered_until, d("2026-12-31"));
        assert!(
            pending.describe().contains("2027"),
            "{}",
            pending.describe()
        );
        // A start after the covered years is pending too; a start before them is an error
        // naming the count.
        let later = notice_report_count(d("2027-02-01"), "decision_date", &rules);
        assert!(matches!(later.resolve(&cal), Ok(Resolution::Pending(_))));
        let before = notice_report_count(d("2024-12-02"), "decision_date", &rules);
        let err = before.resolve(&cal).expect_err("before the calendar");
        assert!(
            err.to_string()
                .starts_with("30 working days after decision_date 2024-12-02: "),
            "{err}"
        );
        assert_eq!(err.field(), Some("decision_date"));
        // With 2027 loaded: 2026-12-03 + 30. December: 04 … 31 gives 20 working days; 2027:
        // 01-01 … 01-05 off, 01-06 … 01-08 (23), make-up Saturday 01-09 (24), 01-11 … 01-15
        // (29), 01-18 (30).
        let cal = calendar_with_2027();
        assert_eq!(
            count.resolve(&cal).expect("covered"),
            Resolution::On(d("2027-01-18"))
        );
    }

    #[test]
    fn the_earliest_count_wins_and_dominated_pending_counts_drop_out() {
        let rules = Rules::default();
        let cal = Calendar::default();
        let a = WorkingDayCount::new(d("2026-12-03"), "inspection_date", 30);
        let b = WorkingDayCount::new(d("2026-12-03"), "inspection_date", 40);
        let c = WorkingDayCount::new(d("2026-12-10"), "decision_date", 16);
        let (res, counts) = resolve_earliest(&[b.clone(), a.clone(), c.clone()], &cal)
            .expect("no error")
            .expect("some counts");
        assert!(matches!(res, Resolution::Pending(_)));
        // b is dominated by a; a and c cannot be ordered without the 2027 calendar.
        assert_eq!(counts, [a.clone(), c.clone()]);
        let cal = calendar_with_2027();
        let (res, counts) = resolve_earliest(&[b, a.clone(), c], &cal)
            .expect("no error")
            .expect("some counts");
        // c: 12-11 … 12-31 are 15 working days, 01-01 … 01-05 off, 01-06 the 16th (a gives
        // 2027-01-18).
        assert_eq!(res, Resolution::On(d("2027-01-06")));
        assert_eq!(counts[0].from_field, "decision_date");
        // A resolved count beats any pending one.
        let near = rectification_report_count(d("2026-10-09"), false, &rules);
        let (res, _) = resolve_earliest(&[a, near], &Calendar::default())
            .expect("no error")
            .expect("some counts");
        assert!(matches!(res, Resolution::On(_)));
        assert_eq!(resolve_earliest(&[], &cal).expect("no error"), None);
    }

    #[test]
    fn assessment_deadlines_follow_article_20() {
        let (rules, cal) = (Rules::default(), Calendar::default());
        let got = assessment_deadlines(d("2025-09-26"), &rules, &cal).expect("covered");
        // 09-28 make-up (1), 09-29, 09-30 (3), 10-09, 10-10 (5), 10-11 make-up (6), 10-13 … 10-16 (10).
        assert_eq!(got.agency_assessment, d("2025-10-16"));
        assert_eq!(got.bureau_decision, d("2025-10-23"));
    }
}
