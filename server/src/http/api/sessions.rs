//! Sessions: what the driver or an operator states about a running one (when the car leaves, how
//! much energy it wants, its priority), stored with the transaction and given to its balancer.

use super::Path;
use super::{ApiError, Body, Operates};
use crate::db::balancing::{self, NeedsStored, SessionNeeds};
use crate::http::AppState;
use app::domain::{ChargerId, SessionPriority, TransactionId};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(put_session_needs))
}

/// The most energy a session may be said to want: more than any car's battery.
pub const MAX_ENERGY_NEED_KWH: f64 = 1000.0;

/// What the driver or an operator states about a running session (replaces what was stated before;
/// the car's own word, 2.0.1 NotifyEVChargingNeeds, fills what is not stated).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NeedsInput {
    /// When the car leaves: in the future, RFC 3339 with an offset.
    #[serde(default)]
    #[schema(format = DateTime)]
    departure: Option<String>,
    /// Energy wanted in the session.
    #[serde(default)]
    #[schema(exclusive_minimum = 0, maximum = 1000)]
    energy_kwh: Option<f64>,
    /// A larger share, and paused last (0 normal).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 3, default = 0)]
    priority: i64,
}

impl NeedsInput {
    /// The needs as stored, or a 422 that says which value is wrong.
    fn checked(&self, now_ms: i64) -> Result<SessionNeeds, ApiError> {
        let departure_at_ms = match self.departure.as_deref() {
            None => None,
            Some(text) => {
                let at = chrono::DateTime::parse_from_rfc3339(text)
                    .map_err(|e| {
                        ApiError::unprocessable(format!(
                            "departure {text:?} is not an RFC 3339 time with an offset: {e}"
                        ))
                    })?
                    .timestamp_millis();
                if at <= now_ms {
                    return Err(ApiError::unprocessable(format!("departure {text} is not in the future")));
                }
                Some(at)
            }
        };
        let energy_need_wh = match self.energy_kwh {
            None => None,
            Some(kwh) if kwh.is_finite() && kwh > 0.0 && kwh <= MAX_ENERGY_NEED_KWH => {
                Some((kwh * 1000.0).round() as i64)
            }
            Some(kwh) => {
                return Err(ApiError::unprocessable(format!(
                    "energy_kwh {kwh} is not above 0 and at most {MAX_ENERGY_NEED_KWH}"
                )))
            }
        };
        let priority =
            SessionPriority::new(self.priority).map_err(|e| ApiError::unprocessable(e.to_string()))?;
        Ok(SessionNeeds { departure_at_ms, energy_need_wh, priority })
    }
}

/// The needs as stored, with where the session runs.
#[derive(Serialize, ToSchema)]
pub struct NeedsStated {
    session: i64,
    charger_id: String,
    connector_no: i64,
    #[schema(format = DateTime)]
    departure: Option<String>,
    energy_kwh: Option<f64>,
    priority: u8,
}

/// State a running session's needs for the load balancer.
#[utoipa::path(put, path = "/api/v1/sessions/{id}/needs", tag = "sessions",
    params(("id" = i64, Path, description = "the session (transaction) id")),
    request_body = NeedsInput,
    responses(
        (status = 200, description = "stored and given to the balancer", body = NeedsStated),
        (status = 400, description = "not a session's needs", body = super::ErrorBody),
        (status = 404, description = "no such session", body = super::ErrorBody),
        (status = 409, description = "the session has ended", body = super::ErrorBody),
        (status = 422, description = "a departure in the past or not a time, an energy or priority out of range", body = super::ErrorBody),
    ))]
async fn put_session_needs(
    Operates(by): Operates,
    State(state): State<AppState>,
    Path(session): Path<i64>,
    Body(input): Body<NeedsInput>,
) -> Result<Json<NeedsStated>, ApiError> {
    let needs = input.checked(crate::db::now_ms())?;
    match balancing::set_session_needs(&state.db, session, &needs).await? {
        NeedsStored::Running { charger_id, connector_no } => {
            if let Ok(charger) = ChargerId::parse(&charger_id) {
                state.hub.session_declared(&charger, TransactionId(session), &needs);
            }
            let detail = serde_json::json!({
                "departure_ms": needs.departure_at_ms,
                "energy_wh": needs.energy_need_wh,
                "priority": needs.priority.get(),
            });
            by.audit(&state.db, None, "session.needs", format!("session {session}"), detail).await?;
            tracing::info!(session.id = session, charger.id = %charger_id, connector = connector_no, ?needs, "session needs stated");
            Ok(Json(NeedsStated {
                session,
                charger_id,
                connector_no,
                departure: super::iso(needs.departure_at_ms),
                energy_kwh: needs.energy_need_wh.map(|wh| wh as f64 / 1000.0),
                priority: needs.priority.get(),
            }))
        }
        NeedsStored::Ended => {
            Err(ApiError::new(StatusCode::CONFLICT, format!("session {session} has ended")))
        }
        NeedsStored::Unknown => Err(ApiError::not_found(format!("no session {session}"))),
    }
}
