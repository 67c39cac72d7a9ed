//! What writing a row without the executor shares between capture (the queue, written as COPY
//! does) and recording (finished events moved to the archive): the steps the executor takes
//! around a heap insert.

use pgrx::pg_sys;

use crate::unguarded;

/// Adds the index entries of the row in `slot` (just inserted; its `tts_tid` set) to every
/// index open in `rri`, as `ExecInsert` does, uniqueness checked at once.
///
/// # Safety
/// `rri` has its indexes open (`ExecOpenIndices` or the like), `estate` is the executor state
/// they were opened with, and `slot` holds the row.
pub unsafe fn insert_index_entries(
    _: &unguarded::Region,
    rri: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    estate: *mut pg_sys::EState,
) {
    // SAFETY: see the function contract.
    unsafe {
        let econtext = unguarded::MakePerTupleExprContext(estate);
        (*econtext).ecxt_scantuple = slot;
        unguarded::ExecInsertIndexTuples(
            rri,
            slot,
            estate,
            false,
            false,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        unguarded::MemoryContextReset((*econtext).ecxt_per_tuple_memory);
    }
}

/// `ExecClearTuple`, which is an inline function in the headers: pgrx's shim of it
/// (`pg_sys::ExecClearTuple`) would set up its ERROR guard for every row of a bulk capture,
/// and a slot's clear callback raises no ERROR.
///
/// # Safety
/// `slot` is a valid slot.
pub unsafe fn clear_slot(slot: *mut pg_sys::TupleTableSlot) {
    // SAFETY: every slot has ops with a clear callback.
    unsafe {
        if let Some(clear) = (*(*slot).tts_ops).clear {
            clear(slot);
        }
    }
}
