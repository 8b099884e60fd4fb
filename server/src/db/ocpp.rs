//! What chargers report over OCPP, persisted whole: boots, statuses, transactions, meter values,
//! other notifications and the raw frame log.

use super::{now_ms, Db, DbError};
use app::domain::{ChargerId, SiteId, TransactionId};
use sqlx::Row;

/// A charger's stored identity and credentials, as the OCPP handshake needs them, with the settings
/// of its model (from its last BootNotification) folded in.
#[derive(Debug, Clone)]
pub struct ChargerAuth {
    pub site: SiteId,
    pub password_hash: Option<String>,
    pub registration: String,
    /// The charger's own flag or its model's: values outside the schema are accepted with a warning.
    pub lenient: bool,
    /// Its model sends 1.6 meterStart / meterStop in kWh.
    pub meter_in_kwh: bool,
    /// Its model's energy register restarts at 0 with each transaction.
    pub session_register: bool,
}

pub async fn charger_auth(db: &Db, id: &ChargerId) -> Result<Option<ChargerAuth>, DbError> {
    let row = sqlx::query(
        "SELECT ch.site_id, ch.password_hash, ch.registration, ch.lenient, \
         COALESCE(cm.lenient, 0) AS model_lenient, COALESCE(cm.meter_in_kwh, 0) AS meter_in_kwh, \
         COALESCE(cm.session_register, 0) AS session_register \
         FROM chargers ch LEFT JOIN charger_models cm ON cm.vendor = ch.vendor AND cm.model = ch.model WHERE ch.id = $1",
    )
    .bind(id.as_str())
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(ChargerAuth {
            site: SiteId(r.try_get("site_id")?),
            password_hash: r.try_get("password_hash")?,
            registration: r.try_get("registration")?,
            lenient: r.try_get::<i64, _>("lenient")? != 0 || r.try_get::<i64, _>("model_lenient")? != 0,
            meter_in_kwh: r.try_get::<i64, _>("meter_in_kwh")? != 0,
            session_register: r.try_get::<i64, _>("session_register")? != 0,
        })
    })
    .transpose()
}

/// OCPP settings for one charger model (vendor and model as its BootNotification names them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSettings {
    pub vendor: String,
    pub model: String,
    pub lenient: bool,
    pub meter_in_kwh: bool,
    pub session_register: bool,
    pub note: String,
}

pub async fn model_settings(db: &Db) -> Result<Vec<ModelSettings>, DbError> {
    let rows = sqlx::query("SELECT vendor, model, lenient, meter_in_kwh, session_register, note FROM charger_models ORDER BY vendor, model").fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| {
            Ok(ModelSettings {
                vendor: r.try_get("vendor")?,
                model: r.try_get("model")?,
                lenient: r.try_get::<i64, _>("lenient")? != 0,
                meter_in_kwh: r.try_get::<i64, _>("meter_in_kwh")? != 0,
                session_register: r.try_get::<i64, _>("session_register")? != 0,
                note: r.try_get("note")?,
            })
        })
        .collect()
}

/// Creates or replaces a model's settings; chargers of that model pick them up at their next boot.
pub async fn put_model_settings(db: &Db, settings: &ModelSettings) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO charger_models (vendor, model, lenient, meter_in_kwh, session_register, note, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (vendor, model) DO UPDATE SET lenient = excluded.lenient, meter_in_kwh = excluded.meter_in_kwh, \
         session_register = excluded.session_register, note = excluded.note, updated_at = excluded.updated_at",
    )
    .bind(&settings.vendor)
    .bind(&settings.model)
    .bind(i64::from(settings.lenient))
    .bind(i64::from(settings.meter_in_kwh))
    .bind(i64::from(settings.session_register))
    .bind(&settings.note)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The site unknown chargers are attached to, if any site allows it.
pub async fn auto_register_site(db: &Db) -> Result<Option<SiteId>, DbError> {
    let row = sqlx::query("SELECT id FROM sites WHERE auto_register = 1 ORDER BY id LIMIT 1")
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|r| r.try_get("id")).transpose()?.map(SiteId))
}

