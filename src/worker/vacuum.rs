//! The callback runner vacuums pg_webhook's churning tables itself, as pgqd does for PgQ — not a
//! delivery worker: a VACUUM of a table a retention purge just emptied takes tens of
//! milliseconds, every one of them a delay for the events committed meanwhile. Autovacuum would
//! get to them — the workers report their statistics — but only once a minute at best
//! (`autovacuum_naptime`), and a queue that turns over thousands of rows a second grows by a
//! minute's worth of dead rows in between. Vacuuming as soon as a tenth of a table is dead keeps
//! the footprint flat from the first retention period on.
//!
//! Any worker that meets a backlog the planner does not know about has the queue counted again
//! (`refresh_queue_stats`).

use std::ffi::CString;
use std::panic::AssertUnwindSafe;

use pgrx::prelude::*;

use super::txn;

const DUE: &str = include_str!("../../sql/worker/vacuum_due.sql");
const STATS_STALE: &str = include_str!("../../sql/worker/queue_stats_stale.sql");
const ANALYZE_QUEUE: &str = include_str!("../../sql/worker/analyze_queue.sql");
const LOCK_TIMEOUT_SHORT: &str = include_str!("../../sql/queries/lock_timeout_short.sql");
const LOCK_QUEUE_STATS: &str = include_str!("../../sql/worker/lock_queue_stats.sql");
/// A table is vacuumed once it has this many dead rows ...
const MIN_DEAD: i64 = 1_000;
/// ... and they are at least this share of its live rows.
const DEAD_SHARE: f64 = 0.1;

/// How often the tables' dead rows are looked at.
pub(super) const VACUUM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Vacuums the pg_webhook tables that need it; a failure is logged and tried again next time.
pub(super) fn vacuum_due_tables() {
    let Ok(due) = txn::run("finding tables to vacuum", || {
        Spi::connect(|client| {
            client
                .select(DUE, None, &[MIN_DEAD.into(), DEAD_SHARE.into()])?
                .map(|r| r.get::<String>(1).map(Option::unwrap_or_default))
                .collect::<pgrx::spi::SpiResult<Vec<String>>>()
        })
    }) else {
        return;
    };
    if due.is_empty() {
        return;
    }
    super::backend::report_activity(Some("vacuuming pg_webhook's tables"));
    // SKIP_LOCKED: a table someone holds a lock on (pg_repack, a DBA) waits for the next pass.
    let statement = format!("VACUUM (SKIP_LOCKED) {}", due.join(", "));
    if let Err(e) = run_vacuum(&statement) {
        warning!("pg_webhook worker: {statement} failed: {e}");
    }
    super::backend::report_stats();
}

/// Runs a VACUUM statement the way a top-level command runs: VACUUM commits the transaction it
/// is called in, runs one of its own per table, and leaves a fresh one open to commit.
fn run_vacuum(statement: &str) -> Result<(), String> {
    let text = CString::new(statement).map_err(|e| e.to_string())?;
    PgTryBuilder::new(AssertUnwindSafe(|| {
        // SAFETY: the worker is between transactions; the parse tree is a VacuumStmt (the text
        // is a VACUUM built above) and lives in the transaction's memory until it is used.
        unsafe {
            pg_sys::StartTransactionCommand();
            let parsed = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
            let raw = pg_sys::list_nth(parsed, 0).cast::<pg_sys::RawStmt>();
            let stmt = (*raw).stmt;
            if (*stmt).type_ != pg_sys::NodeTag::T_VacuumStmt {
                pg_sys::AbortCurrentTransaction();
                return Err(format!("not a VACUUM statement: {statement}"));
            }
            let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
            (*pstate).p_sourcetext = text.as_ptr();
            pg_sys::ExecVacuum(pstate, stmt.cast::<pg_sys::VacuumStmt>(), true);
            pg_sys::CommitTransactionCommand();
        }
        Ok(())
    }))
    .catch_others(|caught| {
        // SAFETY: aborting whatever transaction VACUUM left open is always allowed.
        unsafe { pg_sys::AbortCurrentTransaction() };
        Err(txn::describe(&caught))
    })
    .execute()
}

/// After a claim found the planner's idea of the queue stale for a full page of `page` events
/// (`Statements::queue_stats_stale`): ANALYZE it, so the statements that record outcomes look
/// events up by key instead of reading the whole queue. Another worker may be analyzing it for
/// the same backlog: this one waits for it (sql/worker/lock_queue_stats.sql) and looks again.
/// Returns whether it analyzed, `None` when it could not (the lock not had within a second: a
/// VACUUM or pg_repack may hold it for long).
pub(super) fn refresh_queue_stats(page: usize) -> Option<bool> {
    let page = page as f64;
    let stale = || {
        Spi::connect(|client| {
            client
                .select(STATS_STALE, None, &[page.into()])?
                .first()
                .get_one::<bool>()
        })
        .map(|stale| stale == Some(true))
    };
    let refreshed = txn::run("checking the queue's statistics", || {
        if !stale()? {
            return Ok(false);
        }
        Spi::run(LOCK_TIMEOUT_SHORT)?;
        Spi::run(LOCK_QUEUE_STATS)?;
        // A new snapshot: what an ANALYZE that held the lock committed is seen now.
        // SAFETY: in the transaction txn::run opened; the snapshot it pushed is replaced.
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        if !stale()? {
            return Ok(false);
        }
        Spi::run(ANALYZE_QUEUE)?;
        Ok(true)
    });
    refreshed.ok()
}
