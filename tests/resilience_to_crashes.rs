//! The worker against crashes, signals and bad receivers: an immediate stop with requests in
//! flight, SIGTERM and SIGKILL, receivers that hang, garble or reset, and many requests at
//! once. In every case: the worker keeps going, and no committed event is lost.

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
    // Only /hang's timeout is short: it must expire. The others' answers must not be cut short
    // by a loaded machine's scheduling (300 ms for all could kill "ok" or "huge").
    for path in ["hang", "garbage", "reset", "half", "huge", "ok"] {
        let timeout = if path == "hang" {
            "300 milliseconds"
        } else {
            "10 seconds"
        };
        let once = format!(", timeout => '{timeout}', max_attempts => 1");
        subscribe(&mut db, path, "s", &rx.url(&format!("/{path}")), &once);
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
