//! The pg_webhook benchmark: starts its own cluster and its own fast sink on 127.0.0.1, runs each
//! scenario, and prints every figure next to a baseline measured in the same run.
//!
//!   bash .ci/bench            # full run (release build); takes a few minutes
//!
//! Under `cargo test` (and so in CI) it runs a smoke version with tiny sizes: it proves the
//! benchmark still works and asserts nothing about speed.

mod support;

use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_webhook_core::http::{Endpoint, Message, Sender, SenderSettings};
use pg_webhook_core::signing::Secret;
use pg_webhook_core::{Bytes, HeaderMap, Url};
use postgres::Client;
use support::cluster::{wait_until, Cluster};
use support::count;
use support::sink::Sink;

struct Scale {
    full: bool,
    drain_events: i64,
    latency_commits: usize,
    pgbench_seconds: u32,
    bulk_rows: i64,
    backlog_events: i64,
    idle_seconds: u64,
    purge_rows: i64,
}

impl Scale {
    fn pick() -> Scale {
        let full = std::env::args().any(|a| a == "--full")
            || std::env::var("PG_WEBHOOK_BENCH").is_ok_and(|v| v == "full");
        if full {
            Scale {
                full,
                drain_events: 100_000,
                latency_commits: 2_000,
                pgbench_seconds: 10,
                bulk_rows: 100_000,
                backlog_events: 1_000_000,
                idle_seconds: 10,
                purge_rows: 500_000,
            }
        } else {
            Scale {
                full,
                drain_events: 300,
                latency_commits: 20,
                pgbench_seconds: 1,
                bulk_rows: 300,
                backlog_events: 1_000,
                idle_seconds: 1,
                purge_rows: 2_000,
            }
        }
    }
}

/// One printed line: figure, measured, baseline, ratio, target, met.
struct Row {
    figure: &'static str,
    measured: String,
    baseline: String,
    ratio: String,
    target: &'static str,
    met: bool,
}

fn pending(db: &mut Client) -> i64 {
    count(db, "SELECT count(*) FROM webhook._event_queue")
}

fn wait_drained(db: &mut Client, timeout: Duration) {
    wait_until(timeout, "the queue to drain", || pending(db) == 0);
}

fn workers_cpu_seconds(pids: &[i32]) -> f64 {
    pids.iter().map(|p| cpu_seconds(*p)).sum()
}

/// (utime + stime) of a process, in seconds.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// (VmRSS, RssAnon, RssShmem) of a process, in KiB.
fn rss_kib(pid: i32) -> (u64, u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"), field("RssShmem:"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// The same work the worker does per event, without Postgres: sign and POST `n` bodies with
/// `concurrency` requests in flight, on a current-thread runtime like the worker's.
fn raw_client_rate(url: &str, n: u64, concurrency: usize, body: Bytes) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sender = Sender::new(&SenderSettings {
        max_idle_per_host: concurrency,
        policy: pg_webhook_core::address::AddressPolicy::parse("127.0.0.1").expect("policy"),
        ..SenderSettings::default()
    })
    .expect("sender");
    let endpoint = Arc::new(Endpoint {
        url: Url::parse(url).expect("url"),
        secrets: vec![Secret::generate().expect("secret")],
        headers: HeaderMap::new(),
        timeout: Duration::from_secs(15),
        keep_response_headers: false,
    });
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (sender, endpoint, next, failed, body) = (
                sender.clone(),
                endpoint.clone(),
                next.clone(),
                failed.clone(),
                body.clone(),
            );
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let message = Message {
                        id: format!("msg_bench_{i}"),
                        body: body.clone(),
                        content_type: "application/json",
                    };
                    let a = sender.send(&endpoint, &message).await;
                    if a.status != Some(204) {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "the raw client saw failures"
    );
    n as f64 / started.elapsed().as_secs_f64()
}

