//! Nothing is sent before the synchronous standbys have it.
//!
//! A transaction waiting for its synchronous standbys is already committed locally; if that
//! wait ends early — the postmaster died, or the writer was cancelled or terminated — it
//! becomes visible on the primary without being on any standby (its writer is told nothing,
//! or gets a WARNING). A failover then loses it. Sending its events would tell a receiver about
//! a change the cluster no longer has. So, where commits wait for synchronous standbys, a
//! claim's events wait until those standbys have flushed the WAL the primary had flushed when
//! the claim was read: every commit the claim could see that waited for them (writers with
//! `synchronous_commit = off` or `local` chose not to wait, and are not waited for either).
//! When the primary dies meanwhile, the worker dies with it and sends nothing. Nor does an
//! event go out before its commit is flushed on this server (`flush_commits`).

use std::time::Duration;

use pgrx::prelude::*;

use super::backend::{reload_config_if_asked, sleep};

/// How often the standbys' confirmed position is looked at while waiting for it: at first
/// (a replication round trip is short), then less and less often (a standby that is down).
const FIRST_POLL: Duration = Duration::from_millis(1);
const LAST_POLL: Duration = Duration::from_millis(50);

/// WAL flushed on this server so far. Read after a claim's snapshot, it is at or past the
/// commit record of every transaction the claim saw that flushed its commit before ending.
pub(super) fn flushed_lsn() -> pg_sys::XLogRecPtr {
    // SAFETY: reads shared WAL state under its own lock; no preconditions.
    unsafe { pg_sys::GetFlushRecPtr(std::ptr::null_mut()) }
}

/// Flushes WAL up to the commit record of each of the transactions `txids` (full transaction
/// ids, of the events a claim is about to send) not flushed yet. A writer with
/// `synchronous_commit = off` commits — and its events can be claimed — before its commit
/// record is on disk; a crash then loses the transaction after its events went out, and the
/// event id sequence, set back with it, hands their ids out again on the same timeline: a
/// receiver de-duplicating on webhook-ids would drop the next events as repeats. The commit
/// log keeps, for such commits, the WAL position they need flushed (what hint bits wait for);
/// other commits were flushed before they became visible and cost nothing here.
pub(super) fn flush_commits(txids: impl Iterator<Item = i64>) {
    let needed = commit_lsn_needed(txids);
    if needed > flushed_lsn() {
        // SAFETY: flushes this server's WAL up to a position already inserted (a commit
        // record's); no preconditions beyond running in a backend.
        unsafe { pg_sys::XLogFlush(needed) };
    }
}

/// The latest commit-record position the commit log keeps for any of `txids` (0 if none).
/// Read under `XactTruncationLock`, as PostgreSQL's own `pg_xact_status` does: the commit
/// log's start (`oldestClogXid`) moves, and its pages are cut off, only under that lock held
/// exclusively, so a transaction found not older than that start keeps its page while it is
/// read. Without it a vacuum truncating the commit log between the two reads made the read
/// an ERROR outside any transaction, which ends the worker.
fn commit_lsn_needed(txids: impl Iterator<Item = i64>) -> pg_sys::XLogRecPtr {
    // SAFETY: MainLWLockArray is shared memory set up at server start; slot 44 is
    // XactTruncationLock in PostgreSQL 15 (storage/lwlocknames.h), the only version built.
    let lock = unsafe { std::ptr::addr_of_mut!((*pg_sys::MainLWLockArray.add(44)).lock) };
    // SAFETY: a shared lock, released below; an ERROR meanwhile (an I/O failure reading the
    // commit log) releases it with every other lock (LWLockReleaseAll at error recovery).
    unsafe { pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_SHARED) };
    // SAFETY: reads of shared transaction state (the commit log under its own locks), with
    // its truncation held off; no preconditions beyond running in a backend.
    let needed = unsafe {
        let next = pg_sys::ReadNextFullTransactionId().value;
        let oldest = (*pg_sys::ShmemVariableCache).oldestClogXid;
        let mut needed: pg_sys::XLogRecPtr = 0;
        for full in txids.map(|t| t as u64) {
            // Older than 2^31 transactions (or not yet assigned, which cannot be) committed
            // long ago; older than the commit log's start, its status is gone.
            if full >= next || next - full >= 1 << 31 {
                continue;
            }
            let xid = pg_sys::TransactionId::from_inner(full as u32);
            if pg_sys::TransactionIdPrecedes(xid, oldest) {
                continue;
            }
            needed = needed.max(pg_sys::TransactionIdGetCommitLSN(xid));
        }
        needed
    };
    // SAFETY: the lock taken above, held by this process.
    unsafe { pg_sys::LWLockRelease(lock) };
    needed
}

/// Waits until the synchronous standbys (if any are configured) have flushed `lsn`. A reload
/// meanwhile is applied here — a failed standby dropped from `synchronous_standby_names` must
/// end the wait — and left pending for the worker's loop, which applies its own settings.
/// SIGTERM and the postmaster's death end the process as anywhere else.
pub(super) fn wait_for_synchronous_standbys(lsn: pg_sys::XLogRecPtr) {
    let mut reloaded = false;
    let mut poll = None;
    while commits_wait_for_standbys() && confirmed_flush() < lsn {
        if poll.is_none() {
            super::backend::report_activity(Some("waiting for the synchronous standbys"));
        }
        pg_sys::check_for_interrupts!();
        reloaded |= reload_config_if_asked();
        let now = poll.map_or(FIRST_POLL, |p: Duration| (p * 2).min(LAST_POLL));
        sleep(now);
        poll = Some(now);
    }
    if reloaded {
        // SAFETY: a sig_atomic_t flag of this process, set on its main thread.
        unsafe { pg_sys::ConfigReloadPending = 1 };
    }
}

/// Whether commits wait for synchronous standbys by default: `synchronous_standby_names`
/// names any (what PostgreSQL's SyncStandbysDefined() checks) and `synchronous_commit` as
/// configured (not the worker's own session value) waits for a standby. A cluster whose writers
/// commit without waiting, and choose per transaction, is not held up by an absent standby.
fn commits_wait_for_standbys() -> bool {
    // SAFETY: a GUC string of this process, read on its main thread; NULL or NUL-terminated.
    let named = unsafe {
        pg_sys::max_wal_senders > 0
            && !pg_sys::SyncRepStandbyNames.is_null()
            && *pg_sys::SyncRepStandbyNames != 0
    };
    let commit = crate::sql::configured_value(c"synchronous_commit");
    named && matches!(commit.to_bytes(), b"on" | b"remote_write" | b"remote_apply")
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
