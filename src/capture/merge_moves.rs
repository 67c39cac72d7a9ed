//! A `MERGE` that moves rows between partitions of a subscribed table is refused.
//!
//! PostgreSQL 15 hands the rows a MERGE's UPDATE moves to another partition to the statement
//! triggers as a deletion and an insertion: the old row goes to the DELETE transition table
//! and the new one to the INSERT transition table, never to the UPDATE's, and each of those
//! statement triggers fires only when the MERGE has that action. A MERGE whose UPDATE moved a
//! row would lose the change, or send half of it. (A plain UPDATE's moves reach the UPDATE
//! trigger whole.)
//!
//! So while a MERGE that updated rows of a partitioned table with capture triggers finishes
//! (its AFTER triggers fire in `ExecutorFinish`), each capture trigger of that statement notes
//! how many rows its transition table holds, and the hook compares them with PostgreSQL's
//! counts of what the MERGE did: fewer updated rows in the UPDATE table than updated (moved
//! ones included), or more rows in the INSERT or DELETE table than inserted (by the statement's
//! row count, which leaves out inserts a partition's BEFORE INSERT trigger skipped) or deleted,
//! means rows moved, and the statement fails; nothing of it commits. A data-modifying `WITH` on the
//! same table, or a foreign key's cascade on it, shares the transition tables, so such a MERGE
//! that updated rows is refused too.
//!
//! The hook passes every statement to the next `ExecutorFinish` unguarded, so the errors
//! raised there (a foreign key's, a trigger's) reach the client with all their fields. Each
//! statement that finishes while a MERGE is being watched gets a frame of its own, so the
//! triggers of statements nested in the MERGE's count for them, not for it; frames left by an
//! ERROR go at the (sub)transaction's abort.

use std::cell::RefCell;

use pg_webhook_core::payload::Operation;
use pgrx::prelude::*;

use super::frames_end::Ended;

/// A statement finishing while a MERGE is watched; `relid` invalid for any but a watched MERGE.
#[derive(Clone, Copy)]
struct Frame {
    relid: pg_sys::Oid,
    /// The transaction nest level it started in (frames of an aborted one are dropped).
    level: i32,
    /// Another statement writes the same table into its transition tables (a data-modifying
    /// WITH, or a foreign key's cascade that the MERGE's triggers run).
    shared: bool,
    /// The table has a capture trigger for updates.
    update_capture: bool,
    /// The most rows a capture trigger of this statement found: UPDATE, INSERT, DELETE.
    seen: [Option<i64>; 3],
}

