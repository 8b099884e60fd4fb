//! Server functions: the browser's door into the server. Each one is a public HTTP route, so each
//! one checks who is asking before it calls the backend.

use crate::domain::{DriverPlan, Money, Role, Tariff};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// What a driver sees after scanning a charger's QR code. Public information only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverConnector {
    pub theme: crate::domain::Theme,
    pub site_name: String,
    pub site_address: String,
    pub charger_id: String,
    pub connector_no: u32,
    pub status: String,
    pub max_power_kw_tenths: u32,
    pub tariff: Tariff,
}

impl DriverConnector {
    /// Example prices a driver can compare: a small top-up and a big charge.
    pub fn example_costs(&self) -> Vec<(u32, Money)> {
        [10u32, 30].into_iter().map(|kwh| (kwh, self.tariff.session_cost(i64::from(kwh) * 1000))).collect()
    }
}

/// The signed-in person, as the pages need to know them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub email: String,
    pub role: Role,
}

impl Role {
    /// The role in a person's words.
    pub fn label(self) -> &'static str {
        match self {
            Role::OperatorAdmin => "Operator admin",
            Role::OperatorSupport => "Operator support",
            Role::RetailerAdmin(_) => "Retailer admin",
            Role::RetailerViewer(_) => "Retailer viewer",
        }
    }
}

/// One charger as the operator console lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargerRow {
    pub charger_id: String,
    pub site_id: i64,
    pub site_name: String,
    pub retailer_name: String,
    pub connectors: u32,
    pub status: String,
    pub active_sessions: u32,
}

/// A site's live load as the operator console shows it. Currents are in tenths of an amp, per
/// phase L1, L2, L3 of the site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteLoad {
    pub site_name: String,
    pub retailer_name: String,
    /// The grid connection first, then each circuit.
    pub nodes: Vec<NodeLoad>,
    /// The store meter is stale or missing, so its worst case is counted.
    pub store_worst_case: bool,
    /// Why, and for how long, the store meter's readings are set aside (its worst case
    /// counted), if they are.
    #[serde(default)]
    pub store_meter_set_aside: Option<MeterSetAside>,
    /// How far the store may rise while unseen is learned from its meter (not the configured guess).
    pub store_rise_learned: bool,
    /// Some limit is exceeded by what is counted (the store rose; decreases are on their way).
    pub overcommitted: bool,
    pub connectors: Vec<ConnectorLoad>,
    /// The highest priority an operator may give a session (0 is normal).
    pub max_priority: u8,
    /// Whoever asked may change the site (not only read it and steer its sessions).
    #[serde(default)]
    pub can_manage: bool,
}

/// A site whose balancing wants an operator's eye, for the network's overview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteAlert {
    pub site_id: i64,
    pub site_name: String,
    pub retailer_name: String,
    pub alert: SiteAlertKind,
}

/// What is wrong at a site, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SiteAlertKind {
    /// What is counted exceeds a limit (the store rose; decreases are on their way).
    Overcommitted,
    /// The store meter's readings are set aside: its worst case is counted.
    StoreMeterSetAside(MeterDoubt),
    /// The store meter reported and then stopped: its worst case is counted.
    StoreMeterSilent,
}

/// A store meter's readings set aside: why, and for how long so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterSetAside {
    pub why: MeterDoubt,
    pub for_s: u64,
}

/// Why a store meter's readings are not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MeterDoubt {
    /// Far below anything it read in four weeks: a loose current clamp, zeros from a gateway.
    FarBelowFloor,
    /// The very same reading for a quarter of an hour: a gateway repeating its last value.
    Unchanged,
}

/// The grid connection (`circuit: None`) or one circuit, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLoad {
    pub circuit: Option<String>,
    pub limit_da: [u32; 3],
    /// The store as counted: its latest reading plus how far it may rise, or its worst case (grid only).
    pub store_da: [u32; 3],
    /// Everything counted against the limit: the store and every connector's budget.
    pub counted_da: [u32; 3],
    /// What the plan gives the sessions below it.
    pub allocated_da: [u32; 3],
    /// What the cars below it last measured.
    pub measured_da: [u32; 3],
}

