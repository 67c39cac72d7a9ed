//! Prometheus through postgres_exporter with the queries file we ship
//! (sql/monitoring/postgres_exporter.yml): after a known load, the scraped numbers are those of
//! webhook.subscription_stats, and the exporter's role (a pg_monitor member) sees health, not
//! events. Needs the Debian package `prometheus-postgres-exporter` (`.ci/setup` installs it).

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postgres::Client;
use support::cluster::{free_port, wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, error_of, exec, WAIT};

const EXPORTER: &str = "/usr/bin/prometheus-postgres-exporter";

/// A postgres_exporter scraping `pg` as role `mon` with only our queries.
struct Exporter {
    child: Child,
    port: u16,
}

impl Exporter {
    fn start(pg: &Cluster) -> Exporter {
        let port = free_port();
        let queries = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/sql/monitoring/postgres_exporter.yml"
        );
        let log = std::fs::File::create(pg.dir.join("exporter.log"))
            .unwrap_or_else(|e| panic!("creating the exporter's log: {e}"));
        let child = Command::new(EXPORTER)
            .args([
                &format!("--web.listen-address=127.0.0.1:{port}"),
                &format!("--extend.query-path={queries}"),
                "--disable-default-metrics",
                "--disable-settings-metrics",
            ])
            .env(
                "DATA_SOURCE_NAME",
                format!(
                    "postgresql://mon@127.0.0.1:{}/postgres?sslmode=disable",
                    pg.port
                ),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {EXPORTER} (apt-get install prometheus-postgres-exporter): {e}")
            });
        Exporter { child, port }
    }

    /// Every `pg_webhook_*` sample of one scrape, keyed by the sample's name and labels (the
    /// exporter's own `server` label left out).
    fn scrape(&self) -> Result<BTreeMap<String, f64>, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        write!(
            stream,
            "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut body = String::new();
        stream
            .read_to_string(&mut body)
            .map_err(|e| e.to_string())?;
        let mut samples = BTreeMap::new();
        for line in body.lines().filter(|l| l.starts_with("pg_webhook_")) {
            let (series, value) = line
                .rsplit_once(' ')
                .ok_or_else(|| format!("not a sample: {line}"))?;
            let value: f64 = value.parse().map_err(|e| format!("value of {line}: {e}"))?;
            samples.insert(without_server_label(series), value);
        }
        Ok(samples)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("stopping the exporter: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("waiting for the exporter: {e}");
        }
    }
}

/// `name{server="…",a="x"}` → `name{a="x"}`.
fn without_server_label(series: &str) -> String {
    let Some((name, labels)) = series.split_once('{') else {
        return series.to_string();
    };
    let kept: Vec<&str> = labels
        .trim_end_matches('}')
        .split(',')
        .filter(|l| !l.starts_with("server="))
        .collect();
    format!("{name}{{{}}}", kept.join(","))
}

/// One subscription's row of webhook.subscription_stats, as the exporter names its columns.
fn stats_row(db: &mut Client, name: &str) -> BTreeMap<&'static str, f64> {
    let row = db
        .query_one(
            "SELECT queued, in_flight, parked, retrying, delivered_total, dead_total,
                    failed_attempts_total
               FROM webhook.subscription_stats WHERE name = $1",
            &[&name],
        )
        .unwrap_or_else(|e| panic!("stats of {name}: {e}"));
    let columns = [
        "queued",
        "in_flight",
        "parked",
        "retrying",
        "delivered_total",
        "dead_total",
        "failed_attempts_total",
    ];
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, row.get::<_, i64>(i) as f64))
        .collect()
}

