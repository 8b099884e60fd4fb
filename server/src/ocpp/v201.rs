//! OCPP 2.0.1: typed dispatch of what charging stations send, and the commands we can send them.

use super::frame::{ErrorCode, RpcError};
use super::quirks;
use super::report::ChargerReport;
use super::{
    actions, encode, enum_text, internal, judge_token, to_samples, CentralSystem, Link, RawSample,
    Registration,
};
use crate::balancer::clock::Stamp;
use crate::db::{now_ms, ocpp as db};
use chrono::Utc;
use rust_ocpp::v2_0_1::datatypes::id_token_info_type::IdTokenInfoType;
use rust_ocpp::v2_0_1::datatypes::meter_value_type::MeterValueType;
use rust_ocpp::v2_0_1::enumerations::authorization_status_enum_type::AuthorizationStatusEnumType;
use rust_ocpp::v2_0_1::enumerations::charging_state_enum_type::ChargingStateEnumType;
use rust_ocpp::v2_0_1::enumerations::data_transfer_status_enum_type::DataTransferStatusEnumType;
use rust_ocpp::v2_0_1::enumerations::notify_ev_charging_needs_status_enum_type::NotifyEVChargingNeedsStatusEnumType;
use rust_ocpp::v2_0_1::enumerations::registration_status_enum_type::RegistrationStatusEnumType;
use rust_ocpp::v2_0_1::enumerations::transaction_event_enum_type::TransactionEventEnumType;
use rust_ocpp::v2_0_1::messages as m;
use serde_json::Value;

actions! {
    /// What a 2.0.1 charging station may send us (the ones we handle).
    Incoming {
        Authorize(m::authorize::AuthorizeRequest) = "Authorize" validated,
        BootNotification(m::boot_notification::BootNotificationRequest) = "BootNotification",
        DataTransfer(m::datatransfer::DataTransferRequest) = "DataTransfer" validated,
        FirmwareStatusNotification(m::firmware_status_notification::FirmwareStatusNotificationRequest) = "FirmwareStatusNotification",
        Heartbeat(m::heartbeat::HeartbeatRequest) = "Heartbeat",
        LogStatusNotification(m::log_status_notification::LogStatusNotificationRequest) = "LogStatusNotification",
        MeterValues(m::meter_values::MeterValuesRequest) = "MeterValues",
        NotifyEVChargingNeeds(m::notify_ev_charging_needs::NotifyEVChargingNeedsRequest) = "NotifyEVChargingNeeds",
        NotifyEvent(m::notify_event::NotifyEventRequest) = "NotifyEvent",
        NotifyReport(m::notify_report::NotifyReportRequest) = "NotifyReport",
        SecurityEventNotification(m::security_event_notification::SecurityEventNotificationRequest) = "SecurityEventNotification",
        StatusNotification(m::status_notification::StatusNotificationRequest) = "StatusNotification",
        TransactionEvent(m::transaction_event::TransactionEventRequest) = "TransactionEvent",
    }
}

/// 2.0.1 actions a station may send that we recognise but do not support yet.
const RECOGNISED_UNSUPPORTED: &[&str] = &[
    "ClearedChargingLimit",
    "Get15118EVCertificate",
    "GetCertificateStatus",
    "NotifyChargingLimit",
    "NotifyCustomerInformation",
    "NotifyDisplayMessages",
    "NotifyEVChargingSchedule",
    "NotifyMonitoringReport",
    "PublishFirmwareStatusNotification",
    "ReportChargingProfiles",
    "ReservationStatusUpdate",
    "SignCertificate",
];

