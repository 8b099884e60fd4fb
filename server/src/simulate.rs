//! `forecourt simulate`: chargers over real WebSockets, for the demo and for load.
//!
//! Each simulated charger boots, heartbeats, reports status, and has cars arrive and leave with
//! realistic energy and power. It obeys the charging profiles it receives: a car never draws more
//! than the limit in force. For load, many chargers run at once and the latency of every CALL
//! (send to CALLRESULT) is measured.

use crate::ocpp::frame::{self, Frame, OcppVersion};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Base URL of the OCPP endpoint, e.g. `ws://127.0.0.1:3000/ocpp`.
    pub url: String,
    /// (charger id, connectors)
    pub chargers: Vec<(String, u32)>,
    pub password: String,
    pub version: OcppVersion,
    pub id_tag: String,
    /// Seconds between meter values during a session, until the central system sets its own.
    pub meter_interval: Duration,
    /// Whether the interval the central system sets replaces `meter_interval`.
    pub obey_meter_interval: bool,
    /// Mean seconds between a connector's sessions (exponential).
    pub mean_idle: Duration,
    /// Mean session length.
    pub mean_session: Duration,
    pub seed: u64,
    /// Stop after this long (None: run until killed).
    pub duration: Option<Duration>,
    /// Latencies are measured only after this long, so the connection burst is not counted.
    pub warmup: Duration,
}

/// What happened, for the load benchmark.
#[derive(Debug)]
pub struct SimStats {
    started: Instant,
    warmup: Duration,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub calls: AtomicU64,
    pub call_errors: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

impl SimStats {
    fn new(warmup: Duration) -> Self {
        Self {
            started: Instant::now(),
            warmup,
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            call_errors: AtomicU64::new(0),
            latencies_us: Mutex::new(Vec::new()),
        }
    }

