//! The live connections, one per charger: how commands reach a charger, and how a new
//! connection replaces an old one.

use super::frame::OcppVersion;
use app::domain::ChargerId;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};

/// How a CALL we sent ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome {
    Answered(Value),
    CallError {
        code: String,
        description: String,
        details: Value,
    },
    Timeout,
    /// The connection went away before the charger answered.
    Disconnected,
}

/// A CALL waiting to go out on a connection.
#[derive(Debug)]
pub struct OutgoingCall {
    pub action: String,
    pub payload: Value,
    pub reply: oneshot::Sender<CallOutcome>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("charger {0} is not connected")]
    NotConnected(ChargerId),
    #[error("charger {0} has too many commands waiting")]
    Busy(ChargerId),
}

#[derive(Clone)]
struct Entry {
    generation: u64,
    version: OcppVersion,
    calls: mpsc::Sender<OutgoingCall>,
    replaced: Arc<Notify>,
}

/// Given to a connection task when it registers.
pub struct Registration {
    pub generation: u64,
    pub calls: mpsc::Receiver<OutgoingCall>,
    /// Notified when a newer connection of the same charger takes over.
    pub replaced: Arc<Notify>,
}

#[derive(Clone, Default)]
pub struct Registry {
    live: Arc<Mutex<HashMap<ChargerId, Entry>>>,
    generations: Arc<AtomicU64>,
}

/// Commands queued per connection beyond the one in flight.
const QUEUE: usize = 32;

impl Registry {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<ChargerId, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts/removes).
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new connection; an older one for the same charger is told to close.
    pub fn register(&self, charger: &ChargerId, version: OcppVersion) -> Registration {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(QUEUE);
        let replaced = Arc::new(Notify::new());
        let entry = Entry { generation, version, calls: tx, replaced: replaced.clone() };
        let mut live = self.live();
        if let Some(old) = live.insert(charger.clone(), entry) {
            old.replaced.notify_one();
        }
        metrics::gauge!("ocpp_connected_chargers").set(live.len() as f64);
        Registration { generation, calls: rx, replaced }
    }

    /// Removes a connection if it is still the current one; returns whether it was.
    pub fn unregister(&self, charger: &ChargerId, generation: u64) -> bool {
        let mut live = self.live();
        if live.get(charger).is_some_and(|e| e.generation == generation) {
            live.remove(charger);
            metrics::gauge!("ocpp_connected_chargers").set(live.len() as f64);
            true
        } else {
            false
        }
    }

    pub fn version_of(&self, charger: &ChargerId) -> Option<OcppVersion> {
        self.live().get(charger).map(|e| e.version)
    }

    pub fn is_connected(&self, charger: &ChargerId) -> bool {
        self.live().contains_key(charger)
    }

    pub fn connected(&self) -> usize {
        self.live().len()
    }

    /// Sends a CALL and waits for the charger's answer (the connection applies the timeout).
    pub async fn call(
        &self,
        charger: &ChargerId,
        action: &str,
        payload: Value,
        wait: Duration,
    ) -> Result<CallOutcome, CommandError> {
        Ok(self.enqueue(charger, action, payload)?.outcome(wait).await)
    }

    /// Queues a CALL now, without waiting: calls queued one after the other reach the charger in
    /// that order (a lower limit must not overtake a higher one sent later).
    pub fn enqueue(
        &self,
        charger: &ChargerId,
        action: &str,
        payload: Value,
    ) -> Result<PendingCall, CommandError> {
        let sender = self
            .live()
            .get(charger)
            .map(|e| e.calls.clone())
            .ok_or_else(|| CommandError::NotConnected(charger.clone()))?;
        let (reply, answer) = oneshot::channel();
        sender.try_send(OutgoingCall { action: action.to_owned(), payload, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => CommandError::Busy(charger.clone()),
            mpsc::error::TrySendError::Closed(_) => CommandError::NotConnected(charger.clone()),
        })?;
        Ok(PendingCall { answer })
    }
}

/// A queued CALL whose answer has not come yet.
pub struct PendingCall {
    answer: oneshot::Receiver<CallOutcome>,
}

impl PendingCall {
    /// The charger's answer. The connection answers every queued call (Timeout or Disconnected
    /// at worst); the outer timeout only guards against a connection task that died without
    /// answering.
    pub async fn outcome(self, wait: Duration) -> CallOutcome {
        match tokio::time::timeout(wait * 3 + Duration::from_secs(5), self.answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => CallOutcome::Disconnected,
            Err(_) => CallOutcome::Timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ChargerId {
        ChargerId::parse(s).expect("valid")
    }

    #[tokio::test]
    async fn a_new_connection_replaces_the_old_one() {
        let registry = Registry::default();
        let first = registry.register(&id("A"), OcppVersion::V16);
        let second = registry.register(&id("A"), OcppVersion::V201);
        // The first is told to go, and its late unregister does not remove the second.
        tokio::time::timeout(Duration::from_secs(1), first.replaced.notified()).await.expect("notified");
        assert!(!registry.unregister(&id("A"), first.generation));
        assert_eq!(registry.version_of(&id("A")), Some(OcppVersion::V201));
        assert!(registry.unregister(&id("A"), second.generation));
        assert!(!registry.is_connected(&id("A")));
    }

    #[tokio::test]
    async fn calls_to_an_offline_charger_fail_at_once() {
        let registry = Registry::default();
        let err = registry.call(&id("B"), "Reset", serde_json::json!({}), Duration::from_secs(30)).await;
        assert_eq!(err, Err(CommandError::NotConnected(id("B"))));
    }

    #[tokio::test]
    async fn calls_reach_the_connection_and_its_answer_comes_back() {
        let registry = Registry::default();
        let mut reg = registry.register(&id("C"), OcppVersion::V16);
        let task = tokio::spawn(async move {
            let call = reg.calls.recv().await.expect("a call");
            assert_eq!(call.action, "Reset");
            let _ = call.reply.send(CallOutcome::Answered(serde_json::json!({"status": "Accepted"})));
        });
        let outcome = registry
            .call(&id("C"), "Reset", serde_json::json!({"type": "Soft"}), Duration::from_secs(1))
            .await;
        assert_eq!(outcome, Ok(CallOutcome::Answered(serde_json::json!({"status": "Accepted"}))));
        task.await.expect("task");
    }

    #[tokio::test]
    async fn calls_queued_in_turn_arrive_in_that_order() {
        let registry = Registry::default();
        let mut reg = registry.register(&id("D"), OcppVersion::V16);
        let first =
            registry.enqueue(&id("D"), "SetChargingProfile", serde_json::json!({"n": 1})).expect("queued");
        let second =
            registry.enqueue(&id("D"), "SetChargingProfile", serde_json::json!({"n": 2})).expect("queued");
        // The later call's waiter is polled first; the order on the wire is still the queue's.
        let waits = tokio::spawn(async move {
            (second.outcome(Duration::from_secs(1)).await, first.outcome(Duration::from_secs(1)).await)
        });
        for n in [1, 2] {
            let call = reg.calls.recv().await.expect("a call");
            assert_eq!(call.payload["n"], n);
            let _ = call.reply.send(CallOutcome::Answered(serde_json::json!({"n": n})));
        }
        let (second, first) = waits.await.expect("task");
        assert_eq!(
            (first, second),
            (
                CallOutcome::Answered(serde_json::json!({"n": 1})),
                CallOutcome::Answered(serde_json::json!({"n": 2}))
            )
        );
    }
}
