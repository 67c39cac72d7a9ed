//! Backfills that are stopped: canceled, crashed, killed, unsubscribed, failing. Each resumes
//! where it was or stops for good, with no row missing and none queued twice.

mod support;

use support::backfill::{backfilled, state, wait_all, wait_state};
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe, text, WAIT};

#[test]
fn a_canceled_backfill_queues_nothing_more() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(
        &mut db,
        "CREATE TABLE big (id int PRIMARY KEY, pad text);
         INSERT INTO big SELECT g, repeat('x', 20) FROM generate_series(1, 12000) g;",
    );
    subscribe(&mut db, "big", "big", &rx.url("/b"), "");
    // Paused: nothing is delivered, so the backfill stops 5,000 events ahead of its receiver.
    exec(
        &mut db,
        "SELECT webhook.pause('big'); SELECT * FROM webhook.backfill('big')",
    );
    wait_until(WAIT, "the backfill to wait for its receiver", || {
        count(&mut db, "SELECT rows_sent FROM webhook.backfills") >= 5000
    });
    assert_eq!(
        text(&mut db, "SELECT webhook.cancel_backfill('big')::text").as_deref(),
        Some("true")
    );
    assert_eq!(state(&mut db, "big"), "canceled");
    assert_eq!(
        text(&mut db, "SELECT last_error FROM webhook.backfills").as_deref(),
        Some("canceled by postgres")
    );
    assert_eq!(
        text(&mut db, "SELECT webhook.cancel_backfill('big')::text").as_deref(),
        Some("false"),
        "nothing is running any more"
    );
    let sent = count(&mut db, "SELECT rows_sent FROM webhook.backfills");
    assert!((5000..12000).contains(&sent), "{sent}");
    exec(&mut db, "SELECT webhook.resume('big')");
    wait_all(&rx, sent as usize, "the canceled backfill's queued events");
    // A live change after everything: once it is in, nothing more came from the backfill.
    exec(&mut db, "INSERT INTO big VALUES (100000, 'marker')");
    wait_until(WAIT, "the marker", || rx.accepted_ids().contains(&100000));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(state(&mut db, "big"), "canceled");
    let seen = backfilled(&rx);
    assert_eq!(seen.len() as i64, sent, "exactly the rows it counted");
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE op = 'BACKFILL'"
        ),
        sent
    );
}

#[test]
fn a_backfill_resumes_after_a_crash_with_no_row_missing() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(
        &mut db,
        "CREATE TABLE big (id int PRIMARY KEY, pad text);
         INSERT INTO big SELECT g, repeat('y', 20) FROM generate_series(1, 12000) g;",
    );
    subscribe(&mut db, "big", "big", &rx.url("/b"), "");
    exec(
        &mut db,
        "SELECT webhook.pause('big'); SELECT * FROM webhook.backfill('big')",
    );
    wait_until(WAIT, "the backfill to be part way", || {
        count(&mut db, "SELECT rows_sent FROM webhook.backfills") >= 5000
    });
    let before = count(&mut db, "SELECT rows_sent FROM webhook.backfills");
    assert!(before < 12000, "{before}");
    drop(db);
    pg.stop("immediate");
    pg.pg_ctl_start();
    let mut db = pg.connect("postgres");
    assert_eq!(state(&mut db, "big"), "running");
    exec(&mut db, "SELECT webhook.resume('big')");
    wait_state(&mut db, "big", "done");
    assert_eq!(
        count(&mut db, "SELECT rows_sent FROM webhook.backfills"),
        12000
    );
    wait_all(&rx, 12000, "every row");
    let seen = backfilled(&rx);
    assert_eq!(seen.len(), 12000, "every row arrived");
    assert_eq!(seen.keys().min(), Some(&1));
    assert_eq!(seen.keys().max(), Some(&12000));
    // At least once: a resend after the crash keeps its webhook-id, so no row was queued twice.
    let ids: std::collections::HashSet<String> = rx
        .accepted()
        .iter()
        .filter(|r| r.json()["type"] == "BACKFILL")
        .map(|r| r.id())
        .collect();
    assert_eq!(ids.len(), 12000, "one webhook-id per row");
}

