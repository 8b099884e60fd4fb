//! Storage as one tenant may see it. A request's queries about users, the audit log and a
//! retailer's sites go through a [`Scoped`] handle made from the caller's role, so the scope is
//! applied here, once, and a new route cannot forget it: a retailer's handle has no way to name
//! another retailer's rows, and what is not theirs reads as absent.

use super::{audit, catalog, users, Db, DbError};
use app::domain::{RetailerId, Role, Tenant, UserId};

/// The database, seen from one tenant.
#[derive(Clone)]
pub struct Scoped {
    db: Db,
    tenant: Tenant,
}

impl Scoped {
    /// What `role` may see: the whole network for an operator, its own retailer's for a retailer.
    pub fn for_role(db: &Db, role: Role) -> Scoped {
        Scoped { db: db.clone(), tenant: role.tenant() }
    }

    pub fn tenant(&self) -> Tenant {
        self.tenant
    }

    fn owns(&self, role: Role) -> bool {
        match self.tenant {
            Tenant::Network => true,
            Tenant::Retailer(r) => role.retailer() == Some(r),
        }
    }

    /// The accounts in scope: every account for the network, a retailer's own for a retailer.
    pub async fn users(&self) -> Result<Vec<users::UserSummary>, DbError> {
        match self.tenant {
            Tenant::Network => users::list_all(&self.db).await,
            Tenant::Retailer(r) => users::list_in(&self.db, Some(r)).await,
        }
    }

    /// One account, if in scope.
    pub async fn user(&self, id: UserId) -> Result<Option<users::UserSummary>, DbError> {
        Ok(users::summary(&self.db, id).await?.filter(|u| self.owns(u.role)))
    }

    /// Removes an account in scope (`false`: no such account here).
    pub async fn delete_user(&self, id: UserId) -> Result<bool, DbError> {
        if self.user(id).await?.is_none() {
            return Ok(false);
        }
        users::delete(&self.db, id).await
    }

    /// Ends every sign-in of an account in scope (`None`: no such account here).
    pub async fn end_sessions_of(&self, id: UserId) -> Result<Option<u64>, DbError> {
        if self.user(id).await?.is_none() {
            return Ok(None);
        }
        users::delete_user_sessions(&self.db, id).await.map(Some)
    }

    /// The audit log in scope, newest first.
    pub async fn audit(&self, before: Option<i64>, limit: i64) -> Result<Vec<audit::AuditEntry>, DbError> {
        audit::list(&self.db, self.tenant, before, limit).await
    }

    /// A retailer's sites, if that retailer is in scope.
    pub async fn retailer_sites(
        &self,
        retailer: RetailerId,
    ) -> Result<Option<catalog::RetailerSites>, DbError> {
        match self.tenant {
            Tenant::Retailer(own) if own != retailer => Ok(None),
            _ => catalog::retailer_sites(&self.db, retailer).await,
        }
    }
}
