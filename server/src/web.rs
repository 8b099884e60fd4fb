//! The pages' backend: implements `app::api::ssr::Backend` over the store and the themes.

use crate::auth;
use crate::balancer::{CircuitId, EvPhases, PerPhase, SmartState};
use crate::balancing::{Hub, SiteBudget};
use crate::db::{self, balancing, catalog, users, Db};
use crate::themes::Themes;
use app::api::ssr::{anyhow_like::Result, Backend, NewSession, Principal};
use app::api::{
    CarLoad, ChargerRow, ConnectorLoad, DriverConnector, MeterSetAside, NodeLoad, PlanOutcome,
    PriorityChange, RetailerSummary, SiteAlert, SiteAlertKind, SiteLoad, SiteRow,
};
use app::domain::{
    ChargerId, ConnectorNo, DriverPlan, PlanInput, RetailerId, SessionPriority, SiteId, TransactionId,
};
use std::collections::HashMap;
use std::sync::Arc;

/// How long a sign-in lasts.
pub const SESSION_TTL_S: u64 = 12 * 3600;

pub struct WebBackend {
    pub db: Db,
    pub themes: Arc<Themes>,
    /// The sites' load balancers, for their live budgets.
    pub hub: Hub,
}

#[async_trait::async_trait]
impl Backend for WebBackend {
    async fn connector_page(
        &self,
        charger: &ChargerId,
        connector: ConnectorNo,
    ) -> Result<Option<DriverConnector>> {
        let Some(facts) = catalog::connector_facts(&self.db, charger, connector).await? else {
            return Ok(None);
        };
        Ok(Some(DriverConnector {
            theme: self.themes.get(&facts.retailer_theme).clone(),
            site_name: facts.site_name,
            site_address: facts.site_address,
            charger_id: charger.to_string(),
            connector_no: connector.get(),
            status: facts.status,
            max_power_kw_tenths: u32::try_from(facts.max_power_w / 100).unwrap_or(u32::MAX),
            tariff: facts.tariff,
        }))
    }

    async fn sign_in(&self, email: &str, password: &str) -> Result<Option<NewSession>> {
        let user = users::find_by_email(&self.db, email).await?;
        let hash = user.as_ref().map_or(auth::decoy_hash(), |u| u.password_hash.as_str());
        let ok = auth::verify_password_bounded(password.to_owned(), hash.to_owned()).await;
        let Some(user) = user.filter(|_| ok) else {
            tracing::info!("sign-in refused");
            return Ok(None);
        };
        let token = auth::new_token();
        let ttl_ms = i64::try_from(SESSION_TTL_S * 1000).unwrap_or(i64::MAX);
        users::create_session(&self.db, &auth::token_hash(&token), user.id, db::now_ms() + ttl_ms).await?;
        tracing::info!(user.id = %user.id, "signed in");
        Ok(Some(NewSession { token, max_age_s: SESSION_TTL_S, role: user.role }))
    }

    async fn sign_out(&self, token: &str) -> Result<()> {
        users::delete_session(&self.db, &auth::token_hash(token)).await?;
        Ok(())
    }

    async fn principal(&self, token: &str) -> Result<Option<Principal>> {
        let user = users::session_user(&self.db, &auth::token_hash(token), db::now_ms()).await?;
        Ok(user.map(|u| Principal { user: u.id, email: u.email, role: u.role }))
    }

    async fn network_chargers(&self) -> Result<Vec<ChargerRow>> {
        let rows = catalog::charger_summaries(&self.db).await?;
        Ok(rows
            .into_iter()
            .map(|c| ChargerRow {
                status: match (c.registration.as_str(), c.online) {
                    ("accepted", true) => "Online".to_owned(),
                    ("accepted", false) => "Offline".to_owned(),
                    ("pending", _) => "Pending approval".to_owned(),
                    _ => "Rejected".to_owned(),
                },
                charger_id: c.id,
                site_id: c.site_id,
                site_name: c.site_name,
                retailer_name: c.retailer_name,
                connectors: u32::try_from(c.connectors).unwrap_or(0),
                active_sessions: u32::try_from(c.active_sessions).unwrap_or(0),
            })
            .collect())
    }

