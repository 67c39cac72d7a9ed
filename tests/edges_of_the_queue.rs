//! Ways to lose or stall events at the edges of the queue: outcomes that cannot be recorded,
//! the queue rewritten (VACUUM FULL, pg_repack, an UPDATE) while its requests are in flight,
//! pausing, resuming and unsubscribing around queued events, and a backlog of large rows. One
//! scenario per test; each fails on a pg_webhook that loses or stalls them.

mod support;

use std::time::{Duration, Instant};

use support::cluster::{wait_until, Cluster};
use support::events::{accepted_ids, wait_for_ids};
use support::receiver::{Receiver, Reply, Request};
use support::{count, exec, subscribe, text, WAIT};

#[test]
fn outcomes_that_cannot_be_recorded_are_kept_and_never_resent() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    // The archive refuses every insert for a while: outcomes cannot be recorded.
    exec(
        &mut db,
        "CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'archive closed for maintenance'; END $$;
         CREATE TRIGGER closed BEFORE INSERT ON webhook._event_archive
             FOR EACH ROW EXECUTE FUNCTION public.refuse();
         INSERT INTO t SELECT generate_series(1, 10);",
    );
    wait_until(WAIT, "the worker to fail recording several times", || {
        pg.log().matches("archive closed for maintenance").count() >= 8
    });
    assert_eq!(rx.count(), 10, "sent once each while recording failed");
    exec(&mut db, "DROP TRIGGER closed ON webhook._event_archive");
    wait_until(WAIT, "the outcomes to be recorded", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 10
    });
    // A later event goes through normally; none of the first ten was sent again.
    exec(&mut db, "INSERT INTO t VALUES (11)");
    wait_for_ids(&rx, &[11], "the marker");
    assert_eq!(rx.count(), 11, "{:?}", accepted_ids(&rx));
}

#[test]
fn a_receiver_cannot_stop_outcomes_being_recorded() {
    // A NUL byte in the response cannot be stored as text; the event is recorded anyway, and
    // another subscription's outcomes with it.
    let pg = Cluster::start(&[]);
    let rx = Receiver::with(|req: &Request, _| {
        if req.path == "/evil" {
            Reply::Full {
                status: 500,
                headers: vec![],
                body: "bad\0body".into(),
            }
        } else {
            Reply::Status(204)
        }
    });
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(
        &mut db,
        "evil",
        "t",
        &rx.url("/evil"),
        ", max_attempts => 1",
    );
    subscribe(&mut db, "good", "t", &rx.url("/good"), "");
    exec(&mut db, "INSERT INTO t SELECT generate_series(1, 5)");
    wait_until(WAIT, "all ten events to finish", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status <> 'pending'",
        ) == 10
    });
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'dead'"
        ),
        5
    );
    assert_eq!(rx.count(), 10, "no request was sent twice");
}

#[test]
fn unsubscribing_a_paused_subscription_still_delivers_its_events() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE u (id int PRIMARY KEY)",
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    subscribe(&mut db, "u", "u", &rx.url("/u"), "");
    exec(
        &mut db,
        "SELECT webhook.pause('t'); SELECT webhook.pause('u');
         INSERT INTO t SELECT generate_series(1, 5);
         INSERT INTO u SELECT generate_series(11, 15);",
    );
    wait_until(WAIT, "the events to be parked", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'parked'",
        ) == 10
    });
    exec(&mut db, "SELECT webhook.unsubscribe('t'); DROP TABLE u;");
    wait_for_ids(
        &rx,
        &[1, 2, 3, 4, 5, 11, 12, 13, 14, 15],
        "every queued event",
    );
}

/// Events whose requests are in flight (the receiver holds them) while the queue is rewritten.
fn rewrite_while_in_flight(rewrite: &str, extra: &[&str], setup: &str) {
    let pg = Cluster::start(extra);
    let rx = Receiver::with(|_, _| Reply::Delay(Duration::from_millis(1500), 204));
    let mut db = pg.client_with_extension();
    exec(&mut db, setup);
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(&mut db, "INSERT INTO t SELECT generate_series(1, 20)");
    wait_until(WAIT, "the requests to be in flight", || rx.count() == 20);
    let rewritten = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            rewrite
                .replace("{port}", &pg.port.to_string())
                .replace("{bin}", &pg.bin("")),
        )
        .output()
        .expect("running the rewrite");
    assert!(
        rewritten.status.success(),
        "{rewrite}: {}{}",
        String::from_utf8_lossy(&rewritten.stdout),
        String::from_utf8_lossy(&rewritten.stderr)
    );
    wait_until(WAIT, "every outcome to be recorded", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 20
    });
    exec(&mut db, "INSERT INTO t VALUES (21)");
    wait_for_ids(&rx, &[21], "the marker");
    assert_eq!(
        rx.count(),
        21,
        "an event was sent twice: {:?}",
        accepted_ids(&rx)
    );
}

