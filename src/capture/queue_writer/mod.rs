//! Writing queue rows the way COPY does: batched `heap_multi_insert` plus index entries, with
//! the column values computed here instead of by a planned INSERT. This is the hot path of every
//! write to a subscribed table, so it avoids SPI, planning and the executor.
//!
//! It bypasses the table's permissions on purpose — writers get no rights on the queue, so they
//! cannot forge events — and fills every column itself (the queue has no CHECK constraints and
//! no defaults it would miss). Row triggers someone puts on the queue fire as they would for a
//! nested INSERT: pg_repack's, which logs the rows written while it copies the table, and
//! without which those events would be gone after its swap (`triggers`).

use pg_webhook_core::payload::Operation;
use pgrx::pg_sys;

use super::row_json::Image;
use super::text_size::jsonb_growth;
pub(super) use crate::tuples::clear_slot;
use crate::tuples::insert_index_entries;
use crate::unguarded;

mod columns;
mod ids;
mod indexes;
mod layout;
mod moves;
mod sources;
mod triggers;

pub use layout::forget_relation;

use columns::Columns;
use ids::{EventIds, IdsExhausted};

/// Rows per `heap_multi_insert` call, as COPY batches them. At most the event id sequence's
/// increment, since a batch takes its ids from one `nextval`.
const BATCH: usize = 1000;
/// The bytes of row images a batch holds before it is written, however few its rows: a batch
/// of a thousand large rows held gigabytes (a statement's 400 rows of 900 kB took the writer
/// to 1.4 GB).
const BATCH_BYTES: usize = 16 << 20;

pub struct QueueWriter {
    rel: pg_sys::Relation,
    columns: Columns,
    natts: usize,
    estate: *mut pg_sys::EState,
    rri: *mut pg_sys::ResultRelInfo,
    /// The current batch; a prefix of `spare`.
    slots: Vec<*mut pg_sys::TupleTableSlot>,
    /// The bytes of the current batch's row images.
    held: usize,
    /// Every slot created so far, reused from batch to batch.
    spare: Vec<*mut pg_sys::TupleTableSlot>,
    /// The queue's descriptor, copied without a reference count for every slot but the first
    /// (null until a second is needed): a slot over a counted descriptor registers it with the
    /// resource owner, and a batch's thousand registrations of one pointer made every later
    /// registration (a row type pinned per row) probe the owner's hash table past all of them.
    /// The first slot is over the relation's own descriptor: one registration, where copying
    /// the descriptor cost a single-row write more than any other step of opening the queue.
    slot_desc: pg_sys::TupleDesc,
    batch_memory: pg_sys::MemoryContext,
    /// Where slots live: the trigger call's context, which outlives every batch.
    call_memory: pg_sys::MemoryContext,
    bulk: pg_sys::BulkInsertState,
    constants: Constants,
    ids: EventIds,
    /// The order key of each event, in the order they are added (ordered subscriptions; those
    /// ordered as a whole have none: their key is 0).
    order_keys: Vec<i64>,
    next_key: usize,
    /// The queue's row triggers, if it has any.
    triggers: triggers::RowTriggers,
}

/// `s` as a text datum in the current memory context.
///
unsafe fn text_datum(_: &unguarded::Region, s: &str) -> pg_sys::Datum {
    // SAFETY: copies the bytes into a palloc'd text.
    unsafe {
        pg_sys::Datum::from(unguarded::cstring_to_text_with_len(
            s.as_ptr().cast(),
            s.len() as i32,
        ))
    }
}

/// Values that are the same for every row of the statement.
struct Constants {
    subscription_id: pg_sys::Datum,
    ordered: pg_sys::Datum,
    op: pg_sys::Datum,
    table_schema: pg_sys::Datum,
    table_name: pg_sys::Datum,
    txid: pg_sys::Datum,
    /// The WAL timeline this transaction runs on (see the queue's `timeline`).
    timeline: pg_sys::Datum,
    created_at: pg_sys::Datum,
    command_id: pg_sys::CommandId,
}

