//! The WebSocket handshake at `/ocpp/{chargePointId}`: the OCPP subprotocol, then who the
//! charger is (security profile 1: HTTP Basic auth with a per-charger password, stored hashed).

use super::frame::OcppVersion;
use super::{connection, CentralSystem, Link, UnknownChargers};
use crate::auth;
use crate::db::ocpp as db;
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
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"forecourt-ocpp\""),
        );
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

/// Chargers reconnect often (every network blip, every reboot). Remembering the last password that
/// verified against a charger's stored hash, as a SHA-256 in memory only, spares argon2 on each
/// reconnect; a changed stored hash or a different password goes the slow way again.
#[derive(Default)]
pub struct VerifiedCredentials {
    seen: std::sync::Mutex<std::collections::HashMap<ChargerId, (String, [u8; 32])>>,
}

impl VerifiedCredentials {
    fn digest(password: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(password.as_bytes()).into()
    }

    async fn verify(&self, charger: &ChargerId, password: String, stored_hash: String) -> bool {
        let digest = Self::digest(&password);
        let known = self.seen.lock().ok().and_then(|seen| seen.get(charger).cloned());
        if known.is_some_and(|(hash, d)| hash == stored_hash && d == digest) {
            return true;
        }
        let ok = auth::verify_password_bounded(password, stored_hash.clone()).await;
        if ok {
            if let Ok(mut seen) = self.seen.lock() {
                seen.insert(charger.clone(), (stored_hash, digest));
            }
        }
        ok
    }
}

/// 429 with when to come back.
fn refuse_for_now(reason: &str, retry_after_ms: i64) -> Response {
    let mut response = (StatusCode::TOO_MANY_REQUESTS, reason.to_owned()).into_response();
    let seconds = (retry_after_ms + 999) / 1000;
    if let Ok(value) = header::HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

pub async fn upgrade(
    State(cs): State<CentralSystem>,
    Path(raw_id): Path<String>,
    client: Option<axum::Extension<app::api::ssr::ClientIp>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let from = client.map(|axum::Extension(app::api::ssr::ClientIp(ip))| ip);
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
    // Before any storage or hashing: a charger id or an address that failed too often waits.
    let now = crate::db::now_ms();
    if let Some(remaining_ms) = cs.edge.locked_out(&charger, from, now) {
        tracing::warn!(charger.id = %charger, client.ip = ?from, "handshake refused: too many failed attempts");
        return refuse_for_now("too many failed attempts: try again later", remaining_ms);
    }
    // Hashing is the costly part of a handshake: past the bound, chargers wait and retry rather than
    // queue behind a flood (and in front of people signing in).
    if auth::argon2_busy(cs.settings.max_argon2_queue) {
        tracing::warn!(charger.id = %charger, queued = auth::argon2_queued(), "handshake refused: password checks are backed up");
        return refuse_for_now("busy: try again shortly", 5_000);
    }
    let Some(slot) = cs.edge.open(from) else {
        tracing::warn!(charger.id = %charger, client.ip = ?from, "handshake refused: too many connections from this address");
        return refuse_for_now("too many connections from this address", 60_000);
    };
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
            if !cs.credentials.verify(&charger, password, hash).await {
                tracing::warn!(charger.id = %charger, client.ip = ?from, "refused: wrong password");
                cs.edge.failed(&charger, from, now);
                return refuse(StatusCode::UNAUTHORIZED, "wrong credentials");
            }
            cs.edge.succeeded(&charger, now);
            if auth.registration == "rejected" {
                return refuse(StatusCode::UNAUTHORIZED, "this charger was rejected by an operator");
            }
            let site = (auth.registration == "accepted").then_some(auth.site);
            Link {
                charger: charger.clone(),
                version,
                site,
                lenient: auth.lenient,
                meter_in_kwh: auth.meter_in_kwh,
                session_register: auth.session_register,
            }
        }
        None => match unknown_charger(&cs, &charger, version, password, from).await {
            Ok(link) => link,
            Err(response) => {
                if response.status() == StatusCode::UNAUTHORIZED {
                    cs.edge.failed(&charger, from, now);
                }
                return response;
            }
        },
    };
    // OCPP frames are small: start with small buffers (they grow for the rare large report) so tens
    // of thousands of idle connections stay cheap.
    let max_message = cs.settings.max_message_bytes;
    ws.protocols([version.subprotocol()])
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            // The address's place is held for as long as the connection lasts.
            let _slot = slot;
            connection::run(cs, link, socket).await
        })
        .into_response()
}

