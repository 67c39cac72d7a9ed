//! Capture opens only the queue indexes its events can have entries in (see
//! src/capture/queue_writer/indexes.rs); every index must still hold every event its predicate
//! admits. amcheck's `bt_index_check(..., heapallindexed => true)` checks exactly that, for the
//! queue's own partial indexes and for ones a DBA adds while writers are connected.

mod support;

use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe};

#[test]
fn every_queue_index_holds_every_event_its_predicate_admits() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE EXTENSION amcheck;
         CREATE TABLE plain (id int PRIMARY KEY, account int);
         CREATE TABLE whole (id int PRIMARY KEY, account int);
         CREATE TABLE keyed (id int PRIMARY KEY, account int);
         CREATE TABLE grouped (id int PRIMARY KEY, account int);",
    );
    let rx = Receiver::start();
    subscribe(&mut db, "plain", "plain", &rx.url("/p"), "");
    subscribe(
        &mut db,
        "whole",
        "whole",
        &rx.url("/w"),
        ", ordered => true",
    );
    subscribe(
        &mut db,
        "keyed",
        "keyed",
        &rx.url("/k"),
        ", order_key => ARRAY['account']",
    );
    subscribe(
        &mut db,
        "grouped",
        "grouped",
        &rx.url("/g"),
        ", group_by => 'transaction'",
    );
    for name in ["plain", "whole", "keyed", "grouped"] {
        exec(&mut db, &format!("SELECT webhook.pause('{name}')"));
    }
    let writes = |db: &mut postgres::Client, from: i32| {
        for table in ["plain", "whole", "keyed", "grouped"] {
            exec(
                db,
                &format!(
                    "INSERT INTO {table} VALUES ({from}, 1);
                     INSERT INTO {table} SELECT g, g % 7 FROM generate_series({}, {}) g;
                     DELETE FROM {table} WHERE id = {from};",
                    from + 1,
                    from + 1500
                ),
            );
        }
    };
    // A writer whose backend has worked out which indexes its events go in...
    let mut writer = pg.connect("postgres");
    writes(&mut writer, 0);
    // ...then a DBA adds two: one whose predicate reads a column every event has alike, one
    // whose predicate reads a column that differs between events.
    exec(
        &mut db,
        "CREATE INDEX dba_fresh ON webhook._event_queue (subscription_id, id) WHERE attempts = 0;
         CREATE INDEX dba_deletes ON webhook._event_queue (id) WHERE op = 'DELETE';",
    );
    writes(&mut writer, 10_000);
    let queued = count(&mut db, "SELECT count(*) FROM webhook._event_queue");
    assert_eq!(queued, 2 * 4 * 1502);
    let checked = count(
        &mut db,
        "SELECT count(bt_index_check(index => i.indexrelid, heapallindexed => true))
           FROM pg_index i WHERE i.indrelid = 'webhook._event_queue'::regclass",
    );
    assert_eq!(checked, 7, "the queue's five indexes and the DBA's two");
    // Read through each partial index, the same events as read from the table.
    let conditions = ["ordered", "attempts = 0", "op = 'DELETE'"];
    let counts = |db: &mut postgres::Client| -> Vec<i64> {
        conditions
            .iter()
            .map(|c| {
                count(
                    db,
                    &format!("SELECT count(*) FROM webhook._event_queue WHERE {c}"),
                )
            })
            .collect()
    };
    let from_table = counts(&mut db);
    assert_eq!(from_table, vec![3 * 2 * 1502, 2 * 4 * 1502, 2 * 4]);
    exec(
        &mut db,
        "SET enable_seqscan = off; SET enable_bitmapscan = off",
    );
    assert_eq!(counts(&mut db), from_table);
}

/// A queue with the DBA's plain indexes (columns only, one with INCLUDE columns) and `more`, and
/// a paused subscription of table `t`.
fn with_plain_indexes(more: &str) -> (Cluster, postgres::Client, Receiver) {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        &format!(
            "CREATE EXTENSION amcheck;
             CREATE TABLE t (id int PRIMARY KEY, account int);
             CREATE INDEX dba_created ON webhook._event_queue (created_at);
             CREATE INDEX dba_covering ON webhook._event_queue (subscription_id) INCLUDE (op, id);
             {more}"
        ),
    );
    let rx = Receiver::start();
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(&mut db, "SELECT webhook.pause('t')");
    (pg, db, rx)
}

#[test]
fn plain_indexes_a_dba_adds_hold_every_event() {
    let (pg, mut db, _rx) = with_plain_indexes("");
    let mut writer = pg.connect("postgres");
    exec(
        &mut writer,
        "INSERT INTO t VALUES (0, 1);
         INSERT INTO t SELECT g, g % 7 FROM generate_series(1, 2500) g;
         UPDATE t SET account = 2 WHERE id = 0;",
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM webhook._event_queue"),
        2502
    );
    let checked = count(
        &mut db,
        "SELECT count(bt_index_check(index => i.indexrelid, heapallindexed => true))
           FROM pg_index i WHERE i.indrelid = 'webhook._event_queue'::regclass",
    );
    assert_eq!(checked, 7, "the queue's five indexes and the DBA's two");
}

#[test]
fn a_unique_index_a_dba_adds_is_checked_as_capture_writes() {
    // One event per subscription and transaction: a second row in one statement violates it.
    let (pg, mut db, _rx) = with_plain_indexes(
        "CREATE UNIQUE INDEX dba_one_per_tx ON webhook._event_queue (subscription_id, txid);",
    );
    let mut writer = pg.connect("postgres");
    exec(&mut writer, "INSERT INTO t VALUES (1, 1)");
    let error = error_of(&mut writer, "INSERT INTO t VALUES (2, 1), (3, 1)");
    assert!(
        error.contains("duplicate key value violates unique constraint \"dba_one_per_tx\""),
        "{error}"
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM webhook._event_queue"),
        1
    );
}
