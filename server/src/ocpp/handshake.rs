//! The WebSocket handshake at `/ocpp/{chargePointId}`: the OCPP subprotocol, then who the
//! charger is (security profile 1: HTTP Basic auth with a per-charger password, stored hashed).

use super::frame::OcppVersion;
use super::{connection, CentralSystem, Link};
use crate::auth;
use crate::store::ocpp as db;
use app::domain::ChargerId;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;

/// A charger's first password, when it registers itself, must be at least this long.
const MIN_CHARGER_PASSWORD: usize = 8;

fn refuse(status: StatusCode, reason: &str) -> Response {
    let mut response = (status, reason.to_owned()).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"forecourt-ocpp\""));
    }
    response
}

/// The best version the charger offers, by our preference.
pub fn negotiate(headers: &HeaderMap) -> Option<OcppVersion> {
    let offered: Vec<OcppVersion> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(OcppVersion::from_subprotocol)
        .collect();
    OcppVersion::PREFERRED.into_iter().find(|v| offered.contains(v))
}

/// (username, password) from an HTTP Basic `Authorization` header.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Verifies a password off the async threads (argon2 is deliberately slow).
async fn verify(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash)).await.unwrap_or(false)
}

pub async fn upgrade(
    State(cs): State<CentralSystem>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let charger = match ChargerId::parse(&raw_id) {
        Ok(id) => id,
        Err(err) => return refuse(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    let Some(version) = negotiate(&headers) else {
        return refuse(StatusCode::BAD_REQUEST, "no supported OCPP subprotocol: offer ocpp2.0.1 or ocpp1.6");
    };
    let Some((user, password)) = basic_credentials(&headers) else {
        return refuse(StatusCode::UNAUTHORIZED, "HTTP Basic credentials required (OCPP security profile 1)");
    };
    if user != charger.as_str() {
        return refuse(StatusCode::UNAUTHORIZED, "the username must be the charge point id");
    }
    let known = match db::charger_auth(&cs.db, &charger).await {
        Ok(k) => k,
        Err(err) => {
            tracing::error!(charger.id = %charger, error = %err, "handshake: storage failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "try again later");
        }
    };
    let link = match known {
        Some(auth) => {
            let Some(hash) = auth.password_hash else {
                tracing::warn!(charger.id = %charger, "refused: no password set for this charger");
                return refuse(StatusCode::UNAUTHORIZED, "no password is set for this charger");
            };
            if !verify(password, hash).await {
                tracing::warn!(charger.id = %charger, "refused: wrong password");
                return refuse(StatusCode::UNAUTHORIZED, "wrong credentials");
            }
            Link { charger: charger.clone(), version, site: auth.site, lenient: auth.lenient }
        }
        None => {
            let site = match db::auto_register_site(&cs.db).await {
                Ok(Some(site)) => site,
                Ok(None) => {
                    tracing::warn!(charger.id = %charger, "refused: unknown charger and no site registers chargers automatically");
                    return refuse(StatusCode::UNAUTHORIZED, "unknown charger");
                }
                Err(err) => {
                    tracing::error!(error = %err, "handshake: storage failed");
                    return refuse(StatusCode::SERVICE_UNAVAILABLE, "try again later");
                }
            };
            if password.chars().count() < MIN_CHARGER_PASSWORD {
                return refuse(StatusCode::UNAUTHORIZED, "a new charger's password must be at least 8 characters");
            }
            let hashed = match tokio::task::spawn_blocking(move || auth::hash_password_unchecked(&password)).await {
                Ok(Ok(h)) => h,
                _ => return refuse(StatusCode::INTERNAL_SERVER_ERROR, "could not register the charger"),
            };
            if let Err(err) = db::auto_register(&cs.db, &charger, site, &hashed).await {
                tracing::error!(charger.id = %charger, error = %err, "auto-registration failed");
                return refuse(StatusCode::SERVICE_UNAVAILABLE, "try again later");
            }
            tracing::info!(charger.id = %charger, site.id = %site, "unknown charger registered automatically");
            Link { charger: charger.clone(), version, site, lenient: false }
        }
    };
    ws.protocols([version.subprotocol()])
        .on_upgrade(move |socket| connection::run(cs, link, socket))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(header::HeaderName::from_bytes(k.as_bytes()).expect("name"), v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn negotiation_prefers_201_and_refuses_strangers() {
        assert_eq!(negotiate(&headers(&[("sec-websocket-protocol", "ocpp1.6, ocpp2.0.1")])), Some(OcppVersion::V201));
        assert_eq!(negotiate(&headers(&[("sec-websocket-protocol", "ocpp1.6")])), Some(OcppVersion::V16));
        assert_eq!(negotiate(&headers(&[("sec-websocket-protocol", "ocpp1.5, mqtt")])), None);
        assert_eq!(negotiate(&headers(&[])), None);
    }

    #[test]
    fn basic_credentials_are_read() {
        let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("CP-1:s3cret:with:colons"));
        assert_eq!(basic_credentials(&headers(&[("authorization", &value)])), Some(("CP-1".into(), "s3cret:with:colons".into())));
        assert_eq!(basic_credentials(&headers(&[("authorization", "Bearer x")])), None);
    }
}
