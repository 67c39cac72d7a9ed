//! Writing queue rows the way COPY does: batched `heap_multi_insert` plus index entries, with
//! the column values computed here instead of by a planned INSERT. This is the hot path of every
//! write to a subscribed table, so it avoids SPI, planning and the executor.
//!
//! It bypasses the table's permissions on purpose — writers get no rights on the queue, so they
//! cannot forge events — and fills every column itself (the queue has no triggers, no CHECK
//! constraints and no defaults it would miss).

use std::ffi::CString;

use pg_webhook_core::payload::Operation;
use pgrx::pg_sys;

/// Rows per `heap_multi_insert` call, as COPY batches them. At most the event id sequence's
/// increment, since a batch takes its ids from one `nextval`.
const BATCH: usize = 1000;
const ID_BLOCK: i64 = 1024;

extern "C-unwind" {
    // commands/sequence.h; not in pgrx's generated bindings.
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}

/// Column positions in `webhook._event_queue`, found by name so the order of columns in the
/// table is free.
struct Columns {
    id: usize,
    txid: usize,
    subscription_id: usize,
    op: usize,
    table_schema: usize,
    table_name: usize,
    record: usize,
    old_record: usize,
    created_at: usize,
    attempts: usize,
    series_start: usize,
    next_attempt_at: usize,
    last_error: usize,
    /// Missing before 0.2.0: a new library captures into a not yet updated schema.
    ordered: Option<usize>,
    /// Missing before 0.3.0.
    payload_bytes: Option<usize>,
}

pub struct QueueWriter {
    rel: pg_sys::Relation,
    sequence: pg_sys::Oid,
    columns: Columns,
    natts: usize,
    estate: *mut pg_sys::EState,
    rri: *mut pg_sys::ResultRelInfo,
    /// The current batch; a prefix of `spare`.
    slots: Vec<*mut pg_sys::TupleTableSlot>,
    /// Every slot created so far, reused from batch to batch.
    spare: Vec<*mut pg_sys::TupleTableSlot>,
    batch_memory: pg_sys::MemoryContext,
    /// Where slots live: the trigger call's context, which outlives every batch.
    call_memory: pg_sys::MemoryContext,
    bulk: pg_sys::BulkInsertState,
    to_jsonb: pg_sys::FmgrInfo,
    /// Values that are the same for every row of the statement.
    subscription_id: pg_sys::Datum,
    ordered: pg_sys::Datum,
    op: pg_sys::Datum,
    table_schema: pg_sys::Datum,
    table_name: pg_sys::Datum,
    txid: pg_sys::Datum,
    created_at: pg_sys::Datum,
    command_id: pg_sys::CommandId,
    /// Next id to hand out and the end of the block it comes from.
    next_id: i64,
    id_block_end: i64,
}

fn text_datum(s: &str) -> pg_sys::Datum {
    // SAFETY: copies the bytes into a palloc'd text in the current memory context.
    unsafe {
        pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
            s.as_ptr().cast(),
            s.len() as i32,
        ))
    }
}

fn relation_oid(namespace: pg_sys::Oid, name: &str) -> Result<pg_sys::Oid, String> {
    let c = CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: syscache lookup with a valid C string.
    let oid = unsafe { pg_sys::get_relname_relid(c.as_ptr(), namespace) };
    if oid == pg_sys::Oid::INVALID {
        return Err(format!(
            "webhook.{name} does not exist; is pg_webhook installed?"
        ));
    }
    Ok(oid)
}

