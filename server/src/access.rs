//! Who is asking: an API token (`Authorization: Bearer …`) or a signed-in session cookie, looked
//! up in one place. What each role may do is decided by `app::domain::Role`'s rule book, which the
//! REST API and the pages' server functions share.

use crate::auth;
use crate::db::{self, audit, tokens, users, Db, DbError};
use crate::throttle::{KeyAndAddress, Rule};
use app::domain::{Action, Refusal, RetailerId, Role};
use http::HeaderMap;
use std::net::IpAddr;

/// How long a sign-in lasts at most, however busy (12 hours: a working day).
pub const SESSION_ABSOLUTE_S: u64 = 12 * 3600;
/// How long a sign-in lasts unused (30 minutes: a console left open at a desk).
pub const SESSION_IDLE_S: u64 = 30 * 60;

/// The sign-in lifetimes in milliseconds, as storage compares them.
pub fn session_life() -> users::SessionLife {
    users::SessionLife {
        absolute_ms: i64::try_from(SESSION_ABSOLUTE_S * 1000).unwrap_or(i64::MAX),
        idle_ms: i64::try_from(SESSION_IDLE_S * 1000).unwrap_or(i64::MAX),
    }
}

/// Someone known, asking: their role, who they are in words (an email, an API token's name), and
/// where from. What the audit log records of an actor.
#[derive(Debug, Clone)]
pub struct Actor {
    pub role: Role,
    pub who: String,
    pub from: String,
}

impl Actor {
    /// This actor, if the rule book lets their role do `action`.
    pub fn may(self, action: Action) -> Result<Actor, Refusal> {
        Role::check(Some(self.role), action).map(|_| self)
    }
}

impl Actor {
    /// A person signed in to the pages, as an actor.
    pub fn from_principal(p: &app::api::ssr::Principal) -> Actor {
        Actor {
            role: p.role,
            who: p.email.clone(),
            from: p.from.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
        }
    }

    /// Records a change this actor made in the audit log. `retailer`: whose data changed (`None`:
    /// the network's own). A change that cannot be recorded is an error: the caller answers 500
    /// rather than let an unrecorded change stand unremarked (it is logged as well).
    pub async fn audit(
        &self,
        db: &Db,
        retailer: Option<RetailerId>,
        action: &str,
        subject: String,
        detail: serde_json::Value,
    ) -> Result<(), DbError> {
        let entry = audit::NewEntry {
            at: db::now_ms(),
            actor: &self.who,
            actor_role: self.role.kind(),
            retailer,
            action,
            subject,
            detail: detail.to_string(),
            source: &self.from,
        };
        tracing::info!(audit.action = action, audit.subject = %entry.subject, actor = %self.who, "change recorded");
        audit::append(db, &entry).await.map(|_| ())
    }
}

/// Failed sign-ins, counted by account and by address: five wrong passwords for one account in
/// fifteen minutes lock it for fifteen; twenty from one address do the same for the address.
pub type SignInThrottles = KeyAndAddress;

const QUARTER_HOUR_MS: i64 = 15 * 60 * 1000;

/// The sign-in throttles' rules.
pub fn sign_in_throttles() -> SignInThrottles {
    let rule = |max_failures| Rule { max_failures, window_ms: QUARTER_HOUR_MS, lockout_ms: QUARTER_HOUR_MS };
    KeyAndAddress::new(rule(5), rule(20))
}

/// Whoever sent these headers (`None`: nobody we know). A bearer token, when there is one,
/// decides alone: a bad token is not rescued by a session cookie.
pub async fn caller(db: &Db, headers: &HeaderMap, from: Option<IpAddr>) -> Result<Option<Actor>, DbError> {
    let from = from.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    if let Some(token) = bearer(headers) {
        let found = tokens::token_role(db, &auth::token_hash(token)).await?;
        return Ok(found.map(|(role, name)| Actor { role, who: format!("token:{name}"), from }));
    }
    let Some(session) = app::api::ssr::session_token_from(headers) else { return Ok(None) };
    let user =
        users::session_user(db, &auth::token_hash(&session), db::now_ms(), session_life().idle_ms).await?;
    Ok(user.map(|u| Actor { role: u.role, who: u.email, from }))
}

/// Whether the request carries a bearer token (not a cookie): such a call cannot be forged by
/// another site, so the cross-site checks leave it alone.
pub fn has_bearer(headers: &HeaderMap) -> bool {
    bearer(headers).is_some()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_token_is_read_from_its_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(http::header::AUTHORIZATION, "Basic abc".parse().expect("header"));
        assert_eq!(bearer(&headers), None, "not a bearer token");
        headers.insert(http::header::AUTHORIZATION, "Bearer  tok-1 ".parse().expect("header"));
        assert_eq!(bearer(&headers), Some("tok-1"));
    }
}
