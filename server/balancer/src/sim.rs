//! A day simulator: drives our [`Balancer`] through an `lb-workload/1` day with the
//! physics of `lb-bench/WORKLOAD.md`, and scores it with the referee's metrics.
//!
//! Pure: the caller parses the JSON, steps the simulation (and may time each step),
//! and writes the pilots. Physics, per step Δ:
//! * a session is present for k in [⌈arrival/Δ⌉, ⌊departure/Δ⌋);
//! * a command sent at step k is in force (and acknowledged) from step k + latency;
//!   until its first command lands, a new session draws its connector's default (`default_a`,
//!   or what the balancer set it to since);
//! * the car draws min(pilot in force, its max, what it still needs);
//! * the balancer sees the store load of step k − lag (the site meter's lag), and each
//!   car's draw and energy up to step k − 1 − car lag. The referee gives acnportal each
//!   car's energy up to the present, so the car lag is 0 unless asked for.
//!
//! * with outages switched on, chargers lose their connection for a while: what they were told
//!   stays in force, commands to them time out, and their sessions' starts and ends reach the
//!   balancer when they are back (OCPP queues them).
//!
//! The pilots written for the referee are what landed, at the step it landed minus the
//! latency: the referee's `--latency-steps` applies the delay itself, so its replay is exactly
//! this physics (jitter and outages included, which it cannot model alone).

