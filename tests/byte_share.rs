//! No subscription holds more than its share of the bytes of row images a worker may hold
//! (three quarters of 32 MiB): large rows out to an endpoint that stops answering leave the
//! rest to the others, whose events go on; nor does a claim read more than the worker may hold.
//! One scenario per test.

mod support;

use std::time::Duration;

use postgres::Client;
use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{exec, peak_mib, subscribe, WAIT};

/// A cluster with one worker and a 16 MB payload limit, a receiver that holds every request
/// for two minutes, and subscription `quick` (to a receiver that answers at once) on table
/// `quick`.
fn one_worker() -> (Cluster, Client, Receiver, Receiver) {
    let pg = Cluster::start(&[
        "pg_webhook.workers = 1",
        "pg_webhook.max_payload_bytes = '16MB'",
    ]);
    let mut db = pg.client_with_extension();
    let hung = Receiver::with(|_, _| Reply::Delay(Duration::from_secs(120), 204));
    let quick = Receiver::start();
    exec(&mut db, "CREATE TABLE quick (id int PRIMARY KEY)");
    subscribe(&mut db, "quick", "quick", &quick.url("/quick"), "");
    (pg, db, hung, quick)
}

/// Rows of these sizes (in MB) for subscription `big` (`extra`: its options) to an endpoint
/// that holds every request for two minutes, each row written by a transaction of its own;
/// once eight of them are out, one row for subscription `quick` must arrive.
fn large_rows_leave_room_to_the_others(extra: &str, sizes: &[usize]) {
    let (_pg, mut db, hung, quick) = one_worker();
    exec(&mut db, "CREATE TABLE big (id int PRIMARY KEY, body text)");
    let options = format!(", timeout => '3 minutes'{extra}");
    subscribe(&mut db, "big", "big", &hung.url("/big"), &options);
    for (id, mb) in sizes.iter().enumerate() {
        exec(
            &mut db,
            &format!("INSERT INTO big VALUES ({id}, repeat('x', {mb} * 1000000))"),
        );
    }
    wait_until(WAIT, "the hung receiver's requests", || hung.count() >= 8);
    exec(&mut db, "INSERT INTO quick VALUES (1)");
    wait_until(WAIT, "the other subscription's event", || {
        quick.count() == 1
    });
}

#[test]
fn an_endpoint_holding_large_rows_leaves_the_byte_budget_to_the_others() {
    // Before, 11 or more of the 3 MB rows spent the worker's 32 MiB, and no claim ran until
    // their requests timed out.
    large_rows_leave_room_to_the_others("", &[3; 16]);
}

#[test]
fn an_endpoint_holding_large_transactions_leaves_the_byte_budget_to_the_others() {
    // Before, a transaction's parts were not counted against the budget at all.
    large_rows_leave_room_to_the_others(", group_by => 'transaction'", &[3; 16]);
}

#[test]
fn a_row_that_would_take_a_subscription_past_its_share_waits() {
    // Eight rows of 3 MB (22.9 MiB) are under the 24 MiB share; the 12 MB row after them
    // would take the subscription to 34.3 MiB, past the worker's 32.
    let mut sizes = vec![3; 8];
    sizes.push(12);
    large_rows_leave_room_to_the_others("", &sizes);
}

#[test]
fn transactions_of_several_subscriptions_keep_within_the_workers_bytes() {
    // Three subscriptions grouped by transaction, each one part of 12 MB (11.4 MiB) out to an
    // endpoint that never answers, all written by one transaction: each part is within its
    // subscription's share, but the three together are past the worker's 32 MiB.
    let (_pg, mut db, hung, quick) = one_worker();
    let options = ", timeout => '3 minutes', group_by => 'transaction'";
    let mut insert = String::new();
    for t in ["a", "b", "c"] {
        exec(
            &mut db,
            &format!("CREATE TABLE {t} (id int PRIMARY KEY, body text)"),
        );
        subscribe(&mut db, t, t, &hung.url(&format!("/{t}")), options);
        insert.push_str(&format!(
            "INSERT INTO {t} VALUES (1, repeat('x', 12000000));"
        ));
    }
    exec(&mut db, &insert);
    wait_until(WAIT, "two parts out", || hung.count() >= 2);
    exec(&mut db, "INSERT INTO quick VALUES (1)");
    // Before, the third part went too (a first part of any size for a subscription holding
    // none), the worker held 34 MiB and no claim ran until the parts timed out.
    wait_until(WAIT, "the other subscription's event", || {
        quick.count() == 1
    });
}

#[test]
fn a_claim_reads_the_heads_of_many_keys_within_the_workers_bytes() {
    // Thirty keys each with a head of 12 MB, out to an endpoint that holds them: the
    // subscription's share (24 MiB) lets two go. Before, every claim read all thirty heads
    // again (360 MB of text, and a copy of each), to start none.
    let (pg, mut db, hung, quick) = one_worker();
    let worker = pg.worker_pid(&mut db);
    exec(&mut db, "CREATE TABLE big (id int PRIMARY KEY, body text)");
    let options = ", timeout => '3 minutes', order_key => ARRAY['id']";
    subscribe(&mut db, "big", "big", &hung.url("/big"), options);
    exec(
        &mut db,
        "INSERT INTO big SELECT g, repeat('x', 12000000) FROM generate_series(1, 30) g",
    );
    wait_until(WAIT, "two heads out", || hung.count() >= 2);
    // Claims go on while they are out: the next event of the other subscription is one.
    exec(&mut db, "INSERT INTO quick VALUES (1)");
    wait_until(WAIT, "the other subscription's event", || {
        quick.count() == 1
    });
    let peak = peak_mib(worker);
    assert!(peak < 250, "the worker held {peak} MiB at its peak");
}
