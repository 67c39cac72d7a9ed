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
//!
//! An owner whose turn ended with its runner (the watchdog ends one whose callback or chunk goes
//! on after its cancel, `callback_timeout` plus 5 s into it) sits out the turns while others'
//! work waits, for `PENALTY`, doubled for each such turn less than `FORGIVEN` after their last
//! penalty ended (up to `LONGEST_PENALTY`): otherwise each of its turns would cost the others
//! that long, once per rotation, for as long as its callbacks keep coming (each is stopped twice
//! before it is recorded as failed).
//!
//! A process whose owner's call is stuck where the watchdog cannot end it is abandoned, and the
//! launcher starts the next runner beside it (`wake::stuck`): that one finds the turn written as
//! begun, not ended (a penalty, as above), and runs none of that owner's code while the
//! abandoned process lives.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

use crate::worker::vacuum::Vacuumed;

/// How long one owner's callbacks run in a process while another owner's wait (and the last
/// one started finishes).
const TURN: Duration = Duration::from_secs(1);
/// How long an owner whose turn ended with its runner sits out while others' work waits; doubled
/// for each such turn of theirs that ends less than `FORGIVEN` after their last penalty did.
const PENALTY: Duration = Duration::from_secs(10);
/// The most a penalty grows to.
const LONGEST_PENALTY: Duration = Duration::from_secs(300);
/// How long after their penalty ends an owner's next one still doubles it. Turns of theirs that
/// ended normally in between do not start them afresh: with one harmless turn between two that
/// end the runner, an owner would sit out 10 s each time, and cost the others
/// `callback_timeout` + 5 s every 10 s or so for as long as they liked.
const FORGIVEN: Duration = LONGEST_PENALTY;
/// Owners with a penalty remembered per database; a new one replaces the one that ends first.
const PENALTIES: usize = 4;

