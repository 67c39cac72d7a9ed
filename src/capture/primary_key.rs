//! A backfill's primary key: its columns, the query reading a table's rows after a key, and a
//! key's values kept as text between chunks.
//!
//! No value of the key goes through a cast. A cast to or from text of a column's type is a
//! function its owner may create at any time (`CREATE CAST` needs only ownership of the type),
//! and a domain's checks are its owner's code; the chunk's query runs as the subscription's
//! owner, who chose neither. So a key is written as text by its type's output function, read
//! back by its base type's input function (as the table's owner, sandboxed: a composite key's
//! fields may be domains), and compared as the base type.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, SpiClient, SpiResult, SpiTupleTable};

const PRIMARY_KEY: &str = include_str!("../../sql/backfill/primary_key.sql");

/// The settings a key is written and read back under, whatever the database's or the worker's:
/// the database may set a DateStyle whose output (`Thu Jan 01 20:00:00 2026 IST`) the input
/// function reads back as another time (IST as Israel's), or `array_nulls = off`, which reads
/// an array's NULL back as the string. ISO dates carry numeric UTC offsets.
pub const KEY_SETTINGS: [(&std::ffi::CStr, &std::ffi::CStr); 4] = [
    (c"datestyle", c"ISO, YMD"),
    (c"intervalstyle", c"postgres"),
    (c"extra_float_digits", c"1"),
    (c"array_nulls", c"on"),
];

/// A primary key's values, as text, one per column (NULL stays NULL).
pub type Key = Vec<Option<String>>;

/// A primary key column: its name, and the type its values are compared and read back as
/// (the column's type, or a domain's base type).
pub struct KeyColumn {
    pub name: String,
    pub base: pg_sys::Oid,
}

/// The primary key of `table`, in key order; empty when it has none.
pub fn primary_key(client: &SpiClient<'_>, table: pg_sys::Oid) -> SpiResult<Vec<KeyColumn>> {
    let mut out = Vec::new();
    for row in client.select(PRIMARY_KEY, None, &[table.into()])? {
        let typid: pg_sys::Oid = row.get(2)?.unwrap_or(pg_sys::Oid::INVALID);
        out.push(KeyColumn {
            name: row.get::<String>(1)?.unwrap_or_default(),
            // SAFETY: a catalog lookup of the column's existing type.
            base: unsafe { pg_sys::getBaseType(typid) },
        });
    }
    Ok(out)
}

/// The query that reads the rows of a chunk from `table`: after the key given as parameters
/// 1..=n (`after`), up to the one given as n+1..=2n when `through` (a re-read), at most
/// `limit`; n is the key's width. See `bounds` for the parameters.
pub fn rows_query(
    table: &str,
    pk: &[KeyColumn],
    after: bool,
    through: bool,
    limit: Option<i64>,
) -> String {
    let columns: Vec<String> = pk
        .iter()
        .map(|c| format!("t.{}", quote_identifier(&c.name)))
        .collect();
    let bound = |first: usize| {
        let values: Vec<String> = (0..pk.len()).map(|i| format!("${}", first + i)).collect();
        format!("({})", values.join(", "))
    };
    let mut conditions = Vec::new();
    if after {
        conditions.push(format!("({}) > {}", columns.join(", "), bound(1)));
    }
    if through {
        conditions.push(format!(
            "({}) <= {}",
            columns.join(", "),
            bound(1 + pk.len())
        ));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
    format!(
        "SELECT t.* FROM {table} AS t{filter} ORDER BY {}{limit}",
        columns.join(", ")
    )
}

/// The parameters of `rows_query`: `after`'s values, then `through`'s (nulls where absent, so
/// the numbering holds), each read by its base type's input function as `table_owner`,
/// sandboxed, read-only and rolled back. The values live in the current memory context.
pub fn bounds(
    pk: &[KeyColumn],
    after: Option<&Key>,
    through: Option<&Key>,
    table_owner: pg_sys::Oid,
) -> Vec<DatumWithOid<'static>> {
    crate::error::undone(|| {
        crate::privilege::as_owner_sandboxed(table_owner, || {
            crate::privilege::read_only(|| {
                crate::sql::with_settings(&KEY_SETTINGS, || {
                    let mut args = values(pk, after);
                    if through.is_some() {
                        args.extend(values(pk, through));
                    }
                    args
                })
            })
        })
    })
}

fn values(pk: &[KeyColumn], key: Option<&Key>) -> Vec<DatumWithOid<'static>> {
    pk.iter()
        .enumerate()
        .map(|(i, column)| {
            let text = key.and_then(|k| k.get(i).cloned().flatten());
            match text {
                // SAFETY: the input function of the column's base type makes a value of it.
                Some(text) => unsafe { DatumWithOid::new(input(column.base, &text), column.base) },
                None => DatumWithOid::null_oid(column.base),
            }
        })
        .collect()
}

/// `text` read by the input function of type `typid`.
fn input(typid: pg_sys::Oid, text: &str) -> pg_sys::Datum {
    let text = std::ffi::CString::new(text).unwrap_or_else(|_| {
        pgrx::error!("pg_webhook backfill: a stored key value holds a zero byte: {text:?}")
    });
    let (mut function, mut ioparam) = (pg_sys::Oid::INVALID, pg_sys::Oid::INVALID);
    // SAFETY: catalog lookups of an existing type; the input function reads a C string.
    unsafe {
        pg_sys::getTypeInputInfo(typid, &mut function, &mut ioparam);
        pg_sys::OidInputFunctionCall(function, text.as_ptr().cast_mut(), ioparam, -1)
    }
}

/// The key of the current row of `rows`, whose columns `first`..`first + width` are the key's
/// values: as text, by their types' output functions. Call it under `KEY_SETTINGS`.
pub fn key_text(rows: &SpiTupleTable<'_>, first: usize, width: usize) -> SpiResult<Key> {
    (first..first + width)
        .map(|ordinal| {
            let typid = rows.column_type_oid(ordinal)?.value();
            let value = rows.get_datum_by_ordinal(ordinal)?;
            // SAFETY: a value of the column's type; the output function makes a C string.
            Ok(value.map(|datum| unsafe {
                let (mut function, mut varlena) = (pg_sys::Oid::INVALID, false);
                pg_sys::getTypeOutputInfo(typid, &mut function, &mut varlena);
                let text = pg_sys::OidOutputFunctionCall(function, datum);
                match std::ffi::CStr::from_ptr(text).to_str() {
                    Ok(text) => text.to_string(),
                    // Kept as it is or not at all: a key changed to fit would resume elsewhere.
                    Err(_) => pgrx::error!(
                        "pg_webhook backfill: a primary key value is not valid UTF-8 (a SQL_ASCII database?), so the backfill cannot keep its place"
                    ),
                }
            }))
        })
        .collect()
}
