//! Deterministic time-stepped simulation (quinn-proto `Pair` style): our balancer,
//! chargers that apply limits only after a latency, meters that lag, cars that draw
//! min(limit in force, own max, need). The TRUE physical currents must never exceed a
//! limit, whatever the delays.

use forecourt_balancer::sim::{DaySim, SimOptions, WlConnector, WlFeeder, WlSession, WlSite, Workload};
use forecourt_balancer::Phase;
use std::collections::BTreeMap;

/// A small deterministic PRNG (xorshift64*), so the test needs no extra crates.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// A busy 6-hour day on 10 connectors (2 feeders), store load that wanders by at most
/// 12 A per minute, mixed 1- and 3-phase cars with 16 or 32 A on-board chargers.
fn workload(seed: u64) -> Workload {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let steps = 360;
    let rots = [["L1", "L2", "L3"], ["L2", "L3", "L1"], ["L3", "L1", "L2"]];
    let connectors: Vec<WlConnector> = (0..10)
        .map(|i| WlConnector {
            id: format!("C{i}"),
            feeder: format!("F{}", i / 5),
            max_a: 32.0,
            phases: 3,
            rotation: rots[i % 3].iter().map(|s| s.to_string()).collect(),
        })
        .collect();
    let mut base: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for p in ["L1", "L2", "L3"] {
        let mut level = 40.0;
        let v = (0..steps)
            .map(|_| {
                level = (level + (r.unit() - 0.5) * 24.0).clamp(10.0, 70.0);
                (level * 100.0f64).round() / 100.0
            })
            .collect();
        base.insert(p.to_string(), v);
    }
    let mut sessions = Vec::new();
    for (c, conn) in connectors.iter().enumerate() {
        let mut t = r.range(0, 1800);
        while t < (steps as u64 - 30) * 60 {
            let dwell = r.range(20 * 60, 120 * 60);
            let three = r.unit() < 0.7;
            let ev_max = if r.unit() < 0.5 { 16.0 } else { 32.0 };
            let kw = ev_max * 230.0 * if three { 3.0 } else { 1.0 } / 1000.0;
            sessions.push(WlSession {
                id: format!("s{c}-{t}"),
                connector: conn.id.clone(),
                arrival_s: t,
                departure_s: t + dwell,
                est_departure_s: Some((t + dwell) as f64 + (r.unit() - 0.5) * 1200.0),
                energy_kwh: (kw * dwell as f64 / 3600.0 * (0.3 + 0.7 * r.unit()) * 100.0).round() / 100.0,
                ev_phases: if three { 3 } else { 1 },
                ev_max_a: ev_max,
                priority: u8::from(r.unit() < 0.1),
                battery_kwh: None,
                soc_start: None,
            });
            t += dwell + r.range(60, 3600);
        }
    }
    Workload {
        site: WlSite {
            voltage_ln: 230.0,
            grid_limit_a: 120.0,
            step_s: 60,
            horizon_steps: steps,
            feeders: vec![
                WlFeeder { id: "F0".into(), limit_a: 50.0 },
                WlFeeder { id: "F1".into(), limit_a: 40.0 },
            ],
            connectors,
            base_load_a: base,
        },
        sessions,
    }
}

/// The synthetic store never draws more than 70 A (see `workload`): the site's worst case.
fn site_options() -> SimOptions {
    SimOptions { store_worst_case_a: Some(70), ..SimOptions::default() }
}

fn run(wl: &Workload, o: SimOptions) -> (forecourt_balancer::sim::Metrics, serde_json::Value) {
    let mut sim = DaySim::new(wl, o).expect("workload is valid");
    while sim.step().is_some() {}
    sim.finish()
}

