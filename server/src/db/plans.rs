//! Drivers' charge plans (`driver_plans`): stated on the phone, waiting for the next session on a
//! connector or joined to the one running there; their departure and energy are copied onto the
//! session (`transactions`), where the balancer reads them.

use super::balancing::SessionNeeds;
use super::{Db, DbError};
use sqlx::Row;

/// A stored plan and how its session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    pub id: i64,
    pub charger_id: String,
    pub connector_no: i64,
    /// The session it belongs to; `None` while it waits for a car.
    pub transaction_id: Option<i64>,
    /// Whether that session is still running.
    pub session_active: bool,
    pub departure_at_ms: Option<i64>,
    pub energy_need_wh: Option<i64>,
    pub expires_at_ms: i64,
}

/// A plan with its session's state; a `WHERE` on `p` follows.
const SELECT_PLAN: &str = "SELECT p.id, p.charger_id, p.connector_no, p.transaction_id, p.departure_at_ms, \
     p.energy_need_wh, p.expires_at_ms, CAST(CASE WHEN t.status = 'active' THEN 1 ELSE 0 END AS BIGINT) AS session_active \
     FROM driver_plans p LEFT JOIN transactions t ON t.id = p.transaction_id";

fn plan_row(r: &sqlx::any::AnyRow) -> Result<PlanRow, DbError> {
    Ok(PlanRow {
        id: r.try_get("id")?,
        charger_id: r.try_get("charger_id")?,
        connector_no: r.try_get("connector_no")?,
        transaction_id: r.try_get("transaction_id")?,
        session_active: r.try_get::<i64, _>("session_active")? == 1,
        departure_at_ms: r.try_get("departure_at_ms")?,
        energy_need_wh: r.try_get("energy_need_wh")?,
        expires_at_ms: r.try_get("expires_at_ms")?,
    })
}

/// The plan whose token hashes to this.
pub async fn by_token(db: &Db, token_hash: &str) -> Result<Option<PlanRow>, DbError> {
    let sql = format!("{SELECT_PLAN} WHERE p.token_hash = $1");
    let row = sqlx::query(&sql).bind(token_hash).fetch_optional(db.pool()).await?;
    row.as_ref().map(plan_row).transpose()
}

/// The session running on a connector: its id, when it started (UTC ms), and whether a plan
/// belongs to it already.
pub async fn running_session(
    db: &Db,
    charger_id: &str,
    connector_no: i64,
) -> Result<Option<(i64, i64, bool)>, DbError> {
    let row = sqlx::query(
        "SELECT t.id, t.started_at, (SELECT COUNT(*) FROM driver_plans p WHERE p.transaction_id = t.id) AS plans \
         FROM transactions t WHERE t.charger_id = $1 AND t.connector_no = $2 AND t.status = 'active' \
         ORDER BY t.started_at DESC, t.id DESC LIMIT 1",
    )
    .bind(charger_id)
    .bind(connector_no)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| Ok((r.try_get("id")?, r.try_get("started_at")?, r.try_get::<i64, _>("plans")? > 0)))
        .transpose()
}

/// A plan by its id.
pub async fn by_id(db: &Db, plan_id: i64) -> Result<Option<PlanRow>, DbError> {
    let sql = format!("{SELECT_PLAN} WHERE p.id = $1");
    let row = sqlx::query(&sql).bind(plan_id).fetch_optional(db.pool()).await?;
    row.as_ref().map(plan_row).transpose()
}

