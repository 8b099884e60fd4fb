//! What a charger said, in words neither OCPP version owns, and the one place it is applied.
//!
//! Each version's handler decodes its own messages and translates what they say into
//! [`ChargerReport`]s; [`CentralSystem::take`] is the one place a report is applied: stored, then
//! told to whoever listens as a [`ChargerEvent`] (the load balancers and the drivers' plans, wired
//! together in `crate::network`). So the OCPP side knows nothing of who listens, and what a charger
//! says is stored and heard the same way whichever version it speaks.
//!
//! What stays with each version is how it numbers a session: 1.6 takes our number at
//! StartTransaction, 2.0.1 names its own and numbers each of its events; each handler finds the
//! session's row its own way and reports with our [`TransactionId`] from there on.

use super::frame::OcppVersion;
use super::frame::RpcError;
use super::{internal, CentralSystem, Link};
use crate::balancer::clock::Stamp;
use crate::db::ocpp::{self as db, Sample, TxStop};
use app::domain::{ChargerId, SiteId, TransactionId};
use chrono::{DateTime, Utc};

/// A connector number as both versions send it: 1.6's connector id, 2.0.1's EVSE id; 0 is the charger
/// as a whole.
pub type OcppConnector = u32;

/// One thing a charger said that we keep or act on, from either version.
#[derive(Debug, Clone)]
pub enum ChargerReport {
    /// A message carried the charger's own clock.
    Clock { stamped: DateTime<Utc>, stamp: Stamp },
    /// A connector's status, in the version's own words (a connector new to us joins its site).
    Status {
        connector: OcppConnector,
        status: String,
        error_code: String,
        info: String,
        /// When the charger says it changed (its clock, repaired), UTC milliseconds.
        charger_time: Option<i64>,
    },
    /// The car on a connector stopped drawing (suspended, finishing).
    DrawStopped { connector: OcppConnector },
    /// Meter readings on a connector (0: the charger as a whole, the store's load where it is wired
    /// to the store meter), within a session or not.
    Meter { connector: OcppConnector, transaction: Option<TransactionId>, samples: Vec<Sample> },
    /// A session began, authorised, its row already made by the version's handler; its energy
    /// counts from `meter_start_wh` when the charger said.
    SessionStarted {
        connector: OcppConnector,
        transaction: TransactionId,
        ocpp_tx_id: String,
        meter_start_wh: Option<i64>,
    },
    /// A session ended, with the readings it closed with. `ocpp_tx_id` is the charger's name for it;
    /// one we never saw is recorded as such. `connector` is 0 where the version does not say.
    SessionEnded { connector: OcppConnector, ocpp_tx_id: String, stop: TxStop, samples: Vec<Sample> },
    /// What the car told the charger about itself (2.0.1 NotifyEVChargingNeeds).
    EvNeeds {
        connector: OcppConnector,
        ev_max_a: Option<u32>,
        departure_utc_ms: Option<i64>,
        energy_wh: Option<u32>,
    },
}

/// What those who listen hear of a charger, once what it said is stored.
#[derive(Debug, Clone, PartialEq)]
pub enum ChargerEvent {
    /// Its connection opened or closed.
    Online(bool),
    /// It booted and was accepted at its site.
    Booted { version: OcppVersion },
    /// A message carried the charger's own clock.
    Clock { stamped: DateTime<Utc>, stamp: Stamp },
    /// A connector reported its status (a connector new to us joins its site).
    ConnectorSeen { connector: OcppConnector },
    /// The car on a connector stopped drawing (suspended, finishing).
    DrawStopped { connector: OcppConnector },
    /// A session began, authorised; its energy counts from `meter_start_wh` when the charger said.
    SessionStarted {
        connector: OcppConnector,
        transaction: TransactionId,
        ocpp_tx_id: String,
        meter_start_wh: Option<i64>,
    },
    /// A session ended.
    SessionEnded { transaction: TransactionId },
    /// Currents measured on a connector's L1, L2, L3 (tenths of an amp) and its energy register;
    /// on connector 0, the charger as a whole.
    Meter { connector: OcppConnector, currents_da: [u32; 3], energy_wh: Option<u32> },
    /// What the car told the charger about itself.
    EvNeeds {
        connector: OcppConnector,
        ev_max_a: Option<u32>,
        departure_utc_ms: Option<i64>,
        energy_wh: Option<u32>,
    },
}

