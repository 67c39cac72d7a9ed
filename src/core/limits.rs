//! A subscription's own limits: at most `max_in_flight` of its requests at once, and at most
//! `rate_limit` events per second. The worker serves each limited subscription from one
//! process, so one `Limits` sees all of its traffic.
//!
//! Events over a limit are not held in memory (a slow subscription would fill the worker and
//! starve the others): they stay in the queue, read again when one of its requests ends (the
//! worker passes new ones and leaves due ones due, writing nothing). Over the rate,
//! each goes back to a slot of its own, after those already given out: put back to the same
//! few instants claim after claim, a backlog came due together again and again, and 5,000
//! events at 50 a second were rewritten 250 times each on their way out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an event over the concurrency limit waits before it is looked at again; requests
/// finish at endpoint speed, so this is a guess spread out by how far over the limit it is.
const BUSY_RETRY: Duration = Duration::from_millis(100);
/// The slowest and fastest rates a subscription may ask for, in events per second: one event
/// every 1000 seconds, and 100,000 a second.
pub const MIN_RATE: f64 = 0.001;
pub const MAX_RATE: f64 = 100_000.0;
/// No event is put back for longer than this, whatever the arithmetic says.
const MAX_WAIT: Duration = Duration::from_secs(86_400);
/// How late a rate slot may be taken and still count from its own time, not from when it was
/// taken (at most half an interval): an event that comes due at its slot is claimed a little
/// after it, and without this the next slot moved by that much each time, so the next event
/// put back to its own slot came too early and went back again.
const SLOT_SLACK: Duration = Duration::from_millis(50);

/// How an event comes to be admitted: what its slot may be, and what happens when turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// New: turned away, it goes back to the queue, to the next slot not yet given out.
    New,
    /// Due (its slot has come, or a retry's time): it may take a free slot even with slots
    /// given out ahead; turned away, it goes back like a new one.
    Due,
    /// An ordered subscription's head: turned away, it stays where it is (nothing is given out).
    Head,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Start,
    /// Over the rate: not before this long.
    Later(Duration),
    /// At `max_in_flight`: when one of its requests ends; the duration (spread by how far over
    /// the limit it is) is when to look again at the latest.
    Full(Duration),
}

/// What a subscription allows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LimitSpec {
    pub max_in_flight: Option<usize>,
    /// Events per second.
    pub rate_limit: Option<f64>,
}

impl LimitSpec {
    /// A stored rate as the worker can use it: within [`MIN_RATE`, `MAX_RATE`], or none when it
    /// is not a positive number at all. The SQL API refuses anything outside the range; this
    /// keeps a hand-edited row from breaking the arithmetic.
    pub fn usable_rate(rate: f64) -> Option<f64> {
        (rate.is_finite() && rate > 0.0).then(|| rate.clamp(MIN_RATE, MAX_RATE))
    }

    /// The time between two events at the subscription's rate (`None`: not rate limited).
    fn interval(&self) -> Option<Duration> {
        let rate = self.rate_limit.and_then(LimitSpec::usable_rate)?;
        Some(Duration::from_secs_f64(1.0 / rate))
    }
}

#[derive(Default)]
pub struct Limits {
    /// Per rate-limited subscription: when its next event may start.
    next_slot: HashMap<i32, Instant>,
    /// Per rate-limited subscription: the last slot given to an event turned away.
    given_out: HashMap<i32, Instant>,
}

