//! Whether a charger's clock can be trusted with our schedules, from the timestamps it sends.
//!
//! Leases end and handovers switch on the charger's clock. A message stamped `ts` by the
//! charger and received by us at `r` was stamped no later than we received it, so `ts - r` is a
//! lower bound on how far the charger's clock is ahead of ours (a delayed message only makes it
//! lower). One message ahead by more than the tolerance proves the clock early: an increase
//! scheduled ahead would start before the decrease it waits on. Every recent message behind by
//! more than the tolerance means the clock is late (or every message was delayed that long,
//! which we cannot tell apart and treat the same): a lease would end, and a decrease switch,
//! after the balancer has counted it gone.
//!
//! Pure: observations in, a verdict out. The verdict holds for a window after the last bad
//! observation, so a clock that is corrected is trusted again only once it has stayed right.

use crate::units::Millis;
use std::collections::VecDeque;

/// How far a charger's clock may be off before its schedules are not trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockTolerance {
    /// The most it may run ahead (`None`: early clocks are harmless here, no handovers are scheduled).
    pub ahead: Option<Millis>,
    /// The most it may run behind.
    pub behind: Millis,
}

/// What a timestamp marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stamp {
    /// The moment the message reports happened (a status change, a transaction starting): sent as
    /// it happens unless the charger was offline.
    Event,
    /// A meter sample: some chargers stamp an interval's start, so an old stamp proves nothing,
    /// but a stamp still cannot be later than the moment it arrives.
    Sample,
}

/// Observations of one charger's clock over the recent past.
#[derive(Clone, Debug, Default)]
pub struct ClockWatch {
    /// (received at, charger stamp minus receipt in ms, what it stamps), oldest first.
    seen: VecDeque<(Millis, i64, Stamp)>,
}

/// Observations older than this are forgotten: the verdict is about the clock as it is now.
pub const CLOCK_WINDOW: Millis = Millis(10 * 60 * 1000);
/// A clock is called late only on this many event stamps at least (one message may be a stored
/// one, sent late after a reconnect).
pub const BEHIND_EVIDENCE: usize = 3;
/// OCPP timestamps are often whole seconds, truncated: a stamp may be this much below the moment.
const STAMP_RESOLUTION_MS: i64 = 1000;

impl ClockWatch {
    /// Records a message stamped `offset_ms` away from the moment `received` we got it.
    pub fn observe(&mut self, received: Millis, offset_ms: i64, stamp: Stamp) {
        self.seen.push_back((received, offset_ms, stamp));
        let from = received.0.saturating_sub(CLOCK_WINDOW.0);
        while self.seen.front().is_some_and(|(at, _, _)| at.0 < from) {
            self.seen.pop_front();
        }
    }

    /// The largest offset of the recent observations: how far ahead the clock surely is
    /// (negative: behind, at most by that much).
    pub fn ahead_at_least(&self, now: Millis) -> Option<i64> {
        let from = now.0.saturating_sub(CLOCK_WINDOW.0);
        self.seen.iter().filter(|(at, _, _)| at.0 >= from).map(|(_, off, _)| *off).max()
    }

    /// Whether schedules may rest on this clock at `now`.
    pub fn trusted(&self, now: Millis, tolerance: ClockTolerance) -> bool {
        let from = now.0.saturating_sub(CLOCK_WINDOW.0);
        let events = self.seen.iter().filter(|(at, _, stamp)| at.0 >= from && *stamp == Stamp::Event).count();
        let Some(ahead) = self.ahead_at_least(now) else { return true };
        let too_early = tolerance.ahead.is_some_and(|tol| ahead > i64::try_from(tol.0).unwrap_or(i64::MAX));
        let behind_tol =
            i64::try_from(tolerance.behind.0).unwrap_or(i64::MAX).saturating_add(STAMP_RESOLUTION_MS);
        let too_late = events >= BEHIND_EVIDENCE && ahead < -behind_tol;
        !(too_early || too_late)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: ClockTolerance = ClockTolerance { ahead: Some(Millis(5_000)), behind: Millis(5_000) };

    fn s(secs: u64) -> Millis {
        Millis::from_secs(secs)
    }

    #[test]
    fn a_clock_that_agrees_with_ours_is_trusted() {
        let mut w = ClockWatch::default();
        assert!(w.trusted(s(0), TOL), "nothing seen yet");
        for t in 0..10 {
            // Stamped a little before receipt (network delay, truncated to the second).
            w.observe(s(100 + 30 * t), -800, Stamp::Sample);
        }
        assert!(w.trusted(s(400), TOL));
        assert_eq!(w.ahead_at_least(s(400)), Some(-800));
    }

    #[test]
    fn one_stamp_from_the_future_proves_an_early_clock_until_it_has_been_right_for_a_window() {
        let mut w = ClockWatch::default();
        w.observe(s(100), -200, Stamp::Event);
        w.observe(s(130), 7_000, Stamp::Event);
        assert!(!w.trusted(s(130), TOL), "7 s ahead with a 5 s tolerance");
        // Corrected (the charger took our time from a heartbeat): still distrusted a while.
        w.observe(s(160), -100, Stamp::Event);
        assert!(!w.trusted(s(160), TOL));
        w.observe(s(130) + CLOCK_WINDOW + s(1), -100, Stamp::Event);
        assert!(w.trusted(s(130) + CLOCK_WINDOW + s(1), TOL));
    }

    #[test]
    fn an_early_clock_is_harmless_without_handovers() {
        let mut w = ClockWatch::default();
        w.observe(s(100), 60_000, Stamp::Event);
        assert!(w.trusted(s(100), ClockTolerance { ahead: None, behind: s(30) }));
    }

    #[test]
    fn a_late_clock_needs_every_recent_stamp_behind() {
        let mut w = ClockWatch::default();
        w.observe(s(100), -20_000, Stamp::Event);
        w.observe(s(110), -20_000, Stamp::Event);
        assert!(w.trusted(s(110), TOL), "two messages may be a stored backlog");
        w.observe(s(120), -20_000, Stamp::Event);
        assert!(!w.trusted(s(120), TOL), "three, and none recent");
        // One fresh message shows the clock right: the others were delayed.
        w.observe(s(130), -300, Stamp::Event);
        assert!(w.trusted(s(130), TOL));
    }

    #[test]
    fn a_stamp_truncated_to_the_second_is_not_a_late_clock() {
        let mut w = ClockWatch::default();
        for t in 0..5 {
            w.observe(s(100 + t), -5_900, Stamp::Event);
        }
        assert!(w.trusted(s(105), TOL), "within the 5 s tolerance plus the stamp's resolution");
        for t in 5..10 {
            w.observe(s(100 + t), -6_100, Stamp::Event);
        }
        assert!(w.trusted(s(110), TOL), "the recent maximum is still -5.9 s");
        assert!(!w.trusted(s(100) + CLOCK_WINDOW + s(6), TOL), "once the -5.9 s stamps are forgotten");
    }

    #[test]
    fn old_meter_samples_prove_nothing_but_a_sample_from_the_future_does() {
        let mut w = ClockWatch::default();
        for t in 0..5 {
            // A charger stamping its 15-minute intervals at their start.
            w.observe(s(1000 + 60 * t), -900_000, Stamp::Sample);
        }
        assert!(w.trusted(s(1240), TOL));
        w.observe(s(1300), 30_000, Stamp::Sample);
        assert!(!w.trusted(s(1300), TOL));
    }
}
