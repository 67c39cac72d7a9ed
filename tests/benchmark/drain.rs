//! Draining a backlog, against the HTTP ceiling of the same sink; the retention purge.

use super::*;

/// The same work the worker does per event, without Postgres: sign and POST `n` bodies with
/// `concurrency` requests in flight, on one HTTP thread like the worker's.
fn raw_client_rate(url: &str, n: u64, concurrency: usize, body: Bytes) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
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
        auth: Default::default(),
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

/// The sink's ceiling: what `wrk -t1 -c64` POSTs into it, in requests per second, with a body
/// of `body_len` bytes (the measured and baseline runs share the sink and the machine).
fn wrk_ceiling(url: &str, body_len: usize, seconds: u32) -> f64 {
    let script = std::env::temp_dir().join(format!("pg_webhook_wrk_{}.lua", std::process::id()));
    fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = string.rep(\"x\", {body_len})\nwrk.headers[\"content-type\"] = \"application/json\"\n"
        ),
    )
    .unwrap_or_else(|e| panic!("writing the wrk script: {e}"));
    let out = Command::new("wrk")
        .args(["-t1", "-c64", &format!("-d{seconds}s"), "-s"])
        .arg(&script)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("wrk (apt-get install wrk; .ci/setup does): {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr)))
}

/// Mean and spread (min, max) of a few runs.
pub fn spread(runs: &[f64]) -> (f64, f64, f64) {
    let mean = runs.iter().sum::<f64>() / runs.len().max(1) as f64;
    let min = runs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, min, max)
}

/// One drain: events per second, and the CPU time the workers spent per event (all their
/// threads: claiming, sending, recording), in microseconds.
struct Drained {
    rate: f64,
    cpu_us: f64,
}

/// Queues `events` rows of `table` in one transaction and times until the sink has accepted
/// every one of them (unique webhook-ids).
fn drain_once(pg: &Cluster, db: &mut Client, sink: &Sink, table: &str, events: i64) -> Drained {
    let workers = pg.worker_pids(db);
    let before = sink.unique_events();
    // One transaction: the whole backlog becomes visible at once, at COMMIT.
    db.batch_execute(&format!(
        "INSERT INTO {table} (customer, total)
         SELECT 'customer ' || g, g / 100.0 FROM generate_series(1, {events}) g"
    ))
    .unwrap();
    let started = Instant::now();
    let cpu_before = workers_cpu_seconds(&workers);
    wait_until(
        Duration::from_secs(600),
        "the sink to accept the backlog",
        || sink.unique_events() - before >= events as u64,
    );
    let elapsed = started.elapsed();
    wait_drained(db, Duration::from_secs(120));
    let cpu = workers_cpu_seconds(&workers) - cpu_before;
    Drained {
        rate: events as f64 / elapsed.as_secs_f64(),
        cpu_us: cpu * 1e6 / events as f64,
    }
}

/// Drains a backlog one event per request and in batches of 100, each between two runs of the
/// sink's ceiling; returns the one-per-request rate (events/s), which the retention purge must
/// keep up with.
pub fn drain(
    pg: &Cluster,
    db: &mut Client,
    sink: &Sink,
    scale: &Scale,
    rows: &mut Vec<Row>,
) -> f64 {
    db.batch_execute(
        "CREATE TABLE drain_t (id bigserial PRIMARY KEY, customer text, total numeric(12,2),
                               placed_at timestamptz DEFAULT now());
         CREATE TABLE drain_b (LIKE drain_t INCLUDING ALL);",
    )
    .unwrap();
    db.execute(
        "SELECT webhook.subscribe('drain', 'drain_t', $1)",
        &[&sink.url()],
    )
    .unwrap();
    db.execute(
        "SELECT webhook.subscribe('drain_batched', 'drain_b', $1, batch_size => 100)",
        &[&sink.url()],
    )
    .unwrap();
    let seconds = if scale.full { 5 } else { 1 };
    // Alternate ceiling and measured runs, so drift on a shared machine hits both alike.
    let mut ceiling = vec![wrk_ceiling(&sink.url(), 200, seconds)];
    let mut single = Vec::new();
    let mut batched = Vec::new();
    for _ in 0..2 {
        single.push(drain_once(pg, db, sink, "drain_t", scale.drain_events));
        ceiling.push(wrk_ceiling(&sink.url(), 200, seconds));
        batched.push(drain_once(pg, db, sink, "drain_b", scale.drain_events));
        ceiling.push(wrk_ceiling(&sink.url(), 200, seconds));
    }
    let failed = count(
        db,
        "SELECT count(*) FROM webhook._attempts WHERE outcome <> 'delivered'",
    );
    let sample: String = db
        .query_one(
            "SELECT record::text FROM webhook.events WHERE table_name = 'drain_t' ORDER BY id DESC LIMIT 1",
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
    let raw = raw_client_rate(&sink.url(), scale.drain_events as u64, concurrency, body);
    let (c, c_min, c_max) = spread(&ceiling);
    let rates = |runs: &[Drained]| spread(&runs.iter().map(|d| d.rate).collect::<Vec<_>>());
    let cpu = |runs: &[Drained]| spread(&runs.iter().map(|d| d.cpu_us).collect::<Vec<_>>()).0;
    let (one, one_min, one_max) = rates(&single);
    let (many, many_min, many_max) = rates(&batched);
    let (one_cpu, many_cpu) = (cpu(&single), cpu(&batched));
    let ceiling_text = format!("{c:.0} req/s wrk -t1 -c64 ({c_min:.0}-{c_max:.0}, 5 runs)");
    rows.push(Row {
        figure: "drain: 100,000 queued events, one per request, default settings",
        measured: format!(
            "{one:.0} events/s ({one_min:.0}-{one_max:.0}, 2 runs; {failed} failed attempts; workers' CPU {one_cpu:.1} us/event)"
        ),
        baseline: ceiling_text.clone(),
        ratio: format!("{:.2}", one / c),
        target: ">= 0.24x ceiling, 0 failed",
        met: one / c >= 0.24 && failed == 0,
    });
    rows.push(Row {
        figure: "drain, same, batch_size => 100",
        measured: format!(
            "{many:.0} events/s ({many_min:.0}-{many_max:.0}, 2 runs; workers' CPU {many_cpu:.1} us/event)"
        ),
        baseline: ceiling_text,
        ratio: format!("{:.2}", many / c),
        target: ">= 1.0x ceiling, in events",
        met: many / c >= 1.0,
    });
    rows.push(Row {
        figure: "drain, one per request, against the worker's own HTTP client alone",
        measured: format!("{one:.0} events/s"),
        baseline: format!("{raw:.0} req/s signed client, {concurrency} in flight, no Postgres"),
        ratio: format!("{:.2}", one / raw),
        target: "(informative)",
        met: true,
    });
    one
}

/// The retention purge deletes finished events at least as fast as the workers can finish them;
/// otherwise the archive grows without bound under a sustained load.
pub fn purge(db: &mut Client, scale: &Scale, drain_rate: Option<f64>, rows: &mut Vec<Row>) {
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
