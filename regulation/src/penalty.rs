//! The statutory clocks of the administrative-penalty procedure (立案 and after), as data in
//! `[[penalty.clock]]` of the rules and counted with the working-day [`Calendar`].
//!
//! A referred case runs through filing (立案), investigation and legal review (法制审核), the
//! notice of the proposed penalty (行政处罚告知) with the party's statement period and its
//! right to ask for a hearing, the hearing, the decision and its service. Each stage with a
//! statutory clock is a [`ClockRule`]: the event it counts from, a length in working days or
//! in days, the extension an approver may grant, whether the clock stops while the case is
//! suspended for a hearing, testing, inspection or appraisal, and the article it rests on.
//!
//! Counting conventions (the same as every deadline of the crate):
//! - counting starts the day after the triggering event: day 1 is the first counted day;
//! - in working days, a day counts when the calendar says it is a working day — a weekend or
//!   holiday never counts, a make-up working day (调休) does; 行政处罚法 第八十五条 reads its
//!   "二日、三日、五日、七日" as working days;
//! - in days, every day counts, and a period whose last day is not a working day ends on the
//!   first working day after it (the rule of procedural periods);
//! - a stop (an inclusive range of days: hearing, testing, appraisal, suspension) does not
//!   count, whatever the day is; stops may overlap each other and holidays;
//! - a granted extension adds its length in the clock's unit;
//! - a day outside the calendar's years is an error, never a guess.

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::error::Result;

/// What a clock's length counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockUnit {
    /// Working days (工作日).
    WorkingDays,
    /// Days (日), the last day moved to the next working day when it is not one.
    Days,
}

/// The events of a referred case that clocks count from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PenaltyEvent {
    /// The lead was received or found (发现线索、收到材料).
    LeadReceived,
    /// The case was filed (立案).
    Filed,
    /// The notice of the proposed penalty was served (行政处罚告知书送达).
    NoticeServed,
    /// The decision was made (作出处罚决定).
    Decided,
    /// The decision was served on the party (处罚决定书送达).
    DecisionServed,
}

/// Why a clock stopped: the periods 不计入办案期限.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A hearing (听证).
    Hearing,
    /// Testing or inspection of samples (检测、检验).
    Testing,
    /// Appraisal (鉴定).
    Appraisal,
    /// The case suspended (中止).
    Suspension,
    /// A public announcement (公告).
    Announcement,
}

/// A stretch of days a clock does not run, both ends included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockStop {
    /// Why.
    pub reason: StopReason,
    /// First day stopped.
    pub from: NaiveDate,
    /// Last day stopped.
    pub to: NaiveDate,
}

/// One statutory clock of the procedure (`[[penalty.clock]]` in the rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockRule {
    /// Stage id (snake_case).
    pub stage: String,
    /// Chinese name of the stage.
    pub name: String,
    /// The event it counts from.
    pub from: PenaltyEvent,
    /// Its length.
    pub length: u32,
    /// What the length counts.
    pub unit: ClockUnit,
    /// The extension an approver may grant (0: none).
    pub extension: u32,
    /// Whether hearings, testing, appraisal, suspension and announcements stop it.
    pub stoppable: bool,
    /// The event that completes the stage when it is the authority's to complete (a stage
    /// still incomplete after its last day is overdue); none for the party's own periods.
    #[serde(default)]
    pub ends: Option<PenaltyEvent>,
    /// The article it rests on.
    pub article: String,
}

/// A clock: `length` units counted after `start`, not counting the `stops`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock<'a> {
    /// The triggering day (day 0).
    pub start: NaiveDate,
    /// Units to count.
    pub length: u32,
    /// What they are.
    pub unit: ClockUnit,
    /// Days that do not count.
    pub stops: &'a [ClockStop],
}

