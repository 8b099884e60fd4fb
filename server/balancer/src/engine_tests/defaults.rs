//! Idle connectors' own defaults: lowered for a newcomer, raised again once the room has lasted.

use super::*;

/// Five connectors with a 6 A default on a 32 A connection: idle, they hold 24 A of it.
fn tight_site_with_defaults() -> H {
    let mut cfg = site([32, 32, 32], vec![], (0..5).map(|k| conn(k, None, [L1, L2, L3], 6)).collect());
    cfg.store.worst_case = PerPhase::uniform(a(0));
    H::new(cfg)
}

fn defaults(cmds: &[Command]) -> Vec<(u32, DeciAmps)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::SetDefault { connector, amps_per_phase, .. } => Some((connector.0, *amps_per_phase)),
            Command::SetLimit { .. } => None,
        })
        .collect()
}

fn limits_to(cmds: &[Command], k: u32) -> Vec<DeciAmps> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::SetLimit { connector, amps_per_phase, .. } if connector.0 == k => Some(*amps_per_phase),
            _ => None,
        })
        .collect()
}

/// The budget the snapshot counts on each phase of the grid connection.
fn grid_budget(h: &H) -> [DeciAmps; 3] {
    h.b.snapshot(h.now).nodes[0].budgeted.0
}

#[test]
fn idle_connectors_defaults_make_way_for_a_car_and_come_back_when_it_leaves() {
    let mut h = tight_site_with_defaults();
    let cmds = h.start(0, three());
    // The idle connectors' defaults go down; until they are accepted the car gets what is free.
    assert_eq!(defaults(&cmds), (1..5).map(|k| (k, a(0))).collect::<Vec<_>>());
    assert!(limits_to(&cmds, 0).iter().all(|&l| l <= a(8)), "{cmds:?}");
    assert!(grid_budget(&h).iter().all(|&b| b <= a(32)));
    h.settle();
    assert_eq!(h.acked(0), a(32), "the car gets the whole connection once the defaults are down");
    assert_eq!(h.view(1).budget, a(0));
    assert!(grid_budget(&h).iter().all(|&b| b <= a(32)));

    // The car leaves: its connector is back on its default, and the others' come back up.
    h.advance(10);
    let cmds = h.ev(Event::SessionEnded { connector: ConnectorKey(0) });
    assert_eq!(defaults(&cmds), (1..5).map(|k| (k, a(6))).collect::<Vec<_>>());
    h.settle();
    assert_eq!(h.view(3).acked, a(6));
    assert!(grid_budget(&h).iter().all(|&b| b == a(30)));
}

#[test]
fn a_car_plugging_in_under_a_lowered_default_waits_for_its_limit() {
    let mut h = tight_site_with_defaults();
    h.start(0, three());
    h.settle();
    h.advance(10);
    // Connector 1 is at 0 A: its new session is budgeted at nothing and gets a share once the
    // first car's decrease is accepted.
    let cmds = h.start(1, three());
    assert_eq!(h.view(1).budget, a(0));
    assert!(limits_to(&cmds, 0).iter().all(|&l| l < a(32)), "the first car makes room: {cmds:?}");
    h.settle();
    assert_eq!(h.acked(0) + h.acked(1), a(32));
    assert!(grid_budget(&h).iter().all(|&b| b <= a(32)));
}

#[test]
fn a_store_rising_lowers_idle_defaults_at_once() {
    let mut h = tight_site_with_defaults();
    h.settle();
    assert!(grid_budget(&h).iter().all(|&b| b == a(30)));
    h.advance(10);
    // The store alone takes 20 A: at most two idle defaults fit beside it.
    let cmds = h.store([20, 20, 20]);
    let lowered = defaults(&cmds).iter().filter(|(_, amps)| *amps == a(0)).count();
    assert!(lowered >= 3, "{cmds:?}");
    h.settle();
    assert!(!h.b.snapshot(h.now).overcommitted);
}

#[test]
fn a_refused_default_is_left_where_it_was() {
    let mut h = tight_site_with_defaults();
    let cmds = h.start(0, three());
    let refused = cmds
        .iter()
        .find(|c| matches!(c, Command::SetDefault { connector: ConnectorKey(1), .. }))
        .expect("connector 1's default is lowered")
        .id();
    h.sent.retain(|c| c.id() != refused);
    h.b.reject(refused, h.now).expect("a command in flight");
    h.settle();
    assert_eq!(h.view(1).budget, a(6), "it keeps the default it accepted");
    assert_eq!(h.acked(0), a(26), "the car gets the rest");
    h.advance(30);
    assert!(defaults(&h.tick_commands()).is_empty(), "not asked again");
    // Back from a reconnect, it is steered again.
    h.ev(Event::ChargerOffline { charger: ChargerKey(1) });
    let cmds = h.ev(Event::ChargerOnline { charger: ChargerKey(1) });
    assert_eq!(defaults(&cmds), vec![(1, a(0))]);
}

