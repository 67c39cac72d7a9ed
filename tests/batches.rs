//! Batches: many events per request, each carried in exactly the body it would have had alone.
//! One scenario per test; signatures are checked with the stock `standardwebhooks` crate.

mod support;

use std::collections::HashSet;

use support::cluster::{wait_until, Cluster};
use support::events::{batched_ids, members};
use support::receiver::{Receiver, Reply};
use support::{count, error_of, exec, subscribe, text, WAIT};

#[test]
fn a_batch_carries_each_events_own_body_and_verifies_with_a_stock_verifier() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    let (_, secret) = subscribe(&mut db, "t", "t", &rx.url("/t"), ", batch_size => 10");
    exec(
        &mut db,
        "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 25) g",
    );
    wait_until(WAIT, "all 25 events", || batched_ids(&rx).len() >= 25);
    let requests = rx.accepted();
    let mut seen = HashSet::new();
    for r in &requests {
        r.verify(&secret)
            .unwrap_or_else(|e| panic!("{e}: {}", r.id()));
        // msg_<uid>_b<first event>_<hash>, read by its parts: the random uid may itself
        // begin with "b".
        let request_id = r.id();
        let parts: Vec<&str> = request_id.split('_').collect();
        assert!(
            parts.len() == 4 && parts[0] == "msg" && parts[2].starts_with('b'),
            "{request_id}"
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        let batch = members(r);
        assert!((1..=10).contains(&batch.len()), "{} events", batch.len());
        for (id, payload) in batch {
            // The body the event would have had alone: the default format.
            assert_eq!(payload["type"], "INSERT", "{payload}");
            assert_eq!(payload["table"], "t");
            let row = payload["record"]["id"].as_i64().unwrap_or_default();
            assert_eq!(payload["record"]["v"], format!("v{row}"));
            // Each event's own webhook-id, as it would have had alone.
            let parts: Vec<&str> = id.split('_').collect();
            assert!(
                parts.len() == 3 && parts[0] == "msg" && parts[2].parse::<i64>().is_ok(),
                "{id}"
            );
            assert!(seen.insert(id.clone()), "{id} twice");
        }
    }
    assert_eq!(seen.len(), 25);
    assert!(
        requests.len() <= 5,
        "{} requests for 25 events in batches of 10",
        requests.len()
    );
    wait_until(WAIT, "all 25 recorded as delivered", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 25
    });
}

#[test]
fn a_failed_batch_is_retried_whole_under_the_same_webhook_id() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::with(|_, n| {
        if n == 0 {
            Reply::Status(503)
        } else {
            Reply::Status(204)
        }
    });
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", batch_size => 50, retry_schedule => ARRAY['100 milliseconds']::interval[]",
    );
    exec(&mut db, "INSERT INTO t SELECT generate_series(1, 5)");
    wait_until(WAIT, "the retried batch", || !rx.accepted().is_empty());
    let all = rx.requests();
    assert_eq!(all.len(), 2, "one failed request, one retry");
    assert_eq!(
        all[0].id(),
        all[1].id(),
        "a retry keeps the batch's webhook-id"
    );
    assert_eq!(all[0].body, all[1].body, "and its events");
    assert_eq!(members(&all[1]).len(), 5);
    // Every event has both attempts recorded.
    wait_until(
        WAIT,
        "the five recorded as delivered on the second attempt",
        || {
            count(
                &mut db,
                "SELECT count(*) FROM webhook.events WHERE status = 'delivered' AND attempts = 2",
            ) == 5
        },
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM webhook.attempts"), 10);
}

#[test]
fn a_partial_batch_waits_for_batch_wait_to_fill() {
    partial_batch_gathers_its_wait(&[]);
}

/// With its events shared out by id, each worker would wait out its own partial batch and send
/// it: a subscription with a `batch_wait` is served whole by one worker.
#[test]
fn a_partial_batch_gathers_its_wait_with_several_workers() {
    partial_batch_gathers_its_wait(&["pg_webhook.workers = 2"]);
}

fn partial_batch_gathers_its_wait(settings: &[&str]) {
    let pg = Cluster::start(settings);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", batch_size => 100, batch_wait => '10 seconds'",
    );
    // Five transactions 150 ms apart, well within the wait (long, so a loaded machine's slow
    // inserts still fall in it), each claimed on its own: the later ones join the first one's
    // wait, and the five go in one request.
    for id in 1..=5 {
        if id > 1 {
            std::thread::sleep(std::time::Duration::from_millis(150));
        }
        exec(&mut db, &format!("INSERT INTO t VALUES ({id})"));
    }
    wait_until(WAIT, "the batch", || !rx.accepted().is_empty());
    let requests = rx.accepted();
    assert_eq!(requests.len(), 1);
    let mut ids = batched_ids(&rx);
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
}

