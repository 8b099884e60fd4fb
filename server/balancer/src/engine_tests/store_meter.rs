//! The store's own load: its meter's readings, how far it may rise unseen, readings set aside, and a meter on the incomer.

use super::*;

#[test]
fn stale_meter_means_worst_case_store() {
    let mut cfg = site([100; 3], vec![], vec![conn(0, None, ST, 0)]);
    cfg.store.worst_case = PerPhase::uniform(a(80));
    cfg.store.max_age = Millis::from_secs(60);
    let mut h = H::new(cfg);
    h.store([70, 70, 70]);
    h.start(0, three());
    h.settle();
    assert_eq!(h.acked(0), a(30));
    h.advance(30);
    h.ev(Event::Tick);
    h.settle();
    assert_eq!(h.acked(0), a(30), "reading still fresh");
    assert!(!h.b.snapshot(h.now).store_worst_case);
    h.advance(31);
    h.ev(Event::Tick);
    h.settle();
    assert_eq!(h.acked(0), a(20), "stale: worst case 80 A assumed, not the last 70 A");
    assert!(h.b.snapshot(h.now).store_worst_case);
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(80)));
}

#[test]
fn the_store_may_have_risen_since_an_old_reading() {
    let mut cfg = site([100; 3], vec![], vec![conn(0, None, ST, 0)]);
    cfg.store.rise_per_min = a(10);
    cfg.store.max_rise = a(15);
    cfg.store.max_age = Millis::from_secs(600);
    cfg.store.replan = Millis::from_secs(6);
    let mut h = H::new(cfg);
    h.store([50; 3]);
    h.start(0, three());
    h.settle();
    assert_eq!(h.acked(0), a(32));
    assert_eq!(
        h.store_assumed(),
        PerPhase::uniform(a(51)),
        "fresh: only what it may rise until the next plan"
    );
    assert_eq!(
        h.b.poll_timeout(h.now),
        Some(h.now + Millis::from_secs(6)),
        "the plan is renewed while the reading ages"
    );
    h.advance(60);
    h.ev(Event::Tick);
    h.settle();
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(61)), "60 s old + 6 s to the next plan, at 10 A/min");
    h.advance(120);
    h.ev(Event::Tick);
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(65)), "rise capped");
    assert_eq!(h.b.poll_timeout(h.now), Some(h.now + Millis::from_secs(6)));
}

/// One 32 A connector; the store rise learned over two minutes (a minute's meter lag and a minute
/// to react) once a day of readings is in, configured at 14 A/min up to 16 A before.
fn learning_site() -> SiteConfig {
    let mut cfg = site([100; 3], vec![], vec![conn(0, None, ST, 0)]);
    cfg.store.rise_per_min = a(14);
    cfg.store.max_rise = a(16);
    cfg.store.reaction_time = Millis::from_secs(60);
    cfg.store.replan = Millis(0);
    cfg.store.learn_rise = Some(RiseLearning::from_four_weeks(Millis::from_secs(120), Millis::from_secs(60)));
    cfg
}

#[test]
fn the_store_rise_is_learned_from_a_day_of_meter_history() {
    let mut cfg = learning_site();
    cfg.store.max_age = Millis::from_secs(180);
    // No first reading at time zero: the history comes first.
    let mut h = H { b: Balancer::new(cfg).expect("test config is valid"), now: Millis(0), sent: Vec::new() };
    // A day of a store at 40/35/30 A whose L1 jumps by 5 A for one minute every hour.
    let minutes = 24 * 60;
    h.b.learn_store_history((0..=minutes).map(|m| {
        let l1 = if m % 60 == 30 { 45 } else { 40 };
        (Millis::from_secs(60 * m), PerPhase([a(l1), a(35), a(30)]))
    }));
    let learned = PerPhase([DeciAmps::new(55), a(0), a(0)]);
    assert_eq!(h.b.learned_store_rise(), Some(learned), "5 A + 10 %");
    h.now = Millis::from_secs(60 * (minutes + 1));
    h.store([40, 35, 30]);
    h.start(0, three());
    h.settle();
    let snap = h.b.snapshot(h.now);
    assert_eq!(snap.store_rise_learned, Some(learned));
    // Fresh reading: 60 s reaction, inside the learned horizon: the learned rise, per phase.
    assert_eq!(
        snap.store_assumed,
        PerPhase([DeciAmps::new(455), a(35), a(30)]),
        "not the configured 14 A on every phase"
    );
    assert_eq!(h.acked(0), a(32));
    // A reading of the usual age (60 s) plus the reaction is still the learned horizon. The plan
    // takes the lowest of the references' bounds: the higher of the latest two readings (44 A) plus
    // its 5.5 A, the second highest of the last five minutes (41 A) plus its own, or the third
    // highest of the last ten (40 A) plus its own 5.5 A.
    h.advance(60);
    h.store([44, 35, 30]);
    h.advance(60);
    h.store([41, 35, 30]);
    h.advance(60);
    h.ev(Event::Tick);
    assert_eq!(
        h.store_assumed(),
        PerPhase([DeciAmps::new(455), a(35), a(30)]),
        "40 A + 5.5 A, not 44 A + 5.5 A"
    );
    // Older than the learned horizon: the configured rise where it is larger (on 40 A).
    h.advance(60);
    h.ev(Event::Tick);
    assert_eq!(h.store_assumed(), PerPhase([a(56), a(51), a(46)]), "120 s old + 60 s: capped 16 A");
}

