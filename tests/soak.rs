//! The soak benchmark: a steady write load for a long time, with the faults of a normal day —
//! a receiver that fails 5 % of requests, a pause and resume and a worker restart every
//! minute — and short retention. It prints, over time, the size of every pg_webhook relation
//! (heap and indexes), the finished events kept, dead tuples and the workers' memory, and at the
//! end compares what committed with what the receiver accepted. Nothing is judged in CI.
//!
//!   bash .ci/soak            # full run: 10 minutes at 2,000 events/s, retention 20 s
//!
//! Under `cargo test` it runs a 30-second smoke version at 200 events/s.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use support::cluster::{wait_until, Cluster};
use support::sink::Sink;
use support::{count, exec};

struct Scale {
    full: bool,
    run: Duration,
    rate: u64,
    retention: &'static str,
    /// How often a pause/resume and a worker restart happen.
    fault_every: Duration,
    sample_every: Duration,
}

impl Scale {
    fn pick() -> Scale {
        let full = std::env::args().any(|a| a == "--full")
            || std::env::var("PG_WEBHOOK_SOAK").is_ok_and(|v| v == "full");
        let minutes = std::env::var("PG_WEBHOOK_SOAK_MINUTES")
            .ok()
            .and_then(|m| m.parse::<u64>().ok())
            .unwrap_or(10);
        if full {
            Scale {
                full,
                run: Duration::from_secs(60 * minutes),
                rate: 2_000,
                retention: "20s",
                fault_every: Duration::from_secs(60),
                sample_every: Duration::from_secs(30),
            }
        } else {
            Scale {
                full,
                run: Duration::from_secs(30),
                rate: 200,
                retention: "5s",
                fault_every: Duration::from_secs(10),
                sample_every: Duration::from_secs(5),
            }
        }
    }
}

/// Writers inserting single rows at a steady total rate, each in its own transaction.
struct Writers {
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicI64>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Writers {
    fn start(port: u16, rate: u64) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicI64::new(0));
        let next = Arc::new(AtomicI64::new(1));
        let per_writer = rate / 2;
        let threads = (0..2)
            .map(|_| {
                let (stop, committed, next) = (stop.clone(), committed.clone(), next.clone());
                thread::spawn(move || {
                    let url = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
                    let mut client = Client::connect(&url, NoTls).ok();
                    let started = Instant::now();
                    let mut done: u64 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        // Keep to the rate: sleep when ahead of it.
                        let due = Duration::from_secs_f64(done as f64 / per_writer as f64);
                        if let Some(ahead) = due.checked_sub(started.elapsed()) {
                            thread::sleep(ahead);
                        }
                        let Some(c) = client.as_mut() else {
                            thread::sleep(Duration::from_millis(100));
                            client = Client::connect(&url, NoTls).ok();
                            continue;
                        };
                        let id = next.fetch_add(1, Ordering::Relaxed);
                        match c.execute("INSERT INTO soak VALUES ($1, 'steady')", &[&id]) {
                            Ok(_) => {
                                committed.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) if c.is_closed() => client = None,
                            Err(_) => {}
                        }
                        done += 1;
                    }
                })
            })
            .collect();
        Writers {
            stop,
            committed,
            threads,
        }
    }

    fn finish(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("a writer thread");
        }
        self.committed.load(Ordering::Relaxed)
    }
}

/// One sample of the footprint.
struct Sample {
    at: Duration,
    committed: i64,
    /// Every pg_webhook relation (tables, their indexes and TOAST), in bytes.
    total: i64,
    queue: i64,
    archive: i64,
    archive_indexes: i64,
    attempts: i64,
    queued: i64,
    kept: i64,
    dead_tuples: i64,
    rss_anon_kib: u64,
}

const SIZES: &str = "
SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint,
       pg_total_relation_size('webhook._event_queue')::bigint,
       pg_relation_size('webhook._event_archive')::bigint,
       pg_indexes_size('webhook._event_archive')::bigint,
       pg_total_relation_size('webhook._attempts')::bigint,
       (SELECT count(*) FROM webhook._event_queue),
       (SELECT count(*) FROM webhook._event_archive),
       (SELECT COALESCE(sum(n_dead_tup), 0)::bigint FROM pg_stat_all_tables WHERE schemaname = 'webhook')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'webhook' AND c.relkind = 'r'";

fn rss_anon_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn sample(pg: &Cluster, db: &mut Client, at: Duration, committed: i64) -> Sample {
    let row = db
        .query_one(SIZES, &[])
        .unwrap_or_else(|e| panic!("sizes: {}", support::describe(&e)));
    let rss = pg
        .worker_pids(db)
        .iter()
        .map(|pid| rss_anon_kib(*pid))
        .sum();
    Sample {
        at,
        committed,
        total: row.get(0),
        queue: row.get(1),
        archive: row.get(2),
        archive_indexes: row.get(3),
        attempts: row.get(4),
        queued: row.get(5),
        kept: row.get(6),
        dead_tuples: row.get(7),
        rss_anon_kib: rss,
    }
}

