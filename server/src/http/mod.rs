//! The HTTP side: one router that serves the pages (SSR + hydration), server functions, theme
//! assets, health checks and metrics, and shuts down gracefully.

pub mod api;
mod health;

use crate::balancing::Hub;
use crate::db::Db;
use crate::network::Network;
use crate::ocpp::{handshake, CentralSystem};
use crate::themes::Themes;
use crate::web::WebBackend;
use app::api::ssr::SharedBackend;
use app::{shell, App};
use axum::body::Body;
use axum::extract::{FromRef, Path, State};
use axum::http::{header, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::sync::Arc;
use std::time::Instant;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub leptos: LeptosOptions,
    pub db: Db,
    pub themes: Arc<Themes>,
    pub backend: SharedBackend,
    pub ocpp: CentralSystem,
    /// The sites' load balancers.
    pub hub: Hub,
    /// We serve TLS ourselves: every request came over it.
    pub over_tls: bool,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

impl FromRef<AppState> for CentralSystem {
    fn from_ref(state: &AppState) -> Self {
        state.ocpp.clone()
    }
}

impl AppState {
    pub fn new(leptos: LeptosOptions, db: Db, themes: Arc<Themes>, network: Network) -> Self {
        let Network { ocpp, hub } = network;
        let backend: SharedBackend =
            Arc::new(WebBackend { db: db.clone(), themes: themes.clone(), hub: hub.clone() });
        Self { leptos, db, themes, backend, ocpp, hub, over_tls: false }
    }

    /// Serving TLS ourselves (cookies are then `Secure`).
    pub fn served_over_tls(mut self, over_tls: bool) -> Self {
        self.over_tls = over_tls;
        self
    }
}

pub fn router(state: AppState) -> Router {
    // Install the recorder before the first request, so nothing counted before the first scrape is lost.
    health::prometheus();
    let routes = generate_route_list(App);
    let backend = state.backend.clone();
    let context = move || provide_context(backend.clone());
    let options = state.leptos.clone();
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/themes/{slug}/{file}", get(theme_asset))
        .route("/ocpp/{id}", get(handshake::upgrade))
        .merge(api::routes())
        .leptos_routes_with_context(&state, routes, context.clone(), move || shell(options.clone()))
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(context, shell))
        .layer(middleware::from_fn(observe))
        .layer(middleware::from_fn_with_state(state.clone(), mark_tls))
        .with_state(state)
}

/// A request's method as a metrics label: the methods HTTP defines, every other string `other`
/// (a label value is a series kept for good: a stranger must not mint them).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Marks a request that came over TLS, ours or a proxy's that says so (`X-Forwarded-Proto: https`),
/// so the cookies set in answer are `Secure`. Trusting the header is safe here: a false one only
/// makes a cookie the browser will not send back in the clear.
async fn mark_tls(State(state): State<AppState>, mut req: Request<Body>, next: Next) -> Response {
    let proxied_https = req
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    if state.over_tls || proxied_https {
        req.extensions_mut().insert(app::api::ssr::OverTls);
    }
    next.run(req).await
}

/// Counts and times every request for `/metrics`, and logs it.
async fn observe(req: Request<Body>, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    metrics::counter!("http_requests_total", "method" => method_label(&method), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("http_request_duration_seconds").record(elapsed.as_secs_f64());
    tracing::debug!(http.method = %method, http.path = %path, http.status = status, elapsed_ms = elapsed.as_millis() as u64, "request");
    response
}

async fn theme_asset(State(state): State<AppState>, Path((slug, file)): Path<(String, String)>) -> Response {
    let Some(path) = state.themes.logo_path(&slug, &file) else {
        return (StatusCode::NOT_FOUND, "no such theme asset").into_response();
    };
    let content_type = match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "image/webp",
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], bytes)
                .into_response()
        }
        Err(err) => {
            tracing::warn!(file = %path.display(), error = %err, "theme asset unreadable");
            (StatusCode::NOT_FOUND, "no such theme asset").into_response()
        }
    }
}
