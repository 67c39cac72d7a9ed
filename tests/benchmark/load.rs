//! Latency under a steady load, a large backlog's memory and disk, and idle CPU.

use super::*;

pub fn latency(db: &mut Client, sink: &Sink, scale: &Scale, rows: &mut Vec<Row>) {
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

pub fn backlog(pg: &Cluster, db: &mut Client, sink: &Sink, scale: &Scale, rows: &mut Vec<Row>) {
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

pub fn idle(pg: &Cluster, db: &mut Client, scale: &Scale, rows: &mut Vec<Row>) {
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