/// An owner sitting out turns while others' work waits.
#[derive(Clone, Copy, Default)]
struct Penalty {
    owner: u32,
    /// Until when, in milliseconds since the epoch.
    until: u64,
    /// Their turns that ended with the runner, each less than `FORGIVEN` after the last
    /// penalty's end.
    streak: u32,
}

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
    /// The tables' last VACUUMs.
    vacuumed: Vacuumed,
    /// When it was written, as `Handovers::written` counts: the oldest goes when the table is
    /// full (a database dropped, or no longer served, leaves its entry behind).
    written: u64,
    /// Whether the runner wrote it as it ended its turn; false when written as its turn began
    /// (`Turn::admit`), which the next runner finding it takes for a turn ended with the runner.
    ended: bool,
    penalties: [Penalty; PENALTIES],
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
    /// The tables' last VACUUMs (see `vacuum::Vacuumed`), handed on like `vacuum`.
    pub vacuumed: Vacuumed,
    /// The owners sitting out (see `PENALTY`), handed on to the next runner.
    penalties: [Penalty; PENALTIES],
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
        let mut penalties = handover.penalties;
        if !handover.ended && handover.owner != 0 {
            penalize(&mut penalties, handover.owner, now_ms());
        }
        let turn = Turn {
            database,
            owner: None,
            since: Instant::now(),
            after: handover.owner,
            last: handover.subscription,
            vacuum,
            vacuumed: handover.vacuumed,
            penalties,
        };
        // Written back at once: a process that ends before its first call without handing
        // over (pg_terminate_backend) must not lose the penalties.
        turn.write(true);
        turn
    }

    /// Whether `owner` sits out while others' work waits.
    fn sits_out(&self, owner: pg_sys::Oid, now: u64) -> bool {
        (self.penalties.iter()).any(|p| p.owner == owner.to_u32() && p.until > now)
    }

    /// Whose callbacks to run, given the owners whose callbacks wait (in OID order).
    /// Owners sitting out (see `PENALTY`) are passed over while any other waits; those whose
    /// code a runner abandoned as stuck runs (`wake::held_owners`), until it ends.
    pub fn next(&self, waiting: &[pg_sys::Oid]) -> Next {
        let now = now_ms();
        let held = crate::wake::held_owners(self.database);
        let waiting: Vec<pg_sys::Oid> = (waiting.iter().copied())
            .filter(|o| !held.contains(o))
            .collect();
        let due: Vec<pg_sys::Oid> = (waiting.iter().copied())
            .filter(|o| !self.sits_out(*o, now))
            .collect();
        match self.owner {
            Some(mine) => {
                let others = due.iter().any(|o| *o != mine);
                if others && (!waiting.contains(&mine) || self.since.elapsed() >= TURN) {
                    Next::HandOver
                } else {
                    Next::Run(mine)
                }
            }
            None => {
                let choice = if due.is_empty() { &waiting } else { &due };
                Next::Run(
                    (choice.iter())
                        .find(|o| o.to_u32() > self.after)
                        .or(choice.first())
                        .copied()
                        .unwrap_or(pg_sys::Oid::INVALID),
                )
            }
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
                self.write(false);
                // For the launcher and the next runner, should this process be abandoned as
                // stuck in this owner's code (`wake::stuck`).
                crate::wake::publish_owner(self.pid(), owner);
                true
            }
        }
    }

    /// This process's pid.
    pub fn pid(&self) -> i32 {
        // SAFETY: a plain read of a backend global.
        unsafe { pg_sys::MyProcPid }
    }

    /// Leaves the next runner of this database where this one's turn ended, as the process
    /// ends its turn (whatever the reason). The owner's penalties stay remembered (see
    /// `FORGIVEN`).
    pub fn hand_over(&self) {
        self.write(true);
    }

    /// Writes the hand-over (`ended`: as the turn ends) in its database's entry, a free one,
    /// or (the table full) the oldest.
    fn write(&self, ended: bool) {
        let until_vacuum = self.vacuum.saturating_duration_since(Instant::now());
        let mut handovers = HANDOVERS.exclusive();
        handovers.written += 1;
        let handover = Handover {
            database: self.database.to_u32(),
            owner: self.owner.map_or(self.after, pg_sys::Oid::to_u32),
            subscription: self.last,
            vacuum_at: now_ms().saturating_add(until_vacuum.as_millis() as u64),
            vacuumed: self.vacuumed,
            written: handovers.written,
            ended,
            penalties: self.penalties,
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

/// Has `owner`, whose turn ended with its runner at `now`, sit out: `PENALTY`, doubled for each
/// such turn of theirs before, each less than `FORGIVEN` after the last penalty's end; in their
/// entry, one forgiven, one over, or the one ending first.
fn penalize(penalties: &mut [Penalty; PENALTIES], owner: u32, now: u64) {
    let forgiven = |p: &Penalty| p.until.saturating_add(FORGIVEN.as_millis() as u64) <= now;
    let i = (penalties.iter().position(|p| p.owner == owner))
        .or_else(|| penalties.iter().position(forgiven))
        .or_else(|| penalties.iter().position(|p| p.until <= now))
        .unwrap_or_else(|| {
            (0..PENALTIES)
                .min_by_key(|&i| penalties[i].until)
                .unwrap_or(0)
        });
    let streak = if penalties[i].owner == owner && !forgiven(&penalties[i]) {
        penalties[i].streak.saturating_add(1)
    } else {
        1
    };
    let length = PENALTY
        .saturating_mul(1 << streak.saturating_sub(1).min(10))
        .min(LONGEST_PENALTY);
    penalties[i] = Penalty {
        owner,
        until: now.saturating_add(length.as_millis() as u64),
        streak,
    };
}

/// The wall clock in milliseconds since the epoch, as the hand-overs keep times.
pub(in crate::worker) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owners_turns_ended_with_the_runner_in_a_row_double_their_penalty_up_to_five_minutes() {
        let mut penalties = [Penalty::default(); PENALTIES];
        let mut lengths = Vec::new();
        for _ in 0..8 {
            penalize(&mut penalties, 7, 1_000);
            let p = penalties.iter().find(|p| p.owner == 7).copied();
            lengths.push(p.map_or(0, |p| p.until - 1_000));
        }
        assert_eq!(
            lengths,
            [10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]
        );
    }

    #[test]
    fn a_penalty_doubles_until_five_minutes_past_the_last_ones_end() {
        let mut penalties = [Penalty::default(); PENALTIES];
        let length = |penalties: &[Penalty; PENALTIES], now: u64| {
            (penalties.iter().find(|p| p.owner == 7)).map_or(0, |p| p.until - now)
        };
        penalize(&mut penalties, 7, 0);
        assert_eq!(length(&penalties, 0), 10_000);
        // Turns that ended normally in between change nothing.
        penalize(&mut penalties, 7, 309_999);
        assert_eq!(length(&penalties, 309_999), 20_000);
        penalize(&mut penalties, 7, 329_999 + 300_000);
        assert_eq!(length(&penalties, 629_999), 10_000, "forgiven");
    }

    #[test]
    fn a_new_penalty_takes_a_free_place_then_the_one_ending_first() {
        let mut penalties = [Penalty::default(); PENALTIES];
        for owner in 1..=4 {
            penalize(&mut penalties, owner, u64::from(owner) * 1_000);
        }
        penalize(&mut penalties, 5, 6_000);
        let mut owners: Vec<u32> = penalties.iter().map(|p| p.owner).collect();
        owners.sort();
        assert_eq!(owners, [2, 3, 4, 5], "owner 1's ended first");
        // One whose penalty is over makes way for a new owner before any running one.
        penalize(&mut penalties, 6, 13_500);
        let mut owners: Vec<u32> = penalties.iter().map(|p| p.owner).collect();
        owners.sort();
        assert_eq!(owners, [3, 4, 5, 6], "owner 2's (until 12 s) was over");
    }
}
