//! Demo data, seeded once into an empty database: an operator, two retailers with their own
//! themes, a site each with chargers, connectors and a tariff. The logins are printed at start-up
//! and are for the demo only.

use crate::auth;
use crate::db::{catalog, ocpp, tokens, users, Db, DbError};
use app::domain::{ChargerId, ConnectorNo, Currency, Role, Slug, Tariff};

pub const OPERATOR_EMAIL: &str = "operator@forecourt.local";
pub const OPERATOR_PASSWORD: &str = "demo-operator-pass";
/// Operator support: reads the network and operates it, manages nothing.
pub const SUPPORT_EMAIL: &str = "support@forecourt.local";
pub const SUPPORT_PASSWORD: &str = "demo-support-pass";
/// Every demo charger authenticates (OCPP security profile 1) with this password.
pub const CHARGER_PASSWORD: &str = "demo-charger-pass";
/// The operator API token of the demo (`Authorization: Bearer …`).
pub const OPERATOR_API_TOKEN: &str = "demo-operator-api-token";
/// Demo id tokens: one accepted everywhere, one blocked, one expired.
pub const ACCEPTED_TAG: &str = "DEMO-TAG-1";
pub const BLOCKED_TAG: &str = "BLOCKED-1";
pub const EXPIRED_TAG: &str = "EXPIRED-1";

pub struct DemoRetailer {
    pub slug: &'static str,
    pub name: &'static str,
    /// The retailer admin (their manager).
    pub login: &'static str,
    pub password: &'static str,
    /// A retailer viewer (a member of staff who reads the figures).
    pub viewer_login: &'static str,
    pub viewer_password: &'static str,
    pub site: &'static str,
    pub address: &'static str,
    pub timezone: &'static str,
    pub currency: Currency,
    pub per_kwh_minor: i64,
    pub session_fee_minor: i64,
    /// (charger id, connectors, amps per connector, phases)
    pub chargers: &'static [(&'static str, u32, i64, i64)],
    pub grid_limit_a: i64,
    /// Unknown chargers register themselves here; drivers charge without paying (demo).
    pub open_site: bool,
    /// The store's own load assumed per phase when its meter is silent.
    pub store_worst_case_a: i64,
}

pub const RETAILERS: [DemoRetailer; 2] = [
    DemoRetailer {
        slug: "freshmart",
        name: "FreshMart",
        login: "manager@freshmart.example",
        password: "demo-freshmart-pass",
        viewer_login: "staff@freshmart.example",
        viewer_password: "demo-freshmart-staff",
        site: "FreshMart Camden",
        address: "12 Camden High St, London NW1",
        timezone: "Europe/London",
        currency: Currency::GBP,
        per_kwh_minor: 49,
        session_fee_minor: 0,
        chargers: &[("FM-CAM-01", 2, 32, 3), ("FM-CAM-02", 2, 32, 3)],
        grid_limit_a: 100,
        open_site: true,
        store_worst_case_a: 30,
    },
    DemoRetailer {
        slug: "urbanpod",
        name: "UrbanPod",
        login: "manager@urbanpod.example",
        password: "demo-urbanpod-pass",
        viewer_login: "staff@urbanpod.example",
        viewer_password: "demo-urbanpod-staff",
        site: "UrbanPod Zuidas",
        address: "Gustav Mahlerplein 3, Amsterdam",
        timezone: "Europe/Amsterdam",
        currency: Currency::EUR,
        per_kwh_minor: 59,
        session_fee_minor: 35,
        chargers: &[("UP-ZUI-01", 1, 32, 3), ("UP-ZUI-02", 1, 16, 1)],
        grid_limit_a: 40,
        open_site: false,
        store_worst_case_a: 8,
    },
];

/// The first connector of the first demo charger: the driver page the README points to.
pub const DEMO_CONNECTOR: (&str, u32) = ("FM-CAM-01", 1);

fn parse<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, DbError> {
    r.map_err(|e| DbError::Corrupt(format!("demo data: {e}")))
}

/// Seeds the demo network when the database has no users yet. Returns whether it seeded.
pub async fn seed_if_empty(db: &Db) -> Result<bool, DbError> {
    if users::count(db).await? > 0 {
        return Ok(false);
    }
    let hash = |p: &str| parse(auth::hash_password(p));
    users::create(db, OPERATOR_EMAIL, &hash(OPERATOR_PASSWORD)?, &Role::OperatorAdmin).await?;
    users::create(db, SUPPORT_EMAIL, &hash(SUPPORT_PASSWORD)?, &Role::OperatorSupport).await?;
    tokens::create_token(db, &auth::token_hash(OPERATOR_API_TOKEN), "demo operator", &Role::OperatorAdmin)
        .await?;
    ocpp::create_token(db, ACCEPTED_TAG, false, None, "demo").await?;
    ocpp::create_token(db, BLOCKED_TAG, true, None, "demo: blocked").await?;
    ocpp::create_token(db, EXPIRED_TAG, false, Some(crate::db::now_ms() - 86_400_000), "demo: expired")
        .await?;
    let charger_hash = hash(CHARGER_PASSWORD)?;
    for r in &RETAILERS {
        let slug = parse(Slug::parse(r.slug))?;
        let retailer = catalog::create_retailer(db, &slug, r.name, &slug).await?;
        users::create(db, r.login, &hash(r.password)?, &Role::RetailerAdmin(retailer)).await?;
        users::create(db, r.viewer_login, &hash(r.viewer_password)?, &Role::RetailerViewer(retailer)).await?;
        let tariff = catalog::create_tariff(
            db,
            &Tariff {
                currency: r.currency,
                per_kwh_minor: r.per_kwh_minor,
                session_fee_minor: r.session_fee_minor,
            },
        )
        .await?;
        let site = catalog::create_site(
            db,
            &catalog::NewSite {
                retailer,
                name: r.site.to_owned(),
                address: r.address.to_owned(),
                timezone: r.timezone.to_owned(),
                tariff,
                grid_limit_da: [r.grid_limit_a * 10; 3],
                auto_register: r.open_site,
                free_vend: r.open_site,
                store_worst_case_da: r.store_worst_case_a * 10,
                // Cars wait for our limit rather than drawing a default nobody budgeted.
                connector_fallback_da: 0,
            },
        )
        .await?;
        for (id, connectors, amps, phases) in r.chargers {
            let id = parse(ChargerId::parse(id))?;
            catalog::create_charger(db, &id, site, Some(&charger_hash)).await?;
            for n in 1..=*connectors {
                let spec = catalog::ConnectorSpec {
                    max_current_a: *amps,
                    phases: *phases,
                    max_power_w: amps * phases * 230,
                };
                catalog::create_connector(db, &id, parse(ConnectorNo::new(n))?, spec).await?;
            }
        }
    }
    tracing::info!("demo data seeded");
    Ok(true)
}
