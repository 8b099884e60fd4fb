//! Drivers' charge plans: a driver with no account states, on the phone, when they leave and how
//! much energy they want, and the balancer shares the site's power by it.
//!
//! A plan is stated for a connector just before the car starts (it waits for the next session
//! there, for [`PLAN_WAITS_FOR_A_CAR_MS`]) or just after (it joins the running session if that
//! started within [`FRESH_SESSION_MS`] and nobody's plan has joined it yet). The phone keeps the
//! plan's random token in an HttpOnly cookie, and only that phone may change it: the first phone to
//! plan a session owns it. Times of day are the site's: the driver is standing there.

use crate::balancing::Hub;
use crate::db::{self, plans, Db};
use app::api::PlanOutcome;
use app::domain::{
    ChargerId, ConnectorNo, DriverPlan, PlanInput, PlanState, PresenceCode, TransactionId, WallClock,
};
use chrono::{Duration, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// How long a plan stated before the car starts waits for it.
pub const PLAN_WAITS_FOR_A_CAR_MS: i64 = 15 * 60 * 1000;
/// How recently a running session must have started for a new phone to plan it: long enough to
/// plug in, start, and scan the code; short enough that a passer-by cannot take over the charge of
/// a car parked an hour ago.
pub const FRESH_SESSION_MS: i64 = 10 * 60 * 1000;

/// The next moment, strictly after `now_ms`, when the site's clocks show `at` (UTC milliseconds).
/// A time that a clock change skips (spring forward) is read as the same time on the clock after
/// the change; a time shown twice (fall back) as the first.
pub fn next_departure_ms(now_ms: i64, tz: Tz, at: WallClock) -> i64 {
    let now = Utc.timestamp_millis_opt(now_ms).single().unwrap_or_default().with_timezone(&tz);
    let time = NaiveTime::from_hms_opt(u32::from(at.hour()), u32::from(at.minute()), 0).unwrap_or_default();
    let mut day = now.date_naive();
    for _ in 0..3 {
        let naive = day.and_time(time);
        let local = tz
            .from_local_datetime(&naive)
            .earliest()
            .or_else(|| tz.from_local_datetime(&(naive + Duration::hours(1))).earliest());
        if let Some(local) = local.filter(|l| l.timestamp_millis() > now_ms) {
            return local.timestamp_millis();
        }
        day = day.succ_opt().unwrap_or(day);
    }
    // Unreachable for any real zone (a day later is always later); a day ahead is the safe answer.
    now_ms + 24 * 3600 * 1000
}

/// A UTC moment as the site's clocks show it, and whether that is on a later day than `now_ms`.
pub fn wall_clock_at(at_ms: i64, now_ms: i64, tz: Tz) -> (WallClock, bool) {
    let local = |ms: i64| Utc.timestamp_millis_opt(ms).single().unwrap_or_default().with_timezone(&tz);
    let at = local(at_ms);
    let clock = WallClock::new(at.hour() as u8, at.minute() as u8)
        .expect("chrono gives hours below 24 and minutes below 60");
    (clock, at.date_naive() > local(now_ms).date_naive())
}

/// What to do with a plan a phone states for a connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The phone's own plan: change it (`running`: its session is running, change that too).
    ChangeOwn { plan: i64, running: bool },
    /// The session that has just started there takes a plan: the phone's own waiting one (which
    /// a car started before it could join), or else a new one.
    JoinRunning { transaction: i64, own: Option<i64> },
    /// A new plan waiting for the next session there.
    WaitForCar,
    /// The session running there belongs to another phone's plan.
    OwnedByAnotherPhone,
    /// The session running there started too long ago to be taken by a new phone.
    TooLate,
}

/// The rule, without I/O: `own` is the phone's plan for this connector (if its cookie names one),
/// `running` the session running there (id, start in UTC ms, whether a plan has joined it).
pub fn decide(own: Option<&plans::PlanRow>, running: Option<(i64, i64, bool)>, now_ms: i64) -> Decision {
    let mut waiting = None;
    if let Some(p) = own {
        match p.transaction_id {
            Some(_) if p.session_active => return Decision::ChangeOwn { plan: p.id, running: true },
            None if p.expires_at_ms > now_ms => match running {
                None => return Decision::ChangeOwn { plan: p.id, running: false },
                Some(_) => waiting = Some(p.id),
            },
            // Its session ended, or it waited in vain: a new plan.
            _ => {}
        }
    }
    match running {
        None => Decision::WaitForCar,
        Some((_, _, true)) => Decision::OwnedByAnotherPhone,
        Some((_, started, false)) if now_ms - started > FRESH_SESSION_MS => Decision::TooLate,
        Some((transaction, _, false)) => Decision::JoinRunning { transaction, own: waiting },
    }
}

