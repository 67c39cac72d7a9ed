//! How many times each worker of each database got as far as registering: the launcher reads
//! it before starting a worker and again when that worker has stopped, to tell a worker that
//! did its work and left (a callback runner handing over to the next owner's turn) from one
//! whose process failed before it began (its library file missing while pg_webhook is being
//! reinstalled, say), which it starts again only after a pause.
//!
//! Unlike a wake-up slot, an entry outlives its process. Entries of databases long gone are
//! taken over in turn when every entry is in use: a worker whose entry was taken over is then
//! at worst started again at once after a failed start, as before there was this table, never
//! held back after a clean exit.

use pgrx::prelude::*;

use super::{Workers, MAX_WORKERS};

#[derive(Clone, Copy, Default)]
pub(super) struct CheckIn {
    database: u32,
    index: i32,
    /// The table's count of registrations when this worker last registered (0: the entry is
    /// unused). Taken from one count for all, so a worker's value after its entry was taken
    /// over and made again never equals one it had before: a clean exit is never taken for a
    /// failed start.
    count: u32,
}

/// The check-in table: an entry per worker, the registrations so far, and the entry taken
/// over next.
#[derive(Clone, Copy)]
pub(super) struct CheckIns {
    entries: [CheckIn; MAX_WORKERS],
    registrations: u32,
    next_taken: usize,
}

impl Default for CheckIns {
    fn default() -> Self {
        CheckIns {
            entries: [CheckIn::default(); MAX_WORKERS],
            registrations: 0,
            next_taken: 0,
        }
    }
}

impl CheckIns {
    fn find(&self, database: u32, index: i32) -> Option<usize> {
        (self.entries.iter())
            .position(|e| e.count != 0 && e.database == database && e.index == index)
    }
}

/// Notes that worker `index` of `database` got as far as registering; called by the worker.
pub(super) fn check_in(workers: &mut Workers, database: u32, index: i32) {
    let table = &mut workers.check_ins;
    table.registrations = table.registrations.wrapping_add(1).max(1);
    let count = table.registrations;
    if let Some(i) = table.find(database, index) {
        table.entries[i].count = count;
        return;
    }
    let i = match table.entries.iter().position(|e| e.count == 0) {
        Some(free) => free,
        None => {
            let taken = table.next_taken % MAX_WORKERS;
            table.next_taken = taken + 1;
            taken
        }
    };
    table.entries[i] = CheckIn {
        database,
        index,
        count,
    };
}

/// The table's count of registrations when worker `index` of `database` last registered (0:
/// not since its entry was last taken over, or never): it changes whenever the worker registers.
pub fn check_ins(database: pg_sys::Oid, index: i32) -> u32 {
    let workers = super::WORKERS.share();
    let table = &workers.check_ins;
    (table.find(database.to_u32(), index)).map_or(0, |i| table.entries[i].count)
}