/// Site flags the OCPP handlers need.
pub async fn site_free_vend(db: &Db, site: SiteId) -> Result<bool, DbError> {
    let row =
        sqlx::query("SELECT free_vend FROM sites WHERE id = $1").bind(site.0).fetch_one(db.pool()).await?;
    Ok(row.try_get::<i64, _>("free_vend")? != 0)
}

/// Boot details as reported.
#[derive(Debug, Clone, Default)]
pub struct BootInfo {
    pub vendor: String,
    pub model: String,
    pub serial: Option<String>,
    pub firmware: Option<String>,
    pub iccid: Option<String>,
    pub imsi: Option<String>,
    pub meter_type: Option<String>,
    pub meter_serial: Option<String>,
}

pub async fn record_boot(
    db: &Db,
    id: &ChargerId,
    version: &str,
    info: &BootInfo,
    payload: &str,
) -> Result<(), DbError> {
    let now = now_ms();
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "UPDATE chargers SET vendor = $2, model = $3, serial = $4, firmware = $5, iccid = $6, imsi = $7, meter_type = $8, \
         meter_serial = $9, ocpp_version = $10, booted_at = $11, online = 1, last_seen_at = $11, offline_since = NULL WHERE id = $1",
    )
    .bind(id.as_str())
    .bind(&info.vendor)
    .bind(&info.model)
    .bind(&info.serial)
    .bind(&info.firmware)
    .bind(&info.iccid)
    .bind(&info.imsi)
    .bind(&info.meter_type)
    .bind(&info.meter_serial)
    .bind(version)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO charger_boots (charger_id, received_at, ocpp_version, payload) VALUES ($1, $2, $3, $4)",
    )
    .bind(id.as_str())
    .bind(now)
    .bind(version)
    .bind(payload)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Creates an unknown charger on an auto-registering site (trust on first use of its password).
pub async fn auto_register(
    db: &Db,
    id: &ChargerId,
    site: SiteId,
    password_hash: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO chargers (id, site_id, password_hash, registration, created_at) VALUES ($1, $2, $3, 'accepted', $4) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id.as_str())
    .bind(site.0)
    .bind(password_hash)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    // `false`: another connection registered it first.
    Ok(done.rows_affected() == 1)
}

pub async fn set_online(db: &Db, id: &ChargerId, version: &str, online: bool) -> Result<(), DbError> {
    let now = now_ms();
    let sql = if online {
        "UPDATE chargers SET online = 1, ocpp_version = $2, last_seen_at = $3, offline_since = NULL WHERE id = $1"
    } else {
        "UPDATE chargers SET online = 0, ocpp_version = $2, offline_since = $3 WHERE id = $1"
    };
    sqlx::query(sql).bind(id.as_str()).bind(version).bind(now).execute(db.pool()).await?;
    Ok(())
}

pub async fn touch(db: &Db, id: &ChargerId) -> Result<(), DbError> {
    sqlx::query("UPDATE chargers SET last_seen_at = $2 WHERE id = $1")
        .bind(id.as_str())
        .bind(now_ms())
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Chargers left marked online by a previous process (a crash): offline until they reconnect.
pub async fn mark_all_offline(db: &Db) -> Result<u64, DbError> {
    let done = sqlx::query("UPDATE chargers SET online = 0, offline_since = $1 WHERE online = 1")
        .bind(now_ms())
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}

/// A connector's (or, for 0, the whole charger's) status change.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub connector_no: i64,
    pub status: String,
    pub error_code: String,
    pub info: String,
    pub charger_time: Option<i64>,
}