use crate::config::{
    CircuitConfig, ConfigError, ConnectorConfig, HandoverConfig, LearningConfig, SiteConfig, SiteMeter,
    StoreConfig, Wiring,
};
use crate::engine::{Balancer, Command, EvPhases, Event, SessionInfo};
use crate::policy::SitePolicy;
use crate::store::{Lens, RiseLearning};
use crate::units::{
    ChargerKey, CircuitId, ConnectorKey, DeciAmps, Millis, PerPhase, Phase, Rotation, SessionKey,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The `lb-workload/1` document (the fields we use).
#[derive(Clone, Debug, Deserialize)]
pub struct Workload {
    pub site: WlSite,
    pub sessions: Vec<WlSession>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct WlSite {
    pub voltage_ln: f64,
    pub grid_limit_a: f64,
    pub step_s: u64,
    pub horizon_steps: usize,
    pub feeders: Vec<WlFeeder>,
    pub connectors: Vec<WlConnector>,
    pub base_load_a: BTreeMap<String, Vec<f64>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct WlFeeder {
    pub id: String,
    pub limit_a: f64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct WlConnector {
    pub id: String,
    pub feeder: String,
    pub max_a: f64,
    pub phases: u8,
    pub rotation: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct WlSession {
    pub id: String,
    pub connector: String,
    pub arrival_s: u64,
    pub departure_s: u64,
    pub est_departure_s: Option<f64>,
    pub energy_kwh: f64,
    pub ev_phases: u8,
    pub ev_max_a: f64,
    #[serde(default)]
    pub priority: u8,
    /// For the taper (the referee's defaults when absent: a 100 kWh battery, empty).
    #[serde(default)]
    pub battery_kwh: Option<f64>,
    #[serde(default)]
    pub soc_start: Option<f64>,
}

/// State of charge at which a tapering battery starts to take less (the referee's
/// `--battery taper`: acnportal's two-stage linear battery).
const TAPER_FROM_SOC: f64 = 0.8;

/// The state of charge after one step of `hours` at `pilot_kw` for a battery of `capacity_kwh`
/// whose charger takes at most `max_kw`: constant power up to the transition, then a power
/// falling linearly with the state of charge to nothing at full (the transition comes later
/// at a lower pilot). Integrated over the step, as the referee's model is.
fn taper_step(soc: f64, pilot_kw: f64, max_kw: f64, capacity_kwh: f64, hours: f64) -> f64 {
    if pilot_kw <= 0.0 || max_kw <= 0.0 || capacity_kwh <= 0.0 {
        return soc;
    }
    let max_dsoc = max_kw * hours / capacity_kwh;
    let dsoc = (pilot_kw * hours / capacity_kwh).min(max_dsoc);
    let transition = TAPER_FROM_SOC + (dsoc - max_dsoc) / max_dsoc * (TAPER_FROM_SOC - 1.0);
    if soc < transition {
        if transition - soc >= dsoc {
            soc + dsoc
        } else {
            1.0 + ((dsoc + soc - transition) / (transition - 1.0)).exp() * (transition - 1.0)
        }
    } else {
        1.0 + (dsoc / (transition - 1.0)).exp() * (soc - 1.0)
    }
}

/// Simulation knobs (mirroring the referee's command line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimOptions {
    /// The site (store) meter's reading reaches us this many steps late.
    pub meter_lag_steps: u64,
    /// Each car's reading (current, energy) reaches us this many steps after the step it
    /// covers ends. The referee's algorithms know every car's energy up to the present.
    pub car_meter_lag_steps: u64,
    pub latency_steps: u64,
    /// What a connector draws before its first limit lands (its TxDefaultProfile).
    pub default_a: u32,
    /// The chargers take a default profile per connector, which the balancer steers (down to 0 A
    /// while the others need the room). Without, as some makes are, they keep the charger-wide
    /// default (`default_a`) and refuse a connector's own: a new car draws it until its first
    /// limit lands, and the balancer must count every idle connector at it.
    pub connector_defaults: bool,
    /// Tell the balancer each car's maximum at session start.
    pub ev_max_known: bool,
    /// Batteries take less above 80 % state of charge (the referee's `--battery taper`).
    pub taper: bool,
    /// Tell the balancer each car's phase count at session start (else it learns it).
    pub ev_phases_known: bool,
    /// Pass `est_departure_s` and the requested energy to the balancer.
    pub use_departure_and_need: bool,
    /// Store load model until it is learned: how fast it can rise (A/min) and by how much at most (A).
    pub store_rise_per_min_a: u32,
    pub store_max_rise_a: u32,
    /// What the store is assumed to draw without a fresh reading; `None`: the grid limit (the
    /// most it can draw; a workload says nothing of the store's own maximum).
    pub store_worst_case_a: Option<u32>,
    pub min_dwell_s: u64,
    /// An idle connector's default goes back up once the room for it has lasted this long.
    pub idle_raise_after_s: u64,
    pub hysteresis_da: u32,
    /// A car's maximum is learned when it draws this much less than offered (tenths of an amp).
    pub learn_margin_da: u32,
    /// Extra per-command delay, 0..=jitter steps (deterministic), on top of the
    /// latency: chargers answer at different speeds, each still in order. The referee
    /// cannot replay this; it is for our own safety tests.
    pub latency_jitter_steps: u64,
    /// Seed of the jitter and the outages.
    pub seed: u64,
    /// Each charger loses its connection this many times a day on average, for 5 to 30 steps.
    pub outages_per_day: u32,
    /// Every charger loses its connection at once at these (step, steps): the site's link to
    /// us is down while its store meter still reports.
    pub all_away: Vec<(u64, u64)>,
    /// Our limits are leases of this many steps (renewed when half gone); a charger that is
    /// away falls back to the default current when its lease ends. 0 = limits do not expire;
    /// `None`: the live site policy's lease ([`SitePolicy`]), in the day's steps.
    pub lease_steps: Option<u64>,
    /// Shorten leases where the store has climbed further within one than the plan allows for:
    /// to the live policy's holds in proportion (600 / 300 / 180 s of 600: half, or 0.3), and the
    /// balancer keeps a lease at four round trips at least.
    pub shorten_leases: bool,
    /// Learn the store's rise from its meter (used once the history spans a day: see
    /// [`DaySim::learn_store_history`]) rather than only the configured rise.
    pub learn_store_rise: bool,
    /// The references the rise is learned over, as (window in steps, rank); empty: our policy
    /// ([`RiseLearning::from_four_weeks`]).
    pub store_lenses: Vec<(u64, usize)>,
    /// How far above the worst rise seen the learned allowance is, percent; `None`: our policy.
    pub store_headroom_pct: Option<u32>,
    /// Schedule handovers ahead (a decrease for another session's sake switches when that
    /// session's increase can land, two latencies on): the simulated chargers' clocks agree with ours.
    pub handover: bool,
    /// Hand each step's events to the balancer as one batch (one recompute) instead
    /// of one recompute per event.
    pub batch: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            meter_lag_steps: 0,
            car_meter_lag_steps: 0,
            latency_steps: 0,
            default_a: 0,
            connector_defaults: true,
            ev_max_known: false,
            ev_phases_known: false,
            taper: false,
            use_departure_and_need: true,
            // Before a day of meter history: the generator's store moves by up to ~21 A between
            // a reading and the step two later (40 generated days), whatever the step.
            store_rise_per_min_a: 24,
            store_max_rise_a: 24,
            store_worst_case_a: None,
            min_dwell_s: 300,
            idle_raise_after_s: 0,
            hysteresis_da: 10,
            learn_margin_da: 20,
            latency_jitter_steps: 0,
            seed: 1,
            outages_per_day: 0,
            all_away: Vec::new(),
            lease_steps: None,
            shorten_leases: true,
            learn_store_rise: true,
            store_lenses: Vec::new(),
            store_headroom_pct: None,
            handover: true,
            batch: true,
        }
    }
}

/// Why a workload cannot be simulated.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("unknown phase name {0:?}")]
    BadPhase(String),
    #[error("session {session} names unknown connector {connector}")]
    UnknownConnector { session: String, connector: String },
    #[error("connector {connector} names unknown feeder {feeder}")]
    UnknownFeeder { connector: String, feeder: String },
    #[error("base load for {0} missing or shorter than the horizon")]
    BaseLoad(String),
    #[error("site configuration: {0}")]
    Config(#[from] ConfigError),
}

/// The referee's metrics, computed by our own physics.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Metrics {
    pub sessions: usize,
    pub requested_kwh: f64,
    pub delivered_kwh: f64,
    pub energy_pct: f64,
    pub satisfied_pct: f64,
    pub jain_frac_served: f64,
    pub min_frac_served: f64,
    pub peak_site_kw: f64,
    pub max_overload_grid_a: f64,
    pub overload_steps_grid: u64,
    pub max_overload_feeder_a: f64,
    pub overload_steps_feeder: u64,
    pub commands: u64,
    /// Of those, idle connectors' own defaults.
    pub default_commands: u64,
    pub events: u64,
    /// Full recomputes of the allocation (one per event, or one per batch).
    pub recomputes: u64,
    /// Events the balancer refused (a simulator bug if not zero).
    pub refused: u64,
    /// Charger outages, and commands that timed out because their charger was away.
    pub outages: u64,
    pub timed_out: u64,
}

fn phase(s: &str) -> Result<Phase, SimError> {
    match s {
        "L1" => Ok(Phase::L1),
        "L2" => Ok(Phase::L2),
        "L3" => Ok(Phase::L3),
        _ => Err(SimError::BadPhase(s.to_string())),
    }
}

/// A pilot from `t` on (a later one at the same moment replaces it).
fn record_pilot(periods: &mut Vec<(u64, u32)>, t: u64, amps: u32) {
    match periods.last_mut() {
        Some(last) if last.0 >= t => last.1 = amps,
        _ => periods.push((t, amps)),
    }
}

/// Deterministic outages per connector: on average `per_day` a day, each 5 to 30 steps long.
/// The next number of a xorshift64 sequence (deterministic, no extra crates); `state` must not be 0.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn outage_plan(connectors: usize, steps: u64, per_day: u32, seed: u64) -> Vec<Vec<(u64, u64)>> {
    let mut rng = seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1;
    let mut next = move || xorshift(&mut rng);
    (0..connectors)
        .map(|_| {
            let mut out = Vec::new();
            if per_day == 0 {
                return out;
            }
            // Mean gap between outages: a day of steps over `per_day`.
            let mean_gap = (steps / u64::from(per_day)).max(2);
            let mut k = next() % mean_gap;
            while k < steps {
                let len = 5 + next() % 26;
                out.push((k, (k + len).min(steps)));
                k += len + 1 + next() % (2 * mean_gap);
            }
            out
        })
        .collect()
}

