//! Ways to lose or stall events at the edges of what a subscription watches: writes straight
//! into partitions (pg_partman's too), a partition subscribed or a subscribed table attached as
//! one, and every table under a `FOR ALL TABLES` publication. One scenario per test; each fails
//! on a pg_webhook that loses or stalls them.

mod support;

use std::collections::HashMap;

use support::cluster::{wait_until, Cluster};
use support::events::wait_for_ids;
use support::receiver::{Receiver, Reply, Request};
use support::{count, error_of, exec, subscribe, text, WAIT};

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
