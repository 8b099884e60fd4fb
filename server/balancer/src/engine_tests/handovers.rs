//! Handovers scheduled ahead, and the chargers' clocks they rest on.

use super::*;

/// Two connectors on 40 A, handovers scheduled 20 s ahead, commands in force within 10 s.
fn handover_site() -> SiteConfig {
    let mut c = site([40; 3], vec![], vec![conn(0, None, ST, 0), conn(1, None, ST, 0)]);
    c.store.reaction_time = Millis::from_secs(10);
    c.handover = Some(crate::config::HandoverConfig { lead: Millis::from_secs(20), clock_skew: Millis(0) });
    c
}

#[test]
fn a_handover_keeps_the_session_giving_way_charging_until_the_increase_it_pays_for_can_start() {
    let mut h = H::new(handover_site());
    h.start(0, three());
    h.settle();
    assert_eq!(h.acked(0), a(32));
    let t0 = h.now;
    let cmds = h.start(1, three());
    // 0 keeps 32 A for 20 s, then 20 A; 1 gets the 8 A that are free now.
    let (dec, first, then) = limit_for(&cmds, 0).expect("a limit for 0");
    assert_eq!((first, then), (a(32), Some((t0 + Millis::from_secs(20), a(20)))));
    assert_eq!(limit_for(&cmds, 1).map(|x| (x.1, x.2)), Some((a(8), None)));
    h.sent.clear();
    h.b.ack(dec, h.now).expect("known command");
    assert!(h.b.poll_commands(h.now).is_empty(), "the increase waits until it can be in force by the switch");
    // Acknowledged: 0 still counts 32 A until the switch, 20 A from it.
    assert_eq!(h.view(0).budget, a(32));
    // The last plan that can still have 1's increase in force by the switch schedules it there.
    let wake = h.b.poll_timeout(h.now).expect("a wake-up for the handover");
    assert_eq!(wake, t0 + Millis::from_secs(10));
    h.now = wake;
    let cmds = h.tick_commands();
    let (inc, first, then) = limit_for(&cmds, 1).expect("the increase, scheduled");
    assert_eq!((first, then), (a(8), Some((t0 + Millis::from_secs(20), a(20)))));
    h.b.ack(inc, h.now).expect("known command");
    // Never over the limit: before the switch 32 + 8, from it 20 + 20.
    for secs in [11, 19, 20, 21] {
        let snap = h.b.snapshot(t0 + Millis::from_secs(secs));
        assert!(snap.nodes[0].budgeted.get(L1) <= a(40), "{secs} s: {:?}", snap.nodes[0].budgeted);
    }
    h.now = t0 + Millis::from_secs(20);
    h.tick_commands();
    assert_eq!((h.view(0).budget, h.view(1).budget), (a(20), a(20)));
    assert_eq!((h.acked(0), h.acked(1)), (a(20), a(20)));
}

#[test]
fn a_decrease_a_limit_needs_is_in_force_as_soon_as_it_lands() {
    let mut h = H::new(handover_site());
    h.start(0, three());
    h.start(1, three());
    h.settle();
    h.advance(60);
    h.tick_commands();
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (a(20), a(20)));
    // The store appears: 10 A on every phase. Both must come down now, not in 20 s.
    let cmds = h.store([10, 10, 10]);
    for k in [0, 1] {
        let (_, first, then) = limit_for(&cmds, k).expect("a decrease");
        assert_eq!((first, then), (a(15), None), "connector {k}");
    }
}

/// Connector 0 at 32 A; 1 arrives and 0 is sent a handover (not yet answered): the driver and its id.
fn handover_offered() -> (H, CommandId) {
    let mut h = H::new(handover_site());
    h.start(0, three());
    h.settle();
    let cmds = h.start(1, three());
    let (dec, _, then) = limit_for(&cmds, 0).expect("a limit for 0");
    assert!(then.is_some(), "a handover, deferred");
    h.sent.clear();
    (h, dec)
}

#[test]
fn a_handover_still_to_come_is_brought_forward_when_a_limit_needs_it() {
    let (mut h, dec) = handover_offered();
    h.b.ack(dec, h.now).expect("known command");
    // Before the switch the store jumps: 0's decrease is needed now, and more of it.
    h.advance(5);
    let cmds = h.store([5, 5, 5]);
    let (_, first, then) = limit_for(&cmds, 0).expect("0 brought down at once");
    assert!(then.is_none() && first <= a(20), "{first:?} {then:?}");
    // Once: the next reading, the same, sends nothing more to 0 while that is on its way.
    let again = h.store([5, 5, 5]);
    assert_eq!(limit_for(&again, 0), None, "{again:?}");
}

#[test]
fn without_handovers_every_limit_is_in_force_as_it_lands() {
    let mut cfg = handover_site();
    cfg.handover = None;
    let mut h = H::new(cfg);
    h.start(0, three());
    h.settle();
    let cmds = h.start(1, three());
    assert!(cmds.iter().all(|c| matches!(c, Command::SetLimit { then: None, .. })), "{cmds:?}");
}

