//! Read models for the operator API, and API tokens.

use super::{now_ms, Db, DbError};
use app::domain::{ChargerId, RetailerId, Role};
use serde_json::{json, Value};
use sqlx::Row;

fn iso(ms: Option<i64>) -> Value {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map_or(Value::Null, |t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
}

pub async fn create_token(db: &Db, token_hash: &str, name: &str, role: &Role) -> Result<(), DbError> {
    let (kind, retailer) = match role {
        Role::Operator => ("operator", None),
        Role::Retailer(r) => ("retailer", Some(r.0)),
    };
    sqlx::query("INSERT INTO api_tokens (token_hash, name, role, retailer_id, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(token_hash)
        .bind(name)
        .bind(kind)
        .bind(retailer)
        .bind(now_ms())
        .execute(db.pool())
        .await
        .map_err(super::conflict_as(format!("API token {name}")))?;
    Ok(())
}

pub async fn token_role(db: &Db, token_hash: &str) -> Result<Option<Role>, DbError> {
    let row = sqlx::query("SELECT role, retailer_id FROM api_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let kind: String = row.try_get("role")?;
    let retailer: Option<i64> = row.try_get("retailer_id")?;
    Ok(match (kind.as_str(), retailer) {
        ("operator", None) => Some(Role::Operator),
        ("retailer", Some(r)) => Some(Role::Retailer(RetailerId(r))),
        _ => return Err(DbError::Corrupt(format!("API token role {kind}"))),
    })
}

const CHARGER_COLUMNS: &str =
    "ch.id, s.name AS site, ch.online, ch.ocpp_version, ch.vendor, ch.model, ch.firmware, ch.serial, \
    ch.registration, ch.last_seen_at, ch.offline_since, ch.booted_at";

fn charger_json(r: &sqlx::any::AnyRow) -> Result<Value, DbError> {
    Ok(json!({
        "id": r.try_get::<String, _>("id")?,
        "site": r.try_get::<String, _>("site")?,
        "online": r.try_get::<i64, _>("online")? != 0,
        "ocpp_version": r.try_get::<Option<String>, _>("ocpp_version")?,
        "vendor": r.try_get::<Option<String>, _>("vendor")?,
        "model": r.try_get::<Option<String>, _>("model")?,
        "firmware": r.try_get::<Option<String>, _>("firmware")?,
        "serial": r.try_get::<Option<String>, _>("serial")?,
        "registration": r.try_get::<String, _>("registration")?,
        "last_seen_at": iso(r.try_get("last_seen_at")?),
        "offline_since": iso(r.try_get("offline_since")?),
        "booted_at": iso(r.try_get("booted_at")?),
    }))
}

pub async fn chargers(db: &Db) -> Result<Vec<Value>, DbError> {
    let rows = sqlx::query(&format!(
        "SELECT {CHARGER_COLUMNS} FROM chargers ch JOIN sites s ON s.id = ch.site_id ORDER BY ch.id"
    ))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(charger_json).collect()
}

pub async fn charger_detail(db: &Db, id: &ChargerId) -> Result<Option<Value>, DbError> {
    let row = sqlx::query(&format!(
        "SELECT {CHARGER_COLUMNS} FROM chargers ch JOIN sites s ON s.id = ch.site_id WHERE ch.id = $1"
    ))
    .bind(id.as_str())
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut detail = charger_json(&row)?;
    let connectors = sqlx::query("SELECT connector_no, status, status_at, max_current_a, phases, max_power_w FROM connectors WHERE charger_id = $1 ORDER BY connector_no")
        .bind(id.as_str())
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(json!({
                "connector_no": r.try_get::<i64, _>("connector_no")?,
                "status": r.try_get::<String, _>("status")?,
                "status_at": iso(r.try_get("status_at")?),
                "max_current_a": r.try_get::<i64, _>("max_current_a")?,
                "phases": r.try_get::<i64, _>("phases")?,
                "max_power_w": r.try_get::<i64, _>("max_power_w")?,
            }))
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    let transactions = sqlx::query(
        "SELECT id, ocpp_tx_id, connector_no, id_tag, status, started_at, stopped_at, meter_start_wh, meter_stop_wh, stop_reason, start_unseen \
         FROM transactions WHERE charger_id = $1 ORDER BY id DESC LIMIT 50",
    )
    .bind(id.as_str())
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| {
        let start: Option<i64> = r.try_get("meter_start_wh")?;
        let stop: Option<i64> = r.try_get("meter_stop_wh")?;
        Ok(json!({
            "id": r.try_get::<i64, _>("id")?,
            "ocpp_transaction_id": r.try_get::<String, _>("ocpp_tx_id")?,
            "connector_no": r.try_get::<i64, _>("connector_no")?,
            "id_tag": r.try_get::<String, _>("id_tag")?,
            "status": r.try_get::<String, _>("status")?,
            "started_at": iso(r.try_get("started_at")?),
            "stopped_at": iso(r.try_get("stopped_at")?),
            "meter_start_wh": start,
            "meter_stop_wh": stop,
            "energy_wh": start.zip(stop).map(|(a, b)| b - a),
            "stop_reason": r.try_get::<Option<String>, _>("stop_reason")?,
            "start_unseen": r.try_get::<i64, _>("start_unseen")? != 0,
        }))
    })
    .collect::<Result<Vec<_>, DbError>>()?;
    detail["connectors"] = Value::Array(connectors);
    detail["transactions"] = Value::Array(transactions);
    Ok(Some(detail))
}

pub async fn frames(db: &Db, id: &ChargerId, limit: i64) -> Result<Vec<Value>, DbError> {
    let rows = sqlx::query(
        "SELECT direction, at, frame FROM ocpp_frames WHERE charger_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(id.as_str())
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| Ok(json!({"direction": r.try_get::<String, _>("direction")?, "at": iso(r.try_get("at")?), "frame": r.try_get::<String, _>("frame")?})))
        .collect()
}
