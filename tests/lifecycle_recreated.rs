//! The extension dropped and made again while sessions capture and the workers deliver: capture
//! goes on, DROP EXTENSION is not refused as a deadlock, and an event or callback of the old
//! extension is never taken for one of the new.

mod support;

use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{subscribe, text, WAIT};

#[test]
fn a_session_goes_on_capturing_after_another_role_makes_the_extension_again() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut admin = pg.connect("postgres");
    admin
        .batch_execute(
            "CREATE ROLE first_owner SUPERUSER LOGIN;
             CREATE ROLE second_owner SUPERUSER LOGIN;
             CREATE TABLE t (id int PRIMARY KEY);",
        )
        .unwrap();
    let mut first = pg.connect_as("postgres", "first_owner");
    first.batch_execute("CREATE EXTENSION pg_webhook").unwrap();
    subscribe(&mut first, "one", "t", &rx.url("/one"), "");
    // A long-lived session captures, so it knows who owns the extension.
    let mut writer = pg.connect("postgres");
    writer.batch_execute("INSERT INTO t VALUES (1)").unwrap();
    wait_until(WAIT, "the first subscription's event", || {
        rx.requests().iter().any(|r| r.path == "/one")
    });
    admin
        .batch_execute("DROP EXTENSION pg_webhook CASCADE")
        .unwrap();
    let mut second = pg.connect_as("postgres", "second_owner");
    second.batch_execute("CREATE EXTENSION pg_webhook").unwrap();
    // The schema CREATE EXTENSION made is not the extension's: it outlives it.
    admin
        .batch_execute("REASSIGN OWNED BY first_owner TO second_owner; DROP ROLE first_owner")
        .unwrap();
    subscribe(&mut second, "two", "t", &rx.url("/two"), "");
    writer
        .batch_execute("INSERT INTO t VALUES (2)")
        .unwrap_or_else(|e| panic!("a write after the extension was made again: {e:?}"));
    wait_until(WAIT, "the second subscription's event", || {
        rx.requests()
            .iter()
            .any(|r| r.path == "/two" && String::from_utf8_lossy(&r.body).contains("\"id\": 2"))
    });
}

#[test]
fn drop_extension_while_the_workers_deliver_is_not_refused_as_a_deadlock() {
    // The worker's passes lock pg_webhook's tables in their own order, DROP EXTENSION in its
    // own; in a lock cycle the worker gives way (its deadlock timeout is the shorter).
    let pg = Cluster::start(&["pg_webhook.poll_interval = '10ms'"]);
    let rx = Receiver::start();
    let mut db = pg.connect("postgres");
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    for round in 0..ROUNDS {
        db.batch_execute("CREATE EXTENSION pg_webhook").unwrap();
        let path = format!("/round{round}");
        subscribe(&mut db, "t", "t", &rx.url(&path), "");
        db.batch_execute(&format!(
            "INSERT INTO t SELECT {round} * 1000 + g FROM generate_series(1, 200) g"
        ))
        .unwrap();
        wait_until(WAIT, "the round's first event", || {
            rx.requests().iter().any(|r| r.path == path)
        });
        db.batch_execute("DROP EXTENSION pg_webhook CASCADE")
            .unwrap_or_else(|e| panic!("round {round}: DROP EXTENSION: {e:?}"));
    }
}

/// Rounds of the DROP EXTENSION test: the lock cycle it guards against needs a worker pass
/// and the DROP to meet.
const ROUNDS: u32 = 20;

