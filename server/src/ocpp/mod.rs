//! The OCPP central system: chargers connect over WebSocket (`/ocpp/{chargePointId}`), speak
//! OCPP 1.6J or 2.0.1, and everything they report is persisted. Commands go out through the
//! [`registry::Registry`] of live connections.
//!
//! - [`frame`]: RPC framing (pure).
//! - [`quirks`]: the protocol bends of real chargers, handled on purpose (pure).
//! - [`v16`], [`v201`]: typed dispatch of each version's actions, translated into reports.
//! - [`report`]: what a charger said in neutral words, and `CentralSystem::take`, the one place a
//!   report is stored and told to the balancers and the drivers' plans.
//! - [`connection`]: one task per connection: framing, one outstanding CALL each way, pings.
//! - [`handshake`]: subprotocol negotiation and charger authentication.

pub mod connection;
pub mod edge;
pub mod frame;
pub mod frame_log;
pub mod fuzzing;
pub mod handshake;
pub mod quirks;
pub mod registry;
pub mod report;
pub mod smart_charging;
pub mod v16;
pub mod v201;

use crate::db::{ocpp as db, Db};
use app::domain::{ChargerId, SiteId};
use frame::{ErrorCode, OcppVersion, RpcError};
use serde_json::Value;
use std::time::Duration;

/// Tunables of the central system.
#[derive(Debug, Clone)]
pub struct OcppSettings {
    /// Heartbeat interval we ask chargers for at boot.
    pub heartbeat_interval: Duration,
    /// How often we ping a quiet connection; after twice this with no sign of life it is dead.
    pub ping_interval: Duration,
    /// How long we wait for a charger to answer a CALL.
    pub call_timeout: Duration,
    /// How long a connector may say Available while we think a transaction runs there.
    pub ghost_grace: Duration,
    /// How long raw frames are kept for support.
    pub frame_retention: Duration,
    /// What happens to an unknown charger when no site registers chargers automatically.
    pub unknown_chargers: UnknownChargers,
    /// The largest WebSocket message (and frame) a charger may send, bytes: a larger one closes its
    /// connection (1009). OCPP messages are a few KB; a batch of meter values perhaps 100 KB.
    pub max_message_bytes: usize,
    /// The highest connector (2.0.1: EVSE) number a charger may report: one beyond it is refused,
    /// so a charger cannot mint connectors (and site rebuilds) without end.
    pub max_connectors: u32,
    /// The most unknown chargers waiting for an operator at once: a stranger cannot fill the list
    /// (and the database) with made-up ids.
    pub max_pending_chargers: u64,
    /// The most connections one address may hold at once (a site's chargers often share one).
    pub max_connections_per_address: u32,
    /// Messages a charger may send a second on average, and at once: past that, its messages wait
    /// their turn (nothing is refused or lost; a flood only slows its sender).
    pub max_messages_per_s: u32,
    pub message_burst: u32,
    /// Password checks (argon2) waiting at once past which a charger's handshake is turned away
    /// (429, retry): a flood of handshakes cannot delay people signing in without end.
    pub max_argon2_queue: usize,
    /// New chargers (registered automatically, or requests for an operator) one address may bring
    /// in an hour.
    pub new_chargers_per_address_hour: u32,
}

/// The policy for chargers we do not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UnknownChargers {
    /// Refused at the handshake (HTTP 401).
    Reject,
    /// Connected, answered Pending at boot, and listed for an operator to accept onto a site.
    Pending,
}

impl Default for OcppSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(300),
            ping_interval: Duration::from_secs(30),
            call_timeout: Duration::from_secs(30),
            ghost_grace: Duration::from_secs(300),
            frame_retention: Duration::from_secs(14 * 24 * 3600),
            unknown_chargers: UnknownChargers::Pending,
            max_message_bytes: 512 * 1024,
            max_connectors: 16,
            max_pending_chargers: 1000,
            max_connections_per_address: 200,
            max_messages_per_s: 20,
            message_burst: 60,
            max_argon2_queue: 64,
            new_chargers_per_address_hour: 100,
        }
    }
}

/// Shared by every connection.
#[derive(Clone)]
pub struct CentralSystem {
    pub db: Db,
    pub registry: registry::Registry,
    pub settings: OcppSettings,
    /// Who hears what chargers report (the sites' load balancers and the drivers' plans).
    reports: std::sync::Arc<dyn report::ReportSink>,
    /// Passwords that verified recently, so reconnects skip argon2.
    pub credentials: std::sync::Arc<handshake::VerifiedCredentials>,
    /// Failed handshakes and connections per address, bounded.
    pub edge: std::sync::Arc<edge::EdgeGuard>,
    /// Becomes true when the server shuts down: every connection closes cleanly.
    shutting_down: tokio::sync::watch::Sender<bool>,
}