/// Returns the drain rate (events/s), which the retention purge must keep up with.
fn drain(pg: &Cluster, db: &mut Client, sink: &Sink, scale: &Scale, rows: &mut Vec<Row>) -> f64 {
    db.batch_execute(
        "CREATE TABLE drain_t (id bigserial PRIMARY KEY, customer text, total numeric(12,2),
                               placed_at timestamptz DEFAULT now())",
    )
    .unwrap();
    db.execute(
        "SELECT webhook.subscribe('drain', 'drain_t', $1)",
        &[&sink.url()],
    )
    .unwrap();
    let before = sink.received();
    // One transaction: the whole backlog becomes visible at once, at COMMIT.
    db.batch_execute(&format!(
        "INSERT INTO drain_t (customer, total)
         SELECT 'customer ' || g, g / 100.0 FROM generate_series(1, {}) g",
        scale.drain_events
    ))
    .unwrap();
    let started = Instant::now();
    wait_until(
        Duration::from_secs(600),
        "the sink to receive the backlog",
        || sink.received() - before >= scale.drain_events as u64,
    );
    let elapsed = started.elapsed();
    wait_drained(db, Duration::from_secs(120));
    let rate = scale.drain_events as f64 / elapsed.as_secs_f64();
    let failed = count(
        db,
        "SELECT count(*) FROM webhook._attempts WHERE outcome <> 'delivered'",
    );
    let sample: String = db
        .query_one(
            "SELECT record::text FROM webhook.events ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    let body = Bytes::from(format!(
        r#"{{"type":"INSERT","table":"drain_t","schema":"public","record":{sample},"old_record":null}}"#
    ));
    let max_in_flight: String = db
        .query_one("SELECT current_setting('pg_webhook.max_in_flight')", &[])
        .unwrap()
        .get(0);
    let concurrency: usize = max_in_flight.parse().unwrap_or(64);
    let baseline = raw_client_rate(&sink.url(), scale.drain_events as u64, concurrency, body);
    let _ = pg;
    rows.push(Row {
        figure: "drain: queued events delivered to the sink",
        measured: format!("{rate:.0} events/s ({failed} failed attempts)"),
        baseline: format!("{baseline:.0} req/s raw signed client"),
        ratio: format!("{:.2}", rate / baseline),
        target: ">= 25000 events/s, 0 failed",
        met: rate >= 25_000.0 && failed == 0,
    });
    rate
}

/// The retention purge deletes finished events at least as fast as the workers can finish them;
/// otherwise the archive grows without bound under a sustained load.
fn purge(db: &mut Client, scale: &Scale, drain_rate: Option<f64>, rows: &mut Vec<Row>) {
    // Finished long ago (past the default 7-day retention), with ids no real event has.
    db.batch_execute(&format!(
        "INSERT INTO webhook._event_archive
                (id, subscription_id, op, table_schema, table_name, record, created_at,
                 attempts, status, finished_at, final_started_at, final_duration_ms, final_status_code)
         SELECT -g, 0, 'INSERT', 'public', 'purge_t', jsonb_build_object('id', g, 'note', 'old'),
                now() - interval '31 days', 1, 'delivered', now() - interval '31 days',
                now() - interval '31 days', 1.0, 204
           FROM generate_series(1, {}) g",
        scale.purge_rows
    ))
    .unwrap();
    let started = Instant::now();
    wait_until(
        Duration::from_secs(600),
        "the purge of the old archive rows",
        || {
            count(
                db,
                "SELECT count(*) FROM webhook._event_archive WHERE id < 0",
            ) == 0
        },
    );
    let rate = scale.purge_rows as f64 / started.elapsed().as_secs_f64();
    rows.push(Row {
        figure: "retention purge: expired events deleted",
        measured: format!("{rate:.0} events/s"),
        baseline: drain_rate.map_or("-".into(), |d| format!("{d:.0} events/s drain")),
        ratio: drain_rate.map_or("-".into(), |d| format!("{:.2}", rate / d)),
        target: ">= 1.0x the drain (keeps up with it)",
        met: drain_rate.is_some_and(|d| rate >= d),
    });
}

