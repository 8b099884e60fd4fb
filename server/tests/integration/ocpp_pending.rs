//! Unknown chargers when no site registers them automatically: Pending until an operator accepts
//! them onto a site, over a real WebSocket on port 0 (covers OCTT's "boot pending" CSMS cases).

use crate::on_both_backends;
use app::domain::{Currency, Role, Slug, Tariff};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use server::db::{catalog, tokens, Db};
use server::http::{router, AppState};
use server::network::Network;
use server::ocpp::{OcppSettings, UnknownChargers};
use server::themes::Themes;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;

const TOKEN: &str = "pending-test-operator-token";

async fn closed_site(db: &Db) -> i64 {
    let slug = Slug::parse("shop").expect("slug");
    let retailer = catalog::create_retailer(db, &slug, "Shop", &slug).await.expect("retailer");
    let tariff = catalog::create_tariff(
        db,
        &Tariff { currency: Currency::EUR, per_kwh_minor: 50, session_fee_minor: 0 },
    )
    .await
    .expect("tariff");
    let site = catalog::NewSite {
        retailer,
        name: "Closed site".into(),
        address: "Nowhere 1".into(),
        timezone: "Europe/Amsterdam".into(),
        tariff,
        grid_limit_da: [630; 3],
        auto_register: false,
        free_vend: false,
        store_worst_case_da: 0,
        connector_fallback_da: 0,
    };
    catalog::create_site(db, &site).await.expect("site").0
}

async fn start(db: &Db) -> (axum::Router, std::net::SocketAddr) {
    start_with(db, OcppSettings { unknown_chargers: UnknownChargers::Pending, ..Default::default() }).await
}

async fn start_with(db: &Db, settings: OcppSettings) -> (axum::Router, std::net::SocketAddr) {
    tokens::create_token(db, &server::auth::token_hash(TOKEN), "test", &Role::OperatorAdmin)
        .await
        .expect("token");
    let themes = Themes::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../themes")).expect("themes");
    let network = Network::without_balancing(db.clone(), settings);
    let leptos = leptos::config::LeptosOptions::builder().output_name("forecourt").build();
    let app = router(AppState::new(leptos, db.clone(), Arc::new(themes), network));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = app.clone();
    tokio::spawn(async move { axum::serve(listener, served).await });
    (app, addr)
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: std::net::SocketAddr, id: &str, password: &str) -> Result<Socket, u16> {
    let mut req = format!("ws://{addr}/ocpp/{id}").into_client_request().expect("request");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{password}"));
    req.headers_mut().insert("Authorization", format!("Basic {basic}").parse().expect("header"));
    req.headers_mut().insert("Sec-WebSocket-Protocol", "ocpp1.6".parse().expect("header"));
    match tokio_tungstenite::connect_async(req).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(other) => panic!("unexpected connection failure: {other}"),
    }
}

async fn next_frame(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("json");
        }
    }
}

async fn call(ws: &mut Socket, id: &str, action: &str, payload: Value) -> Value {
    ws.send(Message::Text(json!([2, id, action, payload]).to_string().into())).await.expect("send");
    next_frame(ws).await
}

async fn api(app: &axum::Router, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

const BOOT: &str = r#"{"chargePointVendor": "Acme", "chargePointModel": "Q1"}"#;

on_both_backends! {
    async fn an_unknown_charger_waits_pending_until_an_operator_accepts_it(t: &TestDb) {
        let site = closed_site(&t.db).await;
        let (app, addr) = start(&t.db).await;
        let mut ws = connect(addr, "NEW-CP-1", "first-password").await.expect("pending chargers may connect");

        let boot = call(&mut ws, "b1", "BootNotification", serde_json::from_str(BOOT).expect("json")).await;
        assert_eq!(boot[2]["status"], "Pending", "{boot}");
        let refused = call(&mut ws, "a1", "Authorize", json!({"idTag": "T1"})).await;
        assert_eq!((refused[0].clone(), refused[2].clone()), (json!(4), json!("SecurityError")), "{refused}");
        assert_eq!(call(&mut ws, "h1", "Heartbeat", json!({})).await[0], 3);

        // Someone else presenting the same id with another password is refused.
        assert_eq!(connect(addr, "NEW-CP-1", "other-password").await.err(), Some(401));

        let (status, listed) = api(&app, "GET", "/api/v1/charger-requests", Value::Null).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listed[0]["id"], "NEW-CP-1");
        assert_eq!(listed[0]["vendor"], "Acme");

        let (status, body) = api(&app, "POST", "/api/v1/charger-requests/NEW-CP-1/accept", json!({"site_id": 999})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (status, body) = api(&app, "POST", "/api/v1/charger-requests/NEW-CP-1/accept", json!({"site_id": site})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["boot_requested"], true);

        // The accepted charger is asked to boot again, and now is Accepted.
        let trigger = next_frame(&mut ws).await;
        assert_eq!((trigger[0].clone(), trigger[2].clone()), (json!(2), json!("TriggerMessage")), "{trigger}");
        assert_eq!(trigger[3]["requestedMessage"], "BootNotification");
        ws.send(Message::Text(json!([3, trigger[1], {"status": "Accepted"}]).to_string().into())).await.expect("send");
        let boot = call(&mut ws, "b2", "BootNotification", serde_json::from_str(BOOT).expect("json")).await;
        assert_eq!(boot[2]["status"], "Accepted", "{boot}");
        let authorized = call(&mut ws, "a2", "Authorize", json!({"idTag": "T1"})).await;
        assert_eq!(authorized[0], 3, "{authorized}");
        assert_eq!(authorized[2]["idTagInfo"]["status"], "Invalid", "unknown tag, no free vend: {authorized}");

        // It keeps the password it first presented.
        drop(ws);
        assert!(connect(addr, "NEW-CP-1", "first-password").await.is_ok());
        let (_, listed) = api(&app, "GET", "/api/v1/charger-requests", Value::Null).await;
        assert_eq!(listed, json!([]));
    }
}

on_both_backends! {
    async fn a_rejected_charger_stays_out(t: &TestDb) {
        closed_site(&t.db).await;
        let (app, addr) = start(&t.db).await;
        let ws = connect(addr, "NEW-CP-2", "some-password").await.expect("pending");
        drop(ws);
        let (status, _) = api(&app, "POST", "/api/v1/charger-requests/NEW-CP-2/reject", Value::Null).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(connect(addr, "NEW-CP-2", "some-password").await.err(), Some(401));
        let (status, _) = api(&app, "POST", "/api/v1/charger-requests/NOBODY/reject", Value::Null).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

on_both_backends! {
    async fn no_more_unknown_chargers_wait_than_the_network_allows(t: &TestDb) {
        closed_site(&t.db).await;
        let settings =
            OcppSettings { unknown_chargers: UnknownChargers::Pending, max_pending_chargers: 2, ..Default::default() };
        let (_app, addr) = start_with(&t.db, settings).await;
        let _first = connect(addr, "STRANGER-1", "first-password").await.expect("room for one");
        let _second = connect(addr, "STRANGER-2", "second-password").await.expect("and a second");
        assert_eq!(connect(addr, "STRANGER-3", "third-password").await.err(), Some(503), "the list is full");
        // One already waiting may come back; the list does not grow.
        drop(_first);
        connect(addr, "STRANGER-1", "first-password").await.expect("a waiting charger reconnects");
        assert_eq!(server::db::ocpp::pending_request_count(&t.db).await.expect("count"), 2);
    }
}
