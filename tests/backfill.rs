//! `webhook.backfill()`: the rows a table already has, sent as BACKFILL events in chunks by
//! primary key, in the background. One scenario per test, against real clusters and receivers.

mod support;

use std::collections::HashMap;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe, text, WAIT};

/// The `id` of each accepted BACKFILL event's record, counted per id.
fn backfilled(rx: &Receiver) -> HashMap<i64, usize> {
    let mut seen = HashMap::new();
    for r in rx.accepted() {
        let body = r.json();
        if body["type"] == "BACKFILL" {
            *seen
                .entry(body["record"]["id"].as_i64().unwrap_or(-1))
                .or_insert(0) += 1;
        }
    }
    seen
}

fn state(db: &mut postgres::Client, name: &str) -> String {
    text(
        db,
        &format!("SELECT state FROM webhook.backfills WHERE subscription = '{name}' ORDER BY id DESC LIMIT 1"),
    )
    .unwrap_or_default()
}

fn wait_state(db: &mut postgres::Client, name: &str, want: &str) {
    wait_until(WAIT, &format!("backfill of {name} to be {want}"), || {
        state(db, name) == want
    });
}

#[test]
fn every_row_arrives_once_as_a_signed_backfill_event() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(
        &mut db,
        "CREATE TABLE orders (id int PRIMARY KEY, customer text, total numeric(8,2));
         INSERT INTO orders SELECT g, 'c' || g, g * 1.25 FROM generate_series(1, 1200) g;
         ANALYZE orders;",
    );
    let (_, secret) = subscribe(
        &mut db,
        "orders_std",
        "orders",
        &rx.url("/o"),
        ", format => 'standard'",
    );
    let row = db
        .query_one(
            "SELECT subscription, state, rows_sent, rows_estimated FROM webhook.backfill('orders_std')",
            &[],
        )
        .unwrap_or_else(|e| panic!("backfill: {}", support::describe(&e)));
    assert_eq!(row.get::<_, String>(0), "orders_std");
    assert_eq!(row.get::<_, String>(1), "running");
    assert_eq!(row.get::<_, i64>(3), 1200, "reltuples after ANALYZE");
    wait_state(&mut db, "orders_std", "done");
    assert_eq!(
        count(
            &mut db,
            "SELECT rows_sent FROM webhook.backfills WHERE subscription = 'orders_std'"
        ),
        1200
    );
    let got = rx.wait_for(1200, WAIT);
    let mut ids = std::collections::HashSet::new();
    for r in &got {
        r.verify(&secret)
            .expect("signed with the subscription's secret");
        let body = r.json();
        assert_eq!(body["type"], "orders.backfill");
        assert_eq!(body["data"]["type"], "BACKFILL");
        assert!(body["data"]["old_record"].is_null());
        let id = body["data"]["record"]["id"].as_i64().unwrap();
        assert_eq!(body["data"]["record"]["customer"], format!("c{id}"));
        assert!(ids.insert(r.id()), "webhook-id {} twice", r.id());
    }
    let records: std::collections::HashSet<i64> = got
        .iter()
        .map(|r| r.json()["data"]["record"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(records.len(), 1200, "each row once");
    assert_eq!(records.iter().min(), Some(&1));
    assert_eq!(records.iter().max(), Some(&1200));
    // Exact numerics as capture renders them.
    let r7 = got
        .iter()
        .find(|r| r.json()["data"]["record"]["id"] == 7)
        .unwrap();
    assert!(String::from_utf8_lossy(&r7.body).contains("8.75"));
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE op = 'BACKFILL'"
        ),
        1200
    );
}

