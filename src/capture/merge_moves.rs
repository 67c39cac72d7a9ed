//! A `MERGE` that moves rows between partitions of a subscribed table is refused.
//!
//! PostgreSQL 15 hands the rows a MERGE's UPDATE moves to another partition to the statement
//! triggers as a deletion and an insertion: the old row goes to the DELETE transition table
//! and the new one to the INSERT transition table, never to the UPDATE's, and the DELETE and
//! INSERT statement triggers fire only when the MERGE has such actions. A MERGE whose UPDATE
//! moved a row would lose the change, or send half of it. (A plain UPDATE's moves reach the
//! UPDATE trigger whole.)
//!
//! So while a MERGE into a partitioned table with a capture trigger for updates finishes (its
//! AFTER triggers fire in `ExecutorFinish`), this hook compares the rows it updated (moved or
//! not: PostgreSQL's count) with those the capture trigger found in its UPDATE transition
//! table. Fewer found means rows moved: the statement fails, and nothing of it commits.

use std::cell::RefCell;

use pgrx::prelude::*;

/// A MERGE on a partitioned table with a capture trigger for updates, while it finishes: its
/// table, and the most rows an UPDATE capture trigger of it found in its transition table.
struct Merge {
    relid: pg_sys::Oid,
    updated_in_place: i64,
}

thread_local! {
    /// Innermost last: a trigger can run a MERGE of its own.
    static FINISHING: RefCell<Vec<Merge>> = const { RefCell::new(Vec::new()) };
}

static mut PREVIOUS_HOOK: pg_sys::ExecutorFinish_hook_type = None;

/// Installs the hook; once per process, from `_PG_init`.
pub fn init() {
    // SAFETY: called once per process on the main thread, before any statement runs.
    unsafe {
        PREVIOUS_HOOK = pg_sys::ExecutorFinish_hook;
        pg_sys::ExecutorFinish_hook = Some(on_executor_finish);
    }
}

/// Called by the capture trigger for an UPDATE: notes how many rows its transition table
/// holds, when a MERGE into its table is finishing.
///
/// # Safety
/// `data` is an UPDATE trigger call's, with its old transition table.
pub unsafe fn note_update(data: &pg_sys::TriggerData) {
    FINISHING.with(|f| {
        let mut finishing = f.borrow_mut();
        // SAFETY: see the function contract.
        let relid = unsafe { (*data.tg_relation).rd_id };
        if let Some(merge) = finishing.last_mut().filter(|m| m.relid == relid) {
            // SAFETY: see the function contract.
            let rows = unsafe { pg_sys::tuplestore_tuple_count(data.tg_oldtable) };
            merge.updated_in_place = merge.updated_in_place.max(rows);
        }
    });
}

/// Takes the innermost MERGE off the stack however its finish ends (an ERROR unwinds as a
/// panic through `finish`).
struct Pop;