actions! {
    /// What we may send a 2.0.1 charging station.
    Command {
        CancelReservation(m::cancel_reservation::CancelReservationRequest) = "CancelReservation",
        ChangeAvailability(m::change_availability::ChangeAvailabilityRequest) = "ChangeAvailability",
        ClearCache(m::clear_cache::ClearCacheRequest) = "ClearCache",
        ClearChargingProfile(m::clear_charging_profile::ClearChargingProfileRequest) = "ClearChargingProfile",
        CostUpdated(m::cost_updated::CostUpdatedRequest) = "CostUpdated" validated,
        DataTransfer(m::datatransfer::DataTransferRequest) = "DataTransfer" validated,
        GetBaseReport(m::get_base_report::GetBaseReportRequest) = "GetBaseReport",
        GetCompositeSchedule(m::get_composite_schedule::GetCompositeScheduleRequest) = "GetCompositeSchedule",
        GetLog(m::get_log::GetLogRequest) = "GetLog",
        GetVariables(m::get_variables::GetVariablesRequest) = "GetVariables",
        RequestStartTransaction(m::request_start_transaction::RequestStartTransactionRequest) = "RequestStartTransaction",
        RequestStopTransaction(m::request_stop_transaction::RequestStopTransactionRequest) = "RequestStopTransaction",
        ReserveNow(m::reserve_now::ReserveNowRequest) = "ReserveNow",
        Reset(m::reset::ResetRequest) = "Reset",
        SetChargingProfile(m::set_charging_profile::SetChargingProfileRequest) = "SetChargingProfile",
        SetDisplayMessage(m::set_display_message::SetDisplayMessageRequest) = "SetDisplayMessage",
        SetVariables(m::set_variables::SetVariablesRequest) = "SetVariables",
        TriggerMessage(m::trigger_message::TriggerMessageRequest) = "TriggerMessage",
        UnlockConnector(m::unlock_connector::UnlockConnectorRequest) = "UnlockConnector",
        UpdateFirmware(m::update_firmware::UpdateFirmwareRequest) = "UpdateFirmware",
    }
}

actions! {
    /// What a 2.0.1 station answers to each command, for checking its answers.
    Answer {
        CancelReservation(m::cancel_reservation::CancelReservationResponse) = "CancelReservation",
        ChangeAvailability(m::change_availability::ChangeAvailabilityResponse) = "ChangeAvailability",
        ClearCache(m::clear_cache::ClearCacheResponse) = "ClearCache",
        ClearChargingProfile(m::clear_charging_profile::ClearChargingProfileResponse) = "ClearChargingProfile",
        CostUpdated(m::cost_updated::CostUpdatedResponse) = "CostUpdated",
        DataTransfer(m::datatransfer::DataTransferResponse) = "DataTransfer",
        GetBaseReport(m::get_base_report::GetBaseReportResponse) = "GetBaseReport",
        GetCompositeSchedule(m::get_composite_schedule::GetCompositeScheduleResponse) = "GetCompositeSchedule",
        GetLog(m::get_log::GetLogResponse) = "GetLog",
        GetVariables(m::get_variables::GetVariablesResponse) = "GetVariables",
        RequestStartTransaction(m::request_start_transaction::RequestStartTransactionResponse) = "RequestStartTransaction",
        RequestStopTransaction(m::request_stop_transaction::RequestStopTransactionResponse) = "RequestStopTransaction",
        ReserveNow(m::reserve_now::ReserveNowResponse) = "ReserveNow",
        Reset(m::reset::ResetResponse) = "Reset",
        SetChargingProfile(m::set_charging_profile::SetChargingProfileResponse) = "SetChargingProfile",
        SetDisplayMessage(m::set_display_message::SetDisplayMessageResponse) = "SetDisplayMessage",
        SetVariables(m::set_variables::SetVariablesResponse) = "SetVariables",
        TriggerMessage(m::trigger_message::TriggerMessageResponse) = "TriggerMessage",
        UnlockConnector(m::unlock_connector::UnlockConnectorResponse) = "UnlockConnector",
        UpdateFirmware(m::update_firmware::UpdateFirmwareResponse) = "UpdateFirmware",
    }
}

fn id_token_info(standing: db::TokenStanding) -> IdTokenInfoType {
    let status = match standing {
        db::TokenStanding::Accepted => AuthorizationStatusEnumType::Accepted,
        db::TokenStanding::Blocked => AuthorizationStatusEnumType::Blocked,
        db::TokenStanding::Expired => AuthorizationStatusEnumType::Expired,
        db::TokenStanding::Unknown => AuthorizationStatusEnumType::Unknown,
    };
    IdTokenInfoType { status, ..Default::default() }
}

