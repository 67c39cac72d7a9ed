//! Row triggers on the queue, fired around capture's inserts as COPY fires them: BEFORE ROW
//! triggers on each row before it is written (one that returns NULL keeps the row out), AFTER
//! ROW triggers queued after it is written and run when the writer closes, as at the end of a
//! nested statement. The queue has none of its own; pg_repack adds one while it rebuilds the
//! table, to log the rows written after it took its copy. Statement triggers on the queue do
//! not fire: capture's rows are not a statement on it.

use pgrx::pg_sys;

/// Which row triggers for INSERT the queue has (most often none).
#[derive(Clone, Copy, Default)]
pub struct RowTriggers {
    pub before: bool,
    pub after: bool,
}

impl RowTriggers {
    /// The queue's row triggers for INSERT, from the result relation's copy of them; with any,
    /// opens the query level their AFTER events are queued in (closed by `end`).
    ///
    /// # Safety
    /// `rri` is initialized for the open queue.
    pub unsafe fn begin(rri: *mut pg_sys::ResultRelInfo) -> RowTriggers {
        // SAFETY: see the function contract.
        let found = unsafe {
            let desc = (*rri).ri_TrigDesc;
            if desc.is_null() {
                return RowTriggers::default();
            }
            RowTriggers {
                before: (*desc).trig_insert_before_row,
                after: (*desc).trig_insert_after_row,
            }
        };
        if found.before || found.after {
            // SAFETY: inside a transaction; `end` or the (sub)transaction's abort closes it.
            unsafe { pg_sys::AfterTriggerBeginQuery() };
        }
        found
    }

    /// Runs the BEFORE ROW triggers on each of `slots`: the slots they let through, `None`
    /// when there are no such triggers (all go through).
    ///
    /// # Safety
    /// `slots` hold complete tuples of the queue, which `rri` and `estate` are for.
    pub unsafe fn before(
        &self,
        estate: *mut pg_sys::EState,
        rri: *mut pg_sys::ResultRelInfo,
        slots: &[*mut pg_sys::TupleTableSlot],
    ) -> Option<Vec<*mut pg_sys::TupleTableSlot>> {
        if !self.before {
            return None;
        }
        let kept = slots
            .iter()
            .copied()
            // SAFETY: see the function contract; a trigger may replace a slot's tuple.
            .filter(|&slot| unsafe { pg_sys::ExecBRInsertTriggers(estate, rri, slot) })
            .collect();
        Some(kept)
    }

    /// Queues the AFTER ROW triggers' events for `slots`, just written.
    ///
    /// # Safety
    /// As for `before`; the rows are in the queue.
    pub unsafe fn after(
        &self,
        estate: *mut pg_sys::EState,
        rri: *mut pg_sys::ResultRelInfo,
        slots: &[*mut pg_sys::TupleTableSlot],
    ) {
        for &slot in slots {
            // SAFETY: see the function contract; no index needs a recheck (none is deferred
            // here) and no transition table is captured.
            unsafe {
                pg_sys::ExecARInsertTriggers(
                    estate,
                    rri,
                    slot,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
    }

    /// Runs the queued AFTER ROW triggers and closes their query level, and what running them
    /// opened in `estate`.
    ///
    /// # Safety
    /// `estate` is the one the events were queued with, not yet freed.
    pub unsafe fn end(&self, estate: *mut pg_sys::EState) {
        if self.before || self.after {
            // SAFETY: see the function contract; the level `begin` opened.
            unsafe {
                pg_sys::AfterTriggerEndQuery(estate);
                pg_sys::ExecCloseResultRelations(estate);
            }
        }
    }
}
