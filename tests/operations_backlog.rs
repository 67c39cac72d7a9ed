//! Operating a subscription's events against a real cluster and receiver: pause and resume
//! (racing the worker too), a parked event beside other retries, replay, auto-disable of a
//! failing endpoint and resume, and retention of finished events.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{count, status_counts, subscribe, WAIT};

/// Answers 500 for the row with id 2, 204 for every other.
fn row_two_fails(req: &support::receiver::Request, _: usize) -> Reply {
    if req.json()["record"]["id"] == 2 {
        Reply::Status(500)
    } else {
        Reply::Status(204)
    }
}

#[test]
fn pause_holds_events_and_resume_sends_them() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute("CREATE TABLE p (id int PRIMARY KEY)")
        .unwrap();
    subscribe(&mut db, "p", "p", &rx.url("/p"), "");
    db.batch_execute("INSERT INTO p VALUES (1)").unwrap();
    rx.wait_for(1, WAIT);

    let paused: bool = db
        .query_one("SELECT webhook.pause('p')", &[])
        .unwrap()
        .get(0);
    assert!(paused);
    let again: bool = db
        .query_one("SELECT webhook.pause('p')", &[])
        .unwrap()
        .get(0);
    assert!(!again, "pausing twice changes nothing");
    db.batch_execute("INSERT INTO p SELECT generate_series(2, 20)")
        .unwrap();
    wait_until(WAIT, "the new events to be parked", || {
        status_counts(&mut db) == "delivered=1,parked=19"
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.count(), 1, "nothing is sent while paused");
    let parked: i64 = count(&mut db, "SELECT parked FROM webhook.subscription_stats");
    assert_eq!(parked, 19);

    let resumed: bool = db
        .query_one("SELECT webhook.resume('p')", &[])
        .unwrap()
        .get(0);
    assert!(resumed);
    let got = rx.wait_for(20, WAIT);
    let rows: HashSet<i64> = got
        .iter()
        .map(|r| r.json()["record"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(rows, (1..=20).collect());
}

/// A parked event sits in the retry index at 'infinity'; the worker must not let it break the
/// search for the next due retry of any other subscription.
#[test]
fn a_parked_event_does_not_hold_up_other_retries() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    // The first request (the only subscription sending) fails once, then all succeed.
    let rx = Receiver::with(|_, n| Reply::Status(if n == 0 { 503 } else { 204 }));
    db.batch_execute(
        "CREATE TABLE held (id int PRIMARY KEY); CREATE TABLE retried (id int PRIMARY KEY)",
    )
    .unwrap();
    subscribe(&mut db, "held", "held", &rx.url("/held"), "");
    subscribe(
        &mut db,
        "retried",
        "retried",
        &rx.url("/retried"),
        ", retry_schedule => ARRAY['100 milliseconds']::interval[]",
    );
    db.batch_execute("SELECT webhook.pause('held'); INSERT INTO held VALUES (1)")
        .unwrap();
    wait_until(WAIT, "the held event to be parked", || {
        status_counts(&mut db) == "parked=1"
    });
    db.batch_execute("INSERT INTO retried VALUES (1)").unwrap();
    wait_until(WAIT, "the retry to be delivered", || {
        status_counts(&mut db) == "delivered=1,parked=1"
    });
    assert!(
        !pg.log().contains("cannot subtract infinite"),
        "{}",
        pg.log()
    );
}

#[test]
fn replay_redelivers_with_the_same_webhook_id_as_a_new_series() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::with(row_two_fails);
    db.batch_execute("CREATE TABLE r (id int PRIMARY KEY)")
        .unwrap();
    subscribe(
        &mut db,
        "r",
        "r",
        &rx.url("/r"),
        ", retry_schedule => ARRAY['50 milliseconds']::interval[], max_attempts => 2",
    );
    db.batch_execute("INSERT INTO r VALUES (1), (2)").unwrap();
    wait_until(WAIT, "one delivered, one dead", || {
        status_counts(&mut db) == "dead=1,delivered=1"
    });
    let first_id = rx.requests()[0].id();

    // Replay the delivered one: same webhook-id, delivered again.
    let delivered_event: i64 = count(
        &mut db,
        "SELECT id FROM webhook.events WHERE status = 'delivered'",
    );
    let ok: bool = db
        .query_one("SELECT webhook.replay($1)", &[&delivered_event])
        .unwrap()
        .get(0);
    assert!(ok);
    wait_until(WAIT, "the replay to arrive", || {
        rx.requests()
            .iter()
            .filter(|r| r.json()["record"]["id"] == 1)
            .count()
            == 2
    });
    let ids: HashSet<String> = rx
        .requests()
        .iter()
        .filter(|r| r.json()["record"]["id"] == 1)
        .map(|r| r.id())
        .collect();
    assert_eq!(ids.len(), 1, "a replay keeps the webhook-id");
    assert!(ids.contains(&first_id) || rx.requests()[0].json()["record"]["id"] == 2);

    // Replay the dead one after the receiver is fixed: a fresh series of attempts.
    rx.set(|_, _| Reply::Status(204));
    let n: i64 = count(&mut db, "SELECT webhook.replay_dead('r')");
    assert_eq!(n, 1);
    wait_until(WAIT, "everything delivered", || {
        status_counts(&mut db) == "delivered=2"
    });
    let attempts: Vec<(i32, String)> = db
        .query(
            "SELECT attempt, outcome FROM webhook.attempts a JOIN webhook.events e ON e.id = a.event_id
              WHERE e.record->>'id' = '2' ORDER BY attempt",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1, "retry".into()),
            (2, "dead".into()),
            (3, "delivered".into())
        ],
        "the log keeps every attempt, numbered across series"
    );

    // Replay since a time: both events again.
    let n: i64 = count(
        &mut db,
        "SELECT webhook.replay_since('r', now() - interval '1 hour')",
    );
    assert_eq!(n, 2);
    wait_until(WAIT, "both replayed", || rx.count() >= 7);

    // Bad calls are named.
    for (sql, want) in [
        (
            "SELECT webhook.replay(123456789)",
            "event 123456789 does not exist",
        ),
        (
            "SELECT webhook.replay_dead('nope')",
            "subscription \"nope\" does not exist",
        ),
        (
            "SELECT webhook.replay_since('r', NULL)",
            "since must not be NULL",
        ),
    ] {
        let e = db.batch_execute(sql).unwrap_err();
        let msg = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(msg.contains(want), "{sql}: {msg}");
    }
}

