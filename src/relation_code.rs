//! The SQL of views and row-level security policies a user-written query reads (and foreign
//! tables, whose options say what their wrapper reads, with the runner's user mapping). A view's body
//! and a policy's expressions are SQL their owner wrote (and may replace at any time: `CREATE
//! OR REPLACE VIEW`, `CREATE POLICY`), and they run with the rights of the role the query runs
//! as — its functions as that role, and a policy's subqueries with that role's access to
//! tables. Even with built-in functions only, such SQL can act as that role
//! (`pg_terminate_backend` of its sessions, `pg_read_file` if it may) or read what it may and
//! put it in an error the writer sees. So a view, or a relation whose policies apply to the
//! query, must belong to a role with the runner's privileges (a superuser, or the runner).
//!
//! The check is made on the analysed, rewritten query that then runs: the query holds its
//! lock on each view and table from the analysis on, and replacing a view or changing a
//! table's policies waits for it.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::catalog_cache::{oid, with_row};
use crate::error::reject;

/// What of a relation's owner's a query runs when it reads the relation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RelationCode {
    /// A view's body.
    View,
    /// A foreign table's options, which tell its foreign-data wrapper what to read (with the
    /// user mapping of the role the query runs as).
    Foreign,
    /// The row-level security policies that apply to the query.
    Policies,
}

/// Raises an ERROR for the first of `relations` (see `Callees::relations`; by OID, a
/// relation's policies before its body) whose owner lacks the current user's privileges.
pub fn refuse_untrusted(relations: &[(pg_sys::Oid, RelationCode)]) {
    // SAFETY: a plain read of the current user.
    let runner = unsafe { pg_sys::GetUserId() };
    let mut ordered = relations.to_vec();
    ordered.sort_by_key(|(r, code)| (r.to_u32(), *code != RelationCode::Policies));
    for (relid, code) in ordered {
        judge(relid, code, runner);
    }
}

/// Refuses `relid` for `code` unless its owner has `runner`'s privileges or, while a checked
/// query is planned and run, the text names code of its owner's (see `analysis_guard`).
pub fn judge(relid: pg_sys::Oid, code: RelationCode, runner: pg_sys::Oid) {
    let Some((owner, name, namespace)) =
        with_row(pg_sys::SysCacheIdentifier::RELOID, relid, |attribute| {
            (
                oid(attribute(pg_sys::Anum_pg_class_relowner)),
                // SAFETY: the relation is locked by the query; this reads its catalog row.
                unsafe { pg_sys::get_rel_name(relid) },
                oid(attribute(pg_sys::Anum_pg_class_relnamespace)),
            )
        })
    else {
        return;
    };
    // SAFETY: a plain read of role membership.
    let trusted = unsafe { pg_sys::has_privs_of_role(owner, runner) };
    if trusted || crate::analysis_guard::running_names(owner) == Some(true) {
        return;
    }
    // SAFETY: names of catalog rows, NUL-terminated, read before the ERROR.
    let relation = unsafe {
        let schema = pg_sys::get_namespace_name(namespace);
        format!("{}.{}", cstr(schema), cstr(name))
    };
    refuse(&relation, &crate::privilege::role_name(owner), code);
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

/// Raises the ERROR that refuses `relation` (its owner `owner`) for `code`.
fn refuse(relation: &str, owner: &str, code: RelationCode) -> ! {
    // SAFETY: a plain read of the current user.
    let runner = crate::privilege::role_name(unsafe { pg_sys::GetUserId() });
    let (what, fix) = match code {
        RelationCode::Policies => (
            format!("table {relation}, whose row-level security policies (written by its owner, role {owner}, who may change them at any time) apply to role {runner}: their expressions"),
            format!("read a table no policy of another role binds role {runner} to, or have a role with the rights of role {runner} own it"),
        ),
        RelationCode::View => (
            format!("view {relation}, owned by role {owner}, who may replace it at any time: its body"),
            format!("read the view's tables directly, or have a role with the rights of role {runner} own the view"),
        ),
        RelationCode::Foreign => (
            format!("foreign table {relation}, owned by role {owner}, who may change at any time what it reads: the remote query"),
            format!("have a role with the rights of role {runner} own the foreign table"),
        ),
    };
    reject(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "the expression reads {what} would run with the rights of role {runner}, and even with built-in functions only such SQL can act as role {runner} or read what it may; only views and policies of roles with the rights of role {runner} run there"
        ),
        Some(&fix),
    )
}
