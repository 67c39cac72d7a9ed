//! A subscription's callback bound again after a restore or `pg_upgrade` (see
//! src/queue/bindings.rs): to the function its owner chose, or to none, and never kept from
//! running by what a restore does in its own order. One scenario per test.

mod support;

use support::cluster::{install_released_script, wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, subscribe, text, WAIT};

#[test]
fn a_callback_dropped_before_the_update_from_0_2_0_stops_no_delivery_of_a_restored_copy() {
    install_released_script("0.1.0");
    install_released_script("0.2.0");
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    exec(&mut pg.connect("postgres"), "CREATE DATABASE original");
    let mut db = pg.connect("original");
    exec(
        &mut db,
        "CREATE EXTENSION pg_webhook VERSION '0.2.0';
         CREATE TABLE t (id int PRIMARY KEY);
         CREATE FUNCTION public.gone(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';",
    );
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", callback => 'public.gone(jsonb)'",
    );
    // Dropped under 0.2.0: the update keeps the callback as the function's OID, in text.
    exec(
        &mut db,
        "DROP FUNCTION public.gone(jsonb); ALTER EXTENSION pg_webhook UPDATE",
    );
    pg.restore_copy("original", "copy");
    let mut copy = pg.connect("copy");
    exec(&mut copy, "INSERT INTO t VALUES (1)");
    wait_until(WAIT, "the copy's event delivered", || {
        rx.accepted_ids().contains(&1)
    });
}

#[test]
fn a_restored_callback_is_not_bound_to_a_function_another_role_made_under_its_name() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    exec(&mut pg.connect("postgres"), "CREATE DATABASE original");
    let mut db = pg.connect("original");
    exec(
        &mut db,
        "CREATE EXTENSION pg_webhook;
         CREATE ROLE mallory LOGIN;
         CREATE SCHEMA app;
         GRANT USAGE, CREATE ON SCHEMA app TO mallory;
         CREATE TABLE t (id int PRIMARY KEY);
         CREATE TABLE called (who text);
         CREATE FUNCTION app.cb(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';",
    );
    // The superuser's subscription, whose callback it made.
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", callback => 'app.cb(jsonb)'",
    );
    // Its function dropped, a role that may create functions in its schema makes one of the
    // same signature (nothing calls it in this database: the callback is bound by OID).
    exec(
        &mut db,
        "DROP FUNCTION app.cb(jsonb);
         SET ROLE mallory;
         CREATE FUNCTION app.cb(e jsonb) RETURNS void LANGUAGE sql
             AS $$ INSERT INTO public.called VALUES (current_user) $$;
         RESET ROLE;",
    );
    pg.restore_copy("original", "copy");
    let mut copy = pg.connect("copy");
    exec(&mut copy, "INSERT INTO t VALUES (1)");
    wait_until(WAIT, "row 1's callback to fail or run", || {
        count(
            &mut copy,
            "SELECT count(*) FROM webhook.events
              WHERE record->>'id' = '1' AND callback_error IS NOT NULL",
        ) + count(&mut copy, "SELECT count(*) FROM called")
            > 0
    });
    assert_eq!(
        text(&mut copy, "SELECT string_agg(who, ',') FROM called"),
        None,
        "mallory's function ran as the subscription's owner"
    );
    assert!(
        pg.log().contains("no function app.cb(pg_catalog.jsonb)"),
        "{}",
        pg.log()
    );
}

#[test]
fn a_callback_missing_from_a_restore_fails_naming_its_signature() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    exec(&mut pg.connect("postgres"), "CREATE DATABASE original");
    let mut db = pg.connect("original");
    exec(
        &mut db,
        "CREATE EXTENSION pg_webhook;
         CREATE SCHEMA app;
         CREATE TABLE t (id int PRIMARY KEY);
         CREATE FUNCTION app.cb(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';",
    );
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", callback => 'app.cb(jsonb)'",
    );
    // Dropped before the dump: the copy has the signature and no function of it, and binds the
    // callback to none (OID 0).
    exec(&mut db, "DROP FUNCTION app.cb(jsonb)");
    pg.restore_copy("original", "copy");
    let mut copy = pg.connect("copy");
    assert_eq!(
        first_row_s_callback_error(&mut copy).as_deref(),
        Some(
            "the callback function app.cb(pg_catalog.jsonb) no longer exists in this database \
             (dropped, or not restored with the subscription); set another with a new subscription"
        )
    );
    assert_eq!(
        text(
            &mut copy,
            "SELECT callback_oid::text FROM webhook._subscriptions"
        )
        .as_deref(),
        Some("0")
    );
}