/// Builds the balancer's site from a workload: feeders become circuits under the grid.
pub fn site_config(wl: &Workload, o: &SimOptions) -> Result<SiteConfig, SimError> {
    let feeders: HashMap<&str, u32> =
        wl.site.feeders.iter().enumerate().map(|(i, f)| (f.id.as_str(), i as u32 + 1)).collect();
    let circuits = wl
        .site
        .feeders
        .iter()
        .enumerate()
        .map(|(i, f)| CircuitConfig {
            id: CircuitId(i as u32 + 1),
            parent: None,
            limit: PerPhase::uniform(DeciAmps::from_f64_floor(f.limit_a)),
        })
        .collect();
    let mut connectors = Vec::new();
    for (i, c) in wl.site.connectors.iter().enumerate() {
        let f = *feeders
            .get(c.feeder.as_str())
            .ok_or_else(|| SimError::UnknownFeeder { connector: c.id.clone(), feeder: c.feeder.clone() })?;
        let mut rot = [Phase::L1; 3];
        for (k, r) in c.rotation.iter().take(3).enumerate() {
            rot[k] = phase(r)?;
        }
        connectors.push(ConnectorConfig {
            key: ConnectorKey(i as u32),
            // One charger per connector: the workload has no multi-connector chargers.
            charger: ChargerKey(i as u32),
            circuit: Some(CircuitId(f)),
            max: DeciAmps::from_f64_floor(c.max_a),
            wiring: if c.phases == 1 { Wiring::OnePhase } else { Wiring::ThreePhase },
            rotation: Rotation(rot),
            fallback: DeciAmps::from_amps(o.default_a),
        });
    }
    let step = Millis::from_secs(wl.site.step_s);
    // The live site policy, in the day's steps where the simulation does not say otherwise.
    let policy = SitePolicy::default();
    let lease_steps = o.lease_steps.unwrap_or(policy.lease.0 / step.0.max(1));
    Ok(SiteConfig {
        grid_limit: PerPhase::uniform(DeciAmps::from_f64_floor(wl.site.grid_limit_a)),
        circuits,
        connectors,
        store: StoreConfig {
            meter: SiteMeter::Store,
            worst_case: PerPhase::uniform(match o.store_worst_case_a {
                Some(a) => DeciAmps::from_amps(a),
                None => DeciAmps::from_f64_floor(wl.site.grid_limit_a),
            }),
            // A reading may be as old as the meter lag plus one step before we distrust it.
            max_age: Millis(step.0 * (o.meter_lag_steps + 2)),
            rise_per_min: DeciAmps::from_amps(o.store_rise_per_min_a),
            max_rise: DeciAmps::from_amps(o.store_max_rise_a),
            // The slowest a decrease of ours can take to land.
            reaction_time: Millis(step.0 * (o.latency_steps + o.latency_jitter_steps)),
            // The store load is constant within a step and every step brings a reading and a
            // new plan: nothing can rise between plans.
            replan: Millis(0),
            frozen_after: crate::store::FROZEN_AFTER,
            // Learned over the blind spot of a reading of the usual age (with no delays there is
            // none to learn).
            learn_rise: (o.learn_store_rise && o.meter_lag_steps + o.latency_steps > 0).then(|| {
                // Over the highest of the latest two readings, the second highest of six, the third of eleven.
                let mut learn = RiseLearning::from_four_weeks(
                    Millis(step.0 * (o.meter_lag_steps + o.latency_steps + o.latency_jitter_steps)),
                    step,
                );
                if let Some(pct) = o.store_headroom_pct {
                    learn.headroom_pct = pct;
                }
                // Leases are shortened where the store climbs further within one than planned for,
                // to the live policy's holds in proportion to the lease (the balancer keeps a
                // lease at four round trips at least).
                if o.shorten_leases && lease_steps > 0 {
                    let mut holds: Vec<u64> = policy
                        .holds
                        .iter()
                        .map(|h| h.0 * lease_steps / policy.lease.0.max(1))
                        .filter(|&h| h > 0)
                        .collect();
                    holds.sort_unstable_by(|a, b| b.cmp(a));
                    holds.dedup();
                    learn.holds = holds.into_iter().map(|h| Millis(step.0 * h)).collect();
                }
                if !o.store_lenses.is_empty() {
                    learn.lenses = o
                        .store_lenses
                        .iter()
                        .map(|&(steps, rank)| Lens { window: Millis(step.0 * steps), rank })
                        .collect();
                }
                learn
            }),
        },
        learning: LearningConfig {
            // A reading is a whole step's average: one clearly low reading is "a while".
            window: Millis(0),
            margin: DeciAmps::new(o.learn_margin_da),
            probe_after: Millis::from_secs(900),
        },
        min_dwell: Millis::from_secs(o.min_dwell_s),
        idle_raise_after: Millis::from_secs(o.idle_raise_after_s),
        hysteresis: DeciAmps::new(o.hysteresis_da),
        // The referee's EVSEs take whole amps.
        granularity: DeciAmps::from_amps(1),
        voltage_ln: wl.site.voltage_ln.round() as u32,
        need_horizon: step,
        profile_retry: Millis::from_secs(30),
        lease: Millis(step.0 * lease_steps),
        handover: (o.handover && o.latency_steps + o.latency_jitter_steps > 0).then(|| HandoverConfig {
            lead: Millis(2 * step.0 * (o.latency_steps + o.latency_jitter_steps)),
            clock_skew: Millis(0),
        }),
    })
}

