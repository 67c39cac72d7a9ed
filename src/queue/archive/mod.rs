//! Finished events moved from the queue to the archive without the executor, where their claim
//! found them: each row is fetched at its ctid, its key checked, deleted, and its archive row
//! inserted with its index entries, as `DELETE … RETURNING` feeding an `INSERT` does, without
//! planning, the unnest of thirteen arrays, the tuple store every `RETURNING` row is copied
//! into, or evaluating each column as an expression. In a profile of a batched drain those were
//! a third of recording (sql/worker/finish.sql does the same in SQL, and still does everything
//! this declines).
//!
//! It declines (the caller then records in SQL) whenever the tables are not exactly those of
//! this version: another column or a missing one, a column of another type or with a type
//! modifier, an identity or generated column, other defaults, triggers, rules, row-level
//! security that applies to the worker, another table access method, a partition, an index whose uniqueness is checked
//! only at commit. An event whose row is not where its claim found it, no longer has its key
//! there, or was changed or deleted by another transaction since it was read is left in the
//! queue for the caller's search by key, which waits and re-checks as the executor does.
//!
//! Permissions are not checked: only the worker calls this, on the extension's private tables,
//! which its own statements write. Executor hooks (pg_stat_statements, auditing extensions) see
//! no statement for what is moved here.

mod layout;

use pgrx::{pg_sys, IntoDatum};

use super::Outcome;
use crate::tuples::{clear_slot, insert_index_entries};
use layout::{
    columns, defaults_written, plain, ARCHIVE, A_ATTEMPTS, A_CALLBACK_ERROR, A_DURATION_MS,
    A_ERROR, A_EXCERPT, A_FINISHED_AT, A_LAST_ERROR, A_STARTED_AT, A_STATUS, A_STATUS_CODE,
    COPIED_COLUMNS, QUEUE, Q_COPIED, Q_ID, Q_SUBSCRIPTION, Q_TXID,
};

/// What a move did.
pub struct Moved {
    /// Events archived.
    pub archived: usize,
    /// Per subscription, how many of them were delivered and how many are dead.
    pub totals: Vec<(i32, i64, i64)>,
}

const LOCK: pg_sys::LOCKMODE = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;

/// Moves the finished events whose ctid is known (`outcomes`, none of them a retry); `None`
/// when the tables are not ones this can write (nothing was done).
///
/// # Safety
/// Inside the worker's transaction, with an active snapshot, outside SPI.
pub unsafe fn move_finished(outcomes: &[&Outcome]) -> Option<Moved> {
    // SAFETY: see the function contract; every resource taken is released below or, on an
    // ERROR, by the transaction's abort.
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"webhook".as_ptr(), true);
        let queue_oid = pg_sys::get_relname_relid(c"_event_queue".as_ptr(), schema);
        let archive_oid = pg_sys::get_relname_relid(c"_event_archive".as_ptr(), schema);
        if schema == pg_sys::Oid::INVALID
            || queue_oid == pg_sys::Oid::INVALID
            || archive_oid == pg_sys::Oid::INVALID
        {
            return None;
        }
        let queue = pg_sys::table_open(queue_oid, LOCK);
        let archive = pg_sys::table_open(archive_oid, LOCK);
        let close = || {
            pg_sys::table_close(archive, pg_sys::NoLock as pg_sys::LOCKMODE);
            pg_sys::table_close(queue, pg_sys::NoLock as pg_sys::LOCKMODE);
        };
        let queue_layout = plain(queue).then(|| columns(queue, &QUEUE, false));
        let archive_layout = plain(archive).then(|| columns(archive, &ARCHIVE, true));
        let layout = match (queue_layout.flatten(), archive_layout.flatten()) {
            (Some(q), Some(a))
                if defaults_written(archive, a[A_FINISHED_AT], a[A_CALLBACK_ERROR]) =>
            {
                Some((q, a))
            }
            _ => None,
        };
        let Some((q, a)) = layout else {
            close();
            return None;
        };
        // A queue published without a replica identity cannot have rows deleted: the same
        // ERROR as `DELETE` raises.
        pg_sys::CheckCmdReplicaIdentity(queue, pg_sys::CmdType::CMD_DELETE);
        let mut mover = Mover::open(queue, archive, q, a);
        let moved = mover.as_mut().map(|m| m.run(outcomes));
        if let Some(m) = mover {
            m.close();
        }
        close();
        if moved.is_some() {
            // Later statements of the transaction (the search by key) see what was done.
            pg_sys::CommandCounterIncrement();
        }
        moved
    }
}

