//! Typed units and identifiers.
//!
//! Currents are integer deciamps: OCPP schedules carry amps with one decimal, and
//! integer arithmetic means no rounding can ever turn a feasible budget into an
//! overload. Time is integer milliseconds passed in by the caller; the core never
//! reads a clock.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, Sub};

/// A current per phase, in tenths of an ampere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeciAmps(u32);

impl DeciAmps {
    /// Zero amps: a paused session.
    pub const ZERO: DeciAmps = DeciAmps(0);
    /// The IEC 61851 minimum pilot current, 6 A.
    pub const IEC_MIN: DeciAmps = DeciAmps(60);

    /// From tenths of an ampere.
    pub const fn new(deci: u32) -> Self {
        DeciAmps(deci)
    }
    /// From whole amps.
    pub const fn from_amps(amps: u32) -> Self {
        DeciAmps(amps * 10)
    }
    /// From a measured float, rounded down (never over-states a limit).
    /// Negative and NaN readings become zero.
    pub fn from_f64_floor(amps: f64) -> Self {
        if amps.is_nan() || amps <= 0.0 {
            return DeciAmps(0);
        }
        DeciAmps((amps * 10.0 + 1e-9).floor().min(u32::MAX as f64) as u32)
    }
    /// From a measured float, rounded up (never under-states a load).
    pub fn from_f64_ceil(amps: f64) -> Self {
        if amps.is_nan() || amps <= 0.0 {
            return DeciAmps(0);
        }
        DeciAmps((amps * 10.0 - 1e-9).ceil().min(u32::MAX as f64) as u32)
    }
    /// Tenths of an ampere.
    pub const fn get(self) -> u32 {
        self.0
    }
    /// Amps as a float, for display and for the OCPP `limit` field (one decimal).
    pub fn as_amps(self) -> f64 {
        f64::from(self.0) / 10.0
    }
    /// Subtraction clamped at zero.
    pub fn saturating_sub(self, o: DeciAmps) -> DeciAmps {
        DeciAmps(self.0.saturating_sub(o.0))
    }
    /// Rounds down to a multiple of `step` (e.g. 10 = whole amps for chargers that ignore decimals).
    pub fn floor_to(self, step: DeciAmps) -> DeciAmps {
        if step.0 <= 1 {
            self
        } else {
            DeciAmps(self.0 / step.0 * step.0)
        }
    }
}

impl Add for DeciAmps {
    type Output = DeciAmps;
    fn add(self, o: DeciAmps) -> DeciAmps {
        DeciAmps(self.0.saturating_add(o.0))
    }
}
impl Sub for DeciAmps {
    type Output = DeciAmps;
    /// Saturating: a current is never negative.
    fn sub(self, o: DeciAmps) -> DeciAmps {
        self.saturating_sub(o)
    }
}
impl fmt::Display for DeciAmps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} A", self.0 / 10, self.0 % 10)
    }
}

/// A site phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Site phase L1.
    L1,
    /// Site phase L2.
    L2,
    /// Site phase L3.
    L3,
}

impl Phase {
    /// All three phases in order.
    pub const ALL: [Phase; 3] = [Phase::L1, Phase::L2, Phase::L3];
    /// 0, 1 or 2.
    pub const fn index(self) -> usize {
        match self {
            Phase::L1 => 0,
            Phase::L2 => 1,
            Phase::L3 => 2,
        }
    }
}

/// One current per site phase (a limit, a load, a reading).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerPhase(pub [DeciAmps; 3]);

impl PerPhase {
    /// The same current on every phase.
    pub const fn uniform(a: DeciAmps) -> Self {
        PerPhase([a, a, a])
    }
    /// The value on one phase.
    pub fn get(&self, p: Phase) -> DeciAmps {
        self.0[p.index()]
    }
}

/// A set of site phases a load is counted on (bit i = phase i).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PhaseSet(u8);

impl PhaseSet {
    /// All three phases: a 3-phase car, or one whose phase count is not known yet.
    pub const ALL: PhaseSet = PhaseSet(0b111);
    /// A single phase.
    pub const fn single(p: Phase) -> Self {
        PhaseSet(1 << p.index())
    }
    /// Whether `p` is in the set.
    pub const fn contains(self, p: Phase) -> bool {
        self.0 & (1 << p.index()) != 0
    }
    /// How many phases (1 or 3 in practice).
    pub const fn count(self) -> u8 {
        self.0.count_ones() as u8
    }
    /// Iterates the phases in the set.
    pub fn iter(self) -> impl Iterator<Item = Phase> {
        Phase::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

/// How a connector's L1, L2, L3 map to site phases. A 1-phase car loads `rotation[0]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation(pub [Phase; 3]);

impl Rotation {
    /// L1-L2-L3 wired straight through.
    pub const STRAIGHT: Rotation = Rotation([Phase::L1, Phase::L2, Phase::L3]);
}

/// A point in time or a duration, in milliseconds. The caller owns the clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Millis(pub u64);

impl Millis {
    /// From whole seconds.
    pub const fn from_secs(s: u64) -> Self {
        Millis(s * 1000)
    }
    /// `self - earlier`, zero if `earlier` is in the future.
    pub fn since(self, earlier: Millis) -> Millis {
        Millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add for Millis {
    type Output = Millis;
    fn add(self, o: Millis) -> Millis {
        Millis(self.0.saturating_add(o.0))
    }
}

macro_rules! id_newtype {
    ($(#[$m:meta])* $name:ident, $inner:ty) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub $inner);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}#{}", stringify!($name), self.0)
            }
        }
    };
}

id_newtype!(
    /// A connector (EVSE) of the site, as the balancer knows it.
    ConnectorKey, u32
);
id_newtype!(
    /// A charger (one OCPP connection; owns one or more connectors).
    ChargerKey, u32
);
id_newtype!(
    /// A feeder or breaker in the site's circuit tree.
    CircuitId, u32
);
id_newtype!(
    /// A charging session (transaction).
    SessionKey, u64
);
id_newtype!(
    /// A command the balancer emitted; the caller acks or rejects it by this id.
    CommandId, u64
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_conversions_round_the_safe_way() {
        assert_eq!(DeciAmps::from_f64_floor(6.99), DeciAmps::new(69));
        assert_eq!(DeciAmps::from_f64_ceil(6.91), DeciAmps::new(70));
        assert_eq!(DeciAmps::from_f64_ceil(6.9), DeciAmps::new(69));
        assert_eq!(DeciAmps::from_f64_floor(-3.0), DeciAmps::ZERO);
        assert_eq!(DeciAmps::new(167).floor_to(DeciAmps::new(10)), DeciAmps::new(160));
        assert_eq!(DeciAmps::new(5) - DeciAmps::new(7), DeciAmps::ZERO);
    }

    #[test]
    fn phase_sets() {
        assert_eq!(PhaseSet::ALL.count(), 3);
        let s = PhaseSet::single(Phase::L2);
        assert!(s.contains(Phase::L2) && !s.contains(Phase::L1));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![Phase::L2]);
    }
}
