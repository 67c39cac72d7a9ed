//! Finished events are moved to the archive without the executor where that is safe
//! (src/queue/archive.rs), and in SQL where it is not. One scenario per test; each fails on a
//! move that skips what the executor would do (an index entry, a trigger, a row that moved) or
//! writes other values than the SQL path does.

mod support;

use std::sync::atomic::Ordering;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{count, exec, subscribe, WAIT};

/// Delivers `n` events of table `t` (ids 1..=n, ten statements) and waits until all of them
/// are in the archive as delivered.
fn deliver(db: &mut postgres::Client, n: i64) {
    for chunk in 0..10 {
        let (from, to) = (chunk * n / 10 + 1, (chunk + 1) * n / 10);
        exec(
            db,
            &format!("INSERT INTO t SELECT generate_series({from}, {to})"),
        );
    }
    wait_until(WAIT, "every event to be archived as delivered", || {
        count(
            db,
            "SELECT count(*) FROM webhook._event_archive WHERE status = 'delivered'",
        ) == n
    });
}

/// amcheck compares every archive row with each index of the archive, those pg_webhook made and
/// one a DBA added (partial, on an expression): a missing entry is an ERROR.
#[test]
fn every_index_of_the_archive_has_an_entry_for_every_archived_event() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE EXTENSION amcheck;
         CREATE TABLE t (id int PRIMARY KEY);
         CREATE INDEX archive_delivered_ids ON webhook._event_archive ((record->>'id'))
          WHERE status = 'delivered';",
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), ", batch_size => 10");
    deliver(&mut db, 200);
    let indexes = count(
        &mut db,
        "SELECT count(*) FROM pg_index WHERE indrelid = 'webhook._event_archive'::regclass",
    );
    assert_eq!(
        indexes, 3,
        "the archive's indexes are not the ones this test checks"
    );
    exec(
        &mut db,
        "SELECT bt_index_check(indexrelid, heapallindexed => true)
           FROM pg_index WHERE indrelid = 'webhook._event_archive'::regclass",
    );
}

/// A trigger a DBA put on the archive runs for every archived event: with one, events are
/// recorded by the executor.
#[test]
fn a_trigger_on_the_archive_fires_for_every_archived_event() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE TABLE archived_ids (id bigint);
         CREATE FUNCTION note_archived() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO public.archived_ids VALUES (NEW.id); RETURN NULL; END $$;
         CREATE TRIGGER note AFTER INSERT ON webhook._event_archive
           FOR EACH ROW EXECUTE FUNCTION note_archived();",
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), ", batch_size => 10");
    deliver(&mut db, 100);
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM archived_ids a
               JOIN webhook._event_archive e USING (id)"
        ),
        100,
        "the archive's trigger did not fire for every archived event"
    );
}

/// VACUUM FULL while requests are in flight moves their rows to the queue's first block and
/// cuts the file short: where the claims found them is past its end. The outcomes are found
/// by key, without an error (reading past the end of the file is one) and the retry of every
/// outcome one at a time that follows it.
#[test]
fn outcomes_of_rows_moved_by_a_shrinking_rewrite_are_recorded_without_an_error() {
    let pg = Cluster::start(&[]);
    let (rx, gate) = Receiver::gated();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "ALTER TABLE webhook._event_queue SET (autovacuum_enabled = false);
         CREATE TABLE t (id int PRIMARY KEY);",
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    // Dead rows ahead of the ones sent (fewer than the workers' own vacuum waits for).
    exec(
        &mut db,
        "BEGIN; INSERT INTO t SELECT generate_series(1000, 1800); ROLLBACK;",
    );
    exec(&mut db, "INSERT INTO t SELECT generate_series(1, 20)");
    wait_until(WAIT, "the requests to be in flight", || rx.count() == 20);
    assert!(
        count(
            &mut db,
            "SELECT min((ctid::text::point)[0])::bigint FROM webhook._event_queue"
        ) > 0,
        "the events sent are in the queue's first block: the rewrite would not move them"
    );
    exec(&mut db, "VACUUM FULL webhook._event_queue");
    assert!(
        count(
            &mut db,
            "SELECT pg_relation_size('webhook._event_queue') / 8192"
        ) <= 1,
        "the rewrite did not shrink the queue"
    );
    gate.store(true, Ordering::SeqCst);
    wait_until(WAIT, "every outcome to be recorded", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 20
    });
    let log = pg.log();
    assert!(
        !log.contains("recording delivery outcomes failed"),
        "recording failed on the way:\n{log}"
    );
}

/// A trigger on the archive that does nothing: finished events then go through finish.sql.
const THROUGH_SQL: &str =
    "CREATE FUNCTION nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
     CREATE TRIGGER nothing AFTER INSERT ON webhook._event_archive
       FOR EACH ROW EXECUTE FUNCTION nothing();";

/// Calls of the worker's statements whose text contains `pattern` (pg_stat_statements).
fn calls(db: &mut postgres::Client, pattern: &str) -> i64 {
    db.query_one(
        "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements WHERE query LIKE $1",
        &[&pattern],
    )
    .expect("reading pg_stat_statements")
    .get(0)
}

