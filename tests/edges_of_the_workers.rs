//! Ways to stall events at the edges of pg_webhook's processes: numbers that could stop a
//! database's worker, callbacks whose function or event is gone, two writers of an ordered
//! table updating its rows in opposite orders, a worker whose launcher was restarted, and one
//! whose library file is missing. One scenario per test; each fails on a pg_webhook that loses
//! or stalls them (or starts a failing worker again without a pause).

mod support;

use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::events::wait_for_ids;
use support::receiver::Receiver;
use support::{count, describe, error_of, exec, subscribe, text, WAIT};

#[test]
fn bad_numbers_are_refused_and_cannot_stop_a_database() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    let base = "SELECT webhook.subscribe('x', 't', 'https://example.com/h'";
    for (arg, want) in [
        (
            "rate_limit => 1e-300",
            "rate_limit of 1e-300 events per second is out of range",
        ),
        ("rate_limit => 'NaN'", "rate_limit of NaN"),
        ("rate_limit => 'Infinity'", "rate_limit of inf"),
        ("rate_limit => '-Infinity'", "rate_limit of -inf"),
        ("rate_limit => 5e-324", "out of range"),
        ("rate_limit => 0", "out of range"),
        ("rate_limit => 1e300", "out of range"),
        ("max_in_flight => -1", "max_in_flight of -1 is out of range"),
        ("max_in_flight => 2147483647", "out of range"),
        ("max_attempts => 2147483647", "out of range"),
        (
            "timeout => '100000000 years'",
            "timeout of 1000000000000000 ms is out of range",
        ),
        ("timeout => '-100000000 years'", "out of range"),
        (
            "retry_schedule => ARRAY['100000000 years']::interval[]",
            "retry_schedule[1]",
        ),
    ] {
        let e = error_of(&mut db, &format!("{base}, {arg})"));
        assert!(e.contains(want), "{arg}: {e}");
    }
    let e = error_of(
        &mut db,
        "SELECT webhook.subscribe('y', 't', 'https://example.com/h'); SELECT webhook.rotate_secret('y', overlap => '100000000 years')",
    );
    assert!(
        e.contains("overlap of 1000000000000000 ms is out of range"),
        "{e}"
    );
    // A value that got in anyway (written by hand) limits its own subscription only.
    subscribe(&mut db, "odd", "t", &rx.url("/odd"), ", rate_limit => 1");
    subscribe(&mut db, "healthy", "t", &rx.url("/healthy"), "");
    exec(
        &mut db,
        "UPDATE webhook._subscriptions SET rate_limit = 1e-300, max_in_flight = 2147483647 WHERE name = 'odd';
         INSERT INTO t VALUES (1);",
    );
    wait_until(WAIT, "the healthy subscription's event", || {
        rx.requests().iter().any(|r| r.path == "/healthy")
    });
}

#[test]
fn one_dropped_callback_function_stops_no_other_callback() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE TABLE called (sub text, id int, status text);
         CREATE FUNCTION public.cb_a(e jsonb) RETURNS void LANGUAGE sql
             AS $$ INSERT INTO public.called VALUES ('a', (e->'record'->>'id')::int, e->>'status') $$;
         CREATE FUNCTION public.cb_b(e jsonb) RETURNS void LANGUAGE sql
             AS $$ INSERT INTO public.called VALUES ('b', (e->'record'->>'id')::int, e->>'status') $$;",
    );
    subscribe(
        &mut db,
        "a",
        "t",
        &rx.url("/a"),
        ", callback => 'public.cb_a(jsonb)'",
    );
    subscribe(
        &mut db,
        "b",
        "t",
        &rx.url("/b"),
        ", callback => 'public.cb_b(jsonb)'",
    );
    // The callback runner is stopped while both events finish, and a's function is dropped.
    let runner = pg.callback_runner_pid(&mut db);
    pg.kill("STOP", runner);
    exec(&mut db, "INSERT INTO t VALUES (1)");
    wait_until(WAIT, "both callbacks to be queued", || {
        count(&mut db, "SELECT count(*) FROM webhook._callback_queue") == 2
    });
    exec(&mut db, "DROP FUNCTION public.cb_a(jsonb)");
    pg.kill("CONT", runner);
    wait_until(WAIT, "b's callback", || {
        count(&mut db, "SELECT count(*) FROM called WHERE sub = 'b'") == 1
    });
    wait_until(WAIT, "a's failure on its event", || {
        text(
            &mut db,
            "SELECT callback_error FROM webhook.events WHERE subscription_id = (SELECT id FROM webhook.subscriptions WHERE name = 'a')",
        )
        .is_some_and(|e| e.contains("no longer exists"))
    });
    // The runner goes on: a later event of b is called back too.
    exec(&mut db, "INSERT INTO t VALUES (2)");
    wait_until(WAIT, "b's second callback", || {
        count(&mut db, "SELECT count(*) FROM called WHERE sub = 'b'") == 2
    });
}

