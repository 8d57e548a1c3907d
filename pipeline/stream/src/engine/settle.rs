//! The watermark a day may close at: the partition's watermark as it stood a grace period of
//! this machine's time ago.
//!
//! A producer sends each topic-partition's records in batches of their own, so the broker may
//! hold the next day's sales a moment before this day's purchases, and a high watermark asked
//! in that moment shows nothing unread. Closing a day on such a watermark would reconcile it
//! without records that were already on their way. A day therefore closes only at a watermark
//! observed at least `grace` ago, and only if the watermark of the batch in hand (with every
//! high watermark asked afresh) still passes it.
//!
//! Invariants: observations are kept in increasing order of both value and time; with a zero
//! grace the settled watermark is the last observed one (the engine behaves as without this
//! clock). Not stored: after a restart the grace starts again, which only delays a close.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The observed watermarks of a partition that have not settled yet, and the last one that has.
#[derive(Debug, Default, Clone)]
pub struct Settling {
    /// (watermark, when first observed), increasing in both.
    observed: VecDeque<(i64, Instant)>,
}

impl Settling {
    /// Notes watermark `wm` observed at `now` (a value not above the last one adds nothing).
    pub fn observe(&mut self, wm: i64, now: Instant) {
        if self.observed.back().is_none_or(|(last, _)| wm > *last) {
            self.observed.push_back((wm, now));
        }
    }

    /// The largest watermark observed at least `grace` before `now` (older ones are dropped).
    pub fn settled(&mut self, now: Instant, grace: Duration) -> Option<i64> {
        let ripe = |at: Instant| now.saturating_duration_since(at) >= grace;
        while self.observed.len() >= 2 && ripe(self.observed[1].1) {
            self.observed.pop_front();
        }
        self.observed
            .front()
            .filter(|(_, at)| ripe(*at))
            .map(|(wm, _)| *wm)
    }

    /// What [`Settling::settled`] would answer, without dropping anything.
    pub fn peek(&self, now: Instant, grace: Duration) -> Option<i64> {
        self.observed
            .iter()
            .take_while(|(_, at)| now.saturating_duration_since(*at) >= grace)
            .last()
            .map(|(wm, _)| *wm)
    }

    /// Whether every observed watermark has settled by `now` (nothing waits for its grace).
    pub fn is_settled(&self, now: Instant, grace: Duration) -> bool {
        self.observed
            .back()
            .is_none_or(|(_, at)| now.saturating_duration_since(*at) >= grace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watermark_settles_after_the_grace_and_never_before() {
        let t0 = Instant::now();
        let g = Duration::from_secs(5);
        let mut s = Settling::default();
        s.observe(100, t0);
        assert_eq!(s.settled(t0 + Duration::from_secs(4), g), None);
        assert!(!s.is_settled(t0 + Duration::from_secs(4), g));
        s.observe(200, t0 + Duration::from_secs(3));
        // A lower or equal value observed later adds nothing.
        s.observe(150, t0 + Duration::from_secs(4));
        assert_eq!(s.peek(t0 + Duration::from_secs(5), g), Some(100));
        assert_eq!(s.settled(t0 + Duration::from_secs(5), g), Some(100));
        assert_eq!(s.settled(t0 + Duration::from_secs(7), g), Some(100));
        assert!(!s.is_settled(t0 + Duration::from_secs(7), g));
        assert_eq!(s.settled(t0 + Duration::from_secs(8), g), Some(200));
        assert!(s.is_settled(t0 + Duration::from_secs(8), g));
        // Only the last settled observation is kept.
        assert_eq!(s.observed.len(), 1);
    }

    #[test]
    fn with_no_grace_the_last_observation_is_settled_at_once() {
        let t0 = Instant::now();
        let mut s = Settling::default();
        assert_eq!(s.settled(t0, Duration::ZERO), None);
        s.observe(7, t0);
        s.observe(9, t0);
        assert_eq!(s.settled(t0, Duration::ZERO), Some(9));
        assert!(s.is_settled(t0, Duration::ZERO));
    }
}