impl NodeLoad {
    /// What is left under the limit per phase (0 when over).
    pub fn headroom_da(&self) -> [u32; 3] {
        [0, 1, 2].map(|k| self.limit_da[k].saturating_sub(self.counted_da[k]))
    }
}

/// One connector of a balanced site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorLoad {
    pub charger_id: String,
    pub connector_no: u32,
    /// The circuit it hangs from, by name (`None`: directly below the grid connection).
    pub circuit: Option<String>,
    pub online: bool,
    /// The car plugged in, if any.
    pub car: Option<CarLoad>,
    /// "steered", "refused our limit" (counted at its maximum) or "not smart" (always at its maximum).
    pub steering: String,
    /// What the plan gives it, and the last limit its charger accepted (with no car: its own
    /// default profile, what a car plugging in may draw before its first limit).
    pub target_da: u32,
    pub accepted_da: u32,
    /// Its last measured current on its own L1, L2, L3.
    pub measured_da: [u32; 3],
}

/// What the balancer knows of a car.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarLoad {
    /// Its session (transaction) number.
    pub session: i64,
    /// Given nothing for now: it waits its turn (not every car can have 6 A at once).
    pub waiting: bool,
    /// 1 or 3, declared or learned from its draw; `None` until known.
    pub phases: Option<u8>,
    /// The most it was seen to take when offered more.
    pub learned_max_da: Option<u32>,
    pub energy_left_wh: Option<u32>,
    pub departs_in_s: Option<u64>,
    /// 0 is normal.
    pub priority: u8,
}

impl CarLoad {
    /// One line for people: "3-phase · takes at most 16.0 A · 12.5 kWh to go · leaves in 45 min".
    pub fn details(&self) -> String {
        let mut parts = Vec::new();
        parts.push(match self.phases {
            Some(n) => format!("{n}-phase"),
            None => "phases not known yet".to_owned(),
        });
        if let Some(da) = self.learned_max_da {
            parts.push(format!("takes at most {}", amps(da)));
        }
        if let Some(wh) = self.energy_left_wh {
            parts.push(format!("{}.{} kWh to go", wh / 1000, wh % 1000 / 100));
        }
        if let Some(s) = self.departs_in_s {
            parts.push(format!("leaves in {} min", s.div_ceil(60)));
        }
        if self.priority > 0 {
            parts.push(format!("priority {}", self.priority));
        }
        parts.join(" · ")
    }
}

/// A count of tenths as people read it, with its unit: `tenths(125, "A")` is "12.5 A".
pub fn tenths(value: u32, unit: &str) -> String {
    format!("{}.{} {unit}", value / 10, value % 10)
}

/// Tenths of an amp as people read them: "12.5 A".
pub fn amps(da: u32) -> String {
    tenths(da, "A")
}

/// One site as a retailer's dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRow {
    pub site_name: String,
    pub address: String,
    pub chargers: u32,
    pub connectors: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetailerSummary {
    pub retailer_name: String,
    pub theme: crate::domain::Theme,
    pub sites: Vec<SiteRow>,
}

#[server(endpoint = "connector_page")]
pub async fn connector_page(charger: String, connector: u32) -> Result<DriverConnector, ServerFnError> {
    use crate::domain::{ChargerId, ConnectorNo};
    let charger = ChargerId::parse(&charger).map_err(|e| ssr::bad_request(e.to_string()))?;
    let connector = ConnectorNo::new(connector).map_err(|e| ssr::bad_request(e.to_string()))?;
    ssr::backend()?
        .connector_page(&charger, connector)
        .await
        .map_err(ssr::internal)?
        .ok_or_else(|| ssr::not_found("no such charger or connector"))
}

/// The plan this phone stated for this connector, if any (read from its plan cookie): drivers
/// have no account, the cookie is what makes a plan theirs.
#[server(endpoint = "my_charge_plan")]
pub async fn my_charge_plan(charger: String, connector: u32) -> Result<Option<DriverPlan>, ServerFnError> {
    use crate::domain::{ChargerId, ConnectorNo};
    let charger = ChargerId::parse(&charger).map_err(|e| ssr::bad_request(e.to_string()))?;
    let connector = ConnectorNo::new(connector).map_err(|e| ssr::bad_request(e.to_string()))?;
    let Some(token) = ssr::cookie(ssr::PLAN_COOKIE).await else { return Ok(None) };
    ssr::backend()?.driver_plan(&charger, connector, &token).await.map_err(ssr::internal)
}

