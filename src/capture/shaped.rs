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

/// The order key's text column of a query over `alias` (empty without a key).
fn key_text(key: Option<&[Option<String>]>, alias: &str) -> String {
    match key {
        Some(columns) => {
            let parts: Vec<String> = columns
                .iter()
                .map(|c| match c {
                    Some(c) => format!("pg_catalog.format('%L', {alias}.{})", quote_identifier(c)),
                    None => quote_literal(super::order_key::GONE),
                })
                .collect();
            format!(", pg_catalog.concat_ws(',', {})", parts.join(", "))
        }
        None => String::new(),
    }
}

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
        let key_text = |alias: &str| key_text(key, alias);
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
            Operation::Truncate | Operation::Backfill => {
                "SELECT NULL::pg_catalog.jsonb, NULL::pg_catalog.jsonb".into()
            }
        }
    }

    /// The query a backfill chunk runs over `rows` (a query returning the table's rows after
    /// the last key, in key order): per row, the event's record as capture would make it for an
    /// INSERT of the row (NULL when it does not pass), whether it passes the subscription's
    /// filter and the backfill's own (`also`), the row's primary key (`pk`) as text, and with an
    /// order key its text as in `query`. The subscription's filter sees the row as both NEW and
    /// OLD (it has no change to show, so a filter that asks for one passes nothing); `also` is
    /// a condition over the table's columns, which it may qualify with `table`.
    pub fn backfill_query(
        &self,
        rows: &str,
        pk: &[String],
        also: Option<&str>,
        table: &str,
        key: Option<&[Option<String>]>,
    ) -> String {
        let mut conditions = Vec::new();
        if let Some(f) = &self.filter {
            conditions.push(format!("CASE WHEN ({f}) THEN true ELSE false END"));
        }
        if let Some(also) = also {
            conditions.push(format!(
                "(SELECT CASE WHEN ({also}) THEN true ELSE false END FROM (SELECT new.*) AS {})",
                quote_identifier(table)
            ));
        }
        let pass = if conditions.is_empty() {
            "true".to_string()
        } else {
            conditions.join(" AND ")
        };
        let pk_text: Vec<String> = pk
            .iter()
            .map(|c| format!("new.{}::pg_catalog.text", quote_identifier(c)))
            .collect();
        let order: Vec<String> = pk
            .iter()
            .map(|c| format!("new.{}", quote_identifier(c)))
            .collect();
        format!(
            "SELECT CASE WHEN f.pass THEN {} END, f.pass, ARRAY[{}]{} \
               FROM ({rows}) AS new \
              CROSS JOIN LATERAL (SELECT new.*) AS old \
              CROSS JOIN LATERAL (SELECT {pass} AS pass) AS f \
              ORDER BY {}",
            self.projection("new", false),
            pk_text.join(", "),
            key_text(key, "new"),
            order.join(", ")
        )
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
