//! Accounts and the edge of the HTTP side: the four roles in the API, the audit log, invitations
//! and password links, sign-in lockout, sessions that end, and cross-site requests refused.

use crate::http::{app, send, server_fn, sign_in, status_of};
use crate::on_both_backends;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use server::seed;

fn api(
    method: &str,
    uri: &str,
    bearer: Option<&str>,
    cookie: Option<&str>,
    body: Option<Value>,
) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(token) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    match body {
        Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request")
}

async fn json_of(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let (status, _, body) = send(app, req).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

const NEEDS: &str = r#"{"priority": 1}"#;

on_both_backends! {
    async fn support_operates_but_does_not_manage_and_retailers_stay_out_of_the_network_api(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app(&t.db);
        let support = sign_in(&app, seed::SUPPORT_EMAIL, seed::SUPPORT_PASSWORD).await;
        let manager = sign_in(&app, seed::RETAILERS[0].login, seed::RETAILERS[0].password).await;
        let needs: Value = serde_json::from_str(NEEDS).expect("json");
        // Support reads the network ...
        let (status, body) = json_of(&app, api("GET", "/api/v1/chargers", None, Some(&support), None)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // ... steers a session (404 here: none runs, but past the role check) ...
        let (status, body) = json_of(&app, api("PUT", "/api/v1/sessions/424242/needs", None, Some(&support), Some(needs.clone()))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        // ... and manages nothing.
        let spec = json!({"vendor": "V", "model": "M", "lenient": false, "meter_in_kwh": false});
        let (status, body) = json_of(&app, api("PUT", "/api/v1/charger-models", None, Some(&support), Some(spec))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body["error"].as_str().unwrap_or_default().contains("role"), "{body}");
        assert_eq!(status_of(&app, "forget_readings_before_drop", "site=1", Some(&support)).await, StatusCode::FORBIDDEN);
        // A retailer admin is no operator.
        let (status, _) = json_of(&app, api("GET", "/api/v1/chargers", None, Some(&manager), None)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = json_of(&app, api("PUT", "/api/v1/sessions/1/needs", None, Some(&manager), Some(needs))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}

on_both_backends! {
    async fn every_change_is_in_the_audit_log_and_each_tenant_reads_only_its_own(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app(&t.db);
        let token = seed::OPERATOR_API_TOKEN;
        // An operator's change and a retailer admin's invitation.
        let spec = json!({"vendor": "Acme", "model": "X1", "lenient": true, "meter_in_kwh": false});
        let (status, body) = json_of(&app, api("PUT", "/api/v1/charger-models", Some(token), None, Some(spec))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let fresh = &seed::RETAILERS[0];
        let manager = sign_in(&app, fresh.login, fresh.password).await;
        let invite = json!({"email": "till@freshmart.example", "role": "retailer_viewer"});
        let (status, body) = json_of(&app, api("POST", "/api/v1/users", None, Some(&manager), Some(invite))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");

        let (status, log) = json_of(&app, api("GET", "/api/v1/audit", Some(token), None, None)).await;
        assert_eq!(status, StatusCode::OK, "{log}");
        let actions: Vec<&str> = log.as_array().expect("list").iter().filter_map(|e| e["action"].as_str()).collect();
        assert_eq!(actions, ["user.invite", "charger_model.put"], "newest first");
        assert_eq!(log[1]["actor"], "token:demo operator");
        assert_eq!(log[1]["detail"]["model"], "X1");
        assert_eq!(log[0]["actor"], fresh.login);
        assert_eq!(log[0]["actor_role"], "retailer_admin");

        // The retailer admin reads their own retailer's changes, not the network's.
        let (status, theirs) = json_of(&app, api("GET", "/api/v1/audit", None, Some(&manager), None)).await;
        assert_eq!(status, StatusCode::OK, "{theirs}");
        assert_eq!(theirs.as_array().expect("list").len(), 1, "{theirs}");
        assert_eq!(theirs[0]["action"], "user.invite");
        // The other retailer's admin sees none of it; viewers and support may not read it at all.
        let urban = &seed::RETAILERS[1];
        let other = sign_in(&app, urban.login, urban.password).await;
        let (_, none) = json_of(&app, api("GET", "/api/v1/audit", None, Some(&other), None)).await;
        assert_eq!(none, json!([]));
        let viewer = sign_in(&app, fresh.viewer_login, fresh.viewer_password).await;
        assert_eq!(json_of(&app, api("GET", "/api/v1/audit", None, Some(&viewer), None)).await.0, StatusCode::FORBIDDEN);
        let support = sign_in(&app, seed::SUPPORT_EMAIL, seed::SUPPORT_PASSWORD).await;
        assert_eq!(json_of(&app, api("GET", "/api/v1/audit", None, Some(&support), None)).await.0, StatusCode::FORBIDDEN);
        assert_eq!(json_of(&app, api("GET", "/api/v1/audit?limit=0", Some(token), None, None)).await.0, StatusCode::BAD_REQUEST);
    }
}

on_both_backends! {
    async fn an_invited_person_sets_a_password_once_and_signs_in(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app(&t.db);
        let fresh = &seed::RETAILERS[0];
        let manager = sign_in(&app, fresh.login, fresh.password).await;
        // A retailer admin cannot hand out operator roles, nor roles at another retailer.
        for (role, retailer) in [("operator_support", Value::Null), ("retailer_viewer", json!(2))] {
            let invite = json!({"email": "x@shop.example", "role": role, "retailer_id": retailer});
            let (status, body) = json_of(&app, api("POST", "/api/v1/users", None, Some(&manager), Some(invite))).await;
            assert!(status == StatusCode::FORBIDDEN || status == StatusCode::UNPROCESSABLE_ENTITY, "{role}: {status} {body}");
        }
        let bad = json!({"email": "not-an-address", "role": "retailer_viewer"});
        assert_eq!(json_of(&app, api("POST", "/api/v1/users", None, Some(&manager), Some(bad))).await.0, StatusCode::UNPROCESSABLE_ENTITY);
        let invite = json!({"email": "New.Staff@freshmart.example", "role": "retailer_viewer"});
        let (status, invited) = json_of(&app, api("POST", "/api/v1/users", None, Some(&manager), Some(invite.clone()))).await;
        assert_eq!(status, StatusCode::CREATED, "{invited}");
        assert_eq!(invited["user"]["has_password"], false);
        assert_eq!(invited["mailed"], false, "no mail server in this test");
        assert_eq!(json_of(&app, api("POST", "/api/v1/users", None, Some(&manager), Some(invite))).await.0, StatusCode::CONFLICT);
        let link = invited["invite_url"].as_str().expect("link").to_owned();
        let token = link.rsplit('/').next().expect("token").to_owned();

        // No password works before one is chosen.
        let form = "email=new.staff%40freshmart.example&password=anything-at-all";
        assert_eq!(status_of(&app, "sign_in", form, None).await, StatusCode::UNAUTHORIZED);
        let (_, _, live) = send(&app, server_fn("password_link_live", &format!("token={token}"), None)).await;
        assert_eq!(live, "true");
        // Too short: refused, and the link still works.
        let (status, _, body) = send(&app, server_fn("set_password", &format!("token={token}&password=short&confirm=short"), None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("at least 10"), "{body}");
        let (status, _, body) = send(&app, server_fn("set_password", &format!("token={token}&password=a-good-long-one&confirm=another-one"), None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("differ"), "{body}");
        let good = format!("token={token}&password=a-good-long-one&confirm=a-good-long-one");
        let (status, _, body) = send(&app, server_fn("set_password", &good, None)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Used once: gone.
        let (status, _, body) = send(&app, server_fn("set_password", &good, None)).await;
        assert_eq!(status, StatusCode::GONE, "{body}");
        let viewer = sign_in(&app, "new.staff@freshmart.example", "a-good-long-one").await;
        let (status, _, body) = send(&app, server_fn("retailer_overview", "", Some(&viewer))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("FreshMart Camden"), "{body}");

        // Her manager lists, signs out and removes her; another retailer's admin cannot even see her.
        let (_, listed) = json_of(&app, api("GET", "/api/v1/users", None, Some(&manager), None)).await;
        let mine: Vec<&str> = listed.as_array().expect("list").iter().filter_map(|u| u["email"].as_str()).collect();
        assert!(mine.contains(&"new.staff@freshmart.example") && !mine.iter().any(|e| e.contains("urbanpod")), "{listed}");
        let id = invited["user"]["id"].as_i64().expect("id");
        let urban = sign_in(&app, seed::RETAILERS[1].login, seed::RETAILERS[1].password).await;
        let uri = format!("/api/v1/users/{id}");
        assert_eq!(json_of(&app, api("DELETE", &uri, None, Some(&urban), None)).await.0, StatusCode::NOT_FOUND);
        let (status, ended) = json_of(&app, api("POST", &format!("{uri}/sign-out"), None, Some(&manager), Some(json!({})))).await;
        assert_eq!((status, ended["ended"].as_i64()), (StatusCode::OK, Some(1)), "{ended}");
        assert_eq!(status_of(&app, "retailer_overview", "", Some(&viewer)).await, StatusCode::UNAUTHORIZED);
        assert_eq!(json_of(&app, api("DELETE", &uri, None, Some(&manager), None)).await.0, StatusCode::NO_CONTENT);
        assert_eq!(status_of(&app, "sign_in", "email=new.staff%40freshmart.example&password=a-good-long-one", None).await, StatusCode::UNAUTHORIZED);
    }
}

on_both_backends! {
    async fn repeated_wrong_passwords_lock_the_account_out_with_a_clear_message(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app(&t.db);
        let wrong = "email=operator%40forecourt.local&password=not-the-password";
        for attempt in 0..5 {
            assert_eq!(status_of(&app, "sign_in", wrong, None).await, StatusCode::UNAUTHORIZED, "attempt {attempt}");
        }
        // Locked: even the right password waits, and the answer says for how long.
        let right = format!("email=operator%40forecourt.local&password={}", seed::OPERATOR_PASSWORD);
        let (status, headers, body) = send(&app, server_fn("sign_in", &right, None)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(body.contains("try again in 15 minutes"), "{body}");
        assert!(headers.get(header::SET_COOKIE).is_none());
        // Other accounts are not locked with it.
        sign_in(&app, seed::SUPPORT_EMAIL, seed::SUPPORT_PASSWORD).await;
    }
}

on_both_backends! {
    async fn signing_in_again_rotates_the_session_and_everywhere_ends_them_all(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app(&t.db);
        let phone = sign_in(&app, seed::OPERATOR_EMAIL, seed::OPERATOR_PASSWORD).await;
        let laptop = sign_in(&app, seed::OPERATOR_EMAIL, seed::OPERATOR_PASSWORD).await;
        // Signing in from a browser that held a session replaces it: the old token is dead.
        let form = format!("email=operator%40forecourt.local&password={}", seed::OPERATOR_PASSWORD);
        let (status, headers, _) = send(&app, server_fn("sign_in", &form, Some(&phone))).await;
        assert!(status.is_success() || status.is_redirection());
        let rotated = headers[header::SET_COOKIE].to_str().expect("ascii").split(';').next().expect("pair").to_owned();
        assert_ne!(rotated, phone);
        assert_eq!(status_of(&app, "network_chargers", "", Some(&phone)).await, StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(&app, "network_chargers", "", Some(&rotated)).await, StatusCode::OK);
        assert_eq!(status_of(&app, "network_chargers", "", Some(&laptop)).await, StatusCode::OK);
        // Everywhere: both end.
        let (status, _, body) = send(&app, server_fn("sign_out_everywhere", "", Some(&laptop))).await;
        assert!(status.is_success() || status.is_redirection(), "{status} {body}");
        for cookie in [&rotated, &laptop] {
            assert_eq!(status_of(&app, "network_chargers", "", Some(cookie)).await, StatusCode::UNAUTHORIZED);
        }
    }
}

on_both_backends! {
    async fn a_password_change_needs_the_current_one_and_ends_the_other_sign_ins(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app(&t.db);
        let here = sign_in(&app, seed::SUPPORT_EMAIL, seed::SUPPORT_PASSWORD).await;
        let elsewhere = sign_in(&app, seed::SUPPORT_EMAIL, seed::SUPPORT_PASSWORD).await;
        let (status, _, body) = send(&app, server_fn("change_password", "current=wrong-one-here&password=brand-new-secret&confirm=brand-new-secret", Some(&here))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let form = format!("current={}&password=brand-new-secret&confirm=brand-new-secret", seed::SUPPORT_PASSWORD);
        let (status, _, body) = send(&app, server_fn("change_password", &form, Some(&here))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(status_of(&app, "network_chargers", "", Some(&here)).await, StatusCode::OK, "this sign-in stays");
        assert_eq!(status_of(&app, "network_chargers", "", Some(&elsewhere)).await, StatusCode::UNAUTHORIZED);
        sign_in(&app, seed::SUPPORT_EMAIL, "brand-new-secret").await;
        assert_eq!(status_of(&app, "change_password", &form, None).await, StatusCode::UNAUTHORIZED);
    }
}

on_both_backends! {
    async fn another_sites_page_cannot_make_a_browser_change_anything(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app(&t.db);
        let operator = sign_in(&app, seed::OPERATOR_EMAIL, seed::OPERATOR_PASSWORD).await;
        let with = |req: Request<Body>, pairs: &[(&str, &str)]| {
            let (mut parts, body) = req.into_parts();
            for (name, value) in pairs {
                parts.headers.insert(header::HeaderName::from_bytes(name.as_bytes()).expect("name"), value.parse().expect("value"));
            }
            Request::from_parts(parts, body)
        };
        // A cross-site form post to a server function: refused, whether it carries a cookie or
        // not (no signing a visitor in to someone else's account either).
        let priority = server_fn("set_session_priority", "session=1&priority=2", Some(&operator));
        let (status, _, body) = send(&app, with(priority, &[("sec-fetch-site", "cross-site")])).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("cross-site"), "{body}");
        let login = server_fn("sign_in", &format!("email=operator%40forecourt.local&password={}", seed::OPERATOR_PASSWORD), None);
        let (status, headers, _) = send(&app, with(login, &[("origin", "https://evil.example"), ("host", "cp.example")])).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(headers.get(header::SET_COOKIE).is_none());
        // Our own page's request goes through.
        let own = server_fn("set_session_priority", "session=424242&priority=2", Some(&operator));
        assert_eq!(send(&app, with(own, &[("sec-fetch-site", "same-origin")])).await.0, StatusCode::NOT_FOUND);
        // The JSON API with a cookie takes JSON only: a form cannot send it.
        let form_post = Request::post("/api/v1/charger-requests/CP-X/reject")
            .header(header::COOKIE, &operator)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("{}"))
            .expect("request");
        assert_eq!(send(&app, form_post).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        // An API token is no cookie: another site cannot make a browser send it, so no check applies.
        let needs: Value = serde_json::from_str(NEEDS).expect("json");
        let token = api("PUT", "/api/v1/sessions/424242/needs", Some(seed::OPERATOR_API_TOKEN), None, Some(needs));
        assert_eq!(send(&app, with(token, &[("sec-fetch-site", "cross-site")])).await.0, StatusCode::NOT_FOUND);
    }
}

on_both_backends! {
    async fn a_drivers_plan_needs_the_code_on_the_chargers_sticker(t: &TestDb) {
        seed::seed_if_empty(&t.db).await.expect("seed");
        let app = app(&t.db);
        let charger = app::domain::ChargerId::parse("UP-ZUI-01").expect("id");
        let code = server::db::chargers::presence_code(&t.db, &charger, 1).await.expect("q").expect("seeded connectors have one");
        assert!(app::domain::PresenceCode::parse(&code).is_some(), "{code}");
        let plan = |presence: &str| format!("charger=UP-ZUI-01&connector=1&leave_at=18%3A00&energy_kwh=20{presence}");
        for without in ["", "&presence=", "&presence=AAAAAAAA"] {
            let (status, _, body) = send(&app, server_fn("state_charge_plan", &plan(without), None)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{without}: {body}");
            assert!(body.contains("scan the QR code"), "{body}");
        }
        let (status, _, body) = send(&app, server_fn("state_charge_plan", &plan(&format!("&presence={}", code.to_lowercase())), None)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // The code never reaches the public page's data.
        let (_, _, page) = send(&app, server_fn("connector_page", "charger=UP-ZUI-01&connector=1", None)).await;
        assert!(!page.contains(&code), "{page}");
    }
}

on_both_backends! {
    async fn metrics_can_be_put_behind_a_token(t: &TestDb) {
        let network = server::network::Network::without_balancing(t.db.clone(), Default::default());
        let state = crate::http::state_with(&t.db, network).metrics_behind(Some("scrape-me".to_owned()));
        let app = server::http::router(state);
        assert_eq!(send(&app, crate::http::get("/metrics")).await.0, StatusCode::UNAUTHORIZED);
        let wrong = api("GET", "/metrics", Some("guess"), None, None);
        assert_eq!(send(&app, wrong).await.0, StatusCode::UNAUTHORIZED);
        let (status, _, body) = send(&app, api("GET", "/metrics", Some("scrape-me"), None, None)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("http_requests_total"), "{body}");
    }
}
