//! What a stranger on the internet can do to the OCPP endpoint, bounded: failed handshakes lock a
//! charger id (and an address) out for a while before any password is hashed, each address holds
//! at most so many connections, and each connection's messages are paced.

use crate::throttle::{KeyAndAddress, Rule, Throttle, Verdict};
use app::domain::ChargerId;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Ten wrong passwords for one charger id in five minutes lock it for five; fifty from one address
/// lock the address. Each map holds at most 10,000 keys.
const FIVE_MINUTES_MS: i64 = 5 * 60 * 1000;

pub struct EdgeGuard {
    /// Failed handshakes, by charger id and by address.
    failures: KeyAndAddress,
    /// New chargers one address registered in the last hour; past the limit it waits.
    registrations: Mutex<Throttle>,
    connections: Mutex<HashMap<IpAddr, u32>>,
    max_per_address: u32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl EdgeGuard {
    pub fn new(max_per_address: u32, new_chargers_per_hour: u32) -> EdgeGuard {
        let rule =
            |max_failures| Rule { max_failures, window_ms: FIVE_MINUTES_MS, lockout_ms: FIVE_MINUTES_MS };
        EdgeGuard {
            failures: KeyAndAddress::new(rule(10), rule(50)),
            registrations: Mutex::new(Throttle::new(
                Rule {
                    max_failures: new_chargers_per_hour.max(1),
                    window_ms: 12 * FIVE_MINUTES_MS,
                    lockout_ms: 12 * FIVE_MINUTES_MS,
                },
                10_000,
            )),
            connections: Mutex::new(HashMap::new()),
            max_per_address: max_per_address.max(1),
        }
    }

    /// `Some(ms)`: this charger id or this address failed too often; try again after that long.
    pub fn locked_out(&self, charger: &ChargerId, from: Option<IpAddr>, now: i64) -> Option<i64> {
        self.failures.locked_out(charger.as_str(), from, now)
    }

    pub fn failed(&self, charger: &ChargerId, from: Option<IpAddr>, now: i64) {
        self.failures.failed(charger.as_str(), from, now);
    }

    /// `Some(ms)`: this address registered as many new chargers as it may for now.
    pub fn registrations_spent(&self, from: Option<IpAddr>, now: i64) -> Option<i64> {
        match from.map(|ip| lock(&self.registrations).check(&ip.to_string(), now)) {
            Some(Verdict::LockedOut { remaining_ms }) => Some(remaining_ms),
            _ => None,
        }
    }

    /// A new charger registered (automatically, or as a request waiting for an operator) from `from`.
    pub fn registered(&self, from: Option<IpAddr>, now: i64) {
        if let Some(ip) = from {
            lock(&self.registrations).failed(&ip.to_string(), now);
        }
    }

    pub fn succeeded(&self, charger: &ChargerId, now: i64) {
        self.failures.succeeded(charger.as_str(), now);
    }

    /// A connection from `from` may open, holding its place until the slot is dropped (`None`:
    /// that address holds as many as it may). An unknown address is not counted.
    pub fn open(self: &Arc<Self>, from: Option<IpAddr>) -> Option<ConnectionSlot> {
        let Some(ip) = from else { return Some(ConnectionSlot { guard: None, ip: None }) };
        let mut connections = lock(&self.connections);
        let held = connections.entry(ip).or_insert(0);
        if *held >= self.max_per_address {
            return None;
        }
        *held += 1;
        Some(ConnectionSlot { guard: Some(self.clone()), ip: Some(ip) })
    }

    /// Connections an address holds now.
    pub fn held_by(&self, ip: IpAddr) -> u32 {
        lock(&self.connections).get(&ip).copied().unwrap_or(0)
    }
}

/// One connection's place in its address's count; given back when dropped.
pub struct ConnectionSlot {
    guard: Option<Arc<EdgeGuard>>,
    ip: Option<IpAddr>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let (Some(guard), Some(ip)) = (&self.guard, self.ip) {
            let mut connections = lock(&guard.connections);
            if let Some(held) = connections.get_mut(&ip) {
                *held = held.saturating_sub(1);
                if *held == 0 {
                    connections.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_share_and_gets_each_back() {
        let guard = Arc::new(EdgeGuard::new(2, 100));
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let first = guard.open(Some(ip)).expect("first");
        let second = guard.open(Some(ip)).expect("second");
        assert!(guard.open(Some(ip)).is_none(), "a third is refused");
        assert!(guard.open(Some("192.0.2.8".parse().expect("ip"))).is_some(), "another address is not");
        drop(first);
        assert_eq!(guard.held_by(ip), 1);
        let third = guard.open(Some(ip));
        assert!(third.is_some(), "a place freed is taken again");
        drop((second, third));
        assert_eq!(guard.held_by(ip), 0);
    }

    #[test]
    fn wrong_passwords_lock_a_charger_id_out_before_any_hashing() {
        let guard = EdgeGuard::new(10, 100);
        let id = ChargerId::parse("CP-1").expect("id");
        let other = ChargerId::parse("CP-2").expect("id");
        for at in 0..9 {
            guard.failed(&id, None, at);
            assert_eq!(guard.locked_out(&id, None, at), None);
        }
        guard.failed(&id, None, 9);
        assert!(guard.locked_out(&id, None, 10).is_some());
        assert_eq!(guard.locked_out(&other, None, 10), None);
        assert_eq!(guard.locked_out(&id, None, 9 + FIVE_MINUTES_MS), None, "until the lockout ends");
    }

    #[test]
    fn an_address_registers_a_depots_worth_of_chargers_an_hour() {
        let guard = EdgeGuard::new(10, 100);
        let ip: IpAddr = "203.0.113.9".parse().expect("ip");
        for n in 0..99 {
            guard.registered(Some(ip), n);
            assert_eq!(guard.registrations_spent(Some(ip), n), None);
        }
        guard.registered(Some(ip), 99);
        assert!(guard.registrations_spent(Some(ip), 100).is_some());
        assert_eq!(guard.registrations_spent(Some("203.0.113.10".parse().expect("ip")), 100), None);
    }

    #[test]
    fn one_address_guessing_many_ids_is_locked_out_as_an_address() {
        let guard = EdgeGuard::new(10, 100);
        let ip: IpAddr = "198.51.100.1".parse().expect("ip");
        for n in 0..50 {
            guard.failed(&ChargerId::parse(&format!("GUESS-{n}")).expect("id"), Some(ip), n);
        }
        let fresh = ChargerId::parse("NEVER-TRIED").expect("id");
        assert!(guard.locked_out(&fresh, Some(ip), 60).is_some());
        assert_eq!(guard.locked_out(&fresh, None, 60), None);
    }
}
