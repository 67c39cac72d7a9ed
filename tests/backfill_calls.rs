//! `webhook.backfill()` and `cancel_backfill()`: who may ask, and what is refused — bad calls,
//! with the reason and nothing started; others than the owner; an owner who may no longer read
//! the table, or whom row-level security binds; a second backfill while one runs, from two
//! sessions at once too; and a backfill whose subscription row was deleted by hand ends as
//! canceled. One scenario per test, against real clusters and receivers (what is sent:
//! backfill_rows.rs).

mod support;

use support::backfill::{state, wait_state};
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe, text, WAIT};

#[test]
fn bad_calls_are_refused_with_the_reason_and_start_nothing() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE logs (at timestamptz, line text);
         CREATE TABLE items (id int PRIMARY KEY, n int);
         INSERT INTO items SELECT g, g FROM generate_series(1, 6000) g;",
    );
    subscribe(&mut db, "logs", "logs", "http://127.0.0.1:9/", "");
    subscribe(&mut db, "items", "items", "http://127.0.0.1:9/", "");
    exec(&mut db, "SELECT webhook.pause('items')");
    let e = error_of(&mut db, "SELECT * FROM webhook.backfill('logs')");
    assert!(
        e.contains("table public.logs has no primary key, so it cannot be backfilled")
            && e.contains("ALTER TABLE public.logs ADD PRIMARY KEY"),
        "{e}"
    );
    let e = error_of(
        &mut db,
        "SELECT * FROM webhook.backfill('items', filter => 'nosuch > 1')",
    );
    assert!(
        e.contains("filter is not valid for a backfill of public.items")
            && e.contains("column \"nosuch\" does not exist"),
        "{e}"
    );
    let e = error_of(
        &mut db,
        "SELECT * FROM webhook.backfill('items', filter => 'n + 1')",
    );
    assert!(e.contains("must be type boolean"), "{e}");
    let e = error_of(&mut db, "SELECT * FROM webhook.backfill('nope')");
    assert!(e.contains("subscription \"nope\" does not exist"), "{e}");
    assert_eq!(count(&mut db, "SELECT count(*) FROM webhook.backfills"), 0);
    // One at a time. The subscription is paused, so the first stops short of the table's end
    // (it queues at most 5,000 events ahead of its receiver) and is still running.
    exec(&mut db, "SELECT * FROM webhook.backfill('items')");
    wait_until(WAIT, "the backfill to wait for its receiver", || {
        count(&mut db, "SELECT rows_sent FROM webhook.backfills") >= 5000
    });
    let e = error_of(&mut db, "SELECT * FROM webhook.backfill('items')");
    assert!(
        e.contains("a backfill of subscription \"items\" is already running")
            && e.contains("webhook.cancel_backfill('items')"),
        "{e}"
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM webhook.backfills"), 1);
    assert_eq!(state(&mut db, "items"), "running");
    let e = error_of(&mut db, "SELECT webhook.cancel_backfill('nope')");
    assert!(e.contains("subscription \"nope\" does not exist"), "{e}");
}

#[test]
fn only_the_owner_may_backfill_and_only_while_it_may_read_the_table() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(
        &mut db,
        "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
         GRANT webhook_admin TO alice, bob;
         CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'v' FROM generate_series(1, 6000) g;
         GRANT SELECT, TRIGGER ON t TO alice;",
    );
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(&mut alice, "alices", "t", &rx.url("/a"), "");
    // Bob may not read the table, so he does not see the subscription: he is told it does not
    // exist, as for an unused name (tests/who_sees_what.rs).
    let mut bob = pg.connect_as("postgres", "bob");
    let e = error_of(&mut bob, "SELECT * FROM webhook.backfill('alices')");
    assert!(e.contains("subscription \"alices\" does not exist"), "{e}");
    let e = error_of(&mut bob, "SELECT webhook.cancel_backfill('alices')");
    assert!(e.contains("subscription \"alices\" does not exist"), "{e}");
    // Carol may read it: she is refused as one who may not manage it.
    exec(
        &mut db,
        "CREATE ROLE carol LOGIN; GRANT webhook_admin TO carol; GRANT SELECT ON t TO carol;",
    );
    let e = error_of(
        &mut pg.connect_as("postgres", "carol"),
        "SELECT * FROM webhook.backfill('alices')",
    );
    assert!(
        e.contains("permission denied to backfill \"alices\": only its owner or a superuser may"),
        "{e}"
    );
    // Bob may not read the table, so he does not see the subscription's backfills either.
    exec(
        &mut alice,
        "SELECT webhook.pause('alices'); SELECT * FROM webhook.backfill('alices')",
    );
    assert_eq!(count(&mut bob, "SELECT count(*) FROM webhook.backfills"), 0);
    assert_eq!(
        count(&mut alice, "SELECT count(*) FROM webhook.backfills"),
        1
    );
    wait_until(WAIT, "the backfill to wait for its receiver", || {
        count(&mut db, "SELECT rows_sent FROM webhook.backfills") >= 5000
    });
    // Losing SELECT stops it with the reason, and nothing more is queued.
    exec(&mut db, "REVOKE SELECT ON t FROM alice");
    exec(
        &mut db,
        "DELETE FROM webhook._event_queue WHERE op = 'BACKFILL'",
    );
    wait_state(&mut db, "alices", "failed");
    let error = text(&mut db, "SELECT last_error FROM webhook.backfills").unwrap_or_default();
    assert!(
        error.contains("its owner alice may no longer read public.t (SELECT was revoked)"),
        "{error}"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_queue WHERE op = 'BACKFILL'"
        ),
        0
    );
    let e = error_of(&mut alice, "SELECT * FROM webhook.backfill('alices')");
    assert!(
        e.contains("cannot backfill \"alices\": its owner alice may no longer read public.t"),
        "{e}"
    );
}