struct Live {
    /// Index into the workload's sessions.
    w: usize,
    conn: usize,
    arr: u64,
    dep: u64,
    in_force: f64,
    /// When the limit in force runs out (the charger falls back to the default current).
    expires: Option<Millis>,
    /// A handover it accepted: the limit it switches to, and when.
    then: Option<(Millis, u32)>,
    delivered_kwh: f64,
    /// State of charge (with `taper`).
    soc: f64,
    /// Draw and cumulative energy at the end of each step since arrival.
    history: Vec<(f64, f64)>,
}

/// The simulation of one day; call [`DaySim::step`] until it returns `None`.
pub struct DaySim<'a> {
    wl: &'a Workload,
    o: SimOptions,
    pub balancer: Balancer,
    k: u64,
    base: [Vec<f64>; 3],
    rot: Vec<[Phase; 3]>,
    feeder_of: Vec<usize>,
    feeder_limit: Vec<f64>,
    conn_of: Vec<usize>,
    live: BTreeMap<usize, Live>,
    delivered: Vec<f64>,
    /// Commands in flight: (step they land, command).
    pending: Vec<(u64, Command)>,
    /// Per connector, the step its last command lands: a charger handles its
    /// messages in order, so a later command never lands before an earlier one.
    last_landing: HashMap<u32, u64>,
    rng: u64,
    /// Per connector: its outages as [start, end) steps, and whether it is away now.
    outages: Vec<Vec<(u64, u64)>>,
    away: Vec<bool>,
    /// Per connector: its own default profile, whole amps (a new session draws it, and a session
    /// whose lease ran out).
    defaults: Vec<u32>,
    /// Per connector: what it will tell the balancer when it is back.
    queued: Vec<Vec<Event>>,
    batch: Vec<Event>,
    by_key: HashMap<u64, usize>,
    pilots: BTreeMap<String, Vec<(u64, u32)>>,
    m: Metrics,
    /// The balancer's clock at the start of the day (after any store history).
    epoch_ms: u64,
}

