//! Failure throttles: too many failures under one key (an account, an address, a charger id) in a
//! window lock that key out for a while. Pure: the caller passes the time. Its memory is bounded,
//! so a stranger trying endless keys fills it and no more: the keys that last failed longest ago
//! are forgotten first.

use std::collections::HashMap;

/// How many failures, over how long, lock a key out for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub max_failures: u32,
    pub window_ms: i64,
    pub lockout_ms: i64,
}

/// Whether a key may try now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Locked out for this many more milliseconds.
    LockedOut {
        remaining_ms: i64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: i64,
    failures: u32,
    locked_until: Option<i64>,
    last_failure: i64,
}

/// One rule over many keys.
#[derive(Debug)]
pub struct Throttle {
    rule: Rule,
    capacity: usize,
    entries: HashMap<String, Entry>,
}

impl Throttle {
    pub fn new(rule: Rule, capacity: usize) -> Throttle {
        Throttle { rule, capacity: capacity.max(1), entries: HashMap::new() }
    }

    pub fn check(&self, key: &str, now: i64) -> Verdict {
        match self.entries.get(key).and_then(|e| e.locked_until) {
            Some(until) if until > now => Verdict::LockedOut { remaining_ms: until - now },
            _ => Verdict::Allowed,
        }
    }

    /// A failure under `key`; the verdict after it.
    pub fn failed(&mut self, key: &str, now: i64) -> Verdict {
        if !self.entries.contains_key(key) && self.entries.len() >= self.capacity {
            self.make_room(now);
        }
        let rule = self.rule;
        let entry = self.entries.entry(key.to_owned()).or_insert(Entry {
            window_start: now,
            failures: 0,
            locked_until: None,
            last_failure: now,
        });
        if entry.locked_until.is_some_and(|until| until <= now) || now - entry.window_start >= rule.window_ms
        {
            // A lockout served or a quiet window: the count starts over.
            *entry = Entry { window_start: now, failures: 0, locked_until: None, last_failure: now };
        }
        entry.failures += 1;
        entry.last_failure = now;
        if entry.failures >= rule.max_failures && entry.locked_until.is_none() {
            entry.locked_until = Some(now + rule.lockout_ms);
        }
        self.check(key, now)
    }

    /// A success under `key`: its failures are forgiven (a lockout in force stays).
    pub fn succeeded(&mut self, key: &str, now: i64) {
        if self.check(key, now) == Verdict::Allowed {
            self.entries.remove(key);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets what no longer matters; if everything still does, the unlocked key that failed
    /// longest ago, so a flood of new keys cannot wash away a lockout (else the one ending soonest).
    fn make_room(&mut self, now: i64) {
        let rule = self.rule;
        let locked = |e: &Entry| e.locked_until.is_some_and(|until| until > now);
        self.entries.retain(|_, e| locked(e) || now - e.window_start < rule.window_ms);
        if self.entries.len() < self.capacity {
            return;
        }
        let victim = self
            .entries
            .iter()
            .min_by_key(|(_, e)| (locked(e), e.locked_until.unwrap_or(0), e.last_failure))
            .map(|(k, _)| k.clone());
        if let Some(key) = victim {
            self.entries.remove(&key);
        }
    }
}

/// Whole minutes until a lockout ends, rounded up: what a person is told.
pub fn minutes_left(remaining_ms: i64) -> u32 {
    u32::try_from((remaining_ms + 59_999) / 60_000).unwrap_or(u32::MAX)
}

/// Failures counted twice, shared by every request: by what is tried (an account, a charger id)
/// and by the address trying, each under its own rule. A panic while a lock was held leaves plain
/// counters behind, still usable.
pub struct KeyAndAddress {
    by_key: std::sync::Mutex<Throttle>,
    by_address: std::sync::Mutex<Throttle>,
}

fn lock(m: &std::sync::Mutex<Throttle>) -> std::sync::MutexGuard<'_, Throttle> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl KeyAndAddress {
    /// Each side holds at most 10,000 keys.
    pub fn new(by_key: Rule, by_address: Rule) -> KeyAndAddress {
        KeyAndAddress {
            by_key: std::sync::Mutex::new(Throttle::new(by_key, 10_000)),
            by_address: std::sync::Mutex::new(Throttle::new(by_address, 10_000)),
        }
    }

    /// `Some(ms)`: the key or the address is locked out for that much longer.
    pub fn locked_out(&self, key: &str, from: Option<std::net::IpAddr>, now: i64) -> Option<i64> {
        let by_key = lock(&self.by_key).check(key, now);
        let by_address =
            from.map_or(Verdict::Allowed, |ip| lock(&self.by_address).check(&ip.to_string(), now));
        [by_key, by_address]
            .into_iter()
            .filter_map(|v| match v {
                Verdict::LockedOut { remaining_ms } => Some(remaining_ms),
                Verdict::Allowed => None,
            })
            .max()
    }

    /// Counts one under both the key and the address.
    pub fn failed(&self, key: &str, from: Option<std::net::IpAddr>, now: i64) {
        lock(&self.by_key).failed(key, now);
        if let Some(ip) = from {
            lock(&self.by_address).failed(&ip.to_string(), now);
        }
    }

    /// The key's failures are forgiven (a lockout in force stays; the address's count stays).
    pub fn succeeded(&self, key: &str, now: i64) {
        lock(&self.by_key).succeeded(key, now);
    }
}

/// A token bucket that paces a stream of messages: `rate` a second on average, `burst` at once.
/// A message past the allowance waits its turn instead of being refused, so a flooding peer only
/// slows itself and nothing it sent is lost.
#[derive(Debug, Clone)]
pub struct Pace {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    last_ms: i64,
}

impl Pace {
    pub fn new(rate_per_s: u32, burst: u32, now_ms: i64) -> Pace {
        let burst = f64::from(burst.max(1));
        Pace { rate_per_s: f64::from(rate_per_s.max(1)), burst, tokens: burst, last_ms: now_ms }
    }

