//! Owners whose code a stuck runner process still runs: a callback or backfill filter blocked
//! where no interrupt reaches it (`dblink_connect` to a server that never answers) outlives the
//! watchdog that should end its process, and the launcher starts a fresh runner beside it
//! (`worker::launcher`, `wake::STUCK`). Until that process ends, no other runs that owner's
//! callbacks or chunks: otherwise each of them could block one more process the same way, and
//! take every background worker slot. The owner's work waits; the others' goes on.

use pgrx::prelude::*;

/// Stuck processes remembered per database; a new one replaces the one entered first. Each
/// takes a background worker slot, so `max_worker_processes` runs out sooner.
const HELD: usize = 8;

/// A stuck runner process and the owner whose code it runs.
#[derive(Clone, Copy, Default)]
struct Stuck {
    owner: u32,
    pid: i32,
    /// In what order the entries came (the oldest goes when the list is full).
    entered: u64,
}

/// The stuck runner processes of a database, handed from runner to runner.
#[derive(Clone, Copy, Default)]
pub(super) struct Held {
    stuck: [Stuck; HELD],
}

impl Held {
    /// Notes that process `pid` (a runner that ended its turn without handing over) runs
    /// `owner`'s code, if it still lives; `me` is the calling process.
    pub(super) fn hold(&mut self, owner: pg_sys::Oid, pid: i32, me: i32) {
        if owner == pg_sys::Oid::INVALID || pid == 0 || pid == me || !runner_alive(pid) {
            return;
        }
        let entered = self.stuck.iter().map(|s| s.entered).max().unwrap_or(0) + 1;
        let entry = Stuck {
            owner: owner.to_u32(),
            pid,
            entered,
        };
        let slot = (self.stuck.iter().position(|s| s.pid == 0))
            .or_else(|| (0..HELD).min_by_key(|&i| self.stuck[i].entered));
        if let Some(i) = slot {
            self.stuck[i] = entry;
        }
    }

    /// Forgets the processes that have ended.
    pub(super) fn release_ended(&mut self) {
        for stuck in self.stuck.iter_mut().filter(|s| s.pid != 0) {
            if !runner_alive(stuck.pid) {
                *stuck = Stuck::default();
            }
        }
    }

    /// Whether a stuck process runs `owner`'s code (as of the last `release_ended`).
    pub(super) fn holds(&self, owner: pg_sys::Oid) -> bool {
        (self.stuck.iter()).any(|s| s.pid != 0 && s.owner == owner.to_u32())
    }
}

/// Whether `pid` is a callback runner of this database (a pid reused since by a session or
/// another worker is not the stuck runner).
fn runner_alive(pid: i32) -> bool {
    // SAFETY: BackendPidGetProc takes ProcArrayLock and returns NULL for a pid that is not a
    // backend's; the PGPROC array lives in shared memory for the server's life.
    // GetBackgroundWorkerTypeByPid copies the type under BackgroundWorkerLock into a static
    // buffer, read at once (NULL: no background worker has that pid).
    unsafe {
        let proc_ = pg_sys::BackendPidGetProc(pid);
        if proc_.is_null() || (*proc_).databaseId != pg_sys::MyDatabaseId {
            return false;
        }
        let kind = pg_sys::GetBackgroundWorkerTypeByPid(pid);
        !kind.is_null()
            && std::ffi::CStr::from_ptr(kind).to_bytes() == super::RUNNER_TYPE.as_bytes()
    }
}
