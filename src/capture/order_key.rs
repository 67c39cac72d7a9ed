//! Per-key order at capture time: each changed row's order key, and the locks that make id
//! order commit order for each key.
//!
//! Writers of the same key must commit in the order their events' ids say. Before a statement's
//! events take their ids, it locks the bucket of every key it writes (a transaction-scoped
//! advisory lock per bucket, in bucket order), so a second writer of a key waits until the
//! first commits or aborts and then takes larger ids (the id sequence is shared and never
//! cached: see `QueueWriter`). Writers of different keys wait for each other only when their
//! keys share one of the `LOCK_BUCKETS` buckets.

use std::ffi::CStr;

use pg_webhook_core::order_key::{bucket, hash};
use pgrx::pg_sys;

/// Key of the order-key locks (`pg_locks`: locktype advisory, classid the subscription id,
/// objid the bucket, objsubid 4). SQL's advisory lock functions make objsubid 1 or 2 only, so
/// no session can take one and hold up the writers.
const ORDER_KEY_SPACE: u16 = 4;

/// What stands in the key for a column that is no longer there (dropped or renamed since the
/// subscription was made): every row gets the same, so the key's other columns (or, with none
/// left, the whole subscription) still order its events, and writes never fail over it.
pub const GONE: &str = "<gone>";

/// The order key columns of the table a trigger fired on, ready to read from its rows.
pub struct KeyColumns {
    /// Each column's number and output function; `None` for one that is gone.
    columns: Vec<Option<(i32, pg_sys::FmgrInfo)>>,
}

/// Where each of `names` is in `tupdesc` (a partition may number its columns differently from
/// the subscribed table, so by name), `None` for one that is gone.
///
/// # Safety
/// `tupdesc` is a valid tuple descriptor.
pub unsafe fn positions(
    tupdesc: pg_sys::TupleDesc,
    names: &[String],
) -> Vec<Option<(usize, pg_sys::Oid)>> {
    // SAFETY: see the function contract.
    let attrs = unsafe { (*tupdesc).attrs.as_slice((*tupdesc).natts as usize) };
    names
        .iter()
        .map(|name| {
            attrs
                .iter()
                .enumerate()
                .find(|(_, a)| !a.attisdropped && pgrx::name_data_to_str(&a.attname) == name)
                .map(|(i, a)| (i, a.atttypid))
        })
        .collect()
}

impl KeyColumns {
    /// The key columns `names` of the rows described by `tupdesc`.
    ///
    /// # Safety
    /// `tupdesc` is the descriptor of the rows the keys are read from.
    pub unsafe fn resolve(tupdesc: pg_sys::TupleDesc, names: &[String]) -> KeyColumns {
        // SAFETY: see the function contract.
        let found = unsafe { positions(tupdesc, names) };
        let columns = found
            .into_iter()
            .map(|position| {
                position.map(|(i, typid)| {
                    // SAFETY: catalog lookups for a valid type; the FmgrInfo lives in this struct.
                    (i as i32 + 1, unsafe {
                        super::row_json::output_function(typid)
                    })
                })
            })
            .collect();
        KeyColumns { columns }
    }

    /// The key hash of the row in `slot`.
    ///
    /// # Safety
    /// `slot` holds a row of the descriptor given to `resolve`.
    pub unsafe fn hash_of(&mut self, slot: *mut pg_sys::TupleTableSlot) -> i64 {
        let mut text = String::new();
        for (i, column) in self.columns.iter_mut().enumerate() {
            if i > 0 {
                text.push(',');
            }
            let Some((attnum, output)) = column else {
                text.push_str(GONE);
                continue;
            };
            let mut null = false;
            // SAFETY: a valid attribute number of the slot's descriptor; the strings are
            // palloc'd in the current (per-row) context and copied out.
            unsafe {
                let datum = pg_sys::slot_getattr(slot, *attnum, &mut null);
                if null {
                    text.push_str("NULL");
                    continue;
                }
                let shown = pg_sys::OutputFunctionCall(output, datum);
                let quoted = pg_sys::quote_literal_cstr(shown);
                text.push_str(&CStr::from_ptr(quoted).to_string_lossy());
            }
        }
        hash(&text)
    }
}

/// The key hash of every row of a transition table, in the order it is read.
///
/// # Safety
/// `source` is the trigger's relation and `store` one of its transition tables.
pub unsafe fn row_keys(
    source: pg_sys::Relation,
    store: *mut pg_sys::Tuplestorestate,
    key: &mut KeyColumns,
) -> Vec<i64> {
    let mut keys = Vec::new();
    if store.is_null() {
        return keys;
    }
    // SAFETY: see the function contract; per-row allocations go to a context reset each row.
    unsafe {
        let memory = pg_sys::AllocSetContextCreateInternal(
            pg_sys::CurrentMemoryContext,
            c"pg_webhook order keys".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        let slot = pg_sys::MakeSingleTupleTableSlot((*source).rd_att, &pg_sys::TTSOpsMinimalTuple);
        pg_sys::tuplestore_rescan(store);
        let outer = pg_sys::MemoryContextSwitchTo(memory);
        while pg_sys::tuplestore_gettupleslot(store, true, false, slot) {
            keys.push(key.hash_of(slot));
            if let Some(clear) = (*(*slot).tts_ops).clear {
                clear(slot);
            }
            pg_sys::MemoryContextReset(memory);
        }
        pg_sys::MemoryContextSwitchTo(outer);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::MemoryContextDelete(memory);
        pg_sys::tuplestore_rescan(store);
    }
    keys
}

/// Locks the buckets of `keys` for subscription `id`, in bucket order, until the end of the
/// transaction: waits for the other writers of these keys to commit or abort.
pub fn lock_keys(subscription_id: i32, keys: &[i64]) {
    let mut buckets: Vec<u32> = keys.iter().map(|k| bucket(*k)).collect();
    buckets.sort_unstable();
    buckets.dedup();
    for b in buckets {
        super::lock_exclusive(subscription_id as u32, b, ORDER_KEY_SPACE);
    }
}
