//! pg_webhook under Patroni and etcd, with the real Debian packages (`patroni`, `etcd-server`;
//! `.ci/setup` installs them): a two-node cluster on loopback per test, pg_webhook and its
//! settings in Patroni's bootstrap DCS configuration (tests/support/patroni/).
//!
//! The receiver finds out which node sent each request (the process holding the other end of
//! its connection), so "sent by the new leader" and "nothing from the replica" are checked per
//! request, not inferred from timing. Every scenario counts committed rows against the
//! webhook-ids the receiver accepted: every committed row arrives, a row that arrives twice
//! carries the same webhook-id, and duplicates come only from requests in flight.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use support::cluster::{wait_until, Cluster};
use support::patroni::senders::{by_row, receiver, Delivery, Sender};
use support::patroni::{signal, webhook_pids, Ha, HA_WAIT};
use support::receiver::Receiver;
use support::{count, exec, subscribe, LONG_WAIT};

/// A failed attempt is retried soon, so nothing waits on the default 5 s schedule.
const FAST_RETRY: &str =
    ", retry_schedule => ARRAY['200 milliseconds']::interval[], max_attempts => 100";
/// The row the setup sends first, to see the leader deliver.
const WARM_UP: i64 = 0;

struct Setup {
    ha: Ha,
    _rx: Receiver,
    log: Arc<Mutex<Vec<Delivery>>>,
    /// Connected to the leader, node 0.
    db: Client,
}

/// A cluster (node 0 leads), a receiver that answers after `delay`, table `t` subscribed, and
/// one row delivered by the leader.
fn setup(synchronous: bool, delay: Duration) -> Setup {
    let ha = Ha::start(synchronous);
    let (rx, log) = receiver(&ha, delay);
    let mut db = ha.nodes[0].connect();
    exec(
        &mut db,
        "CREATE EXTENSION pg_webhook; CREATE TABLE t (id bigint PRIMARY KEY, note text)",
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), FAST_RETRY);
    // pg_webhook's settings come from Patroni's configuration, the same on both nodes.
    for node in &ha.nodes {
        let row = node
            .connect()
            .query_one(
                "SELECT setting, source, sourcefile FROM pg_settings
                  WHERE name = 'pg_webhook.allowed_destinations'",
                &[],
            )
            .unwrap_or_else(|e| panic!("pg_webhook.allowed_destinations on {}: {e}", node.name));
        let (setting, source, file): (String, String, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        assert_eq!(
            (setting.as_str(), source.as_str()),
            ("127.0.0.1", "configuration file"),
            "{}",
            node.name
        );
        assert!(
            file.as_deref()
                .is_some_and(|f| f.ends_with("/postgresql.conf")),
            "{} reads it from {file:?}, not Patroni's postgresql.conf",
            node.name
        );
    }
    exec(
        &mut db,
        &format!("INSERT INTO t VALUES ({WARM_UP}, 'warm-up')"),
    );
    wait_until(LONG_WAIT, "the warm-up row to arrive", || {
        by_row(&log).contains_key(&WARM_UP)
    });
    assert_eq!(
        by_row(&log)[&WARM_UP][0].node,
        Some(0),
        "the leader sent the warm-up row"
    );
    Setup {
        ha,
        _rx: rx,
        log,
        db,
    }
}

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

