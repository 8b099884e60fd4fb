//! The network's static shape: retailers, tariffs, sites, chargers and connectors.

use super::{conflict_as, now_ms, Db, DbError};
use app::domain::{
    ChargerId, ConnectorNo, Currency, PresenceCode, RetailerId, SiteId, Slug, Tariff, TariffId,
};
use sqlx::Row;

pub async fn create_retailer(db: &Db, slug: &Slug, name: &str, theme: &Slug) -> Result<RetailerId, DbError> {
    let row = sqlx::query(
        "INSERT INTO retailers (slug, name, theme, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(slug.as_str())
    .bind(name)
    .bind(theme.as_str())
    .bind(now_ms())
    .fetch_one(db.pool())
    .await
    .map_err(conflict_as(format!("retailer {slug}")))?;
    Ok(RetailerId(row.try_get("id")?))
}

pub async fn retailer_by_slug(db: &Db, slug: &Slug) -> Result<Option<RetailerId>, DbError> {
    let row = sqlx::query("SELECT id FROM retailers WHERE slug = $1")
        .bind(slug.as_str())
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|r| r.try_get("id")).transpose()?.map(RetailerId))
}

/// Every (retailer slug, theme slug) pair, so start-up can check each theme exists.
pub async fn retailer_themes(db: &Db) -> Result<Vec<(String, String)>, DbError> {
    let rows = sqlx::query("SELECT slug, theme FROM retailers ORDER BY slug").fetch_all(db.pool()).await?;
    rows.iter().map(|r| Ok((r.try_get("slug")?, r.try_get("theme")?))).collect()
}