/// Where a booting charger stands, in either version's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registration {
    Accepted,
    Pending,
    Rejected,
}

/// What a connection knows about the charger at its other end.
#[derive(Debug, Clone)]
pub struct Link {
    pub charger: ChargerId,
    pub version: OcppVersion,
    /// `None` while the charger waits for an operator to accept it (BootNotification: Pending).
    pub site: Option<SiteId>,
    /// Accept values outside the schema (lengths, misspelt enum values) from this charger or its
    /// model, with a warning.
    pub lenient: bool,
    /// Its model sends 1.6 meterStart / meterStop in kWh.
    pub meter_in_kwh: bool,
    /// Its model's energy register restarts at 0 with each transaction.
    pub session_register: bool,
}

impl Link {
    /// A charger whose model has no known quirks (none recorded for it yet).
    pub fn unquirked(charger: ChargerId, version: OcppVersion, site: Option<SiteId>) -> Link {
        Link { charger, version, site, lenient: false, meter_in_kwh: false, session_register: false }
    }
}

impl CentralSystem {
    /// A central system whose chargers' reports go to `reports`, calling chargers through `registry`.
    pub fn new(
        db: Db,
        settings: OcppSettings,
        registry: registry::Registry,
        reports: std::sync::Arc<dyn report::ReportSink>,
    ) -> Self {
        let edge = std::sync::Arc::new(edge::EdgeGuard::new(
            settings.max_connections_per_address,
            settings.new_chargers_per_address_hour,
        ));
        Self {
            db,
            registry,
            settings,
            edge,
            reports,
            credentials: Default::default(),
            shutting_down: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Asks every connection to close (WebSocket close 1001, "going away").
    pub fn shut_down(&self) {
        self.shutting_down.send_replace(true);
    }

    /// Resolves when the server is shutting down.
    pub fn shutdown_requested(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutting_down.subscribe()
    }

    /// Answers one CALL from a charger: typed decoding, then the version's handler.
    pub async fn handle_call(
        &self,
        link: &mut Link,
        action: &str,
        payload: Value,
    ) -> Result<Value, RpcError> {
        if link.site.is_none() {
            // An operator may have accepted this charger since it connected.
            if let Some(auth) = db::charger_auth(&self.db, &link.charger).await.map_err(internal)? {
                if auth.registration == "accepted" {
                    tracing::info!(charger.id = %link.charger, "charger accepted by an operator");
                    link.site = Some(auth.site);
                    link.lenient = auth.lenient;
                    link.meter_in_kwh = auth.meter_in_kwh;
                    link.session_register = auth.session_register;
                }
            }
        }
        let booting = action == "BootNotification";
        let result = self.dispatch(link, action, payload).await;
        if booting && result.is_ok() {
            // The boot named the charger's vendor and model: its model's settings apply from here.
            if let Ok(Some(auth)) = db::charger_auth(&self.db, &link.charger).await {
                link.lenient = auth.lenient;
                link.meter_in_kwh = auth.meter_in_kwh;
                link.session_register = auth.session_register;
            }
        }
        result
    }

    async fn dispatch(&self, link: &Link, action: &str, mut payload: Value) -> Result<Value, RpcError> {
        let repaired = quirks::repair_naive_timestamps(&mut payload);
        if repaired > 0 {
            tracing::warn!(charger.id = %link.charger, action, repaired, "timestamps without a time zone; taken as UTC");
        }
        let started = std::time::Instant::now();
        let (result, known) = match link.version {
            OcppVersion::V16 => (v16::handle(self, link, action, payload).await, v16::Incoming::NAMES),
            OcppVersion::V201 => (v201::handle(self, link, action, payload).await, v201::Incoming::NAMES),
        };
        // The action is the charger's text: only names we know become labels.
        let label = known.iter().find(|k| **k == action).copied().unwrap_or("unknown");
        let outcome = if result.is_ok() { "result" } else { "error" };
        metrics::counter!("ocpp_calls_total", "action" => label, "outcome" => outcome).increment(1);
        metrics::histogram!("ocpp_call_handling_seconds").record(started.elapsed().as_secs_f64());
        result
    }

    /// A BootNotification from an admitted charger, in either version: recorded whole, answered with
    /// its registration, and an accepted charger gets its default charging profile.
    pub(crate) async fn boot(
        &self,
        link: &Link,
        info: &db::BootInfo,
        raw_payload: &str,
    ) -> Result<Registration, RpcError> {
        let id = &link.charger;
        db::record_boot(&self.db, id, &link.version.to_string(), info, raw_payload)
            .await
            .map_err(internal)?;
        let registration = match db::charger_auth(&self.db, id)
            .await
            .map_err(internal)?
            .as_ref()
            .map(|a| a.registration.as_str())
        {
            Some("accepted") => Registration::Accepted,
            Some("pending") => Registration::Pending,
            _ => Registration::Rejected,
        };
        tracing::info!(charger.id = %id, vendor = %info.vendor, model = %info.model, status = ?registration, "boot");
        if registration == Registration::Accepted {
            self.tell(link, report::ChargerEvent::Booted { version: link.version }).await;
        }
        Ok(registration)
    }

    /// Periodic housekeeping: ghost sessions and the frame log's retention.
    pub async fn housekeeping(&self) {
        let now = crate::db::now_ms();
        let grace = i64::try_from(self.settings.ghost_grace.as_millis()).unwrap_or(i64::MAX);
        match db::close_ghost_sessions(&self.db, now - grace).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                closed = n,
                "closed ghost sessions: connectors Available while a transaction was open"
            ),
            Err(err) => tracing::error!(error = %err, "ghost session sweep failed"),
        }
        let keep = i64::try_from(self.settings.frame_retention.as_millis()).unwrap_or(i64::MAX);
        if let Err(err) = db::purge_frames_before(&self.db, now - keep).await {
            tracing::error!(error = %err, "frame log purge failed");
        }
        // A phone's plan that no car took is of no use a day on (its cookie is gone by then too).
        let day = i64::try_from(app::api::ssr::PLAN_COOKIE_MAX_AGE_S * 1000).unwrap_or(i64::MAX);
        match crate::db::plans::forget_unjoined(&self.db, now - day).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(forgotten = n, "forgot drivers' plans that no car took"),
            Err(err) => tracing::error!(error = %err, "drivers' plan sweep failed"),
        }
    }
}