pub async fn record_status(db: &Db, id: &ChargerId, change: &StatusChange) -> Result<(), DbError> {
    let now = now_ms();
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO connector_status_events (charger_id, connector_no, status, error_code, info, charger_time, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.as_str())
    .bind(change.connector_no)
    .bind(&change.status)
    .bind(&change.error_code)
    .bind(&change.info)
    .bind(change.charger_time)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if change.connector_no > 0 {
        // A connector we were not told about is recorded with conservative ratings (one phase, 16 A).
        sqlx::query(
            "INSERT INTO connectors (charger_id, connector_no, max_current_a, phases, max_power_w, status, status_at, presence_code) \
             VALUES ($1, $2, 16, 1, 3680, $3, $4, $5) \
             ON CONFLICT (charger_id, connector_no) DO UPDATE SET status = excluded.status, status_at = excluded.status_at",
        )
        .bind(id.as_str())
        .bind(change.connector_no)
        .bind(&change.status)
        .bind(now)
        .bind(super::catalog::new_presence_code().as_str())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// How an id token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStanding {
    Accepted,
    Blocked,
    Expired,
    Unknown,
}

pub async fn token_standing(db: &Db, token: &str, now: i64) -> Result<TokenStanding, DbError> {
    let row = sqlx::query("SELECT status, expires_at FROM id_tokens WHERE lower(token) = lower($1)")
        .bind(token)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else { return Ok(TokenStanding::Unknown) };
    let status: String = row.try_get("status")?;
    let expires: Option<i64> = row.try_get("expires_at")?;
    Ok(match status.as_str() {
        "blocked" => TokenStanding::Blocked,
        _ if expires.is_some_and(|e| e <= now) => TokenStanding::Expired,
        _ => TokenStanding::Accepted,
    })
}

pub async fn create_token(
    db: &Db,
    token: &str,
    blocked: bool,
    expires_at: Option<i64>,
    note: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO id_tokens (token, status, expires_at, note, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token)
    .bind(if blocked { "blocked" } else { "accepted" })
    .bind(expires_at)
    .bind(note)
    .bind(now_ms())
    .execute(db.pool())
    .await
    .map_err(super::conflict_as(format!("id token {token}")))?;
    Ok(())
}

/// The start of a transaction as a charger reports it.
#[derive(Debug, Clone)]
pub struct TxStart {
    pub connector_no: i64,
    pub id_tag: String,
    /// Our best UTC time for the start (the charger's, unless it was unusable).
    pub started_at: i64,
    /// The charger's own timestamp text, kept as sent.
    pub started_at_charger: String,
    pub meter_start_wh: Option<i64>,
}

/// Records a 1.6 StartTransaction. A replay of the same start returns the same transaction.
pub async fn start_transaction_v16(
    db: &Db,
    id: &ChargerId,
    start: &TxStart,
) -> Result<(TransactionId, bool), DbError> {
    let find = |db: Db, id: ChargerId, start: TxStart| async move {
        let row = sqlx::query(
            "SELECT id FROM transactions WHERE charger_id = $1 AND connector_no = $2 AND id_tag = $3 \
             AND started_at_charger = $4 AND meter_start_wh = $5",
        )
        .bind(id.as_str())
        .bind(start.connector_no)
        .bind(&start.id_tag)
        .bind(&start.started_at_charger)
        .bind(start.meter_start_wh)
        .fetch_optional(db.pool())
        .await?;
        Ok::<_, DbError>(row.map(|r| r.try_get::<i64, _>("id")).transpose()?.map(TransactionId))
    };
    if let Some(existing) = find(db.clone(), id.clone(), start.clone()).await? {
        return Ok((existing, false));
    }
    let placeholder = format!("new:{}", crate::auth::new_token());
    let inserted = sqlx::query(
        "INSERT INTO transactions (charger_id, connector_no, ocpp_tx_id, id_tag, status, started_at, started_at_charger, \
         start_received_at, meter_start_wh) VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8) RETURNING id",
    )
    .bind(id.as_str())
    .bind(start.connector_no)
    .bind(&placeholder)
    .bind(&start.id_tag)
    .bind(start.started_at)
    .bind(&start.started_at_charger)
    .bind(now_ms())
    .bind(start.meter_start_wh)
    .fetch_one(db.pool())
    .await;
    let tx_id = match inserted {
        Ok(row) => TransactionId(row.try_get("id")?),
        // Two copies racing: the other one won; answer with its id.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return find(db.clone(), id.clone(), start.clone())
                .await?
                .map(|t| (t, false))
                .ok_or_else(|| DbError::Corrupt("replayed start vanished".into()));
        }
        Err(e) => return Err(e.into()),
    };
    // In 1.6 the central system assigns the transaction id: ours is the row id.
    sqlx::query("UPDATE transactions SET ocpp_tx_id = $2 WHERE id = $1")
        .bind(tx_id.0)
        .bind(tx_id.0.to_string())
        .execute(db.pool())
        .await?;
    close_superseded(db, id, start.connector_no, tx_id).await?;
    Ok((tx_id, true))
}

