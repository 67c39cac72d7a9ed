//! `pg_upgrade` into a new cluster: what was queued goes out from the new one, under the same
//! webhook-ids, and capture goes on. One scenario per test.

mod support;

use support::cluster::{install_released_script, wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, subscribe, text, WAIT};

/// The webhook-id prefix (`msg_<uid>_`) of the requests `rx` took.
fn prefixes(rx: &Receiver) -> Vec<String> {
    let mut all: Vec<String> = rx
        .accepted()
        .iter()
        .map(|r| {
            let id = r.id();
            id.rsplit_once('_')
                .map_or(id.clone(), |(p, _)| p.to_string())
        })
        .collect();
    all.dedup();
    all
}

#[test]
fn events_queued_before_pg_upgrade_go_out_from_the_new_cluster_under_the_same_ids() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(&mut db, "INSERT INTO t VALUES (1)");
    wait_until(WAIT, "row 1 delivered and recorded", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 1
    });
    // Paused: 2 and 3 stay queued through the upgrade.
    exec(
        &mut db,
        "SELECT webhook.pause('t'); INSERT INTO t VALUES (2), (3)",
    );
    drop(db);
    let new = pg.upgrade();
    let mut db = new.connect("postgres");
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status <> 'delivered'"
        ),
        2,
        "the queued events came along"
    );
    exec(
        &mut db,
        "SELECT webhook.resume('t'); INSERT INTO t VALUES (4)",
    );
    wait_until(WAIT, "2, 3 and 4 delivered", || {
        let ids = rx.accepted_ids();
        [2, 3, 4].iter().all(|id| ids.contains(id))
    });
    let mut ids = rx.accepted_ids();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3, 4], "each once");
    assert_eq!(prefixes(&rx).len(), 1, "one uid: {:?}", prefixes(&rx));
    assert!(
        !new.log().contains("was made in another copy"),
        "an upgraded database is no copy: {}",
        new.log()
    );
    // Event ids go on from where they were: none is handed out twice.
    let ordered = text(
        &mut db,
        "SELECT string_agg(record->>'id', ',' ORDER BY id) FROM webhook.events",
    );
    assert_eq!(ordered.as_deref(), Some("1,2,3,4"));
}

/// Table `t`, a callback `public.noted(jsonb)` that notes each event's row in `called`, made
/// after other functions so that its OID is not the first a new cluster hands out; `t`
/// subscribed with it, paused with rows 1 and 2 queued.
fn callback_subscription(db: &mut postgres::Client, url: &str) {
    exec(
        db,
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE TABLE called (id int);
         CREATE FUNCTION public.first(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
         CREATE FUNCTION public.second(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
         DROP FUNCTION public.first(jsonb);
         CREATE FUNCTION public.noted(e jsonb) RETURNS void LANGUAGE sql
             AS $$ INSERT INTO public.called VALUES ((e->'record'->>'id')::int) $$;",
    );
    subscribe(db, "t", "t", url, ", callback => 'public.noted(jsonb)'");
    exec(
        db,
        "SELECT webhook.pause('t'); INSERT INTO t VALUES (1), (2)",
    );
}

/// Resumes `t`, writes row 3 and waits for the callbacks of the `rows` events there are.
fn resume_and_wait_for_callbacks(db: &mut postgres::Client, rows: i64) {
    exec(db, "SELECT webhook.resume('t'); INSERT INTO t VALUES (3)");
    wait_until(WAIT, "the callbacks", || {
        count(db, "SELECT count(DISTINCT id) FROM called") == rows
    });
    assert_eq!(count(db, "SELECT count(*) FROM called"), rows, "each once");
    assert_eq!(
        text(
            db,
            "SELECT (callback_oid = 'public.noted(jsonb)'::regprocedure)::text
               FROM webhook._subscriptions"
        )
        .as_deref(),
        Some("true")
    );
}

#[test]
fn a_callback_is_bound_again_after_pg_upgrade_and_runs_for_events_queued_before() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    callback_subscription(&mut db, &rx.url("/t"));
    assert_eq!(
        text(&mut db, "SELECT callback FROM webhook.subscriptions").as_deref(),
        Some("public.noted(pg_catalog.jsonb)")
    );
    drop(db);
    let new = pg.upgrade();
    let mut db = new.connect("postgres");
    resume_and_wait_for_callbacks(&mut db, 3);
    assert!(
        new.log()
            .contains("bound again to public.noted(pg_catalog.jsonb)"),
        "{}",
        new.log()
    );
}

#[test]
fn a_restored_callback_is_bound_to_the_function_of_its_signature_in_the_copy() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut admin = pg.connect("postgres");
    exec(&mut admin, "CREATE DATABASE original");
    let mut db = pg.connect("original");
    exec(&mut db, "CREATE EXTENSION pg_webhook");
    callback_subscription(&mut db, &rx.url("/t"));
    let dump = pg.dir.join("original.dump");
    pg.tool(
        "pg_dump",
        &["-Fc", "-d", "original", "-f", dump.to_str().unwrap()],
    );
    // The copy's functions get other OIDs: more of them come first.
    exec(&mut admin, "CREATE DATABASE copy;");
    let mut copy = pg.connect("copy");
    exec(
        &mut copy,
        "CREATE FUNCTION public.before_restore(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT'",
    );
    pg.tool(
        "pg_restore",
        &["--exit-on-error", "-d", "copy", dump.to_str().unwrap()],
    );
    // The queue is not dumped: row 3's event is the copy's only one.
    resume_and_wait_for_callbacks(&mut copy, 1);
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM called"),
        0,
        "the original's callback ran for none of the copy's events"
    );
}