/// A storage failure while handling a CALL: the charger gets InternalError and will retry.
pub(crate) fn internal(err: crate::db::DbError) -> RpcError {
    tracing::error!(error = %err, "storage failed while handling an OCPP message");
    RpcError::new(ErrorCode::InternalError, "the central system could not store this message; please retry")
}

/// A connector (2.0.1: EVSE) number a charger reported, refused beyond the network's limit: each
/// new one is a stored connector and a rebuild of its site's balancer.
pub(crate) fn connector_within_limit(cs: &CentralSystem, connector: impl Into<i64>) -> Result<(), RpcError> {
    let connector = connector.into();
    let max = i64::from(cs.settings.max_connectors);
    if connector < 0 {
        return Err(RpcError::new(
            ErrorCode::PropertyConstraintViolation,
            format!("connector {connector} is not a connector number"),
        ));
    }
    if connector > max {
        return Err(RpcError::new(
            ErrorCode::PropertyConstraintViolation,
            format!("connector {connector} is beyond this network's limit of {max} per charger"),
        ));
    }
    Ok(())
}

/// While a charger is pending, OCPP lets it send only BootNotification (and we answer Heartbeat).
pub(crate) fn refuse_while_pending(link: &Link, action: &str) -> Result<(), RpcError> {
    if link.site.is_none() && !matches!(action, "BootNotification" | "Heartbeat") {
        return Err(RpcError::new(
            ErrorCode::SecurityError,
            "this charger has not been accepted by an operator yet",
        ));
    }
    Ok(())
}

/// Decodes a payload into its typed request, mapping serde's complaint to the OCPP error code.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(action: &str, payload: Value) -> Result<T, RpcError> {
    decode_at(payload).map_err(|(path, e)| payload_error(action, &path, &e))
}

/// Decodes, naming the field a problem is in (`meterValue[0].sampledValue[2].measurand`).
fn decode_at<T: serde::de::DeserializeOwned>(payload: Value) -> Result<T, (String, serde_json::Error)> {
    serde_path_to_error::deserialize(payload).map_err(|e| (e.path().to_string(), e.into_inner()))
}

fn payload_error(action: &str, path: &str, e: &serde_json::Error) -> RpcError {
    let text = if path == "." { format!("{action}: {e}") } else { format!("{action}: {path}: {e}") };
    RpcError::new(frame::classify_payload_error(e), text)
}

