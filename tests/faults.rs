//! Fault injection: a write load runs against a subscribed table while a fault strikes; then
//! the queue settles and what the receiver accepted is compared with what committed. One test
//! per fault, so one failure cannot hide the rest of the table.
//!
//! For every fault: every committed row change is delivered at least once (or, where the fault
//! is a permanently broken endpoint, is still held by the queue with its error), no change from
//! a rolled-back transaction ever arrives, a row that arrived more than once always carried
//! the same webhook-id, and duplicates are bounded: none where nothing crashed, and after a
//! crash no more than the requests sent in the two seconds before it (in flight, or answered
//! and not yet durably recorded). Each test writes its line of the table to
//! `target/tmp/pg_webhook-faults/`, which `.ci/run` prints.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use postgres::Client;
use support::cluster::{free_port, wait_until, Cluster};
use support::receiver::{Receiver, Reply, Request};
use support::tls::{HttpsReceiver, Pki};
use support::{count, describe, subscribe};

const SETTLE: Duration = support::LONG_WAIT;
const FAST_RETRY: &str =
    ", retry_schedule => ARRAY['100 milliseconds']::interval[], max_attempts => 100";
/// After a crash, requests sent this long before it may be sent again: in flight, or answered
/// and recorded by a commit that had not reached the disk (the worker commits asynchronously).
const CRASH_WINDOW: Duration = Duration::from_secs(2);

/// Inserts rows one transaction at a time until stopped; one in five transactions rolls back
/// (with ids that must never arrive). Survives its connection being killed.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashSet<i64>>>,
    handle: Option<thread::JoinHandle<()>>,
}

static NEXT_ID: AtomicI64 = AtomicI64::new(1);

impl Load {
    fn start(port: u16, table: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(HashSet::new()));
        let (s, a, table) = (stop.clone(), acked.clone(), table.to_string());
        let handle = thread::spawn(move || {
            let connect = || {
                Client::connect(
                    &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
                    postgres::NoTls,
                )
                .ok()
            };
            let mut client = connect();
            let mut n = 0u64;
            while !s.load(Ordering::SeqCst) {
                let Some(c) = client.as_mut() else {
                    thread::sleep(Duration::from_millis(100));
                    client = connect();
                    continue;
                };
                n += 1;
                let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
                let result = if n.is_multiple_of(5) {
                    // Never committed: must never arrive.
                    c.batch_execute(&format!(
                        "BEGIN; INSERT INTO {table} VALUES ({}, 'rolled back'); ROLLBACK;",
                        -id
                    ))
                } else {
                    c.batch_execute(&format!("INSERT INTO {table} VALUES ({id}, 'committed')"))
                        .map(|()| {
                            a.lock().unwrap().insert(id);
                        })
                };
                if result.is_err() && c.is_closed() {
                    client = None;
                }
                thread::sleep(Duration::from_millis(2));
            }
        });
        Load {
            stop,
            acked,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> HashSet<i64> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.acked.lock().unwrap().clone()
    }
}

/// One line of the report.
struct Tally {
    fault: String,
    committed: usize,
    delivered: usize,
    duplicates: usize,
    /// The most duplicates this fault may cause.
    duplicates_allowed: usize,
    held: usize,
    lost: usize,
    phantom: usize,
    split_ids: usize,
    must_deliver_all: bool,
}

impl Tally {
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.lost > 0 {
            out.push(format!("{} committed changes lost", self.lost));
        }
        if self.phantom > 0 {
            out.push(format!("{} rolled-back changes delivered", self.phantom));
        }
        if self.split_ids > 0 {
            out.push(format!("{} rows under several webhook-ids", self.split_ids));
        }
        if self.must_deliver_all && self.delivered != self.committed {
            out.push(format!("delivered {}/{}", self.delivered, self.committed));
        }
        if self.duplicates > self.duplicates_allowed {
            out.push(format!(
                "{} duplicates, more than the {} allowed",
                self.duplicates, self.duplicates_allowed
            ));
        }
        out
    }

    /// Writes this fault's line of the table (the test harness hides a passing test's output;
    /// .ci/run prints the files) and fails the test if anything was lost or wrong.
    fn report(self) {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pg_webhook-faults");
        std::fs::create_dir_all(&dir).expect("the report directory");
        let line = format!(
            "| {} | {} | {} | {} (≤ {}) | {} | {} |\n",
            self.fault,
            self.committed,
            self.delivered,
            self.duplicates,
            self.duplicates_allowed,
            self.held,
            self.lost
        );
        let file: String = self
            .fault
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        std::fs::write(dir.join(format!("{file}.md")), &line).expect("the report line");
        println!("{line}");
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "{}: {}",
            self.fault,
            problems.join("; ")
        );
    }
}

