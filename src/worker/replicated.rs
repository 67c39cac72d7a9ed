//! Nothing is sent before the synchronous standbys have it.
//!
//! A transaction waiting for its synchronous standbys is already committed locally; if that
//! wait ends early — the postmaster died, or the writer was cancelled or terminated — it
//! becomes visible on the primary without being on any standby, and without its writer being
//! told it committed. A failover then loses it. Sending its events would tell a receiver about
//! a change the cluster no longer has. So, when `synchronous_standby_names` is set, a claim's
//! events wait until the synchronous standbys have flushed the WAL the primary had flushed
//! when the claim was read: every commit the claim could see that waited for them (writers
//! with `synchronous_commit = off` or `local` chose not to wait, and are not waited for
//! either). When the primary dies meanwhile, the worker dies with it and sends nothing.

use std::time::Duration;

use pgrx::prelude::*;

use super::backend::{reload_config_if_asked, sleep};

/// How often the standbys' confirmed position is looked at while waiting for it.
const POLL: Duration = Duration::from_millis(1);

/// WAL flushed on this server so far. Read after a claim's snapshot, it is at or past the
/// commit record of every transaction the claim saw that flushed its commit before ending.
pub(super) fn flushed_lsn() -> pg_sys::XLogRecPtr {
    // SAFETY: reads shared WAL state under its own lock; no preconditions.
    unsafe { pg_sys::GetFlushRecPtr(std::ptr::null_mut()) }
}

/// Waits until the synchronous standbys (if any are configured) have flushed `lsn`. A reload
/// meanwhile is applied here — a failed standby dropped from `synchronous_standby_names` must
/// end the wait — and left pending for the worker's loop, which applies its own settings.
/// SIGTERM and the postmaster's death end the process as anywhere else.
pub(super) fn wait_for_synchronous_standbys(lsn: pg_sys::XLogRecPtr) {
    let mut reloaded = false;
    let mut waiting = false;
    while standbys_configured() && confirmed_flush() < lsn {
        if !waiting {
            waiting = true;
            super::backend::report_activity(Some("waiting for the synchronous standbys"));
        }
        pg_sys::check_for_interrupts!();
        reloaded |= reload_config_if_asked();
        sleep(POLL);
    }
    if reloaded {
        // SAFETY: a sig_atomic_t flag of this process, set on its main thread.
        unsafe { pg_sys::ConfigReloadPending = 1 };
    }
}

/// Whether `synchronous_standby_names` names any (what PostgreSQL's SyncStandbysDefined()
/// checks for commits).
fn standbys_configured() -> bool {
    // SAFETY: a GUC string of this process, read on its main thread; NULL or NUL-terminated.
    unsafe {
        pg_sys::max_wal_senders > 0
            && !pg_sys::SyncRepStandbyNames.is_null()
            && *pg_sys::SyncRepStandbyNames != 0
    }
}

/// The position up to which the synchronous standbys have flushed WAL, as PostgreSQL releases
/// waiting commits by it (`WalSndCtl->lsn[SYNC_REP_WAIT_FLUSH]`, kept by the walsenders).
fn confirmed_flush() -> pg_sys::XLogRecPtr {
    // SAFETY: WalSndCtl is shared memory set up at server start; an aligned 64-bit read of a
    // value that only moves forward (a torn read is impossible on the 64-bit platforms built).
    unsafe {
        let ctl = pg_sys::WalSndCtl;
        if ctl.is_null() {
            return 0;
        }
        std::ptr::read_volatile(
            std::ptr::addr_of!((*ctl).lsn)
                .cast::<pg_sys::XLogRecPtr>()
                .add(pg_sys::SYNC_REP_WAIT_FLUSH as usize),
        )
    }
}
