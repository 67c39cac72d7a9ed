//! Subscriptions that filter rows, select columns or build their payload in SQL: a SQL query
//! over the transition tables chooses the rows and computes the payloads; capture renders the
//! chosen rows' images itself (`shaped_images`) and writes the queue like any other capture.
//!
//! The query holds user-written SQL (the filter, the payload), so it runs as the subscription's
//! owner —
//! never as the extension owner, nor as whoever happens to write the table — sandboxed (see
//! `privilege::as_owner_sandboxed`), so it means the same thing in every session and changes
//! nothing in the writer's.

use pg_webhook_core::payload::Operation;
use pgrx::spi::quote_identifier;

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

    /// Whether the row images sent include the column `name` (`columns`, `exclude_columns`).
    pub fn keeps(&self, name: &str) -> bool {
        match (&self.columns, &self.exclude_columns) {
            (Some(columns), _) => columns.iter().any(|c| c == name),
            (None, Some(excluded)) => !excluded.iter().any(|c| c == name),
            (None, None) => true,
        }
    }

    /// The payload expression's value for `op`, cast to jsonb (checked at subscribe to be
    /// jsonb or json), or a null jsonb when the subscription has none (or `op` has no rows).
    fn payload_value(&self, op: Operation) -> String {
        match (&self.payload, op) {
            (Some(payload), Operation::Insert | Operation::Update | Operation::Delete) => {
                format!("(({payload}))::pg_catalog.jsonb")
            }
            _ => "NULL::pg_catalog.jsonb".into(),
        }
    }

    fn condition(&self) -> String {
        match &self.filter {
            Some(f) => format!(" WHERE ({f})"),
            None => String::new(),
        }
    }

    /// The query that chooses a statement's rows, run as the subscription's owner: per row
    /// that passes the filter, in statement order, the payload expression's value (null
    /// without one), the row's position in the transition table(s) (from 1), and with an order
    /// key (`key`) the values of its columns that are still there (`None`: gone), from the
    /// third column on.
    ///
    /// The row images are not made here but by capture, as the writer, from the rows at those
    /// positions (see `shaped_images`): rendering a row can run code of others — a cast to
    /// json of a column's type, which that type's owner may create at any time — and such code
    /// runs as the writer, as in any trigger, never as the subscription's owner.
    /// `columns` are the (live) columns of the rows, in order: the relation whose trigger fired.
    pub fn query(
        &self,
        op: Operation,
        key: Option<&[Option<String>]>,
        columns: &[String],
    ) -> String {
        let payload = self.payload_value(op);
        let rn = row_number_column(columns);
        // `new` and `old` are exactly the table's columns, named one by one (the position
        // stays out of NEW.* and to_jsonb(NEW)). Not `(whole_row).*`: over a transition table
        // with a dropped column, PostgreSQL 15 expands that with the wrong attribute numbers, so
        // NEW.x read another column (a filter dropped rows, a payload sent wrong values).
        let numbered = |store: &str, alias: &str| -> String {
            let picked: Vec<String> = columns
                .iter()
                .map(|c| format!("pg_webhook_{alias}.{}", quote_identifier(c)))
                .collect();
            format!(
                "(SELECT pg_catalog.row_number() OVER () AS {rn}, r.* FROM {store} AS r) \
                   AS pg_webhook_{alias}, \
                 LATERAL (SELECT {}) AS {alias}",
                picked.join(", ")
            )
        };
        let (from, first) = match op {
            Operation::Insert => (numbered(NEW_ROWS, "new"), "new"),
            Operation::Delete => (numbered(OLD_ROWS, "old"), "old"),
            // Old and new rows pair up by position.
            Operation::Update => (
                format!(
                    "{}, {} WHERE pg_webhook_new.{rn} OPERATOR(pg_catalog.=) pg_webhook_old.{rn}",
                    numbered(NEW_ROWS, "new"),
                    numbered(OLD_ROWS, "old")
                ),
                "new",
            ),
            Operation::Truncate | Operation::Backfill => {
                return format!("SELECT {payload}, 0::pg_catalog.int8");
            }
        };
        let condition = match (&self.filter, op) {
            (Some(f), Operation::Update) => format!(" AND ({f})"),
            _ => self.condition(),
        };
        format!(
            "SELECT {payload}, pg_webhook_{first}.{rn}{} FROM {from}{condition} \
              ORDER BY pg_webhook_{first}.{rn}",
            key_columns(key, first),
        )
    }

    /// The query a backfill chunk runs over `rows` (a query returning the table's rows after
    /// the last key, in key order): per row, the subscription's payload expression's value (NULL
    /// without one, or when the row does not pass), whether it passes the subscription's
    /// filter and the backfill's own (`also`), the row itself as a record when the subscription
    /// has no payload expression (and the row passes: capture renders it, see `query`), the
    /// values of its primary key (`pk`) from the fourth column on, and with an order key its
    /// columns as in `query` after them; in key order (`order_by`, over `new`). The subscription's filter sees
    /// the row as both NEW and OLD (it has no change to show, so a filter that asks for one
    /// passes nothing); `also` is a condition over the table's columns, which it may qualify
    /// with `table`.
    pub fn backfill_query(
        &self,
        rows: &str,
        pk: &[String],
        order_by: &[String],
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
        // The key's values as they are (capture writes them as text, see `primary_key`).
        let values: Vec<String> = pk
            .iter()
            .map(|c| format!("new.{}", quote_identifier(c)))
            .collect();
        // The row itself (a record of the table's columns) when capture renders it.
        let row = match &self.payload {
            Some(_) => "NULL",
            None => "CASE WHEN f.pass THEN new.* END",
        };
        format!(
            "SELECT CASE WHEN f.pass THEN {} END, f.pass, {row}, {}{} \
               FROM ({rows}) AS new \
              CROSS JOIN LATERAL (SELECT new.*) AS old \
              CROSS JOIN LATERAL (SELECT {pass} AS pass) AS f \
              ORDER BY {}",
            self.payload_value(Operation::Insert),
            values.join(", "),
            key_columns(key, "new"),
            order_by.join(", ")
        )
    }

    /// The same query over the table itself, for checking the filter and payload at subscribe
    /// time (no rows are read). Its first column is the payload expression's value, not cast,
    /// so its type can be checked (a null jsonb without one).
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
        // Row images are rendered by capture, not by this query: rendering them here would
        // call the column types' casts to json, code the subscriber did not write.
        let record = match &self.payload {
            Some(payload) => format!("({payload})"),
            None => "NULL::pg_catalog.jsonb".to_string(),
        };
        let mut condition = self.condition();
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
        format!("SELECT {record}{filter_type} FROM {from}{condition} LIMIT 0")
    }
}
