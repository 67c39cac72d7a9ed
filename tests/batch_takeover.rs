//! A batch of new events out when its worker dies (or the server stops) goes out again as
//! itself, under its webhook-id, when the next worker of its share takes over. One scenario per
//! test.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply, Request};
use support::{count, exec, subscribe, WAIT};

/// Long enough that no answer comes while the test needs requests out.
const HANG: Duration = Duration::from_secs(40);

/// The row ids a batch request carries, sorted.
fn rows_of(r: &Request) -> BTreeSet<i64> {
    r.row_ids().into_iter().collect()
}

/// Waits for all ten rows' events to be delivered.
fn all_ten_delivered(db: &mut postgres::Client) {
    wait_until(WAIT, "all ten delivered", || {
        count(
            db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 10
    });
}

/// A receiver that leaves every request unanswered (until `answer`).
fn hanging() -> Receiver {
    Receiver::with(|_, _| Reply::Hang(HANG))
}

fn answer(rx: &Receiver) {
    rx.set(|_, _| Reply::Status(204));
}

/// Rows 1-5 and then 6-10 of table `b`, each five sent as a batch (of up to 10) that hangs:
/// the first requests' ids and rows, in the order they came.
fn two_batches_out(db: &mut postgres::Client, rx: &Receiver) -> Vec<(String, BTreeSet<i64>)> {
    exec(db, "INSERT INTO b SELECT generate_series(1, 5)");
    wait_until(WAIT, "the first batch out", || rx.requests().len() == 1);
    exec(db, "INSERT INTO b SELECT generate_series(6, 10)");
    wait_until(WAIT, "the second batch out", || rx.requests().len() == 2);
    rx.requests().iter().map(|r| (r.id(), rows_of(r))).collect()
}

/// Every batch sent before is among those answered after, with the same rows.
fn assert_sent_again_as_themselves(out: &[(String, BTreeSet<i64>)], rx: &Receiver) {
    let again: Vec<(String, BTreeSet<i64>)> =
        rx.accepted().iter().map(|r| (r.id(), rows_of(r))).collect();
    for batch in out {
        assert!(
            again.contains(batch),
            "batch {batch:?}, out when its worker stopped, came back as {again:?}"
        );
    }
    assert_eq!(again.len(), out.len(), "no other request: {again:?}");
}

/// A cluster running `workers` delivery workers, a hanging receiver, and table `b`
/// subscribed in batches of 10 (with `extra` options): the cluster, receiver and session.
fn batched(workers: u32, extra: &str) -> (Cluster, Receiver, postgres::Client, i32) {
    let pg = Cluster::start(&[&format!("pg_webhook.workers = {workers}")]);
    let rx = hanging();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE b (id int PRIMARY KEY)");
    let options = format!(", batch_size => 10{extra}");
    let (id, _) = subscribe(&mut db, "b", "b", &rx.url("/b"), &options);
    (pg, rx, db, id)
}

/// Stops the server while requests hang, starts it with `workers` delivery workers and lets
/// the receiver answer; a new session.
fn restart_with(
    pg: &Cluster,
    rx: &Receiver,
    db: postgres::Client,
    workers: u32,
) -> postgres::Client {
    drop(db);
    pg.stop("fast");
    pg.append_conf(&format!("pg_webhook.workers = {workers}"));
    answer(rx);
    pg.pg_ctl_start();
    pg.client_with_extension()
}

#[test]
fn a_batch_in_flight_when_its_worker_dies_is_sent_again_under_its_webhook_id() {
    let (pg, rx, mut db, _) = batched(1, "");
    let out = two_batches_out(&mut db, &rx);
    let pid = pg.worker_pid(&mut db);
    exec(&mut db, &format!("SELECT pg_terminate_backend({pid})"));
    answer(&rx);
    all_ten_delivered(&mut db);
    assert_sent_again_as_themselves(&out, &rx);
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM webhook._batches_out"),
        0,
        "recorded batches are forgotten"
    );
}

#[test]
fn a_batch_of_a_worker_the_restarted_server_no_longer_runs_is_sent_again_under_its_webhook_id() {
    // A limit of its own gives all its events to worker id % 2: worker 1.
    let (pg, rx, mut db, id) = batched(2, ", max_in_flight => 4");
    assert_eq!(id % 2, 1, "subscription {id} goes to worker 1");
    let out = two_batches_out(&mut db, &rx);
    let mut db = restart_with(&pg, &rx, db, 1);
    all_ten_delivered(&mut db);
    assert_sent_again_as_themselves(&out, &rx);
}

#[test]
fn a_batch_made_by_one_worker_goes_out_whole_again_from_two() {
    let (pg, rx, mut db, _) = batched(1, "");
    let out = two_batches_out(&mut db, &rx);
    // Two workers share the events out by a hash of their ids, which would split each batch.
    let mut db = restart_with(&pg, &rx, db, 2);
    all_ten_delivered(&mut db);
    assert_sent_again_as_themselves(&out, &rx);
}
