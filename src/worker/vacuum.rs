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
const COUNTS: &str = include_str!("../../sql/worker/vacuum_counts.sql");
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

/// pg_webhook's churning tables (those `vacuum_due.sql` looks at).
const TABLES: usize = 5;
/// A table whose dead rows the oldest-xmin horizon held back at its last VACUUM is vacuumed
/// again once the horizon moves, or at the latest this long after that VACUUM: rows of aborted
/// transactions go whatever the horizon, and so may rows on pages that VACUUM skipped for want
/// of a cleanup lock, or that `old_snapshot_threshold` lets go.
const HELD_AT_MOST_MS: u64 = 300_000;

/// The last VACUUM of each table, handed over from runner to runner with the turn.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Vacuumed {
    tables: [Last; TABLES],
}

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Last {
    relid: u32,
    /// The oldest-xmin horizon just before that VACUUM (its own was no older).
    horizon: u32,
    /// When, in milliseconds since the epoch.
    at: u64,
    /// Whether the log has said the table's dead rows are held back at this horizon.
    told: bool,
}

/// A table with enough dead rows to vacuum.
#[derive(Debug)]
struct Due {
    relid: u32,
    name: String,
    dead: i64,
    /// Its VACUUMs so far (`vacuum_count`): one that SKIP_LOCKED skipped does not count.
    vacuums: i64,
}

impl Vacuumed {
    /// Which of the `due` tables to vacuum now (noted as vacuumed at `horizon`, `now`), and
    /// which to tell the log about: those left because no dead row has become removable since
    /// their last VACUUM — the horizon has not moved, and that VACUUM, less than
    /// `HELD_AT_MOST_MS` ago, left them behind — once per horizon.
    fn sort<'a>(&mut self, due: &'a [Due], horizon: u32, now: u64) -> (Vec<&'a Due>, Vec<&'a Due>) {
        let (mut vacuum, mut tell) = (Vec::new(), Vec::new());
        for table in due {
            let i = (self.tables.iter().position(|l| l.relid == table.relid))
                .or_else(|| self.tables.iter().position(|l| l.relid == 0))
                .unwrap_or_else(|| (0..TABLES).min_by_key(|&i| self.tables[i].at).unwrap_or(0));
            let last = &mut self.tables[i];
            let same = last.relid == table.relid && last.horizon == horizon;
            // A wall clock set back counts as the time having passed.
            if same && now >= last.at && now - last.at < HELD_AT_MOST_MS {
                if !last.told {
                    last.told = true;
                    tell.push(table);
                }
                continue;
            }
            *last = Last {
                relid: table.relid,
                horizon,
                at: now,
                told: same && last.told,
            };
            vacuum.push(table);
        }
        (vacuum, tell)
    }

    /// Forgets the last VACUUM of `tables`: it did not happen (it failed, or SKIP_LOCKED skipped
    /// them), so the next pass vacuums them whatever the horizon.
    fn forget(&mut self, tables: &[&Due]) {
        for last in &mut self.tables {
            if tables.iter().any(|t| t.relid == last.relid) {
                *last = Last::default();
            }
        }
    }
}

/// Vacuums the pg_webhook tables that need it; a failure is logged and tried again next time.
/// A table whose dead rows no VACUUM could remove yet waits for the horizon to move (see
/// `Vacuumed::sort`): while a long transaction, a prepared one or a replication slot holds it
/// back, another VACUUM would only read the same pages again, every 10 s.
pub(super) fn vacuum_due_tables(vacuumed: &mut Vacuumed, now_ms: u64) {
    let Ok((due, horizon)) = txn::run("finding tables to vacuum", || {
        let due = Spi::connect(|client| {
            client
                .select(DUE, None, &[MIN_DEAD.into(), DEAD_SHARE.into()])?
                .map(|r| {
                    Ok(Due {
                        relid: r.get::<pg_sys::Oid>(1)?.map_or(0, pg_sys::Oid::to_u32),
                        name: r.get::<String>(2)?.unwrap_or_default(),
                        dead: r.get::<i64>(3)?.unwrap_or(0),
                        vacuums: r.get::<i64>(4)?.unwrap_or(0),
                    })
                })
                .collect::<pgrx::spi::SpiResult<Vec<Due>>>()
        })?;
        let horizon = horizon_of(due.first());
        Ok((due, horizon))
    }) else {
        return;
    };
    let (run, tell) = match horizon {
        Some(horizon) => vacuumed.sort(&due, horizon, now_ms),
        None => (due.iter().collect(), Vec::new()),
    };
    for table in tell {
        log!(
            "pg_webhook callback runner: {} has {} dead rows no VACUUM can remove yet: a \
             transaction, a prepared transaction or a replication slot has held back the oldest \
             xmin ({}) since its last VACUUM; it is vacuumed again once that moves, or {} \
             minutes after that VACUUM",
            table.name,
            table.dead,
            horizon.unwrap_or(0),
            HELD_AT_MOST_MS / 60_000
        );
    }
    if run.is_empty() {
        return;
    }
    super::backend::report_activity(Some("vacuuming pg_webhook's tables"));
    let names: Vec<&str> = run.iter().map(|t| t.name.as_str()).collect();
    // SKIP_LOCKED: a table someone holds a lock on (pg_repack, a DBA) waits for the next pass.
    let statement = format!("VACUUM (SKIP_LOCKED) {}", names.join(", "));
    if let Err(e) = run_vacuum(&statement) {
        warning!("pg_webhook worker: {statement} failed: {e}");
    }
    // Those not vacuumed after all (it failed, or SKIP_LOCKED skipped them: a worker's ANALYZE,
    // autovacuum, pg_repack) are tried again at the next pass.
    let relids: Vec<pg_sys::Oid> = run.iter().map(|t| pg_sys::Oid::from(t.relid)).collect();
    let counts = txn::run("counting the VACUUMs", || {
        Spi::connect(|client| {
            client
                .select(COUNTS, None, &[relids.into()])?
                .map(|r| Ok((r.get::<pg_sys::Oid>(1)?, r.get::<i64>(2)?)))
                .collect::<pgrx::spi::SpiResult<Vec<_>>>()
        })
    })
    .unwrap_or_default();
    let done = |t: &Due| {
        let now = counts
            .iter()
            .find(|(relid, _)| relid.map(|r| r.to_u32()) == Some(t.relid));
        now.and_then(|(_, c)| *c).is_some_and(|c| c > t.vacuums)
    };
    let missed: Vec<&Due> = run.into_iter().filter(|t| !done(t)).collect();
    vacuumed.forget(&missed);
    super::backend::report_stats();
}

