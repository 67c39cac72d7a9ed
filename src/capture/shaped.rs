//! Subscriptions that filter rows, select columns or build their payload in SQL: the rows are
//! chosen and shaped by a SQL query over the transition tables, then written to the queue like
//! any other capture.
//!
//! The query holds user-written SQL (the filter, the payload), so it runs as the subscription's
//! owner —
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
    /// An expression over NEW and OLD whose `jsonb` value is sent as `record` (and `old_record`
    /// is null) instead of the row images.
    pub payload: Option<String>,
}

/// The column that pairs old and new rows of an UPDATE: `pg_webhook_rn`, or with a numeric
/// suffix when the table has a column of that name.
fn row_number_column(columns: &[String]) -> String {
    const ROW_NUMBER: &str = "pg_webhook_rn";
    let mut name = ROW_NUMBER.to_string();
    let mut n = 0;
    while columns.contains(&name) {
        n += 1;
        name = format!("{ROW_NUMBER}_{n}");
    }
    name
}

/// The order key's columns of a query over `alias` that are still there (none without a key):
/// their values, hashed as capture hashes them (see `order_key::KeyHashers`).
fn key_columns(key: Option<&[Option<String>]>, alias: &str) -> String {
    key.into_iter()
        .flatten()
        .flatten()
        .map(|c| format!(", {alias}.{}", quote_identifier(c)))
        .collect()
}

impl Shape {
    pub fn is_plain(&self) -> bool {
        self == &Shape::default()
    }

    /// The row image sent for `alias`.
    fn projection(&self, alias: &str) -> String {
        if let Some(columns) = &self.columns {
            let pairs: Vec<String> = columns
                .iter()
                .map(|c| format!("{}, {alias}.{}", quote_literal(c), quote_identifier(c)))
                .collect();
            return format!("pg_catalog.jsonb_build_object({})", pairs.join(", "));
        }
        let drop: Vec<String> = self
            .exclude_columns
            .iter()
            .flatten()
            .map(quote_literal)
            .collect();
        if drop.is_empty() {
            format!("pg_catalog.to_jsonb({alias}.*)")
        } else {
            format!(
                "(pg_catalog.to_jsonb({alias}.*) OPERATOR(pg_catalog.-) ARRAY[{}]::pg_catalog.text[])",
                drop.join(", ")
            )
        }
    }

