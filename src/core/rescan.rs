//! When a walk over a table that passes the rows it keeps (the retention purge's) starts over
//! from the oldest: once it has reached the newest rows, every 10 minutes at most, and no
//! sooner than ten times as long as that walk took, so that walking millions of kept rows takes
//! at most a tenth of the process's time. A walk that never reaches the newest rows goes on
//! forward: starting it over on a clock alone, it could pass the same rows forever and never
//! reach those past them.

use std::time::{Duration, Instant};

/// The least time between the starts of two walks.
pub const RESCAN: Duration = Duration::from_secs(600);

/// One walk from the oldest rows: when it started, and when it reached the newest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    started: Instant,
    caught_up: Option<Instant>,
}

impl Walk {
    pub fn new(now: Instant) -> Walk {
        Walk {
            started: now,
            caught_up: None,
        }
    }

    /// The walk read fewer rows than it might at `now`: it reached the newest.
    pub fn reached_newest(&mut self, now: Instant) {
        self.caught_up.get_or_insert(now);
    }

    /// Whether the next walk is due at `now`.
    pub fn again(&self, now: Instant) -> bool {
        self.caught_up.is_some_and(|reached| {
            let took = reached.duration_since(self.started);
            now.duration_since(self.started) >= RESCAN.max(took.saturating_mul(10))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_that_caught_up_quickly_starts_over_after_10_minutes() {
        let start = Instant::now();
        let mut walk = Walk::new(start);
        walk.reached_newest(start + Duration::from_secs(1));
        assert!(!walk.again(start + Duration::from_secs(599)));
        assert!(walk.again(start + Duration::from_secs(600)));
    }

    #[test]
    fn a_long_walk_starts_over_after_ten_times_its_length() {
        let start = Instant::now();
        let mut walk = Walk::new(start);
        walk.reached_newest(start + Duration::from_secs(120));
        // A later short read does not move when it caught up.
        walk.reached_newest(start + Duration::from_secs(500));
        assert!(!walk.again(start + Duration::from_secs(1199)));
        assert!(walk.again(start + Duration::from_secs(1200)));
    }

    #[test]
    fn a_walk_that_never_caught_up_goes_on() {
        let start = Instant::now();
        let walk = Walk::new(start);
        assert!(!walk.again(start + Duration::from_secs(100_000)));
    }
}
