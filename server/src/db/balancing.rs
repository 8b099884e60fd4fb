//! What the load balancer needs from storage: each site's electrics and its open sessions.

use super::{Db, DbError};
use crate::balancer::{HandoverConfig, Millis, SiteMeter};
use app::domain::{SessionPriority, SiteId};
use serde::Serialize;
use sqlx::Row;
use std::collections::HashMap;

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
    pub meter_start_wh: Option<i64>,
    pub needs: SessionNeeds,
}

/// What the driver or an operator stated about a session, for the balancer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SessionNeeds {
    /// When the car leaves, UTC milliseconds.
    pub departure_at_ms: Option<i64>,
    /// Energy the driver wants in the session.
    pub energy_need_wh: Option<i64>,
    pub priority: SessionPriority,
}

/// A priority as stored; one out of range (written by hand) is taken at the nearest end.
pub(crate) fn stored_priority(value: i64) -> SessionPriority {
    SessionPriority::new(value).unwrap_or_else(|out_of_range| {
        tracing::warn!(%out_of_range, "a stored session priority is out of range: taken at the nearest end");
        let nearest = value.clamp(0, i64::from(SessionPriority::MAX));
        SessionPriority::new(nearest).unwrap_or(SessionPriority::NORMAL)
    })
}

/// Where a session whose needs were stated runs, or why it cannot take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NeedsStored {
    /// Stored for the running session on this charger's connector.
    Running { charger_id: String, connector_no: i64 },
    /// The session has ended: nothing stored.
    Ended,
    /// No such session.
    Unknown,
}

/// Stores what was stated about a running session.
pub async fn set_session_needs(
    db: &Db,
    transaction_id: i64,
    needs: &SessionNeeds,
) -> Result<NeedsStored, DbError> {
    let updated = sqlx::query(
        "UPDATE transactions SET departure_at_ms = $1, energy_need_wh = $2, priority = $3 WHERE id = $4 AND status = 'active' \
             RETURNING charger_id, connector_no",
    )
    .bind(needs.departure_at_ms)
    .bind(needs.energy_need_wh)
    .bind(i64::from(needs.priority))
    .bind(transaction_id)
    .fetch_optional(db.pool())
    .await?;
    if let Some(r) = updated {
        return Ok(NeedsStored::Running {
            charger_id: r.try_get("charger_id")?,
            connector_no: r.try_get("connector_no")?,
        });
    }
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM transactions WHERE id = $1")
        .bind(transaction_id)
        .fetch_optional(db.pool())
        .await?;
    Ok(if exists.is_some() { NeedsStored::Ended } else { NeedsStored::Unknown })
}

/// Gives a running session a new priority, keeping what else was stated about it. Returns the
/// session's needs as they now stand and its charger, or `None` when it is not running.
pub async fn set_session_priority(
    db: &Db,
    transaction_id: i64,
    priority: SessionPriority,
) -> Result<Option<(SessionNeeds, String)>, DbError> {
    let updated = sqlx::query(
        "UPDATE transactions SET priority = $1 WHERE id = $2 AND status = 'active' \
             RETURNING charger_id, departure_at_ms, energy_need_wh",
    )
    .bind(i64::from(priority))
    .bind(transaction_id)
    .fetch_optional(db.pool())
    .await?;
    updated
        .map(|r| {
            let needs = SessionNeeds {
                departure_at_ms: r.try_get("departure_at_ms")?,
                energy_need_wh: r.try_get("energy_need_wh")?,
                priority,
            };
            Ok((needs, r.try_get("charger_id")?))
        })
        .transpose()
}

#[derive(Debug, Clone)]
pub struct SiteElectrics {
    pub site: SiteId,
    pub grid_limit_da: [i64; 3],
    pub store_worst_case_da: i64,
    pub connector_fallback_da: i64,
    /// The charger whose connector 0 meter measures the store's own load, if one does.
    pub store_meter_charger: Option<String>,
    /// What the site meter measures.
    pub site_meter: SiteMeter,
    /// Handovers scheduled ahead, if the site has them.
    pub handover: Option<HandoverConfig>,
    /// How long the room for an idle connector's default must last before it goes back up.
    pub idle_raise_after: Millis,
    /// How long the store meter may repeat one reading before it is not believed (zero: never).
    pub store_meter_frozen_after: Millis,
    pub circuits: Vec<CircuitRow>,
    pub connectors: Vec<ConnectorRow>,
    pub open_sessions: Vec<OpenSession>,
}

/// Every site's electrics.
pub async fn all_sites(db: &Db) -> Result<Vec<SiteElectrics>, DbError> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM sites ORDER BY id").fetch_all(db.pool()).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.extend(site(db, SiteId(id)).await?);
    }
    Ok(out)
}

