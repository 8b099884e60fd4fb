//! Unit tests for the balancer state machine: one behaviour per test, tables where
//! the behaviour has cases.

use super::*;
use crate::balancer::config::{CircuitConfig, ConnectorConfig};
use crate::balancer::store::RiseLearning;
use crate::balancer::units::Rotation;

const L1: Phase = Phase::L1;
const L2: Phase = Phase::L2;
const L3: Phase = Phase::L3;

fn a(x: u32) -> DeciAmps {
    DeciAmps::from_amps(x)
}

fn conn(k: u32, circuit: Option<u32>, rot: [Phase; 3], fallback: u32) -> ConnectorConfig {
    ConnectorConfig {
        key: ConnectorKey(k),
        charger: ChargerKey(k),
        circuit: circuit.map(CircuitId),
        max: a(32),
        wiring: Wiring::ThreePhase,
        rotation: Rotation(rot),
        fallback: a(fallback),
    }
}

fn site(grid: [u32; 3], circuits: Vec<CircuitConfig>, conns: Vec<ConnectorConfig>) -> SiteConfig {
    let mut c = SiteConfig::with_defaults(PerPhase(grid.map(a)), circuits, conns);
    c.hysteresis = a(1);
    c
}

/// A test driver: events in, commands collected, acks on demand.
struct H {
    b: Balancer,
    now: Millis,
    sent: Vec<Command>,
}

impl H {
    fn new(cfg: SiteConfig) -> H {
        let mut h =
            H { b: Balancer::new(cfg).expect("test config is valid"), now: Millis(0), sent: Vec::new() };
        h.store([0, 0, 0]);
        h
    }
    fn ev(&mut self, e: Event) -> Vec<Command> {
        self.b.handle(e, self.now).expect("test event is valid");
        let c = self.b.poll_commands(self.now);
        self.sent.extend(c.clone());
        c
    }
    /// Two three-phase cars that have just started on a 40 A site, their limits in force.
    fn two_cars_on_40_a() -> H {
        let mut h = H::new(site([40; 3], vec![], vec![conn(0, None, ST, 0), conn(1, None, ST, 0)]));
        h.start(0, three());
        h.start(1, three());
        h.settle();
        h
    }
    /// A minute on, connector 0's car is read drawing `amps` on every phase.
    fn minute_reading(&mut self, amps: DeciAmps) {
        self.advance(60);
        self.tick();
        let measured_at = self.now;
        self.ev(Event::ConnectorMeter {
            connector: ConnectorKey(0),
            currents: [amps; 3],
            energy_wh: None,
            measured_at,
        });
        self.settle();
    }
    fn store(&mut self, amps: [u32; 3]) -> Vec<Command> {
        self.ev(Event::StoreMeter { currents: PerPhase(amps.map(a)), measured_at: self.now })
    }
    fn start(&mut self, k: u32, info: SessionInfo) -> Vec<Command> {
        self.ev(Event::SessionStarted { connector: ConnectorKey(k), session: SessionKey(u64::from(k)), info })
    }
    fn advance(&mut self, secs: u64) {
        self.now = self.now + Millis::from_secs(secs);
    }
    /// Time passes with the store meter still reporting (fresh, unchanged).
    fn tick(&mut self) {
        let last = self.b.store.map(|s| s.0).expect("tests start with a reading");
        self.ev(Event::StoreMeter { currents: last, measured_at: self.now });
    }
    /// Time passed with nothing else happening: the commands it brings.
    fn tick_commands(&mut self) -> Vec<Command> {
        self.ev(Event::Tick)
    }
    /// Acks everything in flight, repeatedly, until the balancer is quiet.
    fn settle(&mut self) {
        for _ in 0..20 {
            let pending = std::mem::take(&mut self.sent);
            if pending.is_empty() {
                return;
            }
            for c in pending {
                self.b.ack(c.id(), self.now).expect("ack of a sent command");
                let more = self.b.poll_commands(self.now);
                self.sent.extend(more);
            }
        }
        panic!("balancer never settled");
    }
    fn target(&self, k: u32) -> DeciAmps {
        self.view(k).target
    }
    fn view(&self, k: u32) -> ConnectorView {
        self.b
            .snapshot(self.now)
            .connectors
            .into_iter()
            .find(|c| c.connector == ConnectorKey(k))
            .expect("connector exists")
    }
    /// The store load the balancer plans with now.
    fn store_assumed(&self) -> PerPhase {
        self.b.snapshot(self.now).store_assumed
    }
    /// Connector `k`'s car draws `amps` on each phase, read now.
    fn car_reads(&mut self, k: u32, amps: u32) {
        let reading = Event::ConnectorMeter {
            connector: ConnectorKey(k),
            currents: [a(amps); 3],
            energy_wh: None,
            measured_at: self.now,
        };
        self.ev(reading);
    }
    fn acked(&self, k: u32) -> DeciAmps {
        self.view(k).acked
    }
}

fn three() -> SessionInfo {
    SessionInfo { ev_phases: Some(EvPhases::Three), ..Default::default() }
}
fn one() -> SessionInfo {
    SessionInfo { ev_phases: Some(EvPhases::One), ..Default::default() }
}
const ST: [Phase; 3] = [L1, L2, L3];
const R2: [Phase; 3] = [L2, L3, L1];

#[test]
fn grid_limit_is_shared_equally() {
    // (grid per phase, store per phase, sessions, expected each)
    let table: &[(u32, u32, u32, u32)] =
        &[(64, 0, 2, 32), (60, 0, 3, 20), (60, 20, 2, 20), (100, 0, 2, 32), (40, 10, 5, 6)];
    for &(grid, store, n, want) in table {
        let mut h = H::new(site([grid; 3], vec![], (0..n).map(|k| conn(k, None, ST, 0)).collect()));
        h.store([store; 3]);
        for k in 0..n {
            h.start(k, three());
        }
        h.settle();
        for k in 0..n {
            assert_eq!(h.acked(k), a(want), "grid {grid} store {store} n {n} connector {k}");
        }
    }
}

#[test]
fn phases_and_rotation_decide_which_limit_binds() {
    // grid L1 40, L2 20, L3 40
    // (rotation, car phases, expected)
    let table: &[([Phase; 3], SessionInfo, u32)] = &[
        (ST, one(), 32),                  // loads L1 only: its own max binds
        (R2, one(), 20),                  // loads L2 only
        (ST, SessionInfo::default(), 20), // unknown phases: counted on all, L2 binds
        (ST, three(), 20),
    ];
    for (rot, info, want) in table {
        let mut h = H::new(site([40, 20, 40], vec![], vec![conn(0, None, *rot, 0)]));
        h.start(0, info.clone());
        h.settle();
        assert_eq!(h.acked(0), a(*want), "{rot:?} {info:?}");
    }
}

#[test]
fn learned_single_phase_frees_the_other_phases() {
    let mut h = H::new(site([20, 20, 20], vec![], vec![conn(0, None, ST, 0), conn(1, None, R2, 0)]));
    h.start(0, SessionInfo::default());
    h.start(1, SessionInfo::default());
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (a(10), a(10)), "unknown phases: both on all phases");
    h.advance(10);
    let m = Event::ConnectorMeter {
        connector: ConnectorKey(0),
        currents: [a(10), a(0), a(0)],
        energy_wh: None,
        measured_at: h.now,
    };
    h.ev(m);
    h.settle();
    // Car 0 loads L1 only now; car 1 (still unknown) is held by... nothing shared on
    // L2/L3 but car 0 is off those, so both may use 20.
    assert_eq!(h.view(0).budget_phases, PhaseSet::single(L1));
    assert_eq!((h.acked(0), h.acked(1)), (a(10), a(10)), "both were within hysteresis-free range");
    assert_eq!((h.target(0), h.target(1)), (a(10), a(10)));
}

#[test]
fn nested_circuits_bind_at_each_level() {
    // F1 (40 A) contains F2 (20 A). Two cars on F2, one on F1, one on the grid (100 A).
    let circuits = vec![
        CircuitConfig { id: CircuitId(1), parent: None, limit: PerPhase::uniform(a(40)) },
        CircuitConfig { id: CircuitId(2), parent: Some(CircuitId(1)), limit: PerPhase::uniform(a(20)) },
    ];
    let conns =
        vec![conn(0, Some(2), ST, 0), conn(1, Some(2), ST, 0), conn(2, Some(1), ST, 0), conn(3, None, ST, 0)];
    let mut h = H::new(site([100; 3], circuits, conns));
    for k in 0..4 {
        h.start(k, three());
    }
    h.settle();
    assert_eq!([0, 1, 2, 3].map(|k| h.acked(k)), [a(10), a(10), a(20), a(32)]);
    let snap = h.b.snapshot(h.now);
    assert_eq!(snap.nodes[1].budgeted, PerPhase::uniform(a(40)));
    assert_eq!(snap.nodes[2].budgeted, PerPhase::uniform(a(20)));
}

