//! `order_key`: the columns whose values order a subscription's events. Checked against the
//! table once the table is known; the key's values are read from the changed rows themselves,
//! so the columns need not be among those sent.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::error::{invalid, reject, shown, spi};
use crate::privilege::caller;

const COLUMNS: &str = include_str!("../../sql/queries/order_key_columns.sql");
const COMPOSITES: &str = concat!(
    include_str!("../../sql/queries/order_key_composites.sql"),
    include_str!("../../sql/queries/key_type_reach.sql"),
    include_str!("../../sql/queries/order_key_composites_tail.sql")
);
/// More columns than this make a key no one needs.
const MOST_COLUMNS: usize = 8;

/// Checks that `key` names 1 to 8 distinct columns of the table that the caller may read.
pub fn check(table: pg_sys::Oid, qualified: &str, key: &[String]) {
    if key.is_empty() || key.len() > MOST_COLUMNS {
        invalid(format!(
            "order_key has {} columns: give 1 to {MOST_COLUMNS} column names (or leave it NULL for no per-key order)",
            key.len()
        ));
    }
    for (i, name) in key.iter().enumerate() {
        if key[..i].contains(name) {
            invalid(format!("order_key names column \"{}\" twice", shown(name)));
        }
    }
    let found: Vec<(String, bool, bool)> = spi(
        "checking the order key columns",
        Spi::connect(|client| {
            client
                .select(
                    COLUMNS,
                    None,
                    &[table.into(), key.to_vec().into(), caller().into()],
                )?
                .map(|r| {
                    Ok((
                        r.get::<String>(1)?.unwrap_or_default(),
                        r.get::<bool>(2)?.unwrap_or(false),
                        r.get::<bool>(3)?.unwrap_or(false),
                    ))
                })
                .collect::<pgrx::spi::SpiResult<Vec<_>>>()
        }),
    );
    for (name, exists, readable) in found {
        if !exists {
            invalid(format!(
                "order_key column \"{}\" does not exist in {qualified}: give the names of its columns (case-sensitive, as in pg_attribute)",
                shown(&name)
            ));
        }
        if !readable {
            reject(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("permission denied for column \"{name}\" of {qualified}: the order key's values are read as you"),
                None,
            );
        }
    }
    composites_owned_by_lockers(table, qualified, key);
}

/// Refuses a key whose values reach a composite type (or a table's row type) whose owner may
/// not lock `table` in SHARE mode. A change to that type (ALTER TYPE ... ADD ATTRIBUTE, a
/// column added to the table) changes the keys' hashes, so pg_webhook refuses it while the
/// subscription has events queued and otherwise holds the table's writers off until it
/// commits, which only a role that may lock the table does (`triggers::key_types`): keyed by
/// another role's type, a subscription would stop that role from changing it at all.
fn composites_owned_by_lockers(table: pg_sys::Oid, qualified: &str, key: &[String]) {
    let reached: Vec<(String, String, pg_sys::Oid)> = spi(
        "checking the types the order key's values reach",
        Spi::connect(|client| {
            client
                .select(COMPOSITES, None, &[table.into(), key.to_vec().into()])?
                .map(|r| {
                    Ok((
                        r.get::<String>(1)?.unwrap_or_default(),
                        r.get::<String>(2)?.unwrap_or_default(),
                        r.get::<pg_sys::Oid>(3)?.unwrap_or(pg_sys::Oid::INVALID),
                    ))
                })
                .collect::<pgrx::spi::SpiResult<Vec<_>>>()
        }),
    );
    for (column, type_name, owner) in reached {
        if !crate::privilege::may_lock_tree_in_share_mode(table, owner) {
            invalid(format!(
                "order_key column \"{column}\" of {qualified} holds values of type {type_name}, whose owner, role {}, may not lock {qualified}: a change that role makes to its type would change the keys, and pg_webhook would refuse it (it cannot hold the table's writers off for a role without rights on it)",
                crate::privilege::role_name(owner)
            ));
        }
    }
}