#[test]
fn an_event_of_an_extension_made_again_is_not_mistaken_for_a_dropped_one_in_flight() {
    // Event ids start over in an extension made again. A worker that did not notice the drop
    // (dropped and made in one transaction while its request was out) still had the old event
    // 1 in flight when the new event 1 came: the claim skipped the new one as its own, and its
    // cursor went past it.
    let pg = Cluster::start(&[]);
    let rx = Receiver::with(|r, _| match r.path.as_str() {
        "/one" => Reply::Delay(Duration::from_secs(3), 204),
        _ => Reply::Status(204),
    });
    let mut db = pg.connect("postgres");
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY); CREATE EXTENSION pg_webhook")
        .unwrap();
    subscribe(&mut db, "one", "t", &rx.url("/one"), "");
    db.batch_execute("INSERT INTO t VALUES (1)").unwrap();
    wait_until(WAIT, "the first event's request", || {
        rx.requests().iter().any(|r| r.path == "/one")
    });
    db.batch_execute(
        "BEGIN; DROP EXTENSION pg_webhook CASCADE; CREATE EXTENSION pg_webhook; COMMIT;",
    )
    .unwrap();
    subscribe(&mut db, "two", "t", &rx.url("/two"), "");
    db.batch_execute("INSERT INTO t VALUES (2)").unwrap();
    assert_eq!(
        text(&mut db, "SELECT min(id)::text FROM webhook.events").as_deref(),
        Some("1"),
        "the new event has the id the old one had"
    );
    wait_until(WAIT, "the new extension's event", || {
        rx.requests()
            .iter()
            .any(|r| r.path == "/two" && String::from_utf8_lossy(&r.body).contains("\"id\": 2"))
    });
    wait_until(WAIT, "the new event recorded as delivered", || {
        text(&mut db, "SELECT status FROM webhook.events WHERE id = 1").as_deref()
            == Some("delivered")
    });
}

#[test]
fn a_callback_batch_read_before_the_extension_was_made_again_is_read_again() {
    // The runner reads callbacks 50 at a time and runs each in a transaction of its own. The
    // extension dropped and made again (here with a restored event and callback, as a
    // pg_restore in one transaction would) while the first runs: the second was read from the
    // old one, with its subscription's function and owner; the new one's event with the same
    // id must go to the new subscription's callback.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.connect("postgres");
    db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE TABLE called (sub text, id int);
         CREATE FUNCTION public.cb_old(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO public.called VALUES ('old', (e->'record'->>'id')::int);
             IF (e->'record'->>'id')::int = 1 THEN PERFORM pg_catalog.pg_sleep(2); END IF;
         END $$;
         CREATE FUNCTION public.cb_new(e jsonb) RETURNS void LANGUAGE sql
             AS $$ INSERT INTO public.called VALUES ('new', (e->'record'->>'id')::int) $$;
         CREATE EXTENSION pg_webhook",
    )
    .unwrap();
    subscribe(
        &mut db,
        "old",
        "t",
        &rx.url("/old"),
        ", callback => 'public.cb_old(jsonb)'",
    );
    let runner = pg.callback_runner_pid(&mut db);
    pg.kill("STOP", runner);
    db.batch_execute("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)")
        .unwrap();
    wait_until(WAIT, "both callbacks to be queued", || {
        text(
            &mut db,
            "SELECT count(*)::text FROM webhook._callback_queue",
        )
        .as_deref()
            == Some("2")
    });
    // Event ids are handed out in ranges per session: the new extension's event gets the id
    // the old second one had.
    let second = text(
        &mut db,
        "SELECT max(event_id)::text FROM webhook._callback_queue",
    )
    .unwrap_or_default();
    pg.kill("CONT", runner);
    wait_until(WAIT, "the first callback to run", || {
        text(
            &mut db,
            &format!("SELECT wait_event FROM pg_stat_activity WHERE pid = {runner}"),
        )
        .as_deref()
            == Some("PgSleep")
    });
    db.batch_execute(&format!(
        "BEGIN;
         DROP EXTENSION pg_webhook CASCADE;
         CREATE EXTENSION pg_webhook;
         SELECT * FROM webhook.subscribe('new', 't', '{}', callback => 'public.cb_new(jsonb)');
         INSERT INTO webhook._event_archive
             (id, subscription_id, op, table_schema, table_name, record, created_at, attempts, status)
         SELECT {second}, id, 'INSERT', 'public', 't', '{{\"id\": 777}}', now(), 1, 'delivered'
           FROM webhook._subscriptions WHERE name = 'new';
         INSERT INTO webhook._callback_queue (event_id, subscription_id)
         SELECT {second}, id FROM webhook._subscriptions WHERE name = 'new';
         COMMIT;",
        rx.url("/new")
    ))
    .unwrap();
    wait_until(WAIT, "the new extension's callback", || {
        text(&mut db, "SELECT min(sub) FROM called WHERE id = 777").is_some()
    });
    assert_eq!(
        text(
            &mut db,
            "SELECT string_agg(sub, ',' ORDER BY sub) FROM called WHERE id = 777"
        )
        .as_deref(),
        Some("new"),
        "the old subscription's callback got the new extension's event"
    );
}