/// A driver states when they leave (a time of day at the site) and how much energy they want, for
/// the charge about to start on this connector or the one that has just started there. The first
/// phone to state a plan for a session owns it; only that phone may change it.
#[server(endpoint = "state_charge_plan")]
pub async fn state_charge_plan(
    charger: String,
    connector: u32,
    leave_at: String,
    energy_kwh: String,
    /// The connector's presence code, from the URL the sticker's QR code opened.
    #[server(default)]
    presence: Option<String>,
) -> Result<DriverPlan, ServerFnError> {
    use crate::domain::{ChargerId, ConnectorNo, PlanInput};
    let charger = ChargerId::parse(&charger).map_err(|e| ssr::bad_request(e.to_string()))?;
    let connector = ConnectorNo::new(connector).map_err(|e| ssr::bad_request(e.to_string()))?;
    let input = PlanInput::parse(&leave_at, &energy_kwh).map_err(|e| ssr::bad_request(e.to_string()))?;
    let token = ssr::cookie(ssr::PLAN_COOKIE).await;
    let outcome = ssr::backend()?
        .state_driver_plan(&charger, connector, token.as_deref(), input, presence.as_deref())
        .await
        .map_err(ssr::internal)?;
    match outcome {
        PlanOutcome::Saved { plan, new_token } => {
            if let Some(token) = new_token {
                ssr::set_cookie(ssr::PLAN_COOKIE, &token, ssr::PLAN_COOKIE_MAX_AGE_S);
            }
            Ok(plan)
        }
        PlanOutcome::NoSuchConnector => Err(ssr::not_found("no such charger or connector")),
        PlanOutcome::NeedsPresence => {
            ssr::set_status(http::StatusCode::FORBIDDEN);
            Err(ServerFnError::new(
                "scan the QR code on the charger to plan your charge: it shows we are talking to someone standing there",
            ))
        }
        PlanOutcome::OwnedByAnotherPhone => Err(ssr::conflict(
            "the charge on this connector was planned on another phone; only that phone can change it",
        )),
        PlanOutcome::StartedTooLongAgo { minutes } => Err(ssr::conflict(&format!(
            "the charge on this connector started more than {minutes} minutes ago, so it cannot be planned from a new phone; our support can help"
        ))),
    }
}

/// What became of a driver's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlanOutcome {
    /// Kept; `new_token` is the phone's proof of ownership when the plan is new.
    Saved {
        plan: DriverPlan,
        new_token: Option<String>,
    },
    NoSuchConnector,
    /// The phone did not show the connector's presence code (it came from the sticker's QR code):
    /// only a phone at the charger may plan its session.
    NeedsPresence,
    /// The session running there was planned on another phone.
    OwnedByAnotherPhone,
    /// The session running there is not fresh: someone else's car, as far as we can tell.
    StartedTooLongAgo {
        minutes: u32,
    },
}

#[server(endpoint = "sign_in")]
pub async fn sign_in(email: String, password: String) -> Result<(), ServerFnError> {
    let backend = ssr::backend()?;
    let from = ssr::client_ip().await;
    let session = match backend.sign_in(&email, &password, from).await.map_err(ssr::internal)? {
        ssr::SignInOutcome::Signed(session) => session,
        ssr::SignInOutcome::Refused => {
            ssr::set_status(http::StatusCode::UNAUTHORIZED);
            return Err(ServerFnError::new("wrong email or password"));
        }
        ssr::SignInOutcome::LockedOut { minutes } => {
            ssr::set_status(http::StatusCode::TOO_MANY_REQUESTS);
            return Err(ServerFnError::new(format!(
                "too many failed sign-ins: try again in {minutes} minute{}",
                if minutes == 1 { "" } else { "s" }
            )));
        }
    };
    // A new sign-in gets a new session: whatever session this browser held before ends now.
    if let Some(old) = ssr::session_token().await {
        backend.sign_out(&old).await.map_err(ssr::internal)?;
    }
    ssr::set_session_cookie(&session.token, session.max_age_s);
    leptos_axum::redirect(session.role.home());
    Ok(())
}

