//! Many events in one request: the bodies of batches and of transactions.
//!
//! Each member's `payload` is exactly the body that event would have had alone, so a receiver
//! handles a batch by looping over what it already handles. CloudEvents batches use the
//! CloudEvents JSON batch format (an array of structured events).

use bytes::Bytes;

use crate::payload::{cloud_event, Envelope, Format};

/// One event in a batch: its own `webhook-id` and its body as it would be sent alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub body: Bytes,
}

/// Where a part of a transaction stands, for `group_by => 'transaction'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionPart {
    /// The writing transaction's id (xid8, as text).
    pub id: String,
    /// 1-based.
    pub part: u32,
    pub parts: u32,
    /// Events of the transaction for this subscription, over all parts.
    pub events_total: u64,
}

/// The `webhook-id` of a batch: named after its first event and its members (each an event id
/// and the timeline it was captured on, see `payload::message_id`), so it is the same on every
/// retry of the same batch and never names two batches with different events (a receiver that
/// deduplicates on it can never drop one it has not seen). The members in any order: a retry
/// reads them by id, the first send in commit order.
pub fn batch_id(subscription_uid: &str, first_event_id: i64, events: &[(i64, i32)]) -> String {
    let short = members_hash(events);
    format!("msg_{subscription_uid}_b{first_event_id}_{short}")
}

/// A short hash of a set of events (each an event id and its timeline), in any order.
fn members_hash(events: &[(i64, i32)]) -> String {
    use sha2::{Digest, Sha256};
    let mut members = events.to_vec();
    members.sort_unstable();
    let mut hash = Sha256::new();
    for (id, timeline) in &members {
        hash.update(id.to_le_bytes());
        hash.update(timeline.to_le_bytes());
    }
    let digest = hash.finalize();
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// The `webhook-id` of one part of a transaction; `timeline` is the one it ran on (a new
/// timeline may hand out its transaction ids again, as it does event ids). A part naming
/// events `dead` (each an event id and its timeline) carries them in its id too, `_d` and a
/// hash: a try under a raised limit that sends one of them goes under another id, which a
/// receiver that de-duplicates on it (and took the try naming it dead) does not drop.
pub fn transaction_message_id(
    subscription_uid: &str,
    txid: &str,
    timeline: i32,
    part: u32,
    dead: &[(i64, i32)],
) -> String {
    let suffix = crate::payload::timeline_suffix(timeline);
    let id = format!("msg_{subscription_uid}_t{txid}{suffix}_{part}");
    match dead.is_empty() {
        true => id,
        false => format!("{id}_d{}", members_hash(dead)),
    }
}

/// The media type of a batch body.
pub fn content_type(format: Format) -> &'static str {
    match format {
        Format::CloudEvents => "application/cloudevents-batch+json",
        _ => "application/json",
    }
}

/// Bytes one member adds besides its body (and the comma before it).
fn member_overhead(format: Format, id_len: usize, tx: Option<&TransactionPart>) -> usize {
    match format {
        // Each event names its transaction in four extension attributes.
        Format::CloudEvents => tx.map_or(0, |t| 80 + t.id.len()),
        // {"webhook_id":"…","payload":…}
        _ => 29 + id_len,
    }
}

/// Bytes of the frame around the members.
fn frame(format: Format, tx: Option<&TransactionPart>) -> usize {
    match (format, tx) {
        (Format::CloudEvents, _) => 2,
        (_, None) => 13,
        (_, Some(t)) => 100 + t.id.len(),
    }
}

/// The size of the batch body `members` would make.
pub fn body_len(format: Format, members: &[Member]) -> usize {
    part_len(format, members, &[], None)
}

/// The size of the body of a transaction's part with `members` and `dead` notes (see
/// `part_body`); with `tx` `None`, a batch's.
pub fn part_len(
    format: Format,
    members: &[Member],
    dead: &[Bytes],
    tx: Option<&TransactionPart>,
) -> usize {
    let each: usize = members
        .iter()
        .map(|m| m.body.len() + member_overhead(format, m.id.len(), tx))
        .sum();
    let notes: usize = dead
        .iter()
        .map(|n| match format {
            Format::CloudEvents => n.len() + 1 + member_overhead(format, 0, tx),
            _ => n.len() + 1,
        })
        .sum();
    // `,"dead":[]` around the notes, outside CloudEvents.
    let list = match (format, dead.is_empty()) {
        (Format::CloudEvents, _) | (_, true) => 0,
        _ => 9,
    };
    each + members.len().saturating_sub(1) + notes + list + frame(format, tx)
}

/// The body of a batch: `database` and `standard`:
/// `{"events":[{"webhook_id":…,"payload":…},…]}`; `cloudevents`: `[event,…]`.
pub fn body(format: Format, members: &[Member]) -> Bytes {
    render(format, members, &[], None)
}

