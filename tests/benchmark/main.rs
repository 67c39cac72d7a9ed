//! The pg_webhook benchmark: starts its own cluster and its own fast sink on 127.0.0.1, runs each
//! scenario, and prints every figure next to a baseline measured in the same run.
//!
//!   bash .ci/bench            # full run (release build); takes a few minutes
//!
//! Under `cargo test` (and so in CI) it runs a smoke version with tiny sizes: it proves the
//! benchmark still works and asserts nothing about speed.

#[path = "../support/mod.rs"]
mod support;

mod drain;
mod load;
mod writes;

use drain::{drain, purge};
use load::{backlog, idle, latency};
use writes::{bulk, order_key_cost, write_cost};

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
    // The settings a user gets, apart from these.
    let mut conf = vec![
        // Only this database is served, so capture_only measures capture without delivery.
        "pg_webhook.database = 'postgres'",
        // The default (a worker per CPU, at most 2), which test clusters otherwise pin to 1.
        "pg_webhook.workers = 0",
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
    step("order_key", &mut rows, &mut |rows| {
        order_key_cost(&pg, &mut db, &sink, &scale, rows)
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
