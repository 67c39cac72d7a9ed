//! The order in which the worker and the SQL functions take their row locks: the subscription's
//! row before its queued events', so neither can wait for the other in a cycle. One scenario
//! per test.

mod support;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{count, exec, subscribe, WAIT};

#[test]
fn discarding_the_queue_while_the_worker_records_a_failure_neither_deadlocks_nor_waits() {
    // The worker looks for a deadlock 100 ms into a wait; the session below only after 5 s,
    // and gives up waiting after 3 s: were the worker holding an event's row while it waited
    // for the subscription's, the session's delete would time out instead of the worker
    // finding the cycle. It no longer waits for the subscription's row at all (the health it
    // would write there is written with a later outcome): it records the attempt while the
    // session holds that row.
    let pg = Cluster::start(&["deadlock_timeout = '100ms'"]);
    let rx = Receiver::with(|_, _| Reply::Status(503));
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int)");
    let (id, _) = subscribe(
        &mut db,
        "d",
        "t",
        &rx.url("/d"),
        ", retry_schedule => ARRAY['1 hour']::interval[]",
    );
    // The session holds the subscription's row, as unsubscribe does before it discards the
    // queue.
    let mut session = pg.connect("postgres");
    exec(
        &mut session,
        &format!(
            "SET deadlock_timeout = '5s'; SET lock_timeout = '3s'; BEGIN;
             SELECT 1 FROM webhook._subscriptions WHERE id = {id} FOR NO KEY UPDATE;"
        ),
    );
    exec(&mut db, "INSERT INTO t VALUES (1)");
    rx.wait_for(1, WAIT);
    // The first failure changes the subscription's health, which the row holds off.
    wait_until(WAIT, "the worker to record the failed attempt", || {
        count(
            &mut db,
            &format!("SELECT count(*) FROM webhook._attempts WHERE subscription_id = {id}"),
        ) == 1
    });
    exec(
        &mut session,
        &format!("DELETE FROM webhook._event_queue WHERE subscription_id = {id}; COMMIT;"),
    );
    assert_eq!(
        count(
            &mut db,
            &format!("SELECT count(*) FROM webhook._event_queue WHERE subscription_id = {id}"),
        ),
        0
    );
    assert!(!pg.log().contains("deadlock detected"), "{}", pg.log());
}
