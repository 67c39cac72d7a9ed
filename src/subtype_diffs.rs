//! Which functions are some range type's `subtype_diff`: the type cache keeps such a function
//! for the backend's life once a query has loaded the range type, and the planner calls it
//! from there, so `analysis_guard` gives these (and only these) the fmgr hook guard or not.
//!
//! Read from pg_range once per backend, and again after any change to it (a range type made
//! or dropped sends an invalidation of its syscache, which drops the set).

use std::cell::{Cell, RefCell};
use std::collections::HashSet;

use pgrx::pg_sys;

/// pg_range (catalog/pg_range.h) and its `rngsubdiff` column (PostgreSQL 15); pgrx's bindings
/// have neither.
const RANGE_RELATION: u32 = 3541;
const RNGSUBDIFF: i32 = 7;

thread_local! {
    static DIFFS: RefCell<Option<HashSet<u32>>> = const { RefCell::new(None) };
    /// Bumped by every invalidation of pg_range's syscache.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// Registers the invalidation callback; once per process, from `_PG_init`.
pub fn init() {
    // SAFETY: registers a plain function; called once per process on the main thread.
    unsafe {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::RANGETYPE as i32,
            Some(on_range_change),
            pg_sys::Datum::from(0),
        );
    }
}

/// Runs inside invalidation processing: must not raise an ERROR or allocate in Postgres.
unsafe extern "C-unwind" fn on_range_change(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    DIFFS.with(|d| {
        // Held only around a lookup that calls nothing: the generation bump covers that case.
        if let Ok(mut diffs) = d.try_borrow_mut() {
            // Drops a Rust set: nothing of Postgres.
            *diffs = None;
        }
    });
}

/// Whether `function` is the `subtype_diff` of a range type (in a transaction).
pub fn contains(function: pg_sys::Oid) -> bool {
    if let Some(known) = DIFFS.with(|d| d.borrow().as_ref().map(|s| s.contains(&function.to_u32())))
    {
        return known;
    }
    // Read without holding the cell: reading may take in invalidations, which clear it.
    let before = GENERATION.with(Cell::get);
    let diffs = read();
    let found = diffs.contains(&function.to_u32());
    if GENERATION.with(Cell::get) == before {
        DIFFS.with(|d| *d.borrow_mut() = Some(diffs));
    }
    found
}

/// Every `rngsubdiff` in pg_range.
fn read() -> HashSet<u32> {
    let mut diffs = HashSet::new();
    // SAFETY: a catalog scan in a transaction, with the catalog snapshot; each tuple is read
    // before the next is fetched.
    unsafe {
        let rel = pg_sys::table_open(
            pg_sys::Oid::from(RANGE_RELATION),
            pg_sys::AccessShareLock as pg_sys::LOCKMODE,
        );
        let scan = pg_sys::systable_beginscan(
            rel,
            pg_sys::Oid::INVALID,
            false,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        );
        loop {
            let tuple = pg_sys::systable_getnext(scan);
            if tuple.is_null() {
                break;
            }
            let mut null = false;
            let diff = pg_sys::heap_getattr(tuple, RNGSUBDIFF, (*rel).rd_att, &mut null);
            if !null && diff.value() != 0 {
                diffs.insert(diff.value() as u32);
            }
        }
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
    }
    diffs
}
