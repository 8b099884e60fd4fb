//! Fresh databases for tests: a new SQLite file, or a new PostgreSQL database, per test.
//!
//! PostgreSQL runs when `FORECOURT_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! answers. With `CI=true` it must answer; elsewhere an unreachable server skips those tests loudly.

use server::db::Db;
use server::settings::DatabaseUrl;
use sqlx::{Connection, Executor, PgConnection};
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::OnceCell;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    pub db: Db,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

fn admin_url() -> String {
    std::env::var("FORECOURT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether PostgreSQL tests run; sweeps databases left by earlier, crashed runs once.
async fn postgres_available() -> bool {
    static READY: OnceCell<bool> = OnceCell::const_new();
    *READY
        .get_or_init(|| async {
            match PgConnection::connect(&admin_url()).await {
                Ok(mut conn) => {
                    sweep_stale(&mut conn).await;
                    true
                }
                Err(err) if in_ci() => {
                    panic!("CI=true but PostgreSQL is unreachable at {}: {err}", admin_url())
                }
                Err(err) => {
                    eprintln!("\n*** SKIPPING PostgreSQL tests: {} unreachable ({err}) ***\n", admin_url());
                    false
                }
            }
        })
        .await
}

async fn sweep_stale(conn: &mut PgConnection) {
    let mine = format!("ft_{}_", std::process::id());
    let names: Vec<(String,)> = sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'ft\\_%'")
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default();
    for (name,) in names.into_iter().filter(|(n,)| !n.starts_with(&mine)) {
        let _ = conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str()).await;
    }
}

impl TestDb {
    /// A migrated, empty database of the given kind, or `None` when PostgreSQL is skipped.
    pub async fn fresh(kind: Kind) -> Option<TestDb> {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = DatabaseUrl::sqlite_in(dir.path());
                let db = Db::connect(&url).await.expect("open sqlite");
                db.migrate(&url).await.expect("migrate sqlite");
                Some(TestDb { db, _dir: Some(dir), pg_name: None })
            }
            Kind::Postgres => {
                if !postgres_available().await {
                    return None;
                }
                static COUNTER: AtomicU32 = AtomicU32::new(0);
                let name = format!("ft_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
                let mut admin = PgConnection::connect(&admin_url()).await.expect("admin connection");
                admin
                    .execute(format!("CREATE DATABASE \"{name}\"").as_str())
                    .await
                    .expect("create test database");
                let base = admin_url();
                let (prefix, _) = base.rsplit_once('/').expect("admin URL names a database");
                let url = DatabaseUrl::parse(&format!("{prefix}/{name}")).expect("postgres url");
                let db = Db::connect(&url).await.expect("open postgres");
                db.migrate(&url).await.expect("migrate postgres");
                Some(TestDb { db, _dir: None, pg_name: Some(name) })
            }
        }
    }

    /// Closes the pool and drops a PostgreSQL test database.
    pub async fn finish(self) {
        self.db.close().await;
        if let Some(name) = self.pg_name {
            if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                let _ =
                    admin.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str()).await;
            }
        }
    }
}

/// Runs one async test body against both backends, as `<name>::sqlite` and `<name>::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($(#[$meta:meta])* async fn $name:ident($db:ident: &TestDb) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::support::{Kind, TestDb};

            async fn body($db: &TestDb) $body

            async fn run(kind: Kind) {
                if let Some(db) = TestDb::fresh(kind).await {
                    body(&db).await;
                    db.finish().await;
                }
            }

            $(#[$meta])*
            #[tokio::test]
            async fn sqlite() {
                run(Kind::Sqlite).await;
            }

            $(#[$meta])*
            #[tokio::test]
            async fn postgres() {
                run(Kind::Postgres).await;
            }
        }
    };
}

/// Turns off a site's check for a store meter repeating itself, for tests whose synthetic store
/// is drawn flat (no real store is).
pub async fn no_stillness_check(t: &TestDb, site: app::domain::SiteId) {
    sqlx::query("UPDATE sites SET store_meter_frozen_after_ms = 0 WHERE id = $1")
        .bind(site.0)
        .execute(t.db.pool())
        .await
        .expect("site updated");
}
