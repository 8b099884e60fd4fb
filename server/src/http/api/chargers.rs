//! Chargers: the network's list, one charger's story, its raw OCPP frames, and commands sent to it
//! with the charger's answer.

use super::{charger_id, iso, ApiError, Operates, Reader};
use super::{Path, Query};
use crate::db::chargers::{self, ChargerRow, ConnectorRow, FrameRow, TransactionRow};
use crate::http::AppState;
use crate::ocpp::frame::OcppVersion;
use crate::ocpp::registry::{CallOutcome, CommandError};
use crate::ocpp::{v16, v201};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_chargers))
        .routes(routes!(charger_detail))
        .routes(routes!(charger_frames))
        .routes(routes!(send_command))
}

/// A charger with its live status.
#[derive(Serialize, ToSchema)]
pub struct Charger {
    id: String,
    /// The site's name.
    site: String,
    /// As stored: marked online while a connection is up.
    online: bool,
    /// Whether a connection is up right now (the live registry).
    connected: bool,
    ocpp_version: Option<String>,
    vendor: Option<String>,
    model: Option<String>,
    firmware: Option<String>,
    serial: Option<String>,
    /// `accepted`, `pending` or `rejected`.
    registration: String,
    #[schema(format = DateTime)]
    last_seen_at: Option<String>,
    #[schema(format = DateTime)]
    offline_since: Option<String>,
    #[schema(format = DateTime)]
    booted_at: Option<String>,
}

impl Charger {
    fn of(row: ChargerRow, connected: bool) -> Charger {
        Charger {
            id: row.id,
            site: row.site,
            online: row.online,
            connected,
            ocpp_version: row.ocpp_version,
            vendor: row.vendor,
            model: row.model,
            firmware: row.firmware,
            serial: row.serial,
            registration: row.registration,
            last_seen_at: iso(row.last_seen_at),
            offline_since: iso(row.offline_since),
            booted_at: iso(row.booted_at),
        }
    }
}

/// A charger with its connectors and its latest 50 transactions.
#[derive(Serialize, ToSchema)]
pub struct ChargerDetail {
    #[serde(flatten)]
    charger: Charger,
    connectors: Vec<Connector>,
    /// Newest first.
    transactions: Vec<Transaction>,
}

#[derive(Serialize, ToSchema)]
pub struct Connector {
    connector_no: i64,
    /// The last OCPP status it reported.
    status: String,
    #[schema(format = DateTime)]
    status_at: Option<String>,
    max_current_a: i64,
    phases: i64,
    max_power_w: i64,
    /// Printed beside the connector's QR code (and carried in the URL it opens): a driver's phone
    /// shows it to plan the session there.
    presence_code: Option<String>,
}

impl From<ConnectorRow> for Connector {
    fn from(c: ConnectorRow) -> Connector {
        Connector {
            connector_no: c.connector_no,
            status: c.status,
            status_at: iso(c.status_at),
            max_current_a: c.max_current_a,
            phases: c.phases,
            max_power_w: c.max_power_w,
            presence_code: c.presence_code,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Transaction {
    id: i64,
    ocpp_transaction_id: String,
    connector_no: i64,
    id_tag: String,
    status: String,
    #[schema(format = DateTime)]
    started_at: Option<String>,
    #[schema(format = DateTime)]
    stopped_at: Option<String>,
    meter_start_wh: Option<i64>,
    meter_stop_wh: Option<i64>,
    /// Energy delivered, where both register readings are known.
    energy_wh: Option<i64>,
    stop_reason: Option<String>,
    /// Reported stopped without our having seen it start.
    start_unseen: bool,
}

impl From<TransactionRow> for Transaction {
    fn from(t: TransactionRow) -> Transaction {
        Transaction {
            energy_wh: t.meter_start_wh.zip(t.meter_stop_wh).map(|(a, b)| b - a),
            id: t.id,
            ocpp_transaction_id: t.ocpp_transaction_id,
            connector_no: t.connector_no,
            id_tag: t.id_tag,
            status: t.status,
            started_at: iso(t.started_at),
            stopped_at: iso(t.stopped_at),
            meter_start_wh: t.meter_start_wh,
            meter_stop_wh: t.meter_stop_wh,
            stop_reason: t.stop_reason,
            start_unseen: t.start_unseen,
        }
    }
}

/// One raw OCPP frame.
#[derive(Serialize, ToSchema)]
pub struct Frame {
    /// `in` (from the charger) or `out`.
    direction: String,
    #[schema(format = DateTime)]
    at: Option<String>,
    /// The frame's text as it went over the wire, less its secrets (credentials replaced, id tags
    /// to their last four characters) and cut at 16 KiB.
    frame: String,
}

impl From<FrameRow> for Frame {
    fn from(f: FrameRow) -> Frame {
        Frame { direction: f.direction, at: iso(f.at), frame: f.frame }
    }
}

/// List chargers with live status.
#[utoipa::path(get, path = "/api/v1/chargers", tag = "chargers",
    responses(
        (status = 200, description = "every charger", body = Vec<Charger>),
        (status = 401, description = "not authenticated", body = super::ErrorBody),
        (status = 403, description = "not an operator", body = super::ErrorBody),
    ))]
async fn list_chargers(_: Reader, State(state): State<AppState>) -> Result<Json<Vec<Charger>>, ApiError> {
    let rows = chargers::all(&state.db).await?;
    let registry = &state.ocpp.registry;
    Ok(Json(
        rows.into_iter()
            .map(|row| {
                // The live registry knows best whether a connection is up right now.
                let connected =
                    app::domain::ChargerId::parse(&row.id).is_ok_and(|id| registry.is_connected(&id));
                Charger::of(row, connected)
            })
            .collect(),
    ))
}

/// One charger, its connectors and recent transactions.
#[utoipa::path(get, path = "/api/v1/chargers/{id}", tag = "chargers",
    params(("id" = String, Path, description = "the charge point id")),
    responses(
        (status = 200, description = "the charger with its connectors and recent transactions", body = ChargerDetail),
        (status = 400, description = "not a charger id", body = super::ErrorBody),
        (status = 401, description = "not authenticated", body = super::ErrorBody),
        (status = 404, description = "no such charger", body = super::ErrorBody),
    ))]
