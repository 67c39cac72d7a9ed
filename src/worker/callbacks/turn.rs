//! Whose code a runner process runs — callbacks and backfill filters: one owner's, never two
//! owners'.
//!
//! A callback or a backfill's filter leaves things in its process that outlive its transaction
//! and belong to no role: a `dblink` connection it opened (logged in as its owner, and
//! committing on its own), a session-level advisory lock, and whatever else an extension keeps
//! per session. Another owner's code in the same process could use them as the first owner.
//! PostgreSQL's rule is that a session belongs to one login, so a runner process is bound to
//! the first owner whose code it runs, and runs nobody else's: when another owner's callbacks
//! or backfill chunks are waiting, it ends and the launcher starts a fresh one at once (see
//! `keep_up` there), which takes the next owner's turn. Callbacks that call nothing (their
//! subscription or its callback is gone) are run by any runner.
//!
//! An owner's turn lasts about `TURN` while another owner's work waits, so a stream of one
//! owner's callbacks (or a long backfill) cannot hold up the others'; owners take turns in OID order, starting
//! after the one whose turn ended last (kept in shared memory across the hand-over, with the
//! subscription that ran last and when the tables are next vacuumed).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

/// How long one owner's callbacks run in a process while another owner's wait (and the last
/// one started finishes).
const TURN: Duration = Duration::from_secs(1);

/// What a runner that handed over tells the next one of its database.
#[derive(Clone, Copy, Default)]
struct Handover {
    database: u32,
    /// The owner whose turn ended.
    owner: u32,
    /// The subscription whose callback ran last.
    subscription: i32,
    /// When the tables are next due for a vacuum check, in milliseconds since the epoch.
    vacuum_at: u64,
    /// When it was written, as `Handovers::written` counts: the oldest goes when the table is
    /// full (a database dropped, or no longer served, leaves its entry behind).
    written: u64,
}

#[derive(Clone, Copy)]
pub struct Handovers {
    entries: [Handover; crate::wake::MAX_WORKERS],
    written: u64,
}

impl Default for Handovers {
    fn default() -> Self {
        Handovers {
            entries: [Handover::default(); crate::wake::MAX_WORKERS],
            written: 0,
        }
    }
}

// SAFETY: plain-old-data with no pointers, valid in any process.
unsafe impl PGRXSharedMemory for Handovers {}

static HANDOVERS: PgLwLock<Handovers> = unsafe { PgLwLock::new(c"pg_webhook_callback_turns") };

/// Shared memory for the hand-overs; only when preloading, like `wake::init_preloaded`.
pub fn init_preloaded() {
    pg_shmem_init!(HANDOVERS);
}

/// What the runner does next.
pub enum Next {
    /// Runs the waiting callbacks of this owner (and those that call nothing).
    Run(pg_sys::Oid),
    /// Ends, for a fresh runner to take the next owner's turn.
    HandOver,
}

/// A runner process's turn.
pub struct Turn {
    database: pg_sys::Oid,
    /// The owner whose callback this process called (`None`: none yet). Never another.
    owner: Option<pg_sys::Oid>,
    /// When it first called one.
    since: Instant,
    /// The owner whose turn ended last, in the process before this one (0: none).
    after: u32,
    /// The subscription whose callback ran last: the next batch's turn starts after it.
    pub last: i32,
    /// When the tables are next due for a vacuum check (the runner's loop moves it on; the
    /// next runner takes it over).
    pub vacuum: Instant,
}

impl Turn {
    /// A new runner's turn, after the one its predecessor handed over (if it did), with when
    /// the tables are next due for a vacuum check (now, if it said nothing).
    pub fn take_over(database: pg_sys::Oid) -> Turn {
        let handover = {
            let mut handovers = HANDOVERS.exclusive();
            handovers
                .entries
                .iter_mut()
                .find(|h| h.database == database.to_u32())
                .map(std::mem::take)
        }
        .unwrap_or_default();
        let vacuum =
            Instant::now() + Duration::from_millis(handover.vacuum_at.saturating_sub(now_ms()));
        Turn {
            database,
            owner: None,
            since: Instant::now(),
            after: handover.owner,
            last: handover.subscription,
            vacuum,
        }
    }

    /// Whose callbacks to run, given the owners whose callbacks wait (in OID order).
    pub fn next(&self, waiting: &[pg_sys::Oid]) -> Next {
        match self.owner {
            Some(mine) => {
                let others = waiting.iter().any(|o| *o != mine);
                if others && (!waiting.contains(&mine) || self.since.elapsed() >= TURN) {
                    Next::HandOver
                } else {
                    Next::Run(mine)
                }
            }
            None => Next::Run(
                waiting
                    .iter()
                    .find(|o| o.to_u32() > self.after)
                    .or(waiting.first())
                    .copied()
                    .unwrap_or(pg_sys::Oid::INVALID),
            ),
        }
    }

    /// Passes over `owner`, whose turn this process chose but found nothing of to run: unless
    /// it is bound to an owner, the next turn goes to the owner after them (one whose backfill
    /// waits for its receiver must not hold up the owners after it).
    pub fn pass(&mut self, owner: pg_sys::Oid) {
        if self.owner.is_none() && owner != pg_sys::Oid::INVALID {
            self.after = owner.to_u32();
        }
    }

    /// Whether this process may call a callback as `owner`: only if it called none as anyone
    /// else. The first one binds it, and is written down for the next runner at once: a
    /// process that ends in the middle of its turn without handing over (the watchdog ends
    /// one whose callback or chunk goes on after its cancel) must not leave the next one
    /// starting from the first owner again, or an owner whose every callback ends its runner
    /// would have the turn after each, as long as their callbacks keep coming.
    pub fn admit(&mut self, owner: pg_sys::Oid) -> bool {
        match self.owner {
            Some(mine) => mine == owner,
            None => {
                self.owner = Some(owner);
                self.since = Instant::now();
                self.hand_over();
                true
            }
        }
    }

    /// Leaves the next runner of this database where this one's turn ended, in its database's
    /// entry, a free one, or (the table full) the oldest.
    pub fn hand_over(&self) {
        let until_vacuum = self.vacuum.saturating_duration_since(Instant::now());
        let mut handovers = HANDOVERS.exclusive();
        handovers.written += 1;
        let handover = Handover {
            database: self.database.to_u32(),
            owner: self.owner.map_or(self.after, pg_sys::Oid::to_u32),
            subscription: self.last,
            vacuum_at: now_ms().saturating_add(until_vacuum.as_millis() as u64),
            written: handovers.written,
        };
        let entries = &handovers.entries;
        let slot = (entries.iter().position(|h| h.database == handover.database))
            .or_else(|| entries.iter().position(|h| h.database == 0))
            .or_else(|| (0..entries.len()).min_by_key(|&i| entries[i].written));
        if let Some(i) = slot {
            handovers.entries[i] = handover;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