pub async fn create_tariff(db: &Db, tariff: &Tariff) -> Result<TariffId, DbError> {
    let row = sqlx::query(
        "INSERT INTO tariffs (currency, per_kwh_minor, session_fee_minor) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(tariff.currency.code())
    .bind(tariff.per_kwh_minor)
    .bind(tariff.session_fee_minor)
    .fetch_one(db.pool())
    .await?;
    Ok(TariffId(row.try_get("id")?))
}

/// A site as created by an operator or the demo seed.
#[derive(Debug, Clone)]
pub struct NewSite {
    pub retailer: RetailerId,
    pub name: String,
    pub address: String,
    /// IANA zone; times are shown in it, stored in UTC.
    pub timezone: String,
    pub tariff: TariffId,
    /// The grid connection's limit per phase, in tenths of an amp.
    pub grid_limit_da: [i64; 3],
    /// Unknown chargers that connect are attached to this site and accepted.
    pub auto_register: bool,
    /// Sessions start without payment (demo, staff chargers).
    pub free_vend: bool,
    /// Store load assumed per phase when the site meter is stale or missing, tenths of an amp.
    pub store_worst_case_da: i64,
    /// What a connector may draw before our limit lands (the TxDefaultProfile), tenths of an amp.
    pub connector_fallback_da: i64,
}

pub async fn create_site(db: &Db, site: &NewSite) -> Result<SiteId, DbError> {
    let row = sqlx::query(
        "INSERT INTO sites (retailer_id, name, address, timezone, tariff_id, grid_limit_l1_da, grid_limit_l2_da, \
         grid_limit_l3_da, auto_register, free_vend, created_at, store_worst_case_da, connector_fallback_da) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    )
    .bind(site.retailer.0)
    .bind(&site.name)
    .bind(&site.address)
    .bind(&site.timezone)
    .bind(site.tariff.0)
    .bind(site.grid_limit_da[0])
    .bind(site.grid_limit_da[1])
    .bind(site.grid_limit_da[2])
    .bind(i64::from(site.auto_register))
    .bind(i64::from(site.free_vend))
    .bind(now_ms())
    .bind(site.store_worst_case_da)
    .bind(site.connector_fallback_da)
    .fetch_one(db.pool())
    .await?;
    Ok(SiteId(row.try_get("id")?))
}

pub async fn create_charger(
    db: &Db,
    id: &ChargerId,
    site: SiteId,
    password_hash: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query("INSERT INTO chargers (id, site_id, password_hash, registration, created_at) VALUES ($1, $2, $3, 'accepted', $4)")
        .bind(id.as_str())
        .bind(site.0)
        .bind(password_hash)
        .bind(now_ms())
        .execute(db.pool())
        .await
        .map_err(conflict_as(format!("charger {id}")))?;
    Ok(())
}

/// A connector's electrical ratings.
#[derive(Debug, Clone, Copy)]
pub struct ConnectorSpec {
    pub max_current_a: i64,
    pub phases: i64,
    pub max_power_w: i64,
}

pub async fn create_connector(
    db: &Db,
    charger: &ChargerId,
    no: ConnectorNo,
    spec: ConnectorSpec,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO connectors (charger_id, connector_no, max_current_a, phases, max_power_w, status, presence_code) \
         VALUES ($1, $2, $3, $4, $5, 'Unknown', $6)",
    )
    .bind(charger.as_str())
    .bind(i64::from(no.get()))
    .bind(spec.max_current_a)
    .bind(spec.phases)
    .bind(spec.max_power_w)
    .bind(new_presence_code().as_str())
    .execute(db.pool())
    .await
    .map_err(conflict_as(format!("connector {no} of charger {charger}")))?;
    Ok(())
}

/// Public facts about one connector, for the driver's page.
#[derive(Debug, Clone)]
pub struct ConnectorFacts {
    pub retailer_theme: String,
    pub site_name: String,
    pub site_address: String,
    /// The site's IANA time zone: drivers' times of day are the site's.
    pub site_timezone: String,
    pub status: String,
    pub max_power_w: i64,
    pub tariff: Tariff,
    /// Never sent to a browser: it is what a phone proves it was there with.
    pub presence_code: Option<PresenceCode>,
}

/// A fresh presence code for a connector.
pub fn new_presence_code() -> PresenceCode {
    PresenceCode::from_random(rand::random())
}

/// Gives every connector without a presence code one (connectors from before codes existed).
pub async fn fill_missing_presence_codes(db: &Db) -> Result<u64, DbError> {
    let rows = sqlx::query("SELECT charger_id, connector_no FROM connectors WHERE presence_code IS NULL")
        .fetch_all(db.pool())
        .await?;
    for row in &rows {
        sqlx::query(
            "UPDATE connectors SET presence_code = $1 WHERE charger_id = $2 AND connector_no = $3 AND presence_code IS NULL",
        )
        .bind(new_presence_code().as_str())
        .bind(row.try_get::<String, _>("charger_id")?)
        .bind(row.try_get::<i64, _>("connector_no")?)
        .execute(db.pool())
        .await?;
    }
    Ok(rows.len() as u64)
}

pub async fn connector_facts(
    db: &Db,
    charger: &ChargerId,
    no: ConnectorNo,
) -> Result<Option<ConnectorFacts>, DbError> {
    let row = sqlx::query(
        "SELECT r.theme, s.name, s.address, s.timezone, c.status, c.max_power_w, c.presence_code, t.currency, t.per_kwh_minor, t.session_fee_minor \
         FROM connectors c JOIN chargers ch ON ch.id = c.charger_id JOIN sites s ON s.id = ch.site_id \
         JOIN retailers r ON r.id = s.retailer_id JOIN tariffs t ON t.id = s.tariff_id \
         WHERE c.charger_id = $1 AND c.connector_no = $2 AND ch.registration = 'accepted'",
    )
    .bind(charger.as_str())
    .bind(i64::from(no.get()))
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let currency: String = row.try_get("currency")?;
    Ok(Some(ConnectorFacts {
        retailer_theme: row.try_get("theme")?,
        site_name: row.try_get("name")?,
        site_address: row.try_get("address")?,
        site_timezone: row.try_get("timezone")?,
        status: row.try_get("status")?,
        max_power_w: row.try_get("max_power_w")?,
        tariff: Tariff {
            currency: Currency::parse(&currency).map_err(|e| DbError::Corrupt(e.to_string()))?,
            per_kwh_minor: row.try_get("per_kwh_minor")?,
            session_fee_minor: row.try_get("session_fee_minor")?,
        },
        presence_code: row
            .try_get::<Option<String>, _>("presence_code")?
            .as_deref()
            .and_then(PresenceCode::parse),
    }))
}

/// A charger as the operator console lists it.
#[derive(Debug, Clone)]
pub struct ChargerSummary {
    pub id: String,
    pub site_id: i64,
    pub site_name: String,
    pub retailer_name: String,
    pub connectors: i64,
    pub online: bool,
    pub registration: String,
    pub active_sessions: i64,
}

pub async fn charger_summaries(db: &Db) -> Result<Vec<ChargerSummary>, DbError> {
    let rows = sqlx::query(
        "SELECT ch.id, s.id AS site_id, s.name AS site_name, r.name AS retailer_name, ch.online, ch.registration, \
         (SELECT COUNT(*) FROM connectors c WHERE c.charger_id = ch.id) AS connectors, \
         (SELECT COUNT(*) FROM transactions t WHERE t.charger_id = ch.id AND t.status = 'active') AS active_sessions \
         FROM chargers ch JOIN sites s ON s.id = ch.site_id JOIN retailers r ON r.id = s.retailer_id ORDER BY ch.id",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ChargerSummary {
                id: r.try_get("id")?,
                site_id: r.try_get("site_id")?,
                site_name: r.try_get("site_name")?,
                retailer_name: r.try_get("retailer_name")?,
                connectors: r.try_get("connectors")?,
                online: r.try_get::<i64, _>("online")? != 0,
                registration: r.try_get("registration")?,
                active_sessions: r.try_get("active_sessions")?,
            })
        })
        .collect()
}