#[test]
fn a_car_with_a_low_maximum_leaves_capacity_to_others() {
    let mut h = H::new(site([40; 3], vec![], vec![conn(0, None, ST, 0), conn(1, None, ST, 0)]));
    h.start(0, SessionInfo { ev_max: Some(a(10)), ..three() });
    h.start(1, three());
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (a(10), a(30)), "declared maximum");

    // Learned: offered 20, draws 12 for longer than the window.
    let mut h = H::two_cars_on_40_a();
    assert_eq!(h.acked(0), a(20));
    for _ in 0..4 {
        h.minute_reading(a(12));
    }
    assert_eq!(h.view(0).learned_max, Some(DeciAmps::new(125)), "draw + a quarter of the margin");
    assert_eq!((h.acked(0), h.acked(1)), (DeciAmps::new(125), DeciAmps::new(275)));
    // A car that now draws all of its learned maximum may want more: offered its share again.
    {
        let mut h = H { b: h.b.clone(), now: h.now, sent: Vec::new() };
        h.minute_reading(DeciAmps::new(125));
        assert_eq!(h.view(0).learned_max, None);
        assert_eq!((h.acked(0), h.acked(1)), (a(20), a(20)));
    }
    // After probe_after the car is offered a little more (the 2 A margin), not its whole
    // share: the other car keeps the rest.
    h.advance(901);
    h.tick();
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (DeciAmps::new(145), DeciAmps::new(255)), "probed upward by 2 A");
    // A car that takes it wants more: its maximum is forgotten and it gets its share again.
    {
        let mut h = H { b: h.b.clone(), now: h.now, sent: Vec::new() };
        h.minute_reading(DeciAmps::new(145));
        assert_eq!(h.view(0).learned_max, None);
        assert_eq!((h.acked(0), h.acked(1)), (a(20), a(20)));
    }
    // One that still draws 12 A under the probe confirms its maximum once the learning window
    // has passed, and is held there again.
    h.minute_reading(a(12));
    assert_eq!(h.acked(0), DeciAmps::new(145), "one reading within the window proves nothing");
    for _ in 0..2 {
        h.minute_reading(a(12));
    }
    assert_eq!(h.view(0).learned_max, Some(DeciAmps::new(125)));
    assert_eq!((h.acked(0), h.acked(1)), (DeciAmps::new(125), DeciAmps::new(275)), "back at its maximum");
    // A probe it did not take doubles the wait for the next: nothing after another 15 minutes,
    // the probe after 30.
    for _ in 0..16 {
        h.minute_reading(a(12));
    }
    assert_eq!(h.acked(0), DeciAmps::new(125), "no probe 16 minutes after a failed one");
    let mut probed = None;
    for m in 17..=32 {
        h.minute_reading(a(12));
        if probed.is_none() && h.acked(0) == DeciAmps::new(145) {
            probed = Some(m);
        }
    }
    // (Confirmed at the reading before the one that held it: 29 readings after that one.)
    assert_eq!(probed, Some(29), "probed again half an hour after the failed one, not 15 minutes");
    assert_eq!(h.acked(0), DeciAmps::new(125), "and held at its maximum again");
}

#[test]
fn a_cars_maximum_is_learned_while_a_new_limit_is_still_in_flight() {
    let mut h = H::two_cars_on_40_a();
    assert_eq!(h.acked(0), a(20));
    // The store rises: both cars are lowered to 18 A, and no answer comes back for a while
    // (a slow link), so the car may be under 20 A or 18 A.
    let cmds = h.store([4, 4, 4]);
    assert_eq!(limit_for(&cmds, 0).map(|l| l.1), Some(a(18)));
    let minute = |h: &mut H, amps: u32| {
        h.advance(60);
        h.store([4, 4, 4]);
        h.car_reads(0, amps);
    };
    // 17 A is clearly below 20 but not below 18: it may be following the new limit.
    for _ in 0..4 {
        minute(&mut h, 17);
    }
    assert_eq!(h.view(0).learned_max, None, "drawing near the lower of the two limits teaches nothing");
    // 12 A is clearly below either, for longer than the window: its maximum, learned unanswered.
    for _ in 0..4 {
        minute(&mut h, 12);
    }
    assert_eq!(h.view(0).learned_max, Some(DeciAmps::new(125)));
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (DeciAmps::new(125), DeciAmps::new(235)));
}

#[test]
fn below_six_amps_sessions_pause_and_take_turns_after_the_dwell() {
    // 13 A per phase: two sessions at 6 A, the third must wait.
    let mut cfg = site([13; 3], vec![], (0..3).map(|k| conn(k, None, ST, 0)).collect());
    cfg.min_dwell = Millis::from_secs(300);
    let mut h = H::new(cfg);
    for k in 0..3 {
        h.start(k, three());
    }
    h.settle();
    let running = |h: &H| (0..3).filter(|&k| h.acked(k) > DeciAmps::ZERO).collect::<Vec<_>>();
    let first = running(&h);
    assert_eq!(first.len(), 2);
    for k in 0..3 {
        let t = h.acked(k);
        assert!(t == DeciAmps::ZERO || t >= DeciAmps::IEC_MIN, "never between 0 and 6 A");
    }
    // Before the dwell is over nothing flips.
    h.advance(200);
    h.tick();
    h.settle();
    assert_eq!(running(&h), first);
    // After it, the paused session (least served) gets a turn.
    h.advance(101);
    h.tick();
    h.settle();
    let second = running(&h);
    assert_eq!(second.len(), 2);
    let waited = (0..3).find(|k| !first.contains(k)).expect("one was paused");
    assert!(second.contains(&waited), "the waiting session runs now: {first:?} -> {second:?}");
    // And again no flip within the next dwell.
    h.advance(299);
    h.tick();
    h.settle();
    assert_eq!(running(&h), second);
}

#[test]
fn stale_meter_means_worst_case_store() {
    let mut cfg = site([100; 3], vec![], vec![conn(0, None, ST, 0)]);
    cfg.store.worst_case = PerPhase::uniform(a(80));
    cfg.store.max_age = Millis::from_secs(60);
    let mut h = H::new(cfg);
    h.store([70, 70, 70]);
    h.start(0, three());
    h.settle();
    assert_eq!(h.acked(0), a(30));
    h.advance(30);
    h.ev(Event::Tick);
    h.settle();
    assert_eq!(h.acked(0), a(30), "reading still fresh");
    assert!(!h.b.snapshot(h.now).store_worst_case);
    h.advance(31);
    h.ev(Event::Tick);
    h.settle();
    assert_eq!(h.acked(0), a(20), "stale: worst case 80 A assumed, not the last 70 A");
    assert!(h.b.snapshot(h.now).store_worst_case);
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(80)));
}

#[test]
fn the_store_may_have_risen_since_an_old_reading() {
    let mut cfg = site([100; 3], vec![], vec![conn(0, None, ST, 0)]);
    cfg.store.rise_per_min = a(10);
    cfg.store.max_rise = a(15);
    cfg.store.max_age = Millis::from_secs(600);
    cfg.store.replan = Millis::from_secs(6);
    let mut h = H::new(cfg);
    h.store([50; 3]);
    h.start(0, three());
    h.settle();
    assert_eq!(h.acked(0), a(32));
    assert_eq!(
        h.store_assumed(),
        PerPhase::uniform(a(51)),
        "fresh: only what it may rise until the next plan"
    );
    assert_eq!(
        h.b.poll_timeout(h.now),
        Some(h.now + Millis::from_secs(6)),
        "the plan is renewed while the reading ages"
    );
    h.advance(60);
    h.ev(Event::Tick);
    h.settle();
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(61)), "60 s old + 6 s to the next plan, at 10 A/min");
    h.advance(120);
    h.ev(Event::Tick);
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(65)), "rise capped");
    assert_eq!(h.b.poll_timeout(h.now), Some(h.now + Millis::from_secs(6)));
}

/// One 32 A connector; the store rise learned over two minutes (a minute's meter lag and a minute
/// to react) once a day of readings is in, configured at 14 A/min up to 16 A before.
fn learning_site() -> SiteConfig {
    let mut cfg = site([100; 3], vec![], vec![conn(0, None, ST, 0)]);
    cfg.store.rise_per_min = a(14);
    cfg.store.max_rise = a(16);
    cfg.store.reaction_time = Millis::from_secs(60);
    cfg.store.replan = Millis(0);
    cfg.store.learn_rise = Some(RiseLearning::from_four_weeks(Millis::from_secs(120), Millis::from_secs(60)));
    cfg
}

#[test]
fn the_store_rise_is_learned_from_a_day_of_meter_history() {
    let mut cfg = learning_site();
    cfg.store.max_age = Millis::from_secs(180);
    // No first reading at time zero: the history comes first.
    let mut h = H { b: Balancer::new(cfg).expect("test config is valid"), now: Millis(0), sent: Vec::new() };
    // A day of a store at 40/35/30 A whose L1 jumps by 5 A for one minute every hour.
    let minutes = 24 * 60;
    h.b.learn_store_history((0..=minutes).map(|m| {
        let l1 = if m % 60 == 30 { 45 } else { 40 };
        (Millis::from_secs(60 * m), PerPhase([a(l1), a(35), a(30)]))
    }));
    let learned = PerPhase([DeciAmps::new(55), a(0), a(0)]);
    assert_eq!(h.b.learned_store_rise(), Some(learned), "5 A + 10 %");
    h.now = Millis::from_secs(60 * (minutes + 1));
    h.store([40, 35, 30]);
    h.start(0, three());
    h.settle();
    let snap = h.b.snapshot(h.now);
    assert_eq!(snap.store_rise_learned, Some(learned));
    // Fresh reading: 60 s reaction, inside the learned horizon: the learned rise, per phase.
    assert_eq!(
        snap.store_assumed,
        PerPhase([DeciAmps::new(455), a(35), a(30)]),
        "not the configured 14 A on every phase"
    );
    assert_eq!(h.acked(0), a(32));
    // A reading of the usual age (60 s) plus the reaction is still the learned horizon. The plan
    // takes the lowest of the references' bounds: the higher of the latest two readings (44 A) plus
    // its 5.5 A, the second highest of the last five minutes (41 A) plus its own, or the third
    // highest of the last ten (40 A) plus its own 5.5 A.
    h.advance(60);
    h.store([44, 35, 30]);
    h.advance(60);
    h.store([41, 35, 30]);
    h.advance(60);
    h.ev(Event::Tick);
    assert_eq!(
        h.store_assumed(),
        PerPhase([DeciAmps::new(455), a(35), a(30)]),
        "40 A + 5.5 A, not 44 A + 5.5 A"
    );
    // Older than the learned horizon: the configured rise where it is larger (on 40 A).
    h.advance(60);
    h.ev(Event::Tick);
    assert_eq!(h.store_assumed(), PerPhase([a(56), a(51), a(46)]), "120 s old + 60 s: capped 16 A");
}

