//! Charger models: per-model OCPP settings (leniency, kWh registers), which every charger of the
//! model picks up at its next boot.

use super::{Admin, ApiError, Body, Reader};
use crate::db::ocpp::{self as ocpp_db, ModelSettings};
use crate::http::AppState;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_models, put_model))
}

/// One model's settings, vendor and model as its BootNotification names them.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargerModel {
    #[schema(min_length = 1, max_length = 50)]
    vendor: String,
    #[schema(min_length = 1, max_length = 50)]
    model: String,
    /// Accept lengths and misspelt enum values outside the schema, with a warning; drop meter
    /// samples of unknown kinds.
    #[serde(default)]
    lenient: bool,
    /// OCPP 1.6 meterStart / meterStop are sent in kWh.
    #[serde(default)]
    meter_in_kwh: bool,
    /// The energy register restarts at 0 with each transaction (most count over the meter's lifetime).
    #[serde(default)]
    session_register: bool,
    #[serde(default)]
    note: String,
}

impl From<ModelSettings> for ChargerModel {
    fn from(m: ModelSettings) -> ChargerModel {
        ChargerModel {
            vendor: m.vendor,
            model: m.model,
            lenient: m.lenient,
            meter_in_kwh: m.meter_in_kwh,
            session_register: m.session_register,
            note: m.note,
        }
    }
}

impl ChargerModel {
    /// The settings to store, or a 422: vendor and model as BootNotification bounds them
    /// (chargePointVendor 20, chargePointModel 20; 2.0.1 50 each).
    fn checked(self) -> Result<ModelSettings, ApiError> {
        for (field, value) in [("vendor", &self.vendor), ("model", &self.model)] {
            if value.trim().is_empty() || value.chars().count() > 50 {
                return Err(ApiError::unprocessable(format!("{field} must be 1 to 50 characters")));
            }
        }
        Ok(ModelSettings {
            vendor: self.vendor,
            model: self.model,
            lenient: self.lenient,
            meter_in_kwh: self.meter_in_kwh,
            session_register: self.session_register,
            note: self.note,
        })
    }
}

/// Per-model OCPP settings.
#[utoipa::path(get, path = "/api/v1/charger-models", tag = "charger models",
    responses((status = 200, description = "every model's settings", body = Vec<ChargerModel>)))]
async fn list_models(_: Reader, State(state): State<AppState>) -> Result<Json<Vec<ChargerModel>>, ApiError> {
    let models = ocpp_db::model_settings(&state.db).await?;
    Ok(Json(models.into_iter().map(ChargerModel::from).collect()))
}

/// Create or replace one model's settings (its chargers pick them up at their next boot).
#[utoipa::path(put, path = "/api/v1/charger-models", tag = "charger models",
    request_body = ChargerModel,
    responses(
        (status = 200, description = "the stored settings", body = ChargerModel),
        (status = 400, description = "not a model's settings", body = super::ErrorBody),
        (status = 422, description = "vendor or model empty or too long", body = super::ErrorBody),
    ))]
async fn put_model(
    Admin(by): Admin,
    State(state): State<AppState>,
    Body(model): Body<ChargerModel>,
) -> Result<Json<ChargerModel>, ApiError> {
    let detail = serde_json::to_value(&model).unwrap_or_default();
    let settings = model.checked()?;
    ocpp_db::put_model_settings(&state.db, &settings).await?;
    let subject = format!("charger model {} {}", settings.vendor, settings.model);
    by.audit(&state.db, None, "charger_model.put", subject, detail).await?;
    tracing::info!(vendor = %settings.vendor, model = %settings.model, lenient = settings.lenient, meter_in_kwh = settings.meter_in_kwh, "charger model settings changed");
    Ok(Json(ChargerModel::from(settings)))
}
