//! Batches that the payload limit cuts into several requests still keep to `max_in_flight`:
//! each request counts, not each batch the claim planned. One scenario per test.

mod support;

use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::events::{batched_ids, members};
use support::receiver::{Receiver, Reply};
use support::{count, exec, padded_table, WAIT};

/// 30 events of ~700 bytes under a 2 kB payload limit (two per request at most), batches of
/// 100, to a receiver that takes 200 ms a request: every event arrives, no body over the limit,
/// and the receiver never holds more than `peak` requests at once.
fn cut_batches_keep_to(settings: &[&str], extra: &str, peak: usize) {
    let mut settings = settings.to_vec();
    settings.push("pg_webhook.max_payload_bytes = '2kB'");
    let pg = Cluster::start(&settings);
    let rx = Receiver::with(|_, _| Reply::Delay(Duration::from_millis(200), 204));
    let mut db = padded_table(&pg, &rx, &format!(", batch_size => 100{extra}"));
    exec(
        &mut db,
        "INSERT INTO t SELECT g, repeat('x', 700) FROM generate_series(1, 30) g",
    );
    wait_until(WAIT, "all 30 events", || batched_ids(&rx).len() >= 30);
    let mut ids = batched_ids(&rx);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids, (1..=30).collect::<Vec<i64>>());
    let sizes: Vec<usize> = rx.accepted().iter().map(|r| members(r).len()).collect();
    assert!(
        sizes.len() >= 15,
        "30 events of ~700 bytes fit two to a 2 kB request: {sizes:?}"
    );
    for r in rx.accepted() {
        assert!(r.body.len() <= 2048, "a {}-byte batch", r.body.len());
    }
    assert!(
        rx.peak_concurrency() <= peak,
        "{} requests at once, {peak} allowed",
        rx.peak_concurrency()
    );
    wait_until(WAIT, "every event recorded as delivered", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 30
    });
}

#[test]
fn batches_cut_by_the_payload_limit_keep_to_the_workers_max_in_flight() {
    cut_batches_keep_to(&["pg_webhook.max_in_flight = 2"], "", 2);
}

#[test]
fn batches_cut_by_the_payload_limit_keep_to_the_subscriptions_max_in_flight() {
    cut_batches_keep_to(&[], ", max_in_flight => 1", 1);
}
