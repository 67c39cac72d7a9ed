//! `group_by => 'transaction'`: one request per committed transaction, its events in statement
//! order, in numbered parts when it is too large. One scenario per test; signatures are checked
//! with the stock `standardwebhooks` crate.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::cluster::{wait_until, Cluster};
use support::events::{parts_in_order, total_events};
use support::receiver::{Receiver, Reply, Request};
use support::{count, error_of, exec, grouped_table, subscribe, WAIT};

/// The payload types of a transaction request's events, in order.
fn types(r: &Request) -> Vec<String> {
    r.json()["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| {
                    e["payload"]["type"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn each_transaction_is_one_request_with_its_events_in_statement_order() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    let (_, secret) = subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", group_by => 'transaction'",
    );
    exec(
        &mut db,
        "BEGIN;
         INSERT INTO t VALUES (1, 'a'), (2, 'b');
         INSERT INTO t VALUES (3, 'c');
         UPDATE t SET v = 'bb' WHERE id = 2;
         DELETE FROM t WHERE id = 1;
         COMMIT;
         INSERT INTO t VALUES (4, 'd');",
    );
    wait_until(WAIT, "both transactions", || rx.accepted().len() == 2);
    let mut requests = rx.accepted();
    requests.sort_by_key(|r| r.json()["events"].as_array().map_or(0, Vec::len));
    let (second, first) = (&requests[0], &requests[1]);
    for r in [first, second] {
        r.verify(&secret).unwrap_or_else(|e| panic!("{e}"));
        let tx = &r.json()["transaction"];
        assert_eq!(tx["part"], 1, "{tx}");
        assert_eq!(tx["parts"], 1, "{tx}");
        let id = tx["id"].as_str().unwrap_or_default().to_string();
        assert!(id.parse::<u64>().is_ok(), "the xid8 as text: {tx}");
        assert!(r.id().ends_with(&format!("_t{id}_1")), "{}", r.id());
    }
    assert_eq!(first.json()["transaction"]["events_total"], 5);
    assert_eq!(
        types(first),
        ["INSERT", "INSERT", "INSERT", "UPDATE", "DELETE"]
    );
    assert_eq!(first.json()["events"][3]["payload"]["record"]["v"], "bb");
    assert_eq!(types(second), ["INSERT"]);
    assert_eq!(second.json()["transaction"]["events_total"], 1);
    wait_until(WAIT, "all six recorded as delivered", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 6
    });
}

#[test]
fn a_large_transaction_goes_in_numbered_parts_in_order() {
    let pg = Cluster::start(&["pg_webhook.max_payload_bytes = '2kB'"]);
    let rx = Receiver::start();
    let mut db = grouped_table(&pg, &rx, "");
    exec(
        &mut db,
        "INSERT INTO t SELECT g, repeat('x', 300) FROM generate_series(1, 30) g",
    );
    wait_until(WAIT, "all 30 events", || total_events(&rx) == 30);
    let requests = rx.accepted();
    let parts = requests.len();
    assert!(
        parts >= 5,
        "30 events of ~360 bytes in 2 kB parts: {parts} parts"
    );
    for r in &requests {
        assert!(r.body.len() <= 2048, "a {}-byte part", r.body.len());
    }
    assert_eq!(
        parts_in_order(&requests, 30),
        (1..=30).collect::<Vec<i64>>(),
        "statement order across parts"
    );
}

#[test]
fn a_transaction_of_two_full_cut_pages_tells_every_part_its_size() {
    // The cut reads and writes 1,000 events at a time, and only the last page's events carry
    // the transaction's size: 2,000 events end on a full page.
    let pg = Cluster::start(&["pg_webhook.max_payload_bytes = '32kB'"]);
    let rx = Receiver::start();
    let mut db = grouped_table(&pg, &rx, "");
    exec(
        &mut db,
        "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g",
    );
    wait_until(WAIT, "all 2,000 events", || total_events(&rx) == 2000);
    let requests = rx.accepted();
    assert!(
        requests.len() >= 10,
        "2,000 events of ~160 bytes in 32 kB parts: {} parts",
        requests.len()
    );
    assert_eq!(
        parts_in_order(&requests, 2000),
        (1..=2000).collect::<Vec<i64>>(),
        "statement order across parts"
    );
}

