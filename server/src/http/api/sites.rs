//! Sites: their electrics as the operator states them, and the live load-balancing budget.

use super::Path;
use super::{Admin, ApiError, Body, Reader};
use crate::db::balancing;
use crate::electrics::{self, ElectricsSpec};
use crate::http::AppState;
use app::domain::SiteId;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(site_budget)).routes(routes!(site_electrics, put_site_electrics))
}

/// A site's live load-balancing budget: limit, store load, allocated and measured per phase, per
/// node of the circuit tree and per connector.
#[utoipa::path(get, path = "/api/v1/sites/{id}/budget", tag = "sites",
    params(("id" = i64, Path, description = "the site")),
    responses(
        (status = 200, description = "the budget (the balancer's snapshot, connectors named)", body = Object),
        (status = 401, description = "not authenticated", body = super::ErrorBody),
        (status = 404, description = "no such balanced site", body = super::ErrorBody),
    ))]
async fn site_budget(
    _: Reader,
    State(state): State<AppState>,
    Path(site): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let budget = state.hub.budget(SiteId(site)).await.ok_or_else(|| {
        ApiError::not_found(format!("site {site} is not balanced (unknown, or its configuration is unsafe)"))
    })?;
    serde_json::to_value(budget).map(Json).map_err(|e| {
        tracing::error!(error = %e, "budget did not serialize");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })
}

/// The site's electrics as stored, in the operator's terms.
async fn stored_spec(state: &AppState, site: SiteId) -> Result<Option<ElectricsSpec>, ApiError> {
    let Some(stored) = balancing::site(&state.db, site).await? else { return Ok(None) };
    let names = balancing::circuit_names(&state.db, site).await?;
    Ok(Some(electrics::spec_of(&stored, &names)))
}

/// The site's electrics: grid limit, store worst case, fallback current, circuit tree, connector
/// ratings and wiring.
#[utoipa::path(get, path = "/api/v1/sites/{id}/electrics", tag = "sites",
    params(("id" = i64, Path, description = "the site")),
    responses(
        (status = 200, description = "the electrics", body = ElectricsSpec),
        (status = 404, description = "no such site", body = super::ErrorBody),
    ))]
async fn site_electrics(
    _: Reader,
    State(state): State<AppState>,
    Path(site): Path<i64>,
) -> Result<Json<ElectricsSpec>, ApiError> {
    let spec = stored_spec(&state, SiteId(site))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no site {site}")))?;
    Ok(Json(spec))
}

/// What a change of electrics came to.
#[derive(Serialize, ToSchema)]
pub struct ElectricsChanged {
    /// As stored now.
    electrics: ElectricsSpec,
    /// What the balancer would have the operator know (the site is balanced all the same).
    warnings: Vec<String>,
}

/// Replace the site's electrics, checked first: the site's balancer is rebuilt at once and the
/// running sessions carry on.
#[utoipa::path(put, path = "/api/v1/sites/{id}/electrics", tag = "sites",
    params(("id" = i64, Path, description = "the site")),
    request_body = ElectricsSpec,
    responses(
        (status = 200, description = "the stored electrics and the balancer's warnings", body = ElectricsChanged),
        (status = 400, description = "not a site's electrics", body = super::ErrorBody),
        (status = 404, description = "no such site", body = super::ErrorBody),
        (status = 422, description = "values out of range, unknown circuits or connectors, or a tree the balancer refuses", body = super::ErrorBody),
    ))]
async fn put_site_electrics(
    Admin(by): Admin,
    State(state): State<AppState>,
    Path(site): Path<i64>,
    Body(spec): Body<ElectricsSpec>,
) -> Result<Json<ElectricsChanged>, ApiError> {
    let site = SiteId(site);
    let current = balancing::site(&state.db, site)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no site {}", site.0)))?;
    let checked = electrics::check(&spec, &current).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let warnings = crate::balancing::check_site(&checked)
        .map_err(|e| ApiError::unprocessable(format!("the site cannot be balanced safely: {e}")))?;
    let names: Vec<String> = spec.circuits.iter().map(|c| c.name.clone()).collect();
    balancing::store_electrics(&state.db, &checked, &names).await?;
    let detail = serde_json::to_value(&spec).unwrap_or_default();
    by.audit(&state.db, None, "site.electrics", format!("site {}", site.0), detail).await?;
    tracing::info!(
        site.id = %site,
        circuits = spec.circuits.len(),
        connectors = spec.connectors.len(),
        "site electrics changed"
    );
    state.hub.rebuild_site(site).await?;
    let electrics =
        stored_spec(&state, site).await?.ok_or_else(|| ApiError::not_found("the site is gone"))?;
    Ok(Json(ElectricsChanged { electrics, warnings }))
}
