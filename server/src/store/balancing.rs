//! What the load balancer needs from storage: each site's electrics and its open sessions.

use super::{Db, StoreError};
use app::domain::SiteId;
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct CircuitRow {
    pub id: i64,
    pub parent: Option<i64>,
    pub limit_da: [i64; 3],
}

#[derive(Debug, Clone)]
pub struct ConnectorRow {
    pub charger_id: String,
    pub connector_no: i64,
    pub max_current_a: i64,
    pub phases: i64,
    pub rotation: String,
    pub circuit: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct OpenSession {
    pub transaction_id: i64,
    pub charger_id: String,
    pub connector_no: i64,
    pub ocpp_tx_id: String,
}

#[derive(Debug, Clone)]
pub struct SiteElectrics {
    pub site: SiteId,
    pub grid_limit_da: [i64; 3],
    pub store_worst_case_da: i64,
    pub connector_fallback_da: i64,
    pub circuits: Vec<CircuitRow>,
    pub connectors: Vec<ConnectorRow>,
    pub open_sessions: Vec<OpenSession>,
}

/// Every site's electrics.
pub async fn all_sites(db: &Db) -> Result<Vec<SiteElectrics>, StoreError> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM sites ORDER BY id").fetch_all(db.pool()).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.extend(site(db, SiteId(id)).await?);
    }
    Ok(out)
}

/// One site's electrics, as storage knows them now (`None`: no such site).
pub async fn site(db: &Db, id: SiteId) -> Result<Option<SiteElectrics>, StoreError> {
    let Some(s) = sqlx::query(
        "SELECT id, grid_limit_l1_da, grid_limit_l2_da, grid_limit_l3_da, store_worst_case_da, connector_fallback_da FROM sites WHERE id = $1",
    )
    .bind(id.0)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(None);
    };
    let site: i64 = s.try_get("id")?;
    let circuits = sqlx::query("SELECT id, parent_id, limit_l1_da, limit_l2_da, limit_l3_da FROM circuits WHERE site_id = $1 ORDER BY id")
        .bind(site)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(CircuitRow {
                id: r.try_get("id")?,
                parent: r.try_get("parent_id")?,
                limit_da: [r.try_get("limit_l1_da")?, r.try_get("limit_l2_da")?, r.try_get("limit_l3_da")?],
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let connectors = sqlx::query(
            "SELECT c.charger_id, c.connector_no, c.max_current_a, c.phases, c.rotation, c.circuit_id FROM connectors c \
             JOIN chargers ch ON ch.id = c.charger_id WHERE ch.site_id = $1 AND ch.registration = 'accepted' ORDER BY c.charger_id, c.connector_no",
        )
        .bind(site)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(ConnectorRow {
                charger_id: r.try_get("charger_id")?,
                connector_no: r.try_get("connector_no")?,
                max_current_a: r.try_get("max_current_a")?,
                phases: r.try_get("phases")?,
                rotation: r.try_get("rotation")?,
                circuit: r.try_get("circuit_id")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let open_sessions = sqlx::query(
        "SELECT t.id, t.charger_id, t.connector_no, t.ocpp_tx_id FROM transactions t JOIN chargers ch ON ch.id = t.charger_id \
             WHERE ch.site_id = $1 AND t.status = 'active' ORDER BY t.id",
    )
    .bind(site)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| {
        Ok(OpenSession {
            transaction_id: r.try_get("id")?,
            charger_id: r.try_get("charger_id")?,
            connector_no: r.try_get("connector_no")?,
            ocpp_tx_id: r.try_get("ocpp_tx_id")?,
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(SiteElectrics {
        site: SiteId(site),
        grid_limit_da: [s.try_get("grid_limit_l1_da")?, s.try_get("grid_limit_l2_da")?, s.try_get("grid_limit_l3_da")?],
        store_worst_case_da: s.try_get("store_worst_case_da")?,
        connector_fallback_da: s.try_get("connector_fallback_da")?,
        circuits,
        connectors,
        open_sessions,
    }))
}