#[test]
fn a_callback_whose_event_is_gone_is_not_run() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE TABLE called (id int, status text);
         CREATE FUNCTION public.cb(e jsonb) RETURNS void LANGUAGE sql
             AS $$ INSERT INTO public.called VALUES ((e->'record'->>'id')::int, e->>'status') $$;",
    );
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", callback => 'public.cb(jsonb)'",
    );
    let runner = pg.callback_runner_pid(&mut db);
    pg.kill("STOP", runner);
    exec(&mut db, "INSERT INTO t VALUES (1)");
    wait_until(WAIT, "the callback to be queued", || {
        count(&mut db, "SELECT count(*) FROM webhook._callback_queue") == 1
    });
    // Purged (as retention would) before the runner gets to it.
    exec(&mut db, "DELETE FROM webhook._event_archive");
    pg.kill("CONT", runner);
    exec(&mut db, "INSERT INTO t VALUES (2)");
    wait_until(WAIT, "the second event's callback", || {
        count(&mut db, "SELECT count(*) FROM called WHERE id = 2") == 1
    });
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM called"),
        1,
        "a callback ran for a purged event (with an all-null event)"
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM webhook._callback_queue"),
        0
    );
}

#[test]
fn two_writers_of_an_ordered_table_do_not_deadlock() {
    let pg = Cluster::start(&["deadlock_timeout = '200ms'"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0), (2, 0);",
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), ", ordered => true");
    let mut one = pg.connect("postgres");
    let mut two = pg.connect("postgres");
    exec(&mut one, "BEGIN; UPDATE t SET v = 1 WHERE id = 1;");
    let second = std::thread::spawn(move || {
        two.batch_execute(
            "BEGIN; UPDATE t SET v = 2 WHERE id = 2; UPDATE t SET v = 2 WHERE id = 1; COMMIT;",
        )
        .map_err(|e| describe(&e))
    });
    std::thread::sleep(Duration::from_millis(300));
    let first = one
        .batch_execute("UPDATE t SET v = 1 WHERE id = 2; COMMIT;")
        .map_err(|e| describe(&e));
    let second = second.join().expect("the second writer");
    assert!(first.is_ok(), "first writer: {first:?}");
    assert!(second.is_ok(), "second writer: {second:?}");
    rx.wait_for(4, WAIT);
}

#[test]
fn a_worker_adopted_by_a_restarted_launcher_is_restarted_when_it_dies() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    let worker = pg.worker_pid(&mut db);
    let launcher = count(
        &mut db,
        "SELECT pid::bigint FROM pg_stat_activity WHERE backend_type = 'pg_webhook launcher'",
    );
    exec(&mut db, &format!("SELECT pg_terminate_backend({launcher})"));
    wait_until(WAIT, "a new launcher", || {
        count(
            &mut db,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_webhook launcher' AND pid <> {launcher}"
            ),
        ) == 1
    });
    exec(&mut db, &format!("SELECT pg_terminate_backend({worker})"));
    wait_until(WAIT, "a new delivery worker", || {
        count(
            &mut db,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_webhook' AND pid <> {worker}"
            ),
        ) == 1
    });
    exec(&mut db, "INSERT INTO t VALUES (1)");
    wait_for_ids(&rx, &[1], "a delivery by the new worker");
}

/// While pg_webhook's library file is being replaced (`cargo pgrx install`, a package upgrade),
/// a worker started then fails before it begins ("could not access file"). The launcher started
/// it again at once, and the next failed the same way: a reinstall saw 32,000 processes started
/// in 75 s, each logging its failure. It now waits 1 s, then twice as long after each failure in
/// a row, up to 30 s, and the worker delivers once the file is back. The server here loads the
/// library through a link of its own (`dynamic_library_path`), which the test takes away.
#[test]
fn a_worker_whose_library_file_is_missing_is_started_again_after_a_pause() {
    let libs = std::env::temp_dir().join(format!("pg_webhook_libs_{}", std::process::id()));
    std::fs::create_dir_all(&libs).expect("a directory for the library link");
    let link = libs.join("pg_webhook.so");
    let relink = || {
        std::os::unix::fs::symlink(support::cluster::pkglib_dir().join("pg_webhook.so"), &link)
            .expect("linking the library")
    };
    relink();
    let pg = Cluster::start(&[&format!("dynamic_library_path = '{}'", libs.display())]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    let worker = pg.worker_pid(&mut db);
    std::fs::remove_file(&link).expect("taking the library link away");
    exec(&mut db, &format!("SELECT pg_terminate_backend({worker})"));
    wait_until(WAIT, "the launcher to wait 8 s after 4 failures", || {
        pg.log().contains(
            "the delivery worker 0 of database \"postgres\" stopped before it began its work (4 times in a row",
        )
    });
    let log = pg.log();
    let failed = log.matches("could not access file \"pg_webhook\"").count();
    assert!(
        (4..=6).contains(&failed),
        "{failed} processes failed to load the library in the launcher's first 7 s of pauses"
    );
    assert!(log.contains("(4 times in a row; the lines logged before this one say why, such as its library file missing while pg_webhook is being reinstalled); starting it again in 8 s"));
    relink();
    exec(&mut db, "INSERT INTO t VALUES (1)");
    wait_for_ids(&rx, &[1], "a delivery once the library file is back");
    std::fs::remove_dir_all(&libs).expect("removing the library link");
}
