//! What the update from 0.2.0 repairs in what 0.2.0 stored. One scenario per test.

mod support;

use support::cluster::{install_released_script, wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, subscribe, WAIT};

#[test]
fn a_long_retry_schedule_from_0_2_0_makes_100_attempts_after_the_update() {
    install_released_script("0.1.0");
    install_released_script("0.2.0");
    let pg = Cluster::start(&[]);
    let mut db = pg.connect("postgres");
    exec(&mut db, "CREATE EXTENSION pg_webhook VERSION '0.2.0'");
    let rx = Receiver::start();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    // What 0.2.0 stored for a schedule of 150 delays and no max_attempts (written by hand:
    // this library's subscribe refuses it).
    exec(
        &mut db,
        "UPDATE webhook._subscriptions
            SET retry_schedule = array_fill('1 second'::interval, ARRAY[150]), max_attempts = 151",
    );
    exec(&mut db, "ALTER EXTENSION pg_webhook UPDATE");
    assert_eq!(
        count(
            &mut db,
            "SELECT max_attempts::bigint FROM webhook._subscriptions WHERE name = 't'"
        ),
        100
    );
    // Sent; before, every attempt was refused as misconfigured (max_attempts out of range).
    exec(&mut db, "INSERT INTO t VALUES (1)");
    wait_until(WAIT, "the event", || rx.accepted_ids().contains(&1));
}
