//! Waking the delivery worker when a transaction that queued events commits.
//!
//! Polling would put a floor under latency and burn CPU while idle. Instead the capture trigger
//! sets a backend-local flag, and a transaction callback (registered once, at preload) sets the
//! worker's latch at COMMIT — never at ROLLBACK, so aborted work costs the worker nothing. A
//! prepared transaction's events are committed by the transaction that runs `COMMIT PREPARED`
//! (`crate::utility_hook` notes it). The worker publishes its pid per database in shared memory.

use std::cell::Cell;

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

mod check_in;
mod in_flight;
mod registry;
mod stuck;

pub use check_in::check_ins;
pub use in_flight::{in_flight, publish_in_flight};
pub use registry::{databases_with_workers, is_registered, registered_pid};
pub use registry::{register_worker, unregister_worker, Registration};
pub use stuck::{abandon, abandoned, held_owners, next_stuck_check, publish_owner, Abandon};
pub use stuck::{publish_watchdog, stuck, stuck_runners, ABANDONED_RUNNER, MOST_ABANDONED, STUCK};

/// Room for the workers of every database in a cluster (and runners abandoned as stuck), with
/// margin.
pub const MAX_WORKERS: usize = 128;

/// Subscriptions with requests in flight, per worker, for the stats view.
pub const IN_FLIGHT_ENTRIES: usize = 32;

#[derive(Clone, Copy, Default)]
struct Slot {
    database: u32,
    index: i32,
    pid: i32,
    /// (subscription id, requests in flight); unused entries have count 0.
    in_flight: [(i32, i32); IN_FLIGHT_ENTRIES],
    /// When the callback runner's watchdog fires on the call it makes now, on the monotonic
    /// clock in milliseconds (0: it makes none): see `stuck`.
    watchdog_at: u64,
    /// The owner whose code the callback runner runs (0: none yet).
    owner: u32,
}

#[derive(Clone, Copy)]
pub struct Workers {
    slots: [Slot; MAX_WORKERS],
    /// Bumped when a committed transaction made events due by other means than capture
    /// (resume, replay), so workers look at scheduled events at once.
    schedule_epoch: u64,
    /// Bumped when a committed transaction changed a subscription, so workers reload them
    /// before their next claim (a pause must hold from the next event on).
    config_epoch: u64,
    /// The launcher's pid (0: not running).
    launcher: i32,
    /// Databases where a commit found no delivery worker: the launcher starts them some.
    requests: [u32; LAUNCH_REQUESTS],
    /// Databases whose workers found no pg_webhook: the launcher stops the rest of them.
    missing: [u32; LAUNCH_REQUESTS],
    /// Slots taken so far: those past it were never used. Every look through the table (the
    /// commit of each transaction that queued events wakes its database's workers) stops
    /// there, not at `MAX_WORKERS`.
    used: usize,
    /// How many times each worker registered (see check_in.rs).
    check_ins: check_in::CheckIns,
}

impl Workers {
    /// The slots in use, or used before.
    fn slots(&self) -> &[Slot] {
        &self.slots[..self.used.min(MAX_WORKERS)]
    }

    fn slots_mut(&mut self) -> &mut [Slot] {
        let used = self.used.min(MAX_WORKERS);
        &mut self.slots[..used]
    }
}

/// Databases waiting for the launcher at once; more just wait for its next round.
const LAUNCH_REQUESTS: usize = 16;

impl Default for Workers {
    fn default() -> Self {
        Workers {
            slots: [Slot::default(); MAX_WORKERS],
            schedule_epoch: 0,
            config_epoch: 0,
            launcher: 0,
            requests: [0; LAUNCH_REQUESTS],
            missing: [0; LAUNCH_REQUESTS],
            used: 0,
            check_ins: check_in::CheckIns::default(),
        }
    }
}

// SAFETY: plain-old-data with no pointers, valid in any process.
unsafe impl PGRXSharedMemory for Workers {}

static WORKERS: PgLwLock<Workers> = unsafe { PgLwLock::new(c"pg_webhook_workers") };

thread_local! {
    /// Set by the capture trigger; read and cleared at the end of the transaction.
    static QUEUED_IN_THIS_XACT: Cell<bool> = const { Cell::new(false) };
    /// Set by resume/replay: scheduled events became due.
    static SCHEDULED_IN_THIS_XACT: Cell<bool> = const { Cell::new(false) };
    /// Set by any change to a subscription.
    static CONFIG_IN_THIS_XACT: Cell<bool> = const { Cell::new(false) };
    /// Set by `COMMIT PREPARED`: a prepared transaction's events, if it queued any, become
    /// visible when this one commits.
    static PREPARED_IN_THIS_XACT: Cell<bool> = const { Cell::new(false) };
    /// This backend's database (which cannot be renamed while it is connected).
    static DATABASE_NAME: std::cell::OnceCell<Option<String>> = const { std::cell::OnceCell::new() };
}

