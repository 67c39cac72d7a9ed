//! Fault injection on the database's side (harness and checks: tests/support/faults.rs): a
//! client backend, the worker or the whole server killed or stopped mid-load, a primary failing
//! over to its synchronous standby, and the subscription or its table going while events wait.
//! One test per fault, so one failure cannot hide the rest of the table.

mod support;

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use postgres::Client;
use support::cluster::{wait_until, Cluster};
use support::faults::{
    held, ids, ok, run_recovering, settle, setup, tally, worker_pid, Crash, Load, FAST_RETRY,
    SETTLE,
};
use support::receiver::{Receiver, Reply};
use support::{alter_system, describe, subscribe};

#[test]
fn client_backend_killed_mid_load() {
    // A killed backend makes the postmaster restart every process, the worker included.
    run_recovering(
        "client backend killed (SIGKILL) mid-load",
        &[],
        ok,
        "",
        Crash::Yes,
        |pg, _| {
            let mut c = pg.connect("postgres");
            // (The writer may not have connected yet while other tests' clusters start.)
            let mut victim = None;
            wait_until(SETTLE, "a writer to kill", || {
                victim = c
                    .query_opt(
                        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'
                       AND pid <> pg_backend_pid() AND query LIKE '%INSERT INTO load%' LIMIT 1",
                        &[],
                    )
                    .unwrap_or_else(|e| panic!("finding a writer: {}", describe(&e)))
                    .map(|r| r.get::<_, i32>(0));
                victim.is_some()
            });
            let victim = victim.expect("a writer was found");
            pg.kill("KILL", victim);
            thread::sleep(Duration::from_secs(1));
        },
    );
}

#[test]
fn immediate_shutdown_with_events_in_flight() {
    run_recovering(
        "pg_ctl stop -m immediate with events in flight, then start",
        &[],
        |_, _| Reply::Delay(Duration::from_millis(300), 204),
        "",
        Crash::Yes,
        |pg, _| {
            pg.stop("immediate");
            thread::sleep(Duration::from_millis(300));
            pg.pg_ctl_start();
        },
    );
}

#[test]
fn worker_terminated() {
    run_recovering(
        "worker terminated (SIGTERM)",
        &[],
        ok,
        "",
        Crash::Yes,
        |pg, _| {
            let mut c = pg.connect("postgres");
            let w = pg.worker_pid(&mut c);
            c.execute("SELECT pg_terminate_backend($1)", &[&w])
                .unwrap_or_else(|e| panic!("terminating the worker: {}", describe(&e)));
        },
    );
}

#[test]
fn worker_killed() {
    run_recovering(
        "worker killed (SIGKILL)",
        &[],
        ok,
        "",
        Crash::Yes,
        |pg, _| {
            pg.kill("KILL", worker_pid(pg));
            thread::sleep(Duration::from_secs(1));
        },
    );
}

/// Events queued behind a failing receiver: the cluster, a client, the receiver, the
/// subscription id and every committed row id.
struct Backlog {
    _pg: Cluster,
    db: Client,
    rx: Receiver,
    sid: i32,
    committed: HashSet<i64>,
}

fn backlog_behind_a_failing_receiver() -> Backlog {
    let pg = Cluster::start(&[]);
    let mut db = setup(&pg, "load");
    let rx = Receiver::with(|_, _| Reply::Status(503));
    let (sid, _) = subscribe(&mut db, "load", "load", &rx.url("/load"), FAST_RETRY);
    let load = Load::start(pg.port, "load");
    thread::sleep(Duration::from_millis(800));
    let acked = load.finish();
    let committed = ids(&mut db, "SELECT id FROM load WHERE id > 0");
    assert!(acked.is_subset(&committed));
    Backlog {
        _pg: pg,
        db,
        rx,
        sid,
        committed,
    }
}

#[test]
fn unsubscribed_while_queued() {
    let mut b = backlog_behind_a_failing_receiver();
    // Committed before the unsubscribe: promised, so still delivered.
    b.db.batch_execute("SELECT webhook.unsubscribe('load')")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    b.db.batch_execute(
        "INSERT INTO load SELECT g, 'after' FROM generate_series(1000001, 1000050) g",
    )
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    b.rx.set(ok);
    settle(&mut b.db, b.sid);
    let accepted = b.rx.accepted();
    let leaked = accepted
        .iter()
        .filter_map(|r| r.json()["record"]["id"].as_i64())
        .filter(|id| *id > 1_000_000)
        .count();
    assert_eq!(leaked, 0, "changes after unsubscribe are not sent");
    let held = held(&mut b.db, b.sid);
    tally(
        "subscription unsubscribed while events are queued",
        &b.committed,
        &accepted,
        &held,
        true,
        0,
    )
    .report();
}

#[test]
fn table_dropped_while_queued() {
    let mut b = backlog_behind_a_failing_receiver();
    b.db.batch_execute("DROP TABLE load")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    b.rx.set(ok);
    settle(&mut b.db, b.sid);
    let held = held(&mut b.db, b.sid);
    tally(
        "watched table dropped while events are queued",
        &b.committed,
        &b.rx.accepted(),
        &held,
        true,
        0,
    )
    .report();
}

/// A synchronous standby made with pg_basebackup takes over after the primary is killed; the
/// worker starts on the promoted node and delivers everything committed on the old primary. The
/// standby sends nothing while it is one.
#[test]
fn failover_to_a_synchronous_standby() {
    let primary = Cluster::start(&["wal_level = replica", "max_wal_senders = 4"]);
    let mut db = setup(&primary, "load");
    let rx = Receiver::with(|_, _| Reply::Status(503));
    let (sid, _) = subscribe(
        &mut db,
        "load",
        "load",
        &rx.url("/load"),
        ", retry_schedule => ARRAY['300 milliseconds']::interval[], max_attempts => 100",
    );
    let standby = primary.make_standby("standby");
    // Synchronous only once the standby exists: before, every commit would wait for it.
    alter_system(&mut db, "SET synchronous_standby_names = 'standby'");
    wait_until(SETTLE, "the standby to be synchronous", || {
        db.query_one(
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
            &[],
        )
        .map(|r| r.get::<_, i64>(0) == 1)
        .unwrap_or(false)
    });
    let mut on_standby = standby.connect("postgres");
    let standby_workers: i64 = on_standby
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_webhook'",
            &[],
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
        .get(0);
    assert_eq!(standby_workers, 0, "a standby runs no delivery worker");
    let load = Load::start(primary.port, "load");
    thread::sleep(Duration::from_millis(1200));
    let struck = Instant::now();
    primary.stop("immediate");
    let acked = load.finish();
    drop(on_standby);
    standby.promote();
    rx.set(ok);
    let mut db = standby.connect("postgres");
    standby.worker_pid(&mut db);
    settle(&mut db, sid);
    let committed = ids(&mut db, "SELECT id FROM load WHERE id > 0");
    assert!(
        acked.is_subset(&committed),
        "synchronous replication kept every acknowledged commit"
    );
    tally(
        "failover: primary killed, synchronous standby promoted",
        &committed,
        &rx.accepted(),
        &held(&mut db, sid),
        true,
        // The receiver refused everything until the failover: nothing was accepted before it.
        rx.accepted().iter().filter(|r| r.at <= struck).count(),
    )
    .report();
}