/// The oldest transaction whose deletions VACUUM must keep, for the tables of this database
/// (all pg_webhook's are plain tables in it: one horizon), when something holds it back —
/// `None` when it is the next transaction id (nothing does: a quiet database), nothing is due,
/// or the table just went or is not a plain table. Takes no lock: a DBA's lock on the table
/// (`VACUUM FULL`, pg_repack's swap) must not hold up the runner, whose VACUUM skips it.
fn horizon_of(table: Option<&Due>) -> Option<u32> {
    let relid = pg_sys::Oid::from(table?.relid);
    // SAFETY: in the transaction txn::run opened; the relcache entry, if there is one, is
    // only read for what kind of relation it is, and released at once.
    let horizon = unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return None;
        }
        let plain = (*(*rel).rd_rel).relkind == pg_sys::RELKIND_RELATION as std::ffi::c_char;
        let horizon = plain.then(|| pg_sys::GetOldestNonRemovableTransactionId(rel));
        pg_sys::RelationClose(rel);
        horizon?.into_inner()
    };
    // SAFETY: reads the next transaction id under its lock.
    let next = unsafe { pg_sys::ReadNextFullTransactionId().value } as u32;
    (horizon != next).then_some(horizon)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn due(relid: u32) -> Due {
        Due {
            relid,
            name: format!("t{relid}"),
            dead: 5_000,
            vacuums: 0,
        }
    }

    fn names(tables: &[&Due]) -> Vec<u32> {
        tables.iter().map(|t| t.relid).collect()
    }

    #[test]
    fn a_table_still_due_at_the_same_horizon_waits_and_is_told_about_once() {
        let mut v = Vacuumed::default();
        let tables = [due(10), due(11)];
        let (run, tell) = v.sort(&tables, 700, 1_000);
        assert_eq!((names(&run), names(&tell)), (vec![10, 11], vec![]));
        let (run, tell) = v.sort(&tables, 700, 11_000);
        assert_eq!((names(&run), names(&tell)), (vec![], vec![10, 11]));
        let (run, tell) = v.sort(&tables, 700, 21_000);
        assert_eq!((names(&run), names(&tell)), (vec![], vec![]));
    }

    #[test]
    fn a_moved_horizon_lets_the_table_be_vacuumed_again() {
        let mut v = Vacuumed::default();
        let tables = [due(10)];
        v.sort(&tables, 700, 1_000);
        v.sort(&tables, 700, 11_000);
        let (run, _) = v.sort(&tables, 701, 21_000);
        assert_eq!(names(&run), vec![10]);
        // And waits again at the new horizon, told afresh.
        let (run, tell) = v.sort(&tables, 701, 31_000);
        assert_eq!((names(&run), names(&tell)), (vec![], vec![10]));
    }

    #[test]
    fn a_held_table_is_vacuumed_again_five_minutes_after_its_last_vacuum_and_not_told_again() {
        let mut v = Vacuumed::default();
        let tables = [due(10)];
        v.sort(&tables, 700, 1_000);
        v.sort(&tables, 700, 11_000);
        let (run, _) = v.sort(&tables, 700, 300_999);
        assert_eq!(names(&run), Vec::<u32>::new());
        let (run, _) = v.sort(&tables, 700, 301_000);
        assert_eq!(names(&run), vec![10]);
        let (run, tell) = v.sort(&tables, 700, 311_000);
        assert_eq!((names(&run), names(&tell)), (vec![], vec![]));
    }

    #[test]
    fn a_failed_vacuum_is_forgotten() {
        let mut v = Vacuumed::default();
        let tables = [due(10), due(11)];
        v.sort(&tables, 700, 1_000);
        v.forget(&[&tables[0]]);
        let (run, tell) = v.sort(&tables, 700, 11_000);
        assert_eq!((names(&run), names(&tell)), (vec![10], vec![11]));
    }

    #[test]
    fn a_table_first_due_at_a_held_horizon_is_vacuumed_once() {
        let mut v = Vacuumed::default();
        v.sort(&[due(10)], 700, 1_000);
        let tables = [due(10), due(12)];
        let (run, _) = v.sort(&tables, 700, 11_000);
        assert_eq!(names(&run), vec![12]);
    }
}
