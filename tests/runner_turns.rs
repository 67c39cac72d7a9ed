//! Owners take turns in the callback runner even when a runner process ends in the middle of
//! one (the watchdog ends one whose callback or chunk goes on after its cancel).

mod support;

use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, subscribe};

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
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE bob LOGIN; CREATE ROLE alice LOGIN;
         GRANT webhook_admin TO alice, bob;
         GRANT CREATE ON SCHEMA public TO alice, bob;",
    );
    let mut alice = pg.connect_as("postgres", "alice");
    let mut bob = pg.connect_as("postgres", "bob");
    exec(
        &mut bob,
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
    );
    subscribe(
        &mut bob,
        "bobs",
        "bobs",
        &rx.url("/bob"),
        ", callback => 'public.stubborn(jsonb)'",
    );
    exec(
        &mut alice,
        "CREATE TABLE alices (id int PRIMARY KEY);
         CREATE TABLE alice_ran (id int);
         CREATE FUNCTION public.alice_notes(event jsonb) RETURNS void LANGUAGE sql AS
             $$ INSERT INTO public.alice_ran VALUES ((event->'record'->>'id')::int) $$;",
    );
    subscribe(
        &mut alice,
        "alices",
        "alices",
        &rx.url("/alice"),
        ", callback => 'public.alice_notes(jsonb)'",
    );
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