#[test]
fn a_store_meter_reading_far_below_anything_it_read_is_set_aside() {
    let mut cfg = learning_site();
    cfg.store.max_age = Millis::from_secs(180);
    let worst = cfg.store.worst_case;
    let mut h = H { b: Balancer::new(cfg).expect("test config is valid"), now: Millis(0), sent: Vec::new() };
    // A day of a store that never drew less than 40/35/30 A, with one stretch of zeros from the
    // gateway in the stored history: not learned from after a restart either.
    let minutes = 2 * 24 * 60;
    h.b.learn_store_history((0..=minutes).map(|m| {
        let flat = if (1600..1610).contains(&m) { [0, 0, 0] } else { [40, 35, 30] };
        (Millis::from_secs(60 * m), PerPhase(flat.map(a)))
    }));
    assert_eq!(h.b.learned_store_rise(), Some(PerPhase([a(0); 3])), "no rise from the zeros back to 40 A");
    h.now = Millis::from_secs(60 * (minutes + 1));
    h.store([40, 35, 30]);
    h.start(0, three());
    h.settle();
    assert_eq!(h.acked(0), a(32));
    // The clamp on L1 comes loose: 1 A, while L2 and L3 read what they did. Nothing of it is
    // believed: the worst case counts at once, on every phase.
    h.advance(60);
    let cmds = h.store([1, 35, 30]);
    let snap = h.b.snapshot(h.now);
    assert_eq!(snap.store_meter_set_aside, Some(SetAside { why: MeterDoubt::FarBelowFloor, since: h.now }));
    assert_eq!(snap.store_reading, Some(PerPhase([a(40), a(35), a(30)])), "the last believed reading, shown");
    assert!(snap.store_worst_case);
    assert_eq!(snap.store_assumed, worst);
    let (_, down, _) = limit_for(&cmds, 0).expect("the car gives the worst case its room");
    assert!(down < a(32), "{down:?}");
    // It keeps reading 1 A: still the worst case, flagged since the first.
    let since = h.now;
    for _ in 0..3 {
        h.advance(60);
        h.store([1, 35, 30]);
    }
    let snap = h.b.snapshot(h.now);
    assert!(snap.store_worst_case);
    assert_eq!(snap.store_assumed, worst);
    assert_eq!(snap.store_meter_set_aside.map(|s| s.since), Some(since), "since the first");
    // Fixed: believed again, and the jump back from 1 A teaches no rise.
    h.advance(60);
    h.store([40, 35, 30]);
    let snap = h.b.snapshot(h.now);
    assert_eq!(snap.store_meter_set_aside, None);
    assert!(!snap.store_worst_case);
    assert_eq!(snap.store_rise_learned, Some(PerPhase([a(0); 3])));
}

