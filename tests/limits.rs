//! A subscription's own limits: how often a backlog's events are put back for the rate, what a
//! change of the limits does to those put back already, and how batches count against
//! max_in_flight.

mod support;

use std::time::Duration;

use postgres::Client;
use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::subscribe;

/// One worker with 8 requests (so a claim reads a few events at a time, as under load), a
/// table `t` subscribed with `rate`, and a log of every change to a queued event's due time.
fn rate_limited(rate: &str) -> (Cluster, Client, Receiver) {
    limited(Receiver::start(), &format!(", rate_limit => {rate}"))
}

/// As `rate_limited`, with the subscription's `options` and the receiver `rx`.
fn limited(rx: Receiver, options: &str) -> (Cluster, Client, Receiver) {
    let pg = Cluster::start(&["pg_webhook.workers = 1", "pg_webhook.max_in_flight = 8"]);
    let mut db = pg.client_with_extension();
    db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE TABLE put_back (id bigint NOT NULL);
         CREATE FUNCTION log_put_back() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO public.put_back VALUES (NEW.id); RETURN NULL; END $$;
         CREATE TRIGGER log_put_back AFTER UPDATE OF next_attempt_at ON webhook._event_queue
            FOR EACH ROW EXECUTE FUNCTION log_put_back();",
    )
    .unwrap();
    subscribe(&mut db, "t", "t", &rx.url("/t"), options);
    (pg, db, rx)
}

fn count(db: &mut Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn a_rate_limited_backlog_is_put_back_once_not_claim_after_claim() {
    // Each claim put its events over the rate back to the same few instants (the next slot,
    // the one after, ...), so a backlog bigger than a claim came due in heaps, and each heap
    // was put back again but one: 5,000 events at 50 a second were rewritten 250 times each.
    // Now each goes back to a slot of its own.
    let (_pg, mut db, rx) = rate_limited("20");
    db.batch_execute("INSERT INTO t SELECT generate_series(1, 200)")
        .unwrap();
    let got = rx.wait_for(200, support::WAIT);
    assert_eq!(got.len(), 200);
    wait_until(support::WAIT, "every event recorded", || {
        count(&mut db, "SELECT count(*) FROM webhook._event_queue") == 0
    });
    let put_back = count(&mut db, "SELECT count(*) FROM put_back");
    let most = count(
        &mut db,
        "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM put_back GROUP BY id) c",
    );
    // Once each (all but the first few, which went at once), and once more for those a claim
    // found a little before their slot, or turned away after the worker was held up (a loaded
    // machine: events due together get one slot each, the rest go back again). The old way
    // rewrote each event hundreds of times.
    assert!(
        (150..=400).contains(&put_back) && most <= 5,
        "200 events were put back {put_back} times, one of them {most} times"
    );
}

#[test]
fn a_changed_rate_limit_gives_the_events_put_back_new_slots() {
    // At 1 a second, 200 events go back to slots up to 200 s ahead; with the limit raised (by
    // hand: the API sets it once, at subscribe) they were still sent at the old pace.
    let (_pg, mut db, rx) = rate_limited("1");
    db.batch_execute("INSERT INTO t SELECT generate_series(1, 200)")
        .unwrap();
    wait_until(support::WAIT, "the backlog put back over 3 minutes", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_queue
              WHERE next_attempt_at > now() + interval '150 seconds'",
        ) > 0
    });
    db.batch_execute("UPDATE webhook._subscriptions SET rate_limit = 1000 WHERE name = 't'")
        .unwrap();
    let got = rx.wait_for(200, support::WAIT);
    assert_eq!(got.len(), 200);
}