impl<'a> DaySim<'a> {
    pub fn new(wl: &'a Workload, o: SimOptions) -> Result<Self, SimError> {
        let cfg = site_config(wl, &o)?;
        let rng = o.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let balancer = Balancer::new(cfg)?;
        let mut base: [Vec<f64>; 3] = Default::default();
        for p in Phase::ALL {
            let name = format!("{p:?}");
            let v = wl.site.base_load_a.get(&name).ok_or_else(|| SimError::BaseLoad(name.clone()))?;
            if v.len() < wl.site.horizon_steps {
                return Err(SimError::BaseLoad(name));
            }
            base[p.index()] = v.clone();
        }
        let fidx: HashMap<&str, usize> =
            wl.site.feeders.iter().enumerate().map(|(i, f)| (f.id.as_str(), i)).collect();
        let cidx: HashMap<&str, usize> =
            wl.site.connectors.iter().enumerate().map(|(i, c)| (c.id.as_str(), i)).collect();
        let mut rot = Vec::new();
        let mut feeder_of = Vec::new();
        for c in &wl.site.connectors {
            let mut r = [Phase::L1; 3];
            for (k, x) in c.rotation.iter().take(3).enumerate() {
                r[k] = phase(x)?;
            }
            rot.push(r);
            feeder_of.push(fidx.get(c.feeder.as_str()).copied().unwrap_or(0));
        }
        let mut outages =
            outage_plan(wl.site.connectors.len(), wl.site.horizon_steps as u64, o.outages_per_day, o.seed);
        for plan in &mut outages {
            plan.extend(o.all_away.iter().map(|&(from, steps)| (from, from + steps)));
        }
        let mut conn_of = Vec::new();
        for s in &wl.sessions {
            conn_of.push(*cidx.get(s.connector.as_str()).ok_or_else(|| SimError::UnknownConnector {
                session: s.id.clone(),
                connector: s.connector.clone(),
            })?);
        }
        let default_a = o.default_a;
        Ok(DaySim {
            wl,
            o,
            balancer,
            k: 0,
            base,
            rot,
            feeder_of,
            feeder_limit: wl.site.feeders.iter().map(|f| f.limit_a).collect(),
            conn_of,
            live: BTreeMap::new(),
            delivered: vec![0.0; wl.sessions.len()],
            pending: Vec::new(),
            last_landing: HashMap::new(),
            batch: Vec::new(),
            rng,
            away: vec![false; outages.len()],
            defaults: vec![default_a; outages.len()],
            queued: vec![Vec::new(); outages.len()],
            outages,
            by_key: HashMap::new(),
            pilots: BTreeMap::new(),
            m: Metrics::default(),
            epoch_ms: 0,
        })
    }

    fn steps(&self) -> u64 {
        self.wl.site.horizon_steps as u64
    }

    fn step_ms(&self) -> u64 {
        self.wl.site.step_s * 1000
    }

    /// The balancer's clock at the start of step `k` of the day.
    fn at(&self, k: u64) -> Millis {
        Millis(self.epoch_ms + k * self.step_ms())
    }

    /// Gives the balancer earlier days of the same site's store meter (the same step), as a
    /// site's stored meter history: its store rise is then learned rather than configured.
    /// The day starts right after them. Call before the first step.
    pub fn learn_store_history(&mut self, days: &[Workload]) -> Result<(), SimError> {
        assert_eq!(self.k, 0, "the store history comes before the day");
        let mut readings = Vec::new();
        let mut j = 0u64;
        for day in days {
            let mut phases: [&[f64]; 3] = [&[]; 3];
            for p in Phase::ALL {
                let name = format!("{p:?}");
                phases[p.index()] = day.site.base_load_a.get(&name).ok_or(SimError::BaseLoad(name))?;
            }
            let [l1, l2, l3] = phases;
            for ((a, b), c) in l1.iter().zip(l2).zip(l3) {
                readings
                    .push((Millis(j * self.step_ms()), PerPhase([*a, *b, *c].map(DeciAmps::from_f64_ceil))));
                j += 1;
            }
            // The days are not consecutive: an hour without readings keeps one day's end from
            // counting as the reference of the next one's start.
            j += 3600 / self.wl.site.step_s.max(1);
        }
        self.epoch_ms = j * self.step_ms();
        self.balancer.learn_store_history(readings);
        Ok(())
    }

    fn feed(&mut self, ev: Event, now: Millis) {
        self.m.events += 1;
        if self.o.batch {
            self.batch.push(ev);
            return;
        }
        self.m.recomputes += 1;
        // Every event here is well-formed by construction; an error is a simulator bug
        // that the zero-overload check would not see, so count it.
        if self.balancer.handle(ev, now).is_err() {
            self.m.refused += 1;
        }
    }

    fn flush(&mut self, now: Millis) {
        if self.batch.is_empty() {
            return;
        }
        self.m.recomputes += 1;
        let failed = self.balancer.handle_all(std::mem::take(&mut self.batch), now);
        self.m.refused += failed.len() as u64;
    }

