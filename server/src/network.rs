//! The charging network as one piece: the OCPP central system, with what its chargers report
//! going to the sites' load balancers and the drivers' plans. The OCPP side only knows a
//! [`ReportSink`]; this is the one place that says who listens.

use crate::balancing::Hub;
use crate::db::{Db, DbError};
use crate::ocpp::registry::Registry;
use crate::ocpp::report::{ChargerEvent, ReportSink};
use crate::ocpp::{CentralSystem, OcppSettings};
use app::domain::{ChargerId, SiteId};
use std::sync::Arc;

/// The central system and the balancers it feeds.
#[derive(Clone)]
pub struct Network {
    pub ocpp: CentralSystem,
    pub hub: Hub,
}

impl Network {
    /// Every site's load balancer running, fed by the central system.
    pub async fn start(db: Db, settings: OcppSettings) -> Result<Network, DbError> {
        let registry = Registry::default();
        let hub = Hub::start(&db, registry.clone()).await?;
        Ok(Network::wire(db, settings, registry, hub))
    }

    /// Without load balancing (tests of other parts): the drivers' plans still hear of sessions.
    pub fn without_balancing(db: Db, settings: OcppSettings) -> Network {
        let registry = Registry::default();
        let hub = Hub::empty(registry.clone());
        Network::wire(db, settings, registry, hub)
    }

    fn wire(db: Db, settings: OcppSettings, registry: Registry, hub: Hub) -> Network {
        let listeners = Arc::new(Listeners { db: db.clone(), hub: hub.clone() });
        Network { ocpp: CentralSystem::new(db, settings, registry, listeners), hub }
    }
}

/// The balancers and the drivers' plans, as one listener.
struct Listeners {
    db: Db,
    hub: Hub,
}

#[async_trait::async_trait]
impl ReportSink for Listeners {
    async fn report(&self, charger: &ChargerId, site: Option<SiteId>, event: ChargerEvent) {
        let hub = &self.hub;
        match event {
            ChargerEvent::Online(online) => hub.charger_online(charger, online),
            ChargerEvent::Booted { version } => hub.charger_booted(charger, site, version),
            ChargerEvent::Clock { stamped, stamp } => hub.charger_clock(charger, stamped, stamp),
            ChargerEvent::ConnectorSeen { connector } => hub.connector_seen(charger, site, connector),
            ChargerEvent::DrawStopped { connector } => hub.draw_stopped(charger, connector),
            ChargerEvent::SessionStarted { connector, transaction, ocpp_tx_id, meter_start_wh } => {
                hub.session_started(charger, connector, transaction, &ocpp_tx_id, meter_start_wh);
                crate::driver::session_started(&self.db, hub, charger, i64::from(connector), transaction)
                    .await;
            }
            ChargerEvent::SessionEnded { transaction } => hub.session_ended(charger, transaction),
            ChargerEvent::Meter { connector, currents_da, energy_wh } => {
                hub.connector_meter(charger, connector, currents_da, energy_wh)
            }
            ChargerEvent::EvNeeds { connector, ev_max_a, departure_utc_ms, energy_wh } => {
                hub.session_needs(charger, connector, ev_max_a, departure_utc_ms, energy_wh)
            }
        }
    }
}