/// A stored plan as its phone shows it; `None` for one that waited in vain.
pub fn plan_view(p: &plans::PlanRow, now_ms: i64, tz: Tz) -> Option<DriverPlan> {
    let state = match p.transaction_id {
        Some(_) if p.session_active => PlanState::Charging,
        Some(_) => PlanState::Ended,
        None if p.expires_at_ms > now_ms => {
            PlanState::WaitingForCar { until: wall_clock_at(p.expires_at_ms, now_ms, tz).0 }
        }
        None => return None,
    };
    let leave = p.departure_at_ms.map(|at| wall_clock_at(at, now_ms, tz));
    Some(DriverPlan {
        state,
        leave_at: leave.map(|l| l.0),
        leave_tomorrow: leave.is_some_and(|l| l.1),
        energy_wh: p.energy_need_wh.and_then(|wh| u32::try_from(wh).ok()),
    })
}

/// The time zone of the site a connector is at; `None`: no such (accepted) connector.
async fn site_zone(db: &Db, charger: &ChargerId, connector: ConnectorNo) -> Result<Option<Tz>, db::DbError> {
    Ok(connector_place(db, charger, connector).await?.map(|(tz, _)| tz))
}

/// The site's time zone and the connector's presence code; `None`: no such (accepted) connector.
async fn connector_place(
    db: &Db,
    charger: &ChargerId,
    connector: ConnectorNo,
) -> Result<Option<(Tz, Option<PresenceCode>)>, db::DbError> {
    let Some(facts) = db::catalog::connector_facts(db, charger, connector).await? else { return Ok(None) };
    let name = facts.site_timezone;
    let tz = name
        .parse::<Tz>()
        .map_err(|_| db::DbError::Corrupt(format!("site time zone {name:?} is not an IANA zone")))?;
    Ok(Some((tz, facts.presence_code)))
}

/// Whether a decision takes hold of a session (or of the next one) for a phone that holds no plan
/// there yet: only a phone that shows the connector's presence code may.
pub fn needs_presence(decision: Decision) -> bool {
    matches!(decision, Decision::WaitForCar | Decision::JoinRunning { own: None, .. })
}

/// The plan whose token this is, if it was stated for this connector.
pub async fn own_plan(
    db: &Db,
    charger: &ChargerId,
    connector: ConnectorNo,
    token: &str,
) -> Result<Option<DriverPlan>, db::DbError> {
    let Some(tz) = site_zone(db, charger, connector).await? else { return Ok(None) };
    let own = plans::by_token(db, &crate::auth::token_hash(token)).await?;
    let now = db::now_ms();
    Ok(own.filter(|p| same_connector(p, charger, connector)).and_then(|p| plan_view(&p, now, tz)))
}

fn same_connector(p: &plans::PlanRow, charger: &ChargerId, connector: ConnectorNo) -> bool {
    p.charger_id == charger.as_str() && p.connector_no == i64::from(connector.get())
}

