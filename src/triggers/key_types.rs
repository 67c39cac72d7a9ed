//! Order keys across changes to the types their columns' values are of (`key_columns` covers
//! the key columns themselves). A composite value hashes its attributes, so `ALTER TYPE ... ADD
//! ATTRIBUTE`, a column added to or dropped from a table whose row type a key column's type
//! reaches, or an attribute taken by a cascade (`DROP DOMAIN ... CASCADE`) makes one key hash
//! differently from then on; PostgreSQL allows all of them while values of the type are
//! stored. Such a change is refused while a subscription keyed by such a column has events
//! queued.
//!
//! Unlike `ALTER TABLE` of the keyed table, these commands lock the type, not the keyed
//! tables, so their writers go on meanwhile and would key their events as before the change.
//! The command takes SHARE locks on those tables (refused, not waited for, while a writer is
//! open) and holds them until it commits. Only a role that may lock the table so itself (as
//! `LOCK TABLE ... IN SHARE MODE` requires: UPDATE, DELETE or TRUNCATE on it and its
//! partitions) may do that: another type's owner altering their own type is refused instead
//! of holding off the writers of a table it has no rights on.

use std::ffi::CStr;

use pgrx::prelude::*;

use super::key_columns::{as_owner_in_spi, in_own_script, refuse, DOING};
use crate::error::reject;
use crate::privilege;
use crate::sql::{arg, at_latest, query_cstr};

const TYPES_NOW: &CStr = query_cstr!(
    "order_key_types.sql",
    "key_type_reach.sql",
    "order_key_types_tail.sql"
);
const DROPPED_ROW_TYPES: &CStr = query_cstr!("dropped_row_types.sql");

/// A live keyed subscription with a key column whose type reaches an altered type.
struct Reached {
    /// Its table, as a name and by OID.
    table: String,
    target: pg_sys::Oid,
    /// A key column concerned.
    column: String,
    queued: bool,
}

/// Why the command is refused.
enum Refusal {
    /// Its role may not hold the table's writers off.
    NotLockable(String),
    /// A writer of the table is still open.
    Open(String, String),
    /// The subscription has events queued.
    Queued(String, String),
}

/// In the `webhook_on_sql_drop` event trigger: a command that dropped attributes of composite
/// types or columns of tables (and not the relation whole) altered their row types.
pub fn attributes_dropped() {
    let mut types = Vec::new();
    as_owner_in_spi(|| {
        at_latest(DOING, DROPPED_ROW_TYPES, &[], |r| {
            types.extend(r.get::<pg_sys::Oid>(1));
        })
    });
    if !types.is_empty() {
        types_altered(&types);
    }
}

/// After a command that altered types `types` (ALTER TYPE, ALTER TABLE of a table whose row
/// type is one, a cascade): refuses it if a subscription with events queued has a key column
/// whose type reaches such a type, or is on a table typed by one, or if its role may not hold
/// the writers of such a table off; otherwise holds them off until it commits.
pub fn types_altered(types: &[pg_sys::Oid]) {
    if in_own_script() {
        return;
    }
    let read = || {
        let mut rows = Vec::new();
        at_latest(DOING, TYPES_NOW, &[arg(types.to_vec())], |r| {
            rows.push(Reached {
                table: r.get::<String>(3).unwrap_or_default(),
                target: r.get::<pg_sys::Oid>(4).unwrap_or(pg_sys::Oid::INVALID),
                column: r.get::<String>(5).unwrap_or_default(),
                queued: r.get::<bool>(6).unwrap_or(true),
            });
        });
        rows
    };
    // The role that ran the command: the event trigger runs as its definer.
    // SAFETY: a backend global, valid in a transaction.
    let runner = unsafe { pg_sys::GetOuterUserId() };
    let refusal = as_owner_in_spi(|| {
        let rows = read();
        let may_hold_off = |r: &&Reached| privilege::may_lock_tree_in_share_mode(r.target, runner);
        if let Some(r) = rows.iter().find(|r| !may_hold_off(r)) {
            return Some(Refusal::NotLockable(r.table.clone()));
        }
        if let Some(r) = rows.iter().find(|r| r.queued) {
            return Some(Refusal::Queued(r.table.clone(), r.column.clone()));
        }
        // None queued as far as committed writes show: a writer of those tables still open
        // would add events hashed as before. Not waited for (a SHARE lock waiting in the
        // queue would hold up every later writer): the command is refused.
        if let Some(r) = rows.iter().find(|r| !share_locked(r.target)) {
            return Some(Refusal::Open(r.table.clone(), r.column.clone()));
        }
        let rows = if rows.is_empty() { rows } else { read() };
        rows.into_iter()
            .find(|r| r.queued)
            .map(|r| Refusal::Queued(r.table, r.column))
    });
    match refusal {
        None => {}
        Some(Refusal::NotLockable(table)) => reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("cannot make this change to a type now: a webhook subscription orders the events of table {table} by values of a type it changes (order_key), and the change would have to hold that table's writers off until it commits, which only a role that may LOCK TABLE {table} IN SHARE MODE may do"),
            Some(&format!("have the owner of table {table} (or a role with UPDATE, DELETE or TRUNCATE on it and its partitions) make the change")),
        ),
        Some(Refusal::Open(table, column)) => reject(
            PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
            format!("cannot alter the type of column \"{column}\" of table {table} now: a transaction writing {table} is still open, and a webhook subscription orders that table's events by the column's values (order_key): events it writes would be keyed as before the change"),
            Some(&format!("try again, or take LOCK TABLE {table} IN SHARE MODE first in the same transaction (it waits for that table's writers)")),
        ),
        Some(Refusal::Queued(table, column)) => {
            refuse(&table, &format!("alter the type of column \"{column}\""))
        }
    }
}

/// Takes a SHARE lock on `table` and every table under it, if none has a writer now.
fn share_locked(table: pg_sys::Oid) -> bool {
    privilege::table_tree(table).into_iter().all(|relid| {
        // SAFETY: a conditional lock on an existing table, held to the end of the transaction.
        unsafe { pg_sys::ConditionalLockRelationOid(relid, pg_sys::ShareLock as i32) }
    })
}
