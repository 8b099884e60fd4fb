//! What a charger said that matters beyond its own records, in words neither OCPP version owns.
//!
//! Each version's handler stores what it was sent and then translates it into [`ChargerReport`]s;
//! the central system hands them to a [`ReportSink`] (the load balancers and the drivers' plans,
//! wired together in `crate::network`). So the OCPP side knows nothing of who listens, and a
//! report reaches every listener the same way whichever version the charger speaks.

use super::frame::OcppVersion;
use crate::balancer::clock::Stamp;
use app::domain::{ChargerId, SiteId, TransactionId};
use chrono::{DateTime, Utc};

/// A connector as both versions number it: 1.6's connector id, 2.0.1's EVSE id; 0 is the charger
/// as a whole.
pub type ConnectorNo = u32;

/// One thing a charger reported.
#[derive(Debug, Clone, PartialEq)]
pub enum ChargerReport {
    /// Its connection opened or closed.
    Online(bool),
    /// It booted and was accepted at its site.
    Booted { version: OcppVersion },
    /// A message carried the charger's own clock.
    Clock { stamped: DateTime<Utc>, stamp: Stamp },
    /// A connector reported its status (a connector new to us joins its site).
    ConnectorSeen { connector: ConnectorNo },
    /// The car on a connector stopped drawing (suspended, finishing).
    DrawStopped { connector: ConnectorNo },
    /// A session began, authorised; its energy counts from `meter_start_wh` when the charger said.
    SessionStarted {
        connector: ConnectorNo,
        transaction: TransactionId,
        ocpp_tx_id: String,
        meter_start_wh: Option<i64>,
    },
    /// A session ended.
    SessionEnded { transaction: TransactionId },
    /// Currents measured on a connector's L1, L2, L3 (tenths of an amp) and its energy register;
    /// on connector 0, the charger as a whole (the store's load, where it is wired to the store meter).
    Meter { connector: ConnectorNo, currents_da: [u32; 3], energy_wh: Option<u32> },
    /// What the car told the charger about itself (2.0.1 NotifyEVChargingNeeds).
    EvNeeds {
        connector: ConnectorNo,
        ev_max_a: Option<u32>,
        departure_utc_ms: Option<i64>,
        energy_wh: Option<u32>,
    },
}

/// Who hears what chargers report.
#[async_trait::async_trait]
pub trait ReportSink: Send + Sync {
    /// `site` is where the charger stands (`None` while it waits for an operator). Returns once
    /// the report is taken in: a CALL is answered after what it reported is in hand.
    async fn report(&self, charger: &ChargerId, site: Option<SiteId>, report: ChargerReport);
}

/// A sink that hears nothing (tests of the OCPP side alone).
pub struct Nobody;

#[async_trait::async_trait]
impl ReportSink for Nobody {
    async fn report(&self, _: &ChargerId, _: Option<SiteId>, _: ChargerReport) {}
}

/// The meter readings among stored samples, as a report (`None`: no per-phase currents among them).
pub(crate) fn meter_report(
    connector: ConnectorNo,
    samples: &[crate::db::ocpp::Sample],
) -> Option<ChargerReport> {
    let currents_da = super::phase_currents_da(samples)?;
    let energy_wh = super::energy_register_wh(samples, "").and_then(|wh| u32::try_from(wh).ok());
    Some(ChargerReport::Meter { connector, currents_da, energy_wh })
}
