//! The deadlines of the measures regulation (赣药监 第二十条 to 第二十二条), computed in working
//! days with a [`Calendar`] and the numbers of the [`Rules`].
//!
//! Every function counts with [`Calendar::add_working_days`] (the day after the triggering date
//! is day 1), so every result is a working day, and a count that leaves the covered years is
//! an error rather than a guess.

use chrono::NaiveDate;

use crate::calendar::Calendar;
use crate::error::Result;
use crate::rules::Rules;

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

    #[test]
    fn assessment_deadlines_follow_article_20() {
        let (rules, cal) = (Rules::default(), Calendar::default());
        let got = assessment_deadlines(d("2025-09-26"), &rules, &cal).expect("covered");
        // 09-28 make-up (1), 09-29, 09-30 (3), 10-09, 10-10 (5), 10-11 make-up (6), 10-13 … 10-16 (10).
        assert_eq!(got.agency_assessment, d("2025-10-16"));
        assert_eq!(got.bureau_decision, d("2025-10-23"));
    }
}
