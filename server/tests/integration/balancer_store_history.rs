//! The store meter's readings outlive a restart: kept in storage (both backends), fed to a new
//! site balancer at start-up, which learns the store's rise from them.

use crate::on_both_backends;
use server::balancer::live::Hub;
use server::balancer::DeciAmps;
use server::ocpp::registry::Registry;
use server::store::balancing::{self, StoreReading};
use server::store::now_ms;
use server::seed;
use std::time::Duration;

fn amps(a: i64) -> i64 {
    a * 10
}

on_both_backends! {
    async fn store_readings_are_kept_read_in_order_and_forgotten(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let site = balancing::all_sites(&t.db).await.expect("sites")[0].site;
        for (at, l1) in [(3_000, 30), (1_000, 10), (2_000, 20)] {
            balancing::record_store_reading(&t.db, site, StoreReading { measured_at_ms: at, da: [amps(l1), amps(5), amps(6)] })
                .await
                .expect("record");
        }
        let all = balancing::store_readings_since(&t.db, site, 0).await.expect("read");
        assert_eq!(all.iter().map(|r| r.measured_at_ms).collect::<Vec<_>>(), [1_000, 2_000, 3_000], "oldest first");
        assert_eq!(all[0].da, [100, 50, 60]);
        assert_eq!(balancing::store_readings_since(&t.db, site, 2_000).await.expect("read").len(), 2);
        assert_eq!(balancing::forget_store_readings(&t.db, site, 2_500).await.expect("forget"), 2);
        let left = balancing::store_readings_since(&t.db, site, 0).await.expect("read");
        assert_eq!(left.iter().map(|r| r.measured_at_ms).collect::<Vec<_>>(), [3_000]);
    }
}

on_both_backends! {
    async fn after_a_restart_the_balancer_learns_the_store_rise_from_the_stored_readings(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let site = balancing::all_sites(&t.db).await.expect("sites")[0].site;
        // 25 hours of readings a minute apart, the latest 30 s ago: the store draws 20 A a phase,
        // and L1 25 A for one minute every hour.
        let now = now_ms();
        let minutes = 25 * 60;
        for m in 0..=minutes {
            let l1 = if m % 60 == 30 { 25 } else { 20 };
            let at = now - 30_000 - (minutes - m) * 60_000;
            balancing::record_store_reading(&t.db, site, StoreReading { measured_at_ms: at, da: [amps(l1), amps(20), amps(20)] })
                .await
                .expect("record");
        }
        let hub = Hub::start(&t.db, Registry::default()).await.expect("hub");
        let budget = hub.budget(site).await.expect("the site is balanced");
        let learned = budget.snapshot.store_rise_learned.expect("a day of readings is history enough");
        // 5 A over the blind spot, plus 20 %; the other phases never rose.
        assert_eq!(learned.0, [DeciAmps::from_amps(6), DeciAmps::ZERO, DeciAmps::ZERO]);
        // The latest reading (30 s old) counts as the store now, not the worst case.
        assert!(!budget.snapshot.store_worst_case, "{:?}", budget.snapshot);
        assert_eq!(budget.snapshot.store_reading.map(|r| r.0), Some([DeciAmps::from_amps(20); 3]));

        // A new reading is kept too.
        let before = now_ms();
        assert!(hub.store_meter(site, [DeciAmps::from_amps(21); 3]));
        let mut kept = Vec::new();
        for _ in 0..100 {
            kept = balancing::store_readings_since(&t.db, site, before).await.expect("read");
            if !kept.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(kept.iter().map(|r| r.da).collect::<Vec<_>>(), [[210, 210, 210]]);
    }
}
