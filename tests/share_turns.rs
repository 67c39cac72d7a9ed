//! Subscriptions grouped by transaction take turns at a worker's room for requests: with less
//! room than subscriptions with parts ready, the one with the highest id is not always the one
//! left out. One scenario per test.

mod support;

use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{exec, subscribe, WAIT};

#[test]
fn a_grouped_subscription_gets_its_turn_beside_two_with_backlogs() {
    let pg = Cluster::start(&["pg_webhook.workers = 1", "pg_webhook.max_in_flight = 8"]);
    let mut db = pg.client_with_extension();
    let slow = Receiver::with(|_, _| Reply::Delay(Duration::from_millis(300), 204));
    let quick = Receiver::start();
    exec(
        &mut db,
        "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY);
         CREATE TABLE c (id int PRIMARY KEY);",
    );
    // Made in this order, so a's id is the lowest and c's the highest.
    for (table, receiver) in [("a", &slow), ("b", &slow), ("c", &quick)] {
        let url = receiver.url(&format!("/{table}"));
        subscribe(&mut db, table, table, &url, ", group_by => 'transaction'");
    }
    // 1,500 one-row transactions each: a holds its share (6 of 8 requests), b the other 2.
    let mut inserts = String::new();
    for n in 1..=1500 {
        inserts.push_str(&format!(
            "BEGIN; INSERT INTO a VALUES ({n}); COMMIT; BEGIN; INSERT INTO b VALUES ({n}); COMMIT;"
        ));
    }
    exec(&mut db, &inserts);
    wait_until(WAIT, "b's first request", || {
        slow.requests().iter().any(|r| r.path == "/b")
    });
    exec(&mut db, "INSERT INTO c VALUES (1)");
    // Before, c waited for a's whole backlog (1,500 x 300 ms over 6 requests: 75 s).
    wait_until(WAIT, "c's transaction", || quick.count() == 1);
}