#[test]
fn a_store_meter_reading_far_below_anything_it_read_is_set_aside() {
    let mut cfg = learning_site();
    cfg.store.max_age = Millis::from_secs(180);
    let worst = cfg.store.worst_case;
    let mut h = H { b: Balancer::new(cfg).expect("test config is valid"), now: Millis(0), sent: Vec::new() };
    // A day of a store that never drew less than 40/35/30 A, with one stretch of zeros from the
    // gateway in the stored history: not learned from after a restart either.
    let minutes = 2 * 24 * 60;
    h.b.learn_store_history((0..=minutes).map(|m| {
        let flat = if (1600..1610).contains(&m) { [0, 0, 0] } else { [40, 35, 30] };
        (Millis::from_secs(60 * m), PerPhase(flat.map(a)))
    }));
    assert_eq!(h.b.learned_store_rise(), Some(PerPhase([a(0); 3])), "no rise from the zeros back to 40 A");
    h.now = Millis::from_secs(60 * (minutes + 1));
    h.store([40, 35, 30]);
    h.start(0, three());
    h.settle();
    assert_eq!(h.acked(0), a(32));
    // The clamp on L1 comes loose: 1 A, while L2 and L3 read what they did. Nothing of it is
    // believed: the worst case counts at once, on every phase.
    h.advance(60);
    let cmds = h.store([1, 35, 30]);
    let snap = h.b.snapshot(h.now);
    assert_eq!(snap.store_meter_set_aside, Some(SetAside { why: MeterDoubt::FarBelowFloor, since: h.now }));
    assert_eq!(snap.store_reading, Some(PerPhase([a(40), a(35), a(30)])), "the last believed reading, shown");
    assert!(snap.store_worst_case);
    assert_eq!(snap.store_assumed, worst);
    let (_, down, _) = limit_for(&cmds, 0).expect("the car gives the worst case its room");
    assert!(down < a(32), "{down:?}");
    // It keeps reading 1 A: still the worst case, flagged since the first.
    let since = h.now;
    for _ in 0..3 {
        h.advance(60);
        h.store([1, 35, 30]);
    }
    let snap = h.b.snapshot(h.now);
    assert!(snap.store_worst_case);
    assert_eq!(snap.store_assumed, worst);
    assert_eq!(snap.store_meter_set_aside.map(|s| s.since), Some(since), "since the first");
    // Fixed: believed again, and the jump back from 1 A teaches no rise.
    h.advance(60);
    h.store([40, 35, 30]);
    let snap = h.b.snapshot(h.now);
    assert_eq!(snap.store_meter_set_aside, None);
    assert!(!snap.store_worst_case);
    assert_eq!(snap.store_rise_learned, Some(PerPhase([a(0); 3])));
}

#[test]
fn a_store_meter_that_repeats_one_reading_for_a_quarter_of_an_hour_is_set_aside() {
    // No history needed: a store is never that still.
    let mut cfg = site([60; 3], vec![], vec![conn(0, None, ST, 0)]);
    cfg.store.worst_case = PerPhase::uniform(a(50));
    cfg.store.frozen_after = crate::balancer::store::FROZEN_AFTER;
    let mut h = H::new(cfg);
    h.store([40, 35, 30]);
    h.start(0, three());
    h.settle();
    assert_eq!(h.acked(0), a(20), "60 A less the store's 40 A on L1");
    // The gateway loses the meter and posts its last value every minute.
    for _ in 0..14 {
        h.advance(60);
        h.store([40, 35, 30]);
    }
    assert_eq!(h.b.snapshot(h.now).store_meter_set_aside, None, "14 minutes still is believed");
    h.advance(60);
    let cmds = h.store([40, 35, 30]);
    let snap = h.b.snapshot(h.now);
    assert_eq!(snap.store_meter_set_aside, Some(SetAside { why: MeterDoubt::Unchanged, since: h.now }));
    assert!(snap.store_worst_case);
    assert_eq!(snap.store_assumed, PerPhase::uniform(a(50)));
    let (_, down, _) = limit_for(&cmds, 0).expect("the car makes room for the worst case");
    assert_eq!(down, a(10));
    // The meter is back: the store moved a tenth of an amp, which is believed.
    h.settle();
    h.advance(60);
    h.ev(Event::StoreMeter { currents: PerPhase([DeciAmps::new(401), a(35), a(30)]), measured_at: h.now });
    h.settle();
    let snap = h.b.snapshot(h.now);
    assert_eq!(snap.store_meter_set_aside, None);
    assert!(!snap.store_worst_case);
    assert_eq!(h.acked(0), DeciAmps::new(199));
}

#[test]
fn a_store_meter_that_was_repeating_itself_before_a_restart_is_set_aside_at_once() {
    let mut cfg = site([60; 3], vec![], vec![conn(0, None, ST, 0)]);
    cfg.store.worst_case = PerPhase::uniform(a(50));
    cfg.store.frozen_after = crate::balancer::store::FROZEN_AFTER;
    let mut h = H { b: Balancer::new(cfg).expect("test config is valid"), now: Millis(0), sent: Vec::new() };
    // The stored history: a live meter for an hour, then twenty minutes of one value.
    let history: Vec<(Millis, PerPhase)> = (0u64..80)
        .map(|m| {
            let l1 = if m < 60 { 30 + m % 7 } else { 40 };
            (Millis::from_secs(60 * m), PerPhase([a(u32::try_from(l1).expect("amps")), a(35), a(30)]))
        })
        .collect();
    let (latest_at, latest) = *history.last().expect("readings");
    h.b.learn_store_history(history);
    h.now = latest_at + Millis::from_secs(5);
    // The restart feeds the latest reading, at its true age.
    h.ev(Event::StoreMeter { currents: latest, measured_at: latest_at });
    let snap = h.b.snapshot(h.now);
    assert_eq!(snap.store_meter_set_aside.map(|s| s.why), Some(MeterDoubt::Unchanged));
    assert!(snap.store_worst_case);
    // Without the history, the same reading is believed.
    let mut cfg = site([60; 3], vec![], vec![conn(0, None, ST, 0)]);
    cfg.store.frozen_after = crate::balancer::store::FROZEN_AFTER;
    let mut fresh = H { b: Balancer::new(cfg).expect("test config is valid"), now: h.now, sent: Vec::new() };
    fresh.ev(Event::StoreMeter { currents: latest, measured_at: latest_at });
    assert_eq!(fresh.b.snapshot(fresh.now).store_meter_set_aside, None);
}

#[test]
fn a_store_seen_climbing_further_within_a_lease_than_planned_for_shortens_the_leases() {
    let mut cfg = learning_site();
    cfg.store.max_age = Millis::from_secs(180);
    cfg.lease = Millis::from_secs(600);
    if let Some(learn) = cfg.store.learn_rise.as_mut() {
        learn.holds = vec![Millis::from_secs(600), Millis::from_secs(120)];
    }
    let mut h = H { b: Balancer::new(cfg).expect("test config is valid"), now: Millis(0), sent: Vec::new() };
    // A day of a store whose L1 jumps 5 A for one minute every hour: over ten minutes more it rises
    // no further than over the blind spot.
    let minutes = 24 * 60;
    h.b.learn_store_history((0..=minutes).map(|m| {
        let l1 = if m % 60 == 30 { 45 } else { 40 };
        (Millis::from_secs(60 * m), PerPhase([a(l1), a(35), a(30)]))
    }));
    h.now = Millis::from_secs(60 * (minutes + 1));
    h.store([40, 35, 30]);
    let first = h.start(0, three());
    assert_eq!(expires_for(&first, 0), Some(Some(h.now + Millis::from_secs(600))), "the full lease");
    h.settle();
    assert_eq!(h.b.snapshot(h.now).lease_s, 600);
    // Then L2 climbs 1 A a minute for a quarter of an hour: 2 A over the blind spot, 12 A within
    // a ten-minute lease after it, 4 A within two. Once the meter has shown that, the lease held
    // is renewed short at once: the shortest, as neither held, but no less than four of our
    // slowest round trips (60 s here), so a renewal sent with half of it left lands in time.
    let mut shortened = None;
    for m in 1..=15 {
        h.advance(60);
        let cmds = h.store([40, 35 + m, 30]);
        if let Some(Some(end)) = expires_for(&cmds, 0) {
            shortened.get_or_insert((m, end.since(h.now)));
        }
        h.settle();
    }
    let (minute, lease) = shortened.expect("the lease is renewed short while the store climbs");
    assert_eq!(lease, Millis::from_secs(240));
    assert!(minute > 2, "not before the climb outgrew the plan's allowance (minute {minute})");
    assert_eq!(h.b.snapshot(h.now).lease_s, 240);
}

#[test]
fn without_a_day_of_history_the_configured_rise_applies() {
    let mut h = H::new(learning_site());
    h.b.learn_store_history((0..600).map(|m| (Millis::from_secs(60 * m), PerPhase::uniform(a(40)))));
    assert_eq!(h.b.learned_store_rise(), None);
    h.now = Millis::from_secs(60 * 600);
    h.store([40, 40, 40]);
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(54)), "60 s reaction at 14 A/min");
    assert_eq!(h.b.snapshot(h.now).store_rise_learned, None);
}

#[test]
fn in_flight_changes_count_the_larger_and_increases_wait_for_the_decrease_ack() {
    let mut h = H::new(site([40; 3], vec![], vec![conn(0, None, ST, 0), conn(1, None, ST, 0)]));
    h.start(0, three());
    h.settle();
    assert_eq!(h.acked(0), a(32));
    // A second session arrives: connector 0 must come down to 20 before 1 may go up.
    let cmds = h.start(1, three());
    let dec = cmds
        .iter()
        .find(|c| matches!(c, Command::SetLimit { connector: ConnectorKey(0), .. }))
        .expect("decrease sent at once")
        .clone();
    assert!(matches!(dec, Command::SetLimit { amps_per_phase, .. } if amps_per_phase == a(20)));
    // Only 8 A are free while the decrease is in flight: 1 may get its floor at most.
    let inc: Vec<_> =
        cmds.iter().filter(|c| matches!(c, Command::SetLimit { connector: ConnectorKey(1), .. })).collect();
    assert!(
        inc.iter().all(|c| matches!(c, Command::SetLimit { amps_per_phase, .. } if *amps_per_phase <= a(8))),
        "{inc:?}"
    );
    assert_eq!(h.view(0).budget, a(32), "in flight: max(old 32, new 20)");
    let snap = h.b.snapshot(h.now);
    assert!(snap.nodes[0].budgeted.get(L1) <= a(40));
    // Other events do not release the increase.
    let m = h.store([0, 0, 0]);
    assert!(m.iter().all(|c| !matches!(c, Command::SetLimit { connector: ConnectorKey(1), amps_per_phase, .. } if *amps_per_phase > a(8))));
    // The ack does.
    h.b.ack(dec.id(), h.now).expect("known command");
    let after = h.b.poll_commands(h.now);
    assert!(
        after.iter().any(|c| matches!(c, Command::SetLimit { connector: ConnectorKey(1), amps_per_phase, .. } if *amps_per_phase == a(20))),
        "{after:?}"
    );
    h.sent = after;
    h.sent.retain(|c| c.id() != dec.id());
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (a(20), a(20)));
}

