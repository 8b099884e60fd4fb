//! The fate of what is sent: limits in flight, refused or unanswered, retried, leased, and chargers coming and going.

use super::*;

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