#[test]
fn no_overload_of_true_currents_with_meter_lag_and_latency() {
    // (meter lag, latency, default current)
    let table: &[(u64, u64, u32)] =
        &[(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0), (2, 3, 0), (1, 1, 6), (0, 2, 6)];
    for seed in 1..=4 {
        let wl = workload(seed);
        // Odd seeds: one recompute per event; even seeds: one per step's batch.
        let batch = seed % 2 == 0;
        let mut energy = std::collections::HashMap::new();
        for &(lag, lat, default_a) in table {
            let o = SimOptions {
                batch,
                meter_lag_steps: lag,
                // Odd seeds: cars' readings as late as the store's; even: up to the present.
                car_meter_lag_steps: if seed % 2 == 1 { lag } else { 0 },
                latency_steps: lat,
                default_a,
                // The synthetic store rises by at most 12 A a minute.
                store_rise_per_min_a: 12,
                store_max_rise_a: 12 * (lag + lat).max(1) as u32,
                ..site_options()
            };
            let (m, pilots) = run(&wl, o);
            energy.insert((lag, lat, default_a), m.energy_pct);
            let ctx = format!("seed {seed} batch {batch} lag {lag} latency {lat} default {default_a}: {m:?}");
            assert_eq!(m.max_overload_grid_a, 0.0, "{ctx}");
            assert_eq!(m.max_overload_feeder_a, 0.0, "{ctx}");
            assert!(m.energy_pct > 10.0, "the balancer must still charge: {ctx}");
            assert_eq!(m.refused, 0, "the balancer refused an event: {ctx}");
            // Every pilot we would send is 0 or a whole amp in [6, 32].
            for periods in pilots["pilots"].as_object().expect("pilots object").values() {
                for p in periods.as_array().expect("periods") {
                    let a = p[1].as_u64().expect("amps");
                    assert!(a == 0 || (6..=32).contains(&a), "{ctx}: pilot {a}");
                }
            }
        }
        // Idle connectors' defaults make way for the cars: a 6 A default costs them little (counting
        // every idle connector at 6 A left them a fifth of the energy).
        let (zero, six) = (energy[&(1, 1, 0)], energy[&(1, 1, 6)]);
        assert!(six >= zero - 2.0, "seed {seed}: {six} % with a 6 A default, {zero} % with 0 A");
    }
}

/// Some makes take no default profile per connector: each keeps the charger-wide default (6 A
/// here) and refuses a connector's own, so a new car draws 6 A until its first limit lands, as the
/// referee replays `--default-a 6`. The balancer counts every idle connector at that default, and
/// the feeders and grid are never overloaded.
#[test]
fn chargers_without_a_default_per_connector_never_overload_a_feeder() {
    for seed in 1..=4 {
        let wl = workload(seed);
        for &(lag, lat) in &[(0, 1), (1, 1), (0, 2), (2, 3)] {
            let o = SimOptions {
                batch: seed % 2 == 0,
                meter_lag_steps: lag,
                latency_steps: lat,
                default_a: 6,
                connector_defaults: false,
                store_rise_per_min_a: 12,
                store_max_rise_a: 12 * (lag + lat).max(1) as u32,
                ..site_options()
            };
            let (m, _) = run(&wl, o.clone());
            let ctx = format!("seed {seed} lag {lag} latency {lat}: {m:?}");
            assert_eq!(m.max_overload_grid_a, 0.0, "{ctx}");
            assert_eq!(m.max_overload_feeder_a, 0.0, "{ctx}");
            assert_eq!(m.refused, 0, "the balancer refused an event: {ctx}");
            assert!(m.energy_pct > 10.0, "the balancer must still charge: {ctx}");
            // The same day with defaults the balancer may steer: it asked for some, and was refused
            // them all above (it kept asking only as the plan changed, not in a loop).
            let (steered, _) = run(&wl, SimOptions { connector_defaults: true, ..o });
            assert!(steered.default_commands > 0, "{ctx}");
            assert!(
                m.default_commands <= 4 * steered.default_commands.max(25),
                "{ctx}: {} vs {}",
                m.default_commands,
                steered.default_commands
            );
        }
    }
}

