//! Operating subscriptions against a real cluster and receiver: pause and resume, replay,
//! secret rotation, auto-disable, retention, TRUNCATE events and the stats view.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use postgres::Client;
use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{count, subscribe, WAIT};

fn status_counts(db: &mut Client) -> String {
    db.query_one(
        "SELECT coalesce(string_agg(status || '=' || n, ',' ORDER BY status), '')
           FROM (SELECT status, count(*) AS n FROM webhook.events GROUP BY status) s",
        &[],
    )
    .unwrap()
    .get(0)
}

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
fn during_a_rotation_both_secrets_sign() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute("CREATE TABLE s (id int PRIMARY KEY)")
        .unwrap();
    let (_, old) = subscribe(&mut db, "s", "s", &rx.url("/s"), "");
    let new: String = db
        .query_one("SELECT webhook.rotate_secret('s')", &[])
        .unwrap()
        .get(0);
    assert_ne!(new, old);
    std::thread::sleep(Duration::from_millis(1200)); // the worker reloads subscriptions
    db.batch_execute("INSERT INTO s VALUES (1)").unwrap();
    let got = rx.wait_for(1, WAIT);
    assert_eq!(
        got[0]
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    got[0].verify(&new).expect("the new secret verifies");
    got[0].verify(&old).expect("the old secret still verifies");

    // Without overlap the old secret stops signing at once.
    let newest: String = db
        .query_one("SELECT webhook.rotate_secret('s', overlap => '0')", &[])
        .unwrap()
        .get(0);
    std::thread::sleep(Duration::from_millis(1200));
    db.batch_execute("INSERT INTO s VALUES (2)").unwrap();
    let got = rx.wait_for(2, WAIT);
    got[1].verify(&newest).unwrap();
    assert!(got[1].verify(&new).is_err());
    let e = db
        .batch_execute("SELECT webhook.rotate_secret('s', 'whsec_c2hvcnQ=')")
        .unwrap_err();
    assert!(format!("{:?}", e.as_db_error()).contains("fewer than the 24"));
}

#[test]
fn a_failing_endpoint_is_disabled_and_resume_re_enables_it() {
    let pg = Cluster::start(&[
        "pg_webhook.disable_after = '2s'",
        "pg_webhook.poll_interval = '200ms'",
    ]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::with(|_, _| Reply::Status(500));
    db.batch_execute("CREATE TABLE f (id int PRIMARY KEY)")
        .unwrap();
    subscribe(
        &mut db,
        "f",
        "f",
        &rx.url("/f"),
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
    assert!(reason.contains("HTTP 500"), "{reason}");
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

#[test]
fn truncate_is_an_event_kind() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
        .unwrap();
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", events => ARRAY['truncate', 'insert']",
    );
    db.batch_execute("TRUNCATE t; INSERT INTO t VALUES (3)")
        .unwrap();
    let got = rx.wait_for(2, WAIT);
    let types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_string())
        .collect();
    assert!(types.contains(&"TRUNCATE".to_string()), "{types:?}");
    let truncate = got
        .iter()
        .find(|r| r.json()["type"] == "TRUNCATE")
        .unwrap()
        .json();
    assert!(truncate["record"].is_null() && truncate["old_record"].is_null());
    assert_eq!(truncate["table"], "t");
}

#[test]
fn the_stats_view_shows_health_at_a_glance() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::with(|req, _| {
        if req.json()["record"]["id"] == 3 {
            Reply::Full {
                status: 503,
                headers: vec![],
                body: "busy".into(),
            }
        } else {
            Reply::Delay(Duration::from_millis(700), 204)
        }
    });
    db.batch_execute("CREATE TABLE st (id int PRIMARY KEY)")
        .unwrap();
    subscribe(
        &mut db,
        "st",
        "st",
        &rx.url("/st"),
        ", retry_schedule => ARRAY['1 hour']::interval[]",
    );
    db.batch_execute("INSERT INTO st VALUES (1), (2), (3)")
        .unwrap();
    wait_until(WAIT, "requests in flight to show", || {
        count(&mut db, "SELECT in_flight FROM webhook.subscription_stats") >= 1
    });
    wait_until(WAIT, "two delivered", || {
        count(
            &mut db,
            "SELECT delivered_last_hour FROM webhook.subscription_stats",
        ) == 2
    });
    let row = db
        .query_one(
            "SELECT status, queued, retrying, failed_last_hour, latency_p50_ms IS NOT NULL,
                    latency_p99_ms >= latency_p50_ms, last_error, oldest_queued_age IS NOT NULL
               FROM webhook.subscription_stats WHERE name = 'st'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "active");
    assert_eq!(row.get::<_, i64>(1), 1, "the failing event is queued");
    assert_eq!(row.get::<_, i64>(2), 1, "and retrying");
    assert_eq!(row.get::<_, i64>(3), 1);
    assert!(row.get::<_, bool>(4));
    assert!(row.get::<_, bool>(5));
    assert!(row.get::<_, Option<String>>(6).unwrap().contains("503"));
    assert!(row.get::<_, bool>(7));
}

#[test]
fn ping_sends_a_signed_test_event_and_returns_the_answer() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::with(|req, _| {
        if req.path == "/down" {
            Reply::Status(503)
        } else {
            Reply::Status(204)
        }
    });
    db.batch_execute("CREATE TABLE g (id int PRIMARY KEY)")
        .unwrap();
    let (_, secret) = subscribe(&mut db, "g", "g", &rx.url("/up"), ", format => 'standard'");
    db.batch_execute("SELECT webhook.pause('g')").unwrap();

    let row = db
        .query_one(
            "SELECT delivered, status_code, duration_ms, error, webhook_id FROM webhook.ping('g')",
            &[],
        )
        .unwrap();
    assert!(row.get::<_, bool>(0), "a paused subscription can be pinged");
    assert_eq!(row.get::<_, Option<i32>>(1), Some(204));
    assert!(row.get::<_, f64>(2) >= 0.0);
    assert_eq!(row.get::<_, Option<String>>(3), None);
    let webhook_id: String = row.get(4);
    let got = rx.wait_for(1, WAIT);
    got[0].verify(&secret).unwrap();
    assert_eq!(got[0].id(), webhook_id);
    assert_eq!(got[0].json()["type"], "g.ping");
    assert_eq!(got[0].json()["data"]["type"], "PING");
    assert_eq!(status_counts(&mut db), "", "a ping queues nothing");

    // A failing endpoint: the status comes back, nothing is retried.
    db.batch_execute(&format!(
        "UPDATE webhook._subscriptions SET url = '{}'",
        rx.url("/down")
    ))
    .unwrap();
    let row = db
        .query_one("SELECT delivered, status_code FROM webhook.ping('g')", &[])
        .unwrap();
    assert!(!row.get::<_, bool>(0));
    assert_eq!(row.get::<_, Option<i32>>(1), Some(503));

    // The address policy applies to pings as to deliveries.
    db.batch_execute("UPDATE webhook._subscriptions SET url = 'http://10.1.2.3/x'")
        .unwrap();
    let row = db
        .query_one("SELECT delivered, error FROM webhook.ping('g')", &[])
        .unwrap();
    assert!(!row.get::<_, bool>(0));
    let error: String = row.get(1);
    assert!(error.contains("10.1.2.3"), "{error}");

    let e = db
        .query_one("SELECT * FROM webhook.ping('nope')", &[])
        .unwrap_err();
    assert!(
        format!("{:?}", e.as_db_error()).contains("does not exist"),
        "{e:?}"
    );
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