/// Compares what committed with what the receiver accepted (`accepted`: record id -> webhook-ids
/// of accepted requests, with multiplicity).
fn tally(
    fault: &str,
    committed: &HashSet<i64>,
    accepted: &[Request],
    held: &HashSet<i64>,
    must_deliver_all: bool,
    duplicates_allowed: usize,
) -> Tally {
    let mut by_row: HashMap<i64, Vec<String>> = HashMap::new();
    for r in accepted {
        if let Some(id) = r.json()["record"]["id"].as_i64() {
            by_row.entry(id).or_default().push(r.id());
        }
    }
    let delivered: HashSet<i64> = by_row.keys().copied().collect();
    Tally {
        fault: fault.to_string(),
        committed: committed.len(),
        delivered: delivered.intersection(committed).count(),
        duplicates: by_row.values().map(|v| v.len() - 1).sum(),
        duplicates_allowed,
        held: held.difference(&delivered).count(),
        lost: committed
            .iter()
            .filter(|id| !delivered.contains(id) && !held.contains(id))
            .count(),
        phantom: delivered.difference(committed).count(),
        split_ids: by_row
            .values()
            .filter(|ids| ids.iter().collect::<HashSet<_>>().len() > 1)
            .count(),
        must_deliver_all,
    }
}

/// Row ids a query returns; a query error fails the test.
fn ids(db: &mut Client, sql: &str) -> HashSet<i64> {
    db.query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .iter()
        .map(|r| r.get::<_, i32>(0) as i64)
        .collect()
}

/// Waits for the subscription's queue to be empty.
fn settle(db: &mut Client, subscription: i32) {
    wait_until(SETTLE, "the queue to settle", || {
        db.query_one(
            "SELECT count(*) FROM webhook._event_queue WHERE subscription_id = $1",
            &[&subscription],
        )
        .map(|r| r.get::<_, i64>(0) == 0)
        .unwrap_or_else(|e| panic!("counting the queue: {}", describe(&e)))
    });
}

/// Row ids still held by the queue (pending) or kept as dead for a subscription.
fn held(db: &mut Client, subscription: i32) -> HashSet<i64> {
    db.query(
        "SELECT (record->>'id')::bigint FROM webhook.events WHERE subscription_id = $1
            AND status <> 'delivered' AND record IS NOT NULL",
        &[&subscription],
    )
    .unwrap_or_else(|e| panic!("reading held events: {}", describe(&e)))
    .iter()
    .map(|r| r.get::<_, i64>(0))
    .collect()
}

fn setup(pg: &Cluster, table: &str) -> Client {
    let mut db = pg.client_with_extension();
    support::exec(
        &mut db,
        &format!("CREATE TABLE {table} (id int PRIMARY KEY, note text)"),
    );
    db
}

fn worker_pid(pg: &Cluster) -> i32 {
    let mut c = pg.connect("postgres");
    pg.worker_pid(&mut c)
}

/// How a fault is allowed to duplicate deliveries.
#[derive(Clone, Copy)]
enum Crash {
    /// Nothing crashes: no request is ever accepted twice.
    No,
    /// A process dies: requests sent in the `CRASH_WINDOW` before may be sent again.
    Yes,
}

/// A scenario: the same shape for every fault that the endpoint eventually recovers from.
fn run_recovering(
    fault: &str,
    conf: &[&str],
    reply: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    extra: &str,
    crash: Crash,
    inject: impl FnOnce(&Cluster, &Receiver),
) {
    let pg = Cluster::start(conf);
    let mut db = setup(&pg, "load");
    let rx = Receiver::with(reply);
    let (sid, _) = subscribe(&mut db, "load", "load", &rx.url("/load"), extra);
    let load = Load::start(pg.port, "load");
    thread::sleep(Duration::from_millis(700));
    let struck = Instant::now();
    inject(&pg, &rx);
    thread::sleep(Duration::from_millis(700));
    let acked = load.finish();
    let mut db = pg.connect("postgres");
    settle(&mut db, sid);
    let committed = ids(&mut db, "SELECT id FROM load WHERE id > 0");
    assert!(
        acked.is_subset(&committed),
        "{fault}: an acknowledged commit is missing"
    );
    let held = held(&mut db, sid);
    let allowed = match crash {
        Crash::No => 0,
        Crash::Yes => rx
            .requests()
            .iter()
            .filter(|r| r.at <= struck && struck.duration_since(r.at) <= CRASH_WINDOW)
            .count(),
    };
    tally(fault, &committed, &rx.accepted(), &held, true, allowed).report();
}

