//! A transaction's parts when the worker dies between a part's send and its record while the
//! payload limit changes, or while its subscription's settings cannot be read. One scenario
//! per test.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply, Request};
use support::{alter_system, count, exec, grouped_table, WAIT};

/// A cluster whose requests may carry 8 kB (lowered by the tests), polling every 100 ms.
fn cluster() -> Cluster {
    Cluster::start(&[
        "pg_webhook.max_payload_bytes = '8kB'",
        "pg_webhook.poll_interval = '100ms'",
    ])
}

/// Table `t` subscribed by transaction (with `options`) and 40 rows of ~300 bytes written in
/// one transaction: a session.
fn forty_rows_in_one_transaction(pg: &Cluster, rx: &Receiver, options: &str) -> postgres::Client {
    let mut db = grouped_table(pg, rx, options);
    exec(
        &mut db,
        "INSERT INTO t SELECT g, repeat('x', 300) FROM generate_series(1, 40) g",
    );
    db
}

/// Lowers the payload limit to 2 kB.
fn lower_the_limit(db: &mut postgres::Client) {
    alter_system(db, "SET pg_webhook.max_payload_bytes = '2kB'");
}

/// Waits (up to `within`) for the 40 events to finish, and checks none died.
fn all_delivered(db: &mut postgres::Client, within: Duration) {
    wait_until(within, "all 40 events finished", || {
        count(
            db,
            "SELECT count(*) FROM webhook.events WHERE status IN ('delivered', 'dead')",
        ) == 40
    });
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM webhook.events WHERE status = 'dead'"
        ),
        0,
        "no event died"
    );
}

/// The accepted requests' part numbers are 1, 2, 3... : in order, none twice or skipped.
fn assert_parts_in_order(accepted: &[Request]) {
    let parts: Vec<u64> = accepted
        .iter()
        .map(|r| r.json()["transaction"]["part"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        parts.windows(2).all(|w| w[1] == w[0] + 1) && parts.first() == Some(&1),
        "parts delivered in order, none twice: {parts:?}"
    );
}

#[test]
fn a_part_sent_by_a_worker_that_died_and_cut_again_repeats_its_id_only_with_fewer_events() {
    let pg = cluster();
    // Part 2 hangs the first time: the worker is ended while it waits.
    let hung = Arc::new(AtomicBool::new(false));
    let h = hung.clone();
    let rx = Receiver::with(move |req: &Request, _| {
        let part = req.json()["transaction"]["part"].as_u64();
        if part == Some(2) && !h.swap(true, Ordering::SeqCst) {
            Reply::Hang(Duration::from_secs(60))
        } else {
            Reply::Status(204)
        }
    });
    let mut db = forty_rows_in_one_transaction(&pg, &rx, ", timeout => '60 seconds'");
    let worker = pg.worker_pid(&mut db);
    wait_until(WAIT, "part 2 sent", || hung.load(Ordering::SeqCst));
    lower_the_limit(&mut db);
    exec(&mut db, &format!("SELECT pg_terminate_backend({worker})"));
    all_delivered(&mut db, WAIT);
    // Every request, the hung one too: one webhook-id, one set of events or fewer of them.
    let mut by_id: HashMap<String, Vec<Vec<i64>>> = HashMap::new();
    for r in rx.requests() {
        by_id.entry(r.id()).or_default().push(r.row_ids());
    }
    for (id, sent) in &by_id {
        for later in &sent[1..] {
            assert!(
                later.iter().all(|e| sent[0].contains(e)),
                "{id} sent again with events it did not have: {sent:?}"
            );
        }
    }
    let mut seen: Vec<i64> = rx.accepted().iter().flat_map(Request::row_ids).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen,
        (1..=40).collect::<Vec<i64>>(),
        "every event delivered"
    );
    assert_parts_in_order(&rx.accepted());
}

