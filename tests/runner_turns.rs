//! Owners take turns in the callback runner even when a runner process ends in the middle of
//! one (the watchdog ends one whose callback or chunk goes on after its cancel).

mod support;

use std::time::Duration;

use postgres::Client;
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec};

/// bob, whose callback `public.stubborn` ignores its cancel, and alice (see
/// `support::runner::bob_and_alice`).
fn bob_and_alice(pg: &Cluster, rx: &Receiver, pause: f64) -> (Client, Client, Client) {
    support::runner::bob_and_alice(
        pg,
        rx,
        "CREATE TABLE bobs (id int PRIMARY KEY);
         CREATE FUNCTION public.stubborn(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             LOOP
                 BEGIN
                     PERFORM pg_catalog.pg_sleep(0.05);
                 EXCEPTION WHEN query_canceled THEN
                     NULL;
                 END;
             END LOOP;
         END $$;",
        "public.stubborn(jsonb)",
        pause,
    )
}

#[test]
fn a_runner_that_ends_in_an_owners_turn_passes_the_turn_on() {
    // The watchdog ends the runner of a callback that ignores its cancel; the next runner knew
    // of no turn before it and started again with the owner of the lowest OID. bob, made
    // before alice, had the turn after each of his callbacks ended a runner: 40 runners, about
    // 5 s each, while alice's callback waited.
    let pg = Cluster::start(&[
        "pg_webhook.poll_interval = '100ms'",
        "pg_webhook.callback_timeout = '200ms'",
    ]);
    let rx = Receiver::start();
    let (_su, mut alice, mut bob) = bob_and_alice(&pg, &rx, 0.0);
    exec(&mut bob, "INSERT INTO bobs SELECT generate_series(1, 20)");
    wait_until(support::WAIT, "bob's events delivered", || {
        rx.requests().iter().filter(|r| r.path == "/bob").count() >= 20
    });
    exec(&mut alice, "INSERT INTO alices VALUES (1)");
    // One of bob's callbacks may be running: it ends its runner within callback_timeout and
    // the watchdog's 5 s grace; alice's turn comes next.
    wait_until(Duration::from_secs(30), "alice's callback", || {
        count(&mut alice, "SELECT count(*) FROM alice_ran") == 1
    });
}

/// Times bob's callbacks were started: those still queued count their starts, and one recorded
/// as failed after its runner was stopped twice during it counts two.
const BOBS_STARTS: &str = "
    SELECT (SELECT COALESCE(sum(q.starts), 0) FROM webhook._callback_queue q
              JOIN webhook._subscriptions s ON s.id = q.subscription_id WHERE s.name = 'bobs')
         + 2 * (SELECT count(*) FROM webhook.events e
                  JOIN webhook._subscriptions s ON s.id = e.subscription_id
                 WHERE s.name = 'bobs' AND e.callback_error LIKE '%was stopped 2 times%')";

#[test]
fn an_owner_whose_turn_ended_with_the_runner_sits_out_while_another_owners_callbacks_wait() {
    // Each of bob's turns ended a runner, callback_timeout and the watchdog's 5 s grace in, and
    // came round again after each of alice's 1 s turns: her 2 s of callbacks took two of bob's
    // runners, and a long stream of hers one every second of hers.
    let pg = Cluster::start(&[
        "pg_webhook.poll_interval = '100ms'",
        "pg_webhook.callback_timeout = '200ms'",
    ]);
    let rx = Receiver::start();
    let (mut su, mut alice, mut bob) = bob_and_alice(&pg, &rx, 0.05);
    exec(&mut bob, "INSERT INTO bobs SELECT generate_series(1, 3)");
    wait_until(support::WAIT, "bob's first callback to start", || {
        count(&mut su, BOBS_STARTS) >= 1
    });
    exec(
        &mut alice,
        "INSERT INTO alices SELECT generate_series(1, 40)",
    );
    wait_until(Duration::from_secs(60), "alice's callbacks", || {
        count(&mut alice, "SELECT count(*) FROM alice_ran") == 40
    });
    assert_eq!(
        count(&mut su, BOBS_STARTS),
        1,
        "bob's callbacks were started again while alice's waited"
    );
}

#[test]
#[ignore = "a callback blocked in a call that never checks for interrupts (dblink_connect to a \
            server that never answers) holds the runner, and every other owner's callbacks, \
            until the call returns (see README, Limits)"]
fn a_callback_blocked_in_a_connection_that_never_answers_does_not_hold_up_another_owner() {
    // A server that accepts connections and never says a word: libpq waits for its greeting
    // in a loop that neither a cancel nor pg_terminate_backend interrupts (PostgreSQL 15).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let port = silent.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming() {
            held.push(stream);
        }
    });
    let pg = Cluster::start(&[
        "pg_webhook.poll_interval = '100ms'",
        "pg_webhook.callback_timeout = '200ms'",
    ]);
    exec(&mut pg.connect("postgres"), "CREATE EXTENSION dblink");
    let rx = Receiver::start();
    let (mut su, mut alice, mut bob) = support::runner::bob_and_alice(
        &pg,
        &rx,
        &format!(
            "CREATE TABLE bobs (id int PRIMARY KEY);
             CREATE FUNCTION public.hang(e jsonb) RETURNS void LANGUAGE sql AS $$
                 SELECT public.dblink_connect(
                     'host=127.0.0.1 port={port} dbname=x user=x password=x') $$;"
        ),
        "public.hang(jsonb)",
        0.0,
    );
    exec(&mut bob, "INSERT INTO bobs VALUES (1)");
    wait_until(support::WAIT, "bob's callback to start", || {
        count(&mut su, BOBS_STARTS) >= 1
    });
    exec(&mut alice, "INSERT INTO alices VALUES (1)");
    // The cancel at callback_timeout and the watchdog's 5 s grace, then alice's turn.
    wait_until(Duration::from_secs(30), "alice's callback", || {
        count(&mut alice, "SELECT count(*) FROM alice_ran") == 1
    });
}
