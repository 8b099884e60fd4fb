//! The operator REST API under `/api/v1/` (JSON). Every call says who is asking: an API token
//! (`Authorization: Bearer …`) or an operator's signed-in session. Described by `/api/openapi.json`.

use super::AppState;
use crate::auth;
use crate::db::{self, api as repo, balancing, users, DbError};
use crate::ocpp::frame::OcppVersion;
use crate::ocpp::registry::{CallOutcome, CommandError};
use crate::ocpp::{v16, v201};
use app::domain::{ChargerId, Role, SiteId};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

/// Every API failure: a status and a reason in JSON. Internal details stay in the log.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    extra: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), extra: None }
    }

    /// The same error, its message saying where (which item of a list, say).
    fn with_prefix(mut self, prefix: &str) -> Self {
        self.message.insert_str(0, prefix);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let (Some(Value::Object(extra)), Value::Object(map)) = (self.extra, &mut body) {
            map.extend(extra);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Conflict(what) => ApiError::new(StatusCode::CONFLICT, format!("{what} already exists")),
            other => {
                tracing::error!(error = %other, "API request failed in storage");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

/// An authenticated operator. Retailers' tokens are refused here: this API spans the network.
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "an API token (Authorization: Bearer …) or an operator session is required",
            )
        };
        let role = if let Some(token) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            repo::token_role(&state.db, &auth::token_hash(token.trim())).await?.ok_or_else(unauthorized)?
        } else if let Some(session) = app::api::ssr::session_token_from(&parts.headers) {
            users::session_user(&state.db, &auth::token_hash(&session), db::now_ms())
                .await?
                .ok_or_else(unauthorized)?
                .role
        } else {
            return Err(unauthorized());
        };
        match role {
            Role::Operator => Ok(Operator),
            Role::Retailer(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "this API is for operators")),
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/v1/chargers", get(list_chargers))
        .route("/api/v1/chargers/{id}", get(charger_detail))
        .route("/api/v1/chargers/{id}/frames", get(charger_frames))
        .route("/api/v1/chargers/{id}/commands/{action}", post(send_command))
        .route("/api/v1/sites/{id}/budget", get(site_budget))
        .route("/api/v1/sites/{id}/meter", post(site_meter))
        .route("/api/v1/sites/{id}/meter/readings", delete(forget_meter_readings).post(import_meter_readings))
        .route("/api/v1/sites/{id}/electrics", get(site_electrics).put(put_site_electrics))
        .route("/api/v1/sessions/{id}/needs", put(put_session_needs))
        .route("/api/v1/charger-models", get(list_models).put(put_model))
        .route("/api/v1/charger-requests", get(list_requests))
        .route("/api/v1/charger-requests/{id}/accept", post(accept_request))
        .route("/api/v1/charger-requests/{id}/reject", post(reject_request))
}

