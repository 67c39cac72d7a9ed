//! `webhook.set_owner()`: a subscription outlives its owner's role. A subscription is not a
//! catalog object, so nothing stops `DROP ROLE` of its owner; it was then disabled for good,
//! its events parked and still queueing, with no way to hand it to anyone. Only such orphans
//! change hands: a live owner could redefine what its filter, payload or callback call, and it
//! would run as the new owner.

mod support;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{error_of, exec, subscribe, text, WAIT};

/// Table `t (id int, who text)`; alice and bob are webhook_admin members who may read it and
/// add triggers to it, carol is one who may not read it; dave owns the callback `public.cb(jsonb)`
/// and the function `m.ok(int)`, which anyone may run.
fn team(pg: &Cluster) -> postgres::Client {
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE carol LOGIN; CREATE ROLE dave;
         GRANT webhook_admin TO alice, bob, carol;
         CREATE TABLE t (id int PRIMARY KEY, who text);
         GRANT SELECT, TRIGGER ON t TO alice, bob;
         CREATE FUNCTION public.cb(jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
         ALTER FUNCTION public.cb(jsonb) OWNER TO dave;
         CREATE SCHEMA m AUTHORIZATION dave; GRANT USAGE ON SCHEMA m TO PUBLIC;
         CREATE FUNCTION m.ok(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
         ALTER FUNCTION m.ok(int) OWNER TO dave;",
    );
    su
}

fn status(db: &mut postgres::Client) -> String {
    text(
        db,
        "SELECT status FROM webhook.subscriptions WHERE name = 't'",
    )
    .unwrap_or_default()
}

/// alice subscribes `t` (with `extra`), a writer session runs `write`, and alice leaves: her
/// role is dropped, and the worker disables the subscription. Returns a superuser's session and
/// the writer's.
fn orphaned(
    pg: &Cluster,
    rx: &Receiver,
    extra: &str,
    write: &str,
) -> (postgres::Client, postgres::Client) {
    orphaned_after(pg, team(pg), rx, extra, write)
}

/// `orphaned`, in a team set up already (`su` its superuser's session).
fn orphaned_after(
    pg: &Cluster,
    mut su: postgres::Client,
    rx: &Receiver,
    extra: &str,
    write: &str,
) -> (postgres::Client, postgres::Client) {
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(&mut alice, "t", "t", &rx.url("/t"), extra);
    drop(alice);
    let mut writer = pg.connect("postgres");
    exec(&mut writer, write);
    exec(
        &mut su,
        "REVOKE ALL ON t FROM alice; REVOKE webhook_admin FROM alice; DROP ROLE alice;",
    );
    wait_until(WAIT, "the subscription to be disabled", || {
        status(&mut su) == "disabled"
    });
    (su, writer)
}

#[test]
fn a_subscription_whose_owner_was_dropped_delivers_again_once_handed_over() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let (mut su, _) = orphaned(&pg, &rx, "", "");
    exec(&mut su, "INSERT INTO t VALUES (1, 'while ownerless')");
    exec(&mut su, "SELECT webhook.set_owner('t', 'bob')");
    let mut bob = pg.connect_as("postgres", "bob");
    exec(&mut bob, "SELECT webhook.resume('t')");
    exec(&mut su, "INSERT INTO t VALUES (2, 'after')");
    let mut ids: Vec<i64> = rx
        .wait_for(2, WAIT)
        .iter()
        .map(|r| r.json()["record"]["id"].as_i64().unwrap_or(-1))
        .collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(status(&mut bob), "active");
}

#[test]
fn a_new_owner_must_pass_the_checks_a_subscriber_does() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let (mut su, _) = orphaned(&pg, &rx, "", "");
    let e = error_of(&mut su, "SELECT webhook.set_owner('t', 'carol')");
    assert!(
        e.contains("permission denied to subscribe to public.t"),
        "{e}"
    );
    assert_eq!(status(&mut su), "disabled");
}

#[test]
fn a_callback_of_another_role_keeps_the_subscription_from_changing_hands() {
    // dave could change what the callback does, and it would run as bob.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let (mut su, _) = orphaned(&pg, &rx, ", callback => 'public.cb(jsonb)'", "");
    let e = error_of(&mut su, "SELECT webhook.set_owner('t', 'bob')");
    assert!(
        e.contains("its callback") && e.contains("belongs to another role"),
        "{e}"
    );
    exec(
        &mut su,
        "ALTER FUNCTION public.cb(jsonb) OWNER TO bob; SELECT webhook.set_owner('t', 'bob')",
    );
}

