//! Calling a callback: as its owner, sandboxed, with a time limit, in a subtransaction.

use std::time::Duration;

use pgrx::prelude::*;

use super::super::watchdog;
use crate::error::{in_subtransaction, in_subtransaction_coded};
use crate::privilege::as_owner_sandboxed;
use pg_webhook_core::payload::largest_readable;
use pgrx::PgSqlErrorCode;

const EVENT: &str = include_str!("../../../sql/worker/callback_event.sql");
const UNSTARTED: &str = include_str!("../../../sql/worker/callback_unstarted.sql");
/// The least time the event a callback receives is given to be built (see `event_of`).
const EVENT_LEAST_TIME: Duration = Duration::from_secs(2);

/// Calls `function(event)` — by OID — as `owner`, sandboxed, with a time limit, in a
/// subtransaction so a failure undoes the callback's own effects and nothing else.
pub fn call(
    function: pg_sys::Oid,
    event: String,
    owner: pg_sys::Oid,
    timeout: Duration,
) -> Result<(), String> {
    // EXECUTE on it and USAGE on its schema, as a call by name would need (by OID, nothing
    // checks the schema). SAFETY: catalog reads; the function exists (checked in the same
    // transaction).
    let may = unsafe {
        pg_sys::pg_proc_aclcheck(function, owner, pg_sys::ACL_EXECUTE as pg_sys::AclMode)
            == pg_sys::AclResult::ACLCHECK_OK
            && pg_sys::pg_namespace_aclcheck(
                pg_sys::get_func_namespace(function),
                owner,
                pg_sys::ACL_USAGE as pg_sys::AclMode,
            ) == pg_sys::AclResult::ACLCHECK_OK
    };
    if !may {
        return Err(format!(
            "permission denied: the subscription's owner may no longer execute the callback function (OID {function}): it needs EXECUTE on it and USAGE on its schema"
        ));
    }
    let result = timed(timeout, || {
        in_subtransaction(|| {
            as_owner_sandboxed(owner, || {
                // The server's lock timeout, not the one the runner set for its own statements
                // (sql/worker/callbacks_session.sql).
                let lock_timeout = crate::sql::configured_value(c"lock_timeout");
                crate::sql::with_settings(&[(c"lock_timeout", &lock_timeout)], || {
                    invoke(function, event)
                })
            })
        })
    });
    super::release_session_advisory_locks();
    result
}

/// Runs `f` (which catches its own ERRORs, in a subtransaction) under the statement timer of
/// `timeout` and the watchdog's, both disarmed after it.
fn timed<T>(timeout: Duration, f: impl FnOnce() -> T) -> T {
    watchdog::start_statement_timer(timeout);
    watchdog::arm(timeout + watchdog::GRACE);
    let out = f();
    watchdog::disarm();
    watchdog::end_statement_timer();
    out
}

/// `function(argument)` through the function manager, as an executor would call it (a
/// SECURITY DEFINER or SET clause on the function applies), `argument` being a jsonb value's
/// text. Its result is not used: a callback acts through its effects, and may return NULL.
fn invoke(function: pg_sys::Oid, argument: String) {
    // jsonb's own input function: the value as stored, every number to its last digit (pgrx's
    // JsonB went through serde_json's f64, which rounded 0.1234567890123456789, turned
    // 12345678901234567890123 into 12345678901234568000000 and refused 1e400).
    let Ok(text) = std::ffi::CString::new(argument) else {
        error!("the event for the callback holds a NUL byte");
    };
    // SAFETY: jsonb_in takes one cstring argument, which lives until the call returns.
    let Some(datum) = (unsafe {
        pgrx::fcinfo::direct_function_call_as_datum(
            pg_sys::jsonb_in,
            &[Some(pg_sys::Datum::from(text.as_ptr()))],
        )
    }) else {
        return;
    };
    // SAFETY: a call frame for one argument, built as the SizeForFunctionCallInfo(1) macro
    // does; fmgr_info resolves the function by OID in the current memory context.
    unsafe {
        let mut flinfo = pg_sys::FmgrInfo::default();
        pg_sys::fmgr_info(function, &mut flinfo);
        let size = std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>()
            + std::mem::size_of::<pg_sys::NullableDatum>();
        let fcinfo = pg_sys::palloc0(size).cast::<pg_sys::FunctionCallInfoBaseData>();
        (*fcinfo).flinfo = &mut flinfo;
        (*fcinfo).nargs = 1;
        (*fcinfo).fncollation = pg_sys::Oid::INVALID;
        let args = (*fcinfo).args.as_mut_slice(1);
        args[0] = pg_sys::NullableDatum {
            value: datum,
            isnull: false,
        };
        if let Some(address) = flinfo.fn_addr {
            // Called through pgrx's guard, so an ERROR in the callback (or its statement
            // timeout) becomes a Rust unwind the subtransaction around it catches, instead of
            // a longjmp over Rust frames. Its return value carries nothing pg_webhook uses.
            pg_sys::ffi::pg_guard_ffi_boundary(|| address(fcinfo));
        }
    }
}

/// The event a callback receives, read in a subtransaction so that a failure to build it (a
/// value PostgreSQL cannot handle) fails only this callback; `None` when it is gone. An error
/// comes with its SQLSTATE (`None`: an SPI error). Its row images are left out when larger
/// than a worker reads (`largest_readable`: an event of a callback that has them was
/// delivered with them, and one without died unread): at 160 MiB each, escapes and copies
/// took the runner to gigabytes. Built within `timeout` (2 s at least), as the call is.
pub fn event_of(
    event_id: i64,
    timeout: Duration,
) -> Result<Option<String>, (Option<PgSqlErrorCode>, String)> {
    let largest = largest_readable(crate::guc::max_payload_bytes()) as i64;
    // At least twice the runner's lock_timeout (sql/worker/callbacks_session.sql): a lock
    // held on the archive ends the read as a lock wait, tried again, not as a timeout, which
    // fails the callback for good.
    let read = timed(timeout.max(EVENT_LEAST_TIME), || {
        in_subtransaction_coded(|| {
            Spi::connect(|client| {
                crate::sql::first_row(client, EVENT, &[event_id.into(), largest.into()], |r| {
                    r.get::<String>(1)
                })
            })
        })
    });
    read.map_err(|(code, e)| (Some(code), e))
        .and_then(|r| r.map_err(|e| (None, e.to_string())))
        .map(Option::flatten)
}

/// Takes back the start counted before the call of event `event_id`'s callback, whose outcome
/// could not be recorded (sql/worker/callback_unstarted.sql): counted, it would read as a
/// runner that died during the call, and after `MOST_STARTS` the callback would be recorded as
/// stopped, its own outcome lost, without being called again. If this fails too (the error is
/// logged by txn::run), the start stays counted, and the log says what that means.
pub fn uncount_start(event_id: i64) {
    let taken_back = super::super::txn::run("taking back a callback's start", || {
        Spi::run_with_args(UNSTARTED, &[event_id.into()])
    });
    if taken_back.is_err() {
        log!(
            "pg_webhook: the start of event {event_id}'s callback stays counted; once it has been counted {} times the callback is recorded as stopped instead of being called",
            super::MOST_STARTS
        );
    }
}
