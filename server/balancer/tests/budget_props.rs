//! Property tests: for arbitrary circuit trees, rotations, car mixes, meter gaps and
//! interleavings of events and acknowledgements, the budget an independent model of
//! the chargers computes never goes over a limit by the balancer's own doing, and
//! settles under every limit once the chargers have answered.
//!
//! The model is written from the rules (not from the balancer's code) and counts what
//! each charger could physically draw: a session at the larger of its accepted limit
//! and any limit in flight, on the phases its car really uses; an idle connector at
//! its own default (the larger of the one it accepted and any in flight; the fallback until it
//! accepts one, and again after a reconnect, when it may have lost it), which a session also
//! starts under; an offline charger at anything it may still run; a charger that
//! rejected a profile or cannot do smart charging at its maximum. A limit with a handover scheduled
//! ahead ("this until a moment, that from then on", the charger's clock up to a skew off ours) counts
//! the first before the moment less the skew, the second after it plus the skew, the larger between;
//! the budget must hold at every moment such a switch changes it. With leases, a limit whose lease
//! ran out counts as the connector's default. Where the store's rise is
//! learned from its meter, the model learns it with the balancer's own `RiseHistory` (tested on its
//! own in `store.rs`): what is tested here is the budget around it.

use forecourt_balancer::config::Wiring;
use forecourt_balancer::units::*;
use forecourt_balancer::EvPhases;
use forecourt_balancer::{
    Balancer, CircuitConfig, Command, ConfigError, ConnectorConfig, Event, HandoverConfig, Lens, RiseHistory,
    RiseLearning, SessionInfo, SiteConfig, Unchanged,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct ConnSpec {
    circuit: Option<usize>,
    max: u32,
    three_wired: bool,
    rot: usize,
    fallback: u32,
}

#[derive(Clone, Debug)]
enum Op {
    Start {
        conn: usize,
        three: bool,
        declare: bool,
        ev_max: Option<u32>,
        need_wh: Option<u32>,
    },
    End {
        conn: usize,
    },
    Store {
        amps: [u32; 3],
    },
    /// The store meter sends its last reading again (a gateway that lost its meter).
    StoreSame,
    Meter {
        conn: usize,
        amps: u32,
    },
    Ack {
        pick: usize,
    },
    AckAll,
    Reject {
        pick: usize,
    },
    Offline {
        conn: usize,
    },
    Online {
        conn: usize,
    },
    Unsupported {
        conn: usize,
    },
    Clock {
        conn: usize,
        trusted: bool,
    },
    Advance {
        secs: u64,
    },
    Grid {
        amps: [u32; 3],
    },
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..n, any::<bool>(), any::<bool>(), proptest::option::of(6u32..40), proptest::option::of(0u32..20_000))
            .prop_map(|(conn, three, declare, ev_max, need_wh)| Op::Start { conn, three, declare, ev_max, need_wh }),
        2 => (0..n).prop_map(|conn| Op::End { conn }),
        3 => prop::array::uniform3(0u32..60).prop_map(|amps| Op::Store { amps }),
        2 => Just(Op::StoreSame),
        3 => (0..n, 0u32..40).prop_map(|(conn, amps)| Op::Meter { conn, amps }),
        5 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        2 => Just(Op::AckAll),
        1 => any::<usize>().prop_map(|pick| Op::Reject { pick }),
        1 => (0..n).prop_map(|conn| Op::Offline { conn }),
        1 => (0..n).prop_map(|conn| Op::Online { conn }),
        1 => (0..n).prop_map(|conn| Op::Unsupported { conn }),
        1 => (0..n, any::<bool>()).prop_map(|(conn, trusted)| Op::Clock { conn, trusted }),
        3 => (1u64..400).prop_map(|secs| Op::Advance { secs }),
        1 => prop::array::uniform3(40u32..140).prop_map(|amps| Op::Grid { amps }),
    ]
}

const ROTS: [[Phase; 3]; 3] =
    [[Phase::L1, Phase::L2, Phase::L3], [Phase::L2, Phase::L3, Phase::L1], [Phase::L3, Phase::L1, Phase::L2]];

/// (circuits as (parent, limit), connectors, grid limit, worst-case store), in amps.
type Site = (Vec<(Option<usize>, [u32; 3])>, Vec<ConnSpec>, [u32; 3], [u32; 3]);