#[test]
fn a_callback_renamed_before_pg_upgrade_is_bound_again_under_its_new_name() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    callback_subscription(&mut db, &rx.url("/t"));
    exec(
        &mut db,
        "ALTER FUNCTION public.noted(jsonb) RENAME TO noted_again;
         SELECT webhook.pause('t')",
    );
    // The worker's next look at the subscriptions (the pause changed one) follows the rename.
    wait_until(WAIT, "the signature to follow the rename", || {
        text(&mut db, "SELECT callback FROM webhook.subscriptions").as_deref()
            == Some("public.noted_again(pg_catalog.jsonb)")
    });
    drop(db);
    let new = pg.upgrade();
    let mut db = new.connect("postgres");
    exec(
        &mut db,
        "SELECT webhook.resume('t'); INSERT INTO t VALUES (3)",
    );
    wait_until(WAIT, "the callbacks of rows 1 to 3", || {
        count(&mut db, "SELECT count(DISTINCT id) FROM called") == 3
    });
}

/// Dumps database `from` of `pg` and restores it into a new database `to`.
fn restore_copy(pg: &Cluster, from: &str, to: &str) {
    let dump = pg.dir.join(format!("{from}.dump"));
    pg.tool(
        "pg_dump",
        &["-Fc", "-d", from, "-f", dump.to_str().unwrap()],
    );
    exec(
        &mut pg.connect("postgres"),
        &format!("CREATE DATABASE {to}"),
    );
    pg.tool(
        "pg_restore",
        &["--exit-on-error", "-d", to, dump.to_str().unwrap()],
    );
}

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
    restore_copy(&pg, "original", "copy");
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
    restore_copy(&pg, "original", "copy");
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
fn a_callback_given_to_another_role_before_a_restore_is_bound_again_in_the_copy() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    exec(&mut pg.connect("postgres"), "CREATE DATABASE original");
    let mut db = pg.connect("original");
    exec(&mut db, "CREATE EXTENSION pg_webhook");
    callback_subscription(&mut db, &rx.url("/t"));
    exec(
        &mut db,
        "CREATE ROLE bob;
         ALTER FUNCTION public.noted(jsonb) OWNER TO bob;
         SELECT webhook.resume('t')",
    );
    // The worker's next look at the subscriptions (the resume changed one) follows the owner.
    wait_until(WAIT, "the callback's owner to follow", || {
        text(
            &mut db,
            "SELECT callback_owner::text FROM webhook._subscriptions",
        )
        .as_deref()
            == Some("bob")
    });
    restore_copy(&pg, "original", "copy");
    let mut copy = pg.connect("copy");
    exec(&mut copy, "INSERT INTO t VALUES (3)");
    wait_until(WAIT, "row 3's callback in the copy", || {
        count(&mut copy, "SELECT count(*) FROM called WHERE id = 3") == 1
    });
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
    exec(
        &mut copy,
        "SELECT webhook.resume('t'); INSERT INTO t VALUES (1)",
    );
    wait_until(WAIT, "row 1's callback to run or fail", || {
        count(
            &mut copy,
            "SELECT count(*) FROM webhook.events WHERE callback_error IS NOT NULL",
        ) + count(&mut copy, "SELECT count(*) FROM called")
            > 0
    });
    assert_eq!(
        text(
            &mut copy,
            "SELECT string_agg(callback_error, '; ') FROM webhook.events"
        ),
        None
    );
    assert_eq!(count(&mut copy, "SELECT count(*) FROM called"), 1);
}
