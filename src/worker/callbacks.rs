//! The callback runner: a background worker of its own that calls each subscription's SQL
//! callback after an event is delivered or dies.
//!
//! Callbacks are user code of unknown speed, so they never run in a delivery worker: a slow one
//! would stall every request in flight there. Delivery workers queue them (in the transaction
//! that records the outcome) and wake this process. Each callback runs in its own transaction,
//! as the subscription's owner, under `pg_webhook.callback_timeout`; its effects and its
//! removal from the queue commit together, and a failure is rolled back and written on the
//! event instead. Either way the callback is not run again. Subscriptions take turns (see
//! pending_callbacks.sql), and a batch is read again after `BATCH_TIME`.
//!
//! The runner also runs backfills' chunks (see backfills.rs), which run their owner's filter.
//! A runner process runs the callbacks and chunks of one owner only, and ends when another
//! owner's turn comes: the launcher starts a fresh one for it (see `turn`). What a callback or
//! a filter leaves in its session (a `dblink` connection, say) is thus never within reach of
//! another owner's.
//! Session-level advisory locks a callback took are released when it ends, even for the next
//! callback of the same owner: nobody but a superuser could end the process holding them.

mod call;
mod pending;
mod turn;

pub use turn::init_preloaded;

use std::time::{Duration, Instant};

use pg_webhook_core::text::clipped;
use pgrx::prelude::*;

use super::backend::{connect, decode_start};
use super::backend::{install_signal_handlers, reload_config_if_asked, wait_latch};
use super::backfills::{Backfills, Round};
use super::txn;
use super::watchdog;
use crate::guc::WorkerSettings;
use crate::queue::{extension_readiness, Readiness};
use crate::wake::{Registration, CALLBACK_RUNNER};
use call::{call, event_of, uncount_start};
use pending::{read_owners, read_pending, Pending};
use turn::{Next, Turn};

/// The runner's background worker type (`pg_stat_activity.backend_type`).
pub(super) const RUNNER_TYPE: &str = "pg_webhook callbacks";

/// Callbacks read per transaction; each then runs in its own.
const BATCH: i64 = 50;
/// A batch is read again after running this long, so callbacks queued meanwhile take their
/// turn (see pending_callbacks.sql) instead of waiting for the whole batch.
const BATCH_TIME: Duration = Duration::from_secs(1);

const DONE: &str = include_str!("../../sql/worker/callback_done.sql");
const STARTED: &str = include_str!("../../sql/worker/callback_started.sql");
/// Longest error text of a callback (or a backfill chunk) kept on its event and logged.
pub(super) const USER_ERROR_LEN: usize = 4096;