fn site() -> impl Strategy<Value = Site> {
    let circuits = prop::collection::vec(
        (any::<prop::sample::Index>(), any::<bool>(), prop::array::uniform3(16u32..100)),
        0..5,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (pi, top, lim))| (if i == 0 || top { None } else { Some(pi.index(i)) }, lim))
            .collect::<Vec<_>>()
    });
    circuits.prop_flat_map(|circuits| {
        let nc = circuits.len();
        let conn = (
            proptest::option::of(0..nc.max(1)),
            prop_oneof![Just(16u32), Just(32u32)],
            any::<bool>(),
            0..3usize,
            prop_oneof![Just(0u32), Just(6), Just(10)],
        )
            .prop_map(move |(c, max, three_wired, rot, fallback)| ConnSpec {
                circuit: if nc == 0 { None } else { c },
                max,
                three_wired,
                rot,
                fallback,
            });
        (
            Just(circuits),
            prop::collection::vec(conn, 1..8),
            prop::array::uniform3(30u32..200),
            prop::array::uniform3(0u32..80),
        )
    })
}

/// A limit as the charger holds it: the first value, and maybe another from a moment on (ms).
type Lim = (u32, Option<(u64, u32)>);

/// What a limit can mean at our time `t` when the charger's clock is up to `skew` off ours.
fn lim_at((first, then): Lim, t: u64, skew: u64) -> u32 {
    match then {
        None => first,
        Some((from, _)) if t + skew < from => first,
        Some((from, v)) if t >= from + skew => v,
        Some((_, v)) => first.max(v),
    }
}

#[derive(Clone, Debug, Default)]
struct Model {
    session: Option<(u64, bool)>, // (epoch, car is 3-phase)
    epoch: u64,
    online: bool,
    smart_broken: bool, // rejected (until a profile is accepted, the session changes or it reconnects)
    unsupported: bool,
    /// Its charger's clock is not trusted (the default, trusted, is `false` here).
    clock_off: bool,
    acked: Lim,
    /// When the accepted limit's lease runs out (then the charger is back on its fallback).
    acked_expires: Option<u64>,
    inflight: Vec<(u64, Lim, Option<u64>)>,
    /// Its own default profile: the one it accepted, and those in flight.
    default_acked: u32,
    default_inflight: Vec<(u64, u32)>,
    /// It refused a default: it keeps what it had.
    default_refused: bool,
}

impl Model {
    /// The most a car may draw under its own default.
    fn default_held(&self) -> u32 {
        self.default_inflight.iter().map(|x| x.1).fold(self.default_acked, u32::max)
    }
    /// The most it may run at `t` or later (what it runs is unknown).
    fn anything_from(&self, t: u64, skew: u64, fallback: u32) -> u32 {
        let from_on = |l: Lim| lim_at(l, t, skew).max(l.1.map_or(l.0, |x| x.1));
        let acked =
            if self.acked_expires.is_some_and(|end| t >= end) { fallback } else { from_on(self.acked) };
        self.inflight
            .iter()
            .filter(|x| x.2.is_none_or(|end| t < end))
            .map(|x| from_on(x.1))
            .fold(acked, u32::max)
    }
    /// The most it may run at `t`: its accepted limit (its fallback once the lease ran out) or
    /// any limit in flight whose lease runs.
    /// At a moment `t` to come, leases count as they are `now` (they are renewed).
    fn held(&self, now: u64, t: u64, skew: u64, fallback: u32) -> u32 {
        let acked = if self.acked_expires.is_some_and(|end| now >= end) {
            fallback
        } else {
            lim_at(self.acked, t, skew)
        };
        self.inflight
            .iter()
            .filter(|x| x.2.is_none_or(|end| now < end))
            .map(|x| lim_at(x.1, t, skew))
            .fold(acked, u32::max)
    }
}

struct World {
    cfg: SiteConfig,
    paths: Vec<Vec<usize>>, // node indices (0 = grid, i+1 = circuit i) per connector
    limits: Vec<[u32; 3]>,
    conns: Vec<Model>,
    store: Option<([u32; 3], u64)>,
    /// The store meter's readings, when its rise is learned.
    history: RiseHistory,
    /// The latest reading was far below the store's floor, or the meter has read it unchanged too
    /// long: not believed, the worst case counts.
    store_set_aside: bool,
    unchanged: Unchanged,
    /// The meter's latest reading, believed or not.
    last_store: Option<[u32; 3]>,
    outstanding: Vec<(u64, usize, Option<u64>)>, // (command id, connector, epoch; None: a default)
    now: u64,
}

