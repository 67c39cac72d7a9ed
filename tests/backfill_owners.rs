//! Backfills of different owners never share a process: a backfill filter runs as its
//! subscription's owner, and what it leaves in its session (a `dblink` connection, logged in
//! as that owner) must not be within reach of another owner's filter.

mod support;

use support::backfill::wait_state;
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, subscribe, text, WAIT};

#[test]
fn a_backfill_filter_cannot_use_a_connection_another_owners_filter_left() {
    // Worker 0 ran every owner's chunks, one after another: the dblink connection bob's
    // filter opened (authenticated as bob) was still in its session when alice's filter ran,
    // which could then write as bob.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let (mut su, mut alice, mut bob) = support::bob::alice_and_bob(&pg);
    // dblink_connect_u: the cluster trusts every local login, and plain dblink_connect wants a
    // password from a role that is not a superuser.
    exec(
        &mut su,
        "CREATE EXTENSION dblink;
         GRANT EXECUTE ON FUNCTION public.dblink_connect_u(text, text) TO bob;",
    );
    exec(
        &mut bob,
        "CREATE TABLE bobs (id int PRIMARY KEY);
         INSERT INTO bobs VALUES (1);
         CREATE TABLE bob_notes (note text);",
    );
    subscribe(&mut bob, "bobs", "bobs", &rx.url("/bob"), "");
    let port = pg.port;
    exec(
        &mut bob,
        &format!(
            "SELECT * FROM webhook.backfill('bobs', filter => $f$
                 public.dblink_connect_u('bobconn', 'host=127.0.0.1 dbname=postgres user=bob port={port}') = 'OK'
             $f$)"
        ),
    );
    wait_state(&mut bob, "bobs", "done");
    assert_eq!(
        count(&mut bob, "SELECT rows_sent FROM webhook.backfills"),
        1,
        "bob's filter connected"
    );
    exec(
        &mut alice,
        "CREATE TABLE alices (id int PRIMARY KEY);
         INSERT INTO alices VALUES (1);",
    );
    subscribe(&mut alice, "alices", "alices", &rx.url("/alice"), "");
    exec(
        &mut alice,
        "SELECT * FROM webhook.backfill('alices', filter => $f$
             public.dblink_exec('bobconn', 'INSERT INTO public.bob_notes VALUES (''alice was here'')')
                 = 'INSERT 0 1'
         $f$)",
    );
    wait_state(&mut alice, "alices", "failed");
    let error = text(
        &mut alice,
        "SELECT last_error FROM webhook.backfills WHERE subscription = 'alices'",
    )
    .unwrap_or_default();
    // No connection of that name in alice's process: dblink took 'bobconn' for a connection
    // string, and a role that is not a superuser must give a password in one.
    assert!(
        error.contains("a chunk failed 3 times in a row: password is required"),
        "alice's filter failed for another reason: {error}"
    );
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM bob_notes"),
        0,
        "alice's filter wrote as bob"
    );
}

#[test]
fn a_backfill_held_back_by_its_receiver_does_not_hold_up_another_owners_callbacks() {
    // The runner runs both: bob's backfill, waiting for his paused subscription's 5,000 queued
    // events to go, is looked at again and again; alice's callbacks must still run.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let (_su, mut alice, mut bob) = support::bob::alice_and_bob(&pg);
    exec(
        &mut bob,
        "CREATE TABLE bobs (id int PRIMARY KEY);
         INSERT INTO bobs SELECT generate_series(1, 6000);",
    );
    subscribe(&mut bob, "bobs", "bobs", &rx.url("/bob"), "");
    exec(&mut bob, "SELECT webhook.pause('bobs')");
    exec(&mut bob, "SELECT * FROM webhook.backfill('bobs')");
    wait_until(WAIT, "bob's backfill to be held back", || {
        count(&mut bob, "SELECT rows_sent FROM webhook.backfills") == 5000
    });
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
    exec(
        &mut alice,
        "INSERT INTO alices SELECT generate_series(1, 20)",
    );
    wait_until(WAIT, "alice's callbacks", || {
        count(&mut alice, "SELECT count(*) FROM alice_ran") == 20
    });
    assert_eq!(
        support::backfill::state(&mut bob, "bobs"),
        "running",
        "bob's backfill is still held back"
    );
}

