//! Subscriptions that filter rows or select columns: the rows are chosen and shaped by a SQL
//! query over the transition tables, then written to the queue like any other capture.
//!
//! The query holds user-written SQL (the filter), so it runs as the subscription's owner —
//! never as the extension owner, nor as whoever happens to write the table — and with
//! `search_path` pinned to `pg_catalog`, so it means the same thing in every session.

use pg_webhook_core::payload::Operation;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};

use super::{NEW_ROWS, OLD_ROWS};

/// How a subscription shapes its events; stored in the capture trigger's arguments so a dump
/// and restore keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    /// A condition over NEW and OLD, as in a trigger's WHEN clause.
    pub filter: Option<String>,
    /// Send only these columns.
    pub columns: Option<Vec<String>>,
    /// Send all columns but these.
    pub exclude_columns: Option<Vec<String>>,
    /// Skip an UPDATE whose sent columns did not change.
    pub skip_unchanged: bool,
}

/// Column that pairs old and new rows of an UPDATE; kept out of the payload.
const ROW_NUMBER: &str = "pg_webhook_rn";

impl Shape {
    pub fn is_plain(&self) -> bool {
        self == &Shape::default()
    }

    /// Trigger arguments after the subscription id: owner, filter, columns, exclusions, flag.
    pub fn to_args(&self, owner: pg_sys::Oid) -> Vec<String> {
        let list = |l: &Option<Vec<String>>| {
            l.as_ref()
                .map(|v| serde_json::Value::from(v.clone()).to_string())
                .unwrap_or_default()
        };
        vec![
            owner.to_u32().to_string(),
            self.filter.clone().unwrap_or_default(),
            list(&self.columns),
            list(&self.exclude_columns),
            self.skip_unchanged.to_string(),
        ]
    }

    /// The inverse of `to_args`; `None` when they are not ours.
    pub fn from_args(args: &[String]) -> Option<(pg_sys::Oid, Shape)> {
        let [owner, filter, columns, exclude, skip] = args else {
            return None;
        };
        let list = |s: &str| -> Option<Option<Vec<String>>> {
            if s.is_empty() {
                return Some(None);
            }
            serde_json::from_str::<Vec<String>>(s).ok().map(Some)
        };
        Some((
            pg_sys::Oid::from(owner.parse::<u32>().ok()?),
            Shape {
                filter: (!filter.is_empty()).then(|| filter.clone()),
                columns: list(columns)?,
                exclude_columns: list(exclude)?,
                skip_unchanged: skip == "true",
            },
        ))
    }

    /// The row image sent for `alias`.
    fn projection(&self, alias: &str, paired: bool) -> String {
        if let Some(columns) = &self.columns {
            let pairs: Vec<String> = columns
                .iter()
                .map(|c| format!("{}, {alias}.{}", quote_literal(c), quote_identifier(c)))
                .collect();
            return format!("pg_catalog.jsonb_build_object({})", pairs.join(", "));
        }
        let mut drop: Vec<String> = self
            .exclude_columns
            .iter()
            .flatten()
            .map(quote_literal)
            .collect();
        if paired {
            drop.push(quote_literal(ROW_NUMBER));
        }
        if drop.is_empty() {
            format!("pg_catalog.to_jsonb({alias}.*)")
        } else {
            format!(
                "(pg_catalog.to_jsonb({alias}.*) OPERATOR(pg_catalog.-) ARRAY[{}]::pg_catalog.text[])",
                drop.join(", ")
            )
        }
    }

    fn condition(&self, op: Operation) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &self.filter {
            parts.push(format!("({f})"));
        }
        if op == Operation::Update && self.skip_unchanged {
            parts.push(format!(
                "{} IS DISTINCT FROM {}",
                self.projection("new", true),
                self.projection("old", true)
            ));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", parts.join(" AND "))
        }
    }

    /// The query yielding (record, old_record) per qualifying row, in statement order.
    pub fn query(&self, op: Operation) -> String {
        match op {
            Operation::Insert => format!(
                "SELECT {}, NULL::pg_catalog.jsonb FROM {NEW_ROWS} AS new{}",
                self.projection("new", false),
                self.condition(op)
            ),
            Operation::Delete => format!(
                "SELECT NULL::pg_catalog.jsonb, {} FROM {OLD_ROWS} AS old{}",
                self.projection("old", false),
                self.condition(op)
            ),
            Operation::Update => format!(
                "SELECT {}, {} \
                   FROM (SELECT pg_catalog.row_number() OVER () AS {ROW_NUMBER}, n.* FROM {NEW_ROWS} n) AS new \
                   JOIN (SELECT pg_catalog.row_number() OVER () AS {ROW_NUMBER}, o.* FROM {OLD_ROWS} o) AS old \
                     ON new.{ROW_NUMBER} OPERATOR(pg_catalog.=) old.{ROW_NUMBER}{} \
                  ORDER BY new.{ROW_NUMBER}",
                self.projection("new", true),
                self.projection("old", true),
                self.condition(op)
            ),
            Operation::Truncate => "SELECT NULL::pg_catalog.jsonb, NULL::pg_catalog.jsonb".into(),
        }
    }

    /// The same query over the table itself, for checking the filter and columns at
    /// subscribe time (no rows are read).
    pub fn validation_query(&self, op: Operation, table: &str) -> String {
        let from = match op {
            Operation::Insert => format!("{table} AS new"),
            Operation::Delete => format!("{table} AS old"),
            _ => format!("{table} AS new, {table} AS old"),
        };
        let (record, old) = match op {
            Operation::Insert => (self.projection("new", false), "NULL".to_string()),
            Operation::Delete => ("NULL".to_string(), self.projection("old", false)),
            _ => (self.projection("new", false), self.projection("old", false)),
        };
        let condition = self.condition(op);
        let filter_type = match &self.filter {
            // A filter must be a boolean, like a WHEN clause.
            Some(f) => format!(", (({f}))::pg_catalog.bool"),
            None => String::new(),
        };
        format!("SELECT {record}, {old}{filter_type} FROM {from}{condition} LIMIT 0")
    }
}

/// Runs `f` as `role` with `search_path` = `pg_catalog, pg_temp`, restoring both afterwards;
/// an ERROR inside rolls both back with the (sub)transaction.
pub fn as_role_with_pinned_path<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    crate::privilege::as_role(role, || {
        // SAFETY: a GUC nest level, undone below.
        let nest = unsafe { pg_sys::NewGUCNestLevel() };
        // SAFETY: valid C strings; a session-level save that AtEOXact_GUC undoes.
        unsafe {
            pg_sys::set_config_option(
                c"search_path".as_ptr(),
                c"pg_catalog, pg_temp".as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        let result = f();
        // SAFETY: restores exactly what was saved above.
        unsafe { pg_sys::AtEOXact_GUC(true, nest) };
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_round_trip_through_trigger_arguments() {
        let shape = Shape {
            filter: Some("NEW.total > 100".into()),
            columns: None,
            exclude_columns: Some(vec!["ssn".into(), "we\"ird".into()]),
            skip_unchanged: true,
        };
        let args = shape.to_args(pg_sys::Oid::from(42u32));
        let (owner, back) = Shape::from_args(&args).unwrap();
        assert_eq!(owner, pg_sys::Oid::from(42u32));
        assert_eq!(back, shape);
        assert!(Shape::default().is_plain());
        assert!(Shape::from_args(&["1".into()]).is_none());
    }
}
