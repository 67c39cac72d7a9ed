//! Sessions adding partitions to one subscribed tree at once, under different branches. Each
//! read the subscription's triggers and its tree at moments apart, and a partition another
//! session committed in between looked like one lacking triggers: it got a second set (each
//! change to it sent twice, under two webhook-ids), two sessions dropped the same copy and
//! one's `CREATE TABLE … PARTITION OF` failed, and the worker's trigger check warned of
//! changes missed that were not. Each reads them at one moment now, and none waits for
//! another. One scenario per test.

mod support;

use std::thread;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, subscribe, WAIT};

/// A cluster where table ff is partitioned in two levels (ff_b holds 0 to 1,000,000 and is
/// partitioned again, ff itself takes more from 1,000,000 on), subscribed to a receiver; the
/// subscription's id.
fn tree() -> (Cluster, Receiver, postgres::Client, i32) {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE ff (id bigint, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
         CREATE TABLE ff_b PARTITION OF ff FOR VALUES FROM (0) TO (1000000) PARTITION BY RANGE (k);",
    );
    let (id, _) = subscribe(&mut db, "ff", "ff", &rx.url("/ff"), "");
    (pg, rx, db, id)
}

/// Tables of ff's tree that do not carry as many capture triggers as ff (one per event kind
/// of the subscription), or carry one of a second set (named `…_2`).
fn tables_without_one_set(db: &mut postgres::Client) -> i64 {
    count(
        db,
        "WITH ours(relid, n) AS (
             SELECT p.relid, (SELECT count(*) FROM pg_trigger t
                               WHERE t.tgrelid = p.relid
                                 AND t.tgfoid = 'webhook._capture()'::regprocedure)
               FROM pg_partition_tree('ff') p)
         SELECT count(*) FROM ours p
          WHERE p.n <> (SELECT n FROM ours WHERE relid = 'ff'::regclass) OR p.n = 0
             OR EXISTS (SELECT FROM pg_trigger t
                         WHERE t.tgrelid = p.relid AND t.tgname LIKE 'pg\\_webhook\\_%\\_2')",
    )
}

/// `CREATE TABLE … PARTITION OF` statements for `n` partitions of 100 keys each from `from`
/// on, under `parent`.
fn partitions(parent: &str, from: i64, n: i64) -> Vec<String> {
    (0..n)
        .map(|i| {
            let lo = from + i * 100;
            format!(
                "CREATE TABLE {parent}_{i} PARTITION OF {parent} FOR VALUES FROM ({lo}) TO ({})",
                lo + 100
            )
        })
        .collect()
}

#[test]
fn a_partition_added_under_another_branch_waits_for_no_open_one() {
    let (pg, rx, mut db, _) = tree();
    let mut a = pg.connect("postgres");
    exec(
        &mut a,
        "BEGIN; CREATE TABLE ff_b_a PARTITION OF ff_b FOR VALUES FROM (0) TO (100)",
    );
    // Another branch, another session, while the first is open: it goes ahead (a wait on it
    // would end in this statement's timeout). Each sees the other's partition with its
    // triggers, or not at all.
    let mut b = pg.connect("postgres");
    exec(
        &mut b,
        "SET statement_timeout = '20s';
         CREATE TABLE ff_c PARTITION OF ff FOR VALUES FROM (1000000) TO (2000000)",
    );
    exec(&mut a, "COMMIT");
    assert_eq!(tables_without_one_set(&mut db), 0);
    exec(
        &mut db,
        "INSERT INTO ff VALUES (1, 50), (2, 1500000); INSERT INTO ff VALUES (3, 1500001)",
    );
    assert_eq!(sent_once(&mut db, &rx, 3), 3);
}

/// How many events the subscription has, once `rows` were delivered and no event is left to
/// send; each row's once.
fn sent_once(db: &mut postgres::Client, rx: &Receiver, rows: usize) -> i64 {
    wait_until(WAIT, "every row delivered", || {
        let mut ids = rx.accepted_ids();
        ids.sort_unstable();
        ids.dedup();
        ids.len() >= rows
            && count(
                db,
                "SELECT count(*) FROM webhook.events WHERE status <> 'delivered'",
            ) == 0
    });
    assert_eq!(rx.accepted_ids().len(), rows, "each row sent once");
    count(db, "SELECT count(*) FROM webhook.events")
}

#[test]
fn sessions_adding_partitions_under_different_branches_make_one_set_of_triggers_each() {
    let (pg, rx, mut db, _) = tree();
    let sessions: Vec<_> = [("ff_b", 0), ("ff", 1_000_000)]
        .into_iter()
        .map(|(parent, from)| {
            let mut c = pg.connect("postgres");
            thread::spawn(move || {
                let mut failed = Vec::new();
                for ddl in partitions(parent, from, 150) {
                    if let Err(e) = c.batch_execute(&ddl) {
                        let why = e
                            .as_db_error()
                            .map_or(e.to_string(), |d| d.message().into());
                        failed.push(format!("{ddl}: {why}"));
                    }
                }
                failed
            })
        })
        .collect();
    let failed: Vec<String> = sessions
        .into_iter()
        .flat_map(|s| {
            s.join()
                .unwrap_or_else(|_| vec!["a session's thread panicked".into()])
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(tables_without_one_set(&mut db), 0);
    // A row in each new partition (but ff_b_0), captured and sent once each.
    exec(
        &mut db,
        "INSERT INTO ff SELECT g, g * 100 FROM generate_series(1, 149) g;
         INSERT INTO ff SELECT 1000 + g, 1000000 + g * 100 FROM generate_series(0, 149) g;",
    );
    assert_eq!(sent_once(&mut db, &rx, 149 + 150), 149 + 150);
    let log = pg.log();
    assert!(
        !log.contains("lacked its trigger"),
        "the trigger check warned of changes missed"
    );
}