#[test]
fn a_worker_killed_while_it_backfills_resumes_with_no_row_missing() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(
        &mut db,
        "CREATE TABLE big (id int PRIMARY KEY, pad text);
         INSERT INTO big SELECT g, repeat('z', 20) FROM generate_series(1, 20000) g;",
    );
    subscribe(&mut db, "big", "big", &rx.url("/b"), "");
    // The runner (which also calls callbacks) runs the chunks.
    let worker = pg.callback_runner_pid(&mut db);
    exec(&mut db, "SELECT * FROM webhook.backfill('big')");
    wait_until(WAIT, "the backfill to be under way", || {
        count(&mut db, "SELECT rows_sent FROM webhook.backfills") > 0
    });
    // SIGKILL of a backend: the postmaster resets every process, as after a crash.
    pg.kill("KILL", worker);
    wait_until(WAIT, "the server to reset every session", || {
        db.simple_query("SELECT 1").is_err()
    });
    let mut db = pg.connect("postgres");
    wait_state(&mut db, "big", "done");
    assert_eq!(
        count(&mut db, "SELECT rows_sent FROM webhook.backfills"),
        20000
    );
    wait_all(&rx, 20000, "every row");
    let seen = backfilled(&rx);
    assert_eq!(seen.len(), 20000, "every row arrived");
    let ids: std::collections::HashSet<String> = rx
        .accepted()
        .iter()
        .filter(|r| r.json()["type"] == "BACKFILL")
        .map(|r| r.id())
        .collect();
    assert_eq!(
        ids.len(),
        20000,
        "one webhook-id per row: no chunk was queued twice"
    );
    assert!(
        pg.log().contains("was terminated by signal 9"),
        "the runner was killed mid-backfill"
    );
}

#[test]
fn unsubscribing_ends_a_running_backfill_and_its_queued_events_still_go() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY);
         INSERT INTO t SELECT g FROM generate_series(1, 8000) g;",
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(
        &mut db,
        "SELECT webhook.pause('t'); SELECT * FROM webhook.backfill('t')",
    );
    wait_until(WAIT, "the backfill to wait for its receiver", || {
        count(&mut db, "SELECT rows_sent FROM webhook.backfills") >= 5000
    });
    exec(&mut db, "SELECT webhook.unsubscribe('t')");
    wait_state(&mut db, "t", "canceled");
    assert_eq!(
        text(&mut db, "SELECT last_error FROM webhook.backfills").as_deref(),
        Some("subscription \"t\" was unsubscribed")
    );
    let sent = count(&mut db, "SELECT rows_sent FROM webhook.backfills");
    assert!(sent < 8000, "{sent}");
    // Queued events of an unsubscribed subscription are still delivered, parked ones too.
    wait_all(&rx, sent as usize, "the backfill's queued events");
    assert_eq!(backfilled(&rx).len() as i64, sent);
}

/// A cluster whose table t has rows 1..=`rows` and a subscription to a receiver.
fn t_subscribed_with_rows(rows: i64) -> (Cluster, postgres::Client, Receiver) {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    subscribed_with_rows(&mut db, &rx, "t", rows);
    (pg, db, rx)
}

/// Table `name` with rows 1..=`rows`, and a subscription of the same name to `rx`.
fn subscribed_with_rows(db: &mut postgres::Client, rx: &Receiver, name: &str, rows: i64) {
    exec(
        db,
        &format!(
            "CREATE TABLE {name} (id int PRIMARY KEY);
             INSERT INTO {name} SELECT g FROM generate_series(1, {rows}) g;"
        ),
    );
    subscribe(db, name, name, &rx.url(&format!("/{name}")), "");
}

#[test]
fn a_filter_that_raises_fails_the_backfill_with_the_error() {
    let (_pg, mut db, rx) = t_subscribed_with_rows(2000);
    // Plans fine; divides by zero at row 1200, in the third chunk.
    exec(
        &mut db,
        "SELECT * FROM webhook.backfill('t', filter => '100 / (id - 1200) IS NOT NULL')",
    );
    wait_state(&mut db, "t", "failed");
    let error = text(&mut db, "SELECT last_error FROM webhook.backfills").unwrap_or_default();
    assert!(
        error.contains("a chunk failed 3 times in a row: division by zero"),
        "{error}"
    );
    // The first two chunks (rows 1..1000) committed and are delivered.
    assert_eq!(
        count(&mut db, "SELECT rows_sent FROM webhook.backfills"),
        1000
    );
    wait_all(&rx, 1000, "the chunks before the error");
    assert_eq!(backfilled(&rx).len(), 1000);
    // The subscription itself is unharmed.
    exec(&mut db, "INSERT INTO t VALUES (5000)");
    wait_until(WAIT, "a live insert after the failure", || {
        rx.accepted_ids().contains(&5000)
    });
}

