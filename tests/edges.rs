//! Ways to lose or stall events at the edges: partitions, publications, pause and unsubscribe,
//! bad numbers, dropped callbacks, table rewrites, snapshots, lock order, launcher restarts and
//! large rows. One scenario per test; each fails on a pg_webhook that loses or stalls them.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply, Request};
use support::{count, describe, error_of, exec, subscribe, text, WAIT};

/// Record ids the receiver accepted, with how many accepted requests carried each.
fn accepted_ids(rx: &Receiver) -> HashMap<i64, usize> {
    let mut ids = HashMap::new();
    for r in rx.accepted() {
        if let Some(id) = r.json()["record"]["id"].as_i64() {
            *ids.entry(id).or_default() += 1;
        }
    }
    ids
}

/// Waits until the receiver accepted exactly these record ids (each at least once).
fn wait_for_ids(rx: &Receiver, ids: &[i64], what: &str) {
    wait_until(WAIT, what, || {
        let got = accepted_ids(rx);
        ids.iter().all(|id| got.contains_key(id))
    });
}

#[test]
fn writes_straight_into_partitions_are_captured_once_and_name_the_subscribed_table() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE pt (id int, at date, kind text) PARTITION BY RANGE (at);
         CREATE TABLE pt_2025 PARTITION OF pt FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         CREATE TABLE pt_2026 PARTITION OF pt FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')
             PARTITION BY LIST (kind);
         CREATE TABLE pt_2026_a PARTITION OF pt_2026 FOR VALUES IN ('a');
         CREATE TABLE pt_2026_b PARTITION OF pt_2026 FOR VALUES IN ('b');",
    );
    subscribe(&mut db, "pt", "pt", &rx.url("/pt"), "");
    exec(
        &mut db,
        "INSERT INTO pt VALUES (1, '2025-03-01', 'a');          -- through the parent
         INSERT INTO pt_2025 VALUES (2, '2025-04-01', 'a');     -- a leaf
         INSERT INTO pt_2026 VALUES (3, '2026-04-01', 'a');     -- a sub-partitioned level
         INSERT INTO pt_2026_b VALUES (4, '2026-04-01', 'b');   -- a leaf two levels down
         UPDATE pt_2025 SET kind = 'z' WHERE id = 2;
         DELETE FROM pt_2026_b WHERE id = 4;
         -- created, attached, and created after a detach:
         CREATE TABLE pt_2027 PARTITION OF pt FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
         INSERT INTO pt_2027 VALUES (5, '2027-01-01', 'a');
         CREATE TABLE loose (id int, at date, kind text);
         ALTER TABLE pt ATTACH PARTITION loose FOR VALUES FROM ('2028-01-01') TO ('2029-01-01');
         INSERT INTO loose VALUES (6, '2028-01-01', 'a');
         ALTER TABLE pt DETACH PARTITION pt_2025;
         INSERT INTO pt_2025 VALUES (100, '2025-05-01', 'not sent: no longer a partition');
         INSERT INTO pt VALUES (7, '2026-06-01', 'a');           -- the marker",
    );
    wait_for_ids(&rx, &[1, 2, 3, 5, 6, 7], "every captured change");
    let got = rx.accepted();
    let mut seen: Vec<(String, i64)> = got
        .iter()
        .map(|r| {
            let b = r.json();
            assert_eq!(b["table"], "pt", "events name the subscribed table: {b}");
            (
                b["type"].as_str().unwrap_or_default().to_string(),
                b["record"]["id"]
                    .as_i64()
                    .or(b["old_record"]["id"].as_i64())
                    .unwrap_or_default(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("DELETE".to_string(), 4),
            ("INSERT".to_string(), 1),
            ("INSERT".to_string(), 2),
            ("INSERT".to_string(), 3),
            ("INSERT".to_string(), 4),
            ("INSERT".to_string(), 5),
            ("INSERT".to_string(), 6),
            ("INSERT".to_string(), 7),
            ("UPDATE".to_string(), 2),
        ],
        "each change exactly once, and nothing from the detached table"
    );
}

#[test]
fn partitions_pg_partman_creates_are_captured() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman;
         CREATE TABLE public.events_log (id bigint NOT NULL, n int) PARTITION BY RANGE (id);",
    );
    subscribe(&mut db, "log", "events_log", &rx.url("/log"), "");
    exec(
        &mut db,
        "SELECT partman.create_parent('public.events_log', 'id', 'native', '10', p_premake => 2);",
    );
    let partitions = count(
        &mut db,
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events_log'::regclass",
    );
    assert!(partitions >= 3, "pg_partman made {partitions} partitions");
    // A partition pg_partman made, written directly; and one its maintenance makes later.
    // The lowest of the ranges pg_partman made (not its default partition).
    let first: String = text(
        &mut db,
        "SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'events_log'::regclass AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
          ORDER BY c.oid LIMIT 1",
    )
    .unwrap_or_default();
    exec(&mut db, &format!("INSERT INTO {first} VALUES (1, 1)"));
    exec(
        &mut db,
        "INSERT INTO events_log VALUES (25, 2);
         SELECT partman.run_maintenance('public.events_log');",
    );
    let newest: String = text(
        &mut db,
        "SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'events_log'::regclass AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
          ORDER BY c.oid DESC LIMIT 1",
    )
    .unwrap_or_default();
    let bound = count(
        &mut db,
        &format!(
            "SELECT (regexp_match(pg_get_expr(relpartbound, oid), 'FROM \\(''?(\\d+)'))[1]::bigint FROM pg_class WHERE oid = '{newest}'::regclass"
        ),
    );
    exec(
        &mut db,
        &format!("INSERT INTO {newest} VALUES ({bound}, 3)"),
    );
    wait_for_ids(
        &rx,
        &[1, 25, bound],
        "rows written into pg_partman's partitions",
    );
    assert_eq!(rx.accepted().len(), 3);
    assert!(rx
        .accepted()
        .iter()
        .all(|r| r.json()["table"] == "events_log"));
}