    async fn network_alerts(&self) -> Result<Vec<SiteAlert>> {
        // The sites' tasks keep the list; only the few on it cost a query.
        let mut alerts = Vec::new();
        for (site, attention) in self.hub.attention() {
            let Some((site_name, retailer_name)) = catalog::site_names(&self.db, site).await? else {
                continue;
            };
            alerts.push(SiteAlert {
                site_id: site.0,
                site_name,
                retailer_name,
                alert: site_alert(attention),
            });
        }
        Ok(alerts)
    }

    async fn site_load(&self, site: SiteId) -> Result<Option<SiteLoad>> {
        let Some((site_name, retailer_name)) = catalog::site_names(&self.db, site).await? else {
            return Ok(None);
        };
        let Some(budget) = self.hub.budget(site).await else { return Ok(None) };
        let circuits = balancing::circuit_names(&self.db, site).await?;
        Ok(Some(site_load(site_name, retailer_name, &circuits, &budget)))
    }

    async fn set_session_priority(&self, session: i64, priority: SessionPriority) -> Result<PriorityChange> {
        let Some((needs, charger)) = balancing::set_session_priority(&self.db, session, priority).await?
        else {
            return Ok(PriorityChange::NotRunning);
        };
        if let Ok(charger) = ChargerId::parse(&charger) {
            self.hub.session_declared(&charger, TransactionId(session), &needs);
        }
        tracing::info!(session.id = session, charger.id = %charger, priority = priority.get(), "session priority set by an operator");
        Ok(PriorityChange::Set)
    }

    async fn forget_readings_before_drop(&self, site: SiteId) -> Result<Option<u64>> {
        let Some(budget) = self.hub.budget(site).await else { return Ok(None) };
        let snapshot = &budget.snapshot;
        let Some(set_aside) =
            snapshot.store_meter_set_aside.filter(|s| s.why == crate::balancer::MeterDoubt::FarBelowFloor)
        else {
            return Ok(None);
        };
        // The balancer's clock to the wall's: the readings were set aside this long before the budget.
        // A second earlier still, as the two clocks are read apart (the first low reading is kept;
        // a meter reads no faster than that).
        let set_aside_for = i64::try_from(snapshot.at.since(set_aside.since).0).unwrap_or(i64::MAX);
        let before_ms = db::now_ms().saturating_sub(set_aside_for).saturating_sub(1000);
        let forgotten = self.hub.forget_store_readings(site, 0, before_ms).await?;
        tracing::info!(site.id = %site, ?forgotten, "an operator had the store meter's readings from before its drop forgotten");
        Ok(forgotten)
    }

    async fn driver_plan(
        &self,
        charger: &ChargerId,
        connector: ConnectorNo,
        token: &str,
    ) -> Result<Option<DriverPlan>> {
        Ok(crate::driver::own_plan(&self.db, charger, connector, token).await?)
    }

    async fn state_driver_plan(
        &self,
        charger: &ChargerId,
        connector: ConnectorNo,
        token: Option<&str>,
        input: PlanInput,
    ) -> Result<PlanOutcome> {
        Ok(crate::driver::state_plan(&self.db, &self.hub, charger, connector, token, input).await?)
    }

    async fn retailer_overview(&self, retailer: RetailerId) -> Result<RetailerSummary> {
        let found = catalog::retailer_sites(&self.db, retailer)
            .await?
            .ok_or("retailer of a signed-in user is missing")?;
        Ok(RetailerSummary {
            retailer_name: found.name,
            theme: self.themes.get(&found.theme).clone(),
            sites: found
                .sites
                .into_iter()
                .map(|s| SiteRow {
                    site_name: s.name,
                    address: s.address,
                    chargers: u32::try_from(s.chargers).unwrap_or(0),
                    connectors: u32::try_from(s.connectors).unwrap_or(0),
                })
                .collect(),
        })
    }
}