fn samples(values: Vec<MeterValueType>) -> Vec<db::Sample> {
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
                    unit: s.unit_of_measure.as_ref().and_then(|u| u.unit.clone()),
                    multiplier: s.unit_of_measure.as_ref().and_then(|u| u.multiplier).unwrap_or(0),
                    value: s.value.to_string(),
                })
                .collect();
            to_samples(mv.timestamp, raw)
        })
        .collect()
}

async fn record(
    cs: &CentralSystem,
    link: &Link,
    kind: &str,
    status: &str,
    payload: &str,
) -> Result<(), RpcError> {
    db::record_event(&cs.db, &link.charger, kind, status, payload).await.map_err(internal)
}

pub async fn handle(
    cs: &CentralSystem,
    link: &Link,
    action: &str,
    payload: Value,
) -> Result<Value, RpcError> {
    let raw_payload = payload.to_string();
    if let Err(err) = id_token_lengths(&payload).and_then(|()| schema_lengths(action, &payload)) {
        if !link.lenient {
            return Err(err);
        }
        tracing::warn!(charger.id = %link.charger, action, reason = %err.description, "accepted a value outside the schema");
    }
    let Some(request) = Incoming::decode_from(link, action, payload)? else {
        if RECOGNISED_UNSUPPORTED.contains(&action) {
            return Err(RpcError::new(ErrorCode::NotSupported, format!("{action} is not supported")));
        }
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
        Incoming::StatusNotification(r) => super::connector_within_limit(cs, r.evse_id)?,
        Incoming::MeterValues(r) => super::connector_within_limit(cs, r.evse_id)?,
        Incoming::NotifyEVChargingNeeds(r) => super::connector_within_limit(cs, r.evse_id)?,
        Incoming::TransactionEvent(r) => {
            super::connector_within_limit(cs, r.evse.as_ref().map_or(0, |e| e.id))?
        }
        _ => {}
    }
    let id = &link.charger;
    let now = Utc::now();
    match request {
        Incoming::BootNotification(r) if link.site.is_none() => {
            db::note_request_boot(&cs.db, id, &r.charging_station.vendor_name, &r.charging_station.model)
                .await
                .map_err(internal)?;
            tracing::info!(charger.id = %id, "boot of a charger waiting for an operator: Pending");
            encode(&m::boot_notification::BootNotificationResponse {
                current_time: now,
                interval: u16::try_from(cs.settings.heartbeat_interval.as_secs()).unwrap_or(300),
                status: RegistrationStatusEnumType::Pending,
                status_info: None,
            })
        }
        Incoming::BootNotification(r) => {
            let station = r.charging_station;
            let info = db::BootInfo {
                vendor: station.vendor_name,
                model: station.model,
                serial: station.serial_number,
                firmware: station.firmware_version,
                iccid: station.modem.as_ref().and_then(|m| m.iccid.clone()),
                imsi: station.modem.as_ref().and_then(|m| m.imsi.clone()),
                meter_type: None,
                meter_serial: None,
            };
            let status = match cs.boot(link, &info, &raw_payload).await? {
                Registration::Accepted => RegistrationStatusEnumType::Accepted,
                Registration::Pending => RegistrationStatusEnumType::Pending,
                Registration::Rejected => RegistrationStatusEnumType::Rejected,
            };
            encode(&m::boot_notification::BootNotificationResponse {
                current_time: now,
                interval: u16::try_from(cs.settings.heartbeat_interval.as_secs()).unwrap_or(300),
                status,
                status_info: None,
            })
        }
        Incoming::Heartbeat(_) => {
            db::touch(&cs.db, id).await.map_err(internal)?;
            encode(&m::heartbeat::HeartbeatResponse { current_time: now })
        }
        Incoming::StatusNotification(r) => {
            cs.take(link, ChargerReport::Clock { stamped: r.timestamp, stamp: Stamp::Event }).await?;
            // We address connectors by EVSE: 2.0.1's (evse, connector) maps to our connector number = evse id.
            let status = ChargerReport::Status {
                connector: u32::try_from(r.evse_id).unwrap_or(0),
                status: enum_text(&r.connector_status),
                error_code: String::new(),
                info: format!("connector {}", r.connector_id),
                charger_time: Some(quirks::effective_time(r.timestamp, now_ms())),
            };
            cs.take(link, status).await?;
            encode(&m::status_notification::StatusNotificationResponse {})
        }
        Incoming::Authorize(r) => {
            let standing = judge_token(cs, link, &r.id_token.id_token).await?;
            encode(&m::authorize::AuthorizeResponse {
                certificate_status: None,
                id_token_info: id_token_info(standing),
            })
        }
        Incoming::TransactionEvent(r) => transaction_event(cs, link, r).await,
        Incoming::MeterValues(r) => {
            if let Some(stamped) = r.meter_value.iter().map(|v| v.timestamp).max() {
                cs.take(link, ChargerReport::Clock { stamped, stamp: Stamp::Sample }).await?;
            }
            // EVSE 0 is the station as a whole: on the one wired to the store meter, the store's load.
            let reading = ChargerReport::Meter {
                connector: u32::try_from(r.evse_id).unwrap_or(0),
                transaction: None,
                samples: samples(r.meter_value),
            };
            cs.take(link, reading).await?;
            encode(&m::meter_values::MeterValuesResponse {})
        }
        Incoming::NotifyReport(r) => {
            record(cs, link, "report", &r.request_id.to_string(), &raw_payload).await?;
            encode(&m::notify_report::NotifyReportResponse {})
        }
        Incoming::NotifyEvent(_) => {
            record(cs, link, "event", "", &raw_payload).await?;
            encode(&m::notify_event::NotifyEventResponse {})
        }
        Incoming::SecurityEventNotification(r) => {
            tracing::warn!(charger.id = %id, kind = %r.kind, "security event");
            record(cs, link, "security", &r.kind, &raw_payload).await?;
            encode(&m::security_event_notification::SecurityEventNotificationResponse {})
        }
        Incoming::NotifyEVChargingNeeds(r) => {
            record(cs, link, "ev_charging_needs", &r.evse_id.to_string(), &raw_payload).await?;
            let needs = &r.charging_needs;
            let ac = needs.ac_charging_parameters.as_ref();
            let needs = ChargerReport::EvNeeds {
                connector: u32::try_from(r.evse_id).unwrap_or(0),
                ev_max_a: ac.and_then(|p| u32::try_from(p.ev_max_current).ok()),
                departure_utc_ms: needs.departure_time.map(|t| t.timestamp_millis()),
                energy_wh: ac.and_then(|p| u32::try_from(p.energy_amount).ok()),
            };
            cs.take(link, needs).await?;
            encode(&m::notify_ev_charging_needs::NotifyEVChargingNeedsResponse {
                status: NotifyEVChargingNeedsStatusEnumType::Accepted,
                status_info: None,
            })
        }
        Incoming::FirmwareStatusNotification(r) => {
            record(cs, link, "firmware", &enum_text(&r.status), &raw_payload).await?;
            encode(&m::firmware_status_notification::FirmwareStatusNotificationResponse {})
        }
        Incoming::LogStatusNotification(r) => {
            record(cs, link, "log", &enum_text(&r.status), &raw_payload).await?;
            encode(&m::log_status_notification::LogStatusNotificationResponse {})
        }
        Incoming::DataTransfer(r) => {
            record(cs, link, "data_transfer", &r.vendor_id, &raw_payload).await?;
            encode(&m::datatransfer::DataTransferResponse {
                status: DataTransferStatusEnumType::UnknownVendorId,
                data: None,
                status_info: None,
            })
        }
    }
}