    fn record(&self, latency: Duration) {
        if self.started.elapsed() < self.warmup {
            return;
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.latencies_us.lock() {
            l.push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
        }
    }

    /// (p50, p99) in milliseconds.
    pub fn percentiles_ms(&self) -> (f64, f64) {
        let Ok(mut l) = self.latencies_us.lock() else { return (0.0, 0.0) };
        if l.is_empty() {
            return (0.0, 0.0);
        }
        l.sort_unstable();
        let at = |q: f64| f64::from(l[((l.len() - 1) as f64 * q) as usize]) / 1000.0;
        (at(0.50), at(0.99))
    }
}

/// Runs every charger until `duration` ends (or forever). Returns the stats.
pub async fn run(config: SimConfig) -> Arc<SimStats> {
    let stats = Arc::new(SimStats::new(config.warmup));
    // Shared, not cloned per charger: the list of chargers is in it (20,000 copies of 20,000 ids was 15 GB).
    let config = Arc::new(config);
    let mut tasks = Vec::new();
    for (i, (id, connectors)) in config.chargers.iter().enumerate() {
        let config = config.clone();
        let stats = stats.clone();
        let (id, connectors) = (id.clone(), *connectors);
        tasks.push(tokio::spawn(async move {
            // Stagger connections a little so a thousand chargers do not arrive in one instant.
            tokio::time::sleep(Duration::from_millis((i as u64 % 1000) * 2)).await;
            let seed = config.seed.wrapping_add(i as u64);
            loop {
                match charger(&config, &id, connectors, seed, &stats).await {
                    Ok(()) => return,
                    Err(err) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(charger.id = %id, error = %err, "simulated charger lost its connection; reconnecting");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
        }));
    }
    match config.duration {
        Some(d) => {
            tokio::time::sleep(d).await;
            for t in &tasks {
                t.abort();
            }
        }
        None => {
            for t in tasks {
                let _ = t.await;
            }
        }
    }
    stats
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Result<Value, String>>>>>;

/// Handshakes in progress at once, across all simulated chargers.
static CONNECTING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(256);

/// One WebSocket to the central system, shared by the charger's tasks.
#[derive(Clone)]
struct Link {
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    next: Arc<AtomicU64>,
    stats: Arc<SimStats>,
}

impl Link {
    async fn call(&self, action: &str, payload: Value) -> anyhow::Result<Value> {
        let id = format!("s{}", self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.pending.lock().map_err(|_| anyhow::anyhow!("lock"))?.insert(id.clone(), tx);
        let started = Instant::now();
        self.out
            .send(frame::call(&id, action, &payload))
            .map_err(|_| anyhow::anyhow!("connection closed"))?;
        let answer = tokio::time::timeout(Duration::from_secs(60), rx).await??;
        self.stats.record(started.elapsed());
        answer.map_err(|e| {
            self.stats.call_errors.fetch_add(1, Ordering::Relaxed);
            anyhow::anyhow!("{action} refused: {e}")
        })
    }
}

/// A charging schedule as a charger keeps it: from its start (an Absolute schedule's, or when it
/// arrived), each period's limit in amps per phase until the next, until its duration runs out.
#[derive(Clone, Debug, PartialEq)]
struct Schedule {
    start: chrono::DateTime<chrono::Utc>,
    /// (seconds from the start, amps), in order.
    periods: Vec<(i64, f64)>,
    duration_s: Option<i64>,
}

impl Schedule {
    /// A 1.6 or 2.0.1 charging profile's schedule, received at `now`.
    fn of_profile(profile: &Value, now: chrono::DateTime<chrono::Utc>) -> Option<Schedule> {
        let schedule = profile.get("chargingSchedule")?;
        let schedule = if schedule.is_array() { schedule.get(0)? } else { schedule };
        let watts = schedule.get("chargingRateUnit")?.as_str()? == "W";
        let mut periods = schedule
            .get("chargingSchedulePeriod")?
            .as_array()?
            .iter()
            .map(|p| {
                let limit = p.get("limit")?.as_f64()?;
                Some((p.get("startPeriod")?.as_i64()?, if watts { limit / 230.0 / 3.0 } else { limit }))
            })
            .collect::<Option<Vec<_>>>()?;
        periods.sort_by_key(|p| p.0);
        let absolute = profile.get("chargingProfileKind").and_then(Value::as_str) == Some("Absolute");
        let start = match schedule.get("startSchedule").and_then(Value::as_str) {
            Some(at) if absolute => {
                chrono::DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&chrono::Utc)
            }
            _ => now,
        };
        Some(Schedule { start, periods, duration_s: schedule.get("duration").and_then(Value::as_i64) })
    }

    /// The limit in force at `now` (None: before the schedule or after its duration).
    fn limit_at(&self, now: chrono::DateTime<chrono::Utc>) -> Option<f64> {
        let elapsed_ms = (now - self.start).num_milliseconds();
        if elapsed_ms < 0 || self.duration_s.is_some_and(|d| elapsed_ms >= d * 1000) {
            return None;
        }
        self.periods.iter().take_while(|p| p.0 * 1000 <= elapsed_ms).last().map(|p| p.1)
    }
}

/// What the central system told a charger: the profiles it holds (a TxProfile per connector
/// overrides the TxDefaultProfile, its connector's or the charger-wide one on connector 0; a
/// ChargePointMaxProfile caps them all), and how often its meter is to report in a transaction.
#[derive(Default)]
struct Limits {
    tx: HashMap<u32, Schedule>,
    default: HashMap<u32, Schedule>,
    charger_max: Option<Schedule>,
    /// None: the simulator's own `--meter-interval`.
    sample_interval: Option<Duration>,
}

impl Limits {
    /// The limit on connector `c` at `now`, in amps per phase (None: no limit of ours).
    fn for_connector(&self, c: u32, now: chrono::DateTime<chrono::Utc>) -> Option<f64> {
        let in_force = |s: Option<&Schedule>| s.and_then(|s| s.limit_at(now));
        let limit = in_force(self.tx.get(&c))
            .or_else(|| in_force(self.default.get(&c)))
            .or_else(|| in_force(self.default.get(&0)));
        match (limit, in_force(self.charger_max.as_ref())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn set(&mut self, connector: u32, profile: &Value, now: chrono::DateTime<chrono::Utc>) {
        let Some(schedule) = Schedule::of_profile(profile, now) else { return };
        match profile.get("chargingProfilePurpose").and_then(Value::as_str) {
            Some("ChargePointMaxProfile" | "ChargingStationMaxProfile") => self.charger_max = Some(schedule),
            Some("TxDefaultProfile") => {
                self.default.insert(connector, schedule);
            }
            _ => {
                self.tx.insert(connector, schedule);
            }
        }
    }
}

async fn charger(
    config: &Arc<SimConfig>,
    id: &str,
    connectors: u32,
    seed: u64,
    stats: &Arc<SimStats>,
) -> anyhow::Result<()> {
    let url = format!("{}/{id}", config.url.trim_end_matches('/'));
    let mut request = url.as_str().into_client_request()?;
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{}", config.password));
    request.headers_mut().insert("Authorization", format!("Basic {credentials}").parse()?);
    request.headers_mut().insert("Sec-WebSocket-Protocol", config.version.subprotocol().parse()?);
    // Small buffers (OCPP frames are small; the defaults are 128 KiB each way per connection), and a
    // bounded number of handshakes at once: thousands of chargers powering up together queue.
    let ws_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (socket, _) = {
        let _turn = CONNECTING.acquire().await?;
        tokio_tungstenite::connect_async_with_config(request, Some(ws_config), false).await?
    };
    stats.connected.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    let link = Link {
        out: out_tx,
        pending: Arc::default(),
        next: Arc::new(AtomicU64::new(1)),
        stats: stats.clone(),
    };
    let limits: Arc<Mutex<Limits>> = Arc::default();

    let writer = tokio::spawn(async move {
        while let Some(text) = out_rx.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });
    let reader = {
        let link = link.clone();
        let limits = limits.clone();
        let version = config.version;
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else { continue };
                match frame::decode(&text) {
                    Ok(Frame::CallResult { id, payload }) => {
                        if let Some(tx) = link.pending.lock().ok().and_then(|mut p| p.remove(&id)) {
                            let _ = tx.send(Ok(payload));
                        }
                    }
                    Ok(Frame::CallError { id, code, description, .. }) => {
                        if let Some(tx) = link.pending.lock().ok().and_then(|mut p| p.remove(&id)) {
                            let _ = tx.send(Err(format!("{code}: {description}")));
                        }
                    }
                    Ok(Frame::Call { id, action, payload }) => {
                        let answer = answer_call(version, &action, &payload, &limits);
                        let _ = link.out.send(frame::call_result(&id, &answer));
                    }
                    Err(_) => {}
                }
            }
        })
    };

    let boot = match config.version {
        OcppVersion::V16 => link.call("BootNotification", json!({"chargePointVendor": "Forecourt", "chargePointModel": "Simulator", "firmwareVersion": env!("CARGO_PKG_VERSION")})).await?,
        OcppVersion::V201 => link.call("BootNotification", json!({"reason": "PowerUp", "chargingStation": {"vendorName": "Forecourt", "model": "Simulator", "firmwareVersion": env!("CARGO_PKG_VERSION")}})).await?,
    };
    let interval = boot.get("interval").and_then(Value::as_u64).unwrap_or(300).clamp(1, 3600);
    let mut sessions = Vec::new();
    for c in 1..=connectors {
        status(&link, config.version, c, "Available").await?;
        let link = link.clone();
        let config = config.clone();
        let limits = limits.clone();
        let id = id.to_owned();
        sessions.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(u64::from(c)));
            if let Err(err) = connector_loop(&link, &config, c, &limits, &mut rng).await {
                tracing::warn!(charger.id = %id, connector = c, error = %err, "simulated connector stopped");
            }
        }));
    }
    let mut heartbeat = tokio::time::interval(Duration::from_secs(interval));
    heartbeat.tick().await;
    let result = loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                if let Err(err) = link.call("Heartbeat", json!({})).await {
                    break Err(err);
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if reader.is_finished() {
                    break Err(anyhow::anyhow!("connection closed by the central system"));
                }
            }
        }
    };
    for s in sessions {
        s.abort();
    }
    writer.abort();
    reader.abort();
    result
}

