//! Chargers that asked to join: unknown ids waiting for an operator (the `--unknown-chargers
//! pending` policy), accepted onto a site or refused.

use super::Path;
use super::{charger_id, iso, Admin, ApiError, Body, Reader};
use crate::db::ocpp as ocpp_db;
use crate::http::AppState;
use app::domain::SiteId;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_requests))
        .routes(routes!(accept_request))
        .routes(routes!(reject_request))
}

/// A charger that connected with an id we did not know.
#[derive(Serialize, ToSchema)]
pub struct ChargerRequest {
    id: String,
    /// `pending`, `accepted` or `rejected`.
    status: String,
    vendor: Option<String>,
    model: Option<String>,
    ocpp_version: Option<String>,
    #[schema(format = DateTime)]
    first_seen_at: Option<String>,
    #[schema(format = DateTime)]
    last_seen_at: Option<String>,
}

/// Unknown chargers waiting for an operator.
#[utoipa::path(get, path = "/api/v1/charger-requests", tag = "charger requests",
    responses((status = 200, description = "the requests, oldest first", body = Vec<ChargerRequest>)))]
async fn list_requests(
    _: Reader,
    State(state): State<AppState>,
) -> Result<Json<Vec<ChargerRequest>>, ApiError> {
    let requests = ocpp_db::charger_requests(&state.db).await?;
    Ok(Json(
        requests
            .into_iter()
            .map(|r| ChargerRequest {
                id: r.charger_id,
                status: r.status,
                vendor: r.vendor,
                model: r.model,
                ocpp_version: r.ocpp_version,
                first_seen_at: iso(Some(r.first_seen_at)),
                last_seen_at: iso(Some(r.last_seen_at)),
            })
            .collect(),
    ))
}

/// Where a waiting charger goes.
#[derive(Deserialize, ToSchema)]
pub struct AcceptRequest {
    site_id: i64,
}

#[derive(Serialize, ToSchema)]
pub struct RequestAccepted {
    /// `accepted`.
    status: &'static str,
    site_id: i64,
    /// The charger is connected and was asked to boot again at once.
    boot_requested: bool,
}

/// Accept a waiting charger onto a site. If it is connected it is asked to boot again at once.
#[utoipa::path(post, path = "/api/v1/charger-requests/{id}/accept", tag = "charger requests",
    params(("id" = String, Path, description = "the charge point id")),
    request_body = AcceptRequest,
    responses(
        (status = 200, description = "accepted", body = RequestAccepted),
        (status = 404, description = "no such request", body = super::ErrorBody),
        (status = 422, description = "no such site", body = super::ErrorBody),
    ))]
async fn accept_request(
    Admin(by): Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(AcceptRequest { site_id }): Body<AcceptRequest>,
) -> Result<Json<RequestAccepted>, ApiError> {
    let id = charger_id(&id)?;
    let site = SiteId(site_id);
    if !ocpp_db::site_exists(&state.db, site).await? {
        return Err(ApiError::unprocessable(format!("no site {site_id}")));
    }
    if !ocpp_db::accept_charger_request(&state.db, &id, site).await? {
        return Err(ApiError::not_found(format!("no charger {id} is waiting")));
    }
    by.audit(
        &state.db,
        None,
        "charger.accept",
        format!("charger {id}"),
        serde_json::json!({ "site": site.0 }),
    )
    .await?;
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
    Ok(Json(RequestAccepted { status: "accepted", site_id, boot_requested: connected }))
}

#[derive(Serialize, ToSchema)]
pub struct RequestRejected {
    /// `rejected`.
    status: &'static str,
}

/// Refuse a waiting charger.
#[utoipa::path(post, path = "/api/v1/charger-requests/{id}/reject", tag = "charger requests",
    params(("id" = String, Path, description = "the charge point id")),
    responses(
        (status = 200, description = "rejected", body = RequestRejected),
        (status = 404, description = "no such request", body = super::ErrorBody),
    ))]
async fn reject_request(
    Admin(by): Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RequestRejected>, ApiError> {
    let id = charger_id(&id)?;
    if !ocpp_db::reject_charger_request(&state.db, &id).await? {
        return Err(ApiError::not_found(format!("no charger {id} is waiting")));
    }
    by.audit(&state.db, None, "charger.reject", format!("charger {id}"), serde_json::json!({})).await?;
    tracing::info!(charger.id = %id, "operator rejected a waiting charger");
    Ok(Json(RequestRejected { status: "rejected" }))
}
