//! Every route and every server function, walked as each kind of caller. The lists come from the
//! code (the OpenAPI document the REST router is built from; the server functions leptos
//! registered), so a new route or function is walked the day it lands: anonymous callers get 401
//! except on the few public ones named here, a retailer never reads a word of another retailer's
//! data, and roles get only what the rule book gives them.

use crate::http::{app, send, sign_in};
use crate::on_both_backends;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use server::seed;

/// Server functions anyone may call: the driver's pages, signing in, and the password links.
const PUBLIC_SERVER_FNS: &[&str] = &[
    "connector_page",
    "my_charge_plan",
    "state_charge_plan",
    "sign_in",
    "sign_out",
    "who_am_i",
    "request_password_reset",
    "password_link_live",
    "set_password",
];

/// Arguments that pass each server function's decoding, so the walk reaches its checks. A new
/// server function needs a line here (the walk fails with a 400 until it has one).
fn sample_args(name: &str) -> &'static str {
    match name {
        "connector_page" | "my_charge_plan" => "charger=FM-CAM-01&connector=1",
        "state_charge_plan" => "charger=FM-CAM-01&connector=1&leave_at=18%3A00&energy_kwh=",
        "sign_in" => "email=nobody%40example.com&password=wrong-password",
        "request_password_reset" => "email=nobody%40example.com",
        "password_link_live" => "token=nothing",
        "set_password" => "token=nothing&password=long-enough-pw&confirm=long-enough-pw",
        "change_password" => "current=whatever-it-is&password=long-enough-pw&confirm=long-enough-pw",
        "live_site_load" | "forget_readings_before_drop" => "site=1",
        "set_session_priority" => "session=1&priority=1",
        "invite_to_team" => "email=someone.new%40example.com&role=retailer_viewer",
        "remove_from_team" => "id=1",
        _ => "",
    }
}

/// A REST path with its parameters filled with things that exist in the demo (FreshMart's).
fn filled(path: &str, freshmart_user: i64) -> String {
    path.replace("/chargers/{id}", "/chargers/FM-CAM-01")
        .replace("/charger-requests/{id}", "/charger-requests/FM-NEW-01")
        .replace("/sites/{id}", "/sites/1")
        .replace("/sessions/{id}", "/sessions/1")
        .replace("/users/{id}", &format!("/users/{freshmart_user}"))
        .replace("{action}", "Reset")
}

/// What would give FreshMart's data away.
const FRESHMART_MARKERS: &[&str] = &["FreshMart", "freshmart", "FM-CAM", "Camden"];

fn rest_routes() -> Vec<(Method, String)> {
    let doc = serde_json::to_value(server::http::api::openapi_document()).expect("document");
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("operations").keys() {
            if let Ok(m) = method.to_uppercase().parse::<Method>() {
                routes.push((m, path.clone()));
            }
        }
    }
    routes.sort_by(|a, b| (a.1.as_str(), a.0.as_str()).cmp(&(b.1.as_str(), b.0.as_str())));
    routes
}

/// Every server function, those that end the caller's session last (so the walk goes on signed in).
fn server_fns() -> Vec<String> {
    let mut names: Vec<String> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, _)| path.trim_start_matches("/api/").to_owned())
        .collect();
    names.sort_by_key(|name| (name == "sign_out_everywhere", name.clone()));
    names
}

fn rest(method: &Method, uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut req = Request::builder().method(method.clone()).uri(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let body = if matches!(*method, Method::GET | Method::DELETE) { "" } else { "{}" };
    req.header(header::CONTENT_TYPE, "application/json").body(Body::from(body)).expect("request")
}

fn call_fn(name: &str, cookie: Option<&str>) -> Request<Body> {
    crate::http::server_fn(name, sample_args(name), cookie)
}

fn leaks(body: &str) -> Option<&'static str> {
    FRESHMART_MARKERS.iter().copied().find(|m| body.contains(m))
}

async fn freshmart_user(app: &Router) -> i64 {
    let req = Request::get("/api/v1/users")
        .header(header::AUTHORIZATION, format!("Bearer {}", seed::OPERATOR_API_TOKEN))
        .body(Body::empty())
        .expect("request");
    let (_, _, body) = send(app, req).await;
    let users: serde_json::Value = serde_json::from_str(&body).expect("json");
    users
        .as_array()
        .expect("list")
        .iter()
        .find(|u| u["email"] == seed::RETAILERS[0].viewer_login)
        .and_then(|u| u["id"].as_i64())
        .expect("FreshMart's viewer")
}

