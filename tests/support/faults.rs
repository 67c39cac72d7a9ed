//! The fault-injection harness the faults_* tests share: a write load runs against a subscribed
//! table while a fault strikes; then the queue settles and what the receiver accepted is
//! compared with what committed.
//!
//! For every fault: every committed row change is delivered at least once (or, where the fault
//! is a permanently broken endpoint, is still held by the queue with its error), no change from
//! a rolled-back transaction ever arrives, a row that arrived more than once always carried
//! the same webhook-id, and duplicates are bounded: none where nothing crashed, and after a
//! crash no more than the requests sent in the two seconds before it (in flight, or answered
//! and not yet durably recorded). Each test writes its line of the table to
//! `target/tmp/pg_webhook-faults/`, which `.ci/run` prints.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use postgres::Client;

use super::cluster::{wait_until, Cluster};
use super::receiver::{Receiver, Reply, Request};
use super::{describe, subscribe};

pub const SETTLE: Duration = super::LONG_WAIT;
pub const FAST_RETRY: &str =
    ", retry_schedule => ARRAY['100 milliseconds']::interval[], max_attempts => 100";
/// After a crash, requests sent this long before it may be sent again: in flight, or answered
/// and recorded by a commit that had not reached the disk (the worker commits asynchronously).
const CRASH_WINDOW: Duration = Duration::from_secs(2);

/// Inserts rows one transaction at a time until stopped; one in five transactions rolls back
/// (with ids that must never arrive). Survives its connection being killed.
pub struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashSet<i64>>>,
    handle: Option<thread::JoinHandle<()>>,
}

static NEXT_ID: AtomicI64 = AtomicI64::new(1);

impl Load {
    pub fn start(port: u16, table: &str) -> Load {
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

    pub fn finish(mut self) -> HashSet<i64> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.acked.lock().unwrap().clone()
    }
}

/// One line of the report.
pub struct Tally {
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
    pub fn report(self) {
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
pub fn tally(
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
pub fn ids(db: &mut Client, sql: &str) -> HashSet<i64> {
    db.query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .iter()
        .map(|r| r.get::<_, i32>(0) as i64)
        .collect()
}

/// Waits for the subscription's queue to be empty.
pub fn settle(db: &mut Client, subscription: i32) {
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
pub fn held(db: &mut Client, subscription: i32) -> HashSet<i64> {
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

pub fn setup(pg: &Cluster, table: &str) -> Client {
    let mut db = pg.client_with_extension();
    super::exec(
        &mut db,
        &format!("CREATE TABLE {table} (id int PRIMARY KEY, note text)"),
    );
    db
}

pub fn worker_pid(pg: &Cluster) -> i32 {
    let mut c = pg.connect("postgres");
    pg.worker_pid(&mut c)
}

/// How a fault is allowed to duplicate deliveries.
#[derive(Clone, Copy)]
pub enum Crash {
    /// Nothing crashes: no request is ever accepted twice.
    No,
    /// A process dies: requests sent in the `CRASH_WINDOW` before may be sent again.
    Yes,
}

/// A scenario: the same shape for every fault that the endpoint eventually recovers from.
pub fn run_recovering(
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
pub fn first_attempts(n: usize, bad: Reply) -> impl Fn(&Request, usize) -> Reply + Send + Sync {
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

pub fn ok(_: &Request, _: usize) -> Reply {
    Reply::Status(204)
}