/// A cluster with role `mon` (pg_monitor) and three subscriptions after a known load: `ok`
/// delivered 5 events, `dies` has one dead event after 2 failed attempts, `held` is paused
/// with 3 events parked.
fn loaded_cluster(rx: &Receiver) -> (Cluster, Client) {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE ROLE mon LOGIN IN ROLE pg_monitor;
         CREATE TABLE orders (id int PRIMARY KEY, note text);
         CREATE TABLE audit (id int PRIMARY KEY);
         CREATE TABLE held (id int PRIMARY KEY);",
    );
    support::subscribe(&mut db, "ok", "orders", &rx.url("/ok"), "");
    // Port 9 (discard) on loopback: nothing listens, every attempt fails at once.
    support::subscribe(
        &mut db,
        "dies",
        "audit",
        "http://127.0.0.1:9/dies",
        ", max_attempts => 2, retry_schedule => ARRAY['100 ms']::interval[]",
    );
    support::subscribe(&mut db, "held", "held", &rx.url("/held"), "");
    exec(
        &mut db,
        "SELECT webhook.pause('held');
         INSERT INTO orders SELECT g, 'o' FROM generate_series(1, 5) g;
         INSERT INTO audit VALUES (1);
         INSERT INTO held SELECT generate_series(1, 3);",
    );
    rx.wait_for(5, WAIT);
    wait_until(WAIT, "the load to settle", || {
        count(
            &mut db,
            "SELECT (sum(delivered_total) FILTER (WHERE name = 'ok') = 5
                 AND sum(dead_total) FILTER (WHERE name = 'dies') = 1
                 AND sum(parked) FILTER (WHERE name = 'held') = 3
                 -- (in_flight is published by the worker apart from the outcomes, up to a
                 -- second after them: scraped before that, it differed from the view.)
                 AND sum(in_flight) = 0)::int::bigint
               FROM webhook.subscription_stats",
        ) == 1
    });
    (pg, db)
}