#[test]
fn chargers_that_answer_at_different_speeds_never_see_an_increase_before_its_decrease() {
    // Each command lands 1 + 0..=3 steps after it is sent, chargers in order but
    // independent of each other: an increase sent with the decrease it depends on
    // would land first on a fast charger. The ack rule must keep the TRUE currents safe.
    for seed in 1..=4 {
        let wl = workload(seed);
        for jitter in [1, 3] {
            let o = SimOptions {
                meter_lag_steps: 1,
                car_meter_lag_steps: 1,
                latency_steps: 1,
                latency_jitter_steps: jitter,
                seed,
                store_rise_per_min_a: 12,
                // Blind for up to lag + latency + jitter steps.
                store_max_rise_a: 12 * (2 + jitter) as u32,
                ..site_options()
            };
            let (m, _) = run(&wl, o);
            assert_eq!(m.max_overload_grid_a, 0.0, "seed {seed} jitter {jitter}: {m:?}");
            assert_eq!(m.max_overload_feeder_a, 0.0, "seed {seed} jitter {jitter}: {m:?}");
            assert!(m.energy_pct > 10.0, "seed {seed} jitter {jitter}: {m:?}");
        }
    }
}

#[test]
fn without_the_store_rise_bound_a_lagging_meter_does_overload() {
    // The counterpart of the test above: the rise bound is what keeps lag safe, so
    // turning it off must show overloads on at least one of these days.
    let worst = (1..=4)
        .map(|seed| {
            let o = SimOptions {
                meter_lag_steps: 1,
                latency_steps: 1,
                store_rise_per_min_a: 0,
                store_max_rise_a: 0,
                ..site_options()
            };
            run(&workload(seed), o).0.max_overload_grid_a
        })
        .fold(0.0, f64::max);
    assert!(worst > 0.0);
}

#[test]
fn a_store_rise_learned_from_the_meter_history_keeps_a_lagging_meter_safe() {
    // The configured rise is zero (which overloads: the test above); a day of the site's meter
    // history (five more 6-hour synthetic days) teaches the balancer how far its store rises.
    for seed in 1..=4 {
        let history: Vec<Workload> = (1..=5).map(|i| workload(seed + 100 * i)).collect();
        let o = SimOptions {
            meter_lag_steps: 1,
            latency_steps: 1,
            store_rise_per_min_a: 0,
            store_max_rise_a: 0,
            ..site_options()
        };
        let wl = workload(seed);
        let mut sim = DaySim::new(&wl, o).expect("workload is valid");
        sim.learn_store_history(&history).expect("history is valid");
        let rise = sim.balancer.learned_store_rise().expect("a day of history is enough");
        // The synthetic store moves by up to 12 A a minute: up to 24 A over the two blind steps.
        for p in Phase::ALL {
            let amps = rise.get(p).as_amps();
            assert!((12.0..=24.0 * 1.2 + 0.1).contains(&amps), "seed {seed}: learned {amps} A on {p:?}");
        }
        while sim.step().is_some() {}
        let (m, _) = sim.finish();
        assert_eq!(m.max_overload_grid_a, 0.0, "seed {seed}: {m:?}");
        assert!(m.energy_pct > 10.0, "seed {seed}: {m:?}");
    }
}

#[test]
fn the_day_is_deterministic() {
    let wl = workload(7);
    let o = SimOptions { meter_lag_steps: 1, latency_steps: 1, ..site_options() };
    let a = run(&wl, o.clone());
    let b = run(&wl, o);
    assert_eq!(a.1, b.1);
    assert_eq!(a.0.energy_pct, b.0.energy_pct);
}

