//! Who may do what: the four roles and the one rule book the REST API, the pages' server functions
//! and the storage layer's tenant scope all read. Pure: the caller's role comes in, a yes or a
//! refusal goes out.

use super::ids::RetailerId;
use serde::{Deserialize, Serialize};

/// Who an authenticated person (or API token) is, as far as permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Runs the network: everything, including users, sites and chargers.
    OperatorAdmin,
    /// Helps drivers and keeps chargers going: reads everything, sends commands, steers sessions;
    /// no user, site or charger management.
    OperatorSupport,
    /// A retailer's manager: their own sites' figures, their settings and users.
    RetailerAdmin(RetailerId),
    /// Reads their retailer's figures, changes nothing.
    RetailerViewer(RetailerId),
}

/// Whose data a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tenant {
    /// The network as a whole (the operator's own).
    Network,
    Retailer(RetailerId),
}

/// Something a caller asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// See the whole network: chargers, sites' load, alerts, sessions.
    ReadNetwork,
    /// Act on running things: remote commands, a session's needs or priority, tickets.
    Operate,
    /// Change how the network is built: chargers, sites, electrics, models, meters, API tokens.
    ManageNetwork,
    /// See a tenant's figures.
    Read(Tenant),
    /// Change a tenant's own settings (a retailer's sites' settings, campaigns).
    Configure(Tenant),
    /// Create, change or remove a tenant's users.
    ManageUsers(Tenant),
    /// Read a tenant's audit log.
    ReadAudit(Tenant),
}

/// Why a caller may not do what they asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Nobody we know is asking (401).
    NotSignedIn,
    /// Someone is, but their role does not allow it (403).
    NotAllowed,
}

impl Role {
    /// The tenant this role belongs to.
    pub fn tenant(self) -> Tenant {
        match self {
            Role::OperatorAdmin | Role::OperatorSupport => Tenant::Network,
            Role::RetailerAdmin(r) | Role::RetailerViewer(r) => Tenant::Retailer(r),
        }
    }

    pub fn is_operator(self) -> bool {
        self.tenant() == Tenant::Network
    }

    /// The retailer whose data this role is confined to (`None`: an operator, who sees them all).
    pub fn retailer(self) -> Option<RetailerId> {
        match self.tenant() {
            Tenant::Network => None,
            Tenant::Retailer(r) => Some(r),
        }
    }

    /// The rule book.
    pub fn may(self, action: Action) -> bool {
        use Role::*;
        match (self, action) {
            (OperatorAdmin, _) => true,
            (OperatorSupport, Action::ReadNetwork | Action::Operate | Action::Read(_)) => true,
            (OperatorSupport, _) => false,
            (RetailerAdmin(own) | RetailerViewer(own), Action::Read(Tenant::Retailer(r))) => own == r,
            (
                RetailerAdmin(own),
                Action::Configure(Tenant::Retailer(r))
                | Action::ManageUsers(Tenant::Retailer(r))
                | Action::ReadAudit(Tenant::Retailer(r)),
            ) => own == r,
            (RetailerAdmin(_) | RetailerViewer(_), _) => false,
        }
    }

    /// May whoever is asking (`None`: nobody signed in) do this?
    pub fn check(caller: Option<Role>, action: Action) -> Result<Role, Refusal> {
        match caller {
            None => Err(Refusal::NotSignedIn),
            Some(role) if role.may(action) => Ok(role),
            Some(_) => Err(Refusal::NotAllowed),
        }
    }

