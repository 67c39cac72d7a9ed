//! Events held from an owner who may no longer read their table stay held when the table is
//! dropped — however it is dropped, whether or not a worker saw the loss first — and the check
//! that remembers it cannot be turned against the extension owner or make a DROP wait.
//! One scenario per test.

mod support;

use support::bob::{
    bob_reads_ledger, bob_subscribed, held, held_from_bob, revoked_after_subscribing, LEDGER,
};
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{alter_system, count, exec, subscribe, text, WAIT};

#[test]
fn events_held_from_an_owner_stay_held_when_the_table_is_dropped() {
    let (_pg, rx, mut su, mut bob) = revoked_after_subscribing();
    wait_until(WAIT, "bob's event to be held", || held(&mut su));
    // Dropping the table ends the subscription and gives back its parked events; with no ACL
    // left to ask, they must not go to bob now, nor show him their rows. (Given back, the event
    // is pending until the worker, finding the access still denied, parks it again: either is
    // held; the assertion once raced that re-park.)
    exec(&mut su, "DROP TABLE ledger");
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM webhook.events
              WHERE table_name = 'ledger' AND status IN ('pending', 'parked')",
        ),
        1,
        "the drop lost the event, or sent it"
    );
    held_from_bob(&rx, &mut su, &mut bob);
}

#[test]
fn once_the_access_is_back_the_held_events_go_even_if_the_table_is_then_dropped() {
    let (_pg, rx, mut su, _bob) = revoked_after_subscribing();
    let noted = |su: &mut postgres::Client| {
        text(
            su,
            "SELECT read_denied::text FROM webhook._subscriptions WHERE name = 'bobs'",
        )
    };
    wait_until(WAIT, "the denial to be noted", || {
        noted(&mut su).as_deref() == Some("true")
    });
    // Nobody resumes it; the access comes back and the worker notices.
    exec(&mut su, "GRANT SELECT ON ledger TO bob");
    wait_until(WAIT, "the note to be cleared", || {
        noted(&mut su).as_deref() == Some("false")
    });
    exec(&mut su, "DROP TABLE ledger");
    wait_until(WAIT, "the held event, sent as a dropped table's", || {
        rx.requests().iter().any(|r| r.path == "/bob")
    });
}

#[test]
fn a_revoke_and_a_drop_in_one_transaction_keep_the_events_held() {
    let (_pg, rx, mut su, mut bob) =
        bob_subscribed(&["pg_webhook.poll_interval = '100ms'"], LEDGER);
    // The row, the REVOKE and the DROP commit together: no worker ever sees the table while
    // bob may not read it.
    exec(
        &mut su,
        "BEGIN;
         INSERT INTO ledger VALUES (1, 'a', 'held');
         REVOKE SELECT ON ledger FROM bob;
         DROP TABLE ledger;
         COMMIT;",
    );
    held_from_bob(&rx, &mut su, &mut bob);
}

#[test]
fn a_revoke_and_a_drop_while_no_worker_runs_keep_the_events_held() {
    let (_pg, rx, mut su, mut bob) = bob_subscribed(
        &[
            "pg_webhook.database = 'elsewhere'",
            "pg_webhook.poll_interval = '100ms'",
        ],
        LEDGER,
    );
    exec(&mut su, "INSERT INTO ledger VALUES (1, 'a', 'held')");
    exec(&mut su, "REVOKE SELECT ON ledger FROM bob");
    exec(&mut su, "DROP TABLE ledger");
    // Workers come only now, to a table that is gone.
    alter_system(&mut su, "SET pg_webhook.database = 'postgres'");
    held_from_bob(&rx, &mut su, &mut bob);
}

#[test]
fn a_drop_type_cascade_that_takes_the_table_keeps_the_events_held() {
    // A typed table: DROP TYPE ... CASCADE drops it, with no DROP TABLE anywhere.
    let (_pg, rx, mut su, mut bob) = bob_subscribed(
        &["pg_webhook.poll_interval = '100ms'"],
        "CREATE TYPE ledger_row AS (id int, tenant text, secret text);
         CREATE TABLE ledger OF ledger_row (PRIMARY KEY (id))",
    );
    exec(
        &mut su,
        "BEGIN;
         INSERT INTO ledger VALUES (1, 'a', 'held');
         REVOKE SELECT ON ledger FROM bob;
         DROP TYPE ledger_row CASCADE;
         COMMIT;",
    );
    held_from_bob(&rx, &mut su, &mut bob);
}

#[test]
fn a_drop_never_waits_for_a_transaction_holding_a_subscription() {
    // No worker: nobody has noted that bob may no longer read the table.
    let (pg, _rx, mut su, _bob) = bob_subscribed(&["pg_webhook.database = 'elsewhere'"], LEDGER);
    exec(
        &mut su,
        "REVOKE SELECT ON ledger FROM bob; CREATE ROLE mallory LOGIN",
    );
    // An open transaction holds bob's subscription row.
    exec(&mut su, "BEGIN; SELECT webhook.pause('bobs')");
    // Anyone's DROP, of a table no subscription is on, goes through at once.
    let mut mallory = pg.connect_as("postgres", "mallory");
    exec(
        &mut mallory,
        "SET lock_timeout = '5s'; CREATE TEMP TABLE scratch (); DROP TABLE scratch",
    );
    exec(&mut su, "ROLLBACK");
}