#[server(endpoint = "sign_out")]
pub async fn sign_out() -> Result<(), ServerFnError> {
    if let Some(token) = ssr::session_token().await {
        ssr::backend()?.sign_out(&token).await.map_err(ssr::internal)?;
    }
    ssr::set_session_cookie("", 0);
    leptos_axum::redirect("/login");
    Ok(())
}

/// Ends every sign-in of the person asking, on every device (a lost phone, a shared computer).
#[server(endpoint = "sign_out_everywhere")]
pub async fn sign_out_everywhere() -> Result<u64, ServerFnError> {
    let me = ssr::require_signed_in().await?;
    let ended = ssr::backend()?.sign_out_everywhere(me.user).await.map_err(ssr::internal)?;
    ssr::set_session_cookie("", 0);
    leptos_axum::redirect("/login");
    Ok(ended)
}

/// Mails a password reset link to the account with this email, if there is one. The answer is the
/// same whether or not there is, so nobody can learn who has an account.
#[server(endpoint = "request_password_reset")]
pub async fn request_password_reset(email: String) -> Result<(), ServerFnError> {
    let from = ssr::client_ip().await;
    match ssr::backend()?.request_password_reset(&email, from).await.map_err(ssr::internal)? {
        ssr::PasswordOutcome::Throttled { minutes } => Err(ssr::too_many(minutes)),
        _ => Ok(()),
    }
}

/// Whether a password link (an invitation or a reset) still works.
#[server(endpoint = "password_link_live")]
pub async fn password_link_live(token: String) -> Result<bool, ServerFnError> {
    ssr::backend()?.password_link_live(&token).await.map_err(ssr::internal)
}

/// Chooses a password through a link from a mail or an invitation.
#[server(endpoint = "set_password")]
pub async fn set_password(token: String, password: String, confirm: String) -> Result<(), ServerFnError> {
    if password != confirm {
        return Err(ssr::bad_request("the two passwords differ".to_owned()));
    }
    ssr::password_answer(
        ssr::backend()?.set_password_with_link(&token, &password).await.map_err(ssr::internal)?,
    )
}

/// The signed-in person changes their password; their other sign-ins end.
#[server(endpoint = "change_password")]
pub async fn change_password(
    current: String,
    password: String,
    confirm: String,
) -> Result<(), ServerFnError> {
    let me = ssr::require_signed_in().await?;
    if password != confirm {
        return Err(ssr::bad_request("the two new passwords differ".to_owned()));
    }
    let token = ssr::session_token().await.unwrap_or_default();
    let outcome =
        ssr::backend()?.change_password(&me, &token, &current, &password).await.map_err(ssr::internal)?;
    ssr::password_answer(outcome)
}

/// Someone on the asker's team, as the team page lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamMember {
    pub id: i64,
    pub email: String,
    pub role: Role,
    /// `false` until an invited person has chosen their password.
    pub has_password: bool,
}

/// An invitation made from the team page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamInvitation {
    pub email: String,
    /// The one-use link that sets the first password, to pass on where no mail went out.
    pub link: String,
    pub mailed: bool,
}

/// Why a team change was refused, in words for the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TeamRefusal {
    NotAllowed,
    NotFound,
    Invalid(String),
    Conflict(String),
}

/// The asker's team: every operator account for an operator admin, their retailer's people for a
/// retailer admin.
#[server(endpoint = "my_team")]
pub async fn my_team() -> Result<Vec<TeamMember>, ServerFnError> {
    let me = ssr::require_signed_in().await?;
    ssr::team_answer(ssr::backend()?.team(&me).await.map_err(ssr::internal)?)
}

/// Invites someone to the asker's team in a role of it (`role`: `retailer_viewer`,
/// `retailer_admin`, `operator_support` or `operator_admin`).
#[server(endpoint = "invite_to_team")]
pub async fn invite_to_team(email: String, role: String) -> Result<TeamInvitation, ServerFnError> {
    let me = ssr::require_signed_in().await?;
    let Some(role) = Role::from_kind(&role, me.role.retailer()) else {
        return Err(ssr::bad_request(format!("{role:?} is not a role on your team")));
    };
    ssr::team_answer(ssr::backend()?.invite(&me, &email, role).await.map_err(ssr::internal)?)
}

