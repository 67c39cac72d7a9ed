//! The exact bytes a receiver gets. Built once per event and reused for every attempt, because
//! the signature covers the body byte for byte.

use std::fmt;
use std::str::FromStr;

pub use crate::operation::{parse_event_list, EventListError, Operation, UnknownOperation};

use bytes::Bytes;

/// The largest row images (`record` and `old_record` together, counted as text: their
/// numbers' digits and strings' escapes too) a worker ever reads: an event with larger ones
/// dies unread, whatever `pg_webhook.max_payload_bytes` says. Capture does not even build
/// images larger than this (they would be past jsonb's own limit of 256 MiB soon after): such
/// an event is queued without them, to die with the reason.
pub const LARGEST_READABLE_IMAGES: usize = 160 << 20;

/// The largest row images a worker reads under a payload limit of `max_payload_bytes`, and a
/// callback receives: four times the largest body sent, never more than
/// `LARGEST_READABLE_IMAGES`. An event with larger ones could never be sent.
pub fn largest_readable(max_payload_bytes: usize) -> usize {
    max_payload_bytes
        .saturating_mul(4)
        .min(LARGEST_READABLE_IMAGES)
}

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
        Format::CloudEvents => cloud_event(envelope, change.schema, change.table, type_name, &data),
    }
}

/// A CloudEvents 1.0 structured event: `id` the envelope's message id, `source` the database
/// and table, `type` `pg_webhook.<table>.<type_name>`, `data` the JSON text given.
pub(crate) fn cloud_event(
    envelope: &Envelope<'_>,
    schema: &str,
    table: &str,
    type_name: &str,
    data: &str,
) -> Bytes {
    let mut out = String::with_capacity(200 + data.len());
    out.push_str("{\"specversion\":\"1.0\",\"id\":");
    push_json_string(&mut out, envelope.message_id);
    out.push_str(",\"source\":");
    push_json_string(
        &mut out,
        &format!("/pg_webhook/{}/{schema}/{table}", envelope.database),
    );
    out.push_str(",\"type\":");
    push_json_string(&mut out, &format!("pg_webhook.{table}.{type_name}"));
    out.push_str(",\"time\":");
    push_json_string(&mut out, envelope.time);
    out.push_str(",\"datacontenttype\":\"application/json\",\"data\":");
    out.push_str(data);
    out.push('}');
    Bytes::from(out)
}

fn push_json_string(out: &mut String, s: &str) {
    // serde_json's escaping is the reference; a str always serialises.
    out.push_str(&serde_json::Value::from(s).to_string());
}

/// The `webhook-id` of an event: stable across retries and replays, and unique across
/// databases because every subscription carries its own random `uid`. `timeline` is the WAL
/// timeline the event was captured on: a failover or a point-in-time recovery starts a new
/// one and may hand out again event ids the abandoned timeline had sent, so every timeline
/// but the first adds itself (`msg_<uid>_<id>.<timeline>`).
pub fn message_id(subscription_uid: &str, event_id: i64, timeline: i32) -> String {
    format!(
        "msg_{subscription_uid}_{event_id}{}",
        timeline_suffix(timeline)
    )
}

/// What an id made on `timeline` ends with: nothing on the first, `.<timeline>` on others.
pub fn timeline_suffix(timeline: i32) -> String {
    if timeline == 1 {
        String::new()
    } else {
        format!(".{timeline}")
    }
}

/// A fresh random subscription `uid`: 16 lower-case base32 characters (80 bits), so webhook-ids
/// from different subscriptions and databases never collide.
pub fn new_subscription_uid() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)?;
    Ok(uid_text(&bytes))
}

/// The uid a subscription with uid `old` takes in copy `instance` of its database: the same
/// for the same pair, however often it is worked out (a renewal rolled back and done again
/// gives the same uid), and another for each copy.
pub fn renewed_subscription_uid(old: &str, instance: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(old.as_bytes())
        .chain_update([0u8])
        .chain_update(instance.as_bytes())
        .finalize();
    uid_text(&digest[..16])
}

/// 16 bytes as 16 lower-case base32 characters (5 bits of each).
fn uid_text(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    bytes
        .iter()
        .map(|b| ALPHABET[(b & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