impl Clock<'_> {
    /// The last day of the period (see the module's counting conventions). A clock of
    /// length 0 ends on its start.
    pub fn due(&self, cal: &Calendar) -> Result<NaiveDate> {
        let mut day = self.start;
        let mut counted = 0;
        // The calendar is asked about every day walked, so a walk out of its years fails.
        cal.is_working_day(day)?;
        while counted < self.length {
            day += Duration::days(1);
            let working = cal.is_working_day(day)?;
            if self.stopped(day) {
                continue;
            }
            if working || self.unit == ClockUnit::Days {
                counted += 1;
            }
        }
        if self.unit == ClockUnit::Days {
            while !cal.is_working_day(day)? {
                day += Duration::days(1);
            }
        }
        Ok(day)
    }

    /// Whether `day` falls in a stop.
    pub fn stopped(&self, day: NaiveDate) -> bool {
        self.stops.iter().any(|s| s.from <= day && day <= s.to)
    }
}

/// What happened in a referred case so far: the days of its events, the stops, the
/// extensions granted (by stage id) and the hearing, if one was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PenaltyCase {
    /// The lead received.
    pub lead_received: Option<NaiveDate>,
    /// Filed.
    pub filed: Option<NaiveDate>,
    /// The notice of the proposed penalty served.
    pub notice_served: Option<NaiveDate>,
    /// Decided.
    pub decided: Option<NaiveDate>,
    /// The decision served.
    pub decision_served: Option<NaiveDate>,
    /// The day of the hearing, when the party asked for one.
    pub hearing_on: Option<NaiveDate>,
    /// Stretches the stoppable clocks do not run.
    pub stops: Vec<ClockStop>,
    /// Stage ids whose extension an approver granted.
    pub extended: Vec<String>,
}

impl PenaltyCase {
    fn event(&self, e: PenaltyEvent) -> Option<NaiveDate> {
        match e {
            PenaltyEvent::LeadReceived => self.lead_received,
            PenaltyEvent::Filed => self.filed,
            PenaltyEvent::NoticeServed => self.notice_served,
            PenaltyEvent::Decided => self.decided,
            PenaltyEvent::DecisionServed => self.decision_served,
        }
    }
}

/// A stage's due day in a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageDue {
    /// Stage id.
    pub stage: String,
    /// Its name.
    pub name: String,
    /// The article.
    pub article: String,
    /// The day counting started after.
    pub from: NaiveDate,
    /// The last day.
    pub due: NaiveDate,
    /// Whether a granted extension is counted in.
    pub extended: bool,
    /// Days of stops inside the period (calendar days).
    pub stopped_days: u32,
    /// The day the stage was completed (its `ends` event), if it was.
    pub done_on: Option<NaiveDate>,
    /// Whether the stage is the authority's to complete (it has an `ends` event).
    pub authority: bool,
}

impl StageDue {
    /// Whether the stage is overdue on `on`: the authority's, not completed, its last day
    /// passed (a stage completed late stays overdue).
    pub fn overdue_on(&self, on: NaiveDate) -> bool {
        self.authority
            && match self.done_on {
                Some(done) => done > self.due,
                None => on > self.due,
            }
    }
}

/// The due day of every clock whose triggering event has happened.
pub fn schedule(case: &PenaltyCase, clocks: &[ClockRule], cal: &Calendar) -> Result<Vec<StageDue>> {
    let mut out = Vec::new();
    for rule in clocks {
        let Some(start) = case.event(rule.from) else {
            continue;
        };
        let extended = rule.extension > 0 && case.extended.contains(&rule.stage);
        let stops: &[ClockStop] = if rule.stoppable { &case.stops } else { &[] };
        let clock = Clock {
            start,
            length: rule.length + if extended { rule.extension } else { 0 },
            unit: rule.unit,
            stops,
        };
        let due = clock.due(cal)?;
        let stopped_days = start
            .iter_days()
            .skip(1)
            .take_while(|d| *d <= due)
            .filter(|d| clock.stopped(*d))
            .count() as u32;
        out.push(StageDue {
            stage: rule.stage.clone(),
            name: rule.name.clone(),
            article: rule.article.clone(),
            from: start,
            due,
            extended,
            stopped_days,
            done_on: rule.ends.and_then(|e| case.event(e)),
            authority: rule.ends.is_some(),
        });
    }
    Ok(out)
}