#[test]
fn a_store_meter_that_repeats_one_reading_for_a_quarter_of_an_hour_is_set_aside() {
    // No history needed: a store is never that still.
    let mut cfg = site([60; 3], vec![], vec![conn(0, None, ST, 0)]);
    cfg.store.worst_case = PerPhase::uniform(a(50));
    cfg.store.frozen_after = crate::store::FROZEN_AFTER;
    let mut h = H::new(cfg);
    h.store([40, 35, 30]);
    h.start(0, three());
    h.settle();
    assert_eq!(h.acked(0), a(20), "60 A less the store's 40 A on L1");
    // The gateway loses the meter and posts its last value every minute.
    for _ in 0..14 {
        h.advance(60);
        h.store([40, 35, 30]);
    }
    assert_eq!(h.b.snapshot(h.now).store_meter_set_aside, None, "14 minutes still is believed");
    h.advance(60);
    let cmds = h.store([40, 35, 30]);
    let snap = h.b.snapshot(h.now);
    assert_eq!(snap.store_meter_set_aside, Some(SetAside { why: MeterDoubt::Unchanged, since: h.now }));
    assert!(snap.store_worst_case);
    assert_eq!(snap.store_assumed, PerPhase::uniform(a(50)));
    let (_, down, _) = limit_for(&cmds, 0).expect("the car makes room for the worst case");
    assert_eq!(down, a(10));
    // The meter is back: the store moved a tenth of an amp, which is believed.
    h.settle();
    h.advance(60);
    h.ev(Event::StoreMeter { currents: PerPhase([DeciAmps::new(401), a(35), a(30)]), measured_at: h.now });
    h.settle();
    let snap = h.b.snapshot(h.now);
    assert_eq!(snap.store_meter_set_aside, None);
    assert!(!snap.store_worst_case);
    assert_eq!(h.acked(0), DeciAmps::new(199));
}

#[test]
fn a_store_meter_that_was_repeating_itself_before_a_restart_is_set_aside_at_once() {
    let mut cfg = site([60; 3], vec![], vec![conn(0, None, ST, 0)]);
    cfg.store.worst_case = PerPhase::uniform(a(50));
    cfg.store.frozen_after = crate::store::FROZEN_AFTER;
    let mut h = H { b: Balancer::new(cfg).expect("test config is valid"), now: Millis(0), sent: Vec::new() };
    // The stored history: a live meter for an hour, then twenty minutes of one value.
    let history: Vec<(Millis, PerPhase)> = (0u64..80)
        .map(|m| {
            let l1 = if m < 60 { 30 + m % 7 } else { 40 };
            (Millis::from_secs(60 * m), PerPhase([a(u32::try_from(l1).expect("amps")), a(35), a(30)]))
        })
        .collect();
    let (latest_at, latest) = *history.last().expect("readings");
    h.b.learn_store_history(history);
    h.now = latest_at + Millis::from_secs(5);
    // The restart feeds the latest reading, at its true age.
    h.ev(Event::StoreMeter { currents: latest, measured_at: latest_at });
    let snap = h.b.snapshot(h.now);
    assert_eq!(snap.store_meter_set_aside.map(|s| s.why), Some(MeterDoubt::Unchanged));
    assert!(snap.store_worst_case);
    // Without the history, the same reading is believed.
    let mut cfg = site([60; 3], vec![], vec![conn(0, None, ST, 0)]);
    cfg.store.frozen_after = crate::store::FROZEN_AFTER;
    let mut fresh = H { b: Balancer::new(cfg).expect("test config is valid"), now: h.now, sent: Vec::new() };
    fresh.ev(Event::StoreMeter { currents: latest, measured_at: latest_at });
    assert_eq!(fresh.b.snapshot(fresh.now).store_meter_set_aside, None);
}

