//! OCPP 1.6J: typed dispatch of what chargers send, and the commands we can send them.

use super::frame::{ErrorCode, RpcError};
use super::report::ChargerReport;
use super::{
    actions, encode, enum_text, internal, judge_token, to_samples, CentralSystem, Link, RawSample,
    Registration,
};
use crate::balancer::clock::Stamp;
use crate::db::{now_ms, ocpp as db};
use chrono::Utc;
use rust_ocpp::v1_6::messages as m;
use rust_ocpp::v1_6::types::{
    AuthorizationStatus, ChargePointStatus, DataTransferStatus, IdTagInfo, MeterValue, RegistrationStatus,
};
use serde_json::Value;

actions! {
    /// What a 1.6 charge point may send us (OCPP 1.6 §4).
    Incoming {
        Authorize(m::authorize::AuthorizeRequest) = "Authorize" validated,
        BootNotification(m::boot_notification::BootNotificationRequest) = "BootNotification" validated,
        DataTransfer(m::data_transfer::DataTransferRequest) = "DataTransfer" validated,
        DiagnosticsStatusNotification(m::diagnostics_status_notification::DiagnosticsStatusNotificationRequest) = "DiagnosticsStatusNotification",
        FirmwareStatusNotification(m::firmware_status_notification::FirmwareStatusNotificationRequest) = "FirmwareStatusNotification",
        Heartbeat(m::heart_beat::HeartbeatRequest) = "Heartbeat" validated,
        MeterValues(m::meter_values::MeterValuesRequest) = "MeterValues",
        StartTransaction(m::start_transaction::StartTransactionRequest) = "StartTransaction" validated,
        StatusNotification(m::status_notification::StatusNotificationRequest) = "StatusNotification" validated,
        StopTransaction(m::stop_transaction::StopTransactionRequest) = "StopTransaction" validated,
    }
}

actions! {
    /// What we may send a 1.6 charge point (OCPP 1.6 §5).
    Command {
        CancelReservation(m::cancel_reservation::CancelReservationRequest) = "CancelReservation",
        ChangeAvailability(m::change_availability::ChangeAvailabilityRequest) = "ChangeAvailability",
        ChangeConfiguration(m::change_configuration::ChangeConfigurationRequest) = "ChangeConfiguration" validated,
        ClearCache(m::clear_cache::ClearCacheRequest) = "ClearCache",
        ClearChargingProfile(m::clear_charging_profile::ClearChargingProfileRequest) = "ClearChargingProfile",
        DataTransfer(m::data_transfer::DataTransferRequest) = "DataTransfer" validated,
        GetCompositeSchedule(m::get_composite_schedule::GetCompositeScheduleRequest) = "GetCompositeSchedule",
        GetConfiguration(m::get_configuration::GetConfigurationRequest) = "GetConfiguration" validated,
        GetDiagnostics(m::get_diagnostics::GetDiagnosticsRequest) = "GetDiagnostics" validated,
        GetLocalListVersion(m::get_local_list_version::GetLocalListVersionRequest) = "GetLocalListVersion",
        RemoteStartTransaction(m::remote_start_transaction::RemoteStartTransactionRequest) = "RemoteStartTransaction" validated,
        RemoteStopTransaction(m::remote_stop_transaction::RemoteStopTransactionRequest) = "RemoteStopTransaction",
        ReserveNow(m::reserve_now::ReserveNowRequest) = "ReserveNow" validated,
        Reset(m::reset::ResetRequest) = "Reset",
        SendLocalList(m::send_local_list::SendLocalListRequest) = "SendLocalList",
        SetChargingProfile(m::set_charging_profile::SetChargingProfileRequest) = "SetChargingProfile",
        TriggerMessage(m::trigger_message::TriggerMessageRequest) = "TriggerMessage",
        UnlockConnector(m::unlock_connector::UnlockConnectorRequest) = "UnlockConnector" validated,
        UpdateFirmware(m::update_firmware::UpdateFirmwareRequest) = "UpdateFirmware" validated,
    }
}