/// Shared memory and the commit callback; only when preloading, since shared memory can only be
/// requested then and forked backends inherit the callback.
pub fn init_preloaded() {
    pg_shmem_init!(WORKERS);
    // SAFETY: called once from _PG_init on the main thread.
    unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) };
}

/// Called by the capture trigger for every queued event; cheap.
pub fn note_event_queued() {
    QUEUED_IN_THIS_XACT.with(|q| q.set(true));
    // Read here, in the transaction, for the commit callback, which must not look it up.
    DATABASE_NAME.with(|name| {
        name.get_or_init(crate::sql::database_name);
    });
}

/// Whether `pg_webhook.database` lets this backend's database have delivery workers (true
/// when its name is not known yet).
fn serves_this_database() -> bool {
    DATABASE_NAME.with(|name| match name.get() {
        Some(Some(name)) => crate::guc::serves(name),
        _ => true,
    })
}

/// Called when the transaction runs `COMMIT PREPARED`: whether the prepared transaction queued
/// events, changed a subscription or made events due is not known here (its backend's flags
/// went at `PREPARE`), so every worker reloads its subscriptions and looks at scheduled events.
/// Where pg_webhook is installed the hook also notes an event queued, which wakes this
/// database's workers (one claim that finds nothing is all it costs them) and asks the launcher
/// for some when there are none; where it is not, there are no workers to wake.
pub fn note_prepared_committed() {
    PREPARED_IN_THIS_XACT.with(|q| q.set(true));
}

/// Called when a transaction makes parked or archived events due again.
pub fn note_schedule_changed() {
    SCHEDULED_IN_THIS_XACT.with(|q| q.set(true));
}

/// Called when a transaction changes a subscription (status, secret, existence).
pub fn note_config_changed() {
    CONFIG_IN_THIS_XACT.with(|q| q.set(true));
}

/// The current (schedule, config) epochs; zeros when not preloaded.
pub fn epochs() -> (u64, u64) {
    if !crate::is_preloaded() {
        return (0, 0);
    }
    let workers = WORKERS.share();
    (workers.schedule_epoch, workers.config_epoch)
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => {
            let queued = QUEUED_IN_THIS_XACT.with(|q| q.replace(false));
            let scheduled = SCHEDULED_IN_THIS_XACT.with(|q| q.replace(false));
            let config = CONFIG_IN_THIS_XACT.with(|q| q.replace(false));
            let prepared = PREPARED_IN_THIS_XACT.with(|q| q.replace(false));
            // What a prepared transaction did is not known here (its notes went at PREPARE):
            // it may have paused, resumed or replayed too, which must hold from the next event
            // on, so both epochs move as if it had.
            let (scheduled_any, config_any) = (scheduled || prepared, config || prepared);
            if (scheduled_any || config_any) && crate::is_preloaded() {
                let mut workers = WORKERS.exclusive();
                workers.schedule_epoch += u64::from(scheduled_any);
                workers.config_epoch += u64::from(config_any);
            }
            if queued || scheduled || config {
                // SAFETY: MyDatabaseId is set in any backend that can run a transaction.
                // A COMMIT PREPARED where pg_webhook is comes here too (the hook notes an event
                // queued); where it is not, there are no workers to wake.
                wake_workers_of(unsafe { pg_sys::MyDatabaseId }, config, scheduled_any);
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            QUEUED_IN_THIS_XACT.with(|q| q.set(false));
            SCHEDULED_IN_THIS_XACT.with(|q| q.set(false));
            CONFIG_IN_THIS_XACT.with(|q| q.set(false));
            PREPARED_IN_THIS_XACT.with(|q| q.set(false));
        }
        _ => {}
    }
}

/// Sets the latch of every worker serving `database` (and its runner's when `scheduled`: a
/// backfill started), and asks the launcher for workers when
/// there are none and `pg_webhook.database` allows some — or, after a subscription changed
/// (`config`), in any case: workers that looked before CREATE EXTENSION committed may be on
/// their way out. A database the setting leaves without workers does not ask on every commit:
/// the launcher would refuse it every time. Must not raise an ERROR: it runs after the commit
/// record is written, where an error would become a PANIC.
fn wake_workers_of(database: pg_sys::Oid, config: bool, scheduled: bool) {
    if !crate::is_preloaded() {
        return;
    }
    let pids = pids_of(database, |index| index >= 0);
    if config || (pids.is_empty() && serves_this_database()) {
        request_workers(database);
    }
    set_latches(&pids);
    if scheduled {
        wake_callback_runner(database);
    }
}

