//! The router in process: health, metrics, theme assets, and who may call which server function.

use crate::on_both_backends;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use server::http::{router, AppState};
use server::seed;
use server::themes::Themes;
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

/// The state the server would build, with the repository's themes.
pub(crate) fn state_with(db: &server::db::Db, network: server::network::Network) -> AppState {
    let themes =
        Themes::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../themes")).expect("repo themes load");
    let leptos = leptos::config::LeptosOptions::builder().output_name("forecourt").build();
    AppState::new(leptos, db.clone(), Arc::new(themes), network)
}

pub(crate) fn app_with(db: &server::db::Db, network: server::network::Network) -> Router {
    router(state_with(db, network))
}

pub(crate) fn app(db: &server::db::Db) -> Router {
    app_with(db, server::network::Network::without_balancing(db.clone(), Default::default()))
}

/// With the sites' balancers running (they read the stored meter history as they start).
pub(crate) async fn app_with_balancers(db: &server::db::Db) -> Router {
    let network =
        server::network::Network::start(db.clone(), Default::default()).await.expect("balancers start");
    app_with(db, network)
}

pub(crate) async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

pub(crate) fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

pub(crate) fn server_fn(name: &str, form: &str, cookie: Option<&str>) -> Request<Body> {
    let mut req = Request::post(format!("/api/{name}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    req.body(Body::from(form.to_owned())).expect("request")
}

/// The status a server function answers with.
pub(crate) async fn status_of(app: &Router, name: &str, form: &str, cookie: Option<&str>) -> StatusCode {
    send(app, server_fn(name, form, cookie)).await.0
}

pub(crate) async fn sign_in(app: &Router, email: &str, password: &str) -> String {
    let form = format!("email={}&password={password}", email.replace('@', "%40"));
    let (status, headers, body) = send(app, server_fn("sign_in", &form, None)).await;
    assert!(status.is_success() || status.is_redirection(), "{status} {body}");
    let cookie = headers.get(header::SET_COOKIE).expect("session cookie").to_str().expect("ascii");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    cookie.split(';').next().expect("name=value").to_owned()
}

on_both_backends! {
    async fn health_readiness_and_metrics_answer(t: &TestDb) {
        let app = app(&t.db);
        assert_eq!(send(&app, get("/healthz")).await.0, StatusCode::OK);
        assert_eq!(send(&app, get("/readyz")).await.0, StatusCode::OK);
        // A method nobody defined is counted, as `other`: it mints no series of its own.
        let made_up = format!("FROB{}", "X".repeat(2000));
        let odd = Request::builder().method(made_up.as_str()).uri("/healthz").body(Body::empty()).expect("request");
        send(&app, odd).await;
        let (status, _, body) = send(&app, get("/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("http_requests_total"), "{body}");
        assert!(body.contains(r#"method="other""#), "{body}");
        assert!(!body.contains("FROBXXX"), "a made-up method became a label");
        t.db.close().await;
        assert_eq!(send(&app, get("/readyz")).await.0, StatusCode::SERVICE_UNAVAILABLE);
    }
}

on_both_backends! {
    async fn theme_logos_are_served_and_nothing_else(t: &TestDb) {
        let app = app(&t.db);
        let (status, headers, body) = send(&app, get("/themes/freshmart/logo.svg")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "image/svg+xml");
        assert!(body.contains("<svg"));
        assert_eq!(send(&app, get("/themes/freshmart/theme.toml")).await.0, StatusCode::NOT_FOUND);
        assert_eq!(send(&app, get("/themes/..%2Fserver/Cargo.toml")).await.0, StatusCode::NOT_FOUND);
    }
}

on_both_backends! {
    async fn server_functions_check_who_is_asking(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app(&t.db);

        let (status, _, _) = send(&app, server_fn("network_chargers", "", None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = send(&app, server_fn("network_chargers", "", Some("forecourt_session=forged"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let operator = sign_in(&app, seed::OPERATOR_EMAIL, seed::OPERATOR_PASSWORD).await;
        let (status, _, body) = send(&app, server_fn("network_chargers", "", Some(&operator))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("FM-CAM-01") && body.contains("UP-ZUI-02"), "{body}");

        let urban = &seed::RETAILERS[1];
        let retailer = sign_in(&app, urban.login, urban.password).await;
        let (status, _, _) = send(&app, server_fn("network_chargers", "", Some(&retailer))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, body) = send(&app, server_fn("retailer_overview", "", Some(&retailer))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("UrbanPod Zuidas") && !body.contains("FreshMart"), "{body}");

        let (status, _, _) = send(&app, server_fn("retailer_overview", "", Some(&operator))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Signing out revokes the session on the server, not just in the browser.
        send(&app, server_fn("sign_out", "", Some(&retailer))).await;
        let (status, _, _) = send(&app, server_fn("retailer_overview", "", Some(&retailer))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

on_both_backends! {
    async fn only_operators_see_site_loads_and_set_priorities(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app(&t.db);
        assert_eq!(status_of(&app, "live_site_load", "site=1", None).await, StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(&app, "network_alerts", "", None).await, StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(&app, "set_session_priority", "session=1&priority=2", None).await, StatusCode::UNAUTHORIZED);

        let urban = &seed::RETAILERS[1];
        let retailer = sign_in(&app, urban.login, urban.password).await;
        assert_eq!(status_of(&app, "live_site_load", "site=1", Some(&retailer)).await, StatusCode::FORBIDDEN);
        assert_eq!(status_of(&app, "network_alerts", "", Some(&retailer)).await, StatusCode::FORBIDDEN);
        assert_eq!(status_of(&app, "set_session_priority", "session=1&priority=2", Some(&retailer)).await, StatusCode::FORBIDDEN);
        assert_eq!(status_of(&app, "forget_readings_before_drop", "site=1", None).await, StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(&app, "forget_readings_before_drop", "site=1", Some(&retailer)).await, StatusCode::FORBIDDEN);

        let operator = sign_in(&app, seed::OPERATOR_EMAIL, seed::OPERATOR_PASSWORD).await;
        let (status, _, body) = send(&app, server_fn("live_site_load", "site=999", Some(&operator))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, _, body) =
            send(&app, server_fn("set_session_priority", "session=424242&priority=2", Some(&operator))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(body.contains("not running"), "{body}");
        let (status, _, body) =
            send(&app, server_fn("set_session_priority", "session=424242&priority=9", Some(&operator))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("between 0 and 3"), "{body}");
    }
}

on_both_backends! {
    async fn wrong_passwords_and_bad_input_get_clear_4xx(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app(&t.db);
        let (status, headers, body) = send(&app, server_fn("sign_in", "email=operator%40forecourt.local&password=nope", None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(headers.get(header::SET_COOKIE).is_none());
        assert!(body.contains("wrong email or password"), "{body}");
        let (status, _, body) = send(&app, server_fn("connector_page", "charger=a%2Fb&connector=1", None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("charger id"), "{body}");
        let (status, _, _) = send(&app, server_fn("connector_page", "charger=FM-CAM-01&connector=7", None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, body) = send(&app, server_fn("connector_page", "charger=FM-CAM-01&connector=1", None)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("FreshMart Camden"), "{body}");
    }
}

on_both_backends! {
    async fn an_operator_has_the_balancer_forget_a_stretch_its_meter_got_wrong(t: &TestDb) {
        use server::db::balancing::{self, StoreReading};
        seed::seed_if_empty(&t.db).await.expect("seed");
        let site = balancing::all_sites(&t.db).await.expect("sites")[0].site;
        // 25 hours of a store at 20 A a phase, read every minute, the latest 30 s ago; three hours
        // ago its meter read zeros for a quarter of an hour (a loose clamp).
        let now = server::db::now_ms();
        let minutes = 25 * 60;
        let faulty = minutes - 195..minutes - 180;
        let at = |m: i64| now - 30_000 - (minutes - m) * 60_000;
        // A store drawn flat, as no real store is: the meter's stillness check is off here.
        crate::support::no_stillness_check(t, site).await;
        for m in 0..=minutes {
            let da = if faulty.contains(&m) { [0; 3] } else { [200; 3] };
            balancing::record_store_reading(&t.db, site, StoreReading { measured_at_ms: at(m), da }).await.expect("record");
        }
        let app = app_with_balancers(&t.db).await;
        let token = format!("Bearer {}", seed::OPERATOR_API_TOKEN);
        let call = |method: &str, uri: String, auth: bool| {
            let mut req = Request::builder().method(method).uri(uri);
            if auth {
                req = req.header(header::AUTHORIZATION, token.as_str());
            }
            req.body(Body::empty()).expect("request")
        };
        let learned = |body: &str| serde_json::from_str::<serde_json::Value>(body).expect("json")["snapshot"]["store_rise_learned"].clone();
        let budget = format!("/api/v1/sites/{}/budget", site.0);
        let (status, _, body) = send(&app, call("GET", budget.clone(), true)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(learned(&body), serde_json::json!([220, 220, 220]), "the zeros taught a 20 A rise (+10 %)");

        let iso = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).expect("a moment").to_rfc3339();
        let forget = |from: i64, to: i64| format!("/api/v1/sites/{}/meter/readings?from={}&to={}", site.0, iso(from), iso(to)).replace('+', "%2B");
        let stretch = forget(at(faulty.start), at(faulty.end));
        assert_eq!(send(&app, call("DELETE", stretch.clone(), false)).await.0, StatusCode::UNAUTHORIZED);
        let (status, _, body) = send(&app, call("DELETE", forget(at(faulty.end), at(faulty.start)), true)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("before"), "{body}");
        let (status, _, body) =
            send(&app, call("DELETE", format!("/api/v1/sites/{}/meter/readings?from=yesterday", site.0), true)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, _, body) = send(&app, call("DELETE", forget(at(faulty.start), at(faulty.end)).replace(&format!("sites/{}/", site.0), "sites/999/"), true)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

        let (status, _, body) = send(&app, call("DELETE", stretch, true)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(answer["forgotten"], 15, "{body}");
        assert_eq!(answer["store_rise_learned"], serde_json::json!([0, 0, 0]), "learned again from what is kept");
        let (_, _, body) = send(&app, call("GET", budget, true)).await;
        assert_eq!(learned(&body), serde_json::json!([0, 0, 0]));
        let kept = balancing::store_readings_since(&t.db, site, 0).await.expect("read");
        assert_eq!(kept.len(), usize::try_from(minutes + 1 - 15).expect("a count"), "only the stretch is forgotten");
    }
}

on_both_backends! {
    async fn a_store_meter_that_repeats_itself_is_set_aside_and_the_site_says_how_soon(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app_with_balancers(&t.db).await;
        let token = format!("Bearer {}", seed::OPERATOR_API_TOKEN);
        let call = |method: &str, uri: &str, body: Option<&serde_json::Value>| {
            Request::builder()
                .method(method)
                .uri(uri)
                .header(header::AUTHORIZATION, token.as_str())
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
                .expect("request")
        };
        let json = |body: &str| serde_json::from_str::<serde_json::Value>(body).expect("json");
        let (status, _, body) = send(&app, call("GET", "/api/v1/sites/1/electrics", None)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let original = json(&body);
        assert_eq!(original["store_meter_frozen_after_s"], 900.0, "a quarter of an hour unless the site says");
        let with = |s: serde_json::Value| {
            let mut spec = original.clone();
            spec["store_meter_frozen_after_s"] = s;
            spec
        };
        for bad in [serde_json::json!(-1), serde_json::json!(86_401), serde_json::json!("soon")] {
            let (status, _, body) = send(&app, call("PUT", "/api/v1/sites/1/electrics", Some(&with(bad.clone())))).await;
            assert!(status.is_client_error(), "{bad}: {status} {body}");
            assert!(json(&body)["error"].as_str().is_some_and(|e| e.contains("store_meter_frozen_after_s")), "{body}");
        }
        // One second here, so the test need not wait a quarter of an hour.
        let (status, _, body) = send(&app, call("PUT", "/api/v1/sites/1/electrics", Some(&with(serde_json::json!(1))))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let reading = serde_json::json!({"l1_a": 40.0, "l2_a": 35.0, "l3_a": 30.0});
        let set_aside = |body: &str| json(body)["snapshot"]["store_meter_set_aside"].clone();
        let (status, _, body) = send(&app, call("POST", "/api/v1/sites/1/meter", Some(&reading))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, _, body) = send(&app, call("GET", "/api/v1/sites/1/budget", None)).await;
        assert_eq!(set_aside(&body), serde_json::Value::Null, "{body}");
        assert_eq!(json(&body)["snapshot"]["store_worst_case"], false, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        send(&app, call("POST", "/api/v1/sites/1/meter", Some(&reading))).await;
        let (_, _, body) = send(&app, call("GET", "/api/v1/sites/1/budget", None)).await;
        assert_eq!(set_aside(&body)["why"], "Unchanged", "{body}");
        assert_eq!(json(&body)["snapshot"]["store_worst_case"], true, "{body}");
        // The network's overview points the operator at the site.
        let operator = sign_in(&app, seed::OPERATOR_EMAIL, seed::OPERATOR_PASSWORD).await;
        let alerts = || send(&app, server_fn("network_alerts", "", Some(&operator)));
        let (status, _, body) = alerts().await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            json(&body),
            serde_json::json!([{"site_id": 1, "site_name": "FreshMart Camden", "retailer_name": "FreshMart",
                "alert": {"StoreMeterSetAside": "Unchanged"}}]),
            "{body}"
        );
        // It moves: believed again.
        let moved = serde_json::json!({"l1_a": 40.1, "l2_a": 35.0, "l3_a": 30.0});
        send(&app, call("POST", "/api/v1/sites/1/meter", Some(&moved))).await;
        let (_, _, body) = send(&app, call("GET", "/api/v1/sites/1/budget", None)).await;
        assert_eq!(set_aside(&body), serde_json::Value::Null, "{body}");
        assert_eq!(json(&body)["snapshot"]["store_worst_case"], false, "{body}");
        assert_eq!(json(&alerts().await.2), serde_json::json!([]), "nothing to look at");
        // 0: never (a meter of whole amps on a store that truly is that still).
        let (status, _, body) = send(&app, call("PUT", "/api/v1/sites/1/electrics", Some(&with(serde_json::json!(0))))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for _ in 0..2 {
            send(&app, call("POST", "/api/v1/sites/1/meter", Some(&moved))).await;
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        }
        let (_, _, body) = send(&app, call("GET", "/api/v1/sites/1/budget", None)).await;
        assert_eq!(set_aside(&body), serde_json::Value::Null, "{body}");
    }
}

on_both_backends! {
    async fn a_meters_earlier_readings_are_imported_and_forgotten_when_the_store_truly_drops(t: &TestDb) {
        use app::domain::SiteId;
        use server::db::balancing;
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app_with_balancers(&t.db).await;
        let token = format!("Bearer {}", seed::OPERATOR_API_TOKEN);
        let call = |method: &str, uri: &str, body: Option<serde_json::Value>| {
            Request::builder()
                .method(method)
                .uri(uri)
                .header(header::AUTHORIZATION, token.as_str())
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
                .expect("request")
        };
        let json = |body: &str| serde_json::from_str::<serde_json::Value>(body).expect("json");
        let ago = |minutes: i64| (chrono::Utc::now() - chrono::Duration::minutes(minutes)).to_rfc3339();
        let reading = |at: String, l1: f64| serde_json::json!({"at": at, "l1_a": l1, "l2_a": 35.0, "l3_a": 30.0});
        // A day and two hours of the meter's export, a reading a minute: the store between 40 and 46 A on L1.
        let export: Vec<serde_json::Value> =
            (1..=1560).rev().map(|k| reading(ago(k), 40.0 + f64::from(u32::try_from(k % 7).expect("small")))).collect();

        // Bad imports lose nothing and say why.
        let bad = [
            (serde_json::json!({"readings": []}), StatusCode::UNPROCESSABLE_ENTITY, "between 1 and"),
            (serde_json::json!({"readings": [reading("yesterday".into(), 40.0)]}), StatusCode::BAD_REQUEST, "reading 0: `at`"),
            (serde_json::json!({"readings": [reading(ago(-10), 40.0)]}), StatusCode::UNPROCESSABLE_ENTITY, "in the future"),
            (serde_json::json!({"readings": [reading(ago(29 * 24 * 60), 40.0)]}), StatusCode::UNPROCESSABLE_ENTITY, "28 days"),
            (serde_json::json!({"readings": [reading(ago(5), 40.0), reading(ago(4), -1.0)]}), StatusCode::UNPROCESSABLE_ENTITY, "reading 1: each phase"),
            (serde_json::json!({"readings": [{"at": ago(5), "l1_a": 1.0, "l2_a": 1.0, "l3_a": 1.0, "l4_a": 1.0}]}), StatusCode::BAD_REQUEST, "l4_a"),
        ];
        for (body, status, says) in bad {
            let (got, _, answer) = send(&app, call("POST", "/api/v1/sites/1/meter/readings", Some(body.clone()))).await;
            assert_eq!(got, status, "{body}: {answer}");
            assert!(json(&answer)["error"].as_str().is_some_and(|e| e.contains(says)), "{body}: {answer}");
        }
        let (status, _, _) = send(&app, call("POST", "/api/v1/sites/999/meter/readings", Some(serde_json::json!({"readings": [reading(ago(5), 40.0)]})))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let anonymous = Request::post("/api/v1/sites/1/meter/readings")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::json!({"readings": [reading(ago(5), 40.0)]}).to_string()))
            .expect("request");
        assert_eq!(send(&app, anonymous).await.0, StatusCode::UNAUTHORIZED);
        assert!(balancing::store_readings_since(&t.db, SiteId(1), 0).await.expect("read").is_empty(), "nothing kept");

        // The export: the rise is learned at once, not after a day on the configured bound.
        let (status, _, body) =
            send(&app, call("POST", "/api/v1/sites/1/meter/readings", Some(serde_json::json!({"readings": export})))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(json(&body)["kept"], 1560, "{body}");
        assert!(json(&body)["store_rise_learned"].is_array(), "{body}");

        // Equipment removed: the store now draws under half its floor, which is not believed.
        let low = serde_json::json!({"l1_a": 15.0, "l2_a": 12.0, "l3_a": 10.0});
        let (status, _, body) = send(&app, call("POST", "/api/v1/sites/1/meter", Some(low.clone()))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let budget = || async { json(&send(&app, call("GET", "/api/v1/sites/1/budget", None)).await.2)["snapshot"].clone() };
        let snapshot = budget().await;
        assert_eq!(snapshot["store_meter_set_aside"]["why"], "FarBelowFloor", "{snapshot}");
        assert_eq!(snapshot["store_worst_case"], true, "{snapshot}");

        // The operator, from the console, has the readings from before the drop forgotten.
        let operator = sign_in(&app, seed::OPERATOR_EMAIL, seed::OPERATOR_PASSWORD).await;
        let (status, _, body) = send(&app, server_fn("forget_readings_before_drop", "site=1", Some(&operator))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(json(&body), serde_json::json!(1560), "the export, not the low reading");
        let snapshot = budget().await;
        assert_eq!(snapshot["store_meter_set_aside"], serde_json::Value::Null, "{snapshot}");
        assert_eq!(snapshot["store_worst_case"], false, "the low reading is believed: {snapshot}");
        assert_eq!(snapshot["store_reading"], serde_json::json!([150, 120, 100]), "{snapshot}");
        assert_eq!(snapshot["store_rise_learned"], serde_json::Value::Null, "learned anew: {snapshot}");
        assert_eq!(balancing::store_readings_since(&t.db, SiteId(1), 0).await.expect("read").len(), 1);
        // Nothing set aside now: nothing to forget.
        let (status, _, body) = send(&app, server_fn("forget_readings_before_drop", "site=1", Some(&operator))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }
}

on_both_backends! {
    async fn the_largest_documented_import_of_meter_readings_fits_in_one_request(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app_with_balancers(&t.db).await;
        let import = |readings: Vec<serde_json::Value>| {
            Request::post("/api/v1/sites/1/meter/readings")
                .header(header::AUTHORIZATION, format!("Bearer {}", seed::OPERATOR_API_TOKEN))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::json!({ "readings": readings }).to_string()))
                .expect("request")
        };
        // 50,000 readings, one every 46 s over the last 27 days, written out at length: some 4 MB,
        // twice axum's default body limit.
        let now = chrono::Utc::now();
        let readings = |n: i64| -> Vec<serde_json::Value> {
            (1..=n)
                .rev()
                .map(|k| {
                    let at = (now - chrono::Duration::seconds(46 * k)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    serde_json::json!({"at": at, "l1_a": 40.25, "l2_a": 35.5, "l3_a": 30.75})
                })
                .collect()
        };
        let (status, _, body) = send(&app, import(readings(50_001))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body.contains("between 1 and 50000"), "{body}");
        let all = readings(50_000);
        let bytes = serde_json::json!({ "readings": all }).to_string().len();
        assert!(bytes > 2 * 1024 * 1024, "the body is {bytes} bytes: not past the default limit");
        let (status, _, body) = send(&app, import(all)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).expect("json")["kept"], 50_000, "{body}");
    }
}

on_both_backends! {
    async fn the_session_cookie_is_secure_over_tls_and_only_then(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app(&t.db);
        let form = format!("email={}&password={}", seed::OPERATOR_EMAIL.replace('@', "%40"), seed::OPERATOR_PASSWORD);
        let cookie_of = |headers: &axum::http::HeaderMap| {
            headers.get(header::SET_COOKIE).expect("a session cookie").to_str().expect("ascii").to_owned()
        };
        // In the clear (a test server, a developer's laptop): not Secure, or the browser would drop it.
        let (status, headers, body) = send(&app, server_fn("sign_in", &form, None)).await;
        assert!(status.is_success() || status.is_redirection(), "{status} {body}");
        let plain = cookie_of(&headers);
        assert!(plain.contains("HttpOnly") && !plain.contains("Secure"), "{plain}");
        // Behind a proxy that terminates TLS and says so.
        let mut proxied = server_fn("sign_in", &form, None);
        proxied.headers_mut().insert("x-forwarded-proto", "https".parse().expect("header"));
        let (_, headers, _) = send(&app, proxied).await;
        assert!(cookie_of(&headers).contains("; Secure"), "{}", cookie_of(&headers));
        // Serving TLS ourselves: every cookie is Secure.
        let themes = Themes::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../themes")).expect("themes");
        let leptos = leptos::config::LeptosOptions::builder().output_name("forecourt").build();
        let network = server::network::Network::without_balancing(t.db.clone(), Default::default());
        let tls_app = router(AppState::new(leptos, t.db.clone(), Arc::new(themes), network).served_over_tls(true));
        let (_, headers, _) = send(&tls_app, server_fn("sign_in", &form, None)).await;
        assert!(cookie_of(&headers).contains("; Secure"), "{}", cookie_of(&headers));
    }
}
