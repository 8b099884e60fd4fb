//! Smart charging in OCPP terms, for both versions: the charging profiles the balancer sets, the
//! meter readings it asks chargers for, and how their answers read, built from and read into
//! rust-ocpp's typed messages. Pure: the balancer's shell carries these calls through the registry
//! and feeds the answers back.

use crate::balancer::policy::METER_SAMPLE_INTERVAL_S;
use crate::balancer::units::DeciAmps;
use crate::ocpp::frame::OcppVersion;
use crate::ocpp::registry::CallOutcome;
use crate::ocpp::{v16, v201};
use rust_decimal::Decimal;
use rust_ocpp::v1_6::{messages as m16, types as t16};
use rust_ocpp::v2_0_1::{datatypes as d201, enumerations as e201, messages as m201};
use serde_json::Value;

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
            // Both versions answer `{"status": ...}`; only Accepted takes the profile.
            CallOutcome::Answered(v) => match decode::<answers::Status>(v) {
                Ok(a) if a.status == "Accepted" => ProfileAnswer::Accepted,
                _ => ProfileAnswer::Refused,
            },
            CallOutcome::CallError { .. } => ProfileAnswer::Refused,
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
    let commands = match version {
        OcppVersion::V16 => {
            let (data, every) = match readings {
                Readings::Transactions => ("MeterValuesSampledData", "MeterValueSampleInterval"),
                Readings::StoreMeter => ("MeterValuesAlignedData", "ClockAlignedDataInterval"),
            };
            let change = |key: &str, value: String| {
                Command::V16(v16::Command::ChangeConfiguration(
                    m16::change_configuration::ChangeConfigurationRequest { key: key.to_owned(), value },
                ))
            };
            vec![change(data, list), change(every, interval)]
        }
        OcppVersion::V201 => {
            let (component, data, every) = match readings {
                Readings::Transactions => ("SampledDataCtrlr", "TxUpdatedMeasurands", "TxUpdatedInterval"),
                Readings::StoreMeter => ("AlignedDataCtrlr", "Measurands", "Interval"),
            };
            let set = |name: &str, value: String| d201::set_variable_data_type::SetVariableDataType {
                attribute_type: None,
                attribute_value: value,
                component: component_named(component),
                variable: d201::variable_type::VariableType { name: name.to_owned(), instance: None },
            };
            vec![Command::V201(v201::Command::SetVariables(m201::set_variables::SetVariablesRequest {
                set_variable_data: vec![set(data, list), set(every, interval)],
            }))]
        }
    };
    commands.into_iter().map(Command::call).collect()
}

fn component_named(name: &str) -> d201::component_type::ComponentType {
    d201::component_type::ComponentType { name: name.to_owned(), instance: None, evse: None }
}

/// Why the answer to a ChangeConfiguration or SetVariables is a refusal (`None`: it took it; a
/// RebootRequired takes it from the charger's next boot).
pub fn configuration_refusal(version: OcppVersion, answer: &Value) -> Option<String> {
    let took = |status: &str| matches!(status, "Accepted" | "RebootRequired");
    match version {
        OcppVersion::V16 => match decode::<answers::Status>(answer) {
            Ok(a) if took(&a.status) => None,
            Ok(a) => Some(format!("status {:?}", a.status)),
            Err(why) => Some(why),
        },
        OcppVersion::V201 => {
            let results = match decode::<answers::SetVariables>(answer) {
                Ok(a) => a.set_variable_result,
                Err(why) => return Some(why),
            };
            let refused: Vec<String> = results
                .iter()
                .filter(|r| !took(&r.attribute_status))
                .map(|r| format!("{}: {}", r.variable.name, r.attribute_status))
                .collect();
            match (results.is_empty(), refused.is_empty()) {
                (true, _) => Some("no setVariableResult".to_owned()),
                (false, true) => None,
                (false, false) => Some(refused.join(", ")),
            }
        }
    }
}

/// The call that asks a charger how many periods a charging schedule may have.
pub fn schedule_periods_query(version: OcppVersion) -> (&'static str, Value) {
    match version {
        OcppVersion::V16 => {
            Command::V16(v16::Command::GetConfiguration(m16::get_configuration::GetConfigurationRequest {
                key: Some(vec!["ChargingScheduleMaxPeriods".to_owned()]),
            }))
        }
        OcppVersion::V201 => {
            Command::V201(v201::Command::GetVariables(m201::get_variables::GetVariablesRequest {
                get_variable_data: vec![d201::get_variable_data_type::GetVariableDataType {
                    attribute_type: None,
                    component: component_named("SmartChargingCtrlr"),
                    variable: d201::variable_type::VariableType {
                        name: "PeriodsPerSchedule".to_owned(),
                        instance: None,
                    },
                }],
            }))
        }
    }
    .call()
}

