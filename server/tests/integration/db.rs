//! Repositories against real databases, on both backends.

use crate::on_both_backends;
use app::domain::{ChargerId, ConnectorNo, Role, Slug};
use server::db::{catalog, users, DbError};
use server::{auth, seed};
use sqlx::Row;

on_both_backends! {
    async fn users_are_unique_by_email_case_insensitively(t: &TestDb) {
        let id = users::create(&t.db, "Ops@Example.com", "hash", &Role::OperatorAdmin).await.expect("create");
        let found = users::find_by_email(&t.db, "ops@example.COM ").await.expect("query").expect("found");
        assert_eq!(found.id, id);
        assert_eq!(found.role, Role::OperatorAdmin);
        let dup = users::create(&t.db, "OPS@example.com", "hash", &Role::OperatorAdmin).await;
        assert!(matches!(dup, Err(DbError::Conflict(_))), "{dup:?}");
    }
}

on_both_backends! {
    async fn sessions_expire_and_can_be_revoked(t: &TestDb) {
        const IDLE: i64 = 1_000;
        let now = server::db::now_ms();
        let user = users::create(&t.db, "a@b.c", "hash", &Role::OperatorAdmin).await.expect("create");
        users::create_session(&t.db, "live", user, now + 2_000).await.expect("session");
        users::create_session(&t.db, "old", user, now + 1_000).await.expect("session");
        let at = now + 500;
        assert!(users::session_user(&t.db, "live", at, IDLE).await.expect("q").is_some());
        assert!(users::session_user(&t.db, "old", now + 1_500, IDLE).await.expect("q").is_none(), "past its end");
        // Expired sign-ins are forgotten; the live one stays.
        assert_eq!(users::forget_expired_sessions(&t.db, now + 1_500, 100_000).await.expect("forget"), 1);
        assert_eq!(users::forget_expired_sessions(&t.db, now + 1_500, 100_000).await.expect("forget"), 0);
        assert!(users::session_user(&t.db, "live", now + 900, IDLE).await.expect("q").is_some());
        users::delete_session(&t.db, "live").await.expect("delete");
        assert!(users::session_user(&t.db, "live", now + 900, IDLE).await.expect("q").is_none());
    }
}

on_both_backends! {
    async fn an_idle_session_ends_and_use_keeps_one_alive(t: &TestDb) {
        const IDLE: i64 = 120_000;
        let now = server::db::now_ms();
        let user = users::create(&t.db, "a@b.c", "hash", &Role::OperatorSupport).await.expect("create");
        users::create_session(&t.db, "s", user, now + 3_600_000).await.expect("session");
        // Used 100 s in (past the minute after which a use is written down), then 200 s in:
        // alive, as each use is within the idle timeout of the one before.
        assert!(users::session_user(&t.db, "s", now + 100_000, IDLE).await.expect("q").is_some());
        assert!(users::session_user(&t.db, "s", now + 200_000, IDLE).await.expect("q").is_some());
        // Left alone longer than the idle timeout: over, though its absolute end is far off.
        assert!(users::session_user(&t.db, "s", now + 400_000, IDLE).await.expect("q").is_none());
        assert_eq!(users::forget_expired_sessions(&t.db, now + 400_000, IDLE).await.expect("forget"), 1);
    }
}

on_both_backends! {
    async fn signing_out_everywhere_ends_every_session_of_that_user_only(t: &TestDb) {
        let now = server::db::now_ms();
        let me = users::create(&t.db, "me@b.c", "hash", &Role::OperatorAdmin).await.expect("create");
        let other = users::create(&t.db, "other@b.c", "hash", &Role::OperatorAdmin).await.expect("create");
        for token in ["phone", "laptop"] {
            users::create_session(&t.db, token, me, now + 60_000).await.expect("session");
        }
        users::create_session(&t.db, "theirs", other, now + 60_000).await.expect("session");
        assert_eq!(users::delete_user_sessions(&t.db, me).await.expect("delete"), 2);
        for token in ["phone", "laptop"] {
            assert!(users::session_user(&t.db, token, now, 60_000).await.expect("q").is_none());
        }
        assert!(users::session_user(&t.db, "theirs", now, 60_000).await.expect("q").is_some());
    }
}