fn mib(bytes: i64) -> String {
    format!("{:.1}", bytes as f64 / (1 << 20) as f64)
}

fn main() {
    let scale = Scale::pick();
    println!(
        "pg_webhook soak ({}): {} s at {} events/s, retention {}, receiver failing 5 %, pause/resume and worker restart every {} s",
        if scale.full { "full" } else { "smoke, nothing judged" },
        scale.run.as_secs(),
        scale.rate,
        scale.retention,
        scale.fault_every.as_secs()
    );
    let retention = format!("pg_webhook.retention = '{}'", scale.retention);
    let dead_retention = format!("pg_webhook.dead_retention = '{}'", scale.retention);
    let pg = Cluster::start(&[
        &retention,
        &dead_retention,
        "log_min_messages = warning",
        "max_wal_size = '4GB'",
    ]);
    let mut db = pg.client_with_extension();
    let sink = Sink::start();
    sink.fail_one_in.store(20, Ordering::Relaxed);
    sink.track_accepted.store(true, Ordering::Relaxed);
    exec(
        &mut db,
        "CREATE TABLE soak (id bigint PRIMARY KEY, note text)",
    );
    support::subscribe(
        &mut db,
        "soak",
        "soak",
        &sink.url(),
        // A failed request is retried a second later; the default schedule starts at 5 s.
        ", retry_schedule => ARRAY['1 second']::interval[], max_attempts => 100",
    );
    let started = Instant::now();
    let writers = Writers::start(pg.port, scale.rate);
    let committed = writers.committed.clone();
    let mut samples = Vec::new();
    let mut next_fault = started + scale.fault_every;
    let mut next_sample = started;
    while started.elapsed() < scale.run {
        let now = Instant::now();
        if now >= next_sample {
            samples.push(sample(
                &pg,
                &mut db,
                started.elapsed(),
                committed.load(Ordering::Relaxed),
            ));
            next_sample += scale.sample_every;
        }
        if now >= next_fault {
            exec(&mut db, "SELECT webhook.pause('soak')");
            thread::sleep(Duration::from_secs(2));
            exec(&mut db, "SELECT webhook.resume('soak')");
            let pid = pg.worker_pid(&mut db);
            exec(&mut db, &format!("SELECT pg_terminate_backend({pid})"));
            next_fault += scale.fault_every;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let total = writers.finish();
    wait_until(Duration::from_secs(300), "the queue to drain", || {
        count(&mut db, "SELECT count(*) FROM webhook._event_queue") == 0
    });
    samples.push(sample(&pg, &mut db, started.elapsed(), total));
    let rows: HashSet<i64> = db
        .query("SELECT id FROM soak", &[])
        .unwrap_or_else(|e| panic!("committed rows: {}", support::describe(&e)))
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect();
    let accepted: HashSet<i64> = sink.accepted.lock().map(|a| a.clone()).unwrap_or_default();
    let lost = rows.difference(&accepted).count();
    let phantom = accepted.difference(&rows).count();

    println!();
    println!("| at (s) | committed | webhook total MiB | queue MiB | archive heap MiB | archive indexes MiB | attempts MiB | queued | finished kept | dead tuples | workers RssAnon MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for s in &samples {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            s.at.as_secs(),
            s.committed,
            mib(s.total),
            mib(s.queue),
            mib(s.archive),
            mib(s.archive_indexes),
            mib(s.attempts),
            s.queued,
            s.kept,
            s.dead_tuples,
            s.rss_anon_kib as f64 / 1024.0
        );
    }
    let at = |secs: u64| {
        samples
            .iter()
            .rfind(|s| s.at.as_secs() <= secs)
            .map_or(0, |s| s.total)
    };
    let (early, late) = if scale.full {
        (at(120), at(scale.run.as_secs()))
    } else {
        (at(10), at(scale.run.as_secs()))
    };
    println!();
    println!(
        "committed {} rows ({} acknowledged); accepted {} unique; lost {lost}; never committed but sent {phantom}; requests {} (5 % refused)",
        rows.len(),
        total,
        accepted.len(),
        sink.received()
    );
    println!(
        "footprint: {} MiB early, {} MiB at the end ({:+.0} %)",
        mib(early),
        mib(late),
        if early > 0 {
            100.0 * (late - early) as f64 / early as f64
        } else {
            0.0
        }
    );
    assert_eq!(lost, 0, "committed rows were not delivered");
    assert_eq!(phantom, 0, "rows that never committed were delivered");
}