#[test]
fn a_subscription_with_a_live_owner_does_not_change_hands() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = team(&pg);
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(&mut alice, "t", "t", &rx.url("/t"), "");
    let e = error_of(&mut su, "SELECT webhook.set_owner('t', 'bob')");
    assert!(e.contains("still has its owner"), "{e}");
    let e = error_of(&mut alice, "SELECT webhook.set_owner('t', 'bob')");
    assert!(e.contains("still has its owner"), "{e}");
}

#[test]
fn only_a_superuser_hands_over_an_orphan() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let _orphan = orphaned(&pg, &rx, "", "");
    let mut bob = pg.connect_as("postgres", "bob");
    let e = error_of(&mut bob, "SELECT webhook.set_owner('t', 'bob')");
    assert!(e.contains("only its owner or a superuser may"), "{e}");
}

#[test]
fn an_orphan_that_shapes_its_rows_in_sql_does_not_change_hands() {
    // Its filter calls dave's m.ok, which dave could redefine, or could name SQL in a string
    // for a pg_catalog function to run: either would run as the new owner.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let filter = ", events => '{insert}', filter => 'm.ok(NEW.id)'";
    let (mut su, _) = orphaned(&pg, &rx, filter, "");
    let e = error_of(&mut su, "SELECT webhook.set_owner('t', 'bob')");
    assert!(e.contains("it has a filter"), "{e}");
    assert_eq!(status(&mut su), "disabled");
}

#[test]
fn an_orphan_that_only_chooses_columns_changes_hands() {
    // Columns and skip_unchanged are names and a flag, not SQL: capture renders the images
    // they choose, so nothing of the former owner's runs as the new one.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let (mut su, _) = orphaned(&pg, &rx, ", columns => '{id}', skip_unchanged => true", "");
    exec(&mut su, "SELECT webhook.set_owner('t', 'bob')");
    let mut bob = pg.connect_as("postgres", "bob");
    exec(&mut bob, "SELECT webhook.resume('t')");
    exec(&mut su, "INSERT INTO t VALUES (1, 'after')");
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["record"], serde_json::json!({"id": 1}));
}

/// The reason of alice's subscription `t`, unreachable, once she has run `act` on it.
fn reason_after(pg: &Cluster, act: &str) -> String {
    let _su = team(pg);
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(&mut alice, "t", "t", "http://127.0.0.1:9/t", "");
    exec(&mut alice, act);
    text(
        &mut alice,
        "SELECT status_reason FROM webhook.subscriptions WHERE name = 't'",
    )
    .unwrap_or_default()
}

/// The reason names who paused: the caller, not the extension's owner the write switches to
/// ("paused by postgres at …").
#[test]
fn pausing_names_the_role_that_paused() {
    let pg = Cluster::start(&[]);
    let reason = reason_after(&pg, "SELECT webhook.pause('t')");
    assert!(reason.starts_with("paused by alice at "), "{reason}");
}

/// Likewise for unsubscribing ("unsubscribed by postgres at …").
#[test]
fn unsubscribing_names_the_role_that_unsubscribed() {
    let pg = Cluster::start(&[]);
    let reason = reason_after(&pg, "SELECT webhook.unsubscribe('t')");
    assert!(reason.starts_with("unsubscribed by alice at "), "{reason}");
}

/// Emulates what a dump of orphan `t` and its restore into another cluster make of it: its
/// owner column held the dropped role's OID, written out as a number, which the other cluster
/// reads as whichever role has that OID there — here bob, who may read the table.
fn restored_as_bobs(su: &mut postgres::Client) {
    exec(
        su,
        "UPDATE webhook._subscriptions SET owner = 'bob' WHERE name = 't' AND owner_dropped",
    );
}

#[test]
fn a_restored_orphan_whose_owner_oid_names_another_role_is_not_that_roles() {
    // The role the OID names never subscribed: it may not resume the orphan (and so send its
    // held rows to the former owner's endpoint); a superuser still hands it over.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let (mut su, _) = orphaned(&pg, &rx, "", "");
    restored_as_bobs(&mut su);
    let mut bob = pg.connect_as("postgres", "bob");
    let e = error_of(&mut bob, "SELECT webhook.resume('t')");
    assert!(e.contains("permission denied to resume \"t\""), "{e}");
    let e = error_of(&mut su, "SELECT webhook.resume('t')");
    assert!(
        e.contains("has no owner (its owner's role was dropped)"),
        "{e}"
    );
    exec(&mut su, "SELECT webhook.set_owner('t', 'bob')");
    exec(&mut bob, "SELECT webhook.resume('t')");
    exec(&mut su, "INSERT INTO t VALUES (1, 'after')");
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["id"], 1);
}