fn iso(ms: i64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or(Value::Null, |t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
}

/// A site's live load-balancing budget: limit, store load, allocated and measured per phase,
/// per node of the circuit tree and per connector.
async fn site_budget(
    _: Operator,
    State(state): State<AppState>,
    Path(site): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let budget = state.hub.budget(app::domain::SiteId(site)).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("site {site} is not balanced (unknown, or its configuration is unsafe)"),
        )
    })?;
    serde_json::to_value(budget).map(Json).map_err(|e| {
        tracing::error!(error = %e, "budget did not serialize");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NeedsBody {
    /// When the car leaves: RFC 3339, with an offset.
    #[serde(default)]
    departure: Option<String>,
    #[serde(default)]
    energy_kwh: Option<f64>,
    #[serde(default)]
    priority: i64,
}

/// The most energy a session may be said to want: more than any car's battery.
const MAX_ENERGY_NEED_KWH: f64 = 1000.0;

/// What the driver or an operator states about a running session: when the car leaves, how much
/// energy it wants, its priority. Stored with the transaction and given to the balancer at once.
async fn put_session_needs(
    _: Operator,
    State(state): State<AppState>,
    Path(session): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: NeedsBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"departure\", \"energy_kwh\", \"priority\"}}: {e}"),
        )
    })?;
    let now = crate::db::now_ms();
    let departure_at_ms = match body.departure.as_deref() {
        None => None,
        Some(text) => {
            let at = chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("departure {text:?} is not an RFC 3339 time with an offset: {e}"),
                    )
                })?
                .timestamp_millis();
            if at <= now {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("departure {text} is not in the future"),
                ));
            }
            Some(at)
        }
    };
    let energy_need_wh = match body.energy_kwh {
        None => None,
        Some(kwh) if kwh.is_finite() && kwh > 0.0 && kwh <= MAX_ENERGY_NEED_KWH => {
            Some((kwh * 1000.0).round() as i64)
        }
        Some(kwh) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("energy_kwh {kwh} is not above 0 and at most {MAX_ENERGY_NEED_KWH}"),
            ))
        }
    };
    if !(0..=balancing::MAX_SESSION_PRIORITY).contains(&body.priority) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("priority {} is not between 0 and {}", body.priority, balancing::MAX_SESSION_PRIORITY),
        ));
    }
    let needs = balancing::SessionNeeds { departure_at_ms, energy_need_wh, priority: body.priority };
    match balancing::set_session_needs(&state.db, session, &needs).await? {
        balancing::NeedsStored::Running { charger_id, connector_no } => {
            if let Ok(charger) = ChargerId::parse(&charger_id) {
                state.hub.session_declared(&charger, session, &needs);
            }
            tracing::info!(session.id = session, charger.id = %charger_id, connector = connector_no, ?needs, "session needs stated");
            Ok(Json(json!({
                "session": session, "charger_id": charger_id, "connector_no": connector_no,
                "departure": departure_at_ms.map_or(Value::Null, iso),
                "energy_kwh": energy_need_wh.map(|wh| wh as f64 / 1000.0),
                "priority": needs.priority,
            })))
        }
        balancing::NeedsStored::Ended => {
            Err(ApiError::new(StatusCode::CONFLICT, format!("session {session} has ended")))
        }
        balancing::NeedsStored::Unknown => {
            Err(ApiError::new(StatusCode::NOT_FOUND, format!("no session {session}")))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreReading {
    l1_a: f64,
    l2_a: f64,
    l3_a: f64,
}

/// The site meter's reading of the store's own load, amps per phase.
async fn site_meter(
    _: Operator,
    State(state): State<AppState>,
    Path(site): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let reading: StoreReading = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"l1_a\", \"l2_a\", \"l3_a\"}} in amps: {e}"),
        )
    })?;
    let currents = reading.currents()?;
    if !state.hub.store_meter(app::domain::SiteId(site), currents) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("site {site} is not balanced")));
    }
    Ok(Json(json!({ "status": "accepted" })))
}

impl StoreReading {
    /// Per phase, in tenths of an amp.
    fn currents(&self) -> Result<[crate::balancer::DeciAmps; 3], ApiError> {
        let mut currents = [crate::balancer::DeciAmps::ZERO; 3];
        for (slot, amps) in currents.iter_mut().zip([self.l1_a, self.l2_a, self.l3_a]) {
            if !amps.is_finite() || !(0.0..=10_000.0).contains(&amps) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "each phase's current must be between 0 and 10000 A",
                ));
            }
            // Round up: the store may be drawing a little more than the meter says, never assume less.
            *slot = crate::balancer::DeciAmps::from_f64_ceil(amps);
        }
        Ok(currents)
    }
}

/// Earlier store meter readings, each with when it was taken.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EarlierReadings {
    readings: Vec<EarlierReading>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EarlierReading {
    at: String,
    l1_a: f64,
    l2_a: f64,
    l3_a: f64,
}

/// The most readings one import takes: four weeks of one a minute, and some.
const MAX_IMPORTED_READINGS: usize = 50_000;