fn meter_doubt(why: crate::balancer::MeterDoubt) -> app::api::MeterDoubt {
    match why {
        crate::balancer::MeterDoubt::FarBelowFloor => app::api::MeterDoubt::FarBelowFloor,
        crate::balancer::MeterDoubt::Unchanged => app::api::MeterDoubt::Unchanged,
    }
}

/// A site's call for a look in the console's terms.
fn site_alert(attention: crate::balancer::Attention) -> SiteAlertKind {
    use crate::balancer::Attention;
    match attention {
        Attention::Overcommitted => SiteAlertKind::Overcommitted,
        Attention::StoreMeterSetAside(why) => SiteAlertKind::StoreMeterSetAside(meter_doubt(why)),
        Attention::StoreMeterSilent => SiteAlertKind::StoreMeterSilent,
    }
}

/// A site's live budget in the console's terms.
fn site_load(
    site_name: String,
    retailer_name: String,
    circuits: &HashMap<i64, String>,
    budget: &SiteBudget,
) -> SiteLoad {
    let da = |p: PerPhase| p.0.map(|a| a.get());
    let circuit_name =
        |c: CircuitId| circuits.get(&i64::from(c.0)).cloned().unwrap_or_else(|| format!("circuit {}", c.0));
    let snapshot = &budget.snapshot;
    let nodes = snapshot
        .nodes
        .iter()
        .map(|n| NodeLoad {
            circuit: n.circuit.map(circuit_name),
            limit_da: da(n.limit),
            store_da: if n.circuit.is_none() { da(snapshot.store_assumed) } else { [0; 3] },
            counted_da: da(n.budgeted),
            allocated_da: da(n.allocated),
            measured_da: da(n.measured),
        })
        .collect();
    let names: HashMap<u32, (&String, u32)> =
        budget.connectors.iter().map(|(key, charger, no)| (*key, (charger, *no))).collect();
    let connectors = snapshot
        .connectors
        .iter()
        .filter_map(|c| {
            let (charger_id, connector_no) = names.get(&c.connector.0).copied()?;
            Some(ConnectorLoad {
                charger_id: charger_id.clone(),
                connector_no,
                circuit: c.circuit.map(circuit_name),
                online: c.online,
                car: c.session.map(|session| CarLoad {
                    session: i64::try_from(session.0).unwrap_or(i64::MAX),
                    waiting: c.paused,
                    phases: c.ev_phases.map(|p| match p {
                        EvPhases::One => 1,
                        EvPhases::Three => 3,
                    }),
                    learned_max_da: c.learned_max.map(|a| a.get()),
                    energy_left_wh: c.energy_left_wh,
                    departs_in_s: c.departs_in_s,
                    priority: c.priority.unwrap_or(0),
                }),
                steering: match c.smart {
                    SmartState::Ok => "steered",
                    SmartState::Rejected => "refused our limit",
                    SmartState::Unsupported => "not smart",
                }
                .to_owned(),
                target_da: c.target.get(),
                accepted_da: c.acked.get(),
                measured_da: c.measured.map(|a| a.get()),
            })
        })
        .collect();
    SiteLoad {
        site_name,
        retailer_name,
        nodes,
        store_worst_case: snapshot.store_worst_case,
        store_meter_set_aside: snapshot
            .store_meter_set_aside
            .map(|s| MeterSetAside { why: meter_doubt(s.why), for_s: snapshot.at.since(s.since).0 / 1000 }),
        store_rise_learned: snapshot.store_rise_learned.is_some(),
        overcommitted: snapshot.overcommitted,
        connectors,
        max_priority: SessionPriority::MAX,
    }
}
