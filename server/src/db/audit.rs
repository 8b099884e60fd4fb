//! The audit log: every change an operator or a retailer made, appended, never edited (the
//! database's triggers refuse an UPDATE or a DELETE).

use super::{Db, DbError};
use app::domain::{RetailerId, Tenant};
use sqlx::Row;

/// One change, as it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    /// UTC milliseconds.
    pub at: i64,
    /// An email, or `token:<name>` for an API token.
    pub actor: String,
    pub actor_role: String,
    /// The retailer whose data changed (`None`: the network's own).
    pub retailer_id: Option<i64>,
    /// What was done, as a stable name (`session.needs`, `user.create`, …).
    pub action: String,
    /// What it was done to (`session 42`, `charger CP-1`, …).
    pub subject: String,
    /// The change's details (JSON text).
    pub detail: String,
    /// The address the request came from.
    pub source: String,
}

/// A change about to be recorded.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub at: i64,
    pub actor: &'a str,
    pub actor_role: &'a str,
    pub retailer: Option<RetailerId>,
    pub action: &'a str,
    pub subject: String,
    pub detail: String,
    pub source: &'a str,
}

pub async fn append(db: &Db, entry: &NewEntry<'_>) -> Result<i64, DbError> {
    let row = sqlx::query(
        "INSERT INTO audit_log (at, actor, actor_role, retailer_id, action, subject, detail, source) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(entry.at)
    .bind(entry.actor)
    .bind(entry.actor_role)
    .bind(entry.retailer.map(|r| r.0))
    .bind(entry.action)
    .bind(&entry.subject)
    .bind(&entry.detail)
    .bind(entry.source)
    .fetch_one(db.pool())
    .await?;
    Ok(row.try_get("id")?)
}

/// The newest entries first, up to `limit`, before the entry `before` (paging); a retailer's scope
/// holds only changes to that retailer's data, the network's scope holds every entry.
pub async fn list(
    db: &Db,
    scope: Tenant,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntry>, DbError> {
    const COLUMNS: &str =
        "SELECT id, at, actor, actor_role, retailer_id, action, subject, detail, source FROM audit_log";
    let before = before.unwrap_or(i64::MAX);
    let rows = match scope {
        Tenant::Network => {
            sqlx::query(&format!("{COLUMNS} WHERE id < $1 ORDER BY id DESC LIMIT $2"))
                .bind(before)
                .bind(limit)
                .fetch_all(db.pool())
                .await?
        }
        Tenant::Retailer(r) => {
            sqlx::query(&format!("{COLUMNS} WHERE retailer_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"))
                .bind(r.0)
                .bind(before)
                .bind(limit)
                .fetch_all(db.pool())
                .await?
        }
    };
    rows.iter()
        .map(|row| {
            Ok(AuditEntry {
                id: row.try_get("id")?,
                at: row.try_get("at")?,
                actor: row.try_get("actor")?,
                actor_role: row.try_get("actor_role")?,
                retailer_id: row.try_get("retailer_id")?,
                action: row.try_get("action")?,
                subject: row.try_get("subject")?,
                detail: row.try_get("detail")?,
                source: row.try_get("source")?,
            })
        })
        .collect()
}