/// First `n` attempts of every event get `bad`, later ones 204.
fn first_attempts(n: usize, bad: Reply) -> impl Fn(&Request, usize) -> Reply + Send + Sync {
    let seen: Mutex<HashMap<String, usize>> = Mutex::new(HashMap::new());
    move |req, _| {
        let mut seen = seen.lock().unwrap();
        let count = seen.entry(req.id()).or_default();
        *count += 1;
        if *count <= n {
            bad.clone()
        } else {
            Reply::Status(204)
        }
    }
}

fn ok(_: &Request, _: usize) -> Reply {
    Reply::Status(204)
}

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
            let victim: i32 = c
                .query_one(
                    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'
                   AND pid <> pg_backend_pid() AND query LIKE '%INSERT INTO load%' LIMIT 1",
                    &[],
                )
                .map(|r| r.get(0))
                .unwrap_or_else(|e| panic!("finding a writer: {}", describe(&e)));
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

#[test]
fn receiver_down_then_back() {
    // Nothing listens on the port until it comes back.
    let pg = Cluster::start(&[]);
    let mut db = setup(&pg, "load");
    let port = free_port();
    let (sid, _) = subscribe(
        &mut db,
        "load",
        "load",
        &format!("http://127.0.0.1:{port}/load"),
        FAST_RETRY,
    );
    let load = Load::start(pg.port, "load");
    thread::sleep(Duration::from_millis(1500));
    let rx = Receiver::on_port(port, ok);
    thread::sleep(Duration::from_millis(500));
    let acked = load.finish();
    settle(&mut db, sid);
    let committed = ids(&mut db, "SELECT id FROM load WHERE id > 0");
    assert!(acked.is_subset(&committed));
    let held = held(&mut db, sid);
    let refused = count(
        &mut db,
        "SELECT count(*) FROM webhook.attempts WHERE error ILIKE '%refused%'",
    );
    assert!(refused > 0, "connection refused attempts are recorded");
    tally(
        "receiver down (connection refused), then back",
        &committed,
        &rx.accepted(),
        &held,
        true,
        0,
    )
    .report();
}

#[test]
fn receiver_answers_500_twice() {
    run_recovering(
        "receiver answers 500 to the first two attempts of each event",
        &[],
        first_attempts(2, Reply::Status(500)),
        FAST_RETRY,
        Crash::No,
        |_, _| {},
    );
}

#[test]
fn receiver_answers_429_with_retry_after() {
    run_recovering(
        "receiver answers 429 with Retry-After: 1 first",
        &[],
        first_attempts(
            1,
            Reply::Full {
                status: 429,
                headers: vec![("Retry-After".into(), "1".into())],
                body: String::new(),
            },
        ),
        FAST_RETRY,
        Crash::No,
        |_, _| {},
    );
}

#[test]
fn receiver_answers_503_with_an_http_date() {
    run_recovering(
        "receiver answers 503 with Retry-After (HTTP date) first",
        &[],
        first_attempts(
            1,
            Reply::Full {
                status: 503,
                headers: vec![("Retry-After".into(), "Thu, 01 Jan 1970 00:00:00 GMT".into())],
                body: String::new(),
            },
        ),
        FAST_RETRY,
        Crash::No,
        |_, _| {},
    );
}

#[test]
fn receiver_hangs_past_the_timeout() {
    run_recovering(
        "receiver hangs past the timeout on first attempts",
        &[],
        first_attempts(1, Reply::Hang(Duration::from_secs(3))),
        &format!("{FAST_RETRY}, timeout => '300 milliseconds'"),
        Crash::No,
        |_, _| {},
    );
}

#[test]
fn receiver_resets_mid_response() {
    run_recovering(
        "receiver resets the connection mid-response",
        &[],
        first_attempts(1, Reply::Raw(b"HTTP/1.1 20".to_vec())),
        FAST_RETRY,
        Crash::No,
        |_, _| {},
    );
}

#[test]
fn receiver_answers_slowly() {
    run_recovering(
        "receiver answers very slowly (1.5 s)",
        &[],
        |_, _| Reply::Delay(Duration::from_millis(1500), 204),
        ", timeout => '10 seconds'",
        Crash::No,
        |_, _| {},
    );
}