    /// The role as storage and the API write it.
    pub fn kind(self) -> &'static str {
        match self {
            Role::OperatorAdmin => "operator_admin",
            Role::OperatorSupport => "operator_support",
            Role::RetailerAdmin(_) => "retailer_admin",
            Role::RetailerViewer(_) => "retailer_viewer",
        }
    }

    /// A role from its kind and retailer, as storage keeps them (`None`: they do not fit together).
    pub fn from_kind(kind: &str, retailer: Option<RetailerId>) -> Option<Role> {
        match (kind, retailer) {
            ("operator_admin", None) => Some(Role::OperatorAdmin),
            ("operator_support", None) => Some(Role::OperatorSupport),
            ("retailer_admin", Some(r)) => Some(Role::RetailerAdmin(r)),
            ("retailer_viewer", Some(r)) => Some(Role::RetailerViewer(r)),
            _ => None,
        }
    }

    /// Where a person with this role lands after signing in.
    pub fn home(self) -> &'static str {
        if self.is_operator() {
            "/console"
        } else {
            "/dashboard"
        }
    }

    /// Every role (for one retailer), so tests and the user forms can walk them all.
    pub fn all(retailer: RetailerId) -> [Role; 4] {
        [
            Role::OperatorAdmin,
            Role::OperatorSupport,
            Role::RetailerAdmin(retailer),
            Role::RetailerViewer(retailer),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINE: RetailerId = RetailerId(1);
    const THEIRS: RetailerId = RetailerId(2);

    fn actions() -> Vec<Action> {
        let mut all = vec![Action::ReadNetwork, Action::Operate, Action::ManageNetwork];
        for t in [Tenant::Network, Tenant::Retailer(MINE), Tenant::Retailer(THEIRS)] {
            all.extend([Action::Read(t), Action::Configure(t), Action::ManageUsers(t), Action::ReadAudit(t)]);
        }
        all
    }

    #[test]
    fn an_operator_admin_may_do_everything() {
        assert!(actions().into_iter().all(|a| Role::OperatorAdmin.may(a)));
    }

    #[test]
    fn support_reads_and_operates_but_manages_nothing() {
        let support = Role::OperatorSupport;
        for action in actions() {
            let expected = matches!(action, Action::ReadNetwork | Action::Operate | Action::Read(_));
            assert_eq!(support.may(action), expected, "{action:?}");
        }
    }

    #[test]
    fn a_retailer_never_reaches_past_its_own_tenant() {
        for role in [Role::RetailerAdmin(MINE), Role::RetailerViewer(MINE)] {
            for action in actions() {
                let about_theirs_or_network = match action {
                    Action::Read(t)
                    | Action::Configure(t)
                    | Action::ManageUsers(t)
                    | Action::ReadAudit(t) => t != Tenant::Retailer(MINE),
                    _ => true,
                };
                if about_theirs_or_network {
                    assert!(!role.may(action), "{role:?} may {action:?}");
                }
            }
        }
    }

    #[test]
    fn a_retailer_viewer_only_reads() {
        let viewer = Role::RetailerViewer(MINE);
        let own = Tenant::Retailer(MINE);
        assert!(viewer.may(Action::Read(own)));
        for action in [Action::Configure(own), Action::ManageUsers(own), Action::ReadAudit(own)] {
            assert!(!viewer.may(action), "{action:?}");
        }
        let admin = Role::RetailerAdmin(MINE);
        for action in
            [Action::Read(own), Action::Configure(own), Action::ManageUsers(own), Action::ReadAudit(own)]
        {
            assert!(admin.may(action), "{action:?}");
        }
    }

    #[test]
    fn check_tells_401_from_403() {
        assert_eq!(Role::check(None, Action::ReadNetwork), Err(Refusal::NotSignedIn));
        assert_eq!(
            Role::check(Some(Role::RetailerAdmin(MINE)), Action::ReadNetwork),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(Role::check(Some(Role::OperatorSupport), Action::ReadNetwork), Ok(Role::OperatorSupport));
    }

    #[test]
    fn kinds_round_trip_and_refuse_misfits() {
        for role in Role::all(MINE) {
            assert_eq!(Role::from_kind(role.kind(), role.retailer()), Some(role));
        }
        assert_eq!(Role::from_kind("operator_admin", Some(MINE)), None);
        assert_eq!(Role::from_kind("retailer_viewer", None), None);
        assert_eq!(Role::from_kind("operator", None), None);
    }
}