/// TransactionEvent (2.0.1 E01–E07): Started / Updated / Ended, deduplicated by seqNo.
async fn transaction_event(
    cs: &CentralSystem,
    link: &Link,
    r: m::transaction_event::TransactionEventRequest,
) -> Result<Value, RpcError> {
    let id = &link.charger;
    let received = now_ms();
    if r.offline != Some(true) {
        // One queued while offline says nothing of the clock now.
        cs.take(link, ChargerReport::Clock { stamped: r.timestamp, stamp: Stamp::Event }).await?;
    }
    let ocpp_tx_id = r.transaction_info.transaction_id.clone();
    let data = samples(r.meter_value.clone().unwrap_or_default());
    let charger_time = r.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let token = r.id_token.as_ref().map(|t| t.id_token.clone());
    let connector_no = i64::from(r.evse.as_ref().map_or(0, |e| e.id));
    let event_type = enum_text(&r.event_type);
    let start = db::TxStart {
        connector_no,
        id_tag: token.clone().unwrap_or_default(),
        started_at: quirks::effective_time(r.timestamp, received),
        started_at_charger: charger_time.clone(),
        meter_start_wh: super::energy_register_wh(&data, "Transaction.Begin"),
    };
    let started = matches!(r.event_type, TransactionEventEnumType::Started);
    // 2.0.1 names its sessions and numbers their events: the row is found or made here, once per
    // event, so a replayed or reordered event is recognised before anything is applied.
    let (tx, connector_no) =
        db::upsert_transaction_v201(&cs.db, id, &ocpp_tx_id, &start, started).await.map_err(internal)?;
    let offline = r.offline.unwrap_or(false);
    let seen = db::record_tx_event(
        &cs.db,
        tx,
        i64::from(r.seq_no),
        &event_type,
        &enum_text(&r.trigger_reason),
        offline,
        &charger_time,
    )
    .await
    .map_err(internal)?;
    match seen {
        None => {
            tracing::info!(charger.id = %id, ocpp.transaction = %ocpp_tx_id, seq_no = r.seq_no, "replayed TransactionEvent ignored")
        }
        Some(previous) => {
            if let Some(prev) = previous {
                if i64::from(r.seq_no) != prev + 1 {
                    tracing::warn!(charger.id = %id, ocpp.transaction = %ocpp_tx_id, expected = prev + 1, got = r.seq_no, "seqNo gap");
                }
            }
            db::enrich_transaction(&cs.db, tx, token.as_deref(), start.meter_start_wh)
                .await
                .map_err(internal)?;
            let connector = u32::try_from(connector_no).unwrap_or(0);
            if matches!(r.event_type, TransactionEventEnumType::Ended) {
                let stop = db::TxStop {
                    stopped_at: quirks::effective_time(r.timestamp, received),
                    stopped_at_charger: charger_time.clone(),
                    meter_stop_wh: super::energy_register_wh(&data, "Transaction.End")
                        .or_else(|| super::energy_register_wh(&data, "")),
                    reason: r.transaction_info.stopped_reason.as_ref().map(enum_text),
                    id_tag: token.clone(),
                };
                cs.take(link, ChargerReport::SessionEnded { connector, ocpp_tx_id, stop, samples: data })
                    .await?;
            } else {
                if started {
                    tracing::debug!(charger.id = %id, transaction.id = %tx, offline, "TransactionEvent Started");
                    // Without a Transaction.Begin reading, a register that restarts each session starts at 0.
                    let meter_start = start.meter_start_wh.or(link.session_register.then_some(0));
                    let started = ChargerReport::SessionStarted {
                        connector,
                        transaction: tx,
                        ocpp_tx_id: ocpp_tx_id.clone(),
                        meter_start_wh: meter_start,
                    };
                    cs.take(link, started).await?;
                }
                // The balancer hears of the reading once it knows the session (a Started event's own
                // reading counts too), and of a suspended car after the reading.
                let reading = ChargerReport::Meter { connector, transaction: Some(tx), samples: data };
                cs.take(link, reading).await?;
                let not_drawing = matches!(
                    r.transaction_info.charging_state,
                    Some(
                        ChargingStateEnumType::EVConnected
                            | ChargingStateEnumType::SuspendedEV
                            | ChargingStateEnumType::SuspendedEVSE
                            | ChargingStateEnumType::Idle
                    )
                );
                if not_drawing && !offline {
                    cs.take(link, ChargerReport::DrawStopped { connector }).await?;
                }
            }
        }
    }
    let id_token_info = match &token {
        Some(t) => Some(id_token_info(judge_token(cs, link, t).await?)),
        None => None,
    };
    encode(&m::transaction_event::TransactionEventResponse { id_token_info, ..Default::default() })
}

