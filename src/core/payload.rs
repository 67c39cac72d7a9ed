//! The exact bytes a receiver gets. Built once per event and reused for every attempt, because
//! the signature covers the body byte for byte.

use std::fmt;
use std::str::FromStr;

pub use crate::operation::{parse_event_list, EventListError, Operation, UnknownOperation};

use bytes::Bytes;

/// One captured row change, as stored in the queue. `record` and `old_record` are JSON texts
/// produced by Postgres (`to_jsonb`), embedded verbatim so numerics keep every digit.
#[derive(Debug, Clone, Copy)]
pub struct RowChange<'a> {
    pub op: Operation,
    pub schema: &'a str,
    pub table: &'a str,
    pub record: Option<&'a str>,
    pub old_record: Option<&'a str>,
}

/// The default body, the shape Supabase database webhooks send, so existing receivers work:
/// `{"type":"INSERT","table":"t","schema":"public","record":{…},"old_record":null}`.
pub fn database_change_body(change: &RowChange<'_>) -> Bytes {
    Bytes::from(database_body(change.op.as_sql(), change))
}

fn database_body(type_sql: &str, change: &RowChange<'_>) -> String {
    let record_len = change.record.map_or(4, str::len) + change.old_record.map_or(4, str::len);
    let mut out = String::with_capacity(80 + change.schema.len() + change.table.len() + record_len);
    out.push_str("{\"type\":");
    push_json_string(&mut out, type_sql);
    out.push_str(",\"table\":");
    push_json_string(&mut out, change.table);
    out.push_str(",\"schema\":");
    push_json_string(&mut out, change.schema);
    out.push_str(",\"record\":");
    out.push_str(change.record.unwrap_or("null"));
    out.push_str(",\"old_record\":");
    out.push_str(change.old_record.unwrap_or("null"));
    out.push('}');
    out
}

/// How an event is shaped on the wire; chosen per subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `{"type":"INSERT","table":…,"schema":…,"record":…,"old_record":…}` (Supabase's shape).
    Database,
    /// The Standard Webhooks envelope: `{"type":"<table>.<op>","timestamp":…,"data":{…}}`.
    Standard,
    /// CloudEvents 1.0, structured JSON mode.
    CloudEvents,
}

/// Why a format name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown format '{}': use 'database', 'standard' or 'cloudevents'",
            self.0.escape_debug()
        )
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "database" => Ok(Format::Database),
            "standard" => Ok(Format::Standard),
            "cloudevents" => Ok(Format::CloudEvents),
            _ => Err(UnknownFormat(s.to_string())),
        }
    }
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Database => "database",
            Format::Standard => "standard",
            Format::CloudEvents => "cloudevents",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::CloudEvents => "application/cloudevents+json",
            _ => "application/json",
        }
    }
}

/// What every format needs besides the row change.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The webhook-id, reused as the CloudEvents `id`.
    pub message_id: &'a str,
    /// When the change was captured, RFC 3339.
    pub time: &'a str,
    /// The database name, for the CloudEvents `source`.
    pub database: &'a str,
}

/// The body of `change` in `format`.
pub fn body(format: Format, change: &RowChange<'_>, envelope: &Envelope<'_>) -> Bytes {
    let kind = (change.op.as_sql(), change.op.as_event_name());
    formatted(format, kind, change, envelope)
}

/// The body of a test event sent by `webhook.ping()`: the subscription's own format with the
/// event type `PING` (`<table>.ping` in the envelopes) and no row images, so a receiver can
/// tell it apart and still verify it like any other delivery.
pub fn ping_body(format: Format, schema: &str, table: &str, envelope: &Envelope<'_>) -> Bytes {
    let change = RowChange {
        // Only the row-less shape is used; the kind below names the event.
        op: Operation::Truncate,
        schema,
        table,
        record: None,
        old_record: None,
    };
    formatted(format, ("PING", "ping"), &change, envelope)
}

