//! One worker of a database as the launcher knows it (its handle), and how one is started.

use pgrx::bgworkers::{BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker};
use pgrx::prelude::*;

use super::super::encode_start;
use crate::wake::CALLBACK_RUNNER;

/// One worker of a database, as the launcher knows it.
pub(super) enum Handle {
    /// Started by this launcher.
    Started(DynamicBackgroundWorker),
    /// Found running when this launcher started (a previous launcher started it): known only
    /// through its wake-up slot in shared memory.
    Adopted,
    /// Not running: could not be started, or adopted and since gone.
    Missing,
}

impl Handle {
    pub(super) fn alive(&self, database: pg_sys::Oid, index: i32) -> bool {
        match self {
            Handle::Started(w) => is_alive(w),
            Handle::Adopted => crate::wake::is_registered(database, index),
            Handle::Missing => false,
        }
    }

    /// The pid of a callback runner still running `wake::STUCK` after its watchdog fired on
    /// its call (`worker::watchdog`): blocked where no interrupt reaches it, it ends only when
    /// the call returns.
    pub(super) fn stuck(&self, database: pg_sys::Oid, index: i32) -> Option<i32> {
        let pid = match self {
            Handle::Started(w) => w.pid().ok(),
            Handle::Adopted => crate::wake::registered_pid(database, index),
            Handle::Missing => None,
        }?;
        (index == CALLBACK_RUNNER && crate::wake::stuck(pid)).then_some(pid)
    }

    pub(super) fn from_launch(worker: Option<DynamicBackgroundWorker>) -> Handle {
        worker.map_or(Handle::Missing, Handle::Started)
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
pub(super) fn launch(
    database: pg_sys::Oid,
    name: &str,
    index: i32,
) -> Option<DynamicBackgroundWorker> {
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
