//! How the SQL API refuses bad input: one ERROR with a specific SQLSTATE, a message that names
//! the problem, and a hint with the fix where there is one.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Raises an ERROR; never returns.
pub fn reject(code: PgSqlErrorCode, message: impl Into<String>, hint: Option<&str>) -> ! {
    let mut report = ErrorReport::new(code, message.into(), "pg_webhook");
    if let Some(hint) = hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// Bad argument value: the common case.
pub fn invalid(message: impl Into<String>) -> ! {
    reject(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        message,
        None,
    )
}

/// Runs `f` in a subtransaction; an ERROR inside is rolled back and returned as its message,
/// so a caller can replace it with one that names the user's input.
pub fn in_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    use pgrx::pg_sys;
    // SAFETY: the pattern PL/pgSQL uses for EXCEPTION blocks: remember the memory context and
    // resource owner, and restore both whichever way the subtransaction ends.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let outcome = pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(|| Ok(f())))
            .catch_others(|caught| {
                let message = match &caught {
                    pgrx::pg_sys::panic::CaughtError::PostgresError(r)
                    | pgrx::pg_sys::panic::CaughtError::ErrorReport(r) => r.message().to_string(),
                    pgrx::pg_sys::panic::CaughtError::RustPanic { ereport, .. } => {
                        ereport.message().to_string()
                    }
                };
                Err(message)
            })
            .execute();
        match outcome {
            Ok(value) => {
                pg_sys::ReleaseCurrentSubTransaction();
                pg_sys::MemoryContextSwitchTo(context);
                pg_sys::CurrentResourceOwner = owner;
                Ok(value)
            }
            Err(message) => {
                pg_sys::MemoryContextSwitchTo(context);
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
                pg_sys::MemoryContextSwitchTo(context);
                pg_sys::CurrentResourceOwner = owner;
                Err(message)
            }
        }
    }
}

/// Unwraps an SPI result, turning an SPI failure into an internal error with context.
pub fn spi<T>(what: &str, result: Result<T, pgrx::spi::Error>) -> T {
    result.unwrap_or_else(|e| {
        reject(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("pg_webhook: {what}: {e}"),
            None,
        )
    })
}
