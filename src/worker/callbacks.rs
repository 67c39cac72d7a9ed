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

use std::time::{Duration, Instant};

use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use super::backend::{connect, decode_start};
use super::backend::{install_signal_handlers, reload_config_if_asked, wait_latch};
use super::txn;
use super::watchdog;
use crate::error::in_subtransaction;
use crate::guc::WorkerSettings;
use crate::privilege::as_owner_sandboxed;
use crate::queue::{extension_readiness, Readiness};
use crate::wake::CALLBACK_RUNNER;

/// Callbacks read per transaction; each then runs in its own.
const BATCH: i64 = 50;
/// A batch is read again after running this long, so callbacks queued meanwhile take their
/// turn (see pending_callbacks.sql) instead of waiting for the whole batch.
const BATCH_TIME: Duration = Duration::from_secs(1);

const PENDING: &str = include_str!("../../sql/worker/pending_callbacks.sql");
const DONE: &str = include_str!("../../sql/worker/callback_done.sql");
const STARTED: &str = include_str!("../../sql/worker/callback_started.sql");
const EVENT: &str = include_str!("../../sql/worker/callback_event.sql");
/// Row images larger than this are left out of the event a callback receives (see
/// `Dispatcher::largest_readable`).
const LARGEST_IMAGES: i64 = 160 << 20;

struct Pending {
    event_id: i64,
    subscription_id: i32,
    owner: pg_sys::Oid,
    /// The subscription's callback (`None`: it has none any more).
    function: Option<pg_sys::Oid>,
    function_exists: bool,
    /// How many times a runner started this callback before (one that was stopped mid-call).
    starts: i32,
}

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
    crate::wake::register_worker(db_oid, CALLBACK_RUNNER, pid);
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
    let mut next_vacuum = Instant::now();
    // The subscription whose callback ran last: the next batch's turn starts after it.
    let mut last = 0;
    loop {
        pg_sys::check_for_interrupts!();
        if reload_config_if_asked() && !crate::guc::serves(&database) {
            break; // this database is no longer served
        }
        // The runner also vacuums pg_webhook's tables (see vacuum.rs): never a delivery worker.
        if Instant::now() >= next_vacuum {
            next_vacuum = Instant::now() + super::vacuum::VACUUM_EVERY;
            super::vacuum::vacuum_due_tables();
        }
        super::backend::report_activity(Some("running callbacks"));
        let Some((taken, failed)) = run_batch(&mut last) else {
            // pg_webhook is not installed here: nothing to run.
            crate::wake::note_missing(db_oid);
            break;
        };
        super::backend::report_activity(None);
        // (A batch takes turns between subscriptions, so it may be short with more waiting:
        // read again until one finds nothing.)
        if taken == 0 || failed > 0 {
            let until_vacuum = next_vacuum.saturating_duration_since(Instant::now());
            wait_latch(WorkerSettings::read().poll_interval.min(until_vacuum));
        }
    }
    crate::wake::unregister_worker(pid);
}

/// Runs up to one batch of callbacks; returns how many it took from the queue and how many of
/// those could not even be recorded (they are tried again), or `None` when the extension is
/// not installed in this database.
fn run_batch(last: &mut i32) -> Option<(usize, usize)> {
    let (extension, pending) = match txn::run("reading pending callbacks", || {
        Ok(match extension_readiness()? {
            Readiness::Ready => Some((txn::locked_extension(), read_pending(*last)?)),
            Readiness::OtherVersion(_) => Some((pg_sys::Oid::INVALID, Vec::new())),
            Readiness::Missing => None,
        })
    }) {
        Ok(pending) => pending?,
        // Logged by txn::run; try again after the wait.
        Err(_) => return Some((0, 1)),
    };
    let mut taken = 0;
    let mut failed = 0;
    let started = Instant::now();
    for callback in &pending {
        if taken > 0 && started.elapsed() >= BATCH_TIME {
            break;
        }
        *last = callback.subscription_id;
        match run_one(callback, extension) {
            Some(ran) => failed += usize::from(!ran),
            // The extension was dropped and made again since the batch was read: the rest of
            // it named the old one's events, functions and owners. Read again.
            None => break,
        }
        taken += 1;
    }
    Some((taken, failed))
}

