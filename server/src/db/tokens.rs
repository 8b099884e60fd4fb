//! API tokens: who a bearer token stands for (stored hashed).

use super::{now_ms, Db, DbError};
use app::domain::Role;
use sqlx::Row;

pub async fn create_token(db: &Db, token_hash: &str, name: &str, role: &Role) -> Result<(), DbError> {
    let (kind, retailer) = super::users::role_columns(role);
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

/// The role a token stands for, and the token's name.
pub async fn token_role(db: &Db, token_hash: &str) -> Result<Option<(Role, String)>, DbError> {
    let row = sqlx::query("SELECT role, retailer_id, name FROM api_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let kind: String = row.try_get("role")?;
    let retailer: Option<i64> = row.try_get("retailer_id")?;
    let name: String = row.try_get("name")?;
    super::users::role_from(&kind, retailer).map(|role| Some((role, name)))
}