#[test]
fn a_failing_backfill_fails_even_while_owners_take_turns() {
    // A chunk's failures in a row were counted in the process that ran them; each hand-over to
    // another owner's turn would start the count again, and a filter that raises would be
    // tried for ever while alice's callbacks keep coming.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let (_su, mut alice, mut bob) = support::bob::alice_and_bob(&pg);
    exec(
        &mut alice,
        "CREATE TABLE alices (id int PRIMARY KEY);
         CREATE TABLE alice_ran (id int);
         CREATE FUNCTION public.alice_waits(event jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO public.alice_ran VALUES ((event->'record'->>'id')::int);
             PERFORM pg_catalog.pg_sleep(0.2);
         END $$;",
    );
    subscribe(
        &mut alice,
        "alices",
        "alices",
        &rx.url("/alice"),
        ", callback => 'public.alice_waits(jsonb)'",
    );
    // Thirty seconds of alice's callbacks: her turns and bob's alternate throughout.
    exec(
        &mut alice,
        "INSERT INTO alices SELECT generate_series(1, 150)",
    );
    exec(
        &mut bob,
        "CREATE TABLE bobs (id int PRIMARY KEY);
         INSERT INTO bobs SELECT generate_series(1, 10);",
    );
    subscribe(&mut bob, "bobs", "bobs", &rx.url("/bob"), "");
    exec(
        &mut bob,
        "SELECT * FROM webhook.backfill('bobs', filter => '1 / (id - id) = 1')",
    );
    wait_state(&mut bob, "bobs", "failed");
    let error = text(&mut bob, "SELECT last_error FROM webhook.backfills").unwrap_or_default();
    assert!(
        error.contains("a chunk failed 3 times in a row: division by zero"),
        "{error}"
    );
    let alice_ran = count(&mut alice, "SELECT count(*) FROM alice_ran");
    assert!(
        alice_ran > 0 && alice_ran < 150,
        "{alice_ran} of alice's callbacks ran before bob's backfill failed: the turns did not alternate"
    );
}

#[test]
fn a_tables_owner_cannot_use_a_connection_the_subscribers_filter_left() {
    // A chunk renders its rows' images as the table's owner, so a cast to json of a column's
    // type runs there: bob's code, in the runner process bound to alice. It wrote through the
    // dblink connection alice's filter had opened (logged in as alice), as alice.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let (mut su, mut alice, mut bob) = support::bob::alice_and_bob(&pg);
    exec(
        &mut su,
        "CREATE EXTENSION dblink;
         GRANT EXECUTE ON FUNCTION public.dblink_connect_u(text, text) TO alice;",
    );
    exec(&mut alice, "CREATE TABLE alice_notes (note text);");
    exec(
        &mut bob,
        "CREATE TYPE public.mood AS ENUM ('ok');
         CREATE FUNCTION public.mood_json(public.mood) RETURNS json LANGUAGE sql AS $$
             SELECT pg_catalog.to_json(public.dblink_exec('aliceconn',
                 'INSERT INTO public.alice_notes VALUES (''bob was here'')'))
         $$;
         CREATE CAST (public.mood AS json) WITH FUNCTION public.mood_json(public.mood);
         CREATE TABLE bobs (id int PRIMARY KEY, m public.mood);
         INSERT INTO bobs VALUES (1, 'ok');
         GRANT SELECT, TRIGGER ON bobs TO alice;",
    );
    subscribe(&mut alice, "bobs", "bobs", &rx.url("/alice"), "");
    let port = pg.port;
    exec(
        &mut alice,
        &format!(
            "SELECT * FROM webhook.backfill('bobs', filter => $f$
                 COALESCE('aliceconn' OPERATOR(pg_catalog.=) ANY (public.dblink_get_connections()), false)
                 OR public.dblink_connect_u('aliceconn', 'host=127.0.0.1 dbname=postgres user=alice port={port}') = 'OK'
             $f$)"
        ),
    );
    wait_until(WAIT, "alice's backfill to end", || {
        support::backfill::state(&mut alice, "bobs") != "running"
    });
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM alice_notes"),
        0,
        "bob's cast wrote as alice"
    );
    let error = text(
        &mut alice,
        "SELECT last_error FROM webhook.backfills WHERE subscription = 'bobs'",
    )
    .unwrap_or_default();
    assert!(error.contains("public.mood_json"), "{error}");
}

#[test]
fn a_backfill_filters_session_advisory_lock_ends_with_its_chunk() {
    // The runner releases a callback's session-level advisory locks when it ends; a chunk's
    // filter kept its own in the runner process, which only a superuser may end, for as long
    // as no other owner's turn came: alice's sessions waited for it.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let (_su, mut alice, mut bob) = support::bob::alice_and_bob(&pg);
    exec(
        &mut bob,
        "CREATE TABLE bobs (id int PRIMARY KEY);
         INSERT INTO bobs VALUES (1);",
    );
    subscribe(&mut bob, "bobs", "bobs", &rx.url("/bob"), "");
    exec(
        &mut bob,
        "SELECT * FROM webhook.backfill('bobs', filter => 'pg_catalog.pg_try_advisory_lock(4242)')",
    );
    wait_state(&mut bob, "bobs", "done");
    assert_eq!(
        count(&mut bob, "SELECT rows_sent FROM webhook.backfills"),
        1,
        "bob's filter took the lock"
    );
    // The runner lets the session's locks go just after the chunk's commit (which says done):
    // waited for, a moment; kept, for as long as the runner lives (the test's WAIT).
    wait_until(
        WAIT,
        "the runner to let go of the lock bob's filter took",
        || text(&mut alice, "SELECT pg_try_advisory_lock(4242)::text").as_deref() == Some("true"),
    );
}