#[test]
fn a_slow_backfill_filter_is_cancelled_and_fails_the_backfill() {
    // The chunk runs on the runner's main thread, where other owners' work waits for it.
    let (_pg, mut db, rx) = t_subscribed_with_rows(10);
    // A second and a half a row: fifteen seconds a chunk, if nothing stopped it, longer than
    // the 2, 4 and 8 s its three tries get.
    exec(
        &mut db,
        "SELECT * FROM webhook.backfill('t', filter => 'pg_catalog.pg_sleep(1.5 + id * 0) IS NOT NULL')",
    );
    wait_state(&mut db, "t", "failed");
    let error = text(&mut db, "SELECT last_error FROM webhook.backfills").unwrap_or_default();
    assert!(
        error.contains(
            "a chunk failed 3 times in a row: canceling statement due to statement timeout"
        ),
        "{error}"
    );
    exec(&mut db, "INSERT INTO t VALUES (5000)");
    wait_until(WAIT, "a live insert after the failure", || {
        rx.accepted_ids().contains(&5000)
    });
}

#[test]
fn a_backfill_filter_that_could_catch_its_cancel_is_refused() {
    // Only a procedural-language function can catch a cancel and go on, and filters run
    // none (see tests/procedural_functions.rs): the watchdog that ends a worker whose chunk
    // outlives its cancel is left for a superuser's C function.
    let (_pg, mut db, _rx) = t_subscribed_with_rows(10);
    exec(
        &mut db,
        "CREATE FUNCTION stubborn(id int) RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
         SET search_path = pg_catalog AS $$
         BEGIN
             LOOP
                 BEGIN
                     PERFORM pg_catalog.pg_sleep(0.2);
                 EXCEPTION WHEN query_canceled THEN NULL;
                 END;
             END LOOP;
         END $$;",
    );
    let error = error_of(
        &mut db,
        "SELECT * FROM webhook.backfill('t', filter => 'public.stubborn(id)')",
    );
    assert!(
        error.contains("would run function public.stubborn(integer), written in plpgsql"),
        "{error}"
    );
}

#[test]
fn a_backfill_records_the_role_that_started_it_and_the_one_that_canceled_it() {
    let pg = Cluster::start(&[]);
    let mut su = pg.client_with_extension();
    support::bob::bob_reads_ledger(&mut su);
    exec(
        &mut su,
        "INSERT INTO ledger SELECT g, 'b', 's' FROM generate_series(1, 6000) g",
    );
    let rx = Receiver::start();
    let mut bob = pg.connect_as("postgres", "bob");
    subscribe(&mut bob, "l", "ledger", &rx.url("/l"), "");
    // Paused: the backfill stops 5,000 events ahead of its receiver and keeps running.
    exec(
        &mut bob,
        "SELECT webhook.pause('l'); SELECT * FROM webhook.backfill('l')",
    );
    assert_eq!(
        text(&mut su, "SELECT started_by::text FROM webhook.backfills").as_deref(),
        Some("bob")
    );
    wait_until(WAIT, "the backfill to wait for its receiver", || {
        count(&mut su, "SELECT rows_sent FROM webhook.backfills") >= 5000
    });
    exec(&mut bob, "SELECT webhook.cancel_backfill('l')");
    assert_eq!(
        text(&mut su, "SELECT last_error FROM webhook.backfills").as_deref(),
        Some("canceled by bob")
    );
}

#[test]
fn a_backfill_whose_runner_ends_three_times_mid_round_fails_saying_so() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(
        &mut db,
        "CREATE TABLE slow (id int PRIMARY KEY);
         INSERT INTO slow SELECT generate_series(1, 100000);",
    );
    subscribe(&mut db, "slow", "slow", &rx.url("/s"), "");
    // A chunk of 500 rows sleeps ~0.5 s in its filter: time to end its runner in.
    exec(
        &mut db,
        "SELECT * FROM webhook.backfill('slow',
             filter => $f$ pg_catalog.pg_sleep(0.001)::text = '' $f$)",
    );
    // Each runner seen in a round is ended as the watchdog ends one (SIGTERM), once.
    let mut ended = std::collections::HashSet::new();
    wait_until(support::LONG_WAIT, "the backfill to fail", || {
        if state(&mut db, "slow") == "failed" {
            return true;
        }
        let pid = count(
            &mut db,
            "SELECT COALESCE(max(pid), 0)::bigint FROM webhook._backfill_rounds",
        ) as i32;
        if pid != 0 && ended.insert(pid) {
            pg.kill("TERM", pid);
        }
        false
    });
    let error = text(&mut db, "SELECT last_error FROM webhook.backfills").unwrap_or_default();
    assert!(
        error.starts_with("its runner ended while running its chunks 3 times"),
        "{error}"
    );
}
