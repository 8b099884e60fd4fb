//! What the load balancer needs from storage: each site's electrics and its open sessions.

use super::{Db, DbError};
use crate::balancer::{HandoverConfig, Millis, SiteMeter};
use app::domain::SiteId;
use serde::Serialize;
use sqlx::Row;
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct CircuitRow {
    pub id: i64,
    pub parent: Option<i64>,
    pub limit_da: [i64; 3],
}

#[derive(Debug, Clone)]
pub struct ConnectorRow {
    pub charger_id: String,
    pub connector_no: i64,
    pub max_current_a: i64,
    pub phases: i64,
    pub rotation: String,
    pub circuit: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct OpenSession {
    pub transaction_id: i64,
    pub charger_id: String,
    pub connector_no: i64,
    pub ocpp_tx_id: String,
    pub meter_start_wh: Option<i64>,
    pub needs: SessionNeeds,
}

/// What the driver or an operator stated about a session, for the balancer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SessionNeeds {
    /// When the car leaves, UTC milliseconds.
    pub departure_at_ms: Option<i64>,
    /// Energy the driver wants in the session.
    pub energy_need_wh: Option<i64>,
    /// 0 normal, up to [`MAX_SESSION_PRIORITY`].
    pub priority: i64,
}

/// The highest priority a session may be given.
pub const MAX_SESSION_PRIORITY: i64 = 3;

/// Where a session whose needs were stated runs, or why it cannot take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NeedsStored {
    /// Stored for the running session on this charger's connector.
    Running { charger_id: String, connector_no: i64 },
    /// The session has ended: nothing stored.
    Ended,
    /// No such session.
    Unknown,
}

/// Stores what was stated about a running session.
pub async fn set_session_needs(
    db: &Db,
    transaction_id: i64,
    needs: &SessionNeeds,
) -> Result<NeedsStored, DbError> {
    let updated = sqlx::query(
        "UPDATE transactions SET departure_at_ms = $1, energy_need_wh = $2, priority = $3 WHERE id = $4 AND status = 'active' \
             RETURNING charger_id, connector_no",
    )
    .bind(needs.departure_at_ms)
    .bind(needs.energy_need_wh)
    .bind(needs.priority)
    .bind(transaction_id)
    .fetch_optional(db.pool())
    .await?;
    if let Some(r) = updated {
        return Ok(NeedsStored::Running {
            charger_id: r.try_get("charger_id")?,
            connector_no: r.try_get("connector_no")?,
        });
    }
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM transactions WHERE id = $1")
        .bind(transaction_id)
        .fetch_optional(db.pool())
        .await?;
    Ok(if exists.is_some() { NeedsStored::Ended } else { NeedsStored::Unknown })
}

/// Gives a running session a new priority, keeping what else was stated about it. Returns the
/// session's needs as they now stand and its charger, or `None` when it is not running.
pub async fn set_session_priority(
    db: &Db,
    transaction_id: i64,
    priority: i64,
) -> Result<Option<(SessionNeeds, String)>, DbError> {
    let updated = sqlx::query(
        "UPDATE transactions SET priority = $1 WHERE id = $2 AND status = 'active' \
             RETURNING charger_id, departure_at_ms, energy_need_wh",
    )
    .bind(priority)
    .bind(transaction_id)
    .fetch_optional(db.pool())
    .await?;
    updated
        .map(|r| {
            let needs = SessionNeeds {
                departure_at_ms: r.try_get("departure_at_ms")?,
                energy_need_wh: r.try_get("energy_need_wh")?,
                priority,
            };
            Ok((needs, r.try_get("charger_id")?))
        })
        .transpose()
}

#[derive(Debug, Clone)]
pub struct SiteElectrics {
    pub site: SiteId,
    pub grid_limit_da: [i64; 3],
    pub store_worst_case_da: i64,
    pub connector_fallback_da: i64,
    /// The charger whose connector 0 meter measures the store's own load, if one does.
    pub store_meter_charger: Option<String>,
    /// What the site meter measures.
    pub site_meter: SiteMeter,
    /// Handovers scheduled ahead, if the site has them.
    pub handover: Option<HandoverConfig>,
    /// How long the room for an idle connector's default must last before it goes back up.
    pub idle_raise_after: Millis,
    /// How long the store meter may repeat one reading before it is not believed (zero: never).
    pub store_meter_frozen_after: Millis,
    pub circuits: Vec<CircuitRow>,
    pub connectors: Vec<ConnectorRow>,
    pub open_sessions: Vec<OpenSession>,
}

