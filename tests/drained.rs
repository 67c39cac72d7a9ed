//! Unsubscribed subscriptions whose queue is empty are marked drained, and the worker no
//! longer loads them; one of their events that turns up all the same (a transaction that had
//! not committed when the worker looked) still goes out, never as an event of no subscription.
//! One scenario per test.

mod support;

use std::sync::atomic::Ordering;

use postgres::Client;
use support::cluster::{wait_until, Cluster};
use support::events::wait_for_ids;
use support::receiver::Receiver;
use support::{count, exec, padded_table, subscribe, WAIT};

fn drained(db: &mut Client, name: &str) -> bool {
    count(
        db,
        &format!("SELECT count(*) FROM webhook._subscriptions WHERE name = '{name}' AND drained"),
    ) == 1
}

#[test]
fn an_unsubscribed_subscription_is_marked_drained_once_its_events_are_delivered() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = padded_table(&pg, &rx, "");
    subscribe(&mut db, "live", "t", &rx.url("/live"), "");
    exec(
        &mut db,
        "INSERT INTO t SELECT generate_series(1, 3); SELECT webhook.unsubscribe('t')",
    );
    wait_until(WAIT, "the unsubscribed subscription marked drained", || {
        drained(&mut db, "t")
    });
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events e JOIN webhook.subscriptions s \
               ON s.id = e.subscription_id WHERE s.name = 't' AND e.status = 'delivered'"
        ),
        3,
        "marked drained only once its events were delivered"
    );
    assert!(
        !drained(&mut db, "live"),
        "a live subscription is never drained"
    );
}

#[test]
fn new_events_of_a_subscription_marked_drained_still_go_out() {
    // As a transaction that captured before the unsubscribe and committed after the worker
    // looked would leave them: new events of a subscription marked drained, which the worker
    // has not loaded. They were sent as events of no subscription, and died.
    let pg = Cluster::start(&[]);
    // Gated: once the events are answered and recorded, the subscription is rightly drained
    // again at the worker's next look (every 10 s), which a slow test could see instead.
    let (rx, gate) = Receiver::gated();
    let mut db = padded_table(&pg, &rx, "");
    exec(
        &mut db,
        "BEGIN;
         INSERT INTO t SELECT generate_series(1, 3);
         UPDATE webhook._subscriptions SET status = 'unsubscribed', drained = true
          WHERE name = 't';
         COMMIT",
    );
    rx.wait_for(3, WAIT);
    assert!(
        !drained(&mut db, "t"),
        "marked back once its events were read"
    );
    gate.store(true, Ordering::SeqCst);
    wait_for_ids(&rx, &[1, 2, 3], "the events of the drained subscription");
    wait_until(WAIT, "the events recorded as delivered", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_archive WHERE status = 'delivered'",
        ) == 3
    });
}

#[test]
fn parked_events_of_a_subscription_marked_drained_still_go_out() {
    // Parked events are not read by claims: only the worker's look through the queue's
    // indexes finds them, and marks their subscription back.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    // Gated, as in the test above.
    let (rx, gate) = Receiver::gated();
    let mut db = padded_table(&pg, &rx, "");
    exec(
        &mut db,
        "SELECT webhook.pause('t'); INSERT INTO t SELECT generate_series(1, 3)",
    );
    wait_until(WAIT, "the events to be parked", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'parked'",
        ) == 3
    });
    exec(
        &mut db,
        "UPDATE webhook._subscriptions SET status = 'unsubscribed', drained = true
          WHERE name = 't'",
    );
    rx.wait_for(3, WAIT);
    assert!(
        !drained(&mut db, "t"),
        "marked back once its events were found"
    );
    gate.store(true, Ordering::SeqCst);
    wait_for_ids(
        &rx,
        &[1, 2, 3],
        "the parked events of the drained subscription",
    );
}