/// As [`decode`], for a lenient charger: misspelt enum values are repaired (and meter samples of
/// unknown kinds dropped) first; what was done is added to `repairs`.
pub(crate) fn decode_repairing<T: serde::de::DeserializeOwned>(
    action: &str,
    mut payload: Value,
    repairs: &mut Vec<String>,
) -> Result<T, RpcError> {
    // Each round repairs one value; a payload with more bends than this is not a known model's.
    for _ in 0..16 {
        match decode_at(payload.clone()) {
            Ok(decoded) => return Ok(decoded),
            Err((path, e)) => match quirks::repair_enum(&mut payload, &path, &e.to_string()) {
                Some(done) => repairs.push(done),
                None => return Err(payload_error(action, &path, &e)),
            },
        }
    }
    decode(action, payload)
}

/// Encodes a typed response.
pub(crate) fn encode<T: serde::Serialize>(response: &T) -> Result<Value, RpcError> {
    serde_json::to_value(response).map_err(|e| RpcError::new(ErrorCode::InternalError, e.to_string()))
}

/// An OCPP enum value as the text it is sent as.
pub(crate) fn enum_text<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// Checks the schema's length and range rules that serde alone does not (rust-ocpp's `Validate`).
pub(crate) fn validated<T: validator::Validate>(request: &T) -> Result<(), RpcError> {
    request.validate().map_err(|e| RpcError::new(ErrorCode::PropertyConstraintViolation, e.to_string()))
}

/// Fields the sender wrote that the action's schema does not have (OCPP schemas forbid
/// additional properties): found by comparing the input with its typed round trip.
pub(crate) fn unknown_fields(input: &Value, typed: &Value) -> Vec<String> {
    let mut found = Vec::new();
    fn walk(path: &str, input: &Value, typed: &Value, found: &mut Vec<String>) {
        match (input, typed) {
            (Value::Object(a), Value::Object(b)) => {
                for (key, value) in a {
                    let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    match b.get(key) {
                        Some(inner) => walk(&here, value, inner, found),
                        None if value.is_null() => {}
                        None => found.push(here),
                    }
                }
            }
            (Value::Array(a), Value::Array(b)) => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    walk(&format!("{path}[{i}]"), x, y, found);
                }
            }
            _ => {}
        }
    }
    walk("", input, typed, &mut found);
    found
}

macro_rules! check_one {
    ($r:ident, validated) => {
        $crate::ocpp::validated($r)
    };
    ($r:ident) => {{
        let _ = $r;
        Ok(())
    }};
}
pub(crate) use check_one;

/// Declares a version's actions once: the enum, its names, and typed decoding.
macro_rules! actions {
    ($(#[$doc:meta])* $name:ident { $($variant:ident($ty:ty) = $action:literal $($checked:ident)?),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        #[allow(clippy::large_enum_variant)]
        pub enum $name {
            $($variant($ty)),*
        }

        impl $name {
            pub const NAMES: &'static [&'static str] = &[$($action),*];

            /// `Ok(None)` when the action is not one of these.
            pub fn decode(action: &str, payload: serde_json::Value) -> Result<Option<Self>, $crate::ocpp::frame::RpcError> {
                match action {
                    $($action => $crate::ocpp::decode::<$ty>(action, payload).map(|r| Some(Self::$variant(r))),)*
                    _ => Ok(None),
                }
            }

            /// Decodes what a charger sent: as [`Self::decode`], but a lenient charger (its own or its
            /// model's setting) has misspelt enum values repaired first, each with a warning.
            pub fn decode_from(link: &$crate::ocpp::Link, action: &str, payload: serde_json::Value) -> Result<Option<Self>, $crate::ocpp::frame::RpcError> {
                if !link.lenient {
                    return Self::decode(action, payload);
                }
                let mut repairs = Vec::new();
                let decoded = match action {
                    $($action => $crate::ocpp::decode_repairing::<$ty>(action, payload, &mut repairs).map(|r| Some(Self::$variant(r))),)*
                    _ => Ok(None),
                };
                for repair in repairs {
                    tracing::warn!(charger.id = %link.charger, action, %repair, "accepted a value outside the schema");
                }
                decoded
            }

            pub fn action(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $action),*
                }
            }

            pub fn payload(&self) -> Result<serde_json::Value, $crate::ocpp::frame::RpcError> {
                match self {
                    $(Self::$variant(r) => $crate::ocpp::encode(r)),*
                }
            }

            /// Decodes as [`Self::decode`], then also refuses lengths beyond the schema and fields it
            /// does not have (OCPP schemas forbid additional properties): for what we send.
            pub fn decode_strict(action: &str, payload: serde_json::Value) -> Result<Option<Self>, $crate::ocpp::frame::RpcError> {
                let Some(decoded) = Self::decode(action, payload.clone())? else { return Ok(None) };
                decoded.check()?;
                let unknown = $crate::ocpp::unknown_fields(&payload, &decoded.payload()?);
                if !unknown.is_empty() {
                    return Err($crate::ocpp::frame::RpcError::new(
                        $crate::ocpp::frame::ErrorCode::PropertyConstraintViolation,
                        format!("fields not in the schema: {}", unknown.join(", ")),
                    ));
                }
                Ok(Some(decoded))
            }

            /// The schema's length and range rules, where rust-ocpp states them.
            pub fn check(&self) -> Result<(), $crate::ocpp::frame::RpcError> {
                match self {
                    $(Self::$variant(r) => $crate::ocpp::check_one!(r $(, $checked)?)),*
                }
            }
        }
    };
}
pub(crate) use actions;

