//! Ordered subscriptions and what a statement's own triggers write to its table, across what a
//! session goes through around its statements: a library loaded in the middle of one (not
//! preloaded), transaction control in procedures, deferred constraint triggers, other
//! extensions' executor hooks, an ERROR caught while a move runs, and deep trigger recursion.
//! Each scenario ends with the order a receiver applying the events needs to end with the rows
//! the table has. One scenario per test.

mod support;

use support::cluster::Cluster;
use support::nested::{arrived, bump, ins, upd, TABLE};
use support::receiver::Receiver;
use support::{exec, subscribe};

/// A cluster without pg_webhook preloaded, with `setup` run and `t` subscribed (`options`):
/// the receiver and the cluster, whose sessions have not loaded the library yet.
fn not_preloaded(setup: &str, options: &str) -> (Cluster, Receiver) {
    let pg = Cluster::start(&["shared_preload_libraries = ''"]);
    let rx = Receiver::start();
    let mut db = pg.connect("postgres");
    exec(&mut db, &format!("CREATE EXTENSION pg_webhook; {setup}"));
    subscribe(&mut db, "t", "t", &rx.url("/t"), options);
    (pg, rx)
}

/// Preloads the library (a restart), so the workers send what was queued.
fn preload(pg: &Cluster) {
    pg.append_conf("shared_preload_libraries = 'pg_webhook'\n");
    pg.stop("fast");
    pg.pg_ctl_start();
}

#[test]
fn a_sessions_first_write_loading_the_library_keeps_its_rows_before_its_triggers_writes() {
    // No BEFORE trigger of the subscription's: the first capture, of the trigger's UPDATE,
    // loads the library while the INSERT is already finishing.
    let (pg, rx) = not_preloaded(&format!("{TABLE} {}", bump()), ", order_key => ARRAY['id']");
    let mut writer = pg.connect("postgres");
    exec(&mut writer, "INSERT INTO t VALUES (1, 0)");
    drop(writer);
    preload(&pg);
    assert_eq!(arrived(&rx, 2), [ins(1, 0), upd(1, 1)]);
}

#[test]
fn a_sessions_first_copy_loading_the_library_keeps_its_rows_before_its_triggers_writes() {
    // The COPY began before the library (loaded by its BEFORE STATEMENT trigger) had its hooks.
    let (pg, rx) = not_preloaded(&format!("{TABLE} {}", bump()), ", ordered => true");
    let mut writer = pg.connect("postgres");
    let mut copy = writer
        .copy_in("COPY t (id, v) FROM STDIN")
        .expect("COPY FROM STDIN");
    std::io::Write::write_all(&mut copy, b"1\t0\n").expect("COPY rows");
    copy.finish().expect("COPY finished");
    drop(writer);
    preload(&pg);
    assert_eq!(arrived(&rx, 2), [ins(1, 0), upd(1, 1)]);
}
