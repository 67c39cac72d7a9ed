//! One worker of a database as the launcher knows it (its handle), and how one is started.

use std::time::Instant;

use pgrx::bgworkers::{BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker};
use pgrx::prelude::*;

use super::super::encode_start;
use crate::wake::CALLBACK_RUNNER;

/// One worker of a database, as the launcher knows it.
pub(super) enum Handle {
    /// Started by this launcher, when it had registered `check_ins` times before (see
    /// `wake::check_ins`), after its process had failed before it began `failures` times in a
    /// row.
    Started {
        worker: DynamicBackgroundWorker,
        check_ins: u32,
        failures: u32,
    },
    /// Its process failed before it began, `failures` times in a row (see `failed_to_start`):
    /// started again at `until`.
    Waiting { failures: u32, until: Instant },
    /// Found running when this launcher started (a previous launcher started it): known only
    /// through its wake-up slot in shared memory.
    Adopted,
    /// Not running: could not be started, or adopted and since gone.
    Missing,
}

impl Handle {
    pub(super) fn alive(&self, database: pg_sys::Oid, index: i32) -> bool {
        match self {
            Handle::Started { worker, .. } => is_alive(worker),
            Handle::Adopted => crate::wake::is_registered(database, index),
            Handle::Waiting { .. } | Handle::Missing => false,
        }
    }

    /// The pid of a callback runner still running `wake::STUCK` after its watchdog fired on
    /// its call (`worker::watchdog`): blocked where no interrupt reaches it, it ends only when
    /// the call returns.
    pub(super) fn stuck(&self, database: pg_sys::Oid, index: i32) -> Option<i32> {
        let pid = match self {
            Handle::Started { worker, .. } => worker.pid().ok(),
            Handle::Adopted => crate::wake::registered_pid(database, index),
            Handle::Waiting { .. } | Handle::Missing => None,
        }?;
        (index == CALLBACK_RUNNER && crate::wake::stuck(pid)).then_some(pid)
    }

    /// Starts worker `index` of `database`, whose process failed before it began `failures`
    /// times in a row; `Missing` when no background worker slot is free.
    pub(super) fn launch(database: pg_sys::Oid, name: &str, index: i32, failures: u32) -> Handle {
        let check_ins = crate::wake::check_ins(database, index);
        match launch(database, name, index) {
            Some(worker) => Handle::Started {
                worker,
                check_ins,
                failures,
            },
            None => Handle::Missing,
        }
    }

    /// For a worker this launcher started and that has stopped: how many times in a row its
    /// process failed before it began, this time included, if it did this time — it never got
    /// as far as registering (`None`: it did, and did its work until it left or was stopped).
    pub(super) fn failed_to_start(&self, database: pg_sys::Oid, index: i32) -> Option<u32> {
        match self {
            Handle::Started {
                check_ins,
                failures,
                ..
            } if crate::wake::check_ins(database, index) == *check_ins => {
                Some(failures.saturating_add(1))
            }
            _ => None,
        }
    }

    /// Stops the worker if this launcher started it (and it is running).
    pub(super) fn terminate(self) {
        if let Handle::Started { worker, .. } = self {
            worker.terminate();
        }
    }
}

fn is_alive(worker: &DynamicBackgroundWorker) -> bool {
    !matches!(
        worker.pid(),
        Err(BackgroundWorkerStatus::Stopped | BackgroundWorkerStatus::PostmasterDied)
    )
}

/// One worker: delivery worker `index`, or the callback runner. Never restarted by the
/// postmaster (the launcher does it), so a crash-restart of the cluster cannot leave two
/// workers with the same share of a database.
fn launch(database: pg_sys::Oid, name: &str, index: i32) -> Option<DynamicBackgroundWorker> {
    let count = crate::guc::worker_count();
    let (title, kind, function) = match index {
        CALLBACK_RUNNER => (
            format!("pg_webhook callback runner for {name}"),
            super::super::callbacks::RUNNER_TYPE,
            "pg_webhook_callbacks_main",
        ),
        _ if count == 1 => (
            format!("pg_webhook delivery worker for {name}"),
            "pg_webhook",
            "pg_webhook_worker_main",
        ),
        i => (
            format!("pg_webhook delivery worker {i} for {name}"),
            "pg_webhook",
            "pg_webhook_worker_main",
        ),
    };
    // SAFETY: a plain read of a backend global.
    let me = unsafe { pg_sys::MyProcPid };
    BackgroundWorkerBuilder::new(&title)
        .set_library("pg_webhook")
        .set_function(function)
        .set_type(kind)
        .set_argument(Some(encode_start(database, index)))
        .enable_spi_access()
        .set_restart_time(None)
        .set_notify_pid(me)
        .load_dynamic()
        .ok()
}
