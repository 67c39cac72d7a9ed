//! Ways in through the SQL a subscriber hands pg_webhook: a filter or callback that would
//! change the session it runs in or leave state for the next owner's callback, and a filter or
//! payload that is not one expression, or a callback its owner may not use. One scenario per
//! test; each fails on a pg_webhook that lets them in.

mod support;

use support::cluster::{wait_until, Cluster};
use support::mallory::victim_and_mallory;
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe, text, WAIT};

#[test]
fn a_filter_cannot_change_the_writers_session() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE mallory LOGIN; GRANT webhook_admin TO mallory;
         CREATE TABLE payments (id int PRIMARY KEY);
         GRANT SELECT, TRIGGER ON payments TO mallory;",
    );
    let mut mallory = pg.connect_as("postgres", "mallory");
    subscribe(
        &mut mallory,
        "leaky",
        "payments",
        &rx.url("/p"),
        ", filter => $$pg_catalog.set_config('search_path', 'mallory_was_here, pg_catalog', false) IS NOT NULL
                      AND pg_catalog.set_config('mallory.marker', 'leaked', false) IS NOT NULL$$",
    );
    let before = text(&mut su, "SELECT current_setting('search_path')");
    exec(&mut su, "INSERT INTO payments VALUES (1)");
    assert_eq!(
        text(&mut su, "SELECT current_setting('search_path')"),
        before
    );
    assert_eq!(
        text(
            &mut su,
            "SELECT NULLIF(current_setting('mallory.marker', true), '')"
        ),
        None,
        "a setting the filter made survived it"
    );
    // And inside a transaction block too.
    exec(
        &mut su,
        "BEGIN; INSERT INTO payments VALUES (2); SELECT 1; COMMIT;",
    );
    assert_eq!(
        text(&mut su, "SELECT current_setting('search_path')"),
        before
    );
    // The filter ran (it is true): both rows were sent.
    rx.wait_for(2, WAIT);
    // A filter cannot change role either: it runs as a security-restricted operation.
    subscribe(
        &mut mallory,
        "climber",
        "payments",
        &rx.url("/c"),
        ", filter => $$pg_catalog.set_config('role', 'postgres', false) IS NOT NULL$$",
    );
    let e = error_of(&mut su, "INSERT INTO payments VALUES (3)");
    assert!(e.contains("cannot set parameter \"role\""), "{e}");
}

#[test]
fn a_callback_cannot_change_the_callback_runners_session() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE TABLE seen (id int, marker text, path text);
         CREATE FUNCTION public.nosy(event jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO public.seen VALUES ((event->'record'->>'id')::int,
                 NULLIF(current_setting('mallory.marker', true), ''), current_setting('search_path'));
             PERFORM set_config('mallory.marker', 'leaked', false);
             PERFORM set_config('search_path', 'mallory_was_here, pg_catalog', false);
         END $$;",
    );
    subscribe(
        &mut su,
        "t",
        "t",
        &rx.url("/t"),
        ", callback => 'public.nosy(jsonb)'",
    );
    exec(&mut su, "INSERT INTO t VALUES (1)");
    wait_until(WAIT, "the first callback", || {
        count(&mut su, "SELECT count(*) FROM seen") == 1
    });
    exec(&mut su, "INSERT INTO t VALUES (2)");
    wait_until(WAIT, "the second callback", || {
        count(&mut su, "SELECT count(*) FROM seen") == 2
    });
    let second: (Option<String>, String) = su
        .query_one("SELECT marker, path FROM seen WHERE id = 2", &[])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        second.0, None,
        "a setting the first callback made leaked into the next"
    );
    assert_eq!(second.1, "pg_catalog, pg_temp");
}

#[test]
fn a_callback_cannot_reach_what_another_owners_callback_left_in_the_runner() {
    // One runner process ran every owner's callbacks, one after another: a dblink connection
    // that bob's callback opened (authenticated as bob, committing on its own) and a
    // session-level advisory lock it took were still there when alice's callback ran, which
    // could then run SQL as bob (read his tables, grant his rights to herself) and hold or free
    // his lock.
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
         CREATE TABLE bob_ran (pid int);
         CREATE FUNCTION public.bob_leaves_state(event jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM public.dblink_connect_u('bobconn', 'host=127.0.0.1 dbname=postgres user=bob port='
                 OPERATOR(pg_catalog.||) pg_catalog.current_setting('port'));
             PERFORM pg_catalog.pg_advisory_lock(42);
             INSERT INTO public.bob_ran VALUES (pg_catalog.pg_backend_pid());
         END $$;",
    );
    subscribe(
        &mut bob,
        "bobs",
        "bobs",
        &rx.url("/bob"),
        ", callback => 'public.bob_leaves_state(jsonb)'",
    );
    exec(
        &mut alice,
        "CREATE TABLE alices (id int PRIMARY KEY);
         CREATE TABLE alice_saw (pid int, connections text[], locks bigint);
         CREATE FUNCTION public.alice_looks(event jsonb) RETURNS void LANGUAGE sql AS $$
             INSERT INTO public.alice_saw
             SELECT pg_catalog.pg_backend_pid(),
                    COALESCE(public.dblink_get_connections(), '{}'),
                    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks
                      WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid())
         $$;",
    );
    subscribe(
        &mut alice,
        "alices",
        "alices",
        &rx.url("/alice"),
        ", callback => 'public.alice_looks(jsonb)'",
    );
    exec(&mut bob, "INSERT INTO bobs VALUES (1)");
    wait_until(WAIT, "bob's callback", || {
        count(&mut bob, "SELECT count(*) FROM bob_ran") == 1
    });
    exec(&mut alice, "INSERT INTO alices VALUES (1)");
    wait_until(WAIT, "alice's callback", || {
        count(&mut alice, "SELECT count(*) FROM alice_saw") == 1
    });
    let (connections, locks): (Vec<String>, i64) = alice
        .query_one("SELECT connections, locks FROM alice_saw", &[])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        (connections, locks),
        (Vec::<String>::new(), 0),
        "alice's callback found what bob's left in its session"
    );
}

