//! Smart charging in OCPP terms, for both versions: the charging profiles the balancer sets, the
//! meter readings it asks chargers for, and how their answers read. Pure: the balancer's shell
//! carries these calls through the registry and feeds the answers back.

use crate::balancer::policy::METER_SAMPLE_INTERVAL_S;
use crate::balancer::units::DeciAmps;
use crate::ocpp::frame::OcppVersion;
use crate::ocpp::registry::CallOutcome;
use serde_json::{json, Value};

/// Profile id we use for a connector's TxProfile (a new one with the same id replaces the old).
pub fn tx_profile_id(connector_no: u32) -> i64 {
    1000 + i64::from(connector_no)
}

/// Profile id of the charger-wide default we install at boot.
pub const DEFAULT_PROFILE_ID: i64 = 999;

/// Profile id of a connector's own default, which the balancer steers above the charger-wide one.
pub fn connector_default_profile_id(connector_no: u32) -> i64 {
    2000 + i64::from(connector_no)
}

/// What a SetChargingProfile came to.
#[derive(Debug, PartialEq, Eq)]
pub enum ProfileAnswer {
    Accepted,
    /// Answered with another status, or a CALLERROR: it does not take this profile.
    Refused,
    /// No answer (timed out, or the link dropped first): it runs what it had or the new one.
    Unanswered,
}

impl ProfileAnswer {
    pub fn of(outcome: &CallOutcome) -> ProfileAnswer {
        match outcome {
            CallOutcome::Answered(v) if v["status"] == "Accepted" => ProfileAnswer::Accepted,
            CallOutcome::Answered(_) | CallOutcome::CallError { .. } => ProfileAnswer::Refused,
            CallOutcome::Timeout | CallOutcome::Disconnected => ProfileAnswer::Unanswered,
        }
    }
}

/// The readings a charger is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readings {
    /// Each transaction's energy register, per-phase currents and power: a car's phases and
    /// maximum are learned from them, and an incomer meter's arithmetic needs them.
    Transactions,
    /// A charger wired to the store meter: its per-phase currents on the clock (connector 0, or
    /// EVSE 0), the store's own load.
    StoreMeter,
}

impl Readings {
    /// The measurand lists to ask for, in both versions' words: the full one, then what the
    /// balancer cannot do without.
    pub fn measurands(self) -> &'static [&'static [&'static str]] {
        match self {
            Readings::Transactions => &[
                &["Energy.Active.Import.Register", "Current.Import", "Power.Active.Import"],
                &["Energy.Active.Import.Register", "Current.Import"],
            ],
            Readings::StoreMeter => &[&["Current.Import"]],
        }
    }
}

/// The calls that set a charger's readings (measurands and interval).
pub fn readings_requests(
    version: OcppVersion,
    readings: Readings,
    measurands: &[&str],
) -> Vec<(&'static str, Value)> {
    let list = measurands.join(",");
    let interval = METER_SAMPLE_INTERVAL_S.to_string();
    match version {
        OcppVersion::V16 => {
            let (data, every) = match readings {
                Readings::Transactions => ("MeterValuesSampledData", "MeterValueSampleInterval"),
                Readings::StoreMeter => ("MeterValuesAlignedData", "ClockAlignedDataInterval"),
            };
            vec![
                ("ChangeConfiguration", json!({"key": data, "value": list})),
                ("ChangeConfiguration", json!({"key": every, "value": interval})),
            ]
        }
        OcppVersion::V201 => {
            let (component, data, every) = match readings {
                Readings::Transactions => ("SampledDataCtrlr", "TxUpdatedMeasurands", "TxUpdatedInterval"),
                Readings::StoreMeter => ("AlignedDataCtrlr", "Measurands", "Interval"),
            };
            let set = |variable: &str, value: &str| json!({"component": {"name": component}, "variable": {"name": variable}, "attributeValue": value});
            vec![("SetVariables", json!({"setVariableData": [set(data, &list), set(every, &interval)]}))]
        }
    }
}

