//! Unit tests for the balancer state machine: one behaviour per test, tables where
//! the behaviour has cases.

use super::*;
use crate::config::{CircuitConfig, ConnectorConfig};
use crate::store::RiseLearning;
use crate::units::{CircuitId, Rotation};

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
fn expires_for(cmds: &[Command], k: u32) -> Option<Option<Millis>> {
    cmds.iter().rev().find_map(|c| match *c {
        Command::SetLimit { connector, expires, .. } if connector == ConnectorKey(k) => Some(expires),
        _ => None,
    })
}

mod commands;
mod configuration;
mod defaults;
mod handovers;
mod sharing;
mod store_meter;
