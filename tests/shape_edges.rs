//! Delivery shapes under edges: a transaction's parts, batches and ordered keys while settings
//! change, workers die or receivers misbehave. One scenario per test.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply, Request};
use support::{alter_system, count, exec, grouped_table, subscribe, WAIT};

#[test]
fn a_transactions_parts_are_cut_again_when_the_payload_limit_is_lowered_between_them() {
    let pg = Cluster::start(&["pg_webhook.max_payload_bytes = '8kB'"]);
    // Part 2 is refused once, so it waits for its retry while the limit is lowered.
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
    let mut db = grouped_table(
        &pg,
        &rx,
        ", retry_schedule => ARRAY['3 seconds']::interval[], max_attempts => 5",
    );
    exec(
        &mut db,
        "INSERT INTO t SELECT g, repeat('x', 300) FROM generate_series(1, 40) g",
    );
    wait_until(WAIT, "part 2 refused", || refused.load(Ordering::SeqCst));
    // Each event still fits alone under the new limit; part 2 as cut does not.
    alter_system(&mut db, "SET pg_webhook.max_payload_bytes = '2kB'");
    wait_until(WAIT, "all 40 events finished", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status IN ('delivered', 'dead')",
        ) == 40
    });
    let dead = count(
        &mut db,
        "SELECT count(*) FROM webhook.events WHERE status = 'dead'",
    );
    assert_eq!(dead, 0, "events of a committed transaction died unsent");
    let accepted = rx.accepted();
    let ids: Vec<i64> = accepted.iter().flat_map(Request::row_ids).collect();
    assert_eq!(ids, (1..=40).collect::<Vec<i64>>(), "statement order");
    let parts: Vec<u64> = accepted
        .iter()
        .map(|r| r.json()["transaction"]["part"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        parts.windows(2).all(|w| w[1] == w[0] + 1) && parts.first() == Some(&1),
        "parts in order: {parts:?}"
    );
    let last = accepted.last().map(|r| r.json()["transaction"].clone());
    let last = last.unwrap_or_default();
    assert_eq!(last["part"], last["parts"], "the last part says so: {last}");
    for r in &accepted {
        assert_eq!(r.json()["transaction"]["events_total"], 40);
    }
    // A part is retried whole: its events share their attempts, so none of them may die while
    // the others are retried. The events part 2 was refused with are not cut in with events
    // never sent.
    let mut attempts = std::collections::HashMap::new();
    for row in db
        .query(
            "SELECT (record->>'id')::bigint, attempts FROM webhook.events",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    {
        attempts.insert(row.get::<_, i64>(0), row.get::<_, i32>(1));
    }
    for r in &accepted {
        let mut seen: Vec<i32> = r.row_ids().iter().map(|id| attempts[id]).collect();
        seen.dedup();
        assert_eq!(
            seen.len(),
            1,
            "one part, events with different attempts: {seen:?}"
        );
    }
    let late = &accepted[1..];
    assert!(
        late.iter().all(|r| r.body.len() <= 2048),
        "parts after the change within the new limit"
    );
}

/// Rows `l (k, j, seq)` subscribed as `ledger` keyed by `k` (to `/old`), whose endpoint refuses everything for
/// the first 4 s, with three changes of one row queued behind the refusals.
fn keyed_backlog(pg: &Cluster, rx: &Receiver) -> (postgres::Client, i32) {
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE l (id int PRIMARY KEY, k int, j int, seq int);
         INSERT INTO l VALUES (1, 1, 1, 0)",
    );
    let (old, _) = subscribe(
        &mut db,
        "ledger",
        "l",
        &rx.url("/old"),
        ", order_key => ARRAY['k'], retry_schedule => ARRAY['1 second']::interval[], max_attempts => 50",
    );
    for seq in 1..=3 {
        exec(&mut db, &format!("UPDATE l SET seq = {seq} WHERE id = 1"));
    }
    (db, old)
}

/// `keyed_backlog`'s ledger, whose old subscription's receiver answers 503 for its first 4 s
/// (unpaused: until the new subscription's three changes are in),
/// switched in one transaction to a new subscription keyed by `j` (paused there if `paused`),
/// then updated three more times (seq 4..6): the cluster, the receiver, a session and the old
/// subscription's id.
fn switched(paused: bool) -> (Cluster, Receiver, postgres::Client, i32) {
    let pg = Cluster::start(&[]);
    let start = std::time::Instant::now();
    // Unpaused, the old subscription's receiver fails until the new one's three changes are
    // in (a positive signal: a 4 s window alone was over before a slow machine had sent them).
    let seen = Arc::new(AtomicUsize::new(0));
    let new_in = seen.clone();
    let rx = Receiver::with(move |r: &Request, _| {
        if r.path.starts_with("/new") {
            new_in.fetch_add(1, Ordering::SeqCst);
            return Reply::Status(204);
        }
        let failing = if paused {
            start.elapsed() < std::time::Duration::from_secs(4)
        } else {
            new_in.load(Ordering::SeqCst) < 3
        };
        if failing {
            Reply::Status(503)
        } else {
            Reply::Status(204)
        }
    });
    let (mut db, old) = keyed_backlog(&pg, &rx);
    exec(&mut db, "BEGIN");
    exec(&mut db, "SELECT webhook.unsubscribe('ledger')");
    subscribe(
        &mut db,
        "ledger",
        "l",
        &rx.url("/new"),
        ", order_key => ARRAY['j']",
    );
    if paused {
        exec(&mut db, "SELECT webhook.pause('ledger')");
    }
    exec(&mut db, "COMMIT");
    for seq in 4..=6 {
        exec(&mut db, &format!("UPDATE l SET seq = {seq} WHERE id = 1"));
    }
    (pg, rx, db, old)
}

/// The `seq` of the row's six changes, in the order they arrived.
fn arrived(rx: &Receiver) -> Vec<i64> {
    wait_until(WAIT, "all six changes", || rx.accepted().len() == 6);
    rx.accepted()
        .iter()
        .map(|r| r.json()["record"]["seq"].as_i64().unwrap_or(-1))
        .collect()
}

#[test]
fn resubscribing_with_the_new_subscription_paused_until_the_old_one_drains_keeps_order() {
    // The switch README describes: nothing captured twice or not at all, and the new
    // subscription's events wait for the old one's backlog.
    let (_pg, rx, mut db, old) = switched(true);
    wait_until(WAIT, "the old subscription's backlog sent", || {
        count(
            &mut db,
            &format!(
                "SELECT count(*) FROM webhook.events
                  WHERE subscription_id = {old} AND status IN ('pending', 'parked')"
            ),
        ) == 0
    });
    exec(&mut db, "SELECT webhook.resume('ledger')");
    assert_eq!(
        arrived(&rx),
        [1, 2, 3, 4, 5, 6],
        "the row's changes in commit order"
    );
}

#[test]
fn a_new_subscription_does_not_wait_for_the_backlog_of_the_one_it_replaces() {
    // Why README's switch pauses the new subscription: two subscriptions are two streams, and
    // "resubscribe to key by another column" done plainly sent a row's later changes first.
    let (_pg, rx, _db, _) = switched(false);
    assert_eq!(
        arrived(&rx),
        [4, 5, 6, 1, 2, 3],
        "the new stream went first"
    );
}