#[test]
fn idle_and_offline_connectors_are_budgeted_at_their_own_default() {
    // Connector 1 idle with a 10 A TxDefault; connector 2 idle, 6 A.
    let conns = vec![conn(0, None, ST, 0), conn(1, None, ST, 10), conn(2, None, ST, 6)];
    let mut h = H::new(site([40; 3], vec![], conns));
    h.start(0, three());
    h.settle();
    // The car takes its connector's 32 A; what is left keeps connector 2's 6 A default, not
    // connector 1's 10 A.
    assert_eq!(h.acked(0), a(32));
    assert_eq!((h.view(1).budget, h.view(2).budget), (a(0), a(6)));
    h.ev(Event::ChargerOffline { charger: ChargerKey(1) });
    h.settle();
    assert_eq!(h.view(1).budget, a(0), "away, it keeps the default it accepted");
    // A charger that goes offline mid-session keeps counting what it had.
    h.start(2, three());
    h.settle();
    let held = h.acked(2);
    h.ev(Event::ChargerOffline { charger: ChargerKey(2) });
    h.settle();
    assert_eq!(h.view(2).budget, held.max(a(6)));
    assert_eq!(h.acked(0), a(40) - held.max(a(6)));
}

#[test]
fn a_rejected_profile_budgets_the_connector_at_its_maximum() {
    let mut h = H::new(site([60; 3], vec![], vec![conn(0, None, ST, 0), conn(1, None, ST, 0)]));
    h.start(0, three());
    h.settle();
    let cmds = h.start(1, three());
    let to1 =
        cmds.iter().rfind(|c| matches!(c, Command::SetLimit { connector: ConnectorKey(1), .. })).cloned();
    let to1 = to1.expect("connector 1 got a limit");
    h.sent.retain(|c| c.id() != to1.id());
    h.b.reject(to1.id(), h.now).expect("known command");
    h.sent.extend(h.b.poll_commands(h.now));
    h.settle();
    assert_eq!(h.view(1).budget, a(32));
    assert_eq!(h.acked(0), a(28), "60 - 32");
    h.ev(Event::SmartChargingUnsupported { charger: ChargerKey(0) });
    assert_eq!(h.view(0).budget, a(32));
    assert!(h.b.snapshot(h.now).overcommitted, "64 A of maxima on a 60 A grid is reported");
}

#[test]
fn a_charger_counted_unsupported_that_accepts_a_profile_at_boot_is_steered_again() {
    let mut h = H::two_cars_on_40_a();
    h.ev(Event::SmartChargingUnsupported { charger: ChargerKey(0) });
    h.settle();
    assert_eq!((h.view(0).budget, h.acked(1)), (a(32), a(8)));
    // It ran uncontrolled: its maximum counts until it accepts our plan, then its share.
    let cmds = h.ev(Event::SmartChargingSupported { charger: ChargerKey(0) });
    assert_eq!(limit_for(&cmds, 0).map(|l| l.1), Some(a(20)));
    assert_eq!((h.view(0).smart, h.view(0).budget), (SmartState::Ok, a(32)));
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (a(20), a(20)));
}

#[test]
fn a_profile_that_gets_no_answer_counts_at_the_larger_of_old_and_new_and_is_sent_again() {
    let mut h = H::two_cars_on_40_a();
    let cmds = h.store([10; 3]);
    let (lost, amps, _) = limit_for(&cmds, 0).expect("the store rose: connector 0 is brought down");
    assert_eq!(amps, a(15));
    h.sent.retain(|c| c.id() != lost);
    // The link dropped before the charger answered: it runs 20 A or 15 A, not its maximum.
    let again = h.ev(Event::CommandUnanswered { id: lost });
    assert_eq!(limit_for(&again, 0).map(|l| l.1), Some(a(15)), "the plan is sent again");
    let v = h.view(0);
    assert_eq!((v.budget, v.smart), (a(20), SmartState::Ok));
    h.settle();
    assert_eq!((h.acked(0), h.view(0).budget), (a(15), a(15)));
}

#[test]
fn hysteresis_keeps_small_changes_quiet_but_not_zero_crossings() {
    let mut cfg = site([30; 3], vec![], vec![conn(0, None, ST, 0)]);
    cfg.hysteresis = a(2);
    let mut h = H::new(cfg);
    h.start(0, three());
    h.settle();
    assert_eq!(h.acked(0), a(30));
    // (store, commands expected, acked after)
    let table: &[(u32, usize, u32, &str)] = &[
        (1, 1, 29, "a decrease a limit needs is always sent, however small"),
        (0, 0, 29, "1 A more would fit, but is below hysteresis"),
        (5, 1, 25, "decrease"),
        (2, 1, 28, "an increase of 3 A is worth a command"),
        (3, 1, 27, "needed decrease"),
        (26, 1, 0, "below 6 A: paused, crossing zero"),
    ];
    for &(store, n, after, why) in table {
        let c = h.store([store; 3]);
        assert_eq!(c.len(), n, "{why}: {c:?}");
        h.settle();
        assert_eq!(h.acked(0), a(after), "{why}");
    }
}

#[test]
fn unreachable_need_and_finished_cars_get_nothing() {
    let mut h = H::new(site([40; 3], vec![], vec![conn(0, None, ST, 0), conn(1, None, ST, 0)]));
    h.start(0, SessionInfo { energy_need_wh: Some(1000), ..three() });
    h.start(1, three());
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (a(20), a(20)));
    let m = Event::ConnectorMeter {
        connector: ConnectorKey(0),
        currents: [a(20); 3],
        energy_wh: Some(1000),
        measured_at: h.now,
    };
    h.ev(m);
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (DeciAmps::ZERO, a(32)));
}

#[test]
fn the_same_need_gets_the_same_amps_per_phase_whatever_the_cars_phases() {
    // L1 is full: each amp of it gives the 3-phase car three times the energy it gives the
    // 1-phase car, so the same need by the same departure weighs the same per amp, not per kW.
    let mut h = H::new(site([30, 64, 64], vec![], vec![conn(0, None, ST, 0), conn(1, None, ST, 0)]));
    let need = SessionInfo {
        departure: Some(h.now + Millis::from_secs(4 * 3600)),
        energy_need_wh: Some(20_000),
        ..Default::default()
    };
    h.start(0, SessionInfo { ev_phases: Some(EvPhases::Three), ..need.clone() });
    h.start(1, SessionInfo { ev_phases: Some(EvPhases::One), ..need });
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (a(15), a(15)));
}

#[test]
fn invalid_configurations_are_refused() {
    let mut tight = site([40; 3], vec![], (0..3).map(|k| conn(k, None, ST, 10)).collect());
    tight.store.worst_case = PerPhase::uniform(a(11));
    let b = Balancer::new(tight).expect("30 A of fallbacks fit in 40 A");
    assert_eq!(b.warnings().len(), 3, "but not with 11 A of store on top, on any phase");
    let too_many = (0..5).map(|k| conn(k, None, ST, 10)).collect();
    assert!(matches!(
        Balancer::new(site([40; 3], vec![], too_many)),
        Err(ConfigError::InfeasibleFallbacks { .. })
    ));
    let cyc = vec![
        CircuitConfig { id: CircuitId(1), parent: Some(CircuitId(2)), limit: PerPhase::uniform(a(40)) },
        CircuitConfig { id: CircuitId(2), parent: Some(CircuitId(1)), limit: PerPhase::uniform(a(40)) },
    ];
    assert!(matches!(Balancer::new(site([40; 3], cyc, vec![])), Err(ConfigError::CircuitCycle(_))));
    let unknown = vec![conn(0, Some(9), ST, 0)];
    assert!(matches!(Balancer::new(site([40; 3], vec![], unknown)), Err(ConfigError::UnknownCircuit { .. })));
    let mut b = Balancer::new(site([40; 3], vec![], vec![conn(0, None, ST, 0)])).expect("valid");
    assert_eq!(
        b.handle(Event::SessionEnded { connector: ConnectorKey(0) }, Millis(0)),
        Err(EventError::NoSession(ConnectorKey(0)))
    );
    assert_eq!(b.ack(CommandId(77), Millis(0)), Err(EventError::UnknownCommand(CommandId(77))));
}

#[test]
fn a_batch_of_events_is_one_recompute_with_the_same_outcome() {
    let cfg = site([40; 3], vec![], vec![conn(0, None, ST, 0), conn(1, None, ST, 0)]);
    let mut one = H::new(cfg.clone());
    one.start(0, three());
    one.start(1, three());
    one.settle();
    let mut many = H::new(cfg);
    let failed = many.b.handle_all(
        [
            Event::SessionStarted { connector: ConnectorKey(0), session: SessionKey(0), info: three() },
            Event::SessionStarted { connector: ConnectorKey(1), session: SessionKey(1), info: three() },
            Event::SessionEnded { connector: ConnectorKey(7) },
        ],
        many.now,
    );
    assert_eq!(failed.len(), 1, "the unknown connector is reported, the rest applies");
    many.sent = many.b.poll_commands(many.now);
    assert_eq!(many.sent.len(), 2, "one command per session, no intermediate plan");
    many.settle();
    assert_eq!((many.acked(0), many.acked(1)), (one.acked(0), one.acked(1)));
}

#[test]
fn poll_timeout_names_the_next_moment_something_changes_by_itself() {
    let mut cfg = site([40; 3], vec![], vec![conn(0, None, ST, 0)]);
    cfg.store.max_age = Millis::from_secs(60);
    cfg.min_dwell = Millis::from_secs(300);
    let mut h = H::new(cfg);
    assert_eq!(h.b.poll_timeout(h.now), Some(Millis::from_secs(60) + Millis(1)), "store goes stale");
    h.start(0, three());
    h.settle();
    h.advance(50);
    h.tick();
    // Reading renewed at 50 s: stale at 110 s; the session's dwell ends at 300 s.
    assert_eq!(h.b.poll_timeout(h.now), Some(Millis::from_secs(110) + Millis(1)));
    h.advance(100);
    h.tick();
    h.advance(100);
    h.tick();
    assert_eq!(h.b.poll_timeout(h.now), Some(Millis::from_secs(300)));
}