impl Limits {
    /// May an event of a subscription limited by `spec` start now, with `in_flight` of its
    /// requests already going? `over` counts the events already turned away in this claim, to
    /// spread the return of those over the concurrency limit. Admitting takes a rate slot; an
    /// event turned away by the rate (not an ordered head) is given the slot after the last one
    /// given out, so a backlog goes back once, spaced at the rate.
    pub fn admit(
        &mut self,
        subscription: i32,
        spec: &LimitSpec,
        in_flight: usize,
        over: usize,
        now: Instant,
        arrival: Arrival,
    ) -> Admission {
        if let Some(max) = spec.max_in_flight {
            if in_flight >= max {
                let rounds = u32::try_from((over / max).saturating_add(1)).unwrap_or(u32::MAX);
                return Admission::Full(BUSY_RETRY.saturating_mul(rounds).min(MAX_WAIT));
            }
        }
        let Some(interval) = spec.interval() else {
            return Admission::Start;
        };
        let free = self.slot(subscription, now);
        let ahead = self.given_out.get(&subscription).filter(|at| **at > now);
        let slack = SLOT_SLACK.min(interval / 2);
        // A free slot goes to an event whose time has come (read up to the slack early: its
        // due time was counted from its claim's transaction start, a little before `now`),
        // or to a new one when none were given out ahead of it (they would lose theirs and go
        // back again).
        let early = if arrival == Arrival::Due {
            slack
        } else {
            Duration::ZERO
        };
        if free <= now + early && (arrival != Arrival::New || ahead.is_none()) {
            let from = self.next_slot.get(&subscription).map_or(now, |next| {
                (*next).max(now.checked_sub(slack).unwrap_or(now))
            });
            self.next_slot.insert(subscription, from + interval);
            return Admission::Start;
        }
        if arrival == Arrival::Head {
            return Admission::Later((free - now).min(MAX_WAIT));
        }
        let at = ahead.map_or(free, |last| (*last + interval).max(free));
        // (Not beyond a day from now: later ones go back to the same instant, and again then.)
        let at = at.min(now + MAX_WAIT);
        self.given_out.insert(subscription, at);
        Admission::Later((at - now).max(Duration::from_micros(1)))
    }

    /// Forgets a subscription's slots, taken and given out (its limits changed, and its
    /// events put back were made due now).
    pub fn forget(&mut self, subscription: i32) {
        self.given_out.remove(&subscription);
        self.next_slot.remove(&subscription);
    }

    /// The last slot given out to an event of the subscription put back, if any.
    pub fn given_out(&self, subscription: i32) -> Option<Instant> {
        self.given_out.get(&subscription).copied()
    }

    /// Takes back the slots given out to a subscription's events that were not put back
    /// after all (their rows held by another transaction): the last one given out becomes
    /// `last`, the latest slot still held by an event put back (`None`: none is). Never moves
    /// it later.
    pub fn take_back_given_out(&mut self, subscription: i32, last: Option<Instant>) {
        match (self.given_out.get(&subscription), last) {
            (Some(given), Some(last)) if last < *given => {
                self.given_out.insert(subscription, last);
            }
            (_, None) => {
                self.given_out.remove(&subscription);
            }
            _ => {}
        }
    }

    /// Forgets the slots given out to events put back by a claim that failed (they were not
    /// put back).
    pub fn forget_given_out_all(&mut self) {
        self.given_out.clear();
    }

    /// Takes the rate slots of `events` events of a subscription limited by `spec` that start
    /// together (a transaction's part, one request): the next event may start that many
    /// intervals after the slot they took. Call when `wait_for_slot` says a slot is free.
    pub fn take_slots(&mut self, subscription: i32, spec: &LimitSpec, events: usize, now: Instant) {
        let Some(interval) = spec.interval() else {
            return;
        };
        let slot = self.slot(subscription, now);
        let taken = interval
            .saturating_mul(u32::try_from(events.max(1)).unwrap_or(u32::MAX))
            .min(MAX_WAIT);
        self.next_slot.insert(subscription, slot + taken);
    }

    /// When a subscription's next rate slot is: its next free one, or now.
    fn slot(&self, subscription: i32, now: Instant) -> Instant {
        self.next_slot
            .get(&subscription)
            .map_or(now, |s| (*s).max(now))
    }

    /// When an ordered head held back by its rate may start (`None`: now).
    pub fn wait_for_slot(&self, subscription: i32, now: Instant) -> Option<Instant> {
        self.next_slot
            .get(&subscription)
            .copied()
            .filter(|slot| *slot > now)
    }

    /// Forgets subscriptions that are gone or no longer rate limited.
    pub fn retain(&mut self, keep: impl Fn(i32) -> bool) {
        self.next_slot.retain(|id, _| keep(*id));
        self.given_out.retain(|id, _| keep(*id));
    }
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
