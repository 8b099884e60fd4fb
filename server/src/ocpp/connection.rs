//! One task per charger connection. It reads frames, answers CALLs in order, sends our CALLs one
//! at a time (OCPP-J allows one outstanding CALL per direction) with a timeout, pings a quiet
//! link and declares it dead when it stays silent. Generic over the socket so tests can use channels.

use super::frame::{self, Frame, RpcError};
use super::registry::CallOutcome;
use super::{CentralSystem, Link};
use crate::db::ocpp as db;
use axum::extract::ws::Message;
use futures::{Sink, SinkExt, Stream, StreamExt};
use std::time::{Duration, Instant};

/// How often `last_seen_at` is written while a charger keeps talking.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

struct InFlight {
    id: String,
    action: String,
    sent: Instant,
    reply: tokio::sync::oneshot::Sender<CallOutcome>,
}

pub async fn run<S, E>(cs: CentralSystem, mut link: Link, mut socket: S)
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
    E: std::fmt::Display,
{
    let charger = link.charger.clone();
    let mut registration = cs.registry.register(&charger, link.version);
    let version_text = link.version.to_string();
    if let Err(err) = db::set_online(&cs.db, &charger, &version_text, true).await {
        tracing::error!(charger.id = %charger, error = %err, "could not mark charger online");
    }
    tracing::info!(charger.id = %charger, ocpp.version = %link.version, "connected");
    cs.tell(&link, super::report::ChargerEvent::Online(true)).await;

    let mut pace = crate::throttle::Pace::new(
        cs.settings.max_messages_per_s,
        cs.settings.message_burst,
        crate::db::now_ms(),
    );
    let mut in_flight: Option<InFlight> = None;
    let mut next_id: u64 = 0;
    let mut last_heard = Instant::now();
    let mut last_touch = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    let mut shutdown = cs.shutdown_requested();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let reason = loop {
        tokio::select! {
            _ = registration.replaced.notified() => {
                let _ = socket.send(Message::Close(None)).await;
                break "replaced by a new connection";
            }
            changed = shutdown.changed() => {
                let stopping = changed.is_err() || *shutdown.borrow();
                if !stopping {
                    continue;
                }
                let frame = axum::extract::ws::CloseFrame { code: 1001, reason: "server shutting down".into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break "server shutting down";
            }
            incoming = socket.next() => {
                let message = match incoming {
                    None => break "closed by the charger",
                    Some(Err(err)) => {
                        let text = err.to_string();
                        if text.contains("Message too long") || text.contains("Frame too long") {
                            // Past --ocpp-max-message-kib: say so (1009, RFC 6455) before closing.
                            tracing::warn!(charger.id = %charger, error = %text, "message too big: connection closed");
                            let frame = axum::extract::ws::CloseFrame { code: 1009, reason: "message too big".into() };
                            let _ = socket.send(Message::Close(Some(frame))).await;
                            break "message too big";
                        }
                        tracing::info!(charger.id = %charger, error = %text, "socket error");
                        break "socket error";
                    }
                    Some(Ok(m)) => m,
                };
                last_heard = Instant::now();
                ping_sent = None;
                if last_touch.elapsed() >= TOUCH_EVERY {
                    last_touch = Instant::now();
                    if let Err(err) = db::touch(&cs.db, &charger).await {
                        tracing::warn!(charger.id = %charger, error = %err, "could not record liveness");
                    }
                }
                let text = match message {
                    Message::Text(t) => t.to_string(),
                    Message::Binary(_) => {
                        // OCPP-J is text frames only.
                        let err = RpcError::new(frame::ErrorCode::FormatViolation, "OCPP-J messages are text frames");
                        if send_text(&cs, &link, &mut socket, frame::call_error("-1", &err, link.version)).await.is_err() {
                            break "socket error";
                        }
                        continue;
                    }
                    Message::Close(_) => break "closed by the charger",
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                // A charger sending faster than its allowance waits its turn: nothing is refused.
                let wait_ms = pace.take(crate::db::now_ms());
                if wait_ms > 0 {
                    metrics::counter!("ocpp_messages_paced_total").increment(1);
                    tokio::time::sleep(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))).await;
                }
                log_frame(&cs, &link, true, &text).await;
                let reply = match frame::decode(&text) {
                    Ok(Frame::Call { id, action, payload }) => {
                        Some(match cs.handle_call(&mut link, &action, payload).await {
                            Ok(result) => frame::call_result(&id, &result),
                            Err(err) => {
                                tracing::info!(charger.id = %charger, action, code = ?err.code, reason = %err.description, "CALLERROR sent");
                                frame::call_error(&id, &err, link.version)
                            }
                        })
                    }
                    Ok(Frame::CallResult { id, payload }) => {
                        settle(&charger, &mut in_flight, &id, CallOutcome::Answered(payload));
                        None
                    }
                    Ok(Frame::CallError { id, code, description, details }) => {
                        settle(&charger, &mut in_flight, &id, CallOutcome::CallError { code, description, details });
                        None
                    }
                    Err(bad) if bad.answerable => {
                        tracing::info!(charger.id = %charger, code = ?bad.error.code, reason = %bad.error.description, "malformed frame");
                        Some(frame::call_error(&bad.message_id, &bad.error, link.version))
                    }
                    Err(bad) => {
                        tracing::warn!(charger.id = %charger, reason = %bad.error.description, "malformed answer ignored");
                        None
                    }
                };
                if let Some(reply) = reply {
                    if send_text(&cs, &link, &mut socket, reply).await.is_err() {
                        break "socket error";
                    }
                }
            }
            // One CALL outstanding at a time: the next is taken from the registry's bounded queue
            // only once the last is answered, so a charger that is slow to answer makes callers
            // wait, then turns them away as busy, rather than piling calls up here.
            Some(call) = registration.calls.recv(), if in_flight.is_none() => {
                if !call.reply.is_closed() {
                    next_id += 1;
                    let id = format!("{}-{next_id}", registration.generation);
                    let text = frame::call(&id, &call.action, &call.payload);
                    if send_text(&cs, &link, &mut socket, text).await.is_err() {
                        let _ = call.reply.send(CallOutcome::Disconnected);
                        break "socket error";
                    }
                    in_flight =
                        Some(InFlight { id, action: call.action, sent: Instant::now(), reply: call.reply });
                }
            }
            _ = ticker.tick() => {
                if let Some(f) = &in_flight {
                    if f.sent.elapsed() >= cs.settings.call_timeout {
                        if let Some(f) = in_flight.take() {
                            tracing::warn!(charger.id = %charger, action = %f.action, "charger did not answer in time");
                            let _ = f.reply.send(CallOutcome::Timeout);
                        }
                    }
                }
                let quiet = last_heard.elapsed();
                if quiet >= cs.settings.ping_interval * 2 + Duration::from_secs(5) {
                    break "no sign of life";
                }
                if quiet >= cs.settings.ping_interval && ping_sent.is_none() {
                    ping_sent = Some(Instant::now());
                    if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                        break "socket error";
                    }
                }
            }
        }
    };

    if let Some(f) = in_flight.take() {
        let _ = f.reply.send(CallOutcome::Disconnected);
    }
    registration.calls.close();
    while let Ok(call) = registration.calls.try_recv() {
        let _ = call.reply.send(CallOutcome::Disconnected);
    }
    if cs.registry.unregister(&charger, registration.generation) {
        cs.tell(&link, super::report::ChargerEvent::Online(false)).await;
        if let Err(err) = db::set_online(&cs.db, &charger, &version_text, false).await {
            tracing::error!(charger.id = %charger, error = %err, "could not mark charger offline");
        }
    }
    tracing::info!(charger.id = %charger, reason, "disconnected");
}

fn settle(
    charger: &app::domain::ChargerId,
    in_flight: &mut Option<InFlight>,
    id: &str,
    outcome: CallOutcome,
) {
    match in_flight.take() {
        Some(f) if f.id == id => {
            let _ = f.reply.send(outcome);
        }
        other => {
            // A late answer to a call that timed out, or one we never sent: log it, change nothing.
            tracing::warn!(charger.id = %charger, message.id = id, "answer to no outstanding call");
            *in_flight = other;
        }
    }
}

async fn send_text<S>(cs: &CentralSystem, link: &Link, socket: &mut S, text: String) -> Result<(), ()>
where
    S: Sink<Message> + Unpin,
{
    log_frame(cs, link, false, &text).await;
    socket.send(Message::Text(text.into())).await.map_err(|_| ())
}

async fn log_frame(cs: &CentralSystem, link: &Link, inbound: bool, text: &str) {
    // Secrets and id tags are not kept, nor all of an oversized frame.
    if let Err(err) = db::log_frame(&cs.db, &link.charger, inbound, &super::frame_log::for_log(text)).await {
        tracing::warn!(charger.id = %link.charger, error = %err, "could not log frame");
    }
}