#[test]
fn a_revoke_committed_while_the_drop_waits_for_its_lock_keeps_the_events_held() {
    // No worker until the end: nobody notes bob's loss of access but the DROP.
    let (pg, rx, mut su, mut bob) = bob_subscribed(&["pg_webhook.database = 'elsewhere'"], LEDGER);
    exec(&mut su, "INSERT INTO ledger VALUES (1, 'a', 'held')");
    let mut reader = pg.connect("postgres");
    exec(&mut reader, "BEGIN; LOCK TABLE ledger IN ACCESS SHARE MODE");
    let mut dropper = pg.connect("postgres");
    let drop = std::thread::spawn(move || exec(&mut dropper, "DROP TABLE ledger"));
    wait_until(WAIT, "the DROP to wait for the table's lock", || {
        count(
            &mut su,
            "SELECT count(*) FROM pg_locks
              WHERE relation = 'ledger'::regclass AND mode = 'AccessExclusiveLock' AND NOT granted",
        ) == 1
    });
    // Committed while the DROP waits: it is what the DROP must go by.
    exec(&mut su, "REVOKE SELECT ON ledger FROM bob");
    exec(&mut reader, "COMMIT");
    drop.join().expect("the DROP");
    alter_system(&mut su, "SET pg_webhook.database = 'postgres'");
    held_from_bob(&rx, &mut su, &mut bob);
}

#[test]
fn a_drop_runs_no_operator_of_the_droppers_search_path_as_the_extension_owner() {
    let pg = Cluster::start(&["pg_webhook.database = 'elsewhere'"]);
    let mut su = pg.client_with_extension();
    // A subscription, so the check's comparisons have rows to run on.
    exec(&mut su, "CREATE TABLE orders (id int PRIMARY KEY)");
    subscribe(&mut su, "orders", "orders", "http://127.0.0.1:9/orders", "");
    // mallory owns a schema with an `=` for oid and int4 that writes down who runs it.
    exec(
        &mut su,
        "CREATE ROLE mallory LOGIN; CREATE SCHEMA evil AUTHORIZATION mallory;
         CREATE TABLE evil_ran (who text); GRANT INSERT ON evil_ran TO PUBLIC;",
    );
    let mut mallory = pg.connect_as("postgres", "mallory");
    exec(
        &mut mallory,
        "CREATE FUNCTION evil.eq_oid(oid, oid) RETURNS boolean LANGUAGE plpgsql AS
             $$ BEGIN INSERT INTO public.evil_ran VALUES (current_user); RETURN $1::int8 = $2::int8; END $$;
         CREATE FUNCTION evil.eq_int(int4, int4) RETURNS boolean LANGUAGE plpgsql AS
             $$ BEGIN INSERT INTO public.evil_ran VALUES (current_user); RETURN $1::int8 = $2::int8; END $$;
         CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.eq_oid);
         CREATE OPERATOR evil.= (LEFTARG = int4, RIGHTARG = int4, FUNCTION = evil.eq_int);
         SET search_path = evil, pg_catalog, public;
         CREATE TABLE evil.t (id int);
         DROP TABLE evil.t;",
    );
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM evil_ran"),
        0,
        "an operator mallory planted ran inside the DROP's access check"
    );
}

#[test]
fn a_repeatable_read_drop_whose_snapshot_predates_the_subscription_keeps_its_events_held() {
    // No worker until the end: only the DROP can note that bob lost access.
    let pg = Cluster::start(&["pg_webhook.database = 'elsewhere'"]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    bob_reads_ledger(&mut su);
    // The DROP's transaction takes its snapshot before bob subscribes.
    let mut dropper = pg.connect("postgres");
    exec(
        &mut dropper,
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class",
    );
    let mut bob = pg.connect_as("postgres", "bob");
    subscribe(&mut bob, "bobs", "ledger", &rx.url("/bob"), "");
    exec(&mut su, "INSERT INTO ledger VALUES (1, 'a', 'held')");
    exec(&mut su, "REVOKE SELECT ON ledger FROM bob");
    exec(&mut dropper, "DROP TABLE ledger; COMMIT");
    assert_eq!(
        text(
            &mut su,
            "SELECT status FROM webhook.subscriptions WHERE name = 'bobs'"
        )
        .as_deref(),
        Some("unsubscribed"),
        "the DROP ended the subscription on the table it dropped"
    );
    alter_system(&mut su, "SET pg_webhook.database = 'postgres'");
    held_from_bob(&rx, &mut su, &mut bob);
}

#[test]
fn a_repeatable_read_drop_goes_through_after_the_worker_changed_the_subscription() {
    let (pg, rx, mut su, mut bob) = bob_subscribed(&["pg_webhook.poll_interval = '100ms'"], LEDGER);
    let mut dropper = pg.connect("postgres");
    exec(
        &mut dropper,
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class",
    );
    // After the DROP's snapshot, the worker holds bob's event and changes his subscription.
    exec(
        &mut su,
        "REVOKE SELECT ON ledger FROM bob; INSERT INTO ledger VALUES (1, 'a', 'held')",
    );
    wait_until(WAIT, "the worker to hold bob's event", || held(&mut su));
    // PostgreSQL's own catalogs never make a DROP fail to serialize; pg_webhook's must not.
    exec(&mut dropper, "DROP TABLE ledger; COMMIT");
    held_from_bob(&rx, &mut su, &mut bob);
}

#[test]
fn a_schema_named_webhook_without_the_extension_does_not_break_drops() {
    let pg = Cluster::start(&["pg_webhook.database = 'elsewhere'"]);
    // pg_webhook is loaded (shared_preload_libraries) but not installed in this database, which
    // has tables that look like its own.
    let mut db = pg.connect("postgres");
    exec(
        &mut db,
        "CREATE SCHEMA webhook; CREATE TABLE webhook._owner_access (id int);
         CREATE TABLE scratch (id int); DROP TABLE scratch;
         CREATE TABLE kept (id int); DROP SCHEMA public CASCADE;",
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pg_class WHERE relname IN ('scratch', 'kept')"
        ),
        0
    );
}