/// Imports the site meter's earlier readings (its export, when a site goes live): the balancer
/// learns the store's rise from them at once rather than counting the configured bound for a day.
async fn import_meter_readings(
    _: Operator,
    State(state): State<AppState>,
    Path(site): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let earlier: EarlierReadings = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"readings\": [{{\"at\", \"l1_a\", \"l2_a\", \"l3_a\"}}]}}: {e}"),
        )
    })?;
    if earlier.readings.is_empty() || earlier.readings.len() > MAX_IMPORTED_READINGS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("between 1 and {MAX_IMPORTED_READINGS} readings at a time"),
        ));
    }
    let now_ms = crate::db::now_ms();
    let memory_ms = i64::try_from(crate::balancer::store::MEMORY_DAYS * 24 * 3600 * 1000).unwrap_or(i64::MAX);
    let mut readings = Vec::with_capacity(earlier.readings.len());
    for (k, r) in earlier.readings.iter().enumerate() {
        let at = chrono::DateTime::parse_from_rfc3339(&r.at).map(|t| t.timestamp_millis()).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("reading {k}: `at` is not an RFC 3339 moment: {e}"),
            )
        })?;
        if at > now_ms || at < now_ms - memory_ms {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "reading {k}: taken in the future or more than {} days ago",
                    crate::balancer::store::MEMORY_DAYS
                ),
            ));
        }
        let currents = StoreReading { l1_a: r.l1_a, l2_a: r.l2_a, l3_a: r.l3_a };
        let da = currents.currents().map_err(|e| e.with_prefix(&format!("reading {k}: ")))?;
        readings.push(balancing::StoreReading { measured_at_ms: at, da: da.map(|a| i64::from(a.get())) });
    }
    let kept = state
        .hub
        .import_store_readings(SiteId(site), &readings)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no site {site}")))?;
    let learned = state.hub.budget(SiteId(site)).await.and_then(|b| b.snapshot.store_rise_learned);
    Ok(Json(json!({ "kept": kept, "store_rise_learned": learned })))
}

/// A stretch of store meter readings to forget: `from` (inclusive) to `to` (exclusive), RFC 3339.
#[derive(Debug, Deserialize)]
struct ReadingsWindow {
    from: Option<String>,
    to: Option<String>,
}

/// Forgets the store meter readings of a stretch the operator knows was the meter's fault (a loose
/// clamp reading zeros, say), which would otherwise teach the balancer a rise the store never had
/// and keep it four weeks; the site's balancer learns the rise again from the readings kept.
async fn forget_meter_readings(
    _: Operator,
    State(state): State<AppState>,
    Path(site): Path<i64>,
    Query(window): Query<ReadingsWindow>,
) -> Result<Json<Value>, ApiError> {
    let moment = |name: &str, value: Option<String>| {
        let value = value.ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("`{name}` is required (RFC 3339, e.g. 2026-12-02T08:00:00Z)"),
            )
        })?;
        chrono::DateTime::parse_from_rfc3339(&value).map(|t| t.timestamp_millis()).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("`{name}` is not an RFC 3339 moment: {e}"))
        })
    };
    let (from_ms, to_ms) = (moment("from", window.from)?, moment("to", window.to)?);
    if from_ms >= to_ms {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "`from` must be before `to`"));
    }
    let site = SiteId(site);
    let forgotten = state
        .hub
        .forget_store_readings(site, from_ms, to_ms)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no site {}", site.0)))?;
    let learned = state.hub.budget(site).await.and_then(|b| b.snapshot.store_rise_learned);
    Ok(Json(json!({ "forgotten": forgotten, "store_rise_learned": learned })))
}

/// The site's electrics: grid limit, store worst case, fallback current, circuit tree, connectors.
async fn site_electrics(
    _: Operator,
    State(state): State<AppState>,
    Path(site): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let spec = balancing::electrics_spec(&state.db, SiteId(site))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no site {site}")))?;
    Ok(Json(json!(spec)))
}

/// Replaces the site's electrics after checking the balancer can run them safely; the site's
/// balancer is rebuilt at once and the running sessions carry on.
async fn put_site_electrics(
    _: Operator,
    State(state): State<AppState>,
    Path(site): Path<i64>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    // The error names the field it is about (`site_meter: unknown variant ...`).
    let spec: balancing::ElectricsSpec =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("not a site's electrics: {e}")))?;
    let current = balancing::site(&state.db, SiteId(site))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no site {site}")))?;
    let checked = balancing::electrics_from_spec(&spec, &current).map_err(|e| match e {
        balancing::ElectricsError::Invalid(why) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, why),
        balancing::ElectricsError::Store(e) => e.into(),
    })?;
    let warnings = crate::balancing::check_site(&checked).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("the site cannot be balanced safely: {e}"))
    })?;
    balancing::store_electrics(&state.db, &checked, &spec).await?;
    tracing::info!(
        site.id = site,
        circuits = spec.circuits.len(),
        connectors = spec.connectors.len(),
        "site electrics changed"
    );
    state.hub.rebuild_site(SiteId(site)).await?;
    let stored = balancing::electrics_spec(&state.db, SiteId(site)).await?;
    Ok(Json(json!({ "electrics": stored, "warnings": warnings })))
}

