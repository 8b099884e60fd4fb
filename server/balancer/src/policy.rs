//! Our site policy: how a live site's balancer is tuned beyond what its electrics say (how far the
//! store may rise unseen, how long a limit holds without us, how often meters are read). One
//! place, so the shell that runs the sites and anything that replays them read the same numbers.

use crate::config::SiteConfig;
use crate::store::RiseLearning;
use crate::units::{DeciAmps, Millis};

/// How often a charger's meter is read (seconds): at this interval the engine's kept readings
/// reach 80 s back, past a late incomer reading, and a car's maximum is learned within its window.
pub const METER_SAMPLE_INTERVAL_S: u32 = 10;

/// How far a charger's clock may stray from ours, at most, for the end of a leased limit to rest
/// on it (seconds): a lease is told this much short, and handovers may state no larger skew.
pub const LEASE_CLOCK_MARGIN_S: u64 = 30;

/// How the site's store meter reaches us, which decides how its readings are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMeterCadence {
    /// A site meter posting about once a minute.
    SiteMeter,
    /// A charger wired to the store meter, asked for a reading every [`METER_SAMPLE_INTERVAL_S`].
    Charger,
}

impl StoreMeterCadence {
    /// The usual time between two of its readings.
    pub fn interval(self) -> Millis {
        match self {
            StoreMeterCadence::SiteMeter => Millis::from_secs(60),
            StoreMeterCadence::Charger => Millis::from_secs(u64::from(METER_SAMPLE_INTERVAL_S)),
        }
    }
}

/// The tuning every live site gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SitePolicy {
    /// Between readings the store may have risen by this much a minute (zero for a fresh reading),
    /// until its meter has taught us better.
    pub store_rise_per_min: DeciAmps,
    /// ... and by this much at most.
    pub store_max_rise: DeciAmps,
    /// The slowest a decrease of ours takes to land.
    pub reaction_time: Millis,
    /// How far ahead the learned rise looks: a reading's usual age plus our reaction.
    pub rise_horizon: Millis,
    /// A charger that loses us drops our limit within this ...
    pub lease: Millis,
    /// ... or within these shorter holds where the store's meter has shown it climbing further
    /// within the longer one than the plan allows for (longest first).
    pub holds: Vec<Millis>,
}

impl Default for SitePolicy {
    fn default() -> Self {
        SitePolicy {
            store_rise_per_min: DeciAmps::from_amps(14),
            store_max_rise: DeciAmps::from_amps(16),
            reaction_time: Millis::from_secs(10),
            rise_horizon: Millis::from_secs(75),
            // Renewed every five minutes; told 30 s short, renewed with 60 s to spare.
            lease: Millis::from_secs(600),
            holds: [600, 300, 180].map(Millis::from_secs).to_vec(),
        }
    }
}

impl SitePolicy {
    /// Tunes a site's configuration (built from its electrics) by this policy.
    ///
    /// After a day of readings the site's own meter says how far its store rises in a minute and a
    /// bit, from the higher of its latest two readings, the second highest of its last five and the
    /// third highest of its last ten (the lowest bound counts), counted in the meter's own readings
    /// ([`RiseLearning::from_four_weeks`]); until then, and for older readings, the configured rise.
    pub fn apply(&self, config: &mut SiteConfig, cadence: StoreMeterCadence) {
        config.store.rise_per_min = self.store_rise_per_min;
        config.store.max_rise = self.store_max_rise;
        config.store.reaction_time = self.reaction_time;
        config.lease = self.lease;
        let mut learn = RiseLearning::from_four_weeks(self.rise_horizon, cadence.interval());
        learn.holds = self.holds.clone();
        config.store.learn_rise = Some(learn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Lens;
    use crate::units::PerPhase;

    #[test]
    fn the_store_lenses_are_counted_in_the_meters_own_readings() {
        let lenses = |cadence| {
            let mut config =
                SiteConfig::with_defaults(PerPhase::uniform(DeciAmps::from_amps(100)), vec![], vec![]);
            SitePolicy::default().apply(&mut config, cadence);
            let learn = config.store.learn_rise.expect("the policy learns the rise");
            learn.lenses.iter().map(|l: &Lens| (l.window.0 / 1000, l.rank)).collect::<Vec<_>>()
        };
        assert_eq!(lenses(StoreMeterCadence::SiteMeter), vec![(60, 1), (300, 2), (600, 3)]);
        assert_eq!(lenses(StoreMeterCadence::Charger), vec![(10, 1), (50, 2), (100, 3)]);
    }

    #[test]
    fn a_site_gets_the_policys_rise_lease_and_holds() {
        let mut config =
            SiteConfig::with_defaults(PerPhase::uniform(DeciAmps::from_amps(100)), vec![], vec![]);
        SitePolicy::default().apply(&mut config, StoreMeterCadence::SiteMeter);
        assert_eq!(config.store.rise_per_min, DeciAmps::from_amps(14));
        assert_eq!(config.store.max_rise, DeciAmps::from_amps(16));
        assert_eq!(config.store.reaction_time, Millis::from_secs(10));
        assert_eq!(config.lease, Millis::from_secs(600));
        let learn = config.store.learn_rise.expect("learned");
        assert_eq!(learn.horizon, Millis::from_secs(75));
        assert_eq!(learn.holds, [600, 300, 180].map(Millis::from_secs).to_vec());
    }
}
