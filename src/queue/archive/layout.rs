//! Which tables the move writes, and where their columns are: found by name and type in the
//! open relations each time, so a table this version does not know is declined, not written.

use std::ffi::CStr;

use pgrx::pg_sys;

use pg_sys::{
    FLOAT8OID as F8, INT4OID as I4, INT8OID as I8, JSONBOID as JB, TEXTOID as T,
    TIMESTAMPTZOID as TS, XID8OID as X8,
};

/// The queue's columns the move reads; `columns` finds them in this order.
pub const QUEUE: [(&CStr, pg_sys::Oid); 12] = [
    (c"txid", X8),
    (c"id", I8),
    (c"subscription_id", I4),
    (c"op", T),
    (c"table_schema", T),
    (c"table_name", T),
    (c"record", JB),
    (c"old_record", JB),
    (c"created_at", TS),
    (c"series_start", I4),
    (c"payload_bytes", I4),
    (c"order_key", I8),
];

/// Every column of the archive, in the order the move fills them; the table must have these
/// and no other.
pub const ARCHIVE: [(&CStr, pg_sys::Oid); 21] = [
    (c"id", I8),
    (c"subscription_id", I4),
    (c"op", T),
    (c"table_schema", T),
    (c"table_name", T),
    (c"record", JB),
    (c"old_record", JB),
    (c"created_at", TS),
    (c"series_start", I4),
    (c"payload_bytes", I4),
    (c"order_key", I8),
    (c"attempts", I4),
    (c"last_error", T),
    (c"status", T),
    (c"finished_at", TS),
    (c"final_started_at", TS),
    (c"final_duration_ms", F8),
    (c"final_status_code", I4),
    (c"final_response_excerpt", T),
    (c"final_error", T),
    (c"callback_error", T),
];

/// The queue columns copied as they are into the archive's first eleven (id to order_key).
pub const COPIED: [usize; 11] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
pub const Q_TXID: usize = 0;
pub const Q_ID: usize = 1;
pub const Q_SUBSCRIPTION: usize = 2;

/// A heap table with nothing the executor would run around a row change.
///
/// # Safety
/// `rel` is an open relation.
pub unsafe fn plain(rel: pg_sys::Relation) -> bool {
    // SAFETY: an open relation.
    unsafe {
        let class = &*(*rel).rd_rel;
        class.relkind == pg_sys::RELKIND_RELATION as core::ffi::c_char
            && class.relam == pg_sys::HEAP_TABLE_AM_OID
            && !class.relrowsecurity
            && (*rel).trigdesc.is_null()
            && (*rel).rd_rules.is_null()
    }
}

/// Where each of `wanted` is (0-based), each of its type; `exact`: and no other live column.
///
/// # Safety
/// `rel` is an open relation.
pub unsafe fn columns<const N: usize>(
    rel: pg_sys::Relation,
    wanted: &[(&CStr, pg_sys::Oid); N],
    exact: bool,
) -> Option<[usize; N]> {
    // SAFETY: an open relation's descriptor.
    let attrs = unsafe {
        let desc = (*rel).rd_att;
        (*desc).attrs.as_slice((*desc).natts as usize)
    };
    let mut found = [0usize; N];
    for (slot, (name, type_oid)) in found.iter_mut().zip(wanted) {
        *slot = attrs.iter().position(|a| {
            !a.attisdropped
                && a.atttypid == *type_oid
                && pgrx::name_data_to_str(&a.attname).as_bytes() == name.to_bytes()
        })?;
    }
    let live = attrs.iter().filter(|a| !a.attisdropped).count();
    (!exact || live == N).then_some(found)
}