/// Per-model OCPP settings (leniency, kWh meter registers).
async fn list_models(_: Operator, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let models = crate::db::ocpp::model_settings(&state.db).await?;
    Ok(Json(json!(models)))
}

/// Creates or replaces one model's settings; its chargers pick them up at their next boot.
async fn put_model(
    _: Operator,
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let settings: crate::db::ocpp::ModelSettings = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"vendor\", \"model\", \"lenient\", \"meter_in_kwh\", \"note\"}}: {e}"),
        )
    })?;
    // As BootNotification bounds them (chargePointVendor 20, chargePointModel 20; 2.0.1 50 each).
    for (field, value) in [("vendor", &settings.vendor), ("model", &settings.model)] {
        if value.trim().is_empty() || value.chars().count() > 50 {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{field} must be 1 to 50 characters"),
            ));
        }
    }
    crate::db::ocpp::put_model_settings(&state.db, &settings).await?;
    tracing::info!(vendor = %settings.vendor, model = %settings.model, lenient = settings.lenient, meter_in_kwh = settings.meter_in_kwh, "charger model settings changed");
    Ok(Json(json!(settings)))
}

/// Unknown chargers waiting for an operator (the `--unknown-chargers pending` policy).
async fn list_requests(_: Operator, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let requests = crate::db::ocpp::charger_requests(&state.db).await?;
    Ok(Json(Value::Array(
        requests
            .into_iter()
            .map(|r| {
                json!({
                    "id": r.charger_id, "status": r.status, "vendor": r.vendor, "model": r.model,
                    "ocpp_version": r.ocpp_version, "first_seen_at": iso(r.first_seen_at), "last_seen_at": iso(r.last_seen_at),
                })
            })
            .collect(),
    )))
}

#[derive(Deserialize)]
struct AcceptRequest {
    site_id: i64,
}

/// Accepts a waiting charger onto a site. If it is connected it is asked to boot again at once.
async fn accept_request(
    _: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = charger_id(&id)?;
    let AcceptRequest { site_id } = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("expected {{\"site_id\": N}}: {e}")))?;
    let site = app::domain::SiteId(site_id);
    if !crate::db::ocpp::site_exists(&state.db, site).await? {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("no site {site_id}")));
    }
    if !crate::db::ocpp::accept_charger_request(&state.db, &id, site).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no charger {id} is waiting")));
    }
    tracing::info!(charger.id = %id, site.id = %site, "operator accepted a waiting charger");
    let connected = state.ocpp.registry.is_connected(&id);
    if connected {
        // Both versions' TriggerMessage take the same payload for a boot.
        let registry = state.ocpp.registry.clone();
        let wait = state.ocpp.settings.call_timeout;
        tokio::spawn(async move {
            let outcome = registry
                .call(&id, "TriggerMessage", json!({"requestedMessage": "BootNotification"}), wait)
                .await;
            tracing::info!(charger.id = %id, ?outcome, "asked the accepted charger to boot again");
        });
    }
    Ok(Json(json!({ "status": "accepted", "site_id": site_id, "boot_requested": connected })))
}

async fn reject_request(
    _: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = charger_id(&id)?;
    if !crate::db::ocpp::reject_charger_request(&state.db, &id).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no charger {id} is waiting")));
    }
    tracing::info!(charger.id = %id, "operator rejected a waiting charger");
    Ok(Json(json!({ "status": "rejected" })))
}