/// Dropped and made again under its name: the subscription stays bound to the function it
/// was made with (whoever may create functions in the schema could have made the new one) and
/// its callbacks fail saying a function of that signature is there but is not the one.
#[test]
fn a_callback_made_again_under_its_name_is_not_called_and_its_failure_says_why() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    let function = "CREATE FUNCTION public.cb(e jsonb) RETURNS void LANGUAGE sql
                    AS $$ INSERT INTO public.called VALUES ((e->'record'->>'id')::int) $$;";
    exec(
        &mut db,
        &format!("CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE called (id int); {function}"),
    );
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", callback => 'public.cb(jsonb)'",
    );
    exec(
        &mut db,
        &format!("DROP FUNCTION public.cb(jsonb); {function}"),
    );
    assert_eq!(
        first_row_s_callback_error(&mut db).as_deref(),
        Some(
            "the callback function public.cb(pg_catalog.jsonb) the subscription was made with no \
             longer exists in this database; a function of that signature exists now, but it is \
             another one (made again, or restored under another owner) and is not called in its \
             place; set it with a new subscription"
        )
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM called"), 0);
}

#[test]
fn a_callback_restored_before_the_grants_its_owner_needs_runs_once_they_are_restored() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    exec(&mut pg.connect("postgres"), "CREATE DATABASE original");
    let mut db = pg.connect("original");
    exec(
        &mut db,
        "CREATE EXTENSION pg_webhook;
         CREATE ROLE alice;
         GRANT webhook_admin TO alice;
         CREATE SCHEMA app;
         GRANT USAGE ON SCHEMA app TO alice;
         CREATE TABLE t (id int PRIMARY KEY);
         GRANT SELECT, TRIGGER ON t TO alice;
         CREATE TABLE called (id int);
         GRANT INSERT ON called TO alice;
         CREATE FUNCTION app.noted(e jsonb) RETURNS void LANGUAGE sql
             AS $$ INSERT INTO public.called VALUES ((e->'record'->>'id')::int) $$;
         SET ROLE alice;",
    );
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", callback => 'app.noted(jsonb)'",
    );
    let dump = pg.dir.join("original.dump");
    let dump = dump.to_str().unwrap();
    pg.tool("pg_dump", &["-Fc", "-d", "original", "-f", dump]);
    // pg_restore restores privileges last, after the data and the indexes, constraints and
    // triggers: a worker loading the subscriptions meanwhile finds alice may not use app yet.
    let list = pg.tool("pg_restore", &["-l", dump]);
    let (acls, rest): (Vec<&str>, Vec<&str>) = list.lines().partition(|l| l.contains(" ACL "));
    let write = |name: &str, lines: &[&str]| {
        let path = pg.dir.join(name);
        std::fs::write(&path, lines.join("\n")).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (acls, rest) = (write("acls.list", &acls), write("rest.list", &rest));
    exec(&mut pg.connect("postgres"), "CREATE DATABASE copy");
    pg.tool(
        "pg_restore",
        &["--exit-on-error", "-d", "copy", "-L", &rest, dump],
    );
    let mut copy = pg.connect("copy");
    wait_until(WAIT, "the worker to bind the callback in the copy", || {
        count(
            &mut copy,
            "SELECT count(*) FROM webhook._subscriptions
              WHERE callback_bound_in = webhook._binding_key()",
        ) == 1
    });
    pg.tool(
        "pg_restore",
        &["--exit-on-error", "-d", "copy", "-L", &acls, dump],
    );
    // (Found unable to read t meanwhile, the subscription waits to be resumed.)
    resume_and_expect_the_callback(&mut copy);
}

#[test]
fn a_callback_restored_with_no_owner_is_bound_to_the_restoring_superusers_function() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    exec(&mut pg.connect("postgres"), "CREATE DATABASE original");
    let mut db = pg.connect("original");
    exec(
        &mut db,
        "CREATE EXTENSION pg_webhook;
         CREATE ROLE alice;
         GRANT webhook_admin TO alice;
         CREATE SCHEMA app;
         GRANT USAGE, CREATE ON SCHEMA app TO alice;
         CREATE TABLE t (id int PRIMARY KEY);
         GRANT SELECT, TRIGGER ON t TO alice;
         CREATE TABLE called (id int);
         GRANT INSERT ON called TO alice;
         SET ROLE alice;
         CREATE FUNCTION app.noted(e jsonb) RETURNS void LANGUAGE sql
             AS $$ INSERT INTO public.called VALUES ((e->'record'->>'id')::int) $$;",
    );
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", callback => 'app.noted(jsonb)'",
    );
    // Restored with --no-owner (as into a managed service): the superuser restoring owns
    // every object, alice's callback among them.
    let dump = pg.dir.join("original.dump");
    let dump = dump.to_str().unwrap();
    pg.tool("pg_dump", &["-Fc", "-d", "original", "-f", dump]);
    exec(&mut pg.connect("postgres"), "CREATE DATABASE copy");
    pg.tool(
        "pg_restore",
        &["--exit-on-error", "--no-owner", "-d", "copy", dump],
    );
    let mut copy = pg.connect("copy");
    assert_eq!(
        text(
            &mut copy,
            "SELECT proowner::regrole::text FROM pg_proc WHERE proname = 'noted'"
        )
        .as_deref(),
        Some("postgres")
    );
    // (Found unable to read t before pg_restore's grants, the subscription may wait to be
    // resumed.)
    resume_and_expect_the_callback(&mut copy);
}