/// `kind` is the upper-case type of the default format and the lower-case event name of the
/// envelopes.
fn formatted(
    format: Format,
    (type_sql, type_name): (&str, &str),
    change: &RowChange<'_>,
    envelope: &Envelope<'_>,
) -> Bytes {
    let data = database_body(type_sql, change);
    let event_type = format!("{}.{type_name}", change.table);
    match format {
        Format::Database => Bytes::from(data),
        Format::Standard => {
            let mut out = String::with_capacity(60 + data.len());
            out.push_str("{\"type\":");
            push_json_string(&mut out, &event_type);
            out.push_str(",\"timestamp\":");
            push_json_string(&mut out, envelope.time);
            out.push_str(",\"data\":");
            out.push_str(&data);
            out.push('}');
            Bytes::from(out)
        }
        Format::CloudEvents => {
            let mut out = String::with_capacity(200 + data.len());
            out.push_str("{\"specversion\":\"1.0\",\"id\":");
            push_json_string(&mut out, envelope.message_id);
            out.push_str(",\"source\":");
            push_json_string(
                &mut out,
                &format!(
                    "/pg_webhook/{}/{}/{}",
                    envelope.database, change.schema, change.table
                ),
            );
            out.push_str(",\"type\":");
            push_json_string(&mut out, &format!("pg_webhook.{event_type}"));
            out.push_str(",\"time\":");
            push_json_string(&mut out, envelope.time);
            out.push_str(",\"datacontenttype\":\"application/json\",\"data\":");
            out.push_str(&data);
            out.push('}');
            Bytes::from(out)
        }
    }
}

fn push_json_string(out: &mut String, s: &str) {
    // serde_json's escaping is the reference; a str always serialises.
    out.push_str(&serde_json::Value::from(s).to_string());
}

/// The `webhook-id` of an event: stable across retries and replays, and unique across
/// databases because every subscription carries its own random `uid`.
pub fn message_id(subscription_uid: &str, event_id: i64) -> String {
    format!("msg_{subscription_uid}_{event_id}")
}