/// One site's electrics, as storage knows them now (`None`: no such site).
pub async fn site(db: &Db, id: SiteId) -> Result<Option<SiteElectrics>, DbError> {
    let Some(s) = sqlx::query(
        "SELECT id, grid_limit_l1_da, grid_limit_l2_da, grid_limit_l3_da, store_worst_case_da, connector_fallback_da, store_meter_charger_id, site_meter, \
         handover_lead_ms, handover_clock_skew_ms, idle_raise_after_ms, store_meter_frozen_after_ms FROM sites WHERE id = $1",
    )
    .bind(id.0)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(None);
    };
    let site: i64 = s.try_get("id")?;
    let skew_ms: i64 = s.try_get("handover_clock_skew_ms")?;
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
        .collect::<Result<Vec<_>, DbError>>()?;
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
        .collect::<Result<Vec<_>, DbError>>()?;
    let open_sessions = sqlx::query(
        "SELECT t.id, t.charger_id, t.connector_no, t.ocpp_tx_id, t.meter_start_wh, t.departure_at_ms, t.energy_need_wh, t.priority \
             FROM transactions t JOIN chargers ch ON ch.id = t.charger_id \
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
            meter_start_wh: r.try_get("meter_start_wh")?,
            needs: SessionNeeds {
                departure_at_ms: r.try_get("departure_at_ms")?,
                energy_need_wh: r.try_get("energy_need_wh")?,
                priority: stored_priority(r.try_get("priority")?),
            },
        })
    })
    .collect::<Result<Vec<_>, DbError>>()?;
    Ok(Some(SiteElectrics {
        site: SiteId(site),
        grid_limit_da: [
            s.try_get("grid_limit_l1_da")?,
            s.try_get("grid_limit_l2_da")?,
            s.try_get("grid_limit_l3_da")?,
        ],
        store_worst_case_da: s.try_get("store_worst_case_da")?,
        connector_fallback_da: s.try_get("connector_fallback_da")?,
        store_meter_charger: s.try_get("store_meter_charger_id")?,
        site_meter: if s.try_get::<String, _>("site_meter")? == "incomer" {
            SiteMeter::Incomer
        } else {
            SiteMeter::Store
        },
        handover: s.try_get::<Option<i64>, _>("handover_lead_ms")?.map(|lead| HandoverConfig {
            lead: Millis(u64::try_from(lead).unwrap_or(0)),
            clock_skew: Millis(u64::try_from(skew_ms).unwrap_or(0)),
        }),
        idle_raise_after: Millis(u64::try_from(s.try_get::<i64, _>("idle_raise_after_ms")?).unwrap_or(0)),
        store_meter_frozen_after: Millis(
            u64::try_from(s.try_get::<i64, _>("store_meter_frozen_after_ms")?).unwrap_or(0),
        ),
        circuits,
        connectors,
        open_sessions,
    }))
}

/// A site's circuits' names by id.
pub async fn circuit_names(db: &Db, site: SiteId) -> Result<HashMap<i64, String>, DbError> {
    sqlx::query("SELECT id, name FROM circuits WHERE site_id = $1")
        .bind(site.0)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
        .collect()
}