/// A callback whose runner stopped while it ran this many times is not started again.
const MOST_STARTS: i32 = 2;

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_webhook_callbacks_main(arg: pg_sys::Datum) {
    install_signal_handlers();
    let (db_oid, _) = decode_start(arg);
    let database = connect(db_oid);
    watchdog::install();
    // SAFETY: a plain read of a backend global.
    let pid = unsafe { pg_sys::MyProcPid };
    match crate::wake::register_worker(db_oid, CALLBACK_RUNNER, pid) {
        Registration::Registered => {}
        Registration::Full => warning!(
            "pg_webhook callback runner: no free wake-up slot; relying on pg_webhook.poll_interval, and a callback blocked where the watchdog cannot end it holds up the others"
        ),
        Registration::Taken => {
            log!("pg_webhook callback runner: another process is this database's runner already; leaving");
            return;
        }
    }
    let mut delay = Duration::from_millis(100);
    while txn::run("setting up the callback runner's session", || {
        Spi::run(include_str!("../../sql/worker/callbacks_session.sql"))
    })
    .is_err()
    {
        wait_latch(delay);
        pg_sys::check_for_interrupts!();
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    let mut turn = Turn::take_over(db_oid);
    let mut backfills = Backfills::default();
    let mut schedule_seen = crate::wake::epochs().0;
    let mut handed_over = false;
    loop {
        pg_sys::check_for_interrupts!();
        if crate::wake::abandoned(pid) {
            break;
        }
        if reload_config_if_asked() && !crate::guc::serves(&database) {
            break; // this database is no longer served
        }
        // The runner also vacuums pg_webhook's tables (see vacuum.rs): never a delivery worker.
        if Instant::now() >= turn.vacuum {
            turn.vacuum = Instant::now() + super::vacuum::VACUUM_EVERY;
            super::vacuum::vacuum_due_tables(&mut turn.vacuumed, turn::now_ms());
        }
        let schedule = crate::wake::epochs().0;
        if schedule != schedule_seen {
            // A backfill was started (or a resume or replay): look at backfills now.
            schedule_seen = schedule;
            backfills.next = None;
        }
        super::backend::report_activity(Some("running callbacks"));
        let (owner, taken, failed) = match run_batch(&mut turn) {
            Batch::Ran {
                owner,
                taken,
                failed,
            } => (owner, taken, failed),
            Batch::HandOver => {
                handed_over = true;
                break;
            }
            Batch::Missing => {
                // pg_webhook is not installed here: nothing to run.
                crate::wake::note_missing(db_oid);
                break;
            }
        };
        if crate::wake::abandoned(pid) {
            break;
        }
        // The same owner's backfill chunks, between its callbacks (see backfills.rs).
        let chunks = match owner {
            Some(owner) if backfills.due(Instant::now()) => {
                match backfills.round(owner, &mut |o| turn.admit(o)) {
                    Round::NotAdmitted => {
                        handed_over = true;
                        break;
                    }
                    Round::Ran => true,
                    Round::Idle => false,
                }
            }
            _ => false,
        };
        if taken == 0 && !chunks {
            turn.pass(owner.unwrap_or(pg_sys::Oid::INVALID));
        }
        super::backend::report_activity(None);
        // (A batch takes turns between subscriptions, so it may be short with more waiting:
        // read again until one finds nothing.)
        if (taken == 0 && !chunks) || failed > 0 {
            let now = Instant::now();
            let until_vacuum = turn.vacuum.saturating_duration_since(now);
            let until_backfills = backfills
                .next
                .map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
            let wait = WorkerSettings::read().poll_interval.min(until_vacuum);
            wait_latch(wait.min(until_backfills));
        }
    }
    if crate::wake::abandoned(pid) {
        // Taken for stuck while its call went on: a fresh runner has this one's place and
        // turn, which a hand-over from here would overwrite.
        log!("pg_webhook callback runner: abandoned as stuck while a call went on; leaving");
        crate::wake::unregister_worker(pid);
        return;
    }
    // Whatever ended the loop, the turn ended here, not with the process in the middle of it
    // (which would have the owner sit out, see `turn`).
    turn.hand_over();
    crate::wake::unregister_worker(pid);
    if handed_over {
        // The launcher starts the next runner when it sees this one gone: it is told when a
        // runner it started exits, and woken here for one it adopted.
        crate::wake::wake_launcher();
    }
}

/// Releases the session-level advisory locks a callback or a backfill chunk's filter took
/// (`pg_advisory_lock`, `pg_try_advisory_lock`), as `pg_advisory_unlock_all()` does. Neither
/// its commit nor the rollback of its failure does: they would stay with the runner process,
/// which only a superuser may end, blocking whoever waits for them (its owner's own sessions
/// included) for as long as it runs — and its owner's next callbacks in the same process could
/// release or take them over. Such a session lock ends with the callback or chunk, like a
/// transaction-level one. pg_webhook itself takes none (capture's locks are transaction-level),
/// so nothing of the runner's is released.
pub(super) fn release_session_advisory_locks() {
    // SAFETY: drops only session-held locks of the advisory lock method, in a transaction,
    // as the SQL-callable pg_advisory_unlock_all() does anywhere.
    unsafe { pg_sys::LockReleaseSession(pg_sys::USER_LOCKMETHOD as pg_sys::LOCKMETHODID) };
}

/// What one batch did.
enum Batch {
    /// Took `taken` callbacks of `owner`'s turn from the queue; `failed` of them could not
    /// even be recorded (they are tried again). `owner` is `None` when this pg_webhook is not
    /// the one this build runs (or was not read): no backfill runs then either.
    Ran {
        owner: Option<pg_sys::Oid>,
        taken: usize,
        failed: usize,
    },
    /// Another owner's callbacks are waiting, and this process may not call them: it ends,
    /// for a fresh one.
    HandOver,
    /// pg_webhook is not installed in this database.
    Missing,
}

/// Runs up to one batch of callbacks, of the owner whose turn it is (see `turn`).
fn run_batch(turn: &mut Turn) -> Batch {
    let read = txn::run("reading pending callbacks", || {
        Ok(match extension_readiness()? {
            Readiness::Ready => {
                let extension = txn::locked_extension();
                match turn.next(&read_owners()?) {
                    Next::Run(owner) => {
                        Read::Batch(extension, Some(owner), read_pending(turn.last, owner)?)
                    }
                    Next::HandOver => Read::HandOver,
                }
            }
            Readiness::OtherVersion(_) => Read::Batch(pg_sys::Oid::INVALID, None, Vec::new()),
            Readiness::Missing => Read::Missing,
        })
    });
    let (extension, owner, pending) = match read {
        Ok(Read::Batch(extension, owner, pending)) => (extension, owner, pending),
        Ok(Read::HandOver) => return Batch::HandOver,
        Ok(Read::Missing) => return Batch::Missing,
        // Logged by txn::run; try again after the wait.
        Err(_) => {
            return Batch::Ran {
                owner: None,
                taken: 0,
                failed: 1,
            }
        }
    };
    let mut taken = 0;
    let mut failed = 0;
    let started = Instant::now();
    for callback in &pending {
        if taken > 0 && started.elapsed() >= BATCH_TIME {
            break;
        }
        // The check that keeps owners apart: whatever the queries chose (each saw the queue
        // at a moment of its own), this process calls no callback as another owner than the
        // one it called one as. One that calls nothing may run anywhere.
        if taken > 0 && crate::wake::abandoned(turn.pid()) {
            break; // the loop ends the process
        }
        if callback.function.is_some() && !turn.admit(callback.owner) {
            return Batch::HandOver;
        }
        turn.last = callback.subscription_id;
        match run_one(callback, extension) {
            Some(ran) => failed += usize::from(!ran),
            // The extension was dropped and made again since the batch was read: the rest of
            // it named the old one's events, functions and owners. Read again.
            None => break,
        }
        taken += 1;
    }
    Batch::Ran {
        owner,
        taken,
        failed,
    }
}

/// What the batch's transaction read.
enum Read {
    /// These callbacks of the turn of this owner (`None`: another pg_webhook), read in this
    /// pg_webhook.
    Batch(pg_sys::Oid, Option<pg_sys::Oid>, Vec<Pending>),
    HandOver,
    Missing,
}

/// One callback in its own transaction: its effects and its removal from the queue commit
/// together; on failure only the removal and the error on the event do. False when even that
/// could not be recorded (it stays queued and is tried again).
///
/// Before the call, a transaction of its own counts the start, so that if the runner dies
/// during the call (the watchdog, a crash, a shutdown) the next runner knows: it starts it once
/// more, and after `MOST_STARTS` records it as failed instead.
///
/// `None`, having done nothing, when the transaction's pg_webhook is not `extension`, the one
/// the callback was read from.
fn run_one(callback: &Pending, extension: pg_sys::Oid) -> Option<bool> {
    let timeout = crate::guc::callback_timeout();
    let may_start = callback.function.is_some() && callback.starts < MOST_STARTS;
    if may_start {
        let marked = txn::run("marking a callback started", || {
            if !txn::same_extension(extension) {
                return Ok(false);
            }
            Spi::run_with_args(STARTED, &[callback.event_id.into()]).map(|()| true)
        });
        match marked {
            Ok(true) => {}
            Ok(false) => return None,
            Err(_) => return Some(false),
        }
    }
    // A failure before the call (a lock someone holds) takes its start back; after it, only
    // a lock that recording the outcome waited too long for: the count stops other failures.
    let (called, recording) = (std::cell::Cell::new(false), std::cell::Cell::new(false));
    let ran = txn::run_coded("running a callback", || {
        if !txn::same_extension(extension) {
            return Ok(None);
        }
        let event = match callback.function {
            Some(_) => event_of(callback.event_id, timeout),
            None => Ok(None),
        };
        if let Err((Some(code), e)) = &event {
            // It waited too long for a lock (a DBA's VACUUM FULL of a pg_webhook table): no
            // failure of the callback's. Tried again, not recorded as failed uncalled.
            if super::backfills::waited_too_long(*code) {
                error!("the event could not be read for the callback yet: {e}");
            }
        }
        let failure = match (callback.function, event) {
            (_, Err((_, e))) => Some(format!("the event could not be read for the callback: {e}")),
            (None, _) if callback.orphan => Some(
                "the subscription's owner's role was dropped: an orphan's callback is not called (a superuser may hand it over with webhook.set_owner())"
                    .to_string(),
            ),
            // Purged or replayed meanwhile (a replay gets a callback of its own when it
            // finishes), or the subscription no longer has a callback: nothing to call.
            (None, _) | (_, Ok(None)) => None,
            (Some(_), Ok(Some(_))) if !may_start => Some(format!(
                "the callback was stopped {} times before it finished (it ran past pg_webhook.callback_timeout and ignored the cancel, or the server stopped); it is not run again",
                callback.starts
            )),
            (Some(_), Ok(Some(_))) if !callback.function_exists => Some(gone(callback)),
            (Some(f), Ok(Some(event))) => {
                called.set(true);
                call(f, event, callback.owner, timeout).err()
            }
        }
        // A callback's own message may be of any size: kept and logged in part.
        .map(|failure| clipped(&failure, USER_ERROR_LEN));
        recording.set(true);
        Spi::connect_mut(|client| {
            let retention = f64::from(crate::guc::RETENTION_S.get().max(0));
            let dead_retention = f64::from(crate::guc::DEAD_RETENTION_S.get().max(0));
            client.update(
                DONE,
                None,
                &[
                    callback.event_id.into(),
                    failure.clone().into(),
                    retention.into(),
                    dead_retention.into(),
                ],
            )?;
            Ok::<(), pgrx::spi::Error>(())
        })?;
        recording.set(false);
        if let Some(error) = failure {
            warning!(
                "pg_webhook: callback of subscription {} failed for event {}: {error}",
                callback.subscription_id,
                callback.event_id
            );
        }
        Ok(Some(()))
    });
    match ran {
        Ok(Some(())) => Some(true),
        Ok(None) => None,
        Err((code, _)) => {
            let waited = code.is_some_and(super::backfills::waited_too_long);
            if may_start && (!called.get() || (recording.get() && waited)) {
                uncount_start(callback.event_id);
            }
            Some(false)
        }
    }
}

/// Why a callback bound to a function that is gone is not called.
fn gone(callback: &Pending) -> String {
    let signature = callback.signature.as_deref().unwrap_or("(unknown)");
    if callback.signature_taken {
        format!(
            "the callback function {signature} the subscription was made with no longer exists in this database; a function of that signature exists now, but it is another one (made again, or restored under another owner) and is not called in its place; set it with a new subscription"
        )
    } else {
        format!(
            "the callback function {signature} no longer exists in this database (dropped, or not restored with the subscription); set another with a new subscription"
        )
    }
}