impl QueueWriter {
    /// Opens the queue for one statement's events.
    pub fn open(
        subscription: super::Subscription,
        op: Operation,
        schema: &str,
        table: &str,
    ) -> Result<QueueWriter, String> {
        // SAFETY: called inside a trigger, in a transaction.
        let (rel, layout) = unsafe { layout::open_queue(subscription.ordered)? };
        // SAFETY: the open queue's trigger descriptor (or null).
        let rewritten = unsafe {
            let desc = (*rel).trigdesc;
            !desc.is_null() && (*desc).trig_insert_before_row
        };
        let wanted = indexes::wanted(&layout.indexes, subscription.ordered, rewritten);
        // SAFETY: called inside a trigger, in a transaction; every pointer below comes from
        // Postgres and lives in the current (per-call) memory context or the relcache. One
        // region: it only borrows `wanted` and the names.
        unsafe {
            let natts = (*(*rel).rd_att).natts as usize;
            let (estate, rri, batch_memory, constants) = unguarded::region(|r| {
                let estate = unguarded::CreateExecutorState();
                let rri = unguarded::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
                    .cast::<pg_sys::ResultRelInfo>();
                (*rri).type_ = pg_sys::NodeTag::T_ResultRelInfo;
                unguarded::InitResultRelInfo(rri, rel, 1, std::ptr::null_mut(), 0);
                indexes::open(r, rri, &wanted);
                let batch_memory = unguarded::AllocSetContextCreateInternal(
                    pg_sys::CurrentMemoryContext,
                    c"pg_webhook capture".as_ptr(),
                    pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
                );
                let constants = Constants {
                    subscription_id: pg_sys::Datum::from(subscription.id),
                    ordered: pg_sys::Datum::from(subscription.ordered),
                    op: text_datum(r, op.as_sql()),
                    table_schema: text_datum(r, schema),
                    table_name: text_datum(r, table),
                    txid: pg_sys::Datum::from(unguarded::GetTopFullTransactionId().value),
                    // A timeline is a u32 that counts up from 1; stored as an integer.
                    timeline: pg_sys::Datum::from(unguarded::GetWALInsertionTimeLine() as i32),
                    created_at: pg_sys::Datum::from(
                        unguarded::GetCurrentTransactionStartTimestamp(),
                    ),
                    command_id: unguarded::GetCurrentCommandId(true),
                };
                (estate, rri, batch_memory, constants)
            });
            let triggers = triggers::RowTriggers::begin(rri);
            Ok(QueueWriter {
                rel,
                columns: layout.columns,
                natts,
                estate,
                rri,
                slots: Vec::new(),
                held: 0,
                spare: Vec::new(),
                slot_desc: std::ptr::null_mut(),
                batch_memory,
                call_memory: pg_sys::CurrentMemoryContext,
                bulk: std::ptr::null_mut(),
                constants,
                ids: EventIds::new(layout.sequence),
                order_keys: Vec::new(),
                next_key: 0,
                triggers,
            })
        }
    }

    pub(super) unsafe fn add(&mut self, record: Option<Image>, old_record: Option<Image>) {
        // SAFETY: the slot is virtual over the queue's descriptor; every column is set. One
        // region: nothing in it needs dropping, and the Vec pushes (spare slots, the batch) do
        // not panic (their capacity stays far below the limit).
        let added = unsafe { unguarded::region(|r| self.add_in_region(r, record, old_record)) };
        if let Err(exhausted) = added {
            exhausted.raise();
        }
    }