#[test]
fn a_newcomer_with_nothing_free_until_the_switch_is_scheduled_from_it() {
    // A 66 A feeder over three connectors; the handover lead (4 s) is shorter than the reaction time.
    let feeder = CircuitConfig { id: CircuitId(1), parent: None, limit: PerPhase::uniform(a(66)) };
    let mut cfg = site([300; 3], vec![feeder], (0..3).map(|k| conn(k, Some(1), ST, 0)).collect());
    cfg.store.reaction_time = Millis::from_secs(10);
    cfg.handover =
        Some(crate::config::HandoverConfig { lead: Millis::from_secs(4), clock_skew: Millis::from_secs(1) });
    cfg.store.worst_case = PerPhase::uniform(a(30));
    cfg.lease = Millis::from_secs(600);
    // No store reading: the worst case (the grid has room for it).
    let mut h = H { b: Balancer::new(cfg).expect("valid"), now: Millis(0), sent: Vec::new() };
    h.start(0, SessionInfo::default());
    h.start(1, SessionInfo::default());
    h.settle();
    assert_eq!((h.acked(0), h.acked(1)), (a(32), a(32)));
    let t0 = h.now;
    let cmds = h.start(2, SessionInfo::default());
    let giving_way: Vec<_> = [0, 1].iter().map(|&k| limit_for(&cmds, k).expect("a handover")).collect();
    for &(_, first, then) in &giving_way {
        assert_eq!((first, then), (a(32), Some((t0 + Millis::from_secs(4), a(22)))));
    }
    assert_eq!(limit_for(&cmds, 2), None, "2 A free now: below the minimum");
    h.sent.clear();
    // One acceptance: what it frees from its switch (66 - 32 - 22 A) is scheduled for the newcomer.
    h.b.ack(giving_way[0].0, h.now).expect("known command");
    let cmds = h.b.poll_commands(h.now);
    let (partial, first, then) = limit_for(&cmds, 2).expect("the newcomer's limit, scheduled");
    assert_eq!((first, then), (a(0), Some((t0 + Millis::from_secs(6), a(12)))));
    // The other: the whole share, from the same moment, before the partial one is even answered.
    h.b.ack(giving_way[1].0, h.now).expect("known command");
    let cmds = h.b.poll_commands(h.now);
    let (_, first, then) = limit_for(&cmds, 2).expect("the newcomer's limit, raised");
    assert_eq!((first, then), (a(0), Some((t0 + Millis::from_secs(6), a(22)))));
    h.b.ack(partial, h.now).expect("known command");
    for secs in [0, 3, 4, 5, 6, 7] {
        let snap = h.b.snapshot(t0 + Millis::from_secs(secs));
        assert!(snap.nodes[1].budgeted.get(L1) <= a(66), "{secs} s: {:?}", snap.nodes[1].budgeted);
    }
}

#[test]
fn a_charger_that_refuses_a_handover_is_sent_plain_limits_from_then_on() {
    let (mut h, dec) = handover_offered();
    // It allows one period only: refused. Counted at its maximum until a retry is accepted.
    assert!(h.view(0).schedules);
    h.b.reject(dec, h.now).expect("known command");
    assert_eq!((h.view(0).smart, h.view(0).schedules), (SmartState::Rejected, false));
    h.advance(30);
    let retry = h.tick_commands();
    let (id, first, then) = limit_for(&retry, 0).expect("the retry");
    assert_eq!((first, then), (a(32), None));
    h.sent.clear();
    h.b.ack(id, h.now).expect("known command");
    // Its share again, as a plain decrease this time.
    let cmds = h.b.poll_commands(h.now);
    let (_, first, then) = limit_for(&cmds, 0).expect("0 brought to its share");
    assert_eq!((first, then), (a(20), None));
}

#[test]
fn a_charger_whose_clock_is_off_is_sent_plain_limits_and_its_handover_counts_at_its_most() {
    let mut cfg = handover_site();
    cfg.lease = Millis::from_secs(600);
    let mut h = H::new(cfg);
    h.start(0, three());
    h.settle();
    let t0 = h.now;
    let cmds = h.start(1, three());
    let (dec, _, then) = limit_for(&cmds, 0).expect("a limit for 0");
    assert_eq!(then, Some((t0 + Millis::from_secs(20), a(20))), "a handover on 0's clock");
    h.b.ack(dec, h.now).expect("known command");
    h.sent.clear();
    h.advance(2);
    // 0's timestamps show its clock off: when it switches is unknown.
    let cmds = h.ev(Event::ChargerClock { charger: ChargerKey(0), trusted: false });
    assert!(!h.view(0).clock_trusted && h.view(1).clock_trusted);
    let (dec, first, then) = limit_for(&cmds, 0).expect("a plain limit replaces the handover");
    assert_eq!((first, then), (a(20), None));
    assert_eq!(expires_for(&cmds, 0), Some(None), "no lease on a clock we do not trust");
    // Until it is accepted, the handover counts at 32 A, even past its switch.
    h.now = t0 + Millis::from_secs(40);
    assert_eq!(h.view(0).budget, a(32));
    assert_eq!(limit_for(&h.tick_commands(), 1), None, "1 waits for 0's plain decrease");
    h.b.ack(dec, h.now).expect("known command");
    let cmds = h.b.poll_commands(h.now);
    let (_, first, then) = limit_for(&cmds, 1).expect("1 raised once 0 is down");
    assert_eq!((first, then), (a(20), None));
    assert!(expires_for(&cmds, 1).is_some_and(|e| e.is_some()), "1's clock is trusted: a lease");
}

