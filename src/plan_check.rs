//! The relations a checked query reads, judged as PostgreSQL plans and starts it.
//! `relation_code` judges the views, foreign tables and row-level security policies of the
//! analysed query; planning adds more, and runs code while it plans (it evaluates stable
//! functions to estimate selectivities, and a foreign-data wrapper may ask its server for
//! estimates): a table's inheritance children and partitions (a foreign table attached under
//! a table the filter reads, at any time — attaching takes no lock the query's own conflicts
//! with), and the queries of the SQL functions the query calls (a view read there, or a table
//! replaced by a view since the check). So while a checked query is planned and run under the
//! guard (`analysis_guard`), its SQL functions are not inlined (they plan their queries as
//! they run), and the same rule — a view, a foreign table, or a table whose policies apply, of
//! an owner without the runner's privileges, is refused unless the text names code of that
//! owner's (a role whose function the text calls could make it read anything anyway) — is
//! applied to every query before the planner sees it (`planner_hook`), to every relation as
//! the planner opens it (children included, before any estimate), and to every plan's range
//! table as the executor starts (a last look, nested plans included).

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::callees::{list_items, Callees};
use crate::relation_code::{judge, refuse_untrusted, RelationCode};

static mut PREVIOUS_START: pg_sys::ExecutorStart_hook_type = None;
static mut PREVIOUS_PLANNER: pg_sys::planner_hook_type = None;
static mut PREVIOUS_RELATION_INFO: pg_sys::get_relation_info_hook_type = None;

/// Installs the hooks; once per process, from `_PG_init`.
pub fn init() {
    // SAFETY: called once per process on the main thread, before any statement runs.
    unsafe {
        PREVIOUS_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(on_executor_start);
        PREVIOUS_PLANNER = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(on_planner);
        PREVIOUS_RELATION_INFO = pg_sys::get_relation_info_hook;
        pg_sys::get_relation_info_hook = Some(on_relation_info);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_planner(
    parse: *mut pg_sys::Query,
    query_string: *const std::ffi::c_char,
    cursor_options: i32,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    let mut cursor_options = cursor_options;
    if crate::analysis_guard::running() {
        let mut callees = Callees::default();
        // SAFETY: the analysed, rewritten Query PostgreSQL is about to plan.
        unsafe { callees.walk_query(parse) };
        refuse_untrusted(&callees.relations);
        // Never in parallel (a SQL function's query may be, as it runs): the guard and these
        // hooks watch this backend only, and a parallel worker ran what they would refuse;
        // and a worker's ERROR crashed the backend as pg_webhook closed the checked query's
        // cursor, which unmapped the workers' shared memory before the subtransaction's
        // abort detached from it (tests/parallel_filters.rs).
        cursor_options &= !(pg_sys::CURSOR_OPT_PARALLEL_OK as i32);
    }
    // SAFETY: the previous hook, set before ours and never changed since, or the standard one.
    unsafe {
        match PREVIOUS_PLANNER {
            Some(previous) => previous(parse, query_string, cursor_options, bound_params),
            None => pg_sys::standard_planner(parse, query_string, cursor_options, bound_params),
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relation_info(
    root: *mut pg_sys::PlannerInfo,
    relid: pg_sys::Oid,
    inherited: bool,
    rel: *mut pg_sys::RelOptInfo,
) {
    // SAFETY: a catalog read of a relation the planner holds locked.
    if crate::analysis_guard::running()
        && unsafe { pg_sys::get_rel_relkind(relid) }
            == pg_sys::RELKIND_FOREIGN_TABLE as std::ffi::c_char
    {
        // SAFETY: a plain read of the current user.
        judge(relid, RelationCode::Foreign, unsafe { pg_sys::GetUserId() });
    }
    // SAFETY: the previous hook, set before ours and never changed since.
    if let Some(previous) = unsafe { PREVIOUS_RELATION_INFO } {
        unsafe { previous(root, relid, inherited, rel) };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_executor_start(query: *mut pg_sys::QueryDesc, eflags: i32) {
    if crate::analysis_guard::running() {
        // SAFETY: the QueryDesc PostgreSQL is about to start, with its planned statement.
        unsafe { judge_plan((*query).plannedstmt) };
    }
    // SAFETY: the previous hook, set before ours and never changed since, or the standard one.
    unsafe {
        match PREVIOUS_START {
            Some(previous) => previous(query, eflags),
            None => pg_sys::standard_ExecutorStart(query, eflags),
        }
    }
}

/// Refuses the first relation of `plan`'s (flattened) range table whose owner's code would
/// run, unless that owner has the runner's privileges or the text names its code. The
/// inheritance children and partitions the planner added are judged as views and foreign
/// tables only: PostgreSQL applies no policy of theirs to a query of their parent.
///
/// # Safety
/// `plan` is a valid PlannedStmt.
unsafe fn judge_plan(plan: *mut pg_sys::PlannedStmt) {
    // SAFETY: a plain read of the current user.
    let runner = unsafe { pg_sys::GetUserId() };
    // SAFETY: see the function contract: the children's range table indexes (1-based).
    let children: Vec<u32> =
        unsafe { list_items::<pg_sys::AppendRelInfo>((*plan).appendRelations) }
            .into_iter()
            // SAFETY: entries of the plan's list.
            .map(|info| unsafe { (*info).child_relid })
            .collect();
    // SAFETY: see the function contract.
    let rtable = unsafe { list_items::<pg_sys::RangeTblEntry>((*plan).rtable) };
    for (index, rte) in (1u32..).zip(rtable) {
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
        } else if !children.contains(&index)
            // SAFETY: a catalog read; no ERROR with noError.
            && unsafe { pg_sys::check_enable_rls(rte.relid, as_user, true) }
                == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
        {
            RelationCode::Policies
        } else {
            continue;
        };
        judge(rte.relid, code, runner);
    }
}
