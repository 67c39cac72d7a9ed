//! The watchdog of user code that runs on the callback runner's main thread: a callback that outlives
//! `pg_webhook.callback_timeout`, or a backfill chunk (its owner's filter) that outlives 2 s,
//! is cancelled (a statement timeout), but PL/pgSQL can catch a cancel (`EXCEPTION WHEN
//! query_canceled`) and go on. A grace period later the watchdog ends the whole process the way
//! SIGTERM does: a FATAL at the next interrupt check, which no exception block can catch. The
//! launcher starts a new worker, which finds the callback marked as started (and records it as
//! failed instead of running it again, see `callbacks::run_one`), or the backfill's round
//! marked as another process's (and counts an interruption, see `backfills`).
//!
//! A call blocked where no interrupt check comes (`dblink_connect` to a server that never
//! answers) outlives the watchdog too. So `arm` publishes when it fires (`wake::stuck`), and
//! the launcher abandons a process still alive `wake::STUCK` after that and starts a fresh
//! runner beside it (`launcher`); the owner whose code that process runs waits until it ends
//! (`wake::held_owners`).

use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use pgrx::pg_sys;

extern "C-unwind" {
    // utils/timeout.h; not in pgrx's generated bindings.
    fn RegisterTimeout(id: c_int, handler: extern "C" fn()) -> c_int;
    fn enable_timeout_after(id: c_int, delay_ms: c_int);
    fn disable_timeout(id: c_int, keep_indicator: bool);
}

/// `USER_TIMEOUT` in PostgreSQL's `TimeoutId` enum (its thirteenth entry in PostgreSQL 15):
/// passed to `RegisterTimeout`, it asks for a free user-defined timeout.
const USER_TIMEOUT: c_int = 12;

/// How long after its cancel a callback or chunk may still run before its worker ends itself.
pub const GRACE: Duration = Duration::from_secs(5);

/// The timeout registered by `install` (-1: none yet).
static DEADLINE: AtomicI32 = AtomicI32::new(-1);

/// Registers the watchdog's timeout; once per process, after the database connection (which
/// sets up the timeout machinery).
pub fn install() {
    if DEADLINE.load(Ordering::Relaxed) < 0 {
        // SAFETY: registering a handler with the backend's timeout module, from the main thread.
        let id = unsafe { RegisterTimeout(USER_TIMEOUT, stop_now) };
        DEADLINE.store(id, Ordering::Relaxed);
    }
}

/// Arms the watchdog to fire `after` from now, and says when in the runner's wake-up slot:
/// should the process outlive it by `wake::STUCK` (blocked where its interrupt checks do not
/// come), the launcher starts a fresh runner beside it.
pub fn arm(after: Duration) {
    let id = DEADLINE.load(Ordering::Relaxed);
    if id >= 0 {
        // SAFETY: the timeout was registered by `install`.
        unsafe { enable_timeout_after(id, after.as_millis().clamp(1, i32::MAX as u128) as c_int) };
        crate::wake::publish_watchdog(my_pid(), Some(after));
    }
}

/// Disarms it (a no-op when it is not armed).
pub fn disarm() {
    let id = DEADLINE.load(Ordering::Relaxed);
    if id >= 0 {
        // SAFETY: as in `arm`.
        unsafe { disable_timeout(id, false) };
        crate::wake::publish_watchdog(my_pid(), None);
    }
}

fn my_pid() -> i32 {
    // SAFETY: a plain read of a backend global.
    unsafe { pg_sys::MyProcPid }
}

/// `STATEMENT_TIMEOUT` in PostgreSQL's `TimeoutId` enum: its fourth entry, as since 9.3.
const STATEMENT_TIMEOUT: c_int = 3;

/// Arms the backend's statement timer: `after` from now the running query is cancelled (a
/// background worker has no client statement that would arm it). Disarm with
/// `end_statement_timer` whichever way the work ends.
pub fn start_statement_timer(after: Duration) {
    // SAFETY: arms a timer of the backend's timeout module, from the main thread.
    unsafe {
        enable_timeout_after(
            STATEMENT_TIMEOUT,
            after.as_millis().clamp(1, i32::MAX as u128) as c_int,
        );
    }
}

/// Disarms the statement timer, and drops a cancel it fired after the work was done, so it does
/// not leak into the bookkeeping that follows.
pub fn end_statement_timer() {
    // SAFETY: disarms the timer armed by `start_statement_timer`; a plain store to a flag.
    unsafe {
        disable_timeout(STATEMENT_TIMEOUT, false);
        pg_sys::QueryCancelPending = 0;
    }
}

/// Runs in the SIGALRM handler: does what `die()` (the SIGTERM handler) does, which is safe
/// there — set the flags the next `CHECK_FOR_INTERRUPTS` acts on, and the latch.
extern "C" fn stop_now() {
    // SAFETY: plain stores to sig_atomic_t flags and SetLatch, both async-signal-safe.
    unsafe {
        pg_sys::InterruptPending = 1;
        pg_sys::ProcDiePending = 1;
        pg_sys::SetLatch(pg_sys::MyLatch);
    }
}
