//! The worker against crashes, signals, bad receivers and users changing things under it. In
//! every case: the worker keeps going, and no committed event is lost.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{count, subscribe, WAIT};

/// record id -> the webhook-ids it arrived with.
fn ids_by_row(rx: &Receiver) -> HashMap<i64, HashSet<String>> {
    let mut map: HashMap<i64, HashSet<String>> = HashMap::new();
    for r in rx.requests() {
        if let Some(id) = r.json()["record"]["id"].as_i64() {
            map.entry(id).or_default().insert(r.id());
        }
    }
    map
}

#[test]
fn an_immediate_stop_with_events_in_flight_loses_nothing() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    // Every request hangs, so events are in flight when the server dies.
    let rx = Receiver::with(|_, _| Reply::Hang(Duration::from_secs(30)));
    db.batch_execute("CREATE TABLE c (id int PRIMARY KEY)")
        .unwrap();
    subscribe(
        &mut db,
        "c_hook",
        "c",
        &rx.url("/c"),
        ", timeout => '20 seconds'",
    );
    for chunk in 0..10 {
        db.batch_execute(&format!(
            "INSERT INTO c SELECT g FROM generate_series({}, {}) g",
            chunk * 20 + 1,
            chunk * 20 + 20
        ))
        .unwrap();
    }
    rx.wait_for(20, WAIT);
    drop(db);
    pg.stop("immediate");
    rx.set(|_, _| Reply::Status(204));
    pg.pg_ctl_start();

    wait_until(WAIT, "all 200 rows delivered after the restart", || {
        ids_by_row(&rx).len() == 200
    });
    for (row, ids) in ids_by_row(&rx) {
        assert_eq!(
            ids.len(),
            1,
            "row {row} arrived under different webhook-ids: {ids:?}"
        );
    }
    let mut db = pg.connect("postgres");
    wait_until(WAIT, "the queue to drain", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 200
    });
}

#[test]
fn the_worker_survives_hanging_garbled_and_resetting_receivers() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::with(|req, _| match req.path.as_str() {
        "/hang" => Reply::Hang(Duration::from_secs(5)),
        "/garbage" => Reply::Raw(b"THIS IS NOT HTTP\r\n\r\n".to_vec()),
        "/reset" => Reply::Drop,
        "/half" => Reply::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort".to_vec()),
        "/huge" => Reply::Full {
            status: 500,
            headers: vec![],
            body: "x".repeat(2_000_000),
        },
        _ => Reply::Status(204),
    });
    let worker = pg.worker_pid(&mut db);
    db.batch_execute("CREATE TABLE s (id int PRIMARY KEY)")
        .unwrap();
    let once = ", timeout => '300 milliseconds', max_attempts => 1";
    for path in ["hang", "garbage", "reset", "half", "huge", "ok"] {
        subscribe(&mut db, path, "s", &rx.url(&format!("/{path}")), once);
    }
    db.batch_execute("INSERT INTO s VALUES (1)").unwrap();
    wait_until(WAIT, "every event to finish", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status <> 'pending'",
        ) == 6
    });
    let rows = db
        .query(
            "SELECT s.name, e.status, a.status_code, a.error, length(a.response_excerpt)
               FROM webhook.events e
               JOIN webhook.subscriptions s ON s.id = e.subscription_id
               JOIN webhook.attempts a ON a.event_id = e.id",
            &[],
        )
        .unwrap();
    let by_name: HashMap<String, _> = rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                (
                    r.get::<_, String>(1),
                    r.get::<_, Option<i32>>(2),
                    r.get::<_, Option<String>>(3),
                    r.get::<_, Option<i32>>(4),
                ),
            )
        })
        .collect();
    assert_eq!(by_name["ok"].0, "delivered");
    for name in ["hang", "garbage", "reset", "huge"] {
        assert_eq!(by_name[name].0, "dead", "{name}: {:?}", by_name[name]);
    }
    assert!(by_name["hang"].2.as_deref().unwrap().contains("timed out"));
    assert!(by_name["garbage"].2.is_some());
    assert_eq!(by_name["huge"].1, Some(500));
    assert_eq!(by_name["huge"].3, Some(1024), "the excerpt is bounded");
    // A 200 whose body breaks off still counts as delivered; the break is noted.
    assert_eq!(by_name["half"].0, "delivered");
    assert!(by_name["half"]
        .2
        .as_deref()
        .unwrap()
        .contains("reading response body"));
    assert_eq!(pg.worker_pid(&mut db), worker, "the worker never restarted");
}

