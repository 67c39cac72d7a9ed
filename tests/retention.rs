//! The retention purge: delivered and dead events each go after their own horizon, with their
//! attempts, and a purge run reads only what it has not looked at before, however many events
//! it keeps. One scenario per test.

mod support;

use postgres::Client;
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, status_counts, subscribe, WAIT};

/// `pg_webhook.dead_retention` shorter than `pg_webhook.retention`: everything past the dead
/// horizon was purged, delivered events too, which the README says are kept for `retention`.
#[test]
fn a_delivered_event_is_kept_for_retention_when_dead_ones_go_sooner() {
    let pg = Cluster::start(&[
        "pg_webhook.retention = '1h'",
        "pg_webhook.dead_retention = '1s'",
        "pg_webhook.poll_interval = '200ms'",
    ]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(&mut db, "CREATE TABLE h (id int PRIMARY KEY)");
    subscribe(&mut db, "h", "h", &rx.url("/h"), "");
    subscribe(
        &mut db,
        "dead",
        "h",
        "http://127.0.0.1:9/refused",
        ", max_attempts => 1",
    );
    exec(&mut db, "INSERT INTO h VALUES (1)");
    rx.wait_for(1, WAIT);
    wait_until(WAIT, "the dead event to die and be purged", || {
        count(
            &mut db,
            "SELECT dead_total FROM webhook.subscription_stats WHERE name = 'dead'",
        ) == 1
            && count(
                &mut db,
                "SELECT count(*) FROM webhook._event_archive WHERE status = 'dead'",
            ) == 0
    });
    assert_eq!(
        status_counts(&mut db),
        "delivered=1",
        "the delivered event stays for its hour"
    );
}

/// Tuples the server read from `table` (sequential and through indexes), as its statistics
/// say, and the rows deleted from the archive.
fn reads(db: &mut Client, table: &str) -> i64 {
    count(
        db,
        &format!(
            "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
               FROM pg_stat_user_tables WHERE schemaname = 'webhook' AND relname = '{table}'"
        ),
    )
}

fn archive_deletes(db: &mut Client) -> i64 {
    count(
        db,
        "SELECT n_tup_del FROM pg_stat_user_tables
          WHERE schemaname = 'webhook' AND relname = '_event_archive'",
    )
}

/// A delivered event finished `age` ago, put straight in the archive as event `id`.
fn delivered_long_ago(db: &mut Client, id: i64, age: &str) {
    exec(
        db,
        &format!(
            "INSERT INTO webhook._event_archive
                    (id, subscription_id, op, table_schema, table_name, created_at, attempts,
                     status, finished_at)
             VALUES ({id}, 1, 'INSERT', 'public', 't', now() - interval '{age}', 1,
                     'delivered', now() - interval '{age}')"
        ),
    );
}

/// 200,000 dead events ten days old, with an attempt each: kept for the default 30 days. Every
/// purge run (each second) read all of them, and their attempts, to find the delivered events
/// past their 7 days behind them: 500,000 took worker 0 five seconds a run. Now each run goes on
/// from where the last one stopped.
#[test]
fn a_purge_run_does_not_read_again_the_events_it_keeps() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", "http://127.0.0.1:9/t", "");
    exec(
        &mut db,
        "INSERT INTO webhook._event_archive
                (id, subscription_id, op, table_schema, table_name, created_at, attempts, status,
                 finished_at)
         SELECT 1000000000 + g, 1, 'INSERT', 'public', 't', now() - interval '11 days', 2, 'dead',
                now() - interval '10 days' + g * interval '1 ms'
           FROM generate_series(1, 200000) g;
         INSERT INTO webhook._attempts
                (event_id, attempt, subscription_id, started_at, duration_ms, outcome)
         SELECT 1000000000 + g, 1, 1, now() - interval '11 days' + g * interval '1 ms', 1, 'retry'
           FROM generate_series(1, 200000) g",
    );
    delivered_long_ago(&mut db, 2_000_000_001, "8 days");
    wait_until(
        WAIT,
        "the first delivered event to be purged, as statistics say",
        || archive_deletes(&mut db) >= 1,
    );
    let (archive, attempts, deleted) = (
        reads(&mut db, "_event_archive"),
        reads(&mut db, "_attempts"),
        archive_deletes(&mut db),
    );
    delivered_long_ago(&mut db, 2_000_000_002, "7 days 1 hour");
    wait_until(
        WAIT,
        "the second delivered event to be purged, as statistics say",
        || archive_deletes(&mut db) > deleted,
    );
    let archive = reads(&mut db, "_event_archive") - archive;
    let attempts = reads(&mut db, "_attempts") - attempts;
    assert!(
        archive < 20_000 && attempts < 20_000,
        "the runs that purged the second event read {archive} archive rows and {attempts} attempts"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_archive WHERE status = 'dead'"
        ),
        200_000,
        "the dead events stay for their 30 days"
    );
}

/// Unsubscribing with `discard_queued` deleted the queued events and left their attempts, which
/// only a purge walking every attempt found.
#[test]
fn discarded_events_take_their_attempts_with_them() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(
        &mut db,
        "t",
        "t",
        "http://127.0.0.1:9/refused",
        ", retry_schedule => ARRAY['1 hour'::interval]",
    );
    exec(&mut db, "INSERT INTO t VALUES (1)");
    wait_until(WAIT, "the first attempt to be logged", || {
        count(&mut db, "SELECT count(*) FROM webhook._attempts") == 1
    });
    exec(
        &mut db,
        "SELECT webhook.unsubscribe('t', discard_queued => true)",
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM webhook._event_queue"),
        0
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM webhook._attempts"), 0);
}
