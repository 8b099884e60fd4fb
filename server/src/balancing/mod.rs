//! The thin async shell around the pure [`Balancer`]: one task per site. OCPP handlers tell the
//! [`Hub`] what happened; each site's task feeds its balancer, carries the limits it decides to the
//! chargers as OCPP SetChargingProfile (TxProfile), and reports each answer back.

mod clock;

use crate::balancer::clock::{ClockTolerance, ClockWatch, Stamp};
use crate::balancer::config::{CircuitConfig, ConnectorConfig, SiteConfig, Wiring};
use crate::balancer::engine::{Attention, Balancer, Command, Event, SessionInfo, Snapshot};
use crate::balancer::policy::{SitePolicy, StoreMeterCadence, LEASE_CLOCK_MARGIN_S, METER_SAMPLE_INTERVAL_S};
use crate::balancer::store::MEMORY_DAYS;
use crate::balancer::units::{
    ChargerKey, CircuitId, ConnectorKey, DeciAmps, Millis, PerPhase, Phase, Rotation, SessionKey,
};
use crate::db::{balancing, Db, DbError};
use crate::ocpp::frame::OcppVersion;
use crate::ocpp::registry::{CallOutcome, Registry};
use crate::ocpp::report::OcppConnector;
use crate::ocpp::smart_charging::{
    configuration_refusal, default_profile, readings_requests, schedule_periods, schedule_periods_query,
    switch_after_s, tx_profile, whole_second, ProfileAnswer, ProfileLease, ProfileSwitch, Readings,
};
use app::domain::{ChargerId, SiteId, TransactionId};
use clock::ShellClock;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const CALL_WAIT: Duration = Duration::from_secs(30);

/// A profile that could not be queued (the charger just went away, or has too many calls
/// waiting) is reported unanswered this much later, so resending it is paced, not a loop.
const NOT_SENT_WAIT: Duration = Duration::from_secs(5);
/// Inputs a site's task takes in one go (one recompute).
const BATCH: usize = 512;

enum Input {
    Event(Event),
    SessionStarted {
        connector: ConnectorKey,
        session: SessionKey,
        ocpp_tx_id: String,
        baseline_wh: Option<u32>,
    },
    SessionEnded {
        session: SessionKey,
    },
    SessionUpdated {
        connector: ConnectorKey,
        info: SessionInfo,
    },
    SessionDeclared {
        session: SessionKey,
        declared: Declared,
    },
    /// The most periods a schedule may have on `charger`, as it told us.
    SchedulePeriods {
        charger: ChargerId,
        max: u32,
    },
    /// A message from `charger` stamped `offset_ms` from the moment we received it.
    Clock {
        charger: ChargerId,
        offset_ms: i64,
        stamp: Stamp,
    },
    Snapshot(oneshot::Sender<SiteBudget>),
    /// The site's electrics changed (a charger or connector was added): carry on with this balancer.
    Replace(Box<Rebuilt>),
}

/// A site's balancer built afresh from storage, with what the task needs to drive it.
struct Rebuilt {
    balancer: Balancer,
    /// Its store history was learned from storage afresh: not carried over from the running one.
    store_relearned: bool,
    places: Vec<OcppPlace>,
    /// The site's chargers, in `ChargerKey` order.
    chargers: Vec<ChargerId>,
}

/// Where a balancer connector is in OCPP terms: the charger and the number it reports the
/// connector by (the same pair every [`ChargerEvent`](crate::ocpp::report::ChargerEvent) names). The
/// balancer knows the connector by its `ConnectorKey`; this map is the one crossing between the two.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OcppPlace {
    charger: ChargerId,
    connector_no: OcppConnector,
}

/// A session as the balancer knows it: our transaction id, the one name both sides share. (The
/// charger's own name for it, 2.0.1's transactionId, travels beside it only to go back to the
/// charger in its profiles.)
fn session_key(transaction: TransactionId) -> SessionKey {
    // Our ids are positive (database sequences); a negative one would be corrupt storage.
    SessionKey(u64::try_from(transaction.0).unwrap_or(0))
}

/// A site's live budget with connectors named as the operator knows them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SiteBudget {
    pub site: i64,
    pub snapshot: Snapshot,
    /// `ConnectorKey` → (charger id, connector number).
    pub connectors: Vec<(u32, String, u32)>,
}

struct SiteEntry {
    input: mpsc::Sender<Input>,
    fallback: DeciAmps,
}

/// Every site's balancer task, and the maps from OCPP names to balancer keys.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    clock: ShellClock,
    registry: Registry,
    /// Where sites are rebuilt from when chargers or connectors are added (`None`: balancing off).
    db: Option<Db>,
    maps: RwLock<Maps>,
    /// One rebuild at a time, so the maps and the tasks agree.
    rebuilding: tokio::sync::Mutex<()>,
    /// Per site: rebuilds asked for, and the last ask the latest rebuild has seen. A burst of new
    /// chargers at one site (a thousand auto-registering at once) costs a few rebuilds, not one each.
    rebuild_tickets: std::sync::Mutex<HashMap<SiteId, (u64, u64)>>,
    /// When each site's old store meter readings were last forgotten.
    last_prune: std::sync::Mutex<HashMap<SiteId, Millis>>,
    /// The sites that want an operator's look, kept by their tasks as it changes.
    attention: Arc<AttentionBoard>,
}

/// Which sites want an operator's look, and why. Each site's task writes its own entry when its
/// answer changes, so the console's overview reads one map rather than asking every site of a
/// network (thousands) for its whole budget every few seconds.
#[derive(Default)]
struct AttentionBoard(RwLock<HashMap<SiteId, Attention>>);

impl AttentionBoard {
    fn set(&self, site: SiteId, attention: Option<Attention>) {
        // Writers only insert and remove whole entries: a panic cannot leave the map half-changed.
        let mut map = self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        match attention {
            Some(a) => map.insert(site, a),
            None => map.remove(&site),
        };
    }

    fn all(&self) -> Vec<(SiteId, Attention)> {
        let map = self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut all: Vec<(SiteId, Attention)> = map.iter().map(|(s, a)| (*s, *a)).collect();
        all.sort_by_key(|&(site, a)| (a, site.0));
        all
    }
}

#[derive(Default)]
struct Maps {
    sites: HashMap<SiteId, SiteEntry>,
    connectors: HashMap<OcppPlace, (SiteId, ConnectorKey)>,
    chargers: HashMap<ChargerId, (SiteId, ChargerKey)>,
    /// Chargers whose connector 0 meter is their site's store meter.
    store_meters: HashMap<ChargerId, SiteId>,
}

impl Maps {
    fn forget_site(&mut self, site: SiteId) {
        self.connectors.retain(|_, (s, _)| *s != site);
        self.chargers.retain(|_, (s, _)| *s != site);
        self.store_meters.retain(|_, s| *s != site);
    }

    fn learn_site(&mut self, site: SiteId, places: &[OcppPlace], chargers: &[ChargerId]) {
        for (i, t) in places.iter().enumerate() {
            self.connectors.insert(t.clone(), (site, ConnectorKey(u32::try_from(i).unwrap_or(u32::MAX))));
        }
        for (i, c) in chargers.iter().enumerate() {
            self.chargers.insert(c.clone(), (site, ChargerKey(u32::try_from(i).unwrap_or(u32::MAX))));
        }
    }
}

