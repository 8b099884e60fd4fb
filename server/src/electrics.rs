//! A site's electrics as an operator states them (amps, circuits named): the typed input of the
//! REST API, checked into what the balancer runs. No storage here: `db::balancing` keeps the rows.

use crate::balancer::{HandoverConfig, Millis, SiteMeter};
use crate::db::balancing::{CircuitRow, SiteElectrics};
use std::collections::HashMap;

/// A site's electrics as an operator states them (amps; circuits named, parents by name).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ElectricsSpec {
    /// The grid connection's limit per phase (L1, L2, L3), amps.
    #[schema(value_type = Vec<f64>, min_items = 3, max_items = 3)]
    pub grid_limit_a: [f64; 3],
    /// The store load assumed per phase when the site meter is stale or missing.
    #[schema(minimum = 0)]
    pub store_worst_case_a: f64,
    /// What a connector may draw with no limit of ours (its TxDefaultProfile).
    #[schema(minimum = 0)]
    pub connector_fallback_a: f64,
    /// A charger of the site whose connector 0 meter (MeterValues, Current.Import per phase)
    /// measures the store's own load, as the site meter endpoint would.
    #[serde(default)]
    pub store_meter_charger: Option<String>,
    /// What the site meter (the meter endpoint, or the store meter charger) measures: `store`
    /// (the default) or `incomer`, the whole connection with the cars.
    #[serde(default)]
    #[schema(schema_with = site_meter_schema)]
    pub site_meter: SiteMeter,
    /// Handovers scheduled ahead (none: off). Only for chargers that take a two-period schedule
    /// and keep their clocks within `clock_skew_s` of ours.
    #[serde(default)]
    pub handover: Option<HandoverSpec>,
    /// Seconds the room for an idle connector's own default must last before it goes back up
    /// (decreases never wait); absent: [`IDLE_RAISE_AFTER_DEFAULT_S`].
    #[serde(default = "idle_raise_after_default_s")]
    #[schema(minimum = 0, maximum = 3600, default = 120)]
    pub idle_default_raise_after_s: f64,
    /// Seconds the store meter may send one and the same reading before its readings are set
    /// aside and the worst case counted (a gateway repeating the last value it had); 0: never, for
    /// a meter of whole amps on a store that truly is that still; absent:
    /// [`STORE_METER_FROZEN_AFTER_DEFAULT_S`].
    #[serde(default = "store_meter_frozen_after_default_s")]
    #[schema(minimum = 0, maximum = 86400, default = 900)]
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
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoverSpec {
    /// How far ahead the decrease switches: about two round trips to the site's chargers.
    #[schema(minimum = 1, maximum = 300)]
    pub lead_s: f64,
    /// How far a charger's clock may be off ours.
    #[schema(minimum = 0, maximum = 30)]
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

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitSpec {
    pub name: String,
    /// The circuit it hangs from; none: directly below the grid connection.
    #[serde(default)]
    pub parent: Option<String>,
    /// Amps on L1, L2, L3.
    #[schema(value_type = Vec<f64>, min_items = 3, max_items = 3)]
    pub limit_a: [f64; 3],
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSpec {
    pub charger_id: String,
    pub connector_no: i64,
    pub max_current_a: i64,
    /// 1 or 3.
    pub phases: i64,
    /// Which site phases the connector's L1, L2, L3 are wired to (`L1L2L3`, `L2L3L1`, …).
    pub rotation: String,
    #[serde(default)]
    pub circuit: Option<String>,
}

/// A site's electrics as stored, in the operator's terms (`names`: its circuits' names by id).
pub fn spec_of(site: &SiteElectrics, names: &HashMap<i64, String>) -> ElectricsSpec {
    let amps = |da: i64| da as f64 / 10.0;
    ElectricsSpec {
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
    }
}

/// Why a stated site cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum ElectricsError {
    #[error("{0}")]
    Invalid(String),
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
pub fn check(spec: &ElectricsSpec, current: &SiteElectrics) -> Result<SiteElectrics, ElectricsError> {
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

/// `site_meter` in the API's description: the balancer's own enum stays free of API concerns.
fn site_meter_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["store", "incomer"]))
        .default(Some(serde_json::json!("store")))
        .description(Some(
            "what the site meter measures: the store's own load (default) or the grid connection with the cars \
             (main incomer); the cars' own readings are taken off",
        ))
        .build()
}
