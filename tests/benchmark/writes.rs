//! What capture costs writers: single-row pgbench and a bulk INSERT ... SELECT.

use super::*;

/// Lets the vacuums the previous run set off finish before a timed run (each run inserts tens
/// of thousands of rows, so autovacuum visits its tables just after it, and the workers vacuum
/// a queue they drained): waits for autovacuum, vacuums the drained queue (as the workers do
/// within 10 s of a drain) and checkpoints. Every run starts from the same state instead of
/// paying for the run before it; without this one round's ratio swung from 0.81 to 0.95 with
/// the same build.
fn settle(c: &mut Client) {
    wait_until(
        Duration::from_secs(120),
        "autovacuum to finish before a timed run",
        || {
            count(
                c,
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'",
            ) == 0
        },
    );
    c.batch_execute("VACUUM webhook._event_queue").unwrap();
    c.batch_execute("CHECKPOINT").unwrap();
}

pub fn pgbench_tps(pg: &Cluster, database: &str, script: &str, seconds: u32) -> f64 {
    let workers = {
        let mut c = pg.connect("postgres");
        settle(&mut c);
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

/// The database no worker serves (`pg_webhook.database = 'postgres'`), with pg_webhook.
fn capture_only(pg: &Cluster, db: &mut Client) -> Client {
    if count(
        db,
        "SELECT count(*) FROM pg_database WHERE datname = 'capture_only'",
    ) == 0
    {
        db.batch_execute("CREATE DATABASE capture_only").unwrap();
        pg.connect("capture_only")
            .batch_execute("CREATE EXTENSION pg_webhook")
            .unwrap();
    }
    pg.connect("capture_only")
}

pub fn write_cost(pg: &Cluster, db: &mut Client, sink: &Sink, scale: &Scale, rows: &mut Vec<Row>) {
    let tables = "CREATE TABLE w_plain (id bigserial PRIMARY KEY, customer text, total numeric(12,2), placed_at timestamptz DEFAULT now());
                  CREATE TABLE w_sub (LIKE w_plain INCLUDING ALL);";
    db.batch_execute(tables).unwrap();
    db.execute("SELECT webhook.subscribe('w', 'w_sub', $1)", &[&sink.url()])
        .unwrap();
    // The same subscription in a database no worker serves (pg_webhook.database): events
    // queue, nothing is sent, so this measures what capture costs the writers, apart from
    // delivery's CPU.
    let mut other = capture_only(pg, db);
    other.batch_execute(tables).unwrap();
    other
        .execute("SELECT webhook.subscribe('w', 'w_sub', $1)", &[&sink.url()])
        .unwrap();
    let script = |t: &str| {
        format!("INSERT INTO {t} (customer, total) VALUES ('customer ' || :client_id, random() * 100);\n")
    };
    // Alternate the runs so drift on a shared machine hits all alike.
    let (mut plain, mut captured, mut delivered) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
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
    let runs = plain.len();
    let (plain, p_min, p_max) = super::drain::spread(&plain);
    let (captured, c_min, c_max) = super::drain::spread(&captured);
    let (delivered, _, _) = super::drain::spread(&delivered);
    rows.push(Row {
        figure: "write cost: pgbench 4 clients, single-row INSERT, capture only",
        measured: format!(
            "{captured:.0} tps into a subscribed table ({c_min:.0}-{c_max:.0}, {runs} runs)"
        ),
        baseline: format!("{plain:.0} tps plain table ({p_min:.0}-{p_max:.0})"),
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

/// Per-key order's cost to writers: 4 pgbench clients writing random keys into a table with
/// an `order_key` subscription, against the same table with an unordered one (both in the
/// database no worker serves, so only capture is measured).
pub fn order_key_cost(
    pg: &Cluster,
    db: &mut Client,
    sink: &Sink,
    scale: &Scale,
    rows: &mut Vec<Row>,
) {
    let mut other = capture_only(pg, db);
    other
        .batch_execute(
            "CREATE TABLE k_keyed (id bigserial PRIMARY KEY, account int, total numeric(12,2));
             CREATE TABLE k_plain (LIKE k_keyed INCLUDING ALL);",
        )
        .unwrap();
    other
        .execute(
            "SELECT webhook.subscribe('keyed', 'k_keyed', $1, order_key => ARRAY['account'])",
            &[&sink.url()],
        )
        .unwrap();
    other
        .execute(
            "SELECT webhook.subscribe('plain', 'k_plain', $1)",
            &[&sink.url()],
        )
        .unwrap();
    let script = |t: &str| {
        format!(
            "\\set account random(1, 100000)\nINSERT INTO {t} (account, total) VALUES (:account, random() * 100);\n"
        )
    };
    let (mut keyed, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        plain.push(pgbench_tps(
            pg,
            "capture_only",
            &script("k_plain"),
            scale.pgbench_seconds,
        ));
        keyed.push(pgbench_tps(
            pg,
            "capture_only",
            &script("k_keyed"),
            scale.pgbench_seconds,
        ));
    }
    let (k, k_min, k_max) = super::drain::spread(&keyed);
    let (p, p_min, p_max) = super::drain::spread(&plain);
    rows.push(Row {
        figure: "write cost of order_key: pgbench 4 clients, single-row INSERT, random keys",
        measured: format!("{k:.0} tps ({k_min:.0}-{k_max:.0}, 3 runs)"),
        baseline: format!("{p:.0} tps, same table, unordered subscription ({p_min:.0}-{p_max:.0})"),
        ratio: format!("{:.2}", k / p),
        target: ">= 0.80x unordered",
        met: k / p >= 0.80,
    });
}

pub fn bulk(db: &mut Client, sink: &Sink, scale: &Scale, rows: &mut Vec<Row>) {
    db.batch_execute(
        "CREATE TABLE b_plain (id bigint PRIMARY KEY, customer text, total numeric(12,2), placed_at timestamptz DEFAULT now());
         CREATE TABLE b_sub (LIKE b_plain INCLUDING ALL);",
    )
    .unwrap();
    db.execute("SELECT webhook.subscribe('b', 'b_sub', $1)", &[&sink.url()])
        .unwrap();
    let mut timed = |table: &str| {
        db.batch_execute(&format!("TRUNCATE {table}")).unwrap();
        // Every round starts from the state the workers leave the queue in within seconds of
        // draining it: the delivered rows vacuumed away (the callback runner vacuums it every
        // 10 s). Whether a round met the queue vacuumed or full of dead rows (its insert then
        // extends the file) was left to chance, and swung the ratio by a tenth.
        wait_until(
            Duration::from_secs(120),
            "the workers to vacuum the drained queue",
            || {
                count(
                    db,
                    "SELECT n_dead_tup FROM pg_stat_all_tables
                      WHERE relid = 'webhook._event_queue'::regclass",
                ) == 0
            },
        );
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
    const ROUNDS: usize = 5;
    let (mut plain, mut sub) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        plain.push(timed("b_plain"));
        sub.push(timed("b_sub"));
    }
    plain.sort_by(f64::total_cmp);
    sub.sort_by(f64::total_cmp);
    let (p, s) = (plain[ROUNDS / 2], sub[ROUNDS / 2]);
    rows.push(Row {
        figure: "bulk: one INSERT ... SELECT into a subscribed table",
        measured: format!(
            "{:.0} ms for {} rows (median of {ROUNDS}; {:.0}-{:.0})",
            s * 1000.0,
            scale.bulk_rows,
            sub[0] * 1000.0,
            sub[ROUNDS - 1] * 1000.0
        ),
        baseline: format!(
            "{:.0} ms plain table ({:.0}-{:.0})",
            p * 1000.0,
            plain[0] * 1000.0,
            plain[ROUNDS - 1] * 1000.0
        ),
        ratio: format!("{:.2}x", s / p),
        target: "<= 2.5x plain",
        met: s / p <= 2.5,
    });
}