/// How far back stored store-meter readings are kept and fed to a new balancer: what its rise
/// learning remembers.
const STORE_HISTORY: Duration = Duration::from_secs(MEMORY_DAYS * 24 * 3600);

fn da(value: i64) -> DeciAmps {
    DeciAmps::new(u32::try_from(value.max(0)).unwrap_or(u32::MAX))
}

fn rotation(text: &str) -> Rotation {
    let phase = |c: &str| match c {
        "L2" => Phase::L2,
        "L3" => Phase::L3,
        _ => Phase::L1,
    };
    Rotation([
        phase(&text[0..2.min(text.len())]),
        phase(text.get(2..4).unwrap_or("L2")),
        phase(text.get(4..6).unwrap_or("L3")),
    ])
}

/// The balancer configuration of one site, from what storage knows.
fn site_config(site: &balancing::SiteElectrics) -> (SiteConfig, Vec<OcppPlace>, Vec<ChargerId>) {
    let mut charger_keys: Vec<ChargerId> = Vec::new();
    let mut places = Vec::new();
    let mut connectors = Vec::new();
    for (i, c) in site.connectors.iter().enumerate() {
        let Ok(charger) = ChargerId::parse(&c.charger_id) else { continue };
        let charger_index = match charger_keys.iter().position(|k| *k == charger) {
            Some(i) => i,
            None => {
                charger_keys.push(charger.clone());
                charger_keys.len() - 1
            }
        };
        connectors.push(ConnectorConfig {
            key: ConnectorKey(u32::try_from(i).unwrap_or(u32::MAX)),
            charger: ChargerKey(u32::try_from(charger_index).unwrap_or(u32::MAX)),
            circuit: c.circuit.map(|id| CircuitId(u32::try_from(id).unwrap_or(u32::MAX))),
            max: DeciAmps::from_amps(u32::try_from(c.max_current_a.max(0)).unwrap_or(0)),
            wiring: if c.phases == 1 { Wiring::OnePhase } else { Wiring::ThreePhase },
            rotation: rotation(&c.rotation),
            fallback: da(site.connector_fallback_da)
                .min(DeciAmps::from_amps(u32::try_from(c.max_current_a.max(0)).unwrap_or(0))),
        });
        places.push(OcppPlace { charger, connector_no: u32::try_from(c.connector_no).unwrap_or(0) });
    }
    let circuits = site
        .circuits
        .iter()
        .map(|c| CircuitConfig {
            id: CircuitId(u32::try_from(c.id).unwrap_or(u32::MAX)),
            parent: c.parent.map(|p| CircuitId(u32::try_from(p).unwrap_or(u32::MAX))),
            limit: PerPhase(c.limit_da.map(da)),
        })
        .collect();
    let mut config = SiteConfig::with_defaults(PerPhase(site.grid_limit_da.map(da)), circuits, connectors);
    config.store.worst_case = PerPhase::uniform(da(site.store_worst_case_da));
    config.store.meter = site.site_meter;
    // A store is never still to the tenth of an amp for long; a gateway that lost its meter and
    // repeats the last value is.
    config.store.frozen_after = site.store_meter_frozen_after;
    let cadence = if site.store_meter_charger.is_some() {
        StoreMeterCadence::Charger
    } else {
        StoreMeterCadence::SiteMeter
    };
    SitePolicy::default().apply(&mut config, cadence);
    // Off unless the site states its chargers' round trip and clock skew.
    config.handover = site.handover;
    config.idle_raise_after = site.idle_raise_after;
    (config, places, charger_keys)
}

/// Whether a site with these electrics can be balanced safely; its configuration warnings if so.
pub fn check_site(
    site: &balancing::SiteElectrics,
) -> Result<Vec<String>, crate::balancer::config::ConfigError> {
    let (config, _, _) = site_config(site);
    Balancer::new(config).map(|b| b.warnings().iter().map(ToString::to_string).collect())
}

impl Hub {
    /// A hub balancing nothing (tests of other parts).
    pub fn empty(registry: Registry) -> Hub {
        Hub::new(None, registry)
    }