on_both_backends! {
    async fn the_lists_walked_are_the_whole_surface(t: &TestDb) {
        let _ = t;
        let routes = rest_routes();
        let fns = server_fns();
        // Guards against an empty walk that would prove nothing.
        assert!(routes.len() >= 20, "{routes:?}");
        for expected in ["/api/v1/users", "/api/v1/audit", "/api/v1/chargers/{id}/commands/{action}"] {
            assert!(routes.iter().any(|(_, p)| p == expected), "{expected} missing from {routes:?}");
        }
        for expected in ["network_chargers", "retailer_overview", "set_session_priority", "sign_in"] {
            assert!(fns.iter().any(|f| f == expected), "{expected} missing from {fns:?}");
        }
        for name in PUBLIC_SERVER_FNS {
            assert!(fns.iter().any(|f| f == name), "{name} is named public but no longer exists");
        }
    }
}

on_both_backends! {
    async fn anonymous_callers_get_nothing_but_the_public_pages(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app(&t.db);
        let user = freshmart_user(&app).await;
        for (method, path) in rest_routes() {
            let uri = filled(&path, user);
            let (status, _, body) = send(&app, rest(&method, &uri, None)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}: {body}");
            let (status, _, body) = send(&app, rest(&method, &uri, Some("forecourt_session=forged"))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri} with a forged cookie: {body}");
        }
        for name in server_fns().iter().filter(|f| !PUBLIC_SERVER_FNS.contains(&f.as_str())) {
            let (status, _, body) = send(&app, call_fn(name, None)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
        }
    }
}

on_both_backends! {
    async fn another_retailers_people_never_see_a_word_of_freshmarts_data(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app(&t.db);
        let user = freshmart_user(&app).await;
        let urban = &seed::RETAILERS[1];
        for (login, password) in [(urban.login, urban.password), (urban.viewer_login, urban.viewer_password)] {
            let cookie = sign_in(&app, login, password).await;
            for (method, path) in rest_routes() {
                let uri = filled(&path, user);
                let (status, _, body) = send(&app, rest(&method, &uri, Some(&cookie))).await;
                // Their own users and audit log may answer; nothing of the network's or FreshMart's.
                let own_tenant = path == "/api/v1/users" || path == "/api/v1/audit";
                assert!(
                    status.is_client_error() || (own_tenant && status.is_success()),
                    "{login}: {method} {uri} answered {status}: {body}"
                );
                assert_eq!(leaks(&body), None, "{login}: {method} {uri} gave away FreshMart's data: {body}");
            }
            for name in server_fns().iter().filter(|f| !PUBLIC_SERVER_FNS.contains(&f.as_str())) {
                let (status, _, body) = send(&app, call_fn(name, Some(&cookie))).await;
                assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{login}: {name}: {body}");
                assert_eq!(leaks(&body), None, "{login}: {name} gave away FreshMart's data: {body}");
            }
        }
    }
}

on_both_backends! {
    async fn each_operator_role_gets_what_the_rule_book_gives_it(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app(&t.db);
        let user = freshmart_user(&app).await;
        let admin = sign_in(&app, seed::OPERATOR_EMAIL, seed::OPERATOR_PASSWORD).await;
        let support = sign_in(&app, seed::SUPPORT_EMAIL, seed::SUPPORT_PASSWORD).await;
        // What support may change: running sessions and commands (the rest of its calls read).
        let support_changes = ["/api/v1/sessions/{id}/needs", "/api/v1/chargers/{id}/commands/{action}"];
        for (method, path) in rest_routes() {
            let uri = filled(&path, user);
            let reads = method == Method::GET && path != "/api/v1/users" && path != "/api/v1/audit";
            let (status, _, body) = send(&app, rest(&method, &uri, Some(&support))).await;
            if reads || support_changes.contains(&path.as_str()) {
                assert!(status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED, "support: {method} {uri}: {status} {body}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "support: {method} {uri}: {body}");
            }
            // The admin is refused nothing (what it sends may still be a bad request).
            if method == Method::DELETE && path == "/api/v1/users/{id}" {
                continue; // walked last, so the account is there for the others
            }
            let (status, _, body) = send(&app, rest(&method, &uri, Some(&admin))).await;
            assert!(status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED, "admin: {method} {uri}: {status} {body}");
            assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "admin: {method} {uri}: {body}");
        }
        let (status, _, body) = send(&app, rest(&Method::DELETE, &format!("/api/v1/users/{user}"), Some(&admin))).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
}