#[test]
fn a_car_that_states_its_needs_later_is_believed() {
    let mut h = H::two_cars_on_40_a();
    assert_eq!((h.acked(0), h.acked(1)), (a(20), a(20)));
    // NotifyEVChargingNeeds: the car on 0 takes at most 8 A.
    h.ev(Event::SessionUpdated {
        connector: ConnectorKey(0),
        info: SessionInfo { ev_max: Some(a(8)), ..three() },
    });
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (a(8), a(32)));
    // ...and later says it can take more again.
    h.ev(Event::SessionUpdated { connector: ConnectorKey(0), info: three() });
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (a(20), a(20)));
}

#[test]
fn a_reconnected_charger_gets_its_limit_again_and_counts_the_worst_meanwhile() {
    let mut h = H::new(site([40; 3], vec![], vec![conn(0, None, ST, 6), conn(1, None, ST, 0)]));
    h.start(0, three());
    h.start(1, three());
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (a(20), a(20)));
    h.ev(Event::ChargerOffline { charger: ChargerKey(0) });
    h.settle();
    assert_eq!(h.view(0).budget, a(20), "offline: keeps what it had");
    let c = h.ev(Event::ChargerOnline { charger: ChargerKey(0) });
    assert!(
        c.iter().any(|c| matches!(c, Command::SetLimit { connector: ConnectorKey(0), amps_per_phase, .. } if *amps_per_phase == a(20))),
        "the plan is sent again although it did not change: {c:?}"
    );
    h.settle();
    assert_eq!(h.acked(0), a(20));
}

#[test]
fn a_rejected_profile_is_retried_with_backoff_until_the_charger_takes_it() {
    let mut h = H::new(site([60; 3], vec![], vec![conn(0, None, ST, 0), conn(1, None, ST, 0)]));
    h.start(0, three());
    h.settle();
    let cmds = h.start(1, three());
    let first = cmds
        .iter()
        .rfind(|c| matches!(c, Command::SetLimit { connector: ConnectorKey(1), .. }))
        .cloned()
        .expect("a limit for 1");
    h.sent.retain(|c| c.id() != first.id());
    h.b.reject(first.id(), h.now).expect("known command");
    h.sent.extend(h.b.poll_commands(h.now));
    h.settle();
    assert_eq!(h.view(1).smart, SmartState::Rejected);
    assert_eq!(h.b.poll_timeout(h.now), Some(h.now + Millis::from_secs(30)), "first retry after 30 s");

    // Not before its time; then at the maximum it is budgeted at anyway.
    h.advance(29);
    assert!(h
        .tick_commands()
        .iter()
        .all(|c| !matches!(c, Command::SetLimit { connector: ConnectorKey(1), .. })));
    h.advance(1);
    let retry = h
        .tick_commands()
        .into_iter()
        .find(|c| matches!(c, Command::SetLimit { connector: ConnectorKey(1), .. }))
        .expect("retried");
    assert!(matches!(retry, Command::SetLimit { amps_per_phase, .. } if amps_per_phase == a(32)));
    assert_eq!(h.view(1).budget, a(32), "still budgeted at its maximum while the retry is in flight");

    // Refused again: the wait doubles.
    h.sent.retain(|c| c.id() != retry.id());
    h.b.reject(retry.id(), h.now).expect("known command");
    assert_eq!(h.b.poll_timeout(h.now), Some(h.now + Millis::from_secs(60)));
    h.sent.extend(h.b.poll_commands(h.now));
    h.settle();

    // Accepted at last: steered again, and the two sessions share the grid.
    h.advance(60);
    h.tick_commands();
    h.settle();
    h.tick();
    h.settle();
    assert_eq!(h.view(1).smart, SmartState::Ok);
    assert_eq!((h.acked(0), h.acked(1)), (a(30), a(30)));
}

#[test]
fn a_limit_we_did_not_set_is_budgeted_until_our_plan_is_acknowledged() {
    let mut h = H::two_cars_on_40_a();
    assert_eq!((h.acked(0), h.acked(1)), (a(20), a(20)));
    // Rebuilt after a restart: connector 0 may be running anything up to its maximum.
    let c = h.ev(Event::LimitUnknown { connector: ConnectorKey(0), up_to: a(32) });
    assert_eq!(h.view(0).budget, a(32));
    assert!(
        c.iter().any(|c| matches!(c, Command::SetLimit { connector: ConnectorKey(0), .. })),
        "our plan goes out again: {c:?}"
    );
    assert!(!c.iter().any(|c| matches!(c, Command::SetLimit { connector: ConnectorKey(1), amps_per_phase, .. } if *amps_per_phase > a(8))));
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (a(20), a(20)));
}

#[test]
fn a_rebuilt_balancer_keeps_what_was_learned_about_the_cars() {
    let mut h = H::new(site([40; 3], vec![], vec![conn(0, None, ST, 0), conn(1, None, ST, 0)]));
    h.start(0, SessionInfo { energy_need_wh: Some(30_000), priority: 1, ..Default::default() });
    h.settle();
    // One phase drawing 12 A of the 32 offered, for longer than the learning window.
    for _ in 0..4 {
        h.advance(60);
        h.tick();
        let m = Event::ConnectorMeter {
            connector: ConnectorKey(0),
            currents: [a(12), a(0), a(0)],
            energy_wh: Some(2_000),
            measured_at: h.now,
        };
        h.ev(m);
        h.settle();
    }
    let before = h.view(0);
    assert_eq!(before.ev_phases, Some(EvPhases::One));
    assert!(before.learned_max.is_some());

    // A third connector is added: the site's balancer is rebuilt and takes the session over.
    let mut cfg = h.b.config().clone();
    cfg.connectors.push(conn(2, None, ST, 0));
    let mut rebuilt = Balancer::new(cfg).expect("valid");
    let carried = h.b.carry(ConnectorKey(0), h.now).expect("a session runs on connector 0");
    assert!(h.b.carry(ConnectorKey(1), h.now).is_none(), "no session on connector 1");
    let reading = h.b.store_reading().expect("read");
    rebuilt.handle(Event::StoreMeter { currents: reading.0, measured_at: reading.1 }, h.now).expect("valid");
    assert!(rebuilt.adopt([(ConnectorKey(0), carried)], h.now).is_empty());
    let mut h2 = H { b: rebuilt, now: h.now, sent: Vec::new() };
    h2.sent = h2.b.poll_commands(h2.now);
    let after = h2.view(0);
    assert_eq!(after.session, before.session);
    assert_eq!(after.ev_phases, Some(EvPhases::One), "phases not learned again");
    assert_eq!(after.learned_max, before.learned_max, "maximum not learned again");
    assert_eq!(after.budget_phases, PhaseSet::single(L1));
    assert!(after.budget >= before.budget, "counted at what it may draw until the charger confirms");
    assert_eq!(h2.b.session_info(ConnectorKey(0)).map(|i| i.priority), Some(1));
    h2.settle();
    assert_eq!(h2.acked(0), before.learned_max.expect("learned"), "planned at its learned maximum at once");
}

#[test]
fn limits_are_leases_renewed_while_we_talk_and_dropped_by_a_charger_that_lost_us() {
    let mut cfg = site([40; 3], vec![], vec![conn(0, None, ST, 0), conn(1, None, ST, 0)]);
    cfg.lease = Millis::from_secs(60);
    let mut h = H::new(cfg);
    h.start(0, three());
    h.start(1, three());
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (a(20), a(20)));
    let expires = |c: &Command| match c {
        Command::SetLimit { expires, .. } => *expires,
        Command::SetDefault { .. } => None,
    };
    // Half the lease gone: the same limits go out again, each a fresh lease.
    h.advance(29);
    assert!(h.tick_commands().is_empty(), "nothing to renew yet");
    assert_eq!(h.b.poll_timeout(h.now), Some(Millis::from_secs(30)), "wakes for the renewal");
    h.advance(1);
    let renewed = h.tick_commands();
    assert_eq!(renewed.len(), 2, "{renewed:?}");
    assert!(renewed
        .iter()
        .all(|c| matches!(c, Command::SetLimit { amps_per_phase, .. } if *amps_per_phase == a(20))));
    assert!(renewed.iter().all(|c| expires(c) == Some(Millis::from_secs(90))));
    h.settle();

    // Charger 1 loses us: its 20 A count until its lease ends, then its fallback (0 A).
    h.ev(Event::ChargerOffline { charger: ChargerKey(1) });
    h.advance(30);
    h.tick();
    h.settle();
    assert_eq!(h.view(1).budget, a(20), "lease still running");
    assert_eq!(h.acked(0), a(20));
    h.advance(30);
    h.tick();
    h.settle();
    assert_eq!(h.view(1).budget, a(0), "lease over: the charger is on its TxDefaultProfile");
    assert_eq!(h.acked(0), a(32), "the freed capacity goes to the car we can steer");
}

/// `cars` three-phase connectors on 60 A, the site meter on the main incomer.
fn incomer_site(cars: u32) -> H {
    let mut cfg = site([60; 3], vec![], (0..cars).map(|k| conn(k, None, ST, 0)).collect());
    cfg.store.meter = crate::balancer::config::SiteMeter::Incomer;
    H::new(cfg)
}

#[test]
fn an_incomer_meter_counts_the_store_as_what_the_cars_did_not_draw() {
    let mut h = incomer_site(2);
    h.start(0, SessionInfo { ev_max: Some(a(16)), ..three() });
    h.start(1, SessionInfo { ev_max: Some(a(16)), ..three() });
    h.settle();
    // (car 0, car 1, incomer reading, store assumed), ten seconds apart. The store draws 20 A.
    // Car 1 stops, then draws again: between two readings it may have drawn as little as the
    // lower, so that one counts and the store is taken for more than it is, never for less.
    let steps = [(16, 16, 52, 20), (16, 0, 36, 20), (16, 16, 52, 36)];
    for (k, (car0, car1, incomer, store)) in steps.into_iter().enumerate() {
        h.advance(10);
        h.car_reads(0, car0);
        h.car_reads(1, car1);
        h.store([incomer; 3]);
        h.settle();
        assert_eq!(h.store_assumed(), PerPhase::uniform(a(store)), "step {k}");
    }

    // A car with no reading near the incomer's counts as nothing: the store may be that large.
    h.advance(300);
    h.store([52; 3]);
    h.settle();
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(52)));
}

