//! Where a statement's events come from: the transition tables (each row as `to_jsonb` renders
//! it, see `row_json`), a shaped subscription's query, or nothing (TRUNCATE).

use pgrx::pg_sys;

use pg_webhook_core::payload::LARGEST_READABLE_IMAGES;

use super::{clear_slot, QueueWriter};
use crate::capture::row_json::{self, Image, RowJson};
use crate::unguarded;

impl QueueWriter {
    /// Queues one event per row of the transition tables (paired for UPDATE) and returns how
    /// many; a value that cannot be rendered fails naming `subscription` (see
    /// `RowJson::guarded`).
    ///
    /// # Safety
    /// `source` is the trigger's relation and the tuplestores are its transition tables.
    pub unsafe fn copy_rows(
        &mut self,
        source: pg_sys::Relation,
        new_rows: *mut pg_sys::Tuplestorestate,
        old_rows: *mut pg_sys::Tuplestorestate,
        subscription: &str,
    ) -> u64 {
        // SAFETY: see the function contract; slots are created for the source's descriptor, in
        // a region that owns nothing.
        unsafe {
            let read_slot = |store: *mut pg_sys::Tuplestorestate| {
                if store.is_null() {
                    return std::ptr::null_mut();
                }
                unguarded::tuplestore_rescan(store);
                unguarded::MakeSingleTupleTableSlot((*source).rd_att, &pg_sys::TTSOpsMinimalTuple)
            };
            let (new_slot, old_slot) =
                unguarded::region(|_| (read_slot(new_rows), read_slot(old_rows)));
            let mut json = row_json::take(source);
            let owner = (*(*source).rd_rel).relowner;
            let mut queued = 0u64;
            let old_context = pg_sys::MemoryContextSwitchTo(self.batch_memory);
            loop {
                let new = (new_rows, new_slot);
                let record =
                    next_json(new, &mut json, owner, subscription, LARGEST_READABLE_IMAGES);
                // The old image gets what the new one left of the most any worker reads.
                let room = LARGEST_READABLE_IMAGES.saturating_sub(row_json::text_bytes(record));
                let old_record =
                    next_json((old_rows, old_slot), &mut json, owner, subscription, room);
                if record.is_none() && old_record.is_none() {
                    break;
                }
                let (record, old_record) = row_json::within_limit(record, old_record);
                self.add(record, old_record);
                queued += 1;
                if self.full() {
                    // A spilled tuplestore reads rows into the current (batch) context, and the
                    // read slots own them: let go before the batch memory is reset.
                    clear_read_slots(new_slot, old_slot);
                    self.flush();
                }
            }
            clear_read_slots(new_slot, old_slot);
            self.flush();
            pg_sys::MemoryContextSwitchTo(old_context);
            unguarded::region(|_| {
                for slot in [new_slot, old_slot] {
                    if !slot.is_null() {
                        unguarded::ExecDropSingleTupleTableSlot(slot);
                    }
                }
            });
            row_json::put_back(source, json);
            queued
        }
    }

    /// Queues one event from row images computed elsewhere (a shaped subscription's query).
    /// Datums must stay valid until `finish_batch` (or the next automatic flush) returns.
    ///
    /// # Safety
    /// The images' datums are jsonb values.
    pub unsafe fn add_json(&mut self, record: Option<Image>, old_record: Option<Image>) {
        // SAFETY: as for `add`.
        unsafe {
            let old_context = pg_sys::MemoryContextSwitchTo(self.batch_memory);
            self.add(record, old_record);
            if self.full() {
                self.flush();
            }
            pg_sys::MemoryContextSwitchTo(old_context);
        }
    }

    /// Runs `f` (which renders the images of the next event to be added) in the memory of the
    /// current batch, freed once it is written.
    ///
    /// # Safety
    /// What `f` makes there is not used after the batch is written (or after `add_json` wrote
    /// it, as it may).
    pub unsafe fn in_batch_memory<T>(&mut self, f: impl FnOnce() -> T) -> T {
        // SAFETY: the batch context lives as long as the writer; switched back after `f` (an
        // ERROR in `f` ends the transaction, whose abort resets the current context).
        unsafe {
            let old_context = pg_sys::MemoryContextSwitchTo(self.batch_memory);
            let result = f();
            pg_sys::MemoryContextSwitchTo(old_context);
            result
        }
    }

    /// Writes whatever `add_json` left in the current batch.
    ///
    /// # Safety
    /// The writer must be open.
    pub unsafe fn finish_batch(&mut self) {
        // SAFETY: as for `flush`.
        unsafe { self.flush() }
    }

    /// Queues a single event for the statement (TRUNCATE), with `record` as given and no
    /// `old_record`.
    ///
    /// # Safety
    /// The writer must be open; `record` is a jsonb value (or absent).
    pub unsafe fn add_statement_event(&mut self, record: Option<pg_sys::Datum>) -> u64 {
        // SAFETY: as for `copy_rows`.
        unsafe {
            let old_context = pg_sys::MemoryContextSwitchTo(self.batch_memory);
            self.add(record.map(|r| Image::Json(r, None)), None);
            self.flush();
            pg_sys::MemoryContextSwitchTo(old_context);
        }
        1
    }
}

/// The next row of `store` as jsonb, rendered as the writer of a table owned by `owner` (see
/// `RowJson::guarded_as_writer`) within `room` bytes, or `None` at its end (or when there is
/// no store).
unsafe fn next_json(
    (store, slot): (*mut pg_sys::Tuplestorestate, *mut pg_sys::TupleTableSlot),
    json: &mut RowJson,
    owner: pg_sys::Oid,
    subscription: &str,
    room: usize,
) -> Option<Image> {
    if store.is_null() {
        return None;
    }
    // SAFETY: the slot matches the store's tuple descriptor, which `json` was made for; the
    // region owns nothing that needs dropping.
    unsafe {
        json.guarded_as_writer(owner, Some(subscription), |r, json| {
            unguarded::tuplestore_gettupleslot(store, true, false, slot)
                .then(|| json.row_within(r, slot, room))
        })
    }
}

unsafe fn clear_read_slots(a: *mut pg_sys::TupleTableSlot, b: *mut pg_sys::TupleTableSlot) {
    for slot in [a, b] {
        if !slot.is_null() {
            // SAFETY: a live slot made in `copy_rows`.
            unsafe { clear_slot(slot) };
        }
    }
}