fn answer_call(version: OcppVersion, action: &str, payload: &Value, limits: &Mutex<Limits>) -> Value {
    match action {
        "SetChargingProfile" => {
            let (connector, profile) = match version {
                OcppVersion::V16 => {
                    (payload.get("connectorId").and_then(Value::as_u64), payload.get("csChargingProfiles"))
                }
                OcppVersion::V201 => {
                    (payload.get("evseId").and_then(Value::as_u64), payload.get("chargingProfile"))
                }
            };
            if let (Some(connector), Some(profile), Ok(mut l)) = (connector, profile, limits.lock()) {
                l.set(u32::try_from(connector).unwrap_or(0), profile, chrono::Utc::now());
            }
            json!({"status": "Accepted"})
        }
        "ClearChargingProfile" => {
            if let Ok(mut l) = limits.lock() {
                *l = Limits { sample_interval: l.sample_interval, ..Limits::default() };
            }
            json!({"status": "Accepted"})
        }
        "GetConfiguration" => json!({"configurationKey": [], "unknownKey": []}),
        "GetVariables" => json!({"getVariableResult": []}),
        // The transaction meter's interval is obeyed; the other settings are taken and ignored.
        "ChangeConfiguration" => {
            let is_interval = payload.get("key").and_then(Value::as_str) == Some("MeterValueSampleInterval");
            if is_interval && !set_sample_interval(limits, payload.get("value")) {
                return json!({"status": "Rejected"});
            }
            json!({"status": "Accepted"})
        }
        "SetVariables" => {
            let data = payload
                .get("setVariableData")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let answer = |d: &Value| {
                let is_tx_interval = d["component"]["name"] == "SampledDataCtrlr"
                    && d["variable"]["name"] == "TxUpdatedInterval";
                let rejected = is_tx_interval && !set_sample_interval(limits, d.get("attributeValue"));
                let status = if rejected { "Rejected" } else { "Accepted" };
                json!({"attributeStatus": status, "component": d["component"], "variable": d["variable"]})
            };
            json!({"setVariableResult": data.iter().map(answer).collect::<Vec<_>>()})
        }
        "GetCompositeSchedule" => json!({"status": "Rejected"}),
        "GetLocalListVersion" => json!({"listVersion": 0}),
        "DataTransfer" => json!({"status": "UnknownVendorId"}),
        // "Unlocked" in both 1.6 (UnlockStatus) and 2.0.1 (UnlockStatusEnumType).
        "UnlockConnector" => json!({"status": "Unlocked"}),
        "GetDiagnostics" => json!({}),
        "UpdateFirmware" => {
            if version == OcppVersion::V16 {
                json!({})
            } else {
                json!({"status": "Accepted"})
            }
        }
        _ => json!({"status": "Accepted"}),
    }
}