    /// What is sent as (record, old_record) for `op`: the payload expression's value and
    /// null, or the row images the operation has.
    fn images(&self, op: Operation) -> (String, String) {
        const NONE: &str = "NULL::pg_catalog.jsonb";
        match (&self.payload, op) {
            // A TRUNCATE has no rows to build a payload from (refused at subscribe); a
            // backfill's rows are read by `backfill_query`.
            (_, Operation::Truncate | Operation::Backfill) => return (NONE.into(), NONE.into()),
            // Checked at subscribe to be jsonb or json; the cast makes a json one jsonb.
            (Some(payload), _) => {
                return (format!("(({payload}))::pg_catalog.jsonb"), NONE.into());
            }
            (None, _) => {}
        }
        match op {
            Operation::Insert => (self.projection("new"), NONE.into()),
            Operation::Delete => (NONE.into(), self.projection("old")),
            Operation::Update => (self.projection("new"), self.projection("old")),
            Operation::Truncate | Operation::Backfill => (NONE.into(), NONE.into()),
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
                self.projection("new"),
                self.projection("old")
            ));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", parts.join(" AND "))
        }
    }

    /// The query yielding (record, old_record) per qualifying row, in statement order, and
    /// with an order key (`key`) the values of its columns that are still there (`None`: gone),
    /// from the third column on.
    /// `columns` are the (live) columns of the rows, in order: the relation whose trigger fired.
    pub fn query(
        &self,
        op: Operation,
        key: Option<&[Option<String>]>,
        columns: &[String],
    ) -> String {
        let key_columns = |alias: &str| key_columns(key, alias);
        let (record, old_record) = self.images(op);
        match op {
            Operation::Insert => format!(
                "SELECT {record}, {old_record}{} FROM {NEW_ROWS} AS new{}",
                key_columns("new"),
                self.condition(op)
            ),
            Operation::Delete => format!(
                "SELECT {record}, {old_record}{} FROM {OLD_ROWS} AS old{}",
                key_columns("old"),
                self.condition(op)
            ),
            // Old and new rows pair up by position; `new` and `old` are then exactly the
            // table's columns, named one by one (the pairing number stays out of NEW.* and
            // to_jsonb(NEW)). Not `(whole_row).*`: over a transition table with a dropped
            // column, PostgreSQL 15 expands that with the wrong attribute numbers, so NEW.x
            // read another column (a filter dropped rows, a payload sent wrong values).
            Operation::Update => {
                let rn = row_number_column(columns);
                let pick = |from: &str| -> String {
                    columns
                        .iter()
                        .map(|c| format!("{from}.{}", quote_identifier(c)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!(
                    "SELECT {record}, {old_record}{} \
                       FROM (SELECT pg_catalog.row_number() OVER () AS {rn}, r.* \
                               FROM {NEW_ROWS} AS r) AS pg_webhook_n \
                       JOIN (SELECT pg_catalog.row_number() OVER () AS {rn}, r.* \
                               FROM {OLD_ROWS} AS r) AS pg_webhook_o \
                         ON pg_webhook_n.{rn} OPERATOR(pg_catalog.=) pg_webhook_o.{rn}, \
                       LATERAL (SELECT {}) AS new, \
                       LATERAL (SELECT {}) AS old{} \
                      ORDER BY pg_webhook_n.{rn}",
                    key_columns("new"),
                    pick("pg_webhook_n"),
                    pick("pg_webhook_o"),
                    self.condition(op)
                )
            }
            Operation::Truncate | Operation::Backfill => format!("SELECT {record}, {old_record}"),
        }
    }

    /// The query a backfill chunk runs over `rows` (a query returning the table's rows after
    /// the last key, in key order): per row, the event's record as capture would make it for an
    /// INSERT of the row — its columns, or the subscription's payload expression — (NULL when
    /// it does not pass), whether it passes the subscription's
    /// filter and the backfill's own (`also`), the row's primary key (`pk`) as text, and with an
    /// order key its columns as in `query` (from the fourth on). The subscription's filter sees
    /// the row as both NEW and OLD (it has no change to show, so a filter that asks for one
    /// passes nothing); `also` is a condition over the table's columns, which it may qualify
    /// with `table`.
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
            self.images(Operation::Insert).0,
            pk_text.join(", "),
            key_columns(key, "new"),
            order.join(", ")
        )
    }

    /// The same query over the table itself, for checking the filter, columns and payload at
    /// subscribe time (no rows are read). Its first column is what is sent as `record`, and a
    /// payload expression is not cast, so its type can be checked.
    ///
    /// `new` and `old` are subqueries, not the table: at capture they are transition tables
    /// (or their rows expanded), which have no system columns (`ctid`, `xmin`, `tableoid`), so
    /// an expression naming one must be refused here, not fail every write later.
    pub fn validation_query(&self, op: Operation, table: &str) -> String {
        let rows = format!("(SELECT * FROM {table})");
        let from = match op {
            Operation::Insert => format!("{rows} AS new"),
            Operation::Delete => format!("{rows} AS old"),
            _ => format!("{rows} AS new, {rows} AS old"),
        };
        let (record, old) = match (&self.payload, op) {
            (Some(payload), _) => (format!("({payload})"), "NULL".to_string()),
            (None, Operation::Insert) => (self.projection("new"), "NULL".to_string()),
            (None, Operation::Delete) => ("NULL".to_string(), self.projection("old")),
            (None, _) => (self.projection("new"), self.projection("old")),
        };
        let mut condition = self.condition(op);
        if let Some(payload) = &self.payload {
            // One value per row: in a WHERE clause PostgreSQL refuses aggregate, window and
            // set-returning functions, which at capture would merge or multiply events (or
            // fail every UPDATE, whose query is ordered by row).
            let check = format!("(({payload}) IS NULL OR true)");
            condition = if condition.is_empty() {
                format!(" WHERE {check}")
            } else {
                format!("{condition} AND {check}")
            };
        }
        let filter_type = match &self.filter {
            // A filter must be a boolean, like a WHEN clause.
            Some(f) => format!(", (({f}))::pg_catalog.bool"),
            None => String::new(),
        };
        format!("SELECT {record}, {old}{filter_type} FROM {from}{condition} LIMIT 0")
    }
}