    fn new(db: Option<Db>, registry: Registry) -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                clock: ShellClock::start(),
                registry,
                db,
                maps: RwLock::new(Maps::default()),
                rebuilding: tokio::sync::Mutex::new(()),
                rebuild_tickets: std::sync::Mutex::new(HashMap::new()),
                last_prune: std::sync::Mutex::new(HashMap::new()),
                attention: Arc::default(),
            }),
        }
    }

    /// Builds every site's balancer from storage and starts its task.
    pub async fn start(db: &Db, registry: Registry) -> Result<Hub, DbError> {
        let hub = Hub::new(Some(db.clone()), registry);
        for site in balancing::all_sites(db).await? {
            hub.install(&site, true, false).await;
        }
        Ok(hub)
    }

    fn maps(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        // Writers only insert and remove whole entries: a panic cannot leave the maps half-changed.
        self.inner.maps.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn maps_mut(&self) -> std::sync::RwLockWriteGuard<'_, Maps> {
        self.inner.maps.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Rebuilds a site's balancer from storage, after a charger or connector was added to it.
    /// Sessions carry on; the limits they may be running count until the chargers confirm ours.
    pub async fn rebuild_site(&self, site: SiteId) -> Result<(), DbError> {
        let Some(db) = self.inner.db.clone() else { return Ok(()) };
        let tickets = || self.inner.rebuild_tickets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mine = {
            let mut t = tickets();
            let entry = t.entry(site).or_default();
            entry.0 += 1;
            entry.0
        };
        let _one_at_a_time = self.inner.rebuilding.lock().await;
        // A rebuild that began after this ask read storage as it is now: nothing left to do.
        let seen = {
            let t = tickets();
            let (asked, built) = t.get(&site).copied().unwrap_or_default();
            if built >= mine {
                return Ok(());
            }
            asked
        };
        let Some(electrics) = balancing::site(&db, site).await? else { return Ok(()) };
        self.install(&electrics, false, false).await;
        tickets().entry(site).or_default().1 = seen;
        Ok(())
    }

    /// Forgets a site's store meter readings taken in `[from_ms, to_ms)` (a faulty meter's, which
    /// would teach the balancer a rise the store never had) and has the site's balancer learn the
    /// store's rise again from what is kept. Returns how many readings were forgotten (`None`: no
    /// such site).
    pub async fn forget_store_readings(
        &self,
        site: SiteId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<u64>, DbError> {
        let Some(db) = self.inner.db.clone() else { return Ok(None) };
        let _one_at_a_time = self.inner.rebuilding.lock().await;
        let Some(electrics) = balancing::site(&db, site).await? else { return Ok(None) };
        let forgotten = balancing::forget_store_readings_between(&db, site, from_ms, to_ms).await?;
        tracing::info!(site.id = %site, forgotten, from_ms, to_ms, "store meter readings forgotten; the rise is learned again");
        self.install(&electrics, false, true).await;
        Ok(Some(forgotten))
    }

    /// Keeps a stretch of the site's earlier store meter readings (a meter's export, when a site
    /// goes live) and has its balancer learn the store's rise again with them, rather than wait a
    /// day on the configured bound. Returns how many were kept (`None`: no such site).
    pub async fn import_store_readings(
        &self,
        site: SiteId,
        readings: &[balancing::StoreReading],
    ) -> Result<Option<u64>, DbError> {
        let Some(db) = self.inner.db.clone() else { return Ok(None) };
        let _one_at_a_time = self.inner.rebuilding.lock().await;
        let Some(electrics) = balancing::site(&db, site).await? else { return Ok(None) };
        let kept = balancing::record_store_readings(&db, site, readings).await?;
        tracing::info!(site.id = %site, kept, "earlier store meter readings imported; the rise is learned again");
        self.install(&electrics, false, true).await;
        Ok(Some(kept))
    }

    /// Builds a site's balancer and starts its task, or hands it to the running one (which gives it
    /// its store history, unless `relearn_store`: then it is read from storage again).
    async fn install(&self, site: &balancing::SiteElectrics, at_start_up: bool, relearn_store: bool) {
        let (config, places, chargers) = site_config(site);
        let maxima: Vec<DeciAmps> = config.connectors.iter().map(|c| c.max).collect();
        let mut balancer = match Balancer::new(config) {
            Ok(b) => b,
            Err(err) => {
                tracing::error!(site.id = %site.site, error = %err, "site cannot be balanced safely; its chargers get no limits from us");
                return;
            }
        };
        for warning in balancer.warnings() {
            tracing::warn!(site.id = %site.site, %warning, "balancer configuration");
        }
        let now = self.inner.clock.balancer_now();
        // Chargers count as offline until they connect (a rebuild sees those already connected). One
        // recompute for all: a site of thousands of chargers must not start with thousands of them.
        let offline = chargers
            .iter()
            .enumerate()
            .filter(|(_, charger)| !self.inner.registry.is_connected(charger))
            .map(|(i, _)| Event::ChargerOffline {
                charger: ChargerKey(u32::try_from(i).unwrap_or(u32::MAX)),
            });
        balancer.handle_all(offline, now);
        let running = self.maps().sites.get(&site.site).map(|e| e.input.clone());
        let input = match running {
            Some(input) if !at_start_up => {
                if relearn_store {
                    self.learn_store_history(&mut balancer, site.site).await;
                }
                let rebuilt = Rebuilt {
                    balancer,
                    store_relearned: relearn_store,
                    places: places.clone(),
                    chargers: chargers.clone(),
                };
                if input.send(Input::Replace(Box::new(rebuilt))).await.is_err() {
                    tracing::error!(site.id = %site.site, "balancer task is gone; site not rebuilt");
                    return;
                }
                tracing::info!(site.id = %site.site, connectors = places.len(), "balancer rebuilt with the site's new chargers");
                input
            }
            _ => {
                // Sessions open before a restart go on; whatever limit their chargers still run is unknown.
                let index_of: HashMap<&OcppPlace, usize> =
                    places.iter().enumerate().map(|(i, t)| (t, i)).collect();
                let mut open: HashMap<SessionKey, OpenTx> = HashMap::new();
                let mut events = Vec::new();
                // Newest first: where storage has two open on one connector, the older ended unseen.
                for s in site.open_sessions.iter().rev() {
                    let Ok(charger) = ChargerId::parse(&s.charger_id) else { continue };
                    let place =
                        OcppPlace { charger, connector_no: u32::try_from(s.connector_no).unwrap_or(0) };
                    let Some(&index) = index_of.get(&place) else { continue };
                    let connector = ConnectorKey(u32::try_from(index).unwrap_or(u32::MAX));
                    if open.values().any(|o| o.connector == connector) {
                        continue;
                    }
                    let session = session_key(TransactionId(s.transaction_id));
                    let baseline_wh = s.meter_start_wh.and_then(|wh| u32::try_from(wh).ok());
                    // With what the driver or an operator stated about it, kept with the transaction.
                    let tx =
                        OpenTx::new(connector, s.ocpp_tx_id.clone(), baseline_wh, self.declared(&s.needs));
                    events.push(Event::SessionStarted { connector, session, info: tx.info() });
                    events.push(Event::LimitUnknown { connector, up_to: maxima[index] });
                    open.insert(session, tx);
                }
                // The store first, so the sessions are planned against its latest reading.
                self.learn_store_history(&mut balancer, site.site).await;
                balancer.handle_all(events, now);
                let (tx, rx) = mpsc::channel(1024);
                let task = SiteTask {
                    site: site.site,
                    balancer,
                    outcomes: tx.clone(),
                    registry: self.inner.registry.clone(),
                    clock: self.inner.clock,
                    places: places.clone(),
                    chargers: chargers.clone(),
                    clocks: HashMap::new(),
                    single_period: Default::default(),
                    open,
                    board: self.inner.attention.clone(),
                    shown: None,
                };
                tokio::spawn(task.run(rx));
                tx
            }
        };
        let meter = site.store_meter_charger.as_deref().and_then(|c| ChargerId::parse(c).ok());
        let fallback = da(site.connector_fallback_da);
        let old_fallback = self.maps().sites.get(&site.site).map(|e| e.fallback);
        let newly_wired = {
            let mut maps = self.maps_mut();
            let was_wired = meter.as_ref().is_some_and(|m| maps.store_meters.get(m) == Some(&site.site));
            maps.forget_site(site.site);
            maps.learn_site(site.site, &places, &chargers);
            if let Some(meter) = &meter {
                maps.store_meters.insert(meter.clone(), site.site);
            }
            maps.sites.insert(site.site, SiteEntry { input, fallback });
            meter.filter(|_| !was_wired)
        };
        // A lowered fallback reaches connected chargers' charger-wide default now (their connectors'
        // own defaults, which the balancer steers, come down with the plan). A raised one waits for
        // each charger's next boot: a connector that refused its own default runs on the charger-wide
        // one and is counted at what it accepted, so that must not rise behind the balancer's back.
        if old_fallback.is_some_and(|old| fallback < old) && !at_start_up {
            for charger in &chargers {
                if let Some(version) = self.inner.registry.version_of(charger) {
                    let hub = self.clone();
                    let charger = charger.clone();
                    tokio::spawn(async move { hub.lower_charger_default(&charger, version, fallback).await });
                }
            }
        }
        // A charger just named the store meter, and online: set up its readings now, not at its next boot.
        if let Some(meter) = newly_wired {
            if let Some(version) = self.inner.registry.version_of(&meter) {
                let hub = self.clone();
                tokio::spawn(
                    async move { hub.configure_readings(&meter, version, Readings::StoreMeter).await },
                );
            }
        }
    }

    fn send(&self, site: SiteId, input: Input) {
        if let Some(entry) = self.maps().sites.get(&site) {
            if entry.input.try_send(input).is_err() {
                tracing::error!(site.id = %site, "balancer queue full or closed; event dropped");
            }
        }
    }

    fn now(&self) -> Millis {
        self.inner.clock.balancer_now()
    }

    /// Whether a site's old store meter readings are due to be forgotten (hourly).
    fn prune_due(&self, site: SiteId) -> bool {
        let mut last = self.inner.last_prune.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = self.now();
        let due = last.get(&site).is_none_or(|&at| now.since(at) >= Millis::from_secs(3600));
        if due {
            last.insert(site, now);
        }
        due
    }

    /// Feeds a new balancer the site's stored store meter readings it remembers (four weeks), at the
    /// balancer times they stand for.
    async fn learn_store_history(&self, balancer: &mut Balancer, site: SiteId) {
        let Some(db) = &self.inner.db else { return };
        let now = self.inner.clock.now();
        let since = now.utc_ms() - i64::try_from(STORE_HISTORY.as_millis()).unwrap_or(i64::MAX);
        let readings = match balancing::store_readings_since(db, site, since).await {
            Ok(r) => r,
            Err(err) => {
                tracing::warn!(site.id = %site, error = %err, "stored store meter readings not read; the configured rise applies until it is learned");
                return;
            }
        };
        let count = readings.len();
        let history: Vec<(Millis, PerPhase)> = readings
            .into_iter()
            .filter(|r| r.measured_at_ms <= now.utc_ms())
            .filter_map(|r| {
                let at = now.balancer_at(r.measured_at_ms)?;
                let da = r.da.map(|x| DeciAmps::new(u32::try_from(x).unwrap_or(u32::MAX)));
                Some((at, PerPhase(da)))
            })
            .collect();
        let latest = history.last().copied();
        balancer.learn_store_history(history);
        // The latest reading, with its true age: sessions are planned against it rather than the
        // worst case if it is fresh enough (a restart does not make it fresher).
        if let Some((measured_at, currents)) = latest {
            let _ = balancer.handle(Event::StoreMeter { currents, measured_at }, now.balancer);
        }
        tracing::info!(site.id = %site, readings = count, learned = ?balancer.learned_store_rise(), "store meter history");
    }

    fn connector(&self, charger: &ChargerId, connector_no: u32) -> Option<(SiteId, ConnectorKey)> {
        self.maps().connectors.get(&OcppPlace { charger: charger.clone(), connector_no }).copied()
    }

    fn charger(&self, charger: &ChargerId) -> Option<(SiteId, ChargerKey)> {
        self.maps().chargers.get(charger).copied()
    }

    pub fn charger_online(&self, charger: &ChargerId, online: bool) {
        if let Some((site, key)) = self.charger(charger) {
            let event = if online {
                Event::ChargerOnline { charger: key }
            } else {
                Event::ChargerOffline { charger: key }
            };
            self.send(site, Input::Event(event));
        }
    }

    /// Installs the site's fallback as the charger's default profile, so it stays safe if it loses us.
    /// A charger the site's balancer does not know yet (added since) is added to it first.
    pub fn charger_booted(&self, charger: &ChargerId, site: Option<SiteId>, version: OcppVersion) {
        let hub = self.clone();
        let charger = charger.clone();
        tokio::spawn(async move {
            if let (None, Some(site)) = (hub.charger(&charger), site) {
                if let Err(err) = hub.rebuild_site(site).await {
                    tracing::error!(charger.id = %charger, site.id = %site, error = %err, "could not add the charger to its site's balancer");
                }
            }
            if hub.charger(&charger).is_some() {
                hub.prepare_charger(&charger, version).await;
            } else {
                // No connector known yet: its first StatusNotification brings it in.
                tracing::debug!(charger.id = %charger, "charger not balanced until it reports a connector");
            }
        });
    }

    /// A connector reported its status: one the site's balancer does not know yet is added to it
    /// (and a charger new to the balancer gets its default profile).
    pub fn connector_seen(&self, charger: &ChargerId, site: Option<SiteId>, connector_no: u32) {
        let (Some(site), true) = (site, connector_no > 0) else { return };
        if self.connector(charger, connector_no).is_some() || self.inner.db.is_none() {
            return;
        }
        let hub = self.clone();
        let charger = charger.clone();
        tokio::spawn(async move {
            let charger_was_known = hub.charger(&charger).is_some();
            if let Err(err) = hub.rebuild_site(site).await {
                tracing::error!(charger.id = %charger, connector = connector_no, error = %err, "could not add the connector to its site's balancer");
                return;
            }
            if let (false, true, Some(version)) =
                (charger_was_known, hub.charger(&charger).is_some(), hub.inner.registry.version_of(&charger))
            {
                hub.prepare_charger(&charger, version).await;
            }
        });
    }

    /// A charger joining a balanced site: its default profile, then the readings we learn from.
    async fn prepare_charger(&self, charger: &ChargerId, version: OcppVersion) {
        self.send_default_profile(charger, version).await;
        self.configure_readings(charger, version, Readings::Transactions).await;
        if self.maps().store_meters.contains_key(charger) {
            self.configure_readings(charger, version, Readings::StoreMeter).await;
        }
    }

    /// Asks the charger for the readings the balancer works from (see [`Readings`]); out of the
    /// box many chargers send the energy register alone, or nothing until a transaction ends.
    /// A charger that refuses the measurands is asked again for the ones it cannot do without;
    /// one that refuses those too still charges, balanced without them, with a warning.
    async fn configure_readings(&self, charger: &ChargerId, version: OcppVersion, readings: Readings) {
        for measurands in readings.measurands() {
            let mut accepted = true;
            for (action, request) in readings_requests(version, readings, measurands) {
                let outcome = self.inner.registry.call(charger, action, request, CALL_WAIT).await;
                let refusal = match &outcome {
                    Ok(CallOutcome::Answered(answer)) => configuration_refusal(version, answer),
                    other => Some(format!("{other:?}")),
                };
                if let Some(refusal) = refusal {
                    tracing::warn!(charger.id = %charger, ?readings, action, ?measurands, refusal, "meter readings not configured");
                    accepted = false;
                    break;
                }
            }
            if accepted {
                tracing::debug!(charger.id = %charger, ?readings, ?measurands, interval_s = METER_SAMPLE_INTERVAL_S, "meter readings configured");
                return;
            }
        }
    }

    /// Sends a connected charger its new, lower charger-wide default.
    async fn lower_charger_default(&self, charger: &ChargerId, version: OcppVersion, fallback: DeciAmps) {
        let outcome = self
            .inner
            .registry
            .call(charger, "SetChargingProfile", default_profile(version, 0, fallback), CALL_WAIT)
            .await;
        if matches!(outcome.as_ref().map(ProfileAnswer::of), Ok(ProfileAnswer::Accepted)) {
            tracing::info!(charger.id = %charger, fallback = %fallback, "charger-wide default lowered");
        } else {
            // Its connectors' own defaults, steered by the balancer, still hold where they were accepted.
            tracing::warn!(charger.id = %charger, ?outcome, "lowered charger-wide default not accepted");
        }
    }

    async fn send_default_profile(&self, charger: &ChargerId, version: OcppVersion) {
        let Some((site, key)) = self.charger(charger) else { return };
        let Some((input, fallback)) = self.maps().sites.get(&site).map(|e| (e.input.clone(), e.fallback))
        else {
            return;
        };
        let outcome = self
            .inner
            .registry
            .call(charger, "SetChargingProfile", default_profile(version, 0, fallback), CALL_WAIT)
            .await;
        match outcome.as_ref().map(ProfileAnswer::of) {
            Ok(ProfileAnswer::Accepted) => {
                let _ = input.send(Input::Event(Event::SmartChargingSupported { charger: key })).await;
            }
            Ok(ProfileAnswer::Refused) => {
                tracing::warn!(charger.id = %charger, ?outcome, "default profile refused: budgeting the charger at its maximum");
                let _ = input.send(Input::Event(Event::SmartChargingUnsupported { charger: key })).await;
                return;
            }
            // No answer (it went away, or is slow): not a refusal. Its next boot asks again.
            _ => {
                tracing::warn!(charger.id = %charger, ?outcome, "default profile not answered");
                return;
            }
        }
        // How many periods its schedules may have: a handover takes two.
        let (action, ask) = schedule_periods_query(version);
        match self.inner.registry.call(charger, action, ask, CALL_WAIT).await {
            Ok(CallOutcome::Answered(answer)) => match schedule_periods(version, &answer) {
                Some(max) => {
                    tracing::debug!(charger.id = %charger, max, "schedule periods the charger takes");
                    let _ = input.send(Input::SchedulePeriods { charger: charger.clone(), max }).await;
                }
                None => {
                    tracing::debug!(charger.id = %charger, "charger did not say how many schedule periods it takes")
                }
            },
            other => tracing::debug!(charger.id = %charger, outcome = ?other, "schedule periods not read"),
        }
    }

    /// A session began; `meter_start_wh` is the energy register at its start, when the charger said
    /// (the session's energy is counted from there).
    pub fn session_started(
        &self,
        charger: &ChargerId,
        connector_no: u32,
        transaction: TransactionId,
        ocpp_tx_id: &str,
        meter_start_wh: Option<i64>,
    ) {
        if let Some((site, connector)) = self.connector(charger, connector_no) {
            let session = session_key(transaction);
            let baseline_wh = meter_start_wh.and_then(|wh| u32::try_from(wh).ok());
            self.send(
                site,
                Input::SessionStarted { connector, session, ocpp_tx_id: ocpp_tx_id.to_owned(), baseline_wh },
            );
        }
    }

    /// What the car told us about itself (OCPP 2.0.1 NotifyEVChargingNeeds): its maximum current,
    /// when it leaves (UTC milliseconds) and how much energy it wants.
    pub fn session_needs(
        &self,
        charger: &ChargerId,
        connector_no: u32,
        ev_max_a: Option<u32>,
        departure_utc_ms: Option<i64>,
        energy_wh: Option<u32>,
    ) {
        let Some((site, connector)) = self.connector(charger, connector_no) else { return };
        let departure = departure_utc_ms.map(|at| self.at_utc_ms(at));
        let info = SessionInfo {
            departure,
            energy_need_wh: energy_wh,
            ev_max: ev_max_a.map(DeciAmps::from_amps),
            ..SessionInfo::default()
        };
        self.send(site, Input::SessionUpdated { connector, info });
    }

    /// What the driver or an operator stated about a running session (stored already).
    pub fn session_declared(
        &self,
        charger: &ChargerId,
        transaction: TransactionId,
        needs: &balancing::SessionNeeds,
    ) {
        if let Some((site, _)) = self.charger(charger) {
            let session = session_key(transaction);
            self.send(site, Input::SessionDeclared { session, declared: self.declared(needs) });
        }
    }

    /// Stored needs on the balancer's clock.
    fn declared(&self, needs: &balancing::SessionNeeds) -> Declared {
        Declared {
            departure: needs.departure_at_ms.map(|at| self.at_utc_ms(at)),
            energy_need_wh: needs.energy_need_wh.and_then(|wh| u32::try_from(wh).ok()),
            priority: needs.priority.get(),
        }
    }

    /// A UTC moment on the balancer's clock, which is monotonic from start-up: "this long from now"
    /// (a moment past is now).
    fn at_utc_ms(&self, at: i64) -> Millis {
        self.inner.clock.now().balancer_at_or_now(at)
    }

    pub fn session_ended(&self, charger: &ChargerId, transaction: TransactionId) {
        if let Some((site, _)) = self.charger(charger) {
            self.send(site, Input::SessionEnded { session: session_key(transaction) });
        }
    }

    /// Currents a connector measured on its own L1, L2, L3 (tenths of an amp).
    pub fn connector_meter(
        &self,
        charger: &ChargerId,
        connector_no: u32,
        currents_da: [u32; 3],
        energy_wh: Option<u32>,
    ) {
        if connector_no == 0 {
            // Connector 0 is the charger as a whole; on the site's store meter charger, the store.
            let site = self.maps().store_meters.get(charger).copied();
            if let Some(site) = site {
                self.store_meter(site, currents_da.map(DeciAmps::new));
            }
            return;
        }
        if let Some((site, connector)) = self.connector(charger, connector_no) {
            let event = Event::ConnectorMeter {
                connector,
                currents: currents_da.map(DeciAmps::new),
                energy_wh,
                measured_at: self.now(),
            };
            self.send(site, Input::Event(event));
        }
    }

    /// The charger says the car on a connector stopped drawing (suspended, finishing): an incomer
    /// meter's reading from then on does not count that car's last current as the cars'.
    pub fn draw_stopped(&self, charger: &ChargerId, connector_no: u32) {
        if let Some((site, connector)) = self.connector(charger, connector_no) {
            self.send(site, Input::Event(Event::DrawStopped { connector, at: self.now() }));
        }
    }

    /// The store's own load per site phase, from the site meter.
    pub fn store_meter(&self, site: SiteId, currents: [DeciAmps; 3]) -> bool {
        if !self.maps().sites.contains_key(&site) {
            return false;
        }
        let now = self.inner.clock.now();
        self.send(
            site,
            Input::Event(Event::StoreMeter { currents: PerPhase(currents), measured_at: now.balancer }),
        );
        if let Some(db) = self.inner.db.clone() {
            let reading = balancing::StoreReading {
                measured_at_ms: now.utc_ms(),
                da: currents.map(|a| i64::from(a.get())),
            };
            let prune = self.prune_due(site);
            tokio::spawn(async move {
                if let Err(err) = balancing::record_store_reading(&db, site, reading).await {
                    tracing::warn!(site.id = %site, error = %err, "store meter reading not kept (the balancer has it)");
                }
                if prune {
                    let before =
                        reading.measured_at_ms - i64::try_from(STORE_HISTORY.as_millis()).unwrap_or(i64::MAX);
                    if let Err(err) = balancing::forget_store_readings(&db, site, before).await {
                        tracing::warn!(site.id = %site, error = %err, "old store meter readings not forgotten");
                    }
                }
            });
        }
        true
    }

    /// A message from the charger carried its own timestamp: how far its clock is from ours
    /// decides whether leases and handovers may rest on it (`clock.rs`).
    pub fn charger_clock(&self, charger: &ChargerId, stamped: chrono::DateTime<chrono::Utc>, stamp: Stamp) {
        if let Some((site, _)) = self.charger(charger) {
            let offset_ms = self.inner.clock.now().offset_ms(stamped);
            self.send(site, Input::Clock { charger: charger.clone(), offset_ms, stamp });
        }
    }

    /// The sites being balanced.
    pub fn sites(&self) -> Vec<SiteId> {
        let mut sites: Vec<SiteId> = self.maps().sites.keys().copied().collect();
        sites.sort_by_key(|s| s.0);
        sites
    }

    /// The sites that want an operator's look, worst first, then by site.
    pub fn attention(&self) -> Vec<(SiteId, Attention)> {
        self.inner.attention.all()
    }

    pub async fn budget(&self, site: SiteId) -> Option<SiteBudget> {
        let input = self.maps().sites.get(&site)?.input.clone();
        let (tx, rx) = oneshot::channel();
        input.send(Input::Snapshot(tx)).await.ok()?;
        rx.await.ok()
    }
}

/// How far a site's chargers' clocks may be off: with handovers, the skew the site states (either
/// way); without, only a late clock matters, to leases, by the margin they are sent with.
fn clock_tolerance(config: &SiteConfig) -> ClockTolerance {
    match config.handover {
        Some(h) => ClockTolerance { ahead: Some(h.clock_skew), behind: h.clock_skew },
        None => ClockTolerance { ahead: None, behind: Millis::from_secs(LEASE_CLOCK_MARGIN_S) },
    }
}

/// A session the task is steering.
struct OpenTx {
    connector: ConnectorKey,
    ocpp_tx_id: String,
    /// The energy register when the session began (from meterStart, or its first reading).
    baseline_wh: Option<u32>,
    /// What the car said of itself (2.0.1 NotifyEVChargingNeeds).
    from_ev: SessionInfo,
    /// What the driver or an operator stated (`PUT /api/v1/sessions/{id}/needs`).
    declared: Declared,
}

/// A session's needs as the driver or an operator stated them, on the balancer's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Declared {
    pub departure: Option<Millis>,
    pub energy_need_wh: Option<u32>,
    pub priority: u8,
}

