//! People's accounts beyond signing in: invitations, password resets by mailed link, password
//! changes, and the per-user side of signing out everywhere. The REST API and the pages both call
//! these, so each rule (who may invite whom, how long a link lives, what a reset ends) is here once.

use crate::access::Actor;
use crate::auth;
use crate::db::scoped::Scoped;
use crate::db::{self, users, Db, DbError};
use crate::mail::{self, Mailer};
use crate::throttle::{KeyAndAddress, Rule};
use app::domain::{Action, Refusal, Role, UserId};
use std::net::IpAddr;

/// How long an invitation link lives.
pub const INVITE_DAYS: i64 = 7;
/// How long a password reset link lives.
pub const RESET_MINUTES: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("not allowed")]
    Refused(Refusal),
    #[error("{0}")]
    Password(#[from] auth::AuthError),
    #[error("{0:?} is not an email address")]
    Email(String),
    #[error("an account with this email already exists")]
    Exists,
    #[error("there is no retailer {0}")]
    NoRetailer(i64),
    #[error("you cannot remove your own account")]
    OwnAccount,
    #[error("too many requests: try again in {minutes} minutes")]
    Throttled { minutes: u32 },
    #[error(transparent)]
    Db(DbError),
}

impl From<DbError> for AccountError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Conflict(_) => AccountError::Exists,
            other => AccountError::Db(other),
        }
    }
}

/// A new account, waiting for its person to choose a password.
#[derive(Debug, Clone)]
pub struct Invited {
    pub user: UserId,
    /// The link that sets the first password (to pass on by hand where no mail goes out).
    pub link: String,
    /// Whether it was mailed.
    pub mailed: bool,
}

pub struct Accounts {
    db: Db,
    mailer: Option<Mailer>,
    /// Where links point: the server as people reach it (`https://charge.example.com`).
    public_url: String,
    /// Reset requests by account and by address: three an hour each.
    resets: KeyAndAddress,
}

/// A plausible email address: one '@' with something either side, no spaces, at most 254 characters.
fn plausible_email(email: &str) -> bool {
    let email = email.trim();
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !email.chars().any(char::is_whitespace)
                && email.len() <= 254
        }
        None => false,
    }
}

impl Accounts {
    pub fn new(db: Db, mailer: Option<Mailer>, public_url: &str) -> Accounts {
        const HOUR_MS: i64 = 3_600_000;
        Accounts {
            db,
            mailer,
            public_url: public_url.trim_end_matches('/').to_owned(),
            resets: {
                let rule = Rule { max_failures: 3, window_ms: HOUR_MS, lockout_ms: HOUR_MS };
                KeyAndAddress::new(rule, rule)
            },
        }
    }

    fn link(&self, token: &str) -> String {
        format!("{}/set-password/{token}", self.public_url)
    }

    /// Makes an account for `email` in `role` and a link to choose its password (mailed when a mail
    /// server is set). Operator admins invite anyone; a retailer admin, people of their own retailer.
    pub async fn invite(&self, by: &Actor, email: &str, role: Role) -> Result<Invited, AccountError> {
        if !by.role.may(Action::ManageUsers(role.tenant())) {
            return Err(AccountError::Refused(Refusal::NotAllowed));
        }
        if !plausible_email(email) {
            return Err(AccountError::Email(email.to_owned()));
        }
        if let Some(retailer) = role.retailer() {
            if !crate::db::catalog::retailer_exists(&self.db, retailer).await? {
                return Err(AccountError::NoRetailer(retailer.0));
            }
        }
        let user = users::create(&self.db, email, users::NO_PASSWORD, &role).await?;
        let token = auth::new_token();
        let expires = db::now_ms() + INVITE_DAYS * 24 * 3_600_000;
        users::create_link(&self.db, &auth::token_hash(&token), user, users::LinkPurpose::Invite, expires)
            .await?;
        let link = self.link(&token);
        let mailed = match &self.mailer {
            Some(mailer) => {
                let letter = mail::invite_letter(&link, role.label(), &by.who, INVITE_DAYS);
                match mailer.send(email, letter).await {
                    Ok(()) => true,
                    Err(err) => {
                        tracing::warn!(user.id = %user, error = %err, "invitation not mailed; the link is in the API's answer");
                        false
                    }
                }
            }
            None => false,
        };
        let detail = serde_json::json!({ "email": users::normalise_email(email), "role": role.kind(), "mailed": mailed });
        by.audit(&self.db, role.retailer(), "user.invite", format!("user {user}"), detail).await?;
        Ok(Invited { user, link, mailed })
    }

    /// The accounts `by` manages (their own tenant's), oldest first.
    pub async fn team(&self, by: &Actor) -> Result<Vec<users::UserSummary>, AccountError> {
        if !by.role.may(Action::ManageUsers(by.role.tenant())) {
            return Err(AccountError::Refused(Refusal::NotAllowed));
        }
        Ok(Scoped::for_role(&self.db, by.role).users().await?)
    }