/// Keeps what a phone stated, by [`decide`], and tells the balancer when a running session's plan
/// changed.
pub async fn state_plan(
    db: &Db,
    hub: &Hub,
    charger: &ChargerId,
    connector: ConnectorNo,
    token: Option<&str>,
    input: PlanInput,
    presence: Option<&str>,
) -> Result<PlanOutcome, db::DbError> {
    let Some((tz, code)) = connector_place(db, charger, connector).await? else {
        return Ok(PlanOutcome::NoSuchConnector);
    };
    let now = db::now_ms();
    let departure = input.leave_at.map(|at| next_departure_ms(now, tz, at));
    let energy = input.energy_wh.map(i64::from);
    let connector_no = i64::from(connector.get());
    let own = match token {
        Some(t) => plans::by_token(db, &crate::auth::token_hash(t)).await?,
        None => None,
    }
    .filter(|p| same_connector(p, charger, connector));
    let running = plans::running_session(db, charger.as_str(), connector_no).await?;
    let decision = decide(own.as_ref(), running, now);
    if needs_presence(decision) && !code.as_ref().is_some_and(|c| c.proven_by(presence)) {
        tracing::info!(charger.id = %charger, connector = connector_no, "plan refused: no proof the phone is at the charger");
        return Ok(PlanOutcome::NeedsPresence);
    }
    let (plan_id, new_token) = match decision {
        Decision::ChangeOwn { plan, running } => {
            let expires = if running {
                own.as_ref().map_or(now, |p| p.expires_at_ms)
            } else {
                now + PLAN_WAITS_FOR_A_CAR_MS
            };
            plans::update(db, plan, departure, energy, expires).await?;
            (plan, None)
        }
        Decision::JoinRunning { transaction, own: Some(plan) } => {
            plans::update(db, plan, departure, energy, now).await?;
            if !plans::join(db, plan, transaction).await? {
                return Ok(PlanOutcome::OwnedByAnotherPhone);
            }
            (plan, None)
        }
        Decision::JoinRunning { transaction, own: None } => {
            let token = crate::auth::new_token();
            let hash = crate::auth::token_hash(&token);
            let Some(id) = plans::insert(
                db,
                &hash,
                charger.as_str(),
                connector_no,
                Some(transaction),
                departure,
                energy,
                now,
                now,
            )
            .await?
            else {
                return Ok(PlanOutcome::OwnedByAnotherPhone);
            };
            (id, Some(token))
        }
        Decision::WaitForCar => {
            let token = crate::auth::new_token();
            let hash = crate::auth::token_hash(&token);
            let expires = now + PLAN_WAITS_FOR_A_CAR_MS;
            let id = plans::insert(
                db,
                &hash,
                charger.as_str(),
                connector_no,
                None,
                departure,
                energy,
                now,
                expires,
            )
            .await?
            .ok_or_else(|| db::DbError::Conflict("a plan token".to_owned()))?;
            (id, Some(token))
        }
        Decision::OwnedByAnotherPhone => return Ok(PlanOutcome::OwnedByAnotherPhone),
        Decision::TooLate => {
            return Ok(PlanOutcome::StartedTooLongAgo { minutes: (FRESH_SESSION_MS / 60_000) as u32 })
        }
    };
    if let Some((needs, transaction)) = plans::copy_to_session(db, plan_id).await? {
        hub.session_declared(charger, TransactionId(transaction), &needs);
        tracing::info!(plan.id = plan_id, transaction.id = transaction, charger.id = %charger, connector = connector_no, ?needs, "driver's plan given to the session");
    } else {
        // The plan last stated to wait is the one the next car takes.
        plans::supersede_waiting(db, charger.as_str(), connector_no, plan_id, now).await?;
        tracing::info!(plan.id = plan_id, charger.id = %charger, connector = connector_no, "driver's plan waits for a car");
    }
    let stored =
        plans::by_id(db, plan_id).await?.ok_or_else(|| db::DbError::Corrupt("plan vanished".to_owned()))?;
    let plan = plan_view(&stored, now, tz)
        .ok_or_else(|| db::DbError::Corrupt("plan expired as stated".to_owned()))?;
    Ok(PlanOutcome::Saved { plan, new_token })
}