impl Drop for Pop {
    fn drop(&mut self) {
        FINISHING.with(|f| f.borrow_mut().pop());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_executor_finish(query: *mut pg_sys::QueryDesc) {
    // SAFETY: the QueryDesc PostgreSQL passes to ExecutorFinish, started and run.
    unsafe {
        let Some((modify, rel)) = merge_with_update_capture(query) else {
            finish(query);
            return;
        };
        FINISHING.with(|f| {
            f.borrow_mut().push(Merge {
                relid: (*rel).rd_id,
                updated_in_place: 0,
            })
        });
        let pop = Pop;
        // Runs the AFTER triggers, capture among them.
        finish(query);
        let in_place = FINISHING.with(|f| f.borrow().last().map_or(0, |m| m.updated_in_place));
        drop(pop);
        // Every row the MERGE updated, moved or not; the trigger saw those that stayed.
        if ((*modify).mt_merge_updated as i64) > in_place {
            refuse(rel);
        }
    }
}

/// The next ExecutorFinish: the hook installed before ours, or PostgreSQL's.
///
/// # Safety
/// As `ExecutorFinish`.
unsafe fn finish(query: *mut pg_sys::QueryDesc) {
    // SAFETY: see the function contract; an ERROR in the hook becomes a Rust panic here.
    unsafe {
        match PREVIOUS_HOOK {
            Some(previous) => pg_sys::ffi::pg_guard_ffi_boundary(|| previous(query)),
            None => pg_sys::standard_ExecutorFinish(query),
        }
    }
}

/// The MERGE's ModifyTable state and partitioned target table, when `query` is a MERGE into
/// a partitioned table with a capture trigger for updates that fires.
///
/// # Safety
/// `query` is a started QueryDesc.
unsafe fn merge_with_update_capture(
    query: *mut pg_sys::QueryDesc,
) -> Option<(*mut pg_sys::ModifyTableState, pg_sys::Relation)> {
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
        let root = (*modify).rootResultRelInfo;
        if root.is_null() {
            return None;
        }
        let rel = (*root).ri_RelationDesc;
        let partitioned = (*(*rel).rd_rel).relkind as u8 == pg_sys::RELKIND_PARTITIONED_TABLE;
        // The MERGE has run: whether it updated any row is known (no update, no move).
        let updated = (*modify).mt_merge_updated > 0.0;
        (partitioned && updated && has_update_capture(rel)).then_some((modify, rel))
    }
}

/// Whether an AFTER UPDATE statement trigger of `rel` that fires in this session runs the
/// capture trigger function.
///
/// # Safety
/// `rel` is an open relation.
unsafe fn has_update_capture(rel: pg_sys::Relation) -> bool {
    // SAFETY: see the function contract; the trigger descriptor belongs to the open relation.
    unsafe {
        let desc = (*rel).trigdesc;
        if desc.is_null() {
            return false;
        }
        let capture = super::_capture_wrapper as *const () as usize;
        let replica =
            pg_sys::SessionReplicationRole == pg_sys::SESSION_REPLICATION_ROLE_REPLICA as i32;
        let triggers = std::slice::from_raw_parts((*desc).triggers, (*desc).numtriggers as usize);
        triggers.iter().any(|t| {
            let tgtype = t.tgtype as u32;
            let after_update_statement = tgtype & pg_sys::TRIGGER_TYPE_UPDATE != 0
                && tgtype & (pg_sys::TRIGGER_TYPE_ROW | pg_sys::TRIGGER_TYPE_BEFORE) == 0;
            // As PostgreSQL decides whether a trigger fires (TriggerEnabled).
            let fires = match t.tgenabled as u8 {
                b'A' => true,
                b'R' => replica,
                b'O' => !replica,
                _ => false,
            };
            if !(after_update_statement && fires) {
                return false;
            }
            // Matched by the C function it runs, which is what makes a trigger capture.
            let mut info = pg_sys::FmgrInfo::default();
            pg_sys::fmgr_info(t.tgfoid, &mut info);
            info.fn_addr.map(|f| f as usize) == Some(capture)
        })
    }
}
fn refuse(rel: pg_sys::Relation) -> ! {
    // SAFETY: an open relation; its name and namespace are looked up in the syscache.
    let table = unsafe {
        let name = pg_sys::get_rel_name((*rel).rd_id);
        let schema = pg_sys::get_namespace_name((*(*rel).rd_rel).relnamespace);
        let text = |p: *mut std::ffi::c_char| {
            if p.is_null() {
                "?".to_string()
            } else {
                std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        format!("{}.{}", text(schema), text(name))
    };
    crate::error::reject(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!(
            "pg_webhook: this MERGE moved rows between partitions of {table}, which has a \
             webhook subscription, and PostgreSQL 15 does not show such moves to the \
             subscription's trigger: the change could not be captured, so the statement fails"
        ),
        Some(
            "Change partition key values with UPDATE (sent as an update), or MERGE only rows \
             that stay in their partition.",
        ),
    )
}