actions! {
    /// What a 1.6 charge point answers to each command (OCPP 1.6 §5), for checking its answers.
    Answer {
        CancelReservation(m::cancel_reservation::CancelReservationResponse) = "CancelReservation",
        ChangeAvailability(m::change_availability::ChangeAvailabilityResponse) = "ChangeAvailability",
        ChangeConfiguration(m::change_configuration::ChangeConfigurationResponse) = "ChangeConfiguration",
        ClearCache(m::clear_cache::ClearCacheResponse) = "ClearCache",
        ClearChargingProfile(m::clear_charging_profile::ClearChargingProfileResponse) = "ClearChargingProfile",
        DataTransfer(m::data_transfer::DataTransferResponse) = "DataTransfer",
        GetCompositeSchedule(m::get_composite_schedule::GetCompositeScheduleResponse) = "GetCompositeSchedule",
        GetConfiguration(m::get_configuration::GetConfigurationResponse) = "GetConfiguration",
        GetDiagnostics(m::get_diagnostics::GetDiagnosticsResponse) = "GetDiagnostics",
        GetLocalListVersion(m::get_local_list_version::GetLocalListVersionResponse) = "GetLocalListVersion",
        RemoteStartTransaction(m::remote_start_transaction::RemoteStartTransactionResponse) = "RemoteStartTransaction",
        RemoteStopTransaction(m::remote_stop_transaction::RemoteStopTransactionResponse) = "RemoteStopTransaction",
        ReserveNow(m::reserve_now::ReserveNowResponse) = "ReserveNow",
        Reset(m::reset::ResetResponse) = "Reset",
        SendLocalList(m::send_local_list::SendLocalListResponse) = "SendLocalList",
        SetChargingProfile(m::set_charging_profile::SetChargingProfileResponse) = "SetChargingProfile",
        TriggerMessage(m::trigger_message::TriggerMessageResponse) = "TriggerMessage",
        UnlockConnector(m::unlock_connector::UnlockConnectorResponse) = "UnlockConnector",
        UpdateFirmware(m::update_firmware::UpdateFirmwareResponse) = "UpdateFirmware",
    }
}

fn id_tag_info(standing: db::TokenStanding) -> IdTagInfo {
    let status = match standing {
        db::TokenStanding::Accepted => AuthorizationStatus::Accepted,
        db::TokenStanding::Blocked => AuthorizationStatus::Blocked,
        db::TokenStanding::Expired => AuthorizationStatus::Expired,
        db::TokenStanding::Unknown => AuthorizationStatus::Invalid,
    };
    IdTagInfo { status, expiry_date: None, parent_id_tag: None }
}

fn samples(values: Vec<MeterValue>) -> Vec<db::Sample> {
    values
        .into_iter()
        .flat_map(|mv| {
            let raw = mv
                .sampled_value
                .into_iter()
                .map(|s| RawSample {
                    measurand: s.measurand.as_ref().map(enum_text),
                    phase: s.phase.as_ref().map(enum_text),
                    context: s.context.as_ref().map(enum_text),
                    location: s.location.as_ref().map(enum_text),
                    unit: s.unit.as_ref().map(enum_text),
                    multiplier: 0,
                    value: s.value,
                })
                .collect();
            to_samples(mv.timestamp, raw)
        })
        .collect()
}

/// meterStart / meterStop in Wh; a model set to send kWh (against the schema) is scaled.
fn register_wh(link: &Link, value: i32) -> i64 {
    i64::from(value) * if link.meter_in_kwh { 1000 } else { 1 }
}

