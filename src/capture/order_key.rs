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

use pg_webhook_core::order_key::{bucket, hash, key_hash, KeyPart};
use pgrx::pg_sys;
use pgrx::spi::{SpiResult, SpiTupleTable};

/// Key of the order-key locks (`pg_locks`: locktype advisory, classid the subscription id,
/// objid the bucket, objsubid 4). SQL's advisory lock functions make objsubid 1 or 2 only, so
/// no session can take one and hold up the writers.
const ORDER_KEY_SPACE: u16 = 4;

/// How one key column's values are hashed: with its type's hash function (support function 1
/// of its default hash operator class, under the column's collation), or, for a type without
/// one, as its output text under fixed output settings.
///
/// Function 1, not the extended hash (function 2): every hash operator class has the first,
/// the second is optional and can be added later (citext 1.6 added it): a key hashed by its
/// output text, or by one function in one session and by another in a session started after
/// `ALTER EXTENSION ... UPDATE`, no longer waited behind its own events.
enum Hasher {
    Typed {
        function: pg_sys::FmgrInfo,
        collation: pg_sys::Oid,
    },
    Text(pg_sys::FmgrInfo),
}

impl Hasher {
    /// # Safety
    /// `typid` is an existing type; the function lookups live in the current memory context.
    unsafe fn for_type(typid: pg_sys::Oid, collation: pg_sys::Oid) -> Hasher {
        // SAFETY: see the function contract.
        unsafe {
            let entry = pg_sys::lookup_type_cache(typid, pg_sys::TYPECACHE_HASH_PROC as i32);
            let proc = (*entry).hash_proc;
            if proc == pg_sys::Oid::INVALID {
                return Hasher::Text(super::row_json::output_function(typid));
            }
            let mut function = pg_sys::FmgrInfo::default();
            pg_sys::fmgr_info(proc, &mut function);
            Hasher::Typed {
                function,
                collation,
            }
        }
    }

    /// # Safety
    /// `datum` is a non-null value of the type the hasher was made for.
    unsafe fn part(&mut self, datum: pg_sys::Datum) -> KeyPart {
        // SAFETY: see the function contract; allocations go to the current context.
        unsafe {
            match self {
                Hasher::Typed {
                    function,
                    collation,
                } => KeyPart::Value(u64::from(
                    pg_sys::FunctionCall1Coll(function, *collation, datum).value() as u32,
                )),
                Hasher::Text(output) => {
                    let shown = pg_sys::OutputFunctionCall(output, datum);
                    KeyPart::Value(hash(&CStr::from_ptr(shown).to_string_lossy()) as u64)
                }
            }
        }
    }
}

/// The hashers of a key's columns, `None` for one that is gone.
pub struct KeyHashers(Vec<Option<Hasher>>);

impl KeyHashers {
    /// For columns of these (type, collation)s, `None` for one that is gone.
    ///
    /// # Safety
    /// Every type exists; the function lookups live in the current memory context.
    pub unsafe fn new(columns: &[Option<(pg_sys::Oid, pg_sys::Oid)>]) -> KeyHashers {
        KeyHashers(
            columns
                .iter()
                // SAFETY: see the function contract.
                .map(|c| c.map(|(typid, collation)| unsafe { Hasher::for_type(typid, collation) }))
                .collect(),
        )
    }

    /// The key hash of one row, given the values of the key's columns that are there, in
    /// order (`None`: NULL).
    ///
    /// # Safety
    /// Each value is of its column's type.
    pub unsafe fn hash(&mut self, mut values: impl Iterator<Item = Option<pg_sys::Datum>>) -> i64 {
        let by_text = self.0.iter().any(|h| matches!(h, Some(Hasher::Text(_))));
        let pinned = if by_text {
            super::output_settings::pin_for_key_text()
        } else {
            None
        };
        let parts: Vec<KeyPart> = self
            .0
            .iter_mut()
            .map(|hasher| match hasher {
                None => KeyPart::Gone,
                Some(hasher) => match values.next().flatten() {
                    None => KeyPart::Null,
                    // SAFETY: see the function contract.
                    Some(datum) => unsafe { hasher.part(datum) },
                },
            })
            .collect();
        super::output_settings::unpin(pinned);
        key_hash(parts)
    }
}

/// Where each of `names` is in `tupdesc` (a partition may number its columns differently from
/// the subscribed table, so by name), with its type and collation; `None` for one that is gone.
///
/// # Safety
/// `tupdesc` is a valid tuple descriptor.
unsafe fn positions(
    tupdesc: pg_sys::TupleDesc,
    names: &[String],
) -> Vec<Option<(usize, pg_sys::Oid, pg_sys::Oid)>> {
    // SAFETY: see the function contract.
    let attrs = unsafe { (*tupdesc).attrs.as_slice((*tupdesc).natts as usize) };
    names
        .iter()
        .map(|name| {
            attrs
                .iter()
                .enumerate()
                .find(|(_, a)| !a.attisdropped && pgrx::name_data_to_str(&a.attname) == name)
                .map(|(i, a)| (i, a.atttypid, a.attcollation))
        })
        .collect()
}