fn latency(db: &mut Client, sink: &Sink, scale: &Scale, rows: &mut Vec<Row>) {
    db.batch_execute("CREATE TABLE lat_t (id bigint PRIMARY KEY, v int)")
        .unwrap();
    db.execute(
        "SELECT webhook.subscribe('lat', 'lat_t', $1)",
        &[&sink.url()],
    )
    .unwrap();
    sink.arrivals.lock().unwrap().clear();
    sink.track_ids.store(true, Ordering::Relaxed);
    let insert = db.prepare("INSERT INTO lat_t VALUES ($1, 1)").unwrap();
    let mut committed = Vec::with_capacity(scale.latency_commits);
    let period = Duration::from_millis(5); // ~200 commits/s
    let start = Instant::now();
    for i in 0..scale.latency_commits {
        let due = start + period * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let id = i as i64 + 1;
        // Measured from the moment the autocommit INSERT is sent: the worker is woken at
        // commit, often before the client has read the commit's acknowledgement.
        committed.push(Instant::now());
        db.execute(&insert, &[&id]).unwrap();
    }
    wait_until(
        Duration::from_secs(60),
        "every latency event at the sink",
        || sink.arrivals.lock().unwrap().len() >= scale.latency_commits,
    );
    sink.track_ids.store(false, Ordering::Relaxed);
    let arrivals = sink.arrivals.lock().unwrap().clone();
    let mut ms: Vec<f64> = arrivals
        .iter()
        .filter_map(|(id, at)| {
            let done = committed.get((*id - 1) as usize)?;
            Some(at.saturating_duration_since(*done).as_secs_f64() * 1000.0)
        })
        .collect();
    if std::env::var_os("PG_WEBHOOK_BENCH_DEBUG").is_some() {
        let mut slow: Vec<(i64, f64)> = arrivals
            .iter()
            .filter_map(|(id, at)| {
                let done = committed.get((*id - 1) as usize)?;
                Some((
                    *id,
                    at.saturating_duration_since(*done).as_secs_f64() * 1000.0,
                ))
            })
            .collect();
        slow.sort_by(|a, b| b.1.total_cmp(&a.1));
        eprintln!("slowest (row id, ms): {:?}", &slow[..slow.len().min(30)]);
    }
    ms.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&ms, 0.5), percentile(&ms, 0.99));
    rows.push(Row {
        figure: "latency: autocommit INSERT sent -> arrival, ~200 commits/s",
        measured: format!("p50 {p50:.2} ms, p99 {p99:.2} ms (n={})", ms.len()),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "p50 <= 2 ms, p99 <= 10 ms",
        met: p50 <= 2.0 && p99 <= 10.0,
    });
    wait_drained(db, Duration::from_secs(60));
}

fn pgbench_tps(pg: &Cluster, database: &str, script: &str, seconds: u32) -> f64 {
    let workers = {
        let mut c = pg.connect("postgres");
        pg.worker_pids(&mut c)
    };
    let worker_cpu = workers_cpu_seconds(&workers);
    let path = std::env::temp_dir().join(format!("pg_webhook_bench_{}.sql", std::process::id()));
    fs::write(&path, script).unwrap();
    let out = Command::new(pg.bin("pgbench"))
        .args(["-n", "-c", "4", "-j", "4", "-T", &seconds.to_string(), "-f"])
        .arg(&path)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
            database,
        ])
        .output()
        .expect("pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    if std::env::var_os("PG_WEBHOOK_BENCH_DEBUG").is_some() {
        eprintln!(
            "pgbench {database} {}: {} (worker CPU {:.2} s)",
            script.trim(),
            text.lines().find(|l| l.starts_with("tps")).unwrap_or(""),
            workers_cpu_seconds(&workers) - worker_cpu
        );
    }
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "pgbench failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

