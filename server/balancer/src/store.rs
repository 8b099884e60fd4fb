//! How far the store's own load can rise while we cannot see it, learned from the site meter.
//!
//! A plan made on a reading must hold until the decreases of the next plan are in force: the
//! reading's age plus our reaction time. What the store does in that blind spot is the site's own
//! business (compressors cycling, ovens, a lift), so instead of one fixed allowance for every site
//! the balancer keeps, per phase, the largest rise its meter has ever shown over that horizon in
//! the recent past, and plans on a reference taken from the latest readings plus that rise (with
//! headroom). Until the meter's history is long enough to trust, the configured rise applies.
//!
//! A reference is a lens on the latest readings: the highest of the last minute, say, or the
//! second highest of the last ten. Each lens learns its own rise, and each (reference plus its
//! rise) bounded every moment of the history; so does the lowest of them, which is what the plan
//! takes. A short lens follows a store whose load steps up or down; a long one, ranked below
//! the top, is not fooled by a moment of noise low or high (a compressor's one-reading spike).
//!
//! Pure: readings in, an allowance out.

use crate::units::{DeciAmps, Millis, PerPhase, Phase};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// How long a meter has read one and the same value, to the tenth of an amp on every phase.
///
/// A store's load is never that still: compressors cycle, doors open, tills and lights come and
/// go. A meter gateway that lost its meter but keeps posting the last value it had, with fresh
/// timestamps, is: believed, it would be the last good value forever, however far the store has
/// risen since. A store drawing next to nothing (a pod switched off) is still, and is believed.
#[derive(Clone, Debug, Default)]
pub struct Unchanged {
    /// The latest reading, since when the meter has read it, and when it last read it.
    last: Option<(PerPhase, Millis, Millis)>,
}

/// Our policy: a quarter of an hour of one reading is a frozen meter.
pub const FROZEN_AFTER: Millis = Millis(15 * 60 * 1000);

/// A store current that is next to nothing: a reading this low on every phase is a store
/// switched off (still, and believed), and half of a floor this low tells nothing.
const NEXT_TO_NOTHING: DeciAmps = DeciAmps::from_amps(2);

impl Unchanged {
    /// Records a reading (in time order); true if the meter has now read exactly it for `after`
    /// or longer (never for a zero `after`, nor for a store drawing next to nothing). A silence
    /// longer than `silence` (the age past which a reading is stale) starts the count over: a
    /// meter back from an outage that happens to read what it read before has not been
    /// repeating itself.
    pub fn frozen(&mut self, at: Millis, reading: PerPhase, after: Millis, silence: Millis) -> bool {
        let since = match self.last {
            Some((same, since, seen)) if same == reading && at.since(seen) <= silence => since,
            _ => at,
        };
        self.last = Some((reading, since, at));
        after > Millis(0)
            && at.since(since) >= after
            && Phase::ALL.iter().any(|&p| reading.get(p) >= NEXT_TO_NOTHING)
    }
}

/// How long our policy remembers the store's rises, and so how much meter history is worth keeping.
pub const MEMORY_DAYS: u64 = 28;

/// Learning the store's rise from its meter (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RiseLearning {
    /// The blind spot learned: a reading's usual age plus the reaction time (and re-plan period).
    /// While the latest reading is older than its usual age, the configured rise applies
    /// instead if it is larger.
    pub horizon: Millis,
    /// The references the plan may start from (at least one).
    pub lenses: Vec<Lens>,
    /// The learned rise replaces the configured one once the meter's history spans this long.
    pub min_history: Millis,
    /// Rises older than this are forgotten (a store that changed its equipment).
    pub memory: Millis,
    /// The learned maximum is raised by this many percent: the next day's worst is rarely
    /// exactly the worst seen so far.
    pub headroom_pct: u32,
    /// How long our limits may hold without us after the blind spot: the leases to choose from (a
    /// charger that loses us keeps its limit for its lease). The rise within each is learned too,
    /// so that a site whose store climbs further in a lease than the plan allows for gets a
    /// shorter one. Empty: not learned.
    #[serde(default)]
    pub holds: Vec<Millis>,
}

/// A reference taken from the readings: the `rank`-th highest (1: the highest) of those of the
/// `window` up to and including the latest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lens {
    pub window: Millis,
    pub rank: usize,
}