#[test]
fn a_late_incomer_reading_is_not_lessened_by_what_a_car_drew_after_it() {
    let mut h = incomer_site(2);
    h.start(0, SessionInfo { ev_max: Some(a(16)), ..three() });
    h.start(1, SessionInfo { ev_max: Some(a(16)), ..three() });
    h.settle();
    // Readings every 10 s: car 0 draws 16 A throughout, car 1 nothing at first and 16 A from
    // its second reading on. The store draws 20 A.
    let start = h.now;
    for (car0, car1) in [(16, 0), (16, 16), (16, 16), (16, 16)] {
        h.advance(10);
        h.car_reads(0, car0);
        h.car_reads(1, car1);
    }
    // An incomer reading from before either car's first reading counts neither: the store may
    // have been all of it.
    let before_any =
        Event::StoreMeter { currents: PerPhase::uniform(a(36)), measured_at: start + Millis::from_secs(5) };
    h.ev(before_any);
    h.settle();
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(36)));
    // The incomer's reading of 15 s after the start (20 + 16 + 0 A) arrives only now, when both
    // cars' two latest readings show 16 A: car 1 drew nothing then, so the store is 20 A, not 4.
    let late =
        Event::StoreMeter { currents: PerPhase::uniform(a(36)), measured_at: start + Millis::from_secs(15) };
    h.ev(late);
    h.settle();
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(20)));
}

#[test]
fn a_reading_from_before_our_decrease_is_not_taken_off_the_incomer() {
    let mut h = incomer_site(2);
    h.start(0, SessionInfo { ev_max: Some(a(32)), ..three() });
    h.advance(10);
    h.store([20; 3]);
    h.settle();
    assert_eq!(h.acked(0), a(32));
    h.advance(10);
    h.car_reads(0, 32);
    h.store([52; 3]);
    h.settle();
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(20)));
    // A second car: the first is lowered to share the 40 A, before its next reading.
    h.start(1, SessionInfo { ev_max: Some(a(32)), ..three() });
    h.settle();
    assert_eq!(h.acked(0), a(20));
    // The incomer reads the store's 20 A and the first car's 20 A (the second has not begun):
    // its 32 A reading is from before our decrease, so it counts at 20 A and the store stays 20 A.
    h.advance(5);
    h.store([40; 3]);
    h.settle();
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(20)));
}

#[test]
fn a_car_its_charger_says_stopped_drawing_counts_as_nothing_behind_the_incomer() {
    let mut h = incomer_site(1);
    h.start(0, SessionInfo { ev_max: Some(a(16)), ..three() });
    h.settle();
    h.advance(10);
    h.car_reads(0, 16);
    // The car is full: its charger says so (SuspendedEV) before its next reading. The incomer
    // then reads the store's 20 A alone, which is not 16 A less than that.
    h.advance(5);
    h.ev(Event::DrawStopped { connector: ConnectorKey(0), at: h.now });
    h.advance(5);
    h.store([20; 3]);
    h.settle();
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(20)));
    // Drawing again, it counts once its readings show it.
    for _ in 0..2 {
        h.advance(10);
        h.car_reads(0, 16);
    }
    h.store([36; 3]);
    h.settle();
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(20)));
}

#[test]
fn a_pause_forced_by_the_worst_case_store_is_not_held_by_the_dwell() {
    // No reading yet (as after a restart): the worst case leaves nothing, every session waits.
    let mut cfg = site([40; 3], vec![], vec![conn(0, None, ST, 0), conn(1, None, ST, 0)]);
    cfg.store.worst_case = PerPhase::uniform(a(40));
    let mut h = H { b: Balancer::new(cfg).expect("valid"), now: Millis(0), sent: Vec::new() };
    h.start(0, three());
    h.start(1, three());
    h.settle();
    assert!(h.view(0).paused && h.view(1).paused);
    // The first reading comes seconds later, well inside the 300 s dwell: both charge at once.
    h.advance(5);
    h.store([10, 10, 10]);
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (a(15), a(15)));
}

/// Two connectors on 40 A, handovers scheduled 20 s ahead, commands in force within 10 s.
fn handover_site() -> SiteConfig {
    let mut c = site([40; 3], vec![], vec![conn(0, None, ST, 0), conn(1, None, ST, 0)]);
    c.store.reaction_time = Millis::from_secs(10);
    c.handover =
        Some(crate::balancer::config::HandoverConfig { lead: Millis::from_secs(20), clock_skew: Millis(0) });
    c
}

/// A command's id, its limit, and the limit it switches to and when.
type SentLimit = (CommandId, DeciAmps, Option<(Millis, DeciAmps)>);

fn limit_for(cmds: &[Command], k: u32) -> Option<SentLimit> {
    cmds.iter().rev().find_map(|c| match *c {
        Command::SetLimit { id, connector, amps_per_phase, then, .. } if connector == ConnectorKey(k) => {
            Some((id, amps_per_phase, then))
        }
        _ => None,
    })
}

#[test]
fn a_handover_keeps_the_session_giving_way_charging_until_the_increase_it_pays_for_can_start() {
    let mut h = H::new(handover_site());
    h.start(0, three());
    h.settle();
    assert_eq!(h.acked(0), a(32));
    let t0 = h.now;
    let cmds = h.start(1, three());
    // 0 keeps 32 A for 20 s, then 20 A; 1 gets the 8 A that are free now.
    let (dec, first, then) = limit_for(&cmds, 0).expect("a limit for 0");
    assert_eq!((first, then), (a(32), Some((t0 + Millis::from_secs(20), a(20)))));
    assert_eq!(limit_for(&cmds, 1).map(|x| (x.1, x.2)), Some((a(8), None)));
    h.sent.clear();
    h.b.ack(dec, h.now).expect("known command");
    assert!(h.b.poll_commands(h.now).is_empty(), "the increase waits until it can be in force by the switch");
    // Acknowledged: 0 still counts 32 A until the switch, 20 A from it.
    assert_eq!(h.view(0).budget, a(32));
    // The last plan that can still have 1's increase in force by the switch schedules it there.
    let wake = h.b.poll_timeout(h.now).expect("a wake-up for the handover");
    assert_eq!(wake, t0 + Millis::from_secs(10));
    h.now = wake;
    let cmds = h.tick_commands();
    let (inc, first, then) = limit_for(&cmds, 1).expect("the increase, scheduled");
    assert_eq!((first, then), (a(8), Some((t0 + Millis::from_secs(20), a(20)))));
    h.b.ack(inc, h.now).expect("known command");
    // Never over the limit: before the switch 32 + 8, from it 20 + 20.
    for secs in [11, 19, 20, 21] {
        let snap = h.b.snapshot(t0 + Millis::from_secs(secs));
        assert!(snap.nodes[0].budgeted.get(L1) <= a(40), "{secs} s: {:?}", snap.nodes[0].budgeted);
    }
    h.now = t0 + Millis::from_secs(20);
    h.tick_commands();
    assert_eq!((h.view(0).budget, h.view(1).budget), (a(20), a(20)));
    assert_eq!((h.acked(0), h.acked(1)), (a(20), a(20)));
}

#[test]
fn a_decrease_a_limit_needs_is_in_force_as_soon_as_it_lands() {
    let mut h = H::new(handover_site());
    h.start(0, three());
    h.start(1, three());
    h.settle();
    h.advance(60);
    h.tick_commands();
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (a(20), a(20)));
    // The store appears: 10 A on every phase. Both must come down now, not in 20 s.
    let cmds = h.store([10, 10, 10]);
    for k in [0, 1] {
        let (_, first, then) = limit_for(&cmds, k).expect("a decrease");
        assert_eq!((first, then), (a(15), None), "connector {k}");
    }
}

/// Connector 0 at 32 A; 1 arrives and 0 is sent a handover (not yet answered): the driver and its id.
fn handover_offered() -> (H, CommandId) {
    let mut h = H::new(handover_site());
    h.start(0, three());
    h.settle();
    let cmds = h.start(1, three());
    let (dec, _, then) = limit_for(&cmds, 0).expect("a limit for 0");
    assert!(then.is_some(), "a handover, deferred");
    h.sent.clear();
    (h, dec)
}

#[test]
fn a_handover_still_to_come_is_brought_forward_when_a_limit_needs_it() {
    let (mut h, dec) = handover_offered();
    h.b.ack(dec, h.now).expect("known command");
    // Before the switch the store jumps: 0's decrease is needed now, and more of it.
    h.advance(5);
    let cmds = h.store([5, 5, 5]);
    let (_, first, then) = limit_for(&cmds, 0).expect("0 brought down at once");
    assert!(then.is_none() && first <= a(20), "{first:?} {then:?}");
    // Once: the next reading, the same, sends nothing more to 0 while that is on its way.
    let again = h.store([5, 5, 5]);
    assert_eq!(limit_for(&again, 0), None, "{again:?}");
}

#[test]
fn without_handovers_every_limit_is_in_force_as_it_lands() {
    let mut cfg = handover_site();
    cfg.handover = None;
    let mut h = H::new(cfg);
    h.start(0, three());
    h.settle();
    let cmds = h.start(1, three());
    assert!(cmds.iter().all(|c| matches!(c, Command::SetLimit { then: None, .. })), "{cmds:?}");
}