/// Every site's electrics.
pub async fn all_sites(db: &Db) -> Result<Vec<SiteElectrics>, DbError> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM sites ORDER BY id").fetch_all(db.pool()).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.extend(site(db, SiteId(id)).await?);
    }
    Ok(out)
}

/// One site's electrics, as storage knows them now (`None`: no such site).
pub async fn site(db: &Db, id: SiteId) -> Result<Option<SiteElectrics>, DbError> {
    let Some(s) = sqlx::query(
        "SELECT id, grid_limit_l1_da, grid_limit_l2_da, grid_limit_l3_da, store_worst_case_da, connector_fallback_da, store_meter_charger_id, site_meter, \
         handover_lead_ms, handover_clock_skew_ms, idle_raise_after_ms, store_meter_frozen_after_ms FROM sites WHERE id = $1",
    )
    .bind(id.0)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(None);
    };
    let site: i64 = s.try_get("id")?;
    let skew_ms: i64 = s.try_get("handover_clock_skew_ms")?;
    let circuits = sqlx::query("SELECT id, parent_id, limit_l1_da, limit_l2_da, limit_l3_da FROM circuits WHERE site_id = $1 ORDER BY id")
        .bind(site)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(CircuitRow {
                id: r.try_get("id")?,
                parent: r.try_get("parent_id")?,
                limit_da: [r.try_get("limit_l1_da")?, r.try_get("limit_l2_da")?, r.try_get("limit_l3_da")?],
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    let connectors = sqlx::query(
            "SELECT c.charger_id, c.connector_no, c.max_current_a, c.phases, c.rotation, c.circuit_id FROM connectors c \
             JOIN chargers ch ON ch.id = c.charger_id WHERE ch.site_id = $1 AND ch.registration = 'accepted' ORDER BY c.charger_id, c.connector_no",
        )
        .bind(site)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(ConnectorRow {
                charger_id: r.try_get("charger_id")?,
                connector_no: r.try_get("connector_no")?,
                max_current_a: r.try_get("max_current_a")?,
                phases: r.try_get("phases")?,
                rotation: r.try_get("rotation")?,
                circuit: r.try_get("circuit_id")?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    let open_sessions = sqlx::query(
        "SELECT t.id, t.charger_id, t.connector_no, t.ocpp_tx_id, t.meter_start_wh, t.departure_at_ms, t.energy_need_wh, t.priority \
             FROM transactions t JOIN chargers ch ON ch.id = t.charger_id \
             WHERE ch.site_id = $1 AND t.status = 'active' ORDER BY t.id",
    )
    .bind(site)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| {
        Ok(OpenSession {
            transaction_id: r.try_get("id")?,
            charger_id: r.try_get("charger_id")?,
            connector_no: r.try_get("connector_no")?,
            ocpp_tx_id: r.try_get("ocpp_tx_id")?,
            meter_start_wh: r.try_get("meter_start_wh")?,
            needs: SessionNeeds {
                departure_at_ms: r.try_get("departure_at_ms")?,
                energy_need_wh: r.try_get("energy_need_wh")?,
                priority: r.try_get("priority")?,
            },
        })
    })
    .collect::<Result<Vec<_>, DbError>>()?;
    Ok(Some(SiteElectrics {
        site: SiteId(site),
        grid_limit_da: [
            s.try_get("grid_limit_l1_da")?,
            s.try_get("grid_limit_l2_da")?,
            s.try_get("grid_limit_l3_da")?,
        ],
        store_worst_case_da: s.try_get("store_worst_case_da")?,
        connector_fallback_da: s.try_get("connector_fallback_da")?,
        store_meter_charger: s.try_get("store_meter_charger_id")?,
        site_meter: if s.try_get::<String, _>("site_meter")? == "incomer" {
            SiteMeter::Incomer
        } else {
            SiteMeter::Store
        },
        handover: s.try_get::<Option<i64>, _>("handover_lead_ms")?.map(|lead| HandoverConfig {
            lead: Millis(u64::try_from(lead).unwrap_or(0)),
            clock_skew: Millis(u64::try_from(skew_ms).unwrap_or(0)),
        }),
        idle_raise_after: Millis(u64::try_from(s.try_get::<i64, _>("idle_raise_after_ms")?).unwrap_or(0)),
        store_meter_frozen_after: Millis(
            u64::try_from(s.try_get::<i64, _>("store_meter_frozen_after_ms")?).unwrap_or(0),
        ),
        circuits,
        connectors,
        open_sessions,
    }))
}

/// A site's electrics as an operator states them (amps; circuits named, parents by name).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElectricsSpec {
    /// The grid connection's limit per phase (L1, L2, L3).
    pub grid_limit_a: [f64; 3],
    /// The store load assumed per phase when the site meter is stale or missing.
    pub store_worst_case_a: f64,
    /// What a connector may draw with no limit of ours (its TxDefaultProfile).
    pub connector_fallback_a: f64,
    /// A charger of the site whose connector 0 meter (MeterValues, Current.Import per phase)
    /// measures the store's own load, as the site meter endpoint would.
    #[serde(default)]
    pub store_meter_charger: Option<String>,
    /// What the site meter (the meter endpoint, or the store meter charger) measures: `store`
    /// (the default) or `incomer`, the whole connection with the cars.
    #[serde(default)]
    pub site_meter: SiteMeter,
    /// Handovers scheduled ahead (none: off). Only for chargers that take a two-period schedule
    /// and keep their clocks within `clock_skew_s` of ours.
    #[serde(default)]
    pub handover: Option<HandoverSpec>,
    /// Seconds the room for an idle connector's own default must last before it goes back up
    /// (decreases never wait); absent: [`IDLE_RAISE_AFTER_DEFAULT_S`].
    #[serde(default = "idle_raise_after_default_s")]
    pub idle_default_raise_after_s: f64,
    /// Seconds the store meter may send one and the same reading before its readings are set
    /// aside and the worst case counted (a gateway repeating the last value it had); 0: never, for
    /// a meter of whole amps on a store that truly is that still; absent:
    /// [`STORE_METER_FROZEN_AFTER_DEFAULT_S`].
    #[serde(default = "store_meter_frozen_after_default_s")]
    pub store_meter_frozen_after_s: f64,
    #[serde(default)]
    pub circuits: Vec<CircuitSpec>,
    /// Connectors whose ratings or wiring change; the others keep theirs.
    #[serde(default)]
    pub connectors: Vec<ConnectorSpec>,
}

/// A decrease that only frees capacity for another session is sent as "keep this limit for `lead_s`,
/// then the lower one", and the increase it pays for starts at that moment plus twice `clock_skew_s`:
/// the session giving way keeps charging while the answers travel.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoverSpec {
    /// How far ahead the decrease switches: about two round trips to the site's chargers.
    pub lead_s: f64,
    /// How far a charger's clock may be off ours.
    pub clock_skew_s: f64,
}