    /// Takes one message's token; how long to wait first (0: go now).
    pub fn take(&mut self, now_ms: i64) -> i64 {
        let elapsed_s = (now_ms - self.last_ms).max(0) as f64 / 1000.0;
        self.last_ms = now_ms;
        self.tokens = (self.tokens + elapsed_s * self.rate_per_s).min(self.burst);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            0
        } else {
            // In debt: wait until the bucket is back at zero.
            (-self.tokens / self.rate_per_s * 1000.0).ceil() as i64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: Rule = Rule { max_failures: 3, window_ms: 60_000, lockout_ms: 300_000 };

    #[test]
    fn the_nth_failure_in_a_window_locks_the_key_out_for_the_lockout() {
        let mut t = Throttle::new(RULE, 100);
        assert_eq!(t.failed("a", 0), Verdict::Allowed);
        assert_eq!(t.failed("a", 1_000), Verdict::Allowed);
        assert_eq!(t.failed("a", 2_000), Verdict::LockedOut { remaining_ms: 300_000 });
        assert_eq!(t.check("a", 2_000 + 299_999), Verdict::LockedOut { remaining_ms: 1 });
        assert_eq!(t.check("a", 2_000 + 300_000), Verdict::Allowed);
        assert_eq!(t.check("b", 2_000), Verdict::Allowed, "other keys are untouched");
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_lock() {
        let mut t = Throttle::new(RULE, 100);
        // Two failures in each minute-long window, then a quiet one: the count restarts each time.
        for i in 0..10 {
            assert_eq!(t.failed("a", i * 60_000), Verdict::Allowed, "failure {i}");
            assert_eq!(t.failed("a", i * 60_000 + 59_000), Verdict::Allowed, "failure {i}b");
        }
    }

    #[test]
    fn a_success_forgives_failures_but_not_a_lockout() {
        let mut t = Throttle::new(RULE, 100);
        t.failed("a", 0);
        t.failed("a", 1);
        t.succeeded("a", 2);
        assert_eq!(t.failed("a", 3), Verdict::Allowed, "the count started over");
        t.failed("a", 4);
        assert!(matches!(t.failed("a", 5), Verdict::LockedOut { .. }));
        t.succeeded("a", 6);
        assert!(matches!(t.check("a", 7), Verdict::LockedOut { .. }), "a lockout is served in full");
    }

    #[test]
    fn after_a_lockout_the_count_starts_over() {
        let mut t = Throttle::new(RULE, 100);
        for at in 0..3 {
            t.failed("a", at);
        }
        let after = 2 + 300_000;
        assert_eq!(t.failed("a", after), Verdict::Allowed);
    }

    #[test]
    fn a_pace_lets_a_burst_through_then_spaces_messages_at_its_rate() {
        let mut pace = Pace::new(10, 3, 0);
        assert_eq!([pace.take(0), pace.take(0), pace.take(0)], [0, 0, 0], "the burst goes at once");
        assert_eq!(pace.take(0), 100, "the fourth waits a tenth of a second");
        // It waited: the next is due another tenth later.
        assert_eq!(pace.take(100), 100);
        // A quiet second refills the bucket to its burst, no more.
        let later = 100 + 1_000;
        assert_eq!([pace.take(later), pace.take(later), pace.take(later)], [0, 0, 0]);
        assert!(pace.take(later) > 0);
    }

    #[test]
    fn a_flood_is_slowed_to_the_rate_over_time() {
        let mut pace = Pace::new(20, 60, 0);
        let mut now = 0;
        for _ in 0..1_000 {
            now += pace.take(now);
        }
        // 1,000 messages at 20 a second after a burst of 60: at least 47 s.
        assert!(now >= 46_900, "{now}");
    }

    #[test]
    fn memory_is_bounded_and_locked_keys_outlive_strangers() {
        let mut t = Throttle::new(RULE, 10);
        for at in 0..3 {
            t.failed("victim", at);
        }
        for i in 0..10_000 {
            t.failed(&format!("stranger-{i}"), 10 + i);
            assert!(t.len() <= 10);
        }
        assert!(
            matches!(t.check("victim", 10_010), Verdict::LockedOut { .. }),
            "a flood of new keys does not lift a lockout"
        );
    }
}
