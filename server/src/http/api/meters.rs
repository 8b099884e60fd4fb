//! A site's store meter: its live readings, its earlier readings imported when a site goes live,
//! and a stretch of readings forgotten when it was the meter's fault.

use super::{Admin, ApiError, Body};
use super::{Path, Query};
use crate::balancer::store::MEMORY_DAYS;
use crate::balancer::DeciAmps;
use crate::db::balancing;
use crate::http::AppState;
use app::domain::SiteId;
use axum::extract::{DefaultBodyLimit, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    // The documented import is larger than axum's default body limit (2 MiB).
    let import = OpenApiRouter::new()
        .routes(routes!(import_meter_readings, forget_meter_readings))
        .layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES));
    OpenApiRouter::new().routes(routes!(site_meter)).merge(import)
}

/// The most readings one import takes: four weeks of one a minute, and some.
pub const MAX_IMPORTED_READINGS: usize = 50_000;
/// The largest import body: room for the most readings, each written out at length.
const MAX_IMPORT_BYTES: usize = MAX_IMPORTED_READINGS * 320;

/// A reading of the site meter, amps per phase.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreReading {
    #[schema(minimum = 0, maximum = 10000)]
    l1_a: f64,
    #[schema(minimum = 0, maximum = 10000)]
    l2_a: f64,
    #[schema(minimum = 0, maximum = 10000)]
    l3_a: f64,
}

impl StoreReading {
    /// Per phase, in tenths of an amp.
    fn currents(&self) -> Result<[DeciAmps; 3], ApiError> {
        let mut currents = [DeciAmps::ZERO; 3];
        for (slot, amps) in currents.iter_mut().zip([self.l1_a, self.l2_a, self.l3_a]) {
            if !amps.is_finite() || !(0.0..=10_000.0).contains(&amps) {
                return Err(ApiError::unprocessable("each phase's current must be between 0 and 10000 A"));
            }
            // Round up: the store may be drawing a little more than the meter says, never assume less.
            *slot = DeciAmps::from_f64_ceil(amps);
        }
        Ok(currents)
    }
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// `accepted`.
    status: &'static str,
}

/// The site meter's reading, amps per phase: the store's own load, or with `site_meter` incomer
/// the whole connection's.
#[utoipa::path(post, path = "/api/v1/sites/{id}/meter", tag = "meters",
    params(("id" = i64, Path, description = "the site")),
    request_body = StoreReading,
    responses(
        (status = 200, description = "accepted", body = Accepted),
        (status = 400, description = "not a reading", body = super::ErrorBody),
        (status = 404, description = "no such balanced site", body = super::ErrorBody),
        (status = 422, description = "a current out of range", body = super::ErrorBody),
    ))]
async fn site_meter(
    _: Admin,
    State(state): State<AppState>,
    Path(site): Path<i64>,
    Body(reading): Body<StoreReading>,
) -> Result<Json<Accepted>, ApiError> {
    let currents = reading.currents()?;
    if !state.hub.store_meter(SiteId(site), currents) {
        return Err(ApiError::not_found(format!("site {site} is not balanced")));
    }
    Ok(Json(Accepted { status: "accepted" }))
}

/// Earlier store meter readings, each with when it was taken.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlierReadings {
    #[schema(min_items = 1, max_items = 50000)]
    readings: Vec<EarlierReading>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlierReading {
    /// When it was taken (RFC 3339): within the last four weeks.
    #[schema(format = DateTime)]
    at: String,
    l1_a: f64,
    l2_a: f64,
    l3_a: f64,
}

#[derive(Serialize, ToSchema)]
pub struct ReadingsKept {
    kept: u64,
    /// The rise the balancer learned from them, tenths of an amp per phase (none before a day of readings).
    #[schema(value_type = Option<Object>)]
    store_rise_learned: Option<crate::balancer::PerPhase>,
}

/// Import the site meter's earlier readings (its export, when a site goes live): the balancer
/// learns the store's rise from them at once rather than counting the configured bound for a day.
#[utoipa::path(post, path = "/api/v1/sites/{id}/meter/readings", tag = "meters",
    params(("id" = i64, Path, description = "the site")),
    request_body = EarlierReadings,
    responses(
        (status = 200, description = "how many readings were kept, and the rise learned now", body = ReadingsKept),
        (status = 400, description = "not that shape, or a moment not RFC 3339", body = super::ErrorBody),
        (status = 404, description = "no such site", body = super::ErrorBody),
        (status = 422, description = "none or too many, a reading in the future or older than four weeks, or a current out of range", body = super::ErrorBody),
    ))]
