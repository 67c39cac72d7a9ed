//! Orphans, the subscriptions whose owner's role was dropped: the worker marks each for good
//! (`owner_dropped`), whatever its status, its table gone first or a hand-over racing its mark;
//! a session that captured before runs no more of its filter; and restored where its owner OID
//! names another role, it is not that role's: not to resume, not to run its filter as, not to
//! learn of its events.

mod support;

use support::cluster::{wait_until, Cluster};
use support::orphans::{orphaned, orphaned_after, team};
use support::receiver::Receiver;
use support::{error_of, exec, subscribe, text, WAIT};

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
