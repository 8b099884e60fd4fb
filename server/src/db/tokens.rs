//! API tokens: who a bearer token stands for (stored hashed).

use super::{now_ms, Db, DbError};
use app::domain::{RetailerId, Role};
use sqlx::Row;

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
