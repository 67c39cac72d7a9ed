//! Tests of payload.rs: bodies in each format, ids.

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
fn a_renewed_uid_is_fixed_by_the_old_uid_and_the_copy() {
    let a = renewed_subscription_uid("rc7jgzxfj4pkhg5u", "copy-1");
    assert_eq!(a, renewed_subscription_uid("rc7jgzxfj4pkhg5u", "copy-1"));
    assert_ne!(a, renewed_subscription_uid("rc7jgzxfj4pkhg5u", "copy-2"));
    assert_ne!(a, renewed_subscription_uid("rc7jgzxfj4pkhg5v", "copy-1"));
    assert_ne!(a, "rc7jgzxfj4pkhg5u");
    assert_eq!(a.len(), 16);
    assert!(a
        .chars()
        .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)));
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
    assert_eq!(message_id("k3x9", 42, 1), "msg_k3x9_42");
}

#[test]
fn message_ids_of_later_timelines_name_them() {
    assert_eq!(message_id("k3x9", 42, 2), "msg_k3x9_42.2");
    assert_eq!(message_id("k3x9", 42, 17), "msg_k3x9_42.17");
}

#[test]
fn a_worker_reads_images_of_four_times_the_payload_limit_and_never_over_160_mib() {
    assert_eq!(largest_readable(1024), 4096);
    assert_eq!(largest_readable(1 << 20), 4 << 20);
    assert_eq!(largest_readable(40 << 20), 160 << 20);
    assert_eq!(largest_readable(1 << 30), 167_772_160);
}