/// 2.0.1 `IdTokenType.idToken` (and `additionalIdToken`) are identifierString(36); rust-ocpp does
/// not check their length, so we do, wherever one appears in a payload.
fn id_token_lengths(payload: &Value) -> Result<(), RpcError> {
    match payload {
        Value::Object(map) => {
            for key in ["idToken", "additionalIdToken"] {
                if let Some(Value::String(token)) = map.get(key) {
                    if token.chars().count() > 36 {
                        return Err(RpcError::new(
                            ErrorCode::PropertyConstraintViolation,
                            format!("{key} is longer than 36 characters"),
                        ));
                    }
                }
            }
            map.values().try_for_each(id_token_lengths)
        }
        Value::Array(items) => items.iter().try_for_each(id_token_lengths),
        _ => Ok(()),
    }
}

/// String lengths the 2.0.1 schemas set on what stations send that rust-ocpp does not check (read
/// from the official JSON schemas; `[]` is every item of an array). Id tokens are checked everywhere
/// by [`id_token_lengths`]; `customData` is not read at all.
const INCOMING_LENGTHS: &[(&[&str], &str, usize)] = &[
    (&["Authorize"], "idToken.additionalInfo[].type", 50),
    (&["Authorize"], "certificate", 5500),
    (&["Authorize"], "iso15118CertificateHashData[].issuerNameHash", 128),
    (&["Authorize"], "iso15118CertificateHashData[].issuerKeyHash", 128),
    (&["Authorize"], "iso15118CertificateHashData[].serialNumber", 40),
    (&["Authorize"], "iso15118CertificateHashData[].responderURL", 512),
    (&["BootNotification"], "chargingStation.serialNumber", 25),
    (&["BootNotification"], "chargingStation.model", 20),
    (&["BootNotification"], "chargingStation.modem.iccid", 20),
    (&["BootNotification"], "chargingStation.modem.imsi", 20),
    (&["BootNotification"], "chargingStation.vendorName", 50),
    (&["BootNotification"], "chargingStation.firmwareVersion", 50),
    (
        &["MeterValues", "TransactionEvent"],
        "meterValue[].sampledValue[].signedMeterValue.signedMeterData",
        2500,
    ),
    (&["MeterValues", "TransactionEvent"], "meterValue[].sampledValue[].signedMeterValue.signingMethod", 50),
    (&["MeterValues", "TransactionEvent"], "meterValue[].sampledValue[].signedMeterValue.encodingMethod", 50),
    (&["MeterValues", "TransactionEvent"], "meterValue[].sampledValue[].signedMeterValue.publicKey", 2500),
    (&["MeterValues", "TransactionEvent"], "meterValue[].sampledValue[].unitOfMeasure.unit", 20),
    (&["NotifyEvent"], "eventData[].actualValue", 2500),
    (&["NotifyEvent"], "eventData[].techCode", 50),
    (&["NotifyEvent"], "eventData[].techInfo", 500),
    (&["NotifyEvent"], "eventData[].transactionId", 36),
    (&["NotifyEvent"], "eventData[].component.name", 50),
    (&["NotifyEvent"], "eventData[].component.instance", 50),
    (&["NotifyEvent"], "eventData[].variable.name", 50),
    (&["NotifyEvent"], "eventData[].variable.instance", 50),
    (&["NotifyReport"], "reportData[].component.name", 50),
    (&["NotifyReport"], "reportData[].component.instance", 50),
    (&["NotifyReport"], "reportData[].variable.name", 50),
    (&["NotifyReport"], "reportData[].variable.instance", 50),
    (&["NotifyReport"], "reportData[].variableAttribute[].value", 2500),
    (&["NotifyReport"], "reportData[].variableCharacteristics.unit", 16),
    (&["NotifyReport"], "reportData[].variableCharacteristics.valuesList", 1000),
    (&["SecurityEventNotification"], "type", 50),
    (&["SecurityEventNotification"], "techInfo", 255),
    (&["TransactionEvent"], "transactionInfo.transactionId", 36),
    (&["TransactionEvent"], "idToken.additionalInfo[].type", 50),
];

