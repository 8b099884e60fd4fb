//! Operator and retailer accounts, and their sign-in sessions.

use super::{conflict_as, now_ms, Db, DbError};
use app::domain::{RetailerId, Role, UserId};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
}

fn role_columns(role: &Role) -> (&'static str, Option<i64>) {
    match role {
        Role::Operator => ("operator", None),
        Role::Retailer(r) => ("retailer", Some(r.0)),
    }
}

fn role_from(kind: &str, retailer: Option<i64>) -> Result<Role, DbError> {
    match (kind, retailer) {
        ("operator", None) => Ok(Role::Operator),
        ("retailer", Some(id)) => Ok(Role::Retailer(RetailerId(id))),
        _ => Err(DbError::Corrupt(format!("user role {kind:?} with retailer {retailer:?}"))),
    }
}

fn user_from(row: &sqlx::any::AnyRow) -> Result<User, DbError> {
    Ok(User {
        id: UserId(row.try_get("id")?),
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        role: role_from(row.try_get::<String, _>("role")?.as_str(), row.try_get("retailer_id")?)?,
    })
}

/// Emails compare case-insensitively.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub async fn create(db: &Db, email: &str, password_hash: &str, role: &Role) -> Result<UserId, DbError> {
    let (kind, retailer) = role_columns(role);
    let email = normalise_email(email);
    let row = sqlx::query(
        "INSERT INTO users (email, password_hash, role, retailer_id, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&email)
    .bind(password_hash)
    .bind(kind)
    .bind(retailer)
    .bind(now_ms())
    .fetch_one(db.pool())
    .await
    .map_err(conflict_as(format!("a user with email {email}")))?;
    Ok(UserId(row.try_get("id")?))
}

pub async fn find_by_email(db: &Db, email: &str) -> Result<Option<User>, DbError> {
    let row = sqlx::query("SELECT id, email, password_hash, role, retailer_id FROM users WHERE email = $1")
        .bind(normalise_email(email))
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(user_from).transpose()
}

pub async fn count(db: &Db) -> Result<i64, DbError> {
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(db.pool()).await?.try_get("n")?)
}

/// Stores a sign-in session by the hash of its token; the token itself is never stored.
pub async fn create_session(
    db: &Db,
    token_hash: &str,
    user: UserId,
    expires_at_ms: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO auth_sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash)
    .bind(user.0)
    .bind(now_ms())
    .bind(expires_at_ms)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The user behind an unexpired session.
pub async fn session_user(db: &Db, token_hash: &str, now_ms: i64) -> Result<Option<User>, DbError> {
    let row = sqlx::query(
        "SELECT u.id, u.email, u.password_hash, u.role, u.retailer_id FROM auth_sessions s \
         JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2",
    )
    .bind(token_hash)
    .bind(now_ms)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(user_from).transpose()
}

pub async fn delete_session(db: &Db, token_hash: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM auth_sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Forgets sign-ins that have expired (they no longer let anyone in; kept, they only pile up).
pub async fn forget_expired_sessions(db: &Db, now_ms: i64) -> Result<u64, DbError> {
    let done = sqlx::query("DELETE FROM auth_sessions WHERE expires_at <= $1")
        .bind(now_ms)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}
