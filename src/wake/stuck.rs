//! Callback runners stuck in a call: the watchdog (see `worker::watchdog`) ends a runner whose
//! callback or backfill chunk goes on after its cancel, but only at the code's next interrupt
//! check, and a call blocked in the kernel without one (`dblink_connect` to a server that never
//! answers) makes none.
//!
//! A runner publishes in its wake-up slot when its watchdog fires, and whose code it runs. One
//! still registered `STUCK` after its watchdog fired is stuck: the launcher abandons it (its
//! slot is kept, under `ABANDONED_RUNNER`, until the process ends) and starts a fresh runner
//! (see `worker::launcher`), so the other owners' callbacks and chunks go on. Runners run no
//! code of an owner whose code an abandoned runner of their database runs: each of that owner's
//! callbacks could block one more process. At most `MOST_ABANDONED` per database: each holds a
//! background worker slot until its call returns.

use std::time::Duration;

use pgrx::pg_sys;

use super::{CALLBACK_RUNNER, WORKERS};

/// How long after its watchdog fired a runner that is still alive is taken for stuck. Ending
/// a process takes milliseconds; this leaves room for a machine under load.
pub const STUCK: Duration = Duration::from_secs(10);

/// The slot index of a runner abandoned as stuck.
pub const ABANDONED_RUNNER: i32 = -2;

/// Most runners abandoned at once in a database; past that, its callbacks wait for them.
pub const MOST_ABANDONED: usize = 4;

/// Publishes when the watchdog of worker `pid` fires (`after` from now), or that it is not
/// armed (`None`).
pub fn publish_watchdog(pid: i32, after: Option<Duration>) {
    let at = after.map_or(0, |after| {
        monotonic_ms().saturating_add(after.as_millis() as u64)
    });
    let mut workers = WORKERS.exclusive();
    if let Some(slot) = workers.slots_mut().iter_mut().find(|s| s.pid == pid) {
        slot.watchdog_at = at;
    }
}

/// Publishes whose code runner `pid` runs (a runner runs one owner's, see
/// `worker::callbacks::turn`).
pub fn publish_owner(pid: i32, owner: pg_sys::Oid) {
    let mut workers = WORKERS.exclusive();
    if let Some(slot) = workers.slots_mut().iter_mut().find(|s| s.pid == pid) {
        slot.owner = owner.to_u32();
    }
}

/// Whether runner `pid` is still registered `STUCK` after its watchdog fired.
pub fn stuck(pid: i32) -> bool {
    let now = monotonic_ms();
    (WORKERS.share().slots().iter()).any(|s| s.pid == pid && is_stuck(s, now))
}

/// How long until a runner would be taken for stuck, if its call goes on (`None`: none is on
/// its way there): the launcher looks then.
pub fn next_stuck_check() -> Option<Duration> {
    let now = monotonic_ms();
    let next = (WORKERS.share().slots().iter())
        .filter(|s| s.pid != 0 && s.index == CALLBACK_RUNNER && s.watchdog_at != 0)
        .map(stuck_at)
        .filter(|at| *at > now)
        .min()?;
    Some(Duration::from_millis(next - now))
}

/// What `abandon` did.
#[derive(PartialEq, Eq)]
pub enum Abandon {
    /// The runner is abandoned: a fresh one may register.
    Abandoned,
    /// `MOST_ABANDONED` of the database's are abandoned already: nothing done.
    Capped,
    /// The runner is no longer stuck (its call returned, or it ended): nothing done.
    NotStuck,
}

/// Abandons runner `pid` of `database` if it is still stuck: its slot stays, under
/// `ABANDONED_RUNNER`, until it ends, and a fresh runner may register.
pub fn abandon(pid: i32, database: pg_sys::Oid) -> Abandon {
    let now = monotonic_ms();
    let mut workers = WORKERS.exclusive();
    let abandoned = (workers.slots().iter())
        .filter(|s| s.pid != 0 && s.database == database.to_u32() && s.index == ABANDONED_RUNNER)
        .count();
    let Some(slot) = (workers.slots_mut().iter_mut()).find(|s| s.pid == pid && is_stuck(s, now))
    else {
        return Abandon::NotStuck;
    };
    if abandoned >= MOST_ABANDONED {
        return Abandon::Capped;
    }
    slot.index = ABANDONED_RUNNER;
    slot.watchdog_at = 0;
    Abandon::Abandoned
}

/// Whether runner `pid` has been abandoned (a fresh one runs in its place): it must end
/// without a word to the next runner, whose turn it would overwrite.
pub fn abandoned(pid: i32) -> bool {
    (WORKERS.share().slots().iter()).any(|s| s.pid == pid && s.index == ABANDONED_RUNNER)
}

/// The owners whose code the abandoned runners of `database` run: no other runner runs theirs
/// until those end.
pub fn held_owners(database: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    (WORKERS.share().slots().iter())
        .filter(|s| {
            s.pid != 0
                && s.database == database.to_u32()
                && s.index == ABANDONED_RUNNER
                && s.owner != 0
        })
        .map(|s| pg_sys::Oid::from(s.owner))
        .collect()
}

/// The runners of `database` abandoned as stuck, or stuck and not abandoned (the cap).
pub fn stuck_runners(database: pg_sys::Oid) -> usize {
    let now = monotonic_ms();
    (WORKERS.share().slots().iter())
        .filter(|s| s.pid != 0 && s.database == database.to_u32())
        .filter(|s| s.index == ABANDONED_RUNNER || is_stuck(s, now))
        .count()
}

/// Whether the slot is a runner's (not abandoned) whose watchdog fired `STUCK` before `now`.
fn is_stuck(s: &super::Slot, now: u64) -> bool {
    s.index == CALLBACK_RUNNER && s.watchdog_at != 0 && stuck_at(s) <= now
}

fn stuck_at(slot: &super::Slot) -> u64 {
    slot.watchdog_at.saturating_add(STUCK.as_millis() as u64)
}

/// Milliseconds on the system's monotonic clock, the same in every process. (PostgreSQL's
/// timers follow the wall clock: after it steps back, the watchdog fires late, and a runner may
/// be abandoned while its call goes on within its time; it ends when the call returns, see
/// `abandoned`.)
fn monotonic_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the current time into `now`; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64)
        .saturating_mul(1000)
        .saturating_add(now.tv_nsec as u64 / 1_000_000)
}