/// A fresh random subscription `uid`: 16 lower-case base32 characters (80 bits), so webhook-ids
/// from different subscriptions and databases never collide.
pub fn new_subscription_uid() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[(b & 31) as usize] as char)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_has_the_subscription_format_and_no_rows() {
        let envelope = Envelope {
            message_id: "msg_x_ping_1",
            time: "2026-01-01T00:00:00Z",
            database: "db",
        };
        let db: serde_json::Value =
            serde_json::from_slice(&ping_body(Format::Database, "public", "orders", &envelope))
                .unwrap();
        assert_eq!(db["type"], "PING");
        assert_eq!(db["table"], "orders");
        assert!(db["record"].is_null() && db["old_record"].is_null());
        let standard: serde_json::Value =
            serde_json::from_slice(&ping_body(Format::Standard, "public", "orders", &envelope))
                .unwrap();
        assert_eq!(standard["type"], "orders.ping");
        assert_eq!(standard["data"]["type"], "PING");
        let cloud: serde_json::Value = serde_json::from_slice(&ping_body(
            Format::CloudEvents,
            "public",
            "orders",
            &envelope,
        ))
        .unwrap();
        assert_eq!(cloud["type"], "pg_webhook.orders.ping");
        assert_eq!(cloud["id"], "msg_x_ping_1");
    }

    #[test]
    fn insert_body_has_the_supabase_shape() {
        let body = database_change_body(&RowChange {
            op: Operation::Insert,
            schema: "public",
            table: "orders",
            record: Some(r#"{"id": 1, "total": 42.00}"#),
            old_record: None,
        });
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"type":"INSERT","table":"orders","schema":"public","record":{"id": 1, "total": 42.00},"old_record":null}"#
        );
    }

    #[test]
    fn body_is_valid_json_and_keeps_exact_numerics() {
        let body = database_change_body(&RowChange {
            op: Operation::Update,
            schema: "we\"ird",
            table: "tab\nle",
            record: Some(r#"{"n": 12345678901234567890.1234567890}"#),
            old_record: Some(r#"{"n": 1}"#),
        });
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["schema"], "we\"ird");
        assert_eq!(v["table"], "tab\nle");
        assert_eq!(v["type"], "UPDATE");
        assert!(std::str::from_utf8(&body)
            .unwrap()
            .contains("12345678901234567890.1234567890"));
    }

    #[test]
    fn delete_carries_only_the_old_record() {
        let body = database_change_body(&RowChange {
            op: Operation::Delete,
            schema: "s",
            table: "t",
            record: None,
            old_record: Some("{}"),
        });
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["record"].is_null());
        assert!(v["old_record"].is_object());
    }

    #[test]
    fn truncate_is_an_event_kind_with_no_rows() {
        assert_eq!(
            parse_event_list(&[Some("TRUNCATE")]).unwrap(),
            vec![Operation::Truncate]
        );
        let body = database_change_body(&RowChange {
            op: Operation::Truncate,
            schema: "s",
            table: "t",
            record: None,
            old_record: None,
        });
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"type":"TRUNCATE","table":"t","schema":"s","record":null,"old_record":null}"#
        );
    }

    #[test]
    fn a_backfill_event_names_its_kind_in_every_format() {
        let change = RowChange {
            op: Operation::Backfill,
            schema: "public",
            table: "orders",
            record: Some(r#"{"id":1}"#),
            old_record: None,
        };
        let envelope = Envelope {
            message_id: "msg_x_1",
            time: "2026-11-30T08:00:00+00:00",
            database: "app",
        };
        let plain: serde_json::Value =
            serde_json::from_slice(&body(Format::Database, &change, &envelope)).unwrap();
        assert_eq!(plain["type"], "BACKFILL");
        assert_eq!(plain["record"]["id"], 1);
        assert!(plain["old_record"].is_null());
        let standard: serde_json::Value =
            serde_json::from_slice(&body(Format::Standard, &change, &envelope)).unwrap();
        assert_eq!(standard["type"], "orders.backfill");
        assert_eq!(standard["data"]["type"], "BACKFILL");
        let cloud: serde_json::Value =
            serde_json::from_slice(&body(Format::CloudEvents, &change, &envelope)).unwrap();
        assert_eq!(cloud["type"], "pg_webhook.orders.backfill");
    }

    #[test]
    fn uids_are_random_and_url_safe() {
        let a = new_subscription_uid().unwrap();
        assert_eq!(a.len(), 16);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)));
        assert_ne!(a, new_subscription_uid().unwrap());
    }

    #[test]
    fn standard_and_cloudevents_wrap_the_same_data() {
        let change = RowChange {
            op: Operation::Update,
            schema: "public",
            table: "orders",
            record: Some(r#"{"id": 1, "total": 2.50}"#),
            old_record: Some(r#"{"id": 1, "total": 1.00}"#),
        };
        let env = Envelope {
            message_id: "msg_abc_7",
            time: "2026-11-23T10:00:00.123456+00:00",
            database: "shop",
        };
        let standard: serde_json::Value =
            serde_json::from_slice(&body(Format::Standard, &change, &env)).unwrap();
        assert_eq!(standard["type"], "orders.update");
        assert_eq!(standard["timestamp"], env.time);
        assert_eq!(standard["data"]["record"]["id"], 1);
        assert_eq!(standard["data"]["type"], "UPDATE");
        let ce: serde_json::Value =
            serde_json::from_slice(&body(Format::CloudEvents, &change, &env)).unwrap();
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["id"], "msg_abc_7");
        assert_eq!(ce["source"], "/pg_webhook/shop/public/orders");
        assert_eq!(ce["type"], "pg_webhook.orders.update");
        assert_eq!(ce["datacontenttype"], "application/json");
        assert_eq!(ce["data"]["old_record"]["total"], 1.0);
        assert!(
            std::str::from_utf8(&body(Format::CloudEvents, &change, &env))
                .unwrap()
                .contains("2.50")
        );
        assert_eq!(
            Format::CloudEvents.content_type(),
            "application/cloudevents+json"
        );
        assert_eq!(
            body(Format::Database, &change, &env),
            database_change_body(&change)
        );
    }

    #[test]
    fn formats_parse_by_name() {
        assert_eq!(
            "CloudEvents".parse::<Format>().unwrap(),
            Format::CloudEvents
        );
        assert_eq!(" standard ".parse::<Format>().unwrap(), Format::Standard);
        let e = "xml".parse::<Format>().unwrap_err();
        assert!(e
            .to_string()
            .contains("'database', 'standard' or 'cloudevents'"));
    }

    #[test]
    fn message_ids_are_stable() {
        assert_eq!(message_id("k3x9", 42), "msg_k3x9_42");
    }
}
