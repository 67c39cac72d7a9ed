//! A batch of new events out when its worker dies (or the server stops) goes out again as
//! itself, under its webhook-id, when the next worker of its share takes over. One scenario per
//! test.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply, Request};
use support::{alter_system, count, exec, subscribe, WAIT};

/// Long enough that no answer comes while the test needs requests out.
const HANG: Duration = Duration::from_secs(40);

/// The row ids a batch request carries, sorted.
fn rows_of(r: &Request) -> BTreeSet<i64> {
    r.row_ids().into_iter().collect()
}

/// Waits for `n` events to be delivered.
fn all_delivered(db: &mut postgres::Client, n: i64) {
    wait_until(WAIT, "all delivered", || {
        count(
            db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == n
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

/// A cluster running `workers` delivery workers (and `conf`), a hanging receiver, and table `b`
/// subscribed in batches of `size` (with `extra` options): the cluster, receiver, session and
/// subscription id.
fn batched(
    workers: u32,
    conf: &[&str],
    size: u32,
    extra: &str,
) -> (Cluster, Receiver, postgres::Client, i32) {
    let workers = format!("pg_webhook.workers = {workers}");
    let mut settings = vec![workers.as_str()];
    settings.extend_from_slice(conf);
    let pg = Cluster::start(&settings);
    let rx = hanging();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE b (id int PRIMARY KEY)");
    let options = format!(", batch_size => {size}{extra}");
    let (id, _) = subscribe(&mut db, "b", "b", &rx.url("/b"), &options);
    (pg, rx, db, id)
}

/// Rows 1-30 written at once, each worker's share sent as one batch that hangs: the requests'
/// ids and rows.
fn thirty_out(db: &mut postgres::Client, rx: &Receiver) -> Vec<(String, BTreeSet<i64>)> {
    exec(db, "INSERT INTO b SELECT generate_series(1, 30)");
    wait_until(WAIT, "each worker's batch out", || {
        rx.requests()
            .iter()
            .map(|r| r.row_ids().len())
            .sum::<usize>()
            == 30
    });
    rx.requests().iter().map(|r| (r.id(), rows_of(r))).collect()
}

/// Stops the server while requests hang, starts it with `conf` added and (unless `hold`) the
/// receiver answering; a new session.
fn restart_with(
    pg: &Cluster,
    rx: &Receiver,
    db: postgres::Client,
    conf: &str,
    hold: bool,
) -> postgres::Client {
    drop(db);
    pg.stop("fast");
    pg.append_conf(conf);
    if !hold {
        answer(rx);
    }
    pg.pg_ctl_start();
    pg.client_with_extension()
}

#[test]
fn a_batch_in_flight_when_its_worker_dies_is_sent_again_under_its_webhook_id() {
    let (pg, rx, mut db, _) = batched(1, &[], 10, "");
    let out = two_batches_out(&mut db, &rx);
    let pid = pg.worker_pid(&mut db);
    exec(&mut db, &format!("SELECT pg_terminate_backend({pid})"));
    answer(&rx);
    all_delivered(&mut db, 10);
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
    let (pg, rx, mut db, id) = batched(2, &[], 10, ", max_in_flight => 4");
    assert_eq!(id % 2, 1, "subscription {id} goes to worker 1");
    let out = two_batches_out(&mut db, &rx);
    let mut db = restart_with(&pg, &rx, db, "pg_webhook.workers = 1", false);
    all_delivered(&mut db, 10);
    assert_sent_again_as_themselves(&out, &rx);
}

/// A batch that waited for `batch_wait` to fill goes out made of events due (put off for the
/// wait), not new ones; it is written down all the same, and must come back as itself.
#[test]
fn a_batch_that_waited_to_fill_is_sent_again_under_its_webhook_id_after_its_worker_dies() {
    let (pg, rx, mut db, _) = batched(1, &[], 10, ", batch_wait => '50 ms'");
    let out = two_batches_out(&mut db, &rx);
    let pid = pg.worker_pid(&mut db);
    exec(&mut db, &format!("SELECT pg_terminate_backend({pid})"));
    answer(&rx);
    all_delivered(&mut db, 10);
    assert_sent_again_as_themselves(&out, &rx);
}

/// Without limits of its own a subscription's events are shared among the workers by a hash of
/// their ids: the batches each worker sent were cut from its share under the old count, and a
/// restart with another count must not share them out again event by event.
#[test]
fn batches_of_a_shared_subscription_come_back_whole_when_the_restart_changes_the_worker_count() {
    let (pg, rx, mut db, _) = batched(3, &[], 100, "");
    let out = thirty_out(&mut db, &rx);
    assert_eq!(out.len(), 3, "one batch per worker: {out:?}");
    let mut db = restart_with(&pg, &rx, db, "pg_webhook.workers = 2", false);
    all_delivered(&mut db, 30);
    assert_sent_again_as_themselves(&out, &rx);
}

/// After a restart with another worker count, every worker's new share holds events of the
/// batches the old workers left out: a worker that claims before the one taking over those
/// batches has run (held up here by a row lock on one of their events) must not send their
/// events as new batches of its own, to be put back and sent again under the old names.
#[test]
fn no_worker_sends_the_events_of_batches_left_under_another_count_before_they_are_put_back() {
    let (pg, rx, mut db, _) = batched(3, &[], 100, "");
    let out = thirty_out(&mut db, &rx);
    // Started serving no database, so the lock below is in place before any worker runs.
    let conf = "pg_webhook.workers = 2\npg_webhook.database = 'none'";
    let mut db = restart_with(&pg, &rx, db, conf, true);
    let mut holder = pg.connect("postgres");
    exec(&mut holder, "BEGIN");
    exec(
        &mut holder,
        "SELECT 1 FROM webhook._event_queue
          WHERE id = (SELECT ids[1] FROM webhook._batches_out WHERE worker = 0) FOR UPDATE",
    );
    alter_system(&mut db, "SET pg_webhook.database = 'postgres'");
    wait_until(
        WAIT,
        "both workers held by the lock, or one sending",
        || {
            rx.count() > out.len()
                || count(
                    &mut db,
                    "SELECT count(*) FROM pg_stat_activity
                  WHERE backend_type = 'pg_webhook' AND wait_event_type = 'Lock'",
                ) == 2
        },
    );
    answer(&rx);
    exec(&mut holder, "ROLLBACK");
    all_delivered(&mut db, 30);
    assert_sent_again_as_themselves(&out, &rx);
}

/// A standby promoted where another count of workers runs (the default follows the CPUs) puts
/// back the batches the old primary had out, each whole, under its webhook-id.
#[test]
fn a_promoted_standby_with_another_worker_count_sends_the_old_primarys_batches_as_themselves() {
    let replica = ["wal_level = replica", "max_wal_senders = 4"];
    let (primary, rx, mut db, _) = batched(2, &replica, 100, "");
    let standby = primary.make_standby("standby");
    standby.stop("fast");
    standby.append_conf("pg_webhook.workers = 3");
    standby.pg_ctl_start();
    let out = thirty_out(&mut db, &rx);
    let mut on_standby = standby.connect("postgres");
    wait_until(WAIT, "the standby to have the batches written down", || {
        count(&mut on_standby, "SELECT count(*) FROM webhook._batches_out") == out.len() as i64
    });
    drop(on_standby);
    drop(db);
    primary.stop("immediate");
    answer(&rx);
    standby.promote();
    let mut db = standby.connect("postgres");
    all_delivered(&mut db, 30);
    assert_sent_again_as_themselves(&out, &rx);
}