#[test]
fn two_sessions_starting_a_backfill_at_once_get_one() {
    // No workers here: one could finish the first backfill (ten rows, one chunk) between its
    // commit and the second session's recheck, which may then rightly start another.
    let pg = Cluster::start(&["pg_webhook.database = 'elsewhere'"]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY);
         INSERT INTO t SELECT g FROM generate_series(1, 10) g;",
    );
    subscribe(&mut db, "t", "t", "http://127.0.0.1:9/", "");
    let mut first = pg.connect("postgres");
    exec(&mut first, "BEGIN; SELECT * FROM webhook.backfill('t')");
    let second = std::thread::scope(|s| {
        let waiting = s.spawn(|| {
            let mut c = pg.connect("postgres");
            exec(&mut c, "SET application_name = 'second'");
            error_of(&mut c, "SELECT * FROM webhook.backfill('t')")
        });
        wait_until(WAIT, "the second call to wait for the first", || {
            count(
                &mut db,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'second' AND wait_event_type = 'Lock'",
            ) == 1
        });
        exec(&mut first, "COMMIT");
        waiting.join().expect("the second session")
    });
    assert!(
        second.contains("a backfill of subscription \"t\" is already running"),
        "{second}"
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM webhook.backfills"), 1);
}

#[test]
fn a_table_whose_row_security_binds_the_owner_is_not_backfilled() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE ROLE alice LOGIN; GRANT webhook_admin TO alice;
         CREATE TABLE t (id int PRIMARY KEY, tenant text);
         INSERT INTO t SELECT g, 'a' FROM generate_series(1, 10) g;
         GRANT SELECT, TRIGGER ON t TO alice;",
    );
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(&mut alice, "alices", "t", "http://127.0.0.1:9/", "");
    // Policies now filter what alice reads: a backfill as alice would send only part of the
    // table, so it is refused.
    exec(&mut db, "ALTER TABLE t ENABLE ROW LEVEL SECURITY");
    let e = error_of(&mut alice, "SELECT * FROM webhook.backfill('alices')");
    assert!(
        e.contains("cannot backfill \"alices\": row-level security on public.t now applies to its owner alice"),
        "{e}"
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM webhook.backfills"), 0);
}

#[test]
fn a_backfill_whose_subscription_row_was_deleted_by_hand_ends_as_canceled() {
    // Its chunks found no subscription and stopped without ending it: it stayed `running` for
    // ever, a chunk tried in every round of every owner's runner.
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(
        &mut db,
        "CREATE TABLE items (id int PRIMARY KEY);
         INSERT INTO items SELECT generate_series(1, 6000);",
    );
    subscribe(&mut db, "items", "items", &rx.url("/i"), "");
    // Paused, its events stay queued: the backfill waits for them after the first 5,000.
    exec(&mut db, "SELECT webhook.pause('items')");
    exec(&mut db, "SELECT * FROM webhook.backfill('items')");
    wait_until(WAIT, "the backfill to wait for its receiver", || {
        count(&mut db, "SELECT rows_sent FROM webhook.backfills") >= 5000
    });
    exec(
        &mut db,
        "DELETE FROM webhook._subscriptions WHERE name = 'items'",
    );
    wait_until(WAIT, "the backfill to end", || {
        text(
            &mut db,
            "SELECT state || ': ' || last_error FROM webhook._backfills",
        )
        .as_deref()
            == Some("canceled: subscription 1 no longer exists (its row was deleted)")
    });
}