pub async fn handle(
    cs: &CentralSystem,
    link: &Link,
    action: &str,
    payload: Value,
) -> Result<Value, RpcError> {
    let raw_payload = payload.to_string();
    let Some(request) = Incoming::decode_from(link, action, payload)? else {
        return Err(RpcError::new(ErrorCode::NotImplemented, format!("unknown action {action}")));
    };
    if let Err(err) = request.check() {
        if !link.lenient {
            return Err(err);
        }
        // A known model that bends the schema: accepted on purpose (the charger's `lenient` setting).
        tracing::warn!(charger.id = %link.charger, action, reason = %err.description, "accepted a value outside the schema");
    }
    super::refuse_while_pending(link, action)?;
    match &request {
        Incoming::StatusNotification(r) => super::connector_within_limit(cs, r.connector_id)?,
        Incoming::MeterValues(r) => super::connector_within_limit(cs, r.connector_id)?,
        Incoming::StartTransaction(r) => super::connector_within_limit(cs, r.connector_id)?,
        _ => {}
    }
    let id = &link.charger;
    let now = Utc::now();
    match request {
        Incoming::BootNotification(r) if link.site.is_none() => {
            db::note_request_boot(&cs.db, id, &r.charge_point_vendor, &r.charge_point_model)
                .await
                .map_err(internal)?;
            tracing::info!(charger.id = %id, "boot of a charger waiting for an operator: Pending");
            encode(&m::boot_notification::BootNotificationResponse {
                current_time: now,
                interval: u32::try_from(cs.settings.heartbeat_interval.as_secs()).unwrap_or(300),
                status: RegistrationStatus::Pending,
            })
        }
        Incoming::BootNotification(r) => {
            let info = db::BootInfo {
                vendor: r.charge_point_vendor,
                model: r.charge_point_model,
                serial: r.charge_point_serial_number.or(r.charge_box_serial_number),
                firmware: r.firmware_version,
                iccid: r.iccid,
                imsi: r.imsi,
                meter_type: r.meter_type,
                meter_serial: r.meter_serial_number,
            };
            let status = match cs.boot(link, &info, &raw_payload).await? {
                Registration::Accepted => RegistrationStatus::Accepted,
                Registration::Pending => RegistrationStatus::Pending,
                Registration::Rejected => RegistrationStatus::Rejected,
            };
            encode(&m::boot_notification::BootNotificationResponse {
                current_time: now,
                interval: u32::try_from(cs.settings.heartbeat_interval.as_secs()).unwrap_or(300),
                status,
            })
        }
        Incoming::Heartbeat(_) => {
            db::touch(&cs.db, id).await.map_err(internal)?;
            encode(&m::heart_beat::HeartbeatResponse { current_time: now })
        }
        Incoming::StatusNotification(r) => {
            if let Some(stamped) = r.timestamp {
                cs.take(link, ChargerReport::Clock { stamped, stamp: Stamp::Event }).await?;
            }
            let status = ChargerReport::Status {
                connector: r.connector_id,
                status: enum_text(&r.status),
                error_code: enum_text(&r.error_code),
                info: [r.info, r.vendor_id, r.vendor_error_code]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" / "),
                charger_time: r.timestamp.map(|t| super::quirks::effective_time(t, now_ms())),
            };
            cs.take(link, status).await?;
            if matches!(
                r.status,
                ChargePointStatus::SuspendedEV
                    | ChargePointStatus::SuspendedEVSE
                    | ChargePointStatus::Finishing
            ) {
                cs.take(link, ChargerReport::DrawStopped { connector: r.connector_id }).await?;
            }
            encode(&m::status_notification::StatusNotificationResponse {})
        }
        Incoming::Authorize(r) => {
            let standing = judge_token(cs, link, &r.id_tag).await?;
            encode(&m::authorize::AuthorizeResponse { id_tag_info: id_tag_info(standing) })
        }
        Incoming::StartTransaction(r) => {
            cs.take(link, ChargerReport::Clock { stamped: r.timestamp, stamp: Stamp::Event }).await?;
            let standing = judge_token(cs, link, &r.id_tag).await?;
            let start = db::TxStart {
                connector_no: i64::from(r.connector_id),
                id_tag: r.id_tag,
                started_at: super::quirks::effective_time(r.timestamp, now_ms()),
                started_at_charger: r.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                meter_start_wh: Some(register_wh(link, r.meter_start)),
            };
            // 1.6 numbers a session with our id: the row is made here, replays find the same one.
            let (tx, fresh) = db::start_transaction_v16(&cs.db, id, &start).await.map_err(internal)?;
            if !fresh {
                tracing::info!(charger.id = %id, transaction.id = %tx, "replayed StartTransaction: same transaction");
            } else if standing == db::TokenStanding::Accepted {
                let started = ChargerReport::SessionStarted {
                    connector: r.connector_id,
                    transaction: tx,
                    ocpp_tx_id: tx.0.to_string(),
                    meter_start_wh: start.meter_start_wh,
                };
                cs.take(link, started).await?;
            } else {
                tracing::info!(charger.id = %id, transaction.id = %tx, ?standing, "transaction of an unauthorised tag recorded");
            }
            let transaction_id = i32::try_from(tx.0)
                .map_err(|_| RpcError::new(ErrorCode::InternalError, "transaction id overflow"))?;
            encode(&m::start_transaction::StartTransactionResponse {
                id_tag_info: id_tag_info(standing),
                transaction_id,
            })
        }
        Incoming::StopTransaction(r) => {
            cs.take(link, ChargerReport::Clock { stamped: r.timestamp, stamp: Stamp::Event }).await?;
            let ocpp_tx_id = if super::quirks::is_placeholder_transaction_id(r.transaction_id) {
                // Started offline, never got an id from us: keep it apart from every real one.
                format!("offline:{}:{}", r.transaction_id, r.timestamp.timestamp_millis())
            } else {
                r.transaction_id.to_string()
            };
            let ended = ChargerReport::SessionEnded {
                connector: 0,
                ocpp_tx_id,
                stop: db::TxStop {
                    stopped_at: super::quirks::effective_time(r.timestamp, now_ms()),
                    stopped_at_charger: r.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    meter_stop_wh: Some(register_wh(link, r.meter_stop)),
                    reason: r.reason.as_ref().map(enum_text),
                    id_tag: r.id_tag.clone(),
                },
                samples: samples(r.transaction_data.unwrap_or_default()),
            };
            cs.take(link, ended).await?;
            let info = match &r.id_tag {
                Some(tag) => Some(id_tag_info(judge_token(cs, link, tag).await?)),
                None => None,
            };
            encode(&m::stop_transaction::StopTransactionResponse { id_tag_info: info })
        }
        Incoming::MeterValues(r) => {
            let transaction = match r.transaction_id {
                Some(t) => db::find_transaction(&cs.db, id, &t.to_string()).await.map_err(internal)?,
                None => None,
            };
            if let Some(stamped) = r.meter_value.iter().map(|v| v.timestamp).max() {
                cs.take(link, ChargerReport::Clock { stamped, stamp: Stamp::Sample }).await?;
            }
            let samples = samples(r.meter_value);
            cs.take(link, ChargerReport::Meter { connector: r.connector_id, transaction, samples }).await?;
            encode(&m::meter_values::MeterValuesResponse {})
        }
        Incoming::DataTransfer(r) => {
            db::record_event(&cs.db, id, "data_transfer", &r.vendor_string, &raw_payload)
                .await
                .map_err(internal)?;
            encode(&m::data_transfer::DataTransferResponse {
                status: DataTransferStatus::UnknownVendorId,
                data: None,
            })
        }
        Incoming::DiagnosticsStatusNotification(r) => {
            db::record_event(&cs.db, id, "diagnostics", &enum_text(&r.status), &raw_payload)
                .await
                .map_err(internal)?;
            encode(&m::diagnostics_status_notification::DiagnosticsStatusNotificationResponse {})
        }
        Incoming::FirmwareStatusNotification(r) => {
            db::record_event(&cs.db, id, "firmware", &enum_text(&r.status), &raw_payload)
                .await
                .map_err(internal)?;
            encode(&m::firmware_status_notification::FirmwareStatusNotificationResponse {})
        }
    }
}