/// A new plan for a connector: waiting for its next session (`transaction_id` `None`) or joined to
/// the running one. Returns its id, or `None` when that session has a plan already (another phone
/// was first).
#[allow(clippy::too_many_arguments)]
pub async fn insert(
    db: &Db,
    token_hash: &str,
    charger_id: &str,
    connector_no: i64,
    transaction_id: Option<i64>,
    departure_at_ms: Option<i64>,
    energy_need_wh: Option<i64>,
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<Option<i64>, DbError> {
    let id = sqlx::query_scalar(
        "INSERT INTO driver_plans (token_hash, charger_id, connector_no, transaction_id, departure_at_ms, energy_need_wh, \
         created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(token_hash)
    .bind(charger_id)
    .bind(connector_no)
    .bind(transaction_id)
    .bind(departure_at_ms)
    .bind(energy_need_wh)
    .bind(now_ms)
    .bind(expires_at_ms)
    .fetch_optional(db.pool())
    .await?;
    Ok(id)
}

/// A plan just stated to wait on a connector is the one the next car there takes: the others
/// waiting there stop waiting now (their phones show nothing waiting and may state theirs again).
pub async fn supersede_waiting(
    db: &Db,
    charger_id: &str,
    connector_no: i64,
    newest: i64,
    now_ms: i64,
) -> Result<u64, DbError> {
    let done = sqlx::query(
        "UPDATE driver_plans SET expires_at_ms = $4 WHERE charger_id = $1 AND connector_no = $2 AND id <> $3 \
         AND transaction_id IS NULL AND expires_at_ms > $4",
    )
    .bind(charger_id)
    .bind(connector_no)
    .bind(newest)
    .bind(now_ms)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}

/// The owner changed their plan; a waiting one waits from now again.
pub async fn update(
    db: &Db,
    plan_id: i64,
    departure_at_ms: Option<i64>,
    energy_need_wh: Option<i64>,
    expires_at_ms: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE driver_plans SET departure_at_ms = $1, energy_need_wh = $2, expires_at_ms = $3 WHERE id = $4",
    )
    .bind(departure_at_ms)
    .bind(energy_need_wh)
    .bind(expires_at_ms)
    .bind(plan_id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// A session started on a connector: the plan last stated to wait there joins it, and its
/// departure and energy become the session's (its priority is left as it is). Returns the
/// session's needs as they now stand, or `None` when no plan was waiting.
pub async fn join_waiting(
    db: &Db,
    charger_id: &str,
    connector_no: i64,
    transaction_id: i64,
    now_ms: i64,
) -> Result<Option<SessionNeeds>, DbError> {
    let waiting: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM driver_plans WHERE charger_id = $1 AND connector_no = $2 AND transaction_id IS NULL \
         AND expires_at_ms > $3 ORDER BY expires_at_ms DESC, id DESC LIMIT 1",
    )
    .bind(charger_id)
    .bind(connector_no)
    .bind(now_ms)
    .fetch_optional(db.pool())
    .await?;
    let Some(plan) = waiting else { return Ok(None) };
    if !join(db, plan, transaction_id).await? {
        return Ok(None);
    }
    Ok(copy_to_session(db, plan).await?.map(|(needs, _)| needs))
}

/// A waiting plan joins a session, unless another plan has joined it first. Returns whether it did.
pub async fn join(db: &Db, plan_id: i64, transaction_id: i64) -> Result<bool, DbError> {
    let joined = sqlx::query(
        "UPDATE driver_plans SET transaction_id = $1 WHERE id = $2 AND transaction_id IS NULL \
         AND NOT EXISTS (SELECT 1 FROM driver_plans q WHERE q.transaction_id = $1)",
    )
    .bind(transaction_id)
    .bind(plan_id)
    .execute(db.pool())
    .await?;
    Ok(joined.rows_affected() == 1)
}

/// Puts a joined plan's departure and energy on its running session. Returns the session's needs
/// as they now stand and its id, or `None` when it is not running (or the plan waits).
pub async fn copy_to_session(db: &Db, plan_id: i64) -> Result<Option<(SessionNeeds, i64)>, DbError> {
    let row = sqlx::query(
        "UPDATE transactions SET departure_at_ms = (SELECT departure_at_ms FROM driver_plans WHERE id = $1), \
         energy_need_wh = (SELECT energy_need_wh FROM driver_plans WHERE id = $1) \
         WHERE id = (SELECT transaction_id FROM driver_plans WHERE id = $1) AND status = 'active' \
         RETURNING id, departure_at_ms, energy_need_wh, priority",
    )
    .bind(plan_id)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        let needs = SessionNeeds {
            departure_at_ms: r.try_get("departure_at_ms")?,
            energy_need_wh: r.try_get("energy_need_wh")?,
            priority: super::balancing::stored_priority(r.try_get("priority")?),
        };
        Ok((needs, r.try_get("id")?))
    })
    .transpose()
}

/// Forgets plans that waited for a car in vain and expired before `before_ms` (a joined plan is
/// kept with its session: what the driver asked for). Returns how many.
pub async fn forget_unjoined(db: &Db, before_ms: i64) -> Result<u64, DbError> {
    let done = sqlx::query("DELETE FROM driver_plans WHERE transaction_id IS NULL AND expires_at_ms < $1")
        .bind(before_ms)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}