#[test]
fn a_rate_limited_transactions_parts_cut_again_all_go_in_order() {
    // A part found over a lowered limit has taken rate slots for its events already: the parts
    // it is cut into still go, in order, none skipped.
    let pg = cluster();
    let refused = Arc::new(AtomicBool::new(false));
    let r = refused.clone();
    let rx = Receiver::with(move |req: &Request, _| {
        let part = req.json()["transaction"]["part"].as_u64();
        if part == Some(2) && !r.swap(true, Ordering::SeqCst) {
            Reply::Status(503)
        } else {
            Reply::Status(204)
        }
    });
    let mut db = forty_rows_in_one_transaction(
        &pg,
        &rx,
        ", rate_limit => 40, max_in_flight => 1,
           retry_schedule => ARRAY['2 seconds']::interval[], max_attempts => 5",
    );
    wait_until(WAIT, "part 2 refused", || refused.load(Ordering::SeqCst));
    lower_the_limit(&mut db);
    all_delivered(&mut db, Duration::from_secs(60));
    let accepted = rx.accepted();
    let ids: Vec<i64> = accepted.iter().flat_map(Request::row_ids).collect();
    assert_eq!(
        ids,
        (1..=40).collect::<Vec<i64>>(),
        "statement order, once each"
    );
    assert_parts_in_order(&accepted);
}

#[test]
fn a_dead_parts_events_replayed_while_the_next_part_is_out_go_as_a_transaction_of_their_own() {
    let pg = cluster();
    // Part 2 dies at its first answer; part 3 is answered slowly, the first time.
    let slowed = Arc::new(AtomicBool::new(false));
    let s = slowed.clone();
    let rx = Receiver::with(move |req: &Request, _| {
        let tx = &req.json()["transaction"];
        match tx["part"].as_u64() {
            Some(2) if tx["events_total"] == 40 => Reply::Status(500),
            Some(3) if !s.swap(true, Ordering::SeqCst) => Reply::Delay(Duration::from_secs(3), 204),
            _ => Reply::Status(204),
        }
    });
    let mut db = forty_rows_in_one_transaction(&pg, &rx, ", max_attempts => 1");
    wait_until(WAIT, "part 3 out", || slowed.load(Ordering::SeqCst));
    let dead = count(&mut db, "SELECT webhook.replay_dead('t')");
    assert!(dead > 0, "part 2's events were dead");
    wait_until(WAIT, "all 40 events delivered", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 40
    });
    let accepted = rx.accepted();
    let mut ids: Vec<i64> = accepted.iter().flat_map(Request::row_ids).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=40).collect::<Vec<i64>>(),
        "each event delivered once"
    );
    let mut by_id: HashMap<String, Vec<i64>> = HashMap::new();
    for r in rx.requests() {
        let events = r.row_ids();
        let first = by_id.entry(r.id()).or_insert_with(|| events.clone());
        assert_eq!(*first, events, "{} sent with other events", r.id());
    }
    let replayed: Vec<&Request> = accepted
        .iter()
        .filter(|r| r.json()["transaction"]["events_total"].as_u64() == Some(dead as u64))
        .collect();
    assert_eq!(
        replayed.len(),
        1,
        "the replay is one transaction of one part"
    );
}

#[test]
fn a_transaction_is_cut_within_the_limit_while_its_subscriptions_settings_cannot_be_read() {
    // Each event then settles alone (retried), and the cut once weighed each at nothing: the
    // whole transaction went into one part, which every claim read whole. (Settings that do
    // not parse, written here by hand: subscribe and set_client_certificate refuse them.)
    let pg = support::small_parts_cluster();
    let rx = Receiver::start();
    let mut db = grouped_table(&pg, &rx, "");
    exec(
        &mut db,
        "SELECT webhook.pause('t');
         UPDATE webhook._subscriptions SET client_cert = 'garbage', client_key = 'garbage'
          WHERE name = 't';
         SELECT webhook.resume('t');
         INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 3000) g",
    );
    wait_until(WAIT, "the transaction to be cut", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_queue WHERE part IS NOT NULL",
        ) == 3000
    });
    // ~130 bytes of row images each: at most 15 of them in 2 kB.
    assert!(
        count(
            &mut db,
            "SELECT max(n) FROM (SELECT count(*) AS n FROM webhook._event_queue GROUP BY part) p"
        ) <= 16
    );
}
