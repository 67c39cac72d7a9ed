//! The worker against users changing things under it: settings reloaded, subscriptions
//! unsubscribed, the watched table altered or dropped, a destination refused by the address
//! policy until it is fixed. In every case: the worker keeps going, and no committed event is
//! lost.

mod support;

use std::collections::HashSet;
use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{alter_system, count, policy_applied, probe_subscription, subscribe, WAIT};

#[test]
fn a_reload_applies_new_settings_without_a_restart() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    let worker = pg.worker_pid(&mut db);
    db.batch_execute("CREATE TABLE h (id int PRIMARY KEY)")
        .unwrap();
    let (sid, _) = subscribe(&mut db, "h_hook", "h", &rx.url("/h"), ", max_attempts => 1");
    let probes = Receiver::start();
    probe_subscription(&mut db, &probes.url("/probe"));
    db.batch_execute("INSERT INTO h VALUES (1)").unwrap();
    rx.wait_for(1, WAIT);

    // Loopback is no longer allowed once the worker has this reload: the next event is
    // refused, not sent.
    alter_system(&mut db, "SET pg_webhook.allowed_destinations = ''");
    policy_applied(&mut db, "dead");
    db.batch_execute("INSERT INTO h VALUES (2)").unwrap();
    wait_until(WAIT, "the refused event to die", || {
        count(
            &mut db,
            &format!("SELECT count(*) FROM webhook.events WHERE status = 'dead' AND subscription_id = {sid}"),
        ) == 1
    });
    let error: String = db
        .query_one(
            "SELECT error FROM webhook.attempts WHERE outcome = 'dead' AND subscription_id = $1",
            &[&sid],
        )
        .unwrap()
        .get(0);
    assert!(error.contains("destination refused"), "{error}");
    assert!(error.contains("loopback"), "{error}");
    assert_eq!(rx.count(), 1);

    db.batch_execute("ALTER SYSTEM RESET pg_webhook.allowed_destinations")
        .unwrap();
    pg.append_conf("pg_webhook.allowed_destinations = '127.0.0.0/8'\n");
    pg.reload();
    policy_applied(&mut db, "delivered");
    db.batch_execute("INSERT INTO h VALUES (3)").unwrap();
    rx.wait_for(2, WAIT);
    assert_eq!(pg.worker_pid(&mut db), worker);

    // A malformed allowlist is refused when set, naming the bad entry.
    let err = db
        .batch_execute("ALTER SYSTEM SET pg_webhook.allowed_destinations = '10.0.0.0/99'")
        .unwrap_err();
    let msg = format!("{:?}", err.as_db_error());
    assert!(msg.contains("10.0.0.0/99"), "{msg}");
}

#[test]
fn unsubscribing_stops_capture_but_still_delivers_what_was_queued() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::with(|_, _| Reply::Status(503));
    db.batch_execute("CREATE TABLE u (id int PRIMARY KEY)")
        .unwrap();
    let fast = ", retry_schedule => ARRAY['200 milliseconds']::interval[], max_attempts => 100";
    subscribe(&mut db, "keep", "u", &rx.url("/keep"), fast);
    subscribe(&mut db, "discard", "u", &rx.url("/discard"), fast);
    db.batch_execute("INSERT INTO u SELECT generate_series(1, 5)")
        .unwrap();
    rx.wait_for(2, WAIT);

    let ok: bool = db
        .query_one("SELECT webhook.unsubscribe('keep')", &[])
        .unwrap()
        .get(0);
    assert!(ok);
    db.query_one(
        "SELECT webhook.unsubscribe('discard', discard_queued => true)",
        &[],
    )
    .unwrap();
    db.batch_execute("INSERT INTO u SELECT generate_series(6, 10)")
        .unwrap();
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'pending'"
        ),
        5,
        "only 'keep's five queued events remain; nothing new was captured"
    );
    rx.set(|_, _| Reply::Status(204));
    wait_until(WAIT, "the kept events to be delivered", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 5
    });
    let delivered: HashSet<i64> = rx
        .requests()
        .iter()
        .filter(|r| r.path == "/keep")
        .filter_map(|r| r.json()["record"]["id"].as_i64())
        .collect();
    assert_eq!(delivered, (1..=5).collect());
    let status: Vec<(String, String)> = db
        .query(
            "SELECT name, status FROM webhook.subscriptions ORDER BY name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        status.iter().all(|(_, s)| s == "unsubscribed"),
        "{status:?}"
    );
    // The name is free again.
    subscribe(&mut db, "keep", "u", &rx.url("/keep2"), "");
    let again: bool = db
        .query_one("SELECT webhook.unsubscribe('nope', if_exists => true)", &[])
        .unwrap()
        .get(0);
    assert!(!again);
    let err = db
        .query_one("SELECT webhook.unsubscribe('nope')", &[])
        .unwrap_err();
    let msg = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert_eq!(msg, "subscription \"nope\" does not exist");
}