    /// Runs one step; `None` once the day is over, else how many full recomputes
    /// the balancer did in it.
    pub fn step(&mut self) -> Option<u64> {
        let k = self.k;
        if k >= self.steps() {
            return None;
        }
        let recomputes_before = self.m.recomputes;
        let dt = self.wl.site.step_s;
        let now = self.at(k);
        let lat = self.o.latency_steps;

        // 0. chargers that lose their connection, or are back (with what they queued meanwhile)
        for i in 0..self.outages.len() {
            let away = self.outages[i].iter().any(|&(a, b)| a <= k && k < b);
            if away == self.away[i] {
                continue;
            }
            self.away[i] = away;
            let charger = ChargerKey(i as u32);
            if away {
                self.m.outages += 1;
                self.feed(Event::ChargerOffline { charger }, now);
            } else {
                self.feed(Event::ChargerOnline { charger }, now);
                for ev in std::mem::take(&mut self.queued[i]) {
                    self.feed(ev, now);
                }
            }
        }

        // 1. acknowledgements of commands that land now, oldest first; a charger that is away
        //    never got its command, and the call times out
        let (due, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().partition(|(at, _)| *at <= k);
        self.pending = rest;
        for (_, cmd) in due {
            self.deliver(&cmd, now);
        }

        // 2. departures, then arrivals
        let leaving: Vec<usize> = self.live.iter().filter(|(_, l)| l.dep <= k).map(|(w, _)| *w).collect();
        for w in leaving {
            if let Some(l) = self.live.remove(&w) {
                self.delivered[w] = l.delivered_kwh;
                self.by_key.remove(&(w as u64));
                self.tell(l.conn, Event::SessionEnded { connector: ConnectorKey(l.conn as u32) }, now);
            }
        }
        for (w, s) in self.wl.sessions.iter().enumerate() {
            let arr = s.arrival_s.div_ceil(dt);
            let dep = s.departure_s / dt;
            if arr != k || dep <= arr {
                continue;
            }
            let conn = self.conn_of[w];
            let info = SessionInfo {
                departure: if self.o.use_departure_and_need {
                    s.est_departure_s.map(|e| Millis(self.epoch_ms + (e.max(0.0) * 1000.0) as u64))
                } else {
                    None
                },
                energy_need_wh: if self.o.use_departure_and_need {
                    Some((s.energy_kwh * 1000.0).round() as u32)
                } else {
                    None
                },
                priority: s.priority,
                ev_max: if self.o.ev_max_known { Some(DeciAmps::from_f64_floor(s.ev_max_a)) } else { None },
                ev_phases: if self.o.ev_phases_known {
                    Some(if s.ev_phases == 1 { EvPhases::One } else { EvPhases::Three })
                } else {
                    None
                },
            };
            self.live.insert(
                w,
                Live {
                    w,
                    conn,
                    arr,
                    dep,
                    in_force: f64::from(self.defaults[conn]),
                    expires: None,
                    then: None,
                    delivered_kwh: 0.0,
                    soc: s.soc_start.unwrap_or(0.0).min(1.0),
                    history: Vec::new(),
                },
            );
            self.by_key.insert(w as u64, w);
            // What the referee replays for the first step if we send nothing now.
            self.pilots.insert(s.id.clone(), vec![(k * dt, self.defaults[conn])]);
            self.tell(
                conn,
                Event::SessionStarted {
                    connector: ConnectorKey(conn as u32),
                    session: SessionKey(w as u64),
                    info,
                },
                now,
            );
        }

        // 3. meters, as late as their lags say
        let lag = self.o.meter_lag_steps;
        let car_lag = self.o.car_meter_lag_steps;
        if k >= lag {
            let j = (k - lag) as usize;
            let currents = PerPhase(Phase::ALL.map(|p| DeciAmps::from_f64_ceil(self.base[p.index()][j])));
            self.feed(Event::StoreMeter { currents, measured_at: self.at(k - lag) }, now);
        }
        let readings: Vec<(usize, u64, f64, f64, u8)> = self
            .live
            .values()
            .filter(|l| !self.away[l.conn])
            .filter_map(|l| {
                let j = k.checked_sub(1 + car_lag)?;
                if j < l.arr {
                    return None;
                }
                let (draw, energy) = l.history.get((j - l.arr) as usize).copied()?;
                Some((l.conn, j, draw, energy, self.wl.sessions[l.w].ev_phases))
            })
            .collect();
        for (conn, j, draw, energy, ph) in readings {
            let a = DeciAmps::from_f64_ceil(draw);
            let currents = if ph == 1 { [a, DeciAmps::ZERO, DeciAmps::ZERO] } else { [a, a, a] };
            self.feed(
                Event::ConnectorMeter {
                    connector: ConnectorKey(conn as u32),
                    currents,
                    energy_wh: Some((energy * 1000.0).floor() as u32),
                    // The meter reads at the end of step j: energy so far, current now.
                    measured_at: self.at(j + 1),
                },
                now,
            );
        }
        self.feed(Event::Tick, now);

        // 4. commands; with no latency they land at once
        for _ in 0..8 {
            self.flush(now);
            let cmds = self.balancer.poll_commands(now);
            if cmds.is_empty() {
                break;
            }
            for cmd in cmds {
                self.m.commands += 1;
                if matches!(cmd, Command::SetDefault { .. }) {
                    self.m.default_commands += 1;
                }
                let (Command::SetLimit { connector, .. } | Command::SetDefault { connector, .. }) = &cmd;
                let at =
                    (k + lat + self.jitter()).max(self.last_landing.get(&connector.0).copied().unwrap_or(0));
                self.last_landing.insert(connector.0, at);
                if at <= k {
                    self.deliver(&cmd, now);
                } else {
                    self.pending.push((at, cmd));
                }
            }
        }

        // 5. physics
        let v = self.wl.site.voltage_ln;
        let hours = dt as f64 / 3600.0;
        let mut grid = [0.0f64; 3];
        let mut feeders = vec![[0.0f64; 3]; self.feeder_limit.len()];
        let mut ev_kw = 0.0;
        let pilot_t = k.saturating_sub(lat) * dt;
        for l in self.live.values_mut() {
            if let Some((_, amps)) = l.then.take_if(|(at, _)| now >= *at) {
                l.in_force = f64::from(amps) / 10.0;
                record_pilot(
                    self.pilots.entry(self.wl.sessions[l.w].id.clone()).or_default(),
                    pilot_t,
                    amps / 10,
                );
            }
            if l.expires.is_some_and(|end| now >= end) {
                // The lease ran out: the charger is back on its TxDefaultProfile (and the referee
                // must replay that too).
                let default_a = self.defaults[l.conn];
                l.in_force = f64::from(default_a);
                l.expires = None;
                l.then = None;
                let id = &self.wl.sessions[l.w].id;
                record_pilot(self.pilots.entry(id.clone()).or_default(), pilot_t, default_a);
            }
            let s = &self.wl.sessions[l.w];
            let ph = f64::from(s.ev_phases);
            let need_a = ((s.energy_kwh - l.delivered_kwh).max(0.0) * 1000.0) / (v * ph * hours);
            let mut draw = l.in_force.min(s.ev_max_a).min(need_a).max(0.0);
            if self.o.taper && draw > 0.0 {
                let capacity = s.battery_kwh.unwrap_or(100.0);
                let kw = |a: f64| a * v * ph / 1000.0;
                let soc = taper_step(l.soc, kw(l.in_force), kw(s.ev_max_a), capacity, hours);
                let tapered = (soc - l.soc) * capacity * 1000.0 / (v * ph * hours);
                draw = draw.min(tapered);
                l.soc += draw * v * ph * hours / 1000.0 / capacity;
            }
            l.delivered_kwh += draw * v * ph * hours / 1000.0;
            l.history.push((draw, l.delivered_kwh));
            ev_kw += draw * v * ph / 1000.0;
            let f = self.feeder_of[l.conn];
            let phases: Vec<Phase> =
                if s.ev_phases == 1 { vec![self.rot[l.conn][0]] } else { Phase::ALL.to_vec() };
            for p in phases {
                grid[p.index()] += draw;
                feeders[f][p.index()] += draw;
            }
        }
        let mut over_g = 0.0f64;
        let mut store_kw = 0.0;
        for p in Phase::ALL {
            let b = self.base[p.index()][k as usize];
            store_kw += b * v / 1000.0;
            // Only car current counts against us when the store alone is over.
            let over = (grid[p.index()] + b - self.wl.site.grid_limit_a).max(0.0).min(grid[p.index()]);
            over_g = over_g.max(over);
        }
        if over_g > 1e-6 {
            self.m.overload_steps_grid += 1;
        }
        self.m.max_overload_grid_a = self.m.max_overload_grid_a.max(over_g);
        let mut over_f = 0.0f64;
        for (f, load) in feeders.iter().enumerate() {
            for x in load {
                over_f = over_f.max(x - self.feeder_limit[f]);
            }
        }
        if over_f > 1e-6 {
            self.m.overload_steps_feeder += 1;
        }
        self.m.max_overload_feeder_a = self.m.max_overload_feeder_a.max(over_f.max(0.0));
        self.m.peak_site_kw = self.m.peak_site_kw.max(ev_kw + store_kw);
        self.k += 1;
        Some(self.m.recomputes - recomputes_before)
    }

    fn jitter(&mut self) -> u64 {
        if self.o.latency_jitter_steps == 0 {
            return 0;
        }
        xorshift(&mut self.rng) % (self.o.latency_jitter_steps + 1)
    }

    /// An event from a charger: now, or when it is back if it is away.
    fn tell(&mut self, conn: usize, ev: Event, now: Millis) {
        if self.away[conn] {
            self.queued[conn].push(ev);
        } else {
            self.feed(ev, now);
        }
    }

    /// A command reaches its charger now: it is in force from this step (and recorded for
    /// the referee at the step it was decided, as the referee adds the latency), and accepted.
    /// A charger that is away never sees it: the call times out.
    fn deliver(&mut self, cmd: &Command, now: Millis) {
        let (Command::SetLimit { id, connector, .. } | Command::SetDefault { id, connector, .. }) = *cmd;
        if self.away[connector.0 as usize] {
            self.m.timed_out += 1;
            self.feed(Event::CommandUnanswered { id }, now);
            return;
        }
        match *cmd {
            Command::SetDefault { .. } if !self.o.connector_defaults => {
                // A charger without a connector's own default refuses it; the charger-wide one stays.
                self.feed(Event::CommandRejected { id }, now);
                return;
            }
            Command::SetDefault { amps_per_phase, .. } => {
                self.defaults[connector.0 as usize] = amps_per_phase.get() / 10;
            }
            Command::SetLimit { session, amps_per_phase, expires, then, .. } => {
                self.land_limit(session, amps_per_phase, expires, then, now)
            }
        }
        self.feed(Event::CommandAccepted { id }, now);
    }

    /// A session's limit lands: in force from this step, recorded for the referee.
    fn land_limit(
        &mut self,
        session: SessionKey,
        amps_per_phase: DeciAmps,
        expires: Option<Millis>,
        then: Option<(Millis, DeciAmps)>,
        now: Millis,
    ) {
        if let Some(&w) = self.by_key.get(&session.0) {
            // A handover whose moment has passed is in force at once.
            let (amps, then) = match then {
                Some((at, later)) if now >= at => (later, None),
                other => (amps_per_phase, other.map(|(at, later)| (at, later.get()))),
            };
            if let Some(l) = self.live.get_mut(&w) {
                l.in_force = amps.as_amps();
                l.expires = expires;
                l.then = then;
            }
            let t = self.k.saturating_sub(self.o.latency_steps) * self.wl.site.step_s;
            record_pilot(self.pilots.entry(self.wl.sessions[w].id.clone()).or_default(), t, amps.get() / 10);
        }
    }

    /// Metrics and the pilots in the referee's replay format.
    pub fn finish(mut self) -> (Metrics, serde_json::Value) {
        for (w, l) in std::mem::take(&mut self.live) {
            self.delivered[w] = l.delivered_kwh;
        }
        let mut fracs = Vec::new();
        let (mut req, mut got, mut sat) = (0.0, 0.0, 0usize);
        let dt = self.wl.site.step_s;
        for (w, s) in self.wl.sessions.iter().enumerate() {
            if s.departure_s / dt <= s.arrival_s.div_ceil(dt) {
                continue;
            }
            let d = self.delivered[w].min(s.energy_kwh);
            req += s.energy_kwh;
            got += d;
            if s.energy_kwh - d < 0.1 {
                sat += 1;
            }
            fracs.push(if s.energy_kwh > 0.0 { d / s.energy_kwh } else { 1.0 });
        }
        let n = fracs.len();
        let sum: f64 = fracs.iter().sum();
        let sum2: f64 = fracs.iter().map(|x| x * x).sum();
        let r2 = |x: f64, d: f64| (x * d).round() / d;
        self.m.sessions = n;
        self.m.requested_kwh = r2(req, 10.0);
        self.m.delivered_kwh = r2(got, 10.0);
        self.m.energy_pct = r2(100.0 * got / req.max(1e-9), 100.0);
        self.m.satisfied_pct = r2(100.0 * sat as f64 / n.max(1) as f64, 10.0);
        self.m.jain_frac_served = if sum2 > 0.0 { r2(sum * sum / (n as f64 * sum2), 10000.0) } else { 0.0 };
        self.m.min_frac_served = r2(fracs.iter().copied().fold(1.0, f64::min), 1000.0);
        self.m.peak_site_kw = r2(self.m.peak_site_kw, 10.0);
        self.m.max_overload_grid_a = r2(self.m.max_overload_grid_a, 100.0);
        self.m.max_overload_feeder_a = r2(self.m.max_overload_feeder_a, 100.0);
        let pilots: serde_json::Map<String, serde_json::Value> = self
            .pilots
            .into_iter()
            .map(|(id, v)| {
                (
                    id,
                    serde_json::Value::from(
                        v.into_iter().map(|(t, a)| vec![t, u64::from(a)]).collect::<Vec<_>>(),
                    ),
                )
            })
            .collect();
        (self.m, serde_json::json!({ "pilots": pilots }))
    }
}

#[cfg(test)]
mod tests {
    use super::taper_step;

