//! A payload built in SQL (`payload => <jsonb expression over NEW / OLD>`): sent as `record` in
//! every format, computed at capture as the subscription's owner under the filters' sandbox, a
//! runtime error fails the write naming the subscription, and bad expressions are refused at
//! subscribe.

mod support;

use serde_json::json;
use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe, text, WAIT};

/// `orders` and `customers` (readable by the owner alice, not by the writer bob).
fn shop(pg: &Cluster) -> postgres::Client {
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; GRANT webhook_admin TO alice;
         CREATE SCHEMA app;
         CREATE TABLE app.customers (id int PRIMARY KEY, email text);
         INSERT INTO app.customers VALUES (1, 'ann@example.com');
         CREATE TABLE app.orders (id int PRIMARY KEY, customer_id int, total numeric(8,2));
         GRANT USAGE ON SCHEMA app TO alice, bob;
         GRANT SELECT ON app.customers TO alice;
         GRANT SELECT, TRIGGER ON app.orders TO alice;
         GRANT SELECT, INSERT, UPDATE, DELETE ON app.orders TO bob;",
    );
    su
}

const ENRICHED: &str = "jsonb_build_object('order', COALESCE(NEW.id, OLD.id), \
    'total', NEW.total, 'was', OLD.total, \
    'customer', (SELECT c.email FROM app.customers c WHERE c.id = NEW.customer_id))";

#[test]
fn a_payload_is_sent_as_the_record_in_every_format() {
    let pg = Cluster::start(&[]);
    let _su = shop(&pg);
    let rx = Receiver::start();
    let mut alice = pg.connect_as("postgres", "alice");
    let payload = |extra: &str| {
        format!(
            ", events => ARRAY['update'], payload => $${ENRICHED}$${extra}",
            ENRICHED = ENRICHED
        )
    };
    let (_, s_db) = subscribe(&mut alice, "db", "app.orders", &rx.url("/db"), &payload(""));
    let (_, s_std) = subscribe(
        &mut alice,
        "std",
        "app.orders",
        &rx.url("/std"),
        &payload(", format => 'standard'"),
    );
    let (_, s_ce) = subscribe(
        &mut alice,
        "ce",
        "app.orders",
        &rx.url("/ce"),
        &payload(", format => 'cloudevents'"),
    );
    let mut bob = pg.connect_as("postgres", "bob");
    exec(
        &mut bob,
        "INSERT INTO app.orders VALUES (7, 1, 12.50);
         UPDATE app.orders SET total = 13.75 WHERE id = 7;",
    );
    let got = rx.wait_for(3, WAIT);
    let expected = json!({"order": 7, "total": 13.75, "was": 12.50, "customer": "ann@example.com"});
    let by_path = |p: &str| {
        got.iter()
            .find(|r| r.path == p)
            .unwrap_or_else(|| panic!("nothing at {p}: {got:?}"))
            .clone()
    };
    let d = by_path("/db");
    d.verify(&s_db).expect("database format signature");
    let body = d.json();
    assert_eq!(body["type"], "UPDATE");
    assert_eq!(body["record"], expected);
    assert!(body["old_record"].is_null(), "{body}");
    let s = by_path("/std");
    s.verify(&s_std).expect("standard format signature");
    assert_eq!(s.json()["data"]["record"], expected);
    assert!(s.json()["data"]["old_record"].is_null());
    let c = by_path("/ce");
    c.verify(&s_ce).expect("cloudevents signature");
    assert_eq!(c.json()["data"]["record"], expected);
    // The row images are not stored either: what is queued is what is sent.
    let mut su = pg.connect("postgres");
    let stored = text(
        &mut su,
        "SELECT record::text FROM webhook.events e JOIN webhook.subscriptions s
             ON s.id = e.subscription_id WHERE s.name = 'db'",
    )
    .expect("the db subscription's event");
    let stored: serde_json::Value =
        serde_json::from_str(&stored).unwrap_or_else(|e| panic!("{stored}: {e}"));
    assert_eq!(stored, expected);
}

#[test]
fn a_payload_runs_as_the_owner_and_changes_nothing_in_the_writers_session() {
    let pg = Cluster::start(&[]);
    let _su = shop(&pg);
    let rx = Receiver::start();
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(
        &mut alice,
        "who",
        "app.orders",
        &rx.url("/who"),
        ", events => ARRAY['insert'], payload => $$jsonb_build_object(
              'id', NEW.id, 'as', current_user, 'row', to_jsonb(NEW),
              'customer', (SELECT c.email FROM app.customers c WHERE c.id = NEW.customer_id),
              'set', pg_catalog.set_config('work_mem', '77MB', false))$$",
    );
    let mut bob = pg.connect_as("postgres", "bob");
    // bob may not read customers himself; the payload reads them as alice.
    let denied = error_of(&mut bob, "SELECT * FROM app.customers");
    assert!(denied.contains("permission denied"), "{denied}");
    exec(&mut bob, "INSERT INTO app.orders VALUES (1, 1, 5)");
    let got = rx.wait_for(1, WAIT);
    let record = &got[0].json()["record"];
    assert_eq!(record["as"], "alice");
    assert_eq!(record["customer"], "ann@example.com");
    assert_eq!(
        record["row"],
        json!({"id": 1, "customer_id": 1, "total": 5.00}),
        "NEW is exactly the table's columns"
    );
    assert_eq!(
        text(&mut bob, "SHOW work_mem").as_deref(),
        Some("4MB"),
        "the payload's set_config was rolled back with its nest level"
    );
}

