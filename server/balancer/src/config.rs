//! Site configuration and its validation into a compiled topology.
//!
//! Parse, don't validate: `Topology::compile` turns a [`SiteConfig`] into index
//! paths the allocator can walk without lookups, or says precisely why the site
//! cannot be balanced safely.

use crate::store::RiseLearning;
use crate::units::{
    ChargerKey, CircuitId, ConnectorKey, DeciAmps, Millis, PerPhase, Phase, PhaseSet, Rotation,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How a connector is wired to the site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wiring {
    /// Only the connector's L1 is connected (to site phase `rotation[0]`).
    OnePhase,
    /// All three phases are connected, in `rotation` order.
    ThreePhase,
}

/// A feeder or breaker with its own per-phase limit. Circuits nest through `parent`;
/// `None` means the circuit hangs directly off the grid connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CircuitConfig {
    /// Its id, unique in the site.
    pub id: CircuitId,
    /// The circuit it hangs off; `None` = the grid connection.
    pub parent: Option<CircuitId>,
    /// Breaker limit per phase.
    pub limit: PerPhase,
}

/// One connector (EVSE).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectorConfig {
    /// Its key, unique in the site.
    pub key: ConnectorKey,
    /// The OCPP connection this connector belongs to (offline/online is per charger).
    pub charger: ChargerKey,
    /// The innermost circuit feeding it; `None` = directly on the grid connection.
    pub circuit: Option<CircuitId>,
    /// Maximum current per phase of the connector (cable, contactor, breaker).
    pub max: DeciAmps,
    /// One or three phases connected.
    pub wiring: Wiring,
    /// Which site phase each of its L1, L2, L3 is on.
    pub rotation: Rotation,
    /// What the charger applies with no profile of ours in force: its TxDefaultProfile,
    /// or its offline/fail-safe limit. A car that plugs in draws this until our limit lands.
    pub fallback: DeciAmps,
}

/// What the site meter measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SiteMeter {
    /// The store's own load, without the chargers.
    #[default]
    Store,
    /// The grid connection (main incomer): the store's load and the cars'. The store is what is
    /// left after the cars' own readings at about the same time.
    Incomer,
}

/// What we assume about the store's own consumption.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// Where the site meter is.
    #[serde(default)]
    pub meter: SiteMeter,
    /// Assumed when the meter has not reported within `max_age` (or never has).
    pub worst_case: PerPhase,
    /// A reading older than this is not trusted at all.
    pub max_age: Millis,
    /// How fast the store load can rise, per minute. A reading of age `a` is assumed
    /// to have risen by `rise_per_min * (a + reaction_time + replan)`, capped at
    /// `max_rise` and at `worst_case`: the plan must hold until the next re-plan's
    /// decreases are in force. This is a bound on the meter's blind spot, not a
    /// blanket margin.
    pub rise_per_min: DeciAmps,
    /// Cap on that rise.
    pub max_rise: DeciAmps,
    /// How long a decrease of ours takes to be in force (OCPP round trip + charger ramp).
    pub reaction_time: Millis,
    /// While a reading ages, the balancer re-plans at least this often (its assumed rise grows).
    pub replan: Millis,
    /// Learn the rise from the meter's history instead (see `store.rs`); until enough history,
    /// `rise_per_min` and `max_rise` apply.
    #[serde(default)]
    pub learn_rise: Option<RiseLearning>,
    /// A meter that repeats one reading, to the tenth of an amp on every phase, for this long is
    /// not believed until it reads something else (see [`crate::store::Unchanged`]);
    /// zero: never.
    #[serde(default)]
    pub frozen_after: Millis,
}

/// How a car's own maximum current is learned from its draw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearningConfig {
    /// The car must draw clearly less than offered for this long before we believe it.
    pub window: Millis,
    /// "Clearly less" means at least this much below the offer.
    pub margin: DeciAmps,
    /// A learned maximum is probed after this long (the car may want more again, e.g. after
    /// pre-conditioning): the car is offered `margin` more, and forgets the maximum if it takes
    /// it. Each probe in a row it does not take doubles the wait, up to eight times this.
    pub probe_after: Millis,
}

