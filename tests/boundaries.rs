//! The boundaries the second outside review probed: what a role, a writer's session or one row
//! cannot do to pg_webhook or to others. One scenario per test; each fails on a pg_webhook that
//! lets it through.

mod support;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe, text, WAIT};

#[test]
fn no_sql_session_can_take_an_ordered_subscriptions_lock() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    let (id, _) = subscribe(&mut db, "t", "t", &rx.url("/t"), ", ordered => true");
    // Every form of advisory lock SQL offers, on the numbers pg_locks shows for the order lock.
    let mut squatter = pg.connect("postgres");
    exec(
        &mut squatter,
        &format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock(1885828968, {id});
             SELECT pg_advisory_xact_lock((1885828968::bigint << 32) | {id});"
        ),
    );
    exec(
        &mut db,
        "SET lock_timeout = '3s'; INSERT INTO t VALUES (1); RESET lock_timeout;",
    );
    wait_until(WAIT, "the ordered event", || rx.accepted_ids() == vec![1]);
    exec(&mut squatter, "COMMIT");
}

#[test]
fn a_writer_with_an_old_snapshot_still_captures_for_a_subscription_made_after_it() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    let mut writer = pg.connect("postgres");
    // The writer's snapshot is taken before the subscription exists.
    exec(
        &mut writer,
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM t;",
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(&mut writer, "INSERT INTO t VALUES (7); COMMIT;");
    wait_until(WAIT, "the old-snapshot writer's row", || {
        rx.accepted_ids() == vec![7]
    });
}

#[test]
fn the_events_of_a_table_under_row_level_security_are_hidden_from_those_its_policies_bind() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE reader LOGIN; GRANT webhook_admin TO reader;
         CREATE TABLE secrets (id int PRIMARY KEY, owner text);
         ALTER TABLE secrets ENABLE ROW LEVEL SECURITY;
         CREATE POLICY mine ON secrets USING (owner = current_user);
         GRANT SELECT ON secrets TO reader;
         CREATE SCHEMA hidden; CREATE TABLE hidden.t (id int PRIMARY KEY);
         GRANT SELECT ON hidden.t TO reader;",
    );
    subscribe(&mut su, "secrets", "secrets", &rx.url("/s"), "");
    subscribe(&mut su, "hidden", "hidden.t", &rx.url("/h"), "");
    exec(
        &mut su,
        "INSERT INTO secrets VALUES (1, 'postgres'); INSERT INTO hidden.t VALUES (2);",
    );
    wait_until(WAIT, "both events delivered", || {
        rx.accepted_ids().len() == 2
    });
    assert_eq!(count(&mut su, "SELECT count(*) FROM webhook.events"), 2);
    let mut reader = pg.connect_as("postgres", "reader");
    assert_eq!(
        count(&mut reader, "SELECT count(*) FROM secrets"),
        0,
        "the policy hides the row from reader"
    );
    for view in ["webhook.events", "webhook.attempts"] {
        assert_eq!(
            count(&mut reader, &format!("SELECT count(*) FROM {view}")),
            0,
            "{view} shows reader rows the policy or the schema hides"
        );
    }
}

#[test]
fn subscribing_needs_usage_on_the_tables_schema() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE carol LOGIN; GRANT webhook_admin TO carol;
         CREATE SCHEMA locked; CREATE TABLE locked.t (id int PRIMARY KEY);
         GRANT SELECT, TRIGGER ON locked.t TO carol;",
    );
    // Naming the table needs USAGE (PostgreSQL checks that); its OID does not.
    let oid = count(&mut su, "SELECT 'locked.t'::regclass::oid::bigint");
    let mut carol = pg.connect_as("postgres", "carol");
    let e = error_of(
        &mut carol,
        &format!(
            "SELECT webhook.subscribe(name => 'x', target => {oid}::oid::regclass, url => '{}')",
            rx.url("/x")
        ),
    );
    assert!(
        e.contains("you need USAGE on its schema") && e.contains("GRANT USAGE ON SCHEMA"),
        "{e}"
    );
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM webhook.subscriptions"),
        0
    );
}

#[test]
fn table_inheritance_is_refused_on_both_sides_of_a_subscription() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE parent (id int); CREATE TABLE child () INHERITS (parent);
         CREATE TABLE solo (id int);",
    );
    let e = error_of(
        &mut db,
        &format!(
            "SELECT webhook.subscribe(name => 'p', target => 'parent'::regclass, url => '{}')",
            rx.url("/p")
        ),
    );
    assert!(e.contains("inheritance"), "{e}");
    subscribe(&mut db, "solo", "solo", &rx.url("/solo"), "");
    let e = error_of(&mut db, "CREATE TABLE heir () INHERITS (solo)");
    assert!(
        e.contains("cannot get the inheritance child") && e.contains("unsubscribe"),
        "{e}"
    );
    let e = error_of(&mut db, "ALTER TABLE solo INHERIT parent");
    assert!(
        e.contains("cannot become a partition or inheritance child"),
        "{e}"
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'solo'::regclass OR inhrelid = 'solo'::regclass"),
        0
    );
}