#[test]
fn an_update_payload_sees_exactly_the_tables_columns_in_new_and_old() {
    let pg = Cluster::start(&[]);
    let mut su = shop(&pg);
    let rx = Receiver::start();
    subscribe(
        &mut su,
        "diff",
        "app.orders",
        &rx.url("/diff"),
        ", events => ARRAY['update'], payload => $$jsonb_build_object('new', to_jsonb(NEW), 'old', to_jsonb(OLD))$$",
    );
    exec(
        &mut su,
        "INSERT INTO app.orders VALUES (1, 1, 5), (2, 1, 6);
         UPDATE app.orders SET total = total * 2;",
    );
    let got = rx.wait_for(2, WAIT);
    let mut records: Vec<serde_json::Value> =
        got.iter().map(|r| r.json()["record"].clone()).collect();
    records.sort_by_key(|r| r["new"]["id"].as_i64());
    assert_eq!(
        records,
        vec![
            json!({"new": {"id": 1, "customer_id": 1, "total": 10.00}, "old": {"id": 1, "customer_id": 1, "total": 5.00}}),
            json!({"new": {"id": 2, "customer_id": 1, "total": 12.00}, "old": {"id": 2, "customer_id": 1, "total": 6.00}}),
        ]
    );
}

#[test]
fn a_failing_payload_fails_the_write_naming_the_subscription() {
    let pg = Cluster::start(&[]);
    let mut su = shop(&pg);
    let rx = Receiver::start();
    subscribe(
        &mut su,
        "fragile",
        "app.orders",
        &rx.url("/fragile"),
        ", events => ARRAY['insert'], payload => $$jsonb_build_object('ratio', 100 / NEW.total)$$",
    );
    let error = error_of(&mut su, "INSERT INTO app.orders VALUES (1, 1, 0)");
    assert!(
        error.starts_with("pg_webhook subscription \"fragile\": division by zero"),
        "{error}"
    );
    assert_eq!(count(&mut su, "SELECT count(*) FROM app.orders"), 0);
    assert_eq!(count(&mut su, "SELECT count(*) FROM webhook.events"), 0);
    // Inside the writer's savepoint, only the statement is undone; its other writes stand.
    exec(
        &mut su,
        "DO $$ BEGIN
             INSERT INTO app.orders VALUES (2, 1, 4);
             BEGIN
                 INSERT INTO app.orders VALUES (3, 1, 0);
             EXCEPTION WHEN division_by_zero THEN NULL;
             END;
         END $$",
    );
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["record"]["ratio"].as_f64(), Some(25.0));
    assert_eq!(count(&mut su, "SELECT count(*) FROM app.orders"), 1);
}

#[test]
fn bad_payloads_are_refused_at_subscribe_and_change_nothing() {
    let pg = Cluster::start(&[]);
    let mut su = shop(&pg);
    let cases = [
        ("payload => 'NEW.id', events => ARRAY['insert']", "payload must be jsonb, but NEW.id is of type integer"),
        ("payload => 'to_jsonb(OLD)', events => ARRAY['insert']", "payload is not valid for insert events: column \"old\" does not exist"),
        ("payload => 'to_jsonb(NEW'", "payload is not a valid expression: syntax error"),
        ("payload => '  '", "payload is empty"),
        ("payload => 'to_jsonb(NEW)', columns => ARRAY['id'], events => ARRAY['insert']", "give payload or columns / exclude_columns, not both"),
        ("payload => 'to_jsonb(NEW)', skip_unchanged => true, events => ARRAY['update']", "skip_unchanged compares the sent columns, which a payload replaces"),
        ("payload => 'to_jsonb(NEW)', events => ARRAY['insert', 'truncate']", "a payload cannot apply to truncate events"),
        ("payload => 'to_jsonb(NEW.nope)', events => ARRAY['insert']", "column new.nope does not exist"),
        ("payload => 'jsonb_build_object(''n'', app.no_such(NEW.id))', events => ARRAY['insert']", "function app.no_such(integer) does not exist"),
    ];
    for (args, expected) in cases {
        let error = error_of(
            &mut su,
            &format!(
                "SELECT webhook.subscribe('bad', 'app.orders', 'http://127.0.0.1:9/', {args})"
            ),
        );
        assert!(error.contains(expected), "{args}: {error}");
    }
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM webhook.subscriptions"),
        0
    );
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pg_webhook%'"
        ),
        0
    );
}

#[test]
fn a_backfill_sends_each_rows_payload() {
    let pg = Cluster::start(&[]);
    let mut su = shop(&pg);
    exec(
        &mut su,
        "INSERT INTO app.orders VALUES (1, 1, 5), (2, 9, 6)",
    );
    let rx = Receiver::start();
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(
        &mut alice,
        "enriched",
        "app.orders",
        &rx.url("/e"),
        ", events => ARRAY['insert'], payload => $$jsonb_build_object('order', NEW.id,
              'customer', (SELECT c.email FROM app.customers c WHERE c.id = NEW.customer_id))$$",
    );
    exec(&mut alice, "SELECT webhook.backfill('enriched')");
    let got = rx.wait_for(2, WAIT);
    let mut records: Vec<serde_json::Value> = got
        .iter()
        .map(|r| {
            assert_eq!(r.json()["type"], "BACKFILL");
            r.json()["record"].clone()
        })
        .collect();
    records.sort_by_key(|r| r["order"].as_i64());
    assert_eq!(
        records,
        vec![
            json!({"order": 1, "customer": "ann@example.com"}),
            json!({"order": 2, "customer": null}),
        ]
    );
}
