//! Who is asking: an API token (`Authorization: Bearer …`) or a signed-in session cookie, looked
//! up in one place. What each role may do is decided by `app::domain::Role`'s rules, which the
//! REST API and the pages' server functions share.

use crate::auth;
use crate::db::{self, tokens, users, Db, DbError};
use app::domain::Role;
use http::HeaderMap;

/// The role of whoever sent these headers (`None`: nobody we know). A bearer token, when there is
/// one, decides alone: a bad token is not rescued by a session cookie.
pub async fn caller_role(db: &Db, headers: &HeaderMap) -> Result<Option<Role>, DbError> {
    if let Some(token) = bearer(headers) {
        return tokens::token_role(db, &auth::token_hash(token)).await;
    }
    match app::api::ssr::session_token_from(headers) {
        Some(session) => {
            Ok(users::session_user(db, &auth::token_hash(&session), db::now_ms()).await?.map(|u| u.role))
        }
        None => Ok(None),
    }
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
