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

/// A role as its two columns (kind, retailer).
pub(crate) fn role_columns(role: &Role) -> (&'static str, Option<i64>) {
    (role.kind(), role.retailer().map(|r| r.0))
}

pub(crate) fn role_from(kind: &str, retailer: Option<i64>) -> Result<Role, DbError> {
    Role::from_kind(kind, retailer.map(RetailerId))
        .ok_or_else(|| DbError::Corrupt(format!("role {kind:?} with retailer {retailer:?}")))
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

/// How long a sign-in lasts: `absolute_ms` at most, and no longer than `idle_ms` between uses.
#[derive(Debug, Clone, Copy)]
pub struct SessionLife {
    pub absolute_ms: i64,
    pub idle_ms: i64,
}

/// Stores a sign-in session by the hash of its token; the token itself is never stored.
pub async fn create_session(
    db: &Db,
    token_hash: &str,
    user: UserId,
    expires_at_ms: i64,
) -> Result<(), DbError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO auth_sessions (token_hash, user_id, created_at, expires_at, last_seen_at) VALUES ($1, $2, $3, $4, $3)",
    )
    .bind(token_hash)
    .bind(user.0)
    .bind(now)
    .bind(expires_at_ms)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The user behind a live session (not past its end, not idle too long), which this use keeps
/// alive. Its last use is written at most once a minute, not on every request.
pub async fn session_user(
    db: &Db,
    token_hash: &str,
    now_ms: i64,
    idle_ms: i64,
) -> Result<Option<User>, DbError> {
    let row = sqlx::query(
        "SELECT u.id, u.email, u.password_hash, u.role, u.retailer_id, s.last_seen_at FROM auth_sessions s \
         JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3",
    )
    .bind(token_hash)
    .bind(now_ms)
    .bind(now_ms - idle_ms)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let last_seen: i64 = row.try_get("last_seen_at")?;
    if now_ms - last_seen > 60_000 {
        sqlx::query("UPDATE auth_sessions SET last_seen_at = $1 WHERE token_hash = $2")
            .bind(now_ms)
            .bind(token_hash)
            .execute(db.pool())
            .await?;
    }
    user_from(&row).map(Some)
}

pub async fn delete_session(db: &Db, token_hash: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM auth_sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Ends every sign-in of a user (signing out everywhere, a changed password, a removed account).
pub async fn delete_user_sessions(db: &Db, user: UserId) -> Result<u64, DbError> {
    let done =
        sqlx::query("DELETE FROM auth_sessions WHERE user_id = $1").bind(user.0).execute(db.pool()).await?;
    Ok(done.rows_affected())
}

/// Forgets sign-ins that are over, by their end or by idling (they no longer let anyone in; kept,
/// they only pile up).
pub async fn forget_expired_sessions(db: &Db, now_ms: i64, idle_ms: i64) -> Result<u64, DbError> {
    let done = sqlx::query("DELETE FROM auth_sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
        .bind(now_ms)
        .bind(now_ms - idle_ms)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}

/// A user as the people who manage users see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub id: UserId,
    pub email: String,
    pub role: Role,
    pub created_at: i64,
    /// Whether a password is set (an invited user has none until they follow their link).
    pub has_password: bool,
}

/// What an invited user's password hash is until they set one: no password verifies against it.
pub const NO_PASSWORD: &str = "!";

fn summary_from(row: &sqlx::any::AnyRow) -> Result<UserSummary, DbError> {
    let hash: String = row.try_get("password_hash")?;
    Ok(UserSummary {
        id: UserId(row.try_get("id")?),
        email: row.try_get("email")?,
        role: role_from(row.try_get::<String, _>("role")?.as_str(), row.try_get("retailer_id")?)?,
        created_at: row.try_get("created_at")?,
        has_password: hash != NO_PASSWORD,
    })
}

const SUMMARY_COLUMNS: &str = "SELECT id, email, password_hash, role, retailer_id, created_at FROM users";

/// Operators' accounts (`None`) or one retailer's, oldest first.
pub(crate) async fn list_in(db: &Db, retailer: Option<RetailerId>) -> Result<Vec<UserSummary>, DbError> {
    let rows = match retailer {
        None => {
            sqlx::query(&format!("{SUMMARY_COLUMNS} WHERE retailer_id IS NULL ORDER BY id"))
                .fetch_all(db.pool())
                .await?
        }
        Some(r) => {
            sqlx::query(&format!("{SUMMARY_COLUMNS} WHERE retailer_id = $1 ORDER BY id"))
                .bind(r.0)
                .fetch_all(db.pool())
                .await?
        }
    };
    rows.iter().map(summary_from).collect()
}

/// Every account, oldest first (an operator admin's view).
pub(crate) async fn list_all(db: &Db) -> Result<Vec<UserSummary>, DbError> {
    let rows = sqlx::query(&format!("{SUMMARY_COLUMNS} ORDER BY id")).fetch_all(db.pool()).await?;
    rows.iter().map(summary_from).collect()
}

pub(crate) async fn summary(db: &Db, id: UserId) -> Result<Option<UserSummary>, DbError> {
    let row =
        sqlx::query(&format!("{SUMMARY_COLUMNS} WHERE id = $1")).bind(id.0).fetch_optional(db.pool()).await?;
    row.as_ref().map(summary_from).transpose()
}

/// Removes an account; its sessions and links go with it.
pub(crate) async fn delete(db: &Db, id: UserId) -> Result<bool, DbError> {
    let done = sqlx::query("DELETE FROM users WHERE id = $1").bind(id.0).execute(db.pool()).await?;
    Ok(done.rows_affected() == 1)
}

pub async fn password_hash_of(db: &Db, id: UserId) -> Result<Option<String>, DbError> {
    let row = sqlx::query("SELECT password_hash FROM users WHERE id = $1")
        .bind(id.0)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|r| r.try_get::<String, _>("password_hash")).transpose()?)
}

