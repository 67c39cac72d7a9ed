//! Owners share a worker's requests: while subscriptions of more than one owner are loaded,
//! one owner's together hold at most seven eighths of them, so a `webhook_admin` member's
//! subscriptions to an address that never answers cannot take every request from the others.

mod support;

use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{exec, subscribe, WAIT};

#[test]
fn one_owners_new_subscriptions_to_a_silent_address_leave_the_other_owners_requests() {
    // One worker with 8 requests. mallory's three new subscriptions of one table, to a
    // receiver that answers after two minutes, got their first events in one claim: the
    // first took its 6 (three quarters), the second the other 2, and alice's event waited
    // for their timeouts (mallory could do it again with new subscriptions, as often as she
    // liked). Now mallory's hold 7 together, and alice's goes in the eighth.
    let pg = Cluster::start(&["pg_webhook.workers = 1", "pg_webhook.max_in_flight = 8"]);
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE mallory LOGIN; CREATE ROLE alice LOGIN;
         GRANT webhook_admin TO mallory, alice;
         GRANT CREATE ON SCHEMA public TO mallory, alice;",
    );
    let hung = Receiver::with(|_, _| Reply::Delay(Duration::from_secs(120), 204));
    let quick = Receiver::start();
    let mut mallory = pg.connect_as("postgres", "mallory");
    exec(&mut mallory, "CREATE TABLE flood (id int PRIMARY KEY)");
    for n in 1..=3 {
        let url = hung.url(&format!("/flood{n}"));
        let name = format!("flood{n}");
        subscribe(
            &mut mallory,
            &name,
            "flood",
            &url,
            ", timeout => '3 minutes'",
        );
    }
    let mut alice = pg.connect_as("postgres", "alice");
    exec(&mut alice, "CREATE TABLE orders (id int PRIMARY KEY)");
    subscribe(&mut alice, "orders", "orders", &quick.url("/orders"), "");
    // One transaction: the three subscriptions' first events come in the same claim.
    exec(
        &mut mallory,
        "INSERT INTO flood SELECT generate_series(1, 100)",
    );
    wait_until(WAIT, "mallory's requests", || hung.count() >= 7);
    exec(&mut alice, "INSERT INTO orders VALUES (1)");
    wait_until(WAIT, "alice's event", || quick.count() == 1);
    assert_eq!(hung.peak_concurrency(), 7, "mallory's requests together");
}
