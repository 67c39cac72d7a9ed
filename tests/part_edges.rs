//! A transaction's parts when the worker dies between a part's send and its record while the
//! payload limit changes. One scenario per test.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply, Request};
use support::{count, exec, subscribe, WAIT};

#[test]
fn a_part_sent_by_a_worker_that_died_and_cut_again_repeats_its_id_only_with_fewer_events() {
    let pg = Cluster::start(&[
        "pg_webhook.max_payload_bytes = '8kB'",
        "pg_webhook.poll_interval = '100ms'",
    ]);
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
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY, pad text)");
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", group_by => 'transaction', timeout => '60 seconds'",
    );
    let worker = pg.worker_pid(&mut db);
    exec(
        &mut db,
        "INSERT INTO t SELECT g, repeat('x', 300) FROM generate_series(1, 40) g",
    );
    wait_until(WAIT, "part 2 sent", || hung.load(Ordering::SeqCst));
    exec(
        &mut db,
        "ALTER SYSTEM SET pg_webhook.max_payload_bytes = '2kB'",
    );
    exec(&mut db, "SELECT pg_reload_conf()");
    exec(&mut db, &format!("SELECT pg_terminate_backend({worker})"));
    wait_until(WAIT, "all 40 events finished", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status IN ('delivered', 'dead')",
        ) == 40
    });
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'dead'"
        ),
        0,
        "no event died"
    );
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
    let parts: Vec<u64> = rx
        .accepted()
        .iter()
        .map(|r| r.json()["transaction"]["part"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        parts.windows(2).all(|w| w[1] == w[0] + 1) && parts.first() == Some(&1),
        "parts delivered in order, none twice: {parts:?}"
    );
}

#[test]
fn a_rate_limited_transactions_parts_cut_again_all_go_in_order() {
    // A part found over a lowered limit has taken rate slots for its events already: the parts
    // it is cut into still go, in order, none skipped.
    let pg = Cluster::start(&[
        "pg_webhook.max_payload_bytes = '8kB'",
        "pg_webhook.poll_interval = '100ms'",
    ]);
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
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY, pad text)");
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", group_by => 'transaction', rate_limit => 40, max_in_flight => 1,
           retry_schedule => ARRAY['2 seconds']::interval[], max_attempts => 5",
    );
    exec(
        &mut db,
        "INSERT INTO t SELECT g, repeat('x', 300) FROM generate_series(1, 40) g",
    );
    wait_until(WAIT, "part 2 refused", || refused.load(Ordering::SeqCst));
    exec(
        &mut db,
        "ALTER SYSTEM SET pg_webhook.max_payload_bytes = '2kB'",
    );
    exec(&mut db, "SELECT pg_reload_conf()");
    wait_until(Duration::from_secs(60), "all 40 events finished", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status IN ('delivered', 'dead')",
        ) == 40
    });
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'dead'"
        ),
        0,
        "no event died"
    );
    let accepted = rx.accepted();
    let ids: Vec<i64> = accepted.iter().flat_map(Request::row_ids).collect();
    assert_eq!(
        ids,
        (1..=40).collect::<Vec<i64>>(),
        "statement order, once each"
    );
    let parts: Vec<u64> = accepted
        .iter()
        .map(|r| r.json()["transaction"]["part"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        parts.windows(2).all(|w| w[1] == w[0] + 1) && parts.first() == Some(&1),
        "parts in order: {parts:?}"
    );
}
