//! Running a statement's unread data-modifying WITH queries to their end before its frame
//! opens (see `nested`).

use pgrx::prelude::*;

extern "C-unwind" {
    // executor/executor.h's inline ExecProcNode, through pgrx's C shim. Called unguarded, as
    // `nested`'s hooks call PostgreSQL.
    #[link_name = "ExecProcNode__pgrx_cshim"]
    fn exec_proc_node(node: *mut pg_sys::PlanState) -> *mut pg_sys::TupleTableSlot;
}

/// Runs to completion the data-modifying WITH queries `query` did not read to their end, as
/// ExecutorFinish would before firing the AFTER triggers (ExecPostprocessPlan): what their rows'
/// BEFORE triggers write happens while the statement runs, before its frame opens. Running them
/// again then returns nothing (a finished ModifyTable node returns no more rows).
///
/// Not guarded: their ERRORs reach the client as PostgreSQL raised them.
///
/// # Safety
/// `query` is a started QueryDesc that has run and not finished.
pub(super) unsafe fn finish_writable_ctes(query: *mut pg_sys::QueryDesc) {
    // SAFETY: see the function contract; as execMain.c's ExecPostprocessPlan, in the query's
    // memory context as standard_ExecutorFinish runs it.
    unsafe {
        let estate = (*query).estate;
        let nodes = pgrx::PgList::<pg_sys::PlanState>::from_pg((*estate).es_auxmodifytables);
        if nodes.is_empty() {
            return;
        }
        let old = pg_sys::MemoryContextSwitchTo((*estate).es_query_cxt);
        (*estate).es_direction = pg_sys::ScanDirection::ForwardScanDirection;
        for node in nodes.iter_ptr() {
            loop {
                let per_tuple = (*estate).es_per_tuple_exprcontext;
                if !per_tuple.is_null() {
                    pg_sys::MemoryContextReset((*per_tuple).ecxt_per_tuple_memory);
                }
                let slot = exec_proc_node(node);
                if slot.is_null() || (*slot).tts_flags as u32 & pg_sys::TTS_FLAG_EMPTY != 0 {
                    break;
                }
            }
        }
        pg_sys::MemoryContextSwitchTo(old);
    }
}
