//! The relations a checked query's plan reads, judged again as it starts. `relation_code`
//! judges the views, foreign tables and row-level security policies of the analysed query;
//! the planner adds more: a table's inheritance children and partitions (a foreign table
//! attached under a table the filter reads, at any time — attaching takes no lock the query's
//! own conflicts with), and the bodies of the SQL functions it inlines (a view read there).
//! So every plan started under the guard (`analysis_guard`, while a checked query is planned
//! and run, its nested queries included) is judged by the same rule before the executor
//! starts: a view, a foreign table, or a table whose policies apply, of an owner without the
//! runner's privileges is refused — unless the text names code of that owner's (a role whose
//! function the text calls could make that function read anything anyway).

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::callees::list_items;
use crate::catalog_cache::{oid, with_row};
use crate::relation_code::{refuse, RelationCode};

static mut PREVIOUS: pg_sys::ExecutorStart_hook_type = None;

/// Installs the hook; once per process, from `_PG_init`.
pub fn init() {
    // SAFETY: called once per process on the main thread, before any statement runs.
    unsafe {
        PREVIOUS = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(on_executor_start);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_executor_start(query: *mut pg_sys::QueryDesc, eflags: i32) {
    if crate::analysis_guard::running() {
        // SAFETY: the QueryDesc PostgreSQL is about to start, with its planned statement.
        unsafe { judge((*(*query).plannedstmt).rtable) };
    }
    // SAFETY: the previous hook, set before ours and never changed since, or the standard one.
    unsafe {
        match PREVIOUS {
            Some(previous) => previous(query, eflags),
            None => pg_sys::standard_ExecutorStart(query, eflags),
        }
    }
}

/// Refuses the first relation of `rtable` (a plan's flattened range table) whose owner's code
/// would run, unless that owner has the runner's privileges or the text names its code.
///
/// # Safety
/// `rtable` is a List of RangeTblEntry, or null.
unsafe fn judge(rtable: *mut pg_sys::List) {
    // SAFETY: a plain read of the current user.
    let runner = unsafe { pg_sys::GetUserId() };
    // SAFETY: see the function contract.
    for rte in unsafe { list_items::<pg_sys::RangeTblEntry>(rtable) } {
        // SAFETY: an entry of the plan's range table.
        let rte = unsafe { &*rte };
        if rte.rtekind != pg_sys::RTEKind::RTE_RELATION {
            continue;
        }
        let kind = |k: u8| rte.relkind == k as std::ffi::c_char;
        let as_user = if rte.checkAsUser == pg_sys::InvalidOid {
            runner
        } else {
            rte.checkAsUser
        };
        let code = if kind(pg_sys::RELKIND_VIEW) {
            RelationCode::View
        } else if kind(pg_sys::RELKIND_FOREIGN_TABLE) {
            RelationCode::Foreign
        // SAFETY: a catalog read; no ERROR with noError.
        } else if unsafe { pg_sys::check_enable_rls(rte.relid, as_user, true) }
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
        {
            RelationCode::Policies
        } else {
            continue;
        };
        let Some((owner, name, namespace)) =
            with_row(pg_sys::SysCacheIdentifier::RELOID, rte.relid, |attribute| {
                (
                    oid(attribute(pg_sys::Anum_pg_class_relowner)),
                    // SAFETY: the relation is locked by the plan; these read its catalog rows.
                    unsafe { pg_sys::get_rel_name(rte.relid) },
                    oid(attribute(pg_sys::Anum_pg_class_relnamespace)),
                )
            })
        else {
            continue;
        };
        // SAFETY: a plain read of role membership.
        let trusted = unsafe { pg_sys::has_privs_of_role(owner, runner) };
        if trusted || crate::analysis_guard::running_names(owner) == Some(true) {
            continue;
        }
        // SAFETY: names of catalog rows, NUL-terminated, read before the ERROR.
        let relation = unsafe {
            let schema = pg_sys::get_namespace_name(namespace);
            format!("{}.{}", cstr(schema), cstr(name),)
        };
        refuse(&relation, &crate::privilege::role_name(owner), code);
    }
}

/// A C string PostgreSQL returned, or "?" for NULL.
///
/// # Safety
/// `s` is NULL or NUL-terminated.
unsafe fn cstr(s: *const std::ffi::c_char) -> String {
    if s.is_null() {
        return "?".into();
    }
    // SAFETY: see the function contract.
    unsafe { std::ffi::CStr::from_ptr(s) }
        .to_string_lossy()
        .into_owned()
}