#[test]
fn a_partition_cannot_be_subscribed_nor_a_subscribed_table_become_one() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE pt (id int) PARTITION BY RANGE (id);
         CREATE TABLE pt_1 PARTITION OF pt FOR VALUES FROM (0) TO (10);
         CREATE TABLE standalone (id int);",
    );
    let e = error_of(
        &mut db,
        "SELECT webhook.subscribe('p', 'pt_1', 'https://example.com/h')",
    );
    assert!(
        e.contains("it is a partition (or inheritance child) of public.pt"),
        "{e}"
    );
    assert!(e.contains("subscribe public.pt:"), "{e}");
    subscribe(&mut db, "s", "standalone", "https://example.com/h", "");
    let e = error_of(
        &mut db,
        "ALTER TABLE pt ATTACH PARTITION standalone FOR VALUES FROM (10) TO (20)",
    );
    assert!(
        e.contains("cannot become a partition or inheritance child of public.pt"),
        "{e}"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pg_inherits WHERE inhrelid = 'standalone'::regclass"
        ),
        0
    );
}

#[test]
fn every_table_works_under_a_for_all_tables_publication() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE PUBLICATION everything FOR ALL TABLES");
    // Fails once per event, then succeeds: the queue is updated (retry), deleted from
    // (finish), the archive inserted into, the callback queue used.
    let failed_once = std::sync::Mutex::new(std::collections::HashSet::new());
    let rx = Receiver::with(move |req: &Request, _| {
        if failed_once.lock().unwrap().insert(req.id()) {
            Reply::Status(503)
        } else {
            Reply::Status(204)
        }
    });
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE TABLE called (id int);
         CREATE FUNCTION public.note(e jsonb) RETURNS void LANGUAGE sql
             AS $$ INSERT INTO public.called VALUES ((e->'record'->>'id')::int) $$;",
    );
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", retry_schedule => ARRAY['100 milliseconds']::interval[], callback => 'public.note(jsonb)'",
    );
    exec(
        &mut db,
        "INSERT INTO t SELECT generate_series(1, 20);
         SELECT webhook.pause('t');
         INSERT INTO t VALUES (21);
         SELECT webhook.resume('t');
         SELECT webhook.rotate_secret('t');",
    );
    wait_until(WAIT, "all 21 delivered and called back", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 21
            && count(&mut db, "SELECT count(*) FROM called") == 21
    });
    exec(
        &mut db,
        "SELECT webhook.replay_since('t', now() - interval '1 hour')",
    );
    wait_until(WAIT, "the replays", || rx.accepted().len() == 42);
    // Two accepted requests per event (the first and the replay), never a resend loop.
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in rx.requests() {
        *per_id.entry(r.id()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 21);
    assert!(
        per_id.values().all(|n| *n == 3),
        "each webhook-id: one refused attempt, one delivery, one replay: {per_id:?}"
    );
    exec(&mut db, "SELECT webhook.unsubscribe('t')");
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'webhook' AND c.relkind = 'r' AND c.relreplident = 'd'
                AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)"
        ),
        0,
        "every pg_webhook table has a primary key for its replica identity"
    );
}

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
