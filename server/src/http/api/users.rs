//! Accounts, as the people who manage them see them: an operator admin sees and invites anyone; a
//! retailer admin, the people of their own retailer. Every query goes through the caller's
//! [`Scoped`] handle, so another tenant's accounts read as absent (404).

use super::Path;
use super::{iso, ApiError, Body, UserManager};
use crate::accounts::AccountError;
use crate::db::scoped::Scoped;
use crate::http::AppState;
use app::domain::{RetailerId, Role, UserId};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, invite_user))
        .routes(routes!(remove_user))
        .routes(routes!(end_user_sessions))
}

/// An account.
#[derive(Serialize, ToSchema)]
pub struct User {
    id: i64,
    email: String,
    /// `operator_admin`, `operator_support`, `retailer_admin` or `retailer_viewer`.
    role: String,
    retailer_id: Option<i64>,
    #[schema(format = DateTime)]
    created_at: Option<String>,
    /// `false` until an invited person has chosen their password.
    has_password: bool,
}

impl From<crate::db::users::UserSummary> for User {
    fn from(u: crate::db::users::UserSummary) -> Self {
        User {
            id: u.id.0,
            email: u.email,
            role: u.role.kind().to_owned(),
            retailer_id: u.role.retailer().map(|r| r.0),
            created_at: iso(Some(u.created_at)),
            has_password: u.has_password,
        }
    }
}

/// An account flow's refusal as the API says it.
fn account_error(err: AccountError) -> ApiError {
    match err {
        AccountError::Refused(refusal) => ApiError::from(refusal),
        AccountError::Email(_) | AccountError::NoRetailer(_) | AccountError::Password(_) => {
            ApiError::unprocessable(err.to_string())
        }
        AccountError::Exists | AccountError::OwnAccount => {
            ApiError::new(StatusCode::CONFLICT, err.to_string())
        }
        AccountError::Throttled { .. } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, err.to_string()),
        AccountError::Db(db) => ApiError::from(db),
    }
}

/// How many sign-ins were ended.
#[derive(Serialize, ToSchema)]
pub struct SessionsEnded {
    ended: u64,
}

/// Whom to invite, in which role.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    email: String,
    /// `operator_admin`, `operator_support`, `retailer_admin` or `retailer_viewer`.
    role: String,
    /// The retailer, for the retailer roles (a retailer admin may leave it out: their own).
    retailer_id: Option<i64>,
}

/// The invitation made.
#[derive(Serialize, ToSchema)]
pub struct Invitation {
    user: User,
    /// The one-use link that sets the first password (valid for seven days): mailed when a mail
    /// server is configured, else to be passed on by hand.
    invite_url: String,
    mailed: bool,
}

/// The accounts the caller manages.
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses(
        (status = 200, description = "the accounts, oldest first", body = Vec<User>),
        (status = 401, description = "not authenticated", body = super::ErrorBody),
        (status = 403, description = "not an operator admin or a retailer admin", body = super::ErrorBody),
    ))]
async fn list_users(
    UserManager(by): UserManager,
    State(state): State<AppState>,
) -> Result<Json<Vec<User>>, ApiError> {
    let team = state.accounts.team(&by).await.map_err(account_error)?;
    Ok(Json(team.into_iter().map(User::from).collect()))
}

/// Invites a person: their account is made, and a link lets them choose their password.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses(
        (status = 201, description = "invited", body = Invitation),
        (status = 400, description = "not the documented body", body = super::ErrorBody),
        (status = 401, description = "not authenticated", body = super::ErrorBody),
        (status = 403, description = "the caller may not give that role (for that retailer)", body = super::ErrorBody),
        (status = 409, description = "an account with that email exists", body = super::ErrorBody),
        (status = 422, description = "not an email address, or a role and retailer that do not fit", body = super::ErrorBody),
    ))]
async fn invite_user(
    UserManager(by): UserManager,
    State(state): State<AppState>,
    Body(new): Body<NewUser>,
) -> Result<(StatusCode, Json<Invitation>), ApiError> {
    // A retailer admin's invitations are for their own retailer unless they say otherwise.
    let retailer =
        new.retailer_id.map(RetailerId).or(by.role.retailer().filter(|_| new.role.starts_with("retailer_")));
    let role = Role::from_kind(&new.role, retailer).ok_or_else(|| {
        ApiError::unprocessable(format!(
            "role {:?} with retailer {:?}: operator roles take no retailer_id, retailer roles need one",
            new.role, new.retailer_id
        ))
    })?;
    let invited = state.accounts.invite(&by, &new.email, role).await.map_err(account_error)?;
    let user = Scoped::for_role(&state.db, by.role)
        .user(invited.user)
        .await?
        .ok_or_else(|| ApiError::not_found("the new account is gone"))?;
    Ok((
        StatusCode::CREATED,
        Json(Invitation { user: user.into(), invite_url: invited.link, mailed: invited.mailed }),
    ))
}

/// Removes an account; its sign-ins end at once.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "the account")),
    responses(
        (status = 204, description = "removed"),
        (status = 401, description = "not authenticated", body = super::ErrorBody),
        (status = 403, description = "not an operator admin or a retailer admin", body = super::ErrorBody),
        (status = 404, description = "no such account among the caller's", body = super::ErrorBody),
        (status = 409, description = "one's own account", body = super::ErrorBody),
    ))]
async fn remove_user(
    UserManager(by): UserManager,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    match state.accounts.remove(&by, UserId(id)).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::not_found(format!("no account {id}"))),
        Err(err) => Err(account_error(err)),
    }
}

/// Ends every sign-in of an account (a lost phone, someone leaving).
#[utoipa::path(post, path = "/api/v1/users/{id}/sign-out", tag = "users",
    params(("id" = i64, Path, description = "the account")),
    responses(
        (status = 200, description = "how many sign-ins ended", body = SessionsEnded),
        (status = 401, description = "not authenticated", body = super::ErrorBody),
        (status = 403, description = "not an operator admin or a retailer admin", body = super::ErrorBody),
        (status = 404, description = "no such account among the caller's", body = super::ErrorBody),
    ))]
async fn end_user_sessions(
    UserManager(by): UserManager,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<SessionsEnded>, ApiError> {
    let scoped = Scoped::for_role(&state.db, by.role);
    let Some(user) = scoped.user(UserId(id)).await? else {
        return Err(ApiError::not_found(format!("no account {id}")));
    };
    let ended = scoped.end_sessions_of(user.id).await?.unwrap_or(0);
    by.audit(
        &state.db,
        user.role.retailer(),
        "user.sign_out",
        format!("user {id}"),
        json!({ "ended": ended }),
    )
    .await?;
    Ok(Json(SessionsEnded { ended }))
}
