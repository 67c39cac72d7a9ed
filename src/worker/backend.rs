//! The plumbing every pg_webhook background process shares: its start argument and database
//! connection, signal handlers, configuration reload, latch waits, and telling PostgreSQL what
//! the process is doing (pg_stat_activity and the cumulative statistics that autovacuum goes by).

use std::ffi::{c_int, CString};
use std::time::Duration;

use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;

use super::settings::ServerSettings;
use super::txn;

extern "C-unwind" {
    // Postgres' own handlers, linked directly rather than through pgrx's guarded wrappers,
    // which must not run in signal context. `die` makes SIGTERM cancel a running query too.
    fn die(signal: c_int);
    fn SignalHandlerForConfigReload(signal: c_int);
}

/// SIGHUP reloads the configuration, SIGTERM ends the process (cancelling a running query);
/// installed by every pg_webhook background worker before it unblocks signals.
pub fn install_signal_handlers() {
    // SAFETY: standard handlers, installed before signals are unblocked.
    unsafe {
        pg_sys::pqsignal(libc::SIGHUP, Some(SignalHandlerForConfigReload));
        pg_sys::pqsignal(libc::SIGTERM, Some(die));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
}

/// Re-reads postgresql.conf after a SIGHUP; true when it did. Call between transactions.
pub fn reload_config_if_asked() -> bool {
    // SAFETY: a sig_atomic_t flag set by our SIGHUP handler; ProcessConfigFile runs on the main
    // thread, outside any transaction.
    unsafe {
        if pg_sys::ConfigReloadPending == 0 {
            return false;
        }
        pg_sys::ConfigReloadPending = 0;
        pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
    }
    true
}

/// Whole milliseconds for WaitLatch, rounded up: rounding a sub-millisecond wait down to 0
/// would turn every short wait into a busy loop.
fn latch_ms(timeout: Duration) -> libc::c_long {
    timeout
        .as_micros()
        .div_ceil(1000)
        .clamp(0, i32::MAX as u128) as libc::c_long
}

/// Sleeps without watching the latch (the postmaster's death still ends the process).
pub fn sleep(timeout: Duration) {
    // SAFETY: standard wait on the main thread.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            latch_ms(timeout),
            pg_sys::PG_WAIT_EXTENSION,
        );
    }
}

/// Sleeps on the latch; true when it was set (a commit queued events, or a signal arrived).
pub fn wait_latch(timeout: Duration) -> bool {
    let ms = latch_ms(timeout);
    // SAFETY: standard latch wait on the main thread; exits if the postmaster dies.
    let rc = unsafe {
        let rc = pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
        rc
    };
    rc & pg_sys::WL_LATCH_SET as i32 != 0
}

/// Consumes a set latch without sleeping.
pub fn take_latch() -> bool {
    // SAFETY: MyLatch is this process's own latch; reading is_set is what WaitLatch does first.
    unsafe {
        if (*pg_sys::MyLatch).is_set != 0 {
            pg_sys::ResetLatch(pg_sys::MyLatch);
            return true;
        }
    }
    false
}

/// What the process shows in pg_stat_activity: `state` active with `what` as its query while
/// it works, idle while it waits.
pub fn report_activity(what: Option<&str>) {
    let state = match what {
        Some(_) => pg_sys::BackendState::STATE_RUNNING,
        None => pg_sys::BackendState::STATE_IDLE,
    };
    let text = CString::new(what.unwrap_or_default()).unwrap_or_default();
    // SAFETY: copies the string into this backend's status entry.
    unsafe { pg_sys::pgstat_report_activity(state, text.as_ptr()) };
}

/// Flushes this process's table statistics (inserts, updates, deletes) to the cumulative
/// statistics system, as PostgreSQL's own background workers do after each transaction.
/// Without it autovacuum never learns of the dead rows the worker leaves, and the queue and
/// archive grow for ever. Rate-limited by PostgreSQL itself (`force` = false).
pub fn report_stats() {
    // SAFETY: called between transactions on the main thread.
    unsafe { pg_sys::pgstat_report_stat(false) };
}

/// Sets `application_name` for pg_stat_activity.
pub fn report_appname(name: &str) {
    if let Ok(name) = CString::new(name) {
        // SAFETY: copies the string into backend status memory.
        unsafe { pg_sys::pgstat_report_appname(name.as_ptr()) };
    }
}

/// Where a dynamic worker goes, packed into its one start argument: the database oid in the
/// high half, the worker's index (or `CALLBACK_RUNNER`) in the low half.
pub fn encode_start(database: pg_sys::Oid, index: i32) -> pg_sys::Datum {
    pg_sys::Datum::from(((database.to_u32() as u64) << 32) | index as u32 as u64)
}

pub fn decode_start(arg: pg_sys::Datum) -> (pg_sys::Oid, i32) {
    let raw = arg.value() as u64;
    (pg_sys::Oid::from((raw >> 32) as u32), raw as u32 as i32)
}

/// Connects a dynamic worker to its database with the server's settings (not the database's or
/// its role's; see settings.rs), and returns the database's name. Refuses to go on as anything
/// but a superuser.
pub fn connect(database: pg_sys::Oid) -> String {
    let server = ServerSettings::take();
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    // The settings first, before any SQL; some of their checks need a transaction.
    let (name, superuser, settings) = txn::run("setting up the session", || {
        let settings = server.restore();
        // SAFETY: a catalog lookup inside the transaction txn::run opened.
        let superuser = unsafe { pg_sys::superuser() };
        Ok((crate::sql::database_name(), superuser, settings))
    })
    .unwrap_or_else(|e| error!("pg_webhook: this background process could not start: {e}"));
    if !settings.restored.is_empty() {
        log!(
            "pg_webhook: this background process runs with the server's value of {}, not the one set for its database or role",
            settings.restored.join(", ")
        );
    }
    if !settings.left.is_empty() {
        warning!(
            "pg_webhook: this background process keeps the value its database or role set for {}",
            settings.left.join(", ")
        );
    }
    if !superuser {
        error!(
            "pg_webhook: this background process connected as a role that is not a superuser (a database or role setting changed its session user); it does not run"
        );
    }
    name.unwrap_or_default()
}
