//! How events are sent, per subscription: ordered delivery under concurrent writers, a
//! subscription's own concurrency and rate limits, and bad delivery options refused with the
//! reason.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::subscribe;

/// Ordered delivery with retries takes longer than most.
const WAIT: Duration = support::LONG_WAIT;

/// Writers commit in an order the test learns from a counter each transaction bumps after its
/// captured INSERT (so the bump happens while the transaction holds the ordered lock). Delivery
/// must follow that order exactly, although transaction ids and event id blocks are taken in
/// another order, and one event that fails twice holds back every event behind it.
#[test]
fn ordered_delivery_follows_commit_order_one_at_a_time() {
    let pg = Cluster::start(&[
        "pg_webhook.workers = 2",
        "pg_webhook.poll_interval = '100ms'",
    ]);
    let mut db = pg.client_with_extension();
    db.batch_execute(
        "CREATE TABLE ledger (writer int, k int, PRIMARY KEY (writer, k));
         CREATE TABLE commit_counter (n int); INSERT INTO commit_counter VALUES (0)",
    )
    .unwrap();
    // Writer 1's fifth row fails twice, then succeeds.
    let failures = Arc::new(Mutex::new(0));
    let seen = failures.clone();
    let rx = Receiver::with(move |req, _| {
        let record = &req.json()["record"];
        if record["writer"] == 1 && record["k"] == 5 {
            let mut n = seen.lock().unwrap();
            if *n < 2 {
                *n += 1;
                return Reply::Status(503);
            }
        }
        Reply::Delay(Duration::from_millis(2), 204)
    });
    subscribe(
        &mut db,
        "ledger",
        "ledger",
        &rx.url("/ledger"),
        ", events => ARRAY['insert'], ordered => true, retry_schedule => ARRAY['200 milliseconds']::interval[], max_attempts => 5",
    );
    let position: Arc<Mutex<HashMap<(i32, i32), i32>>> = Arc::default();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut c = pg.connect("postgres");
            let position = position.clone();
            std::thread::spawn(move || {
                for k in 0..25 {
                    let mut t = c.transaction().unwrap();
                    t.execute("INSERT INTO ledger VALUES ($1, $2)", &[&w, &k])
                        .unwrap();
                    // Let other writers take transaction ids and event ids meanwhile.
                    std::thread::sleep(Duration::from_millis((w as u64 * 7 + k as u64) % 4));
                    let n: i32 = t
                        .query_one("UPDATE commit_counter SET n = n + 1 RETURNING n", &[])
                        .unwrap()
                        .get(0);
                    t.commit().unwrap();
                    position.lock().unwrap().insert((w, k), n);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    // 100 events, one of them failing twice before it succeeds.
    let deadline = std::time::Instant::now() + WAIT;
    while rx.accepted().len() < 100 {
        if std::time::Instant::now() > deadline {
            let events: Vec<String> = db
                .query(
                    "SELECT id || ' ' || status || ' ' || attempts || ' ' || COALESCE(last_error, '') FROM webhook.events WHERE status <> 'delivered'",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            panic!(
                "{} requests so far; undelivered: {events:?}\n{}",
                rx.count(),
                pg.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let position = position.lock().unwrap();
    let order: Vec<i32> = rx
        .accepted()
        .iter()
        .map(|r| {
            let rec = &r.json()["record"];
            let key = (
                rec["writer"].as_i64().unwrap() as i32,
                rec["k"].as_i64().unwrap() as i32,
            );
            position[&key]
        })
        .collect();
    assert_eq!(order.len(), 100, "every event once");
    assert_eq!(
        order,
        (1..=100).collect::<Vec<i32>>(),
        "delivered in commit order"
    );
    assert_eq!(
        rx.peak_concurrency(),
        1,
        "one request at a time for an ordered subscription"
    );
    // Nothing overtook the failing event: its three attempts are consecutive requests.
    let requests = rx.requests();
    let attempts: Vec<usize> = requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.json()["record"]["writer"] == 1 && r.json()["record"]["k"] == 5)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[2] - attempts[0], 2, "{attempts:?}");
}

#[test]
fn a_subscription_keeps_to_its_own_concurrency_and_rate_limits() {
    let pg = Cluster::start(&[
        "pg_webhook.workers = 2",
        "pg_webhook.poll_interval = '100ms'",
    ]);
    let mut db = pg.client_with_extension();
    db.batch_execute(
        "CREATE TABLE slow (id int PRIMARY KEY); CREATE TABLE paced (id int PRIMARY KEY)",
    )
    .unwrap();
    let slow = Receiver::with(|_, _| Reply::Delay(Duration::from_millis(100), 204));
    let paced = Receiver::start();
    subscribe(
        &mut db,
        "slow",
        "slow",
        &slow.url("/slow"),
        ", max_in_flight => 2",
    );
    subscribe(
        &mut db,
        "paced",
        "paced",
        &paced.url("/paced"),
        ", rate_limit => 20",
    );
    db.batch_execute(
        "INSERT INTO slow SELECT generate_series(1, 20);
         INSERT INTO paced SELECT generate_series(1, 30)",
    )
    .unwrap();
    let got = slow.wait_for(20, WAIT);
    assert_eq!(got.len(), 20);
    assert!(
        slow.peak_concurrency() <= 2,
        "max_in_flight 2, saw {}",
        slow.peak_concurrency()
    );
    let got = paced.wait_for(30, WAIT);
    let span = got.last().unwrap().at - got.first().unwrap().at;
    // 30 events at 20/s need 29 intervals of 50 ms after the first one's slot (1.45 s). The
    // bound leaves a few intervals for the first arriving late (a new connection on a loaded
    // machine); without the limit all 30 go out within milliseconds.
    assert!(
        span >= Duration::from_millis(1200),
        "30 events at 20/s went out in {span:?}"
    );
    wait_until(WAIT, "everything recorded as delivered", || {
        db.query_one(
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
            == 50
    });
}

#[test]
fn bad_delivery_options_are_refused_with_the_reason() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    let cases = [
        (", max_in_flight => 0", "max_in_flight of 0 is out of range"),
        (
            ", rate_limit => -1",
            "rate_limit of -1 events per second is out of range",
        ),
        (", rate_limit => 'NaN'", "out of range"),
        (
            ", ordered => true, max_in_flight => 4",
            "ordered delivery sends one event at a time",
        ),
        (
            ", callback => 'pg_catalog.now()'::regprocedure",
            "must be a function taking one jsonb argument",
        ),
    ];
    for (extra, message) in cases {
        let e = db
            .query_one(
                &format!(
                    "SELECT * FROM webhook.subscribe('t', 't', 'http://127.0.0.1:9/x'{extra})"
                ),
                &[],
            )
            .unwrap_err();
        let text = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(text.contains(message), "{extra}: {text}");
    }
    let count: i64 = db
        .query_one("SELECT count(*) FROM webhook.subscriptions", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
}