/// Asks the launcher to start delivery workers for `database`. Must not raise an ERROR (see
/// `wake_workers_of`).
fn request_workers(database: pg_sys::Oid) {
    tell_launcher(database, |w| &mut w.requests);
}

/// Tells the launcher that `database` has no pg_webhook, so all its workers go (not only the one
/// that noticed first).
pub fn note_missing(database: pg_sys::Oid) {
    tell_launcher(database, |w| &mut w.missing);
}

/// The databases asked for since the last call.
pub fn take_requests() -> Vec<pg_sys::Oid> {
    take(|w| &mut w.requests)
}

/// The databases reported by `note_missing` since the last call.
pub fn take_missing() -> Vec<pg_sys::Oid> {
    take(|w| &mut w.missing)
}

type Mailbox = fn(&mut Workers) -> &mut [u32; LAUNCH_REQUESTS];

/// Adds `database` to one of the launcher's mailboxes (once) and wakes it, unless it is there
/// already: whoever put it there woke the launcher, which has not taken it yet (a launcher that
/// was not running then looks at every database when it starts).
fn tell_launcher(database: pg_sys::Oid, mailbox: Mailbox) {
    let launcher = {
        let mut workers = WORKERS.exclusive();
        let oid = database.to_u32();
        let list = mailbox(&mut workers);
        if list.contains(&oid) {
            return;
        }
        if let Some(free) = list.iter_mut().find(|r| **r == 0) {
            *free = oid;
        }
        workers.launcher
    };
    if launcher != 0 {
        set_latches(&[launcher]);
    }
}

fn take(mailbox: Mailbox) -> Vec<pg_sys::Oid> {
    let mut workers = WORKERS.exclusive();
    let list = mailbox(&mut workers);
    let taken = list
        .iter()
        .filter(|r| **r != 0)
        .map(|r| pg_sys::Oid::from(*r))
        .collect();
    *list = [0; LAUNCH_REQUESTS];
    taken
}

/// Wakes the launcher (a callback runner left for a fresh one to take the next owner's turn).
pub fn wake_launcher() {
    let launcher = WORKERS.share().launcher;
    if launcher != 0 {
        set_latches(&[launcher]);
    }
}

/// Registers the launcher, so commits can ask it for workers.
pub fn register_launcher(pid: i32) {
    // SAFETY: as in `register_worker`.
    unsafe { pg_sys::before_shmem_exit(Some(release_launcher), pg_sys::Datum::from(pid)) };
    WORKERS.exclusive().launcher = pid;
}

#[pg_guard]
unsafe extern "C-unwind" fn release_launcher(_code: std::ffi::c_int, pid: pg_sys::Datum) {
    let mut workers = WORKERS.exclusive();
    if workers.launcher == pid.value() as i32 {
        workers.launcher = 0;
    }
}

/// The wake-up slot index of a database's callback runner.
pub const CALLBACK_RUNNER: i32 = -1;

/// Wakes the callback runner of `database` (after a delivery worker queued callbacks).
pub fn wake_callback_runner(database: pg_sys::Oid) {
    set_latches(&pids_of(database, |index| index == CALLBACK_RUNNER));
}

/// The pids of the registered workers of `database` whose slot index matches.
fn pids_of(database: pg_sys::Oid, index: impl Fn(i32) -> bool) -> Vec<i32> {
    WORKERS
        .share()
        .slots()
        .iter()
        .filter(|s| s.pid != 0 && s.database == database.to_u32() && index(s.index))
        .map(|s| s.pid)
        .collect()
}

fn set_latches(pids: &[i32]) {
    for &pid in pids {
        // SAFETY: BackendPidGetProc takes ProcArrayLock and returns NULL for a gone pid; the
        // latch lives in the PGPROC array in shared memory.
        unsafe {
            let proc_ = pg_sys::BackendPidGetProc(pid);
            if !proc_.is_null() {
                pg_sys::SetLatch(&raw mut (*proc_).procLatch);
            }
        }
    }
}

/// Asks for this database's delivery workers when the transaction commits. The install and
/// upgrade scripts call it, so delivery is ready from CREATE EXTENSION on.
#[pg_extern(name = "_request_workers", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn request_workers_at_commit() {
    note_config_changed();
}