/// Removes someone from the asker's team; their sign-ins end.
#[server(endpoint = "remove_from_team")]
pub async fn remove_from_team(id: i64) -> Result<(), ServerFnError> {
    let me = ssr::require_signed_in().await?;
    ssr::team_answer(
        ssr::backend()?.remove_member(&me, crate::domain::UserId(id)).await.map_err(ssr::internal)?,
    )
}

#[server(endpoint = "who_am_i")]
pub async fn who_am_i() -> Result<Option<Me>, ServerFnError> {
    Ok(ssr::principal().await?.map(|p| Me { email: p.email, role: p.role }))
}

#[server(endpoint = "network_chargers")]
pub async fn network_chargers() -> Result<Vec<ChargerRow>, ServerFnError> {
    ssr::require(crate::domain::Action::ReadNetwork).await?;
    ssr::backend()?.network_chargers().await.map_err(ssr::internal)
}

/// Every balanced site with something wrong, worst first.
#[server(endpoint = "network_alerts")]
pub async fn network_alerts() -> Result<Vec<SiteAlert>, ServerFnError> {
    ssr::require(crate::domain::Action::ReadNetwork).await?;
    ssr::backend()?.network_alerts().await.map_err(ssr::internal)
}

#[server(endpoint = "live_site_load")]
pub async fn live_site_load(site: i64) -> Result<SiteLoad, ServerFnError> {
    let me = ssr::require(crate::domain::Action::ReadNetwork).await?;
    let load = ssr::backend()?
        .site_load(crate::domain::SiteId(site))
        .await
        .map_err(ssr::internal)?
        .ok_or_else(|| ssr::not_found("no such site, or it is not balanced"))?;
    Ok(SiteLoad { can_manage: me.role.may(crate::domain::Action::ManageNetwork), ..load })
}

/// Gives a running session a larger share (and it is paused last), or takes it back to normal (0):
/// what an operator does when a driver calls with a good reason.
#[server(endpoint = "set_session_priority")]
pub async fn set_session_priority(session: i64, priority: u8) -> Result<(), ServerFnError> {
    let me = ssr::require(crate::domain::Action::Operate).await?;
    let priority = crate::domain::SessionPriority::new(i64::from(priority))
        .map_err(|out_of_range| ssr::bad_request(out_of_range.to_string()))?;
    match ssr::backend()?.set_session_priority(&me, session, priority).await.map_err(ssr::internal)? {
        PriorityChange::Set => Ok(()),
        PriorityChange::NotRunning => Err(ssr::not_found("that session is not running")),
    }
}

/// The store now draws less than it ever did (equipment removed): its meter's readings from before
/// they were set aside are forgotten, and the balancer believes the meter again and learns the
/// store's rise anew (the configured bound counts meanwhile). Only while the readings are set aside
/// as far below the meter's floor. Returns how many readings were forgotten.
#[server(endpoint = "forget_readings_before_drop")]
pub async fn forget_readings_before_drop(site: i64) -> Result<u64, ServerFnError> {
    let me = ssr::require(crate::domain::Action::ManageNetwork).await?;
    match ssr::backend()?
        .forget_readings_before_drop(&me, crate::domain::SiteId(site))
        .await
        .map_err(ssr::internal)?
    {
        Some(forgotten) => Ok(forgotten),
        None => Err(ssr::conflict("the store meter's readings are not set aside as far below its floor")),
    }
}

/// What became of an operator's new priority for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PriorityChange {
    Set,
    NotRunning,
}

#[server(endpoint = "retailer_overview")]
pub async fn retailer_overview() -> Result<RetailerSummary, ServerFnError> {
    let me = ssr::require_signed_in().await?;
    let Some(retailer) = me.role.retailer() else {
        return Err(ssr::forbidden());
    };
    ssr::require(crate::domain::Action::Read(crate::domain::Tenant::Retailer(retailer))).await?;
    ssr::backend()?
        .retailer_overview(&me, retailer)
        .await
        .map_err(ssr::internal)?
        .ok_or_else(|| ssr::not_found("your retailer is not there any more"))
}