fn charger_id(raw: &str) -> Result<ChargerId, ApiError> {
    ChargerId::parse(raw).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

async fn list_chargers(_: Operator, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mut rows = repo::chargers(&state.db).await?;
    for row in &mut rows {
        // The live registry knows best whether a connection is up right now.
        if let Some(id) = row.get("id").and_then(Value::as_str).and_then(|s| ChargerId::parse(s).ok()) {
            row["connected"] = json!(state.ocpp.registry.is_connected(&id));
        }
    }
    Ok(Json(Value::Array(rows)))
}

async fn charger_detail(
    _: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = charger_id(&id)?;
    let mut detail = repo::charger_detail(&state.db, &id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such charger"))?;
    detail["connected"] = json!(state.ocpp.registry.is_connected(&id));
    Ok(Json(detail))
}

#[derive(Deserialize)]
struct FramesQuery {
    limit: Option<i64>,
}

async fn charger_frames(
    _: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<FramesQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = charger_id(&id)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(Value::Array(repo::frames(&state.db, &id, limit).await?)))
}

/// Sends one OCPP command and waits for the charger's answer (or the call timeout).
async fn send_command(
    _: Operator,
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = charger_id(&id)?;
    let payload: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))?
    };
    let Some(version) = state.ocpp.registry.version_of(&id) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("charger {id} is offline; the command was not sent"),
        ));
    };
    let known = match version {
        OcppVersion::V16 => v16::Command::NAMES,
        OcppVersion::V201 => v201::Command::NAMES,
    };
    if !known.contains(&action.as_str()) {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("{action} is not an OCPP {version} command"),
            extra: Some(json!({ "commands": known })),
        });
    }
    let checked = match version {
        OcppVersion::V16 => v16::command(&action, payload).and_then(|c| c.payload()),
        OcppVersion::V201 => v201::command(&action, payload).and_then(|c| c.payload()),
    }
    .map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the payload does not fit {action}: {}", e.description),
        )
    })?;
    tracing::info!(charger.id = %id, action, "command sent by operator");
    let outcome =
        state.ocpp.registry.call(&id, &action, checked, state.ocpp.settings.call_timeout).await.map_err(
            |e| match e {
                CommandError::NotConnected(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
                CommandError::Busy(_) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
            },
        )?;
    match outcome {
        CallOutcome::Answered(response) => {
            // Passed on either way (the operator needs to see it), but flagged when it breaks the schema.
            let checked = match version {
                OcppVersion::V16 => v16::check_answer(&action, response.clone()),
                OcppVersion::V201 => v201::check_answer(&action, response.clone()),
            };
            let mut body = json!({ "status": "answered", "response": response });
            if let Err(problem) = checked {
                tracing::warn!(charger.id = %id, action, problem = %problem.description, "the charger's answer breaks the OCPP schema");
                body["schema_violation"] = json!(problem.description);
            }
            Ok(Json(body))
        }
        CallOutcome::CallError { code, description, details } => Err(ApiError {
            status: StatusCode::BAD_GATEWAY,
            message: format!("the charger answered with {code}: {description}"),
            extra: Some(
                json!({ "status": "call_error", "code": code, "description": description, "details": details }),
            ),
        }),
        CallOutcome::Timeout => Err(ApiError {
            status: StatusCode::GATEWAY_TIMEOUT,
            message: "the charger did not answer in time".into(),
            extra: Some(json!({ "status": "timeout" })),
        }),
        CallOutcome::Disconnected => Err(ApiError {
            status: StatusCode::BAD_GATEWAY,
            message: "the charger disconnected before answering".into(),
            extra: Some(json!({ "status": "disconnected" })),
        }),
    }
}

async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

