//! When to try an event again, and when to give up on it.
//!
//! The default schedule is the one Standard Webhooks senders commonly use (Svix's): after the
//! first attempt, retry after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h, each ±20 % jitter —
//! 8 attempts over about 27 hours. Jitter spreads a failed burst so a recovering receiver is not
//! hit by all of it in the same second. A `Retry-After` on 429 or 503 sets the next attempt
//! instead; should such answers spend the attempts before the schedule's time is up, the
//! event goes on at the schedule's points until then ([`past_the_count`]).

use std::fmt;
use std::time::{Duration, SystemTime};

/// Delays before attempts 2, 3, … of the default schedule.
pub const DEFAULT_DELAYS: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];
/// First attempt plus one per default delay.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Jitter as a fraction of the delay, each way.
pub const JITTER: f64 = 0.2;
/// A `Retry-After` beyond this is clamped: a receiver cannot park an event for weeks.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Upper bound on `max_attempts`, so a typo cannot make an event live forever.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
/// Upper bound on one delay in a custom schedule.
pub const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

/// A validated retry schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    delays: Vec<Duration>,
    max_attempts: u32,
}

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    MaxAttempts(i64),
    EmptySchedule,
    /// A schedule with this many delays and no `max_attempts`: one more attempt than delays
    /// would pass the limit.
    ScheduleTooLong(usize),
    DelayOutOfRange {
        index: usize,
        delay_ms: i64,
    },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::MaxAttempts(n) => write!(
                f,
                "max_attempts {n} is out of range: it must be between 1 and {MAX_ATTEMPTS_LIMIT}"
            ),
            PolicyError::EmptySchedule => write!(
                f,
                "retry_schedule is empty: give at least one interval, or NULL for the default"
            ),
            PolicyError::ScheduleTooLong(n) => write!(
                f,
                "retry_schedule has {n} delays, and without max_attempts an event gets one \
                 attempt more than that, past the limit of {MAX_ATTEMPTS_LIMIT}: give at most {} \
                 delays (the last one repeats), or max_attempts",
                MAX_ATTEMPTS_LIMIT - 1
            ),
            PolicyError::DelayOutOfRange { index, delay_ms } => write!(
                f,
                "retry_schedule[{}] is {} ms: each delay must be between 0 and 7 days",
                index + 1,
                delay_ms
            ),
        }
    }
}

