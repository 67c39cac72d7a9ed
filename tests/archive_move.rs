//! Finished events are moved to the archive without the executor where that is safe
//! (src/queue/archive.rs), and in SQL where it is not. One scenario per test; each fails on a
//! move that skips what the executor would do: an index entry, a trigger, a row that moved.

mod support;

use std::time::Duration;

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
    let rx = Receiver::with(|_, _| Reply::Delay(Duration::from_millis(1500), 204));
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
