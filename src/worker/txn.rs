//! Short transactions that survive errors. An ERROR in the worker must never end the worker or
//! commit half a batch: the transaction is aborted, the error logged with what was being done,
//! and the caller decides what to retry.

use std::panic::AssertUnwindSafe;

use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use pgrx::PgSqlErrorCode;

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
        warning!("pg_webhook worker: {what} failed: {e}");
    }
    outcome
}

fn code_of(caught: &CaughtError) -> PgSqlErrorCode {
    match caught {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r.sql_error_code(),
        CaughtError::RustPanic { ereport, .. } => ereport.sql_error_code(),
    }
}

/// The message (and detail) of a caught error.
pub(super) fn describe(caught: &CaughtError) -> String {
    let report = match caught {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    };
    match report.detail() {
        Some(detail) => format!("{} ({detail})", report.message()),
        None => report.message().to_string(),
    }
}