fn schema_lengths(action: &str, payload: &Value) -> Result<(), RpcError> {
    for (_, path, max) in INCOMING_LENGTHS.iter().filter(|(actions, _, _)| actions.contains(&action)) {
        if too_long(payload, path, *max) {
            return Err(RpcError::new(
                ErrorCode::PropertyConstraintViolation,
                format!("{action}: {path} is longer than {max} characters"),
            ));
        }
    }
    Ok(())
}

/// Whether a string at `path` (`a.b[].c`) is longer than `max` characters.
fn too_long(value: &Value, path: &str, max: usize) -> bool {
    let (head, rest) = path.split_once('.').unwrap_or((path, ""));
    let (key, each) = head.strip_suffix("[]").map_or((head, false), |k| (k, true));
    let Some(child) = value.get(key) else { return false };
    let check = |v: &Value| {
        if rest.is_empty() {
            v.as_str().is_some_and(|s| s.chars().count() > max)
        } else {
            too_long(v, rest, max)
        }
    };
    if each {
        child.as_array().is_some_and(|items| items.iter().any(check))
    } else {
        check(child)
    }
}

/// Checks an operator's command against the action's schema before it goes out.
pub fn command(action: &str, payload: Value) -> Result<Command, RpcError> {
    id_token_lengths(&payload)?;
    Command::decode_strict(action, payload)?
        .ok_or_else(|| RpcError::new(ErrorCode::NotImplemented, format!("unknown 2.0.1 command {action}")))
}