struct Mover {
    queue: pg_sys::Relation,
    archive: pg_sys::Relation,
    q: [usize; QUEUE.len()],
    a: [usize; ARCHIVE.len()],
    estate: *mut pg_sys::EState,
    rri: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    /// Where each row's values are made; reset after each row.
    row_memory: pg_sys::MemoryContext,
    snapshot: pg_sys::Snapshot,
    /// The command the rows are deleted and inserted in.
    cid: pg_sys::CommandId,
    /// The queue row being moved, deformed, and the archive row made of it: one of each for
    /// every row moved.
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    row: Vec<pg_sys::Datum>,
    row_nulls: Vec<bool>,
}

impl Mover {
    /// Opens the archive's indexes; `None` (nothing left open) if one of them checks
    /// uniqueness only at commit, which the executor does with a trigger.
    unsafe fn open(
        queue: pg_sys::Relation,
        archive: pg_sys::Relation,
        q: [usize; QUEUE.len()],
        a: [usize; ARCHIVE.len()],
    ) -> Option<Mover> {
        // SAFETY: both relations are open and locked; see `move_finished`.
        unsafe {
            let estate = pg_sys::CreateExecutorState();
            let rri = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
                .cast::<pg_sys::ResultRelInfo>();
            (*rri).type_ = pg_sys::NodeTag::T_ResultRelInfo;
            // Index 0: not in a range table, so a failed constraint's message reads no entry.
            pg_sys::InitResultRelInfo(rri, archive, 0, std::ptr::null_mut(), 0);
            pg_sys::ExecOpenIndices(rri, false);
            let n = (*rri).ri_NumIndices as usize;
            let deferred = (0..n).any(|i| {
                let index = *(*rri).ri_IndexRelationDescs.add(i);
                !(*(*index).rd_index).indimmediate
            });
            if deferred {
                pg_sys::ExecCloseIndices(rri);
                pg_sys::FreeExecutorState(estate);
                return None;
            }
            let slot =
                pg_sys::MakeSingleTupleTableSlot((*archive).rd_att, &pg_sys::TTSOpsHeapTuple);
            let row_memory = pg_sys::AllocSetContextCreateInternal(
                pg_sys::CurrentMemoryContext,
                c"pg_webhook archive row".as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            );
            // A snapshot taken now, as each statement of the transaction takes its own.
            let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot());
            Some(Mover {
                queue,
                archive,
                q,
                a,
                estate,
                rri,
                slot,
                row_memory,
                snapshot,
                cid: pg_sys::GetCurrentCommandId(true),
                values: vec![pg_sys::Datum::from(0usize); (*(*queue).rd_att).natts as usize],
                nulls: vec![true; (*(*queue).rd_att).natts as usize],
                row: vec![pg_sys::Datum::from(0usize); (*(*archive).rd_att).natts as usize],
                row_nulls: vec![true; (*(*archive).rd_att).natts as usize],
            })
        }
    }

    unsafe fn close(self) {
        // SAFETY: each was made once in `open`.
        unsafe {
            pg_sys::UnregisterSnapshot(self.snapshot);
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
            pg_sys::ExecCloseIndices(self.rri);
            pg_sys::FreeExecutorState(self.estate);
            pg_sys::MemoryContextDelete(self.row_memory);
        }
    }

    unsafe fn run(&mut self, outcomes: &[&Outcome]) -> Moved {
        let mut moved = Moved {
            archived: 0,
            totals: Vec::new(),
        };
        // SAFETY: see `move_finished`; the snapshot is popped before it is unregistered.
        unsafe {
            // Active while rows are moved, for what a DBA's CHECK constraint or index
            // expression may read, as each statement of the SQL path makes its own active.
            pg_sys::PushActiveSnapshot(self.snapshot);
            let blocks = pg_sys::RelationGetNumberOfBlocksInFork(
                self.queue,
                pg_sys::ForkNumber::MAIN_FORKNUM,
            );
            for outcome in outcomes {
                let Some(tid) = outcome.tid else { continue };
                let context = pg_sys::MemoryContextSwitchTo(self.row_memory);
                let subscription = self.move_one(outcome, tid, blocks);
                pg_sys::MemoryContextSwitchTo(context);
                pg_sys::MemoryContextReset(self.row_memory);
                let Some(subscription) = subscription else {
                    continue;
                };
                moved.archived += 1;
                let delivered = matches!(outcome.decision, super::Decision::Delivered);
                match moved.totals.iter_mut().find(|t| t.0 == subscription) {
                    Some(t) if delivered => t.1 += 1,
                    Some(t) => t.2 += 1,
                    None => moved.totals.push((
                        subscription,
                        i64::from(delivered),
                        i64::from(!delivered),
                    )),
                }
            }
            pg_sys::PopActiveSnapshot();
        }
        moved
    }

    /// Moves one event; its subscription if it did.
    unsafe fn move_one(
        &mut self,
        outcome: &Outcome,
        mut tid: pg_sys::ItemPointerData,
        blocks: pg_sys::BlockNumber,
    ) -> Option<i32> {
        // SAFETY: see `move_finished`; the fetched row's values are read while its buffer is
        // pinned, and copied into the archive row before it is released.
        unsafe {
            // As a TID scan: a ctid past the end of a rewritten (smaller) queue is no row.
            if !pgrx::itemptr::item_pointer_is_valid(&tid)
                || pgrx::itemptr::item_pointer_get_block_number(&tid) >= blocks
            {
                return None;
            }
            let mut tuple: pg_sys::HeapTupleData = std::mem::zeroed();
            tuple.t_self = tid;
            let mut buffer: pg_sys::Buffer = pg_sys::InvalidBuffer as pg_sys::Buffer;
            if !pg_sys::heap_fetch(self.queue, self.snapshot, &mut tuple, &mut buffer, false) {
                return None;
            }
            pg_sys::heap_deform_tuple(
                &mut tuple,
                (*self.queue).rd_att,
                self.values.as_mut_ptr(),
                self.nulls.as_mut_ptr(),
            );
            let (q, values, nulls) = (self.q, &self.values, &self.nulls);
            let same_key = !nulls[q[Q_TXID]]
                && !nulls[q[Q_ID]]
                && values[q[Q_TXID]].value() as u64 == outcome.txid as u64
                && values[q[Q_ID]].value() as i64 == outcome.event_id;
            let mut failure: pg_sys::TM_FailureData = std::mem::zeroed();
            let deleted = same_key
                && pg_sys::heap_delete(
                    self.queue,
                    &mut tid,
                    self.cid,
                    std::ptr::null_mut(),
                    true,
                    &mut failure,
                    false,
                ) == pg_sys::TM_Result::TM_Ok;
            let moved = deleted.then(|| {
                self.insert(outcome);
                self.values[q[Q_SUBSCRIPTION]].value() as i32
            });
            pg_sys::ReleaseBuffer(buffer);
            moved
        }
    }

    /// Inserts the archive row of an event whose queue row (`values`, `nulls`) was deleted.
    unsafe fn insert(&mut self, o: &Outcome) {
        // SAFETY: see `move_finished`; in the row's memory context.
        unsafe {
            let adesc = (*self.archive).rd_att;
            self.row_nulls.fill(true);
            let (a, row, row_nulls) = (&self.a, &mut self.row, &mut self.row_nulls);
            let mut set = |column: usize, value: Option<pg_sys::Datum>| {
                if let Some(v) = value {
                    row[a[column]] = v;
                    row_nulls[a[column]] = false;
                }
            };
            for column in 0..COPIED_COLUMNS {
                let i = self.q[Q_COPIED + column];
                set(column, (!self.nulls[i]).then_some(self.values[i]));
            }
            set(A_ATTEMPTS, o.attempt.into_datum());
            set(A_LAST_ERROR, o.last_error.as_deref().into_datum());
            set(A_STATUS, o.decision.outcome().into_datum());
            // now(), the column's default.
            set(
                A_FINISHED_AT,
                pg_sys::GetCurrentTransactionStartTimestamp().into_datum(),
            );
            set(A_STARTED_AT, timestamptz(o.started_at).into_datum());
            set(A_DURATION_MS, o.duration_ms.into_datum());
            set(A_STATUS_CODE, o.status_code.into_datum());
            set(A_EXCERPT, o.response_excerpt.as_deref().into_datum());
            set(A_ERROR, o.error.as_deref().into_datum());
            // callback_error stays NULL: batches with callbacks are recorded in SQL.
            let tuple = pg_sys::heap_form_tuple(adesc, row.as_mut_ptr(), row_nulls.as_mut_ptr());
            (*tuple).t_tableOid = (*self.archive).rd_id;
            pg_sys::ExecStoreHeapTuple(tuple, self.slot, false);
            if !(*adesc).constr.is_null() {
                pg_sys::ExecConstraints(self.rri, self.slot, self.estate);
            }
            pg_sys::heap_insert(self.archive, tuple, self.cid, 0, std::ptr::null_mut());
            (*self.slot).tts_tid = (*tuple).t_self;
            let (rri, slot, estate) = (self.rri, self.slot, self.estate);
            crate::unguarded::region(|r| insert_index_entries(r, rri, slot, estate));
            clear_slot(self.slot);
        }
    }
}

/// What `to_timestamp(epoch seconds)` makes of `t` (the SQL path passes it so): the seconds
/// since PostgreSQL's epoch, to the microsecond, rounded half to even.
fn timestamptz(t: std::time::SystemTime) -> pg_sys::TimestampTz {
    const POSTGRES_EPOCH_IN_UNIX_SECONDS: f64 = 946_684_800.0;
    let seconds = super::rows::epoch_seconds(t) - POSTGRES_EPOCH_IN_UNIX_SECONDS;
    (seconds * 1_000_000.0).round_ties_even() as pg_sys::TimestampTz
}