/// What a transaction's part says of one of its events that died unsent (too large to send):
/// the event's own `webhook_id`, its operation and why, so that a receiver applying the
/// transaction all or nothing can tell it from one still to come. `database` and `standard`
/// list these objects under `"dead"`; in `cloudevents` each is an event of its own, of type
/// `pg_webhook.<table>.dead`, whose `id` is the event's webhook-id with `.dead` added (never
/// the event's own: a receiver that de-duplicates on it would drop the event once replayed).
pub fn dead_note(format: Format, dead: &DeadEvent<'_>) -> Bytes {
    let mut data = String::with_capacity(80 + dead.webhook_id.len() + dead.reason.len());
    data.push_str("{\"webhook_id\":");
    data.push_str(&json_string(dead.webhook_id));
    data.push_str(",\"operation\":");
    data.push_str(&json_string(dead.operation));
    data.push_str(",\"reason\":");
    data.push_str(&json_string(dead.reason));
    data.push('}');
    match format {
        Format::CloudEvents => {
            let id = format!("{}.dead", dead.webhook_id);
            let envelope = Envelope {
                message_id: &id,
                ..dead.envelope
            };
            cloud_event(&envelope, dead.schema, dead.table, "dead", &data)
        }
        _ => Bytes::from(data),
    }
}

/// An event of a transaction that died unsent, for `dead_note`.
#[derive(Debug, Clone, Copy)]
pub struct DeadEvent<'a> {
    pub webhook_id: &'a str,
    /// `INSERT`, `UPDATE`, ... as in the payload's `type`.
    pub operation: &'a str,
    /// A short code: `too_large`, or `unknown_operation` for a queue row no release wrote.
    pub reason: &'a str,
    pub schema: &'a str,
    pub table: &'a str,
    /// The event's capture time and the database, for CloudEvents.
    pub envelope: Envelope<'a>,
}

/// The body of one part of a transaction: `database` and `standard`:
/// `{"transaction":{"id":…,"part":…,"parts":…,"events_total":…},"events":[…]}`, followed by
/// `,"dead":[note,…]` when some of the part's events died unsent (see `dead_note`);
/// `cloudevents`: `[event,…,note,…]`, each carrying the transaction as the extension
/// attributes `pgtxid`, `pgtxpart`, `pgtxparts` and `pgtxevents`.
pub fn part_body(
    format: Format,
    members: &[Member],
    dead: &[Bytes],
    tx: &TransactionPart,
) -> Bytes {
    render(format, members, dead, Some(tx))
}

fn render(
    format: Format,
    members: &[Member],
    dead: &[Bytes],
    tx: Option<&TransactionPart>,
) -> Bytes {
    let mut out = String::with_capacity(part_len(format, members, dead, tx));
    match format {
        Format::CloudEvents => {
            out.push('[');
            let events = members.iter().map(|m| &m.body).chain(dead);
            for (i, event) in events.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let text = String::from_utf8_lossy(event);
                match (tx, text.strip_prefix('{')) {
                    (Some(t), Some(rest)) => {
                        out.push('{');
                        out.push_str(&format!(
                            "\"pgtxid\":{},\"pgtxpart\":{},\"pgtxparts\":{},\"pgtxevents\":{},",
                            json_string(&t.id),
                            t.part,
                            t.parts,
                            t.events_total
                        ));
                        out.push_str(rest);
                    }
                    _ => out.push_str(&text),
                }
            }
            out.push(']');
        }
        _ => {
            out.push('{');
            if let Some(t) = tx {
                out.push_str(&format!(
                    "\"transaction\":{{\"id\":{},\"part\":{},\"parts\":{},\"events_total\":{}}},",
                    json_string(&t.id),
                    t.part,
                    t.parts,
                    t.events_total
                ));
            }
            out.push_str("\"events\":[");
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"webhook_id\":");
                out.push_str(&json_string(&m.id));
                out.push_str(",\"payload\":");
                out.push_str(&String::from_utf8_lossy(&m.body));
                out.push('}');
            }
            out.push(']');
            if !dead.is_empty() {
                out.push_str(",\"dead\":[");
                for (i, note) in dead.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&String::from_utf8_lossy(note));
                }
                out.push(']');
            }
            out.push('}');
        }
    }
    Bytes::from(out)
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Cuts members, in order, into batches of at most `max_events` members whose bodies stay
/// within `max_bytes`, as index ranges. A member too large to share a batch goes alone
/// (whether it fits at all is the caller's check: see `body_len`).
pub fn cut(
    format: Format,
    members: &[Member],
    max_events: usize,
    max_bytes: usize,
    tx: Option<&TransactionPart>,
) -> Vec<std::ops::Range<usize>> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut current_len = 0usize;
    for (i, m) in members.iter().enumerate() {
        let added = m.body.len() + member_overhead(format, m.id.len(), tx) + 1;
        if i > start
            && (i - start >= max_events.max(1)
                || frame(format, tx) + current_len + added > max_bytes)
        {
            batches.push(start..i);
            start = i;
            current_len = 0;
        }
        current_len += added;
    }
    if start < members.len() {
        batches.push(start..members.len());
    }
    batches
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