#[test]
fn the_worker_comes_back_after_sigterm_and_sigkill() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute("CREATE TABLE k (id int PRIMARY KEY)")
        .unwrap();
    subscribe(&mut db, "k_hook", "k", &rx.url("/k"), "");
    db.batch_execute("INSERT INTO k VALUES (1)").unwrap();
    rx.wait_for(1, WAIT);

    let first = pg.worker_pid(&mut db);
    db.execute("SELECT pg_terminate_backend($1)", &[&first])
        .unwrap();
    wait_until(WAIT, "a new worker after SIGTERM", || {
        pg.worker_pid(&mut db) != first
    });
    db.batch_execute("INSERT INTO k VALUES (2)").unwrap();
    rx.wait_for(2, WAIT);

    // SIGKILL makes the postmaster reset every backend, this connection included.
    let second = pg.worker_pid(&mut db);
    db.batch_execute("INSERT INTO k VALUES (3)").unwrap();
    pg.kill("KILL", second);
    drop(db);
    std::thread::sleep(Duration::from_secs(1));
    let mut db = pg.connect("postgres");
    wait_until(WAIT, "a new worker after SIGKILL", || {
        pg.worker_pid(&mut db) != second
    });
    db.batch_execute("INSERT INTO k VALUES (4)").unwrap();
    wait_until(WAIT, "rows 1-4 delivered", || ids_by_row(&rx).len() == 4);
    let log = pg.log();
    assert!(
        log.contains("terminating background worker \"pg_webhook\" due to administrator command"),
        "{log}"
    );
}

#[test]
fn a_reload_applies_new_settings_without_a_restart() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    let worker = pg.worker_pid(&mut db);
    db.batch_execute("CREATE TABLE h (id int PRIMARY KEY)")
        .unwrap();
    subscribe(&mut db, "h_hook", "h", &rx.url("/h"), ", max_attempts => 1");
    db.batch_execute("INSERT INTO h VALUES (1)").unwrap();
    rx.wait_for(1, WAIT);

    // Loopback is no longer allowed after this reload: the next event is refused, not sent.
    db.batch_execute("ALTER SYSTEM SET pg_webhook.allowed_destinations = ''")
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    db.batch_execute("INSERT INTO h VALUES (2)").unwrap();
    wait_until(WAIT, "the refused event to die", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'dead'",
        ) == 1
    });
    let error: String = db
        .query_one(
            "SELECT error FROM webhook.attempts WHERE outcome = 'dead'",
            &[],
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
    std::thread::sleep(Duration::from_millis(500));
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

#[test]
fn deliveries_run_concurrently_up_to_the_limit() {
    let pg = Cluster::start(&["pg_webhook.max_in_flight = 16"]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::with(|_, _| Reply::Delay(Duration::from_millis(300), 204));
    db.batch_execute("CREATE TABLE p (id int PRIMARY KEY)")
        .unwrap();
    subscribe(&mut db, "p_hook", "p", &rx.url("/p"), "");
    db.batch_execute("INSERT INTO p SELECT generate_series(1, 64)")
        .unwrap();
    wait_until(WAIT, "64 deliveries", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 64
    });
    let peak = rx.peak_concurrency();
    assert!(peak >= 8, "requests overlapped: peak {peak}");
    assert!(
        peak <= 16,
        "pg_webhook.max_in_flight is a ceiling: peak {peak}"
    );
    assert!(
        rx.connections() <= 16,
        "connections are pooled: {}",
        rx.connections()
    );
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
    subscribe(
        &mut db,
        "r_hook",
        "r",
        &rx.url("/r"),
        ", retry_schedule => ARRAY['1 second']::interval[], max_attempts => 100",
    );
    // Loopback is refused from now on, as on a node that missed the setting.
    db.batch_execute("ALTER SYSTEM SET pg_webhook.allowed_destinations = ''")
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(500));
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
            "SELECT count(*) FROM webhook.events WHERE status = 'dead'"
        ),
        0,
        "a refused destination must not kill the event"
    );
    let log = pg.log();
    assert_eq!(
        log.matches("destination refused").count(),
        1,
        "the refusal is logged once per subscription, not per attempt: {log}"
    );
    // The setting is fixed: the next retry goes through.
    db.batch_execute("ALTER SYSTEM RESET pg_webhook.allowed_destinations")
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["record"]["id"].as_i64(), Some(1));
    wait_until(WAIT, "the event to be recorded delivered", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered' AND attempts >= 3",
        ) == 1
    });
}
