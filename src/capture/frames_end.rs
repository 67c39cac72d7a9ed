//! Telling the statement hooks (`merge_moves`, `nested`) that a transaction ended or a
//! subtransaction aborted: an ERROR jumps over a hook's own cleanup, so the frames it keeps per
//! statement are dropped here.

use pgrx::prelude::*;

/// What ended.
#[derive(Clone, Copy)]
pub enum Ended {
    /// The transaction (committed, aborted or prepared): every frame goes.
    Transaction,
    /// A subtransaction at this nest level aborted: frames opened at it or deeper go.
    Subtransaction(i32),
}

/// Calls `forget` at each end; once per process and hook, from `_PG_init`.
pub fn register(forget: fn(Ended)) {
    let arg = forget as *mut std::ffi::c_void;
    // SAFETY: the callbacks read `arg` back as the function it was made from.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), arg);
        pg_sys::RegisterSubXactCallback(Some(on_subxact), arg);
    }
}

/// The function `register` was given.
///
/// # Safety
/// `arg` is a callback argument `register` made.
unsafe fn forgetter(arg: *mut std::ffi::c_void) -> fn(Ended) {
    // SAFETY: see the function contract: a `fn(Ended)` cast to a pointer.
    unsafe { std::mem::transmute::<*mut std::ffi::c_void, fn(Ended)>(arg) }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, arg: *mut std::ffi::c_void) {
    if matches!(
        event,
        pg_sys::XactEvent::XACT_EVENT_COMMIT
            | pg_sys::XactEvent::XACT_EVENT_ABORT
            | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT
            | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
            | pg_sys::XactEvent::XACT_EVENT_PREPARE
    ) {
        // SAFETY: registered with such an argument.
        let forget = unsafe { forgetter(arg) };
        forget(Ended::Transaction);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        // SAFETY: a plain read of the transaction state (the aborting level).
        let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
        // SAFETY: registered with such an argument.
        let forget = unsafe { forgetter(arg) };
        forget(Ended::Subtransaction(level));
    }
}