on_both_backends! {
    async fn the_audit_log_takes_entries_and_refuses_edits(t: &TestDb) {
        use app::domain::{RetailerId, Tenant};
        use server::db::audit;
        seed::seed_if_empty(&t.db).await.expect("seed");
        let entry = |retailer: Option<RetailerId>, subject: &str| audit::NewEntry {
            at: 1_000,
            actor: "ops@example.com",
            actor_role: "operator_admin",
            retailer,
            action: "test.change",
            subject: subject.to_owned(),
            detail: "{}".to_owned(),
            source: "127.0.0.1",
        };
        let first = audit::append(&t.db, &entry(None, "network")).await.expect("append");
        let second = audit::append(&t.db, &entry(Some(RetailerId(1)), "freshmart")).await.expect("append");
        assert!(second > first);
        let all = audit::list(&t.db, Tenant::Network, None, 10).await.expect("list");
        assert_eq!(all.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(), ["freshmart", "network"]);
        let theirs = audit::list(&t.db, Tenant::Retailer(RetailerId(1)), None, 10).await.expect("list");
        assert_eq!(theirs.len(), 1);
        assert!(audit::list(&t.db, Tenant::Retailer(RetailerId(2)), None, 10).await.expect("list").is_empty());
        let older = audit::list(&t.db, Tenant::Network, Some(second), 10).await.expect("list");
        assert_eq!(older.len(), 1, "paging by id");
        // Append-only, enforced by the database itself.
        let edit = sqlx::query("UPDATE audit_log SET actor = 'someone else'").execute(t.db.pool()).await;
        assert!(edit.is_err(), "an update is refused");
        let erase = sqlx::query("DELETE FROM audit_log").execute(t.db.pool()).await;
        assert!(erase.is_err(), "a delete is refused");
        assert_eq!(audit::list(&t.db, Tenant::Network, None, 10).await.expect("list").len(), 2);
    }
}

on_both_backends! {
    async fn demo_seed_runs_once_and_keeps_retailers_apart(t: &TestDb) {
        assert!(seed::seed_if_empty(&t.db).await.expect("seed"));
        assert!(!seed::seed_if_empty(&t.db).await.expect("second seed is a no-op"));

        let operator = users::find_by_email(&t.db, seed::OPERATOR_EMAIL).await.expect("q").expect("operator");
        assert!(auth::verify_password(seed::OPERATOR_PASSWORD, &operator.password_hash));

        let fresh = catalog::retailer_by_slug(&t.db, &Slug::parse("freshmart").expect("slug")).await.expect("q").expect("exists");
        let sites = catalog::retailer_sites(&t.db, fresh).await.expect("q").expect("retailer");
        assert_eq!(sites.name, "FreshMart");
        assert_eq!(sites.sites.len(), 1);
        assert_eq!(sites.sites[0].name, "FreshMart Camden");
        assert_eq!((sites.sites[0].chargers, sites.sites[0].connectors), (2, 4));

        let all = catalog::charger_summaries(&t.db).await.expect("q");
        let ids: Vec<_> = all.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["FM-CAM-01", "FM-CAM-02", "UP-ZUI-01", "UP-ZUI-02"]);
    }
}

on_both_backends! {
    async fn connector_facts_carry_the_sites_tariff_in_minor_units(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let id = ChargerId::parse("UP-ZUI-01").expect("id");
        let facts = catalog::connector_facts(&t.db, &id, ConnectorNo::new(1).expect("no")).await.expect("q").expect("found");
        assert_eq!(facts.site_name, "UrbanPod Zuidas");
        assert_eq!(facts.retailer_theme, "urbanpod");
        assert_eq!((facts.tariff.currency.code(), facts.tariff.per_kwh_minor, facts.tariff.session_fee_minor), ("EUR", 59, 35));
        let missing = catalog::connector_facts(&t.db, &id, ConnectorNo::new(9).expect("no")).await.expect("q");
        assert!(missing.is_none());
    }
}