/// Stops (SIGSTOP) the walsender of the leader `db` is on: nothing more reaches the replica.
fn freeze_walsender(db: &mut Client) -> i32 {
    let rows = db
        .query(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender'",
            &[],
        )
        .unwrap_or_else(|e| panic!("finding the walsender: {e}"));
    assert_eq!(rows.len(), 1, "one walsender, to the replica");
    let pid = rows[0].get(0);
    signal(pid, libc::SIGSTOP);
    pid
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

/// The ids in table `t` on the node `db` is connected to.
fn committed(db: &mut Client) -> BTreeSet<i64> {
    db.query("SELECT id FROM t", &[])
        .unwrap_or_else(|e| panic!("reading t: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Waits until every row of `rows` was accepted; then checks no row arrived under two
/// webhook-ids and none arrived that did not commit.
fn wait_all_delivered(log: &Mutex<Vec<Delivery>>, rows: &BTreeSet<i64>) {
    wait_until(
        LONG_WAIT,
        &format!("all {} rows to arrive", rows.len()),
        || {
            let got = by_row(log);
            rows.iter().all(|r| got.contains_key(r))
        },
    );
    for (row, deliveries) in by_row(log) {
        assert!(
            rows.contains(&row),
            "row {row} arrived but is not in the table: {deliveries:?}"
        );
        let ids: HashSet<&str> = deliveries.iter().map(|d| d.webhook_id.as_str()).collect();
        assert_eq!(
            ids.len(),
            1,
            "row {row} arrived under several webhook-ids: {ids:?}"
        );
    }
    // A sender that had closed its end before its connection was accepted (a stopping node's
    // worker, see senders.rs) is no stranger; a live process outside the cluster would be.
    let unknown = log
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.sender == Sender::Unknown)
        .count();
    assert_eq!(unknown, 0, "requests no node of the cluster sent");
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

/// Writers that follow the leader (target_session_attrs=read-write), `n` threads.
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashSet<i64>>>,
    handles: Vec<thread::JoinHandle<()>>,
}

impl Writers {
    fn start(ha: &Ha, n: i64) -> Writers {
        let conninfo = format!(
            "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=postgres \
             target_session_attrs=read-write connect_timeout=2",
            ha.nodes[0].pg_port, ha.nodes[1].pg_port
        );
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(HashSet::new()));
        let handles = (1..=n)
            .map(|w| {
                let (conninfo, stop, acked) = (conninfo.clone(), stop.clone(), acked.clone());
                thread::spawn(move || {
                    let mut client: Option<Client> = None;
                    let mut id = w * 10_000_000;
                    while !stop.load(Ordering::SeqCst) {
                        let Some(c) = client.as_mut() else {
                            client = Client::connect(&conninfo, NoTls).ok();
                            if client.is_none() {
                                thread::sleep(Duration::from_millis(50));
                            }
                            continue;
                        };
                        id += 1;
                        match c.batch_execute(&format!("INSERT INTO t VALUES ({id}, 'writer')")) {
                            Ok(()) => {
                                acked.lock().unwrap().insert(id);
                            }
                            // Committed or not, the table on the new leader says.
                            Err(_) => client = None,
                        }
                        thread::sleep(Duration::from_millis(10));
                    }
                })
            })
            .collect();
        Writers {
            stop,
            acked,
            handles,
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn wait_acked(&self, n: usize) {
        wait_until(HA_WAIT, &format!("{n} acknowledged commits"), || {
            self.acked() >= n
        });
    }

    fn finish(mut self) -> HashSet<i64> {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            h.join().expect("a writer panicked");
        }
        self.acked.lock().unwrap().clone()
    }
}

/// Once node 1 leads: lets the writers commit `more` rows there, stops them, checks every
/// acknowledged commit is on node 1 and waits until everything there arrived. The acknowledged
/// ids and the committed ones.
fn settle(s: &Setup, writers: Writers, more: usize) -> (HashSet<i64>, BTreeSet<i64>) {
    let before = writers.acked();
    writers.wait_acked(before + more);
    let acked = writers.finish();
    let rows = committed(&mut s.ha.nodes[1].connect());
    let lost: Vec<&i64> = acked.iter().filter(|id| !rows.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
    wait_all_delivered(&s.log, &rows);
    (acked, rows)
}

/// A planned switchover while two writers run and the receiver takes 20 ms per answer (so
/// requests are in flight when the old leader stops): nothing committed is lost, and a row
/// sent twice is one whose request was in flight at the switchover, resent by the new leader
/// under the same webhook-id.
#[test]
fn a_switchover_under_writers_loses_nothing_and_repeats_only_requests_in_flight() {
    let s = setup(false, Duration::from_millis(20));
    let writers = Writers::start(&s.ha, 2);
    writers.wait_acked(300);
    let switched = Instant::now();
    s.ha.patronictl(
        0,
        &[
            "switchover",
            "--leader",
            "node1",
            "--candidate",
            "node2",
            "--force",
        ],
    );
    assert_eq!(
        s.ha.wait_leader(Some(0)),
        1,
        "node2 leads after the switchover"
    );
    let (acked, rows) = settle(&s, writers, 300);
    let got = by_row(&s.log);
    let repeated: Vec<&Vec<Delivery>> = got.values().filter(|d| d.len() > 1).collect();
    // The old leader's workers stop during the switchover: a request one of them wrote just
    // before exiting is found with its sender gone.
    let gone: Vec<Delivery> = s
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.sender == Sender::Gone)
        .cloned()
        .collect();
    assert!(
        gone.iter().all(|d| d.at >= switched),
        "only the stopping leader's senders may be gone: {gone:?}"
    );
    for d in &repeated {
        let row = d[0].row;
        assert!(
            d[0].node == Some(0) || d[0].sender == Sender::Gone && d[0].at >= switched,
            "row {row} first came from the old leader: {d:?}"
        );
        assert!(
            d[1..].iter().all(|later| later.node == Some(1)),
            "row {row} was repeated by the new leader only: {d:?}"
        );
        assert!(
            d[0].at + Duration::from_secs(2) >= switched,
            "row {row} was repeated although it was answered before the switchover: {d:?}"
        );
    }
    // At most what one worker has in flight (pg_webhook.max_in_flight, 256 by default).
    assert!(repeated.len() <= 256, "{} rows repeated", repeated.len());
    let from = |n| {
        s.log
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.node == Some(n))
            .count()
    };
    println!(
        "switchover: {} committed, {} acknowledged, {} sent by node1, {} by node2, {} repeated",
        rows.len(),
        acked.len(),
        from(0),
        from(1),
        repeated.len()
    );
    assert!(from(0) > 0 && from(1) > 0, "both leaders delivered");
}

/// Patroni's synchronous_mode: the leader's postmaster is SIGKILLed while two writers commit,
/// without waiting for anything to replay; every acknowledged commit is on the promoted
/// synchronous standby and arrives, and nothing arrives that is not there. (Before
/// replicated.rs, the old leader sometimes sent a commit whose wait for the standby the
/// postmaster's death had cut short: a row the new leader does not have.) The old leader,
/// whose workers were running, rejoins.
#[test]
fn with_synchronous_mode_an_acknowledged_commit_survives_a_leader_kill() {
    let s = setup(true, Duration::ZERO);
    let writers = Writers::start(&s.ha, 2);
    writers.wait_acked(300);
    signal(s.ha.nodes[0].postmaster_pid(), libc::SIGKILL);
    assert_eq!(
        s.ha.wait_leader(Some(0)),
        1,
        "the synchronous standby was promoted"
    );
    let (acked, rows) = settle(&s, writers, 100);
    // Its pg_webhook processes left with the postmaster (else its shared memory would still be
    // in use and postgres could not start again): the old leader comes back as a replica.
    s.ha.wait_replica_streaming(1, 0, false);
    println!(
        "synchronous failover: {} committed, {} acknowledged, {} requests",
        rows.len(),
        acked.len(),
        s.log.lock().unwrap().len()
    );
}

/// Synchronous mode, and a commit cut loose from its wait for the standby: the leader's walsender
/// is frozen, so a writer's commit waits; cancelling that wait leaves the row committed on the
/// leader only, visible there, and lost at the failover that follows. Its event must not go out
/// before the standby has it: the worker claims it and waits, and dies with the postmaster
/// without sending it. (Sending it at once told the receiver of a change the cluster never
/// had: with_synchronous_mode_an_acknowledged_commit_survives_a_leader_kill met it when the
/// postmaster's death cut the waits short.)
#[test]
fn a_commit_cut_loose_from_its_synchronous_wait_is_not_sent_before_the_standby_has_it() {
    let mut s = setup(true, Duration::ZERO);
    let walsender = freeze_walsender(&mut s.db);
    let node = &s.ha.nodes[0];
    let mut writer = node.connect();
    let insert = thread::spawn(move || {
        writer.batch_execute("INSERT INTO t VALUES (7, 'on the leader only')")
    });
    let mut waiting = 0;
    wait_until(LONG_WAIT, "the writer to wait for the standby", || {
        waiting =
            s.db.query_opt(
                "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
                &[],
            )
            .unwrap_or_else(|e| panic!("finding the waiting writer: {e}"))
            .map_or(0, |r| r.get(0));
        waiting != 0
    });
    exec(&mut s.db, &format!("SELECT pg_cancel_backend({waiting})"));
    // The commit stands (with a WARNING): the row is on the leader, not on the standby.
    insert
        .join()
        .expect("the writer panicked")
        .unwrap_or_else(|e| panic!("the cancelled commit: {e}"));
    assert_eq!(count(&mut s.db, "SELECT count(*) FROM t WHERE id = 7"), 1);
    wait_until(LONG_WAIT, "the worker to hold or send row 7", || {
        by_row(&s.log).contains_key(&7)
            || count(
                &mut s.db,
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_webhook'
                   AND query = 'waiting for the synchronous standbys'",
            ) == 1
    });
    assert!(
        !by_row(&s.log).contains_key(&7),
        "row 7 was sent before the standby had it"
    );
    signal(node.postmaster_pid(), libc::SIGKILL);
    signal(walsender, libc::SIGKILL);
    assert_eq!(s.ha.wait_leader(Some(0)), 1, "the standby was promoted");
    let mut db = s.ha.nodes[1].connect();
    exec(&mut db, "INSERT INTO t VALUES (8, 'after the failover')");
    let rows = committed(&mut db);
    assert_eq!(rows, BTreeSet::from([WARM_UP, 8]), "row 7 was lost");
    // Row 7 never arrives (nothing not in the table may), row 8 does.
    wait_all_delivered(&s.log, &rows);
}

/// The wait for synchronous standbys follows what commits do: with `synchronous_commit = local`
/// as configured, writers do not wait for the standby `synchronous_standby_names` names (here
/// one that never connects), and neither does delivery.
#[test]
fn delivery_waits_for_no_standby_that_commits_do_not_wait_for() {
    let pg = Cluster::start(&[
        "synchronous_standby_names = 'never_connects'",
        "synchronous_commit = local",
    ]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(&mut db, "CREATE TABLE t (id bigint PRIMARY KEY, note text)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(
        &mut db,
        "INSERT INTO t SELECT g, 'local commit' FROM generate_series(1, 20) g",
    );
    rx.wait_for(20, LONG_WAIT);
    let mut ids = rx.accepted_ids();
    ids.sort_unstable();
    assert_eq!(ids, (1..=20).collect::<Vec<i64>>());
}