#[test]
fn a_store_seen_climbing_further_within_a_lease_than_planned_for_shortens_the_leases() {
    let mut cfg = learning_site();
    cfg.store.max_age = Millis::from_secs(180);
    cfg.lease = Millis::from_secs(600);
    if let Some(learn) = cfg.store.learn_rise.as_mut() {
        learn.holds = vec![Millis::from_secs(600), Millis::from_secs(120)];
    }
    let mut h = H { b: Balancer::new(cfg).expect("test config is valid"), now: Millis(0), sent: Vec::new() };
    // A day of a store whose L1 jumps 5 A for one minute every hour: over ten minutes more it rises
    // no further than over the blind spot.
    let minutes = 24 * 60;
    h.b.learn_store_history((0..=minutes).map(|m| {
        let l1 = if m % 60 == 30 { 45 } else { 40 };
        (Millis::from_secs(60 * m), PerPhase([a(l1), a(35), a(30)]))
    }));
    h.now = Millis::from_secs(60 * (minutes + 1));
    h.store([40, 35, 30]);
    let first = h.start(0, three());
    assert_eq!(expires_for(&first, 0), Some(Some(h.now + Millis::from_secs(600))), "the full lease");
    h.settle();
    assert_eq!(h.b.snapshot(h.now).lease_s, 600);
    // Then L2 climbs 1 A a minute for a quarter of an hour: 2 A over the blind spot, 12 A within
    // a ten-minute lease after it, 4 A within two. Once the meter has shown that, the lease held
    // is renewed short at once: the shortest, as neither held, but no less than four of our
    // slowest round trips (60 s here), so a renewal sent with half of it left lands in time.
    let mut shortened = None;
    for m in 1..=15 {
        h.advance(60);
        let cmds = h.store([40, 35 + m, 30]);
        if let Some(Some(end)) = expires_for(&cmds, 0) {
            shortened.get_or_insert((m, end.since(h.now)));
        }
        h.settle();
    }
    let (minute, lease) = shortened.expect("the lease is renewed short while the store climbs");
    assert_eq!(lease, Millis::from_secs(240));
    assert!(minute > 2, "not before the climb outgrew the plan's allowance (minute {minute})");
    assert_eq!(h.b.snapshot(h.now).lease_s, 240);
}

#[test]
fn without_a_day_of_history_the_configured_rise_applies() {
    let mut h = H::new(learning_site());
    h.b.learn_store_history((0..600).map(|m| (Millis::from_secs(60 * m), PerPhase::uniform(a(40)))));
    assert_eq!(h.b.learned_store_rise(), None);
    h.now = Millis::from_secs(60 * 600);
    h.store([40, 40, 40]);
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(54)), "60 s reaction at 14 A/min");
    assert_eq!(h.b.snapshot(h.now).store_rise_learned, None);
}

/// `cars` three-phase connectors on 60 A, the site meter on the main incomer.
fn incomer_site(cars: u32) -> H {
    let mut cfg = site([60; 3], vec![], (0..cars).map(|k| conn(k, None, ST, 0)).collect());
    cfg.store.meter = crate::config::SiteMeter::Incomer;
    H::new(cfg)
}

#[test]
fn an_incomer_meter_counts_the_store_as_what_the_cars_did_not_draw() {
    let mut h = incomer_site(2);
    h.start(0, SessionInfo { ev_max: Some(a(16)), ..three() });
    h.start(1, SessionInfo { ev_max: Some(a(16)), ..three() });
    h.settle();
    // (car 0, car 1, incomer reading, store assumed), ten seconds apart. The store draws 20 A.
    // Car 1 stops, then draws again: between two readings it may have drawn as little as the
    // lower, so that one counts and the store is taken for more than it is, never for less.
    let steps = [(16, 16, 52, 20), (16, 0, 36, 20), (16, 16, 52, 36)];
    for (k, (car0, car1, incomer, store)) in steps.into_iter().enumerate() {
        h.advance(10);
        h.car_reads(0, car0);
        h.car_reads(1, car1);
        h.store([incomer; 3]);
        h.settle();
        assert_eq!(h.store_assumed(), PerPhase::uniform(a(store)), "step {k}");
    }

    // A car with no reading near the incomer's counts as nothing: the store may be that large.
    h.advance(300);
    h.store([52; 3]);
    h.settle();
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(52)));
}

#[test]
fn a_late_incomer_reading_is_not_lessened_by_what_a_car_drew_after_it() {
    let mut h = incomer_site(2);
    h.start(0, SessionInfo { ev_max: Some(a(16)), ..three() });
    h.start(1, SessionInfo { ev_max: Some(a(16)), ..three() });
    h.settle();
    // Readings every 10 s: car 0 draws 16 A throughout, car 1 nothing at first and 16 A from
    // its second reading on. The store draws 20 A.
    let start = h.now;
    for (car0, car1) in [(16, 0), (16, 16), (16, 16), (16, 16)] {
        h.advance(10);
        h.car_reads(0, car0);
        h.car_reads(1, car1);
    }
    // An incomer reading from before either car's first reading counts neither: the store may
    // have been all of it.
    let before_any =
        Event::StoreMeter { currents: PerPhase::uniform(a(36)), measured_at: start + Millis::from_secs(5) };
    h.ev(before_any);
    h.settle();
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(36)));
    // The incomer's reading of 15 s after the start (20 + 16 + 0 A) arrives only now, when both
    // cars' two latest readings show 16 A: car 1 drew nothing then, so the store is 20 A, not 4.
    let late =
        Event::StoreMeter { currents: PerPhase::uniform(a(36)), measured_at: start + Millis::from_secs(15) };
    h.ev(late);
    h.settle();
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(20)));
}