/// Everything the balancer needs to know about a site. Changes need a new `Balancer`,
/// except the grid limit (see [`crate::Event::GridLimitChanged`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteConfig {
    /// Grid connection limit per phase.
    pub grid_limit: PerPhase,
    /// The circuit tree (feeders, breakers), parents before or after children.
    pub circuits: Vec<CircuitConfig>,
    /// Every connector of the site.
    pub connectors: Vec<ConnectorConfig>,
    /// What we assume about the store's own load.
    pub store: StoreConfig,
    /// How cars' own maxima are learned.
    pub learning: LearningConfig,
    /// Minimum time a session stays running or paused before the rotation may flip it.
    pub min_dwell: Millis,
    /// Changes smaller than this are not sent (crossing zero always is, and so is any
    /// decrease a limit needs).
    pub hysteresis: DeciAmps,
    /// Limits are multiples of this (1 = 0.1 A OCPP resolution, 10 = whole amps).
    pub granularity: DeciAmps,
    /// Phase-to-neutral voltage, to turn energy needs into currents for urgency.
    pub voltage_ln: u32,
    /// How often the caller re-plans at least (meter period). A session with a known
    /// energy need is offered no more than finishes it within this time; zero = off.
    pub need_horizon: Millis,
    /// First wait before a rejected profile is sent again; each further rejection doubles
    /// it, up to 32 times this.
    pub profile_retry: Millis,
    /// How long a limit we send holds (its schedule's duration) unless renewed; renewed
    /// when half gone. A charger that loses us falls back to its TxDefaultProfile when it
    /// runs out, so its capacity is free again. Zero = limits do not expire.
    #[serde(default)]
    pub lease: Millis,
    /// Handovers scheduled ahead (`None`: every decrease is in force as soon as it lands).
    #[serde(default)]
    pub handover: Option<HandoverConfig>,
    /// An idle connector's own default goes back up only once the room for it has lasted this
    /// long, so a car arriving soon after another left does not send every idle connector a
    /// profile down and up again. Decreases are never delayed. Zero = at once.
    #[serde(default)]
    pub idle_raise_after: Millis,
}

/// Handovers scheduled ahead. A decrease that only frees capacity for other sessions (nothing is
/// over a limit) is sent as "keep the current limit until `lead` from now, then the new one"; once
/// the charger has accepted it, the increases it pays for are sent to start from that moment. The
/// session giving way keeps charging while the two answers travel, instead of leaving its share idle
/// for a round trip. It rests on the chargers' clocks: each may be off ours by up to `clock_skew`,
/// so an increase starts two skews after the decrease it needs. Worth it where a round trip takes
/// longer than that (slow links); a decrease any limit needs is never deferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverConfig {
    /// How far ahead a deferred decrease switches: about two round trips.
    pub lead: Millis,
    /// How far a charger's clock may be off ours.
    pub clock_skew: Millis,
}

impl SiteConfig {
    /// How long to wait before sending again a profile refused `failures` times in a row:
    /// `profile_retry`, doubled each time, up to 32 times it.
    pub fn retry_wait(&self, failures: u32) -> Millis {
        Millis(self.profile_retry.0.saturating_mul(1 << failures.saturating_sub(1).min(5)))
    }