#[test]
fn dropping_or_altering_the_watched_table_loses_no_queued_event() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let worker = pg.worker_pid(&mut db);
    let rx = Receiver::with(|_, _| Reply::Status(500));
    db.batch_execute("CREATE TABLE gone (id int PRIMARY KEY, a text)")
        .unwrap();
    subscribe(
        &mut db,
        "gone_hook",
        "gone",
        &rx.url("/gone"),
        ", retry_schedule => ARRAY['200 milliseconds']::interval[], max_attempts => 100",
    );
    db.batch_execute(
        "INSERT INTO gone VALUES (1, 'before');
         ALTER TABLE gone ADD COLUMN b int DEFAULT 7;
         INSERT INTO gone VALUES (2, 'after add');
         ALTER TABLE gone DROP COLUMN a;
         INSERT INTO gone VALUES (3);",
    )
    .unwrap();
    rx.wait_for(3, WAIT);
    db.batch_execute("DROP TABLE gone").unwrap();
    let (status, reason): (String, String) = db
        .query_one(
            "SELECT status, status_reason FROM webhook.subscriptions",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(status, "unsubscribed");
    assert!(reason.contains("public.gone was dropped"), "{reason}");

    rx.set(|_, _| Reply::Status(204));
    wait_until(WAIT, "the three queued events to arrive", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 3
    });
    let mut records: Vec<serde_json::Value> = rx
        .requests()
        .iter()
        .rev()
        .take(3)
        .map(|r| r.json()["record"].clone())
        .collect();
    records.sort_by_key(|r| r["id"].as_i64());
    assert_eq!(records[0], serde_json::json!({"id": 1, "a": "before"}));
    assert_eq!(
        records[1],
        serde_json::json!({"id": 2, "a": "after add", "b": 7})
    );
    assert_eq!(records[2], serde_json::json!({"id": 3, "b": 7}));
    assert_eq!(pg.worker_pid(&mut db), worker);
}

/// A destination the address policy refuses is retried on the schedule, never killed at once:
/// the policy can be a configuration mistake (a standby promoted without the primary's
/// `ALTER SYSTEM` setting), and once it is fixed the event arrives.
#[test]
fn a_refused_destination_is_retried_and_arrives_once_allowed() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute("CREATE TABLE r (id int PRIMARY KEY)")
        .unwrap();
    let (sid, _) = subscribe(
        &mut db,
        "r_hook",
        "r",
        &rx.url("/r"),
        ", retry_schedule => ARRAY['1 second']::interval[], max_attempts => 100",
    );
    let probes = Receiver::start();
    probe_subscription(&mut db, &probes.url("/probe"));
    // Loopback is refused from now on, as on a node that missed the setting.
    alter_system(&mut db, "SET pg_webhook.allowed_destinations = ''");
    policy_applied(&mut db, "dead");
    db.batch_execute("INSERT INTO r VALUES (1)").unwrap();
    wait_until(
        WAIT,
        "two refused attempts, each followed by a retry",
        || {
            count(
                &mut db,
                "SELECT count(*) FROM webhook.attempts
              WHERE outcome = 'retry' AND error LIKE 'destination refused: %'",
            ) >= 2
        },
    );
    assert_eq!(
        count(
            &mut db,
            &format!("SELECT count(*) FROM webhook.events WHERE status = 'dead' AND subscription_id = {sid}")
        ),
        0,
        "a refused destination must not kill the event"
    );
    let log = pg.log();
    assert_eq!(
        log.matches(&format!("subscription {sid}: destination refused"))
            .count(),
        1,
        "the refusal is logged once per subscription, not per attempt: {log}"
    );
    // The setting is fixed: the next retry goes through.
    alter_system(&mut db, "RESET pg_webhook.allowed_destinations");
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["record"]["id"].as_i64(), Some(1));
    wait_until(WAIT, "the event to be recorded delivered", || {
        count(
            &mut db,
            &format!("SELECT count(*) FROM webhook.events WHERE status = 'delivered' AND attempts >= 3 AND subscription_id = {sid}"),
        ) == 1
    });
}
