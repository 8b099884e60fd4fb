//! The operator REST API under `/api/v1/` (JSON), one router per feature. Every call says who is
//! asking ([`Operator`]: an API token or an operator's session); a body is read by [`Body`], which
//! answers a bad one with a 400 naming the field; the OpenAPI description at `/api/openapi.json` is
//! generated from the handlers and the types they take and give.

mod chargers;
mod meters;
mod models;
mod requests;
mod sessions;
mod sites;

use super::AppState;
use crate::db::DbError;
use app::domain::{ChargerId, Refusal, Role};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Every API failure: a status and a reason in JSON. Internal details stay in the log.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    extra: Option<Value>,
}

/// How every failure reads.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), extra: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// More fields beside `error` (a command's outcome, the commands there are).
    fn with_extra(mut self, extra: Value) -> Self {
        self.extra = Some(extra);
        self
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

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotSignedIn => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "an API token (Authorization: Bearer …) or an operator session is required",
            ),
            Refusal::NotAnOperator => ApiError::new(StatusCode::FORBIDDEN, "this API is for operators"),
        }
    }
}

/// An authenticated operator. Retailers' tokens are refused here: this API spans the network.
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let role = crate::access::caller_role(&state.db, &parts.headers).await?;
        Role::operator_only(role.as_ref())?;
        Ok(Operator)
    }
}

/// A JSON body of type `T`: a body that is not JSON, or not that shape, is a 400 that names the
/// field it is about (`handover.clock_skew_s: invalid type ...`, `unknown field `colour``).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), format!("the body could not be read: {e}")))?;
        read_json(&bytes).map(Body)
    }
}

/// `T` from JSON text, or a 400 that says where it went wrong.
fn read_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes)).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        let place = if at == "." { String::new() } else { format!("{at}: ") };
        ApiError::bad_request(format!(
            "expected the documented JSON body (see /api/openapi.json): {place}{inner}"
        ))
    })
}

/// A charger id from a path, or a 400 that says why it is not one.
fn charger_id(raw: &str) -> Result<ChargerId, ApiError> {
    ChargerId::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A moment as the API writes it: RFC 3339 UTC with milliseconds (`null` when there is none).
fn iso(ms: Option<i64>) -> Option<String> {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Forecourt operator API", description = "The charging network, for its operator: chargers and their commands, sites' electrics and load, store meters, sessions' needs, charger models and waiting chargers."),
    components(schemas(ErrorBody)),
    modifiers(&Security),
    security(("bearer" = []), ("session" = []))
)]
struct ApiDoc;

/// Who may call: an API token, or an operator's session cookie.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(app::api::ssr::SESSION_COOKIE))),
        );
    }
}

/// Every feature's routes, and the description they make together.
fn features() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(chargers::router())
        .merge(sites::router())
        .merge(meters::router())
        .merge(sessions::router())
        .merge(models::router())
        .merge(requests::router())
}

/// The API's description (OpenAPI 3.1), as `/api/openapi.json` serves it.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    features().split_for_parts().1
}

pub fn routes() -> Router<AppState> {
    let (router, mut document) = features().split_for_parts();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let document = Arc::new(document);
    router.route("/api/openapi.json", get(move || async move { Json(document.as_ref().clone()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_that_is_not_the_shape_names_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            lead_s: f64,
        }
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Outer {
            handover: Inner,
        }
        let err = read_json::<Outer>(br#"{"handover": {"lead_s": "soon"}}"#).expect_err("not a number");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("handover.lead_s"), "{}", err.message);
        let err =
            read_json::<Outer>(br#"{"handover": {"lead_s": 1}, "colour": "red"}"#).expect_err("unknown");
        assert!(err.message.contains("colour"), "{}", err.message);
        let err = read_json::<Outer>(b"{").expect_err("not JSON");
        assert!(err.message.starts_with("expected"), "{}", err.message);
        assert!(read_json::<Outer>(br#"{"handover": {"lead_s": 1}}"#).is_ok());
    }

    fn number(v: &Value) -> Option<f64> {
        v.as_f64()
    }

    #[test]
    fn the_description_covers_every_route_with_its_schemas() {
        let doc = serde_json::to_value(openapi_document()).expect("serializes");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
        let paths = doc["paths"].as_object().expect("paths");
        for path in [
            "/api/v1/chargers",
            "/api/v1/chargers/{id}",
            "/api/v1/chargers/{id}/frames",
            "/api/v1/chargers/{id}/commands/{action}",
            "/api/v1/sites/{id}/budget",
            "/api/v1/sites/{id}/meter",
            "/api/v1/sites/{id}/meter/readings",
            "/api/v1/sites/{id}/electrics",
            "/api/v1/sessions/{id}/needs",
            "/api/v1/charger-models",
            "/api/v1/charger-requests",
            "/api/v1/charger-requests/{id}/accept",
            "/api/v1/charger-requests/{id}/reject",
        ] {
            assert!(paths.contains_key(path), "{path} is not described: {:?}", paths.keys());
        }
        let schemas = &doc["components"]["schemas"];
        let handover = &schemas["HandoverSpec"]["properties"];
        assert_eq!(
            number(&handover["lead_s"]["maximum"]),
            Some(crate::electrics::HANDOVER_MAX_LEAD_S as f64)
        );
        assert_eq!(
            number(&handover["clock_skew_s"]["maximum"]),
            Some(crate::electrics::HANDOVER_MAX_SKEW_S as f64)
        );
        let electrics = &schemas["ElectricsSpec"]["properties"];
        assert_eq!(
            number(&electrics["idle_default_raise_after_s"]["maximum"]),
            Some(crate::electrics::IDLE_RAISE_AFTER_MAX_S as f64)
        );
        assert_eq!(
            number(&electrics["idle_default_raise_after_s"]["default"]),
            Some(crate::electrics::IDLE_RAISE_AFTER_DEFAULT_S as f64)
        );
        assert_eq!(
            number(&electrics["store_meter_frozen_after_s"]["maximum"]),
            Some(crate::electrics::STORE_METER_FROZEN_AFTER_MAX_S as f64)
        );
        assert_eq!(
            number(&electrics["store_meter_frozen_after_s"]["default"]),
            Some(crate::electrics::STORE_METER_FROZEN_AFTER_DEFAULT_S as f64)
        );
        let needs = &schemas["NeedsInput"]["properties"];
        assert_eq!(number(&needs["priority"]["maximum"]), Some(app::domain::SessionPriority::MAX as f64));
        assert_eq!(number(&needs["energy_kwh"]["maximum"]), Some(sessions::MAX_ENERGY_NEED_KWH as f64));
        let import = &schemas["EarlierReadings"]["properties"]["readings"];
        assert_eq!(number(&import["maxItems"]), Some(meters::MAX_IMPORTED_READINGS as f64));
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}
