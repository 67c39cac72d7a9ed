//! Owners share a worker's requests: while subscriptions of more than one owner are loaded,
//! one owner's together hold at most seven eighths of them, so a `webhook_admin` member's
//! subscriptions to an address that never answers cannot take every request from the others.

mod support;

use std::time::Duration;

use postgres::Client;
use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{exec, subscribe, WAIT};

/// One worker with 8 requests, and two webhook_admin members: mallory, whose `floods` new
/// subscriptions of table `flood` go to `hung` (the receiver answers after two minutes), and
/// alice, with table `orders` (not subscribed yet). Returns the cluster, mallory's and alice's
/// sessions.
fn mallory_and_alice(hung: &Receiver, floods: usize) -> (Cluster, Client, Client) {
    let pg = Cluster::start(&["pg_webhook.workers = 1", "pg_webhook.max_in_flight = 8"]);
    let (_su, [mut mallory, mut alice]) = support::webhook_admins(&pg, ["mallory", "alice"]);
    exec(&mut mallory, "CREATE TABLE flood (id int PRIMARY KEY)");
    for n in 1..=floods {
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
    exec(&mut alice, "CREATE TABLE orders (id int PRIMARY KEY)");
    (pg, mallory, alice)
}

/// mallory's subscriptions get their first events in one claim (one transaction), and hold
/// `requests` of the worker's 8.
fn mallory_floods(mallory: &mut Client, hung: &Receiver, requests: usize) {
    exec(mallory, "INSERT INTO flood SELECT generate_series(1, 100)");
    wait_until(WAIT, "mallory's requests", || hung.count() >= requests);
}

/// mallory unsubscribes her subscriptions `flood1` .. `flood<n>`, their queued events
/// discarded, and waits for the worker to mark them drained (it loads them no more).
fn mallory_unsubscribes(pg: &Cluster, mallory: &mut Client, n: usize) {
    exec(
        mallory,
        &format!(
            "SELECT webhook.unsubscribe('flood' || n, discard_queued => true)
               FROM generate_series(1, {n}) n"
        ),
    );
    let mut su = pg.connect("postgres");
    wait_until(WAIT, "mallory's subscriptions drained", || {
        support::count(
            &mut su,
            "SELECT count(*) FROM webhook._subscriptions WHERE drained",
        ) == n as i64
    });
}

/// mallory's new subscription `again` (the worker loads the subscriptions again) with a
/// backlog, then alice's event, which goes at once.
fn alice_goes_beside_mallorys_new_backlog(
    mallory: &mut Client,
    alice: &mut Client,
    hung: &Receiver,
    quick: &Receiver,
) {
    exec(mallory, "CREATE TABLE flood2 (id int PRIMARY KEY)");
    let url = hung.url("/again");
    subscribe(mallory, "again", "flood2", &url, ", timeout => '3 minutes'");
    exec(mallory, "INSERT INTO flood2 SELECT generate_series(1, 100)");
    exec(alice, "INSERT INTO orders VALUES (1)");
    wait_until(WAIT, "alice's event", || quick.count() == 1);
    assert_eq!(hung.peak_concurrency(), 7, "mallory's requests together");
}

#[test]
fn one_owners_new_subscriptions_to_a_silent_address_leave_the_other_owners_requests() {
    // mallory's three new subscriptions, to a receiver that answers after two minutes, got
    // their first events in one claim: the first took its 6 (three quarters), the second the
    // other 2, and alice's event waited for their timeouts (mallory could do it again with
    // new subscriptions, as often as she liked). Now mallory's hold 7 together, and alice's
    // goes in the eighth.
    let hung = Receiver::with(|_, _| Reply::Delay(Duration::from_secs(120), 204));
    let quick = Receiver::start();
    let (_pg, mut mallory, mut alice) = mallory_and_alice(&hung, 3);
    subscribe(&mut alice, "orders", "orders", &quick.url("/orders"), "");
    mallory_floods(&mut mallory, &hung, 7);
    exec(&mut alice, "INSERT INTO orders VALUES (1)");
    wait_until(WAIT, "alice's event", || quick.count() == 1);
    assert_eq!(hung.peak_concurrency(), 7, "mallory's requests together");
}

#[test]
fn one_owners_due_backlog_hides_no_other_owners_retry() {
    // With mallory's requests at her share, the 50 events of her subscription just resumed
    // came due before alice's retry; the due read counted the room they could take without
    // her owner's share, found the page full of events that could start, and never read
    // past them: alice's retry waited for mallory's requests to time out.
    let hung = Receiver::with(|_, _| Reply::Delay(Duration::from_secs(120), 204));
    let quick = Receiver::with(|_, n| Reply::Status(if n == 0 { 500 } else { 204 }));
    let (_pg, mut mallory, mut alice) = mallory_and_alice(&hung, 3);
    exec(&mut mallory, "CREATE TABLE backlog (id int PRIMARY KEY)");
    subscribe(
        &mut mallory,
        "backlog",
        "backlog",
        &hung.url("/backlog"),
        "",
    );
    exec(
        &mut mallory,
        "SELECT webhook.pause('backlog');
         INSERT INTO backlog SELECT generate_series(1, 50);",
    );
    let retry = ", retry_schedule => ARRAY['1 second']::interval[]";
    subscribe(&mut alice, "orders", "orders", &quick.url("/orders"), retry);
    mallory_floods(&mut mallory, &hung, 7);
    exec(&mut alice, "INSERT INTO orders VALUES (1)");
    wait_until(WAIT, "alice's first try", || quick.count() == 1);
    // Due now, ahead of alice's retry, which is due a second after her first try failed.
    exec(&mut mallory, "SELECT webhook.resume('backlog')");
    wait_until(WAIT, "alice's retry", || quick.count() == 2);
}

#[test]
fn requests_of_subscriptions_unsubscribed_meanwhile_still_count_for_their_owner() {
    // mallory's three subscriptions, unsubscribed with their queued events discarded, were
    // no longer loaded once marked drained: their 7 requests, still out, counted for no
    // owner, and a new subscription of hers took the eighth, alice's.
    let hung = Receiver::with(|_, _| Reply::Delay(Duration::from_secs(120), 204));
    let quick = Receiver::start();
    let (pg, mut mallory, mut alice) = mallory_and_alice(&hung, 3);
    subscribe(&mut alice, "orders", "orders", &quick.url("/orders"), "");
    mallory_floods(&mut mallory, &hung, 7);
    mallory_unsubscribes(&pg, &mut mallory, 3);
    alice_goes_beside_mallorys_new_backlog(&mut mallory, &mut alice, &hung, &quick);
}

#[test]
fn requests_started_while_one_owner_was_loaded_still_count_for_it() {
    // mallory's subscription took its 6 requests while hers were the only ones loaded, when
    // no owner was noted for them; alice subscribed, mallory unsubscribed hers (drained, no
    // longer loaded), and its 6 requests counted for no one: her new subscription took the
    // other 2, alice's event waited.
    let hung = Receiver::with(|_, _| Reply::Delay(Duration::from_secs(120), 204));
    let quick = Receiver::start();
    let (pg, mut mallory, mut alice) = mallory_and_alice(&hung, 1);
    mallory_floods(&mut mallory, &hung, 6);
    subscribe(&mut alice, "orders", "orders", &quick.url("/orders"), "");
    mallory_unsubscribes(&pg, &mut mallory, 1);
    alice_goes_beside_mallorys_new_backlog(&mut mallory, &mut alice, &hung, &quick);
}
