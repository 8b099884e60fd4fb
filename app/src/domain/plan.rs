//! A driver's plan for a charge, as typed on the phone after scanning the charger's QR code: the
//! wall-clock time at the site when they leave, and how much energy they want. The balancer
//! shares the site's power by it (a car that must leave soon with much to take gets more).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The most energy a driver may ask for in one stop: more than any car's battery takes.
pub const MAX_PLAN_ENERGY_WH: u32 = 200_000;

/// A time of day at the site, to the minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WallClock {
    hour: u8,
    minute: u8,
}

impl WallClock {
    pub fn new(hour: u8, minute: u8) -> Result<Self, PlanError> {
        if hour < 24 && minute < 60 {
            Ok(Self { hour, minute })
        } else {
            Err(PlanError::BadTime(format!("{hour:02}:{minute:02}")))
        }
    }

    /// `HH:MM` (what a phone's time picker sends), also `H:MM` and `HH:MM:SS` (seconds dropped).
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        let bad = || PlanError::BadTime(text.to_owned());
        let mut parts = text.trim().split(':');
        let (Some(h), Some(m)) = (parts.next(), parts.next()) else { return Err(bad()) };
        let seconds_ok = match parts.next() {
            None => true,
            Some(s) => s.len() == 2 && s.parse::<u8>().is_ok_and(|s| s < 60) && parts.next().is_none(),
        };
        let digits = |s: &str, max_len: usize| {
            (1..=max_len).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !seconds_ok || !digits(h, 2) || m.len() != 2 || !digits(m, 2) {
            return Err(bad());
        }
        Self::new(h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?).map_err(|_| bad())
    }

    pub fn hour(self) -> u8 {
        self.hour
    }

    pub fn minute(self) -> u8 {
        self.minute
    }
}

impl fmt::Display for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{0:?} is not a time of day like 17:30")]
    BadTime(String),
    #[error("{0:?} is not an amount of energy like 20 or 12.5 (kWh)")]
    BadEnergy(String),
    #[error("{kwh} kWh is not above 0 and at most {} kWh", MAX_PLAN_ENERGY_WH / 1000)]
    EnergyOutOfRange { kwh: String },
    #[error("say when you leave, how much energy you want, or both")]
    Empty,
}

/// Kilowatt-hours as typed (`20`, `12.5`, `12,5`) to watt-hours, without floating point; `None`
/// when left empty.
pub fn parse_energy_kwh(text: &str) -> Result<Option<u32>, PlanError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || PlanError::BadEnergy(text.to_owned());
    let normalised = text.replace(',', ".");
    let (whole, fraction) = normalised.split_once('.').unwrap_or((&normalised, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty()
        || !all_digits(whole)
        || !all_digits(fraction)
        || fraction.len() > 3
    {
        return Err(bad());
    }
    // Anything longer than the maximum's digits is out of range whatever it says.
    let out_of_range = || PlanError::EnergyOutOfRange { kwh: text.to_owned() };
    let whole: u32 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| out_of_range())? };
    let milli: u32 = format!("{fraction:0<3}").parse().map_err(|_| bad())?;
    let wh = whole.checked_mul(1000).and_then(|w| w.checked_add(milli)).ok_or_else(out_of_range)?;
    if wh == 0 || wh > MAX_PLAN_ENERGY_WH {
        return Err(out_of_range());
    }
    Ok(Some(wh))
}

/// What the driver typed, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanInput {
    pub leave_at: Option<WallClock>,
    pub energy_wh: Option<u32>,
}

impl PlanInput {
    pub fn parse(leave_at: &str, energy_kwh: &str) -> Result<Self, PlanError> {
        let leave_at = if leave_at.trim().is_empty() { None } else { Some(WallClock::parse(leave_at)?) };
        let energy_wh = parse_energy_kwh(energy_kwh)?;
        if leave_at.is_none() && energy_wh.is_none() {
            return Err(PlanError::Empty);
        }
        Ok(Self { leave_at, energy_wh })
    }
}

/// Where a driver's plan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlanState {
    /// Stated before the car started: the next session on this connector takes it, until then.
    WaitingForCar { until: WallClock },
    /// The session it belongs to is running: the balancer shares by it.
    Charging,
    /// That session has ended.
    Ended,
}

/// A driver's plan as their phone shows it, in the site's local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverPlan {
    pub state: PlanState,
    pub leave_at: Option<WallClock>,
    /// The departure is on a later day than today at the site (it was stated for after midnight).
    pub leave_tomorrow: bool,
    pub energy_wh: Option<u32>,
}

impl DriverPlan {
    /// The plan in a sentence, as the driver reads it back.
    pub fn summary(&self) -> String {
        let energy = self.energy_wh.map(kwh_text);
        let leave =
            self.leave_at.map(|t| if self.leave_tomorrow { format!("{t} tomorrow") } else { t.to_string() });
        let what = match (energy, leave) {
            (Some(e), Some(l)) => format!("{e} by {l}"),
            (Some(e), None) => e,
            (None, Some(l)) => format!("as much as we can by {l}"),
            (None, None) => "as much as we can".to_owned(),
        };
        match self.state {
            PlanState::WaitingForCar { until } => {
                format!("Saved: {what}. Start charging here by {until} and we will plan your charge by it.")
            }
            PlanState::Charging => format!("Your charge is planned: {what}."),
            PlanState::Ended => format!("Your last charge here was planned: {what}. It has ended."),
        }
    }
}