/// Ends every sign-in of a user but one (the one changing the password).
pub async fn delete_other_sessions(db: &Db, user: UserId, keep_token_hash: &str) -> Result<u64, DbError> {
    let done = sqlx::query("DELETE FROM auth_sessions WHERE user_id = $1 AND token_hash <> $2")
        .bind(user.0)
        .bind(keep_token_hash)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}

pub async fn set_password_hash(db: &Db, id: UserId, password_hash: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(password_hash)
        .bind(id.0)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Why a one-use link was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    Invite,
    Reset,
}

impl LinkPurpose {
    fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::Invite => "invite",
            LinkPurpose::Reset => "reset",
        }
    }
}

/// Stores a one-use link's token by its hash. A new reset link ends the user's earlier unused ones.
pub async fn create_link(
    db: &Db,
    token_hash: &str,
    user: UserId,
    purpose: LinkPurpose,
    expires_at_ms: i64,
) -> Result<(), DbError> {
    let now = now_ms();
    sqlx::query(
        "UPDATE user_tokens SET used_at = $1 WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL",
    )
    .bind(now)
    .bind(user.0)
    .bind(purpose.as_str())
    .execute(db.pool())
    .await?;
    sqlx::query(
        "INSERT INTO user_tokens (token_hash, user_id, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(user.0)
    .bind(purpose.as_str())
    .bind(now)
    .bind(expires_at_ms)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The user a live link is for, and the link used up in the same step (a link works once, even
/// when two requests race with it).
pub async fn use_link(
    db: &Db,
    token_hash: &str,
    now_ms: i64,
) -> Result<Option<(UserId, LinkPurpose)>, DbError> {
    let row = sqlx::query(
        "UPDATE user_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 \
         RETURNING user_id, purpose",
    )
    .bind(now_ms)
    .bind(token_hash)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let purpose = match row.try_get::<String, _>("purpose")?.as_str() {
        "invite" => LinkPurpose::Invite,
        _ => LinkPurpose::Reset,
    };
    Ok(Some((UserId(row.try_get("user_id")?), purpose)))
}

/// Whether a link is live, without using it (to show the form it leads to).
pub async fn link_is_live(db: &Db, token_hash: &str, now_ms: i64) -> Result<bool, DbError> {
    let row = sqlx::query(
        "SELECT 1 AS live FROM user_tokens WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now_ms)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.is_some())
}
