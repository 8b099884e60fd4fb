//! What the console's "sites that need a look" costs at network size: the list each site's task
//! keeps (`Hub::attention`, what `network_alerts` reads) against asking every site's task for
//! its whole budget (what it did before). N sites of one charger with two connectors each, on a
//! SQLite file in /dev/shm; every hundredth site's store meter reads above its grid limit, so it
//! is listed as over a limit.
//!
//! `cargo run --release -p server --example alerts_timing -- 100,1000,10000`

use app::domain::{ChargerId, ConnectorNo, Currency, Slug, Tariff};
use server::balancer::units::DeciAmps;
use server::balancing::Hub;
use server::db::catalog::{self, ConnectorSpec, NewSite};
use server::db::Db;
use server::ocpp::registry::Registry;
use server::settings::DatabaseUrl;
use std::time::{Duration, Instant};

const RUNS: usize = 20;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "100,1000,10000".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    println!("| sites | listed | attention list: mean ms | asking every site: mean ms (p99) |");
    println!("|---|---|---|---|");
    for n in sizes {
        let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir())?;
        let url = DatabaseUrl::sqlite_in(dir.path());
        let db = Db::connect(&url).await?;
        db.migrate(&url).await?;
        let retailer =
            catalog::create_retailer(&db, &Slug::parse("r")?, "R", &Slug::parse("default")?).await?;
        let tariff = catalog::create_tariff(
            &db,
            &Tariff { currency: Currency::EUR, per_kwh_minor: 40, session_fee_minor: 0 },
        )
        .await?;
        let mut sites = Vec::with_capacity(n);
        for i in 0..n {
            let site = NewSite {
                retailer,
                name: format!("Site {i}"),
                address: String::new(),
                timezone: "Europe/Amsterdam".into(),
                tariff,
                grid_limit_da: [630; 3],
                auto_register: false,
                free_vend: false,
                store_worst_case_da: 300,
                connector_fallback_da: 0,
            };
            let id = catalog::create_site(&db, &site).await?;
            let charger = ChargerId::parse(&format!("AT-{i}"))?;
            catalog::create_charger(&db, &charger, id, None).await?;
            for no in 1..=2 {
                let spec = ConnectorSpec { max_current_a: 32, phases: 3, max_power_w: 22_000 };
                catalog::create_connector(&db, &charger, ConnectorNo::new(no)?, spec).await?;
            }
            sites.push(id);
        }
        let hub = Hub::start(&db, Registry::default()).await?;
        let over = [DeciAmps::from_amps(70); 3];
        let mut expected = 0;
        for (i, &site) in sites.iter().enumerate() {
            if i % 100 == 0 {
                hub.store_meter(site, over);
                expected += 1;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while hub.attention().len() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let listed = hub.attention().len();

        let mut list_ms = 0.0;
        for _ in 0..RUNS {
            let t = Instant::now();
            std::hint::black_box(hub.attention());
            list_ms += t.elapsed().as_secs_f64() * 1e3;
        }
        let mut ask_ms = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t = Instant::now();
            let all = futures::future::join_all(hub.sites().into_iter().map(|s| hub.budget(s))).await;
            std::hint::black_box(all);
            ask_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ask_ms.sort_by(f64::total_cmp);
        let mean = ask_ms.iter().sum::<f64>() / RUNS as f64;
        let p99 = ask_ms[(RUNS * 99).div_ceil(100) - 1];
        println!("| {n} | {listed} of {expected} | {:.4} | {mean:.1} ({p99:.1}) |", list_ms / RUNS as f64);
        db.close().await;
    }
    Ok(())
}