thread_local! {
    /// Innermost last.
    static FINISHING: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

static mut PREVIOUS_HOOK: pg_sys::ExecutorFinish_hook_type = None;

extern "C-unwind" {
    // executor/executor.h. Called unguarded: an ERROR in it must reach the client untouched
    // (pgrx's guarded binding rethrows code, message, detail and hint only).
    #[link_name = "standard_ExecutorFinish"]
    fn standard_executor_finish(query: *mut pg_sys::QueryDesc);
}

/// Installs the hook and the callbacks that drop an aborted statement's frames; once per
/// process, from `_PG_init`.
pub fn init() {
    // SAFETY: called once per process on the main thread, before any statement runs.
    unsafe {
        PREVIOUS_HOOK = pg_sys::ExecutorFinish_hook;
        pg_sys::ExecutorFinish_hook = Some(on_executor_finish);
    }
    super::frames_end::register(forget);
}

/// Called by the capture trigger (every call, before anything else): notes how many rows
/// its transition table holds when it fires for a watched MERGE.
///
/// # Safety
/// `data` is the trigger call's, with its transition table for `op`.
pub unsafe fn note(data: &pg_sys::TriggerData, op: Operation) {
    let (slot, rows) = match op {
        Operation::Update => (0, data.tg_oldtable),
        Operation::Insert => (1, data.tg_newtable),
        Operation::Delete => (2, data.tg_oldtable),
        Operation::Truncate | Operation::Backfill => return,
    };
    FINISHING.with(|f| {
        let mut finishing = f.borrow_mut();
        // SAFETY: see the function contract.
        let relid = unsafe { (*data.tg_relation).rd_id };
        if let Some(frame) = finishing.last_mut().filter(|m| m.relid == relid) {
            // SAFETY: see the function contract.
            let n = unsafe { pg_sys::tuplestore_tuple_count(rows) };
            frame.seen[slot] = Some(frame.seen[slot].map_or(n, |s| s.max(n)));
        }
    });
}

/// Not guarded: everything that can fail runs in the guarded `before` and `after`, and the
/// next ExecutorFinish's ERRORs pass through as PostgreSQL raised them.
unsafe extern "C-unwind" fn on_executor_finish(query: *mut pg_sys::QueryDesc) {
    // SAFETY: the QueryDesc PostgreSQL passes to ExecutorFinish, started and run.
    unsafe {
        // The common case, inline and unable to fail: not a MERGE, and no MERGE is watched.
        let idle = (*query).operation != pg_sys::CmdType::CMD_MERGE
            && FINISHING.with(|f| f.try_borrow().is_ok_and(|stack| stack.is_empty()));
        if idle {
            return finish(query);
        }
        let frame = before(query);
        finish(query);
        after(query, frame);
    }
}

/// Runs the statement's ExecutorFinish: the hook installed before ours, or PostgreSQL's own.
unsafe fn finish(query: *mut pg_sys::QueryDesc) {
    // SAFETY: as `on_executor_finish`, whose QueryDesc this is.
    unsafe {
        match PREVIOUS_HOOK {
            Some(previous) => previous(query),
            None => standard_executor_finish(query),
        }
    }
}

/// Pushes the statement's frame (a watched MERGE's, or a plain one while a MERGE is watched)
/// and returns its position + 1; 0 when there is none.
#[pg_guard]
unsafe extern "C-unwind" fn before(query: *mut pg_sys::QueryDesc) -> usize {
    // SAFETY: see `on_executor_finish`.
    let watched = unsafe { watched_merge(query) };
    if watched.is_none() && FINISHING.with(|f| f.borrow().is_empty()) {
        return 0;
    }
    if watched.is_none() {
        // SAFETY: see `on_executor_finish`.
        if let Some(relid) = unsafe { deferring_writer(query) } {
            // Its AFTER triggers fire with those of the statement whose trigger ran it (a
            // foreign key's cascade), the innermost finishing one: when that is the MERGE, its
            // rows go to the MERGE's transition tables.
            FINISHING.with(|f| {
                let mut finishing = f.borrow_mut();
                if let Some(merge) = finishing.last_mut().filter(|m| m.relid == relid) {
                    merge.shared = true;
                }
            });
        }
    }
    let frame = watched.unwrap_or(Frame {
        relid: pg_sys::Oid::INVALID,
        level: 0,
        shared: false,
        update_capture: false,
        seen: [None; 3],
    });
    // SAFETY: a plain read of the transaction state.
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    FINISHING.with(|f| {
        let mut finishing = f.borrow_mut();
        finishing.push(Frame { level, ..frame });
        finishing.len()
    })
}

/// Takes the statement's frame off and fails a watched MERGE that moved rows.
#[pg_guard]
unsafe extern "C-unwind" fn after(query: *mut pg_sys::QueryDesc, position: usize) {
    if position == 0 {
        return;
    }
    let frame = FINISHING.with(|f| {
        let mut finishing = f.borrow_mut();
        let frame = finishing.get(position - 1).copied();
        finishing.truncate(position - 1);
        frame
    });
    let Some(frame) = frame.filter(|f| f.relid != pg_sys::Oid::INVALID) else {
        return;
    };
    // SAFETY: a watched MERGE's plan state is a ModifyTableState (see `watched_merge`), and
    // its executor state is live until ExecutorEnd.
    let (updated, inserted, deleted, processed) = unsafe {
        let modify = (*query).planstate.cast::<pg_sys::ModifyTableState>();
        (
            (*modify).mt_merge_updated as i64,
            (*modify).mt_merge_inserted as i64,
            (*modify).mt_merge_deleted as i64,
            (*(*query).estate).es_processed as i64,
        )
    };
    // The MERGE counts an insert its action ran even when a partition's BEFORE INSERT trigger
    // skipped the row; the statement's row count does not, so the rows it inserted are at most
    // what is left of that count after the updates and deletes (a skipped insert must not
    // make room in the INSERT table for a moved row).
    let inserted = inserted.min(processed - updated - deleted);
    let [upd, ins, del] = frame.seen;
    let moved = (frame.update_capture && upd.unwrap_or(0) < updated)
        || ins.is_some_and(|n| n > inserted)
        || del.is_some_and(|n| n > deleted);
    if frame.shared || moved {
        refuse(frame.relid, frame.shared);
    }
}

/// The frame of a MERGE into a partitioned table with a capture trigger that fires, which
/// updated rows (none updated, none moved).
///
/// # Safety
/// `query` is a started and run QueryDesc.
unsafe fn watched_merge(query: *mut pg_sys::QueryDesc) -> Option<Frame> {
    // SAFETY: see the function contract; the plan state tree lives until ExecutorEnd.
    unsafe {
        if (*query).operation != pg_sys::CmdType::CMD_MERGE {
            return None;
        }
        let state = (*query).planstate;
        if state.is_null() || (*state).type_ != pg_sys::NodeTag::T_ModifyTableState {
            return None;
        }
        let modify = state.cast::<pg_sys::ModifyTableState>();
        let rel = target(modify)?;
        let partitioned = (*(*rel).rd_rel).relkind as u8 == pg_sys::RELKIND_PARTITIONED_TABLE;
        if !partitioned || (*modify).mt_merge_updated <= 0.0 {
            return None;
        }
        let (any, update) = capture_triggers(rel);
        if !any {
            return None;
        }
        let relid = (*rel).rd_id;
        let ctes =
            pgrx::PgList::<pg_sys::PlanState>::from_pg((*(*query).estate).es_auxmodifytables);
        let shared = ctes.iter_ptr().any(|cte| {
            (*cte).type_ == pg_sys::NodeTag::T_ModifyTableState
                && target(cte.cast()).is_some_and(|r| (*r).rd_id == relid)
        });
        Some(Frame {
            relid,
            level: 0,
            shared,
            update_capture: update,
            seen: [None; 3],
        })
    }
}

/// The table `query` writes when it runs with its AFTER triggers left to the statement that
/// runs it (`EXEC_FLAG_SKIP_TRIGGERS`, as foreign keys run their cascades).
///
/// # Safety
/// `query` is a started QueryDesc.
unsafe fn deferring_writer(query: *mut pg_sys::QueryDesc) -> Option<pg_sys::Oid> {
    // SAFETY: see the function contract.
    unsafe {
        let deferring = (*(*query).estate).es_top_eflags as u32 & pg_sys::EXEC_FLAG_SKIP_TRIGGERS;
        let state = (*query).planstate;
        if deferring == 0
            || state.is_null()
            || (*state).type_ != pg_sys::NodeTag::T_ModifyTableState
        {
            return None;
        }
        target(state.cast()).map(|rel| (*rel).rd_id)
    }
}

/// The table a ModifyTable state writes, as named in its statement.
///
/// # Safety
/// `modify` is a valid ModifyTableState.
unsafe fn target(modify: *mut pg_sys::ModifyTableState) -> Option<pg_sys::Relation> {
    // SAFETY: see the function contract.
    unsafe {
        let root = (*modify).rootResultRelInfo;
        (!root.is_null()).then(|| (*root).ri_RelationDesc)
    }
}

/// Whether `rel` has capture triggers that fire in this session: any, and one for updates.
///
/// # Safety
/// `rel` is an open relation.
unsafe fn capture_triggers(rel: pg_sys::Relation) -> (bool, bool) {
    // SAFETY: see the function contract; the trigger descriptor belongs to the open relation.
    unsafe {
        let desc = (*rel).trigdesc;
        if desc.is_null() {
            return (false, false);
        }
        let replica =
            pg_sys::SessionReplicationRole == pg_sys::SESSION_REPLICATION_ROLE_REPLICA as i32;
        let triggers = std::slice::from_raw_parts((*desc).triggers, (*desc).numtriggers as usize);
        // AFTER ... FOR EACH STATEMENT with a transition table, as capture triggers are, and
        // firing as PostgreSQL decides it (TriggerEnabled).
        let candidates: Vec<&pg_sys::Trigger> = triggers
            .iter()
            .filter(|t| {
                let tgtype = t.tgtype as u32;
                let fires = match t.tgenabled as u8 {
                    b'A' => true,
                    b'R' => replica,
                    b'O' => !replica,
                    _ => false,
                };
                fires
                    && tgtype & (pg_sys::TRIGGER_TYPE_ROW | pg_sys::TRIGGER_TYPE_BEFORE) == 0
                    && !(t.tgoldtable.is_null() && t.tgnewtable.is_null())
            })
            .collect();
        if candidates.is_empty() {
            return (false, false);
        }
        let ours: Vec<u32> = candidates
            .iter()
            .filter(|t| is_capture_function(t.tgfoid))
            .map(|t| t.tgtype as u32)
            .collect();
        let update = ours.iter().any(|t| t & pg_sys::TRIGGER_TYPE_UPDATE != 0);
        (!ours.is_empty(), update)
    }
}

/// Whether function `oid` runs pg_webhook's capture trigger (the C function `_capture_wrapper`
/// of this library), read from the catalog cache: no permission check on its schema (any
/// writer's MERGE gets here), and whatever settings an ALTER FUNCTION gave it.
///
/// # Safety
/// In a transaction.
unsafe fn is_capture_function(oid: pg_sys::Oid) -> bool {
    let row =
        crate::catalog_cache::with_row(pg_sys::SysCacheIdentifier::PROCOID, oid, |attribute| {
            let text = |a: u32| {
                attribute(a).map(|datum| {
                    // SAFETY: see the function contract: a text column of the row.
                    unsafe {
                        let s = pg_sys::text_to_cstring(datum.cast_mut_ptr());
                        std::ffi::CStr::from_ptr(s).to_string_lossy().into_owned()
                    }
                })
            };
            (
                text(pg_sys::Anum_pg_proc_prosrc),
                text(pg_sys::Anum_pg_proc_probin),
            )
        });
    let Some((symbol, library)) = row else {
        return false;
    };
    // The scripts make it `AS 'MODULE_PATHNAME', '_capture_wrapper'`, and the control
    // file's module_pathname is 'pg_webhook' (some installs spell it $libdir/pg_webhook).
    symbol.as_deref() == Some("_capture_wrapper")
        && library.is_some_and(|l| {
            std::path::Path::new(&l).file_stem() == Some(std::ffi::OsStr::new("pg_webhook"))
        })
}

fn refuse(relid: pg_sys::Oid, shared: bool) -> ! {
    let table = super::table_name(relid);
    let message = if shared {
        format!(
            "pg_webhook: this MERGE updated rows of {table}, whose changes pg_webhook captures, \
             while another statement wrote the same table (a data-modifying WITH, or a foreign \
             key's cascade): PostgreSQL 15 puts both in the same transition tables, so whether \
             the MERGE moved rows between partitions (moves it does not show to the capture \
             trigger whole) cannot be told, and the statement fails"
        )
    } else {
        format!(
            "pg_webhook: this MERGE moved rows between partitions of {table}, whose changes \
             pg_webhook captures, and PostgreSQL 15 does not show such moves to the capture \
             trigger whole: the change could not be captured, so the statement fails"
        )
    };
    crate::error::reject(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        message,
        Some(
            "Change partition key values with UPDATE (sent as an update), or MERGE only rows \
             that stay in their partition, with no other statement writing the same table.",
        ),
    )
}

/// Drops the frames an ERROR left (see `frames_end`).
fn forget(ended: Ended) {
    FINISHING.with(|f| match ended {
        Ended::Transaction => f.borrow_mut().clear(),
        Ended::Subtransaction(level) => f.borrow_mut().retain(|frame| frame.level < level),
    });
}