fn write_cost(pg: &Cluster, db: &mut Client, sink: &Sink, scale: &Scale, rows: &mut Vec<Row>) {
    let tables = "CREATE TABLE w_plain (id bigserial PRIMARY KEY, customer text, total numeric(12,2), placed_at timestamptz DEFAULT now());
                  CREATE TABLE w_sub (LIKE w_plain INCLUDING ALL);";
    db.batch_execute(tables).unwrap();
    db.execute("SELECT webhook.subscribe('w', 'w_sub', $1)", &[&sink.url()])
        .unwrap();
    // The same subscription in a database no worker serves (pg_webhook.database): events
    // queue, nothing is sent,
    // so this measures what capture costs the writers, apart from delivery's CPU.
    db.batch_execute("CREATE DATABASE capture_only").unwrap();
    let mut other = pg.connect("capture_only");
    other.batch_execute("CREATE EXTENSION pg_webhook").unwrap();
    other.batch_execute(tables).unwrap();
    other
        .execute("SELECT webhook.subscribe('w', 'w_sub', $1)", &[&sink.url()])
        .unwrap();
    let script = |t: &str| {
        format!("INSERT INTO {t} (customer, total) VALUES ('customer ' || :client_id, random() * 100);\n")
    };
    // Alternate the runs so drift on a shared machine hits all alike.
    let (mut plain, mut captured, mut delivered) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..2 {
        plain.push(pgbench_tps(
            pg,
            "postgres",
            &script("w_plain"),
            scale.pgbench_seconds,
        ));
        captured.push(pgbench_tps(
            pg,
            "capture_only",
            &script("w_sub"),
            scale.pgbench_seconds,
        ));
        delivered.push(pgbench_tps(
            pg,
            "postgres",
            &script("w_sub"),
            scale.pgbench_seconds,
        ));
        wait_drained(db, Duration::from_secs(120));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (plain, captured, delivered) = (mean(&plain), mean(&captured), mean(&delivered));
    rows.push(Row {
        figure: "write cost: pgbench 4 clients, single-row INSERT, capture only",
        measured: format!("{captured:.0} tps into a subscribed table"),
        baseline: format!("{plain:.0} tps plain table"),
        ratio: format!("{:.2}", captured / plain),
        target: ">= 0.90x plain",
        met: captured / plain >= 0.90,
    });
    rows.push(Row {
        figure: "write cost, same, while the worker delivers every event on the same 2 cores",
        measured: format!("{delivered:.0} tps (and as many deliveries/s)"),
        baseline: format!("{plain:.0} tps plain table"),
        ratio: format!("{:.2}", delivered / plain),
        target: "(informative)",
        met: true,
    });
}

fn bulk(db: &mut Client, sink: &Sink, scale: &Scale, rows: &mut Vec<Row>) {
    db.batch_execute(
        "CREATE TABLE b_plain (id bigint PRIMARY KEY, customer text, total numeric(12,2), placed_at timestamptz DEFAULT now());
         CREATE TABLE b_sub (LIKE b_plain INCLUDING ALL);",
    )
    .unwrap();
    db.execute("SELECT webhook.subscribe('b', 'b_sub', $1)", &[&sink.url()])
        .unwrap();
    let mut timed = |table: &str| {
        db.batch_execute(&format!("TRUNCATE {table}")).unwrap();
        let sql = format!(
            "INSERT INTO {table} (id, customer, total) SELECT g, 'customer ' || g, g / 100.0
               FROM generate_series(1, {}) g",
            scale.bulk_rows
        );
        let t = Instant::now();
        db.batch_execute(&sql).unwrap();
        let secs = t.elapsed().as_secs_f64();
        wait_drained(db, Duration::from_secs(300));
        db.batch_execute("CHECKPOINT").unwrap();
        secs
    };
    let (mut plain, mut sub) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        plain.push(timed("b_plain"));
        sub.push(timed("b_sub"));
    }
    plain.sort_by(f64::total_cmp);
    sub.sort_by(f64::total_cmp);
    let (p, s) = (plain[1], sub[1]);
    rows.push(Row {
        figure: "bulk: one INSERT ... SELECT into a subscribed table",
        measured: format!(
            "{:.0} ms for {} rows (median of 3)",
            s * 1000.0,
            scale.bulk_rows
        ),
        baseline: format!("{:.0} ms plain table", p * 1000.0),
        ratio: format!("{:.2}x", s / p),
        target: "<= 2x plain",
        met: s / p <= 2.0,
    });
}

fn backlog(pg: &Cluster, db: &mut Client, sink: &Sink, scale: &Scale, rows: &mut Vec<Row>) {
    db.batch_execute(
        "CREATE TABLE m_t (id bigint PRIMARY KEY, customer text, total numeric(12,2), placed_at timestamptz DEFAULT now())",
    )
    .unwrap();
    db.execute("SELECT webhook.subscribe('m', 'm_t', $1)", &[&sink.url()])
        .unwrap();
    let pids = pg.worker_pids(db);
    let size =
        |db: &mut Client| count(db, "SELECT pg_total_relation_size('webhook._event_queue')") / 1024;
    let empty_size = size(db);
    let mut peak_rss = (0, 0, 0);
    let mut sizes_after = Vec::new();
    for round in 0..2 {
        db.batch_execute(&format!(
            "INSERT INTO m_t (id, customer, total)
             SELECT g, 'customer ' || g, g / 100.0 FROM generate_series({} + 1, {} + {}) g",
            round * scale.backlog_events,
            round * scale.backlog_events,
            scale.backlog_events
        ))
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(1200);
        while pending(db) > 0 {
            for pid in &pids {
                let now = rss_kib(*pid);
                if now.1 > peak_rss.1 {
                    peak_rss = now;
                }
            }
            assert!(Instant::now() < deadline, "backlog did not drain");
            std::thread::sleep(Duration::from_millis(100));
        }
        db.batch_execute("VACUUM webhook._event_queue").unwrap();
        sizes_after.push(size(db));
    }
    let anon_mib = peak_rss.1 as f64 / 1024.0;
    rows.push(Row {
        figure: "worker memory while draining a 1M backlog (largest worker)",
        measured: format!(
            "peak RssAnon {anon_mib:.1} MiB (VmRSS {:.1} MiB incl. {:.1} MiB shared buffers)",
            peak_rss.0 as f64 / 1024.0,
            peak_rss.2 as f64 / 1024.0
        ),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "RSS <= 64 MiB",
        met: anon_mib <= 64.0,
    });
    rows.push(Row {
        figure: "queue size after draining + VACUUM, two backlogs",
        measured: format!("{} kB, then {} kB", sizes_after[0], sizes_after[1]),
        baseline: format!("{empty_size} kB empty"),
        ratio: "-".into(),
        target: "no unbounded bloat",
        met: sizes_after[1] <= sizes_after[0].max(empty_size) * 2,
    });
    let _ = sink;
}

