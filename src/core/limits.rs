//! A subscription's own limits: at most `max_in_flight` of its requests at once, and at most
//! `rate_limit` events per second. The worker serves each limited subscription from one
//! process, so one `Limits` sees all of its traffic.
//!
//! Events over a limit are not held in memory (a slow subscription would fill the worker and
//! starve the others): they go back to the queue, due when a slot frees up.

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Start,
    Later(Duration),
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
}

impl Limits {
    /// May an event of a subscription limited by `spec` start now, with `in_flight` of its requests already going?
    /// `over` counts the events already turned away in this claim, to spread their return.
    /// Admitting takes a rate slot; events turned away come back spaced at the rate, the
    /// `over`-th one `over` intervals after the next free slot.
    pub fn admit(
        &mut self,
        subscription: i32,
        spec: &LimitSpec,
        in_flight: usize,
        over: usize,
        now: Instant,
    ) -> Admission {
        if let Some(max) = spec.max_in_flight {
            if in_flight >= max {
                let rounds = u32::try_from((over / max).saturating_add(1)).unwrap_or(u32::MAX);
                return Admission::Later(BUSY_RETRY.saturating_mul(rounds).min(MAX_WAIT));
            }
        }
        let Some(interval) = spec.interval() else {
            return Admission::Start;
        };
        let slot = self.slot(subscription, now);
        if slot <= now {
            self.next_slot.insert(subscription, slot + interval);
            Admission::Start
        } else {
            // Not a reservation: whichever event is looked at first when the slot comes wins.
            let spread = interval.saturating_mul(u32::try_from(over).unwrap_or(u32::MAX));
            Admission::Later((slot - now).saturating_add(spread).min(MAX_WAIT))
        }
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(max_in_flight: Option<usize>, rate_limit: Option<f64>) -> LimitSpec {
        LimitSpec {
            max_in_flight,
            rate_limit,
        }
    }

    #[test]
    fn concurrency_limit_turns_away_the_excess() {
        let mut limits = Limits::default();
        let t = target(Some(2), None);
        let now = Instant::now();
        assert_eq!(limits.admit(1, &t, 1, 0, now), Admission::Start);
        assert_eq!(limits.admit(1, &t, 2, 0, now), Admission::Later(BUSY_RETRY));
        assert_eq!(
            limits.admit(1, &t, 2, 4, now),
            Admission::Later(BUSY_RETRY * 3)
        );
    }

    #[test]
    fn rate_limit_spaces_events_and_deferrals() {
        let mut limits = Limits::default();
        let t = target(None, Some(10.0));
        let now = Instant::now();
        assert_eq!(limits.admit(1, &t, 0, 0, now), Admission::Start);
        assert_eq!(
            limits.admit(1, &t, 1, 0, now),
            Admission::Later(Duration::from_millis(100))
        );
        assert_eq!(
            limits.admit(1, &t, 1, 1, now),
            Admission::Later(Duration::from_millis(200))
        );
        // Another subscription has its own slots.
        assert_eq!(limits.admit(2, &t, 0, 0, now), Admission::Start);
        // Once the time comes, the next one starts.
        let later = now + Duration::from_millis(300);
        assert_eq!(limits.admit(1, &t, 0, 0, later), Admission::Start);
    }

    #[test]
    fn unlimited_subscriptions_always_start() {
        let mut limits = Limits::default();
        let t = target(None, None);
        assert_eq!(
            limits.admit(1, &t, 10_000, 10_000, Instant::now()),
            Admission::Start
        );
    }

    #[test]
    fn extreme_rates_neither_panic_nor_wait_forever() {
        let now = Instant::now();
        for rate in [1e-300, f64::MIN_POSITIVE, 5e-324, 1e-9] {
            let mut limits = Limits::default();
            let t = target(None, Some(rate));
            assert_eq!(limits.admit(1, &t, 0, 0, now), Admission::Start, "{rate}");
            // Treated as the slowest allowed rate: one event per 1000 s, and never a wait
            // beyond a day however many are turned away.
            assert_eq!(
                limits.admit(1, &t, 0, 0, now),
                Admission::Later(Duration::from_secs(1000))
            );
            assert_eq!(
                limits.admit(1, &t, 0, usize::MAX, now),
                Admission::Later(Duration::from_secs(86_400))
            );
        }
        for rate in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
            let mut limits = Limits::default();
            let t = target(None, Some(rate));
            assert_eq!(limits.admit(1, &t, 0, 0, now), Admission::Start, "{rate}");
            assert_eq!(limits.admit(1, &t, 0, 0, now), Admission::Start, "{rate}");
        }
        let mut limits = Limits::default();
        let t = target(None, Some(1e300));
        assert_eq!(limits.admit(1, &t, 0, 0, now), Admission::Start);
        assert_eq!(
            limits.admit(1, &t, 0, 0, now),
            Admission::Later(Duration::from_micros(10))
        );
        let busy = target(Some(1), None);
        assert_eq!(
            limits.admit(2, &busy, 1, usize::MAX, now),
            Admission::Later(Duration::from_secs(86_400))
        );
    }

    #[test]
    fn a_request_of_several_events_takes_a_slot_for_each() {
        let mut limits = Limits::default();
        let spec = target(None, Some(2.0));
        let now = Instant::now();
        assert_eq!(limits.wait_for_slot(7, now), None);
        limits.take_slots(7, &spec, 3, now);
        // 3 events at 2 a second: the next may start 1.5 s later.
        assert_eq!(
            limits.wait_for_slot(7, now),
            Some(now + Duration::from_millis(1500))
        );
        assert_eq!(
            limits.wait_for_slot(7, now + Duration::from_millis(1500)),
            None
        );
        // Without a rate nothing is taken.
        limits.take_slots(8, &target(Some(4), None), 3, now);
        assert_eq!(limits.wait_for_slot(8, now), None);
    }
}