#[test]
fn a_newcomer_with_nothing_free_until_the_switch_is_scheduled_from_it() {
    // A 66 A feeder over three connectors; the handover lead (4 s) is shorter than the reaction time.
    let feeder = CircuitConfig { id: CircuitId(1), parent: None, limit: PerPhase::uniform(a(66)) };
    let mut cfg = site([300; 3], vec![feeder], (0..3).map(|k| conn(k, Some(1), ST, 0)).collect());
    cfg.store.reaction_time = Millis::from_secs(10);
    cfg.handover = Some(crate::balancer::config::HandoverConfig {
        lead: Millis::from_secs(4),
        clock_skew: Millis::from_secs(1),
    });
    cfg.store.worst_case = PerPhase::uniform(a(30));
    cfg.lease = Millis::from_secs(600);
    // No store reading: the worst case (the grid has room for it).
    let mut h = H { b: Balancer::new(cfg).expect("valid"), now: Millis(0), sent: Vec::new() };
    h.start(0, SessionInfo::default());
    h.start(1, SessionInfo::default());
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (a(32), a(32)));
    let t0 = h.now;
    let cmds = h.start(2, SessionInfo::default());
    let giving_way: Vec<_> = [0, 1].iter().map(|&k| limit_for(&cmds, k).expect("a handover")).collect();
    for &(_, first, then) in &giving_way {
        assert_eq!((first, then), (a(32), Some((t0 + Millis::from_secs(4), a(22)))));
    }
    assert_eq!(limit_for(&cmds, 2), None, "2 A free now: below the minimum");
    h.sent.clear();
    // One acceptance: what it frees from its switch (66 - 32 - 22 A) is scheduled for the newcomer.
    h.b.ack(giving_way[0].0, h.now).expect("known command");
    let cmds = h.b.poll_commands(h.now);
    let (partial, first, then) = limit_for(&cmds, 2).expect("the newcomer's limit, scheduled");
    assert_eq!((first, then), (a(0), Some((t0 + Millis::from_secs(6), a(12)))));
    // The other: the whole share, from the same moment, before the partial one is even answered.
    h.b.ack(giving_way[1].0, h.now).expect("known command");
    let cmds = h.b.poll_commands(h.now);
    let (_, first, then) = limit_for(&cmds, 2).expect("the newcomer's limit, raised");
    assert_eq!((first, then), (a(0), Some((t0 + Millis::from_secs(6), a(22)))));
    h.b.ack(partial, h.now).expect("known command");
    for secs in [0, 3, 4, 5, 6, 7] {
        let snap = h.b.snapshot(t0 + Millis::from_secs(secs));
        assert!(snap.nodes[1].budgeted.get(L1) <= a(66), "{secs} s: {:?}", snap.nodes[1].budgeted);
    }
}

#[test]
fn a_charger_that_refuses_a_handover_is_sent_plain_limits_from_then_on() {
    let (mut h, dec) = handover_offered();
    // It allows one period only: refused. Counted at its maximum until a retry is accepted.
    assert!(h.view(0).schedules);
    h.b.reject(dec, h.now).expect("known command");
    assert_eq!((h.view(0).smart, h.view(0).schedules), (SmartState::Rejected, false));
    h.advance(30);
    let retry = h.tick_commands();
    let (id, first, then) = limit_for(&retry, 0).expect("the retry");
    assert_eq!((first, then), (a(32), None));
    h.sent.clear();
    h.b.ack(id, h.now).expect("known command");
    // Its share again, as a plain decrease this time.
    let cmds = h.b.poll_commands(h.now);
    let (_, first, then) = limit_for(&cmds, 0).expect("0 brought to its share");
    assert_eq!((first, then), (a(20), None));
}

fn expires_for(cmds: &[Command], k: u32) -> Option<Option<Millis>> {
    cmds.iter().rev().find_map(|c| match *c {
        Command::SetLimit { connector, expires, .. } if connector == ConnectorKey(k) => Some(expires),
        _ => None,
    })
}

#[test]
fn a_charger_whose_clock_is_off_is_sent_plain_limits_and_its_handover_counts_at_its_most() {
    let mut cfg = handover_site();
    cfg.lease = Millis::from_secs(600);
    let mut h = H::new(cfg);
    h.start(0, three());
    h.settle();
    let t0 = h.now;
    let cmds = h.start(1, three());
    let (dec, _, then) = limit_for(&cmds, 0).expect("a limit for 0");
    assert_eq!(then, Some((t0 + Millis::from_secs(20), a(20))), "a handover on 0's clock");
    h.b.ack(dec, h.now).expect("known command");
    h.sent.clear();
    h.advance(2);
    // 0's timestamps show its clock off: when it switches is unknown.
    let cmds = h.ev(Event::ChargerClock { charger: ChargerKey(0), trusted: false });
    assert!(!h.view(0).clock_trusted && h.view(1).clock_trusted);
    let (dec, first, then) = limit_for(&cmds, 0).expect("a plain limit replaces the handover");
    assert_eq!((first, then), (a(20), None));
    assert_eq!(expires_for(&cmds, 0), Some(None), "no lease on a clock we do not trust");
    // Until it is accepted, the handover counts at 32 A, even past its switch.
    h.now = t0 + Millis::from_secs(40);
    assert_eq!(h.view(0).budget, a(32));
    assert_eq!(limit_for(&h.tick_commands(), 1), None, "1 waits for 0's plain decrease");
    h.b.ack(dec, h.now).expect("known command");
    let cmds = h.b.poll_commands(h.now);
    let (_, first, then) = limit_for(&cmds, 1).expect("1 raised once 0 is down");
    assert_eq!((first, then), (a(20), None));
    assert!(expires_for(&cmds, 1).is_some_and(|e| e.is_some()), "1's clock is trusted: a lease");
}

#[test]
fn a_clock_trusted_again_has_its_limit_sent_as_a_lease_again() {
    let mut cfg = handover_site();
    cfg.lease = Millis::from_secs(600);
    let mut h = H::new(cfg);
    h.ev(Event::ChargerClock { charger: ChargerKey(0), trusted: false });
    let cmds = h.start(0, three());
    assert_eq!(expires_for(&cmds, 0), Some(None));
    h.settle();
    // Never expiring, it is never renewed (the store meter still reporting).
    h.advance(3600);
    assert_eq!(limit_for(&h.store([0, 0, 0]), 0), None);
    let cmds = h.ev(Event::ChargerClock { charger: ChargerKey(0), trusted: true });
    assert_eq!(expires_for(&cmds, 0), Some(Some(h.now + Millis::from_secs(600))));
    assert_eq!(limit_for(&cmds, 0).map(|x| (x.1, x.2)), Some((a(32), None)));
}

#[test]
fn a_charger_that_takes_one_period_per_schedule_is_never_sent_a_handover() {
    let mut h = H::new(handover_site());
    h.ev(Event::SchedulePeriods { charger: ChargerKey(0), max: 1 });
    h.ev(Event::SchedulePeriods { charger: ChargerKey(1), max: 24 });
    assert!(!h.view(0).schedules && h.view(1).schedules);
    h.start(0, three());
    h.settle();
    let cmds = h.start(1, three());
    // 0 gives way with a plain decrease, not a handover it would refuse.
    let (_, first, then) = limit_for(&cmds, 0).expect("a limit for 0");
    assert_eq!((first, then), (a(20), None));
}

/// Connector 0 at 32 A gives way to 1 (32 -> 20 A at 20 s, accepted) and 1's increase from 8 to
/// 20 A at that switch is accepted too: the driver, 1 s after the increase was planned.
fn increase_scheduled() -> H {
    let mut h = H::new(handover_site());
    h.start(0, three());
    h.settle();
    let t0 = h.now;
    let cmds = h.start(1, three());
    assert!(limit_for(&cmds, 0).is_some_and(|(_, _, then)| then.is_some()), "0's handover");
    // 0's handover and 1's 8 A accepted.
    h.settle();
    h.now = h.b.poll_timeout(h.now).expect("a wake-up for the handover");
    let (inc, first, then) = limit_for(&h.tick_commands(), 1).expect("1's increase, scheduled");
    assert_eq!((first, then), (a(8), Some((t0 + Millis::from_secs(20), a(20)))));
    h.b.ack(inc, h.now).expect("known command");
    h.sent.clear();
    h.advance(1);
    h
}

#[test]
fn a_scheduled_increase_on_a_clock_found_off_counts_from_now_and_the_decrease_it_waits_on_comes_forward() {
    let mut h = increase_scheduled();
    // 1's clock is found off before the switch: it may take its 20 A at any moment now.
    let cmds = h.ev(Event::ChargerClock { charger: ChargerKey(1), trusted: false });
    assert_eq!(h.view(1).budget, a(20));
    let (_, first, then) = limit_for(&cmds, 0).expect("0's decrease brought forward");
    assert_eq!((first, then), (a(20), None));
}

#[test]
fn an_offline_chargers_increase_at_a_switch_to_come_is_counted_when_the_store_rises() {
    let mut h = increase_scheduled();
    // The handover was planned at time zero (the test driver's clock starts there).
    let t0 = Millis(0);
    // 1 loses us with its switch to come; then the store rises by 5 A.
    h.ev(Event::ChargerOffline { charger: ChargerKey(1) });
    let cmds = h.store([5, 5, 5]);
    // From the switch 1 runs 20 A whatever we say: 0 must be at 15 A by then.
    let (_, first, then) = limit_for(&cmds, 0).expect("0 lowered");
    assert!(first <= a(15) && then.is_none_or(|(_, v)| v <= a(15)), "{first:?} {then:?}");
    h.settle();
    for secs in [12, 19, 20, 30] {
        let snap = h.b.snapshot(t0 + Millis::from_secs(secs));
        assert!(snap.nodes[0].budgeted.get(L1) <= a(40), "{secs} s: {:?}", snap.nodes[0].budgeted);
    }
}

/// Five connectors with a 6 A default on a 32 A connection: idle, they hold 24 A of it.
fn tight_site_with_defaults() -> H {
    let mut cfg = site([32, 32, 32], vec![], (0..5).map(|k| conn(k, None, [L1, L2, L3], 6)).collect());
    cfg.store.worst_case = PerPhase::uniform(a(0));
    H::new(cfg)
}

fn defaults(cmds: &[Command]) -> Vec<(u32, DeciAmps)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::SetDefault { connector, amps_per_phase, .. } => Some((connector.0, *amps_per_phase)),
            Command::SetLimit { .. } => None,
        })
        .collect()
}

fn limits_to(cmds: &[Command], k: u32) -> Vec<DeciAmps> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::SetLimit { connector, amps_per_phase, .. } if connector.0 == k => Some(*amps_per_phase),
            _ => None,
        })
        .collect()
}

/// The budget the snapshot counts on each phase of the grid connection.
fn grid_budget(h: &H) -> [DeciAmps; 3] {
    h.b.snapshot(h.now).nodes[0].budgeted.0
}

