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

/// A primary key column: its name, the type its values are read back as (the column's type,
/// or a domain's base type), and the operators of its key index's operator class.
pub struct KeyColumn {
    pub name: String,
    pub base: pg_sys::Oid,
    /// `OPERATOR(schema.op)` for <, <=, =, >=, > (btree strategies 1 to 5): rows are compared
    /// and ordered as the key index orders them. An operator found by its bare name under the
    /// chunk's `search_path` (pg_catalog) could be another: for a citext key, text's, through
    /// the implicit cast, while ORDER BY used citext's, and the backfill skipped rows.
    operators: Vec<String>,
}

impl KeyColumn {
    fn op(&self, strategy: usize) -> &str {
        &self.operators[strategy - 1]
    }

    /// `alias.column USING <` for an ORDER BY in the key index's order.
    pub fn order_by(&self, alias: &str) -> String {
        format!(
            "{alias}.{} USING {}",
            quote_identifier(&self.name),
            self.op(LESS)
        )
    }
}

/// The key's column names, and its ORDER BY items over `alias`.
pub fn names_and_order(pk: &[KeyColumn], alias: &str) -> (Vec<String>, Vec<String>) {
    (
        pk.iter().map(|c| c.name.clone()).collect(),
        pk.iter().map(|c| c.order_by(alias)).collect(),
    )
}

const LESS: usize = 1;
const LESS_EQUAL: usize = 2;
const EQUAL: usize = 3;
const GREATER_EQUAL: usize = 4;
const GREATER: usize = 5;

/// The primary key of `table`, in key order; empty when it has none.
pub fn primary_key(client: &SpiClient<'_>, table: pg_sys::Oid) -> SpiResult<Vec<KeyColumn>> {
    let mut out = Vec::new();
    for row in client.select(PRIMARY_KEY, None, &[table.into()])? {
        let name = row.get::<String>(1)?.unwrap_or_default();
        let typid: pg_sys::Oid = row.get(2)?.unwrap_or(pg_sys::Oid::INVALID);
        let operators: Vec<String> = row
            .get::<Vec<Option<String>>>(3)?
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect();
        if operators.len() != GREATER {
            pgrx::error!(
                "pg_webhook backfill: the operator class of primary key column \"{name}\" does not have the five btree comparison operators"
            );
        }
        out.push(KeyColumn {
            name,
            // SAFETY: a catalog lookup of the column's existing type.
            base: unsafe { pg_sys::getBaseType(typid) },
            operators,
        });
    }
    Ok(out)
}

/// The condition that the key `(t.a, t.b, …)` comes after (`strict` = GREATER) or not after
/// (LESS_EQUAL) the values in the parameters from `first` on, in the key index's order. One row
/// comparison when every column's operator is the same one by name (then the index bounds the
/// scan); else spelled out column by column, the first column bounding the scan.
fn compared(pk: &[KeyColumn], first: usize, last: usize) -> String {
    let column = |c: &KeyColumn| format!("t.{}", quote_identifier(&c.name));
    let param = |i: usize| format!("${}", first + i);
    if pk.iter().all(|c| c.op(last) == pk[0].op(last)) {
        let columns: Vec<String> = pk.iter().map(column).collect();
        let params: Vec<String> = (0..pk.len()).map(param).collect();
        return format!(
            "({}) {} ({})",
            columns.join(", "),
            pk[0].op(last),
            params.join(", ")
        );
    }
    // (a > $1) OR (a = $1 AND b > $2) OR …, the last column with `last`; the first column's
    // non-strict bound in front.
    let strict = if last == GREATER { GREATER } else { LESS };
    let loose = if last == GREATER {
        GREATER_EQUAL
    } else {
        LESS_EQUAL
    };
    let alternatives: Vec<String> = (0..pk.len())
        .map(|i| {
            let mut terms: Vec<String> = (0..i)
                .map(|j| format!("{} {} {}", column(&pk[j]), pk[j].op(EQUAL), param(j)))
                .collect();
            let op = if i + 1 == pk.len() { last } else { strict };
            terms.push(format!("{} {} {}", column(&pk[i]), pk[i].op(op), param(i)));
            format!("({})", terms.join(" AND "))
        })
        .collect();
    format!(
        "{} {} {} AND ({})",
        column(&pk[0]),
        pk[0].op(loose),
        param(0),
        alternatives.join(" OR ")
    )
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
    let mut conditions = Vec::new();
    if after {
        conditions.push(compared(pk, 1, GREATER));
    }
    if through {
        conditions.push(compared(pk, 1 + pk.len(), LESS_EQUAL));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
    let order: Vec<String> = pk.iter().map(|c| c.order_by("t")).collect();
    format!(
        "SELECT t.* FROM {table} AS t{filter} ORDER BY {}{limit}",
        order.join(", ")
    )
}

/// The parameters of `rows_query`: `after`'s values, then `through`'s (nulls where absent, so
/// the numbering holds), each read by its base type's input function as `table_owner`,
/// sandboxed, read-only and rolled back, in the runner process of `subscriber`: only code of
/// roles with the rights of both runs (`analysis_guard::reading_key_for`). The values live in
/// the current memory context.
pub fn bounds(
    pk: &[KeyColumn],
    after: Option<&Key>,
    through: Option<&Key>,
    table_owner: pg_sys::Oid,
    subscriber: pg_sys::Oid,
) -> Vec<DatumWithOid<'static>> {
    crate::privilege::as_table_owner_read_only(table_owner, || {
        crate::analysis_guard::reading_key_for(subscriber, || {
            crate::sql::with_settings(&KEY_SETTINGS, || {
                let mut args = values(pk, after);
                if through.is_some() {
                    args.extend(values(pk, through));
                }
                args
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