impl Lens {
    /// The highest reading of this long before the latest.
    pub fn highest(window: Millis) -> Lens {
        Lens { window, rank: 1 }
    }
}

impl RiseLearning {
    /// Our policy: trusted after a day of readings, four weeks remembered (the worst of a week is
    /// too often not the worst of the next day), 10 % above the worst seen. References: the highest
    /// reading of one `interval` (the latest two readings), the second highest of five intervals,
    /// and the third highest of ten. The middle one passes over a single spike but follows a step
    /// within a few minutes, so the plan starts lower after a spike or a fall. The windows are
    /// counted in readings, not time: a meter read more often gets shorter windows. How these were
    /// chosen, measured with `end2end/lb/store_rise.py`, is in docs/load-balancing.md and
    /// docs/benchmarks.md.
    pub fn from_four_weeks(horizon: Millis, interval: Millis) -> RiseLearning {
        RiseLearning {
            horizon,
            lenses: vec![
                Lens::highest(interval),
                Lens { window: Millis(interval.0 * 5), rank: 2 },
                Lens { window: Millis(interval.0 * 10), rank: 3 },
            ],
            min_history: Millis::from_secs(24 * 3600),
            memory: Millis::from_secs(MEMORY_DAYS * 24 * 3600),
            headroom_pct: 10,
            holds: Vec::new(),
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
    /// Each lens's reference at each reading young enough to start a hold (time order).
    references: VecDeque<(Millis, Vec<PerPhase>)>,
    /// (hour, largest rise per phase that hour over each lens's reference), oldest first: over
    /// the blind spot for each lens, then for each hold in turn, anywhere in it after the blind
    /// spot for each lens.
    rises: VecDeque<(u64, Vec<[u32; 3]>)>,
    /// The largest of `rises` per lens, kept as they come and go: every plan asks for it, and
    /// four weeks are 672 hours to scan.
    worst: Vec<[u32; 3]>,
    first: Option<Millis>,
    last: Option<Millis>,
    /// (hour, lowest reading per phase that hour), oldest first, as long as rises are remembered:
    /// the store's floor, below which a reading is not believed.
    lows: VecDeque<(u64, [u32; 3])>,
}

/// A reading below this share of the lowest the meter read over its memory is not believed: a
/// store's base load (refrigeration, lighting, ventilation) does not vanish, but a current clamp
/// that came loose, a meter that restarts or a gateway that fills gaps with zeros reads next to
/// nothing, and believing it would give the cars the store's share.
const IMPLAUSIBLE_BELOW_PCT: u64 = 50;

impl RiseHistory {
    /// Records a store reading. Readings older than the latest are ignored (they arrive out
    /// of order after a meter reconnects; the reference must not move backwards).
    pub fn observe(&mut self, learn: &RiseLearning, at: Millis, store: PerPhase) {
        if self.last.is_some_and(|last| at <= last) {
            return;
        }
        self.first.get_or_insert(at);
        self.last = Some(at);
        // Each lens's reference for this reading: as it was `horizon` before.
        if at.0 >= learn.horizon.0 {
            let until = Millis(at.0 - learn.horizon.0);
            let rises: Option<Vec<[u32; 3]>> = learn
                .lenses
                .iter()
                .map(|lens| {
                    let from = Millis(until.0.saturating_sub(lens.window.0));
                    let seen = self.recent.iter().filter(|(t, _)| *t >= from && *t <= until).map(|(_, r)| *r);
                    let reference = ranked(seen, lens.rank)?;
                    Some(Phase::ALL.map(|p| store.get(p).get().saturating_sub(reference.get(p).get())))
                })
                .collect();
            let rises = rises.map(|mut rises| {
                for hold in &learn.holds {
                    // From the lowest reference any moment of the hold could have been planned on.
                    let from = Millis(until.0.saturating_sub(hold.0));
                    for lens in 0..learn.lenses.len() {
                        let lowest = self
                            .references
                            .iter()
                            .filter(|(t, _)| *t >= from && *t <= until)
                            .filter_map(|(_, r)| r.get(lens).copied())
                            .reduce(|a, b| PerPhase(Phase::ALL.map(|p| a.get(p).min(b.get(p)))));
                        rises.push(lowest.map_or([0; 3], |low| {
                            Phase::ALL.map(|p| store.get(p).get().saturating_sub(low.get(p).get()))
                        }));
                    }
                }
                rises
            });
            if let Some(rises) = rises {
                self.worst.resize(rises.len(), [0; 3]);
                for (w, r) in self.worst.iter_mut().zip(&rises) {
                    *w = [0, 1, 2].map(|k| w[k].max(r[k]));
                }
                let hour = at.0 / BUCKET.0;
                match self.rises.back_mut() {
                    Some((h, m)) if *h == hour => {
                        for (m, r) in m.iter_mut().zip(&rises) {
                            *m = [0, 1, 2].map(|k| m[k].max(r[k]));
                        }
                    }
                    _ => self.rises.push_back((hour, rises)),
                }
            }
        }
        if let Some(longest) = learn.holds.iter().max() {
            let references = learn.lenses.iter().map(|lens| self.reference(*lens, at, store)).collect();
            self.references.push_back((at, references));
            let start_from = at.0.saturating_sub(learn.horizon.0 + longest.0);
            while self.references.front().is_some_and(|(t, _)| t.0 < start_from) {
                self.references.pop_front();
            }
        }
        let hour = at.0 / BUCKET.0;
        let reading = Phase::ALL.map(|p| store.get(p).get());
        match self.lows.back_mut() {
            Some((h, low)) if *h == hour => *low = [0, 1, 2].map(|k| low[k].min(reading[k])),
            _ => self.lows.push_back((hour, reading)),
        }
        while self.lows.front().is_some_and(|(h, _)| *h < at.0.saturating_sub(learn.memory.0) / BUCKET.0) {
            self.lows.pop_front();
        }
        self.recent.push_back((at, store));
        let widest = learn.lenses.iter().map(|l| l.window.0).max().unwrap_or(0);
        let keep_from = at.0.saturating_sub(learn.horizon.0 + widest);
        while self.recent.front().is_some_and(|(t, _)| t.0 < keep_from) {
            self.recent.pop_front();
        }
        let forget_before = at.0.saturating_sub(learn.memory.0) / BUCKET.0;
        let mut forgot_a_worst = false;
        while let Some((_, gone)) = self.rises.front().filter(|(h, _)| *h < forget_before) {
            forgot_a_worst |= gone.iter().zip(&self.worst).any(|(g, w)| (0..3).any(|k| g[k] == w[k]));
            self.rises.pop_front();
        }
        if forgot_a_worst {
            self.worst = worst_of(&self.rises, self.worst.len());
        }
    }

    /// The phases on which `store` reads below half of the lowest the meter read over its memory,
    /// once the history is long enough to trust: such a reading is not believed (see
    /// [`IMPLAUSIBLE_BELOW_PCT`]), nor recorded. Empty while nothing is learned.
    pub fn implausible(&self, learn: &RiseLearning, store: PerPhase) -> Vec<Phase> {
        let (Some(first), Some(last)) = (self.first, self.last) else { return Vec::new() };
        if last.since(first) < learn.min_history {
            return Vec::new();
        }
        let floor = self.lows.iter().fold([u32::MAX; 3], |f, (_, low)| [0, 1, 2].map(|k| f[k].min(low[k])));
        Phase::ALL
            .into_iter()
            .filter(|&p| {
                let floor = floor[p.index()];
                floor != u32::MAX
                    && floor >= NEXT_TO_NOTHING.get()
                    && u64::from(store.get(p).get()) * 100 < u64::from(floor) * IMPLAUSIBLE_BELOW_PCT
            })
            .collect()
    }

    /// The learned rise per phase over each lens's reference, with headroom (in the lenses'
    /// order); `None` while the history is too short.
    pub fn allowances(&self, learn: &RiseLearning) -> Option<Vec<PerPhase>> {
        let (first, last) = (self.first?, self.last?);
        if last.since(first) < learn.min_history || self.rises.is_empty() {
            return None;
        }
        let allowances = (0..learn.lenses.len())
            .map(|lens| {
                let worst = self.worst.get(lens).copied().unwrap_or([0; 3]);
                PerPhase(worst.map(|w| {
                    let w = (u64::from(w) * (100 + u64::from(learn.headroom_pct))).div_ceil(100);
                    DeciAmps::new(u32::try_from(w).unwrap_or(u32::MAX))
                }))
            })
            .collect();
        Some(allowances)
    }

    /// The longest of the holds in which the store never rose, anywhere after the blind spot,
    /// past what the plan allows for (each lens's reference plus its allowance): limits may hold
    /// that long without us. The shortest if none did; `None` while nothing is learned or
    /// without holds.
    pub fn longest_hold(&self, learn: &RiseLearning) -> Option<Millis> {
        let allowances = self.allowances(learn)?;
        let n = learn.lenses.len();
        let held = |k: usize| {
            allowances.iter().enumerate().all(|(lens, allowance)| {
                let rise = self.worst.get(n * (1 + k) + lens).copied().unwrap_or([0; 3]);
                Phase::ALL.iter().all(|&p| rise[p.index()] <= allowance.get(p).get())
            })
        };
        let mut holds: Vec<(usize, Millis)> = learn.holds.iter().copied().enumerate().collect();
        holds.sort_by_key(|&(_, hold)| std::cmp::Reverse(hold));
        holds.iter().find(|&&(k, _)| held(k)).or(holds.last()).map(|&(_, hold)| hold)
    }

    /// The learned rise over the first lens's reference (the one the budget shows).
    pub fn allowance(&self, learn: &RiseLearning) -> Option<PerPhase> {
        self.allowances(learn)?.into_iter().next()
    }

    /// A lens's reference per phase at the reading `latest` taken at `at`.
    pub fn reference(&self, lens: Lens, at: Millis, latest: PerPhase) -> PerPhase {
        let from = Millis(at.0.saturating_sub(lens.window.0));
        let seen = self.recent.iter().filter(|(t, _)| *t >= from && *t < at).map(|(_, r)| *r);
        ranked(seen.chain(std::iter::once(latest)), lens.rank).unwrap_or(latest)
    }

    /// The most the store may draw until our next decreases are in force, from the reading
    /// `latest` taken at `at`: per phase the lowest over the lenses of its reference plus its rise
    /// (each no less than `at_least`); `None` while nothing is learned.
    pub fn bound(
        &self,
        learn: &RiseLearning,
        at: Millis,
        latest: PerPhase,
        at_least: PerPhase,
    ) -> Option<PerPhase> {
        let allowances = self.allowances(learn)?;
        let mut out: Option<PerPhase> = None;
        for (lens, allowance) in learn.lenses.iter().zip(allowances) {
            let from = self.reference(*lens, at, latest);
            let this = PerPhase(Phase::ALL.map(|p| from.get(p) + allowance.get(p).max(at_least.get(p))));
            out = Some(out.map_or(this, |o| PerPhase(Phase::ALL.map(|p| o.get(p).min(this.get(p))))));
        }
        out
    }
}

/// The largest rise per phase of each of a bucket's first `entries` (the lenses', then each hold's)
/// over every bucket.
fn worst_of(rises: &VecDeque<(u64, Vec<[u32; 3]>)>, entries: usize) -> Vec<[u32; 3]> {
    let mut worst = vec![[0; 3]; entries];
    for (_, r) in rises {
        for (w, r) in worst.iter_mut().zip(r) {
            *w = [0, 1, 2].map(|k| w[k].max(r[k]));
        }
    }
    worst
}

/// The `rank`-th highest of some readings, per phase (`None`: there are none).
fn ranked(readings: impl Iterator<Item = PerPhase>, rank: usize) -> Option<PerPhase> {
    let readings: Vec<PerPhase> = readings.collect();
    let k = rank.max(1).min(readings.len()).checked_sub(1)?;
    Some(PerPhase(Phase::ALL.map(|p| {
        let mut v: Vec<DeciAmps> = readings.iter().map(|r| r.get(p)).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v[k]
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learn() -> RiseLearning {
        RiseLearning {
            horizon: Millis::from_secs(120),
            lenses: vec![Lens::highest(Millis::from_secs(60))],
            min_history: Millis::from_secs(3600),
            memory: Millis::from_secs(2 * 3600),
            headroom_pct: 20,
            holds: Vec::new(),
        }
    }

    fn a(amps: u32) -> DeciAmps {
        DeciAmps::from_amps(amps)
    }

    fn pp(l1: u32, l2: u32, l3: u32) -> PerPhase {
        PerPhase([DeciAmps::from_amps(l1), DeciAmps::from_amps(l2), DeciAmps::from_amps(l3)])
    }

    fn minute(m: u64) -> Millis {
        Millis::from_secs(60 * m)
    }

    #[test]
    fn a_meter_that_repeats_one_reading_for_long_enough_is_frozen() {
        let mut u = Unchanged::default();
        let after = Millis::from_secs(15 * 60);
        let silence = Millis::from_secs(120);
        for m in 0..15 {
            assert!(!u.frozen(minute(m), pp(30, 20, 10), after, silence), "minute {m}");
        }
        assert!(
            u.frozen(minute(15), pp(30, 20, 10), after, silence),
            "a quarter of an hour to the tenth of an amp"
        );
        assert!(u.frozen(minute(16), pp(30, 20, 10), after, silence));
        // A tenth of an amp on one phase is a live meter again; the count starts over.
        let moved = PerPhase([DeciAmps::new(300), DeciAmps::new(201), DeciAmps::new(100)]);
        for m in 17..32 {
            assert!(!u.frozen(minute(m), moved, after, silence), "minute {m}");
        }
        assert!(u.frozen(minute(32), moved, after, silence));
        // Silent for longer than a reading stays fresh, then the same reading again: back from an
        // outage, not stuck; the count starts over.
        assert!(!u.frozen(minute(35), moved, after, silence));
        for m in 36..50 {
            assert!(!u.frozen(minute(m), moved, after, silence), "minute {m}");
        }
        assert!(u.frozen(minute(50), moved, after, silence));
        // A store switched off is still, and believed: under 2 A on every phase.
        let mut off = Unchanged::default();
        let still = PerPhase([DeciAmps::new(19), DeciAmps::ZERO, DeciAmps::new(5)]);
        assert!((0..120).all(|m| !off.frozen(minute(m), still, after, silence)));
        // Zero: never frozen.
        let mut never = Unchanged::default();
        assert!((0..120).all(|m| !never.frozen(minute(m), pp(30, 20, 10), Millis(0), silence)));
    }

    #[test]
    fn a_reading_far_below_the_stores_floor_is_not_believed() {
        let l = learn();
        let mut h = RiseHistory::default();
        for m in 0..60 {
            // Never below 20 / 10 / 1 A: L3's floor is too small to check.
            let low = m % 10 == 0;
            h.observe(&l, minute(m), if low { pp(20, 10, 1) } else { pp(50, 40, 30) });
        }
        assert!(h.implausible(&l, pp(0, 0, 0)).is_empty(), "59 minutes of history: nothing to go by");
        h.observe(&l, minute(60), pp(50, 40, 30));
        assert_eq!(
            h.implausible(&l, pp(0, 0, 0)),
            vec![Phase::L1, Phase::L2],
            "a loose clamp on every phase"
        );
        assert_eq!(h.implausible(&l, pp(9, 6, 0)), vec![Phase::L1], "9 A is below half of L1's 20 A");
        assert!(h.implausible(&l, pp(10, 5, 0)).is_empty(), "half the floor is believed");
        // The floor is forgotten with the rises: two hours on, a store that now reads 20 A less
        // around the clock is believed again (the lowest remembered is 30 A on L1).
        for m in 61..=200 {
            h.observe(&l, minute(m), pp(30, 40, 30));
        }
        assert!(h.implausible(&l, pp(15, 20, 15)).is_empty());
        assert_eq!(h.implausible(&l, pp(14, 20, 15)), vec![Phase::L1]);
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
        assert_eq!(h.reference(l.lenses[0], minute(2), pp(52, 41, 29)), pp(58, 41, 30));
        let second = Lens { window: minute(2), rank: 2 };
        assert_eq!(h.reference(second, minute(2), pp(52, 41, 29)), pp(52, 40, 30));
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

    #[test]
    fn our_policy_remembers_a_rise_for_four_weeks() {
        // One 10 A spike on L1 on the first day, then a flat store: the worst of the last week
        // alone would forget it after seven days; the policy keeps it for 28.
        let l = RiseLearning::from_four_weeks(minute(2), minute(1));
        let mut h = RiseHistory::default();
        let day = 24 * 60;
        let allowance_on = |h: &mut RiseHistory, until_day: u64| {
            for m in (until_day - 1) * day..until_day * day {
                h.observe(&l, minute(m), pp(if m == 100 { 60 } else { 50 }, 40, 30));
            }
            h.allowance(&l)
        };
        assert_eq!(allowance_on(&mut h, 1), None, "less than a day of history");
        // 10 A plus 10 %.
        for d in 2..=28 {
            assert_eq!(allowance_on(&mut h, d), Some(pp(11, 0, 0)), "day {d}");
        }
        assert_eq!(allowance_on(&mut h, 29), Some(pp(0, 0, 0)), "forgotten once 28 days old");
    }

    proptest::proptest! {
        /// The largest rise kept as readings come and hours are forgotten is the largest of the
        /// hours remembered, whatever the readings.
        #[test]
        fn the_kept_worst_is_the_worst_of_the_hours_remembered(
            steps in proptest::collection::vec((1u64..40, 0u32..400, 0u32..400, 0u32..400), 1..400),
        ) {
            let mut l = learn();
            l.lenses = vec![Lens::highest(minute(1)), Lens { window: minute(10), rank: 3 }];
            let mut h = RiseHistory::default();
            let mut at = 0;
            for (gap_min, a, b, c) in steps {
                at += gap_min;
                h.observe(&l, minute(at), PerPhase([DeciAmps::new(a), DeciAmps::new(b), DeciAmps::new(c)]));
                let rescanned = worst_of(&h.rises, h.worst.len());
                proptest::prop_assert_eq!(&h.worst, &rescanned);
            }
        }
    }

    #[test]
    fn limits_may_hold_as_long_as_the_store_never_climbed_past_the_plan_in_that_time() {
        let mut l = learn();
        l.holds = vec![minute(12), minute(5), minute(1)];
        let hold_after = |l: &RiseLearning, store: &dyn Fn(u64) -> u32| {
            let mut h = RiseHistory::default();
            assert_eq!(h.longest_hold(l), None, "nothing learned yet");
            for m in 0..=130 {
                h.observe(l, minute(m), pp(50, store(m), 30));
            }
            (h.allowance(l).map(|a| a.get(Phase::L2)), h.longest_hold(l))
        };
        // One-reading spikes of 10 A on a flat store: within any hold it rises no further than
        // over the blind spot (10 A, 12 A allowed).
        let spiky = |m: u64| if m % 20 == 10 { 50 } else { 40 };
        assert_eq!(hold_after(&l, &spiky), (Some(a(12)), Some(minute(12))));
        // The same spike once an hour, and a climb of 1 A a minute for 14 minutes: 2 A over the
        // blind spot, 7 A within five minutes after it, 14 A within twelve.
        let staircase = |m: u64| match m % 60 {
            k @ 0..=14 => 40 + u32::try_from(k).unwrap(),
            15..=29 => 54,
            45 => 50,
            _ => 40,
        };
        assert_eq!(hold_after(&l, &staircase), (Some(a(12)), Some(minute(5))));
        // Climbing 1 A a minute, always: 2.4 A allowed, 3 A within even the shortest hold.
        let climbing = |m: u64| 40 + u32::try_from(m % 35).unwrap();
        assert_eq!(hold_after(&l, &climbing), (Some(DeciAmps::new(24)), Some(minute(1))), "the shortest");
        // Without holds nothing is chosen.
        l.holds.clear();
        assert_eq!(hold_after(&l, &climbing).1, None);
    }

    #[test]
    fn the_plan_takes_the_lowest_of_the_lenses_bounds() {
        // A store at 50 A with a one-reading spike of 20 A every 20 minutes.
        let mut l = learn();
        l.lenses = vec![Lens::highest(minute(1)), Lens { window: minute(5), rank: 2 }];
        let mut h = RiseHistory::default();
        let v = |m: u64| if m % 20 == 10 { 70 } else { 50 };
        for m in 0..=70 {
            h.observe(&l, minute(m), pp(v(m), 50, 50));
        }
        // Both lenses saw the spike rise 20 A over their reference: 24 A with headroom.
        assert_eq!(h.allowances(&l), Some(vec![pp(24, 0, 0), pp(24, 0, 0)]));
        // Just after a spike, the highest-of-a-minute lens starts from it; the second highest of
        // five minutes does not (one spike is one reading): 50 + 24, not 70 + 24.
        h.observe(&l, minute(71), pp(50, 50, 50));
        let none = pp(0, 0, 0);
        assert_eq!(h.bound(&l, minute(71), pp(50, 50, 50), none), Some(pp(74, 50, 50)));
        // At least the rise given (a late reading: the configured rise).
        assert_eq!(h.bound(&l, minute(71), pp(50, 50, 50), pp(30, 30, 30)), Some(pp(80, 80, 80)));
    }
}