#[test]
fn a_reading_from_before_our_decrease_is_not_taken_off_the_incomer() {
    let mut h = incomer_site(2);
    h.start(0, SessionInfo { ev_max: Some(a(32)), ..three() });
    h.advance(10);
    h.store([20; 3]);
    h.settle();
    assert_eq!(h.acked(0), a(32));
    h.advance(10);
    h.car_reads(0, 32);
    h.store([52; 3]);
    h.settle();
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(20)));
    // A second car: the first is lowered to share the 40 A, before its next reading.
    h.start(1, SessionInfo { ev_max: Some(a(32)), ..three() });
    h.settle();
    assert_eq!(h.acked(0), a(20));
    // The incomer reads the store's 20 A and the first car's 20 A (the second has not begun):
    // its 32 A reading is from before our decrease, so it counts at 20 A and the store stays 20 A.
    h.advance(5);
    h.store([40; 3]);
    h.settle();
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(20)));
}

#[test]
fn a_car_its_charger_says_stopped_drawing_counts_as_nothing_behind_the_incomer() {
    let mut h = incomer_site(1);
    h.start(0, SessionInfo { ev_max: Some(a(16)), ..three() });
    h.settle();
    h.advance(10);
    h.car_reads(0, 16);
    // The car is full: its charger says so (SuspendedEV) before its next reading. The incomer
    // then reads the store's 20 A alone, which is not 16 A less than that.
    h.advance(5);
    h.ev(Event::DrawStopped { connector: ConnectorKey(0), at: h.now });
    h.advance(5);
    h.store([20; 3]);
    h.settle();
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(20)));
    // Drawing again, it counts once its readings show it.
    for _ in 0..2 {
        h.advance(10);
        h.car_reads(0, 16);
    }
    h.store([36; 3]);
    h.settle();
    assert_eq!(h.store_assumed(), PerPhase::uniform(a(20)));
}

#[test]
fn a_site_wants_a_look_when_its_meter_stopped_or_is_set_aside_or_a_limit_is_exceeded() {
    let after = |readings: &[(u64, u32)], now_s: u64| {
        let mut cfg = SiteConfig::with_defaults(PerPhase::uniform(a(100)), vec![], vec![]);
        cfg.store.worst_case = PerPhase::uniform(a(30));
        cfg.store.frozen_after = Millis::from_secs(60);
        let mut b = Balancer::new(cfg).expect("a valid site");
        for &(at_s, amps) in readings {
            let at = Millis::from_secs(at_s);
            b.handle(Event::StoreMeter { currents: PerPhase::uniform(a(amps)), measured_at: at }, at)
                .expect("a reading");
        }
        // The site's task ticks as readings age (the balancer asks it to).
        let now = Millis::from_secs(now_s);
        b.handle(Event::Tick, now).expect("a tick");
        b.attention()
    };
    assert_eq!(after(&[], 600), None, "no meter: the worst case by design");
    assert_eq!(after(&[(0, 10), (30, 11)], 40), None, "a live meter");
    assert_eq!(
        after(&[(0, 10), (30, 11)], 600),
        Some(Attention::StoreMeterSilent),
        "it reported, then stopped"
    );
    assert_eq!(
        after(&[(0, 10), (30, 10), (60, 10)], 60),
        Some(Attention::StoreMeterSetAside(MeterDoubt::Unchanged)),
        "set aside outranks silence"
    );

    // Two cars at their limits, then the store jumps: the decreases are in flight, and until they
    // land the site is over.
    let mut h = H::two_cars_on_40_a();
    assert_eq!(h.b.attention(), None);
    h.advance(10);
    h.store([30, 0, 0]);
    assert_eq!(h.b.attention(), Some(Attention::Overcommitted));
    h.settle();
    assert_eq!(h.b.attention(), None, "the cars made room");
    // Attention ranks worst first.
    assert!(Attention::Overcommitted < Attention::StoreMeterSetAside(MeterDoubt::FarBelowFloor));
    assert!(Attention::StoreMeterSetAside(MeterDoubt::Unchanged) < Attention::StoreMeterSilent);
}