/// How an id token is judged at a site.
pub(crate) async fn judge_token(
    cs: &CentralSystem,
    link: &Link,
    token: &str,
) -> Result<db::TokenStanding, RpcError> {
    let now = crate::db::now_ms();
    let standing = db::token_standing(&cs.db, token, now).await.map_err(internal)?;
    if standing == db::TokenStanding::Unknown {
        if let Some(site) = link.site {
            if db::site_free_vend(&cs.db, site).await.map_err(internal)? {
                return Ok(db::TokenStanding::Accepted);
            }
        }
    }
    Ok(standing)
}

/// Sampled values of either version, flattened for storage.
pub(crate) struct RawSample {
    pub measurand: Option<String>,
    pub phase: Option<String>,
    pub context: Option<String>,
    pub location: Option<String>,
    pub unit: Option<String>,
    /// 2.0.1's `unitOfMeasure.multiplier`: the value is `value × 10^multiplier` units.
    pub multiplier: i32,
    pub value: String,
}

pub(crate) fn to_samples(
    charger_time: chrono::DateTime<chrono::Utc>,
    raw: Vec<RawSample>,
) -> Vec<db::Sample> {
    let received = crate::db::now_ms();
    let sampled_at = quirks::effective_time(charger_time, received);
    let charger_time = charger_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    raw.into_iter()
        .map(|r| {
            let measurand = r.measurand.unwrap_or_else(|| "Energy.Active.Import.Register".to_owned());
            let default_unit = if measurand.starts_with("Energy") { "Wh" } else { "" };
            let unit = r.unit.unwrap_or_else(|| default_unit.to_owned());
            let (value_milli, unit) = match quirks::parse_milli(&r.value)
                .and_then(|v| quirks::scale_by_power_of_ten(v, r.multiplier))
            {
                Some(v) => {
                    let (v, u) = quirks::normalise(v, &unit);
                    (Some(v), u)
                }
                None => (None, unit),
            };
            db::Sample {
                sampled_at,
                charger_time: charger_time.clone(),
                measurand,
                phase: r.phase.unwrap_or_default(),
                context: r.context.unwrap_or_default(),
                location: r.location.unwrap_or_default(),
                unit,
                raw_value: r.value,
                value_milli,
            }
        })
        .collect()
}

/// Per-phase currents among samples (`Current.Import` on L1, L2, L3), in tenths of an amp.
pub(crate) fn phase_currents_da(samples: &[db::Sample]) -> Option<[u32; 3]> {
    let mut currents = [0u32; 3];
    let mut seen = false;
    for s in samples.iter().filter(|s| s.measurand == "Current.Import" && s.unit == "A") {
        let index = match s.phase.as_str() {
            "L1" | "L1-N" => 0,
            "L2" | "L2-N" => 1,
            "L3" | "L3-N" => 2,
            _ => continue,
        };
        if let Some(milli) = s.value_milli {
            currents[index] = u32::try_from((milli / 100).max(0)).unwrap_or(u32::MAX);
            seen = true;
        }
    }
    seen.then_some(currents)
}

/// The energy register at a given context among samples, in Wh.
pub(crate) fn energy_register_wh(samples: &[db::Sample], context: &str) -> Option<i64> {
    samples
        .iter()
        .filter(|s| s.measurand == "Energy.Active.Import.Register" && s.phase.is_empty() && s.unit == "Wh")
        .filter(|s| context.is_empty() || s.context == context)
        .filter_map(|s| s.value_milli)
        .map(|milli| milli / 1000)
        .next_back()
}
