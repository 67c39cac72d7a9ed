//! Two-phase commit: a transaction that captured events and ran `PREPARE TRANSACTION` has
//! committed nothing yet; its events go out when `COMMIT PREPARED` commits it (from any session,
//! after a crash too), never after `ROLLBACK PREPARED`, and a prepared transaction keeps its
//! place in ordered, per-key and per-transaction delivery.
//!
//! The clusters poll once an hour (`pg_webhook.poll_interval`), so an event that arrives within
//! the tests' wait was sent because the commit woke the worker.

mod support;

use postgres::Client;
use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe, WAIT};

fn cluster() -> Cluster {
    Cluster::start(&[
        "max_prepared_transactions = 4",
        "pg_webhook.poll_interval = '1h'",
    ])
}

/// A table `orders (id, account)` subscribed with `extra`, and a client of its database.
fn orders(pg: &Cluster, rx: &Receiver, extra: &str) -> Client {
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE orders (id int PRIMARY KEY, account int NOT NULL DEFAULT 0)",
    );
    subscribe(&mut db, "orders", "orders", &rx.url("/orders"), extra);
    db
}

/// Inserts `ids` (of `account`) in a transaction prepared as `gid`, in a session of its own.
fn prepare(pg: &Cluster, gid: &str, account: i32, ids: &[i32]) {
    let mut writer = pg.connect("postgres");
    let mut sql = String::from("BEGIN;");
    for id in ids {
        sql.push_str(&format!(
            "INSERT INTO orders (id, account) VALUES ({id}, {account});"
        ));
    }
    sql.push_str(&format!("PREPARE TRANSACTION '{gid}'"));
    exec(&mut writer, &sql);
}

#[test]
fn a_prepared_transactions_events_go_out_when_commit_prepared_commits_it() {
    let pg = cluster();
    let rx = Receiver::start();
    let mut db = orders(&pg, &rx, "");
    prepare(&pg, "t1", 0, &[1]);
    // A marker committed after it goes out; the prepared event does not, yet.
    exec(&mut db, "INSERT INTO orders VALUES (2)");
    rx.wait_for_answers(1, WAIT);
    assert_eq!(
        rx.accepted_ids(),
        vec![2],
        "only the committed marker went out"
    );
    exec(&mut db, "COMMIT PREPARED 't1'");
    rx.wait_for_answers(2, WAIT);
    assert_eq!(rx.accepted_ids(), vec![2, 1]);
}

#[test]
fn a_rolled_back_prepared_transaction_sends_nothing() {
    let pg = cluster();
    let rx = Receiver::start();
    let mut db = orders(&pg, &rx, "");
    prepare(&pg, "t1", 0, &[1]);
    exec(&mut db, "ROLLBACK PREPARED 't1'");
    exec(&mut db, "INSERT INTO orders VALUES (2)");
    rx.wait_for_answers(1, WAIT);
    assert_eq!(rx.accepted_ids(), vec![2], "only the marker went out");
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM webhook.events"),
        1,
        "the marker is the only event"
    );
}

#[test]
fn a_transaction_prepared_before_a_crash_sends_its_events_once_committed_after_it() {
    let pg = cluster();
    let rx = Receiver::start();
    drop(orders(&pg, &rx, ""));
    prepare(&pg, "t1", 0, &[1, 2]);
    pg.stop("immediate");
    pg.pg_ctl_start();
    let mut db = pg.connect("postgres");
    exec(&mut db, "COMMIT PREPARED 't1'");
    rx.wait_for_answers(2, WAIT);
    let mut ids = rx.accepted_ids();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
}

#[test]
fn an_ordered_writer_waits_for_a_prepared_transaction_and_goes_after_it() {
    let pg = cluster();
    let rx = Receiver::start();
    drop(orders(&pg, &rx, ", ordered => true"));
    prepare(&pg, "t1", 0, &[1]);
    // The prepared transaction keeps the subscription's lock, after a crash too.
    pg.stop("immediate");
    pg.pg_ctl_start();
    let mut db = pg.connect("postgres");
    let e = error_of(
        &mut db,
        "SET lock_timeout = '300ms'; INSERT INTO orders VALUES (2)",
    );
    assert!(e.contains("lock timeout"), "{e}");
    exec(&mut db, "COMMIT PREPARED 't1'");
    exec(&mut db, "RESET lock_timeout; INSERT INTO orders VALUES (2)");
    rx.wait_for_answers(2, WAIT);
    assert_eq!(rx.accepted_ids(), vec![1, 2]);
}