/// The end of a transaction as a charger reports it.
#[derive(Debug, Clone)]
pub struct TxStop {
    pub stopped_at: i64,
    pub stopped_at_charger: String,
    pub meter_stop_wh: Option<i64>,
    pub reason: Option<String>,
    pub id_tag: Option<String>,
}

/// Closes a transaction by the charger's transaction id; one we never saw is recorded as such
/// (so the charger's queue drains). Returns our id and whether the start had been seen.
pub async fn stop_transaction(
    db: &Db,
    id: &ChargerId,
    ocpp_tx_id: &str,
    connector_no: i64,
    stop: &TxStop,
) -> Result<(TransactionId, bool), DbError> {
    let existing = find_transaction(db, id, ocpp_tx_id).await?;
    if let Some(tx_id) = existing {
        sqlx::query(
            "UPDATE transactions SET status = 'completed', stopped_at = $2, stopped_at_charger = $3, stop_received_at = $4, \
             meter_stop_wh = $5, stop_reason = $6 WHERE id = $1 AND status <> 'completed'",
        )
        .bind(tx_id.0)
        .bind(stop.stopped_at)
        .bind(&stop.stopped_at_charger)
        .bind(now_ms())
        .bind(stop.meter_stop_wh)
        .bind(&stop.reason)
        .execute(db.pool())
        .await?;
        return Ok((tx_id, true));
    }
    let row = sqlx::query(
        "INSERT INTO transactions (charger_id, connector_no, ocpp_tx_id, id_tag, status, started_at, start_received_at, \
         stopped_at, stopped_at_charger, stop_received_at, meter_stop_wh, stop_reason, start_unseen) \
         VALUES ($1, $2, $3, $4, 'completed', $5, $6, $5, $7, $6, $8, $9, 1) RETURNING id",
    )
    .bind(id.as_str())
    .bind(connector_no)
    .bind(ocpp_tx_id)
    .bind(stop.id_tag.clone().unwrap_or_default())
    .bind(stop.stopped_at)
    .bind(now_ms())
    .bind(&stop.stopped_at_charger)
    .bind(stop.meter_stop_wh)
    .bind(&stop.reason)
    .fetch_one(db.pool())
    .await?;
    Ok((TransactionId(row.try_get("id")?), false))
}

/// A connector runs one transaction at a time: a new start means any older one still open there
/// ended without a StopTransaction reaching us. It is closed, recorded as such.
async fn close_superseded(
    db: &Db,
    id: &ChargerId,
    connector_no: i64,
    newer: TransactionId,
) -> Result<(), DbError> {
    let done = sqlx::query(
        "UPDATE transactions SET status = 'ghost_closed', stop_reason = 'SupersededByNewTransaction', stop_received_at = $4 \
         WHERE charger_id = $1 AND connector_no = $2 AND status = 'active' AND id < $3",
    )
    .bind(id.as_str())
    .bind(connector_no)
    .bind(newer.0)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    if done.rows_affected() > 0 {
        tracing::warn!(charger.id = %id, connector = connector_no, closed = done.rows_affected(), "new transaction on a connector with an open one: closed the older");
    }
    Ok(())
}

pub async fn find_transaction(
    db: &Db,
    id: &ChargerId,
    ocpp_tx_id: &str,
) -> Result<Option<TransactionId>, DbError> {
    let row = sqlx::query("SELECT id FROM transactions WHERE charger_id = $1 AND ocpp_tx_id = $2")
        .bind(id.as_str())
        .bind(ocpp_tx_id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|r| r.try_get("id")).transpose()?.map(TransactionId))
}

