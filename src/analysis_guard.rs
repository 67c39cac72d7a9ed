//! No other role's code runs while PostgreSQL analyses user-written SQL. Analysis runs code:
//! a literal of a composite, array or range type (`'(x)'::t`, or an untyped literal given to
//! a parameter of such a type) is read through its type's input function then and there, and
//! that checks the constraints of the domains within the type — whose owner may have added a
//! CHECK calling any function. `checked_sql` can only look at the trees analysis produces, so
//! while it has PostgreSQL analyse a query, the fmgr hooks refuse to look up any function made
//! after initdb whose owner lacks the privileges of the role the query runs as (a SECURITY
//! DEFINER function runs as its owner, so may run). Refusing the look-up, not just the call,
//! also keeps such a function out of caches that outlive the analysis (a range type's support
//! functions, loaded as its literal is read). Nothing else the text says runs during analysis;
//! what runs later, as it is planned and run, `checked_sql` checks beforehand.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::callees::built_in;
use crate::catalog_cache::{oid, with_row};
use crate::error::{function_name, reject};
use crate::privilege::role_name;

/// Whether a query is being analysed under the guard.
static ANALYSING: AtomicBool = AtomicBool::new(false);

static mut PREVIOUS_NEEDS: pg_sys::needs_fmgr_hook_type = None;
static mut PREVIOUS_HOOK: pg_sys::fmgr_hook_type = None;

/// Installs the hooks; once per process, from `_PG_init`.
pub fn init() {
    // SAFETY: called once per process on the main thread, before any statement runs.
    unsafe {
        PREVIOUS_NEEDS = pg_sys::needs_fmgr_hook;
        pg_sys::needs_fmgr_hook = Some(needs_hook);
        PREVIOUS_HOOK = pg_sys::fmgr_hook;
        pg_sys::fmgr_hook = Some(fmgr_hook);
    }
}

/// Runs `analyse` (which has PostgreSQL analyse user-written SQL) under the guard; the guard
/// ends with it, by return or by ERROR.
pub fn analysing<T>(analyse: impl FnOnce() -> T) -> T {
    struct Ends(bool);
    impl Drop for Ends {
        fn drop(&mut self) {
            ANALYSING.store(self.0, Ordering::Relaxed);
        }
    }
    let _ends = Ends(ANALYSING.swap(true, Ordering::Relaxed));
    analyse()
}

/// Consulted by fmgr_info for every function not compiled into PostgreSQL that is neither
/// SECURITY DEFINER nor has settings of its own (those go to `fmgr_hook` as they start).
#[pg_guard]
unsafe extern "C-unwind" fn needs_hook(function: pg_sys::Oid) -> bool {
    if ANALYSING.load(Ordering::Relaxed) {
        refuse_untrusted(function);
    }
    // SAFETY: the previous hook, set before ours and never changed since.
    match unsafe { PREVIOUS_NEEDS } {
        Some(previous) => unsafe { previous(function) },
        None => false,
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn fmgr_hook(
    event: pg_sys::FmgrHookEventType::Type,
    flinfo: *mut pg_sys::FmgrInfo,
    arg: *mut pg_sys::Datum,
) {
    if event == pg_sys::FmgrHookEventType::FHET_START && ANALYSING.load(Ordering::Relaxed) {
        // SAFETY: fmgr passes the FmgrInfo of the function starting.
        refuse_untrusted(unsafe { (*flinfo).fn_oid });
    }
    // SAFETY: the previous hook, with the arguments fmgr passed.
    if let Some(previous) = unsafe { PREVIOUS_HOOK } {
        unsafe { previous(event, flinfo, arg) };
    }
}

/// Raises an ERROR when `function` was made after initdb, is not SECURITY DEFINER, and its
/// owner lacks the current user's privileges.
fn refuse_untrusted(function: pg_sys::Oid) {
    if built_in(function) {
        return;
    }
    let row = with_row(pg_sys::SysCacheIdentifier::PROCOID, function, |attribute| {
        (
            oid(attribute(pg_sys::Anum_pg_proc_proowner)),
            attribute(pg_sys::Anum_pg_proc_prosecdef).is_some_and(|d| d.value() != 0),
        )
    });
    // fmgr_info raises its own ERROR for a function that is gone.
    let Some((owner, definer)) = row else {
        return;
    };
    // SAFETY: plain reads of the current user and of role membership.
    let runner = unsafe { pg_sys::GetUserId() };
    if definer || unsafe { pg_sys::has_privs_of_role(owner, runner) } {
        return;
    }
    reject(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "the expression would run function {}, owned by role {}, with the rights of role {} as PostgreSQL reads the expression (or look it up then, to run later): a literal of a composite, array or range type is read through its type's input function as the expression is analysed, which checks the constraints of the domains within that type and loads a range type's support functions; build the value instead (ROW(...), ARRAY[...] or a range constructor, over values of the base types), or compare as text",
            function_name(function),
            role_name(owner),
            role_name(runner)
        ),
        None,
    );
}