#[test]
fn a_renamed_callback_of_a_subscription_held_in_a_transaction_holds_up_no_other_delivery() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE a (id int PRIMARY KEY);
         CREATE TABLE b (id int PRIMARY KEY);
         CREATE FUNCTION public.noted(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';",
    );
    subscribe(
        &mut db,
        "a",
        "a",
        &rx.url("/a"),
        ", callback => 'public.noted(jsonb)'",
    );
    subscribe(&mut db, "b", "b", &rx.url("/b"), "");
    // A session pauses a and keeps its transaction open (its row stays locked) ...
    let mut holder = pg.connect("postgres");
    exec(&mut holder, "BEGIN; SELECT webhook.pause('a')");
    // ... while a's callback is renamed: the worker's next load follows the rename.
    exec(
        &mut db,
        "ALTER FUNCTION public.noted(jsonb) RENAME TO noted_again; INSERT INTO b VALUES (1)",
    );
    wait_until(WAIT, "b's event delivered", || {
        rx.accepted_ids().contains(&1)
    });
    exec(&mut holder, "COMMIT");
    wait_until(WAIT, "the signature to follow the rename", || {
        text(
            &mut db,
            "SELECT callback FROM webhook.subscriptions WHERE name = 'a'",
        )
        .as_deref()
            == Some("public.noted_again(pg_catalog.jsonb)")
    });
}

#[test]
fn rebinding_reads_the_same_without_standard_conforming_strings() {
    let pg = Cluster::start(&[
        "pg_webhook.poll_interval = '100ms'",
        "standard_conforming_strings = off",
    ]);
    let rx = Receiver::start();
    exec(&mut pg.connect("postgres"), "CREATE DATABASE original");
    let mut db = pg.connect("original");
    exec(
        &mut db,
        "CREATE EXTENSION pg_webhook;
         CREATE TABLE t (id int PRIMARY KEY);
         CREATE FUNCTION public.noted(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';",
    );
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", callback => 'public.noted(jsonb)'",
    );
    pg.restore_copy("original", "copy");
    wait_until(WAIT, "the copy's callback bound again", || {
        pg.log()
            .contains("bound again to public.noted(pg_catalog.jsonb)")
    });
    // (A client's statement may warn; the worker's own must not, nor fail.)
    let log = pg.log();
    let worker = |l: &&str| l.contains("pg_webhook WARNING");
    let bad: Vec<&str> = log.lines().filter(worker).collect();
    assert!(bad.is_empty(), "the worker warned: {bad:?}");
}

/// Resumes `t` in `copy`, writes row 1 and checks its callback ran, once, without an error.
fn resume_and_expect_the_callback(copy: &mut postgres::Client) {
    exec(copy, "SELECT webhook.resume('t'); INSERT INTO t VALUES (1)");
    wait_until(WAIT, "row 1's callback to run or fail", || {
        count(
            copy,
            "SELECT count(*) FROM webhook.events WHERE callback_error IS NOT NULL",
        ) + count(copy, "SELECT count(*) FROM called")
            > 0
    });
    assert_eq!(
        text(
            copy,
            "SELECT string_agg(callback_error, '; ') FROM webhook.events"
        ),
        None
    );
    assert_eq!(count(copy, "SELECT count(*) FROM called"), 1);
}

/// Inserts row 1 and waits for its callback to fail: the failure.
fn first_row_s_callback_error(db: &mut postgres::Client) -> Option<String> {
    exec(db, "INSERT INTO t VALUES (1)");
    wait_until(WAIT, "row 1's callback to fail", || {
        count(
            db,
            "SELECT count(*) FROM webhook.events WHERE callback_error IS NOT NULL",
        ) > 0
    });
    text(db, "SELECT callback_error FROM webhook.events")
}
