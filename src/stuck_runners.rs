//! `webhook._stuck_runners()`: how many callback runners of the database are stuck in a call
//! the watchdog cannot end (`wake::stuck`: abandoned, or waiting for the launcher to start one
//! beside it), for the monitoring query (sql/monitoring/postgres_exporter.yml): each holds a
//! background worker slot, and while one is, its owner's callbacks and backfills wait. Only
//! pg_monitor's members (and superusers) may execute it.

use pgrx::prelude::*;

/// The callback runners of this database stuck in a call.
#[pg_extern(name = "_stuck_runners", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn stuck_runners_sql() -> i32 {
    if !crate::is_preloaded() {
        return 0;
    }
    // SAFETY: a plain read of a backend global.
    let database = unsafe { pg_sys::MyDatabaseId };
    crate::wake::stuck_runners(database) as i32
}
