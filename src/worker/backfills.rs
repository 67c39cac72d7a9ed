//! Backfills (`webhook.backfill()`), in worker 0: each chunk is one short transaction of its
//! own (`capture::backfill::run_chunk`), run between the worker's claims and records, for at
//! most a slice of time per round, so delivery keeps going while a big table is read.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use super::{txn, Worker};
use crate::capture::backfill::{run_chunk, Step};

const LIST_RUNNING: &str = include_str!("../../sql/backfill/list_running.sql");
const MARK_RUNNING: &str = include_str!("../../sql/backfill/mark_running.sql");
const END_ROUND: &str = include_str!("../../sql/backfill/end_round.sql");
const CHUNK_ERROR: &str = include_str!("../../sql/backfill/chunk_error.sql");
const STOP: &str = include_str!("../../sql/backfill/stop.sql");

/// Longest a round of chunks runs before the worker gets back to delivering; the next round
/// comes no sooner than as long again, so a backfill takes at most half of worker 0's time and
/// delivery (of its own events too) keeps pace.
const SLICE: Duration = Duration::from_millis(50);
/// A chunk that runs longer than this is cancelled (see `backfill`); one that goes on
/// `watchdog::GRACE` after its cancel ends the worker.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(2);
/// When a backfill waits for its receiver to catch up, it is looked at again after this.
const AHEAD_WAIT: Duration = Duration::from_millis(250);
/// While backfills run, they are looked at again at least this often.
const RUNNING: Duration = Duration::from_secs(1);
/// When none runs, the worker looks again only after this: `webhook.backfill()` wakes it at
/// commit (the schedule epoch, wake.rs), so this is a safety net, not a poll.
const IDLE: Duration = Duration::from_secs(30);
/// A chunk that failed this many times in a row fails its backfill (a filter that raises on
/// some row, a type that no longer reads its own keys); fewer are retried — a deadlock, a lock
/// timeout — after a second per failure.
const MAX_FAILURES: u32 = 3;
/// A backfill whose chunks' worker ended this many times while running them fails (counted
/// over its life, so a filter that hangs only now and then cannot end worker 0 for ever): its
/// chunk went on after its cancel (a filter function that catches `query_canceled`), so the
/// watchdog ended the worker, and the next worker would run the same chunk again.
const MAX_INTERRUPTIONS: i32 = 3;

/// Failures that say nothing about the backfill itself: a lock wait over the chunk's
/// `lock_timeout` (sql/backfill/chunk_settings.sql), a lost deadlock, a serialization failure.
fn waited_too_long(code: PgSqlErrorCode) -> bool {
    matches!(
        code,
        PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE
            | PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED
            | PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE
    )
}

/// What the worker remembers between rounds.
#[derive(Default)]
pub(super) struct Backfills {
    /// Consecutive failed chunks per backfill, and when to try the next.
    failures: HashMap<i64, (u32, Instant)>,
    /// When to run a round next (`None`: now).
    pub(super) next: Option<Instant>,
}

impl Worker {
    /// Runs chunks of the running backfills until they are done, wait for their receivers, or
    /// the slice is used; says when to come back in `backfills.next`.
    pub(super) fn backfill(&mut self, now: Instant) {
        self.backfills.next = Some(now + IDLE);
        super::backend::report_activity(Some("backfill"));
        let Ok(running) = txn::run("listing backfills", || {
            Spi::connect(|client| {
                let mut ids = Vec::new();
                for row in client.select(LIST_RUNNING, None, &[])? {
                    ids.push(row.get::<i64>(1)?.unwrap_or_default());
                }
                Ok(ids)
            })
        }) else {
            return;
        };
        self.backfills.failures.retain(|id, _| running.contains(id));
        if running.is_empty() {
            return;
        }
        self.backfills.next = Some(now + RUNNING);
        let mut more = false;
        for id in running {
            if self.backfills.failures.get(&id).is_some_and(|f| now < f.1) {
                continue;
            }
            if !self.mark_running(id) {
                continue;
            }
            loop {
                // A chunk runs the owner's filter on worker 0's main thread, where delivery
                // waits for it: a slow one is cancelled, and fails the backfill if it keeps
                // being (a cancel counts as a failure).
                // A filter function can catch the cancel and go on: the watchdog ends the
                // worker then, and the backfill's mark (mark_running.sql) tells the next one.
                super::watchdog::start_statement_timer(CHUNK_TIMEOUT);
                super::watchdog::arm(CHUNK_TIMEOUT + super::watchdog::GRACE);
                let chunk = txn::run_coded("backfill chunk", || run_chunk(id));
                super::watchdog::disarm();
                super::watchdog::end_statement_timer();
                match chunk {
                    Ok(Step::Sent { .. }) => {
                        self.backfills.failures.remove(&id);
                        if now.elapsed() >= SLICE {
                            more = true;
                            break;
                        }
                    }
                    Ok(Step::Done { .. }) => {
                        self.backfills.failures.remove(&id);
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
                    Err((code, e)) => {
                        self.chunk_failed(id, code.is_some_and(waited_too_long), e);
                        break;
                    }
                }
            }
            self.end_round(id);
            if now.elapsed() >= SLICE {
                more = true;
                break;
            }
        }
        if more {
            self.backfills.next = Some(Instant::now() + SLICE);
        }
    }

    /// Marks backfill `id` as having its chunks run by this process; false when they may not
    /// run now: not marked (not running, or its row locked), or failed here for the times its
    /// worker ended while they ran.
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
        let next = self.backfills.next.map_or(at, |n| n.min(at));
        self.backfills.next = Some(next.max(Instant::now()));
    }

    /// Fails backfill `id`, whose chunks' worker ended `interruptions` times while running them.
    fn interrupted_too_often(&mut self, id: i64, interruptions: i32) {
        let reason = format!(
            "its worker ended while running its chunks {interruptions} times: a chunk that goes on {} s after its cancel (a filter function that catches query_canceled) ends the worker",
            super::watchdog::GRACE.as_secs()
        );
        log!("pg_webhook: backfill {id} failed: {reason}");
        self.backfills.failures.remove(&id);
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

    /// Records a failed chunk: retried a second per failure later, or the backfill fails
    /// after `MAX_FAILURES` — unless it only `waited` too long for a lock (a long writer of an
    /// ordered table) or lost a deadlock, which is retried without counting.
    fn chunk_failed(&mut self, id: i64, waited: bool, error: String) {
        let before = self.backfills.failures.get(&id).map_or(0, |f| f.0);
        let failures = if waited { before.max(1) } else { before + 1 };
        let retry_at = Instant::now() + Duration::from_secs(u64::from(failures));
        self.backfills.failures.insert(id, (failures, retry_at));
        let what = if failures >= MAX_FAILURES {
            let reason = format!("a chunk failed {failures} times in a row: {error}");
            log!("pg_webhook: backfill {id} failed: {reason}");
            (
                "failing the backfill",
                STOP,
                vec![id.into(), "failed".into(), reason.into()],
            )
        } else {
            (
                "recording a backfill error",
                CHUNK_ERROR,
                vec![id.into(), error.into()],
            )
        };
        // On failure txn::run has logged it; the next round tries again.
        if txn::run(what.0, || {
            Spi::connect_mut(|client| client.update(what.1, None, &what.2).map(|_| ()))
        })
        .is_ok()
        {
            self.next_round_by(retry_at);
        }
    }
}