/// The hashers of the key columns `found` (as `positions` gives them).
///
/// # Safety
/// Each type exists; the function lookups live in the current memory context.
unsafe fn hashers_of(found: &[Option<(usize, pg_sys::Oid, pg_sys::Oid)>]) -> KeyHashers {
    let columns: Vec<_> = found
        .iter()
        .map(|p| p.map(|(_, typid, collation)| (typid, collation)))
        .collect();
    // SAFETY: see the function contract.
    unsafe { KeyHashers::new(&columns) }
}

/// An order key as a query reads it (a shaped subscription's, a backfill chunk's): its columns
/// still there are selected, in key order, and hashed here as capture hashes them.
pub struct QueryKey {
    /// Each key column, `None` for one that is gone (dropped or renamed since subscribing).
    pub columns: Vec<Option<String>>,
    hashers: KeyHashers,
    /// The types of the columns still there, in key order: what the query must return.
    types: Vec<pg_sys::Oid>,
}

impl QueryKey {
    /// The key columns `names` of rows described by `tupdesc`.
    ///
    /// # Safety
    /// `tupdesc` is a valid tuple descriptor; the lookups live in the current memory context.
    pub unsafe fn new(tupdesc: pg_sys::TupleDesc, names: &[String]) -> QueryKey {
        // SAFETY: see the function contract.
        unsafe {
            let found = positions(tupdesc, names);
            QueryKey {
                columns: names
                    .iter()
                    .zip(&found)
                    .map(|(name, at)| at.map(|_| name.clone()))
                    .collect(),
                hashers: hashers_of(&found),
                types: found.iter().flatten().map(|(_, typid, _)| *typid).collect(),
            }
        }
    }

    /// The key hash of the current row of `rows`, whose key columns start at column `first`.
    ///
    /// # Safety
    /// Those columns are the ones `columns` names as there, in order.
    pub unsafe fn hash_row(&mut self, rows: &SpiTupleTable<'_>, first: usize) -> SpiResult<i64> {
        let present = self.columns.iter().flatten().count();
        // The hashers read raw values of their own types: a query that returned another type
        // there (it is built around user text, see crate::expression) fails the statement.
        for (i, expected) in (first..first + present).zip(&self.types) {
            let found = rows.column_type_oid(i)?.value();
            if found != *expected {
                return Err(pgrx::spi::Error::DatumError(
                    pgrx::datum::TryFromDatumError::IncompatibleTypes {
                        rust_type: "order key column",
                        rust_oid: *expected,
                        datum_type: format!("column {i} of the query"),
                        datum_oid: found,
                    },
                ));
            }
        }
        let values = (first..first + present)
            .map(|i| rows.get_datum_by_ordinal(i))
            .collect::<SpiResult<Vec<_>>>()?;
        // SAFETY: see the function contract.
        Ok(unsafe { self.hashers.hash(values.into_iter()) })
    }
}

/// The order key columns of the table a trigger fired on, ready to read from its rows.
pub struct KeyColumns {
    /// Each present column's number, in key order.
    attnums: Vec<i32>,
    hashers: KeyHashers,
}

impl KeyColumns {
    /// The key columns `names` of the rows described by `tupdesc`.
    ///
    /// # Safety
    /// `tupdesc` is the descriptor of the rows the keys are read from.
    pub unsafe fn resolve(tupdesc: pg_sys::TupleDesc, names: &[String]) -> KeyColumns {
        // SAFETY: see the function contract.
        unsafe {
            let found = positions(tupdesc, names);
            KeyColumns {
                attnums: found
                    .iter()
                    .flatten()
                    .map(|(i, _, _)| *i as i32 + 1)
                    .collect(),
                hashers: hashers_of(&found),
            }
        }
    }

    /// The key hash of the row in `slot`.
    ///
    /// # Safety
    /// `slot` holds a row of the descriptor given to `resolve`.
    pub unsafe fn hash_of(&mut self, slot: *mut pg_sys::TupleTableSlot) -> i64 {
        let values = self.attnums.iter().map(|attnum| {
            let mut null = false;
            // SAFETY: a valid attribute number of the slot's descriptor.
            let datum = unsafe { pg_sys::slot_getattr(slot, *attnum, &mut null) };
            (!null).then_some(datum)
        });
        // SAFETY: the values are the slot's, of the columns the hashers were made for.
        unsafe { self.hashers.hash(values) }
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
pub fn lock_keys(subscription_id: i32, salt: i64, keys: &[i64]) {
    let mut buckets: Vec<u32> = keys.iter().map(|k| bucket(*k, salt)).collect();
    buckets.sort_unstable();
    buckets.dedup();
    for b in buckets {
        super::lock_exclusive(subscription_id as u32, b, ORDER_KEY_SPACE);
    }
}