    /// `add`, inside a region.
    unsafe fn add_in_region(
        &mut self,
        r: &unguarded::Region,
        record: Option<Image>,
        old_record: Option<Image>,
    ) -> Result<(), IdsExhausted> {
        // SAFETY: see `add`.
        unsafe {
            let id = self.ids.take(r)?;
            let slot = self.take_slot(r);
            let values = std::slice::from_raw_parts_mut((*slot).tts_values, self.natts);
            let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, self.natts);
            nulls.fill(true);
            let c = &self.columns;
            let mut set = |i: usize, d: pg_sys::Datum| {
                values[i] = d;
                nulls[i] = false;
            };
            set(c.id, pg_sys::Datum::from(id));
            set(c.txid, self.constants.txid);
            set(c.subscription_id, self.constants.subscription_id);
            set(c.op, self.constants.op);
            set(c.table_schema, self.constants.table_schema);
            set(c.table_name, self.constants.table_name);
            // An image counts as its size as text, which is what a worker reads (numbers written
            // out: capture/text_size.rs). An omitted one leaves its column NULL and counts its
            // size, over any worker's limit: the event dies unread, with the reason.
            let mut bytes = 0usize;
            for (column, image) in [(c.record, record), (c.old_record, old_record)] {
                match image {
                    Some(Image::Json(datum, growth)) => {
                        set(column, datum);
                        let held = unguarded::toast_raw_datum_size(datum);
                        self.held = self.held.saturating_add(held);
                        let text =
                            held.saturating_add(growth.unwrap_or_else(|| jsonb_growth(r, datum)));
                        bytes = bytes.saturating_add(text);
                    }
                    Some(Image::Omitted(size)) => bytes = bytes.saturating_add(size),
                    None => {}
                }
            }
            if let Some(i) = c.payload_bytes {
                set(i, pg_sys::Datum::from(bytes.min(i32::MAX as usize) as i32));
            }
            set(c.created_at, self.constants.created_at);
            for i in [c.timeline, c.tx_timeline].into_iter().flatten() {
                set(i, self.constants.timeline);
            }
            set(c.attempts, pg_sys::Datum::from(0i32));
            set(c.series_start, pg_sys::Datum::from(0i32));
            if let Some(i) = c.ordered {
                set(i, self.constants.ordered);
            }
            if let (Some(i), true) = (c.order_key, self.constants.ordered.value() != 0) {
                let key = self.order_keys.get(self.next_key).copied().unwrap_or(0);
                self.next_key += 1;
                set(i, pg_sys::Datum::from(key));
            }
            // next_attempt_at (new: due now) and last_error stay NULL.
            unguarded::ExecStoreVirtualTuple(slot);
            self.slots.push(slot);
            Ok(())
        }
    }

    /// The first and last id this writer handed out, if any.
    pub fn ids_taken(&self) -> Option<(i64, i64)> {
        self.ids.taken()
    }

    /// A cleared virtual slot over the queue's descriptor, reused across batches.
    unsafe fn take_slot(&mut self, _: &unguarded::Region) -> *mut pg_sys::TupleTableSlot {
        // SAFETY: slots are created once per writer and cleared before reuse.
        unsafe {
            let index = self.slots.len();
            if index < self.spare.len() {
                let slot = self.spare[index];
                clear_slot(slot);
                return slot;
            }
            // Not in the batch context: that is reset after every batch.
            let batch = pg_sys::MemoryContextSwitchTo(self.call_memory);
            let desc = if self.spare.is_empty() {
                (*self.rel).rd_att
            } else {
                if self.slot_desc.is_null() {
                    self.slot_desc = unguarded::CreateTupleDescCopy((*self.rel).rd_att);
                }
                self.slot_desc
            };
            let slot = unguarded::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsVirtual);
            pg_sys::MemoryContextSwitchTo(batch);
            self.spare.push(slot);
            slot
        }
    }

    /// Inserts the batch and its index entries, then frees the batch's memory.
    unsafe fn flush(&mut self) {
        if self.slots.is_empty() {
            return;
        }
        // SAFETY: slots hold complete virtual tuples for this relation.
        let kept = unsafe { self.triggers.before(self.estate, self.rri, &self.slots) };
        let after = self.triggers.after;
        // SAFETY: slots hold complete virtual tuples for this relation. One region: it owns
        // nothing that needs dropping.
        unsafe {
            unguarded::region(|r| {
                // The rows the queue's BEFORE triggers let through: all, when it has none.
                let batch = kept.as_deref().unwrap_or(&self.slots);
                if batch.len() > 1 && self.bulk.is_null() {
                    // Outlives the batch context, like the slots.
                    let context = pg_sys::MemoryContextSwitchTo(self.call_memory);
                    self.bulk = unguarded::GetBulkInsertState();
                    pg_sys::MemoryContextSwitchTo(context);
                }
                if !batch.is_empty() {
                    unguarded::heap_multi_insert(
                        self.rel,
                        batch.as_ptr().cast_mut(),
                        batch.len() as i32,
                        self.constants.command_id,
                        0,
                        self.bulk,
                    );
                }
                for &slot in batch {
                    insert_index_entries(r, self.rri, slot, self.estate);
                }
                if !after {
                    self.release_batch(r);
                }
            });
            if after {
                let batch = kept.as_deref().unwrap_or(&self.slots);
                self.triggers.after(self.estate, self.rri, batch);
                unguarded::region(|r| self.release_batch(r));
            }
            self.slots.clear();
            self.held = 0;
        }
    }

    /// Whether the current batch is to be written before anything more is added.
    fn full(&self) -> bool {
        self.slots.len() == BATCH || self.held >= BATCH_BYTES
    }

    /// Clears the batch's slots and frees its memory.
    unsafe fn release_batch(&self, _: &unguarded::Region) {
        // SAFETY: the batch's slots are live, and nothing of the batch is needed any more.
        unsafe {
            for &slot in &self.slots {
                clear_slot(slot);
            }
            unguarded::MemoryContextReset(self.batch_memory);
        }
    }

    /// The order key of each event to be added, in order.
    pub fn set_order_keys(&mut self, keys: Vec<i64>) {
        self.order_keys = keys;
        self.next_key = 0;
    }

    /// The order key of the next event to be added, after those given so far.
    pub fn push_order_key(&mut self, key: i64) {
        self.order_keys.push(key);
    }

    /// Releases everything the writer holds.
    pub fn close(self) {
        // SAFETY: the executor state the triggers were queued in, still open.
        unsafe { self.triggers.end(self.estate) };
        // SAFETY: each resource was acquired in `open`/`take_slot` and is released once. One
        // region: it only borrows the writer, dropped after it.
        unsafe {
            unguarded::region(|_| {
                for slot in &self.spare {
                    unguarded::ExecDropSingleTupleTableSlot(*slot);
                }
                if !self.slot_desc.is_null() {
                    unguarded::FreeTupleDesc(self.slot_desc);
                }
                if !self.bulk.is_null() {
                    unguarded::FreeBulkInsertState(self.bulk);
                }
                unguarded::ExecCloseIndices(self.rri);
                unguarded::FreeExecutorState(self.estate);
                unguarded::MemoryContextDelete(self.batch_memory);
                unguarded::table_close(self.rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            });
        }
    }
}