#[test]
fn a_clock_trusted_again_has_its_limit_sent_as_a_lease_again() {
    let mut cfg = handover_site();
    cfg.lease = Millis::from_secs(600);
    let mut h = H::new(cfg);
    h.ev(Event::ChargerClock { charger: ChargerKey(0), trusted: false });
    let cmds = h.start(0, three());
    assert_eq!(expires_for(&cmds, 0), Some(None));
    h.settle();
    // Never expiring, it is never renewed (the store meter still reporting).
    h.advance(3600);
    assert_eq!(limit_for(&h.store([0, 0, 0]), 0), None);
    let cmds = h.ev(Event::ChargerClock { charger: ChargerKey(0), trusted: true });
    assert_eq!(expires_for(&cmds, 0), Some(Some(h.now + Millis::from_secs(600))));
    assert_eq!(limit_for(&cmds, 0).map(|x| (x.1, x.2)), Some((a(32), None)));
}

#[test]
fn a_charger_that_takes_one_period_per_schedule_is_never_sent_a_handover() {
    let mut h = H::new(handover_site());
    h.ev(Event::SchedulePeriods { charger: ChargerKey(0), max: 1 });
    h.ev(Event::SchedulePeriods { charger: ChargerKey(1), max: 24 });
    assert!(!h.view(0).schedules && h.view(1).schedules);
    h.start(0, three());
    h.settle();
    let cmds = h.start(1, three());
    // 0 gives way with a plain decrease, not a handover it would refuse.
    let (_, first, then) = limit_for(&cmds, 0).expect("a limit for 0");
    assert_eq!((first, then), (a(20), None));
}

/// Connector 0 at 32 A gives way to 1 (32 -> 20 A at 20 s, accepted) and 1's increase from 8 to
/// 20 A at that switch is accepted too: the driver, 1 s after the increase was planned.
fn increase_scheduled() -> H {
    let mut h = H::new(handover_site());
    h.start(0, three());
    h.settle();
    let t0 = h.now;
    let cmds = h.start(1, three());
    assert!(limit_for(&cmds, 0).is_some_and(|(_, _, then)| then.is_some()), "0's handover");
    // 0's handover and 1's 8 A accepted.
    h.settle();
    h.now = h.b.poll_timeout(h.now).expect("a wake-up for the handover");
    let (inc, first, then) = limit_for(&h.tick_commands(), 1).expect("1's increase, scheduled");
    assert_eq!((first, then), (a(8), Some((t0 + Millis::from_secs(20), a(20)))));
    h.b.ack(inc, h.now).expect("known command");
    h.sent.clear();
    h.advance(1);
    h
}

#[test]
fn a_scheduled_increase_on_a_clock_found_off_counts_from_now_and_the_decrease_it_waits_on_comes_forward() {
    let mut h = increase_scheduled();
    // 1's clock is found off before the switch: it may take its 20 A at any moment now.
    let cmds = h.ev(Event::ChargerClock { charger: ChargerKey(1), trusted: false });
    assert_eq!(h.view(1).budget, a(20));
    let (_, first, then) = limit_for(&cmds, 0).expect("0's decrease brought forward");
    assert_eq!((first, then), (a(20), None));
}

#[test]
fn an_offline_chargers_increase_at_a_switch_to_come_is_counted_when_the_store_rises() {
    let mut h = increase_scheduled();
    // The handover was planned at time zero (the test driver's clock starts there).
    let t0 = Millis(0);
    // 1 loses us with its switch to come; then the store rises by 5 A.
    h.ev(Event::ChargerOffline { charger: ChargerKey(1) });
    let cmds = h.store([5, 5, 5]);
    // From the switch 1 runs 20 A whatever we say: 0 must be at 15 A by then.
    let (_, first, then) = limit_for(&cmds, 0).expect("0 lowered");
    assert!(first <= a(15) && then.is_none_or(|(_, v)| v <= a(15)), "{first:?} {then:?}");
    h.settle();
    for secs in [12, 19, 20, 30] {
        let snap = h.b.snapshot(t0 + Millis::from_secs(secs));
        assert!(snap.nodes[0].budgeted.get(L1) <= a(40), "{secs} s: {:?}", snap.nodes[0].budgeted);
    }
}