/// The API's description (OpenAPI 3.1), written by hand next to the routes it describes.
pub fn openapi_document() -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let id_param =
        json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "maxLength": 48}});
    let site_param = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}});
    let phases = json!({"type": "array", "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 10000}, "minItems": 3, "maxItems": 3, "description": "amps on L1, L2, L3"});
    let electrics = json!({"type": "object", "required": ["grid_limit_a", "store_worst_case_a", "connector_fallback_a"], "additionalProperties": false, "properties": {
        "grid_limit_a": phases,
        "store_worst_case_a": {"type": "number", "minimum": 0},
        "connector_fallback_a": {"type": "number", "minimum": 0},
        "store_meter_charger": {"type": ["string", "null"], "description": "a charger of the site whose connector 0 meter (MeterValues, Current.Import per phase) measures the site meter's readings"},
        "site_meter": {"enum": ["store", "incomer"], "description": "what the site meter measures: the store's own load (default) or the grid connection with the cars (main incomer); the cars' own readings are taken off"},
        "handover": {"type": ["object", "null"], "required": ["lead_s", "clock_skew_s"], "additionalProperties": false,
            "description": "handovers scheduled ahead (absent or null: off): a decrease that only frees capacity for another session switches lead_s after it is sent, and the increase it pays for starts two clock skews later; for chargers that take two-period schedules and keep their clocks within clock_skew_s of ours (checked against the timestamps each charger sends: one whose clock is off by more is sent plain limits, without handovers or leases, until it has agreed with ours for ten minutes)",
            "properties": {"lead_s": {"type": "number", "minimum": 1, "maximum": balancing::HANDOVER_MAX_LEAD_S}, "clock_skew_s": {"type": "number", "minimum": 0, "maximum": balancing::HANDOVER_MAX_SKEW_S}}},
        "idle_default_raise_after_s": {"type": "number", "minimum": 0, "maximum": balancing::IDLE_RAISE_AFTER_MAX_S, "default": balancing::IDLE_RAISE_AFTER_DEFAULT_S,
            "description": "seconds the room for an idle connector's own default (the fallback) must last before it goes back up; decreases never wait. A car arriving soon after another left then sends no profile to every idle connector and back"},
        "store_meter_frozen_after_s": {"type": "number", "minimum": 0, "maximum": balancing::STORE_METER_FROZEN_AFTER_MAX_S, "default": balancing::STORE_METER_FROZEN_AFTER_DEFAULT_S,
            "description": "seconds the store meter may send one and the same reading (to the tenth of an amp, on every phase, any of them 2 A or more) before its readings are set aside and the store's worst case counted until it moves again: a gateway that lost its meter and repeats the last value. 0: never, for a meter of whole amps on a store that truly is that still"},
        "circuits": {"type": "array", "items": {"type": "object", "required": ["name", "limit_a"], "properties": {
            "name": {"type": "string"}, "parent": {"type": ["string", "null"]}, "limit_a": phases}}},
        "connectors": {"type": "array", "items": {"type": "object", "required": ["charger_id", "connector_no", "max_current_a", "phases", "rotation"], "properties": {
            "charger_id": {"type": "string"}, "connector_no": {"type": "integer"}, "max_current_a": {"type": "integer"}, "phases": {"enum": [1, 3]},
            "rotation": {"enum": ["L1L2L3", "L2L3L1", "L3L1L2", "L1L3L2", "L3L2L1", "L2L1L3"]}, "circuit": {"type": ["string", "null"]}}}}}});
    let model = json!({"type": "object", "required": ["vendor", "model"], "properties": {
        "vendor": {"type": "string", "maxLength": 50, "description": "as the model's BootNotification names it"},
        "model": {"type": "string", "maxLength": 50},
        "lenient": {"type": "boolean", "description": "accept lengths and misspelt enum values outside the schema, with a warning; drop meter samples of unknown kinds"},
        "meter_in_kwh": {"type": "boolean", "description": "OCPP 1.6 meterStart / meterStop are sent in kWh"},
        "session_register": {"type": "boolean", "description": "the energy register restarts at 0 with each transaction (most count over the meter's lifetime)"},
        "note": {"type": "string"}}});
    let errors = |codes: &[(&str, &str)]| -> Value {
        let mut map = serde_json::Map::new();
        for (code, what) in codes {
            map.insert(
                (*code).into(),
                json!({"description": what, "content": {"application/json": {"schema": error}}}),
            );
        }
        Value::Object(map)
    };
    let mut list_responses = errors(&[("401", "not authenticated"), ("403", "not an operator")]);
    list_responses["200"] = json!({"description": "every charger", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Charger"}}}}});
    let mut detail_responses = errors(&[("401", "not authenticated"), ("404", "no such charger")]);
    detail_responses["200"] = json!({"description": "the charger with its connectors and recent transactions", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChargerDetail"}}}});
    let mut frame_responses = errors(&[("401", "not authenticated")]);
    frame_responses["200"] = json!({"description": "the newest raw OCPP frames, both directions", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}});
    let mut command_responses = errors(&[
        ("400", "the payload does not fit the action's schema"),
        ("401", "not authenticated"),
        ("404", "not a command of the charger's OCPP version"),
        ("409", "the charger is offline; nothing was sent"),
        ("502", "the charger answered with a CALLERROR or disconnected"),
        ("504", "the charger did not answer in time"),
    ]);
    command_responses["200"] = json!({"description": "the charger's answer", "content": {"application/json": {"schema": {"type": "object", "properties": {"status": {"const": "answered"}, "response": {"type": "object"}, "schema_violation": {"type": "string", "description": "present when the answer breaks the action's OCPP response schema"}}}}}});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Forecourt operator API", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "session": {"type": "apiKey", "in": "cookie", "name": "forecourt_session"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "Charger": {"type": "object", "properties": {
                    "id": {"type": "string"}, "site": {"type": "string"}, "online": {"type": "boolean"}, "connected": {"type": "boolean"},
                    "ocpp_version": {"type": ["string", "null"]}, "vendor": {"type": ["string", "null"]}, "model": {"type": ["string", "null"]},
                    "firmware": {"type": ["string", "null"]}, "registration": {"type": "string"},
                    "last_seen_at": {"type": ["string", "null"], "format": "date-time"}, "offline_since": {"type": ["string", "null"], "format": "date-time"}}},
                "ChargerDetail": {"allOf": [{"$ref": "#/components/schemas/Charger"}, {"type": "object", "properties": {
                    "connectors": {"type": "array", "items": {"type": "object"}}, "transactions": {"type": "array", "items": {"type": "object"}}}}]}
            }
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/api/v1/chargers": {"get": {"summary": "List chargers with live status", "responses": list_responses}},
            "/api/v1/chargers/{id}": {"get": {"summary": "One charger, its connectors and recent transactions", "parameters": [id_param], "responses": detail_responses}},
            "/api/v1/chargers/{id}/frames": {"get": {"summary": "The charger's raw OCPP frame log", "parameters": [id_param, {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}], "responses": frame_responses}},
            "/api/v1/chargers/{id}/commands/{action}": {"post": {
                "summary": "Send an OCPP command and wait for the answer",
                "description": "`action` is an OCPP action of the charger's version (1.6: RemoteStartTransaction, Reset, …; 2.0.1: RequestStartTransaction, SetVariables, …); the body is that action's request payload.",
                "parameters": [id_param, {"name": "action", "in": "path", "required": true, "schema": {"type": "string"}}],
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": command_responses}},
            "/api/v1/sites/{id}/budget": {"get": {"summary": "The site's live load-balancing budget: limits, store load, allocated and measured current per phase, per connector",
                "parameters": [site_param], "responses": {"200": {"description": "the budget"}, "404": {"description": "no such balanced site", "content": {"application/json": {"schema": error}}}}}},
            "/api/v1/sites/{id}/meter": {"post": {"summary": "The site meter's reading, amps per phase: the store's own load, or with site_meter incomer the whole connection's",
                "parameters": [site_param],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["l1_a", "l2_a", "l3_a"],
                    "properties": {"l1_a": {"type": "number", "minimum": 0}, "l2_a": {"type": "number", "minimum": 0}, "l3_a": {"type": "number", "minimum": 0}}}}}},
                "responses": {"200": {"description": "accepted"}, "400": {"description": "not a reading"}, "404": {"description": "no such balanced site"}, "422": {"description": "a current out of range"}}}},
            "/api/v1/sites/{id}/meter/readings": {"delete": {"summary": "Forget the store meter readings of a stretch that was the meter's fault (they would teach the balancer a rise the store never had, kept four weeks); the site's balancer learns the rise again from the readings kept",
                "parameters": [site_param,
                    {"name": "from", "in": "query", "required": true, "schema": {"type": "string", "format": "date-time"}, "description": "first moment forgotten (inclusive)"},
                    {"name": "to", "in": "query", "required": true, "schema": {"type": "string", "format": "date-time"}, "description": "end of the stretch (exclusive)"}],
                "responses": {"200": {"description": "how many readings were forgotten, and the rise learned now"}, "400": {"description": "no stretch, or not RFC 3339, or from not before to"}, "404": {"description": "no such site"}}},
                "post": {"summary": "Import the site meter's earlier readings (its export, when a site goes live): the balancer learns the store's rise from them at once rather than counting the configured bound for a day",
                "parameters": [site_param],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["readings"], "properties": {
                    "readings": {"type": "array", "minItems": 1, "maxItems": MAX_IMPORTED_READINGS, "items": {"type": "object", "required": ["at", "l1_a", "l2_a", "l3_a"], "properties": {
                        "at": {"type": "string", "format": "date-time", "description": "when it was taken: within the last four weeks"},
                        "l1_a": {"type": "number"}, "l2_a": {"type": "number"}, "l3_a": {"type": "number"}}}}}}}}},
                "responses": {"200": {"description": "how many readings were kept, and the rise learned now"}, "400": {"description": "not that shape, or a moment not RFC 3339"}, "404": {"description": "no such site"}, "422": {"description": "none or too many, a reading in the future or older than four weeks, or a current out of range"}}}},
            "/api/v1/sites/{id}/electrics": {
                "get": {"summary": "The site's electrics: grid limit, store worst case, fallback current, circuit tree, connector ratings and wiring", "parameters": [site_param], "responses": {"200": {"description": "the electrics", "content": {"application/json": {"schema": electrics}}}, "404": {"description": "no such site"}}},
                "put": {"summary": "Replace the site's electrics (checked; the balancer is rebuilt at once, running sessions carry on)", "parameters": [site_param],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": electrics}}},
                    "responses": {"200": {"description": "the stored electrics and the balancer's warnings"}, "400": {"description": "not a site's electrics"}, "404": {"description": "no such site"}, "422": {"description": "values out of range, unknown circuits or connectors, or a tree the balancer refuses"}}}},
            "/api/v1/sessions/{id}/needs": {"put": {"summary": "What the driver or an operator states about a running session, for the load balancer (replaces what was stated before; the car's own word, 2.0.1 NotifyEVChargingNeeds, fills what is not stated)",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}, "description": "the session (transaction) id"}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "properties": {
                    "departure": {"type": ["string", "null"], "format": "date-time", "description": "when the car leaves; in the future, with an offset"},
                    "energy_kwh": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": MAX_ENERGY_NEED_KWH, "description": "energy wanted in the session"},
                    "priority": {"type": "integer", "minimum": 0, "maximum": balancing::MAX_SESSION_PRIORITY, "default": 0, "description": "a larger share, and paused last"}}}}}},
                "responses": {"200": {"description": "stored and given to the balancer"}, "400": {"description": "not a session's needs"}, "404": {"description": "no such session"},
                    "409": {"description": "the session has ended"}, "422": {"description": "a departure in the past or not a time, an energy or priority out of range"}}}},
            "/api/v1/charger-requests": {"get": {"summary": "Unknown chargers waiting for an operator", "responses": {"200": {"description": "the requests"}}}},
            "/api/v1/charger-requests/{id}/accept": {"post": {"summary": "Accept a waiting charger onto a site", "parameters": [id_param],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["site_id"], "properties": {"site_id": {"type": "integer"}}}}}},
                "responses": {"200": {"description": "accepted"}, "404": {"description": "no such request or site"}}}},
            "/api/v1/charger-requests/{id}/reject": {"post": {"summary": "Refuse a waiting charger", "parameters": [id_param], "responses": {"200": {"description": "rejected"}, "404": {"description": "no such request"}}}},
            "/api/v1/charger-models": {
                "get": {"summary": "Per-model OCPP settings", "responses": {"200": {"description": "every model's settings", "content": {"application/json": {"schema": {"type": "array", "items": model}}}}}},
                "put": {"summary": "Create or replace one model's settings (its chargers pick them up at their next boot)",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": model}}},
                    "responses": {"200": {"description": "the stored settings"}, "400": {"description": "not a model's settings"}, "422": {"description": "vendor or model empty or too long"}}}}
        }
    })
}
