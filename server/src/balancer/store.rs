//! How far the store's own load can rise while we cannot see it, learned from the site meter.
//!
//! A plan made on a reading must hold until the decreases of the next plan are in force: the
//! reading's age plus our reaction time. What the store does in that blind spot is the site's own
//! business (compressors cycling, ovens, a lift), so instead of one fixed allowance for every site
//! the balancer keeps, per phase, the largest rise its meter has ever shown over that horizon in
//! the recent past, and plans on the highest of the latest readings plus that rise (with
//! headroom). Until the meter's history is long enough to trust, the configured rise applies.
//!
//! Pure: readings in, an allowance out.

use crate::balancer::units::{DeciAmps, Millis, PerPhase, Phase};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Learning the store's rise from its meter (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RiseLearning {
    /// The blind spot learned: a reading's usual age plus the reaction time (and re-plan period).
    /// While the latest reading is older than its usual age, the configured rise applies
    /// instead if it is larger.
    pub horizon: Millis,
    /// The plan starts from the highest reading of this long before the latest (one spike in a
    /// reading often comes back in the next).
    pub window: Millis,
    /// The learned rise replaces the configured one once the meter's history spans this long.
    pub min_history: Millis,
    /// Rises older than this are forgotten (a store that changed its equipment).
    pub memory: Millis,
    /// The learned maximum is raised by this many percent: the next day's worst is rarely
    /// exactly the worst seen so far.
    pub headroom_pct: u32,
}

impl RiseLearning {
    /// Our policy: trusted after a day of readings, a week remembered, 20 % above the worst seen
    /// (on 40 generated days, never exceeded: `end2end/lb/store_rise.py`).
    pub fn from_a_week(horizon: Millis, window: Millis) -> RiseLearning {
        RiseLearning {
            horizon,
            window,
            min_history: Millis::from_secs(24 * 3600),
            memory: Millis::from_secs(7 * 24 * 3600),
            headroom_pct: 20,
        }
    }
}

/// Rises are kept as the largest per hour: memory costs a few hundred entries a week.
const BUCKET: Millis = Millis(3_600_000);

/// The meter's recent readings and the largest rises they showed.
#[derive(Clone, Debug, Default)]
pub struct RiseHistory {
    /// Readings young enough to be a reference for a later one (time order).
    recent: VecDeque<(Millis, PerPhase)>,
    /// (hour, largest rise per phase that hour), oldest first.
    rises: VecDeque<(u64, [u32; 3])>,
    first: Option<Millis>,
    last: Option<Millis>,
}

impl RiseHistory {
    /// Records a store reading. Readings older than the latest are ignored (they arrive out
    /// of order after a meter reconnects; the reference must not move backwards).
    pub fn observe(&mut self, learn: &RiseLearning, at: Millis, store: PerPhase) {
        if self.last.is_some_and(|last| at <= last) {
            return;
        }
        self.first.get_or_insert(at);
        self.last = Some(at);
        // The reference of this reading: the highest reading within `window` before `at - horizon`.
        if at.0 >= learn.horizon.0 {
            let until = Millis(at.0 - learn.horizon.0);
            let from = Millis(until.0.saturating_sub(learn.window.0));
            let mut reference: Option<[u32; 3]> = None;
            for (_, r) in self.recent.iter().filter(|(t, _)| *t >= from && *t <= until) {
                let r = Phase::ALL.map(|p| r.get(p).get());
                reference = Some(reference.map_or(r, |m| [0, 1, 2].map(|k| m[k].max(r[k]))));
            }
            if let Some(reference) = reference {
                let rise = Phase::ALL.map(|p| store.get(p).get().saturating_sub(reference[p.index()]));
                let hour = at.0 / BUCKET.0;
                match self.rises.back_mut() {
                    Some((h, m)) if *h == hour => *m = [0, 1, 2].map(|k| m[k].max(rise[k])),
                    _ => self.rises.push_back((hour, rise)),
                }
            }
        }
        self.recent.push_back((at, store));
        let keep_from = at.0.saturating_sub(learn.horizon.0 + learn.window.0);
        while self.recent.front().is_some_and(|(t, _)| t.0 < keep_from) {
            self.recent.pop_front();
        }
        let forget_before = at.0.saturating_sub(learn.memory.0) / BUCKET.0;
        while self.rises.front().is_some_and(|(h, _)| *h < forget_before) {
            self.rises.pop_front();
        }
    }