impl World {
    fn phases(&self, i: usize) -> Vec<usize> {
        let c = &self.cfg.connectors[i];
        let r0 = c.rotation.0[0].index();
        let three_car = self.conns[i].session.is_none_or(|s| s.1);
        if c.wiring == Wiring::ThreePhase && three_car {
            vec![0, 1, 2]
        } else {
            vec![r0]
        }
    }
    fn skew(&self) -> u64 {
        self.cfg.handover.map_or(0, |h| h.clock_skew.0)
    }
    fn budget(&self, conns: &[Model], i: usize, t: u64) -> u32 {
        let c = &self.cfg.connectors[i];
        let m = &conns[i];
        let skew = self.skew();
        let held = m.held(self.now, t, skew, m.default_held());
        if m.unsupported || (m.smart_broken && m.session.is_some()) {
            c.max.get()
        } else if !m.online && m.session.is_some() {
            held.max(m.default_held())
        } else if m.session.is_none() {
            m.default_held()
        } else {
            held
        }
    }
    fn store_assumed(&self) -> [u32; 3] {
        let sc = &self.cfg.store;
        match self.store {
            _ if self.store_set_aside => sc.worst_case.0.map(|x| x.get()),
            Some((a, at)) if self.now - at <= sc.max_age.0 => {
                // The reading plus how far the store can have risen while we were blind (until
                // the next plan's decreases are in force).
                let blind = self.now - at + sc.reaction_time.0 + sc.replan.0;
                let configured = (u64::from(sc.rise_per_min.get()) * blind / 60_000)
                    .min(u64::from(sc.max_rise.get())) as u32;
                let worst = sc.worst_case.0.map(|x| x.get());
                let learned = sc.learn_rise.as_ref().and_then(|l| Some((l, self.history.allowances(l)?)));
                let bound = match learned {
                    // Learned: per lens, from its reference by its learned rise (and by the
                    // configured one too where larger, once the reading is older than usual); the
                    // lowest of the lenses.
                    Some((l, allowances)) => {
                        let mut bound = [u32::MAX; 3];
                        for (lens, allowance) in l.lenses.iter().zip(&allowances) {
                            let from = self
                                .history
                                .reference(*lens, Millis(at), PerPhase(a.map(DeciAmps::new)))
                                .0
                                .map(|x| x.get());
                            for p in 0..3 {
                                let rise = allowance.0[p].get();
                                let rise = if blind <= l.horizon.0 { rise } else { rise.max(configured) };
                                bound[p] = bound[p].min(from[p] + rise);
                            }
                        }
                        bound
                    }
                    None => [0, 1, 2].map(|p| a[p] + configured),
                };
                [0, 1, 2].map(|p| a[p].max(bound[p].min(worst[p])))
            }
            _ => sc.worst_case.0.map(|x| x.get()),
        }
    }
    /// Now, and every later moment a switch of these connectors' limits may change the budget.
    fn moments(&self, conns: &[&[Model]]) -> Vec<u64> {
        let skew = self.skew();
        let mut m = vec![self.now];
        for c in conns.iter().flat_map(|c| c.iter()) {
            for (_, then) in std::iter::once(c.acked).chain(c.inflight.iter().map(|x| x.1)) {
                if let Some((from, _)) = then {
                    m.extend([from.saturating_sub(skew), from + skew].into_iter().filter(|&t| t > self.now));
                }
            }
        }
        m.sort();
        m.dedup();
        m
    }
    /// Budget per node at `t` with the store as assumed now.
    fn loads_at(&self, conns: &[Model], t: u64) -> Vec<[i64; 3]> {
        let mut l = vec![[0i64; 3]; self.limits.len()];
        let s = self.store_assumed();
        for p in 0..3 {
            l[0][p] += i64::from(s[p]);
        }
        for i in 0..conns.len() {
            let b = i64::from(self.budget(conns, i, t));
            for &n in &self.paths[i] {
                for p in self.phases(i) {
                    l[n][p] += b;
                }
            }
        }
        l
    }
    /// What we cannot steer (the store, and connectors offline, refusing or unsteerable, at
    /// their budget at `t`, switches they accepted included) fits every limit at `t`. An idle
    /// connector whose default we steer can be brought down to nothing.
    fn fixed_fits(&self, t: u64) -> bool {
        let mut l = vec![[0i64; 3]; self.limits.len()];
        let s = self.store_assumed();
        for p in 0..3 {
            l[0][p] += i64::from(s[p]);
        }
        for i in 0..self.conns.len() {
            let m = &self.conns[i];
            if m.online && !m.smart_broken && !m.unsupported && (m.session.is_some() || !m.default_refused) {
                continue;
            }
            let b = i64::from(self.budget(&self.conns, i, t));
            for &n in &self.paths[i] {
                for p in self.phases(i) {
                    l[n][p] += b;
                }
            }
        }
        (0..self.limits.len()).all(|n| (0..3).all(|p| l[n][p] <= i64::from(self.limits[n][p])))
    }
    fn register(&mut self, cmds: &[Command]) -> Result<(), TestCaseError> {
        for c in cmds {
            let (id, connector, amps_per_phase, then, expires) = match c {
                Command::SetLimit { id, connector, amps_per_phase, then, expires, .. } => {
                    (id, connector, amps_per_phase, then, expires)
                }
                Command::SetDefault { id, connector, amps_per_phase } => {
                    let i = connector.0 as usize;
                    let (a, fallback) = (amps_per_phase.get(), self.cfg.connectors[i].fallback.get());
                    prop_assert!(
                        a == 0 || a == fallback,
                        "default {a} dA neither nothing nor the fallback {fallback}"
                    );
                    let m = &mut self.conns[i];
                    prop_assert!(
                        m.session.is_none() && m.online,
                        "a default to a connector in session or away"
                    );
                    m.default_inflight.push((id.0, a));
                    self.outstanding.push((id.0, i, None));
                    continue;
                }
            };
            let i = connector.0 as usize;
            let a = amps_per_phase.get();
            let max = self.cfg.connectors[i].max.get();
            for a in std::iter::once(a).chain(then.map(|x| x.1.get())) {
                prop_assert!(a == 0 || (60..=max).contains(&a), "limit {a} dA outside {{0}} ∪ [60, {max}]");
            }
            prop_assert!(
                then.is_none() || self.cfg.handover.is_some(),
                "a handover where none is configured"
            );
            let m = &mut self.conns[i];
            prop_assert!(m.session.is_some() && m.online, "command to a connector without a live session");
            prop_assert!(
                !m.clock_off || (then.is_none() && expires.is_none()),
                "a switch or lease end on a clock we do not trust"
            );
            m.inflight.push((id.0, (a, then.map(|(at, v)| (at.0, v.get()))), expires.map(|e| e.0)));
            self.outstanding.push((id.0, i, Some(m.epoch)));
        }
        Ok(())
    }
    fn accept(&mut self, k: usize) {
        let (id, i, epoch) = self.outstanding.remove(k);
        let m = &mut self.conns[i];
        let Some(epoch) = epoch else {
            // Applied in order: older defaults in flight are superseded.
            if let Some(pos) = m.default_inflight.iter().position(|x| x.0 == id) {
                m.default_acked = m.default_inflight[pos].1;
                m.default_inflight.drain(..=pos);
            }
            return;
        };
        if m.epoch != epoch {
            return;
        }
        if let Some(pos) = m.inflight.iter().position(|x| x.0 == id) {
            m.acked = m.inflight[pos].1;
            m.acked_expires = m.inflight[pos].2;
            m.inflight.drain(..=pos);
            // It took a profile (a retry after a rejection): it runs what it accepted and is steerable again.
            m.smart_broken = false;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    circuits: &[(Option<usize>, [u32; 3])],
    conns: &[ConnSpec],
    grid: [u32; 3],
    worst: [u32; 3],
    (rise, max_rise, reaction_s, learn): (u32, u32, u64, bool),
    handover: Option<(u64, u64)>,
    lease_s: Option<u64>,
    idle_raise_after_s: u64,
) -> Result<(Balancer, World), ConfigError> {
    let a = DeciAmps::from_amps;
    let ccfg: Vec<CircuitConfig> = circuits
        .iter()
        .enumerate()
        .map(|(i, (parent, lim))| CircuitConfig {
            id: CircuitId(i as u32),
            parent: parent.map(|p| CircuitId(p as u32)),
            limit: PerPhase(lim.map(a)),
        })
        .collect();
    let kcfg: Vec<ConnectorConfig> = conns
        .iter()
        .enumerate()
        .map(|(i, c)| ConnectorConfig {
            key: ConnectorKey(i as u32),
            charger: ChargerKey(i as u32),
            circuit: c.circuit.map(|x| CircuitId(x as u32)),
            max: a(c.max),
            wiring: if c.three_wired { Wiring::ThreePhase } else { Wiring::OnePhase },
            rotation: Rotation(ROTS[c.rot]),
            fallback: a(c.fallback),
        })
        .collect();
    let mut cfg = SiteConfig::with_defaults(PerPhase(grid.map(a)), ccfg, kcfg);
    cfg.store.worst_case = PerPhase(worst.map(a));
    // A meter repeating itself is caught before its reading goes stale (90 s).
    cfg.store.frozen_after = Millis::from_secs(60);
    cfg.store.max_age = Millis::from_secs(90);
    cfg.store.rise_per_min = a(rise);
    cfg.store.max_rise = a(max_rise);
    cfg.store.reaction_time = Millis::from_secs(reaction_s);
    // Learned quickly, so that a case's readings are history enough.
    cfg.store.learn_rise = learn.then(|| RiseLearning {
        horizon: Millis::from_secs(reaction_s + 30),
        lenses: vec![Lens::highest(Millis::from_secs(300)), Lens { window: Millis::from_secs(600), rank: 2 }],
        min_history: Millis::from_secs(300),
        memory: Millis::from_secs(3600),
        headroom_pct: 20,
        // Leases shortened to half where the store climbed further within one than planned for.
        holds: lease_s.map(|l| vec![Millis::from_secs(l), Millis::from_secs(l / 2)]).unwrap_or_default(),
    });
    cfg.handover = handover.map(|(lead_s, skew_s)| HandoverConfig {
        lead: Millis::from_secs(lead_s),
        clock_skew: Millis::from_secs(skew_s),
    });
    cfg.lease = Millis::from_secs(lease_s.unwrap_or(0));
    cfg.idle_raise_after = Millis::from_secs(idle_raise_after_s);
    let b = Balancer::new(cfg.clone())?;
    let mut limits = vec![grid.map(|x| x * 10)];
    limits.extend(circuits.iter().map(|c| c.1.map(|x| x * 10)));
    let paths = conns
        .iter()
        .map(|c| {
            let mut p = Vec::new();
            let mut n = c.circuit;
            while let Some(x) = n {
                p.push(x + 1);
                n = circuits[x].0;
            }
            p.push(0);
            p
        })
        .collect();
    let models = conns
        .iter()
        .map(|c| Model {
            online: true,
            acked: (c.fallback * 10, None),
            default_acked: c.fallback * 10,
            ..Default::default()
        })
        .collect();
    Ok((
        b,
        World {
            cfg,
            paths,
            limits,
            conns: models,
            store: None,
            history: RiseHistory::default(),
            store_set_aside: false,
            unchanged: Unchanged::default(),
            last_store: None,
            outstanding: Vec::new(),
            now: 0,
        },
    ))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn the_balancer_never_overloads_by_its_own_commands(
        (circuits, conns, grid, worst) in site(),
        ops in prop::collection::vec(op(8), 1..80),
        store_model in (0u32..20, 0u32..30, 0u64..120, any::<bool>()),
        handover in proptest::option::of((1u64..200, 0u64..10)),
        lease_s in proptest::option::of(60u64..1200),
        idle_raise_after_s in prop_oneof![Just(0u64), 1u64..300],
    ) {
        let Ok((mut b, mut w)) =
            build(&circuits, &conns, grid, worst, store_model, handover, lease_s, idle_raise_after_s)
        else {
            // Fallbacks alone over a limit: refused at construction, nothing to run.
            return Ok(());
        };
        let n = conns.len();
        for op in ops {
            let now = Millis(w.now);
            // 1. the outside world changes (the model follows), 2. the balancer reacts.
            let ev = match op {
                Op::Start { conn, three, declare, ev_max, need_wh } => {
                    let i = conn % n;
                    if w.conns[i].session.is_some() { continue; }
                    let m = &mut w.conns[i];
                    m.epoch += 1;
                    m.session = Some((m.epoch, three));
                    m.inflight.clear();
                    // It starts under its own default, whichever of those in flight it took.
                    m.acked = (m.default_held(), None);
                    m.acked_expires = None;
                    m.smart_broken = false;
                    let info = SessionInfo {
                        ev_phases: declare.then_some(if three { EvPhases::Three } else { EvPhases::One }),
                        ev_max: ev_max.map(DeciAmps::from_amps),
                        energy_need_wh: need_wh,
                        ..Default::default()
                    };
                    Event::SessionStarted { connector: ConnectorKey(i as u32), session: SessionKey(m.epoch * 100 + i as u64), info }
                }
                Op::End { conn } => {
                    let i = conn % n;
                    if w.conns[i].session.is_none() { continue; }
                    let m = &mut w.conns[i];
                    m.epoch += 1;
                    m.session = None;
                    m.inflight.clear();
                    m.acked = (m.default_held(), None);
                    m.acked_expires = None;
                    m.smart_broken = false;
                    Event::SessionEnded { connector: ConnectorKey(i as u32) }
                }
                Op::StoreSame | Op::Store { .. } => {
                    let amps = match op {
                        Op::Store { amps } => amps,
                        _ => match w.last_store {
                            Some(amps) => amps,
                            None => continue,
                        },
                    };
                    w.last_store = Some(amps);
                    let reading = PerPhase(amps.map(DeciAmps::from_amps));
                    let frozen = w.unchanged.frozen(Millis(w.now), reading, w.cfg.store.frozen_after, w.cfg.store.max_age);
                    w.store_set_aside = frozen
                        || w.cfg.store.learn_rise.as_ref().is_some_and(|l| !w.history.implausible(l, reading).is_empty());
                    if !w.store_set_aside {
                        w.store = Some((amps.map(|x| x * 10), w.now));
                        if let Some(l) = &w.cfg.store.learn_rise {
                            w.history.observe(l, Millis(w.now), reading);
                        }
                    }
                    Event::StoreMeter { currents: PerPhase(amps.map(DeciAmps::from_amps)), measured_at: now }
                }
                Op::Meter { conn, amps } => {
                    let i = conn % n;
                    let Some((_, three)) = w.conns[i].session else { continue };
                    let x = DeciAmps::from_amps(amps);
                    // Readings tell the truth about the car's phases.
                    let currents = if three && w.cfg.connectors[i].wiring == Wiring::ThreePhase { [x, x, x] } else { [x, DeciAmps::ZERO, DeciAmps::ZERO] };
                    Event::ConnectorMeter { connector: ConnectorKey(i as u32), currents, energy_wh: None, measured_at: now }
                }
                Op::Ack { pick } => {
                    if w.outstanding.is_empty() { continue; }
                    let k = pick % w.outstanding.len();
                    let id = w.outstanding[k].0;
                    w.accept(k);
                    Event::CommandAccepted { id: CommandId(id) }
                }
                Op::AckAll => {
                    // Acknowledge in order until the balancer is quiet, checking as we go (after a
                    // tick: a balancer that has not seen the present yet cannot have acted on it).
                    let mid = w.conns.clone();
                    b.handle(Event::Tick, now).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let cmds = b.poll_commands(now);
                    w.register(&cmds)?;
                    check_step(&w, &mid)?;
                    let mut rounds = 0;
                    while !w.outstanding.is_empty() {
                        rounds += 1;
                        prop_assert!(rounds < 500, "never settles");
                        let id = w.outstanding[0].0;
                        w.accept(0);
                        let mid = w.conns.clone();
                        b.handle(Event::CommandAccepted { id: CommandId(id) }, now).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        let cmds = b.poll_commands(now);
                        w.register(&cmds)?;
                        check_step(&w, &mid)?;
                    }
                    // Quiet: every limit holds, now and at every handover still to come, whenever
                    // what we cannot steer fits then (an offline charger may have accepted an
                    // increase at a switch before a store reading above the worst case came in).
                    for t in w.moments(&[&w.conns]) {
                        if w.fixed_fits(t) {
                            let l = w.loads_at(&w.conns, t);
                            for (nd, lim) in w.limits.iter().enumerate() {
                                for p in 0..3 {
                                    prop_assert!(l[nd][p] <= i64::from(lim[p]), "settled budget {} over limit {} at node {nd} phase {p}, t {t}", l[nd][p], lim[p]);
                                }
                            }
                        }
                    }
                    continue;
                }
                Op::Reject { pick } => {
                    if w.outstanding.is_empty() { continue; }
                    let k = pick % w.outstanding.len();
                    let (id, i, epoch) = w.outstanding.remove(k);
                    let m = &mut w.conns[i];
                    match epoch {
                        None => {
                            m.default_inflight.retain(|x| x.0 != id);
                            m.default_refused = true;
                        }
                        Some(epoch) if m.epoch == epoch => {
                            m.inflight.retain(|x| x.0 != id);
                            m.smart_broken = true;
                        }
                        Some(_) => {}
                    }
                    Event::CommandRejected { id: CommandId(id) }
                }
                Op::Offline { conn } => {
                    let i = conn % n;
                    w.conns[i].online = false;
                    Event::ChargerOffline { charger: ChargerKey(i as u32) }
                }
                Op::Online { conn } => {
                    let i = conn % n;
                    let skew = w.skew();
                    let fallback = w.cfg.connectors[i].fallback.get();
                    let m = &mut w.conns[i];
                    if !m.online {
                        m.online = true;
                        // A charger that rebooted may have lost its connectors' own defaults.
                        m.default_acked = m.default_held().max(fallback);
                        m.default_inflight.clear();
                        m.default_refused = false;
                        m.acked = (m.anything_from(w.now, skew, fallback).max(fallback), None);
                        m.acked_expires = None;
                        m.inflight.clear();
                        m.smart_broken = false;
                        // The old connection's requests will never be answered.
                        w.outstanding.retain(|x| x.1 != i);
                    }
                    Event::ChargerOnline { charger: ChargerKey(i as u32) }
                }
                Op::Unsupported { conn } => {
                    let i = conn % n;
                    w.conns[i].unsupported = true;
                    Event::SmartChargingUnsupported { charger: ChargerKey(i as u32) }
                }
                Op::Clock { conn, trusted } => {
                    let i = conn % n;
                    let skew = w.skew();
                    let now = w.now;
                    let m = &mut w.conns[i];
                    if m.clock_off == trusted {
                        m.clock_off = !trusted;
                        if !trusted {
                            // When its switches and lease ends come is unknown: each limit counts at
                            // the most it may mean from now on, for as long as it stands.
                            let most = |l: Lim| lim_at(l, now, skew).max(l.1.map_or(l.0, |x| x.1));
                            m.acked = (most(m.acked), None);
                            m.acked_expires = None;
                            for x in &mut m.inflight {
                                *x = (x.0, (most(x.1), None), None);
                            }
                        }
                    }
                    Event::ChargerClock { charger: ChargerKey(i as u32), trusted }
                }
                Op::Advance { secs } => {
                    w.now += secs * 1000;
                    Event::Tick
                }
                Op::Grid { amps } => {
                    w.limits[0] = amps.map(|x| x * 10);
                    Event::GridLimitChanged { limit: PerPhase(amps.map(DeciAmps::from_amps)) }
                }
            };
            let now = Millis(w.now);
            let mid = w.conns.clone();
            b.handle(ev, now).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let cmds = b.poll_commands(now);
            w.register(&cmds)?;
            check_step(&w, &mid)?;
        }
    }
}

/// The balancer's reaction never pushes a node over its limit, nor makes an
/// over-limit node (an exogenous change) worse: now, nor at any moment a handover changes it.
fn check_step(w: &World, before: &[Model]) -> Result<(), TestCaseError> {
    for t in w.moments(&[&w.conns, before]) {
        let (after, before) = (w.loads_at(&w.conns, t), w.loads_at(before, t));
        for (n, lim) in w.limits.iter().enumerate() {
            for p in 0..3 {
                let ok = after[n][p] <= i64::from(lim[p]) || after[n][p] <= before[n][p];
                prop_assert!(
                    ok,
                    "node {n} phase {p} at {t} ms: budget {} -> {} with limit {}",
                    before[n][p],
                    after[n][p],
                    lim[p]
                );
            }
        }
    }
    Ok(())
}
