//! How promptly each subscription's endpoint answers, as the claim's share rule sees it (see
//! `Plan::share`): a subscription is slow while one of its requests has been out a second, or
//! it has requests out and none has come back yet (a new endpoint that does not answer must
//! not take the others' quarter in its first second), and for as long again as a request that
//! took a second or more, after it came back (so an endpoint that hangs for its timeout, then
//! answers one request at once, does not leave the slow ones at once).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::Dispatcher;

/// A request out this long, or a last request that took this long, makes its subscription slow.
pub const SLOW: Duration = Duration::from_secs(1);

/// The subscriptions with requests out, and the slow ones, at one instant.
#[derive(Debug, Default)]
pub struct Pace {
    /// When each subscription's oldest request in flight started.
    pub oldest: HashMap<i32, Instant>,
    /// The slow subscriptions.
    pub slow: HashSet<i32>,
}

impl Pace {
    pub fn is_slow(&self, subscription: i32) -> bool {
        self.slow.contains(&subscription)
    }

    /// When `subscription`, not slow now, turns slow if its oldest request stays out.
    pub fn turns_slow_at(&self, subscription: i32) -> Option<Instant> {
        self.oldest.get(&subscription).map(|at| *at + SLOW)
    }

    /// How long a slow subscription's due retries wait when it may start no more requests:
    /// its request timeout (at least `SLOW`), so each is put back at most once in that time
    /// (a hung endpoint's requests end one after another: waiting for the oldest only put
    /// every due retry back about every second).
    pub fn wait_for_room(timeout: Duration) -> Duration {
        timeout.max(SLOW)
    }
}

impl Dispatcher {
    /// Each subscription's pace as of `now`.
    pub fn pace(&self, now: Instant) -> Pace {
        let mut pace = Pace::default();
        for flight in self.flights.values() {
            let at = pace
                .oldest
                .entry(flight.subscription_id)
                .or_insert(flight.started);
            *at = (*at).min(flight.started);
        }
        for (sub, at) in &pace.oldest {
            if now.saturating_duration_since(*at) >= SLOW || !self.answered.contains(sub) {
                pace.slow.insert(*sub);
            }
        }
        for (sub, until) in &self.slow_until {
            if now < *until {
                pace.slow.insert(*sub);
            }
        }
        pace
    }

    /// Notes how long a request of `subscription` took.
    pub(super) fn note_answer(&mut self, subscription: i32, took: Duration) {
        self.answered.insert(subscription);
        let now = Instant::now();
        self.slow_until.retain(|_, until| *until > now);
        if took >= SLOW {
            let until = now + took;
            let at = self.slow_until.entry(subscription).or_insert(until);
            *at = (*at).max(until);
        }
    }
}
