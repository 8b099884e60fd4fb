//! The HTTP side: one router that serves the pages (SSR + hydration), server functions, theme
//! assets, health checks and metrics, and shuts down gracefully.

pub mod api;
mod health;

use crate::accounts::Accounts;
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
    /// Invitations, resets, password changes.
    pub accounts: Arc<Accounts>,
    /// `/metrics` asks for this bearer token, when set.
    pub metrics_token: Option<Arc<str>>,
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
    /// Mailing nothing, its links pointing at the default address.
    pub fn new(leptos: LeptosOptions, db: Db, themes: Arc<Themes>, network: Network) -> Self {
        let accounts = Accounts::new(db.clone(), None, "http://127.0.0.1:3000");
        Self::with_accounts(leptos, db, themes, network, accounts)
    }

    pub fn with_accounts(
        leptos: LeptosOptions,
        db: Db,
        themes: Arc<Themes>,
        network: Network,
        accounts: Accounts,
    ) -> Self {
        let Network { ocpp, hub } = network;
        let accounts = Arc::new(accounts);
        let backend: SharedBackend = Arc::new(WebBackend {
            db: db.clone(),
            sign_ins: Arc::new(crate::access::sign_in_throttles()),
            accounts: accounts.clone(),
            themes: themes.clone(),
            hub: hub.clone(),
        });
        Self { leptos, db, themes, backend, ocpp, hub, over_tls: false, accounts, metrics_token: None }
    }

    /// `/metrics` only with this bearer token.
    pub fn metrics_behind(mut self, token: Option<String>) -> Self {
        self.metrics_token = token.filter(|t| !t.is_empty()).map(Arc::from);
        self
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
        .layer(middleware::from_fn(same_origin_only))
        .layer(middleware::from_fn(observe))
        .layer(middleware::from_fn_with_state(state.clone(), mark_tls))
        .layer(middleware::from_fn(mark_client))
        .with_state(state)
}

/// Notes the address a request came from (the TCP peer), for throttles and the audit log.
async fn mark_client(mut req: Request<Body>, next: Next) -> Response {
    let peer = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    if let Some(ip) = peer {
        req.extensions_mut().insert(app::api::ssr::ClientIp(ip));
    }
    next.run(req).await
}

/// Where a browser says a request comes from, relative to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provenance {
    /// Our own pages, or the person typing the address.
    Ours,
    /// Another site's page made the browser send it.
    CrossSite,
    /// No browser's word on it: a program (curl, a till, a script), or a browser too old to say.
    Unsaid,
}

/// `Sec-Fetch-Site` when the browser sends it (every current one does), else `Origin` against
/// `Host`.
fn provenance(headers: &axum::http::HeaderMap) -> Provenance {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(site) = text("sec-fetch-site") {
        return if site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none") {
            Provenance::Ours
        } else {
            Provenance::CrossSite
        };
    }
    match (text("origin"), text("host")) {
        (Some(origin), Some(host)) => {
            let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            if authority.eq_ignore_ascii_case(host) {
                Provenance::Ours
            } else {
                Provenance::CrossSite
            }
        }
        // `Origin: null` (a sandboxed frame, a redirect across sites) with no Host to compare.
        (Some(_), None) => Provenance::CrossSite,
        (None, _) => Provenance::Unsaid,
    }
}

/// The CSRF defence, beside SameSite cookies: a request that changes something (any method but
/// GET, HEAD, OPTIONS) made by another site's page is refused, whether or not it carries our cookie
/// (so no one can sign a visitor in to their account either). A call with an API token is left
/// alone: another site cannot make a browser send one. A cookie-authenticated POST to the JSON API
/// must say its body is JSON, which no plain HTML form can (a form sends only GET and POST, and a
/// script on another site cannot send PUT or DELETE without the preflight we never grant).
async fn same_origin_only(req: Request<Body>, next: Next) -> Response {
    use axum::http::Method;
    let headers = req.headers();
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !changes || crate::access::has_bearer(headers) {
        return next.run(req).await;
    }
    if provenance(headers) == Provenance::CrossSite {
        tracing::warn!(http.path = %req.uri().path(), "cross-site request refused");
        return (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({ "error": "cross-site request refused" })),
        )
            .into_response();
    }
    let json_api = req.uri().path().starts_with("/api/v1/") && req.method() == Method::POST;
    let with_cookie = app::api::ssr::session_token_from(headers).is_some();
    let says_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if json_api && with_cookie && !says_json {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            axum::Json(
                serde_json::json!({ "error": "send the body as JSON (Content-Type: application/json)" }),
            ),
        )
            .into_response();
    }
    next.run(req).await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> axum::http::HeaderMap {
        let mut map = axum::http::HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header"));
        }
        map
    }

    #[test]
    fn a_browser_says_where_a_request_comes_from() {
        assert_eq!(provenance(&headers(&[("sec-fetch-site", "same-origin")])), Provenance::Ours);
        assert_eq!(provenance(&headers(&[("sec-fetch-site", "none")])), Provenance::Ours);
        assert_eq!(provenance(&headers(&[("sec-fetch-site", "cross-site")])), Provenance::CrossSite);
        // A sibling subdomain is another site as far as our cookies go.
        assert_eq!(provenance(&headers(&[("sec-fetch-site", "same-site")])), Provenance::CrossSite);
        // Sec-Fetch-Site decides when present, whatever Origin says.
        let both = headers(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://a.example"),
            ("host", "a.example"),
        ]);
        assert_eq!(provenance(&both), Provenance::CrossSite);
    }

    #[test]
    fn without_fetch_metadata_origin_is_compared_with_host() {
        let ours = headers(&[("origin", "https://cp.example:8443"), ("host", "cp.example:8443")]);
        assert_eq!(provenance(&ours), Provenance::Ours);
        let theirs = headers(&[("origin", "https://evil.example"), ("host", "cp.example")]);
        assert_eq!(provenance(&theirs), Provenance::CrossSite);
        assert_eq!(
            provenance(&headers(&[("origin", "null"), ("host", "cp.example")])),
            Provenance::CrossSite
        );
        assert_eq!(provenance(&headers(&[("host", "cp.example")])), Provenance::Unsaid);
    }
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