/// Checks an operator's command against the action's schema before it goes out.
pub fn command(action: &str, payload: Value) -> Result<Command, RpcError> {
    Command::decode_strict(action, payload)?
        .ok_or_else(|| RpcError::new(ErrorCode::NotImplemented, format!("unknown 1.6 command {action}")))
}

/// Checks a charger's answer to one of our commands against the action's response schema.
pub fn check_answer(action: &str, payload: Value) -> Result<(), RpcError> {
    Answer::decode_strict(action, payload)?
        .map(|_| ())
        .ok_or_else(|| RpcError::new(ErrorCode::NotImplemented, format!("unknown 1.6 command {action}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_incoming_action_is_declared_once() {
        let mut names = Incoming::NAMES.to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 10);
        assert_eq!(Command::NAMES.len(), 19);
    }

    #[test]
    fn lengths_beyond_the_schema_are_caught() {
        let long =
            Incoming::decode("Authorize", json!({"idTag": "X".repeat(21)})).expect("decodes").expect("known");
        assert_eq!(long.check().expect_err("too long").code, ErrorCode::PropertyConstraintViolation);
        let fine =
            Incoming::decode("Authorize", json!({"idTag": "X".repeat(20)})).expect("decodes").expect("known");
        assert!(fine.check().is_ok());
    }

    #[test]
    fn typed_decoding_reports_the_ocpp_error() {
        let code = |action: &str, p: Value| Incoming::decode(action, p).expect_err("invalid").code;
        assert_eq!(code("Authorize", json!({})), ErrorCode::OccurrenceConstraintViolation);
        assert_eq!(code("Authorize", json!({"idTag": 5})), ErrorCode::TypeConstraintViolation);
        assert_eq!(
            code(
                "StatusNotification",
                json!({"connectorId": 1, "errorCode": "NoError", "status": "Dancing"})
            ),
            ErrorCode::PropertyConstraintViolation
        );
        assert!(matches!(Incoming::decode("Heartbeat", json!({})), Ok(Some(Incoming::Heartbeat(_)))));
        assert!(matches!(Incoming::decode("Dance", json!({})), Ok(None)));
    }

    #[test]
    fn commands_are_checked_before_they_leave() {
        assert!(command("RemoteStartTransaction", json!({"idTag": "T1", "connectorId": 1})).is_ok());
        assert_eq!(
            command("RemoteStartTransaction", json!({})).expect_err("missing").code,
            ErrorCode::OccurrenceConstraintViolation
        );
        assert_eq!(command("Dance", json!({})).expect_err("unknown").code, ErrorCode::NotImplemented);
        let too_long = command("RemoteStartTransaction", json!({"idTag": "X".repeat(21)}))
            .expect_err("idTag is CiString20");
        assert_eq!(too_long.code, ErrorCode::PropertyConstraintViolation);
        let extra = command("RemoteStartTransaction", json!({"idTag": "T", "surprise": true}))
            .expect_err("additional property");
        assert!(extra.description.contains("surprise"), "{}", extra.description);
        assert!(command("RemoteStartTransaction", json!({"idTag": "T", "connectorId": null})).is_ok());
    }
}