/// Without callbacks and on the tables as pg_webhook made them, finished events are moved
/// without the SQL statement (finish.sql); a trigger on the archive sends them through it.
#[test]
fn the_move_replaces_the_finish_statement_until_the_archive_has_a_trigger() {
    let pg = Cluster::start(&[
        "shared_preload_libraries = 'pg_webhook,pg_stat_statements'",
        "pg_stat_statements.track = 'all'",
    ]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE EXTENSION pg_stat_statements;
         CREATE TABLE t (id int PRIMARY KEY);",
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), ", batch_size => 10");
    let finish = "%INSERT INTO webhook._event_archive%";
    deliver(&mut db, 100);
    assert_eq!(calls(&mut db, finish), 0, "finish.sql ran");
    assert!(
        calls(&mut db, "%INSERT INTO webhook._delivery_totals%unnest%") > 0,
        "the moved events were not added to the totals"
    );
    exec(
        &mut db,
        &format!("{THROUGH_SQL} DELETE FROM webhook._event_archive; TRUNCATE t;"),
    );
    deliver(&mut db, 100);
    assert!(calls(&mut db, finish) > 0, "finish.sql did not run");
}

/// The archive rows the move writes are those the SQL path writes (a trigger on the archive
/// sends events through it), column for column, but for what differs between two events.
#[test]
fn the_move_writes_the_archive_rows_the_finish_statement_writes() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::with(|req, _| {
        if req.json()["record"]["fate"] == "refused" {
            return Reply::Status(400);
        }
        Reply::Full {
            status: 201,
            headers: Vec::new(),
            body: "accepted".to_string(),
        }
    });
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY, fate text)");
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", max_attempts => 1, retry_schedule => ARRAY['100 ms']::interval[]",
    );
    let archived = |db: &mut postgres::Client, n: i64| {
        wait_until(WAIT, "the events to be archived", || {
            count(db, "SELECT count(*) FROM webhook._event_archive") == n
        });
    };
    exec(&mut db, "INSERT INTO t VALUES (1, 'taken'), (2, 'refused')");
    archived(&mut db, 2);
    exec(
        &mut db,
        &format!("{THROUGH_SQL} INSERT INTO t VALUES (3, 'taken'), (4, 'refused');"),
    );
    archived(&mut db, 4);
    // Everything but the event's own id, its times and its duration.
    let row =
        "to_jsonb(a) - '{id,created_at,finished_at,final_started_at,final_duration_ms}'::text[]
               || jsonb_build_object('record', a.record - 'id')";
    let differ = count(
        &mut db,
        &format!(
            "SELECT count(*) FROM webhook._event_archive a
               JOIN webhook._event_archive b ON b.record->>'id' = ((a.record->>'id')::int + 2)::text
              CROSS JOIN LATERAL (SELECT {row}) m(direct)
              CROSS JOIN LATERAL (SELECT {}) s(sql)
              WHERE a.record->>'id' IN ('1', '2') AND m.direct IS DISTINCT FROM s.sql",
            row.replace("a.", "b.")
                .replace("to_jsonb(a)", "to_jsonb(b)")
        ),
    );
    assert_eq!(differ, 0, "the two paths wrote different archive rows");
    let delivered = db
        .query_one(
            "SELECT attempts, series_start, status, final_status_code, final_response_excerpt,
                    final_error IS NULL, last_error IS NULL, callback_error IS NULL,
                    payload_bytes > 0, order_key IS NULL,
                    final_started_at <= finished_at, finished_at > now() - interval '1 minute',
                    final_duration_ms >= 0, op, table_schema, table_name
               FROM webhook._event_archive WHERE record->>'id' = '1'",
            &[],
        )
        .expect("reading the archive");
    assert_eq!(delivered.get::<_, i32>(0), 1);
    assert_eq!(delivered.get::<_, i32>(1), 0);
    assert_eq!(delivered.get::<_, String>(2), "delivered");
    assert_eq!(delivered.get::<_, Option<i32>>(3), Some(201));
    assert_eq!(
        delivered.get::<_, Option<String>>(4).as_deref(),
        Some("accepted")
    );
    for i in 5..13 {
        assert!(
            delivered.get::<_, bool>(i),
            "column {i} of the query is false"
        );
    }
    assert_eq!(delivered.get::<_, String>(13), "INSERT");
    assert_eq!(delivered.get::<_, String>(14), "public");
    assert_eq!(delivered.get::<_, String>(15), "t");
    let dead = db
        .query_one(
            "SELECT status, final_status_code, last_error IS NOT NULL
               FROM webhook._event_archive WHERE record->>'id' = '2'",
            &[],
        )
        .expect("reading the archive");
    assert_eq!(dead.get::<_, String>(0), "dead");
    assert_eq!(dead.get::<_, Option<i32>>(1), Some(400));
    assert!(
        dead.get::<_, bool>(2),
        "a dead event without its last error"
    );
}

/// A row image stored out of line in the queue's TOAST table is copied into the archive's:
/// it reads back whole after the queue is vacuumed.
#[test]
fn a_toasted_row_image_is_archived_whole() {
    let pg = Cluster::start(&[]);
    let (rx, gate) = Receiver::gated();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY, blob text)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(
        &mut db,
        "INSERT INTO t SELECT 1, string_agg(md5(i::text || random()::text), '')
           FROM generate_series(1, 300) i",
    );
    wait_until(WAIT, "the request to be in flight", || rx.count() == 1);
    let toast: String = db
        .query_one(
            "SELECT reltoastrelid::regclass::text FROM pg_class
              WHERE oid = 'webhook._event_queue'::regclass",
            &[],
        )
        .expect("finding the queue's TOAST table")
        .get(0);
    assert!(
        count(&mut db, &format!("SELECT count(*) FROM {toast}")) > 0,
        "the row image is not stored out of line"
    );
    gate.store(true, Ordering::SeqCst);
    wait_until(WAIT, "the event to be archived", || {
        count(&mut db, "SELECT count(*) FROM webhook._event_archive") == 1
    });
    exec(&mut db, "VACUUM webhook._event_queue");
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_archive a JOIN t ON a.record->>'blob' = t.blob"
        ),
        1,
        "the archived row image is not the row's"
    );
}