/// Stores checked electrics: the site's limits, its circuit tree (replaced whole) and its connectors'
/// ratings and wiring, in one transaction.
/// `circuit_names` are the circuits' names in the order of `checked.circuits`.
pub async fn store_electrics(
    db: &Db,
    checked: &SiteElectrics,
    circuit_names: &[String],
) -> Result<(), DbError> {
    let mut tx = db.pool().begin().await?;
    let site = checked.site.0;
    sqlx::query(
        "UPDATE sites SET grid_limit_l1_da = $2, grid_limit_l2_da = $3, grid_limit_l3_da = $4, store_worst_case_da = $5, connector_fallback_da = $6, \
         store_meter_charger_id = $7, site_meter = $8, handover_lead_ms = $9, handover_clock_skew_ms = $10, idle_raise_after_ms = $11, \
         store_meter_frozen_after_ms = $12 WHERE id = $1",
    )
    .bind(site)
    .bind(checked.grid_limit_da[0])
    .bind(checked.grid_limit_da[1])
    .bind(checked.grid_limit_da[2])
    .bind(checked.store_worst_case_da)
    .bind(checked.connector_fallback_da)
    .bind(&checked.store_meter_charger)
    .bind(match checked.site_meter {
        SiteMeter::Store => "store",
        SiteMeter::Incomer => "incomer",
    })
    .bind(checked.handover.map(|h| i64::try_from(h.lead.0).unwrap_or(i64::MAX)))
    .bind(checked.handover.map_or(0, |h| i64::try_from(h.clock_skew.0).unwrap_or(i64::MAX)))
    .bind(i64::try_from(checked.idle_raise_after.0).unwrap_or(i64::MAX))
    .bind(i64::try_from(checked.store_meter_frozen_after.0).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE connectors SET circuit_id = NULL WHERE charger_id IN (SELECT id FROM chargers WHERE site_id = $1)").bind(site).execute(&mut *tx).await?;
    // Children first: a parent is referenced until its children are gone.
    loop {
        let gone = sqlx::query("DELETE FROM circuits WHERE site_id = $1 AND id NOT IN (SELECT parent_id FROM circuits WHERE parent_id IS NOT NULL)")
            .bind(site)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            break;
        }
    }
    // Parents before children (the tree was checked: no cycles), so each parent id is known.
    let mut stored: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
    while stored.len() < checked.circuits.len() {
        let before = stored.len();
        for (c, name) in checked.circuits.iter().zip(circuit_names) {
            if stored.contains_key(&c.id) || c.parent.is_some_and(|p| !stored.contains_key(&p)) {
                continue;
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO circuits (site_id, parent_id, name, limit_l1_da, limit_l2_da, limit_l3_da) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(site)
            .bind(c.parent.and_then(|p| stored.get(&p).copied()))
            .bind(name)
            .bind(c.limit_da[0])
            .bind(c.limit_da[1])
            .bind(c.limit_da[2])
            .fetch_one(&mut *tx)
            .await?;
            stored.insert(c.id, id);
        }
        if stored.len() == before {
            break;
        }
    }
    for c in &checked.connectors {
        sqlx::query("UPDATE connectors SET max_current_a = $3, phases = $4, rotation = $5, circuit_id = $6 WHERE charger_id = $1 AND connector_no = $2")
            .bind(&c.charger_id)
            .bind(c.connector_no)
            .bind(c.max_current_a)
            .bind(c.phases)
            .bind(&c.rotation)
            .bind(c.circuit.and_then(|i| stored.get(&i).copied()))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One reading of a site's store meter: when (UTC milliseconds) and tenths of an amp per phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreReading {
    pub measured_at_ms: i64,
    pub da: [i64; 3],
}

/// Keeps a store meter reading (the balancer learns the store's rise from four weeks of them).
pub async fn record_store_reading(db: &Db, site: SiteId, reading: StoreReading) -> Result<(), DbError> {
    insert_store_reading(site, &reading).execute(db.pool()).await?;
    Ok(())
}

/// The one INSERT of a store meter reading, for a single live reading and for an import alike.
fn insert_store_reading(
    site: SiteId,
    reading: &StoreReading,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments<'static>> {
    sqlx::query("INSERT INTO store_meter_readings (site_id, measured_at, l1_da, l2_da, l3_da) VALUES ($1, $2, $3, $4, $5)")
        .bind(site.0)
        .bind(reading.measured_at_ms)
        .bind(reading.da[0])
        .bind(reading.da[1])
        .bind(reading.da[2])
}

/// Keeps a stretch of earlier store meter readings (a meter's export, imported when a site goes
/// live) in one transaction: all or none. Returns how many were kept.
pub async fn record_store_readings(db: &Db, site: SiteId, readings: &[StoreReading]) -> Result<u64, DbError> {
    let mut tx = db.pool().begin().await?;
    for reading in readings {
        insert_store_reading(site, reading).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(u64::try_from(readings.len()).unwrap_or(u64::MAX))
}

/// A site's store meter readings taken at or after `since_ms`, oldest first.
pub async fn store_readings_since(
    db: &Db,
    site: SiteId,
    since_ms: i64,
) -> Result<Vec<StoreReading>, DbError> {
    let rows = sqlx::query(
        "SELECT measured_at, l1_da, l2_da, l3_da FROM store_meter_readings WHERE site_id = $1 AND measured_at >= $2 ORDER BY measured_at",
    )
    .bind(site.0)
    .bind(since_ms)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StoreReading {
                measured_at_ms: r.try_get(0)?,
                da: [r.try_get(1)?, r.try_get(2)?, r.try_get(3)?],
            })
        })
        .collect()
}

/// Deletes a site's store meter readings taken in `[from_ms, to_ms)`: a stretch an operator knows
/// was the meter's fault, not the store's (the rise is learned from what is kept).
pub async fn forget_store_readings_between(
    db: &Db,
    site: SiteId,
    from_ms: i64,
    to_ms: i64,
) -> Result<u64, DbError> {
    let done = sqlx::query(
        "DELETE FROM store_meter_readings WHERE site_id = $1 AND measured_at >= $2 AND measured_at < $3",
    )
    .bind(site.0)
    .bind(from_ms)
    .bind(to_ms)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}

/// Forgets a site's store meter readings taken before `before_ms`; how many.
pub async fn forget_store_readings(db: &Db, site: SiteId, before_ms: i64) -> Result<u64, DbError> {
    forget_store_readings_between(db, site, i64::MIN, before_ms).await
}
