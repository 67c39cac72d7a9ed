//! The library's one relation cache invalidation callback. PostgreSQL 15 keeps ten such
//! callbacks per process, shared by every library loaded: one for all of pg_webhook's caches
//! leaves the others theirs.

use pgrx::pg_sys;

/// Registers the callback; once per process, from `_PG_init`.
pub fn init() {
    // SAFETY: registers a plain function; called once per process on the main thread.
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache), pg_sys::Datum::from(0)) };
}

/// Runs inside invalidation processing: what it calls must not raise an ERROR or allocate in
/// Postgres. Guarded all the same, so that a panic cannot unwind into PostgreSQL's frames.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_relcache(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    crate::capture::forget_relation(relid);
    crate::privilege::forget_relation(relid);
}
