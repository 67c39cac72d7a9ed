//! The wake-up table's registry: which process is which worker of which database. A worker's
//! slot lives as long as its process (released on every exit path), so a slot names a live
//! worker.

use std::collections::HashSet;

use pgrx::prelude::*;

use super::{pids_of, Slot, ABANDONED_RUNNER, MAX_WORKERS, WORKERS};

#[pg_guard]
unsafe extern "C-unwind" fn release_slot(_code: std::ffi::c_int, pid: pg_sys::Datum) {
    unregister_worker(pid.value() as i32);
}

/// What `register_worker` did.
#[derive(PartialEq, Eq)]
pub enum Registration {
    Registered,
    /// The table is full: the worker is not woken at commits.
    Full,
    /// Another live process is this worker (the launcher started it twice: it restarted
    /// between starting one and seeing it registered): this one must end.
    Taken,
}

/// Registers the calling worker so commits in its database wake it. A restarted worker takes
/// over its predecessor's slot (same database and index) if that process is gone, so crashes
/// cannot leak slots.
pub fn register_worker(database: pg_sys::Oid, index: i32, pid: i32) -> Registration {
    // Whatever way the process ends (a FATAL from pg_terminate_backend included), its slot
    // must not outlive it: a stale slot would look like a live worker to commits and to the
    // launcher.
    // SAFETY: registers a callback that only touches our shared memory.
    unsafe { pg_sys::before_shmem_exit(Some(release_slot), pg_sys::Datum::from(pid)) };
    let database = database.to_u32();
    let mut workers = WORKERS.exclusive();
    super::check_in::check_in(&mut workers, database, index);
    let slot = match workers
        .slots()
        .iter()
        .position(|s| s.pid != 0 && s.database == database && s.index == index)
    {
        // (ProcArrayLock is taken under this lock, never the other way round.)
        Some(i) if workers.slots[i].pid != pid && backend_alive(workers.slots[i].pid) => {
            return Registration::Taken;
        }
        Some(i) => Some(i),
        None => (workers.slots().iter().position(|s| s.pid == 0))
            .or((workers.used < MAX_WORKERS).then_some(workers.used)),
    };
    match slot {
        Some(i) => {
            workers.used = workers.used.max(i + 1);
            workers.slots[i] = Slot {
                database,
                index,
                pid,
                ..Slot::default()
            };
            Registration::Registered
        }
        None => Registration::Full,
    }
}

fn backend_alive(pid: i32) -> bool {
    // SAFETY: BackendPidGetProc takes ProcArrayLock and returns NULL for a pid that is not a
    // live backend's.
    !unsafe { pg_sys::BackendPidGetProc(pid) }.is_null()
}

/// Removes the calling worker; called on every exit path.
pub fn unregister_worker(pid: i32) {
    let mut workers = WORKERS.exclusive();
    for slot in workers.slots_mut().iter_mut().filter(|s| s.pid == pid) {
        *slot = Slot::default();
    }
}

/// Whether worker `index` of `database` is registered (running) right now.
pub fn is_registered(database: pg_sys::Oid, index: i32) -> bool {
    registered_pid(database, index).is_some()
}

/// The pid of worker `index` of `database`, if it is registered.
pub fn registered_pid(database: pg_sys::Oid, index: i32) -> Option<i32> {
    pids_of(database, |i| i == index).first().copied()
}

/// Databases that have a registered worker right now (not counting runners abandoned as
/// stuck: they leave when their call returns, which may be never).
pub fn databases_with_workers() -> HashSet<pg_sys::Oid> {
    WORKERS
        .share()
        .slots()
        .iter()
        .filter(|s| s.pid != 0 && s.index != ABANDONED_RUNNER)
        .map(|s| pg_sys::Oid::from(s.database))
        .collect()
}