async fn import_meter_readings(
    Admin(by): Admin,
    State(state): State<AppState>,
    Path(site): Path<i64>,
    Body(earlier): Body<EarlierReadings>,
) -> Result<Json<ReadingsKept>, ApiError> {
    if earlier.readings.is_empty() || earlier.readings.len() > MAX_IMPORTED_READINGS {
        return Err(ApiError::unprocessable(format!(
            "between 1 and {MAX_IMPORTED_READINGS} readings at a time"
        )));
    }
    let now_ms = crate::db::now_ms();
    let memory_ms = i64::try_from(MEMORY_DAYS * 24 * 3600 * 1000).unwrap_or(i64::MAX);
    let mut readings = Vec::with_capacity(earlier.readings.len());
    for (k, r) in earlier.readings.iter().enumerate() {
        let at = chrono::DateTime::parse_from_rfc3339(&r.at).map(|t| t.timestamp_millis()).map_err(|e| {
            ApiError::bad_request(format!("reading {k}: `at` is not an RFC 3339 moment: {e}"))
        })?;
        if at > now_ms || at < now_ms - memory_ms {
            return Err(ApiError::unprocessable(format!(
                "reading {k}: taken in the future or more than {MEMORY_DAYS} days ago"
            )));
        }
        let currents = StoreReading { l1_a: r.l1_a, l2_a: r.l2_a, l3_a: r.l3_a };
        let da = currents.currents().map_err(|e| e.with_prefix(&format!("reading {k}: ")))?;
        readings.push(balancing::StoreReading { measured_at_ms: at, da: da.map(|a| i64::from(a.get())) });
    }
    let kept = state
        .hub
        .import_store_readings(SiteId(site), &readings)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no site {site}")))?;
    by.audit(&state.db, None, "store_meter.import", format!("site {site}"), json!({ "kept": kept })).await?;
    let store_rise_learned = state.hub.budget(SiteId(site)).await.and_then(|b| b.snapshot.store_rise_learned);
    Ok(Json(ReadingsKept { kept, store_rise_learned }))
}

/// A stretch of store meter readings: `from` (inclusive) to `to` (exclusive).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReadingsWindow {
    /// First moment forgotten (inclusive), RFC 3339.
    #[param(format = DateTime)]
    from: Option<String>,
    /// End of the stretch (exclusive), RFC 3339.
    #[param(format = DateTime)]
    to: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ReadingsForgotten {
    forgotten: u64,
    /// The rise the balancer learned from the readings kept, tenths of an amp per phase.
    #[schema(value_type = Option<Object>)]
    store_rise_learned: Option<crate::balancer::PerPhase>,
}

/// Forget the store meter readings of a stretch that was the meter's fault (a loose clamp reading
/// zeros, say): they would teach the balancer a rise the store never had and keep it four weeks.
/// The site's balancer learns the rise again from the readings kept.
#[utoipa::path(delete, path = "/api/v1/sites/{id}/meter/readings", tag = "meters",
    params(("id" = i64, Path, description = "the site"), ReadingsWindow),
    responses(
        (status = 200, description = "how many readings were forgotten, and the rise learned now", body = ReadingsForgotten),
        (status = 400, description = "no stretch, or not RFC 3339, or from not before to", body = super::ErrorBody),
        (status = 404, description = "no such site", body = super::ErrorBody),
    ))]
async fn forget_meter_readings(
    Admin(by): Admin,
    State(state): State<AppState>,
    Path(site): Path<i64>,
    Query(window): Query<ReadingsWindow>,
) -> Result<Json<ReadingsForgotten>, ApiError> {
    let moment = |name: &str, value: Option<String>| {
        let value = value.ok_or_else(|| {
            ApiError::bad_request(format!("`{name}` is required (RFC 3339, e.g. 2026-12-02T08:00:00Z)"))
        })?;
        chrono::DateTime::parse_from_rfc3339(&value)
            .map(|t| t.timestamp_millis())
            .map_err(|e| ApiError::bad_request(format!("`{name}` is not an RFC 3339 moment: {e}")))
    };
    let (from_ms, to_ms) = (moment("from", window.from)?, moment("to", window.to)?);
    if from_ms >= to_ms {
        return Err(ApiError::bad_request("`from` must be before `to`"));
    }
    let site = SiteId(site);
    let forgotten = state
        .hub
        .forget_store_readings(site, from_ms, to_ms)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no site {}", site.0)))?;
    let detail = json!({ "from_ms": from_ms, "to_ms": to_ms, "forgotten": forgotten });
    by.audit(&state.db, None, "store_meter.forget", format!("site {site}"), detail).await?;
    let store_rise_learned = state.hub.budget(site).await.and_then(|b| b.snapshot.store_rise_learned);
    Ok(Json(ReadingsForgotten { forgotten, store_rise_learned }))
}
