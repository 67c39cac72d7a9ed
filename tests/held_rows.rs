//! A transaction left open over a subscription's row (a pause, a resume, a superuser's
//! set_owner() of an orphan) or its queued events' rows (an unsubscribe discarding them) holds
//! up nothing of the other subscriptions: the worker does not wait for that row to write what
//! it decided about the subscription (disabled, its owner's access, its health, an orphan), it
//! writes it later; and it records the outcomes of the other subscriptions' events while those
//! of the held rows wait. One scenario per test.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postgres::Client;
use support::bob::{bob_reads_ledger, orders_and_ledger};
use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{alter_system, count, exec, subscribe, WAIT};

#[test]
fn a_pause_left_open_while_its_owner_loses_access_holds_up_no_other_subscription() {
    // bob paused his subscription in a transaction he left open, then lost SELECT on its
    // table: each claim went to disable it, waited for his row, failed on lock_timeout and
    // began again, so no claim got through and alice's event waited as long as bob's
    // transaction stayed open.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let (mut su, mut bob) = orders_and_ledger(&pg, &rx, "");
    exec(&mut bob, "BEGIN; SELECT webhook.pause('bobs')");
    exec(&mut su, "REVOKE SELECT ON ledger FROM bob");
    exec(&mut su, "INSERT INTO orders VALUES (1)");
    wait_until(WAIT, "alice's event", || {
        rx.accepted().iter().any(|r| r.path.starts_with("/alice"))
    });
    exec(&mut bob, "ROLLBACK");
}

/// Two subscriptions as bob: `bobs` on ledger (its answers held back until `gate` opens) and
/// `others` on orders, to a worker with room for two requests; two of bob's events in flight,
/// and bob's transaction left open over them: it unsubscribed `bobs` discarding its queue. Then
/// the gate opens, so the worker has their outcomes to record.
fn two_held_in_flight(pg: &Cluster, rx: &Receiver, gate: &Arc<AtomicBool>) -> (Client, Client) {
    let mut su = pg.client_with_extension();
    bob_reads_ledger(&mut su);
    exec(&mut su, "CREATE TABLE orders (id int PRIMARY KEY)");
    exec(&mut su, "GRANT SELECT, TRIGGER ON orders TO bob");
    let mut bob = pg.connect_as("postgres", "bob");
    subscribe(&mut bob, "bobs", "ledger", &rx.url("/bob"), "");
    subscribe(&mut bob, "others", "orders", &rx.url("/others"), "");
    exec(
        &mut su,
        "INSERT INTO ledger SELECT g, g::text FROM generate_series(1, 2) g",
    );
    wait_until(WAIT, "bob's two requests in flight", || {
        rx.requests()
            .iter()
            .filter(|r| r.path.starts_with("/bob"))
            .count()
            == 2
    });
    exec(
        &mut bob,
        "BEGIN; SELECT webhook.unsubscribe('bobs', discard_queued => true)",
    );
    gate.store(true, Ordering::SeqCst);
    (su, bob)
}

/// A receiver that answers `/bob` only once `gate` is open, and everything else at once.
fn gated_receiver(gate: &Arc<AtomicBool>) -> Receiver {
    let gate = gate.clone();
    Receiver::with(move |r, _| {
        while r.path.starts_with("/bob") && !gate.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        Reply::Status(204)
    })
}

/// Events of `subscription` recorded with `status`, as the superuser sees them.
fn recorded(su: &mut Client, subscription: &str, status: &str) -> i64 {
    count(
        su,
        &format!(
            "SELECT count(*) FROM webhook.events e JOIN webhook.subscriptions s \
               ON s.id = e.subscription_id \
             WHERE s.name = '{subscription}' AND e.status = '{status}'"
        ),
    )
}

/// bob's transaction left open over his two events in flight (`two_held_in_flight`), and
/// `others` events of the other subscription inserted one at a time, each waited for until it
/// is recorded as delivered.
struct HeldWhileOthersGo {
    su: Client,
    bob: Client,
    rx: Receiver,
    _pg: Cluster,
}

fn held_while_others_go(others: i64) -> HeldWhileOthersGo {
    let pg = Cluster::start(&["pg_webhook.max_in_flight = 2"]);
    let gate = Arc::new(AtomicBool::new(false));
    let rx = gated_receiver(&gate);
    let (mut su, bob) = two_held_in_flight(&pg, &rx, &gate);
    for id in 1..=others {
        exec(&mut su, &format!("INSERT INTO orders VALUES ({id})"));
        wait_until(WAIT, "the other subscription's event recorded", || {
            recorded(&mut su, "others", "delivered") == id
        });
    }
    HeldWhileOthersGo {
        su,
        bob,
        rx,
        _pg: pg,
    }
}