/// The number of periods from the answer to [`schedule_periods_query`] (`None`: not said).
pub fn schedule_periods(version: OcppVersion, answer: &Value) -> Option<u32> {
    let value = match version {
        OcppVersion::V16 => {
            decode::<answers::GetConfiguration>(answer)
                .ok()?
                .configuration_key
                .into_iter()
                .find(|k| k.key == "ChargingScheduleMaxPeriods")?
                .value?
        }
        OcppVersion::V201 => {
            let result =
                decode::<answers::GetVariables>(answer).ok()?.get_variable_result.into_iter().next()?;
            if result.attribute_status != "Accepted" {
                return None;
            }
            result.attribute_value?
        }
    };
    value.trim().parse().ok()
}

/// The parts of chargers' answers we read, and only those: a charger that leaves out a field we do
/// not need (a key's `readonly`, a result's `component`) or writes a status we do not know is still
/// understood. Requests go out as rust-ocpp's full messages; answers come in as these.
mod answers {
    use serde::Deserialize;

    /// ChangeConfiguration (1.6), SetChargingProfile (both).
    #[derive(Deserialize)]
    pub struct Status {
        pub status: String,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct SetVariables {
        pub set_variable_result: Vec<SetVariableResult>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct SetVariableResult {
        pub attribute_status: String,
        #[serde(default)]
        pub variable: Named,
    }

    #[derive(Deserialize, Default)]
    pub struct Named {
        #[serde(default)]
        pub name: String,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct GetConfiguration {
        #[serde(default)]
        pub configuration_key: Vec<KeyValue>,
    }

    #[derive(Deserialize)]
    pub struct KeyValue {
        pub key: String,
        #[serde(default)]
        pub value: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct GetVariables {
        pub get_variable_result: Vec<GetVariableResult>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct GetVariableResult {
        pub attribute_status: String,
        #[serde(default)]
        pub attribute_value: Option<String>,
    }
}

/// A default profile (TxDefaultProfile): on connector (2.0.1 EVSE) 0 the charger-wide one at the
/// site's fallback, installed at boot; on a connector, that connector's own, one stack level above,
/// as the balancer steers it.
pub fn default_profile(version: OcppVersion, connector_no: u32, amps: DeciAmps) -> Value {
    let (id, stack) = match connector_no {
        0 => (DEFAULT_PROFILE_ID, 0),
        n => (connector_default_profile_id(n), 1),
    };
    let schedule = Schedule { periods: vec![(0, amps)], phases: None, start: None, duration_s: None };
    let profile = Profile { id, stack, purpose: Purpose::TxDefault, transaction: None, schedule };
    profile.request(version, connector_no)
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
    let mut periods = vec![(0, amps)];
    if let Some(s) = switch.filter(|s| s.after_s > 0) {
        periods.push((s.after_s, s.amps));
    }
    let schedule = Schedule {
        periods,
        phases: Some(phases),
        start: lease.map(|l| l.start).or(switch.map(|s| s.start)),
        duration_s: lease.map(|l| l.duration_s),
    };
    let profile = Profile {
        id: tx_profile_id(connector_no),
        stack: 1,
        purpose: Purpose::Tx,
        transaction: Some(ocpp_tx_id),
        schedule,
    };
    profile.request(version, connector_no)
}

/// What a profile is for.
#[derive(Clone, Copy)]
enum Purpose {
    /// A session's limit.
    Tx,
    /// What a connector (or, on 0, the whole charger) runs without a session's limit.
    TxDefault,
}

/// A schedule in amps: its periods (seconds from its start, amps); Absolute from `start` when
/// there is one, else Relative.
struct Schedule {
    periods: Vec<(u32, DeciAmps)>,
    phases: Option<u8>,
    start: Option<chrono::DateTime<chrono::Utc>>,
    duration_s: Option<u32>,
}

/// A charging profile in either version's terms.
struct Profile<'a> {
    id: i64,
    stack: u32,
    purpose: Purpose,
    transaction: Option<&'a str>,
    schedule: Schedule,
}

/// A limit as OCPP writes it: amps with one decimal.
fn limit(amps: DeciAmps) -> Decimal {
    Decimal::new(i64::from(amps.get()), 1)
}

fn int(value: impl TryInto<i32>) -> i32 {
    value.try_into().unwrap_or(i32::MAX)
}

impl Profile<'_> {
    /// The SetChargingProfile request that installs it on `connector_no` (2.0.1: the EVSE).
    fn request(self, version: OcppVersion, connector_no: u32) -> Value {
        let Schedule { periods, phases, start, duration_s } = self.schedule;
        let command = match version {
            OcppVersion::V16 => {
                let charging_schedule_period = periods
                    .iter()
                    .map(|&(at, amps)| t16::ChargingSchedulePeriod {
                        start_period: int(at),
                        limit: limit(amps),
                        number_phases: phases.map(i32::from),
                    })
                    .collect();
                Command::V16(v16::Command::SetChargingProfile(
                    m16::set_charging_profile::SetChargingProfileRequest {
                        connector_id: int(connector_no),
                        cs_charging_profiles: t16::ChargingProfile {
                            charging_profile_id: int(self.id),
                            // 1.6 transaction ids are integers; one we could not parse (started offline) is left out.
                            transaction_id: self.transaction.and_then(|tx| tx.parse::<i32>().ok()),
                            stack_level: self.stack,
                            charging_profile_purpose: match self.purpose {
                                Purpose::Tx => t16::ChargingProfilePurposeType::TxProfile,
                                Purpose::TxDefault => t16::ChargingProfilePurposeType::TxDefaultProfile,
                            },
                            charging_profile_kind: if start.is_some() {
                                t16::ChargingProfileKindType::Absolute
                            } else {
                                t16::ChargingProfileKindType::Relative
                            },
                            recurrency_kind: None,
                            valid_from: None,
                            valid_to: None,
                            charging_schedule: t16::ChargingSchedule {
                                duration: duration_s.map(int),
                                start_schedule: start,
                                charging_rate_unit: t16::ChargingRateUnitType::A,
                                charging_schedule_period,
                                min_charging_rate: None,
                            },
                        },
                    },
                ))
            }
            OcppVersion::V201 => {
                let charging_schedule_period = periods
                    .iter()
                    .map(|&(at, amps)| d201::charging_schedule_period_type::ChargingSchedulePeriodType {
                        start_period: int(at),
                        limit: limit(amps),
                        number_phases: phases.map(i32::from),
                        phase_to_use: None,
                    })
                    .collect();
                Command::V201(v201::Command::SetChargingProfile(m201::set_charging_profile::SetChargingProfileRequest {
                    evse_id: int(connector_no),
                    charging_profile: d201::charging_profile_type::ChargingProfileType {
                        id: int(self.id),
                        stack_level: int(self.stack),
                        charging_profile_purpose: match self.purpose {
                            Purpose::Tx => e201::charging_profile_purpose_enum_type::ChargingProfilePurposeEnumType::TxProfile,
                            Purpose::TxDefault => {
                                e201::charging_profile_purpose_enum_type::ChargingProfilePurposeEnumType::TxDefaultProfile
                            }
                        },
                        charging_profile_kind: if start.is_some() {
                            e201::charging_profile_kind_enum_type::ChargingProfileKindEnumType::Absolute
                        } else {
                            e201::charging_profile_kind_enum_type::ChargingProfileKindEnumType::Relative
                        },
                        recurrency_kind: None,
                        valid_from: None,
                        valid_to: None,
                        transaction_id: self.transaction.map(str::to_owned),
                        charging_schedule: vec![d201::charging_schedule_type::ChargingScheduleType {
                            id: int(self.id),
                            start_schedule: start,
                            duration: duration_s.map(int),
                            charging_rate_unit: e201::charging_rate_unit_enum_type::ChargingRateUnitEnumType::A,
                            min_charging_rate: None,
                            charging_schedule_period,
                            sales_tariff: None,
                        }],
                    },
                }))
            }
        };
        command.call().1
    }
}

/// A command of either version, typed, on its way out as an action and a payload.
enum Command {
    V16(v16::Command),
    V201(v201::Command),
}

impl Command {
    fn call(self) -> (&'static str, Value) {
        let (action, payload) = match &self {
            Command::V16(c) => (c.action(), c.payload()),
            Command::V201(c) => (c.action(), c.payload()),
        };
        // Our own typed structs always serialize; an empty payload would be refused by the charger.
        (action, payload.unwrap_or_else(|_| Value::Object(Default::default())))
    }
}

/// A charger's answer, typed; or why it is not that answer.
fn decode<T: serde::de::DeserializeOwned>(answer: &Value) -> Result<T, String> {
    serde_json::from_value(answer.clone()).map_err(|e| format!("not a valid answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_read_for_what_we_need_only() {
        // A key without `readonly`, a result without `component`: still understood.
        let key_only = json!({"configurationKey": [{"key": "ChargingScheduleMaxPeriods", "value": "2"}]});
        assert_eq!(schedule_periods(OcppVersion::V16, &key_only), Some(2));
        let bare =
            json!({"setVariableResult": [{"attributeStatus": "Accepted", "variable": {"name": "Interval"}}]});
        assert_eq!(configuration_refusal(OcppVersion::V201, &bare), None);
        // A status we do not know is a refusal that names it, not an unreadable answer.
        let odd = json!({"setVariableResult": [{"attributeStatus": "Pondering", "variable": {"name": "Interval"}}]});
        let refused = configuration_refusal(OcppVersion::V201, &odd);
        assert!(refused.as_deref().is_some_and(|r| r.contains("Interval: Pondering")), "{refused:?}");
        assert_eq!(
            ProfileAnswer::of(&CallOutcome::Answered(
                json!({"status": "Accepted", "statusInfo": {"reasonCode": "x"}})
            )),
            ProfileAnswer::Accepted
        );
        assert_eq!(
            ProfileAnswer::of(&CallOutcome::Answered(json!({"status": "Maybe"}))),
            ProfileAnswer::Refused
        );
        assert_eq!(ProfileAnswer::of(&CallOutcome::Answered(json!({}))), ProfileAnswer::Refused);
    }

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
        assert_eq!(p["chargingProfile"]["chargingSchedule"][0]["startSchedule"], "2025-11-24T16:00:00.000Z");
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
        assert_eq!(p["chargingProfile"]["chargingSchedule"][0]["startSchedule"], "2025-11-24T16:00:00.000Z");
    }
}
