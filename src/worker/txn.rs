//! Short transactions that survive errors. An ERROR in the worker must never end the worker or
//! commit half a batch: the transaction is aborted, the error logged with what was being done,
//! and the caller decides what to retry.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};

use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use pgrx::PgSqlErrorCode;

/// Longest error text `run` writes to the server log.
const LOGGED_ERROR_LEN: usize = 4096;

/// Runs `f` in its own transaction and commits it; on an SPI error or a Postgres ERROR, aborts
/// and returns the error text (already logged as a WARNING naming `what`).
pub fn run<R>(what: &str, f: impl FnOnce() -> SpiResult<R>) -> Result<R, String> {
    run_coded(what, f).map_err(|(_, e)| e)
}

/// As `run`, with the SQLSTATE of a Postgres ERROR (`None` for an SPI error), for callers that
/// retry some kinds of failure (a lock timeout, a deadlock) and not others.
pub fn run_coded<R>(
    what: &str,
    f: impl FnOnce() -> SpiResult<R>,
) -> Result<R, (Option<PgSqlErrorCode>, String)> {
    let outcome = PgTryBuilder::new(AssertUnwindSafe(|| {
        // SAFETY: the worker is between transactions whenever it calls this.
        unsafe {
            pg_sys::SetCurrentStatementStartTimestamp();
            pg_sys::StartTransactionCommand();
            share_extension_lock();
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        match f() {
            Ok(value) => {
                // SAFETY: pairs with the push/start above.
                unsafe {
                    pg_sys::PopActiveSnapshot();
                    pg_sys::CommitTransactionCommand();
                }
                Ok(value)
            }
            Err(e) => {
                // SAFETY: aborting an open transaction is always allowed.
                unsafe { pg_sys::AbortCurrentTransaction() };
                Err((None, e.to_string()))
            }
        }
    }))
    .catch_others(|caught| {
        // SAFETY: the error state was copied and flushed by the FFI guard.
        unsafe { pg_sys::AbortCurrentTransaction() };
        Err((Some(code_of(&caught)), describe(&caught)))
    })
    .execute();
    super::backend::report_stats();
    if let Err((_, e)) = &outcome {
        // (What failed may have run user SQL, whose error can quote a value of any size.)
        let e = pg_webhook_core::text::clipped(e, LOGGED_ERROR_LEN);
        warning!("pg_webhook worker: {what} failed: {e}");
    }
    outcome
}

/// Takes the pg_webhook extension's own lock in share mode before the transaction touches any of
/// its tables. DROP EXTENSION takes that lock exclusively before it locks the tables it drops
/// (one at a time, in its own order): so either the drop waits for this transaction or this
/// transaction for the drop, holding nothing the other needs. Without it the two locked the
/// tables in different orders, and the drop failed as a deadlock
/// (`drop_extension_while_the_workers_deliver_is_not_refused_as_a_deadlock`).
///
/// # Safety
/// Inside a transaction.
unsafe fn share_extension_lock() {
    LOCKED.store(0, Ordering::Relaxed);
    if pg_sys::MyDatabaseId == pg_sys::Oid::INVALID {
        // The launcher: connected to no database, it reads shared catalogs only.
        return;
    }
    let mode = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    let mut extension = pg_sys::get_extension_oid(c"pg_webhook".as_ptr(), true);
    // The extension may be dropped and made again while this waits: then the lock is on one
    // that is gone, and is taken again on the one there now (as RangeVarGetRelidExtended does).
    while extension != pg_sys::Oid::INVALID {
        pg_sys::LockDatabaseObject(pg_sys::ExtensionRelationId, extension, 0, mode);
        pg_sys::AcceptInvalidationMessages();
        let now = pg_sys::get_extension_oid(c"pg_webhook".as_ptr(), true);
        if now == extension {
            LOCKED.store(extension.to_u32(), Ordering::Relaxed);
            return;
        }
        pg_sys::UnlockDatabaseObject(pg_sys::ExtensionRelationId, extension, 0, mode);
        extension = now;
    }
}

/// The extension whose lock the current transaction holds (0: none, not installed).
static LOCKED: AtomicU32 = AtomicU32::new(0);

/// Whether the current transaction's pg_webhook is `extension`, the one the caller's
/// statements and what it knows of events were made with: not when the extension was dropped
/// and made again since (see `Worker::forget_dropped_extension`). The prepared statements do
/// not fail then — their plans are made again, by name, on the new extension's tables.
pub fn same_extension(extension: pg_sys::Oid) -> bool {
    locked_extension() == extension
}

/// The extension whose lock the current transaction holds (INVALID: none).
pub fn locked_extension() -> pg_sys::Oid {
    pg_sys::Oid::from_u32(LOCKED.load(Ordering::Relaxed))
}

fn code_of(caught: &CaughtError) -> PgSqlErrorCode {
    crate::error::report_of(caught).sql_error_code()
}

/// The message (and detail) of a caught error.
pub(super) fn describe(caught: &CaughtError) -> String {
    let report = crate::error::report_of(caught);
    match report.detail() {
        Some(detail) => format!("{} ({detail})", report.message()),
        None => report.message().to_string(),
    }
}