async fn charger_detail(
    _: Reader,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ChargerDetail>, ApiError> {
    let id = charger_id(&id)?;
    let row = chargers::one(&state.db, &id).await?.ok_or_else(|| ApiError::not_found("no such charger"))?;
    let connectors = chargers::connectors(&state.db, &id).await?;
    let transactions = chargers::recent_transactions(&state.db, &id, 50).await?;
    Ok(Json(ChargerDetail {
        charger: Charger::of(row, state.ocpp.registry.is_connected(&id)),
        connectors: connectors.into_iter().map(Connector::from).collect(),
        transactions: transactions.into_iter().map(Transaction::from).collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FramesQuery {
    /// How many of the newest frames (1 to 1000, 100 unless said).
    limit: Option<i64>,
}

/// The charger's raw OCPP frame log, newest first.
#[utoipa::path(get, path = "/api/v1/chargers/{id}/frames", tag = "chargers",
    params(("id" = String, Path, description = "the charge point id"), FramesQuery),
    responses(
        (status = 200, description = "the newest raw OCPP frames, both directions", body = Vec<Frame>),
        (status = 401, description = "not authenticated", body = super::ErrorBody),
    ))]
async fn charger_frames(
    _: Reader,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<FramesQuery>,
) -> Result<Json<Vec<Frame>>, ApiError> {
    let id = charger_id(&id)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let frames = chargers::frames(&state.db, &id, limit).await?;
    Ok(Json(frames.into_iter().map(Frame::from).collect()))
}

/// A command's answer.
#[derive(Serialize, ToSchema)]
pub struct CommandAnswer {
    /// `answered`.
    status: &'static str,
    /// The charger's answer payload.
    #[schema(value_type = Object)]
    response: Value,
    /// Present when the answer breaks the action's OCPP response schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_violation: Option<String>,
}

/// Send an OCPP command and wait for the answer.
///
/// `action` is an OCPP action of the charger's version (1.6: RemoteStartTransaction, Reset, …;
/// 2.0.1: RequestStartTransaction, SetVariables, …); the body is that action's request payload.
#[utoipa::path(post, path = "/api/v1/chargers/{id}/commands/{action}", tag = "chargers",
    params(("id" = String, Path, description = "the charge point id"), ("action" = String, Path, description = "the OCPP action")),
    request_body(content = Object, description = "the action's request payload (empty: `{}`)", content_type = "application/json"),
    responses(
        (status = 200, description = "the charger's answer", body = CommandAnswer),
        (status = 400, description = "the payload does not fit the action's schema", body = super::ErrorBody),
        (status = 401, description = "not authenticated", body = super::ErrorBody),
        (status = 404, description = "not a command of the charger's OCPP version", body = super::ErrorBody),
        (status = 409, description = "the charger is offline; nothing was sent", body = super::ErrorBody),
        (status = 429, description = "too many commands wait for this charger", body = super::ErrorBody),
        (status = 502, description = "the charger answered with a CALLERROR or disconnected", body = super::ErrorBody),
        (status = 504, description = "the charger did not answer in time", body = super::ErrorBody),
    ))]
async fn send_command(
    Operates(by): Operates,
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<CommandAnswer>, ApiError> {
    let id = charger_id(&id)?;
    // Any JSON here: the action's own schema checks it below.
    let payload: Value =
        if body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { super::read_json(&body)? };
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
        return Err(ApiError::not_found(format!("{action} is not an OCPP {version} command"))
            .with_extra(json!({ "commands": known })));
    }
    let checked = match version {
        OcppVersion::V16 => v16::command(&action, payload).and_then(|c| c.payload()),
        OcppVersion::V201 => v201::command(&action, payload).and_then(|c| c.payload()),
    }
    .map_err(|e| ApiError::bad_request(format!("the payload does not fit {action}: {}", e.description)))?;
    // Recorded before it goes: a command the charger never answers was still sent. Its payload
    // as the frame log keeps it, secrets masked.
    let detail =
        json!({ "action": action, "payload": crate::ocpp::frame_log::for_log(&checked.to_string()) });
    by.audit(&state.db, None, "charger.command", format!("charger {id}"), detail).await?;
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
            let schema_violation = checked.err().map(|problem| {
                tracing::warn!(charger.id = %id, action, problem = %problem.description, "the charger's answer breaks the OCPP schema");
                problem.description
            });
            Ok(Json(CommandAnswer { status: "answered", response, schema_violation }))
        }
        CallOutcome::CallError { code, description, details } => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("the charger answered with {code}: {description}"),
        )
        .with_extra(
            json!({ "status": "call_error", "code": code, "description": description, "details": details }),
        )),
        CallOutcome::Timeout => {
            Err(ApiError::new(StatusCode::GATEWAY_TIMEOUT, "the charger did not answer in time")
                .with_extra(json!({ "status": "timeout" })))
        }
        CallOutcome::Disconnected => {
            Err(ApiError::new(StatusCode::BAD_GATEWAY, "the charger disconnected before answering")
                .with_extra(json!({ "status": "disconnected" })))
        }
    }
}
