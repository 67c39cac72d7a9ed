//! Checking a subscription's row filter, column selection and payload expression before
//! anything is created: a filter that does not parse, names unknown columns or is not a
//! boolean, or a payload that is not jsonb, is an error now, not a failing write later.

use pg_webhook_core::payload::Operation;
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::capture::shaped::Shape;
use crate::error::{invalid, spi, type_name};
use crate::privilege::{caller, sandboxed_check};

const COLUMNS: &str = include_str!("../../sql/queries/table_columns.sql");

fn list(items: Option<Vec<Option<String>>>, what: &str) -> Option<Vec<String>> {
    let items = items?;
    if items.is_empty() {
        invalid(format!(
            "{what} is empty: name at least one column, or pass NULL"
        ));
    }
    let mut out = Vec::new();
    for item in items {
        let Some(column) = item else {
            invalid(format!("{what} contains NULL: name columns only"))
        };
        if !out.contains(&column) {
            out.push(column);
        }
    }
    Some(out)
}

/// Takes the `payload` expression out of subscribe()'s options object (the rest are delivery
/// settings).
pub fn take_payload(options: Option<JsonB>) -> (Option<String>, Option<JsonB>) {
    let Some(JsonB(mut value)) = options else {
        return (None, None);
    };
    let payload = match value.as_object_mut().and_then(|o| o.remove("payload")) {
        None => None,
        Some(serde_json::Value::String(p)) => Some(p),
        Some(other) => invalid(format!(
            "payload must be the text of an SQL expression, not {other}"
        )),
    };
    (payload, Some(JsonB(value)))
}

/// The payload expression, refused where it cannot apply.
fn check_payload(
    payload: Option<&str>,
    events: &[Operation],
    columns: bool,
    skip_unchanged: bool,
) -> Option<String> {
    let payload = match payload.map(str::trim) {
        None => return None,
        Some("") => invalid(
            "payload is empty: give a jsonb expression over NEW and OLD such as jsonb_build_object('id', NEW.id), or pass NULL",
        ),
        Some(p) => p.to_string(),
    };
    crate::expression::ensure_one("payload", &payload, "jsonb_build_object('id', NEW.id)");
    if columns {
        invalid("payload builds what is sent: give payload or columns / exclude_columns, not both (pick the columns inside the expression)");
    }
    if skip_unchanged {
        invalid("skip_unchanged compares the sent columns, which a payload replaces: leave it out and give the condition as a filter, e.g. filter => 'NEW.total IS DISTINCT FROM OLD.total'");
    }
    if events.contains(&Operation::Truncate) {
        invalid("a payload cannot apply to truncate events, which have no rows: subscribe truncate separately");
    }
    Some(payload)
}

/// Runs `shape`'s validation query for `op` as the caller, sandboxed, reading no rows; returns
/// the type of what would be sent as `record`, or why the query is not valid.
fn validate(shape: &Shape, op: Operation, table: &str) -> Result<pg_sys::Oid, String> {
    let query = shape.validation_query(op, table);
    sandboxed_check(caller(), |client| {
        crate::checked_sql::select(client, &query, &[], None, |rows| {
            rows.column_type_oid(1).map(|t| t.value())
        })
    })
}

/// Validates and returns the shape; `table` is the quoted, qualified table name.
#[allow(clippy::too_many_arguments)]
pub fn check_shape(
    target: pg_sys::Oid,
    table: &str,
    events: &[Operation],
    filter: Option<&str>,
    columns: Option<Vec<Option<String>>>,
    exclude_columns: Option<Vec<Option<String>>>,
    skip_unchanged: bool,
    payload: Option<&str>,
) -> Shape {
    let columns = list(columns, "columns");
    let exclude_columns = list(exclude_columns, "exclude_columns");
    if columns.is_some() && exclude_columns.is_some() {
        invalid("give columns or exclude_columns, not both");
    }
    let payload = check_payload(
        payload,
        events,
        columns.is_some() || exclude_columns.is_some(),
        skip_unchanged,
    );
    let filter = match filter.map(str::trim) {
        Some("") => {
            invalid("filter is empty: give a condition such as 'NEW.total > 100', or pass NULL")
        }
        other => other.map(str::to_string),
    };
    if let Some(f) = &filter {
        crate::expression::ensure_one("filter", f, "'NEW.total > 100'");
    }
    if filter.is_some() && events.contains(&Operation::Truncate) {
        invalid("a filter cannot apply to truncate events, which have no rows: subscribe truncate separately");
    }
    let existing: Vec<String> = spi(
        "reading the table's columns",
        Spi::connect(|client| {
            let rows = client.select(COLUMNS, None, &[target.into()])?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.get::<String>(1)?.unwrap_or_default());
            }
            Ok(out)
        }),
    );
    for (what, names) in [("columns", &columns), ("exclude_columns", &exclude_columns)] {
        for name in names.iter().flatten() {
            if !existing.contains(name) {
                invalid(format!(
                    "{what} names \"{}\", which is not a column of {table}",
                    crate::error::shown(name)
                ));
            }
        }
    }
    let shape = Shape {
        filter,
        columns,
        exclude_columns,
        skip_unchanged,
        payload,
    };
    // The filter alone first, so an error names the part at fault.
    if shape.filter.is_some() {
        let filter_only = Shape {
            payload: None,
            ..shape.clone()
        };
        for op in events {
            if let Err(problem) = validate(&filter_only, *op, table) {
                invalid(format!(
                    "filter is not valid for {} events: {problem} (write it as in a trigger's WHEN clause, over NEW and OLD; names outside pg_catalog must be schema-qualified)",
                    op.as_event_name()
                ));
            }
        }
    }
    if let Some(payload) = &shape.payload {
        for op in events {
            let returns = validate(&shape, *op, table).unwrap_or_else(|problem| {
                invalid(format!(
                    "payload is not valid for {} events: {problem} (write a jsonb expression over NEW and OLD, one value per row without aggregate, window or set-returning functions — {} events have {}; names outside pg_catalog must be schema-qualified)",
                    op.as_event_name(),
                    op.as_event_name(),
                    match op {
                        Operation::Insert => "NEW only",
                        Operation::Delete => "OLD only",
                        _ => "NEW and OLD",
                    }
                ))
            });
            if returns != pg_sys::JSONBOID && returns != pg_sys::JSONOID {
                invalid(format!(
                    "payload must be jsonb, but {payload} is of type {}: build it with jsonb_build_object(...) or to_jsonb(...)",
                    type_name(returns)
                ));
            }
        }
    }
    shape
}
