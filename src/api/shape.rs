//! Checking a subscription's row filter and column selection before anything is created: a
//! filter that does not parse, names unknown columns or is not a boolean is an error now, not
//! a failing write later.

use pg_webhook_core::payload::Operation;
use pgrx::prelude::*;

use crate::capture::shaped::Shape;
use crate::error::{invalid, spi};
use crate::privilege::{caller, plan_problem};

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

/// Validates and returns the shape; `table` is the quoted, qualified table name.
pub fn check_shape(
    target: pg_sys::Oid,
    table: &str,
    events: &[Operation],
    filter: Option<&str>,
    columns: Option<Vec<Option<String>>>,
    exclude_columns: Option<Vec<Option<String>>>,
    skip_unchanged: bool,
) -> Shape {
    let columns = list(columns, "columns");
    let exclude_columns = list(exclude_columns, "exclude_columns");
    if columns.is_some() && exclude_columns.is_some() {
        invalid("give columns or exclude_columns, not both");
    }
    let filter = match filter.map(str::trim) {
        Some("") => {
            invalid("filter is empty: give a condition such as 'NEW.total > 100', or pass NULL")
        }
        other => other.map(str::to_string),
    };
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
                    "{what} names \"{name}\", which is not a column of {table}"
                ));
            }
        }
    }
    let shape = Shape {
        filter,
        columns,
        exclude_columns,
        skip_unchanged,
    };
    if shape.filter.is_some() {
        let role = caller();
        for op in events {
            let query = shape.validation_query(*op, table);
            if let Some(problem) = plan_problem(role, &query) {
                invalid(format!(
                    "filter is not valid for {} events: {problem} (write it as in a trigger's WHEN clause, over NEW and OLD; names outside pg_catalog must be schema-qualified)",
                    op.as_event_name()
                ));
            }
        }
    }
    shape
}
