//! The worker keeps one plan for some of its statements (src/queue/mod.rs, GENERIC_PLAN): a
//! plan made while the queue was empty must still read a large backlog by its keys, not scan the
//! whole queue for every claim or every recorded outcome. (A generic join plan made on an empty
//! archive once did: recording 50,000 events took four minutes.) Counted, not timed: the rows
//! the queue's and the archive's indexes and heaps hand out while a backlog drains.

mod support;

use support::cluster::{wait_until, Cluster};
use support::sink::Sink;
use support::{count, exec, subscribe, LONG_WAIT, WAIT};

#[test]
fn plans_made_on_an_empty_queue_read_a_backlog_by_its_keys() {
    backlog_read_by_its_keys(&[], 20_000, "", 10);
}

/// A transaction's parts: its events cut a page at a time (a page's write bounded to its rows),
/// and each part recorded at its rows (their ctids), not by joining thousands of outcomes to a
/// queue the plan may take for empty (seen once: a worker stuck for many minutes on one part of
/// a transaction of a million events).
#[test]
fn a_large_transactions_parts_are_recorded_without_reading_the_queue_for_each_event() {
    // Read more often than one by one: cut (a page at a time), written with its part (a second
    // index entry each, as the part is not in place), and the oldest 5,000 queued events looked
    // over at each claim for the transactions that may go.
    backlog_read_by_its_keys(&[], 20_000, ", group_by => 'transaction'", 30);
}

/// Both workers meet the backlog at once and find the statistics stale; one analyzes the queue.
/// The other once skipped the locked ANALYZE and recorded with a plan that believed the queue
/// empty, reading all of it for every outcome.
#[test]
fn two_workers_meeting_a_backlog_both_plan_with_its_size() {
    // A backlog whose ANALYZE takes long enough for the other worker to meet its lock.
    backlog_read_by_its_keys(&["pg_webhook.workers = 2"], 100_000, "", 10);
}

/// Delivers a backlog of `events` events (written in one transaction) to a subscription made
/// with `extra` after plans were made on an empty queue, and counts the rows the queue and the
/// archive handed out: at most `per_event` times as many from the queue.
fn backlog_read_by_its_keys(settings: &[&str], events: i64, extra: &str, per_event: i64) {
    let pg = Cluster::start(settings);
    let sink = Sink::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    subscribe(&mut db, "t", "t", &sink.url(), extra);
    // Only the worker may count the queue again: autovacuum, which may run before it, would
    // hide what its plans do with the statistics they meet.
    exec(
        &mut db,
        "ALTER TABLE webhook._event_queue SET (autovacuum_enabled = false)",
    );
    // Statistics that say the queue is empty in pages it still has, as after a VACUUM of a
    // drained queue that could not truncate it (workers were busy): the planner then takes it
    // for empty however full it gets. The worker's plans are made again (an ANALYZE invalidates
    // them) believing it.
    exec(&mut db, "SELECT webhook.pause('t')");
    exec(
        &mut db,
        &format!("INSERT INTO t SELECT -g, 'v' FROM generate_series(1, {events}) g"),
    );
    exec(&mut db, "DELETE FROM webhook._event_queue");
    exec(
        &mut db,
        "VACUUM (TRUNCATE false, ANALYZE) webhook._event_queue, webhook._event_archive",
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pg_class WHERE oid = 'webhook._event_queue'::regclass
                AND relpages > 0 AND reltuples = 0"
        ),
        1
    );
    exec(&mut db, "SELECT webhook.resume('t')");
    // The worker claims (and so plans) while the queue is empty; then a few events are
    // delivered and recorded while the archive is empty.
    exec(
        &mut db,
        "INSERT INTO t SELECT g, 'v' FROM generate_series(1, 10) g",
    );
    wait_until(WAIT, "the first ten events", || {
        sink.unique_events() >= 10
            && count(&mut db, "SELECT count(*) FROM webhook._event_queue") == 0
    });
    exec(&mut db, "SELECT pg_stat_reset()");
    exec(
        &mut db,
        &format!(
            "INSERT INTO t SELECT g, 'v' FROM generate_series(11, {}) g",
            events + 10
        ),
    );
    wait_until(
        LONG_WAIT,
        "the backlog to be delivered and recorded",
        || {
            sink.unique_events() >= (events + 10) as u64
                && count(&mut db, "SELECT count(*) FROM webhook._event_queue") == 0
        },
    );
    // The worker's counters reach the statistics with its transactions: once the archive
    // rows are counted, so are the reads that recorded them.
    wait_until(WAIT, "the worker's writes in pg_stat_all_tables", || {
        count(
            &mut db,
            "SELECT n_tup_ins FROM pg_stat_all_tables WHERE relid = 'webhook._event_archive'::regclass",
        ) >= events
    });
    let read = |db: &mut postgres::Client, table: &str| {
        count(
            db,
            &format!(
                "SELECT (SELECT COALESCE(sum(idx_tup_read), 0) FROM pg_stat_all_indexes
                          WHERE relid = '{table}'::regclass)::bigint
                        + (SELECT COALESCE(seq_tup_read, 0) FROM pg_stat_all_tables
                            WHERE relid = '{table}'::regclass)"
            ),
        )
    };
    // Each event is read about twice by key in the queue (claimed, recorded) and once in the
    // archive (its key checked as it is written). A plan that scanned either table for each
    // claim or outcome would read it hundreds of times over.
    let queue = read(&mut db, "webhook._event_queue");
    assert!(
        (events..=per_event * events).contains(&queue),
        "the queue handed out {queue} rows to deliver {events} events"
    );
    let archive = read(&mut db, "webhook._event_archive");
    assert!(
        archive <= 10 * events,
        "the archive handed out {archive} rows while {events} events were recorded"
    );
}