#[test]
fn a_failed_part_is_retried_whole_and_holds_back_the_next() {
    let pg = Cluster::start(&["pg_webhook.max_payload_bytes = '2kB'"]);
    let refused = Arc::new(AtomicUsize::new(0));
    let r = refused.clone();
    let rx = Receiver::with(move |req: &Request, _| {
        let part = req.json()["transaction"]["part"].as_u64();
        if part == Some(2) && r.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::Status(503)
        } else {
            Reply::Status(204)
        }
    });
    let mut db = grouped_table(
        &pg,
        &rx,
        ", retry_schedule => ARRAY['100 milliseconds']::interval[], max_attempts => 10",
    );
    exec(
        &mut db,
        "INSERT INTO t SELECT g, repeat('x', 300) FROM generate_series(1, 20) g",
    );
    let parts = |r: &Request| r.json()["transaction"]["parts"].as_u64().unwrap_or(0);
    wait_until(WAIT, "the last part", || {
        rx.accepted()
            .last()
            .is_some_and(|r| r.json()["transaction"]["part"].as_u64() == Some(parts(r)))
    });
    let sent: Vec<(u64, String)> = rx
        .requests()
        .iter()
        .map(|r| {
            (
                r.json()["transaction"]["part"].as_u64().unwrap_or(0),
                r.id(),
            )
        })
        .collect();
    let order: Vec<u64> = sent.iter().map(|s| s.0).collect();
    assert_eq!(
        &order[..4],
        [1, 2, 2, 2],
        "part 2 three times before part 3: {order:?}"
    );
    assert!(order[4..].windows(2).all(|w| w[1] == w[0] + 1), "{order:?}");
    assert_eq!(sent[1].1, sent[2].1, "a retry keeps the part's webhook-id");
    assert_eq!(sent[2].1, sent[3].1);
}

#[test]
fn cloudevents_transactions_carry_the_transaction_in_extension_attributes() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    let (_, secret) = subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", group_by => 'transaction', format => 'cloudevents'",
    );
    exec(&mut db, "INSERT INTO t VALUES (1), (2)");
    wait_until(WAIT, "the transaction", || rx.accepted().len() == 1);
    let r = &rx.accepted()[0];
    r.verify(&secret).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        r.header("content-type"),
        Some("application/cloudevents-batch+json")
    );
    let events = r.json();
    let events = events
        .as_array()
        .unwrap_or_else(|| panic!("an array: {events}"));
    assert_eq!(events.len(), 2);
    for e in events {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["pgtxpart"], 1);
        assert_eq!(e["pgtxparts"], 1);
        assert_eq!(e["pgtxevents"], 2);
        assert_eq!(e["pgtxid"], events[0]["pgtxid"]);
    }
}

#[test]
fn group_by_is_checked_at_subscribe() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY, account int)");
    let call =
        |extra: &str| format!("SELECT webhook.subscribe('t', 't', 'http://127.0.0.1:9/' {extra})");
    let e = error_of(&mut db, &call(", group_by => 'statement'"));
    assert!(
        e.contains("group_by of \"statement\" is not known: give 'transaction'"),
        "{e}"
    );
    for (extra, named) in [
        (", ordered => true", "ordered"),
        (", order_key => ARRAY['account']", "order_key"),
        (", batch_size => 10", "batch_size or batch_wait"),
    ] {
        let e = error_of(
            &mut db,
            &call(&format!(", group_by => 'transaction'{extra}")),
        );
        assert!(e.contains(&format!("leave {named} out")), "{e}");
    }
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM webhook.subscriptions"),
        0
    );
}

