//! `webhook.backfill()`: the rows a table already has, sent as BACKFILL events in chunks by
//! primary key, in the background — what is sent: every row once, signed, chosen and shaped by
//! the backfill's filter and the subscription's, through a partitioned table's parent, in the
//! subscription's batches and at its rate limit. One scenario per test, against real clusters
//! and receivers (who may ask: backfill_calls.rs; recovery: backfill_recovery.rs; order:
//! backfill_order.rs).

mod support;

use support::backfill::{backfilled, wait_all, wait_state};
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, subscribe, text, WAIT};

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
    rx.wait_for_answers(51, WAIT);
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
fn a_partitioned_table_is_backfilled_through_its_parent() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(
        &mut db,
        "CREATE TABLE m (region int, id int, v text, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
         CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1);
         CREATE TABLE m2 PARTITION OF m FOR VALUES IN (2);
         INSERT INTO m SELECT 1 + g % 2, g, 'v' FROM generate_series(1, 1500) g;",
    );
    subscribe(&mut db, "m", "m", &rx.url("/m"), "");
    exec(&mut db, "SELECT * FROM webhook.backfill('m')");
    wait_state(&mut db, "m", "done");
    assert_eq!(
        count(&mut db, "SELECT rows_sent FROM webhook.backfills"),
        1500
    );
    wait_all(&rx, 1500, "every row");
    let seen = backfilled(&rx);
    assert_eq!(seen.len(), 1500);
    for r in rx.accepted() {
        assert_eq!(
            r.json()["table"],
            "m",
            "the subscribed table, not the partition"
        );
    }
    assert_eq!(
        text(&mut db, "SELECT last_key::text FROM webhook.backfills").as_deref(),
        Some("{2,1499}")
    );
}

#[test]
fn backfill_events_go_out_in_the_subscriptions_batches() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'v' FROM generate_series(1, 1000) g;",
    );
    let (_, secret) = subscribe(&mut db, "t", "t", &rx.url("/t"), ", batch_size => 100");
    exec(&mut db, "SELECT * FROM webhook.backfill('t')");
    wait_state(&mut db, "t", "done");
    let mut events = std::collections::HashSet::new();
    wait_until(WAIT, "1000 events in batches", || {
        for r in rx.accepted() {
            for e in r.json()["events"].as_array().cloned().unwrap_or_default() {
                assert_eq!(e["payload"]["type"], "BACKFILL");
                events.insert(e["webhook_id"].as_str().unwrap_or_default().to_string());
            }
        }
        events.len() >= 1000
    });
    assert_eq!(events.len(), 1000);
    let requests = rx.accepted();
    assert!(requests.len() < 1000 / 2, "{} requests", requests.len());
    for r in &requests {
        r.verify(&secret).expect("each batch signed");
        assert!(r.json()["events"].as_array().unwrap().len() <= 100);
    }
}

#[test]
fn a_backfill_keeps_to_the_subscriptions_rate_limit() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY);
         INSERT INTO t SELECT g FROM generate_series(1, 40) g;",
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), ", rate_limit => 20");
    exec(&mut db, "SELECT * FROM webhook.backfill('t')");
    let got = rx.wait_for_answers(40, WAIT);
    let span = got.last().unwrap().at - got.first().unwrap().at;
    // 40 events at 20/s need 39 intervals of 50 ms after the first one's slot (1.95 s). The
    // bound leaves a few intervals for the first arriving late (it waits for the rest of its
    // claim and a new connection); without the limit all 40 go out within milliseconds.
    assert!(
        span >= std::time::Duration::from_millis(1650),
        "40 events at 20/s went out in {span:?}"
    );
    assert_eq!(backfilled(&rx).len(), 40);
}