/// Takes a meter interval sent as a string of whole seconds; false (nothing changed) if it is not one.
fn set_sample_interval(limits: &Mutex<Limits>, value: Option<&Value>) -> bool {
    let seconds = value.and_then(Value::as_str).and_then(|v| v.parse::<u64>().ok()).filter(|s| *s > 0);
    match (seconds, limits.lock()) {
        (Some(seconds), Ok(mut l)) => {
            l.sample_interval = Some(Duration::from_secs(seconds));
            true
        }
        _ => false,
    }
}

async fn status(link: &Link, version: OcppVersion, connector: u32, state: &str) -> anyhow::Result<()> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match version {
        OcppVersion::V16 => {
            link.call(
                "StatusNotification",
                json!({"connectorId": connector, "errorCode": "NoError", "status": state, "timestamp": now}),
            )
            .await?
        }
        OcppVersion::V201 => {
            let state = match state {
                "Charging" | "Preparing" | "Finishing" | "SuspendedEV" => "Occupied",
                other => other,
            };
            link.call(
                "StatusNotification",
                json!({"timestamp": now, "connectorStatus": state, "evseId": connector, "connectorId": 1}),
            )
            .await?
        }
    };
    Ok(())
}

fn exp_sample(rng: &mut StdRng, mean: Duration) -> Duration {
    let u: f64 = rng.gen_range(0.0001..1.0);
    Duration::from_secs_f64((-u.ln() * mean.as_secs_f64()).min(mean.as_secs_f64() * 5.0))
}