/// Creates (or finds) a 2.0.1 transaction by the station's id.
/// Creates a 2.0.1 transaction at its first event (whichever arrives first), and returns it with its
/// connector: later events need not name their EVSE, and one that does fills in a connector still
/// unknown.
pub async fn upsert_transaction_v201(
    db: &Db,
    id: &ChargerId,
    ocpp_tx_id: &str,
    start: &TxStart,
    start_seen: bool,
) -> Result<(TransactionId, i64), DbError> {
    sqlx::query(
        "INSERT INTO transactions (charger_id, connector_no, ocpp_tx_id, id_tag, status, started_at, started_at_charger, \
         start_received_at, meter_start_wh, start_unseen) VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9) \
         ON CONFLICT (charger_id, ocpp_tx_id) DO NOTHING",
    )
    .bind(id.as_str())
    .bind(start.connector_no)
    .bind(ocpp_tx_id)
    .bind(&start.id_tag)
    .bind(start.started_at)
    .bind(&start.started_at_charger)
    .bind(now_ms())
    .bind(start.meter_start_wh)
    .bind(i64::from(!start_seen))
    .execute(db.pool())
    .await?;
    let row =
        sqlx::query("SELECT id, connector_no FROM transactions WHERE charger_id = $1 AND ocpp_tx_id = $2")
            .bind(id.as_str())
            .bind(ocpp_tx_id)
            .fetch_optional(db.pool())
            .await?
            .ok_or_else(|| DbError::Corrupt("upserted transaction vanished".into()))?;
    let tx = TransactionId(row.try_get("id")?);
    let mut connector_no: i64 = row.try_get("connector_no")?;
    if connector_no == 0 && start.connector_no > 0 {
        sqlx::query("UPDATE transactions SET connector_no = $2 WHERE id = $1")
            .bind(tx.0)
            .bind(start.connector_no)
            .execute(db.pool())
            .await?;
        connector_no = start.connector_no;
    }
    if start_seen && start.connector_no > 0 {
        close_superseded(db, id, start.connector_no, tx).await?;
    }
    Ok((tx, connector_no))
}

/// Fills in what a later event taught us (the token, the meter start) without overwriting.
pub async fn enrich_transaction(
    db: &Db,
    tx: TransactionId,
    id_tag: Option<&str>,
    meter_start_wh: Option<i64>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE transactions SET id_tag = CASE WHEN id_tag = '' THEN COALESCE($2, '') ELSE id_tag END, \
         meter_start_wh = COALESCE(meter_start_wh, $3) WHERE id = $1",
    )
    .bind(tx.0)
    .bind(id_tag)
    .bind(meter_start_wh)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Records a 2.0.1 TransactionEvent's sequence number. Returns `None` for a duplicate, else the
/// previous highest sequence number (to detect gaps).
pub async fn record_tx_event(
    db: &Db,
    tx: TransactionId,
    seq_no: i64,
    event_type: &str,
    trigger: &str,
    offline: bool,
    charger_time: &str,
) -> Result<Option<Option<i64>>, DbError> {
    let inserted = sqlx::query(
        "INSERT INTO transaction_events (transaction_id, seq_no, event_type, trigger_reason, offline, charger_time, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (transaction_id, seq_no) DO NOTHING",
    )
    .bind(tx.0)
    .bind(seq_no)
    .bind(event_type)
    .bind(trigger)
    .bind(i64::from(offline))
    .bind(charger_time)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(None);
    }
    let row = sqlx::query("SELECT last_seq_no FROM transactions WHERE id = $1")
        .bind(tx.0)
        .fetch_one(db.pool())
        .await?;
    let previous: Option<i64> = row.try_get("last_seq_no")?;
    sqlx::query("UPDATE transactions SET last_seq_no = $2 WHERE id = $1 AND (last_seq_no IS NULL OR last_seq_no < $2)")
        .bind(tx.0)
        .bind(seq_no)
        .execute(db.pool())
        .await?;
    Ok(Some(previous))
}

