//! pg_webhook under Patroni and etcd, with the real Debian packages (`patroni`, `etcd-server`;
//! `.ci/setup` installs them): a two-node cluster on loopback per test
//! (tests/support/patroni/), whose leader is killed. The promoted replica delivers the old
//! leader's backlog; a replica, and an old leader that rejoins as one through pg_rewind, send
//! nothing. The receiver finds out which node sent each request (the process holding the other
//! end of its connection), so "sent by the new leader" and "nothing from the replica" are
//! checked per request, not inferred from timing.

mod support;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use postgres::Client;
use support::cluster::wait_until;
use support::patroni::scenario::{committed, freeze_walsender, setup, wait_all_delivered, WARM_UP};
use support::patroni::senders::{by_row, Delivery};
use support::patroni::{signal, webhook_pids, Ha};
use support::{count, exec, LONG_WAIT};

/// Stops (SIGSTOP) every pg_webhook process of the node `db` is on; their pids.
fn freeze(db: &mut Client) -> Vec<i32> {
    wait_until(LONG_WAIT, "the delivery worker to run", || {
        count(
            db,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_webhook'",
        ) > 0
    });
    let pids = webhook_pids(db);
    for &pid in &pids {
        signal(pid, libc::SIGSTOP);
    }
    pids
}

/// Rows `rows` in ten transactions.
fn insert_backlog(db: &mut Client, rows: std::ops::RangeInclusive<i64>) {
    let (first, last) = (*rows.start(), *rows.end());
    let step = ((last - first + 1) / 10).max(1);
    let mut from = first;
    while from <= last {
        let to = (from + step - 1).min(last);
        exec(
            db,
            &format!("INSERT INTO t SELECT g, 'backlog' FROM generate_series({from}, {to}) g"),
        );
        from = to + 1;
    }
}

/// Freezes the leader's pg_webhook, gives the replica a backlog it could send, and checks it
/// sends none of it: it runs no pg_webhook process, nothing arrives while only the replica
/// could send, and once the leader's workers go on, each row arrives once, from the leader.
fn assert_replica_sends_nothing(
    ha: &Ha,
    log: &Mutex<Vec<Delivery>>,
    db: &mut Client,
    leader: usize,
    rows: (i64, i64),
) {
    let replica = 1 - leader;
    let since = Instant::now();
    let frozen = freeze(db);
    insert_backlog(db, rows.0..=rows.1);
    ha.wait_replayed(db, replica);
    let mut on_replica = ha.nodes[replica].connect();
    assert_eq!(
        webhook_pids(&mut on_replica),
        Vec::<i32>::new(),
        "a replica runs no pg_webhook process"
    );
    // The replica holds the same queue: the backlog waits there too.
    let queued = count(
        &mut on_replica,
        &format!(
            "SELECT count(*) FROM webhook.events WHERE status = 'pending'
              AND (record->>'id')::bigint BETWEEN {} AND {}",
            rows.0, rows.1
        ),
    );
    assert_eq!(queued, rows.1 - rows.0 + 1, "the backlog is on the replica");
    // Several poll intervals (500 ms) in which the replica would have sent it.
    thread::sleep(Duration::from_secs(3));
    let released = Instant::now();
    for pid in frozen {
        signal(pid, libc::SIGCONT);
    }
    let marker = rows.1 + 1;
    exec(db, &format!("INSERT INTO t VALUES ({marker}, 'marker')"));
    let expected: BTreeSet<i64> = (rows.0..=marker).collect();
    wait_all_delivered(log, &committed(db));
    let got = by_row(log);
    for row in &expected {
        let d = &got[row];
        assert_eq!(d.len(), 1, "row {row} arrived {} times", d.len());
        assert_eq!(d[0].node, Some(leader), "row {row} was sent by the leader");
        assert!(
            d[0].at >= released,
            "row {row} arrived while the leader was frozen"
        );
    }
    let from_replica = log
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.node == Some(replica) && d.at >= since)
        .count();
    assert_eq!(
        from_replica, 0,
        "requests sent by the replica while it was one"
    );
}