/// A site's name and its retailer's (`None`: no such site).
pub async fn site_names(db: &Db, site: SiteId) -> Result<Option<(String, String)>, DbError> {
    let row = sqlx::query(
        "SELECT s.name AS site_name, r.name AS retailer_name FROM sites s JOIN retailers r ON r.id = s.retailer_id WHERE s.id = $1",
    )
    .bind(site.0)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| Ok((r.try_get("site_name")?, r.try_get("retailer_name")?))).transpose()
}

/// A retailer and its sites with counts: everything its dashboard lists, and nothing of anyone else's.
#[derive(Debug, Clone)]
pub struct RetailerSites {
    pub name: String,
    pub theme: String,
    pub sites: Vec<SiteSummary>,
}

#[derive(Debug, Clone)]
pub struct SiteSummary {
    pub name: String,
    pub address: String,
    pub chargers: i64,
    pub connectors: i64,
}

pub async fn retailer_sites(db: &Db, retailer: RetailerId) -> Result<Option<RetailerSites>, DbError> {
    let Some(head) = sqlx::query("SELECT name, theme FROM retailers WHERE id = $1")
        .bind(retailer.0)
        .fetch_optional(db.pool())
        .await?
    else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT s.name, s.address, \
         (SELECT COUNT(*) FROM chargers ch WHERE ch.site_id = s.id) AS chargers, \
         (SELECT COUNT(*) FROM connectors c JOIN chargers ch ON ch.id = c.charger_id WHERE ch.site_id = s.id) AS connectors \
         FROM sites s WHERE s.retailer_id = $1 ORDER BY s.name",
    )
    .bind(retailer.0)
    .fetch_all(db.pool())
    .await?;
    let sites = rows
        .iter()
        .map(|r| {
            Ok(SiteSummary {
                name: r.try_get("name")?,
                address: r.try_get("address")?,
                chargers: r.try_get("chargers")?,
                connectors: r.try_get("connectors")?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(Some(RetailerSites { name: head.try_get("name")?, theme: head.try_get("theme")?, sites }))
}

pub async fn retailer_exists(db: &Db, retailer: RetailerId) -> Result<bool, DbError> {
    let row = sqlx::query("SELECT 1 AS one FROM retailers WHERE id = $1")
        .bind(retailer.0)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.is_some())
}
