//! `order_key`: the columns whose values order a subscription's events. Checked against the
//! table once the table is known; the key's values are read from the changed rows themselves,
//! so the columns need not be among those sent.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::error::{invalid, reject, spi};
use crate::privilege::caller;

const COLUMNS: &str = include_str!("../../sql/queries/order_key_columns.sql");
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
            invalid(format!("order_key names column \"{name}\" twice"));
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
                "order_key column \"{name}\" does not exist in {qualified}: give the names of its columns (case-sensitive, as in pg_attribute)"
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
}
