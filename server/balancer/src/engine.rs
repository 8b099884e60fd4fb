//! The balancer state machine: events in, SetLimit and SetDefault commands out, time passed in.
//!
//! # Safety rules (what the budget counts)
//!
//! The *budget* of a connector is the most it may draw right now, whatever is in
//! flight. The sum of budgets plus the assumed store load is what must stay under
//! every limit, on every phase, at every node of the circuit tree.
//!
//! * A connector with a session, online and smart: `max(acked limit, every limit in
//!   flight)`. A decrease only lowers the budget once the charger has acknowledged it.
//! * An idle connector: its default (TxDefaultProfile): a car may plug in any moment
//!   and draw it before we can react. Each connector's own default is steered too: the
//!   site's fallback while the others leave room for it, 0 A while they need it (a car
//!   plugging in there then waits for its first limit), counted at the larger of the
//!   accepted and any in flight, like a limit.
//! * An offline charger: a session at `max(default, last acked, in flight)`: it keeps
//!   whatever profile it had, or falls back; an idle connector at its default.
//! * A charger that rejected a profile for its session, or cannot do smart charging at
//!   all: connector maximum, online or not.
//! * A profile that got no answer (timed out, or the link dropped mid-call): still in
//!   flight, so the larger of what the charger had and what we sent, until it accepts a
//!   later one or reconnects (then what it may hold, as above).
//! * A car whose phase count is unknown is counted on every phase its connector has.
//! * The store: the last reading plus how far it can have risen since (bounded), or
//!   the configured worst case when the reading is older than `max_age` or missing.
//!
//! An increase is emitted only if the budget *with* it fits on every constraint it
//! touches; decreases are emitted at once. So an increase that depends on capacity
//! freed by a decrease waits for that decrease's acknowledgement: the freed capacity
//! only appears in the budget once it is acked.
//!
//! With handovers scheduled ahead ([`crate::config::HandoverConfig`]), a decrease
//! that no limit needs switches at a moment two round trips away, and the increase it pays
//! for is sent once it is acknowledged, to start at that moment. A limit with a switch
//! counts its first value until the moment less the clock skew, its second from the moment
//! plus the skew, and the larger between; the budget must fit at every moment a switch
//! changes it (with the store as assumed now, and leases as they are now).
//!
//! What the balancer cannot prevent, it reports: an exogenous rise (store reading,
//! a session ending so its connector falls back, a lowered grid limit, a charger
//! going offline or rejecting) can push the budget over a limit until the decreases
//! it triggers are acked; [`Snapshot::overcommitted`] says so. Fallbacks alone must
//! fit (checked in [`SiteConfig`] validation), so once acks arrive the budget fits
//! again whenever the store's own load leaves room for the fallbacks.

use crate::alloc::{self, Demand};
use crate::config::{
    wiring_phases, ConfigError, LearningConfig, SiteConfig, SiteMeter, Topology, Wiring, ROOT,
};
use crate::store::{RiseHistory, Unchanged};
use crate::units::{
    ChargerKey, CommandId, ConnectorKey, DeciAmps, Millis, PerPhase, Phase, PhaseSet, SessionKey,
};
pub use crate::view::{Attention, ConnectorView, MeterDoubt, NodeView, SetAside, Snapshot};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How many phases a car charges on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvPhases {
    /// Loads the connector's L1 only (site phase `rotation[0]`).
    One,
    /// Loads every phase of the connector.
    Three,
}

/// What we know about a session when it starts or when the car tells us more
/// (OCPP 2.0.1 NotifyEVChargingNeeds, an app, a tariff).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// When the driver expects to leave.
    pub departure: Option<Millis>,
    /// Energy the driver wants in this session, Wh.
    pub energy_need_wh: Option<u32>,
    /// 0 normal; higher values get a larger share (and go first when pausing).
    pub priority: u8,
    /// The car's own maximum current per phase, if it said so.
    pub ev_max: Option<DeciAmps>,
    /// Phase count, if the car said so.
    pub ev_phases: Option<EvPhases>,
}

/// Something that happened. Every event triggers a recompute.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    SessionStarted {
        connector: ConnectorKey,
        session: SessionKey,
        info: SessionInfo,
    },
    /// New information about the running session (replaces the old).
    SessionUpdated {
        connector: ConnectorKey,
        info: SessionInfo,
    },
    SessionEnded {
        connector: ConnectorKey,
    },
    /// The site meter's reading per site phase, taken at `measured_at`: the store's own load, or
    /// with [`SiteMeter::Incomer`] the whole connection's.
    StoreMeter {
        currents: PerPhase,
        measured_at: Millis,
    },
    /// A connector's measured current on its own L1, L2, L3, and the energy delivered
    /// in the session so far.
    ConnectorMeter {
        connector: ConnectorKey,
        currents: [DeciAmps; 3],
        energy_wh: Option<u32>,
        measured_at: Millis,
    },
    /// The charger says the car stopped drawing at `at` (suspended by the car or the charger,
    /// finishing): for an incomer meter's arithmetic, a reading of nothing then. Nothing is
    /// learned from it (the car may resume).
    DrawStopped {
        connector: ConnectorKey,
        at: Millis,
    },
    /// The charger accepted a command (SetChargingProfile.conf status Accepted).
    CommandAccepted {
        id: CommandId,
    },
    /// The charger rejected it (or answered with an error): it may not follow our profiles.
    CommandRejected {
        id: CommandId,
    },
    /// No answer came: the call timed out, or the connection dropped before the charger
    /// answered. It runs what it had or what we sent, we do not know which: both stay
    /// counted, and the plan is sent again once it can hear us. Not a refusal: a charger that
    /// loses its link mid-call is offline, not one that ignores our limits.
    CommandUnanswered {
        id: CommandId,
    },
    ChargerOnline {
        charger: ChargerKey,
    },
    ChargerOffline {
        charger: ChargerKey,
    },
    /// The connector may be running any limit up to `up_to` that we did not set (our state
    /// was lost in a restart or rebuilt): budget that until our plan is acknowledged.
    LimitUnknown {
        connector: ConnectorKey,
        up_to: DeciAmps,
    },
    /// The charger does not support smart charging at all.
    SmartChargingUnsupported {
        charger: ChargerKey,
    },
    /// The charger accepted a profile at boot: it does smart charging (again, if it was
    /// counted unsupported: new firmware, or a boot whose answer was lost).
    SmartChargingSupported {
        charger: ChargerKey,
    },
    /// The most periods a schedule may have on this charger (1.6 ChargingScheduleMaxPeriods, 2.0.1
    /// SmartChargingCtrlr.PeriodsPerSchedule): under two, it is never sent a handover.
    SchedulePeriods {
        charger: ChargerKey,
        max: u32,
    },
    /// Whether the charger's clock can be trusted with schedules (see `clock.rs`): when not,
    /// its limits are sent without leases or handovers, and what it accepted on its clock is
    /// counted at the most it may mean until a plain limit replaces it.
    ChargerClock {
        charger: ChargerKey,
        trusted: bool,
    },
    /// The grid operator or the site owner changed the connection limit.
    GridLimitChanged {
        limit: PerPhase,
    },
    /// Nothing happened, but time passed (meter may be stale, a dwell may have expired).
    /// Drive it from [`Balancer::poll_timeout`].
    Tick,
}

/// An event the balancer cannot apply. State is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("unknown connector {0}")]
    UnknownConnector(ConnectorKey),
    #[error("unknown charger {0}")]
    UnknownCharger(ChargerKey),
    #[error("unknown or already settled command {0}")]
    UnknownCommand(CommandId),
    #[error("connector {0} already has a session")]
    SessionActive(ConnectorKey),
    #[error("connector {0} has no session")]
    NoSession(ConnectorKey),
}

/// What the caller must send to a charger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Set the session's limit (OCPP TxProfile). 0 A pauses it. `phases` is the
    /// numberPhases to put in the schedule. With `expires`, the limit is a lease: the
    /// charger must drop it at that time (a schedule duration) and fall back to its
    /// TxDefaultProfile unless we renewed it, so a charger that loses us does not hold
    /// capacity for ever. With `then`, a handover scheduled ahead: `amps_per_phase` until the
    /// given moment (on the charger's clock), that limit from then on.
    SetLimit {
        id: CommandId,
        connector: ConnectorKey,
        session: SessionKey,
        amps_per_phase: DeciAmps,
        phases: u8,
        expires: Option<Millis>,
        then: Option<(Millis, DeciAmps)>,
    },
    /// Set the connector's own default (OCPP TxDefaultProfile on that connector, above the
    /// charger-wide one at the site's fallback): what a car plugging in there may draw before
    /// its session's first limit, and what a session falls back to when its lease runs out.
    /// 0 A: a car waits for its limit. It does not expire.
    SetDefault { id: CommandId, connector: ConnectorKey, amps_per_phase: DeciAmps },
}