#[test]
fn a_repeatable_read_attach_cannot_make_a_table_subscribed_after_its_snapshot_a_partition() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE parent (id int) PARTITION BY RANGE (id);
         CREATE TABLE orders (id int);",
    );
    // The ATTACH's transaction takes its snapshot before orders is subscribed.
    let mut ddl = pg.connect("postgres");
    exec(
        &mut ddl,
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class",
    );
    subscribe(&mut db, "orders", "orders", &rx.url("/orders"), "");
    let e = error_of(
        &mut ddl,
        "ALTER TABLE parent ATTACH PARTITION orders FOR VALUES FROM (0) TO (10)",
    );
    assert!(
        e.contains("cannot become a partition or inheritance child"),
        "{e}"
    );
}

#[test]
fn a_writers_output_settings_do_not_change_what_is_sent() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY, f float8, b bytea, i interval)",
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(
        &mut db,
        "SET extra_float_digits = 3; SET bytea_output = 'escape'; SET IntervalStyle = 'sql_standard';
         INSERT INTO t VALUES (1, 0.1, '\\x41', '1 day 2 hours');
         RESET extra_float_digits; RESET bytea_output; RESET IntervalStyle;
         INSERT INTO t VALUES (2, 0.1, '\\x41', '1 day 2 hours');",
    );
    wait_until(WAIT, "both rows", || rx.accepted_ids().len() == 2);
    let records: Vec<serde_json::Value> = rx
        .accepted()
        .iter()
        .map(|r| r.json()["record"].clone())
        .collect();
    for record in &records {
        assert_eq!(record["f"], serde_json::json!(0.1), "{record}");
        assert_eq!(record["b"], "\\x41", "{record}");
        assert_eq!(record["i"], "1 day 02:00:00", "{record}");
    }
}

#[test]
fn a_row_too_large_to_ever_send_dies_unread_and_holds_up_nothing() {
    let pg = Cluster::start(&["pg_webhook.max_payload_bytes = '1kB'"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY, body text)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), ", ordered => true");
    // About 64 kB of random hex: stored compressed it is still far over 4 x 1 kB.
    exec(
        &mut db,
        "INSERT INTO t SELECT 1, string_agg(md5(random()::text), '') FROM generate_series(1, 2000);
         INSERT INTO t VALUES (2, 'small');",
    );
    wait_until(WAIT, "the small row after the huge one", || {
        rx.accepted_ids() == vec![2]
    });
    let error = text(
        &mut db,
        "SELECT last_error FROM webhook.events WHERE id = (SELECT min(id) FROM webhook.events)",
    )
    .unwrap_or_default();
    assert!(
        error.contains("too large to send") && error.contains("left unread"),
        "{error}"
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT status FROM webhook.events WHERE id = (SELECT min(id) FROM webhook.events)"
        )
        .as_deref(),
        Some("dead")
    );
}

#[test]
fn a_cancelled_wait_for_an_order_lock_is_an_error_not_a_crash() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), ", ordered => true");
    let mut first = pg.connect("postgres");
    exec(&mut first, "BEGIN; INSERT INTO t VALUES (1);");
    let mut second = pg.connect("postgres");
    let e = error_of(
        &mut second,
        "SET lock_timeout = '300ms'; INSERT INTO t VALUES (2);",
    );
    assert!(e.contains("lock timeout"), "{e}");
    // The session (and the server) carry on.
    exec(&mut second, "RESET lock_timeout");
    exec(&mut first, "COMMIT");
    exec(&mut second, "INSERT INTO t VALUES (2)");
    wait_until(WAIT, "both events", || rx.accepted_ids() == vec![1, 2]);
    assert!(
        !pg.log().contains("terminated by signal"),
        "a backend crashed:\n{}",
        pg.log()
    );
}

/// An event id sequence at its end (set there by hand) makes capture fail the statement with
/// an error that names the sequence, not crash the server; the next block of ids works again.
#[test]
fn an_exhausted_event_id_sequence_fails_the_write_with_an_error() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    // The next nextval returns 2^63 - 11: a block of 1024 ids from there runs past 2^63 - 1.
    exec(
        &mut db,
        "SELECT setval('webhook._event_id_seq', 9223372036854775807 - 1034)",
    );
    assert_eq!(
        error_of(&mut db, "INSERT INTO t VALUES (1)"),
        "pg_webhook: the event id sequence webhook._event_id_seq is exhausted: it returned \
         9223372036854775797, and capture takes ids 1024 at a time up to 9223372036854775807"
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM t"), 0);
    exec(&mut db, "SELECT setval('webhook._event_id_seq', 1000000)");
    exec(&mut db, "INSERT INTO t VALUES (2)");
    wait_until(WAIT, "the event after the reset", || {
        rx.accepted_ids() == vec![2]
    });
}