    /// The learned rise per phase, with headroom; `None` while the history is too short.
    pub fn allowance(&self, learn: &RiseLearning) -> Option<PerPhase> {
        let (first, last) = (self.first?, self.last?);
        if last.since(first) < learn.min_history || self.rises.is_empty() {
            return None;
        }
        let mut worst = [0u64; 3];
        for (_, r) in &self.rises {
            for k in 0..3 {
                worst[k] = worst[k].max(u64::from(r[k]));
            }
        }
        let raised = worst.map(|w| {
            let w = (w * (100 + u64::from(learn.headroom_pct))).div_ceil(100);
            DeciAmps::new(u32::try_from(w).unwrap_or(u32::MAX))
        });
        Some(PerPhase(raised))
    }

    /// The highest reading per phase within `window` before (and including) the reading at `at`.
    pub fn reference(&self, learn: &RiseLearning, at: Millis, latest: PerPhase) -> PerPhase {
        let from = Millis(at.0.saturating_sub(learn.window.0));
        let mut out = latest;
        for (_, r) in self.recent.iter().filter(|(t, _)| *t >= from && *t < at) {
            for p in Phase::ALL {
                out.0[p.index()] = out.get(p).max(r.get(p));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learn() -> RiseLearning {
        RiseLearning {
            horizon: Millis::from_secs(120),
            window: Millis::from_secs(60),
            min_history: Millis::from_secs(3600),
            memory: Millis::from_secs(2 * 3600),
            headroom_pct: 20,
        }
    }

    fn pp(l1: u32, l2: u32, l3: u32) -> PerPhase {
        PerPhase([DeciAmps::from_amps(l1), DeciAmps::from_amps(l2), DeciAmps::from_amps(l3)])
    }

    fn minute(m: u64) -> Millis {
        Millis::from_secs(60 * m)
    }

    #[test]
    fn nothing_is_learned_before_the_history_is_long_enough() {
        let l = learn();
        let mut h = RiseHistory::default();
        for m in 0..60 {
            h.observe(&l, minute(m), pp(50, 40, 30));
        }
        assert_eq!(h.allowance(&l), None, "59 minutes of history");
        h.observe(&l, minute(60), pp(50, 40, 30));
        assert_eq!(h.allowance(&l), Some(pp(0, 0, 0)), "a flat store rises by nothing");
    }

    #[test]
    fn the_largest_rise_over_the_horizon_per_phase_with_headroom() {
        let l = learn();
        let mut h = RiseHistory::default();
        for m in 0..=60 {
            // A 10 A step on L1 at minute 30, a 5 A step on L3 at minute 40 (down again after).
            let l1 = if m >= 30 { 60 } else { 50 };
            let l3 = if m == 40 { 35 } else { 30 };
            h.observe(&l, minute(m), pp(l1, 40, l3));
        }
        // Rises over 2 minutes from the highest of the two readings before: L1 10 A, L3 5 A;
        // plus 20 % headroom.
        assert_eq!(h.allowance(&l), Some(pp(12, 0, 6)));
    }

    #[test]
    fn the_reference_is_the_highest_reading_of_the_window() {
        let l = learn();
        let mut h = RiseHistory::default();
        h.observe(&l, minute(0), pp(50, 40, 30));
        h.observe(&l, minute(1), pp(58, 38, 30));
        h.observe(&l, minute(2), pp(52, 41, 29));
        // At minute 2 the window reaches back to minute 1 (inclusive), not minute 0.
        assert_eq!(h.reference(&l, minute(2), pp(52, 41, 29)), pp(58, 41, 30));
    }

    #[test]
    fn a_spike_after_a_high_reading_counts_from_the_highest_reading_before_it() {
        let l = learn();
        let mut h = RiseHistory::default();
        // Readings every minute; at minute 10 one reading is 70 (spike), else 50.
        for m in 0..=70 {
            let v = if m == 10 { 70 } else { 50 };
            h.observe(&l, minute(m), pp(v, 50, 50));
        }
        // The spike was 20 A above the reference two minutes earlier: 24 A with headroom.
        assert_eq!(h.allowance(&l), Some(pp(24, 0, 0)));
    }

    #[test]
    fn old_rises_are_forgotten_and_late_readings_ignored() {
        let l = learn();
        let mut h = RiseHistory::default();
        for m in 0..=200 {
            let v = if m == 10 { 70 } else { 50 };
            h.observe(&l, minute(m), pp(v, 50, 50));
        }
        // Minute 10's spike is more than two hours old at minute 200.
        assert_eq!(h.allowance(&l), Some(pp(0, 0, 0)));
        // A reading from the past changes nothing.
        h.observe(&l, minute(150), pp(90, 90, 90));
        assert_eq!(h.allowance(&l), Some(pp(0, 0, 0)));
    }
}