/// How long the room for an idle connector's default lasts before it goes back up, unless a site says.
pub const IDLE_RAISE_AFTER_DEFAULT_S: f64 = 120.0;
/// The longest a site may keep idle defaults down after their room is back.
pub const IDLE_RAISE_AFTER_MAX_S: f64 = 3600.0;

fn idle_raise_after_default_s() -> f64 {
    IDLE_RAISE_AFTER_DEFAULT_S
}

/// Our policy (see [`crate::balancer::store::FROZEN_AFTER`]), unless a site says.
pub const STORE_METER_FROZEN_AFTER_DEFAULT_S: f64 = crate::balancer::store::FROZEN_AFTER.0 as f64 / 1000.0;
/// The longest a site may believe a meter repeating itself: a day.
pub const STORE_METER_FROZEN_AFTER_MAX_S: f64 = 86_400.0;

fn store_meter_frozen_after_default_s() -> f64 {
    STORE_METER_FROZEN_AFTER_DEFAULT_S
}

/// The longest handover lead: a decrease deferred longer is no longer a handover.
pub const HANDOVER_MAX_LEAD_S: f64 = 300.0;
/// The largest clock skew a site may state: our leases already trust chargers' clocks to this.
pub const HANDOVER_MAX_SKEW_S: f64 = crate::balancer::policy::LEASE_CLOCK_MARGIN_S as f64;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitSpec {
    pub name: String,
    /// The circuit it hangs from; none: directly below the grid connection.
    #[serde(default)]
    pub parent: Option<String>,
    pub limit_a: [f64; 3],
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSpec {
    pub charger_id: String,
    pub connector_no: i64,
    pub max_current_a: i64,
    pub phases: i64,
    /// Which site phases the connector's L1, L2, L3 are wired to (`L1L2L3`, `L2L3L1`, …).
    pub rotation: String,
    #[serde(default)]
    pub circuit: Option<String>,
}

/// A site's circuits' names by id.
pub async fn circuit_names(db: &Db, site: SiteId) -> Result<HashMap<i64, String>, DbError> {
    sqlx::query("SELECT id, name FROM circuits WHERE site_id = $1")
        .bind(site.0)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
        .collect()
}

/// The site's electrics as stored, in the operator's terms.
pub async fn electrics_spec(db: &Db, id: SiteId) -> Result<Option<ElectricsSpec>, DbError> {
    let Some(site) = site(db, id).await? else { return Ok(None) };
    let names = circuit_names(db, id).await?;
    let amps = |da: i64| da as f64 / 10.0;
    Ok(Some(ElectricsSpec {
        grid_limit_a: site.grid_limit_da.map(amps),
        store_worst_case_a: amps(site.store_worst_case_da),
        connector_fallback_a: amps(site.connector_fallback_da),
        store_meter_charger: site.store_meter_charger.clone(),
        site_meter: site.site_meter,
        handover: site.handover.map(|h| HandoverSpec {
            lead_s: h.lead.0 as f64 / 1000.0,
            clock_skew_s: h.clock_skew.0 as f64 / 1000.0,
        }),
        idle_default_raise_after_s: site.idle_raise_after.0 as f64 / 1000.0,
        store_meter_frozen_after_s: site.store_meter_frozen_after.0 as f64 / 1000.0,
        circuits: site
            .circuits
            .iter()
            .map(|c| CircuitSpec {
                name: names.get(&c.id).cloned().unwrap_or_default(),
                parent: c.parent.and_then(|p| names.get(&p).cloned()),
                limit_a: c.limit_da.map(amps),
            })
            .collect(),
        connectors: site
            .connectors
            .iter()
            .map(|c| ConnectorSpec {
                charger_id: c.charger_id.clone(),
                connector_no: c.connector_no,
                max_current_a: c.max_current_a,
                phases: c.phases,
                rotation: c.rotation.clone(),
                circuit: c.circuit.and_then(|id| names.get(&id).cloned()),
            })
            .collect(),
    }))
}

/// Why a stated site cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum ElectricsError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] DbError),
}

