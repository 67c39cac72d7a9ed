//! pg_webhook: every committed row change on a subscribed table reaches an HTTP endpoint as a
//! signed JSON POST — queued in the writer's transaction, delivered by a background worker,
//! retried until it lands, every attempt recorded.
//!
//! The worker needs `shared_preload_libraries = 'pg_webhook'`. Without it, subscriptions and
//! the queue still work, but nothing is sent.
//!
//! The Postgres-free logic (signing, payloads, retries, address policy, HTTP) is the
//! `pg_webhook_core` crate in `src/core`; this crate is the SQL API, the capture trigger, the
//! queue statements and the worker loop around it.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::prelude::*;

mod analysis_guard;
mod api;
mod backfill;
mod built_in_functions;
mod callees;
mod capture;
mod catalog_cache;
mod checked_sql;
mod delivery;
mod error;
mod expression;
mod guc;
mod in_flight;
mod invalidation;
mod literals;
mod looked_up_types;
mod manage;
mod named_in_text;
mod ping;
mod plan_check;
mod privilege;
mod queue;
mod relation_code;
mod sql;
mod stuck_runners;
mod subtype_diffs;
mod triggers;
mod tuples;
mod unguarded;
mod utility_hook;
mod wake;
mod worker;
mod worker_count;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/queue.sql", name = "queue", requires = ["schema"]);
extension_sql_file!("../sql/views.sql", name = "views", requires = ["queue"]);
// The health view and the private machinery need functions pgrx makes, named here by their Rust
// paths; the public API runs last, and ends by asking for this database's workers.
extension_sql_file!(
    "../sql/stats.sql",
    name = "stats",
    requires = [
        "views",
        in_flight::in_flight_table,
        worker_count::worker_count_sql,
        stuck_runners::stuck_runners_sql
    ]
);
extension_sql_file!(
    "../sql/internals.sql",
    name = "internals",
    requires = [
        "stats",
        triggers::events::on_dropped,
        triggers::sync_all_triggers,
        queue::bindings::system_identifier,
        capture::_capture,
        capture::_order_lock
    ]
);
extension_sql_file!("../sql/api.sql", name = "api", finalize);

/// Set in the postmaster when loaded through shared_preload_libraries; inherited by every
/// forked backend, so it says whether shared memory and the worker exist.
static PRELOADED: AtomicBool = AtomicBool::new(false);

pub fn is_preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    quiet_backtraces();
    guc::init();
    analysis_guard::init();
    plan_check::init();
    subtype_diffs::init();
    capture::init_cache();
    invalidation::init();
    triggers::drop_access::init();
    capture::merge_moves::init();
    capture::nested::init();
    utility_hook::init();
    // SAFETY: a plain read of a postmaster-set global.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    PRELOADED.store(true, Ordering::Relaxed);
    // Before any worker is forked: they inherit the count (see guc::worker_count).
    guc::worker_count();
    wake::init_preloaded();
    worker::register();
}

/// pgrx captures a Rust backtrace for each ERROR raised under its guards and puts it in the
/// error's DETAIL; with `RUST_BACKTRACE` set in the server's environment, every planning-time
/// error of every session (a `SELECT 1/0`, folded under the planner hook) carried the frames
/// to its client. `RUST_LIB_BACKTRACE`, which `Backtrace::capture` reads first, turns that off
/// unless it is set already to ask for them (empty, it asks for them too). Runs in the
/// postmaster at preload (or in a backend at its first load), before any thread of
/// pg_webhook's starts.
fn quiet_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none_or(|v| v.is_empty()) {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    include!("tests.rs");
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'pg_webhook'",
            "pg_webhook.database = 'pgrx_tests'",
            "pg_webhook.allowed_destinations = '127.0.0.1'",
            "pg_webhook.poll_interval = '200ms'",
        ]
    }
}