#[test]
fn a_prepared_transaction_holds_back_only_writers_of_its_own_keys() {
    let pg = cluster();
    let rx = Receiver::start();
    let mut db = orders(&pg, &rx, ", order_key => ARRAY['account']");
    let other = support::account_in_another_lock_bucket(&mut db, 7);
    prepare(&pg, "t1", 7, &[1]);
    exec(
        &mut db,
        &format!("SET lock_timeout = '5s'; INSERT INTO orders VALUES (2, {other})"),
    );
    rx.wait_for_answers(1, WAIT);
    assert_eq!(
        rx.accepted_ids(),
        vec![2],
        "the other account's event went out"
    );
    let e = error_of(
        &mut db,
        "SET lock_timeout = '300ms'; INSERT INTO orders VALUES (3, 7)",
    );
    assert!(e.contains("lock timeout"), "{e}");
    exec(&mut db, "COMMIT PREPARED 't1'");
    exec(
        &mut db,
        "RESET lock_timeout; INSERT INTO orders VALUES (3, 7)",
    );
    rx.wait_for_answers(3, WAIT);
    assert_eq!(rx.accepted_ids(), vec![2, 1, 3]);
}

#[test]
fn a_prepared_transaction_goes_out_as_one_request_of_all_its_events() {
    let pg = cluster();
    let rx = Receiver::start();
    let mut db = orders(&pg, &rx, ", group_by => 'transaction'");
    prepare(&pg, "t1", 0, &[1, 2, 3]);
    exec(&mut db, "COMMIT PREPARED 't1'");
    let requests = rx.wait_for_answers(1, WAIT);
    let body = requests[0].json();
    assert_eq!(body["transaction"]["events_total"], 3, "{body}");
    assert_eq!(requests[0].row_ids(), vec![1, 2, 3]);
}

#[test]
fn a_pause_committed_by_commit_prepared_holds_the_events_written_after_it() {
    // The pause's session lost its note of the change at PREPARE: the COMMIT PREPARED that
    // commits it must make the workers reload the subscription, or they send on by their copy
    // (reloaded only once a second otherwise).
    let pg = cluster();
    let rx = Receiver::start();
    let mut db = orders(&pg, &rx, "");
    exec(&mut db, "INSERT INTO orders VALUES (1)");
    rx.wait_for_answers(1, WAIT);
    exec(
        &mut db,
        "BEGIN; SELECT webhook.pause('orders'); PREPARE TRANSACTION 'p'",
    );
    exec(&mut db, "COMMIT PREPARED 'p'");
    exec(&mut db, "INSERT INTO orders VALUES (2)");
    support::cluster::wait_until(WAIT, "the second event to be parked or sent", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status IN ('parked', 'delivered')",
        ) == 2
    });
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'parked'"
        ),
        1,
        "the event written after the pause is held"
    );
    assert_eq!(rx.accepted_ids(), vec![1], "only the first event went out");
}

#[test]
fn commit_prepared_over_the_extended_protocol_wakes_the_workers() {
    // Drivers send statements parsed, bound and executed: ProcessUtility runs them the same.
    let pg = cluster();
    let rx = Receiver::start();
    let mut db = orders(&pg, &rx, "");
    prepare(&pg, "t1", 0, &[1]);
    db.execute("COMMIT PREPARED 't1'", &[])
        .unwrap_or_else(|e| panic!("COMMIT PREPARED: {e}"));
    rx.wait_for_answers(1, WAIT);
    assert_eq!(rx.accepted_ids(), vec![1]);
}

#[test]
fn commit_prepared_brings_back_workers_that_were_all_stopped() {
    // With every worker of the database stopped, the launcher starts them again when a commit
    // that queued events asks; a COMMIT PREPARED must ask too, or a writer that only commits
    // prepared transactions has its events wait for the next restart.
    let pg = cluster();
    let rx = Receiver::start();
    let mut db = orders(&pg, &rx, "");
    let workers = "SELECT count(*) FROM pg_stat_activity
                    WHERE backend_type IN ('pg_webhook', 'pg_webhook callbacks')";
    support::cluster::wait_until(WAIT, "the workers to start", || count(&mut db, workers) > 0);
    support::cluster::wait_until(WAIT, "the workers to stay stopped", || {
        exec(
            &mut db,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE backend_type IN ('pg_webhook', 'pg_webhook callbacks')",
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
        count(&mut db, workers) == 0
    });
    prepare(&pg, "t1", 0, &[1]);
    exec(&mut db, "COMMIT PREPARED 't1'");
    rx.wait_for_answers(1, WAIT);
    assert_eq!(rx.accepted_ids(), vec![1]);
}