/// An unknown charger: auto-registered to a site that allows it, else pending or refused by policy.
async fn unknown_charger(
    cs: &CentralSystem,
    charger: &ChargerId,
    version: OcppVersion,
    password: String,
    from: Option<std::net::IpAddr>,
) -> Result<Link, Response> {
    let unavailable = |err: crate::db::DbError| {
        tracing::error!(charger.id = %charger, error = %err, "handshake: storage failed");
        refuse(StatusCode::SERVICE_UNAVAILABLE, "try again later")
    };
    let site = db::auto_register_site(&cs.db).await.map_err(unavailable)?;
    if site.is_none() && cs.settings.unknown_chargers == UnknownChargers::Reject {
        tracing::warn!(charger.id = %charger, "refused: unknown charger");
        return Err(refuse(StatusCode::UNAUTHORIZED, "unknown charger"));
    }
    let request = match site {
        Some(_) => None,
        None => db::charger_request(&cs.db, charger).await.map_err(unavailable)?,
    };
    match request {
        Some(r) if r.status == "rejected" => {
            tracing::warn!(charger.id = %charger, "refused: an operator rejected this charger");
            return Err(refuse(StatusCode::UNAUTHORIZED, "this charger was rejected by an operator"));
        }
        Some(r) => {
            // Still pending: it must keep presenting the password it first came with.
            if !cs.credentials.verify(charger, password, r.password_hash.clone()).await {
                return Err(refuse(StatusCode::UNAUTHORIZED, "wrong credentials"));
            }
            db::touch_charger_request(&cs.db, charger, &version.to_string()).await.map_err(unavailable)?;
            return Ok(Link::unquirked(charger.clone(), version, None));
        }
        None => {}
    }
    if password.chars().count() < MIN_CHARGER_PASSWORD {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "a new charger's password must be at least 8 characters",
        ));
    }
    if site.is_none()
        && db::pending_request_count(&cs.db).await.map_err(unavailable)? >= cs.settings.max_pending_chargers
    {
        tracing::warn!(charger.id = %charger, limit = cs.settings.max_pending_chargers, "refused: too many unknown chargers wait for an operator");
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many unknown chargers wait for an operator",
        ));
    }
    let now = crate::db::now_ms();
    if let Some(remaining_ms) = cs.edge.registrations_spent(from, now) {
        tracing::warn!(charger.id = %charger, client.ip = ?from, "refused: this address registered as many new chargers as it may for now");
        return Err(refuse_for_now("too many new chargers from this address: try again later", remaining_ms));
    }
    let Ok(hashed) = auth::hash_password_bounded(password).await else {
        return Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, "could not register the charger"));
    };
    // Two first connections under one id may race here: only the one whose row is written is
    // admitted; the other is refused and, on its retry, must present the winner's password.
    let lost_the_race = || {
        tracing::warn!(charger.id = %charger, "refused: another connection registered this id first");
        refuse(StatusCode::UNAUTHORIZED, "this id was registered by another connection just now")
    };
    match site {
        Some(site) => {
            if !db::auto_register(&cs.db, charger, site, &hashed).await.map_err(unavailable)? {
                return Err(lost_the_race());
            }
            cs.edge.registered(from, now);
            tracing::info!(charger.id = %charger, site.id = %site, "unknown charger registered automatically");
            Ok(Link::unquirked(charger.clone(), version, Some(site)))
        }
        None => {
            if !db::create_charger_request(&cs.db, charger, &hashed, &version.to_string())
                .await
                .map_err(unavailable)?
            {
                return Err(lost_the_race());
            }
            cs.edge.registered(from, now);
            tracing::info!(charger.id = %charger, "unknown charger waits for an operator (Pending)");
            Ok(Link::unquirked(charger.clone(), version, None))
        }
    }
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
        assert_eq!(
            negotiate(&headers(&[("sec-websocket-protocol", "ocpp1.6, ocpp2.0.1")])),
            Some(OcppVersion::V201)
        );
        assert_eq!(negotiate(&headers(&[("sec-websocket-protocol", "ocpp1.6")])), Some(OcppVersion::V16));
        assert_eq!(negotiate(&headers(&[("sec-websocket-protocol", "ocpp1.5, mqtt")])), None);
        assert_eq!(negotiate(&headers(&[])), None);
    }

    #[test]
    fn basic_credentials_are_read() {
        let value =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("CP-1:s3cret:with:colons"));
        assert_eq!(
            basic_credentials(&headers(&[("authorization", &value)])),
            Some(("CP-1".into(), "s3cret:with:colons".into()))
        );
        assert_eq!(basic_credentials(&headers(&[("authorization", "Bearer x")])), None);
    }
}
