//! An owner who may no longer read a subscribed table — SELECT revoked, USAGE on its schema
//! revoked, row-level security come to bind them — keeps nothing of its rows: the events are
//! held, the rows they carry are not shown to them, no filter can write down what it sees, and
//! none runs on the rows written since.
//! One scenario per test; each fails on a pg_webhook that lets them read on. (Drops of such a
//! table: tests/access_at_drop.rs.)

mod support;

use support::bob::{bob_reads_ledger, secrets_seen};
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe, text, WAIT};

#[test]
fn an_owner_who_may_no_longer_read_the_table_sees_its_events_without_their_rows() {
    // No worker: the events stay queued, as a disabled subscription's are.
    let pg = Cluster::start(&["pg_webhook.database = 'elsewhere'"]);
    let mut su = pg.client_with_extension();
    bob_reads_ledger(&mut su);
    let mut bob = pg.connect_as("postgres", "bob");
    subscribe(&mut bob, "bobs", "ledger", "http://127.0.0.1:9/bob", "");
    exec(&mut su, "INSERT INTO ledger VALUES (1, 'b', 'readable')");
    assert_eq!(secrets_seen(&mut bob), vec![Some("readable".to_string())]);
    // Row-level security binds bob: he may read tenant 'b' only, so no row is shown to him.
    exec(
        &mut su,
        "ALTER TABLE ledger ENABLE ROW LEVEL SECURITY;
         CREATE POLICY only_b ON ledger FOR SELECT TO bob USING (tenant = 'b');
         INSERT INTO ledger VALUES (2, 'a', 'hidden-by-policy');",
    );
    assert_eq!(
        count(&mut bob, "SELECT count(*) FROM ledger"),
        1,
        "the policy hides tenant a's row from bob"
    );
    assert_eq!(secrets_seen(&mut bob), vec![None, None]);
    // SELECT revoked outright: the same.
    exec(
        &mut su,
        "ALTER TABLE ledger DISABLE ROW LEVEL SECURITY;
         REVOKE SELECT ON ledger FROM bob;
         INSERT INTO ledger VALUES (3, 'a', 'after-revoke');",
    );
    let e = error_of(&mut bob, "SELECT * FROM ledger");
    assert!(e.contains("permission denied"), "{e}");
    assert_eq!(secrets_seen(&mut bob), vec![None, None, None]);
    assert_eq!(
        count(
            &mut bob,
            "SELECT count(*) FROM webhook.events WHERE old_record IS NOT NULL"
        ),
        0
    );
    // A superuser sees every row; bob again once he may read the table.
    let all = vec![
        Some("readable".to_string()),
        Some("hidden-by-policy".to_string()),
        Some("after-revoke".to_string()),
    ];
    assert_eq!(secrets_seen(&mut su), all);
    exec(&mut su, "GRANT SELECT ON ledger TO bob");
    assert_eq!(secrets_seen(&mut bob), all);
}

#[test]
fn revoking_usage_on_the_tables_schema_holds_the_subscriptions_events() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE bob LOGIN; GRANT webhook_admin TO bob;
         CREATE SCHEMA app; GRANT USAGE ON SCHEMA app TO bob;
         CREATE TABLE app.ledger (id int PRIMARY KEY, secret text);
         GRANT SELECT, TRIGGER ON app.ledger TO bob;
         CREATE TABLE marker (id int PRIMARY KEY);",
    );
    let mut bob = pg.connect_as("postgres", "bob");
    subscribe(&mut bob, "bobs", "app.ledger", &rx.url("/bob"), "");
    subscribe(&mut su, "markers", "marker", &rx.url("/marker"), "");
    exec(&mut su, "INSERT INTO app.ledger VALUES (1, 'before')");
    rx.wait_for(1, WAIT);
    // The usual way to cut a role off a whole schema.
    exec(
        &mut su,
        "REVOKE USAGE ON SCHEMA app FROM bob;
         INSERT INTO app.ledger VALUES (2, 'after-usage-revoked');
         INSERT INTO marker VALUES (1);",
    );
    let e = error_of(&mut bob, "SELECT * FROM app.ledger");
    assert!(e.contains("permission denied for schema app"), "{e}");
    wait_until(
        WAIT,
        "the subscription to be disabled with the reason",
        || {
            text(
            &mut su,
            "SELECT status || ': ' || COALESCE(status_reason, '')
               FROM webhook.subscriptions WHERE name = 'bobs'",
        )
        .is_some_and(|s| {
            s.starts_with(
                "disabled: its owner bob may no longer read app.ledger (USAGE on schema app was revoked)",
            )
        })
        },
    );
    wait_until(WAIT, "the marker", || {
        rx.requests().iter().any(|r| r.path == "/marker")
    });
    wait_until(WAIT, "bob's new event to be parked", || {
        count(
            &mut su,
            "SELECT count(*) FROM webhook.events WHERE status = 'parked'",
        ) == 1
    });
    let sent: Vec<String> = rx
        .requests()
        .iter()
        .filter(|r| r.path == "/bob")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    // USAGE back, resumed: the held event goes out.
    exec(
        &mut su,
        "GRANT USAGE ON SCHEMA app TO bob; SELECT webhook.resume('bobs')",
    );
    wait_until(WAIT, "the held event", || {
        rx.requests()
            .iter()
            .any(|r| r.path == "/bob" && String::from_utf8_lossy(&r.body).contains("after-usage"))
    });
}

