//! `webhook._worker_count()`: how many delivery workers each database has — the
//! `pg_webhook.workers` setting, or with its default (0) the count the server resolved from its
//! CPUs as it started (`guc::worker_count`) — for the monitoring query that reports whether each
//! of them runs (sql/monitoring/postgres_exporter.yml). Reading the setting there listed none
//! under the default. Only pg_monitor's members (and superusers) may execute it.

use pgrx::prelude::*;

/// The delivery workers each database has.
#[pg_extern(name = "_worker_count", stable)]
#[search_path(pg_catalog, pg_temp)]
fn worker_count_sql() -> i32 {
    crate::guc::worker_count()
}