    #[test]
    fn a_battery_takes_its_pilot_below_the_transition_and_ever_less_above_it() {
        let (max_kw, cap, h) = (22.0, 50.0, 1.0 / 60.0);
        // Below 80 %: exactly the pilot's energy.
        let soc = taper_step(0.5, 11.0, max_kw, cap, h);
        assert!((soc - (0.5 + 11.0 * h / cap)).abs() < 1e-12);
        // Above it at full power: at 90 % the battery takes about half of its maximum, at 95 %
        // about a quarter, and it never passes full.
        let took = |from: f64| (taper_step(from, max_kw, max_kw, cap, h) - from) * cap / h;
        assert!((took(0.9) / max_kw - 0.5).abs() < 0.02, "{}", took(0.9));
        assert!((took(0.95) / max_kw - 0.25).abs() < 0.02, "{}", took(0.95));
        let mut s = 0.7;
        for _ in 0..10_000 {
            s = taper_step(s, max_kw, max_kw, cap, h);
        }
        assert!(s < 1.0 && s > 0.999);
        // A lower pilot reaches its own limit later: at half power, the taper starts at 90 %.
        let half = max_kw / 2.0;
        let s = taper_step(0.85, half, max_kw, cap, h);
        assert!((s - (0.85 + half * h / cap)).abs() < 1e-12, "full half power at 85 %");
        assert!(taper_step(0.95, half, max_kw, cap, h) - 0.95 < half * h / cap * 0.6);
        // Nothing offered, nothing taken.
        assert_eq!(taper_step(0.5, 0.0, max_kw, cap, h), 0.5);
    }
}
