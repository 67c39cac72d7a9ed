//! An owner who may no longer read a subscribed table — SELECT revoked, USAGE on its schema
//! revoked, row-level security come to bind them — keeps nothing of its rows: the events are
//! held, the rows they carry are not shown to them, and no filter can write down what it sees.
//! One scenario per test; each fails on a pg_webhook that lets them read on.

mod support;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe, text, WAIT};

/// The table bob subscribes.
const LEDGER: &str = "CREATE TABLE ledger (id int PRIMARY KEY, tenant text, secret text)";

/// bob, a webhook_admin member who may read `ledger` and attach triggers to it.
fn bob_reads_ledger(su: &mut postgres::Client) {
    bob_reads(su, LEDGER);
}

/// bob, a webhook_admin member who may read `ledger`, made by `ledger_ddl`, and attach
/// triggers to it.
fn bob_reads(su: &mut postgres::Client, ledger_ddl: &str) {
    exec(
        su,
        &format!(
            "CREATE ROLE bob LOGIN; GRANT webhook_admin TO bob;
             GRANT CREATE ON SCHEMA public TO bob;
             {ledger_ddl};
             GRANT SELECT, TRIGGER ON ledger TO bob;"
        ),
    );
}

/// The `secret` of each of `who`'s visible events, in id order (NULL where the row is not
/// shown).
fn secrets_seen(who: &mut postgres::Client) -> Vec<Option<String>> {
    who.query(
        "SELECT record->>'secret' FROM webhook.events ORDER BY id",
        &[],
    )
    .expect("reading webhook.events")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// A cluster (with `conf`) where bob has subscribed `ledger` (made by `ledger_ddl`) to a
/// receiver of its own.
fn bob_subscribed(
    conf: &[&str],
    ledger_ddl: &str,
) -> (Cluster, Receiver, postgres::Client, postgres::Client) {
    let pg = Cluster::start(conf);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    bob_reads(&mut su, ledger_ddl);
    let mut bob = pg.connect_as("postgres", "bob");
    subscribe(&mut bob, "bobs", "ledger", &rx.url("/bob"), "");
    (pg, rx, su, bob)
}

/// bob subscribes `ledger`, then loses SELECT, and a row is written.
fn revoked_after_subscribing() -> (Cluster, Receiver, postgres::Client, postgres::Client) {
    let (pg, rx, mut su, bob) = bob_subscribed(&["pg_webhook.poll_interval = '100ms'"], LEDGER);
    exec(
        &mut su,
        "REVOKE SELECT ON ledger FROM bob;
         INSERT INTO ledger VALUES (1, 'a', 'held');",
    );
    (pg, rx, su, bob)
}

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
         CREATE FUNCTION public.keep(s text) RETURNS boolean LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_catalog.setval('public.loot', pg_catalog.length(s)); RETURN true; END $$;",
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
fn events_held_from_an_owner_stay_held_when_the_table_is_dropped() {
    let (_pg, rx, mut su, mut bob) = revoked_after_subscribing();
    wait_until(WAIT, "bob's event to be held", || held(&mut su));
    // Dropping the table ends the subscription and gives back its parked events; with no ACL
    // left to ask, they must not go to bob now, nor show him their rows.
    exec(&mut su, "DROP TABLE ledger");
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM webhook.events WHERE table_name = 'ledger' AND status = 'pending'",
        ),
        1,
        "the drop gave the event back"
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

/// Whether bob's one event is parked (held), not sent.
fn held(su: &mut postgres::Client) -> bool {
    count(
        su,
        "SELECT count(*) FROM webhook.events WHERE table_name = 'ledger' AND status = 'parked'",
    ) == 1
}

/// Waits for the worker to hold bob's event, then checks that neither his receiver nor he saw
/// its row.
fn held_from_bob(rx: &Receiver, su: &mut postgres::Client, bob: &mut postgres::Client) {
    wait_until(WAIT, "the worker to hold bob's event", || held(su));
    assert!(
        rx.requests().iter().all(|r| r.path != "/bob"),
        "a row bob lost access to went to him"
    );
    assert_eq!(secrets_seen(bob), vec![None]);
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
    exec(&mut su, "ALTER SYSTEM SET pg_webhook.database = 'postgres'");
    exec(&mut su, "SELECT pg_reload_conf()");
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
    exec(&mut su, "ALTER SYSTEM SET pg_webhook.database = 'postgres'");
    exec(&mut su, "SELECT pg_reload_conf()");
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
