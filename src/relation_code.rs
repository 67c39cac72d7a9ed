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
use pgrx::spi::{SpiClient, SpiResult};

use crate::error::reject;

const UNTRUSTED: &str = include_str!("../sql/queries/untrusted_relations.sql");

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

/// Raises an ERROR for the first of `relations` (see `Callees::relations`) whose owner lacks
/// the current user's privileges.
pub fn refuse_untrusted(
    client: &SpiClient<'_>,
    relations: &[(pg_sys::Oid, RelationCode)],
) -> SpiResult<()> {
    if relations.is_empty() {
        return Ok(());
    }
    let mut oids: Vec<pg_sys::Oid> = relations.iter().map(|(r, _)| *r).collect();
    oids.sort_by_key(|r| r.to_u32());
    oids.dedup();
    // SAFETY: a plain read of the current user.
    let runner = unsafe { pg_sys::GetUserId() };
    let rows = client.select(UNTRUSTED, None, &[oids.clone().into(), runner.into()])?;
    let mut seen = Vec::new();
    for row in rows {
        let relation: pg_sys::Oid = row.get(1)?.unwrap_or_default();
        seen.push(relation);
        if row.get::<bool>(5)? == Some(true) {
            continue;
        }
        let schema: String = row.get(2)?.unwrap_or_default();
        let name: String = row.get(3)?.unwrap_or_default();
        let owner: String = row.get(4)?.unwrap_or_default();
        // Policies first: a view or foreign table can have policies too.
        let code = relations
            .iter()
            .filter(|(r, _)| *r == relation)
            .map(|(_, code)| *code)
            .max_by_key(|code| *code == RelationCode::Policies)
            .unwrap_or(RelationCode::View);
        refuse(&format!("{schema}.{name}"), &owner, code);
    }
    // Fail closed, as for functions: the analysis saw the latest catalog.
    if let Some(unseen) = oids.iter().find(|r| !seen.contains(r)) {
        crate::looked_up_types::refuse_too_new("relation", unseen.to_u32());
    }
    Ok(())
}

/// Raises the ERROR that refuses `relation` (its owner `owner`) for `code`.
pub fn refuse(relation: &str, owner: &str, code: RelationCode) -> ! {
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