#[test]
fn partial_batches_each_count_against_max_in_flight() {
    // Requests in flight were reckoned as events in flight over the batch size: one-event
    // batches (one row per commit, nothing to wait for) counted as one request until ten were
    // out, and max_in_flight 2 let ten go at once.
    let rx = Receiver::with(|_, _| Reply::Delay(Duration::from_secs(1), 204));
    let (_pg, mut db, rx) = limited(rx, ", max_in_flight => 2, batch_size => 10");
    // Each row its own claim: the first two are seen going out, the next ones come a few
    // claims apart while those two are out.
    for id in 1..=2 {
        db.batch_execute(&format!("INSERT INTO t VALUES ({id})"))
            .unwrap();
        wait_until(support::WAIT, "the row's batch going out", || {
            rx.count() >= id
        });
    }
    for id in 3..=6 {
        db.batch_execute(&format!("INSERT INTO t VALUES ({id})"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_until(support::WAIT, "6 events in batches", || {
        batched_events(&rx) >= 6
    });
    assert_eq!(batched_events(&rx), 6);
    assert!(rx.peak_concurrency() <= 2, "{}", rx.peak_concurrency());
}

/// How many events the batches `rx` received carried.
fn batched_events(rx: &Receiver) -> usize {
    (rx.requests().iter())
        .map(|r| r.json()["events"].as_array().map_or(0, Vec::len))
        .sum()
}

#[test]
fn a_batched_subscriptions_max_in_flight_counts_its_batches_not_their_events() {
    // The second event of a batch being made counted the first as a request in flight: with
    // max_in_flight 1 every batch carried one event.
    let (_pg, mut db, rx) = limited(Receiver::start(), ", max_in_flight => 1, batch_size => 10");
    db.batch_execute("INSERT INTO t SELECT generate_series(1, 50)")
        .unwrap();
    wait_until(support::WAIT, "50 events in batches", || {
        batched_events(&rx) >= 50
    });
    assert_eq!(batched_events(&rx), 50);
    assert!(rx.peak_concurrency() <= 1, "{}", rx.peak_concurrency());
    let requests = rx.count();
    assert!(requests <= 10, "50 events in {requests} requests");
}

#[test]
fn a_subscription_at_its_max_in_flight_sends_in_order_under_a_stream_of_writes() {
    // Events over max_in_flight were put back for 100 ms rounds, and a claim offered new events
    // the free request before those whose time had come: under writes faster than the
    // endpoint, row 2 was not sent in a minute (76,000 rows written, each put back ~10 times).
    let rx = Receiver::with(|_, _| Reply::Delay(Duration::from_millis(20), 204));
    let (pg, mut db, rx) = limited(rx, ", max_in_flight => 1");
    db.batch_execute("INSERT INTO t VALUES (1), (2)").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut w = pg.connect("postgres");
        std::thread::spawn(move || {
            // One row per commit, as fast as one session goes, for at most 10 s.
            let started = std::time::Instant::now();
            let mut id = 3;
            while !stop.load(std::sync::atomic::Ordering::SeqCst)
                && started.elapsed() < Duration::from_secs(10)
            {
                w.execute("INSERT INTO t VALUES ($1)", &[&id]).unwrap();
                id += 1;
            }
            id - 3
        })
    };
    wait_until(support::WAIT, "30 rows delivered", || {
        rx.accepted_ids().len() >= 30
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let written = writer.join().unwrap();
    // One session's rows, in the order it wrote them: row 2 went second, when row 1 was
    // answered, not after the writes stopped.
    let ids = rx.accepted_ids();
    assert!(
        ids[..30].windows(2).all(|w| w[0] < w[1]) && ids[1] == 2,
        "{written} rows written meanwhile, sent in this order: {ids:?}"
    );
    // And none was written again on its way out.
    assert_eq!(count(&mut db, "SELECT count(*) FROM put_back"), 0);
}

#[test]
fn a_resumed_backlog_over_max_in_flight_goes_in_order_without_being_written_again() {
    // Resumed events are due ones: over max_in_flight they were put back for 100 ms rounds,
    // ~32 times each, and went out of order.
    let rx = Receiver::with(|_, _| Reply::Delay(Duration::from_millis(5), 204));
    let (_pg, mut db, rx) = limited(rx, ", max_in_flight => 1");
    db.batch_execute("SELECT webhook.pause('t'); INSERT INTO t SELECT generate_series(1, 200)")
        .unwrap();
    wait_until(support::WAIT, "the backlog parked", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'parked'",
        ) == 200
    });
    db.batch_execute("SELECT webhook.resume('t')").unwrap();
    rx.wait_for(200, support::WAIT);
    let ids = rx.accepted_ids();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "sent in this order: {ids:?}"
    );
    // Parked once, made due once by the resume, and no more.
    let most = count(
        &mut db,
        "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM put_back GROUP BY id) c",
    );
    assert!(most <= 2, "an event was put back {most} times");
}