#[test]
fn a_failing_endpoint_is_disabled_and_resume_re_enables_it() {
    let pg = Cluster::start(&[
        "pg_webhook.disable_after = '2s'",
        "pg_webhook.poll_interval = '200ms'",
    ]);
    let mut db = pg.client_with_extension();
    // (The answer quotes the path: status_reason, which every reader of the table sees, must
    // not.)
    let rx = Receiver::with(|r, _| Reply::Full {
        status: 500,
        headers: Vec::new(),
        body: format!("failed at {}", r.path),
    });
    db.batch_execute("CREATE TABLE f (id int PRIMARY KEY)")
        .unwrap();
    subscribe(
        &mut db,
        "f",
        "f",
        &rx.url("/f-tok_secret"),
        ", retry_schedule => ARRAY['200 milliseconds']::interval[], max_attempts => 100",
    );
    db.batch_execute("INSERT INTO f VALUES (1)").unwrap();
    wait_until(WAIT, "the subscription to be disabled", || {
        db.query_one("SELECT status FROM webhook.subscriptions", &[])
            .unwrap()
            .get::<_, String>(0)
            == "disabled"
    });
    let reason: String = db
        .query_one("SELECT status_reason FROM webhook.subscriptions", &[])
        .unwrap()
        .get(0);
    assert!(reason.contains("endpoint failing since"), "{reason}");
    assert!(reason.contains("last error: HTTP 500;"), "{reason}");
    assert!(!reason.contains("tok_secret"), "{reason}");
    assert!(pg.log().contains("disabled: endpoint failing since"));
    db.batch_execute("INSERT INTO f VALUES (2)").unwrap();
    wait_until(WAIT, "both events parked", || {
        status_counts(&mut db) == "parked=2"
    });

    rx.set(|_, _| Reply::Status(204));
    db.batch_execute("SELECT webhook.resume('f')").unwrap();
    wait_until(WAIT, "the backlog delivered", || {
        status_counts(&mut db) == "delivered=2"
    });
    let healthy: bool = db
        .query_one(
            "SELECT failing_since IS NULL AND status = 'active' FROM webhook.subscriptions",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(healthy, "resume clears the failure state");

    // 410 Gone disables at once.
    rx.set(|_, _| Reply::Status(410));
    db.batch_execute("INSERT INTO f VALUES (3)").unwrap();
    wait_until(WAIT, "410 to disable", || {
        db.query_one("SELECT status_reason FROM webhook.subscriptions", &[])
            .unwrap()
            .get::<_, Option<String>>(0)
            .is_some_and(|r| r.contains("410 Gone"))
    });
}

#[test]
fn old_history_is_purged_and_dead_events_are_kept_longer() {
    let pg = Cluster::start(&[
        "pg_webhook.retention = '1s'",
        "pg_webhook.dead_retention = '1h'",
        "pg_webhook.poll_interval = '200ms'",
    ]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::with(row_two_fails);
    db.batch_execute("CREATE TABLE h (id int PRIMARY KEY)")
        .unwrap();
    subscribe(&mut db, "h", "h", &rx.url("/h"), ", max_attempts => 1");
    db.batch_execute("INSERT INTO h VALUES (1), (2)").unwrap();
    rx.wait_for(2, WAIT);
    wait_until(WAIT, "the delivered event to be purged", || {
        status_counts(&mut db) == "dead=1"
    });
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        status_counts(&mut db),
        "dead=1",
        "dead events outlive the delivered ones"
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM webhook.attempts"), 1);
}

/// Pauses and resumes racing the worker's claims: whatever the interleaving, no event may stay
/// parked under an active subscription.
#[test]
fn pause_and_resume_racing_the_worker_strand_nothing() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '50ms'"]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute("CREATE TABLE race (id int PRIMARY KEY)")
        .unwrap();
    subscribe(&mut db, "race", "race", &rx.url("/race"), "");
    for round in 0..30 {
        db.batch_execute("SELECT webhook.pause('race')").unwrap();
        db.execute(
            "INSERT INTO race SELECT g FROM generate_series($1 * 10 + 1, $1 * 10 + 10) g",
            &[&round],
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis((round % 4) as u64 * 15));
        db.batch_execute("SELECT webhook.resume('race')").unwrap();
    }
    wait_until(WAIT, "all 300 events delivered", || {
        status_counts(&mut db) == "delivered=300"
    });
    let ids: HashSet<i64> = rx
        .accepted()
        .iter()
        .map(|r| r.json()["record"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=300).collect());
}

/// `replay(event_id)` found the event's subscription again by name among live ones: once it
/// was unsubscribed the answer was that it did not exist, and once its name was taken again,
/// a silent false. It is found by the event, and refused as unsubscribed.
#[test]
fn replaying_an_event_of_an_unsubscribed_subscription_says_so() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    support::exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "nr", "t", &rx.url("/t"), "");
    support::exec(&mut db, "INSERT INTO t VALUES (1)");
    wait_until(WAIT, "the event delivered", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 1
    });
    let event = count(&mut db, "SELECT max(id) FROM webhook.events");
    support::exec(&mut db, "SELECT webhook.unsubscribe('nr')");
    let replay = format!("SELECT webhook.replay({event})");
    let error = support::error_of(&mut db, &replay);
    assert!(
        error.contains("the subscription is unsubscribed"),
        "{error}"
    );
    subscribe(&mut db, "nr", "t", &rx.url("/t"), "");
    let error = support::error_of(&mut db, &replay);
    assert!(
        error.contains("the subscription is unsubscribed"),
        "{error}"
    );
}