    /// A config with the usual defaults around the given physical site.
    pub fn with_defaults(
        grid_limit: PerPhase,
        circuits: Vec<CircuitConfig>,
        connectors: Vec<ConnectorConfig>,
    ) -> Self {
        SiteConfig {
            grid_limit,
            circuits,
            connectors,
            store: StoreConfig {
                meter: SiteMeter::Store,
                worst_case: grid_limit,
                max_age: Millis::from_secs(120),
                rise_per_min: DeciAmps::ZERO,
                max_rise: DeciAmps::ZERO,
                reaction_time: Millis(0),
                replan: Millis::from_secs(5),
                learn_rise: None,
                frozen_after: Millis(0),
            },
            learning: LearningConfig {
                window: Millis::from_secs(120),
                margin: DeciAmps::from_amps(2),
                probe_after: Millis::from_secs(900),
            },
            min_dwell: Millis::from_secs(300),
            hysteresis: DeciAmps::from_amps(1),
            granularity: DeciAmps::new(1),
            voltage_ln: 230,
            need_horizon: Millis(0),
            profile_retry: Millis::from_secs(30),
            lease: Millis(0),
            handover: None,
            idle_raise_after: Millis(0),
        }
    }
}

/// Why a configuration cannot be balanced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("circuit {0} is defined twice")]
    DuplicateCircuit(CircuitId),
    #[error("circuit {circuit} names unknown parent {parent}")]
    UnknownParent { circuit: CircuitId, parent: CircuitId },
    #[error("circuit {0} is its own ancestor")]
    CircuitCycle(CircuitId),
    #[error("connector {0} is defined twice")]
    DuplicateConnector(ConnectorKey),
    #[error("connector {connector} names unknown circuit {circuit}")]
    UnknownCircuit { connector: ConnectorKey, circuit: CircuitId },
    #[error("connector {0}: fallback is above the connector maximum")]
    FallbackAboveMax(ConnectorKey),
    #[error("connector {0}: maximum is below the 6 A IEC 61851 minimum, it could never charge")]
    MaxBelowMinimum(ConnectorKey),
    #[error("granularity must be between 0.1 A and 6 A and divide 6 A")]
    BadGranularity,
    /// Every idle or offline connector may draw its fallback at once; if that alone
    /// overloads a node, no allocation can be safe. Lower the TxDefaultProfile limits.
    #[error("fallback limits alone need {need} on {phase:?} of {node}, limit is {limit}")]
    InfeasibleFallbacks { node: String, phase: Phase, need: DeciAmps, limit: DeciAmps },
}

/// A configuration that is safe but may starve sessions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigWarning {
    /// With every connector idle (or offline) at its fallback and the store at its
    /// worst case, nothing is left for sessions until the idle connectors' own defaults
    /// are lowered (a round trip), nor while chargers are away or just reconnected. Lower
    /// the TxDefaultProfile limits (0 A is fine: a new session then waits one round trip
    /// for its first limit).
    #[error("fallbacks ({fallbacks}) plus worst-case store load ({store}) exceed the grid limit {limit} on {phase:?}")]
    FallbacksAndStoreExceedGrid { phase: Phase, fallbacks: DeciAmps, store: DeciAmps, limit: DeciAmps },
}

/// Index 0 is the grid connection; circuits follow in config order.
pub(crate) const ROOT: usize = 0;

/// A validated site: nodes, per-connector paths to the root.
#[derive(Clone, Debug)]
pub(crate) struct Topology {
    /// Limit per node and phase (node 0 = grid).
    pub limits: Vec<PerPhase>,
    pub node_ids: Vec<Option<CircuitId>>,
    /// Per connector: node indices from its circuit up to and including the root.
    pub paths: Vec<Vec<usize>>,
    pub conn_index: HashMap<ConnectorKey, usize>,
    pub charger_conns: HashMap<ChargerKey, Vec<usize>>,
    pub warnings: Vec<ConfigWarning>,
}

/// The phases a connector's wiring can load.
pub(crate) fn wiring_phases(c: &ConnectorConfig) -> PhaseSet {
    match c.wiring {
        Wiring::OnePhase => PhaseSet::single(c.rotation.0[0]),
        Wiring::ThreePhase => PhaseSet::ALL,
    }
}