/// The next batch of callbacks, whose turns start after subscription `after`.
fn read_pending(after: i32) -> SpiResult<Vec<Pending>> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(PENDING, None, &[BATCH.into(), after.into()])? {
            out.push(Pending {
                event_id: row.get(1)?.unwrap_or_default(),
                subscription_id: row.get(2)?.unwrap_or_default(),
                owner: row.get(3)?.unwrap_or(pg_sys::Oid::INVALID),
                function: row.get(4)?,
                function_exists: row.get(5)?.unwrap_or(false),
                starts: row.get(6)?.unwrap_or(0),
            });
        }
        Ok(out)
    })
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
    let ran = txn::run("running a callback", || {
        if !txn::same_extension(extension) {
            return Ok(None);
        }
        let event = match callback.function {
            Some(_) => event_of(callback.event_id),
            None => Ok(None),
        };
        let failure = match (callback.function, event) {
            (_, Err(e)) => Some(format!("the event could not be read for the callback: {e}")),
            // Purged or replayed meanwhile (a replay gets a callback of its own when it
            // finishes), or the subscription no longer has a callback: nothing to call.
            (None, _) | (_, Ok(None)) => None,
            (Some(_), Ok(Some(_))) if !may_start => Some(format!(
                "the callback was stopped {} times before it finished (it ran past pg_webhook.callback_timeout and ignored the cancel, or the server stopped); it is not run again",
                callback.starts
            )),
            (Some(f), Ok(Some(_))) if !callback.function_exists => Some(format!(
                "the callback function (OID {f}) no longer exists; set another with a new subscription"
            )),
            (Some(f), Ok(Some(event))) => call(f, event, callback.owner, timeout).err(),
        };
        Spi::connect_mut(|client| {
            client.update(
                DONE,
                None,
                &[callback.event_id.into(), failure.clone().into()],
            )?;
            Ok::<(), pgrx::spi::Error>(())
        })?;
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
        Err(_) => Some(false),
    }
}

/// The event a callback receives, read in a subtransaction so that a failure to build it (a
/// value PostgreSQL cannot handle) fails only this callback; `None` when it is gone.
fn event_of(event_id: i64) -> Result<Option<pgrx::JsonB>, String> {
    in_subtransaction(|| {
        Spi::connect(|client| {
            crate::sql::first_row(
                client,
                EVENT,
                &[event_id.into(), LARGEST_IMAGES.into()],
                |r| r.get::<pgrx::JsonB>(1),
            )
        })
    })
    .and_then(|r| r.map_err(|e| e.to_string()))
    .map(Option::flatten)
}

/// Calls `function(event)` — by OID — as `owner`, sandboxed, with a time limit, in a
/// subtransaction so a failure undoes the callback's own effects and nothing else.
fn call(
    function: pg_sys::Oid,
    event: pgrx::JsonB,
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
    // Disarmed below whichever way the call ends (an ERROR is caught by the subtransaction).
    watchdog::start_statement_timer(timeout);
    watchdog::arm(timeout + watchdog::GRACE);
    let result = in_subtransaction(|| as_owner_sandboxed(owner, || invoke(function, event)));
    watchdog::disarm();
    watchdog::end_statement_timer();
    result
}

/// `function(argument)` through the function manager, as an executor would call it (a
/// SECURITY DEFINER or SET clause on the function applies). Its result is not used: a callback
/// acts through its effects, and may return NULL.
fn invoke(function: pg_sys::Oid, argument: pgrx::JsonB) {
    use pgrx::IntoDatum;
    let Some(datum) = argument.into_datum() else {
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
