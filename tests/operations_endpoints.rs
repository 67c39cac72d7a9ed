//! Operating a subscription's endpoint against a real cluster and receiver: secret rotation
//! (both secrets sign during the overlap), ping, and the stats view; and TRUNCATE, an event
//! kind a subscription asks for.

mod support;

use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{count, status_counts, subscribe, WAIT};

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