impl Command {
    /// The id to ack or reject.
    pub fn id(&self) -> CommandId {
        match self {
            Command::SetLimit { id, .. } | Command::SetDefault { id, .. } => *id,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
/// Whether we can steer a connector.
pub enum SmartState {
    /// Our profiles are accepted.
    Ok,
    /// A profile was rejected: budgeted at its maximum until a retry
    /// (with backoff) is accepted, the session changes or the charger reconnects.
    Rejected,
    /// The charger does no smart charging: always budgeted at its maximum.
    Unsupported,
}

/// A running session as one balancer knew it, for another to take over ([`Balancer::carry`]).
#[derive(Clone, Debug)]
pub struct CarriedSession {
    session: Session,
    up_to: DeciAmps,
}

#[derive(Clone, Debug)]
struct Session {
    key: SessionKey,
    info: SessionInfo,
    learned_phases: Option<EvPhases>,
    /// Learned maximum and when it was learned.
    learned_max: Option<(DeciAmps, Millis)>,
    /// Probes in a row the car did not take: each doubles the wait for the next (up to 8x).
    failed_probes: u32,
    low_since: Option<Millis>,
    low_peak: DeciAmps,
    /// Running (true) or paused, and since when; `None` until the first decision.
    run: Option<(bool, Millis)>,
    delivered_wh: u32,
    /// Last reading: (draw on its busiest phase, phases drawing, when).
    last_draw: Option<(DeciAmps, u8, Millis)>,
    /// Allocated deciamp-milliseconds so far: the rotation serves the least served first.
    served: u64,
}

impl Session {
    fn phases(&self) -> Option<EvPhases> {
        self.info.ev_phases.or(self.learned_phases)
    }

    /// How long a learned maximum holds before the car is offered more again.
    fn probe_interval(&self, lc: &LearningConfig) -> Millis {
        Millis(lc.probe_after.0.saturating_mul(1 << self.failed_probes.min(3)))
    }
}

/// A limit as a charger runs it: `first`, and with `then` another one from a moment on (a
/// handover scheduled ahead, on the charger's clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Limit {
    first: DeciAmps,
    then: Option<(Millis, DeciAmps)>,
}

impl Limit {
    fn flat(amps: DeciAmps) -> Limit {
        Limit { first: amps, then: None }
    }
    /// The least and the most it may mean at our time `t`, with the charger's clock up to `skew`
    /// off ours: near the switch, either side of it.
    fn range_at(self, t: Millis, skew: Millis) -> (DeciAmps, DeciAmps) {
        match self.then {
            None => (self.first, self.first),
            Some((from, _)) if t + skew < from => (self.first, self.first),
            Some((from, amps)) if t >= from + skew => (amps, amps),
            Some((_, amps)) => (self.first.min(amps), self.first.max(amps)),
        }
    }
    /// The most it may mean at our time `t` (see [`Limit::range_at`]).
    fn at(self, t: Millis, skew: Millis) -> DeciAmps {
        self.range_at(t, skew).1
    }
    /// The least it may mean at our time `t` (see [`Limit::range_at`]).
    fn least_at(self, t: Millis, skew: Millis) -> DeciAmps {
        self.range_at(t, skew).0
    }
    /// Where it ends up.
    fn last(self) -> DeciAmps {
        self.then.map_or(self.first, |x| x.1)
    }
    /// The most it may mean at `t` or later.
    fn most_from(self, t: Millis, skew: Millis) -> DeciAmps {
        self.at(t, skew).max(self.last())
    }
    /// A switch still to come (as seen from our clock) at `now`.
    fn pending(self, now: Millis, skew: Millis) -> bool {
        self.then.is_some_and(|(from, _)| now < from + skew)
    }
    /// A switch down still to come: a session giving way to another.
    fn giving_way(self, now: Millis, skew: Millis) -> bool {
        self.pending(now, skew) && self.last() < self.first
    }
    /// Once its switch is surely past, the plain limit it has become.
    fn settled(self, now: Millis, skew: Millis) -> Limit {
        if self.then.is_some() && !self.pending(now, skew) {
            Limit::flat(self.last())
        } else {
            self
        }
    }
}

/// A connector's own default profile as we steer it.
#[derive(Clone, Debug)]
struct IdleDefault {
    /// The last one it accepted (until then the charger-wide default, the site's fallback).
    acked: DeciAmps,
    /// Sent and not yet answered, oldest first.
    inflight: Vec<(CommandId, DeciAmps)>,
    /// What the plan gives it: the fallback or nothing.
    target: DeciAmps,
    /// When it was last raised: kept the dwell time, so a car asking for a little more does
    /// not make every idle connector's default go down and up again; not against a car that
    /// arrived since.
    raised_at: Option<Millis>,
    /// Since when the plan has had room to raise it (see [`SiteConfig::idle_raise_after`]).
    room_since: Option<Millis>,
    /// False once its charger refused one: left at what it accepted until it reconnects.
    steered: bool,
    /// What the charger has is unknown (it reconnected): send the plan even if unchanged.
    resend: bool,
}

impl IdleDefault {
    fn new(fallback: DeciAmps) -> IdleDefault {
        IdleDefault {
            acked: fallback,
            inflight: Vec::new(),
            target: fallback,
            raised_at: None,
            room_since: None,
            steered: true,
            resend: false,
        }
    }
    /// The most a car may draw under it now: a decrease counts once accepted.
    fn held(&self) -> DeciAmps {
        self.inflight.iter().map(|x| x.1).fold(self.acked, DeciAmps::max)
    }
    /// The default we last sent.
    fn commanded(&self) -> DeciAmps {
        self.inflight.last().map_or(self.acked, |x| x.1)
    }
    /// Its charger answered one we sent.
    fn answered(&mut self, id: CommandId, accepted: bool) {
        if !accepted {
            // It keeps what it had: leave it there rather than ask again and again.
            self.inflight.retain(|x| x.0 != id);
            self.steered = false;
        } else if let Some(pos) = self.inflight.iter().position(|x| x.0 == id) {
            // Applied in order: older ones in flight are superseded.
            self.acked = self.inflight[pos].1;
            self.inflight.drain(..=pos);
        }
    }
}

/// A limit sent and not yet answered.
#[derive(Clone, Copy, Debug)]
struct Sent {
    id: CommandId,
    limit: Limit,
    /// When its lease runs out.
    expires: Option<Millis>,
}

#[derive(Clone, Debug)]
struct Conn {
    online: bool,
    smart: SmartState,
    acked: Limit,
    acked_at: Millis,
    /// When the accepted limit's lease runs out (`None`: a limit that does not expire).
    acked_expires: Option<Millis>,
    last_acked: CommandId,
    /// Sent and not yet answered, oldest first.
    inflight: Vec<Sent>,
    epoch: u64,
    session: Option<Session>,
    /// The charger's state is unknown (it reconnected): send the plan even if unchanged.
    resend: bool,
    /// It takes a schedule that switches (a handover); false once it refused one (a charger that
    /// allows a single period only, say), so it is never sent another.
    schedules: bool,
    /// Its charger's clock agrees with ours well enough for leases and handovers.
    clock_trusted: bool,
    /// After a rejection: profiles rejected in a row, and when to try again (`None` while
    /// the retry is in flight).
    retry: Option<(u32, Option<Millis>)>,
    target: DeciAmps,
    /// Its own default profile: what it may draw between sessions, and a session once its lease ends.
    idle: IdleDefault,
    measured: [DeciAmps; 3],
    /// The session's latest readings, newest first, for an incomer meter's arithmetic (enough
    /// to reach back past a late incomer reading).
    readings: [Option<([DeciAmps; 3], Millis)>; READINGS_KEPT],
}

/// Readings kept per session for an incomer meter: at one every 10 s, 80 s back.
const READINGS_KEPT: usize = 8;

/// A car follows a lower pilot within this (IEC 61851-1 allows it 5 s).
const CAR_FOLLOWS: Millis = Millis(5_000);

impl Conn {
    /// Keeps a session's reading for an incomer meter's arithmetic (none older than the latest).
    fn keep_reading(&mut self, currents: [DeciAmps; 3], at: Millis) {
        if self.session.is_some() && self.readings[0].is_none_or(|(_, latest)| at >= latest) {
            self.readings.rotate_right(1);
            self.readings[0] = Some((currents, at));
        }
    }
    /// The most the charger may be applying at `now`: the accepted limit until its lease runs
    /// out (then its TxDefaultProfile, `fallback`), or any limit in flight whose lease runs.
    /// At a moment `t` to come, leases are as they are `now`: an online charger's is renewed, and
    /// capacity one frees later is not given away before.
    fn held(&self, now: Millis, t: Millis, fallback: DeciAmps, skew: Millis) -> DeciAmps {
        let acked = match self.acked_expires {
            Some(end) if now >= end => fallback,
            _ => self.acked.at(t, skew),
        };
        self.inflight
            .iter()
            .filter(|x| x.expires.is_none_or(|end| now < end))
            .map(|x| x.limit.at(t, skew))
            .fold(acked, DeciAmps::max)
    }
    /// The most the charger may apply at `now` or later, as far as our limits go (for a reset:
    /// what it runs is unknown, a handover it accepted may still be to come).
    fn held_from(&self, now: Millis, fallback: DeciAmps, skew: Millis) -> DeciAmps {
        let acked = match self.acked_expires {
            Some(end) if now >= end => fallback,
            _ => self.acked.most_from(now, skew),
        };
        self.inflight
            .iter()
            .filter(|x| x.expires.is_none_or(|end| now < end))
            .map(|x| x.limit.most_from(now, skew))
            .fold(acked, DeciAmps::max)
    }
    /// The least the charger may have been applying at `t`, after its latest acknowledgement:
    /// the accepted limit (its default, once its lease ran out), or any limit in flight, which
    /// may have landed before its answer comes.
    fn least(&self, t: Millis, fallback: DeciAmps, skew: Millis) -> DeciAmps {
        let acked = match self.acked_expires {
            Some(end) if t >= end => fallback.min(self.acked.least_at(t, skew)),
            _ => self.acked.least_at(t, skew),
        };
        self.inflight.iter().map(|x| x.limit.least_at(t, skew)).fold(acked, DeciAmps::min)
    }
    /// A handover accepted or in flight is still to come.
    fn switching(&self, now: Millis, skew: Millis) -> bool {
        self.acked.pending(now, skew) || self.inflight.iter().any(|x| x.limit.pending(now, skew))
    }
    /// A decrease scheduled ahead, accepted or in flight, is still to come.
    fn giving_way(&self, now: Millis, skew: Millis) -> bool {
        self.acked.giving_way(now, skew) || self.inflight.iter().any(|x| x.limit.giving_way(now, skew))
    }
    /// An accepted lease that is half gone, or longer than leases are now: time to renew it.
    fn lease_due(&self, now: Millis, lease: Millis) -> bool {
        self.inflight.is_empty()
            && self.acked_expires.is_some_and(|end| now + Millis(lease.0 / 2) >= end || end > now + lease)
    }
    /// It may be sent a handover: its charger takes schedules that switch, on a clock we trust.
    fn takes_handovers(&self) -> bool {
        self.schedules && self.clock_trusted
    }
    /// The limit we last sent, as it ends up.
    fn commanded(&self) -> DeciAmps {
        self.inflight.last().map_or(self.acked.last(), |x| x.limit.last())
    }
}

/// The load balancer of one site.
#[derive(Clone, Debug)]
pub struct Balancer {
    cfg: SiteConfig,
    topo: Topology,
    conns: Vec<Conn>,
    store: Option<(PerPhase, Millis)>,
    /// The store's readings and rises, when the rise is learned.
    store_history: RiseHistory,
    /// Since when, and why, the store meter's readings are not believed (see [`Snapshot`]).
    store_set_aside: Option<SetAside>,
    /// How long the store meter has read one value.
    store_unchanged: Unchanged,
    next_id: u64,
    owners: HashMap<CommandId, (usize, u64)>,
    /// Default profiles in flight, by connector index.
    default_owners: HashMap<CommandId, usize>,
    outbox: Vec<Command>,
    last_plan: Millis,
    overcommitted: bool,
    /// When the latest session started: a raised default is not kept against a newcomer.
    last_start: Millis,
    /// Reused buffers: the constraint list of each demand.
    cons_buf: Vec<usize>,
}

/// A plan's working state: what is left on every constraint (node × phase) once the store and
/// everything we cannot steer are counted, and who shares it.
struct Room {
    /// What the store is assumed to draw ...
    store: PerPhase,
    /// ... and whether that is its worst case, for want of a fresh reading.
    store_unknown: bool,
    /// Capacity left per constraint.
    capacity: Vec<i64>,
    /// Connectors with a session we steer.
    steered: Vec<usize>,
    /// Idle connectors whose default we steer, and whether one raised within the dwell keeps it.
    idle: Vec<(usize, bool)>,
    /// Now and every later moment at which a budget changes by itself.
    moments: Vec<Millis>,
}

/// Each steered session's share: (connector, amps, its place in the admission order).
type Shares = Vec<(usize, DeciAmps, usize)>;

fn con(node: usize, p: Phase) -> usize {
    node * 3 + p.index()
}

impl Balancer {
    /// Validates the site and starts with every connector idle and online at its
    /// fallback, no meter reading (so the store is at its worst case).
    pub fn new(cfg: SiteConfig) -> Result<Balancer, ConfigError> {
        let topo = Topology::compile(&cfg)?;
        let conns = cfg
            .connectors
            .iter()
            .map(|c| Conn {
                online: true,
                smart: SmartState::Ok,
                acked: Limit::flat(c.fallback),
                acked_at: Millis(0),
                acked_expires: None,
                last_acked: CommandId(0),
                inflight: Vec::new(),
                epoch: 0,
                session: None,
                resend: false,
                schedules: true,
                clock_trusted: true,
                retry: None,
                target: DeciAmps::ZERO,
                idle: IdleDefault::new(c.fallback),
                measured: [DeciAmps::ZERO; 3],
                readings: [None; READINGS_KEPT],
            })
            .collect();
        Ok(Balancer {
            cfg,
            topo,
            conns,
            store: None,
            store_history: RiseHistory::default(),
            store_set_aside: None,
            store_unchanged: Unchanged::default(),
            next_id: 1,
            owners: HashMap::new(),
            default_owners: HashMap::new(),
            outbox: Vec::new(),
            last_plan: Millis(0),
            overcommitted: false,
            last_start: Millis(0),
            cons_buf: Vec::new(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &SiteConfig {
        &self.cfg
    }

    /// What is known about the session on a connector, if one runs there.
    pub fn session_info(&self, connector: ConnectorKey) -> Option<SessionInfo> {
        let i = self.idx(connector).ok()?;
        self.conns[i].session.as_ref().map(|s| s.info.clone())
    }

    /// Everything this balancer knows about the session on a connector (what the car said, and
    /// what was learned from its draw: phases, maximum, energy, turns served), and the most it
    /// may be drawing now, to hand to a rebuilt balancer with [`Balancer::adopt`].
    pub fn carry(&self, connector: ConnectorKey, now: Millis) -> Option<CarriedSession> {
        let i = self.idx(connector).ok()?;
        let c = &self.conns[i];
        let session = c.session.clone()?;
        // A handover it accepted may still be to come: the most it may draw from now on.
        let up_to = self.budget(i, now).0.max(c.held_from(now, c.idle.held(), self.skew()));
        Some(CarriedSession { session, up_to })
    }

    /// Takes over sessions from another balancer of the same site and clock (a rebuild: a
    /// charger was added, the electrics changed), with one recompute. Each is budgeted at what
    /// the old one budgeted until its charger accepts our plan, like [`Event::LimitUnknown`].
    /// Give the store reading first, or the plan assumes the worst-case store. Sessions that
    /// cannot be placed are returned with the reason; the others are taken over.
    pub fn adopt(
        &mut self,
        sessions: impl IntoIterator<Item = (ConnectorKey, CarriedSession)>,
        now: Millis,
    ) -> Vec<(ConnectorKey, EventError)> {
        let mut failed = Vec::new();
        for (connector, CarriedSession { session, up_to }) in sessions {
            let started = self.apply(
                Event::SessionStarted { connector, session: session.key, info: session.info.clone() },
                now,
            );
            if let Err(err) = started {
                failed.push((connector, err));
                continue;
            }
            if let Ok(i) = self.idx(connector) {
                self.conns[i].session = Some(session);
            }
            if let Err(err) = self.apply(Event::LimitUnknown { connector, up_to }, now) {
                failed.push((connector, err));
            }
        }
        self.recompute(now);
        failed
    }

    /// The last store reading, and when it was taken.
    pub fn store_reading(&self) -> Option<(PerPhase, Millis)> {
        self.store
    }

    /// Takes over another balancer's store reading (with its age: a rebuild must not make an
    /// old reading fresh) and the meter history its rise is learned from.
    pub fn carry_store(&mut self, from: &Balancer) {
        self.store = from.store;
        self.store_history = from.store_history.clone();
        self.store_set_aside = from.store_set_aside;
        self.store_unchanged = from.store_unchanged.clone();
    }

    /// What connector's own default may be on its charger (accepted or in flight), for a rebuilt
    /// balancer to take over with [`Balancer::carry_default`].
    pub fn default_held(&self, connector: ConnectorKey) -> Option<DeciAmps> {
        Some(self.conns[self.idx(connector).ok()?].idle.held())
    }

    /// Takes over what a connector's own default may be from the balancer this one replaces:
    /// counted until the charger accepts the plan's (a fallback changed since is not on the
    /// chargers until then: the charger-wide default is only sent at boot). Answers to the old
    /// balancer's commands are not ours.
    pub fn carry_default(&mut self, connector: ConnectorKey, held: DeciAmps) {
        if let Ok(i) = self.idx(connector) {
            let d = &mut self.conns[i].idle;
            d.acked = held;
            d.inflight.clear();
        }
    }

    /// Feeds the store meter's past readings (oldest first, before any live one) to the rise
    /// learning, as a site's stored meter history would after a restart. What a faulty meter read
    /// is not learned from after a restart either, and a meter that had been repeating itself
    /// before it is still known to (its latest reading, fed next, is set aside at once).
    pub fn learn_store_history(&mut self, readings: impl IntoIterator<Item = (Millis, PerPhase)>) {
        for (at, store) in readings {
            self.weigh_store_reading(at, store, store);
        }
    }

    /// Whether a store meter reading (`raw`, and the store's own load it stands for) is to be
    /// doubted; one that is not is learned from.
    fn weigh_store_reading(&mut self, at: Millis, raw: PerPhase, store: PerPhase) -> Option<MeterDoubt> {
        if self.store_unchanged.frozen(at, raw, self.cfg.store.frozen_after, self.cfg.store.max_age) {
            return Some(MeterDoubt::Unchanged);
        }
        if let Some(learn) = &self.cfg.store.learn_rise {
            if !self.store_history.implausible(learn, store).is_empty() {
                return Some(MeterDoubt::FarBelowFloor);
            }
            self.store_history.observe(learn, at, store);
        }
        None
    }

    /// The rise of the store load the budget allows for, when learned.
    pub fn learned_store_rise(&self) -> Option<PerPhase> {
        self.store_history.allowance(self.cfg.store.learn_rise.as_ref()?)
    }

    /// Safe but questionable aspects of the configuration, for the operator.
    pub fn warnings(&self) -> &[crate::config::ConfigWarning] {
        &self.topo.warnings
    }

    /// Applies one event at time `now` and recomputes. Commands are queued for
    /// [`Balancer::poll_commands`].
    pub fn handle(&mut self, event: Event, now: Millis) -> Result<(), EventError> {
        self.apply(event, now)?;
        self.recompute(now);
        Ok(())
    }

    /// Applies several events that happened at the same `now` (a burst of meter
    /// readings, say) and recomputes once: at 10,000 connectors one recompute costs
    /// ~10 ms, so per-reading recomputes would not keep up. Events that fail are
    /// skipped and returned with their error; the others still apply.
    pub fn handle_all(
        &mut self,
        events: impl IntoIterator<Item = Event>,
        now: Millis,
    ) -> Vec<(Event, EventError)> {
        let mut failed = Vec::new();
        for ev in events {
            if let Err(e) = self.apply(ev.clone(), now) {
                failed.push((ev, e));
            }
        }
        self.recompute(now);
        failed
    }

    /// Acknowledgement of a command: shorthand for [`Event::CommandAccepted`].
    pub fn ack(&mut self, id: CommandId, now: Millis) -> Result<(), EventError> {
        self.handle(Event::CommandAccepted { id }, now)
    }

    /// Rejection of a command: shorthand for [`Event::CommandRejected`].
    pub fn reject(&mut self, id: CommandId, now: Millis) -> Result<(), EventError> {
        self.handle(Event::CommandRejected { id }, now)
    }

    /// Commands to send, oldest first. Decreases come before the increases of the
    /// same recompute, but an increase never depends on an unacked decrease.
    pub fn poll_commands(&mut self, _now: Millis) -> Vec<Command> {
        std::mem::take(&mut self.outbox)
    }

    /// When the balancer next wants a [`Event::Tick`] even if nothing happens.
    pub fn poll_timeout(&self, now: Millis) -> Option<Millis> {
        let mut next: Option<Millis> = None;
        let mut consider = |t: Millis| {
            if t > now && next.is_none_or(|n| t < n) {
                next = Some(t);
            }
        };
        if let Some((_, at)) = self.store {
            let sc = &self.cfg.store;
            consider(at + sc.max_age + Millis(1));
            // The assumed rise grows with the reading's age: re-plan before it outgrows the plan.
            if sc.rise_per_min > DeciAmps::ZERO && sc.replan > Millis(0) && now.since(at) < sc.max_age {
                consider((self.last_plan + sc.replan).max(now + Millis(1)));
            }
        }
        let lease = self.lease();
        for c in &self.conns {
            if let Some((_, Some(at))) = c.retry {
                consider(at);
            }
            // A lease to renew, or one that runs out (an away charger falls back: capacity frees).
            if let Some(end) = c.acked_expires {
                consider(Millis(end.0.saturating_sub(lease.0 / 2)));
                consider(end);
            }
            for x in &c.inflight {
                if let Some(end) = x.expires {
                    consider(end);
                }
            }
            // A handover: where it starts and ends counting, and the last plan that can still
            // schedule the increases it pays for.
            if let Some((from, _)) = c.acked.then {
                let skew = self.skew();
                consider(Millis(from.0.saturating_sub(skew.0)));
                consider(from + skew);
                consider(Millis((from + skew).0.saturating_sub(self.cfg.store.reaction_time.0)));
            }
            if let Some(s) = &c.session {
                if let Some((_, since)) = s.run {
                    consider(since + self.cfg.min_dwell);
                }
                if let Some((_, at)) = s.learned_max {
                    consider(at + s.probe_interval(&self.cfg.learning));
                }
            }
            if let Some(since) = c.idle.room_since {
                // An idle connector's default may go up once its room has lasted.
                consider(since + self.cfg.idle_raise_after);
            }
        }
        next
    }

    fn idx(&self, k: ConnectorKey) -> Result<usize, EventError> {
        self.topo.conn_index.get(&k).copied().ok_or(EventError::UnknownConnector(k))
    }

    fn charger(&self, k: ChargerKey) -> Result<Vec<usize>, EventError> {
        self.topo.charger_conns.get(&k).cloned().ok_or(EventError::UnknownCharger(k))
    }

    /// How far a charger's clock may be off ours, as far as scheduled handovers go.
    fn skew(&self) -> Millis {
        self.cfg.handover.map_or(Millis(0), |h| h.clock_skew)
    }

    /// Takes one event in: each kind has its own step below.
    fn apply(&mut self, event: Event, now: Millis) -> Result<(), EventError> {
        if self.answer_for_a_default(&event) {
            return Ok(());
        }
        match event {
            Event::SessionStarted { connector, session, info } => {
                self.session_started(connector, session, info, now)?
            }
            Event::SessionUpdated { connector, info } => {
                let i = self.idx(connector)?;
                let s = self.conns[i].session.as_mut().ok_or(EventError::NoSession(connector))?;
                s.info = info;
            }
            Event::SessionEnded { connector } => self.session_ended(connector, now)?,
            Event::StoreMeter { currents, measured_at } => {
                self.take_store_reading(currents, measured_at, now)?
            }
            Event::ConnectorMeter { connector, currents, energy_wh, measured_at } => {
                let i = self.idx(connector)?;
                self.learn(i, currents, energy_wh, measured_at);
            }
            Event::DrawStopped { connector, at } => {
                let i = self.idx(connector)?;
                self.conns[i].keep_reading([DeciAmps::ZERO; 3], at);
            }
            Event::CommandAccepted { id } => self.command_accepted(id, now)?,
            Event::CommandRejected { id } => self.command_rejected(id, now)?,
            Event::CommandUnanswered { id } => self.command_unanswered(id, now)?,
            Event::ChargerOnline { charger } => self.charger_online(charger, now)?,
            Event::ChargerOffline { charger } => {
                for i in self.charger(charger)? {
                    self.conns[i].online = false;
                }
            }
            Event::LimitUnknown { connector, up_to } => self.limit_unknown(connector, up_to, now)?,
            Event::SmartChargingUnsupported { charger } => {
                for i in self.charger(charger)? {
                    self.conns[i].smart = SmartState::Unsupported;
                }
            }
            Event::SmartChargingSupported { charger } => self.smart_charging_supported(charger)?,
            Event::SchedulePeriods { charger, max } => {
                if max < 2 {
                    for i in self.charger(charger)? {
                        self.conns[i].schedules = false;
                    }
                }
            }
            Event::ChargerClock { charger, trusted } => self.charger_clock(charger, trusted, now)?,
            Event::GridLimitChanged { limit } => {
                self.topo.limits[ROOT] = limit;
                self.cfg.grid_limit = limit;
            }
            Event::Tick => {}
        }
        Ok(())
    }

    /// An answer to a connector's own default profile (not a limit) is the default's business:
    /// true when it was one.
    fn answer_for_a_default(&mut self, event: &Event) -> bool {
        let (Event::CommandAccepted { id } | Event::CommandRejected { id } | Event::CommandUnanswered { id }) =
            event
        else {
            return false;
        };
        let Some(i) = self.default_owners.remove(id) else { return false };
        let d = &mut self.conns[i].idle;
        match event {
            Event::CommandUnanswered { .. } => d.resend = true,
            _ => d.answered(*id, matches!(event, Event::CommandAccepted { .. })),
        }
        true
    }

    /// A session began: it starts under the connector's default, which is known again.
    fn session_started(
        &mut self,
        connector: ConnectorKey,
        session: SessionKey,
        info: SessionInfo,
        now: Millis,
    ) -> Result<(), EventError> {
        let i = self.idx(connector)?;
        let c = &mut self.conns[i];
        if c.session.is_some() {
            return Err(EventError::SessionActive(connector));
        }
        c.epoch += 1;
        c.inflight.clear();
        // A new transaction starts under the TxDefaultProfile: what it runs is known again
        // (a charger back online marked it to be sent our plan, whatever it ran before).
        c.resend = false;
        c.acked = Limit::flat(c.idle.held());
        c.acked_at = now;
        c.acked_expires = None;
        if c.smart == SmartState::Rejected {
            c.smart = SmartState::Ok;
        }
        c.retry = None;
        self.last_start = now;
        c.session = Some(Session {
            key: session,
            info,
            learned_phases: None,
            learned_max: None,
            failed_probes: 0,
            low_since: None,
            low_peak: DeciAmps::ZERO,
            run: None,
            delivered_wh: 0,
            last_draw: None,
            served: 0,
        });
        Ok(())
    }

    /// A session ended: the connector falls back to its default.
    fn session_ended(&mut self, connector: ConnectorKey, now: Millis) -> Result<(), EventError> {
        let i = self.idx(connector)?;
        let c = &mut self.conns[i];
        if c.session.take().is_none() {
            return Err(EventError::NoSession(connector));
        }
        c.epoch += 1;
        c.inflight.clear();
        c.acked = Limit::flat(c.idle.held());
        c.acked_at = now;
        c.acked_expires = None;
        c.target = DeciAmps::ZERO;
        c.measured = [DeciAmps::ZERO; 3];
        c.readings = [None; READINGS_KEPT];
        if c.smart == SmartState::Rejected {
            c.smart = SmartState::Ok;
        }
        c.retry = None;
        Ok(())
    }

    /// A store meter reading: believed and kept, or set aside (and the worst case counted).
    fn take_store_reading(
        &mut self,
        currents: PerPhase,
        measured_at: Millis,
        now: Millis,
    ) -> Result<(), EventError> {
        // Out-of-order readings must not replace a newer one.
        if self.store.is_none_or(|(_, at)| measured_at >= at) {
            // The store behind an incomer is only worked out where it is learned from.
            let store = match self.cfg.store.meter {
                SiteMeter::Incomer if self.cfg.store.learn_rise.is_some() => {
                    self.store_behind_incomer(currents, measured_at, now)
                }
                _ => currents,
            };
            match self.weigh_store_reading(measured_at, currents, store) {
                // Not believed on any phase (a clamp loose on one phase tells nothing of
                // the others, which may have risen meanwhile), nor learned from: the
                // worst case counts at once.
                Some(why) => {
                    if self.store_set_aside.is_none_or(|s| s.why != why) {
                        tracing::warn!(?why, ?currents, "store meter reading set aside; worst case counted");
                    }
                    let since = self.store_set_aside.map_or(measured_at, |s| s.since);
                    self.store_set_aside = Some(SetAside { why, since });
                }
                None => {
                    if self.store_set_aside.take().is_some() {
                        tracing::info!("store meter reads plausibly again");
                    }
                    self.store = Some((currents, measured_at));
                }
            }
        }
        Ok(())
    }

    /// A charger took a limit: it runs it, and the older ones in flight are superseded.
    fn command_accepted(&mut self, id: CommandId, now: Millis) -> Result<(), EventError> {
        let (i, epoch) = self.owners.remove(&id).ok_or(EventError::UnknownCommand(id))?;
        let c = &mut self.conns[i];
        if c.epoch == epoch {
            if let Some(pos) = c.inflight.iter().position(|x| x.id == id) {
                let Sent { limit: value, expires, .. } = c.inflight[pos];
                // The charger applies profiles in order: older ones in flight are superseded.
                c.inflight.drain(..=pos);
                if id > c.last_acked {
                    c.acked = value;
                    c.acked_at = now;
                    c.acked_expires = expires;
                    c.last_acked = id;
                }
                if c.smart == SmartState::Rejected {
                    // A retry got through: we steer it again, from what it accepted.
                    c.smart = SmartState::Ok;
                    c.retry = None;
                }
            }
        }
        Ok(())
    }

    /// A charger refused a limit: what it draws is unknown, so its maximum counts, and it is retried.
    fn command_rejected(&mut self, id: CommandId, now: Millis) -> Result<(), EventError> {
        let (i, epoch) = self.owners.remove(&id).ok_or(EventError::UnknownCommand(id))?;
        let c = &mut self.conns[i];
        if c.epoch == epoch {
            if c.inflight.iter().any(|x| x.id == id && x.limit.then.is_some()) {
                c.schedules = false;
            }
            // We no longer know what it draws: budget it at its maximum
            // until the session ends or the charger reconnects.
            c.inflight.retain(|x| x.id != id);
            if c.smart != SmartState::Unsupported {
                c.smart = SmartState::Rejected;
                let failures = c.retry.map_or(0, |r| r.0) + 1;
                c.retry = Some((failures, Some(now + self.cfg.retry_wait(failures))));
            }
        }
        Ok(())
    }

    /// A limit got no answer: it stays in flight and is sent again.
    fn command_unanswered(&mut self, id: CommandId, now: Millis) -> Result<(), EventError> {
        let (i, epoch) = self.owners.remove(&id).ok_or(EventError::UnknownCommand(id))?;
        if self.conns[i].epoch == epoch {
            let wait = self.conns[i].retry.map(|(failures, _)| self.cfg.retry_wait(failures));
            let c = &mut self.conns[i];
            // It stays in flight, counted until its lease would end; the next one the
            // charger accepts supersedes it.
            c.resend = true;
            if let (Some((_, at @ None)), Some(wait)) = (c.retry.as_mut(), wait) {
                // It was a retry after a rejection: try again after the same wait.
                *at = Some(now + wait);
            }
        }
        Ok(())
    }

    /// A charger is back: what it runs is unknown, so the worst of what it could counts, and our plan goes again.
    fn charger_online(&mut self, charger: ChargerKey, now: Millis) -> Result<(), EventError> {
        let skew = self.skew();
        for i in self.charger(charger)? {
            let fallback = self.cfg.connectors[i].fallback;
            let c = &mut self.conns[i];
            if !c.online {
                c.online = true;
                // What it runs now is unknown: keep counting the worst of what it
                // could have, and send our plan again. A charger that rebooted may
                // have lost the connector's own default: the charger-wide one applies.
                c.idle.acked = c.idle.held().max(fallback);
                c.idle.inflight.clear();
                c.idle.steered = true;
                // At a 0 A fallback every default is 0 A: nothing to put right.
                c.idle.resend = fallback > DeciAmps::ZERO;
                c.acked = Limit::flat(c.held_from(now, fallback, skew).max(fallback));
                c.acked_expires = None;
                c.inflight.clear();
                c.resend = true;
                if c.smart == SmartState::Rejected {
                    c.smart = SmartState::Ok;
                }
                c.retry = None;
            }
        }
        Ok(())
    }

    /// A connector may run a limit we did not set, up to `up_to`: counted until our plan is acknowledged.
    fn limit_unknown(
        &mut self,
        connector: ConnectorKey,
        up_to: DeciAmps,
        now: Millis,
    ) -> Result<(), EventError> {
        let skew = self.skew();
        let i = self.idx(connector)?;
        let c = &mut self.conns[i];
        c.acked = Limit::flat(c.held_from(now, c.idle.held(), skew).max(up_to));
        c.acked_expires = None;
        c.inflight.clear();
        c.resend = true;
        Ok(())
    }

    /// A charger that ran uncontrolled takes profiles after all: its maximum counts until it accepts our plan.
    fn smart_charging_supported(&mut self, charger: ChargerKey) -> Result<(), EventError> {
        for i in self.charger(charger)? {
            let max = self.cfg.connectors[i].max;
            let c = &mut self.conns[i];
            if c.smart == SmartState::Unsupported {
                // It ran uncontrolled: its maximum counts until it accepts our plan.
                c.smart = SmartState::Ok;
                c.acked = Limit::flat(max);
                c.acked_expires = None;
                c.inflight.clear();
                c.resend = true;
            }
        }
        Ok(())
    }

    /// Whether a charger's clock is trusted with switches and lease ends changed.
    fn charger_clock(&mut self, charger: ChargerKey, trusted: bool, now: Millis) -> Result<(), EventError> {
        let skew = self.skew();
        for i in self.charger(charger)? {
            let c = &mut self.conns[i];
            if c.clock_trusted == trusted {
                continue;
            }
            c.clock_trusted = trusted;
            if !trusted {
                // Its switches and lease ends may come at any time: count the most each
                // limit may mean from now on, for as long as it stands.
                c.acked = Limit::flat(c.acked.most_from(now, skew));
                c.acked_expires = None;
                for x in &mut c.inflight {
                    x.limit = Limit::flat(x.limit.most_from(now, skew));
                    x.expires = None;
                }
            }
            // Trusted: the limit it runs may be made a lease again (it protects us if
            // the charger loses us); not trusted: replace its schedules by a plain limit.
            c.resend = true;
        }
        Ok(())
    }

    /// Learns phase count, own maximum and delivered energy from a connector reading.
    fn learn(&mut self, i: usize, currents: [DeciAmps; 3], energy_wh: Option<u32>, measured_at: Millis) {
        let lc = self.cfg.learning.clone();
        let skew = self.skew();
        let c = &mut self.conns[i];
        c.measured = currents;
        c.keep_reading(currents, measured_at);
        // What the car was offered when the reading was taken, at the least: a limit still in
        // flight may already be in force, so a car is only taken to draw below its offer when it
        // draws below every limit it may have been under. Waiting for them all to settle instead
        // left a car whose share moved every few plans never learned.
        let (acked, acked_at) = (c.least(measured_at, c.idle.held(), skew), c.acked_at);
        let Some(s) = c.session.as_mut() else { return };
        if let Some(e) = energy_wh {
            s.delivered_wh = s.delivered_wh.max(e);
        }
        let drawing = currents.iter().filter(|a| **a >= DeciAmps::new(5)).count() as u8;
        let peak = currents.iter().copied().fold(DeciAmps::ZERO, DeciAmps::max);
        if s.last_draw.is_none_or(|(_, _, at)| measured_at >= at) {
            s.last_draw = Some((peak, drawing, measured_at));
        }
        let on = |a: DeciAmps| a >= DeciAmps::from_amps(1);
        let off = |a: DeciAmps| a < DeciAmps::new(5);
        if s.info.ev_phases.is_none() {
            if currents.iter().filter(|a| on(**a)).count() >= 2 {
                s.learned_phases = Some(EvPhases::Three);
            } else if on(currents[0]) && off(currents[1]) && off(currents[2]) {
                s.learned_phases = Some(EvPhases::One);
            }
        }
        // Learn the car's maximum only from readings taken after the latest acknowledgement (the limit
        // before it may still have been in force then).
        if measured_at <= acked_at || acked < DeciAmps::IEC_MIN {
            return;
        }
        let draw = currents.iter().copied().fold(DeciAmps::ZERO, DeciAmps::max);
        // The car draws clearly more than when we learned its maximum: it wants more
        // now. Forget it, and the next plan offers its full share again.
        let quarter = DeciAmps::new(lc.margin.get() / 4);
        if s.learned_max.is_some_and(|(l, _)| draw >= l) {
            s.learned_max = None;
            s.failed_probes = 0;
        }
        // Offered more than its learned maximum (a probe, or a share just above it) and still
        // drawing below it: the maximum holds. Confirmed now, rather than only once the offer is
        // "clearly" above the draw, which a share 1 A above it would never be.
        if let Some((l, at)) = s.learned_max {
            if acked >= l + quarter && draw < l && measured_at.since(acked_at) >= lc.window {
                if measured_at.since(at) >= s.probe_interval(&lc) {
                    s.failed_probes += 1;
                }
                s.learned_max = Some((l, measured_at));
                s.low_since = None;
                s.low_peak = DeciAmps::ZERO;
                return;
            }
        }
        if draw + lc.margin <= acked {
            let since = *s.low_since.get_or_insert(measured_at);
            s.low_peak = s.low_peak.max(draw);
            if measured_at.since(since) >= lc.window {
                // A little headroom above what it drew, so a car that wants more can show
                // it (with 0.1 A granularity; with whole amps the periodic probe does).
                // (Learned lower than before, as a battery tapers: not a probe the car refused.)
                let learned = s.low_peak + quarter;
                s.learned_max = Some((learned, measured_at));
                s.low_since = None;
                s.low_peak = DeciAmps::ZERO;
            }
        } else {
            s.low_since = None;
            s.low_peak = DeciAmps::ZERO;
        }
    }

    fn footprint(&self, i: usize) -> PhaseSet {
        let cc = &self.cfg.connectors[i];
        match (cc.wiring, self.conns[i].session.as_ref().and_then(Session::phases)) {
            (Wiring::OnePhase, _) | (Wiring::ThreePhase, Some(EvPhases::One)) => {
                PhaseSet::single(cc.rotation.0[0])
            }
            _ => PhaseSet::ALL,
        }
    }

    fn controllable(&self, i: usize) -> bool {
        let c = &self.conns[i];
        c.online && c.smart == SmartState::Ok && c.session.is_some()
    }

    /// Most connector `i` may draw at `now`, and on which phases.
    fn budget(&self, i: usize, now: Millis) -> (DeciAmps, PhaseSet) {
        self.budget_at(i, now, now)
    }

    /// Most connector `i` may draw at the moment `t` as far as we know `now` (handovers to come).
    fn budget_at(&self, i: usize, now: Millis, t: Millis) -> (DeciAmps, PhaseSet) {
        let cc = &self.cfg.connectors[i];
        let c = &self.conns[i];
        let skew = self.skew();
        let default = c.idle.held();
        // A charger that takes no profile at all runs its maximum, with us or without.
        if c.smart == SmartState::Unsupported || (c.smart == SmartState::Rejected && c.session.is_some()) {
            (cc.max, wiring_phases(cc))
        } else if !c.online && c.session.is_some() {
            (c.held(now, t, default, skew).max(default), wiring_phases(cc))
        } else if c.session.is_none() {
            (default, wiring_phases(cc))
        } else {
            (c.held(now, t, default, skew), self.footprint(i))
        }
    }

    /// The store's load behind an incomer reading taken at `at`: the reading less what the cars
    /// surely drew then. Each car counts at the lowest of its two latest readings taken by `at`
    /// and its first one after (it may have changed between them), all within the meter's age of
    /// `at`. A car with no reading by `at` counts as nothing: it may have been drawing less then
    /// (it started, or was raised, since), and a late incomer reading must not take the store
    /// for smaller by what the car drew after it. Nor does a car count above the most our limits
    /// let it draw at `at` (once it had followed them): a reading from before a decrease of ours
    /// is not what it drew after.
    /// So the store is never taken for smaller than it was, unless a car dropped by itself after
    /// its latest reading and before `at` without its charger saying so.
    fn store_behind_incomer(&self, reading: PerPhase, at: Millis, now: Millis) -> PerPhase {
        let window = self.cfg.store.max_age;
        let mut cars = [0u32; 3];
        for (i, c) in self.conns.iter().enumerate() {
            if c.session.is_none() {
                continue;
            }
            let cc = &self.cfg.connectors[i];
            let near =
                || c.readings.iter().flatten().filter(|(_, t)| t.since(at).max(at.since(*t)) <= window);
            let mut by = near().filter(|(_, t)| *t <= at).take(2).peekable();
            if by.peek().is_none() {
                continue;
            }
            // Newest first: the first reading after `at` is the last of those after it.
            let after = near().rfind(|(_, t)| *t > at);
            // Our limits bound what it drew only once the car had followed the latest of them.
            let allowed = if c.acked_at + CAR_FOLLOWS <= at {
                self.budget_at(i, now, at).0
            } else {
                DeciAmps::new(u32::MAX)
            };
            let lower = by
                .chain(after)
                .fold([allowed; 3], |l, (currents, _)| [0, 1, 2].map(|k| l[k].min(currents[k])));
            let wired = if cc.wiring == Wiring::OnePhase { 1 } else { 3 };
            for (k, amps) in lower.iter().enumerate().take(wired) {
                cars[cc.rotation.0[k].index()] += amps.get();
            }
        }
        PerPhase(Phase::ALL.map(|p| DeciAmps::new(reading.get(p).get().saturating_sub(cars[p.index()]))))
    }

    /// Store load we assume now, and whether it is the worst case.
    fn store_assumed(&self, now: Millis) -> (PerPhase, bool) {
        let sc = &self.cfg.store;
        let store = match (self.store, sc.meter) {
            (Some((reading, at)), SiteMeter::Incomer) => {
                Some((self.store_behind_incomer(reading, at, now), at))
            }
            (other, _) => other,
        };
        if self.store_set_aside.is_some() {
            return (sc.worst_case, true);
        }
        match store {
            Some((reading, at)) if now.since(at) <= sc.max_age => {
                let blind = now.since(at).0 + sc.reaction_time.0 + sc.replan.0;
                let rise =
                    (u64::from(sc.rise_per_min.get()) * blind / 60_000).min(u64::from(sc.max_rise.get()));
                let configured = PerPhase::uniform(DeciAmps::new(u32::try_from(rise).unwrap_or(u32::MAX)));
                // Within the horizon it was learned over, the learned rise is the bound; past it
                // (a late reading) the configured one too, whichever is larger.
                let learned = sc.learn_rise.as_ref().and_then(|l| {
                    let at_least = if Millis(blind) <= l.horizon {
                        PerPhase::uniform(DeciAmps::ZERO)
                    } else {
                        configured
                    };
                    self.store_history.bound(l, at, reading, at_least)
                });
                let bound = learned
                    .unwrap_or_else(|| PerPhase(Phase::ALL.map(|p| reading.get(p) + configured.get(p))));
                // No more than the worst case, no less than the reading itself.
                (
                    PerPhase(Phase::ALL.map(|p| reading.get(p).max(bound.get(p).min(sc.worst_case.get(p))))),
                    false,
                )
            }
            _ => (sc.worst_case, true),
        }
    }

    /// Budgeted load per constraint at `now` (the store as assumed, plus every connector's budget).
    fn budget_loads(&self, now: Millis, t: Millis, store: PerPhase) -> Vec<i64> {
        let mut load = vec![0i64; self.topo.nodes() * 3];
        for p in Phase::ALL {
            load[con(ROOT, p)] += i64::from(store.get(p).get());
        }
        for i in 0..self.conns.len() {
            let (a, fp) = self.budget_at(i, now, t);
            for &n in &self.topo.paths[i] {
                for p in fp.iter() {
                    load[con(n, p)] += i64::from(a.get());
                }
            }
        }
        load
    }

    fn limit(&self, c: usize) -> i64 {
        i64::from(self.topo.limits[c / 3].0[c % 3].get())
    }

    /// The urgency-and-priority weight of a session's water-filling share.
    fn weight(&self, i: usize, cap: DeciAmps, now: Millis) -> f64 {
        let Some(s) = &self.conns[i].session else { return 1.0 };
        let prio = 1.0 + 2.0 * f64::from(s.info.priority);
        let urgency = match (s.info.energy_need_wh, s.info.departure) {
            (Some(need), Some(dep)) => {
                let rem = f64::from(need.saturating_sub(self.delivered_estimate(s, now)));
                let hours = dep.since(now).0 as f64 / 3.6e6;
                // The current that would just finish by departure on one phase, relative to what
                // the car can take. One phase whatever the car's: shares are amps per phase, and
                // an amp of a full phase gives a 3-phase car three times the energy it gives a
                // 1-phase one. Weighing the need by energy (the same amps per phase for the same
                // kWh, as round robin's equal amps) rather than by per-phase current (the same
                // power) delivers more at the same fairness (docs/benchmarks.md).
                let req_da = if hours > 1e-3 {
                    rem / (f64::from(self.cfg.voltage_ln) * hours) * 10.0
                } else {
                    f64::INFINITY
                };
                (req_da / f64::from(cap.get().max(1))).clamp(0.02, 4.0)
            }
            _ => 1.0,
        };
        prio * (0.05 + urgency)
    }

    /// Energy delivered by `now`: the last reading plus its draw since, so a car that
    /// finished between readings stops holding capacity one meter lag earlier.
    fn delivered_estimate(&self, s: &Session, now: Millis) -> u32 {
        let Some((draw, phases, at)) = s.last_draw else { return s.delivered_wh };
        let ms = u64::from(u32::try_from(now.since(at).0).unwrap_or(u32::MAX));
        // deciamps x volts x phases x ms -> Wh: / (10 x 3_600_000)
        let wh = u64::from(draw.get()) * u64::from(self.cfg.voltage_ln) * u64::from(phases) * ms / 36_000_000;
        s.delivered_wh.saturating_add(u32::try_from(wh).unwrap_or(u32::MAX))
    }

    /// The most a session can use now (0 = nothing to give it).
    fn demand_cap(&self, i: usize, now: Millis) -> DeciAmps {
        let cc = &self.cfg.connectors[i];
        let Some(s) = &self.conns[i].session else { return DeciAmps::ZERO };
        let mut cap = cc.max;
        if let Some(need) = s.info.energy_need_wh {
            // What a limit sent now is for: the car's need from when it is in force. A car that
            // will have finished by then gets nothing, so its capacity is free one round earlier.
            let lands = now + self.cfg.store.reaction_time;
            let rem = need.saturating_sub(self.delivered_estimate(s, lands));
            if rem == 0 {
                return DeciAmps::ZERO;
            }
            // No more than finishes the need before the next re-plan: the rest is
            // worth more to the others. Unknown phases count as one (offer more, not less).
            let horizon = self.cfg.need_horizon.0;
            if horizon > 0 {
                let phases = match s.phases() {
                    Some(EvPhases::Three) => 3,
                    _ => 1,
                };
                let per = u64::from(self.cfg.voltage_ln.max(1)) * phases * horizon;
                let da = (u64::from(rem) * 36_000_000).div_ceil(per);
                let g = u64::from(self.cfg.granularity.get().max(1));
                let da = da.div_ceil(g) * g;
                cap = cap.min(DeciAmps::new(u32::try_from(da).unwrap_or(u32::MAX)));
            }
        }
        if let Some(m) = s.info.ev_max {
            cap = cap.min(m);
        }
        if let Some((l, at)) = s.learned_max {
            let lc = &self.cfg.learning;
            // Past `probe_after` the car may take more again (warmed up, preconditioning done):
            // a little more is offered, not its whole share, which would hold the others' capacity
            // for a round trip when, as most often, it still takes what it did. The margin is
            // enough: a car that cannot take more stays below its maximum, which is confirmed;
            // one that can draws past it, and the maximum is forgotten (see `learn`). Each probe
            // the car does not take doubles the wait for the next.
            let probe = if now.since(at) < s.probe_interval(lc) { DeciAmps::ZERO } else { lc.margin };
            cap = cap.min(l + probe);
        }
        if cap < DeciAmps::from_amps(1) {
            // It draws nothing: pause it until the learned maximum expires and we probe again.
            return DeciAmps::ZERO;
        }
        // Below 6 A a pilot is not allowed; a car that wants 3 A still gets 6 A offered.
        cap.floor_to(self.cfg.granularity).max(DeciAmps::IEC_MIN)
    }

    /// Recomputes the plan and queues the commands it needs: every limit and idle default.
    fn recompute(&mut self, now: Millis) {
        self.settle_and_count_served(now);
        let mut room = self.room_for_sessions(now);
        let (mut shares, demands, cons) = self.share_among_sessions(now, &mut room);
        self.keep_small_moves_quiet(&mut shares, &demands, &cons, &mut room.capacity);
        self.cons_buf = cons;
        self.share_leftover_to_idle_defaults(&mut room);
        self.set_targets(&shares, room.store_unknown, now);
        let mut loads = self.emit_session_limits(now, &shares, &room);
        self.emit_idle_defaults(now, &room.idle, &mut loads);
        self.retry_rejected_profiles(now);
        self.overcommitted = self.over_a_limit(now, room.store);
    }

    /// Limits whose switch has passed are settled, and each session is credited what it was given
    /// since the last plan (its turn in the sharing).
    fn settle_and_count_served(&mut self, now: Millis) {
        let dt = now.since(self.last_plan).0;
        self.last_plan = now;
        let skew = self.skew();
        for c in &mut self.conns {
            c.acked = c.acked.settled(now, skew);
            for x in &mut c.inflight {
                x.limit = x.limit.settled(now, skew);
            }
        }
        for c in &mut self.conns {
            let target = c.target;
            if let Some(s) = c.session.as_mut() {
                s.served += u64::from(target.get()) * dt;
            }
        }
    }

    /// Capacity for controllable sessions: limits minus store minus every budget we cannot steer;
    /// an idle default raised within the dwell keeps its share first.
    fn room_for_sessions(&self, now: Millis) -> Room {
        let nc = self.topo.nodes() * 3;
        let (store, store_unknown) = self.store_assumed(now);
        let mut capacity: Vec<i64> = (0..nc).map(|c| self.limit(c)).collect();
        for p in Phase::ALL {
            capacity[con(ROOT, p)] -= i64::from(store.get(p).get());
        }
        let mut steered = Vec::new();
        // What we cannot steer counts at the most it holds from now on: an offline charger may
        // have accepted an increase that starts at a switch to come.
        let moments = self.budget_moments(now);
        let dwell = self.cfg.min_dwell;
        // Idle connectors whose default we steer: shared after the sessions, except one raised
        // within the dwell, which keeps its share first.
        let mut idle = Vec::new();
        for i in 0..self.conns.len() {
            if self.controllable(i) {
                steered.push(i);
                continue;
            }
            if self.idle_steered(i) {
                idle.push((i, false));
                continue;
            }
            let fp = self.budget(i, now).1;
            let a = moments.iter().map(|&t| self.budget_at(i, now, t).0).fold(DeciAmps::ZERO, DeciAmps::max);
            for &n in &self.topo.paths[i] {
                for p in fp.iter() {
                    capacity[con(n, p)] -= i64::from(a.get());
                }
            }
        }
        for (i, kept) in &mut idle {
            let d = &self.conns[*i].idle;
            *kept = d.raised_at.is_some_and(|at| now.since(at) < dwell && self.last_start <= at)
                && self.fits(&capacity, *i, d.target);
            if *kept {
                let target = d.target;
                self.take_capacity(&mut capacity, *i, target);
            }
        }
        Room { store, store_unknown, capacity, steered, idle, moments }
    }

    /// Shares the room among the steered sessions, in admission order: sessions that must keep
    /// running (dwell), then the rest by priority and least served; sessions that must stay paused
    /// get nothing. Returns the shares, the demands and their constraint list.
    fn share_among_sessions(&mut self, now: Millis, room: &mut Room) -> (Shares, Vec<Demand>, Vec<usize>) {
        let dwell = self.cfg.min_dwell;
        let mut cand: Vec<(u8, std::cmp::Reverse<u8>, u64, usize, DeciAmps, f64)> =
            Vec::with_capacity(room.steered.len());
        for &i in &room.steered {
            let cap = self.demand_cap(i, now);
            let Some(s) = &self.conns[i].session else { continue };
            let class = match s.run {
                Some((true, since)) if now.since(since) < dwell => 0,
                Some((false, since)) if now.since(since) < dwell && cap > DeciAmps::ZERO => 2,
                _ => 1,
            };
            let w = self.weight(i, cap, now);
            let served = (s.served as f64 / w) as u64;
            cand.push((class, std::cmp::Reverse(s.info.priority), served, i, cap, w));
        }
        cand.sort_by_key(|c| (c.0, c.1, c.2, c.3));
        let mut cons = std::mem::take(&mut self.cons_buf);
        cons.clear();
        let mut demands = Vec::with_capacity(cand.len());
        for &(class, _, _, i, cap, w) in &cand {
            let start = cons.len();
            let fp = self.footprint(i);
            for &n in &self.topo.paths[i] {
                for p in fp.iter() {
                    cons.push(con(n, p));
                }
            }
            let cap = if class == 2 { 0 } else { cap.get() };
            demands.push(Demand { cons: start..cons.len(), cap, weight: w });
        }
        let amps = alloc::allocate(
            &mut room.capacity,
            &demands,
            &cons,
            DeciAmps::IEC_MIN.get(),
            self.cfg.granularity.get(),
        );
        let shares =
            cand.iter().zip(amps).enumerate().map(|(k, (c, a))| (c.3, DeciAmps::new(a), k)).collect();
        (shares, demands, cons)
    }

    /// Hysteresis: small moves are not worth a command. Small increases are simply skipped; small
    /// decreases are skipped only where the higher value still fits.
    fn keep_small_moves_quiet(
        &self,
        shares: &mut Shares,
        demands: &[Demand],
        cons: &[usize],
        capacity: &mut [i64],
    ) {
        let hyst = self.cfg.hysteresis;
        for entry in shares.iter_mut() {
            let (i, target, _) = *entry;
            let cur = self.conns[i].commanded();
            if self.conns[i].resend || target == DeciAmps::ZERO || cur == DeciAmps::ZERO {
                continue;
            }
            if target > cur && target - cur < hyst {
                entry.1 = cur;
            } else if target < cur && cur - target < hyst {
                let extra = cur - target;
                let d = &demands[entry.2];
                if cons[d.cons.clone()].iter().all(|&c| capacity[c] >= i64::from(extra.get())) {
                    for &c in &cons[d.cons.clone()] {
                        capacity[c] -= i64::from(extra.get());
                    }
                    entry.1 = cur;
                }
            }
        }
    }

    /// What the sessions leave goes to idle connectors' defaults, all (the fallback) or nothing.
    fn share_leftover_to_idle_defaults(&mut self, room: &mut Room) {
        for &(i, kept) in &room.idle {
            let fallback = self.cfg.connectors[i].fallback;
            let target = if kept {
                self.conns[i].idle.target
            } else if self.fits(&room.capacity, i, fallback) {
                self.take_capacity(&mut room.capacity, i, fallback);
                fallback
            } else {
                DeciAmps::ZERO
            };
            self.conns[i].idle.target = target;
        }
    }

    /// Each steered session's target, and whether it runs or takes its turn paused.
    fn set_targets(&mut self, shares: &Shares, store_unknown: bool, now: Millis) {
        for &(i, target, _) in shares {
            let c = &mut self.conns[i];
            c.target = target;
            let running = target > DeciAmps::ZERO;
            if let Some(s) = c.session.as_mut() {
                if !running && store_unknown {
                    // Paused because the store is assumed at its worst (no fresh reading, as after
                    // a restart): not a turn of the rotation, so no dwell holds it once a reading comes.
                    s.run = None;
                } else if s.run.is_none_or(|(r, _)| r != running) {
                    s.run = Some((running, now));
                }
            }
        }
        for i in 0..self.conns.len() {
            if !self.controllable(i) {
                self.conns[i].target = DeciAmps::ZERO;
            }
        }
    }

    /// Emits the sessions' limits: decreases now; increases only where the budget with them fits,
    /// at every moment the budget changes by itself (handovers accepted or in flight), with the
    /// store as assumed now. A lease half gone is renewed with the plan's value (or the current
    /// one, if an increase must wait). Returns the budget's load at each moment with them.
    fn emit_session_limits(&mut self, now: Millis, shares: &Shares, room: &Room) -> Vec<Vec<i64>> {
        let skew = self.skew();
        let nc = self.topo.nodes() * 3;
        let moments = &room.moments;
        let hyst = self.cfg.hysteresis;
        let lease = self.lease();
        let reaction = self.cfg.store.reaction_time;
        let mut loads: Vec<Vec<i64>> =
            moments.iter().map(|&t| self.budget_loads(now, t, room.store)).collect();
        // How far each constraint is over at its worst moment (an exogenous change). Decreases that
        // cover it are in force as soon as they land, and so are handovers still to come on it; the
        // other decreases, only for the others' sake, keep their sessions charging until the
        // increases they pay for can start (scheduled ahead).
        let mut excess: Vec<Vec<i64>> =
            loads.iter().map(|l| (0..nc).map(|k| (l[k] - self.limit(k)).max(0)).collect()).collect();
        let lead = self.cfg.handover.map(|h| h.lead);
        let mut increases = Vec::new();
        for &(i, target, k) in shares {
            let c = &self.conns[i];
            let cur = c.commanded();
            let fallback = c.idle.held();
            let held = c.held(now, now, fallback, skew);
            // A limit sent again (a lease renewed, a charger back) must not raise any moment to come.
            let floor = moments.iter().map(|&t| c.held(now, t, fallback, skew)).fold(held, DeciAmps::min);
            let again = c.resend || c.lease_due(now, lease);
            let switching = c.switching(now, skew);
            let fp = self.budget(i, now).1;
            let over = excess
                .iter()
                .any(|e| self.topo.paths[i].iter().any(|&n| fp.iter().any(|p| e[con(n, p)] > 0)));
            // A handover to come on a constraint that is over is brought forward, once.
            let forward = switching
                && over
                && target <= cur
                && c.inflight.last().is_none_or(|x| x.limit.then.is_some());
            let lowering = target < cur || forward;
            if lowering || (again && target <= floor) {
                // Deferred, it keeps what it may run now (no more than that at any moment to come).
                let keep = cur.min(floor);
                let limit = match lead {
                    Some(lead)
                        if target < keep && !over && !switching && !c.resend && c.takes_handovers() =>
                    {
                        Limit { first: keep, then: Some((now + lead, target)) }
                    }
                    _ => Limit::flat(target.min(held)),
                };
                if limit.then.is_none() {
                    // What it frees at each moment, once it lands.
                    for (m, e) in excess.iter_mut().enumerate() {
                        let freed = i64::from(c.held(now, moments[m], fallback, skew).get())
                            - i64::from(limit.first.get());
                        for &n in &self.topo.paths[i] {
                            for p in fp.iter() {
                                e[con(n, p)] -= freed.max(0);
                            }
                        }
                    }
                }
                self.emit(i, limit, now);
            } else if target > cur || again {
                increases.push((k, i, target));
            }
        }
        increases.sort();
        let gran = self.cfg.granularity;
        for (_, i, target) in increases {
            let fp = self.budget(i, now).1;
            let c = &self.conns[i];
            let fallback = c.idle.held();
            let cur = c.commanded();
            let renew = c.lease_due(now, lease);
            // An increase may start later, where a handover frees capacity, if it gets more then
            // and is in force before the next plan could see the store rise past what it assumes.
            // One already scheduled may be raised (more of the others' handovers accepted since);
            // a session giving way itself is not raised behind its own decrease.
            let can_wait =
                self.cfg.handover.is_some() && c.takes_handovers() && !c.giving_way(now, skew) && !c.resend;
            let held: Vec<i64> =
                moments.iter().map(|&t| i64::from(c.held(now, t, fallback, skew).get())).collect();
            let mut best: Option<(DeciAmps, usize)> = None;
            for (from, &start) in moments.iter().enumerate() {
                if from > 0 && (!can_wait || start > now + reaction) {
                    break;
                }
                let mut reach = i64::MAX;
                for (m, load) in loads.iter().enumerate().skip(from) {
                    let mut room = i64::MAX;
                    for &n in &self.topo.paths[i] {
                        for p in fp.iter() {
                            let k = con(n, p);
                            room = room.min(self.limit(k) - load[k]);
                        }
                    }
                    reach = reach.min(held[m] + room.max(0));
                }
                let v = DeciAmps::new(u32::try_from(reach.min(i64::from(target.get()))).unwrap_or(0))
                    .floor_to(gran);
                if best.is_none_or(|(b, _)| v > b) {
                    best = Some((v, from));
                }
            }
            let Some((v, from)) = best else { continue };
            let worth = v == target || (v > cur && v - cur >= hyst);
            if v <= cur || v < DeciAmps::IEC_MIN || !worth {
                if renew && i64::from(cur.get()) <= held[0] {
                    self.emit(i, Limit::flat(cur), now);
                }
                continue;
            }
            // Until it starts, no more than it may run now or at any moment before.
            let keep = DeciAmps::new(
                u32::try_from(held[..from].iter().copied().fold(i64::from(cur.get()), i64::min)).unwrap_or(0),
            );
            let limit = if from == 0 {
                Limit::flat(v)
            } else {
                Limit { first: keep, then: Some((moments[from] + skew, v)) }
            };
            self.emit(i, limit, now);
            for (m, load) in loads.iter_mut().enumerate().skip(from) {
                let delta = i64::from(v.get()) - held[m];
                if delta > 0 {
                    for &n in &self.topo.paths[i] {
                        for p in fp.iter() {
                            load[con(n, p)] += delta;
                        }
                    }
                }
            }
        }
        loads
    }

    /// Idle defaults last: decreases now, increases where they fit at every moment, once the room
    /// for them has lasted (a car arriving soon after another left sends no profile to every idle
    /// connector and back).
    fn emit_idle_defaults(&mut self, now: Millis, idle: &[(usize, bool)], loads: &mut [Vec<i64>]) {
        let raise_after = self.cfg.idle_raise_after;
        let mut steered_idle = vec![false; self.conns.len()];
        for &(i, _) in idle {
            steered_idle[i] = true;
        }
        for (c, steered) in self.conns.iter_mut().zip(steered_idle) {
            if !steered {
                // Room seen while idle does not count for a later idle spell.
                c.idle.room_since = None;
            }
        }
        for &(i, _) in idle {
            let d = &mut self.conns[i].idle;
            let (target, cur, held) = (d.target, d.commanded(), d.held());
            let room_lasted = if target > cur {
                let since = *d.room_since.get_or_insert(now);
                now.since(since) >= raise_after || d.resend
            } else {
                d.room_since = None;
                false
            };
            if target < cur || (d.resend && target <= held) {
                self.emit_default(i, target);
            } else if target > cur && room_lasted {
                let extra = i64::from(target.get()) - i64::from(held.get());
                let fp = self.budget(i, now).1;
                let fits_at = |load: &Vec<i64>| {
                    self.topo.paths[i]
                        .iter()
                        .all(|&n| fp.iter().all(|p| self.limit(con(n, p)) - load[con(n, p)] >= extra))
                };
                if loads.iter().all(fits_at) {
                    for load in loads.iter_mut() {
                        for &n in &self.topo.paths[i] {
                            for p in fp.iter() {
                                load[con(n, p)] += extra.max(0);
                            }
                        }
                    }
                    let d = &mut self.conns[i].idle;
                    d.raised_at = Some(now);
                    d.room_since = None;
                    self.emit_default(i, target);
                }
            }
        }
    }

    /// Rejected profiles are tried again at the maximum we budget them at anyway: once one is
    /// accepted the connector is steered again, and the next plan brings it down to its share.
    fn retry_rejected_profiles(&mut self, now: Millis) {
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            let due = matches!(c.retry, Some((_, Some(at))) if at <= now);
            if due && c.online && c.smart == SmartState::Rejected && c.session.is_some() {
                let max = self.cfg.connectors[i].max;
                if let Some(r) = self.conns[i].retry.as_mut() {
                    r.1 = None;
                }
                self.emit(i, Limit::flat(max), now);
            }
        }
    }

    /// Whether the budget, with what was just sent, is over a limit at any moment to come.
    fn over_a_limit(&self, now: Millis, store: PerPhase) -> bool {
        let nc = self.topo.nodes() * 3;
        self.budget_moments(now).into_iter().any(|t| {
            let load = self.budget_loads(now, t, store);
            (0..nc).any(|c| load[c] > self.limit(c))
        })
    }

    /// Now, and every later moment at which a budget changes by itself: where a handover accepted or
    /// in flight may start or surely has happened.
    fn budget_moments(&self, now: Millis) -> Vec<Millis> {
        let skew = self.skew();
        let mut moments = vec![now];
        for c in &self.conns {
            for limit in std::iter::once(c.acked).chain(c.inflight.iter().map(|x| x.limit)) {
                if let Some((from, _)) = limit.then {
                    moments.extend(
                        [Millis(from.0.saturating_sub(skew.0)), from + skew].into_iter().filter(|&t| t > now),
                    );
                }
            }
        }
        moments.sort();
        moments.dedup();
        moments
    }

    fn emit(&mut self, i: usize, limit: Limit, now: Millis) {
        let id = CommandId(self.next_id);
        self.next_id += 1;
        let phases = self.footprint(i).count();
        // A lease ends on the charger's clock: on one we do not trust, the limit holds until replaced.
        let lease = self.lease();
        let c = &mut self.conns[i];
        let expires = (lease > Millis(0) && c.clock_trusted).then(|| now + lease);
        let Some(s) = &c.session else { return };
        c.resend = false;
        c.inflight.push(Sent { id, limit, expires });
        self.owners.insert(id, (i, c.epoch));
        self.outbox.push(Command::SetLimit {
            id,
            connector: self.cfg.connectors[i].key,
            session: s.key,
            amps_per_phase: limit.first,
            phases,
            expires,
            then: limit.then,
        });
    }

    /// How long a limit sent now holds unless renewed: the site's lease, or the longest of the
    /// shorter ones its store's meter never showed climbing past the plan in (a charger that
    /// loses us holds its share for its lease, whatever the store does meanwhile). Never under
    /// four of our slowest round trips: a renewal sent with half the lease left must land in time,
    /// or the car drops to its default while we still talk to its charger.
    fn lease(&self) -> Millis {
        let full = self.cfg.lease;
        let renewable = Millis(4 * self.cfg.store.reaction_time.0);
        match self.cfg.store.learn_rise.as_ref().and_then(|learn| self.store_history.longest_hold(learn)) {
            Some(hold) if full > Millis(0) => full.min(hold.max(renewable)),
            _ => full,
        }
    }

    /// An idle connector whose own default we steer.
    fn idle_steered(&self, i: usize) -> bool {
        let c = &self.conns[i];
        c.online && c.smart == SmartState::Ok && c.session.is_none() && c.idle.steered
    }

    /// Whether `amps` fits in what is left on every constraint of connector `i`'s wiring.
    fn fits(&self, capacity: &[i64], i: usize, amps: DeciAmps) -> bool {
        let fp = wiring_phases(&self.cfg.connectors[i]);
        self.topo.paths[i].iter().all(|&n| fp.iter().all(|p| capacity[con(n, p)] >= i64::from(amps.get())))
    }

    /// Takes `amps` on every constraint of connector `i`'s wiring.
    fn take_capacity(&self, capacity: &mut [i64], i: usize, amps: DeciAmps) {
        let fp = wiring_phases(&self.cfg.connectors[i]);
        for &n in &self.topo.paths[i] {
            for p in fp.iter() {
                capacity[con(n, p)] -= i64::from(amps.get());
            }
        }
    }

    fn emit_default(&mut self, i: usize, amps: DeciAmps) {
        let id = CommandId(self.next_id);
        self.next_id += 1;
        let d = &mut self.conns[i].idle;
        d.resend = false;
        d.inflight.push((id, amps));
        self.default_owners.insert(id, i);
        self.outbox.push(Command::SetDefault {
            id,
            connector: self.cfg.connectors[i].key,
            amps_per_phase: amps,
        });
    }

    /// The live budget per node and connector.
    /// What an operator should look at, if anything, as of the last plan (the site's task plans
    /// again as a reading ages past the meter's age, so this follows without being asked).
    pub fn attention(&self) -> Option<Attention> {
        let silent = self.store.is_some_and(|(_, at)| self.last_plan.since(at) > self.cfg.store.max_age);
        if self.overcommitted {
            Some(Attention::Overcommitted)
        } else if let Some(set_aside) = self.store_set_aside {
            Some(Attention::StoreMeterSetAside(set_aside.why))
        } else if silent {
            Some(Attention::StoreMeterSilent)
        } else {
            None
        }
    }

    pub fn snapshot(&self, now: Millis) -> Snapshot {
        // What the last plan assumed (the store term grows between plans; the plan covers it).
        let planned = self.last_plan;
        let (store_assumed, stale) = self.store_assumed(planned);
        let nn = self.topo.nodes();
        let load = self.budget_loads(planned, planned, store_assumed);
        let mut alloc = vec![[0u32; 3]; nn];
        let mut meas = vec![[0u32; 3]; nn];
        let mut connectors = Vec::with_capacity(self.conns.len());
        for (i, c) in self.conns.iter().enumerate() {
            let cc = &self.cfg.connectors[i];
            let fp = self.footprint(i);
            for &n in &self.topo.paths[i] {
                for p in fp.iter() {
                    alloc[n][p.index()] += c.target.get();
                }
                for (k, a) in c.measured.iter().enumerate() {
                    meas[n][cc.rotation.0[k].index()] += a.get();
                }
            }
            let (budget, budget_phases) = self.budget(i, planned);
            // An idle connector shows its own default profile (one we cannot steer now, as it is).
            let (target, commanded, acked) = match c.session {
                Some(_) => (c.target, c.commanded(), c.acked.at(planned, self.skew())),
                None if self.idle_steered(i) => (c.idle.target, c.idle.commanded(), c.idle.acked),
                None => (c.idle.held(), c.idle.commanded(), c.idle.acked),
            };
            connectors.push(ConnectorView {
                connector: cc.key,
                circuit: cc.circuit,
                session: c.session.as_ref().map(|s| s.key),
                online: c.online,
                smart: c.smart,
                target,
                commanded,
                acked,
                budget,
                budget_phases,
                measured: c.measured,
                learned_max: c.session.as_ref().and_then(|s| s.learned_max.map(|x| x.0)),
                ev_phases: c.session.as_ref().and_then(Session::phases),
                paused: c.session.is_some() && c.target == DeciAmps::ZERO,
                schedules: c.schedules,
                clock_trusted: c.clock_trusted,
                priority: c.session.as_ref().map(|s| s.info.priority),
                energy_left_wh: c.session.as_ref().and_then(|s| {
                    Some(s.info.energy_need_wh?.saturating_sub(self.delivered_estimate(s, now)))
                }),
                departs_in_s: c.session.as_ref().and_then(|s| Some(s.info.departure?.since(now).0 / 1000)),
            });
        }
        let to_pp = |v: [u32; 3]| PerPhase(v.map(DeciAmps::new));
        let nodes = (0..nn)
            .map(|n| NodeView {
                circuit: self.topo.node_ids[n],
                limit: self.topo.limits[n],
                budgeted: to_pp([0, 1, 2].map(|p| u32::try_from(load[n * 3 + p].max(0)).unwrap_or(u32::MAX))),
                allocated: to_pp(alloc[n]),
                measured: to_pp(meas[n]),
            })
            .collect();
        Snapshot {
            at: now,
            store_assumed,
            store_reading: self.store.map(|s| s.0),
            store_worst_case: stale,
            store_rise_learned: self.learned_store_rise(),
            lease_s: self.lease().0 / 1000,
            nodes,
            connectors,
            overcommitted: self.overcommitted,
            store_meter_set_aside: self.store_set_aside,
        }
    }
}

#[cfg(test)]
#[path = "engine_tests/mod.rs"]
mod tests;
