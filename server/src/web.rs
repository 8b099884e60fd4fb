//! The pages' backend: implements `app::api::ssr::Backend` over the store and the themes.

use crate::access::{self, Actor, SignInThrottles};
use crate::accounts::AccountError;
use crate::auth;
use crate::balancer::{CircuitId, EvPhases, PerPhase, SmartState};
use crate::balancing::{Hub, SiteBudget};
use crate::db::scoped::Scoped;
use crate::db::{self, balancing, catalog, users, Db};
use crate::themes::Themes;
use app::api::ssr::{anyhow_like::Result, Backend, NewSession, PasswordOutcome, Principal, SignInOutcome};
use app::api::{
    CarLoad, ChargerRow, ConnectorLoad, DriverConnector, MeterSetAside, NodeLoad, PlanOutcome,
    PriorityChange, RetailerSummary, SiteAlert, SiteAlertKind, SiteLoad, SiteRow, TeamInvitation, TeamMember,
    TeamRefusal,
};
use app::domain::{
    ChargerId, ConnectorNo, DriverPlan, PlanInput, RetailerId, SessionPriority, SiteId, TransactionId, UserId,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

pub struct WebBackend {
    pub db: Db,
    /// Failed sign-ins by account and by address.
    pub sign_ins: Arc<SignInThrottles>,
    pub accounts: Arc<crate::accounts::Accounts>,
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

    async fn sign_in(&self, email: &str, password: &str, from: Option<IpAddr>) -> Result<SignInOutcome> {
        let account = users::normalise_email(email);
        let now = db::now_ms();
        if let Some(remaining_ms) = self.sign_ins.locked_out(&account, from, now) {
            tracing::warn!(client.ip = ?from, "sign-in refused: locked out after repeated failures");
            let minutes = crate::throttle::minutes_left(remaining_ms);
            return Ok(SignInOutcome::LockedOut { minutes });
        }
        let user = users::find_by_email(&self.db, &account).await?;
        let hash = user.as_ref().map_or(auth::decoy_hash(), |u| u.password_hash.as_str());
        let ok = auth::verify_password_bounded(password.to_owned(), hash.to_owned()).await;
        let Some(user) = user.filter(|_| ok) else {
            self.sign_ins.failed(&account, from, now);
            tracing::info!(client.ip = ?from, "sign-in refused");
            return Ok(SignInOutcome::Refused);
        };
        self.sign_ins.succeeded(&account, now);
        let token = auth::new_token();
        let life = access::session_life();
        users::create_session(&self.db, &auth::token_hash(&token), user.id, now + life.absolute_ms).await?;
        tracing::info!(user.id = %user.id, client.ip = ?from, "signed in");
        Ok(SignInOutcome::Signed(NewSession {
            token,
            max_age_s: access::SESSION_ABSOLUTE_S,
            role: user.role,
        }))
    }

    async fn sign_out(&self, token: &str) -> Result<()> {
        users::delete_session(&self.db, &auth::token_hash(token)).await?;
        Ok(())
    }

    async fn sign_out_everywhere(&self, user: UserId) -> Result<u64> {
        let ended = users::delete_user_sessions(&self.db, user).await?;
        tracing::info!(user.id = %user, sessions = ended, "signed out everywhere");
        Ok(ended)
    }

    async fn team(&self, me: &Principal) -> Result<std::result::Result<Vec<TeamMember>, TeamRefusal>> {
        let members = self.accounts.team(&Actor::from_principal(me)).await;
        team_outcome(members.map(|team| {
            team.into_iter()
                .map(|u| TeamMember {
                    id: u.id.0,
                    email: u.email,
                    role: u.role,
                    has_password: u.has_password,
                })
                .collect()
        }))
    }

    async fn invite(
        &self,
        me: &Principal,
        email: &str,
        role: app::domain::Role,
    ) -> Result<std::result::Result<TeamInvitation, TeamRefusal>> {
        let invited = self.accounts.invite(&Actor::from_principal(me), email, role).await;
        team_outcome(invited.map(|i| TeamInvitation {
            email: users::normalise_email(email),
            link: i.link,
            mailed: i.mailed,
        }))
    }

    async fn remove_member(
        &self,
        me: &Principal,
        id: UserId,
    ) -> Result<std::result::Result<(), TeamRefusal>> {
        match self.accounts.remove(&Actor::from_principal(me), id).await {
            Ok(true) => Ok(Ok(())),
            Ok(false) => Ok(Err(TeamRefusal::NotFound)),
            Err(err) => team_outcome(Err(err)),
        }
    }

    async fn request_password_reset(&self, email: &str, from: Option<IpAddr>) -> Result<PasswordOutcome> {
        password_outcome(self.accounts.request_reset(email, from).await.map(|()| true), PasswordOutcome::Done)
    }

    async fn password_link_live(&self, token: &str) -> Result<bool> {
        Ok(self.accounts.link_is_live(token).await?)
    }

    async fn set_password_with_link(&self, token: &str, password: &str) -> Result<PasswordOutcome> {
        let set = self.accounts.set_password_with_link(token, password).await.map(|user| user.is_some());
        password_outcome(set, PasswordOutcome::LinkDead)
    }

    async fn change_password(
        &self,
        me: &Principal,
        session_token: &str,
        current: &str,
        new: &str,
    ) -> Result<PasswordOutcome> {
        // A wrong current password counts as a failed sign-in: this form is no way round the lockout.
        let account = users::normalise_email(&me.email);
        let now = db::now_ms();
        if let Some(remaining_ms) = self.sign_ins.locked_out(&account, me.from, now) {
            let minutes = crate::throttle::minutes_left(remaining_ms);
            return Ok(PasswordOutcome::Throttled { minutes });
        }
        let keep = auth::token_hash(session_token);
        let changed = self.accounts.change_password(me.user, current, new, Some(&keep)).await;
        let outcome = password_outcome(changed, PasswordOutcome::WrongCurrent)?;
        if outcome == PasswordOutcome::WrongCurrent {
            self.sign_ins.failed(&account, me.from, now);
        }
        Ok(outcome)
    }

    async fn principal(&self, token: &str) -> Result<Option<Principal>> {
        let idle_ms = access::session_life().idle_ms;
        let user = users::session_user(&self.db, &auth::token_hash(token), db::now_ms(), idle_ms).await?;
        Ok(user.map(|u| Principal { user: u.id, email: u.email, role: u.role, from: None }))
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

    async fn set_session_priority(
        &self,
        by: &Principal,
        session: i64,
        priority: SessionPriority,
    ) -> Result<PriorityChange> {
        let Some((needs, charger)) = balancing::set_session_priority(&self.db, session, priority).await?
        else {
            return Ok(PriorityChange::NotRunning);
        };
        let detail = serde_json::json!({ "priority": priority.get(), "charger": charger });
        Actor::from_principal(by)
            .audit(&self.db, None, "session.priority", format!("session {session}"), detail)
            .await?;
        if let Ok(charger) = ChargerId::parse(&charger) {
            self.hub.session_declared(&charger, TransactionId(session), &needs);
        }
        tracing::info!(session.id = session, charger.id = %charger, priority = priority.get(), "session priority set by an operator");
        Ok(PriorityChange::Set)
    }

    async fn forget_readings_before_drop(&self, by: &Principal, site: SiteId) -> Result<Option<u64>> {
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
        let detail = serde_json::json!({ "before_ms": before_ms, "forgotten": forgotten });
        Actor::from_principal(by)
            .audit(&self.db, None, "store_meter.forget_before_drop", format!("site {site}"), detail)
            .await?;
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
        presence: Option<&str>,
    ) -> Result<PlanOutcome> {
        Ok(crate::driver::state_plan(&self.db, &self.hub, charger, connector, token, input, presence).await?)
    }

    async fn retailer_overview(
        &self,
        me: &Principal,
        retailer: RetailerId,
    ) -> Result<Option<RetailerSummary>> {
        let Some(found) = Scoped::for_role(&self.db, me.role).retailer_sites(retailer).await? else {
            return Ok(None);
        };
        Ok(Some(RetailerSummary {
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
        }))
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
        can_manage: false,
    }
}

/// An account flow's result as the pages' outcome: `Ok(true)` done, `Ok(false)` what the caller
/// says a refusal means here (a dead link, a wrong current password), a rule broken or a throttle
/// as such.
fn password_outcome(
    result: std::result::Result<bool, AccountError>,
    refused: PasswordOutcome,
) -> Result<PasswordOutcome> {
    match result {
        Ok(true) => Ok(PasswordOutcome::Done),
        Ok(false) => Ok(refused),
        Err(AccountError::Password(rule)) => Ok(PasswordOutcome::Refused(rule.to_string())),
        Err(AccountError::Throttled { minutes }) => Ok(PasswordOutcome::Throttled { minutes }),
        Err(other) => Err(Box::new(other)),
    }
}

/// A team change's result as the pages' answer: refusals in words, failures as errors.
fn team_outcome<T>(
    result: std::result::Result<T, AccountError>,
) -> Result<std::result::Result<T, TeamRefusal>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(AccountError::Refused(_)) => Ok(Err(TeamRefusal::NotAllowed)),
        Err(e @ (AccountError::Email(_) | AccountError::NoRetailer(_) | AccountError::Password(_))) => {
            Ok(Err(TeamRefusal::Invalid(e.to_string())))
        }
        Err(e @ (AccountError::Exists | AccountError::OwnAccount | AccountError::Throttled { .. })) => {
            Ok(Err(TeamRefusal::Conflict(e.to_string())))
        }
        Err(AccountError::Db(db)) => Err(Box::new(db)),
    }
}
