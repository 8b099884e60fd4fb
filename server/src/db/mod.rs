//! Storage through sqlx: one schema for SQLite and PostgreSQL (migrations kept in step under
//! `migrations/sqlite` and `migrations/postgres`), one repository module per aggregate.
//!
//! Conventions both backends share: times are UTC milliseconds since the Unix epoch in `BIGINT`,
//! money is integer minor units beside a currency code, booleans are `BIGINT` 0/1 (sqlx's Any
//! driver cannot decode SQLite's BOOLEAN), placeholders `$n`.

pub mod audit;
pub mod balancing;
pub mod catalog;
pub mod chargers;
pub mod ocpp;
pub mod plans;
pub mod scoped;
pub mod tokens;
pub mod url;
pub mod users;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use std::sync::Once;
use std::time::Duration;
pub use url::{Backend, DatabaseUrl};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open the database at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("cannot migrate the database at {url}: {reason}")]
    Migrate { url: String, reason: String },
    #[error("{0} already exists")]
    Conflict(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// A connection pool and which database it talks to.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

static DRIVERS: Once = Once::new();

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

impl Db {
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, DbError> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let max = match url.backend() {
            // SQLite serialises writers anyway; a few readers are plenty.
            Backend::Sqlite => 8,
            Backend::Postgres => 16,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            // Under a burst (every charger reconnecting after an outage) waiting beats failing, and
            // is expected: a wait is not worth a warning per query (20,000 reconnecting chargers
            // wrote 400,000 of them).
            .acquire_timeout(Duration::from_secs(20))
            .acquire_slow_level(log::LevelFilter::Debug)
            .connect(url.expose())
            .await
            .map_err(|e| DbError::Connect { url: url.redacted(), reason: one_line(&e) })?;
        if url.backend() == Backend::Sqlite {
            // Write-ahead log: readers no longer wait for the writer and a commit costs one fsync,
            // not two; `synchronous` stays FULL, so a commit is on disk when it returns. The mode is
            // kept in the file, so every connection of the pool uses it.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(|e| DbError::Connect { url: url.redacted(), reason: one_line(&e) })?;
        }
        Ok(Self { pool, backend: url.backend() })
    }

    pub async fn migrate(&self, url: &DatabaseUrl) -> Result<(), DbError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| DbError::Migrate { url: url.redacted(), reason: one_line(&e) })
    }

    /// Is the database answering? Used by `/readyz`.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// sqlx errors can span lines; start-up errors are one sentence.
fn one_line(err: &dyn std::fmt::Display) -> String {
    err.to_string().lines().next().unwrap_or_default().trim_end_matches('.').to_owned()
}

/// Maps a unique-constraint violation to [`DbError::Conflict`] naming what collided.
pub(crate) fn conflict_as(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DbError {
    let what = what.into();
    move |err| match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => DbError::Conflict(what),
        _ => DbError::Sql(err),
    }
}

/// Now, as stored: UTC milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