impl std::error::Error for PolicyError {}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            delays: DEFAULT_DELAYS.to_vec(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

impl RetryPolicy {
    /// `delays_ms`: delays before attempt 2, 3, …; past its end the last delay repeats.
    pub fn new(delays_ms: Option<&[i64]>, max_attempts: Option<i64>) -> Result<Self, PolicyError> {
        let delays = match delays_ms {
            None => DEFAULT_DELAYS.to_vec(),
            Some([]) => return Err(PolicyError::EmptySchedule),
            Some(ms) => ms
                .iter()
                .enumerate()
                .map(|(index, &delay_ms)| {
                    if delay_ms < 0 || delay_ms as u128 > MAX_DELAY.as_millis() {
                        Err(PolicyError::DelayOutOfRange { index, delay_ms })
                    } else {
                        Ok(Duration::from_millis(delay_ms as u64))
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        let max_attempts = match max_attempts {
            None if delays_ms.is_some() => match u32::try_from(delays.len() + 1) {
                Ok(n) if n <= MAX_ATTEMPTS_LIMIT => n,
                _ => return Err(PolicyError::ScheduleTooLong(delays.len())),
            },
            None => DEFAULT_MAX_ATTEMPTS,
            Some(n) if (1..=MAX_ATTEMPTS_LIMIT as i64).contains(&n) => n as u32,
            Some(n) => return Err(PolicyError::MaxAttempts(n)),
        };
        Ok(RetryPolicy {
            delays,
            max_attempts,
        })
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The nominal delay after `attempts_made` failed attempts, or `None` when none remain.
    pub fn base_delay(&self, attempts_made: u32) -> Option<Duration> {
        if attempts_made >= self.max_attempts || attempts_made == 0 {
            return None;
        }
        let i = (attempts_made as usize - 1).min(self.delays.len() - 1);
        Some(self.delays[i])
    }
}

/// What a single attempt came to, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    /// The receiver answered with this status.
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// No usable answer (connect, DNS, timeout, TLS, reset…): worth retrying.
    TransportError,
    /// The address policy refused the destination. Retried on the schedule like a transport
    /// error: the policy can be a configuration mistake that gets fixed (a standby promoted
    /// without the primary's `ALTER SYSTEM` setting), and dying at once would lose the events.
    Refused,
}

/// What to do with an event after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    RetryIn(Duration),
    Dead,
    /// The schedule's attempts are spent, but the receiver asked (`Retry-After`) to be tried
    /// again after this: whether it is depends on how long the series has run
    /// ([`past_the_count`]), which the caller looks up. Dead if it cannot.
    Spent(Duration),
}

/// `jitter_unit` is a uniform random number in [0, 1); it is a parameter so tests are exact.
pub fn judge(
    policy: &RetryPolicy,
    attempts_made: u32,
    kind: AttemptKind,
    jitter_unit: f64,
) -> Verdict {
    let retry_after = match kind {
        AttemptKind::Status { code, .. } if (200..300).contains(&code) => {
            return Verdict::Delivered
        }
        AttemptKind::Status {
            code: 429 | 503,
            retry_after,
        } => retry_after.map(|after| after.clamp(Duration::from_secs(1), MAX_RETRY_AFTER)),
        _ => None,
    };
    // The receiver said when it can take more; asking earlier would only fail again, and a
    // receiver that throttles asks for the next try soon (an ordered key waits on it).
    match (policy.base_delay(attempts_made), retry_after) {
        (Some(_), Some(after)) => Verdict::RetryIn(after),
        (Some(base), None) => Verdict::RetryIn(jittered(base, jitter_unit)),
        // At most one more attempt per point of the schedule (see `past_the_count`), however
        // the clock moves meanwhile.
        (None, Some(after)) if attempts_made < policy.max_attempts.saturating_mul(2) - 1 => {
            Verdict::Spent(after)
        }
        (None, _) => Verdict::Dead,
    }
}

/// After the schedule's attempts are spent on a receiver that still answers with
/// `Retry-After`, the wait before one more attempt, or `None` when the schedule's time is over
/// and the event dies. `age`: how long ago the series' first attempt started.
///
/// Short `Retry-After`s spend attempts faster than the schedule would (a load balancer's
/// `503` with `Retry-After: 1` through a deploy spent the default 8 attempts in 7 seconds), so
/// the event is not given up before the schedule's last attempt would have gone: it is tried
/// again at the schedule's next point (the nominal delays added up from the first attempt),
/// or later if the receiver asks, until the last point has passed. At most one attempt per
/// point, so at most `max_attempts - 1` more: the `extra`-th such attempt (0 for the first)
/// goes no sooner than the `extra`-th point, so a clock stepped back (an age of 0) does not
/// bring them all at the first point and end the series early (`judge` counts them too). The
/// wait to the point is jittered up to 20 % later (`jitter_unit`), so a burst spent together
/// does not come back in the same second at every point.
pub fn past_the_count(
    policy: &RetryPolicy,
    age: Duration,
    extra: u32,
    retry_after: Duration,
    jitter_unit: f64,
) -> Option<Duration> {
    let mut point = Duration::ZERO;
    let mut next = None;
    for (index, made) in (1..policy.max_attempts).enumerate() {
        point += policy.base_delay(made)?;
        if next.is_none() && point > age && index as u64 >= u64::from(extra) {
            next = Some(point);
        }
    }
    // Jittered late only: an attempt before its point would find the same point next again.
    let late = |gap: Duration| gap + gap.mul_f64(JITTER * jitter_unit.clamp(0.0, 1.0));
    next.map(|at| retry_after.max(late(at - age)))
}

fn jittered(base: Duration, unit: f64) -> Duration {
    let factor = 1.0 + JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
    base.mul_f64(factor)
}

/// `Retry-After` is either delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A cheap uniform number in [0, 1) for jitter; not for secrets.
pub fn jitter_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;

/// How long a worker process that failed before it began its work waits to be started again,
/// after `failures` such failures in a row (1 or more): 1 s, doubled after each, at most 30 s.
/// Started again at once, a process that cannot load its library (the file is being replaced)
/// was started hundreds of times a second, each logging its failure.
pub fn restart_delay(failures: u32) -> Duration {
    const FIRST: Duration = Duration::from_secs(1);
    const LONGEST: Duration = Duration::from_secs(30);
    let doublings = failures.saturating_sub(1).min(5);
    (FIRST * (1 << doublings)).min(LONGEST)
}