#[test]
fn receiver_sends_a_large_body() {
    run_recovering(
        "receiver sends a 3 MB body",
        &[],
        |_, _| Reply::Full {
            status: 200,
            headers: vec![],
            body: "z".repeat(3_000_000),
        },
        "",
        Crash::No,
        |_, _| {},
    );
}

#[test]
fn receiver_redirects() {
    run_recovering(
        "receiver redirects (302) first: not followed, retried",
        &[],
        first_attempts(
            1,
            Reply::Full {
                status: 302,
                headers: vec![("Location".into(), "http://127.0.0.1:1/elsewhere".into())],
                body: String::new(),
            },
        ),
        FAST_RETRY,
        Crash::No,
        |_, _| {},
    );
}

#[test]
fn a_broken_endpoint_beside_a_healthy_one() {
    // An endpoint whose name does not resolve: every event is kept, with the error, and the
    // healthy subscription on the same table gets everything.
    let pg = Cluster::start(&[]);
    let mut db = setup(&pg, "load");
    let rx = Receiver::start();
    let (healthy, _) = subscribe(&mut db, "healthy", "load", &rx.url("/load"), "");
    let (broken, _) = subscribe(
        &mut db,
        "broken",
        "load",
        "http://no-such-host.invalid/hook",
        FAST_RETRY,
    );
    let load = Load::start(pg.port, "load");
    thread::sleep(Duration::from_millis(1200));
    load.finish();
    settle(&mut db, healthy);
    let committed = ids(&mut db, "SELECT id FROM load WHERE id > 0");
    wait_until(SETTLE, "every broken event to have failed once", || {
        count(
            &mut db,
            &format!(
                "SELECT count(*) FROM webhook.events WHERE subscription_id = {broken} AND attempts = 0"
            ),
        ) == 0
    });
    let dns_errors = count(
        &mut db,
        &format!(
            "SELECT count(*) FROM webhook.attempts WHERE subscription_id = {broken} AND error LIKE '%no-such-host.invalid%'"
        ),
    );
    assert!(dns_errors > 0, "DNS failures are recorded");
    let broken_held = held(&mut db, broken);
    tally(
        "healthy subscription beside a broken one",
        &committed,
        &rx.accepted(),
        &held(&mut db, healthy),
        true,
        0,
    )
    .report();
    tally(
        "DNS name that does not resolve (events kept, retried)",
        &committed,
        &[],
        &broken_held,
        false,
        0,
    )
    .report();
}

#[test]
/// TLS: a certificate from an unknown CA is refused; configuring the CA makes it pass.
fn tls_unknown_ca_then_ca_bundle() {
    let pki = Pki::new("tls");
    let rx = HttpsReceiver::start(&pki);

    let pg = Cluster::start(&[]);
    let mut db = setup(&pg, "load");
    let (sid, _) = subscribe(
        &mut db,
        "tls",
        "load",
        &format!("https://127.0.0.1:{}/tls", rx.port),
        FAST_RETRY,
    );
    let load = Load::start(pg.port, "load");
    thread::sleep(Duration::from_millis(1000));
    let acked = load.finish();
    thread::sleep(Duration::from_millis(500));
    wait_until(SETTLE, "a certificate error", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.attempts WHERE error ILIKE '%certificate%'",
        ) > 0
    });
    assert_eq!(
        rx.received().len(),
        0,
        "nothing reached the untrusted server"
    );
    db.batch_execute(&format!(
        "ALTER SYSTEM SET pg_webhook.ca_bundle = '{}'",
        pki.path("ca.pem").display()
    ))
    .unwrap_or_else(|e| panic!("setting the CA bundle: {}", describe(&e)));
    support::exec(&mut db, "SELECT pg_reload_conf()");
    settle(&mut db, sid);
    let committed = ids(&mut db, "SELECT id FROM load WHERE id > 0");
    assert!(acked.is_subset(&committed));
    let accepted: Vec<Request> = rx
        .deliveries()
        .into_iter()
        .map(|(id, row)| Request {
            path: "/tls".into(),
            headers: vec![("webhook-id".into(), id)],
            body: format!("{{\"record\":{{\"id\":{row}}}}}").into_bytes(),
            at: Instant::now(),
            peer: None,
            connection: 0,
        })
        .collect();
    drop(rx);
    let held = held(&mut db, sid);
    tally(
        "TLS: unknown CA refused, then trusted via pg_webhook.ca_bundle",
        &committed,
        &accepted,
        &held,
        true,
        0,
    )
    .report();
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
    db.batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'standby'")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    db.batch_execute("SELECT pg_reload_conf()")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
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
