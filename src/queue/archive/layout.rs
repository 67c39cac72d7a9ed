//! Which tables the move writes, and where their columns are: found by name and type in the
//! open relations each time, so a table this version does not know is declined, not written.

use std::ffi::CStr;

use pgrx::pg_sys;

use pg_sys::{
    FLOAT8OID as F8, INT4OID as I4, INT8OID as I8, JSONBOID as JB, TEXTOID as T,
    TIMESTAMPTZOID as TS, XID8OID as X8,
};

type Column = (&'static CStr, pg_sys::Oid);

/// The columns an archive row copies from its queue row, by the same names and types.
const COPIED: [Column; 12] = [
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
    (c"timeline", I4),
];

/// The queue's columns the move reads (`columns` finds them in this order): its `txid`, then
/// those it copies.
pub const QUEUE: [Column; 13] = join(&[(c"txid", X8)], &COPIED);

/// Every column of the archive, in the order the move fills them (`columns` finds them so):
/// those copied from the queue, then the outcome's. The table must have these and no other.
pub const ARCHIVE: [Column; 22] = join(
    &COPIED,
    &[
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
    ],
);

/// `a` then `b`; `N` must be their total length (checked when the constant is made).
const fn join<const N: usize>(a: &[Column], b: &[Column]) -> [Column; N] {
    assert!(a.len() + b.len() == N);
    let mut out = [(c"", pg_sys::Oid::INVALID); N];
    let mut i = 0;
    while i < N {
        out[i] = if i < a.len() { a[i] } else { b[i - a.len()] };
        i += 1;
    }
    out
}

/// Where the copied columns start in `QUEUE` (they are the first of `ARCHIVE`), and how many.
pub const Q_COPIED: usize = 1;
pub const COPIED_COLUMNS: usize = COPIED.len();
/// The archive's columns the move fills from the outcome (positions in `ARCHIVE`).
pub const A_ATTEMPTS: usize = COPIED_COLUMNS;
pub const A_LAST_ERROR: usize = COPIED_COLUMNS + 1;
pub const A_STATUS: usize = COPIED_COLUMNS + 2;
pub const A_FINISHED_AT: usize = COPIED_COLUMNS + 3;
pub const A_STARTED_AT: usize = COPIED_COLUMNS + 4;
pub const A_DURATION_MS: usize = COPIED_COLUMNS + 5;
pub const A_STATUS_CODE: usize = COPIED_COLUMNS + 6;
pub const A_EXCERPT: usize = COPIED_COLUMNS + 7;
pub const A_ERROR: usize = COPIED_COLUMNS + 8;
pub const A_CALLBACK_ERROR: usize = COPIED_COLUMNS + 9;
/// The queue's key and subscription (positions in `QUEUE`).
pub const Q_TXID: usize = 0;
pub const Q_ID: usize = 1;
pub const Q_SUBSCRIPTION: usize = 2;

/// A heap table with nothing the executor would run around a row change, and not a partition
/// (whose bound the executor checks on insert). Row-level security is enabled on every private
/// table (against pg_read_all_data and pg_write_all_data), and the worker, a superuser, is not
/// subject to it: only policies that would apply to the worker count.
///
/// # Safety
/// `rel` is an open relation.
pub unsafe fn plain(rel: pg_sys::Relation) -> bool {
    // SAFETY: an open relation.
    unsafe {
        let class = &*(*rel).rd_rel;
        class.relkind == pg_sys::RELKIND_RELATION as core::ffi::c_char
            && !class.relispartition
            && class.relam == pg_sys::HEAP_TABLE_AM_OID
            && pg_sys::check_enable_rls((*rel).rd_id, pg_sys::InvalidOid, true)
                != pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
            && (*rel).trigdesc.is_null()
            && (*rel).rd_rules.is_null()
    }
}

/// Where each of `wanted` is (0-based), each of its type with no modifier, not an identity or
/// generated column; `exact`: and no other live column.
///
/// # Safety
/// `rel` is an open relation.
pub unsafe fn columns<const N: usize>(
    rel: pg_sys::Relation,
    wanted: &[Column; N],
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
            // SAFETY: a NameData is NUL-terminated; compared as bytes, whatever the encoding.
            let attname = unsafe { CStr::from_ptr(a.attname.data.as_ptr()) };
            !a.attisdropped && attname == *name
        })?;
        let a = &attrs[*slot];
        if a.atttypid != *type_oid || a.atttypmod != -1 || a.attidentity != 0 || a.attgenerated != 0
        {
            return None;
        }
    }
    let live = attrs.iter().filter(|a| !a.attisdropped).count();
    (!exact || live == N).then_some(found)
}

/// Whether the archive's defaults are those the move writes itself: `now()` for `finished_at`
/// (the move's `finished`), none for `callback_error` (`no_default`). The SQL path leaves both
/// columns to their defaults; a DBA who changes one gets it from the SQL path.
///
/// # Safety
/// `archive` is open; the positions are its columns (0-based).
pub unsafe fn defaults_written(
    archive: pg_sys::Relation,
    finished: usize,
    no_default: usize,
) -> bool {
    // SAFETY: see the function contract; the default expression is made in the current
    // memory context.
    unsafe {
        let desc = (*archive).rd_att;
        let attrs = (*desc).attrs.as_slice((*desc).natts as usize);
        if attrs[no_default].atthasdef || !attrs[finished].atthasdef {
            return false;
        }
        let default = pg_sys::build_column_default(archive, finished as i32 + 1);
        !default.is_null()
            && (*default).type_ == pg_sys::NodeTag::T_FuncExpr
            && (*default.cast::<pg_sys::FuncExpr>()).funcid == pg_sys::Oid::from(pg_sys::F_NOW)
    }
}
