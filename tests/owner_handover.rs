//! `webhook.set_owner()`: a subscription outlives its owner's role. A subscription is not a
//! catalog object, so nothing stops `DROP ROLE` of its owner; it was then disabled for good,
//! its events parked and still queueing, with no way to hand it to anyone. Only such orphans
//! change hands: a live owner could redefine what its filter, payload or callback call, and it
//! would run as the new owner. Nor does an orphan that shapes its rows in SQL or calls another
//! role's callback or one that is gone; only a superuser hands one over, to a role that passes
//! a subscriber's checks. A pause or an unsubscribe names the role that made it.

mod support;

use support::cluster::Cluster;
use support::orphans::{orphaned, status, team};
use support::receiver::Receiver;
use support::{error_of, exec, subscribe, text, WAIT};

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
fn an_orphan_whose_callback_function_is_gone_does_not_change_hands() {
    // Dropped (or not restored with the subscription): no owner to check, and nothing bob could
    // be allowed to call. It said "callback function with oid ... does not exist".
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let (mut su, _) = orphaned(&pg, &rx, ", callback => 'public.cb(jsonb)'", "");
    exec(&mut su, "DROP FUNCTION public.cb(jsonb)");
    let e = error_of(&mut su, "SELECT webhook.set_owner('t', 'bob')");
    assert!(
        e.contains(
            "cannot go to role bob: its callback function public.cb(pg_catalog.jsonb) does not \
             exist in this database (dropped, or not restored with the subscription)"
        ),
        "{e}"
    );
    assert_eq!(status(&mut su), "disabled");
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
fn an_orphan_with_a_backfill_running_with_a_filter_does_not_change_hands_until_it_is_canceled() {
    // The chunks run the backfill's filter as the subscription's owner, whoever is that now:
    // SQL alice chose ran as bob, in the transaction that dropped her and handed hers over.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = team(&pg);
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(&mut alice, "t", "t", &rx.url("/t"), "");
    let mut tx = su.transaction().unwrap();
    tx.batch_execute(
        "SELECT webhook.backfill('t', $$id > 0 OR current_user = 'bob'$$);
         REVOKE ALL ON t FROM alice; REVOKE webhook_admin FROM alice; DROP ROLE alice;
         SAVEPOINT before;",
    )
    .unwrap();
    let e = tx
        .batch_execute("SELECT webhook.set_owner('t', 'bob')")
        .expect_err("set_owner hands over a backfill's filter");
    let e = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(
        e.contains("cannot go to role bob: a backfill of it is running with a filter"),
        "{e}"
    );
    tx.batch_execute(
        "ROLLBACK TO before;
         SELECT webhook.cancel_backfill('t'); SELECT webhook.set_owner('t', 'bob');",
    )
    .unwrap();
    tx.commit().unwrap();
    let owner = text(
        &mut su,
        "SELECT owner::text FROM webhook.subscriptions WHERE name = 't'",
    );
    assert_eq!(owner.as_deref(), Some("bob"));
}

#[test]
fn a_backfill_started_while_its_subscription_changed_hands_stops_before_its_filter_runs() {
    // alice's backfill() was not committed yet when set_owner looked for one, and its filter
    // then ran as bob (helper-98).
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut su = team(&pg);
    exec(&mut su, "INSERT INTO t VALUES (1, 'there')");
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(&mut alice, "t", "t", &rx.url("/t"), "");
    exec(
        &mut alice,
        "BEGIN; SELECT webhook.backfill('t', $$id > 0 OR current_user = 'bob'$$)",
    );
    exec(
        &mut su,
        "REVOKE ALL ON t FROM alice; REVOKE webhook_admin FROM alice; DROP ROLE alice;
         SELECT webhook.set_owner('t', 'bob');",
    );
    exec(&mut alice, "COMMIT");
    exec(
        &mut pg.connect_as("postgres", "bob"),
        "SELECT webhook.resume('t')",
    );
    support::backfill::wait_state(&mut su, "t", "failed");
    let error = text(
        &mut su,
        "SELECT last_error FROM webhook.backfills WHERE subscription = 't'",
    )
    .unwrap_or_default();
    assert!(
        error.contains("changed hands after this backfill started"),
        "{error}"
    );
    let sent = text(
        &mut su,
        "SELECT rows_sent::text FROM webhook.backfills WHERE subscription = 't'",
    );
    assert_eq!(sent.as_deref(), Some("0"));
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