#[test]
fn chargers_that_lose_their_connection_never_cause_an_overload() {
    // Away chargers keep what they were told until its lease runs out, miss commands (which
    // time out) and tell the balancer about sessions that began or ended meanwhile only when
    // they are back. Two outages of 5 to 30 minutes per charger in these 6 hours: a charger
    // that cannot be steered holds its capacity until its lease ends, so far more (half the
    // site away while the store climbs 12 A a minute) can overload whatever the balancer does.
    for seed in 1..=4 {
        let wl = workload(seed);
        // (meter lag, latency, jitter, default current): with a default, idle connectors' own
        // defaults are steered too, and an away charger keeps the one it had.
        for (lag, lat, jitter, default_a) in [(0, 0, 0, 0), (1, 1, 0, 0), (1, 1, 2, 0), (1, 1, 2, 6)] {
            let o = SimOptions {
                meter_lag_steps: lag,
                car_meter_lag_steps: lag,
                latency_steps: lat,
                latency_jitter_steps: jitter,
                default_a,
                outages_per_day: 8,
                seed,
                store_rise_per_min_a: 12,
                store_max_rise_a: 12 * (lag + lat + jitter).max(1) as u32,
                ..site_options()
            };
            let (m, _) = run(&wl, o);
            let ctx =
                format!("seed {seed} lag {lag} latency {lat} jitter {jitter} default {default_a}: {m:?}");
            assert!(m.outages > 10, "the day must have outages: {ctx}");
            assert_eq!(m.max_overload_grid_a, 0.0, "{ctx}");
            assert_eq!(m.max_overload_feeder_a, 0.0, "{ctx}");
            assert_eq!(m.refused, 0, "{ctx}");
            assert!(m.energy_pct > 10.0, "{ctx}");
            if lat > 0 {
                assert!(m.timed_out > 0, "some commands must have met an away charger: {ctx}");
            }
        }
    }
}

/// Two cars share a 32 A feeder; one is nearly full and its battery takes ever less (the
/// referee's taper). Its charger cannot say so over OCPP 1.6: the balancer sees it draw less
/// than offered, learns its maximum, and gives the room to the other car.
#[test]
fn a_tapering_car_leaves_its_room_to_the_other_car() {
    let steps = 60;
    let connectors: Vec<WlConnector> = (0..2)
        .map(|i| WlConnector {
            id: format!("C{i}"),
            feeder: "F0".into(),
            max_a: 32.0,
            phases: 3,
            rotation: vec!["L1".into(), "L2".into(), "L3".into()],
        })
        .collect();
    let car = |id: &str, conn: &str, energy_kwh: f64, battery_kwh: f64, soc_start: f64| WlSession {
        id: id.into(),
        connector: conn.into(),
        arrival_s: 0,
        departure_s: steps * 60,
        // No departure: both weigh the same, so only what the balancer learns can tell them apart.
        est_departure_s: None,
        energy_kwh,
        ev_phases: 3,
        ev_max_a: 32.0,
        priority: 0,
        battery_kwh: Some(battery_kwh),
        soc_start: Some(soc_start),
    };
    let wl = Workload {
        site: WlSite {
            voltage_ln: 230.0,
            grid_limit_a: 200.0,
            step_s: 60,
            horizon_steps: steps as usize,
            feeders: vec![WlFeeder { id: "F0".into(), limit_a: 32.0 }],
            connectors,
            base_load_a: ["L1", "L2", "L3"]
                .iter()
                .map(|p| (p.to_string(), vec![0.0; steps as usize]))
                .collect(),
        },
        // Nearly full (95 %, wanting 99 %) against nearly empty: both would take all 32 A.
        sessions: vec![car("full", "C0", 1.6, 40.0, 0.95), car("empty", "C1", 40.0, 60.0, 0.1)],
    };
    let o = SimOptions { taper: true, ..site_options() };
    let (m, pilots) = run(&wl, o);
    assert_eq!((m.max_overload_feeder_a, m.max_overload_grid_a), (0.0, 0.0));
    let pilot_at = |id: &str, t: u64| -> f64 {
        let periods = pilots["pilots"][id].as_array().expect("pilots for the session");
        let mut amps = 0.0;
        for p in periods {
            if p[0].as_u64().expect("t") <= t {
                amps = p[1].as_f64().expect("amps");
            }
        }
        amps
    };
    // Offered an equal share at first, then the tapering car is held near what it takes.
    assert_eq!((pilot_at("full", 0), pilot_at("empty", 0)), (16.0, 16.0));
    for minute in [10, 30, 50] {
        let (full, empty) = (pilot_at("full", minute * 60), pilot_at("empty", minute * 60));
        assert!(full <= 10.0 && empty >= 22.0, "minute {minute}: tapering car {full} A, the other {empty} A");
        assert!(full + empty <= 32.0);
    }
}