impl QueueWriter {
    /// Opens the queue for one statement's events.
    pub fn open(
        subscription: super::Subscription,
        op: Operation,
        schema: &str,
        table: &str,
    ) -> Result<QueueWriter, String> {
        // SAFETY: called inside a trigger, in a transaction; every pointer below comes from
        // Postgres and lives in the current (per-call) memory context or the relcache.
        unsafe {
            let namespace = pg_sys::get_namespace_oid(c"webhook".as_ptr(), false);
            let queue = relation_oid(namespace, "_event_queue")?;
            let sequence = relation_oid(namespace, "_event_id_seq")?;
            let rel = pg_sys::table_open(queue, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            let tupdesc = (*rel).rd_att;
            let natts = (*tupdesc).natts as usize;
            let attrs = (*tupdesc).attrs.as_slice(natts);
            let find = |name: &str| {
                attrs
                    .iter()
                    .position(|a| !a.attisdropped && pgrx::name_data_to_str(&a.attname) == name)
                    .ok_or_else(|| format!("webhook._event_queue has no column {name}"))
            };
            let columns = Columns {
                id: find("id")?,
                txid: find("txid")?,
                subscription_id: find("subscription_id")?,
                op: find("op")?,
                table_schema: find("table_schema")?,
                table_name: find("table_name")?,
                record: find("record")?,
                old_record: find("old_record")?,
                created_at: find("created_at")?,
                attempts: find("attempts")?,
                series_start: find("series_start")?,
                next_attempt_at: find("next_attempt_at")?,
                last_error: find("last_error")?,
                ordered: find("ordered").ok(),
                payload_bytes: find("payload_bytes").ok(),
            };
            let live = attrs.iter().filter(|a| !a.attisdropped).count();
            let expected = 13
                + usize::from(columns.ordered.is_some())
                + usize::from(columns.payload_bytes.is_some());
            if live != expected || (subscription.ordered && columns.ordered.is_none()) {
                pg_sys::table_close(rel, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
                return Err(format!(
                    "webhook._event_queue has {live} columns, not those of pg_webhook {}; run ALTER EXTENSION pg_webhook UPDATE",
                    env!("CARGO_PKG_VERSION")
                ));
            }

            let estate = pg_sys::CreateExecutorState();
            let rri = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
                .cast::<pg_sys::ResultRelInfo>();
            (*rri).type_ = pg_sys::NodeTag::T_ResultRelInfo;
            pg_sys::InitResultRelInfo(rri, rel, 1, std::ptr::null_mut(), 0);
            pg_sys::ExecOpenIndices(rri, false);

            let batch_memory = pg_sys::AllocSetContextCreateInternal(
                pg_sys::CurrentMemoryContext,
                c"pg_webhook capture".as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            );

            // to_jsonb learns its argument's type from the call expression; a record argument
            // makes it read each row's own type, so one lookup serves every table.
            let mut to_jsonb = pg_sys::FmgrInfo::default();
            pg_sys::fmgr_info(pg_sys::Oid::from(pg_sys::F_TO_JSONB), &mut to_jsonb);
            let arg = pg_sys::makeNullConst(pg_sys::RECORDOID, -1, pg_sys::Oid::INVALID);
            let args = pg_sys::lappend(std::ptr::null_mut(), arg.cast());
            to_jsonb.fn_expr = pg_sys::makeFuncExpr(
                pg_sys::Oid::from(pg_sys::F_TO_JSONB),
                pg_sys::JSONBOID,
                args,
                pg_sys::Oid::INVALID,
                pg_sys::Oid::INVALID,
                pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
            )
            .cast();

            let full_xid = pg_sys::GetTopFullTransactionId();
            Ok(QueueWriter {
                rel,
                sequence,
                columns,
                natts,
                estate,
                rri,
                slots: Vec::new(),
                spare: Vec::new(),
                batch_memory,
                call_memory: pg_sys::CurrentMemoryContext,
                bulk: std::ptr::null_mut(),
                to_jsonb,
                subscription_id: pg_sys::Datum::from(subscription.id),
                ordered: pg_sys::Datum::from(subscription.ordered),
                op: text_datum(op.as_sql()),
                table_schema: text_datum(schema),
                table_name: text_datum(table),
                txid: pg_sys::Datum::from(full_xid.value),
                created_at: pg_sys::Datum::from(pg_sys::GetCurrentTransactionStartTimestamp()),
                command_id: pg_sys::GetCurrentCommandId(true),
                next_id: 0,
                id_block_end: 0,
            })
        }
    }

    /// Queues one event per row of the transition tables (paired for UPDATE) and returns how
    /// many.
    ///
    /// # Safety
    /// `source` is the trigger's relation and the tuplestores are its transition tables.
    pub unsafe fn copy_rows(
        &mut self,
        source: pg_sys::Relation,
        new_rows: *mut pg_sys::Tuplestorestate,
        old_rows: *mut pg_sys::Tuplestorestate,
    ) -> u64 {
        // SAFETY: see the function contract; slots are created for the source's descriptor.
        unsafe {
            let read_slot = |store: *mut pg_sys::Tuplestorestate| {
                if store.is_null() {
                    return std::ptr::null_mut();
                }
                pg_sys::tuplestore_rescan(store);
                pg_sys::MakeSingleTupleTableSlot((*source).rd_att, &pg_sys::TTSOpsMinimalTuple)
            };
            let new_slot = read_slot(new_rows);
            let old_slot = read_slot(old_rows);
            let mut queued = 0u64;
            let old_context = pg_sys::MemoryContextSwitchTo(self.batch_memory);
            loop {
                let record = self.next_json(new_rows, new_slot);
                let old_record = self.next_json(old_rows, old_slot);
                if record.is_none() && old_record.is_none() {
                    break;
                }
                self.add(record, old_record);
                queued += 1;
                if self.slots.len() == BATCH {
                    // A spilled tuplestore reads rows into the current (batch) context, and the
                    // read slots own them: let go before the batch memory is reset.
                    clear_read_slots(new_slot, old_slot);
                    self.flush();
                }
            }
            clear_read_slots(new_slot, old_slot);
            self.flush();
            pg_sys::MemoryContextSwitchTo(old_context);
            for slot in [new_slot, old_slot] {
                if !slot.is_null() {
                    pg_sys::ExecDropSingleTupleTableSlot(slot);
                }
            }
            queued
        }
    }

    /// Queues one event from row images computed elsewhere (a shaped subscription's query).
    /// Datums must stay valid until `finish_batch` (or the next automatic flush) returns.
    ///
    /// # Safety
    /// The datums are jsonb values (or absent).
    pub unsafe fn add_json(
        &mut self,
        record: Option<pg_sys::Datum>,
        old_record: Option<pg_sys::Datum>,
    ) {
        // SAFETY: as for `add`.
        unsafe {
            let old_context = pg_sys::MemoryContextSwitchTo(self.batch_memory);
            self.add(record, old_record);
            if self.slots.len() == BATCH {
                self.flush();
            }
            pg_sys::MemoryContextSwitchTo(old_context);
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

    /// Queues a single event without row images (TRUNCATE).
    ///
    /// # Safety
    /// The writer must be open.
    pub unsafe fn add_statement_event(&mut self) -> u64 {
        // SAFETY: as for `copy_rows`.
        unsafe {
            let old_context = pg_sys::MemoryContextSwitchTo(self.batch_memory);
            self.add(None, None);
            self.flush();
            pg_sys::MemoryContextSwitchTo(old_context);
        }
        1
    }

    /// The next row of `store` as jsonb, or `None` at its end (or when there is no store).
    unsafe fn next_json(
        &mut self,
        store: *mut pg_sys::Tuplestorestate,
        slot: *mut pg_sys::TupleTableSlot,
    ) -> Option<pg_sys::Datum> {
        if store.is_null() {
            return None;
        }
        // SAFETY: the slot matches the store's tuple descriptor.
        unsafe {
            if !pg_sys::tuplestore_gettupleslot(store, true, false, slot) {
                return None;
            }
            let row = pg_sys::ExecFetchSlotHeapTupleDatum(slot);
            Some(pg_sys::FunctionCall1Coll(
                &mut self.to_jsonb,
                pg_sys::Oid::INVALID,
                row,
            ))
        }
    }

    unsafe fn add(&mut self, record: Option<pg_sys::Datum>, old_record: Option<pg_sys::Datum>) {
        // SAFETY: the slot is virtual over the queue's descriptor; every column is set.
        unsafe {
            let slot = self.take_slot();
            let values = std::slice::from_raw_parts_mut((*slot).tts_values, self.natts);
            let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, self.natts);
            nulls.fill(true);
            let c = &self.columns;
            let mut set = |i: usize, d: pg_sys::Datum| {
                values[i] = d;
                nulls[i] = false;
            };
            if self.next_id == self.id_block_end {
                self.next_id = nextval_internal(self.sequence, false);
                self.id_block_end = self.next_id + ID_BLOCK;
            }
            set(c.id, pg_sys::Datum::from(self.next_id));
            self.next_id += 1;
            set(c.txid, self.txid);
            set(c.subscription_id, self.subscription_id);
            set(c.op, self.op);
            set(c.table_schema, self.table_schema);
            set(c.table_name, self.table_name);
            let mut bytes = 0usize;
            if let Some(r) = record {
                set(c.record, r);
                bytes += pg_sys::toast_raw_datum_size(r);
            }
            if let Some(r) = old_record {
                set(c.old_record, r);
                bytes += pg_sys::toast_raw_datum_size(r);
            }
            if let Some(i) = c.payload_bytes {
                set(i, pg_sys::Datum::from(bytes.min(i32::MAX as usize) as i32));
            }
            set(c.created_at, self.created_at);
            set(c.attempts, pg_sys::Datum::from(0i32));
            set(c.series_start, pg_sys::Datum::from(0i32));
            if let Some(i) = c.ordered {
                set(i, self.ordered);
            }
            let _ = (c.next_attempt_at, c.last_error); // stay NULL
            pg_sys::ExecStoreVirtualTuple(slot);
            self.slots.push(slot);
        }
    }

    /// A cleared virtual slot over the queue's descriptor, reused across batches.
    unsafe fn take_slot(&mut self) -> *mut pg_sys::TupleTableSlot {
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
            let slot = pg_sys::MakeSingleTupleTableSlot((*self.rel).rd_att, &pg_sys::TTSOpsVirtual);
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
        unsafe {
            if self.slots.len() > 1 && self.bulk.is_null() {
                // Outlives the batch context, like the slots.
                let batch = pg_sys::MemoryContextSwitchTo(self.call_memory);
                self.bulk = pg_sys::GetBulkInsertState();
                pg_sys::MemoryContextSwitchTo(batch);
            }
            pg_sys::heap_multi_insert(
                self.rel,
                self.slots.as_mut_ptr(),
                self.slots.len() as i32,
                self.command_id,
                0,
                self.bulk,
            );
            let econtext = pg_sys::MakePerTupleExprContext(self.estate);
            for &slot in &self.slots {
                (*econtext).ecxt_scantuple = slot;
                pg_sys::ExecInsertIndexTuples(
                    self.rri,
                    slot,
                    self.estate,
                    false,
                    false,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
                pg_sys::MemoryContextReset((*econtext).ecxt_per_tuple_memory);
            }
            for &slot in &self.slots {
                clear_slot(slot);
            }
            self.slots.clear();
            pg_sys::MemoryContextReset(self.batch_memory);
        }
    }

    /// Releases everything the writer holds.
    pub fn close(self) {
        // SAFETY: each resource was acquired in `open`/`take_slot` and is released once.
        unsafe {
            for slot in &self.spare {
                pg_sys::ExecDropSingleTupleTableSlot(*slot);
            }
            if !self.bulk.is_null() {
                pg_sys::FreeBulkInsertState(self.bulk);
            }
            pg_sys::ExecCloseIndices(self.rri);
            pg_sys::FreeExecutorState(self.estate);
            pg_sys::MemoryContextDelete(self.batch_memory);
            pg_sys::table_close(self.rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
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

/// `ExecClearTuple`, which is an inline function in the headers.
unsafe fn clear_slot(slot: *mut pg_sys::TupleTableSlot) {
    // SAFETY: every slot has ops with a clear callback.
    unsafe {
        if let Some(clear) = (*(*slot).tts_ops).clear {
            clear(slot);
        }
    }
}
