//! What a charging session costs. Pure arithmetic on integer minor units.

use super::money::{Currency, Money};
use serde::{Deserialize, Serialize};

/// The prices a site charges drivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tariff {
    pub currency: Currency,
    /// Price of one kWh, in minor units.
    pub per_kwh_minor: i64,
    /// A flat fee per session, in minor units.
    pub session_fee_minor: i64,
}

impl Tariff {
    /// The energy part of a price: `energy_wh × per_kWh / 1000`, rounded half up to a minor unit.
    pub fn energy_cost(&self, energy_wh: i64) -> Money {
        let numerator = i128::from(energy_wh.max(0)) * i128::from(self.per_kwh_minor);
        let minor = (numerator + 500) / 1000;
        Money::new(i64::try_from(minor).unwrap_or(i64::MAX), self.currency)
    }

    /// Everything a session of `energy_wh` costs.
    pub fn session_cost(&self, energy_wh: i64) -> Money {
        let energy = self.energy_cost(energy_wh);
        Money::new(energy.minor.saturating_add(self.session_fee_minor), self.currency)
    }

    pub fn per_kwh(&self) -> Money {
        Money::new(self.per_kwh_minor, self.currency)
    }

    pub fn session_fee(&self) -> Money {
        Money::new(self.session_fee_minor, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tariff(per_kwh: i64, fee: i64) -> Tariff {
        Tariff { currency: Currency::EUR, per_kwh_minor: per_kwh, session_fee_minor: fee }
    }

    #[test]
    fn prices_energy_with_half_up_rounding() {
        let cases = [(0, 0), (1000, 49), (10, 0), (11, 1), (1_500, 74), (12_345, 605)];
        for (wh, want) in cases {
            assert_eq!(tariff(49, 0).energy_cost(wh).minor, want, "{wh} Wh");
        }
    }

    #[test]
    fn session_cost_adds_the_flat_fee() {
        assert_eq!(tariff(50, 99).session_cost(2_000).minor, 199);
    }

    proptest! {
        #[test]
        fn cost_never_decreases_with_more_energy(a in 0i64..10_000_000, extra in 0i64..1_000_000, p in 0i64..500) {
            let t = tariff(p, 0);
            prop_assert!(t.energy_cost(a + extra).minor >= t.energy_cost(a).minor);
        }

        #[test]
        fn cost_is_never_negative(wh in -1_000i64..10_000_000, p in 0i64..500, fee in 0i64..1_000) {
            prop_assert!(tariff(p, fee).session_cost(wh).minor >= 0);
        }
    }
}