/// Checks a charger's answer to one of our commands against the action's response schema.
pub fn check_answer(action: &str, payload: Value) -> Result<(), RpcError> {
    Answer::decode_strict(action, payload)?
        .map(|_| ())
        .ok_or_else(|| RpcError::new(ErrorCode::NotImplemented, format!("unknown 2.0.1 command {action}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_lengths_reach_into_arrays_and_count_characters() {
        let unit = |u: &str| json!({"evseId": 1, "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": 1.0}, {"value": 2.0, "unitOfMeasure": {"unit": u}}]}]});
        assert!(schema_lengths("MeterValues", &unit(&"k".repeat(20))).is_ok());
        let err = schema_lengths("MeterValues", &unit(&"k".repeat(21))).expect_err("21 > 20");
        assert_eq!(err.code, ErrorCode::PropertyConstraintViolation);
        assert!(err.description.contains("unitOfMeasure.unit"), "{}", err.description);
        assert!(
            schema_lengths(
                "BootNotification",
                &json!({"chargingStation": {"model": "é".repeat(20), "vendorName": "V"}})
            )
            .is_ok(),
            "characters, not bytes"
        );
        assert!(schema_lengths(
            "BootNotification",
            &json!({"chargingStation": {"model": "m".repeat(21), "vendorName": "V"}})
        )
        .is_err());
        assert!(
            schema_lengths("Heartbeat", &json!({"anything": "x".repeat(9000)})).is_ok(),
            "no rule, no refusal"
        );
    }
    use serde_json::json;

    #[test]
    fn declared_actions() {
        assert_eq!(Incoming::NAMES.len(), 13);
        assert_eq!(Command::NAMES.len(), 20);
        for name in RECOGNISED_UNSUPPORTED {
            assert!(!Incoming::NAMES.contains(name), "{name} is both handled and unsupported");
        }
    }

    #[test]
    fn request_start_is_checked() {
        let ok = json!({"idToken": {"idToken": "T1", "type": "Central"}, "remoteStartId": 1, "evseId": 1});
        assert!(command("RequestStartTransaction", ok).is_ok());
        let long = json!({"idToken": {"idToken": "T".repeat(37), "type": "Central"}, "remoteStartId": 1});
        assert_eq!(
            command("RequestStartTransaction", long).expect_err("too long").code,
            ErrorCode::PropertyConstraintViolation
        );
        let bad = json!({"idToken": {"idToken": "T1", "type": "Teleport"}, "remoteStartId": 1});
        assert_eq!(
            command("RequestStartTransaction", bad).expect_err("bad enum").code,
            ErrorCode::PropertyConstraintViolation
        );
    }
}