/// The server's side of the pages: what the backend must provide, and the request helpers.
#[cfg(feature = "ssr")]
pub mod ssr {
    use super::*;
    use crate::domain::{ChargerId, ConnectorNo, RetailerId, SiteId, UserId};
    use std::sync::Arc;

    pub const SESSION_COOKIE: &str = "forecourt_session";
    /// A driver's proof that a charge plan is theirs (drivers have no account).
    pub const PLAN_COOKIE: &str = "forecourt_plan";
    /// A day: past that a phone's plan has long ended.
    pub const PLAN_COOKIE_MAX_AGE_S: u64 = 24 * 3600;

    /// An authenticated person.
    #[derive(Debug, Clone)]
    pub struct Principal {
        pub user: UserId,
        pub email: String,
        pub role: Role,
        /// Where the request came from (for the audit log), when the server knows.
        pub from: Option<std::net::IpAddr>,
    }

    /// What came of asking to set a password (or to have a link mailed).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum PasswordOutcome {
        Done,
        /// The new password breaks a rule (too short), in words for the person.
        Refused(String),
        /// The link is unknown, used or expired.
        LinkDead,
        /// The current password given was wrong.
        WrongCurrent,
        /// Too many tries: again in this many minutes.
        Throttled {
            minutes: u32,
        },
    }

    /// A password outcome as a server function's answer.
    pub fn password_answer(outcome: PasswordOutcome) -> Result<(), ServerFnError> {
        match outcome {
            PasswordOutcome::Done => Ok(()),
            PasswordOutcome::Refused(why) => Err(bad_request(why)),
            PasswordOutcome::LinkDead => {
                set_status(http::StatusCode::GONE);
                Err(ServerFnError::new("this link has expired or was used already: ask for a new one"))
            }
            PasswordOutcome::WrongCurrent => {
                set_status(http::StatusCode::FORBIDDEN);
                Err(ServerFnError::new("your current password is not that one"))
            }
            PasswordOutcome::Throttled { minutes } => Err(too_many(minutes)),
        }
    }

    /// 429 with when to try again.
    pub fn too_many(minutes: u32) -> ServerFnError {
        set_status(http::StatusCode::TOO_MANY_REQUESTS);
        ServerFnError::new(format!(
            "too many tries: try again in {minutes} minute{}",
            if minutes == 1 { "" } else { "s" }
        ))
    }

    /// A team change's answer as a server function's.
    pub fn team_answer<T>(outcome: Result<T, TeamRefusal>) -> Result<T, ServerFnError> {
        outcome.map_err(|refusal| match refusal {
            TeamRefusal::NotAllowed => forbidden(),
            TeamRefusal::NotFound => not_found("no such person on your team"),
            TeamRefusal::Invalid(why) => {
                set_status(http::StatusCode::UNPROCESSABLE_ENTITY);
                ServerFnError::new(why)
            }
            TeamRefusal::Conflict(why) => conflict(&why),
        })
    }

    /// What came of a sign-in.
    pub enum SignInOutcome {
        Signed(NewSession),
        /// Wrong email or password (which of the two is not said).
        Refused,
        /// Too many failures for this account or from this address: try again in this many minutes.
        LockedOut {
            minutes: u32,
        },
    }

    /// The address a request came from, as the server saw it (set by its middleware).
    #[derive(Clone, Copy, Debug)]
    pub struct ClientIp(pub std::net::IpAddr);

    /// The address of the request being answered, when the server knows it.
    pub async fn client_ip() -> Option<std::net::IpAddr> {
        use_context::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<ClientIp>().map(|ip| ip.0))
    }

    /// A fresh sign-in: the token goes to the browser in an HttpOnly cookie, never into a log.
    pub struct NewSession {
        pub token: String,
        pub max_age_s: u64,
        pub role: Role,
    }

    /// Implemented by the server crate; the pages know nothing of databases.
    #[async_trait::async_trait]
    pub trait Backend: Send + Sync + 'static {
        async fn connector_page(
            &self,
            charger: &ChargerId,
            connector: ConnectorNo,
        ) -> anyhow_like::Result<Option<DriverConnector>>;
        async fn sign_in(
            &self,
            email: &str,
            password: &str,
            from: Option<std::net::IpAddr>,
        ) -> anyhow_like::Result<SignInOutcome>;
        async fn sign_out(&self, token: &str) -> anyhow_like::Result<()>;
        /// Ends every session of this user; how many there were.
        async fn sign_out_everywhere(&self, user: UserId) -> anyhow_like::Result<u64>;
        async fn team(&self, me: &Principal) -> anyhow_like::Result<Result<Vec<TeamMember>, TeamRefusal>>;
        async fn invite(
            &self,
            me: &Principal,
            email: &str,
            role: Role,
        ) -> anyhow_like::Result<Result<TeamInvitation, TeamRefusal>>;
        async fn remove_member(
            &self,
            me: &Principal,
            id: UserId,
        ) -> anyhow_like::Result<Result<(), TeamRefusal>>;
        async fn request_password_reset(
            &self,
            email: &str,
            from: Option<std::net::IpAddr>,
        ) -> anyhow_like::Result<PasswordOutcome>;
        async fn password_link_live(&self, token: &str) -> anyhow_like::Result<bool>;
        async fn set_password_with_link(
            &self,
            token: &str,
            password: &str,
        ) -> anyhow_like::Result<PasswordOutcome>;
        /// `session_token`: the asker's own sign-in, which stays.
        async fn change_password(
            &self,
            me: &Principal,
            session_token: &str,
            current: &str,
            new: &str,
        ) -> anyhow_like::Result<PasswordOutcome>;
        async fn principal(&self, token: &str) -> anyhow_like::Result<Option<Principal>>;
        async fn network_chargers(&self) -> anyhow_like::Result<Vec<ChargerRow>>;
        async fn network_alerts(&self) -> anyhow_like::Result<Vec<SiteAlert>>;
        /// `None`: no such site, or it is not balanced.
        async fn site_load(&self, site: SiteId) -> anyhow_like::Result<Option<SiteLoad>>;
        async fn set_session_priority(
            &self,
            by: &Principal,
            session: i64,
            priority: crate::domain::SessionPriority,
        ) -> anyhow_like::Result<PriorityChange>;
        /// `None`: that retailer is not in the asker's scope (or is gone).
        async fn retailer_overview(
            &self,
            me: &Principal,
            retailer: RetailerId,
        ) -> anyhow_like::Result<Option<RetailerSummary>>;
        /// `None`: the site's store meter readings are not set aside as far below its floor.
        async fn forget_readings_before_drop(
            &self,
            by: &Principal,
            site: SiteId,
        ) -> anyhow_like::Result<Option<u64>>;
        /// The plan whose token this is, if it was stated for this connector.
        async fn driver_plan(
            &self,
            charger: &ChargerId,
            connector: ConnectorNo,
            token: &str,
        ) -> anyhow_like::Result<Option<DriverPlan>>;
        async fn state_driver_plan(
            &self,
            charger: &ChargerId,
            connector: ConnectorNo,
            token: Option<&str>,
            input: crate::domain::PlanInput,
            presence: Option<&str>,
        ) -> anyhow_like::Result<PlanOutcome>;
    }

    /// The backend's errors are opaque to the pages: they are logged by the server and the
    /// browser gets a generic message.
    pub mod anyhow_like {
        pub type Error = Box<dyn std::error::Error + Send + Sync>;
        pub type Result<T> = std::result::Result<T, Error>;
    }

    pub type SharedBackend = Arc<dyn Backend>;

    pub fn backend() -> Result<SharedBackend, ServerFnError> {
        use_context::<SharedBackend>()
            .ok_or_else(|| ServerFnError::new("server misconfigured: no backend in context"))
    }

    pub fn set_status(status: http::StatusCode) {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(status);
        }
    }

    pub fn bad_request(reason: String) -> ServerFnError {
        set_status(http::StatusCode::BAD_REQUEST);
        ServerFnError::new(reason)
    }

    pub fn not_found(reason: &str) -> ServerFnError {
        set_status(http::StatusCode::NOT_FOUND);
        ServerFnError::new(reason)
    }

    pub fn conflict(reason: &str) -> ServerFnError {
        set_status(http::StatusCode::CONFLICT);
        ServerFnError::new(reason)
    }

    pub fn forbidden() -> ServerFnError {
        set_status(http::StatusCode::FORBIDDEN);
        ServerFnError::new("you do not have access to this page")
    }

    pub fn internal(err: anyhow_like::Error) -> ServerFnError {
        tracing_error(&err);
        set_status(http::StatusCode::INTERNAL_SERVER_ERROR);
        ServerFnError::new("something went wrong on our side; please try again")
    }

    fn tracing_error(err: &anyhow_like::Error) {
        leptos::logging::error!("server function failed: {err}");
    }

    pub async fn session_token() -> Option<String> {
        cookie(SESSION_COOKIE).await
    }

    /// A cookie of the request being answered.
    pub async fn cookie(name: &str) -> Option<String> {
        let headers: http::HeaderMap = leptos_axum::extract().await.ok()?;
        cookie_from(&headers, name)
    }

    pub fn session_token_from(headers: &http::HeaderMap) -> Option<String> {
        cookie_from(headers, SESSION_COOKIE)
    }

    pub fn cookie_from(headers: &http::HeaderMap, name: &str) -> Option<String> {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value.to_owned())
            .filter(|v| !v.is_empty())
    }

    pub async fn principal() -> Result<Option<Principal>, ServerFnError> {
        let Some(token) = session_token().await else { return Ok(None) };
        let from = client_ip().await;
        Ok(backend()?.principal(&token).await.map_err(internal)?.map(|p| Principal { from, ..p }))
    }

    fn unauthorized() -> ServerFnError {
        set_status(http::StatusCode::UNAUTHORIZED);
        ServerFnError::new("please sign in")
    }

    pub async fn require_signed_in() -> Result<Principal, ServerFnError> {
        principal().await?.ok_or_else(unauthorized)
    }

    /// Whoever is asking, if their role may do `action` (the rule book the REST API reads too);
    /// else 401 (not signed in) or 403.
    pub async fn require(action: crate::domain::Action) -> Result<Principal, ServerFnError> {
        let me = principal().await?;
        match Role::check(me.as_ref().map(|p| p.role), action) {
            Ok(_) => me.ok_or_else(unauthorized),
            Err(crate::domain::Refusal::NotSignedIn) => Err(unauthorized()),
            Err(crate::domain::Refusal::NotAllowed) => Err(forbidden()),
        }
    }

    pub fn set_session_cookie(token: &str, max_age_s: u64) {
        set_cookie(SESSION_COOKIE, token, max_age_s);
    }

    /// Marks a request that came over TLS (ours, or a proxy's that says so): its cookies are `Secure`.
    #[derive(Clone, Copy, Debug)]
    pub struct OverTls;

    /// HttpOnly: no script of the page can read it; SameSite=Lax: no other site's form can use it;
    /// Secure over TLS: never sent in the clear.
    pub fn set_cookie(name: &str, token: &str, max_age_s: u64) {
        let over_tls = use_context::<http::request::Parts>()
            .is_some_and(|parts| parts.extensions.get::<OverTls>().is_some());
        let secure = if over_tls { "; Secure" } else { "" };
        let cookie = format!("{name}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}");
        if let (Some(response), Ok(value)) =
            (use_context::<leptos_axum::ResponseOptions>(), http::HeaderValue::from_str(&cookie))
        {
            response.append_header(http::header::SET_COOKIE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_car_is_described_in_plain_words() {
        let mut car = CarLoad {
            session: 1,
            waiting: false,
            phases: None,
            learned_max_da: None,
            energy_left_wh: None,
            departs_in_s: None,
            priority: 0,
        };
        assert_eq!(car.details(), "phases not known yet");
        car = CarLoad {
            phases: Some(3),
            learned_max_da: Some(160),
            energy_left_wh: Some(12_549),
            departs_in_s: Some(2_701),
            priority: 1,
            ..car
        };
        assert_eq!(
            car.details(),
            "3-phase · takes at most 16.0 A · 12.5 kWh to go · leaves in 46 min · priority 1"
        );
        assert_eq!(amps(7), "0.7 A");
    }
}