#[test]
fn cloudevents_batches_use_the_cloudevents_batch_format() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    let (_, secret) = subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", batch_size => 10, format => 'cloudevents'",
    );
    exec(&mut db, "INSERT INTO t SELECT generate_series(1, 4)");
    wait_until(WAIT, "the batch", || batched_ids(&rx).len() >= 4);
    for r in rx.accepted() {
        r.verify(&secret).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.header("content-type"),
            Some("application/cloudevents-batch+json")
        );
        let body = r.json();
        let events = body
            .as_array()
            .unwrap_or_else(|| panic!("an array: {body}"));
        for e in events {
            assert_eq!(e["specversion"], "1.0");
            assert_eq!(e["type"], "pg_webhook.t.insert");
        }
    }
}

#[test]
fn batches_stay_within_the_payload_limit() {
    let pg = Cluster::start(&["pg_webhook.max_payload_bytes = '2kB'"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY, pad text)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), ", batch_size => 100");
    exec(
        &mut db,
        "INSERT INTO t SELECT g, repeat('x', 300) FROM generate_series(1, 30) g;
         INSERT INTO t VALUES (31, repeat('y', 3000));",
    );
    wait_until(WAIT, "the 30 events that fit", || {
        batched_ids(&rx).len() >= 30
    });
    for r in rx.accepted() {
        assert!(r.body.len() <= 2048, "a {}-byte batch", r.body.len());
    }
    assert!(
        rx.accepted().len() >= 5,
        "30 events of ~360 bytes need several 2 kB batches"
    );
    wait_until(WAIT, "the oversized event to die", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'dead'",
        ) == 1
    });
    let error = text(
        &mut db,
        "SELECT last_error FROM webhook.events WHERE status = 'dead'",
    )
    .unwrap_or_default();
    assert!(error.contains("pg_webhook.max_payload_bytes"), "{error}");
}

#[test]
fn batch_settings_out_of_range_or_with_ordered_are_refused() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    let call =
        |extra: &str| format!("SELECT webhook.subscribe('t', 't', 'http://127.0.0.1:9/' {extra})");
    let e = error_of(&mut db, &call(", batch_size => 0"));
    assert!(e.contains("batch_size of 0 is out of range"), "{e}");
    let e = error_of(&mut db, &call(", batch_size => 1001"));
    assert!(
        e.contains("give 1 (one event per request, the default) to 1000"),
        "{e}"
    );
    let e = error_of(
        &mut db,
        &call(", batch_size => 5, batch_wait => '2 minutes'"),
    );
    assert!(e.contains("batch_wait of 120000 ms is out of range"), "{e}");
    let e = error_of(&mut db, &call(", batch_size => 5, ordered => true"));
    assert!(e.contains("leave batch_size at 1"), "{e}");
    let e = error_of(&mut db, &call(", batch_wait => '1 second'"));
    assert!(e.contains("batch_wait only applies to batches"), "{e}");
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM webhook.subscriptions"),
        0
    );
}

#[test]
fn a_batch_counts_as_one_request_against_the_workers_max_in_flight() {
    // Two requests at a time for the whole worker: batches of 50 still go out full.
    let pg = Cluster::start(&["pg_webhook.max_in_flight = 2"]);
    let rx = Receiver::with(|_, _| Reply::Delay(std::time::Duration::from_millis(100), 204));
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), ", batch_size => 50");
    exec(&mut db, "INSERT INTO t SELECT generate_series(1, 500)");
    wait_until(WAIT, "all 500 events", || batched_ids(&rx).len() >= 500);
    let mut ids = batched_ids(&rx);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids, (1..=500).collect::<Vec<i64>>());
    let sizes: Vec<usize> = rx.accepted().iter().map(|r| members(r).len()).collect();
    assert!(
        sizes.len() <= 12,
        "500 events in {} requests of {sizes:?}: batches were cut to the request limit",
        sizes.len()
    );
    assert!(
        rx.peak_concurrency() <= 2,
        "{} at once",
        rx.peak_concurrency()
    );
}

#[test]
fn new_events_left_for_want_of_room_are_read_again() {
    // A claim reads a batch's worth of events for each free request; those of a subscription
    // without batches beyond the free requests stay behind the cursor, and are sent later.
    // The poll is an hour apart: only the worker's own paging can find them.
    let pg = Cluster::start(&[
        "pg_webhook.max_in_flight = 2",
        "pg_webhook.poll_interval = '1h'",
    ]);
    let batched = Receiver::start();
    let single = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(
        &mut db,
        "batched",
        "t",
        &batched.url("/b"),
        ", batch_size => 100",
    );
    subscribe(&mut db, "single", "t", &single.url("/s"), "");
    exec(&mut db, "INSERT INTO t SELECT generate_series(1, 300)");
    let mut got: Vec<i64> = single
        .wait_for(300, WAIT)
        .iter()
        .filter_map(|r| r.json()["record"]["id"].as_i64())
        .collect();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got, (1..=300).collect::<Vec<i64>>());
    wait_until(WAIT, "the batched subscription's 300", || {
        batched_ids(&batched).len() >= 300
    });
    wait_until(WAIT, "every event recorded", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 600
    });
}