/// One sampled value, normalised.
#[derive(Debug, Clone)]
pub struct Sample {
    pub sampled_at: i64,
    pub charger_time: String,
    pub measurand: String,
    pub phase: String,
    pub context: String,
    pub location: String,
    pub unit: String,
    pub raw_value: String,
    pub value_milli: Option<i64>,
}

/// Stores samples; a replayed sample (same time, measurand, phase, context, location) is kept once.
pub async fn record_samples(
    db: &Db,
    id: &ChargerId,
    connector_no: i64,
    tx: Option<TransactionId>,
    samples: &[Sample],
) -> Result<u64, DbError> {
    let now = now_ms();
    let mut stored = 0;
    let mut conn = db.pool().begin().await?;
    for s in samples {
        let done = sqlx::query(
            "INSERT INTO meter_values (charger_id, connector_no, transaction_id, sampled_at, charger_time, received_at, measurand, \
             phase, context, location, unit, raw_value, value_milli) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (charger_id, connector_no, charger_time, measurand, phase, context, location) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(connector_no)
        .bind(tx.map(|t| t.0))
        .bind(s.sampled_at)
        .bind(&s.charger_time)
        .bind(now)
        .bind(&s.measurand)
        .bind(&s.phase)
        .bind(&s.context)
        .bind(&s.location)
        .bind(&s.unit)
        .bind(&s.raw_value)
        .bind(s.value_milli)
        .execute(&mut *conn)
        .await?;
        stored += done.rows_affected();
    }
    conn.commit().await?;
    Ok(stored)
}

/// Notifications kept as sent (firmware, diagnostics, logs, security events, reports, EV needs…).
pub async fn record_event(
    db: &Db,
    id: &ChargerId,
    kind: &str,
    status: &str,
    payload: &str,
) -> Result<(), DbError> {
    sqlx::query("INSERT INTO charger_events (charger_id, kind, status, payload, received_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(id.as_str())
        .bind(kind)
        .bind(status)
        .bind(payload)
        .bind(now_ms())
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn log_frame(db: &Db, id: &ChargerId, inbound: bool, frame: &str) -> Result<(), DbError> {
    sqlx::query("INSERT INTO ocpp_frames (charger_id, direction, at, frame) VALUES ($1, $2, $3, $4)")
        .bind(id.as_str())
        .bind(if inbound { "in" } else { "out" })
        .bind(now_ms())
        .bind(frame)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn purge_frames_before(db: &Db, cutoff_ms: i64) -> Result<u64, DbError> {
    Ok(sqlx::query("DELETE FROM ocpp_frames WHERE at < $1")
        .bind(cutoff_ms)
        .execute(db.pool())
        .await?
        .rows_affected())
}

/// Closes transactions whose connector has reported Available for longer than the grace period:
/// the charger forgot them (a "ghost session"). Returns how many were closed.
pub async fn close_ghost_sessions(db: &Db, available_before_ms: i64) -> Result<u64, DbError> {
    let done = sqlx::query(
        "UPDATE transactions SET status = 'ghost_closed', stop_reason = 'GhostSession', stop_received_at = $2, \
         stopped_at = (SELECT c.status_at FROM connectors c WHERE c.charger_id = transactions.charger_id AND c.connector_no = transactions.connector_no) \
         WHERE status = 'active' AND EXISTS (SELECT 1 FROM connectors c WHERE c.charger_id = transactions.charger_id \
         AND c.connector_no = transactions.connector_no AND c.status = 'Available' AND c.status_at < $1 AND c.status_at > transactions.started_at)",
    )
    .bind(available_before_ms)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}

/// An unknown charger waiting for an operator's decision.
#[derive(Debug, Clone)]
pub struct ChargerRequest {
    pub charger_id: String,
    pub password_hash: String,
    pub status: String,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub ocpp_version: Option<String>,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
}

fn request_from(r: &sqlx::any::AnyRow) -> Result<ChargerRequest, DbError> {
    Ok(ChargerRequest {
        charger_id: r.try_get("charger_id")?,
        password_hash: r.try_get("password_hash")?,
        status: r.try_get("status")?,
        vendor: r.try_get("vendor")?,
        model: r.try_get("model")?,
        ocpp_version: r.try_get("ocpp_version")?,
        first_seen_at: r.try_get("first_seen_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
    })
}

const REQUEST_COLUMNS: &str =
    "charger_id, password_hash, status, vendor, model, ocpp_version, first_seen_at, last_seen_at";

pub async fn charger_request(db: &Db, id: &ChargerId) -> Result<Option<ChargerRequest>, DbError> {
    let row = sqlx::query(&format!("SELECT {REQUEST_COLUMNS} FROM charger_requests WHERE charger_id = $1"))
        .bind(id.as_str())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(request_from).transpose()
}

/// How many unknown chargers wait for an operator now.
pub async fn pending_request_count(db: &Db) -> Result<u64, DbError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM charger_requests WHERE status = 'pending'")
        .fetch_one(db.pool())
        .await?;
    Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
}

pub async fn charger_requests(db: &Db) -> Result<Vec<ChargerRequest>, DbError> {
    let rows = sqlx::query(&format!("SELECT {REQUEST_COLUMNS} FROM charger_requests ORDER BY first_seen_at"))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(request_from).collect()
}

/// Records (or refreshes) a pending request; the first password presented is the one kept.
/// A first request from an unknown charger (`false`: there was one already, made by another
/// connection a moment ago, whose password stands).
pub async fn create_charger_request(
    db: &Db,
    id: &ChargerId,
    password_hash: &str,
    version: &str,
) -> Result<bool, DbError> {
    let now = now_ms();
    let done = sqlx::query(
        "INSERT INTO charger_requests (charger_id, password_hash, status, ocpp_version, first_seen_at, last_seen_at) \
         VALUES ($1, $2, 'pending', $3, $4, $4) ON CONFLICT (charger_id) DO NOTHING",
    )
    .bind(id.as_str())
    .bind(password_hash)
    .bind(version)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A waiting charger came back: when, and speaking which version.
pub async fn touch_charger_request(db: &Db, id: &ChargerId, version: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE charger_requests SET last_seen_at = $1, ocpp_version = $2 WHERE charger_id = $3")
        .bind(now_ms())
        .bind(version)
        .bind(id.as_str())
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn note_request_boot(db: &Db, id: &ChargerId, vendor: &str, model: &str) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE charger_requests SET vendor = $2, model = $3, last_seen_at = $4 WHERE charger_id = $1",
    )
    .bind(id.as_str())
    .bind(vendor)
    .bind(model)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Accepts a pending charger onto a site: it becomes a charger with the password it presented.
pub async fn accept_charger_request(db: &Db, id: &ChargerId, site: SiteId) -> Result<bool, DbError> {
    let Some(request) = charger_request(db, id).await? else { return Ok(false) };
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO chargers (id, site_id, password_hash, registration, vendor, model, ocpp_version, created_at) \
         VALUES ($1, $2, $3, 'accepted', $4, $5, $6, $7)",
    )
    .bind(id.as_str())
    .bind(site.0)
    .bind(&request.password_hash)
    .bind(&request.vendor)
    .bind(&request.model)
    .bind(&request.ocpp_version)
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .map_err(super::conflict_as(format!("charger {id}")))?;
    sqlx::query("DELETE FROM charger_requests WHERE charger_id = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn reject_charger_request(db: &Db, id: &ChargerId) -> Result<bool, DbError> {
    let done = sqlx::query("UPDATE charger_requests SET status = 'rejected' WHERE charger_id = $1")
        .bind(id.as_str())
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn site_exists(db: &Db, site: SiteId) -> Result<bool, DbError> {
    Ok(sqlx::query("SELECT id FROM sites WHERE id = $1")
        .bind(site.0)
        .fetch_optional(db.pool())
        .await?
        .is_some())
}
