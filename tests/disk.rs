//! The disk footprint stays flat only if the space the worker frees is reused: its table
//! statistics must reach the cumulative statistics system, as PostgreSQL's own background
//! workers' do, and the tables be vacuumed as soon as enough of them is dead (the callback
//! runner does it itself, autovacuum would too, a minute later). (The footprint over time is
//! the soak benchmark's: `bash .ci/soak`.)

mod support;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, subscribe, text, WAIT};

/// Events delivered and then purged in this test.
const N: i64 = 3_000;

#[test]
fn the_workers_writes_reach_the_statistics_and_its_tables_are_vacuumed() {
    // Default autovacuum settings (a round a minute); only retention is short.
    let pg = Cluster::start(&[
        "pg_webhook.retention = '1s'",
        "pg_webhook.dead_retention = '1s'",
    ]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    for chunk in 0..3 {
        exec(
            &mut db,
            &format!(
                "INSERT INTO t SELECT g FROM generate_series({}, {}) g",
                chunk * 1000 + 1,
                chunk * 1000 + 1000
            ),
        );
    }
    wait_until(WAIT, "every event to be delivered", || {
        rx.count() as i64 >= N && count(&mut db, "SELECT count(*) FROM webhook._event_queue") == 0
    });
    wait_until(WAIT, "retention to purge them", || {
        count(&mut db, "SELECT count(*) FROM webhook._event_archive") == 0
    });
    let stat = |db: &mut postgres::Client, table: &str, column: &str| {
        count(
            db,
            &format!(
                "SELECT {column} FROM pg_stat_all_tables WHERE relid = 'webhook.{table}'::regclass"
            ),
        )
    };
    wait_until(
        WAIT,
        "the worker's inserts and deletes in pg_stat_all_tables",
        || {
            stat(&mut db, "_event_queue", "n_tup_del") >= N
                && stat(&mut db, "_event_archive", "n_tup_ins") >= N
                && stat(&mut db, "_event_archive", "n_tup_del") >= N
        },
    );
    // The callback runner vacuums a table once a tenth of it is dead (and at least 1,000 rows), within
    // 10 s; its VACUUM is counted in vacuum_count.
    for table in ["_event_archive", "_event_queue"] {
        wait_until(WAIT, &format!("the worker to vacuum {table}"), || {
            stat(&mut db, table, "vacuum_count") >= 1
        });
    }
    // The worker says what it is in pg_stat_activity.
    let shown = text(
        &mut db,
        "SELECT application_name || ' ' || state FROM pg_stat_activity
          WHERE backend_type = 'pg_webhook' LIMIT 1",
    );
    assert!(
        shown
            .as_deref()
            .is_some_and(|s| s == "pg_webhook worker 0 idle" || s == "pg_webhook worker 0 active"),
        "{shown:?}"
    );
}

/// The queue is never truncated, so once vacuumed empty its statistics say "0 rows in N pages",
/// and the planner takes it for empty however full it gets: each batch of outcomes was then
/// joined to the whole queue. A worker that meets a backlog has the queue counted again.
#[test]
fn a_backlog_in_a_queue_vacuumed_empty_gets_the_queue_analyzed() {
    // Autovacuum off: only the worker can analyze the queue here.
    let pg = Cluster::start(&["autovacuum = off"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    let queued = || "SELECT count(*) FROM webhook._event_queue";
    exec(
        &mut db,
        "INSERT INTO t SELECT g FROM generate_series(1, 2000) g",
    );
    wait_until(WAIT, "the first 2,000 events to be delivered", || {
        rx.count() >= 2000 && count(&mut db, queued()) == 0
    });
    exec(&mut db, "VACUUM webhook._event_queue");
    assert_eq!(
        text(
            &mut db,
            "SELECT format('%s rows in %s pages', reltuples, (relpages > 0)::text)
               FROM pg_class WHERE oid = 'webhook._event_queue'::regclass"
        )
        .as_deref(),
        Some("0 rows in true pages"),
        "the queue's statistics should say it is empty but keeps its pages"
    );
    let analyzed = |db: &mut postgres::Client| {
        count(
            db,
            "SELECT analyze_count FROM pg_stat_all_tables WHERE relid = 'webhook._event_queue'::regclass",
        )
    };
    let before = analyzed(&mut db);
    exec(
        &mut db,
        "INSERT INTO t SELECT g FROM generate_series(2001, 4000) g",
    );
    wait_until(WAIT, "the backlog to be delivered", || {
        rx.count() >= 4000 && count(&mut db, queued()) == 0
    });
    wait_until(
        WAIT,
        "the worker's ANALYZE of the queue in the statistics",
        || analyzed(&mut db) > before,
    );
    assert!(
        pg.log()
            .contains("analyzed webhook._event_queue, whose statistics said it was nearly empty"),
        "the worker should say why it analyzed the queue"
    );
}

/// A cluster (autovacuum off: every VACUUM of the queue counted is the runner's) with a
/// subscription on `t`, and a session whose snapshot holds back the oldest xmin from now on (in
/// the same database: horizons are per database); `lock_queue` first has another session hold
/// the lock a VACUUM needs (SHARE UPDATE EXCLUSIVE, which the workers' deletes do not conflict
/// with) on the queue. Then 3,000 events are delivered: 3,000 dead rows in the queue.
struct Held {
    pg: Cluster,
    _rx: Receiver,
    db: postgres::Client,
    holder: postgres::Client,
    locker: postgres::Client,
}

impl Held {
    fn start(lock_queue: bool) -> Held {
        let pg = Cluster::start(&["autovacuum = off"]);
        let rx = Receiver::start();
        let mut db = pg.client_with_extension();
        exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
        subscribe(&mut db, "t", "t", &rx.url("/t"), "");
        let mut holder = pg.connect("postgres");
        exec(
            &mut holder,
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1",
        );
        let mut locker = pg.connect("postgres");
        if lock_queue {
            exec(
                &mut locker,
                "BEGIN; LOCK webhook._event_queue IN SHARE UPDATE EXCLUSIVE MODE",
            );
        }
        exec(
            &mut db,
            "INSERT INTO t SELECT g FROM generate_series(1, 3000) g",
        );
        wait_until(WAIT, "every event to be delivered", || {
            rx.count() >= 3000 && count(&mut db, "SELECT count(*) FROM webhook._event_queue") == 0
        });
        Held {
            pg,
            _rx: rx,
            db,
            holder,
            locker,
        }
    }

    fn queue_stat(&mut self, column: &str) -> i64 {
        count(
            &mut self.db,
            &format!(
                "SELECT {column} FROM pg_stat_all_tables WHERE relid = 'webhook._event_queue'::regclass"
            ),
        )
    }

    fn wait_for_the_held_back_line(&self) {
        wait_until(
            WAIT,
            "the runner to say the queue's dead rows are held back",
            || {
                self.pg.log().lines().any(|l| {
                    l.contains("pg_webhook callback runner: webhook._event_queue has")
                        && l.contains("dead rows no VACUUM can remove yet")
                })
            },
        );
    }
}

/// While a transaction's snapshot holds back the oldest xmin, no VACUUM can remove the rows
/// deleted after it began: the runner vacuums such a table once, says so in the log and waits
/// for the horizon to move, instead of reading the same pages every 10 s; once the transaction
/// ends, the next pass vacuums it.
#[test]
fn dead_rows_a_long_transaction_holds_back_are_vacuumed_once_and_again_when_it_ends() {
    let mut held = Held::start(false);
    held.wait_for_the_held_back_line();
    assert_eq!(
        held.queue_stat("vacuum_count"),
        1,
        "the runner should have vacuumed the queue once at the held horizon, not again"
    );
    // A VACUUM during the deliveries may have lost count of some (it sets the figure), not
    // of most.
    assert!(
        held.queue_stat("n_dead_tup") >= 1000,
        "the deliveries' dead rows should still be there"
    );
    exec(&mut held.holder, "COMMIT");
    wait_until(
        WAIT,
        "the queue to be vacuumed once the horizon moved",
        || held.queue_stat("vacuum_count") >= 2 && held.queue_stat("n_dead_tup") < 1000,
    );
}

/// A VACUUM that SKIP_LOCKED skipped (someone held a lock on the table) did not happen: the
/// runner tries again at its next pass, and only a VACUUM that ran makes it wait for the horizon.
#[test]
fn a_vacuum_skipped_for_a_lock_is_tried_again_though_the_horizon_is_held() {
    let mut held = Held::start(true);
    wait_until(WAIT, "the runner's VACUUM of the queue to skip it", || {
        held.pg
            .log()
            .contains("skipping vacuum of \"_event_queue\" --- lock not available")
    });
    exec(&mut held.locker, "COMMIT");
    held.wait_for_the_held_back_line();
    assert_eq!(
        held.queue_stat("vacuum_count"),
        1,
        "the runner should say so only after a VACUUM of the queue that ran"
    );
}