#[test]
fn an_unsubscribe_left_open_over_events_in_flight_holds_up_no_other_subscriptions_outcomes() {
    // The worker recorded the finished requests of all subscriptions in one transaction: it
    // waited for bob's held rows, failed at lock_timeout, then recorded one outcome at a time
    // and stopped at bob's, again and again: no outcome of any subscription was recorded (and
    // once their requests filled max_in_flight, none was sent) while bob's transaction stayed
    // open.
    let mut held = held_while_others_go(3);
    exec(&mut held.bob, "ROLLBACK");
}

#[test]
fn outcomes_set_aside_are_recorded_once_the_transaction_holding_their_rows_rolls_back() {
    let HeldWhileOthersGo {
        mut su,
        mut bob,
        rx,
        _pg,
    } = held_while_others_go(1);
    exec(&mut bob, "ROLLBACK");
    wait_until(WAIT, "bob's two events recorded as delivered", || {
        recorded(&mut su, "bobs", "delivered") == 2
    });
    let sent = rx.requests();
    assert_eq!(
        sent.iter().filter(|r| r.path.starts_with("/bob")).count(),
        2
    );
    assert_eq!(recorded(&mut su, "bobs", "pending"), 0);
}

#[test]
fn outcomes_set_aside_leave_with_their_events_once_the_unsubscribe_commits() {
    let HeldWhileOthersGo {
        mut su,
        mut bob,
        _pg: pg,
        ..
    } = held_while_others_go(1);
    assert!(
        pg.log()
            .contains("another transaction holds queue rows of subscriptions"),
        "the server log names the outcomes set aside"
    );
    exec(&mut bob, "COMMIT");
    wait_until(WAIT, "the outcomes set aside recorded", || {
        pg.log()
            .contains("outcomes set aside: no other transaction holds their rows any more")
    });
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM webhook._event_queue q JOIN webhook._subscriptions s \
               ON s.id = q.subscription_id WHERE s.name = 'bobs'"
        ),
        0
    );
    assert_eq!(recorded(&mut su, "bobs", "delivered"), 0);
}

/// bob's subscription paused, then a resume of it left open; an event of his (which the claim
/// goes to park) and one of alice's.
fn resume_left_open_over_a_parked_event(pg: &Cluster, rx: &Receiver) -> (Client, Client) {
    let (mut su, mut bob) = orders_and_ledger(pg, rx, "");
    exec(&mut bob, "SELECT webhook.pause('bobs')");
    exec(&mut bob, "BEGIN; SELECT webhook.resume('bobs')");
    exec(&mut su, "INSERT INTO ledger VALUES (1, 't', 's')");
    exec(&mut su, "INSERT INTO orders VALUES (1)");
    (su, bob)
}

#[test]
fn a_resume_left_open_while_new_events_of_its_subscription_come_holds_up_no_other() {
    // The claim parked bob's new event under a share lock of his subscription's row, which his
    // open resume held: every claim waited until lock_timeout, failed and began again, and
    // alice's event waited as long as bob's transaction stayed open.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let (mut su, mut bob) = resume_left_open_over_a_parked_event(&pg, &rx);
    wait_until(WAIT, "alice's event", || {
        rx.accepted().iter().any(|r| r.path.starts_with("/alice"))
    });
    exec(&mut bob, "ROLLBACK");
    wait_until(
        WAIT,
        "bob's event parked once his resume rolled back",
        || recorded(&mut su, "bobs", "parked") == 1,
    );
}

#[test]
fn an_event_put_off_for_a_resume_left_open_goes_once_it_commits() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let (_su, mut bob) = resume_left_open_over_a_parked_event(&pg, &rx);
    wait_until(WAIT, "alice's event", || {
        rx.accepted().iter().any(|r| r.path.starts_with("/alice"))
    });
    exec(&mut bob, "COMMIT");
    wait_until(WAIT, "bob's event, once his resume committed", || {
        rx.accepted().iter().any(|r| r.path.starts_with("/bob"))
    });
}