#[test]
fn the_filter_argument_and_the_subscriptions_shape_choose_rows_and_fields() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(
        &mut db,
        "CREATE TABLE people (id int PRIMARY KEY, status text, ssn text, age int);
         INSERT INTO people SELECT g, CASE WHEN g % 2 = 0 THEN 'paid' ELSE 'new' END, 'x', g
           FROM generate_series(1, 700) g;",
    );
    subscribe(
        &mut db,
        "paid",
        "people",
        &rx.url("/p"),
        ", events => ARRAY['insert', 'update'], filter => $$NEW.status = 'paid'$$, exclude_columns => ARRAY['ssn']",
    );
    // Only paid rows (subscription filter) with age over 600 (backfill filter): 602..700 even.
    exec(
        &mut db,
        "SELECT * FROM webhook.backfill('paid', filter => $$age > 600 AND people.id <= 700$$)",
    );
    wait_state(&mut db, "paid", "done");
    let sent = count(
        &mut db,
        "SELECT rows_sent FROM webhook.backfills WHERE subscription = 'paid'",
    );
    assert_eq!(sent, 50);
    // A marker through the live path: once it arrives, every earlier event has been sent.
    exec(
        &mut db,
        "INSERT INTO people VALUES (100000, 'paid', 'x', 1)",
    );
    wait_until(WAIT, "the marker", || {
        rx.accepted()
            .iter()
            .any(|r| r.json()["record"]["id"] == 100000)
    });
    rx.wait_for(51, WAIT);
    let seen = backfilled(&rx);
    assert_eq!(seen.len(), 50, "{seen:?}");
    for (id, n) in &seen {
        assert!(
            *id > 600 && id % 2 == 0,
            "row {id} should not have been sent"
        );
        assert_eq!(*n, 1);
    }
    for r in rx.accepted() {
        assert!(
            r.json()["record"].get("ssn").is_none(),
            "excluded column sent"
        );
    }
}

#[test]
fn bad_calls_are_refused_with_the_reason_and_start_nothing() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE logs (at timestamptz, line text);
         CREATE TABLE items (id int PRIMARY KEY, n int);
         INSERT INTO items SELECT g, g FROM generate_series(1, 6000) g;",
    );
    subscribe(&mut db, "logs", "logs", "http://127.0.0.1:9/", "");
    subscribe(&mut db, "items", "items", "http://127.0.0.1:9/", "");
    exec(&mut db, "SELECT webhook.pause('items')");
    let e = error_of(&mut db, "SELECT * FROM webhook.backfill('logs')");
    assert!(
        e.contains("table public.logs has no primary key, so it cannot be backfilled")
            && e.contains("ALTER TABLE public.logs ADD PRIMARY KEY"),
        "{e}"
    );
    let e = error_of(
        &mut db,
        "SELECT * FROM webhook.backfill('items', filter => 'nosuch > 1')",
    );
    assert!(
        e.contains("filter is not valid for a backfill of public.items")
            && e.contains("column \"nosuch\" does not exist"),
        "{e}"
    );
    let e = error_of(
        &mut db,
        "SELECT * FROM webhook.backfill('items', filter => 'n + 1')",
    );
    assert!(e.contains("must be type boolean"), "{e}");
    let e = error_of(&mut db, "SELECT * FROM webhook.backfill('nope')");
    assert!(e.contains("subscription \"nope\" does not exist"), "{e}");
    assert_eq!(count(&mut db, "SELECT count(*) FROM webhook.backfills"), 0);
    // One at a time. The subscription is paused, so the first stops short of the table's end
    // (it queues at most 5,000 events ahead of its receiver) and is still running.
    exec(&mut db, "SELECT * FROM webhook.backfill('items')");
    wait_until(WAIT, "the backfill to wait for its receiver", || {
        count(&mut db, "SELECT rows_sent FROM webhook.backfills") >= 5000
    });
    let e = error_of(&mut db, "SELECT * FROM webhook.backfill('items')");
    assert!(
        e.contains("a backfill of subscription \"items\" is already running")
            && e.contains("webhook.cancel_backfill('items')"),
        "{e}"
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM webhook.backfills"), 1);
    assert_eq!(state(&mut db, "items"), "running");
    let e = error_of(&mut db, "SELECT webhook.cancel_backfill('nope')");
    assert!(e.contains("subscription \"nope\" does not exist"), "{e}");
}
