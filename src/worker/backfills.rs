//! Backfills (`webhook.backfill()`), in the runner (the process that calls callbacks, one
//! owner's code per process: see `callbacks::turn`): each chunk is one short transaction of its
//! own (`capture::backfill::run_chunk`), run between the runner's callbacks for at most a slice
//! of time per round, so callbacks keep going while a big table is read.
//!
//! A chunk runs its owner's filter, which can leave things in its session that outlive the
//! transaction (a `dblink` connection, logged in as the owner). When the chunks ran in a
//! delivery worker, one for every owner, another owner's filter could use them as the first.

use std::time::{Duration, Instant};

use pg_webhook_core::text::clipped;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use super::txn;
use crate::capture::backfill::{run_chunk, Step};

const LIST_RUNNING: &str = include_str!("../../sql/backfill/list_running.sql");
const MARK_RUNNING: &str = include_str!("../../sql/backfill/mark_running.sql");
const END_ROUND: &str = include_str!("../../sql/backfill/end_round.sql");
const CHUNK_ERROR: &str = include_str!("../../sql/backfill/chunk_error.sql");
const STOP: &str = include_str!("../../sql/backfill/stop.sql");

/// Longest a round of chunks runs before the runner gets back to its callbacks; the next round
/// comes no sooner than as long again, so a backfill takes at most half of the runner's time.
const SLICE: Duration = Duration::from_millis(50);
/// A chunk that runs longer than this is cancelled (see `backfill`); one that goes on
/// `watchdog::GRACE` after its cancel ends the runner. Doubled after each failure in a row
/// (`chunk_timeout`).
const CHUNK_TIMEOUT: Duration = Duration::from_secs(2);
/// When a backfill waits for its receiver to catch up, it is looked at again after this.
const AHEAD_WAIT: Duration = Duration::from_millis(250);
/// While backfills run, they are looked at again at least this often.
const RUNNING: Duration = Duration::from_secs(1);
/// When none runs, the worker looks again only after this: `webhook.backfill()` wakes it at
/// commit (the schedule epoch, wake.rs), so this is a safety net, not a poll.
const IDLE: Duration = Duration::from_secs(30);
/// A chunk that failed this many times in a row fails its backfill (a filter that raises on
/// some row, a type that no longer reads its own keys); fewer are retried after a second per
/// failure (counted in the backfill's row: chunk_error.sql). A lock timeout or a lost deadlock
/// is no failure: it is retried, after a wait that doubles up to 10 s.
const MAX_FAILURES: i32 = 3;
/// A backfill whose chunks' runner ended this many times while running them fails (counted
/// over its life, so a filter that hangs only now and then cannot end the runner for ever): its
/// chunk went on after its cancel (a C function that ignores it), so the watchdog ended the
/// runner, and the next one would run the same chunk again.
const MAX_INTERRUPTIONS: i32 = 3;

/// Failures that say nothing about the backfill itself: a lock wait over the chunk's
/// `lock_timeout` (sql/backfill/chunk_settings.sql), a lost deadlock, a serialization failure.
/// (The same for the callback runner's read of a callback's event, see callbacks.rs.)
pub(super) fn waited_too_long(code: PgSqlErrorCode) -> bool {
    matches!(
        code,
        PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE
            | PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED
            | PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE
    )
}

/// What the runner remembers between rounds.
#[derive(Default)]
pub(super) struct Backfills {
    /// When to run a round next (`None`: now).
    pub(super) next: Option<Instant>,
}

/// What a round did.
pub(super) enum Round {
    /// Ran no chunk: none of the owner's backfills was due.
    Idle,
    /// Ran chunks (or found its backfills waiting for their receivers).
    Ran,
    /// A chunk's SQL would run as a role this process may not run code of (`admit` said no):
    /// the process hands over to a fresh one.
    NotAdmitted,
}