fn idle(pg: &Cluster, db: &mut Client, scale: &Scale, rows: &mut Vec<Row>) {
    wait_drained(db, Duration::from_secs(60));
    let pids = pg.worker_pids(db);
    std::thread::sleep(Duration::from_secs(1));
    let before = workers_cpu_seconds(&pids);
    std::thread::sleep(Duration::from_secs(scale.idle_seconds));
    let used = workers_cpu_seconds(&pids) - before;
    let pct = used / scale.idle_seconds as f64 * 100.0;
    rows.push(Row {
        figure: "idle: CPU of all workers with an empty queue",
        measured: format!(
            "{:.0} ms CPU in {} s ({pct:.2} %)",
            used * 1000.0,
            scale.idle_seconds
        ),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "~0 (no busy polling)",
        met: pct < 1.0,
    });
}

fn main() {
    let scale = Scale::pick();
    println!(
        "pg_webhook benchmark ({}), {} CPUs",
        if scale.full {
            "full"
        } else {
            "smoke: tiny sizes, speed not judged"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // Extra settings to try, e.g. PG_WEBHOOK_BENCH_CONF="pg_webhook.max_in_flight = 256".
    let extra = std::env::var("PG_WEBHOOK_BENCH_CONF").unwrap_or_default();
    // Two delivery workers: one core cannot both run Postgres' side of delivery and the HTTP
    // client at 25k events/s (README, Benchmark).
    let mut conf = vec![
        "pg_webhook.workers = 2",
        // Only this database is served, so capture_only measures capture without delivery.
        "pg_webhook.database = 'postgres'",
        "fsync = on",
        "max_wal_size = '4GB'",
        "checkpoint_timeout = '15min'",
        "log_min_messages = warning",
    ];
    conf.extend(extra.split(';').map(str::trim).filter(|l| !l.is_empty()));
    let pg = Cluster::start(&conf);
    let mut db = pg.client_with_extension();
    let sink = Sink::start();
    let only = std::env::var("PG_WEBHOOK_BENCH_ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.split(',').any(|o| o.trim() == name);
    let mut rows = Vec::new();
    let step = |name: &str, rows: &mut Vec<Row>, f: &mut dyn FnMut(&mut Vec<Row>)| {
        if run(name) {
            let before = rows.len();
            f(rows);
            for r in &rows[before..] {
                eprintln!(
                    "  {}: {} (baseline {}, ratio {})",
                    r.figure, r.measured, r.baseline, r.ratio
                );
            }
        }
    };
    let mut drain_rate = None;
    step("drain", &mut rows, &mut |rows| {
        drain_rate = Some(drain(&pg, &mut db, &sink, &scale, rows));
    });
    step("purge", &mut rows, &mut |rows| {
        purge(&mut db, &scale, drain_rate, rows)
    });
    step("latency", &mut rows, &mut |rows| {
        latency(&mut db, &sink, &scale, rows)
    });
    step("write", &mut rows, &mut |rows| {
        write_cost(&pg, &mut db, &sink, &scale, rows)
    });
    step("bulk", &mut rows, &mut |rows| {
        bulk(&mut db, &sink, &scale, rows)
    });
    step("idle", &mut rows, &mut |rows| {
        idle(&pg, &mut db, &scale, rows)
    });
    step("backlog", &mut rows, &mut |rows| {
        backlog(&pg, &mut db, &sink, &scale, rows)
    });

    println!();
    println!(
        "| figure | measured | baseline (same run) | ratio | target | met |\n|---|---|---|---|---|---|"
    );
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.figure,
            r.measured,
            r.baseline,
            r.ratio,
            r.target,
            if !scale.full {
                "(smoke)"
            } else if r.met {
                "yes"
            } else {
                "NO"
            }
        );
    }
}
