//! The cursor passes a slow subscription's new events (see share.rs) many at a time: the
//! others' events behind a long backlog of them do not wait for it to be passed an event or
//! two per claim. One scenario per test.

mod support;

use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{exec, subscribe, WAIT};

#[test]
fn the_others_events_behind_a_slow_subscriptions_long_backlog_go() {
    // Four requests for the worker: the hung subscription holds three, its share, and one is
    // left, so a claim reads one new event per free request.
    let pg = Cluster::start(&["pg_webhook.workers = 1", "pg_webhook.max_in_flight = 4"]);
    let hung = Receiver::with(|_, _| Reply::Delay(Duration::from_secs(120), 204));
    let quick = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE hung (id int PRIMARY KEY); CREATE TABLE quick (id int PRIMARY KEY)",
    );
    let options = ", timeout => '3 minutes'";
    subscribe(&mut db, "hung", "hung", &hung.url("/hung"), options);
    subscribe(&mut db, "quick", "quick", &quick.url("/quick"), "");
    exec(
        &mut db,
        "INSERT INTO hung SELECT generate_series(1, 200000)",
    );
    wait_until(WAIT, "the hung receiver's three requests", || {
        hung.count() >= 3
    });
    exec(&mut db, "INSERT INTO quick VALUES (1)");
    // Before, each claim passed one of the 200,000 events: the quick one waited minutes.
    wait_until(WAIT, "the other subscription's event", || {
        quick.count() == 1
    });
}