const ROTATIONS: [&str; 6] = ["L1L2L3", "L2L3L1", "L3L1L2", "L1L3L2", "L3L2L1", "L2L1L3"];

/// Tenths of an amp from an operator's amps: finite, within `0..=10000`, rounded `down` or up.
fn deci(what: &str, amps: f64, positive: bool, down: bool) -> Result<i64, ElectricsError> {
    if !amps.is_finite() || !(0.0..=10_000.0).contains(&amps) || (positive && amps <= 0.0) {
        let range = if positive { "above 0 and at most 10000 A" } else { "between 0 and 10000 A" };
        return Err(ElectricsError::Invalid(format!("{what} must be {range}")));
    }
    let da = amps * 10.0;
    Ok((if down { da.floor() } else { da.ceil() }) as i64)
}

/// The rows a spec stands for, with the circuits numbered in the spec's order (for checking the tree
/// before anything is stored). Connectors not in the spec keep what `current` says.
pub fn electrics_from_spec(
    spec: &ElectricsSpec,
    current: &SiteElectrics,
) -> Result<SiteElectrics, ElectricsError> {
    let index: std::collections::HashMap<&str, i64> =
        spec.circuits.iter().enumerate().map(|(i, c)| (c.name.as_str(), i as i64)).collect();
    if index.len() != spec.circuits.len() {
        return Err(ElectricsError::Invalid("circuit names must be unique".into()));
    }
    let circuit_of = |name: &Option<String>, whose: &str| -> Result<Option<i64>, ElectricsError> {
        name.as_ref()
            .map(|n| {
                index
                    .get(n.as_str())
                    .copied()
                    .ok_or_else(|| ElectricsError::Invalid(format!("{whose} names unknown circuit {n:?}")))
            })
            .transpose()
    };
    let mut circuits = Vec::with_capacity(spec.circuits.len());
    for (i, c) in spec.circuits.iter().enumerate() {
        if c.name.trim().is_empty() || c.name.chars().count() > 60 {
            return Err(ElectricsError::Invalid("a circuit's name must be 1 to 60 characters".into()));
        }
        let mut limit_da = [0; 3];
        for (slot, (amps, phase)) in limit_da.iter_mut().zip(c.limit_a.iter().zip(["L1", "L2", "L3"])) {
            *slot = deci(&format!("circuit {:?} {phase} limit", c.name), *amps, true, true)?;
        }
        circuits.push(CircuitRow {
            id: i as i64,
            parent: circuit_of(&c.parent, &format!("circuit {:?}", c.name))?,
            limit_da,
        });
    }
    let mut connectors = current.connectors.clone();
    for c in &spec.connectors {
        let whose = format!("connector {} of {}", c.connector_no, c.charger_id);
        let row = connectors
            .iter_mut()
            .find(|r| r.charger_id == c.charger_id && r.connector_no == c.connector_no)
            .ok_or_else(|| {
                ElectricsError::Invalid(format!(
                    "{whose} is not at this site (a charger reports its connectors when it connects)"
                ))
            })?;
        if !(1..=1000).contains(&c.max_current_a) {
            return Err(ElectricsError::Invalid(format!("{whose}: max_current_a must be 1 to 1000")));
        }
        if c.phases != 1 && c.phases != 3 {
            return Err(ElectricsError::Invalid(format!("{whose}: phases must be 1 or 3")));
        }
        if !ROTATIONS.contains(&c.rotation.as_str()) {
            return Err(ElectricsError::Invalid(format!(
                "{whose}: rotation must be one of {}",
                ROTATIONS.join(", ")
            )));
        }
        row.max_current_a = c.max_current_a;
        row.phases = c.phases;
        row.rotation = c.rotation.clone();
        row.circuit = circuit_of(&c.circuit, &whose)?;
    }
    let mut grid_limit_da = [0; 3];
    for (slot, (amps, phase)) in
        grid_limit_da.iter_mut().zip(spec.grid_limit_a.iter().zip(["L1", "L2", "L3"]))
    {
        *slot = deci(&format!("grid {phase} limit"), *amps, true, true)?;
    }
    if let Some(meter) = &spec.store_meter_charger {
        if !current.connectors.iter().any(|c| &c.charger_id == meter) {
            return Err(ElectricsError::Invalid(format!(
                "store_meter_charger {meter:?} is not a charger of this site"
            )));
        }
    }
    let handover = spec.handover.map(handover_from_spec).transpose()?;
    let raise_after = spec.idle_default_raise_after_s;
    if !raise_after.is_finite() || !(0.0..=IDLE_RAISE_AFTER_MAX_S).contains(&raise_after) {
        return Err(ElectricsError::Invalid(format!(
            "idle_default_raise_after_s must be 0 to {IDLE_RAISE_AFTER_MAX_S} seconds"
        )));
    }
    let frozen_after = spec.store_meter_frozen_after_s;
    if !frozen_after.is_finite() || !(0.0..=STORE_METER_FROZEN_AFTER_MAX_S).contains(&frozen_after) {
        return Err(ElectricsError::Invalid(format!(
            "store_meter_frozen_after_s must be 0 (never) to {STORE_METER_FROZEN_AFTER_MAX_S} seconds"
        )));
    }
    Ok(SiteElectrics {
        site: current.site,
        store_meter_charger: spec.store_meter_charger.clone(),
        site_meter: spec.site_meter,
        handover,
        idle_raise_after: Millis((raise_after * 1000.0).round() as u64),
        store_meter_frozen_after: Millis((frozen_after * 1000.0).round() as u64),
        grid_limit_da,
        // The worst case is rounded up, what we may allocate down: both err on the safe side.
        store_worst_case_da: deci("store_worst_case_a", spec.store_worst_case_a, false, false)?,
        connector_fallback_da: deci("connector_fallback_a", spec.connector_fallback_a, false, false)?,
        circuits,
        connectors,
        open_sessions: current.open_sessions.clone(),
    })
}