/// The exporter's samples, once it reports delivery worker 0.
fn scraped(pg: &Cluster, exporter: &Exporter) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + WAIT;
    loop {
        match exporter.scrape() {
            Ok(s) if s.contains_key("pg_webhook_worker_up{worker=\"0\"}") => break s,
            result => {
                assert!(
                    Instant::now() < deadline,
                    "no pg_webhook metrics from the exporter ({result:?}); its log: {}",
                    std::fs::read_to_string(pg.dir.join("exporter.log")).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// The delivery workers running in this database, as `<n>=1` in order (the exporter's form).
fn running_workers(db: &mut Client) -> Vec<String> {
    db.query(
        "SELECT substr(application_name, 19) || '=1' FROM pg_stat_activity
          WHERE datname = current_database()
            AND application_name LIKE 'pg_webhook worker %'
          ORDER BY 1",
        &[],
    )
    .unwrap_or_else(|e| panic!("running workers: {}", support::describe(&e)))
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn the_exporter_lists_every_delivery_worker_the_default_count_starts() {
    // The query listed delivery workers by the setting's value: none under the default (0,
    // which starts one per CPU, up to two), so a delivery worker that stopped raised no alert.
    let pg = Cluster::start(&["pg_webhook.workers = 0"]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE ROLE mon LOGIN IN ROLE pg_monitor; CREATE ROLE plain LOGIN;
         CREATE TABLE t (id int PRIMARY KEY);",
    );
    support::subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(&mut db, "INSERT INTO t VALUES (1)");
    rx.wait_for(1, WAIT);
    // Every worker the count starts is up and named (an event delivered says only that one is).
    let workers = count(&mut db, "SELECT webhook._worker_count()::bigint") as usize;
    wait_until(WAIT, "every delivery worker to be up", || {
        running_workers(&mut db).len() == workers
    });
    let exporter = Exporter::start(&pg);
    let samples = scraped(&pg, &exporter);
    let mut exported: Vec<String> = samples
        .iter()
        .filter_map(|(series, up)| {
            let worker = series
                .strip_prefix("pg_webhook_worker_up{worker=\"")?
                .strip_suffix("\"}")?;
            (worker != "callbacks").then(|| format!("{worker}={up}"))
        })
        .collect();
    exported.sort();
    let running = running_workers(&mut db);
    assert!(!running.is_empty(), "no delivery worker runs");
    assert_eq!(exported, running, "each running delivery worker, up");
    let mut plain = pg.connect_as("postgres", "plain");
    for f in ["webhook._worker_count()", "webhook._stuck_runners()"] {
        let e = support::error_of(&mut plain, &format!("SELECT {f}"));
        assert!(e.contains("permission denied"), "{f}: {e}");
    }
}

#[test]
fn postgres_exporter_reports_what_subscription_stats_says() {
    let rx = Receiver::start();
    let (pg, mut db) = loaded_cluster(&rx);
    let exporter = Exporter::start(&pg);
    let samples = scraped(&pg, &exporter);
    let get = |series: &str| -> f64 {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("{series} not scraped; got {samples:#?}"))
    };
    // Every exported number is the stats view's.
    for name in ["ok", "dies", "held"] {
        for (column, value) in stats_row(&mut db, name) {
            let series = format!("pg_webhook_subscription_{column}{{subscription=\"{name}\"}}");
            assert_eq!(get(&series), value, "{series}");
        }
    }
    // The known load, as documented literals.
    let sub = |metric: &str, name: &str| {
        get(&format!(
            "pg_webhook_subscription_{metric}{{subscription=\"{name}\"}}"
        ))
    };
    assert_eq!(sub("delivered_total", "ok"), 5.0);
    assert_eq!(sub("dead_total", "dies"), 1.0);
    assert_eq!(sub("failed_attempts_total", "dies"), 2.0);
    assert_eq!(sub("parked", "held"), 3.0);
    assert!(sub("oldest_queued_age_seconds", "held") > 0.0);
    assert_eq!(sub("oldest_queued_age_seconds", "ok"), 0.0);
    let p50 = sub("latency_p50_seconds", "ok");
    assert!(p50 > 0.0 && p50 < 60.0, "p50 {p50}");
    assert!(sub("latency_p50_seconds", "dies").is_nan());
    let status = |name: &str, status: &str| {
        get(&format!(
            "pg_webhook_subscription_status_info{{status=\"{status}\",subscription=\"{name}\"}}"
        ))
    };
    assert_eq!(status("ok", "active"), 1.0);
    assert_eq!(status("held", "paused"), 1.0);
    assert_eq!(get("pg_webhook_worker_up{worker=\"0\"}"), 1.0);
    assert_eq!(get("pg_webhook_worker_up{worker=\"callbacks\"}"), 1.0);
    assert_eq!(get("pg_webhook_runners_stuck{}"), 0.0);
}

#[test]
fn counters_only_grow_when_history_is_purged() {
    let rx = Receiver::start();
    let (_pg, mut db) = loaded_cluster(&rx);
    // Retention removes the history the last-hour figures come from; the totals stay.
    exec(
        &mut db,
        "DELETE FROM webhook._event_archive; DELETE FROM webhook._attempts;",
    );
    let row = stats_row(&mut db, "dies");
    assert_eq!(row["dead_total"], 1.0);
    assert_eq!(row["failed_attempts_total"], 2.0);
    assert_eq!(stats_row(&mut db, "ok")["delivered_total"], 5.0);
    exec(&mut db, "INSERT INTO orders VALUES (6, 'one more')");
    wait_until(WAIT, "the sixth delivery counted", || {
        count(
            &mut db,
            "SELECT delivered_total FROM webhook.subscription_stats WHERE name = 'ok'",
        ) == 6
    });
}

#[test]
fn a_monitoring_role_sees_health_but_no_events_urls_or_secrets() {
    let rx = Receiver::start();
    let (pg, _db) = loaded_cluster(&rx);
    let mut mon = pg.connect_as("postgres", "mon");
    assert_eq!(
        count(&mut mon, "SELECT count(*) FROM webhook.subscription_stats"),
        3
    );
    for object in [
        "webhook.events",
        "webhook.attempts",
        "webhook.subscriptions",
        "webhook._subscriptions",
        "webhook._event_queue",
        "webhook._delivery_totals",
    ] {
        let error = error_of(&mut mon, &format!("SELECT * FROM {object}"));
        assert!(error.contains("permission denied"), "{object}: {error}");
    }
    let error = error_of(&mut mon, "SELECT webhook.pause('ok')");
    assert!(error.contains("permission denied"), "{error}");
}
