//! Many events in one request: the bodies of batches and of transactions.
//!
//! Each member's `payload` is exactly the body that event would have had alone, so a receiver
//! handles a batch by looping over what it already handles. CloudEvents batches use the
//! CloudEvents JSON batch format (an array of structured events).

use bytes::Bytes;

use crate::payload::Format;

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
    use sha2::{Digest, Sha256};
    let mut members = events.to_vec();
    members.sort_unstable();
    let mut hash = Sha256::new();
    for (id, timeline) in &members {
        hash.update(id.to_le_bytes());
        hash.update(timeline.to_le_bytes());
    }
    let digest = hash.finalize();
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{subscription_uid}_b{first_event_id}_{short}")
}

/// The `webhook-id` of one part of a transaction; `timeline` is the one it ran on (a new
/// timeline may hand out its transaction ids again, as it does event ids).
pub fn transaction_message_id(
    subscription_uid: &str,
    txid: &str,
    timeline: i32,
    part: u32,
) -> String {
    let suffix = crate::payload::timeline_suffix(timeline);
    format!("msg_{subscription_uid}_t{txid}{suffix}_{part}")
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

/// The size of the body `members` would make.
pub fn body_len(format: Format, members: &[Member], tx: Option<&TransactionPart>) -> usize {
    let each: usize = members
        .iter()
        .map(|m| m.body.len() + member_overhead(format, m.id.len(), tx))
        .sum();
    each + members.len().saturating_sub(1) + frame(format, tx)
}

/// The body of a batch (or, with `tx`, of one part of a transaction).
///
/// `database` and `standard`: `{"events":[{"webhook_id":…,"payload":…},…]}`, with a
/// `"transaction":{"id":…,"part":…,"parts":…,"events_total":…}` first for a transaction.
/// `cloudevents`: `[event,…]`, each event carrying the transaction as the extension attributes
/// `pgtxid`, `pgtxpart`, `pgtxparts` and `pgtxevents` for a transaction.
pub fn body(format: Format, members: &[Member], tx: Option<&TransactionPart>) -> Bytes {
    let mut out = String::with_capacity(body_len(format, members, tx));
    match format {
        Format::CloudEvents => {
            out.push('[');
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let text = String::from_utf8_lossy(&m.body);
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
            out.push_str("]}");
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
mod tests {
    use super::*;

    fn member(id: &str, body: &str) -> Member {
        Member {
            id: id.to_string(),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn a_batch_wraps_each_events_own_body() {
        let members = [
            member("msg_a_1", r#"{"type":"INSERT"}"#),
            member("msg_a_2", r#"{"x":1}"#),
        ];
        let body = body(Format::Database, &members, None);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"events":[{"webhook_id":"msg_a_1","payload":{"type":"INSERT"}},{"webhook_id":"msg_a_2","payload":{"x":1}}]}"#
        );
        assert!(body.len() <= body_len(Format::Database, &members, None));
    }

    #[test]
    fn a_transaction_part_says_where_it_stands() {
        let tx = TransactionPart {
            id: "750".into(),
            part: 2,
            parts: 3,
            events_total: 9,
        };
        let members = [member("msg_a_7", "{}")];
        let body = body(Format::Standard, &members, Some(&tx));
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"transaction":{"id":"750","part":2,"parts":3,"events_total":9},"events":[{"webhook_id":"msg_a_7","payload":{}}]}"#
        );
        assert!(body.len() <= body_len(Format::Standard, &members, Some(&tx)));
    }

    #[test]
    fn cloudevents_batches_are_arrays_of_structured_events() {
        let members = [
            member("msg_a_1", r#"{"specversion":"1.0","id":"msg_a_1"}"#),
            member("msg_a_2", r#"{"specversion":"1.0","id":"msg_a_2"}"#),
        ];
        let plain = body(Format::CloudEvents, &members, None);
        assert_eq!(
            std::str::from_utf8(&plain).unwrap(),
            r#"[{"specversion":"1.0","id":"msg_a_1"},{"specversion":"1.0","id":"msg_a_2"}]"#
        );
        let tx = TransactionPart {
            id: "9".into(),
            part: 1,
            parts: 1,
            events_total: 2,
        };
        let parsed: serde_json::Value =
            serde_json::from_slice(&body(Format::CloudEvents, &members, Some(&tx))).unwrap();
        assert_eq!(parsed[1]["pgtxid"], "9");
        assert_eq!(parsed[1]["pgtxevents"], 2);
        assert_eq!(parsed[1]["id"], "msg_a_2");
        assert_eq!(
            content_type(Format::CloudEvents),
            "application/cloudevents-batch+json"
        );
    }

    #[test]
    fn batches_are_cut_by_count_and_by_bytes() {
        let members: Vec<Member> = (0..7)
            .map(|i| member(&format!("m{i}"), "{\"v\":12345}"))
            .collect();
        let by_count = cut(Format::Database, &members, 3, usize::MAX, None);
        assert_eq!(by_count, vec![0..3, 3..6, 6..7]);
        // Each member adds 11 + 29 + 2 + 1 = 43 bytes; the frame is 13.
        let by_bytes = cut(Format::Database, &members, 100, 13 + 2 * 43, None);
        assert_eq!(by_bytes, vec![0..2, 2..4, 4..6, 6..7]);
        for range in by_bytes {
            assert!(body(Format::Database, &members[range], None).len() <= 13 + 2 * 43);
        }
        // One member larger than the limit still goes, alone.
        let big = vec![
            member("a", "{}"),
            member("b", &"x".repeat(500)),
            member("c", "{}"),
        ];
        assert_eq!(
            cut(Format::Database, &big, 100, 200, None),
            vec![0..1, 1..2, 2..3]
        );
    }

    #[test]
    fn batch_and_transaction_ids_are_distinct_from_event_ids() {
        let events = [(17, 1), (18, 1), (20, 1)];
        let id = batch_id("u", 17, &events);
        assert!(id.starts_with("msg_u_b17_"), "{id}");
        assert_eq!(
            id,
            batch_id("u", 17, &events),
            "the same batch, the same id"
        );
        assert_ne!(
            id,
            batch_id("u", 17, &events[..2]),
            "other events, another id"
        );
        assert_eq!(
            id,
            batch_id("u", 17, &[(20, 1), (17, 1), (18, 1)]),
            "the same events in another order, the same id"
        );
        assert_ne!(
            id,
            batch_id("u", 17, &[(17, 2), (18, 2), (20, 2)]),
            "the same ids on another timeline, another id"
        );
        assert_eq!(transaction_message_id("u", "750", 1, 2), "msg_u_t750_2");
        assert_eq!(transaction_message_id("u", "750", 3, 2), "msg_u_t750.3_2");
        assert_ne!(id, crate::payload::message_id("u", 17, 1));
    }
}
