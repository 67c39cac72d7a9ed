//! `pg_upgrade` into a new cluster: what was queued goes out from the new one, under the same
//! webhook-ids, and capture goes on. One scenario per test.

mod support;

use support::cluster::{wait_until, Cluster};
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
    pg.restore_copy("original", "copy");
    let mut copy = pg.connect("copy");
    exec(&mut copy, "INSERT INTO t VALUES (3)");
    wait_until(WAIT, "row 3's callback in the copy", || {
        count(&mut copy, "SELECT count(*) FROM called WHERE id = 3") == 1
    });
}
