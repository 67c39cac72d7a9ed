//! How many times each worker of each database got as far as registering: the launcher reads
//! it before starting a worker and again when that worker has stopped, to tell a worker that
//! did its work and left (a callback runner handing over to the next owner's turn) from one
//! whose process failed before it began (its library file missing while pg_webhook is being
//! reinstalled, say), which it starts again only after a pause.
//!
//! Unlike a wake-up slot, an entry outlives its process. Entries of databases long gone are
//! taken over in turn when every entry is in use.

use pgrx::prelude::*;

use super::{Workers, MAX_WORKERS};

#[derive(Clone, Copy, Default)]
pub(super) struct CheckIn {
    database: u32,
    index: i32,
    /// Registrations so far (0: the entry is unused).
    count: u32,
}

/// The check-in table: an entry per worker, and where the next one taken over is.
#[derive(Clone, Copy)]
pub(super) struct CheckIns {
    entries: [CheckIn; MAX_WORKERS],
    next_taken: usize,
}

impl Default for CheckIns {
    fn default() -> Self {
        CheckIns {
            entries: [CheckIn::default(); MAX_WORKERS],
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
    if let Some(i) = table.find(database, index) {
        table.entries[i].count = table.entries[i].count.wrapping_add(1).max(1);
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
        count: 1,
    };
}

/// How many times worker `index` of `database` registered so far (as far as this table still
/// knows: 0 when its entry was taken over).
pub fn check_ins(database: pg_sys::Oid, index: i32) -> u32 {
    let workers = super::WORKERS.share();
    let table = &workers.check_ins;
    (table.find(database.to_u32(), index)).map_or(0, |i| table.entries[i].count)
}