/// Watt-hours as kilowatt-hours for people, to a tenth where it is not whole.
pub fn kwh_text(wh: u32) -> String {
    let tenths = (wh + 50) / 100;
    if tenths.is_multiple_of(10) {
        format!("{} kWh", tenths / 10)
    } else {
        format!("{}.{} kWh", tenths / 10, tenths % 10)
    }
}

/// How much larger a running session's share is, and how late it is paused: 0 (normal) up to
/// [`SessionPriority::MAX`]. The one rule for the operator API and the console alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u8")]
pub struct SessionPriority(u8);

/// A priority outside `0..=SessionPriority::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("priority {0} is not between 0 and {max}", max = SessionPriority::MAX)]
pub struct PriorityOutOfRange(pub i64);

impl SessionPriority {
    /// The highest priority a session may be given.
    pub const MAX: u8 = 3;
    pub const NORMAL: SessionPriority = SessionPriority(0);

    pub fn new(value: i64) -> Result<SessionPriority, PriorityOutOfRange> {
        u8::try_from(value)
            .ok()
            .filter(|p| *p <= Self::MAX)
            .map(SessionPriority)
            .ok_or(PriorityOutOfRange(value))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<i64> for SessionPriority {
    type Error = PriorityOutOfRange;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        SessionPriority::new(value)
    }
}

impl From<SessionPriority> for u8 {
    fn from(p: SessionPriority) -> u8 {
        p.0
    }
}

impl From<SessionPriority> for i64 {
    fn from(p: SessionPriority) -> i64 {
        i64::from(p.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_priority_is_0_to_3_whichever_caller_states_it() {
        assert_eq!(SessionPriority::new(0), Ok(SessionPriority::NORMAL));
        assert_eq!(SessionPriority::new(3).map(SessionPriority::get), Ok(3));
        for bad in [-1, 4, 256, i64::MAX] {
            let err = SessionPriority::new(bad).expect_err("out of range");
            assert!(err.to_string().contains("priority") && err.to_string().contains("0 and 3"), "{err}");
        }
        let read: Result<SessionPriority, _> = serde_json::from_str("4");
        assert!(read.is_err(), "deserialised through the same rule");
        assert_eq!(serde_json::to_string(&SessionPriority::new(2).expect("in range")).expect("json"), "2");
    }

    #[test]
    fn times_of_day_as_phones_send_them() {
        for (text, want) in [
            ("17:30", (17, 30)),
            ("07:05", (7, 5)),
            ("7:05", (7, 5)),
            ("23:59:00", (23, 59)),
            (" 00:00 ", (0, 0)),
        ] {
            let t = WallClock::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((t.hour(), t.minute()), want, "{text}");
        }
        for text in
            ["", "24:00", "12:60", "12", "12:5", "1730", "ab:cd", "12:30:61", "12:30:00:00", "+1:30", "-1:30"]
        {
            assert!(matches!(WallClock::parse(text), Err(PlanError::BadTime(_))), "{text:?} accepted");
        }
        assert_eq!(WallClock::parse("7:05").map(|t| t.to_string()), Ok("07:05".to_owned()));
    }

    #[test]
    fn energy_is_read_exactly_in_watt_hours() {
        for (text, want) in [
            ("20", 20_000),
            ("12.5", 12_500),
            ("12,5", 12_500),
            ("0.001", 1),
            (".5", 500),
            ("200", 200_000),
            ("7.25", 7_250),
        ] {
            assert_eq!(parse_energy_kwh(text), Ok(Some(want)), "{text}");
        }
        assert_eq!(parse_energy_kwh("  "), Ok(None));
        for text in ["abc", "1.2.3", "-5", "1e3", "12.3456", ".", "5 kWh"] {
            assert!(matches!(parse_energy_kwh(text), Err(PlanError::BadEnergy(_))), "{text:?} accepted");
        }
        for text in ["0", "0.0", "200.001", "99999999999"] {
            assert!(
                matches!(parse_energy_kwh(text), Err(PlanError::EnergyOutOfRange { .. })),
                "{text:?} accepted"
            );
        }
    }

    #[test]
    fn a_plan_says_something() {
        assert_eq!(PlanInput::parse("", ""), Err(PlanError::Empty));
        let p = PlanInput::parse("17:30", "").expect("time alone");
        assert_eq!((p.leave_at, p.energy_wh), (Some(WallClock::new(17, 30).expect("valid")), None));
        let p = PlanInput::parse("", "20").expect("energy alone");
        assert_eq!((p.leave_at, p.energy_wh), (None, Some(20_000)));
        assert!(PlanInput::parse("25:00", "20").is_err());
    }

    #[test]
    fn a_plan_reads_back_in_plain_words() {
        let at = |h, m| WallClock::new(h, m).expect("valid");
        let plan = DriverPlan {
            state: PlanState::WaitingForCar { until: at(9, 15) },
            leave_at: Some(at(17, 30)),
            leave_tomorrow: false,
            energy_wh: Some(12_500),
        };
        assert_eq!(
            plan.summary(),
            "Saved: 12.5 kWh by 17:30. Start charging here by 09:15 and we will plan your charge by it."
        );
        let plan = DriverPlan { state: PlanState::Charging, leave_tomorrow: true, energy_wh: None, ..plan };
        assert_eq!(plan.summary(), "Your charge is planned: as much as we can by 17:30 tomorrow.");
        assert_eq!(kwh_text(20_000), "20 kWh");
        assert_eq!(kwh_text(19_960), "20 kWh");
        assert_eq!(kwh_text(7_250), "7.3 kWh");
    }
}