/// bob's rate-limited subscription with a backlog of 30 events, and his unsubscribe discarding
/// it left open before the worker starts: its first claim reads them all as new while their
/// rows are held, starts what the rate allows and puts the others off round after round. Then
/// an event of alice's.
fn discard_left_open_over_a_rate_limited_backlog() -> (Cluster, Receiver, Client, Client) {
    let pg = Cluster::start(&[
        "pg_webhook.poll_interval = '100ms'",
        "pg_webhook.database = 'elsewhere'",
    ]);
    let rx = Receiver::start();
    let (mut su, mut bob) = orders_and_ledger(&pg, &rx, ", rate_limit => 5");
    exec(
        &mut su,
        "INSERT INTO ledger SELECT g, 't', 's' FROM generate_series(1, 30) g",
    );
    exec(
        &mut bob,
        "BEGIN; SELECT webhook.unsubscribe('bobs', discard_queued => true)",
    );
    alter_system(&mut su, "SET pg_webhook.database = 'postgres'");
    exec(&mut su, "INSERT INTO orders VALUES (1)");
    (pg, rx, su, bob)
}

#[test]
fn a_discard_left_open_over_a_rate_limited_backlog_holds_up_no_other_subscription() {
    // Each claim put bob's backlog off (defer.sql), an UPDATE of the rows his discard held: it
    // waited until lock_timeout, failed and began again, and alice's event waited as long as
    // bob's transaction stayed open.
    let (_pg, rx, _su, mut bob) = discard_left_open_over_a_rate_limited_backlog();
    wait_until(WAIT, "alice's event", || {
        rx.accepted().iter().any(|r| r.path.starts_with("/alice"))
    });
    exec(&mut bob, "ROLLBACK");
}

#[test]
fn a_backlog_left_as_it_was_for_a_discard_left_open_goes_once_it_rolls_back() {
    // New events the claim could not put off are passed and read again: none is stranded
    // behind the cursor. Nor pushed out: held for a few seconds, each claim that read them
    // gave out the next rate slots to them all again (the claims came a millisecond apart,
    // woken for deferrals never written), and the backlog went back up to a day once it was
    // put off at last.
    let (_pg, rx, mut su, mut bob) = discard_left_open_over_a_rate_limited_backlog();
    wait_until(WAIT, "alice's event", || {
        rx.accepted().iter().any(|r| r.path.starts_with("/alice"))
    });
    std::thread::sleep(Duration::from_secs(3));
    exec(&mut bob, "ROLLBACK");
    wait_until(WAIT, "bob's 30 events delivered", || {
        recorded(&mut su, "bobs", "delivered") == 30
    });
    let mut ids: Vec<i64> = (rx.accepted().iter())
        .filter(|r| r.path.starts_with("/bob"))
        .flat_map(|r| r.json()["record"]["id"].as_i64())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=30).collect::<Vec<i64>>(),
        "each of bob's events once"
    );
}

#[test]
fn a_set_owner_left_open_over_an_orphan_holds_up_no_other() {
    // bob's role is dropped, and a superuser's set_owner() of his subscription is left open
    // before the worker starts: each load went to mark it an orphan (mark_orphans.sql), waited
    // for its row until lock_timeout, failed and began again. Marked once the row is free.
    let pg = Cluster::start(&[
        "pg_webhook.poll_interval = '100ms'",
        "pg_webhook.database = 'elsewhere'",
    ]);
    let rx = Receiver::start();
    let (mut su, bob) = orders_and_ledger(&pg, &rx, "");
    drop(bob);
    exec(
        &mut su,
        "CREATE ROLE carol LOGIN; GRANT webhook_admin TO carol; GRANT SELECT, TRIGGER ON ledger TO carol;
         REVOKE ALL ON ledger FROM bob; REVOKE CREATE ON SCHEMA public FROM bob;
         REVOKE webhook_admin FROM bob; DROP ROLE bob;",
    );
    let mut holder = pg.client_with_extension();
    exec(
        &mut holder,
        "BEGIN; SELECT webhook.set_owner('bobs', 'carol')",
    );
    alter_system(&mut su, "SET pg_webhook.database = 'postgres'");
    exec(&mut su, "INSERT INTO orders VALUES (1)");
    wait_until(WAIT, "alice's event", || {
        rx.accepted().iter().any(|r| r.path.starts_with("/alice"))
    });
    exec(&mut holder, "ROLLBACK");
    wait_until(WAIT, "bob's subscription marked an orphan", || {
        count(
            &mut su,
            "SELECT count(*) FROM webhook._subscriptions WHERE name = 'bobs' AND owner_dropped",
        ) == 1
    });
}
