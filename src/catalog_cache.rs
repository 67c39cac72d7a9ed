//! Reading one row of a catalog through its syscache: the latest committed row, as
//! PostgreSQL's own lookups (fmgr, the planner, the type cache) read it, whatever the
//! statement's snapshot.

use pgrx::pg_sys;

/// Calls `read` on the row of `oid` in syscache `cache`, with a function giving an attribute's
/// value (None when null); None when there is no such row. What `read` returns must not point
/// into the row, which is released after it.
pub fn with_row<T>(
    cache: pg_sys::SysCacheIdentifier::Type,
    oid: pg_sys::Oid,
    read: impl FnOnce(&dyn Fn(u32) -> Option<pg_sys::Datum>) -> T,
) -> Option<T> {
    let cache = cache as i32;
    // SAFETY: a syscache lookup in a transaction; the tuple is released below, once `read`
    // has copied what it needs.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(cache, pg_sys::Datum::from(oid));
        if tuple.is_null() {
            return None;
        }
        let attribute = |a: u32| {
            let mut null = false;
            let datum = pg_sys::SysCacheGetAttr(cache, tuple, a as i16, &mut null);
            (!null).then_some(datum)
        };
        let value = read(&attribute);
        pg_sys::ReleaseSysCache(tuple);
        Some(value)
    }
}

/// An `oid` column's value.
pub fn oid(datum: Option<pg_sys::Datum>) -> pg_sys::Oid {
    datum.map_or(pg_sys::InvalidOid, |d| pg_sys::Oid::from(d.value() as u32))
}