impl OpenTx {
    fn new(
        connector: ConnectorKey,
        ocpp_tx_id: String,
        baseline_wh: Option<u32>,
        declared: Declared,
    ) -> OpenTx {
        OpenTx { connector, ocpp_tx_id, baseline_wh, from_ev: SessionInfo::default(), declared }
    }

    /// What the balancer is told: the person's word on departure and energy where they gave it
    /// (they know when they leave and what they paid for), the car's otherwise; the car's own
    /// maximum and phases; the priority an operator set.
    fn info(&self) -> SessionInfo {
        SessionInfo {
            departure: self.declared.departure.or(self.from_ev.departure),
            energy_need_wh: self.declared.energy_need_wh.or(self.from_ev.energy_need_wh),
            priority: self.declared.priority,
            ..self.from_ev.clone()
        }
    }
}

/// The session's energy from a reading of the charger's energy register: counted from the register
/// at the start, or, when the charger did not say, from its first reading.
fn session_energy(baseline_wh: &mut Option<u32>, register_wh: u32) -> u32 {
    register_wh.saturating_sub(*baseline_wh.get_or_insert(register_wh))
}

/// One site's balancer, driven by events, with the state that ties it to OCPP names.
struct SiteTask {
    site: SiteId,
    balancer: Balancer,
    /// Where the answers to our calls come back in.
    outcomes: mpsc::Sender<Input>,
    registry: Registry,
    clock: ShellClock,
    places: Vec<OcppPlace>,
    /// The site's chargers, in `ChargerKey` order.
    chargers: Vec<ChargerId>,
    /// What each charger's timestamps say of its clock.
    clocks: HashMap<ChargerId, ClockWatch>,
    /// Chargers that take a single period per schedule (no handovers).
    single_period: std::collections::HashSet<ChargerId>,
    /// Open sessions: balancer key → (connector, OCPP transaction id).
    open: HashMap<SessionKey, OpenTx>,
    /// Where the sites that want a look are listed, and what this site last listed there.
    board: Arc<AttentionBoard>,
    shown: Option<Attention>,
}

