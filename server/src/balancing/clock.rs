//! The shell's one clock. The balancer counts milliseconds of its own ([`Millis`], monotonic from
//! the process's start, with room before it for the stored meter history); around it the shell
//! meets tokio's `Instant` (when a site's task wakes), UTC milliseconds (what storage keeps and a
//! driver states) and chrono's UTC (what a charger stamps, where a schedule starts). Every
//! conversion between them is here, and each reading of the clock gives all of them at once.

use crate::balancer::store::MEMORY_DAYS;
use crate::balancer::units::Millis;
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

/// The balancer's clock starts this far in: the store meter's stored history is fed to it at
/// times before the process started.
const HISTORY_ROOM: Duration = Duration::from_secs((MEMORY_DAYS + 1) * 24 * 3600);

#[derive(Clone, Copy, Debug)]
pub(crate) struct ShellClock {
    epoch: Instant,
}

/// One reading of the clock: the balancer's time and the wall's, at the same moment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now {
    pub balancer: Millis,
    pub utc: DateTime<Utc>,
}

impl ShellClock {
    pub fn start() -> ShellClock {
        ShellClock { epoch: Instant::now() }
    }

    pub fn now(&self) -> Now {
        Now { balancer: self.balancer_now(), utc: Utc::now() }
    }

    /// The balancer's time now.
    pub fn balancer_now(&self) -> Millis {
        Millis(u64::try_from((self.epoch.elapsed() + HISTORY_ROOM).as_millis()).unwrap_or(u64::MAX))
    }

    /// The instant a balancer time stands for (when to wake for it).
    pub fn wake_at(&self, t: Millis) -> Instant {
        self.epoch + Duration::from_millis(t.0).saturating_sub(HISTORY_ROOM)
    }
}

impl Now {
    /// UTC milliseconds, as storage keeps them.
    pub fn utc_ms(&self) -> i64 {
        self.utc.timestamp_millis()
    }

    /// A UTC moment (storage's milliseconds) on the balancer's clock; `None` before its start.
    pub fn balancer_at(&self, utc_ms: i64) -> Option<Millis> {
        let from_now = utc_ms - self.utc_ms();
        if from_now >= 0 {
            Some(Millis(self.balancer.0.saturating_add(from_now.unsigned_abs())))
        } else {
            self.balancer.0.checked_sub(from_now.unsigned_abs()).map(Millis)
        }
    }

    /// A moment stated to come (a departure) on the balancer's clock: one already past is now.
    pub fn balancer_at_or_now(&self, utc_ms: i64) -> Millis {
        self.balancer_at(utc_ms.max(self.utc_ms())).unwrap_or(self.balancer)
    }

    /// How far a charger's stamp is from our clock, milliseconds (ahead positive).
    pub fn offset_ms(&self, stamped: DateTime<Utc>) -> i64 {
        (stamped - self.utc).num_milliseconds()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_utc_moment_lands_on_the_balancers_clock_as_far_from_now_as_it_is() {
        let now = Now {
            balancer: Millis(10_000_000),
            utc: DateTime::from_timestamp_millis(1_765_000_000_000).expect("a moment"),
        };
        assert_eq!(now.balancer_at(1_765_000_000_000), Some(Millis(10_000_000)));
        assert_eq!(now.balancer_at(1_765_000_060_000), Some(Millis(10_060_000)));
        assert_eq!(now.balancer_at(1_764_999_000_000), Some(Millis(9_000_000)));
        assert_eq!(now.balancer_at(1_765_000_000_000 - 10_000_001), None, "before the balancer's start");
        assert_eq!(now.balancer_at_or_now(1_764_999_000_000), Millis(10_000_000), "a past departure is now");
        let stamped = DateTime::from_timestamp_millis(1_765_000_002_500).expect("a moment");
        assert_eq!(now.offset_ms(stamped), 2_500);
    }

    #[test]
    fn the_balancer_clock_starts_after_room_for_the_stored_history() {
        let clock = ShellClock::start();
        let t = clock.balancer_now();
        assert!(t.0 >= u64::try_from(HISTORY_ROOM.as_millis()).expect("fits"));
        let wake = clock.wake_at(t);
        assert!(wake <= Instant::now() && wake >= clock.epoch);
    }
}