/// A session started: the plan waiting on its connector, if any, joins it and goes to the balancer.
/// A failure is logged and leaves the plan waiting; the session itself is recorded already.
pub async fn session_started(
    db: &Db,
    hub: &Hub,
    charger: &ChargerId,
    connector_no: i64,
    transaction: TransactionId,
) {
    match plans::join_waiting(db, charger.as_str(), connector_no, transaction.0, db::now_ms()).await {
        Ok(Some(needs)) => {
            hub.session_declared(charger, transaction, &needs);
            tracing::info!(transaction.id = %transaction, charger.id = %charger, connector = connector_no, ?needs, "driver's waiting plan joined the session");
        }
        Ok(None) => {}
        Err(err) => {
            tracing::warn!(transaction.id = %transaction, charger.id = %charger, error = %err, "could not join a driver's plan to the session")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339).expect("time").timestamp_millis()
    }

    fn at(h: u8, m: u8) -> WallClock {
        WallClock::new(h, m).expect("valid")
    }

    #[test]
    fn a_time_of_day_is_the_next_one_on_the_sites_clocks() {
        let london = chrono_tz::Europe::London;
        // Summer: London is UTC+1.
        let now = ms("2026-07-01T09:00:00Z"); // 10:00 in London
        assert_eq!(next_departure_ms(now, london, at(17, 30)), ms("2026-07-01T16:30:00Z"));
        // Earlier than now: tomorrow.
        assert_eq!(next_departure_ms(now, london, at(9, 30)), ms("2026-07-02T08:30:00Z"));
        // This very minute has begun: tomorrow.
        assert_eq!(next_departure_ms(now, london, at(10, 0)), ms("2026-07-02T09:00:00Z"));
        assert_eq!(wall_clock_at(ms("2026-07-02T08:30:00Z"), now, london), (at(9, 30), true));
        assert_eq!(wall_clock_at(ms("2026-07-01T16:30:00Z"), now, london), (at(17, 30), false));
        // Winter: UTC+0; Amsterdam UTC+1.
        let now = ms("2026-12-01T09:00:00Z");
        assert_eq!(next_departure_ms(now, london, at(17, 30)), ms("2026-12-01T17:30:00Z"));
        assert_eq!(
            next_departure_ms(now, chrono_tz::Europe::Amsterdam, at(17, 30)),
            ms("2026-12-01T16:30:00Z")
        );
    }

    #[test]
    fn clock_changes_neither_lose_nor_repeat_a_departure() {
        let london = chrono_tz::Europe::London;
        // 29 March 2026: 01:00 GMT becomes 02:00 BST, so 01:30 is never shown: read as 02:30 BST.
        let now = ms("2026-03-29T00:10:00Z");
        assert_eq!(next_departure_ms(now, london, at(1, 30)), ms("2026-03-29T01:30:00Z"));
        // 25 October 2026: 01:30 is shown twice; the first (BST) is meant.
        let now = ms("2026-10-24T23:00:00Z");
        assert_eq!(next_departure_ms(now, london, at(1, 30)), ms("2026-10-25T00:30:00Z"));
    }

    fn plan(transaction_id: Option<i64>, session_active: bool, expires_at_ms: i64) -> plans::PlanRow {
        plans::PlanRow {
            id: 7,
            charger_id: "C".to_owned(),
            connector_no: 1,
            transaction_id,
            session_active,
            departure_at_ms: None,
            energy_need_wh: Some(10_000),
            expires_at_ms,
        }
    }

    #[test]
    fn the_first_phone_to_plan_a_session_owns_it() {
        let now = 10_000_000;
        let fresh = now - FRESH_SESSION_MS + 1;
        // Before the car: the plan waits; after, it joins a fresh unplanned session.
        assert_eq!(decide(None, None, now), Decision::WaitForCar);
        assert_eq!(
            decide(None, Some((5, fresh, false)), now),
            Decision::JoinRunning { transaction: 5, own: None }
        );
        // Another phone planned it, or it is not fresh: no.
        assert_eq!(decide(None, Some((5, fresh, true)), now), Decision::OwnedByAnotherPhone);
        assert_eq!(decide(None, Some((5, now - FRESH_SESSION_MS - 1, false)), now), Decision::TooLate);
        // The owner changes theirs, waiting or running, at any time.
        let running = plan(Some(5), true, now - 1);
        assert_eq!(
            decide(Some(&running), Some((5, 0, true)), now),
            Decision::ChangeOwn { plan: 7, running: true }
        );
        let waiting = plan(None, false, now + 1);
        assert_eq!(decide(Some(&waiting), None, now), Decision::ChangeOwn { plan: 7, running: false });
        // Its session ended, or it waited in vain: a new plan, by the same rules.
        let ended = plan(Some(5), false, now - 1);
        assert_eq!(decide(Some(&ended), None, now), Decision::WaitForCar);
        assert_eq!(decide(Some(&ended), Some((6, fresh, true)), now), Decision::OwnedByAnotherPhone);
        let stale = plan(None, false, now);
        assert_eq!(
            decide(Some(&stale), Some((6, fresh, false)), now),
            Decision::JoinRunning { transaction: 6, own: None }
        );
        // A waiting plan that a car did not take (it started before the plan could join) joins it,
        // rather than waiting on to join the next driver's car.
        assert_eq!(
            decide(Some(&waiting), Some((6, fresh, false)), now),
            Decision::JoinRunning { transaction: 6, own: Some(7) }
        );
        assert_eq!(decide(Some(&waiting), Some((6, fresh, true)), now), Decision::OwnedByAnotherPhone);
    }

    #[test]
    fn a_plan_shows_in_the_sites_time() {
        let london = chrono_tz::Europe::London;
        let now = ms("2026-12-01T09:00:00Z");
        let mut p = plan(None, false, now + PLAN_WAITS_FOR_A_CAR_MS);
        p.departure_at_ms = Some(ms("2026-12-02T01:15:00Z"));
        let view = plan_view(&p, now, london).expect("waiting");
        assert_eq!(view.state, PlanState::WaitingForCar { until: at(9, 15) });
        assert_eq!(
            (view.leave_at, view.leave_tomorrow, view.energy_wh),
            (Some(at(1, 15)), true, Some(10_000))
        );
        assert_eq!(plan_view(&plan(None, false, now), now, london), None);
        assert_eq!(
            plan_view(&plan(Some(1), true, 0), now, london).map(|v| v.state),
            Some(PlanState::Charging)
        );
        assert_eq!(plan_view(&plan(Some(1), false, 0), now, london).map(|v| v.state), Some(PlanState::Ended));
    }

    #[test]
    fn only_taking_hold_of_a_session_anew_needs_the_presence_code() {
        assert!(needs_presence(Decision::WaitForCar));
        assert!(needs_presence(Decision::JoinRunning { transaction: 7, own: None }));
        // The phone's own plan (its cookie) was stated with the code already.
        assert!(!needs_presence(Decision::JoinRunning { transaction: 7, own: Some(3) }));
        assert!(!needs_presence(Decision::ChangeOwn { plan: 3, running: true }));
        // Refusals stay refusals, code or not.
        assert!(!needs_presence(Decision::OwnedByAnotherPhone));
        assert!(!needs_presence(Decision::TooLate));
    }
}
