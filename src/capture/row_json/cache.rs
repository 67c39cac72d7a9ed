//! The converters of the tables this backend has captured, kept for the statements to come.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::pg_sys;

use super::RowJson;

thread_local! {
    /// Converters by table, for the statements to come.
    static CACHE: RefCell<HashMap<pg_sys::Oid, RowJson>> = RefCell::new(HashMap::new());
}

/// Forgets a table's converter after a relation cache invalidation (see
/// `crate::invalidation`). (A converter kept is checked against the table's columns before use
/// anyway; this only frees those of tables that changed or are gone.) Must not raise an ERROR
/// or allocate. A converter in use is not in the map (see `take`), so only idle ones are
/// dropped.
pub fn forget_relation(relid: pg_sys::Oid) {
    CACHE.with(|cache| {
        if let Ok(mut cache) = cache.try_borrow_mut() {
            if relid == pg_sys::Oid::INVALID {
                cache.clear();
            } else {
                cache.remove(&relid);
            }
        }
    });
}

/// The converter for the rows of `rel`: the one kept from an earlier statement when the table's
/// columns are still the same, a new one otherwise. Give it back with `put_back`. (Taken out,
/// not borrowed: a trigger that fires inside a rendering, from a user's cast to json, makes its
/// own.)
///
/// # Safety
/// `rel` is an open relation.
pub unsafe fn take(rel: pg_sys::Relation) -> RowJson {
    // SAFETY: see the function contract.
    unsafe {
        let relid = (*rel).rd_id;
        let desc = (*rel).rd_att;
        match CACHE.with(|c| c.borrow_mut().remove(&relid)) {
            Some(json) if json.fits(desc) => json,
            _ => RowJson::new(desc),
        }
    }
}

/// Keeps `json`, made for `rel`, for the next statement.
///
/// # Safety
/// `rel` is an open relation.
pub unsafe fn put_back(rel: pg_sys::Relation, json: RowJson) {
    // SAFETY: see the function contract.
    let relid = unsafe { (*rel).rd_id };
    CACHE.with(|c| c.borrow_mut().insert(relid, json));
}
