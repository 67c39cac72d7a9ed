//! The retention purge: finished events past their horizon, with their attempts, and attempts
//! whose event is gone by other means, each read from where the last run left off (see
//! sql/worker/purge_events.sql).

use std::time::Instant;

use pg_webhook_core::rescan::Walk;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use super::Statements;

/// Where the purge left off: the archive's (finished_at in microseconds since 1970, id) and the
/// attempts' (started_at likewise, event id, attempt), and the walk each is in (when each starts
/// over from the oldest: `pg_webhook_core::rescan`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PurgeCursor {
    events: (i64, i64),
    attempts: (i64, i64, i32),
    walks: [Walk; 2],
}

impl PurgeCursor {
    /// Before the first row of each table.
    pub fn new(now: Instant) -> PurgeCursor {
        PurgeCursor {
            events: (0, i64::MIN),
            attempts: (0, i64::MIN, i32::MIN),
            walks: [Walk::new(now); 2],
        }
    }

    /// Starts each table's walk over from its oldest rows if that is due.
    pub fn rescan_if_due(&mut self, now: Instant) {
        let start = PurgeCursor::new(now);
        if self.walks[0].again(now) {
            (self.events, self.walks[0]) = (start.events, start.walks[0]);
        }
        if self.walks[1].again(now) {
            (self.attempts, self.walks[1]) = (start.attempts, start.walks[1]);
        }
    }
}

impl Statements {
    /// Looks at up to `batch` finished events and `batch` attempts past `cursor` and older
    /// than the shorter horizon, and deletes those past theirs (`delivered_s`, `dead_s`);
    /// returns whether it looked at as many as it may (there may be more past the cursor) and
    /// where the cursor is now.
    pub fn purge(
        &self,
        delivered_s: f64,
        dead_s: f64,
        batch: i64,
        cursor: PurgeCursor,
    ) -> SpiResult<(bool, PurgeCursor)> {
        Spi::connect_mut(|client| {
            let (at, id) = cursor.events;
            let args = [
                delivered_s.into(),
                dead_s.into(),
                batch.into(),
                at.into(),
                id.into(),
            ];
            let events = client.update(&self.purge_events, Some(1), &args)?.first();
            let seen = events.get::<i64>(1)?.unwrap_or_default();
            let mut next = cursor;
            if let (Some(at), Some(id)) = (events.get::<i64>(4)?, events.get::<i64>(5)?) {
                next.events = (at, id);
            }
            let (at, event, attempt) = cursor.attempts;
            let args = [
                delivered_s.into(),
                dead_s.into(),
                batch.into(),
                at.into(),
                event.into(),
                attempt.into(),
            ];
            let attempts = client.update(&self.purge_attempts, Some(1), &args)?.first();
            let looked = attempts.get::<i64>(1)?.unwrap_or_default();
            if let (Some(at), Some(event), Some(attempt)) = (
                attempts.get::<i64>(3)?,
                attempts.get::<i64>(4)?,
                attempts.get::<i32>(5)?,
            ) {
                next.attempts = (at, event, attempt);
            }
            let now = Instant::now();
            for (walk, read) in next.walks.iter_mut().zip([seen, looked]) {
                if read < batch {
                    walk.reached_newest(now);
                }
            }
            Ok((seen >= batch || looked >= batch, next))
        })
    }
}