impl Topology {
    pub(crate) fn compile(cfg: &SiteConfig) -> Result<Topology, ConfigError> {
        let g = cfg.granularity.get();
        if g == 0 || g > 60 || 60 % g != 0 {
            return Err(ConfigError::BadGranularity);
        }
        let mut idx: HashMap<CircuitId, usize> = HashMap::new();
        let mut limits = vec![cfg.grid_limit];
        let mut node_ids = vec![None];
        for c in &cfg.circuits {
            if idx.insert(c.id, limits.len()).is_some() {
                return Err(ConfigError::DuplicateCircuit(c.id));
            }
            limits.push(c.limit);
            node_ids.push(Some(c.id));
        }
        let mut parent = vec![ROOT; limits.len()];
        for c in &cfg.circuits {
            if let Some(p) = c.parent {
                let pi = *idx.get(&p).ok_or(ConfigError::UnknownParent { circuit: c.id, parent: p })?;
                parent[idx[&c.id]] = pi;
            }
        }
        // A path longer than the number of nodes means a cycle.
        let path_of = |start: usize| -> Result<Vec<usize>, ConfigError> {
            let mut path = vec![start];
            let mut n = start;
            while n != ROOT {
                n = parent[n];
                path.push(n);
                if path.len() > limits.len() {
                    return Err(ConfigError::CircuitCycle(node_ids[start].unwrap_or(CircuitId(0))));
                }
            }
            Ok(path)
        };
        for n in 1..limits.len() {
            path_of(n)?;
        }
        let mut conn_index = HashMap::new();
        let mut charger_conns: HashMap<ChargerKey, Vec<usize>> = HashMap::new();
        let mut paths = Vec::with_capacity(cfg.connectors.len());
        let mut fallback_load = vec![[0u64; 3]; limits.len()];
        for (i, c) in cfg.connectors.iter().enumerate() {
            if conn_index.insert(c.key, i).is_some() {
                return Err(ConfigError::DuplicateConnector(c.key));
            }
            if c.fallback > c.max {
                return Err(ConfigError::FallbackAboveMax(c.key));
            }
            if c.max < DeciAmps::IEC_MIN {
                return Err(ConfigError::MaxBelowMinimum(c.key));
            }
            let leaf = match c.circuit {
                None => ROOT,
                Some(cid) => {
                    *idx.get(&cid).ok_or(ConfigError::UnknownCircuit { connector: c.key, circuit: cid })?
                }
            };
            let path = path_of(leaf)?;
            for &n in &path {
                for p in wiring_phases(c).iter() {
                    fallback_load[n][p.index()] += u64::from(c.fallback.get());
                }
            }
            paths.push(path);
            charger_conns.entry(c.charger).or_default().push(i);
        }
        for (n, load) in fallback_load.iter().enumerate() {
            for p in Phase::ALL {
                let limit = limits[n].get(p);
                if load[p.index()] > u64::from(limit.get()) {
                    return Err(ConfigError::InfeasibleFallbacks {
                        node: node_ids[n].map_or_else(|| "grid".to_string(), |c| c.to_string()),
                        phase: p,
                        need: DeciAmps::new(u32::try_from(load[p.index()]).unwrap_or(u32::MAX)),
                        limit,
                    });
                }
            }
        }
        let mut warnings = Vec::new();
        for p in Phase::ALL {
            let fallbacks = fallback_load[ROOT][p.index()];
            let store = u64::from(cfg.store.worst_case.get(p).get());
            let limit = limits[ROOT].get(p);
            if fallbacks + store > u64::from(limit.get()) {
                warnings.push(ConfigWarning::FallbacksAndStoreExceedGrid {
                    phase: p,
                    fallbacks: DeciAmps::new(u32::try_from(fallbacks).unwrap_or(u32::MAX)),
                    store: cfg.store.worst_case.get(p),
                    limit,
                });
            }
        }
        Ok(Topology { limits, node_ids, paths, conn_index, charger_conns, warnings })
    }

    pub(crate) fn nodes(&self) -> usize {
        self.limits.len()
    }
}
