//! How the SQL API refuses bad input: one ERROR with a specific SQLSTATE, a message that names
//! the problem, and a hint with the fix where there is one.

use pgrx::pg_sys::panic::{CaughtError, ErrorReport, ErrorReportWithLevel};
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
    in_subtransaction_coded(f).map_err(|(_, message)| message)
}

/// As `in_subtransaction`, with the ERROR's SQLSTATE, for callers that take a lock timeout for
/// something else than a failure of what `f` does.
pub fn in_subtransaction_coded<R>(f: impl FnOnce() -> R) -> Result<R, (PgSqlErrorCode, String)> {
    subtransaction(f, true).map_err(|caught| {
        let report = report_of(&caught);
        (report.sql_error_code(), report.message().to_string())
    })
}

/// The report of a caught ERROR (or of the panic that stands for one).
pub fn report_of(caught: &CaughtError) -> &ErrorReportWithLevel {
    match caught {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    }
}

/// Runs `f` in a subtransaction that is rolled back however it ends, so nothing `f` wrote to
/// the database (rows, NOTIFYs, transaction-scoped locks) outlives it; its result must be
/// copied out of the memory its queries used. An ERROR inside is raised again, unchanged,
/// after the rollback.
pub fn undone<R>(f: impl FnOnce() -> R) -> R {
    subtransaction(f, false).unwrap_or_else(|caught| caught.rethrow())
}

/// Runs `f` in a subtransaction, kept (`keep`) or rolled back when `f` returns, rolled back
/// when it raises an ERROR (which is returned).
fn subtransaction<R>(f: impl FnOnce() -> R, keep: bool) -> Result<R, Box<CaughtError>> {
    use pgrx::pg_sys;
    // SAFETY: the pattern PL/pgSQL uses for EXCEPTION blocks: remember the memory context and
    // resource owner, and restore both whichever way the subtransaction ends.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let outcome = pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(|| Ok(f())))
            .catch_others(|caught| Err(Box::new(caught)))
            .execute();
        pg_sys::MemoryContextSwitchTo(context);
        if keep && outcome.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        outcome
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

/// A type's SQL name, for messages.
pub fn type_name(type_oid: pgrx::pg_sys::Oid) -> String {
    // SAFETY: format_type_be returns a palloc'd string for any OID (an unknown one as "???").
    unsafe {
        std::ffi::CStr::from_ptr(pgrx::pg_sys::format_type_be(type_oid))
            .to_string_lossy()
            .into_owned()
    }
}

/// A function's name with its argument types, for messages.
pub fn function_name(function: pgrx::pg_sys::Oid) -> String {
    // SAFETY: format_procedure returns a palloc'd string for any OID.
    unsafe {
        std::ffi::CStr::from_ptr(pgrx::pg_sys::format_procedure(function))
            .to_string_lossy()
            .into_owned()
    }
}

/// An operator's name with its argument types, for messages.
pub fn operator_name(opno: pgrx::pg_sys::Oid) -> String {
    // SAFETY: format_operator returns a palloc'd string for any OID.
    unsafe {
        std::ffi::CStr::from_ptr(pgrx::pg_sys::format_operator(opno))
            .to_string_lossy()
            .into_owned()
    }
}

/// `text` from a caller, to quote in an error: its first 64 characters and how long it was, when
/// longer (a name of 100 kB was written whole to the client and twice to the server log).
pub fn shown(text: &str) -> String {
    const SHOWN: usize = 64;
    match text.char_indices().nth(SHOWN) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}… ({} characters)", &text[..cut], text.chars().count()),
    }
}
