//! The operator REST API under `/api/v1/` (JSON), one router per feature. Every call says who is
//! asking ([`Operator`]: an API token or an operator's session); a body is read by [`Body`], which
//! answers a bad one with a 400 naming the field; the OpenAPI description at `/api/openapi.json` is
//! generated from the handlers and the types they take and give.

mod audit;
mod chargers;
mod meters;
mod models;
mod requests;
mod sessions;
mod sites;
mod users;

use super::AppState;
use crate::access::Actor;
use crate::db::DbError;
use app::domain::{Action, ChargerId, Refusal};
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
            Refusal::NotAllowed => ApiError::new(StatusCode::FORBIDDEN, "your role does not allow this"),
        }
    }
}

/// Whoever is asking, known by an API token or a session cookie, with the address they asked from
/// (401 for nobody we know).
async fn known_caller(parts: &Parts, state: &AppState) -> Result<Actor, ApiError> {
    let from = parts.extensions.get::<app::api::ssr::ClientIp>().map(|ip| ip.0);
    crate::access::caller(&state.db, &parts.headers, from).await?.ok_or(ApiError::from(Refusal::NotSignedIn))
}

/// Extractors for the callers whose role allows an action: a handler names the one it needs and
/// never runs for anyone else (401 or 403, from the rule book in `app::domain::Role::may`).
macro_rules! callers {
    ($($(#[$doc:meta])* $name:ident => $action:expr;)*) => {$(
        $(#[$doc])*
        pub struct $name(pub Actor);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
                Ok($name(known_caller(parts, state).await?.may($action)?))
            }
        }
    )*};
}

callers! {
    /// May read the network (every operator role).
    Reader => Action::ReadNetwork;
    /// May act on running things: commands, sessions' needs (operator admin and support).
    Operates => Action::Operate;
    /// May change how the network is built: chargers, sites, meters, models (operator admin).
    Admin => Action::ManageNetwork;
}

/// May manage the users of their own tenant (operator admin, retailer admin): checked before any
/// body is read, so a caller who may not gets 403 whatever they send.
pub struct UserManager(pub Actor);

impl FromRequestParts<AppState> for UserManager {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = known_caller(parts, state).await?;
        let own = caller.role.tenant();
        Ok(UserManager(caller.may(Action::ManageUsers(own))?))
    }
}

/// Anyone known (each handler asks the rule book itself, about the tenant it touches).
pub struct Caller(pub Actor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Caller(known_caller(parts, state).await?))
    }
}

/// A path parameter of type `T`: one that does not parse is a JSON 400 saying why, like every
/// other failure of the API (axum's own rejection is plain text).
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// A query string of type `T`, rejected as JSON like [`Path`].
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|e| ApiError::bad_request(e.body_text()))
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
    info(title = "Forecourt operator API", description = "The charging network, for its operator: chargers and their commands, sites' electrics and load, store meters, sessions' needs, charger models, waiting chargers and the audit log of every change. Each call names the role it needs: operator support reads and operates; operator admin also manages."),
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

/// What any operation may answer, documented once: a path, query or body that is not the
/// documented one (400), nobody we know (401), a role that may not (403).
struct CommonAnswers;

impl utoipa::Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let answer = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                for (status, description) in [
                    ("400", "a path, query or body that is not the documented one"),
                    ("401", "not authenticated"),
                    ("403", "the caller's role may not"),
                ] {
                    responses.entry(status.to_owned()).or_insert_with(|| answer(description).into());
                }
            }
        }
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
        .merge(audit::router())
        .merge(users::router())
}

/// The routes and their description, the answers every operation shares added once all are in.
fn described() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::Modify;
    let (router, mut document) = features().split_for_parts();
    CommonAnswers.modify(&mut document);
    (router, document)
}

/// The API's description (OpenAPI 3.1), as `/api/openapi.json` serves it.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    described().1
}

pub fn routes() -> Router<AppState> {
    let (router, mut document) = described();
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