#[test]
fn defaults_raised_a_moment_ago_still_make_way_for_a_newcomer() {
    let mut h = tight_site_with_defaults();
    h.start(0, three());
    h.settle();
    h.advance(10);
    h.ev(Event::SessionEnded { connector: ConnectorKey(0) });
    h.settle();
    assert_eq!(h.view(2).acked, a(6), "back up once the car left");
    // A car arrives well within the dwell: the defaults go down for it all the same.
    h.advance(10);
    let cmds = h.start(1, three());
    assert_eq!(defaults(&cmds), [0, 2, 3, 4].map(|k| (k, a(0))).to_vec());
    h.settle();
    assert_eq!(h.acked(1), a(32));
}

#[test]
fn a_car_asking_for_more_waits_the_dwell_for_defaults_raised_for_others() {
    let mut h = tight_site_with_defaults();
    let capped = |amps: Option<u32>| SessionInfo { ev_max: amps.map(a), ..three() };
    h.start(0, capped(None));
    h.settle();
    h.advance(10);
    h.ev(Event::SessionUpdated { connector: ConnectorKey(0), info: capped(Some(10)) });
    h.settle();
    // The car takes 10 A: three idle connectors get their 6 A back, the fourth does not fit.
    let raised =
        h.b.snapshot(h.now).connectors.iter().filter(|c| c.session.is_none() && c.acked == a(6)).count();
    assert_eq!(raised, 3);
    h.advance(60);
    let cmds = h.ev(Event::SessionUpdated { connector: ConnectorKey(0), info: capped(None) });
    assert!(defaults(&cmds).is_empty(), "kept within the dwell: {cmds:?}");
    h.settle();
    assert_eq!(h.acked(0), a(14));
    // Past the dwell, the car gets them.
    h.advance(300);
    h.tick();
    h.settle();
    assert_eq!(h.acked(0), a(32));
}

#[test]
fn idle_defaults_go_back_up_only_once_the_room_has_lasted() {
    let mut cfg = site([32, 32, 32], vec![], (0..5).map(|k| conn(k, None, [L1, L2, L3], 6)).collect());
    cfg.store.worst_case = PerPhase::uniform(a(0));
    cfg.idle_raise_after = Millis::from_secs(120);
    let mut h = H::new(cfg);
    h.start(0, three());
    h.settle();
    assert_eq!(h.view(1).acked, a(0));
    // The car leaves: the room is there, but the defaults wait for it to last.
    h.advance(10);
    let cmds = h.ev(Event::SessionEnded { connector: ConnectorKey(0) });
    assert!(defaults(&cmds).iter().all(|&(_, amps)| amps == a(0)), "nothing raised at once: {cmds:?}");
    let wake = h.b.poll_timeout(h.now);
    assert!(wake.is_some_and(|t| t <= h.now + Millis::from_secs(120)), "woken by then: {wake:?}");
    // A car arrives a minute later: the idle connectors' defaults, still down, need no profile;
    // only the one the first car left (a car starts there at its default) makes way.
    h.advance(60);
    let cmds = h.start(1, three());
    assert_eq!(defaults(&cmds), vec![(0, a(0))], "{cmds:?}");
    h.settle();
    assert_eq!(h.acked(1), a(32));
    // It leaves; two minutes of room later the defaults are up again, the budget within the connection.
    h.advance(10);
    h.ev(Event::SessionEnded { connector: ConnectorKey(1) });
    h.advance(119);
    assert!(defaults(&h.tick_commands()).is_empty(), "not yet");
    h.advance(1);
    let raised = defaults(&h.tick_commands());
    assert_eq!(raised, (0..5).map(|k| (k, a(6))).collect::<Vec<_>>());
    h.settle();
    assert!(grid_budget(&h).iter().all(|&b| b == a(30)));
    // Decreases never wait: a car arriving now has the others' defaults lowered at once.
    h.advance(5);
    let cmds = h.start(2, three());
    assert_eq!(defaults(&cmds), [0, 1, 3, 4].map(|k| (k, a(0))).to_vec());
}