/// The latest day the hearing notice may be served for a hearing on `hearing_on`: `days`
/// working days before it (行政处罚法 第六十四条(二), "七日前", read as working days by
/// 第八十五条).
pub fn hearing_notice_by(hearing_on: NaiveDate, days: u32, cal: &Calendar) -> Result<NaiveDate> {
    cal.sub_working_days(hearing_on, days)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Rules;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn stop(reason: StopReason, from: &str, to: &str) -> ClockStop {
        ClockStop {
            reason,
            from: d(from),
            to: d(to),
        }
    }

    /// Clocks on the embedded 2026 calendar: the National Day and Mid-Autumn holidays
    /// (09-25 … 09-27, 10-01 … 10-07, make-up working days Sunday 09-20 and Saturday 10-10),
    /// the Spring Festival (02-15 … 02-23, make-up Saturday 02-14) and Labour Day.
    #[test]
    fn clocks_count_working_days_and_days_around_holidays_and_stops() {
        let cal = Calendar::embedded().unwrap();
        use ClockUnit::{Days, WorkingDays};
        let hearing = [stop(StopReason::Hearing, "2026-09-30", "2026-10-09")];
        let testing = [stop(StopReason::Testing, "2026-08-10", "2026-08-29")];
        let over_holiday = [stop(StopReason::Appraisal, "2026-09-25", "2026-10-08")];
        let overlapping = [
            stop(StopReason::Testing, "2026-08-10", "2026-08-20"),
            stop(StopReason::Appraisal, "2026-08-15", "2026-08-29"),
        ];
        let none: [ClockStop; 0] = [];
        // (start, length, unit, stops, due, what)
        type Row<'a> = (&'a str, u32, ClockUnit, &'a [ClockStop], &'a str, &'a str);
        let table: &[Row] = &[
            // 10-08 Thu, 10-09 Fri, then the make-up Saturday 10-10 is the third working day.
            (
                "2026-09-30",
                3,
                WorkingDays,
                &none,
                "2026-10-10",
                "lands on a make-up working day",
            ),
            (
                "2026-09-30",
                5,
                WorkingDays,
                &none,
                "2026-10-13",
                "the Sunday after does not count",
            ),
            ("2026-09-28", 5, WorkingDays, &none, "2026-10-10", "no stop"),
            // A hearing from 09-30 to 10-09 stops the clock across the holiday: 09-29 is day 1,
            // the make-up Saturday 10-10 day 2.
            (
                "2026-09-28",
                5,
                WorkingDays,
                &hearing,
                "2026-10-14",
                "a stop spanning a holiday",
            ),
            (
                "2026-02-12",
                5,
                WorkingDays,
                &none,
                "2026-02-26",
                "Spring Festival, make-up 02-14",
            ),
            (
                "2026-04-28",
                15,
                WorkingDays,
                &none,
                "2026-05-21",
                "Labour Day, make-up 05-09",
            ),
            // 90 days from 07-03 end on 10-01, a holiday: the period ends on 10-08.
            (
                "2026-07-03",
                90,
                Days,
                &none,
                "2026-10-08",
                "days ending on a holiday",
            ),
            (
                "2026-07-03",
                90,
                Days,
                &testing,
                "2026-10-21",
                "twenty days of testing",
            ),
            (
                "2026-07-03",
                90,
                Days,
                &overlapping,
                "2026-10-21",
                "overlapping stops count once",
            ),
            (
                "2026-07-03",
                90,
                Days,
                &over_holiday,
                "2026-10-15",
                "days stopped over a holiday",
            ),
            // 120 days (with the 30 of an extension) end on Saturday 10-31: Monday 11-02.
            (
                "2026-07-03",
                120,
                Days,
                &none,
                "2026-11-02",
                "days ending on a weekend",
            ),
        ];
        for (start, length, unit, stops, due, what) in table {
            let clock = Clock {
                start: d(start),
                length: *length,
                unit: *unit,
                stops,
            };
            assert_eq!(clock.due(&cal).unwrap(), d(due), "{what}");
        }
        // A hearing on Monday 10-12 is notified by 09-24: seven working days before it,
        // skipping the make-up Saturday's neighbours, the holidays and Mid-Autumn.
        assert_eq!(
            hearing_notice_by(d("2026-10-12"), 7, &cal).unwrap(),
            d("2026-09-24")
        );
        // Counting out of the calendar's years is an error, never a guess.
        let late = Clock {
            start: d("2026-12-01"),
            length: 90,
            unit: Days,
            stops: &none,
        };
        assert!(late.due(&cal).is_err());
    }

    /// The procedure's stages under the shipped rules: only the clocks whose event happened,
    /// the stops only on the stoppable ones, an extension only where granted.
    #[test]
    fn a_case_s_schedule_follows_its_events_stops_and_extensions() {
        let cal = Calendar::embedded().unwrap();
        let rules = Rules::default();
        let mut case = PenaltyCase {
            lead_received: Some(d("2026-06-22")),
            filed: Some(d("2026-07-03")),
            ..PenaltyCase::default()
        };
        let due = |case: &PenaltyCase| -> Vec<(String, NaiveDate)> {
            schedule(case, &rules.penalty.clock, &cal)
                .unwrap()
                .into_iter()
                .map(|s| (s.stage, s.due))
                .collect()
        };
        assert_eq!(
            due(&case),
            vec![
                ("filing_decision".to_string(), d("2026-07-13")),
                ("decision".to_string(), d("2026-10-08")),
            ]
        );
        // The notice served on 09-30: statement and hearing request until 10-13; testing
        // (08-10 … 08-29) stops the decision clock but not the party's periods.
        case.notice_served = Some(d("2026-09-30"));
        case.stops = vec![stop(StopReason::Testing, "2026-08-10", "2026-08-29")];
        let s = schedule(&case, &rules.penalty.clock, &cal).unwrap();
        let get = |stage: &str| s.iter().find(|x| x.stage == stage).unwrap().clone();
        assert_eq!(get("statement_period").due, d("2026-10-13"));
        assert_eq!(get("hearing_request").due, d("2026-10-13"));
        assert_eq!(get("decision").due, d("2026-10-21"));
        assert_eq!(get("decision").stopped_days, 20);
        assert_eq!(get("statement_period").stopped_days, 0);
        assert!(get("decision").article.contains("第六十四条"));
        // Filed on 07-03 within its review period: done, never overdue; the party's periods
        // are never the authority's to be late with.
        assert_eq!(get("filing_decision").done_on, Some(d("2026-07-03")));
        assert!(!get("filing_decision").overdue_on(d("2027-01-01")));
        assert!(!get("statement_period").overdue_on(d("2027-01-01")));
        assert!(get("decision").overdue_on(d("2026-10-22")));
        assert!(!get("decision").overdue_on(d("2026-10-21")));
        // The approved extension of 30 days.
        case.extended = vec!["decision".to_string()];
        let ext = schedule(&case, &rules.penalty.clock, &cal).unwrap();
        let decision = ext.iter().find(|x| x.stage == "decision").unwrap();
        assert!(decision.extended);
        assert_eq!(decision.due, d("2026-11-20"));
        assert!(!decision.overdue_on(d("2026-11-20")));
        assert!(decision.overdue_on(d("2026-11-21")));
        // Decided: its service within 7 working days; the decision stage done in time.
        case.decided = Some(d("2026-11-19"));
        let served = schedule(&case, &rules.penalty.clock, &cal).unwrap();
        assert_eq!(
            served
                .iter()
                .find(|x| x.stage == "decision_service")
                .unwrap()
                .due,
            d("2026-11-30")
        );
        let decision = served.iter().find(|x| x.stage == "decision").unwrap();
        assert!(
            !decision.overdue_on(d("2027-01-01")),
            "decided within the extension"
        );
        // Every stage names its article.
        assert!(served.iter().all(|x| !x.article.is_empty()));
        // A decision made after its last day stays overdue.
        case.extended.clear();
        let late = schedule(&case, &rules.penalty.clock, &cal).unwrap();
        assert!(
            late.iter()
                .find(|x| x.stage == "decision")
                .unwrap()
                .overdue_on(d("2027-01-01"))
        );
    }
}
