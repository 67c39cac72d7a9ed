//! The bodies of batches and transactions, their cuts and their ids.
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
    let body = body(Format::Database, &members);
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        r#"{"events":[{"webhook_id":"msg_a_1","payload":{"type":"INSERT"}},{"webhook_id":"msg_a_2","payload":{"x":1}}]}"#
    );
    assert!(body.len() <= body_len(Format::Database, &members));
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
    let body = part_body(Format::Standard, &members, &[], &tx);
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        r#"{"transaction":{"id":"750","part":2,"parts":3,"events_total":9},"events":[{"webhook_id":"msg_a_7","payload":{}}]}"#
    );
    assert!(body.len() <= part_len(Format::Standard, &members, &[], Some(&tx)));
}

#[test]
fn cloudevents_batches_are_arrays_of_structured_events() {
    let members = [
        member("msg_a_1", r#"{"specversion":"1.0","id":"msg_a_1"}"#),
        member("msg_a_2", r#"{"specversion":"1.0","id":"msg_a_2"}"#),
    ];
    let plain = body(Format::CloudEvents, &members);
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
        serde_json::from_slice(&part_body(Format::CloudEvents, &members, &[], &tx)).unwrap();
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
        assert!(body(Format::Database, &members[range]).len() <= 13 + 2 * 43);
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
    assert_eq!(
        transaction_message_id("u", "750", 1, 2, &[]),
        "msg_u_t750_2"
    );
    assert_eq!(
        transaction_message_id("u", "750", 3, 2, &[]),
        "msg_u_t750.3_2"
    );
    let named = transaction_message_id("u", "750", 1, 2, &[(9, 1), (7, 1)]);
    assert!(named.starts_with("msg_u_t750_2_d"), "{named}");
    assert_eq!(
        named,
        transaction_message_id("u", "750", 1, 2, &[(7, 1), (9, 1)])
    );
    assert_ne!(named, transaction_message_id("u", "750", 1, 2, &[(7, 1)]));
    assert_ne!(id, crate::payload::message_id("u", 17, 1));
}

fn dead_event<'a>(webhook_id: &'a str) -> DeadEvent<'a> {
    DeadEvent {
        webhook_id,
        operation: "INSERT",
        reason: "too_large",
        schema: "public",
        table: "orders",
        envelope: Envelope {
            message_id: webhook_id,
            time: "2026-12-05T10:00:00+00:00",
            database: "app",
        },
    }
}

#[test]
fn a_part_names_its_dead_events_after_the_sent_ones() {
    let tx = TransactionPart {
        id: "750".into(),
        part: 1,
        parts: 1,
        events_total: 3,
    };
    let members = [member("msg_a_7", "{}"), member("msg_a_9", "{}")];
    let dead = [dead_note(Format::Database, &dead_event("msg_a_8"))];
    let body = part_body(Format::Database, &members, &dead, &tx);
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        r#"{"transaction":{"id":"750","part":1,"parts":1,"events_total":3},"events":[{"webhook_id":"msg_a_7","payload":{}},{"webhook_id":"msg_a_9","payload":{}}],"dead":[{"webhook_id":"msg_a_8","operation":"INSERT","reason":"too_large"}]}"#
    );
    assert!(body.len() <= part_len(Format::Database, &members, &dead, Some(&tx)));
    // A part of dead events only still says where it stands.
    let alone = part_body(Format::Standard, &[], &dead, &tx);
    assert_eq!(
        std::str::from_utf8(&alone).unwrap(),
        r#"{"transaction":{"id":"750","part":1,"parts":1,"events_total":3},"events":[],"dead":[{"webhook_id":"msg_a_8","operation":"INSERT","reason":"too_large"}]}"#
    );
    assert!(alone.len() <= part_len(Format::Standard, &[], &dead, Some(&tx)));
}

#[test]
fn a_cloudevents_part_names_its_dead_events_as_events_of_their_own() {
    let tx = TransactionPart {
        id: "9".into(),
        part: 2,
        parts: 2,
        events_total: 2,
    };
    let members = [member("msg_a_1", r#"{"specversion":"1.0","id":"msg_a_1"}"#)];
    let dead = [dead_note(Format::CloudEvents, &dead_event("msg_a_2"))];
    let body = part_body(Format::CloudEvents, &members, &dead, &tx);
    assert!(body.len() <= part_len(Format::CloudEvents, &members, &dead, Some(&tx)));
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let note = &parsed[1];
    assert_eq!(note["id"], "msg_a_2.dead", "never the event's own id");
    assert_eq!(note["type"], "pg_webhook.orders.dead");
    assert_eq!(note["source"], "/pg_webhook/app/public/orders");
    assert_eq!(note["time"], "2026-12-05T10:00:00+00:00");
    assert_eq!(note["specversion"], "1.0");
    assert_eq!(note["pgtxid"], "9");
    assert_eq!(note["pgtxpart"], 2);
    assert_eq!(note["pgtxevents"], 2);
    assert_eq!(note["data"]["webhook_id"], "msg_a_2");
    assert_eq!(note["data"]["operation"], "INSERT");
    assert_eq!(note["data"]["reason"], "too_large");
}

#[test]
fn a_dead_note_escapes_what_it_names() {
    let mut dead = dead_event("msg_\"x");
    dead.operation = "IN\\SERT";
    let note = dead_note(Format::Database, &dead);
    let parsed: serde_json::Value = serde_json::from_slice(&note).unwrap();
    assert_eq!(parsed["webhook_id"], "msg_\"x");
    assert_eq!(parsed["operation"], "IN\\SERT");
}
