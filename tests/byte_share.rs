//! No subscription holds more than its share of the bytes of row images a worker may hold
//! (three quarters of 32 MiB): large rows out to an endpoint that stops answering leave the
//! rest to the others, whose events go on. One scenario per test.

mod support;

use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{exec, subscribe, WAIT};

/// Sixteen rows of 3 MB for subscription `big` (`extra`: its options) to an endpoint that
/// holds every request for two minutes, each row written by a transaction of its own; once
/// eight of them are out, one row for subscription `quick` must arrive.
fn large_rows_leave_room_to_the_others(extra: &str) {
    let pg = Cluster::start(&[
        "pg_webhook.workers = 1",
        "pg_webhook.max_payload_bytes = '4MB'",
    ]);
    let mut db = pg.client_with_extension();
    let hung = Receiver::with(|_, _| Reply::Delay(Duration::from_secs(120), 204));
    let quick = Receiver::start();
    exec(
        &mut db,
        "CREATE TABLE big (id int PRIMARY KEY, body text); CREATE TABLE quick (id int PRIMARY KEY)",
    );
    let options = format!(", timeout => '3 minutes'{extra}");
    subscribe(&mut db, "big", "big", &hung.url("/big"), &options);
    subscribe(&mut db, "quick", "quick", &quick.url("/quick"), "");
    for id in 1..=16 {
        exec(
            &mut db,
            &format!("INSERT INTO big VALUES ({id}, repeat('x', 3000000))"),
        );
    }
    wait_until(WAIT, "the hung receiver's requests", || hung.count() >= 8);
    exec(&mut db, "INSERT INTO quick VALUES (1)");
    // Before, 11 or more of the 3 MB rows spent the worker's 32 MiB, and no claim ran until
    // their requests timed out.
    wait_until(WAIT, "the other subscription's event", || {
        quick.count() == 1
    });
}

#[test]
fn an_endpoint_holding_large_rows_leaves_the_byte_budget_to_the_others() {
    large_rows_leave_room_to_the_others("");
}

#[test]
fn an_endpoint_holding_large_transactions_leaves_the_byte_budget_to_the_others() {
    large_rows_leave_room_to_the_others(", group_by => 'transaction'");
}