#[test]
fn a_filter_cannot_write_down_the_rows_it_sees() {
    let pg = Cluster::start(&["pg_webhook.database = 'elsewhere'"]);
    let mut su = pg.client_with_extension();
    bob_reads_ledger(&mut su);
    let mut bob = pg.connect_as("postgres", "bob");
    // A sequence keeps what is written to it whether its transaction commits or not.
    exec(
        &mut bob,
        "CREATE SEQUENCE public.loot;
         CREATE FUNCTION public.keep(s text) RETURNS boolean LANGUAGE sql AS
           $$ SELECT pg_catalog.setval('public.loot', pg_catalog.length(s)) > 0 $$;",
    );
    subscribe(
        &mut bob,
        "bobs",
        "ledger",
        "http://127.0.0.1:9/bob",
        ", events => ARRAY['insert'], filter => $$public.keep(NEW.secret)$$",
    );
    // The filter runs read-only: its write fails the statement, with the subscription named.
    let e = error_of(
        &mut su,
        "INSERT INTO ledger VALUES (1, 'a', 'twenty-one characters')",
    );
    assert!(
        e.contains("pg_webhook subscription \"bobs\"") && e.contains("read-only transaction"),
        "{e}"
    );
    assert_eq!(
        count(&mut bob, "SELECT last_value FROM public.loot"),
        1,
        "bob's filter wrote down what it saw"
    );
}

#[test]
fn a_filter_runs_on_no_row_once_its_owner_may_no_longer_read_the_table() {
    // Capture ran bob's filter on every new row after SELECT was revoked from him (the worker
    // held the events): a session-level advisory lock keyed by the row's secret, left in the
    // writer's session, told him each one through pg_locks.
    let pg = Cluster::start(&["pg_webhook.database = 'elsewhere'"]);
    let mut su = pg.client_with_extension();
    bob_reads_ledger(&mut su);
    let mut bob = pg.connect_as("postgres", "bob");
    exec(
        &mut bob,
        "CREATE FUNCTION public.peek(s text) RETURNS boolean LANGUAGE sql AS
           $$ SELECT pg_catalog.pg_try_advisory_lock(4242, pg_catalog.length(s)) $$;",
    );
    subscribe(
        &mut bob,
        "bobs",
        "ledger",
        "http://127.0.0.1:9/bob",
        ", events => ARRAY['insert'], filter => $$public.peek(NEW.secret)$$",
    );
    let locks = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 4242";
    // While bob may read the table his filter runs (and its lock stays: see the README).
    exec(&mut su, "INSERT INTO ledger VALUES (1, 'b', 'readable')");
    assert_eq!(count(&mut bob, locks), 1);
    exec(
        &mut su,
        "REVOKE SELECT ON ledger FROM bob;
         INSERT INTO ledger VALUES (2, 'a', 'twenty-one characters');",
    );
    assert_eq!(count(&mut bob, locks), 1, "bob's filter saw row 2");
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM webhook._event_queue"),
        1,
        "row 2 made no event"
    );
}

#[test]
fn a_column_list_alone_keeps_capturing_while_its_owner_may_not_read_the_table() {
    // Only a filter or payload is the owner's SQL: a subscription that only picks columns
    // queues its rows, held as a plain one's, and they go once the owner may read again.
    let pg = Cluster::start(&["pg_webhook.database = 'elsewhere'"]);
    let mut su = pg.client_with_extension();
    bob_reads_ledger(&mut su);
    let mut bob = pg.connect_as("postgres", "bob");
    subscribe(
        &mut bob,
        "bobs",
        "ledger",
        "http://127.0.0.1:9/bob",
        ", columns => ARRAY['id', 'secret']",
    );
    exec(
        &mut su,
        "REVOKE SELECT ON ledger FROM bob;
         INSERT INTO ledger VALUES (1, 'a', 'written while revoked');",
    );
    assert_eq!(
        text(
            &mut su,
            "SELECT record->>'secret' FROM webhook._event_queue"
        ),
        Some("written while revoked".to_string())
    );
}