impl SiteTask {
    async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        let mut batch = Vec::new();
        loop {
            let now = self.clock.balancer_now();
            // With nothing due, a look every 30 s all the same.
            let wake =
                self.clock.wake_at(self.balancer.poll_timeout(now).unwrap_or(now + Millis::from_secs(30)));
            tokio::select! {
                received = inputs.recv_many(&mut batch, BATCH) => {
                    if received == 0 {
                        break;
                    }
                    self.apply_batch(batch.drain(..));
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    let _ = self.balancer.handle(Event::Tick, self.clock.balancer_now());
                }
            }
            self.send_commands();
            self.publish_attention();
        }
        self.board.set(self.site, None);
    }

    /// Lists the site on the network's board while it wants a look, with why.
    fn publish_attention(&mut self) {
        let attention = self.balancer.attention();
        if attention == self.shown {
            return;
        }
        // Over a limit comes and goes with the store (decreases on their way): not worth a line
        // each time. A meter that went quiet or is not believed is.
        if matches!(attention, Some(Attention::StoreMeterSetAside(_) | Attention::StoreMeterSilent)) {
            tracing::warn!(site.id = %self.site, ?attention, "site wants a look");
        } else {
            tracing::debug!(site.id = %self.site, ?attention, was = ?self.shown, "site's call for a look changed");
        }
        self.board.set(self.site, attention);
        self.shown = attention;
    }

    /// Applies what arrived together with one recompute: at thousands of connectors a recompute
    /// costs milliseconds, and a burst of readings or connections must not queue behind one each.
    fn apply_batch(&mut self, inputs: impl Iterator<Item = Input>) {
        let mut events = Vec::new();
        for input in inputs {
            match input {
                Input::Snapshot(reply) => {
                    self.flush(&mut events);
                    // Whoever asks next for the sites that want a look sees what this budget says.
                    self.publish_attention();
                    let now = self.clock.balancer_now();
                    let connectors = self
                        .places
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            (u32::try_from(i).unwrap_or(u32::MAX), t.charger.to_string(), t.connector_no)
                        })
                        .collect();
                    let _ = reply.send(SiteBudget {
                        site: self.site.0,
                        snapshot: self.balancer.snapshot(now),
                        connectors,
                    });
                }
                Input::Replace(rebuilt) => {
                    self.flush(&mut events);
                    self.replace(*rebuilt, self.clock.balancer_now());
                }
                other => self.translate(other, &mut events),
            }
        }
        self.flush(&mut events);
    }

    fn flush(&mut self, events: &mut Vec<Event>) {
        if events.is_empty() {
            return;
        }
        for (event, err) in self.balancer.handle_all(events.drain(..), self.clock.balancer_now()) {
            tracing::debug!(site.id = %self.site, ?event, error = %err, "balancer ignored an event");
        }
    }

    fn charger_key(&self, charger: &ChargerId) -> Option<ChargerKey> {
        self.chargers
            .iter()
            .position(|c| c == charger)
            .map(|i| ChargerKey(u32::try_from(i).unwrap_or(u32::MAX)))
    }

    /// What an input means to the balancer, keeping the map of open sessions.
    fn translate(&mut self, input: Input, events: &mut Vec<Event>) {
        match input {
            Input::Event(Event::ConnectorMeter { connector, currents, energy_wh, measured_at }) => {
                // Chargers report their energy register; the balancer wants the session's energy.
                let session = self.open.values_mut().find(|o| o.connector == connector);
                let energy_wh =
                    energy_wh.zip(session).map(|(register, o)| session_energy(&mut o.baseline_wh, register));
                events.push(Event::ConnectorMeter { connector, currents, energy_wh, measured_at });
            }
            Input::Event(event) => events.push(event),
            Input::SessionStarted { connector, session, ocpp_tx_id, baseline_wh } => {
                // A connector runs one session: an older one there ended unseen.
                let stale: Vec<SessionKey> = self
                    .open
                    .iter()
                    .filter(|(k, o)| o.connector == connector && **k != session)
                    .map(|(k, _)| *k)
                    .collect();
                for old in stale {
                    self.open.remove(&old);
                    events.push(Event::SessionEnded { connector });
                }
                self.open
                    .insert(session, OpenTx::new(connector, ocpp_tx_id, baseline_wh, Declared::default()));
                events.push(Event::SessionStarted { connector, session, info: SessionInfo::default() });
            }
            Input::SessionUpdated { connector, info } => {
                if let Some(o) = self.open.values_mut().find(|o| o.connector == connector) {
                    o.from_ev = info;
                    events.push(Event::SessionUpdated { connector, info: o.info() });
                }
            }
            Input::SessionDeclared { session, declared } => {
                if let Some(o) = self.open.get_mut(&session) {
                    o.declared = declared;
                    events.push(Event::SessionUpdated { connector: o.connector, info: o.info() });
                }
            }
            Input::SessionEnded { session } => {
                if let Some(o) = self.open.remove(&session) {
                    events.push(Event::SessionEnded { connector: o.connector });
                }
            }
            Input::SchedulePeriods { charger, max } => {
                let Some(key) = self.charger_key(&charger) else { return };
                if max < 2 {
                    self.single_period.insert(charger);
                } else {
                    self.single_period.remove(&charger);
                }
                events.push(Event::SchedulePeriods { charger: key, max });
            }
            Input::Clock { charger, offset_ms, stamp } => {
                let Some(key) = self.charger_key(&charger) else { return };
                let now = self.clock.balancer_now();
                let tolerance = clock_tolerance(self.balancer.config());
                let watch = self.clocks.entry(charger.clone()).or_default();
                let was = watch.trusted(now, tolerance);
                watch.observe(now, offset_ms, stamp);
                let trusted = watch.trusted(now, tolerance);
                if trusted != was {
                    if trusted {
                        tracing::info!(site.id = %self.site, charger.id = %charger, offset_ms, "charger clock agrees with ours again: leases and handovers resume");
                    } else {
                        tracing::warn!(site.id = %self.site, charger.id = %charger, offset_ms, "charger clock is off: its limits are sent without leases or handovers");
                    }
                    events.push(Event::ChargerClock { charger: key, trusted });
                }
            }
            Input::Snapshot(_) | Input::Replace(_) => {}
        }
    }

    /// Carries the open sessions over to a rebuilt balancer. Each is budgeted at what the old one
    /// budgeted it at (its limit may be in flight) until the charger confirms the new plan; answers
    /// to the old balancer's commands are ignored by the new one.
    fn replace(&mut self, rebuilt: Rebuilt, now: Millis) {
        let Rebuilt { mut balancer, store_relearned, places, chargers } = rebuilt;
        // The new balancer trusts every clock and expects every charger to take handovers: tell it
        // what we know otherwise.
        let tolerance = clock_tolerance(balancer.config());
        let key = |id: &ChargerId| {
            chargers.iter().position(|c| c == id).map(|i| ChargerKey(u32::try_from(i).unwrap_or(u32::MAX)))
        };
        let distrusted =
            self.clocks.iter().filter(|(_, w)| !w.trusted(now, tolerance)).filter_map(|(id, _)| key(id));
        let mut known: Vec<Event> =
            distrusted.map(|charger| Event::ChargerClock { charger, trusted: false }).collect();
        known.extend(
            self.single_period
                .iter()
                .filter_map(key)
                .map(|charger| Event::SchedulePeriods { charger, max: 1 }),
        );
        balancer.handle_all(known, now);
        // First the store reading and its history, so the sessions taken over are planned
        // against it rather than the worst case.
        if !store_relearned {
            balancer.carry_store(&self.balancer);
        }
        // And what each connector's own default may be: a default the new one would send differs
        // from what the charger has only once it is accepted (a lowered fallback included).
        let old_fallback = self.balancer.config().connectors.first().map(|c| c.fallback);
        for (index, place) in places.iter().enumerate() {
            let connector = ConnectorKey(u32::try_from(index).unwrap_or(u32::MAX));
            let held = match self.places.iter().position(|t| t == place) {
                Some(old) => self.balancer.default_held(ConnectorKey(u32::try_from(old).unwrap_or(u32::MAX))),
                // New to the balancer, on a charger it knew: the charger-wide default it was given.
                None if self.places.iter().any(|t| t.charger == place.charger) => old_fallback,
                None => None,
            };
            if let Some(held) = held {
                balancer.carry_default(connector, held);
            }
        }
        let mut open = HashMap::new();
        let mut carried = Vec::new();
        for (session, o) in self.open.drain() {
            let old_key = o.connector;
            let Some(place) = self.places.get(old_key.0 as usize) else { continue };
            let Some(index) = places.iter().position(|t| t == place) else { continue };
            let Some(state) = self.balancer.carry(old_key, now) else { continue };
            let connector = ConnectorKey(u32::try_from(index).unwrap_or(u32::MAX));
            carried.push((connector, state));
            open.insert(session, OpenTx { connector, ..o });
        }
        for (connector, err) in balancer.adopt(carried, now) {
            tracing::warn!(site.id = %self.site, ?connector, error = %err, "session not carried over to the rebuilt balancer");
            open.retain(|_, o| o.connector != connector);
        }
        self.balancer = balancer;
        self.places = places;
        self.chargers = chargers;
        self.open = open;
    }

    /// Queues the balancer's commands on the chargers' connections in the order it gave them,
    /// then waits for each answer on its own task.
    fn send_commands(&mut self) {
        for command in self.balancer.poll_commands(self.clock.balancer_now()) {
            tracing::debug!(site.id = self.site.0, ?command, "balancer command");
            let (id, connector, amps_per_phase, payload) = match command {
                Command::SetDefault { id, connector, amps_per_phase } => {
                    let place = self.places.get(connector.0 as usize);
                    let version = place.and_then(|t| self.registry.version_of(&t.charger));
                    let payload = place
                        .zip(version)
                        .map(|(t, version)| default_profile(version, t.connector_no, amps_per_phase));
                    (id, connector, amps_per_phase, payload)
                }
                Command::SetLimit { id, connector, amps_per_phase, .. } => {
                    (id, connector, amps_per_phase, self.limit_payload(&command))
                }
            };
            let place = self.places.get(connector.0 as usize).cloned();
            let (Some(place), Some(payload)) = (place, payload) else {
                // Nobody to tell: count it as refused, so the budget stays at the safe side.
                let _ = self.outcomes.try_send(Input::Event(Event::CommandRejected { id }));
                continue;
            };
            let pending = match self.registry.enqueue(&place.charger, "SetChargingProfile", payload) {
                Ok(pending) => pending,
                Err(err) => {
                    // Not sent: it runs what it had, counted with this one until it hears us.
                    tracing::warn!(charger.id = %place.charger, error = %err, "limit not sent");
                    let outcomes = self.outcomes.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(NOT_SENT_WAIT).await;
                        let _ = outcomes.send(Input::Event(Event::CommandUnanswered { id })).await;
                    });
                    continue;
                }
            };
            let outcomes = self.outcomes.clone();
            tokio::spawn(async move {
                let outcome = pending.outcome(CALL_WAIT).await;
                let answer = match ProfileAnswer::of(&outcome) {
                    ProfileAnswer::Accepted => Event::CommandAccepted { id },
                    ProfileAnswer::Refused => Event::CommandRejected { id },
                    ProfileAnswer::Unanswered => Event::CommandUnanswered { id },
                };
                tracing::info!(charger.id = %place.charger, connector = place.connector_no, amps = amps_per_phase.as_amps(), ?answer, "limit sent");
                let _ = outcomes.send(Input::Event(answer)).await;
            });
        }
    }

    /// A session's limit as its charger's SetChargingProfile, if the charger and session are known.
    fn limit_payload(&self, command: &Command) -> Option<Value> {
        let Command::SetLimit { connector, session, amps_per_phase, phases, expires, then, .. } = *command
        else {
            return None;
        };
        let now = self.clock.now();
        let (start, into_second_ms) = whole_second(now.utc);
        let now = now.balancer;
        // Told to drop it a margin before the balancer stops counting it (the start is a
        // little before now, so it drops it sooner still).
        let lease = expires.map(|end| ProfileLease {
            start,
            duration_s: u32::try_from(
                (end.0.saturating_sub(now.0) / 1000).saturating_sub(LEASE_CLOCK_MARGIN_S).max(1),
            )
            .unwrap_or(u32::MAX),
        });
        let switch = then.map(|(at, later)| ProfileSwitch {
            start,
            after_s: switch_after_s(at.0.saturating_sub(now.0) + into_second_ms, later < amps_per_phase),
            amps: later,
        });
        // A switch already due: the later limit straight away.
        let amps_per_phase = match switch {
            Some(s) if s.after_s == 0 => s.amps,
            _ => amps_per_phase,
        };
        let place = self.places.get(connector.0 as usize)?;
        let ocpp_tx_id = &self.open.get(&session)?.ocpp_tx_id;
        let version = self.registry.version_of(&place.charger)?;
        Some(tx_profile(version, place.connector_no, ocpp_tx_id, amps_per_phase, phases, lease, switch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_lenses_are_counted_in_the_meters_own_readings() {
        let site = |meter: Option<&str>| balancing::SiteElectrics {
            site: SiteId(1),
            grid_limit_da: [3000; 3],
            store_worst_case_da: 300,
            connector_fallback_da: 0,
            store_meter_charger: meter.map(str::to_owned),
            site_meter: crate::balancer::SiteMeter::Store,
            handover: None,
            idle_raise_after: Millis::from_secs(120),
            store_meter_frozen_after: crate::balancer::store::FROZEN_AFTER,
            circuits: vec![],
            connectors: vec![],
            open_sessions: vec![],
        };
        let windows = |meter| {
            let (config, _, _) = site_config(&site(meter));
            let learn = config.store.learn_rise.expect("the rise is learned");
            learn.lenses.iter().map(|l| (l.window.0 / 1000, l.rank)).collect::<Vec<_>>()
        };
        assert_eq!(windows(None), [(60, 1), (300, 2), (600, 3)], "a site meter posts once a minute");
        assert_eq!(windows(Some("FM-CAM-01")), [(10, 1), (50, 2), (100, 3)], "a charger's, every 10 s");
    }

    #[test]
    fn a_site_with_handovers_schedules_the_newcomer_once_those_giving_way_accept() {
        let row = |charger: &str, no: i64| balancing::ConnectorRow {
            charger_id: charger.into(),
            connector_no: no,
            max_current_a: 32,
            phases: 3,
            rotation: "L1L2L3".into(),
            circuit: (no == 1 || charger == "FM-CAM-01").then_some(7),
        };
        let site = balancing::SiteElectrics {
            site: SiteId(1),
            grid_limit_da: [3000; 3],
            store_worst_case_da: 300,
            connector_fallback_da: 0,
            store_meter_charger: None,
            site_meter: crate::balancer::SiteMeter::Store,
            handover: Some(crate::balancer::HandoverConfig {
                lead: Millis::from_secs(4),
                clock_skew: Millis::from_secs(1),
            }),
            idle_raise_after: Millis::from_secs(120),
            store_meter_frozen_after: crate::balancer::store::FROZEN_AFTER,
            circuits: vec![balancing::CircuitRow { id: 7, parent: None, limit_da: [660; 3] }],
            connectors: vec![
                row("FM-CAM-01", 1),
                row("FM-CAM-01", 2),
                row("FM-CAM-02", 1),
                row("FM-CAM-02", 2),
            ],
            open_sessions: vec![],
        };
        let (config, _, _) = site_config(&site);
        let mut b = Balancer::new(config).expect("valid");
        let t = Millis::from_secs(1000);
        // As at boot: every charger is away until it connects.
        for k in [0, 1] {
            b.handle(Event::ChargerOffline { charger: ChargerKey(k) }, t).expect("a valid event");
            b.handle(Event::ChargerOnline { charger: ChargerKey(k) }, t).expect("a valid event");
        }
        for k in [0, 1] {
            b.handle(
                Event::SessionStarted {
                    connector: ConnectorKey(k),
                    session: SessionKey(u64::from(k)),
                    info: SessionInfo::default(),
                },
                t,
            )
            .expect("a valid event");
            for c in b.poll_commands(t) {
                b.ack(c.id(), t).expect("a valid event");
            }
        }
        b.handle(
            Event::SessionStarted {
                connector: ConnectorKey(2),
                session: SessionKey(2),
                info: SessionInfo::default(),
            },
            t,
        )
        .expect("a valid event");
        let handovers = b.poll_commands(t);
        assert_eq!(handovers.len(), 2, "{handovers:?}");
        let mut cmds = Vec::new();
        for (n, c) in handovers.iter().enumerate() {
            let at = t + Millis(5 + n as u64);
            b.ack(c.id(), at).expect("a valid event");
            cmds.extend(b.poll_commands(at));
        }
        // Scheduled from the switch (4 s on, two skews later), not held back until it.
        let Some(Command::SetLimit { amps_per_phase, then: Some((from, _)), .. }) = cmds.first() else {
            panic!("nothing scheduled for the newcomer: {cmds:?}")
        };
        assert_eq!((*amps_per_phase, *from), (DeciAmps::ZERO, t + Millis::from_secs(6)));
    }

    #[test]
    fn session_energy_counts_from_the_start_of_the_session() {
        let mut from_meter_start = Some(1_000_000);
        assert_eq!(
            session_energy(&mut from_meter_start, 1_004_500),
            4_500,
            "a lifetime register, meterStart known"
        );
        let mut unknown = None;
        assert_eq!(
            session_energy(&mut unknown, 2_000_300),
            0,
            "no start given: the first reading is the start"
        );
        assert_eq!(session_energy(&mut unknown, 2_001_300), 1_000);
        let mut per_session = Some(0);
        assert_eq!(session_energy(&mut per_session, 750), 750, "a register that restarts each session");
        assert_eq!(
            session_energy(&mut Some(500), 400),
            0,
            "a register that went backwards counts nothing, not a wrap"
        );
    }

    #[test]
    fn rotations_parse() {
        assert_eq!(rotation("L2L3L1"), Rotation([Phase::L2, Phase::L3, Phase::L1]));
        assert_eq!(rotation("L1L2L3"), Rotation::STRAIGHT);
    }
}
