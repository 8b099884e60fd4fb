//! Chargers as an operator looks them up: the list, one charger with its connectors and recent
//! transactions, and its raw OCPP frames. Times are UTC milliseconds.

use super::{Db, DbError};
use app::domain::ChargerId;
use sqlx::Row;

/// One charger and what it last said of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargerRow {
    pub id: String,
    pub site: String,
    pub online: bool,
    pub ocpp_version: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub serial: Option<String>,
    pub registration: String,
    pub last_seen_at: Option<i64>,
    pub offline_since: Option<i64>,
    pub booted_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorRow {
    pub connector_no: i64,
    pub status: String,
    pub status_at: Option<i64>,
    pub max_current_a: i64,
    pub phases: i64,
    pub max_power_w: i64,
    /// Printed beside its QR code: the proof a driver's phone was there.
    pub presence_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TransactionRow {
    pub id: i64,
    pub ocpp_transaction_id: String,
    pub connector_no: i64,
    pub id_tag: String,
    pub status: String,
    pub started_at: Option<i64>,
    pub stopped_at: Option<i64>,
    pub meter_start_wh: Option<i64>,
    pub meter_stop_wh: Option<i64>,
    pub stop_reason: Option<String>,
    /// Reported stopped without our having seen it start.
    pub start_unseen: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FrameRow {
    /// `in` (from the charger) or `out`.
    pub direction: String,
    pub at: Option<i64>,
    pub frame: String,
}

const CHARGER_COLUMNS: &str =
    "ch.id, s.name AS site, ch.online, ch.ocpp_version, ch.vendor, ch.model, ch.firmware, ch.serial, \
    ch.registration, ch.last_seen_at, ch.offline_since, ch.booted_at";

fn charger_from(r: &sqlx::any::AnyRow) -> Result<ChargerRow, DbError> {
    Ok(ChargerRow {
        id: r.try_get("id")?,
        site: r.try_get("site")?,
        online: r.try_get::<i64, _>("online")? != 0,
        ocpp_version: r.try_get("ocpp_version")?,
        vendor: r.try_get("vendor")?,
        model: r.try_get("model")?,
        firmware: r.try_get("firmware")?,
        serial: r.try_get("serial")?,
        registration: r.try_get("registration")?,
        last_seen_at: r.try_get("last_seen_at")?,
        offline_since: r.try_get("offline_since")?,
        booted_at: r.try_get("booted_at")?,
    })
}

pub async fn all(db: &Db) -> Result<Vec<ChargerRow>, DbError> {
    let rows = sqlx::query(&format!(
        "SELECT {CHARGER_COLUMNS} FROM chargers ch JOIN sites s ON s.id = ch.site_id ORDER BY ch.id"
    ))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(charger_from).collect()
}

pub async fn one(db: &Db, id: &ChargerId) -> Result<Option<ChargerRow>, DbError> {
    let row = sqlx::query(&format!(
        "SELECT {CHARGER_COLUMNS} FROM chargers ch JOIN sites s ON s.id = ch.site_id WHERE ch.id = $1"
    ))
    .bind(id.as_str())
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(charger_from).transpose()
}

pub async fn connectors(db: &Db, id: &ChargerId) -> Result<Vec<ConnectorRow>, DbError> {
    sqlx::query("SELECT connector_no, status, status_at, max_current_a, phases, max_power_w, presence_code FROM connectors WHERE charger_id = $1 ORDER BY connector_no")
        .bind(id.as_str())
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(ConnectorRow {
                connector_no: r.try_get("connector_no")?,
                status: r.try_get("status")?,
                status_at: r.try_get("status_at")?,
                max_current_a: r.try_get("max_current_a")?,
                phases: r.try_get("phases")?,
                max_power_w: r.try_get("max_power_w")?,
                presence_code: r.try_get("presence_code")?,
            })
        })
        .collect()
}

/// The charger's latest transactions, newest first.
pub async fn recent_transactions(
    db: &Db,
    id: &ChargerId,
    limit: i64,
) -> Result<Vec<TransactionRow>, DbError> {
    sqlx::query(
        "SELECT id, ocpp_tx_id, connector_no, id_tag, status, started_at, stopped_at, meter_start_wh, meter_stop_wh, stop_reason, start_unseen \
         FROM transactions WHERE charger_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(id.as_str())
    .bind(limit)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| {
        Ok(TransactionRow {
            id: r.try_get("id")?,
            ocpp_transaction_id: r.try_get("ocpp_tx_id")?,
            connector_no: r.try_get("connector_no")?,
            id_tag: r.try_get("id_tag")?,
            status: r.try_get("status")?,
            started_at: r.try_get("started_at")?,
            stopped_at: r.try_get("stopped_at")?,
            meter_start_wh: r.try_get("meter_start_wh")?,
            meter_stop_wh: r.try_get("meter_stop_wh")?,
            stop_reason: r.try_get("stop_reason")?,
            start_unseen: r.try_get::<i64, _>("start_unseen")? != 0,
        })
    })
    .collect()
}

/// The charger's newest raw frames, both directions, newest first.
pub async fn frames(db: &Db, id: &ChargerId, limit: i64) -> Result<Vec<FrameRow>, DbError> {
    sqlx::query(
        "SELECT direction, at, frame FROM ocpp_frames WHERE charger_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(id.as_str())
    .bind(limit)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| {
        Ok(FrameRow { direction: r.try_get("direction")?, at: r.try_get("at")?, frame: r.try_get("frame")? })
    })
    .collect()
}

/// The presence code printed beside a connector's QR code.
pub async fn presence_code(
    db: &Db,
    charger: &ChargerId,
    connector_no: i64,
) -> Result<Option<String>, DbError> {
    let row = sqlx::query("SELECT presence_code FROM connectors WHERE charger_id = $1 AND connector_no = $2")
        .bind(charger.as_str())
        .bind(connector_no)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|r| r.try_get::<Option<String>, _>("presence_code")).transpose()?.flatten())
}