on_both_backends! {
    async fn a_drivers_plan_joins_the_next_car_only_while_it_waits_and_one_plan_per_session(t: &TestDb) {
        use server::db::{ocpp as tx_store, plans};
        seed::seed_if_empty(&t.db).await.expect("seed");
        let charger = ChargerId::parse("UP-ZUI-02").expect("id");
        let wait = |hash: &'static str, created: i64, expires: i64, energy: i64| {
            let db = t.db.clone();
            async move {
                plans::insert(&db, hash, "UP-ZUI-02", 1, None, Some(9_000_000), Some(energy), created, expires)
                    .await
                    .expect("insert")
                    .expect("new plan")
            }
        };
        let expired = wait("h-expired", 1_000, 4_000, 5_000).await;
        let live = wait("h-live", 1_500, 10_000, 20_000).await;
        assert!(plans::running_session(&t.db, "UP-ZUI-02", 1).await.expect("q").is_none());
        let start = tx_store::TxStart {
            connector_no: 1,
            id_tag: "TAG".to_owned(),
            started_at: 5_000,
            started_at_charger: "1970-01-01T00:00:05.000Z".to_owned(),
            meter_start_wh: Some(0),
        };
        let (tx, _) = tx_store::start_transaction_v16(&t.db, &charger, &start).await.expect("start");
        assert_eq!(plans::running_session(&t.db, "UP-ZUI-02", 1).await.expect("q"), Some((tx.0, 5_000, false)));

        // The plan still waiting joins; the one that expired does not.
        let needs = plans::join_waiting(&t.db, "UP-ZUI-02", 1, tx.0, 5_000).await.expect("join").expect("joined");
        assert_eq!((needs.departure_at_ms, needs.energy_need_wh, needs.priority), (Some(9_000_000), Some(20_000), app::domain::SessionPriority::NORMAL));
        let joined = plans::by_id(&t.db, live).await.expect("q").expect("plan");
        assert_eq!((joined.transaction_id, joined.session_active), (Some(tx.0), true));
        assert_eq!(plans::by_id(&t.db, expired).await.expect("q").expect("plan").transaction_id, None);
        let stored: (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT departure_at_ms, energy_need_wh FROM transactions WHERE id = $1")
                .bind(tx.0)
                .fetch_one(t.db.pool())
                .await
                .expect("q");
        assert_eq!(stored, (Some(9_000_000), Some(20_000)));
        assert_eq!(plans::running_session(&t.db, "UP-ZUI-02", 1).await.expect("q"), Some((tx.0, 5_000, true)));

        // One plan per session: a later one neither joins it nor is inserted joined to it.
        let late = wait("h-late", 6_000, 60_000, 7_000).await;
        assert_eq!(plans::join_waiting(&t.db, "UP-ZUI-02", 1, tx.0, 6_000).await.expect("q"), None);
        assert!(!plans::join(&t.db, late, tx.0).await.expect("q"));
        let second = plans::insert(&t.db, "h-second", "UP-ZUI-02", 1, Some(tx.0), None, Some(1_000), 6_000, 6_000);
        assert_eq!(second.await.expect("insert"), None);
        // The owner's change reaches the session.
        plans::update(&t.db, live, None, Some(30_000), 10_000).await.expect("update");
        let (needs, session) = plans::copy_to_session(&t.db, live).await.expect("copy").expect("running");
        assert_eq!((session, needs.departure_at_ms, needs.energy_need_wh), (tx.0, None, Some(30_000)));
        assert!(plans::by_token(&t.db, "h-live").await.expect("q").is_some_and(|p| p.id == live));
        assert!(plans::by_token(&t.db, "h-nobody").await.expect("q").is_none());
        // Plans no car took are forgotten once expired long enough; joined ones stay with their session.
        assert_eq!(plans::forget_unjoined(&t.db, 5_000).await.expect("sweep"), 1);
        assert!(plans::by_id(&t.db, expired).await.expect("q").is_none());
        assert!(plans::by_id(&t.db, late).await.expect("q").is_some());
        assert_eq!(plans::forget_unjoined(&t.db, i64::MAX).await.expect("sweep"), 1);
        assert!(plans::by_id(&t.db, live).await.expect("q").is_some());

        // Two phones waiting on one connector: the one stated last is the one the next car takes,
        // and the other stops waiting.
        let first = plans::insert(&t.db, "h-a", "UP-ZUI-01", 1, None, None, Some(1_000), 100, 1_000).await.expect("q").expect("id");
        let second = plans::insert(&t.db, "h-b", "UP-ZUI-01", 1, None, None, Some(2_000), 200, 1_100).await.expect("q").expect("id");
        assert_eq!(plans::supersede_waiting(&t.db, "UP-ZUI-01", 1, second, 200).await.expect("q"), 1);
        assert_eq!(plans::by_id(&t.db, first).await.expect("q").expect("plan").expires_at_ms, 200);
        let start = tx_store::TxStart { started_at: 300, started_at_charger: "1970-01-01T00:00:00.300Z".to_owned(), ..start };
        let (tx, _) = tx_store::start_transaction_v16(&t.db, &ChargerId::parse("UP-ZUI-01").expect("id"), &start).await.expect("start");
        let needs = plans::join_waiting(&t.db, "UP-ZUI-01", 1, tx.0, 300).await.expect("join").expect("joined");
        assert_eq!(needs.energy_need_wh, Some(2_000));
        assert_eq!(plans::by_id(&t.db, first).await.expect("q").expect("plan").transaction_id, None);
    }
}

