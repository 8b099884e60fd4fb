//! What the balancer shows of itself: its live budget ([`Snapshot`]) per node of the circuit tree
//! and per connector, and whether a site wants an operator's look ([`Attention`]). Plain data for
//! the shell, the API and the console.

use crate::engine::{EvPhases, SmartState};
use crate::units::{CircuitId, ConnectorKey, DeciAmps, Millis, PerPhase, PhaseSet, SessionKey};
use serde::{Deserialize, Serialize};

/// Why the store meter's readings are not believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MeterDoubt {
    /// Far below anything it read over its memory: a loose current clamp, a gateway filling gaps
    /// with zeros (see [`crate::store::RiseHistory::implausible`]).
    FarBelowFloor,
    /// The same reading, to the tenth of an amp, for too long: a gateway repeating the last value
    /// it had (see [`crate::store::Unchanged`]).
    Unchanged,
}

/// The store meter's readings are set aside: why, and since when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAside {
    pub why: MeterDoubt,
    pub since: Millis,
}

/// What an operator should look at on a site, worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Attention {
    /// What is counted exceeds a limit (the store rose; decreases are on their way).
    Overcommitted,
    /// The store meter's readings are set aside: its worst case is counted.
    StoreMeterSetAside(MeterDoubt),
    /// The store meter reported, then went quiet: its worst case is counted. (A site with no
    /// meter counts its worst case by design, and is no cause for a look.)
    StoreMeterSilent,
}

/// The live budget, for the operator API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When it was taken.
    pub at: Millis,
    /// The store load the budget assumes (reading plus possible rise, or worst case).
    pub store_assumed: PerPhase,
    /// The last reading, however old.
    pub store_reading: Option<PerPhase>,
    /// True when the meter is stale or missing and the worst case is assumed.
    pub store_worst_case: bool,
    /// How far the store may rise while unseen, learned from the meter's history (per phase);
    /// `None` while the configured rise applies.
    pub store_rise_learned: Option<PerPhase>,
    /// How long a limit sent now holds unless renewed, seconds (0: limits do not expire): shorter
    /// while the store is seen climbing further within a lease than the plan allows for.
    pub lease_s: u64,
    /// The grid connection first, then every circuit in config order.
    pub nodes: Vec<NodeView>,
    /// Every connector in config order.
    pub connectors: Vec<ConnectorView>,
    /// Some budget exceeds a limit (an exogenous change; decreases are in flight).
    pub overcommitted: bool,
    /// Since when, and why, the store meter's readings are not believed: the worst case is
    /// counted until it reads what a store can again.
    pub store_meter_set_aside: Option<SetAside>,
}

/// One node of the circuit tree (`circuit: None` = the grid connection).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Which circuit; `None` = the grid connection.
    pub circuit: Option<CircuitId>,
    /// Its limit per phase.
    pub limit: PerPhase,
    /// Worst case we count: budgets (+ store at the grid node).
    pub budgeted: PerPhase,
    /// What the plan gives sessions below this node.
    pub allocated: PerPhase,
    /// Sum of the connectors' last measured currents below this node.
    pub measured: PerPhase,
}

/// One connector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectorView {
    /// Which connector.
    pub connector: ConnectorKey,
    /// The circuit it hangs from (`None`: directly below the grid connection).
    pub circuit: Option<CircuitId>,
    /// Its session, if any.
    pub session: Option<SessionKey>,
    /// Whether its charger is connected.
    pub online: bool,
    /// Whether we can steer it.
    pub smart: SmartState,
    /// What the plan gives it (idle: its own default profile, the fallback or nothing).
    pub target: DeciAmps,
    /// The last limit sent (in flight or accepted; idle: its default).
    pub commanded: DeciAmps,
    /// The last limit the charger accepted (idle: its default).
    pub acked: DeciAmps,
    /// The most it may draw now, as the budget counts it.
    pub budget: DeciAmps,
    /// The site phases the budget is counted on.
    pub budget_phases: PhaseSet,
    /// Last measured current on its own L1, L2, L3.
    pub measured: [DeciAmps; 3],
    /// The car's maximum as learned from its draw.
    pub learned_max: Option<DeciAmps>,
    /// The car's phase count, declared or learned.
    pub ev_phases: Option<EvPhases>,
    /// A session at 0 A.
    pub paused: bool,
    /// Whether it is sent handovers (schedules that switch): false once its charger refused one.
    pub schedules: bool,
    /// Whether its charger's clock is trusted with leases and handovers.
    pub clock_trusted: bool,
    /// The session's priority (0 normal).
    pub priority: Option<u8>,
    /// The energy the session still wants, Wh, if its need is known.
    pub energy_left_wh: Option<u32>,
    /// Seconds until the car leaves, if known.
    pub departs_in_s: Option<u64>,
}