#[test]
fn a_restored_orphans_filter_does_not_run_as_the_role_its_owner_oid_names() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = team(&pg);
    // Fails a write if it runs as bob (not constant, so planning does not fold it).
    exec(
        &mut su,
        "CREATE FUNCTION m.not_bob(int) RETURNS boolean LANGUAGE sql STABLE
             AS $$ SELECT CASE WHEN current_user = 'bob' THEN $1 / 0 = 1 ELSE true END $$;
         ALTER FUNCTION m.not_bob(int) OWNER TO dave;",
    );
    let filter = ", events => '{insert}', filter => 'm.not_bob(NEW.id)'";
    let (mut su, _) = orphaned_after(&pg, su, &rx, filter, "");
    restored_as_bobs(&mut su);
    let mut writer = pg.connect("postgres");
    exec(&mut writer, "INSERT INTO t VALUES (1, 'after the restore')");
    assert_eq!(
        text(
            &mut su,
            "SELECT count(*)::text FROM webhook._event_queue q
               JOIN webhook._subscriptions s ON s.id = q.subscription_id WHERE s.name = 't'"
        )
        .as_deref(),
        Some("1"),
        "the row is queued (held), unfiltered"
    );
}

#[test]
fn a_paused_subscription_whose_owner_lost_access_and_then_its_role_becomes_an_orphan() {
    // Held already (paused, its owner's SELECT revoked) when the role goes: the worker's
    // second look, for another reason, must still mark it.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut su = team(&pg);
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(&mut alice, "t", "t", &rx.url("/t"), "");
    exec(&mut alice, "SELECT webhook.pause('t')");
    drop(alice);
    exec(&mut su, "REVOKE ALL ON t FROM alice");
    let flags = "SELECT read_denied::text || ' ' || owner_dropped::text
                   FROM webhook._subscriptions WHERE name = 't'";
    wait_until(WAIT, "the lost access to be noted", || {
        text(&mut su, flags).as_deref() == Some("true false")
    });
    exec(&mut su, "REVOKE webhook_admin FROM alice; DROP ROLE alice;");
    wait_until(WAIT, "the orphan to be marked", || {
        text(&mut su, flags).as_deref() == Some("true true")
    });
}

#[test]
fn an_orphan_whose_table_went_first_is_marked_too() {
    // The usual way out for a role that owns its table: DROP OWNED BY (the table, and so the
    // subscription, which is unsubscribed) and DROP ROLE. Its row stays, secret, headers and
    // events with it; unmarked, a restore elsewhere would hand them to the role its OID names.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut su = team(&pg);
    exec(
        &mut su,
        "CREATE TABLE own (id int PRIMARY KEY); ALTER TABLE own OWNER TO alice;",
    );
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(&mut alice, "own", "own", &rx.url("/own"), "");
    // A second one, on a table that stays: its marking shows the worker has looked.
    subscribe(&mut alice, "t", "t", &rx.url("/t"), "");
    exec(&mut alice, "INSERT INTO own VALUES (1)");
    rx.wait_for(1, WAIT);
    drop(alice);
    exec(
        &mut su,
        "REVOKE ALL ON t FROM alice; REVOKE webhook_admin FROM alice;
         DROP OWNED BY alice; DROP ROLE alice;",
    );
    let marked = |su: &mut postgres::Client, name: &str| {
        text(
            su,
            &format!(
                "SELECT owner_dropped::text FROM webhook._subscriptions WHERE name = '{name}'"
            ),
        )
        .unwrap_or_default()
            == "true"
    };
    wait_until(WAIT, "the orphan on t to be marked", || {
        marked(&mut su, "t")
    });
    wait_until(WAIT, "the orphan whose table is gone to be marked", || {
        marked(&mut su, "own")
    });
    // Restored where alice's OID is bob's: nothing of it is his to read.
    exec(
        &mut su,
        "UPDATE webhook._subscriptions SET owner = 'bob' WHERE name = 'own'",
    );
    let mut bob = pg.connect_as("postgres", "bob");
    assert_eq!(
        text(
            &mut bob,
            "SELECT count(secret)::text FROM webhook.subscriptions WHERE name = 'own'"
        )
        .as_deref(),
        Some("0")
    );
}

#[test]
fn replaying_a_restored_orphans_event_tells_the_role_its_owner_oid_names_nothing() {
    // bob may not see the orphan (its filter is the former owner's SQL): asking to replay one
    // of its events must not tell him that it is pending, nor the subscription's name.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let filter = ", events => '{insert}', filter => 'm.ok(NEW.id)'";
    let (mut su, mut writer) = orphaned(&pg, &rx, filter, "");
    restored_as_bobs(&mut su);
    exec(&mut writer, "INSERT INTO t VALUES (1, 'held')");
    let id =
        text(&mut su, "SELECT max(id)::text FROM webhook._event_queue").expect("a queued event");
    let mut bob = pg.connect_as("postgres", "bob");
    let e = error_of(&mut bob, &format!("SELECT webhook.replay({id}::bigint)"));
    assert!(
        e.contains("does not exist among your subscriptions' events"),
        "{e}"
    );
}