on_both_backends! {
    async fn the_schema_refuses_impossible_rows(t: &TestDb) {
        // An operator tied to a retailer, and a negative price, are both refused by the database itself.
        let bad_user = sqlx::query("INSERT INTO users (email, password_hash, role, retailer_id, created_at) VALUES ('x@y.z', 'h', 'operator', 1, 0)")
            .execute(t.db.pool()).await;
        assert!(bad_user.is_err());
        let bad_price = sqlx::query("INSERT INTO tariffs (currency, per_kwh_minor, session_fee_minor) VALUES ('EUR', -1, 0)")
            .execute(t.db.pool()).await;
        assert!(bad_price.is_err());
    }
}

/// The two migration sets must describe the same tables and columns.
#[tokio::test]
async fn sqlite_and_postgres_schemas_are_in_step() {
    use crate::support::{Kind, TestDb};
    let Some(pg) = TestDb::fresh(Kind::Postgres).await else { return };
    let lite = TestDb::fresh(Kind::Sqlite).await.expect("sqlite");
    let lite_cols: Vec<(String, String)> = sqlx::query(
        "SELECT m.name AS t, p.name AS c FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\' AND m.name NOT LIKE 'sqlite%' ORDER BY 1, 2",
    )
    .fetch_all(lite.db.pool())
    .await
    .expect("sqlite columns")
    .iter()
    .map(|r| (r.get("t"), r.get("c")))
    .collect();
    let pg_cols: Vec<(String, String)> = sqlx::query(
        "SELECT table_name::TEXT AS t, column_name::TEXT AS c FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%' ORDER BY 1, 2",
    )
    .fetch_all(pg.db.pool())
    .await
    .expect("postgres columns")
    .iter()
    .map(|r| (r.get("t"), r.get("c")))
    .collect();
    let (mut lite_cols, mut pg_cols) = (lite_cols, pg_cols);
    lite_cols.sort();
    pg_cols.sort();
    assert!(lite_cols.len() > 20, "expected the whole schema, got {lite_cols:?}");
    assert_eq!(lite_cols, pg_cols);
    pg.finish().await;
    lite.finish().await;
}

#[tokio::test]
async fn sqlite_runs_with_a_write_ahead_log_and_full_sync() {
    use crate::support::{Kind, TestDb};
    use sqlx::Row;
    let lite = TestDb::fresh(Kind::Sqlite).await.expect("sqlite");
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(lite.db.pool())
        .await
        .expect("pragma")
        .try_get(0)
        .expect("text");
    assert_eq!(mode, "wal");
    // FULL (2): a commit is on disk when it returns, WAL or not.
    let sync: i64 = sqlx::query("PRAGMA synchronous")
        .fetch_one(lite.db.pool())
        .await
        .expect("pragma")
        .try_get(0)
        .expect("number");
    assert_eq!(sync, 2);
    lite.finish().await;
}
