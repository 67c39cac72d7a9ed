//! The callback runner: a background worker of its own that calls each subscription's SQL
//! callback after an event is delivered or dies.
//!
//! Callbacks are user code of unknown speed, so they never run in a delivery worker: a slow one
//! would stall every request in flight there. Delivery workers queue them (in the transaction
//! that records the outcome) and wake this process. Each callback runs in its own transaction,
//! as the subscription's owner, under `pg_webhook.callback_timeout`; its effects and its
//! removal from the queue commit together, and a failure is rolled back and written on the
//! event instead. Either way the callback is not run again.

use std::ffi::c_int;
use std::time::Duration;

use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use super::{
    connect, decode_start, install_signal_handlers, reload_config_if_asked, txn, wait_latch,
};
use crate::error::in_subtransaction;
use crate::guc::WorkerSettings;
use crate::privilege::as_role;
use crate::queue::{extension_readiness, Readiness};
use crate::wake::CALLBACK_RUNNER;

/// Callbacks read per transaction; each then runs in its own.
const BATCH: i64 = 50;

/// The next callbacks to run, with everything the callback receives.
const PENDING: &str = "\
SELECT c.event_id, c.subscription_id, s.owner::oid,
       pg_catalog.format('%I.%I', n.nspname, p.proname),
       pg_catalog.jsonb_build_object(
           'event_id', a.id, 'webhook_id', 'msg_' || s.uid || '_' || a.id,
           'subscription', s.name, 'subscription_id', s.id,
           'schema', a.table_schema, 'table', a.table_name, 'op', a.op,
           'record', a.record, 'old_record', a.old_record,
           'status', a.status, 'attempts', a.attempts,
           'status_code', a.final_status_code,
           'response_headers', c.response_headers,
           'response_body', a.final_response_excerpt,
           'error', COALESCE(a.final_error, a.last_error),
           'finished_at', a.finished_at)::text
  FROM webhook._callback_queue c
  LEFT JOIN webhook._event_archive a ON a.id = c.event_id
  LEFT JOIN webhook._subscriptions s ON s.id = c.subscription_id
  LEFT JOIN pg_catalog.pg_proc p ON p.oid = s.callback::oid
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 ORDER BY c.event_id
 LIMIT $1";

extern "C-unwind" {
    // utils/timeout.h; not in pgrx's generated bindings.
    fn enable_timeout_after(id: c_int, delay_ms: c_int);
    fn disable_timeout(id: c_int, keep_indicator: bool);
}

/// `STATEMENT_TIMEOUT` in PostgreSQL's `TimeoutId` enum: its fourth entry, as since 9.3.
const STATEMENT_TIMEOUT: c_int = 3;

struct Pending {
    event_id: i64,
    subscription_id: i32,
    owner: pg_sys::Oid,
    /// NULL when the event was purged or the subscription no longer has a callback.
    function: Option<String>,
    event: Option<String>,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_webhook_callbacks_main(arg: pg_sys::Datum) {
    install_signal_handlers();
    let (db_oid, _) = decode_start(arg);
    let database = connect(db_oid);
    // SAFETY: a plain read of a backend global.
    let pid = unsafe { pg_sys::MyProcPid };
    crate::wake::register_worker(db_oid, CALLBACK_RUNNER, pid);
    let _ = txn::run("callback runner setup", || {
        Spi::run(
            "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false),
                    pg_catalog.set_config('application_name', 'pg_webhook callbacks', false)",
        )
    });
    loop {
        pg_sys::check_for_interrupts!();
        if reload_config_if_asked() && !crate::guc::serves(&database) {
            break; // this database is no longer served
        }
        let Some(ran) = run_batch() else {
            // pg_webhook is not installed here: nothing to run.
            crate::wake::note_missing(db_oid);
            break;
        };
        if ran < BATCH as usize {
            wait_latch(WorkerSettings::read().poll_interval);
        }
    }
    crate::wake::unregister_worker(pid);
}

/// Runs up to one batch of callbacks; returns how many it took from the queue, or `None` when
/// the extension is not installed in this database.
fn run_batch() -> Option<usize> {
    let pending = txn::run("reading pending callbacks", || {
        Ok(match extension_readiness()? {
            Readiness::Ready => Some(read_pending()?),
            Readiness::OtherVersion(_) => Some(Vec::new()),
            Readiness::Missing => None,
        })
    })
    .unwrap_or(Some(Vec::new()))?;
    let count = pending.len();
    for callback in pending {
        run_one(callback);
    }
    Some(count)
}

fn read_pending() -> SpiResult<Vec<Pending>> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(PENDING, None, &[BATCH.into()])? {
            out.push(Pending {
                event_id: row.get(1)?.unwrap_or_default(),
                subscription_id: row.get(2)?.unwrap_or_default(),
                owner: row.get(3)?.unwrap_or(pg_sys::Oid::INVALID),
                function: row.get(4)?,
                event: row.get(5)?,
            });
        }
        Ok(out)
    })
}

/// One callback in its own transaction: its effects and its removal from the queue commit
/// together; on failure only the removal and the error on the event do.
fn run_one(callback: Pending) {
    let timeout = crate::guc::callback_timeout();
    let _ = txn::run("running a callback", || {
        let failure = match (&callback.function, &callback.event) {
            (Some(function), Some(event)) => call(function, event, callback.owner, timeout).err(),
            // Purged, unsubscribed or callback removed meanwhile: nothing to call.
            _ => None,
        };
        Spi::connect_mut(|client| {
            client.update(
                "DELETE FROM webhook._callback_queue WHERE event_id = $1",
                None,
                &[callback.event_id.into()],
            )?;
            if let Some(error) = &failure {
                client.update(
                    "UPDATE webhook._event_archive SET callback_error = $2 WHERE id = $1",
                    None,
                    &[callback.event_id.into(), error.as_str().into()],
                )?;
            }
            Ok::<(), pgrx::spi::Error>(())
        })?;
        if let Some(error) = failure {
            warning!(
                "pg_webhook: callback of subscription {} failed for event {}: {error}",
                callback.subscription_id,
                callback.event_id
            );
        }
        Ok(())
    });
}

/// Calls `function(event)` as `owner` with a time limit, in a subtransaction so a failure
/// undoes the callback's own effects and nothing else.
fn call(function: &str, event: &str, owner: pg_sys::Oid, timeout: Duration) -> Result<(), String> {
    let query = format!("SELECT {function}($1::pg_catalog.jsonb)");
    // SAFETY: arms the backend's statement timer (its handler cancels the running query);
    // disarmed below whichever way the call ends.
    unsafe {
        enable_timeout_after(
            STATEMENT_TIMEOUT,
            timeout.as_millis().clamp(1, i32::MAX as u128) as c_int,
        );
    }
    let result = in_subtransaction(|| {
        as_role(owner, || {
            Spi::connect_mut(|client| client.update(&query, None, &[event.into()]).map(|_| ()))
        })
    });
    // SAFETY: disarms the timer armed above; keeps a cancel that already fired from leaking
    // into the bookkeeping that follows.
    unsafe {
        disable_timeout(STATEMENT_TIMEOUT, false);
        pg_sys::QueryCancelPending = 0;
    }
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(message) => Err(message),
    }
}