    /// Removes an account `by` manages; its sign-ins end with it. `false`: no such account among
    /// theirs. One's own account cannot be removed (someone must be left to manage the rest).
    pub async fn remove(&self, by: &Actor, id: UserId) -> Result<bool, AccountError> {
        if !by.role.may(Action::ManageUsers(by.role.tenant())) {
            return Err(AccountError::Refused(Refusal::NotAllowed));
        }
        let scoped = Scoped::for_role(&self.db, by.role);
        let Some(user) = scoped.user(id).await? else { return Ok(false) };
        if user.email == by.who {
            return Err(AccountError::OwnAccount);
        }
        scoped.delete_user(user.id).await?;
        let detail = serde_json::json!({ "email": user.email, "role": user.role.kind() });
        by.audit(&self.db, user.role.retailer(), "user.remove", format!("user {id}"), detail).await?;
        Ok(true)
    }

    /// Mails a reset link to the account with this email, if there is one. The answer is the same
    /// either way, so nobody learns which emails have accounts; it is throttled by account and by
    /// address, so nobody fills a mailbox.
    pub async fn request_reset(&self, email: &str, from: Option<IpAddr>) -> Result<(), AccountError> {
        let account = users::normalise_email(email);
        let now = db::now_ms();
        if let Some(remaining_ms) = self.resets.locked_out(&account, from, now) {
            return Err(AccountError::Throttled { minutes: crate::throttle::minutes_left(remaining_ms) });
        }
        // Every request counts, found or not: a request is what costs a mail.
        self.resets.failed(&account, from, now);
        let Some(user) = users::find_by_email(&self.db, &account).await? else {
            tracing::info!(client.ip = ?from, "password reset asked for an email with no account");
            return Ok(());
        };
        let Some(mailer) = &self.mailer else {
            tracing::warn!(user.id = %user.id, "password reset asked, but no mail server is configured (--smtp-url)");
            return Ok(());
        };
        let token = auth::new_token();
        let expires = now + RESET_MINUTES * 60_000;
        users::create_link(&self.db, &auth::token_hash(&token), user.id, users::LinkPurpose::Reset, expires)
            .await?;
        if let Err(err) =
            mailer.send(&user.email, mail::reset_letter(&self.link(&token), RESET_MINUTES)).await
        {
            tracing::warn!(user.id = %user.id, error = %err, "password reset link not mailed");
        } else {
            tracing::info!(user.id = %user.id, "password reset link mailed");
        }
        Ok(())
    }

    /// Whether a link still works (to show its form, or say it has expired).
    pub async fn link_is_live(&self, token: &str) -> Result<bool, AccountError> {
        Ok(users::link_is_live(&self.db, &auth::token_hash(token), db::now_ms()).await?)
    }

    /// Sets a password through a link, which is then used up; every sign-in of the account ends.
    /// `None`: the link is unknown, used or expired. A password too short is refused before the
    /// link is spent, so the person can try again with it.
    pub async fn set_password_with_link(
        &self,
        token: &str,
        password: &str,
    ) -> Result<Option<UserId>, AccountError> {
        auth::check_password_rules(password)?;
        let Some((user, purpose)) = users::use_link(&self.db, &auth::token_hash(token), db::now_ms()).await?
        else {
            return Ok(None);
        };
        let hash = auth::hash_password_bounded(password.to_owned()).await?;
        users::set_password_hash(&self.db, user, &hash).await?;
        let ended = users::delete_user_sessions(&self.db, user).await?;
        tracing::info!(user.id = %user, ?purpose, sessions_ended = ended, "password set through a link");
        Ok(Some(user))
    }

    /// A signed-in person changes their own password, knowing the current one; their other
    /// sign-ins end (the one asking stays). `false`: the current password was wrong.
    pub async fn change_password(
        &self,
        user: UserId,
        current: &str,
        new: &str,
        keep_session_hash: Option<&str>,
    ) -> Result<bool, AccountError> {
        auth::check_password_rules(new)?;
        let Some(stored) = users::password_hash_of(&self.db, user).await? else { return Ok(false) };
        if !auth::verify_password_bounded(current.to_owned(), stored).await {
            return Ok(false);
        }
        let hash = auth::hash_password_bounded(new.to_owned()).await?;
        users::set_password_hash(&self.db, user, &hash).await?;
        let ended = users::delete_other_sessions(&self.db, user, keep_session_hash.unwrap_or("")).await?;
        tracing::info!(user.id = %user, other_sessions_ended = ended, "password changed");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plausible_emails_are_invited() {
        for ok in ["a@b.example", "first.last+tag@shop.co.uk"] {
            assert!(plausible_email(ok), "{ok}");
        }
        for bad in ["", "no-at.example", "@b.example", "a@localhost", "a b@c.example", "a@b@c.example"] {
            assert!(!plausible_email(bad), "{bad}");
        }
    }
}
