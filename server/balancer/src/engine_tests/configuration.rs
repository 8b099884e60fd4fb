//! Configurations refused, batches of events, and when the balancer wants to be woken.

use super::*;

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