#[test]
fn a_part_with_an_event_too_large_to_send_goes_once_and_counts_while_its_request_is_out() {
    let pg = support::small_parts_cluster();
    // Slow answers: the worker claims many times while the part's request is out.
    let rx = Receiver::with(|_, _| Reply::Delay(std::time::Duration::from_millis(2000), 204));
    let mut db = grouped_table(&pg, &rx, ", max_in_flight => 1");
    // The 5 kB row is over the limit: named dead in the part, it rides with it. The part must
    // go once, and the next transaction not beside it, over max_in_flight.
    exec(
        &mut db,
        "INSERT INTO t VALUES (1, 'small'), (2, repeat('x', 5000)), (3, 'small')",
    );
    wait_until(WAIT, "the part to be out", || !rx.requests().is_empty());
    exec(&mut db, "INSERT INTO t VALUES (4, 'next')");
    wait_until(WAIT, "both transactions", || rx.accepted().len() >= 2);
    let sent: Vec<String> = rx.requests().iter().map(|r| r.id()).collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_ne!(sent[0], sent[1]);
    assert_eq!(rx.peak_concurrency(), 1, "over max_in_flight");
    // Named in its part, it died when the part was delivered.
    wait_until(WAIT, "the large row dead", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'dead'",
        ) == 1
    });
}

#[test]
fn rate_limit_counts_the_events_of_each_transaction() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut db = grouped_table(&pg, &rx, ", rate_limit => 4");
    // Six transactions of two events each: 12 events at 4 a second, so the last request
    // starts 2.5 s (five requests of two events) after the first's slot. The bound leaves one
    // request's interval for the first arriving late (a new connection on a loaded machine):
    // without the limit all six go out within milliseconds.
    for i in 0..6 {
        exec(
            &mut db,
            &format!("INSERT INTO t VALUES ({}), ({})", 2 * i, 2 * i + 1),
        );
    }
    let got = rx.wait_for(6, WAIT);
    let spread = got[got.len() - 1].at - got[0].at;
    assert!(
        spread >= std::time::Duration::from_millis(2000),
        "6 requests of 2 events at 4 events/s went out within {spread:?}"
    );
}

#[test]
fn transactions_waiting_for_a_retry_do_not_hold_back_the_next_one() {
    let pg = Cluster::start(&[]);
    // Transactions 1-10 fail and wait an hour; the 11th must still go.
    let rx = Receiver::with(|req: &Request, _| {
        let id = req.json()["events"][0]["payload"]["record"]["id"]
            .as_i64()
            .unwrap_or(0);
        if id <= 10 {
            Reply::Status(503)
        } else {
            Reply::Status(204)
        }
    });
    let mut db = grouped_table(
        &pg,
        &rx,
        ", max_in_flight => 1, retry_schedule => ARRAY['1 hour']::interval[], max_attempts => 10",
    );
    for i in 1..=10 {
        exec(&mut db, &format!("INSERT INTO t VALUES ({i}, '')"));
    }
    wait_until(WAIT, "the ten failing transactions tried", || {
        rx.requests().len() >= 10
    });
    exec(&mut db, "INSERT INTO t VALUES (11, '')");
    wait_until(WAIT, "the eleventh transaction", || {
        !rx.accepted().is_empty()
    });
}

#[test]
fn a_large_transactions_parts_follow_one_another_without_waiting_for_a_poll() {
    // A part goes once the one before it is recorded, and recording a part did not ask for a
    // claim: with nothing else committed, each part waited for the next poll (a second), and
    // these ~90 parts took a minute and a half.
    let pg = Cluster::start(&["pg_webhook.max_payload_bytes = '2kB'"]);
    let rx = Receiver::start();
    let mut db = grouped_table(&pg, &rx, "");
    exec(
        &mut db,
        "INSERT INTO t SELECT g, repeat('x', 300) FROM generate_series(1, 500) g",
    );
    wait_until(WAIT, "all 500 events", || total_events(&rx) == 500);
    assert!(rx.accepted().len() >= 80, "{} parts", rx.accepted().len());
}