#[test]
fn a_callbacks_session_advisory_lock_ends_with_it() {
    // A session-level advisory lock a callback took stayed with the runner until it exited:
    // taken by bob's callback, nobody could take it again, bob's own sessions included.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let (mut su, _alice, mut bob) = support::bob::alice_and_bob(&pg);
    exec(
        &mut bob,
        "CREATE TABLE bobs (id int PRIMARY KEY);
         CREATE TABLE bob_ran (id int);
         CREATE FUNCTION public.bob_locks(event jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM pg_catalog.pg_advisory_lock(42);
             INSERT INTO public.bob_ran VALUES ((event->'record'->>'id')::int);
             IF (event->'record'->>'id')::int = 2 THEN
                 RAISE EXCEPTION 'bob fails after locking';
             END IF;
         END $$;",
    );
    subscribe(
        &mut bob,
        "bobs",
        "bobs",
        &rx.url("/bob"),
        ", callback => 'public.bob_locks(jsonb)'",
    );
    let held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42";
    exec(&mut bob, "INSERT INTO bobs VALUES (1)");
    wait_until(WAIT, "bob's callback", || {
        count(&mut bob, "SELECT count(*) FROM bob_ran") == 1
    });
    assert_eq!(count(&mut su, held), 0, "the callback's lock outlived it");
    // A failed callback's effects are rolled back; a session lock is not, unless released.
    exec(&mut bob, "INSERT INTO bobs VALUES (2)");
    wait_until(WAIT, "bob's failed callback", || {
        count(
            &mut su,
            "SELECT count(*) FROM webhook.events WHERE callback_error LIKE '%bob fails after locking%'",
        ) == 1
    });
    assert_eq!(
        count(&mut su, held),
        0,
        "the failed callback's lock outlived it"
    );
}

#[test]
fn a_backfill_filter_that_closes_its_expression_is_refused() {
    // Closing the filter's expression early and going on with a UNION changed the type of the
    // order key column the chunk reads raw: worker 0 crashed, and the server with it, again and
    // again.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE TABLE t (id int PRIMARY KEY, amount numeric); INSERT INTO t VALUES (1, 2.5);",
    );
    subscribe(
        &mut su,
        "t",
        "t",
        &rx.url("/t"),
        ", order_key => ARRAY['amount']",
    );
    let e = error_of(
        &mut su,
        "SELECT webhook.backfill('t', $$true) THEN true ELSE false END FROM (SELECT new.*) AS \"t\") AS pass) AS f UNION ALL SELECT NULL::pg_catalog.jsonb, true, ARRAY['1'], 1.5::pg_catalog.float8 --$$)",
    );
    assert!(e.contains("filter is not a valid expression"), "{e}");
    // A filter that is one expression is taken, and its rows go out.
    exec(&mut su, "SELECT webhook.backfill('t', 'amount > 1')");
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["record"]["id"], 1);
}

#[test]
fn a_subscription_filter_or_payload_that_is_not_one_expression_is_refused() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(&mut su, "CREATE TABLE t (id int PRIMARY KEY)");
    for (option, text) in [
        ("filter", "NEW.id > 0) FROM pg_class WHERE (true"),
        ("filter", "true) UNION ALL SELECT (false"),
        ("payload", "to_jsonb(NEW)), (to_jsonb(NEW)"),
    ] {
        let e = error_of(
            &mut su,
            &format!(
                "SELECT webhook.subscribe('t', 't', '{}', {option} => $${text}$$)",
                rx.url("/t")
            ),
        );
        assert!(
            e.contains(&format!("{option} must be one expression")),
            "{option} {text}: {e}"
        );
    }
}

#[test]
fn a_callback_in_a_schema_its_owner_may_not_use_is_refused() {
    // admin.apply is guarded by its schema alone (functions are PUBLIC's to execute): mallory
    // cannot name it, but she can read its OID in pg_proc, and a callback is called by OID.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let (mut su, mut mallory, _) = victim_and_mallory(&pg, &rx);
    exec(
        &mut su,
        "CREATE SCHEMA admin; CREATE TABLE admin.applied (event jsonb);
         CREATE FUNCTION admin.apply(e jsonb) RETURNS void LANGUAGE sql SECURITY DEFINER
             SET search_path = pg_catalog AS 'INSERT INTO admin.applied VALUES (e)';",
    );
    let oid = count(
        &mut su,
        "SELECT 'admin.apply(jsonb)'::regprocedure::oid::bigint",
    );
    let e = error_of(
        &mut mallory,
        &format!(
            "SELECT webhook.subscribe('mine', 'mine', '{}', callback => {oid}::oid::regprocedure)",
            rx.url("/mine")
        ),
    );
    assert!(
        e.contains("permission denied for callback") && e.contains("USAGE on its schema"),
        "{e}"
    );
}
