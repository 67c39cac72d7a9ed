//! pg_webhook under Patroni and etcd (tests/support/patroni/, with the Debian packages
//! `.ci/setup` installs) while commits go on as the leader changes: a switchover under writers,
//! a leader killed in synchronous_mode, a commit cut loose from its wait for the standby; and a
//! plain cluster whose commits wait for no standby. Every scenario counts committed rows
//! against the webhook-ids the receiver accepted: every committed row arrives, a row that
//! arrives twice carries the same webhook-id, and duplicates come only from requests in flight.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use support::cluster::{wait_until, Cluster};
use support::patroni::scenario::{
    committed, freeze_walsender, setup, wait_all_delivered, Setup, WARM_UP,
};
use support::patroni::senders::{by_row, Delivery, Sender};
use support::patroni::{signal, Ha, HA_WAIT};
use support::receiver::Receiver;
use support::{count, exec, subscribe, LONG_WAIT};

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
    rx.wait_for_answers(20, LONG_WAIT);
    let mut ids = rx.accepted_ids();
    ids.sort_unstable();
    assert_eq!(ids, (1..=20).collect::<Vec<i64>>());
}
