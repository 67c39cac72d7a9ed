//! What catches the cases the usual machinery misses after delivery: the callback runner's
//! watchdog for a callback that ignores its cancel, and the worker recording outcomes one at a
//! time when a batch's record fails on an event whose id is archived already. One scenario per
//! test.

mod support;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, subscribe, text, LONG_WAIT, WAIT};

#[test]
fn a_callback_that_ignores_its_cancel_is_stopped_and_does_not_hold_up_the_next() {
    let pg = Cluster::start(&[
        "pg_webhook.poll_interval = '100ms'",
        "pg_webhook.callback_timeout = '500ms'",
    ]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE TABLE called (id int);
         CREATE FUNCTION public.stubborn(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             IF (e->'record'->>'id')::int = 1 THEN
                 LOOP
                     BEGIN
                         PERFORM pg_catalog.pg_sleep(0.05);
                     EXCEPTION WHEN query_canceled THEN
                         NULL;
                     END;
                 END LOOP;
             END IF;
             INSERT INTO public.called VALUES ((e->'record'->>'id')::int);
         END $$;",
    );
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", callback => 'public.stubborn(jsonb)'",
    );
    exec(&mut db, "INSERT INTO t VALUES (1)");
    wait_until(WAIT, "the first event delivered", || {
        rx.accepted_ids().contains(&1)
    });
    exec(&mut db, "INSERT INTO t VALUES (2)");
    wait_until(LONG_WAIT, "the second event's callback", || {
        count(&mut db, "SELECT count(*) FROM called WHERE id = 2") == 1
    });
    let error = text(
        &mut db,
        "SELECT callback_error FROM webhook.events WHERE record->>'id' = '1'",
    )
    .unwrap_or_default();
    assert!(
        error.contains("stopped 2 times") && error.contains("pg_webhook.callback_timeout"),
        "the stubborn callback's event says what happened: {error}"
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM called WHERE id = 1"),
        0
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM webhook._callback_queue"),
        0
    );
}

/// An event whose id is in the archive already (rows written by hand, the id sequence set
/// back): the statement recording its batch fails on the archive's key, and the worker then
/// records those outcomes one at a time. That event leaves the queue and the archive row it
/// found stays; the others of its batch are archived as usual; nothing is sent twice.
#[test]
fn an_event_whose_id_is_archived_already_leaves_the_queue_and_holds_up_no_other() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    let (id, _) = subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(
        &mut db,
        &format!(
            "INSERT INTO webhook._event_archive
                    (id, subscription_id, op, table_schema, table_name, created_at, attempts,
                     status, last_error)
             VALUES (1000000, {id}, 'INSERT', 'public', 't', now(), 1, 'dead', 'written by hand');
             -- The next statement's events get ids 1000000 to 1000004.
             SELECT setval('webhook._event_id_seq', 1000000 - 1024);
             INSERT INTO t SELECT generate_series(1, 5);"
        ),
    );
    wait_until(WAIT, "the five events to leave the queue", || {
        count(&mut db, "SELECT count(*) FROM webhook._event_queue") == 0
    });
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_archive
              WHERE id BETWEEN 1000001 AND 1000004 AND status = 'delivered'"
        ),
        4
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT last_error FROM webhook._event_archive WHERE id = 1000000"
        )
        .as_deref(),
        Some("written by hand")
    );
    // A later event goes through normally; none of the first five was sent twice.
    exec(&mut db, "INSERT INTO t VALUES (6)");
    wait_until(WAIT, "the marker", || rx.accepted_ids().contains(&6));
    assert_eq!(rx.count(), 6, "{:?}", rx.accepted_ids());
}
