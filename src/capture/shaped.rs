//! Subscriptions that filter rows or select columns: the rows are chosen and shaped by a SQL
//! query over the transition tables, then written to the queue like any other capture.
//!
//! The query holds user-written SQL (the filter), so it runs as the subscription's owner —
//! never as the extension owner, nor as whoever happens to write the table — sandboxed (see
//! `privilege::as_owner_sandboxed`), so it means the same thing in every session and changes
//! nothing in the writer's.

use pg_webhook_core::payload::Operation;
use pgrx::spi::{quote_identifier, quote_literal};

use super::{NEW_ROWS, OLD_ROWS};

/// How a subscription shapes its events, as stored on its row.
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

    /// The query yielding (record, old_record) per qualifying row, in statement order, and
    /// with an order key (`key`) the text of its columns' values as `order_key` hashes it.
    /// A key column that is gone (`None`) contributes `order_key::GONE`.
    pub fn query(&self, op: Operation, key: Option<&[Option<String>]>) -> String {
        let key_text = |alias: &str| match key {
            Some(columns) => {
                let parts: Vec<String> = columns
                    .iter()
                    .map(|c| match c {
                        Some(c) => {
                            format!("pg_catalog.format('%L', {alias}.{})", quote_identifier(c))
                        }
                        None => quote_literal(super::order_key::GONE),
                    })
                    .collect();
                format!(", pg_catalog.concat_ws(',', {})", parts.join(", "))
            }
            None => String::new(),
        };
        match op {
            Operation::Insert => format!(
                "SELECT {}, NULL::pg_catalog.jsonb{} FROM {NEW_ROWS} AS new{}",
                self.projection("new", false),
                key_text("new"),
                self.condition(op)
            ),
            Operation::Delete => format!(
                "SELECT NULL::pg_catalog.jsonb, {}{} FROM {OLD_ROWS} AS old{}",
                self.projection("old", false),
                key_text("old"),
                self.condition(op)
            ),
            Operation::Update => format!(
                "SELECT {}, {}{} \
                   FROM (SELECT pg_catalog.row_number() OVER () AS {ROW_NUMBER}, n.* FROM {NEW_ROWS} n) AS new \
                   JOIN (SELECT pg_catalog.row_number() OVER () AS {ROW_NUMBER}, o.* FROM {OLD_ROWS} o) AS old \
                     ON new.{ROW_NUMBER} OPERATOR(pg_catalog.=) old.{ROW_NUMBER}{} \
                  ORDER BY new.{ROW_NUMBER}",
                self.projection("new", true),
                self.projection("old", true),
                key_text("new"),
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