/// Asynchronous replication: the backlog is queued while the leader's pg_webhook processes are
/// frozen (so the old leader never sends it), and the test waits until the replica's replay
/// LSN has reached the leader's (an unreplicated tail would be lost, rows and events together:
/// the rewind test shows it; synchronous mode prevents it), then SIGKILLs the postmaster.
/// Patroni promotes the replica, whose workers send the whole backlog and record it.
#[test]
fn a_killed_leaders_backlog_is_delivered_by_the_promoted_replica() {
    let mut s = setup(false, Duration::ZERO);
    let frozen = freeze(&mut s.db);
    insert_backlog(&mut s.db, 1..=300);
    s.ha.wait_replayed(&mut s.db, 1);
    let killed = Instant::now();
    signal(s.ha.nodes[0].postmaster_pid(), libc::SIGKILL);
    assert_eq!(s.ha.wait_leader(Some(0)), 1, "the replica was promoted");
    let mut db = s.ha.nodes[1].connect();
    exec(
        &mut db,
        "INSERT INTO t VALUES (1000000, 'after the failover')",
    );
    let rows = committed(&mut db);
    assert_eq!(
        rows.len(),
        302,
        "the warm-up row, the backlog and the marker"
    );
    wait_all_delivered(&s.log, &rows);
    for (row, d) in by_row(&s.log) {
        if row == WARM_UP {
            continue;
        }
        assert_eq!(d.len(), 1, "row {row} arrived {} times", d.len());
        assert_eq!(d[0].node, Some(1), "row {row} came from the new leader");
        assert!(d[0].at > killed);
    }
    wait_until(LONG_WAIT, "the new leader to record every delivery", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 302
    });
    // The old leader's workers never ran again: still stopped, orphaned by their postmaster.
    for pid in frozen {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.split(") ")
                .nth(1)
                .is_some_and(|rest| rest.starts_with('T')),
            "frozen worker {pid} is still stopped: {stat}"
        );
    }
}

/// The leader's pg_webhook processes frozen, so nothing can come from it, and a backlog the
/// replica has replayed: the replica sends none of it (see assert_replica_sends_nothing).
#[test]
fn a_replica_sends_nothing_while_it_is_one() {
    let mut s = setup(false, Duration::ZERO);
    assert_replica_sends_nothing(&s.ha, &s.log, &mut s.db, 0, (1, 200));
}

/// An asynchronous tail, then a crash: the old leader commits rows its replica never receives
/// (its walsender frozen) with its pg_webhook processes frozen, then its postmaster is killed.
/// Patroni promotes the replica and brings the old leader back through pg_rewind as a replica
/// of the new one. The tail is gone everywhere, rows and events together; the old leader sends
/// nothing as a replica.
#[test]
fn the_old_leader_rejoins_through_pg_rewind_and_sends_nothing_as_a_replica() {
    let mut s = setup(false, Duration::ZERO);
    insert_backlog(&mut s.db, 1..=100);
    wait_all_delivered(&s.log, &committed(&mut s.db));
    s.ha.wait_replayed(&mut s.db, 1);
    let mut frozen = freeze(&mut s.db);
    let walsender = freeze_walsender(&mut s.db);
    frozen.push(walsender);
    // Committed and acknowledged on the leader only.
    insert_backlog(&mut s.db, 101..=150);
    assert_eq!(
        count(&mut s.db, "SELECT count(*) FROM t WHERE id > 100"),
        50
    );
    let killed = Instant::now();
    signal(s.ha.nodes[0].postmaster_pid(), libc::SIGKILL);
    // The frozen processes would hold the old leader's shared memory and keep it from starting.
    for pid in frozen {
        signal(pid, libc::SIGKILL);
    }
    assert_eq!(s.ha.wait_leader(Some(0)), 1, "the replica was promoted");
    s.ha.wait_replica_streaming(1, 0, false);
    // Patroni writes its log from a thread of its own: the line may come after the streaming.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = s.ha.nodes[0].patroni_log();
        if log.contains("pg_rewind exit code=0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Patroni rewound the old leader: {log}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    let mut db = s.ha.nodes[1].connect();
    let rows = committed(&mut db);
    assert_eq!(rows, (0..=100).collect(), "the tail is lost, the rest kept");
    // Its events went with it: not queued, not sent.
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE (record->>'id')::bigint > 100"
        ),
        0
    );
    wait_all_delivered(&s.log, &rows);
    assert_replica_sends_nothing(&s.ha, &s.log, &mut db, 1, (1001, 1200));
    let since_killed = s
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.node == Some(0) && d.at >= killed)
        .count();
    assert_eq!(
        since_killed, 0,
        "requests from the old leader after it was killed"
    );
    // The rewound node has the new leader's history: no tail there either.
    let mut on_old = s.ha.nodes[0].connect();
    assert_eq!(
        count(
            &mut on_old,
            "SELECT count(*) FROM t WHERE id BETWEEN 101 AND 150"
        ),
        0
    );
}