/// Who hears what chargers report.
#[async_trait::async_trait]
pub trait ReportSink: Send + Sync {
    /// `site` is where the charger stands (`None` while it waits for an operator). Returns once
    /// the event is taken in: a CALL is answered after what it reported is in hand.
    async fn report(&self, charger: &ChargerId, site: Option<SiteId>, event: ChargerEvent);
}

/// A sink that hears nothing (tests of the OCPP side alone).
pub struct Nobody;

#[async_trait::async_trait]
impl ReportSink for Nobody {
    async fn report(&self, _: &ChargerId, _: Option<SiteId>, _: ChargerEvent) {}
}

impl CentralSystem {
    /// Applies what a charger said: stores it, then tells those who listen. The one place either
    /// version's reports go through.
    pub(crate) async fn take(&self, link: &Link, report: ChargerReport) -> Result<(), RpcError> {
        let id = &link.charger;
        let event = match report {
            ChargerReport::Clock { stamped, stamp } => Some(ChargerEvent::Clock { stamped, stamp }),
            ChargerReport::Status { connector, status, error_code, info, charger_time } => {
                let change = db::StatusChange {
                    connector_no: i64::from(connector),
                    status,
                    error_code,
                    info,
                    charger_time,
                };
                db::record_status(&self.db, id, &change).await.map_err(internal)?;
                Some(ChargerEvent::ConnectorSeen { connector })
            }
            ChargerReport::DrawStopped { connector } => Some(ChargerEvent::DrawStopped { connector }),
            ChargerReport::Meter { connector, transaction, samples } => {
                if !samples.is_empty() {
                    db::record_samples(&self.db, id, i64::from(connector), transaction, &samples)
                        .await
                        .map_err(internal)?;
                }
                meter_event(connector, &samples)
            }
            ChargerReport::SessionStarted { connector, transaction, ocpp_tx_id, meter_start_wh } => {
                tracing::info!(charger.id = %id, transaction.id = %transaction, connector, "transaction started");
                Some(ChargerEvent::SessionStarted { connector, transaction, ocpp_tx_id, meter_start_wh })
            }
            ChargerReport::SessionEnded { connector, ocpp_tx_id, stop, samples } => {
                let (transaction, seen) =
                    db::stop_transaction(&self.db, id, &ocpp_tx_id, i64::from(connector), &stop)
                        .await
                        .map_err(internal)?;
                if seen {
                    tracing::info!(charger.id = %id, transaction.id = %transaction, "transaction ended");
                } else {
                    tracing::warn!(charger.id = %id, ocpp.transaction = %ocpp_tx_id, "end of a transaction we never saw; recorded");
                }
                if !samples.is_empty() {
                    db::record_samples(&self.db, id, i64::from(connector), Some(transaction), &samples)
                        .await
                        .map_err(internal)?;
                }
                Some(ChargerEvent::SessionEnded { transaction })
            }
            ChargerReport::EvNeeds { connector, ev_max_a, departure_utc_ms, energy_wh } => {
                Some(ChargerEvent::EvNeeds { connector, ev_max_a, departure_utc_ms, energy_wh })
            }
        };
        if let Some(event) = event {
            self.tell(link, event).await;
        }
        Ok(())
    }

    /// Tells those who listen of something about a charger that is already stored (or needs no
    /// storing: its connection, its clock).
    pub(crate) async fn tell(&self, link: &Link, event: ChargerEvent) {
        self.reports.report(&link.charger, link.site, event).await;
    }
}

/// The meter readings among stored samples, as an event (`None`: no per-phase currents among them).
fn meter_event(connector: OcppConnector, samples: &[Sample]) -> Option<ChargerEvent> {
    let currents_da = super::phase_currents_da(samples)?;
    let energy_wh = super::energy_register_wh(samples, "").and_then(|wh| u32::try_from(wh).ok());
    Some(ChargerEvent::Meter { connector, currents_da, energy_wh })
}
