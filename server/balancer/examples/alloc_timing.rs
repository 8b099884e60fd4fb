//! Allocation time vs site size, the shape of the referee's `--scaling` benchmark:
//! every connector occupied, 8 connectors per 63 A feeder, 6.25 kW of grid per
//! connector, 30 % single-phase cars. Times one full recompute (the work every event
//! triggers) with the store reading changing each time so limits really move.
//!
//! `cargo run --release --example alloc_timing -- 10,100,1000,10000`

use forecourt_balancer::config::Wiring;
use forecourt_balancer::units::*;
use forecourt_balancer::EvPhases;
use forecourt_balancer::{Balancer, CircuitConfig, ConnectorConfig, Event, SessionInfo, SiteConfig};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "10,100,1000,10000".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let rots = [
        Rotation([Phase::L1, Phase::L2, Phase::L3]),
        Rotation([Phase::L2, Phase::L3, Phase::L1]),
        Rotation([Phase::L3, Phase::L1, Phase::L2]),
    ];
    println!("| connectors | recompute mean ms | p99 ms | max ms | allocated kW | limit kW |");
    println!("|---|---|---|---|---|---|");
    for n in sizes {
        let feeders = n.div_ceil(8);
        let circuits = (0..feeders)
            .map(|f| CircuitConfig {
                id: CircuitId(f as u32),
                parent: None,
                limit: PerPhase::uniform(DeciAmps::from_amps(63)),
            })
            .collect();
        let connectors = (0..n)
            .map(|i| ConnectorConfig {
                key: ConnectorKey(i as u32),
                charger: ChargerKey(i as u32),
                circuit: Some(CircuitId((i / 8) as u32)),
                max: DeciAmps::from_amps(32),
                wiring: Wiring::ThreePhase,
                rotation: rots[i % 3],
                fallback: DeciAmps::ZERO,
            })
            .collect();
        let grid_kw = 6.25 * n as f64;
        let grid = DeciAmps::from_f64_floor(grid_kw * 1000.0 / 690.0);
        let mut cfg = SiteConfig::with_defaults(PerPhase::uniform(grid), circuits, connectors);
        cfg.store.max_age = Millis::from_secs(1_000_000);
        let mut b = Balancer::new(cfg)?;
        let mut now = Millis(0);
        b.handle(Event::StoreMeter { currents: PerPhase::default(), measured_at: now }, now)?;
        // Every car arrives in one batch (one recompute): what is timed is the steady state after.
        let mut seed = 12345u64;
        let mut arrivals = Vec::with_capacity(n);
        for i in 0..n {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let one = (seed >> 33) % 10 < 3;
            let info = SessionInfo {
                ev_phases: Some(if one { EvPhases::One } else { EvPhases::Three }),
                ev_max: Some(DeciAmps::from_amps(if (seed >> 40).is_multiple_of(2) { 16 } else { 32 })),
                energy_need_wh: Some(2000 + ((seed >> 20) % 13000) as u32),
                departure: Some(Millis::from_secs(1200 + (seed >> 45) % 4200)),
                priority: 0,
            };
            arrivals.push(Event::SessionStarted {
                connector: ConnectorKey(i as u32),
                session: SessionKey(i as u64),
                info,
            });
        }
        let refused = b.handle_all(arrivals, now);
        assert!(refused.is_empty(), "{refused:?}");
        let acks: Vec<Event> =
            b.poll_commands(now).iter().map(|c| Event::CommandAccepted { id: c.id() }).collect();
        b.handle_all(acks, now);
        let iters = if n >= 10_000 {
            40
        } else if n >= 1000 {
            200
        } else {
            2000
        };
        let mut t = Vec::with_capacity(iters);
        for k in 0..iters {
            now = now + Millis(1000);
            let store = DeciAmps::from_amps((k % 7) as u32 * 3);
            let ev = Event::StoreMeter { currents: PerPhase::uniform(store), measured_at: now };
            let t0 = Instant::now();
            b.handle(ev, now)?;
            t.push(t0.elapsed().as_secs_f64() * 1e3);
            for c in b.poll_commands(now) {
                b.ack(c.id(), now)?;
            }
        }
        let snap = b.snapshot(now);
        let kw: f64 = snap.nodes[0].allocated.0.iter().map(|a| a.as_amps() * 230.0 / 1000.0).sum();
        t.sort_by(f64::total_cmp);
        let mean = t.iter().sum::<f64>() / t.len() as f64;
        let p99 = t[((t.len() as f64) * 0.99) as usize - usize::from(t.len() < 100)];
        println!("| {n} | {mean:.3} | {p99:.3} | {:.3} | {kw:.1} | {grid_kw:.1} |", t[t.len() - 1]);
    }
    Ok(())
}