impl Backfills {
    /// Whether a round is due at `now`.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.next.is_none_or(|at| now >= at)
    }

    /// Runs chunks of `owner`'s running backfills (and of those whose subscription is gone)
    /// until they are done, wait for their receivers, or the slice is used; says when to come
    /// back in `next`. `admit` agrees (or not) to run a chunk's SQL as the role it names.
    pub(super) fn round(
        &mut self,
        owner: pg_sys::Oid,
        admit: &mut dyn FnMut(pg_sys::Oid) -> bool,
    ) -> Round {
        let now = Instant::now();
        self.next = Some(now + IDLE);
        let Ok(running) = txn::run("listing backfills", || {
            Spi::connect(|client| {
                let mut ids = Vec::new();
                for row in client.select(LIST_RUNNING, None, &[owner.into()])? {
                    let id = row.get::<i64>(1)?.unwrap_or_default();
                    let wait = row.get::<f64>(2)?.unwrap_or_default();
                    let failures = row.get::<i32>(3)?.unwrap_or_default();
                    let wait = Duration::try_from_secs_f64(wait).unwrap_or_default();
                    ids.push((id, wait, failures));
                }
                Ok(ids)
            })
        }) else {
            self.soon();
            return Round::Idle;
        };
        // Those after a failed chunk wait a second per failure (chunk_error.sql).
        let (due, later): (Vec<_>, Vec<_>) = running.into_iter().partition(|r| r.1.is_zero());
        if let Some(wait) = later.iter().map(|r| r.1).min() {
            self.next_round_by(now + wait);
        }
        if due.is_empty() {
            return Round::Idle;
        }
        super::backend::report_activity(Some("backfill"));
        self.next_round_by(now + RUNNING);
        let mut more = false;
        for (id, _, failures) in due {
            if !self.mark_running(id) {
                continue;
            }
            let mut refused = false;
            loop {
                // A chunk runs the owner's filter on the runner's main thread, where other
                // owners' work waits for it: a slow one is cancelled, and fails the backfill
                // if it keeps being (a cancel counts as a failure).
                // A C function can ignore the cancel and go on: the watchdog ends the runner
                // then, and the backfill's mark (mark_running.sql) tells the next one.
                let timeout = chunk_timeout(failures);
                super::watchdog::start_statement_timer(timeout);
                super::watchdog::arm(timeout + super::watchdog::GRACE);
                let chunk = txn::run_coded("backfill chunk", || run_chunk(id, &mut *admit));
                super::watchdog::disarm();
                super::watchdog::end_statement_timer();
                // Its filter's session advisory locks end with it, as a callback's do.
                super::callbacks::release_session_advisory_locks();
                match chunk {
                    Ok(Step::Sent { .. }) => {
                        if now.elapsed() >= SLICE {
                            more = true;
                            break;
                        }
                    }
                    Ok(Step::Done { .. }) => {
                        log!("pg_webhook: backfill {id} is done");
                        break;
                    }
                    Ok(Step::Stopped(reason)) => {
                        if let Some(reason) = reason {
                            log!("pg_webhook: backfill {id} stopped: {reason}");
                        }
                        break;
                    }
                    Ok(Step::Ahead) => {
                        self.next_round_by(Instant::now() + AHEAD_WAIT);
                        break;
                    }
                    Ok(Step::NotAdmitted(_)) => {
                        refused = true;
                        break;
                    }
                    Err((code, e)) => {
                        self.chunk_failed(id, code.is_some_and(waited_too_long), e);
                        break;
                    }
                }
            }
            self.end_round(id);
            if refused {
                return Round::NotAdmitted;
            }
            if now.elapsed() >= SLICE {
                more = true;
                break;
            }
        }
        if more {
            self.next = Some(Instant::now() + SLICE);
        }
        Round::Ran
    }

    /// Marks backfill `id` as having its chunks run by this process; false when they may not
    /// run now: not marked (not running, or its row locked), or failed here for the times its
    /// runner ended while they ran.
    fn mark_running(&mut self, id: i64) -> bool {
        // SAFETY: reads a backend global.
        let pid = unsafe { pg_sys::MyProcPid };
        let marked = txn::run("marking a backfill's chunks running", || {
            Spi::connect_mut(|client| {
                let rows = client.update(MARK_RUNNING, None, &[pid.into(), id.into()])?;
                Ok(match rows.into_iter().next() {
                    Some(row) => row.get::<i32>(1)?,
                    None => None,
                })
            })
        });
        match marked {
            Ok(Some(interruptions)) if interruptions >= MAX_INTERRUPTIONS => {
                self.interrupted_too_often(id, interruptions);
                // No chunk runs: the mark just made goes.
                self.end_round(id);
                false
            }
            Ok(Some(_)) => true,
            Ok(None) => false,
            Err(_) => {
                // Logged by txn::run.
                self.soon();
                false
            }
        }
    }

    /// Clears this process's mark on backfill `id` (see `mark_running`).
    fn end_round(&mut self, id: i64) {
        // SAFETY: reads a backend global.
        let pid = unsafe { pg_sys::MyProcPid };
        let ended = txn::run("ending a backfill round", || {
            Spi::connect_mut(|client| {
                client
                    .update(END_ROUND, None, &[pid.into(), id.into()])
                    .map(|_| ())
            })
        });
        if ended.is_err() {
            // Logged by txn::run. The mark stays this process's, which the next round's mark
            // does not count as an interruption, and ends.
            self.soon();
        }
    }

    /// Brings the next round forward to at most `RUNNING` from now.
    fn soon(&mut self) {
        self.next_round_by(Instant::now() + RUNNING);
    }

    /// Brings the next round forward to `at` (never into the past).
    fn next_round_by(&mut self, at: Instant) {
        let next = self.next.map_or(at, |n| n.min(at));
        self.next = Some(next.max(Instant::now()));
    }

    /// Fails backfill `id`, whose chunks' runner ended `interruptions` times while running them.
    fn interrupted_too_often(&mut self, id: i64, interruptions: i32) {
        let reason = format!(
            "its runner ended while running its chunks {interruptions} times: a chunk that goes on {} s after its cancel (a C function that ignores it) ends the runner",
            super::watchdog::GRACE.as_secs()
        );
        log!("pg_webhook: backfill {id} failed: {reason}");
        let failed = txn::run("failing an interrupted backfill", || {
            Spi::connect_mut(|client| {
                client
                    .update(STOP, None, &[id.into(), "failed".into(), reason.into()])
                    .map(|_| ())
            })
        });
        if failed.is_err() {
            // Logged by txn::run; the next round lists it again, still interrupted.
            self.soon();
        }
    }

    /// Records a failed chunk (chunk_error.sql): retried a second per failure later, or the
    /// backfill fails after `MAX_FAILURES` in a row — unless it only `waited` too long for a
    /// lock (a long writer of an ordered table) or lost a deadlock, which is retried without
    /// counting, after a wait that doubles with each in a row (up to 10 s).
    fn chunk_failed(&mut self, id: i64, waited: bool, error: String) {
        // A filter's error can quote a value of any size.
        let error = clipped(&error, super::callbacks::USER_ERROR_LEN);
        let recorded = txn::run("recording a backfill error", || {
            Spi::connect_mut(|client| {
                let args = [id.into(), error.clone().into(), waited.into()];
                let (failures, retry) = match client.update(CHUNK_ERROR, None, &args)?.next() {
                    Some(row) => (
                        row.get::<i32>(1)?.unwrap_or_default(),
                        row.get::<f64>(2)?.unwrap_or_default(),
                    ),
                    None => return Ok(Duration::ZERO), // not running any more
                };
                if failures >= MAX_FAILURES {
                    let reason = format!("a chunk failed {failures} times in a row: {error}");
                    log!("pg_webhook: backfill {id} failed: {reason}");
                    let args = [id.into(), "failed".into(), reason.into()];
                    client.update(STOP, None, &args)?;
                }
                Ok(Duration::try_from_secs_f64(retry).unwrap_or_default())
            })
        });
        // On failure txn::run has logged it; the next round tries again.
        match recorded {
            Ok(retry) => self.next_round_by(Instant::now() + retry.max(Duration::from_secs(1))),
            Err(_) => self.soon(),
        }
    }
}

/// The time a chunk of a backfill whose last `failures` chunks failed in a row may take: 2 s,
/// then 4 s and 8 s, so that a slow filter is cancelled three times (and fails the backfill)
/// within 14 s of the runner's time, while a chunk of large rows on a loaded machine, which
/// once took 2 s and a bit, is not failed for good by a moment's load.
fn chunk_timeout(failures: i32) -> Duration {
    CHUNK_TIMEOUT * (1u32 << failures.clamp(0, 2))
}
