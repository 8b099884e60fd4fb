//! The audit log: every change operators and retailers made, newest first. Operator admins read
//! all of it; a retailer admin reads the changes to their own retailer's data.

use super::Query;
use super::{iso, ApiError, Caller};
use crate::db::scoped::Scoped;
use crate::http::AppState;
use app::domain::{Action, Refusal};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

/// Which page of the log.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries older than this id (the last id of the page before).
    before: Option<i64>,
    /// At most this many (1–500, 100 when not given).
    limit: Option<i64>,
}

/// One recorded change.
#[derive(Serialize, ToSchema)]
pub struct AuditRecord {
    id: i64,
    #[schema(format = DateTime)]
    at: Option<String>,
    /// An email, or `token:<name>` for an API token.
    actor: String,
    /// `operator_admin`, `operator_support`, `retailer_admin` or `retailer_viewer`.
    actor_role: String,
    /// The retailer whose data changed (`null`: the network's own).
    retailer_id: Option<i64>,
    /// What was done (`charger.command`, `session.needs`, `site.electrics`, …).
    action: String,
    /// What it was done to.
    subject: String,
    /// The change's details.
    #[schema(value_type = Object)]
    detail: serde_json::Value,
    /// The address the request came from.
    source: String,
}

/// The changes the caller may read, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses(
        (status = 200, description = "the entries, newest first", body = Vec<AuditRecord>),
        (status = 400, description = "a limit outside 1–500", body = super::ErrorBody),
        (status = 401, description = "not authenticated", body = super::ErrorBody),
        (status = 403, description = "not an operator admin or a retailer admin", body = super::ErrorBody),
    ))]
async fn list_audit(
    Caller(by): Caller,
    State(state): State<AppState>,
    Query(page): Query<AuditQuery>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    let scope = by.role.tenant();
    if !by.role.may(Action::ReadAudit(scope)) {
        return Err(Refusal::NotAllowed.into());
    }
    let limit = page.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 500"));
    }
    let entries = Scoped::for_role(&state.db, by.role).audit(page.before, limit).await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| AuditRecord {
                id: e.id,
                at: iso(Some(e.at)),
                actor: e.actor,
                actor_role: e.actor_role,
                retailer_id: e.retailer_id,
                action: e.action,
                subject: e.subject,
                detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::String(e.detail)),
                source: e.source,
            })
            .collect(),
    ))
}