/// Why the answer to a ChangeConfiguration or SetVariables is a refusal (`None`: it took it; a
/// RebootRequired takes it from the charger's next boot).
pub fn configuration_refusal(version: OcppVersion, answer: &Value) -> Option<String> {
    match version {
        OcppVersion::V16 => match answer["status"].as_str() {
            Some("Accepted" | "RebootRequired") => None,
            other => Some(format!("status {other:?}")),
        },
        OcppVersion::V201 => {
            let results = answer["setVariableResult"].as_array().map(Vec::as_slice).unwrap_or_default();
            let refused: Vec<String> = results
                .iter()
                .filter(|r| !matches!(r["attributeStatus"].as_str(), Some("Accepted" | "RebootRequired")))
                .map(|r| format!("{}: {}", r["variable"]["name"], r["attributeStatus"]))
                .collect();
            match (results.is_empty(), refused.is_empty()) {
                (true, _) => Some("no setVariableResult".to_owned()),
                (false, true) => None,
                (false, false) => Some(refused.join(", ")),
            }
        }
    }
}

pub fn schedule_periods_query(version: OcppVersion) -> (&'static str, Value) {
    match version {
        OcppVersion::V16 => ("GetConfiguration", json!({"key": ["ChargingScheduleMaxPeriods"]})),
        OcppVersion::V201 => (
            "GetVariables",
            json!({"getVariableData": [{"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "PeriodsPerSchedule"}}]}),
        ),
    }
}

/// The number of periods from the answer to [`schedule_periods_query`] (`None`: not said).
pub fn schedule_periods(version: OcppVersion, answer: &Value) -> Option<u32> {
    let value = match version {
        OcppVersion::V16 => answer["configurationKey"]
            .as_array()?
            .iter()
            .find(|k| k["key"] == "ChargingScheduleMaxPeriods")?["value"]
            .as_str()?,
        OcppVersion::V201 => {
            let result = answer["getVariableResult"].as_array()?.first()?;
            if result["attributeStatus"] != "Accepted" {
                return None;
            }
            result["attributeValue"].as_str()?
        }
    };
    value.trim().parse().ok()
}

/// A default profile (TxDefaultProfile): on connector (2.0.1 EVSE) 0 the charger-wide one at the
/// site's fallback, installed at boot; on a connector, that connector's own, one stack level above,
/// as the balancer steers it.
pub fn default_profile(version: OcppVersion, connector_no: u32, amps: DeciAmps) -> Value {
    let period = json!({"startPeriod": 0, "limit": amps.as_amps()});
    let (id, stack) = match connector_no {
        0 => (DEFAULT_PROFILE_ID, 0),
        n => (connector_default_profile_id(n), 1),
    };
    match version {
        OcppVersion::V16 => json!({"connectorId": connector_no, "csChargingProfiles": {
            "chargingProfileId": id, "stackLevel": stack, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative", "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [period]}}}),
        OcppVersion::V201 => json!({"evseId": connector_no, "chargingProfile": {
            "id": id, "stackLevel": stack, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
            "chargingSchedule": [{"id": id, "chargingRateUnit": "A", "chargingSchedulePeriod": [period]}]}}),
    }
}

/// A limit that holds for a while only: from `start` for `duration_s` seconds, then the charger
/// falls back to its TxDefaultProfile (the balancer renews it before then).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfileLease {
    pub start: chrono::DateTime<chrono::Utc>,
    pub duration_s: u32,
}

/// A handover scheduled ahead: the limit changes `after_s` seconds after `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfileSwitch {
    pub start: chrono::DateTime<chrono::Utc>,
    pub after_s: u32,
    pub amps: DeciAmps,
}

/// A moment as a schedule's start (OCPP dateTimes here are whole seconds) and how far past it now is.
pub fn whole_second(now: chrono::DateTime<chrono::Utc>) -> (chrono::DateTime<chrono::Utc>, u64) {
    let into = now.timestamp_subsec_millis();
    (now - chrono::Duration::milliseconds(i64::from(into)), u64::from(into))
}

/// A schedule's second period, `ms` after its start, in the whole seconds a schedule counts in. The
/// balancer counts a switch from its moment on, so a decrease may come sooner (rounded down) and an
/// increase later (rounded up), never the other way.
pub fn switch_after_s(ms: u64, decrease: bool) -> u32 {
    let s = if decrease { ms / 1000 } else { ms.div_ceil(1000) };
    u32::try_from(s).unwrap_or(u32::MAX)
}

/// A session's limit as a TxProfile; with a lease, an Absolute schedule with a duration; with a
/// switch, an Absolute schedule whose second period holds the later limit.
pub fn tx_profile(
    version: OcppVersion,
    connector_no: u32,
    ocpp_tx_id: &str,
    amps: DeciAmps,
    phases: u8,
    lease: Option<ProfileLease>,
    switch: Option<ProfileSwitch>,
) -> Value {
    let mut periods = vec![json!({"startPeriod": 0, "limit": amps.as_amps(), "numberPhases": phases})];
    let id = tx_profile_id(connector_no);
    let start = lease.map(|l| l.start).or(switch.map(|s| s.start));
    if let Some(s) = switch.filter(|s| s.after_s > 0) {
        periods.push(json!({"startPeriod": s.after_s, "limit": s.amps.as_amps(), "numberPhases": phases}));
    }
    let mut schedule = json!({"chargingRateUnit": "A", "chargingSchedulePeriod": periods});
    let kind = if let Some(start) = start {
        schedule["startSchedule"] = json!(start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        if let Some(lease) = lease {
            schedule["duration"] = json!(lease.duration_s);
        }
        "Absolute"
    } else {
        "Relative"
    };
    match version {
        OcppVersion::V16 => {
            let mut profile = json!({"chargingProfileId": id, "stackLevel": 1, "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": kind, "chargingSchedule": schedule});
            // 1.6 transaction ids are integers; one we could not parse (started offline) is left out.
            if let Ok(tx) = ocpp_tx_id.parse::<i32>() {
                profile["transactionId"] = json!(tx);
            }
            json!({"connectorId": connector_no, "csChargingProfiles": profile})
        }
        OcppVersion::V201 => {
            schedule["id"] = json!(id);
            json!({"evseId": connector_no, "chargingProfile": {
                "id": id, "stackLevel": 1, "chargingProfilePurpose": "TxProfile", "chargingProfileKind": kind,
                "transactionId": ocpp_tx_id, "chargingSchedule": [schedule]}})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocpp::{v16, v201};

    #[test]
    fn profiles_fit_the_official_schemas() {
        for (version, payload) in [
            (OcppVersion::V16, tx_profile(OcppVersion::V16, 2, "17", DeciAmps::new(105), 3, None, None)),
            (
                OcppVersion::V16,
                tx_profile(OcppVersion::V16, 2, "17", DeciAmps::new(105), 3, Some(lease()), None),
            ),
            (
                OcppVersion::V16,
                tx_profile(OcppVersion::V16, 2, "17", DeciAmps::new(160), 3, Some(lease()), Some(switch())),
            ),
            (
                OcppVersion::V201,
                tx_profile(OcppVersion::V201, 1, "abc-1", DeciAmps::new(160), 3, None, Some(switch())),
            ),
            (
                OcppVersion::V201,
                tx_profile(OcppVersion::V201, 1, "abc-1", DeciAmps::new(60), 1, Some(lease()), None),
            ),
            (OcppVersion::V16, default_profile(OcppVersion::V16, 0, DeciAmps::from_amps(6))),
            (OcppVersion::V16, default_profile(OcppVersion::V16, 2, DeciAmps::ZERO)),
            (OcppVersion::V201, default_profile(OcppVersion::V201, 2, DeciAmps::from_amps(6))),
            (OcppVersion::V201, tx_profile(OcppVersion::V201, 1, "abc-1", DeciAmps::new(60), 1, None, None)),
            (OcppVersion::V201, default_profile(OcppVersion::V201, 0, DeciAmps::ZERO)),
        ] {
            let checked = match version {
                OcppVersion::V16 => v16::command("SetChargingProfile", payload.clone()).map(|_| ()),
                OcppVersion::V201 => v201::command("SetChargingProfile", payload.clone()).map(|_| ()),
            };
            assert!(checked.is_ok(), "{payload}: {checked:?}");
        }
    }

    #[test]
    fn readings_are_asked_in_each_version_and_a_refusal_is_read_from_the_answer() {
        let full = Readings::Transactions.measurands()[0];
        let v16_calls = readings_requests(OcppVersion::V16, Readings::Transactions, full);
        assert_eq!(v16_calls.len(), 2);
        assert_eq!(
            v16_calls[0].1["value"],
            "Energy.Active.Import.Register,Current.Import,Power.Active.Import"
        );
        assert_eq!(v16_calls[1].1, json!({"key": "MeterValueSampleInterval", "value": "10"}));
        let store =
            readings_requests(OcppVersion::V16, Readings::StoreMeter, Readings::StoreMeter.measurands()[0]);
        assert_eq!(store[0].1, json!({"key": "MeterValuesAlignedData", "value": "Current.Import"}));
        assert_eq!(store[1].1, json!({"key": "ClockAlignedDataInterval", "value": "10"}));
        for (action, request) in v16_calls.iter().chain(&store) {
            assert!(v16::command(action, request.clone()).is_ok(), "{action} {request}");
        }
        let fallback = Readings::Transactions.measurands()[1];
        let v201_calls = readings_requests(OcppVersion::V201, Readings::Transactions, fallback);
        let [(action, request)] = &v201_calls[..] else { panic!("one SetVariables: {v201_calls:?}") };
        assert!(v201::command(action, request.clone()).is_ok(), "{request}");
        assert_eq!(
            request["setVariableData"][0]["attributeValue"],
            "Energy.Active.Import.Register,Current.Import"
        );
        assert_eq!(request["setVariableData"][1]["variable"]["name"], "TxUpdatedInterval");
        let store = readings_requests(OcppVersion::V201, Readings::StoreMeter, &["Current.Import"]);
        assert!(v201::command(store[0].0, store[0].1.clone()).is_ok());
        assert_eq!(store[0].1["setVariableData"][0]["component"]["name"], "AlignedDataCtrlr");

        assert_eq!(configuration_refusal(OcppVersion::V16, &json!({"status": "Accepted"})), None);
        assert_eq!(configuration_refusal(OcppVersion::V16, &json!({"status": "RebootRequired"})), None);
        assert!(configuration_refusal(OcppVersion::V16, &json!({"status": "Rejected"})).is_some());
        let answer = |statuses: &[&str]| {
            json!({"setVariableResult": statuses.iter().map(|s| json!({
                "attributeStatus": s, "component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedMeasurands"}
            })).collect::<Vec<_>>()})
        };
        assert_eq!(configuration_refusal(OcppVersion::V201, &answer(&["Accepted", "Accepted"])), None);
        let refused = configuration_refusal(OcppVersion::V201, &answer(&["Accepted", "Rejected"]));
        assert!(refused.as_deref().is_some_and(|r| r.contains("Rejected")), "{refused:?}");
        assert!(configuration_refusal(OcppVersion::V201, &json!({})).is_some(), "no results is no answer");
    }

    #[test]
    fn the_schedule_periods_a_charger_takes_are_asked_in_its_version_and_read_from_its_answer() {
        let (action, ask) = schedule_periods_query(OcppVersion::V16);
        assert!(v16::command(action, ask).is_ok());
        let (action, ask) = schedule_periods_query(OcppVersion::V201);
        assert!(v201::command(action, ask).is_ok());
        let v16_answer = |keys: Value| json!({"configurationKey": keys});
        assert_eq!(
            schedule_periods(
                OcppVersion::V16,
                &v16_answer(json!([{"key": "ChargingScheduleMaxPeriods", "readonly": true, "value": "1"}]))
            ),
            Some(1)
        );
        assert_eq!(
            schedule_periods(
                OcppVersion::V16,
                &v16_answer(
                    json!([{"key": "ChargingScheduleMaxPeriods", "readonly": true, "value": " 24 "}])
                )
            ),
            Some(24)
        );
        assert_eq!(
            schedule_periods(OcppVersion::V16, &json!({"unknownKey": ["ChargingScheduleMaxPeriods"]})),
            None
        );
        assert_eq!(
            schedule_periods(
                OcppVersion::V16,
                &v16_answer(
                    json!([{"key": "ChargingScheduleMaxPeriods", "readonly": true, "value": "many"}])
                )
            ),
            None
        );
        let v201_answer = |status: &str| {
            json!({"getVariableResult": [{"attributeStatus": status, "attributeValue": "1",
                "component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "PeriodsPerSchedule"}}]})
        };
        assert_eq!(schedule_periods(OcppVersion::V201, &v201_answer("Accepted")), Some(1));
        assert_eq!(schedule_periods(OcppVersion::V201, &v201_answer("UnknownVariable")), None);
    }

    fn switch() -> ProfileSwitch {
        ProfileSwitch {
            start: chrono::DateTime::from_timestamp(1_764_000_000, 0).expect("valid time"),
            after_s: 90,
            amps: DeciAmps::from_amps(6),
        }
    }

    #[test]
    fn a_switch_moment_rounds_to_the_safe_side_of_a_whole_second() {
        // A decrease comes no later than the balancer counts it, an increase no sooner.
        assert_eq!(switch_after_s(19_400, true), 19);
        assert_eq!(switch_after_s(19_400, false), 20);
        assert_eq!(switch_after_s(20_000, true), 20);
        assert_eq!(switch_after_s(20_000, false), 20);
        assert_eq!(switch_after_s(999, true), 0);
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-30T12:00:05.750Z")
            .expect("a valid time")
            .with_timezone(&chrono::Utc);
        let (start, into) = whole_second(t);
        assert_eq!(start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "2026-11-30T12:00:05.000Z");
        assert_eq!(into, 750);
    }

    #[test]
    fn a_handover_is_a_second_period_of_the_same_schedule() {
        let p =
            tx_profile(OcppVersion::V16, 2, "17", DeciAmps::from_amps(16), 3, Some(lease()), Some(switch()));
        let periods = &p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"];
        assert_eq!(periods[0]["limit"], 16.0);
        assert_eq!((periods[1]["startPeriod"].as_u64(), periods[1]["limit"].as_f64()), (Some(90), Some(6.0)));
        assert_eq!(p["csChargingProfiles"]["chargingProfileKind"], "Absolute");
        let p = tx_profile(OcppVersion::V201, 1, "abc-1", DeciAmps::from_amps(16), 3, None, Some(switch()));
        assert_eq!(p["chargingProfile"]["chargingSchedule"][0]["startSchedule"], "2025-11-24T16:00:00Z");
        assert_eq!(
            p["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][1]["startPeriod"],
            90
        );
    }

    fn lease() -> ProfileLease {
        ProfileLease {
            start: chrono::DateTime::from_timestamp(1_764_000_000, 0).expect("valid time"),
            duration_s: 570,
        }
    }

    #[test]
    fn a_tx_profile_carries_the_limit_and_the_transaction() {
        let p = tx_profile(OcppVersion::V16, 2, "17", DeciAmps::new(105), 3, None, None);
        assert_eq!(p["csChargingProfiles"]["transactionId"], 17);
        assert_eq!(p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"], 10.5);
        let offline = tx_profile(OcppVersion::V16, 2, "offline:-1:5", DeciAmps::new(60), 3, None, None);
        assert!(offline["csChargingProfiles"].get("transactionId").is_none());
    }

    #[test]
    fn a_leased_limit_is_an_absolute_schedule_that_ends() {
        let p = tx_profile(OcppVersion::V16, 2, "17", DeciAmps::new(105), 3, Some(lease()), None);
        let profile = &p["csChargingProfiles"];
        assert_eq!(profile["chargingProfileKind"], "Absolute");
        assert_eq!(profile["chargingSchedule"]["startSchedule"], "2025-11-24T16:00:00Z");
        assert_eq!(profile["chargingSchedule"]["duration"], 570);
        let p = tx_profile(OcppVersion::V201, 1, "abc-1", DeciAmps::new(60), 1, Some(lease()), None);
        assert_eq!(p["chargingProfile"]["chargingProfileKind"], "Absolute");
        assert_eq!(p["chargingProfile"]["chargingSchedule"][0]["duration"], 570);
        assert_eq!(p["chargingProfile"]["chargingSchedule"][0]["startSchedule"], "2025-11-24T16:00:00Z");
    }
}
