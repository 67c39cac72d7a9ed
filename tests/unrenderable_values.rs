//! A value capture cannot render as jsonb — a `json` value holding `\u0000` or a lone surrogate,
//! both valid json and neither storable in jsonb — fails the write, as `to_jsonb` of the row
//! would, with a message naming pg_webhook's subscription and the column, and a hint that says
//! how to leave the column out; the way out works. An error not about the value (a timeout)
//! is left as it was. One scenario per test.

mod support;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{error_of, exec, subscribe, WAIT};

/// `legacy` rows whose `meta` jsonb cannot hold: `\u0000` (row 1), a lone low surrogate (row 2).
const TABLE: &str = r#"
    CREATE TABLE legacy (id int PRIMARY KEY, status text, meta json);
    INSERT INTO legacy VALUES (1, 'new', '{"note": "a\u0000b"}'), (2, 'new', '{"k": "\udc00"}'),
                              (3, 'new', '{}');"#;

fn legacy() -> (Cluster, Receiver, postgres::Client) {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, TABLE);
    (pg, rx, db)
}

/// Checks that `e` names the subscription, the column and the way out.
fn assert_names_the_column(e: &str, subscription: &str) {
    assert!(
        e.contains(&format!(
            "pg_webhook subscription \"{subscription}\": column \"meta\" cannot be rendered as \
             jsonb for the webhook event:"
        )),
        "{e}"
    );
    assert!(
        e.contains("Leave the column out of the events (exclude_columns => ARRAY['meta']"),
        "{e}"
    );
}

#[test]
fn a_json_value_jsonb_cannot_hold_fails_the_write_naming_subscription_and_column() {
    let (_pg, rx, mut db) = legacy();
    subscribe(&mut db, "leg", "legacy", &rx.url("/leg"), "");
    for (write, what) in [
        ("UPDATE legacy SET status = 'paid' WHERE id = 1", "\\u0000"),
        (
            "UPDATE legacy SET status = 'paid' WHERE id = 2",
            "surrogate",
        ),
        ("DELETE FROM legacy WHERE id = 1", "\\u0000"),
    ] {
        let e = error_of(&mut db, write);
        assert_names_the_column(&e, "leg");
        assert!(e.contains(what), "{write}: {e}");
    }
}

#[test]
fn a_shaped_subscription_that_sends_the_column_fails_naming_it_too() {
    let (_pg, rx, mut db) = legacy();
    subscribe(
        &mut db,
        "shaped",
        "legacy",
        &rx.url("/shaped"),
        ", columns => ARRAY['id', 'meta']",
    );
    let e = error_of(&mut db, "UPDATE legacy SET status = 'paid' WHERE id = 1");
    assert_names_the_column(&e, "shaped");
}

#[test]
fn a_subscription_that_leaves_the_column_out_captures_the_same_writes() {
    let (_pg, rx, mut db) = legacy();
    subscribe(
        &mut db,
        "leg",
        "legacy",
        &rx.url("/leg"),
        ", exclude_columns => ARRAY['meta']",
    );
    exec(
        &mut db,
        "UPDATE legacy SET status = 'paid' WHERE id IN (1, 2);
         DELETE FROM legacy WHERE id = 1;",
    );
    wait_until(WAIT, "the three events", || rx.accepted().len() == 3);
    let mut got: Vec<(String, i64)> = (rx.accepted().iter())
        .map(|r| {
            let b = r.json();
            let row = if b["type"] == "DELETE" {
                &b["old_record"]
            } else {
                &b["record"]
            };
            assert!(row.get("meta").is_none(), "{b}");
            (
                b["type"].as_str().unwrap_or_default().to_string(),
                row["id"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("DELETE".to_string(), 1),
            ("UPDATE".to_string(), 1),
            ("UPDATE".to_string(), 2)
        ]
    );
}

#[test]
fn a_timeout_while_a_value_is_rendered_is_not_blamed_on_the_value() {
    let (_pg, rx, mut db) = legacy();
    exec(
        &mut db,
        "CREATE TYPE slow AS ENUM ('a');
         CREATE FUNCTION slow_json(slow) RETURNS json LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_sleep(30); RETURN to_json($1::text); END $$;
         CREATE CAST (slow AS json) WITH FUNCTION slow_json(slow);
         CREATE TABLE waits (id int PRIMARY KEY, s slow);",
    );
    subscribe(&mut db, "waits", "waits", &rx.url("/waits"), "");
    let e = error_of(
        &mut db,
        "SET statement_timeout = '200ms'; INSERT INTO waits VALUES (1, 'a')",
    );
    assert_eq!(e, "canceling statement due to statement timeout");
}