/// alice's orphan `t`, unmarked (no worker serves the database), is handed to bob2, made in
/// the same transaction, while the worker's `note` runs under a snapshot taken before: it waits
/// for the row set_owner() locked, and re-checked on the handed-over row it must not mark bob2's
/// subscription an orphan. `note` runs with the subscription's id.
fn handed_over_while(
    note: &'static str,
    args: fn(i32) -> Vec<Box<dyn postgres::types::ToSql + Sync + Send>>,
) {
    let pg = Cluster::start(&["pg_webhook.database = 'elsewhere'"]);
    let rx = Receiver::start();
    let mut su = team(&pg);
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(&mut alice, "t", "t", &rx.url("/t"), "");
    drop(alice);
    exec(
        &mut su,
        "REVOKE ALL ON t FROM alice; REVOKE webhook_admin FROM alice; DROP ROLE alice;",
    );
    let id: i32 = text(
        &mut su,
        "SELECT id::text FROM webhook._subscriptions WHERE name = 't'",
    )
    .unwrap_or_default()
    .parse()
    .unwrap_or_default();
    let mut handing = pg.connect("postgres");
    exec(
        &mut handing,
        "BEGIN; CREATE ROLE bob2; GRANT webhook_admin TO bob2; GRANT SELECT, TRIGGER ON t TO bob2;
         SELECT webhook.set_owner('t', 'bob2');",
    );
    let mut worker = pg.connect("postgres");
    let noting = std::thread::spawn(move || {
        let args = args(id);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            args.iter().map(|a| a.as_ref() as _).collect();
        worker.execute(note, &refs).map_err(|e| e.to_string())
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    exec(&mut handing, "COMMIT");
    noting.join().expect("the note").expect("the note ran");
    assert_eq!(
        text(
            &mut su,
            "SELECT owner::text || ' ' || owner_dropped::text FROM webhook._subscriptions WHERE name = 't'"
        )
        .as_deref(),
        Some("bob2 false")
    );
}

#[test]
fn a_subscription_handed_over_while_the_worker_notes_its_orphan_is_not_marked_again() {
    handed_over_while(include_str!("../sql/worker/sync_read_denied.sql"), |id| {
        vec![Box::new(id)]
    });
}

#[test]
fn a_subscription_handed_over_while_the_worker_disables_its_orphan_is_not_marked_again() {
    handed_over_while(include_str!("../sql/worker/disable.sql"), |id| {
        vec![
            Box::new(id),
            Box::new("its owner's role was dropped".to_string()),
            Box::new(true),
        ]
    });
}

/// A session keeps what capture read of a subscription (its owner, filter and payload) until
/// the table's relation cache entry is invalidated. Dropping the owner's role changes nothing
/// of the table when the owner's rights on it came through another role: the worker's mark
/// must make such a session read the subscription again, or it goes on running the dropped
/// owner's filter (as an OID no role has, or after a restore as the role it names).
#[test]
fn a_session_that_wrote_before_its_owner_was_dropped_runs_no_more_of_the_orphans_filter() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE alice LOGIN; CREATE ROLE readers; GRANT webhook_admin, readers TO alice;
         CREATE TABLE t (id int PRIMARY KEY, who text);
         GRANT SELECT, TRIGGER ON t TO readers;",
    );
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(
        &mut alice,
        "t",
        "t",
        &rx.url("/t"),
        ", events => '{insert}', filter => 'NEW.id < 100'",
    );
    drop(alice);
    let mut writer = pg.connect("postgres");
    exec(&mut writer, "INSERT INTO t VALUES (1, 'before')");
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["id"], 1);
    exec(
        &mut su,
        "REVOKE webhook_admin, readers FROM alice; DROP ROLE alice;",
    );
    wait_until(WAIT, "the orphan to be marked", || {
        text(
            &mut su,
            "SELECT owner_dropped::text FROM webhook._subscriptions WHERE name = 't'",
        )
        .as_deref()
            == Some("true")
    });
    exec(&mut writer, "INSERT INTO t VALUES (500, 'after')");
    assert_eq!(
        text(
            &mut su,
            "SELECT count(*)::text FROM webhook._event_queue q
               JOIN webhook._subscriptions s ON s.id = q.subscription_id
              WHERE s.name = 't' AND q.record ->> 'id' = '500'"
        )
        .as_deref(),
        Some("1"),
        "the row is queued (held), unfiltered: the orphan's filter is not run"
    );
}