#[test]
fn vacuum_full_of_the_queue_loses_no_outcome() {
    rewrite_while_in_flight(
        "{bin}psql -h 127.0.0.1 -p {port} -U postgres -d postgres -v ON_ERROR_STOP=1 -c 'VACUUM FULL webhook._event_queue' -c 'CLUSTER webhook._event_queue USING event_queue_key'",
        &[],
        "",
    );
}

#[test]
fn pg_repack_of_the_queue_loses_no_outcome() {
    rewrite_while_in_flight(
        "{bin}pg_repack -h 127.0.0.1 -p {port} -U postgres -d postgres -t webhook._event_queue",
        &[],
        "CREATE EXTENSION pg_repack",
    );
}

/// The worker records an outcome where the claim found the row, then by key for the rows that
/// were not there (src/queue/outcomes.rs): here half the rows have a new version by then.
#[test]
fn an_update_of_the_queued_rows_loses_no_outcome() {
    rewrite_while_in_flight(
        "{bin}psql -h 127.0.0.1 -p {port} -U postgres -d postgres -v ON_ERROR_STOP=1 -c 'UPDATE webhook._event_queue SET last_error = last_error WHERE id % 2 = 0'",
        &[],
        "",
    );
}

#[test]
fn pausing_does_not_park_a_request_in_flight() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let attempts = std::sync::Mutex::new(0);
    let rx = Receiver::with(move |req: &Request, _| {
        if req.json()["record"]["id"] != 1 {
            return Reply::Status(204);
        }
        let mut n = attempts.lock().unwrap();
        *n += 1;
        match *n {
            1 => Reply::Status(503),
            // The retry is slow: the subscription is paused while it is in flight.
            _ => Reply::Delay(Duration::from_millis(2000), 204),
        }
    });
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", retry_schedule => ARRAY['100 milliseconds']::interval[]",
    );
    exec(&mut db, "INSERT INTO t VALUES (1)");
    rx.wait_for(2, WAIT);
    exec(&mut db, "SELECT webhook.pause('t')");
    wait_until(WAIT, "the slow retry to be recorded", || {
        text(
            &mut db,
            "SELECT status FROM webhook.events WHERE record->>'id' = '1'",
        )
        .as_deref()
            == Some("delivered")
    });
    exec(
        &mut db,
        "SELECT webhook.resume('t'); INSERT INTO t VALUES (2)",
    );
    wait_for_ids(&rx, &[2], "the marker");
    assert_eq!(
        rx.count(),
        3,
        "the delivered event was sent again after the resume"
    );
}

#[test]
fn resume_in_a_repeatable_read_transaction_strands_nothing() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(&mut db, "SELECT webhook.pause('t')");
    let mut resumer = pg.connect("postgres");
    // Its snapshot is taken before the events exist and are parked.
    exec(
        &mut resumer,
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1;",
    );
    exec(&mut db, "INSERT INTO t SELECT generate_series(1, 5)");
    wait_until(WAIT, "the events to be parked", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'parked'",
        ) == 5
    });
    exec(&mut resumer, "SELECT webhook.resume('t'); COMMIT;");
    wait_for_ids(&rx, &[1, 2, 3, 4, 5], "every parked event");
}

/// The worker's anonymous memory, in KiB.
fn rss_anon_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn a_backlog_of_large_rows_is_claimed_a_few_at_a_time() {
    let pg = Cluster::start(&[
        "pg_webhook.max_payload_bytes = '4MB'",
        "pg_webhook.max_in_flight = 500",
        "pg_webhook.batch_size = 500",
    ]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE big (id int PRIMARY KEY, body text)");
    subscribe(&mut db, "big", "big", &rx.url("/big"), "");
    exec(&mut db, "SELECT webhook.pause('big')");
    // 300 rows of about 1 MB that do not compress.
    exec(
        &mut db,
        "INSERT INTO big SELECT g, (SELECT string_agg(md5(g::text || ':' || i::text), '')
                                     FROM generate_series(1, 32000) i)
           FROM generate_series(1, 300) g",
    );
    let worker = pg.worker_pid(&mut db);
    let start = rss_anon_kib(worker);
    exec(&mut db, "SELECT webhook.resume('big')");
    let mut peak = start;
    let deadline = Instant::now() + Duration::from_secs(180);
    while count(&mut db, "SELECT count(*) FROM webhook._event_queue") > 0 {
        assert!(Instant::now() < deadline, "the backlog did not drain");
        peak = peak.max(rss_anon_kib(worker));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(rx.count(), 300);
    // Unbounded, one claim loads all 300 MB (and the request bodies built from them).
    assert!(
        peak - start < 200 * 1024,
        "the worker grew by {} MiB while draining 300 MB of rows",
        (peak - start) / 1024
    );
}