fn handover_from_spec(spec: HandoverSpec) -> Result<HandoverConfig, ElectricsError> {
    if !spec.lead_s.is_finite() || !(1.0..=HANDOVER_MAX_LEAD_S).contains(&spec.lead_s) {
        return Err(ElectricsError::Invalid(format!(
            "handover lead_s must be 1 to {HANDOVER_MAX_LEAD_S} seconds"
        )));
    }
    if !spec.clock_skew_s.is_finite() || !(0.0..=HANDOVER_MAX_SKEW_S).contains(&spec.clock_skew_s) {
        return Err(ElectricsError::Invalid(format!(
            "handover clock_skew_s must be 0 to {HANDOVER_MAX_SKEW_S} seconds (the chargers' leases trust their clocks to that)"
        )));
    }
    // The skew is rounded up: the balancer must allow at least as much as the operator stated.
    Ok(HandoverConfig {
        lead: Millis((spec.lead_s * 1000.0).round() as u64),
        clock_skew: Millis((spec.clock_skew_s * 1000.0).ceil() as u64),
    })
}

/// Stores checked electrics: the site's limits, its circuit tree (replaced whole) and its connectors'
/// ratings and wiring, in one transaction.
pub async fn store_electrics(db: &Db, checked: &SiteElectrics, spec: &ElectricsSpec) -> Result<(), DbError> {
    let mut tx = db.pool().begin().await?;
    let site = checked.site.0;
    sqlx::query(
        "UPDATE sites SET grid_limit_l1_da = $2, grid_limit_l2_da = $3, grid_limit_l3_da = $4, store_worst_case_da = $5, connector_fallback_da = $6, \
         store_meter_charger_id = $7, site_meter = $8, handover_lead_ms = $9, handover_clock_skew_ms = $10, idle_raise_after_ms = $11, \
         store_meter_frozen_after_ms = $12 WHERE id = $1",
    )
    .bind(site)
    .bind(checked.grid_limit_da[0])
    .bind(checked.grid_limit_da[1])
    .bind(checked.grid_limit_da[2])
    .bind(checked.store_worst_case_da)
    .bind(checked.connector_fallback_da)
    .bind(&checked.store_meter_charger)
    .bind(match checked.site_meter {
        SiteMeter::Store => "store",
        SiteMeter::Incomer => "incomer",
    })
    .bind(checked.handover.map(|h| i64::try_from(h.lead.0).unwrap_or(i64::MAX)))
    .bind(checked.handover.map_or(0, |h| i64::try_from(h.clock_skew.0).unwrap_or(i64::MAX)))
    .bind(i64::try_from(checked.idle_raise_after.0).unwrap_or(i64::MAX))
    .bind(i64::try_from(checked.store_meter_frozen_after.0).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE connectors SET circuit_id = NULL WHERE charger_id IN (SELECT id FROM chargers WHERE site_id = $1)").bind(site).execute(&mut *tx).await?;
    // Children first: a parent is referenced until its children are gone.
    loop {
        let gone = sqlx::query("DELETE FROM circuits WHERE site_id = $1 AND id NOT IN (SELECT parent_id FROM circuits WHERE parent_id IS NOT NULL)")
            .bind(site)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            break;
        }
    }
    // Parents before children (the tree was checked: no cycles), so each parent id is known.
    let mut stored: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
    while stored.len() < checked.circuits.len() {
        let before = stored.len();
        for (c, named) in checked.circuits.iter().zip(&spec.circuits) {
            if stored.contains_key(&c.id) || c.parent.is_some_and(|p| !stored.contains_key(&p)) {
                continue;
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO circuits (site_id, parent_id, name, limit_l1_da, limit_l2_da, limit_l3_da) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(site)
            .bind(c.parent.and_then(|p| stored.get(&p).copied()))
            .bind(&named.name)
            .bind(c.limit_da[0])
            .bind(c.limit_da[1])
            .bind(c.limit_da[2])
            .fetch_one(&mut *tx)
            .await?;
            stored.insert(c.id, id);
        }
        if stored.len() == before {
            break;
        }
    }
    for c in &checked.connectors {
        sqlx::query("UPDATE connectors SET max_current_a = $3, phases = $4, rotation = $5, circuit_id = $6 WHERE charger_id = $1 AND connector_no = $2")
            .bind(&c.charger_id)
            .bind(c.connector_no)
            .bind(c.max_current_a)
            .bind(c.phases)
            .bind(&c.rotation)
            .bind(c.circuit.and_then(|i| stored.get(&i).copied()))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One reading of a site's store meter: when (UTC milliseconds) and tenths of an amp per phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreReading {
    pub measured_at_ms: i64,
    pub da: [i64; 3],
}

/// Keeps a store meter reading (the balancer learns the store's rise from four weeks of them).
pub async fn record_store_reading(db: &Db, site: SiteId, reading: StoreReading) -> Result<(), DbError> {
    insert_store_reading(site, &reading).execute(db.pool()).await?;
    Ok(())
}

/// The one INSERT of a store meter reading, for a single live reading and for an import alike.
fn insert_store_reading(
    site: SiteId,
    reading: &StoreReading,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments<'static>> {
    sqlx::query("INSERT INTO store_meter_readings (site_id, measured_at, l1_da, l2_da, l3_da) VALUES ($1, $2, $3, $4, $5)")
        .bind(site.0)
        .bind(reading.measured_at_ms)
        .bind(reading.da[0])
        .bind(reading.da[1])
        .bind(reading.da[2])
}

/// Keeps a stretch of earlier store meter readings (a meter's export, imported when a site goes
/// live) in one transaction: all or none. Returns how many were kept.
pub async fn record_store_readings(db: &Db, site: SiteId, readings: &[StoreReading]) -> Result<u64, DbError> {
    let mut tx = db.pool().begin().await?;
    for reading in readings {
        insert_store_reading(site, reading).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(u64::try_from(readings.len()).unwrap_or(u64::MAX))
}

/// A site's store meter readings taken at or after `since_ms`, oldest first.
pub async fn store_readings_since(
    db: &Db,
    site: SiteId,
    since_ms: i64,
) -> Result<Vec<StoreReading>, DbError> {
    let rows = sqlx::query(
        "SELECT measured_at, l1_da, l2_da, l3_da FROM store_meter_readings WHERE site_id = $1 AND measured_at >= $2 ORDER BY measured_at",
    )
    .bind(site.0)
    .bind(since_ms)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StoreReading {
                measured_at_ms: r.try_get(0)?,
                da: [r.try_get(1)?, r.try_get(2)?, r.try_get(3)?],
            })
        })
        .collect()
}

/// Deletes a site's store meter readings taken in `[from_ms, to_ms)`: a stretch an operator knows
/// was the meter's fault, not the store's (the rise is learned from what is kept).
pub async fn forget_store_readings_between(
    db: &Db,
    site: SiteId,
    from_ms: i64,
    to_ms: i64,
) -> Result<u64, DbError> {
    let done = sqlx::query(
        "DELETE FROM store_meter_readings WHERE site_id = $1 AND measured_at >= $2 AND measured_at < $3",
    )
    .bind(site.0)
    .bind(from_ms)
    .bind(to_ms)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}

/// Forgets a site's store meter readings taken before `before_ms`; how many.
pub async fn forget_store_readings(db: &Db, site: SiteId, before_ms: i64) -> Result<u64, DbError> {
    forget_store_readings_between(db, site, i64::MIN, before_ms).await
}
