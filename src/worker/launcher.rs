//! The launcher: one background worker that gives every database using pg_webhook its delivery
//! workers and callback runner, so nobody has to list databases by hand.
//!
//! It connects to no database (it reads only the shared catalog pg_database). At start it tries
//! every database that accepts connections: workers that find no pg_webhook there exit at once,
//! and do not come back on their own — a worker left connected would block DROP DATABASE and
//! CREATE DATABASE ... TEMPLATE. After that, a commit that queues events (or changes a
//! subscription) in a database without workers asks the launcher through shared memory, so a
//! new database gets delivery with its first subscription.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder};
use pgrx::prelude::*;

use super::backend::{install_signal_handlers, reload_config_if_asked, wait_latch};
use super::databases::{databases, Databases};
mod handle;

use crate::wake::{Abandon, CALLBACK_RUNNER};
use handle::Handle;

/// How long the launcher sleeps when nothing asks for it.
const IDLE_WAIT: Duration = Duration::from_secs(10);
/// How soon it tries again when it could not start a database's workers (no free slot).
const RETRY_WAIT: Duration = Duration::from_secs(1);
/// How long after a runner would be taken for stuck the launcher looks (so it looks once).
const STUCK_CHECK_MARGIN: Duration = Duration::from_millis(10);

pub fn register() {
    BackgroundWorkerBuilder::new("pg_webhook launcher")
        .set_library("pg_webhook")
        .set_function("pg_webhook_launcher_main")
        .set_type("pg_webhook launcher")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_webhook_launcher_main(_arg: pg_sys::Datum) {
    install_signal_handlers();
    // SAFETY: a plain read of a postmaster global, inherited by every backend.
    if unsafe { pg_sys::IsBinaryUpgrade } {
        // pg_upgrade restores the schema with the tables empty: no worker may act on that.
        // Exiting with 0 leaves the launcher stopped until the upgraded cluster starts.
        log!("pg_webhook launcher: not starting workers during a binary upgrade");
        return;
    }
    BackgroundWorker::connect_worker_to_spi(None, None);
    // SAFETY: a plain read of a backend global.
    let pid = unsafe { pg_sys::MyProcPid };
    crate::wake::register_launcher(pid);
    log!("pg_webhook launcher started");
    let Databases {
        connectable: known,
        mut refusing,
    } = Databases::scan();
    // `refusing`: databases that refused connections at the last look. One that accepts them now
    // (ALLOW_CONNECTIONS turned back on after a restart) is tried like every database at start:
    // no commit of its own may come to ask for workers, and its queued events would wait for
    // one. A database made since is not: it asks with its first commit, as before.
    let mut looked = Instant::now();
    // Workers that outlived a restart of the launcher are adopted, and looked after like the
    // ones it starts: one that dies is started again.
    let mut served: HashMap<pg_sys::Oid, Served> = crate::wake::databases_with_workers()
        .into_iter()
        .filter_map(|db| known.get(&db).map(|name| (db, Served::adopt(db, name))))
        .collect();
    // Every other database once; then those that ask.
    let mut pending: HashSet<pg_sys::Oid> = known
        .into_keys()
        .filter(|db| !served.contains_key(db))
        .collect();
    let mut told_full = false;
    loop {
        pg_sys::check_for_interrupts!();
        // Workers stop by themselves when pg_webhook.database no longer includes them. A
        // database it now lets in is tried once, like every database at start: its commits did
        // not ask while it was left out, and its queued events wait for workers. One served now
        // is tried again once its workers are gone, in case the setting changed back meanwhile.
        let only = crate::guc::served_database();
        if reload_config_if_asked() && crate::guc::served_database() != only {
            pending.extend(
                databases()
                    .into_keys()
                    .filter(|db| !served.contains_key(db)),
            );
            for db in served.values_mut() {
                db.asked_again = true;
            }
        }
        for database in crate::wake::take_requests() {
            match served.get_mut(&database) {
                // Asked again since its workers started: if they are leaving because they saw
                // no pg_webhook, they may have looked too early.
                Some(db) => db.asked_again = true,
                None => {
                    pending.insert(database);
                }
            }
        }
        for database in crate::wake::take_missing() {
            if let Some(db) = served.remove(&database) {
                if db.asked_again {
                    pending.insert(database);
                }
                db.stop();
            }
        }
        if looked.elapsed() >= IDLE_WAIT {
            looked = Instant::now();
            let now = Databases::scan();
            pending.extend(
                refusing
                    .iter()
                    .filter(|db| now.connectable.contains_key(db) && !served.contains_key(db)),
            );
            refusing = now.refusing;
        }
        let mut blocked = None;
        let mut known: Option<HashMap<pg_sys::Oid, String>> = None;
        served.retain(|database, db| {
            let keep = db.keep_up(&mut blocked, || {
                known.get_or_insert_with(databases).contains_key(database)
            });
            if !keep && db.asked_again {
                pending.insert(*database);
            }
            keep
        });
        start_pending(&mut pending, &mut served, &mut blocked);
        match (&blocked, told_full) {
            (Some(name), false) => {
                warning!(
                    "pg_webhook launcher: no free background worker slot for database \"{name}\"; raise max_worker_processes (each database with pg_webhook needs pg_webhook.workers + 1); retrying"
                );
                told_full = true;
            }
            (None, true) => told_full = false,
            _ => {}
        }
        let busy = !pending.is_empty() || blocked.is_some();
        let mut wait = if busy { RETRY_WAIT } else { IDLE_WAIT };
        if let Some(restart) = served.values().filter_map(Served::next_restart).min() {
            wait = wait.min(restart.saturating_duration_since(Instant::now()));
        }
        // A runner running a callback is looked at when it would be taken for stuck.
        let stuck_check = crate::wake::next_stuck_check().unwrap_or(wait);
        wait_latch(wait.min(stuck_check + STUCK_CHECK_MARGIN));
    }
}

/// Starts the workers of the databases that asked (or have not been tried yet); those that
/// cannot start now stay pending: their last workers are still leaving, or no slot is free
/// (`blocked` then names one).
fn start_pending(
    pending: &mut HashSet<pg_sys::Oid>,
    served: &mut HashMap<pg_sys::Oid, Served>,
    blocked: &mut Option<String>,
) {
    if pending.is_empty() {
        return;
    }
    let known = databases();
    let live = crate::wake::databases_with_workers();
    for database in std::mem::take(pending) {
        let Some(name) = known.get(&database) else {
            continue; // dropped, a template, or not accepting connections
        };
        if served.contains_key(&database) || !crate::guc::serves(name) {
            continue;
        }
        if live.contains(&database) || blocked.is_some() {
            pending.insert(database);
            continue;
        }
        match Served::start(database, name) {
            Some(db) => {
                served.insert(database, db);
            }
            None => {
                *blocked = Some(name.clone());
                pending.insert(database);
            }
        }
    }
}

/// The workers the launcher looks after for one database.
struct Served {
    database: pg_sys::Oid,
    name: String,
    workers: Vec<(i32, Handle)>,
    /// A commit asked for workers after these started.
    asked_again: bool,
    /// The stuck runner the launcher said it could not start another beside.
    told_stuck: Option<i32>,
}

/// What worker `index` of a database is, for messages.
fn worker_name(index: i32) -> String {
    match index {
        CALLBACK_RUNNER => "callback runner".to_string(),
        i => format!("delivery worker {i}"),
    }
}

/// Delivery workers 0..pg_webhook.workers, then the callback runner.
fn indexes() -> impl Iterator<Item = i32> {
    (0..crate::guc::worker_count()).chain(std::iter::once(CALLBACK_RUNNER))
}

impl Served {
    /// `pg_webhook.workers` delivery workers and a callback runner; `None` (and nothing left
    /// running) when there are not enough background worker slots.
    fn start(database: pg_sys::Oid, name: &str) -> Option<Served> {
        let mut workers = Vec::new();
        for index in indexes() {
            match Handle::launch(database, name, index, 0) {
                Handle::Missing => {
                    for (_, worker) in workers {
                        Handle::terminate(worker);
                    }
                    return None;
                }
                started => workers.push((index, started)),
            }
        }
        Some(Served {
            database,
            name: name.to_string(),
            workers,
            asked_again: false,
            told_stuck: None,
        })
    }

    /// The workers of `database` that a previous launcher started; `keep_up` starts the ones
    /// that are not running.
    fn adopt(database: pg_sys::Oid, name: &str) -> Served {
        let workers = indexes()
            .map(|index| {
                let handle = if crate::wake::is_registered(database, index) {
                    Handle::Adopted
                } else {
                    Handle::Missing
                };
                (index, handle)
            })
            .collect();
        Served {
            database,
            name: name.to_string(),
            workers,
            asked_again: false,
            told_stuck: None,
        }
    }

    /// Stops every worker (the database has no pg_webhook). Adopted ones leave by themselves:
    /// they noticed first.
    fn stop(self) {
        for (_, worker) in self.workers {
            worker.terminate();
        }
    }

    /// When the next worker whose process failed before it began is to be started again.
    fn next_restart(&self) -> Option<Instant> {
        (self.workers.iter())
            .filter_map(|(_, handle)| match handle {
                Handle::Waiting { until, .. } => Some(*until),
                _ => None,
            })
            .min()
    }

    /// Starts again any worker that stopped while others run (terminated, or failed); false
    /// when all have stopped, which is how workers leave a database without pg_webhook.
    /// `exists` is asked only when something stopped: after DROP DATABASE ... WITH (FORCE)
    /// there is nothing to restart.
    ///
    /// A callback runner stuck in a call (see `Handle::stuck`) is left to end by itself, and
    /// started again beside it: otherwise every owner's callbacks and backfill chunks in the
    /// database would wait for that call, as long as whoever it waits for likes. Its owner's
    /// wait until it ends (`callbacks::turn`), so one owner holds up at most one process.
    fn keep_up(&mut self, blocked: &mut Option<String>, exists: impl FnOnce() -> bool) -> bool {
        let database = self.database;
        // No longer served (pg_webhook.database): its workers leave as they reload, and none
        // is started again, nor beside a stuck runner, which would not leave with them.
        let serves = crate::guc::serves(&self.name);
        for (index, handle) in self.workers.iter_mut().filter(|_| serves) {
            let Some(pid) = handle.stuck(database, *index) else {
                continue;
            };
            let abandon = crate::wake::abandon(pid, database);
            if abandon == Abandon::Abandoned {
                warning!(
                    "pg_webhook launcher: the callback runner of database \"{}\" (pid {pid}) is still running {} s after its watchdog stopped the callback or backfill chunk it runs: the owner's code is blocked where interrupts do not reach it (dblink_connect to a server that never answers, say); starting another runner beside it. That process ends when the call returns (close the connection at the other end); until then the owner's callbacks and backfills wait",
                    self.name,
                    crate::wake::STUCK.as_secs()
                );
                *handle = Handle::Missing;
            } else if abandon == Abandon::Capped && self.told_stuck != Some(pid) {
                warning!(
                    "pg_webhook launcher: the callback runner of database \"{}\" (pid {pid}) is stuck in a call, and {} runners stuck before it still are: no runner is started beside it, and the database's callbacks and backfills wait until one of them ends (close their connections at the other end)",
                    self.name,
                    crate::wake::MOST_ABANDONED
                );
                self.told_stuck = Some(pid);
            }
        }
        let stopped: Vec<usize> = self
            .workers
            .iter()
            .enumerate()
            .filter(|(_, (index, w))| !w.alive(database, *index))
            .map(|(i, _)| i)
            .collect();
        // Workers that all stopped have left (the database has no pg_webhook), unless each
        // failed before it began: they never looked.
        let all_failed = stopped.iter().all(|&i| {
            let (index, handle) = &self.workers[i];
            matches!(handle, Handle::Waiting { .. })
                || handle.failed_to_start(database, *index).is_some()
        });
        if (stopped.len() == self.workers.len() && !all_failed)
            || (!stopped.is_empty() && (!serves || !exists()))
        {
            return false;
        }
        let now = Instant::now();
        for i in stopped {
            let (index, handle) = &mut self.workers[i];
            let index = *index;
            if crate::wake::is_registered(database, index) {
                // Another process is this worker (started by a launcher before this one, and
                // registered since): the one this launcher started left it its place.
                *handle = Handle::Adopted;
                continue;
            }
            if let Some(failures) = handle.failed_to_start(database, index) {
                let delay = pg_webhook_core::retry::restart_delay(failures);
                warning!(
                    "pg_webhook launcher: the {} of database \"{}\" stopped before it began its work ({failures} time{} in a row; the lines logged before this one say why, such as its library file missing while pg_webhook is being reinstalled); starting it again in {} s",
                    worker_name(index),
                    self.name,
                    if failures == 1 { "" } else { "s" },
                    delay.as_secs()
                );
                *handle = Handle::Waiting {
                    failures,
                    until: now + delay,
                };
                continue;
            }
            let failures = match handle {
                Handle::Waiting { until, .. } if *until > now => continue,
                Handle::Waiting { failures, .. } => *failures,
                _ => 0,
            };
            *handle = Handle::launch(self.database, &self.name, index, failures);
            if matches!(handle, Handle::Missing) {
                *blocked = Some(self.name.clone());
            }
        }
        true
    }
}
