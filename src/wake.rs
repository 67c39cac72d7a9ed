//! Waking the delivery worker when a transaction that queued events commits.
//!
//! Polling would put a floor under latency and burn CPU while idle. Instead the capture trigger
//! sets a backend-local flag, and a transaction callback (registered once, at preload) sets the
//! worker's latch at COMMIT — never at ROLLBACK, so aborted work costs the worker nothing. The
//! worker publishes its pid per database in shared memory.

use std::cell::Cell;

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

/// Room for one worker per database in a cluster, with margin.
pub const MAX_WORKERS: usize = 64;

/// Subscriptions with requests in flight, per worker, for the stats view.
pub const IN_FLIGHT_ENTRIES: usize = 32;

#[derive(Clone, Copy, Default)]
struct Slot {
    database: u32,
    index: i32,
    pid: i32,
    /// (subscription id, requests in flight); unused entries have count 0.
    in_flight: [(i32, i32); IN_FLIGHT_ENTRIES],
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
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            slots: [Slot::default(); MAX_WORKERS],
            schedule_epoch: 0,
            config_epoch: 0,
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
            if (scheduled || config) && crate::is_preloaded() {
                let mut workers = WORKERS.exclusive();
                workers.schedule_epoch += u64::from(scheduled);
                workers.config_epoch += u64::from(config);
            }
            if queued || scheduled || config {
                // SAFETY: MyDatabaseId is set in any backend that can run a transaction.
                wake_workers_of(unsafe { pg_sys::MyDatabaseId });
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            QUEUED_IN_THIS_XACT.with(|q| q.set(false));
            SCHEDULED_IN_THIS_XACT.with(|q| q.set(false));
            CONFIG_IN_THIS_XACT.with(|q| q.set(false));
        }
        _ => {}
    }
}

/// Sets the latch of every worker serving `database`. Must not raise an ERROR: it runs after
/// the commit record is written, where an error would become a PANIC.
fn wake_workers_of(database: pg_sys::Oid) {
    if !crate::is_preloaded() {
        return;
    }
    let pids: Vec<i32> = {
        let workers = WORKERS.share();
        workers
            .slots
            .iter()
            .filter(|s| s.pid != 0 && s.database == database.to_u32() && s.index >= 0)
            .map(|s| s.pid)
            .collect()
    };
    set_latches(&pids);
}

/// The wake-up slot index of a database's callback runner.
pub const CALLBACK_RUNNER: i32 = -1;

/// Wakes the callback runner of `database` (after a delivery worker queued callbacks).
pub fn wake_callback_runner(database: pg_sys::Oid) {
    let pids: Vec<i32> = {
        let workers = WORKERS.share();
        workers
            .slots
            .iter()
            .filter(|s| s.pid != 0 && s.database == database.to_u32() && s.index == CALLBACK_RUNNER)
            .map(|s| s.pid)
            .collect()
    };
    set_latches(&pids);
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

/// Registers the calling worker so commits in its database wake it. A restarted worker takes
/// over its predecessor's slot (same database and index), so crashes cannot leak slots.
/// Returns false when the table is full.
pub fn register_worker(database: pg_sys::Oid, index: i32, pid: i32) -> bool {
    let database = database.to_u32();
    let mut workers = WORKERS.exclusive();
    let slot = match workers
        .slots
        .iter()
        .position(|s| s.pid != 0 && s.database == database && s.index == index)
    {
        Some(i) => Some(i),
        None => workers.slots.iter().position(|s| s.pid == 0),
    };
    match slot {
        Some(i) => {
            workers.slots[i] = Slot {
                database,
                index,
                pid,
                in_flight: [(0, 0); IN_FLIGHT_ENTRIES],
            };
            true
        }
        None => false,
    }
}

/// Removes the calling worker; called on every exit path.
pub fn unregister_worker(pid: i32) {
    let mut workers = WORKERS.exclusive();
    for slot in workers.slots.iter_mut().filter(|s| s.pid == pid) {
        *slot = Slot::default();
    }
}

/// Publishes the calling worker's in-flight requests per subscription (the largest ones, when
/// there are more subscriptions than entries).
pub fn publish_in_flight(pid: i32, counts: &[(i32, i32)]) {
    let mut entries = [(0, 0); IN_FLIGHT_ENTRIES];
    for (entry, count) in entries.iter_mut().zip(counts) {
        *entry = *count;
    }
    let mut workers = WORKERS.exclusive();
    if let Some(slot) = workers.slots.iter_mut().find(|s| s.pid == pid) {
        slot.in_flight = entries;
    }
}

/// Requests in flight per subscription, summed over the workers serving `database`.
pub fn in_flight(database: pg_sys::Oid) -> Vec<(i32, i32)> {
    if !crate::is_preloaded() {
        return Vec::new();
    }
    let mut totals: Vec<(i32, i32)> = Vec::new();
    let workers = WORKERS.share();
    for slot in workers
        .slots
        .iter()
        .filter(|s| s.pid != 0 && s.database == database.to_u32())
    {
        for &(id, n) in slot.in_flight.iter().filter(|e| e.1 > 0) {
            match totals.iter_mut().find(|t| t.0 == id) {
                Some(t) => t.1 += n,
                None => totals.push((id, n)),
            }
        }
    }
    totals
}

/// True when some worker currently serves `database` (for warnings in subscribe).
pub fn has_worker_for(database: pg_sys::Oid) -> bool {
    if !crate::is_preloaded() {
        return false;
    }
    WORKERS
        .share()
        .slots
        .iter()
        .any(|s| s.pid != 0 && s.database == database.to_u32())
}

/// Requests the delivery workers have in flight right now, per subscription.
#[pg_extern(name = "_in_flight", stable)]
#[search_path(pg_catalog, pg_temp)]
fn in_flight_table() -> TableIterator<'static, (name!(subscription_id, i32), name!(in_flight, i32))>
{
    // SAFETY: reads a backend global.
    let database = unsafe { pg_sys::MyDatabaseId };
    TableIterator::new(in_flight(database))
}