/// Cars arriving at one connector, charging and leaving, forever.
async fn connector_loop(
    link: &Link,
    config: &SimConfig,
    connector: u32,
    limits: &Mutex<Limits>,
    rng: &mut StdRng,
) -> anyhow::Result<()> {
    let mut register_wh: f64 = f64::from(rng.gen_range(100_000..2_000_000u32));
    let mut session_no = 0u32;
    loop {
        tokio::time::sleep(exp_sample(rng, config.mean_idle)).await;
        session_no += 1;
        // A car: one or three phases, its own maximum current, how much it wants.
        let phases: f64 = if rng.gen_bool(0.3) { 1.0 } else { 3.0 };
        let car_max_a: f64 = *[16.0, 16.0, 32.0, 11.0].get(rng.gen_range(0..4)).unwrap_or(&16.0);
        let stay = exp_sample(rng, config.mean_session).max(Duration::from_secs(30));
        status(link, config.version, connector, "Preparing").await?;
        let now = || chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let meter_start = register_wh.round() as i64;
        let tx_ref: String = match config.version {
            OcppVersion::V16 => {
                let started = link
                    .call("StartTransaction", json!({"connectorId": connector, "idTag": config.id_tag, "meterStart": meter_start, "timestamp": now()}))
                    .await?;
                started.get("transactionId").and_then(Value::as_i64).unwrap_or(0).to_string()
            }
            OcppVersion::V201 => {
                let tx = format!("sim-{connector}-{session_no}-{}", rng.gen::<u32>());
                link.call("TransactionEvent", json!({
                    "eventType": "Started", "timestamp": now(), "triggerReason": "Authorized", "seqNo": 0,
                    "transactionInfo": {"transactionId": tx, "chargingState": "Charging"},
                    "idToken": {"idToken": config.id_tag, "type": "ISO14443"}, "evse": {"id": connector, "connectorId": 1},
                    "meterValue": [{"timestamp": now(), "sampledValue": [{"value": meter_start, "context": "Transaction.Begin", "measurand": "Energy.Active.Import.Register"}]}]
                })).await?;
                tx
            }
        };
        status(link, config.version, connector, "Charging").await?;
        let began = Instant::now();
        let mut last = Instant::now();
        let mut seq = 1;
        while began.elapsed() < stay {
            let told =
                limits.lock().ok().and_then(|l| l.sample_interval).filter(|_| config.obey_meter_interval);
            tokio::time::sleep(told.unwrap_or(config.meter_interval)).await;
            let limit = limits.lock().ok().and_then(|l| l.for_connector(connector, chrono::Utc::now()));
            // Below 6 A a car pauses (IEC 61851); otherwise it takes what it can, up to the limit.
            let amps = match limit {
                Some(l) if l < 6.0 => 0.0,
                Some(l) => l.min(car_max_a),
                None => car_max_a,
            };
            let watts = amps * phases * 230.0;
            register_wh += watts * last.elapsed().as_secs_f64() / 3600.0;
            last = Instant::now();
            let l2 = if phases > 1.0 { amps } else { 0.0 };
            let sampled = json!([
                {"value": format!("{:.0}", register_wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh", "context": "Sample.Periodic"},
                {"value": format!("{watts:.0}"), "measurand": "Power.Active.Import", "unit": "W", "context": "Sample.Periodic"},
                {"value": format!("{amps:.1}"), "measurand": "Current.Import", "phase": "L1", "unit": "A", "context": "Sample.Periodic"},
                {"value": format!("{l2:.1}"), "measurand": "Current.Import", "phase": "L2", "unit": "A", "context": "Sample.Periodic"},
                {"value": format!("{l2:.1}"), "measurand": "Current.Import", "phase": "L3", "unit": "A", "context": "Sample.Periodic"}
            ]);
            match config.version {
                OcppVersion::V16 => {
                    let tx: i64 = tx_ref.parse().unwrap_or(0);
                    link.call("MeterValues", json!({"connectorId": connector, "transactionId": tx, "meterValue": [{"timestamp": now(), "sampledValue": sampled}]})).await?;
                }
                OcppVersion::V201 => {
                    let sampled: Vec<Value> = sampled
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(strip_unit_for_201)
                        .collect();
                    link.call("TransactionEvent", json!({
                        "eventType": "Updated", "timestamp": now(), "triggerReason": "MeterValuePeriodic", "seqNo": seq,
                        "transactionInfo": {"transactionId": tx_ref, "chargingState": if amps > 0.0 { "Charging" } else { "SuspendedEVSE" }},
                        "meterValue": [{"timestamp": now(), "sampledValue": sampled}]
                    })).await?;
                    seq += 1;
                }
            }
        }
        let meter_stop = register_wh.round() as i64;
        match config.version {
            OcppVersion::V16 => {
                let tx: i64 = tx_ref.parse().unwrap_or(0);
                link.call("StopTransaction", json!({"transactionId": tx, "meterStop": meter_stop, "timestamp": now(), "reason": "EVDisconnected", "idTag": config.id_tag})).await?;
            }
            OcppVersion::V201 => {
                link.call("TransactionEvent", json!({
                    "eventType": "Ended", "timestamp": now(), "triggerReason": "EVCommunicationLost", "seqNo": seq,
                    "transactionInfo": {"transactionId": tx_ref, "stoppedReason": "EVDisconnected"},
                    "meterValue": [{"timestamp": now(), "sampledValue": [{"value": meter_stop, "context": "Transaction.End", "measurand": "Energy.Active.Import.Register"}]}]
                })).await?;
            }
        }
        // A TxProfile ends with its transaction.
        if let Ok(mut l) = limits.lock() {
            l.tx.remove(&connector);
        }
        status(link, config.version, connector, "Finishing").await?;
        status(link, config.version, connector, "Available").await?;
    }
}

/// 2.0.1 sampled values carry numbers and `unitOfMeasure` objects rather than 1.6's strings.
fn strip_unit_for_201(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        if let Some(Value::String(unit)) = obj.remove("unit") {
            obj.insert("unitOfMeasure".into(), json!({"unit": unit}));
        }
        if let Some(Value::String(s)) = obj.get("value").cloned() {
            obj.insert("value".into(), s.parse::<f64>().map(|n| json!(n)).unwrap_or(json!(0)));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&chrono::Utc)
    }

    #[test]
    fn profiles_become_amp_limits() {
        let now = at("2026-11-30T12:00:00Z");
        let limit = |p: Value| Schedule::of_profile(&p, now).and_then(|s| s.limit_at(now));
        assert_eq!(
            limit(
                json!({"chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.5}]}})
            ),
            Some(10.5)
        );
        assert_eq!(
            limit(
                json!({"chargingSchedule": {"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6900.0}]}})
            ),
            Some(10.0)
        );
        assert_eq!(
            limit(
                json!({"chargingSchedule": [{"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 8.0}]}]})
            ),
            Some(8.0)
        );
    }

    #[test]
    fn a_scheduled_switch_and_the_end_of_a_lease_take_effect_on_time() {
        let profile = json!({"chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Absolute", "chargingSchedule": {
            "startSchedule": "2026-11-30T12:00:00Z", "duration": 60, "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 32.0}, {"startPeriod": 20, "limit": 16.0}]}});
        let mut limits = Limits::default();
        limits.set(0, &json!({"chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}]}}), at("2026-11-30T11:00:00Z"));
        limits.set(1, &profile, at("2026-11-30T12:00:01Z"));
        assert_eq!(limits.for_connector(1, at("2026-11-30T12:00:19.900Z")), Some(32.0));
        assert_eq!(limits.for_connector(1, at("2026-11-30T12:00:20Z")), Some(16.0));
        assert_eq!(limits.for_connector(1, at("2026-11-30T12:00:59.900Z")), Some(16.0));
        // The lease is over: back to the TxDefaultProfile.
        assert_eq!(limits.for_connector(1, at("2026-11-30T12:01:00Z")), Some(6.0));
        assert_eq!(limits.for_connector(2, at("2026-11-30T12:00:30Z")), Some(6.0));
    }

    #[test]
    fn a_car_never_draws_more_than_the_limit_in_force() {
        let limits = Mutex::new(Limits::default());
        let profile = |connector: u32, purpose: &str, limit: f64| {
            json!({"connectorId": connector, "csChargingProfiles": {"chargingProfilePurpose": purpose,
            "chargingProfileKind": "Relative", "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}}})
        };
        assert_eq!(
            answer_call(
                OcppVersion::V16,
                "SetChargingProfile",
                &profile(0, "TxDefaultProfile", 9.0),
                &limits
            ),
            json!({"status": "Accepted"})
        );
        let now = chrono::Utc::now();
        assert_eq!(limits.lock().expect("lock").for_connector(1, now), Some(9.0));
        // A TxProfile overrides the default on its connector only; a ChargePointMaxProfile caps all.
        answer_call(OcppVersion::V16, "SetChargingProfile", &profile(1, "TxProfile", 12.0), &limits);
        assert_eq!(limits.lock().expect("lock").for_connector(1, now), Some(12.0));
        assert_eq!(limits.lock().expect("lock").for_connector(2, now), Some(9.0));
        answer_call(
            OcppVersion::V16,
            "SetChargingProfile",
            &profile(0, "ChargePointMaxProfile", 10.0),
            &limits,
        );
        assert_eq!(limits.lock().expect("lock").for_connector(1, now), Some(10.0));
        assert_eq!(limits.lock().expect("lock").for_connector(2, now), Some(9.0));
    }

    #[test]
    fn the_meter_reports_as_often_as_the_central_system_asks() {
        let told = Mutex::new(Limits::default());
        let interval = || told.lock().expect("lock").sample_interval;
        let change = |value: &str| json!({"key": "MeterValueSampleInterval", "value": value});
        assert_eq!(
            answer_call(OcppVersion::V16, "ChangeConfiguration", &change("15"), &told),
            json!({"status": "Accepted"})
        );
        assert_eq!(interval(), Some(Duration::from_secs(15)));
        assert_eq!(
            answer_call(OcppVersion::V16, "ChangeConfiguration", &change("soon"), &told),
            json!({"status": "Rejected"})
        );
        assert_eq!(
            answer_call(OcppVersion::V16, "ChangeConfiguration", &change("0"), &told),
            json!({"status": "Rejected"})
        );
        assert_eq!(interval(), Some(Duration::from_secs(15)));
        // Clearing the profiles leaves the meter's interval alone.
        answer_call(OcppVersion::V16, "ClearChargingProfile", &json!({}), &told);
        assert_eq!(interval(), Some(Duration::from_secs(15)));

        let set = json!({"setVariableData": [
            {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedMeasurands"}, "attributeValue": "Current.Import"},
            {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"}, "attributeValue": "20"}]});
        let answer = answer_call(OcppVersion::V201, "SetVariables", &set, &told);
        let statuses: Vec<&Value> = answer["setVariableResult"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| &r["attributeStatus"])
            .collect();
        assert_eq!(statuses, [&json!("Accepted"), &json!("Accepted")]);
        assert_eq!(interval(), Some(Duration::from_secs(20)));
        let bad = json!({"setVariableData": [
            {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"}, "attributeValue": "-3"}]});
        assert_eq!(
            answer_call(OcppVersion::V201, "SetVariables", &bad, &told)["setVariableResult"][0]
                ["attributeStatus"],
            "Rejected"
        );
        assert_eq!(interval(), Some(Duration::from_secs(20)));
    }
}