#[test]
fn idle_connectors_defaults_make_way_for_a_car_and_come_back_when_it_leaves() {
    let mut h = tight_site_with_defaults();
    let cmds = h.start(0, three());
    // The idle connectors' defaults go down; until they are accepted the car gets what is free.
    assert_eq!(defaults(&cmds), (1..5).map(|k| (k, a(0))).collect::<Vec<_>>());
    assert!(limits_to(&cmds, 0).iter().all(|&l| l <= a(8)), "{cmds:?}");
    assert!(grid_budget(&h).iter().all(|&b| b <= a(32)));
    h.settle();
    assert_eq!(h.acked(0), a(32), "the car gets the whole connection once the defaults are down");
    assert_eq!(h.view(1).budget, a(0));
    assert!(grid_budget(&h).iter().all(|&b| b <= a(32)));

    // The car leaves: its connector is back on its default, and the others' come back up.
    h.advance(10);
    let cmds = h.ev(Event::SessionEnded { connector: ConnectorKey(0) });
    assert_eq!(defaults(&cmds), (1..5).map(|k| (k, a(6))).collect::<Vec<_>>());
    h.settle();
    assert_eq!(h.view(3).acked, a(6));
    assert!(grid_budget(&h).iter().all(|&b| b == a(30)));
}

#[test]
fn a_car_plugging_in_under_a_lowered_default_waits_for_its_limit() {
    let mut h = tight_site_with_defaults();
    h.start(0, three());
    h.settle();
    h.advance(10);
    // Connector 1 is at 0 A: its new session is budgeted at nothing and gets a share once the
    // first car's decrease is accepted.
    let cmds = h.start(1, three());
    assert_eq!(h.view(1).budget, a(0));
    assert!(limits_to(&cmds, 0).iter().all(|&l| l < a(32)), "the first car makes room: {cmds:?}");
    h.settle();
    assert_eq!(h.acked(0) + h.acked(1), a(32));
    assert!(grid_budget(&h).iter().all(|&b| b <= a(32)));
}

#[test]
fn a_store_rising_lowers_idle_defaults_at_once() {
    let mut h = tight_site_with_defaults();
    h.settle();
    assert!(grid_budget(&h).iter().all(|&b| b == a(30)));
    h.advance(10);
    // The store alone takes 20 A: at most two idle defaults fit beside it.
    let cmds = h.store([20, 20, 20]);
    let lowered = defaults(&cmds).iter().filter(|(_, amps)| *amps == a(0)).count();
    assert!(lowered >= 3, "{cmds:?}");
    h.settle();
    assert!(!h.b.snapshot(h.now).overcommitted);
}

#[test]
fn a_refused_default_is_left_where_it_was() {
    let mut h = tight_site_with_defaults();
    let cmds = h.start(0, three());
    let refused = cmds
        .iter()
        .find(|c| matches!(c, Command::SetDefault { connector: ConnectorKey(1), .. }))
        .expect("connector 1's default is lowered")
        .id();
    h.sent.retain(|c| c.id() != refused);
    h.b.reject(refused, h.now).expect("a command in flight");
    h.settle();
    assert_eq!(h.view(1).budget, a(6), "it keeps the default it accepted");
    assert_eq!(h.acked(0), a(26), "the car gets the rest");
    h.advance(30);
    assert!(defaults(&h.tick_commands()).is_empty(), "not asked again");
    // Back from a reconnect, it is steered again.
    h.ev(Event::ChargerOffline { charger: ChargerKey(1) });
    let cmds = h.ev(Event::ChargerOnline { charger: ChargerKey(1) });
    assert_eq!(defaults(&cmds), vec![(1, a(0))]);
}

#[test]
fn defaults_raised_a_moment_ago_still_make_way_for_a_newcomer() {
    let mut h = tight_site_with_defaults();
    h.start(0, three());
    h.settle();
    h.advance(10);
    h.ev(Event::SessionEnded { connector: ConnectorKey(0) });
    h.settle();
    assert_eq!(h.view(2).acked, a(6), "back up once the car left");
    // A car arrives well within the dwell: the defaults go down for it all the same.
    h.advance(10);
    let cmds = h.start(1, three());
    assert_eq!(defaults(&cmds), [0, 2, 3, 4].map(|k| (k, a(0))).to_vec());
    h.settle();
    assert_eq!(h.acked(1), a(32));
}

#[test]
fn a_car_asking_for_more_waits_the_dwell_for_defaults_raised_for_others() {
    let mut h = tight_site_with_defaults();
    let capped = |amps: Option<u32>| SessionInfo { ev_max: amps.map(a), ..three() };
    h.start(0, capped(None));
    h.settle();
    h.advance(10);
    h.ev(Event::SessionUpdated { connector: ConnectorKey(0), info: capped(Some(10)) });
    h.settle();
    // The car takes 10 A: three idle connectors get their 6 A back, the fourth does not fit.
    let raised =
        h.b.snapshot(h.now).connectors.iter().filter(|c| c.session.is_none() && c.acked == a(6)).count();
    assert_eq!(raised, 3);
    h.advance(60);
    let cmds = h.ev(Event::SessionUpdated { connector: ConnectorKey(0), info: capped(None) });
    assert!(defaults(&cmds).is_empty(), "kept within the dwell: {cmds:?}");
    h.settle();
    assert_eq!(h.acked(0), a(14));
    // Past the dwell, the car gets them.
    h.advance(300);
    h.tick();
    h.settle();
    assert_eq!(h.acked(0), a(32));
}

#[test]
fn idle_defaults_go_back_up_only_once_the_room_has_lasted() {
    let mut cfg = site([32, 32, 32], vec![], (0..5).map(|k| conn(k, None, [L1, L2, L3], 6)).collect());
    cfg.store.worst_case = PerPhase::uniform(a(0));
    cfg.idle_raise_after = Millis::from_secs(120);
    let mut h = H::new(cfg);
    h.start(0, three());
    h.settle();
    assert_eq!(h.view(1).acked, a(0));
    // The car leaves: the room is there, but the defaults wait for it to last.
    h.advance(10);
    let cmds = h.ev(Event::SessionEnded { connector: ConnectorKey(0) });
    assert!(defaults(&cmds).iter().all(|&(_, amps)| amps == a(0)), "nothing raised at once: {cmds:?}");
    let wake = h.b.poll_timeout(h.now);
    assert!(wake.is_some_and(|t| t <= h.now + Millis::from_secs(120)), "woken by then: {wake:?}");
    // A car arrives a minute later: the idle connectors' defaults, still down, need no profile;
    // only the one the first car left (a car starts there at its default) makes way.
    h.advance(60);
    let cmds = h.start(1, three());
    assert_eq!(defaults(&cmds), vec![(0, a(0))], "{cmds:?}");
    h.settle();
    assert_eq!(h.acked(1), a(32));
    // It leaves; two minutes of room later the defaults are up again, the budget within the connection.
    h.advance(10);
    h.ev(Event::SessionEnded { connector: ConnectorKey(1) });
    h.advance(119);
    assert!(defaults(&h.tick_commands()).is_empty(), "not yet");
    h.advance(1);
    let raised = defaults(&h.tick_commands());
    assert_eq!(raised, (0..5).map(|k| (k, a(6))).collect::<Vec<_>>());
    h.settle();
    assert!(grid_budget(&h).iter().all(|&b| b == a(30)));
    // Decreases never wait: a car arriving now has the others' defaults lowered at once.
    h.advance(5);
    let cmds = h.start(2, three());
    assert_eq!(defaults(&cmds), [0, 1, 3, 4].map(|k| (k, a(0))).to_vec());
}

#[test]
fn a_tapering_car_is_learned_lower_and_still_probed_after_the_usual_wait() {
    let mut h = H::two_cars_on_40_a();
    for _ in 0..4 {
        h.minute_reading(a(12));
    }
    assert_eq!(h.view(0).learned_max, Some(DeciAmps::new(125)));
    // Its battery fills: it draws 9 A under the 12.5 A it is held at, and is learned there.
    for _ in 0..4 {
        h.minute_reading(a(9));
    }
    assert_eq!(h.view(0).learned_max, Some(DeciAmps::new(95)));
    assert_eq!(
        (h.acked(0), h.acked(1)),
        (DeciAmps::new(95), DeciAmps::new(305)),
        "the room goes to the other car"
    );
    // Learning lower is not a probe it refused: the next probe comes 15 minutes on, not 30.
    let mut probed = None;
    for m in 1..=20 {
        h.minute_reading(a(9));
        if probed.is_none() && h.acked(0) > DeciAmps::new(95) {
            probed = Some(m);
        }
    }
    assert!(probed.is_some_and(|m| m <= 16), "probed after {probed:?} minutes");
}

#[test]
fn a_site_wants_a_look_when_its_meter_stopped_or_is_set_aside_or_a_limit_is_exceeded() {
    let after = |readings: &[(u64, u32)], now_s: u64| {
        let mut cfg = SiteConfig::with_defaults(PerPhase::uniform(a(100)), vec![], vec![]);
        cfg.store.worst_case = PerPhase::uniform(a(30));
        cfg.store.frozen_after = Millis::from_secs(60);
        let mut b = Balancer::new(cfg).expect("a valid site");
        for &(at_s, amps) in readings {
            let at = Millis::from_secs(at_s);
            b.handle(Event::StoreMeter { currents: PerPhase::uniform(a(amps)), measured_at: at }, at)
                .expect("a reading");
        }
        // The site's task ticks as readings age (the balancer asks it to).
        let now = Millis::from_secs(now_s);
        b.handle(Event::Tick, now).expect("a tick");
        b.attention()
    };
    assert_eq!(after(&[], 600), None, "no meter: the worst case by design");
    assert_eq!(after(&[(0, 10), (30, 11)], 40), None, "a live meter");
    assert_eq!(
        after(&[(0, 10), (30, 11)], 600),
        Some(Attention::StoreMeterSilent),
        "it reported, then stopped"
    );
    assert_eq!(
        after(&[(0, 10), (30, 10), (60, 10)], 60),
        Some(Attention::StoreMeterSetAside(MeterDoubt::Unchanged)),
        "set aside outranks silence"
    );

    // Two cars at their limits, then the store jumps: the decreases are in flight, and until they
    // land the site is over.
    let mut h = H::two_cars_on_40_a();
    assert_eq!(h.b.attention(), None);
    h.advance(10);
    h.store([30, 0, 0]);
    assert_eq!(h.b.attention(), Some(Attention::Overcommitted));
    h.settle();
    assert_eq!(h.b.attention(), None, "the cars made room");
    // Attention ranks worst first.
    assert!(Attention::Overcommitted < Attention::StoreMeterSetAside(MeterDoubt::FarBelowFloor));
    assert!(Attention::StoreMeterSetAside(MeterDoubt::Unchanged) < Attention::StoreMeterSilent);
}
