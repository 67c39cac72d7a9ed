//! Several databases in one cluster: each database where pg_webhook is created gets its own
//! delivery workers from the launcher, with no configuration, and databases without it are
//! left alone.

mod support;

use std::time::Duration;

use postgres::Client;
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{alter_system, count, exec, subscribe, text, WAIT};

/// pg_webhook processes connected to `database`, by type.
fn workers_in(admin: &mut Client, database: &str) -> Vec<String> {
    admin
        .query(
            "SELECT backend_type FROM pg_stat_activity
              WHERE datname = $1 AND backend_type LIKE 'pg_webhook%' ORDER BY 1",
            &[&database],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Once all `events` delivered are recorded, how many workers delivered some: each records
/// what it delivered under its own number in webhook._delivery_totals.
fn workers_that_delivered(db: &mut Client, events: i64) -> i64 {
    wait_until(WAIT, "every event recorded", || {
        count(
            db,
            "SELECT coalesce(sum(delivered), 0)::bigint FROM webhook._delivery_totals",
        ) == events
    });
    count(
        db,
        "SELECT count(*) FROM webhook._delivery_totals WHERE delivered > 0",
    )
}

#[test]
fn every_database_with_the_extension_gets_delivery() {
    let pg = Cluster::start(&["pg_webhook.workers = 2"]);
    let mut admin = pg.connect("postgres");
    for name in ["shop", "crm", "plain"] {
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("{e}\n{}", pg.log()));
    }
    let rx = Receiver::start();
    for name in ["shop", "crm"] {
        let mut db = pg.connect(name);
        db.batch_execute("CREATE EXTENSION pg_webhook; CREATE TABLE t (id int PRIMARY KEY)")
            .unwrap();
        // The first subscription's commit asks the launcher for this database's workers.
        subscribe(&mut db, name, "t", &rx.url(&format!("/{name}")), "");
        db.batch_execute("INSERT INTO t VALUES (1), (2)").unwrap();
    }
    let got = rx.wait_for(4, WAIT);
    let mut paths: Vec<String> = got.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, ["/crm", "/crm", "/shop", "/shop"]);
    for name in ["shop", "crm"] {
        // Two delivery workers and a callback runner.
        wait_until(WAIT, "the workers of each database", || {
            workers_in(&mut admin, name) == ["pg_webhook", "pg_webhook", "pg_webhook callbacks"]
        });
    }
    // A database without pg_webhook has no worker attached, so it can be dropped at once.
    wait_until(WAIT, "no worker in plain", || {
        workers_in(&mut admin, "plain").is_empty()
    });
    admin.batch_execute("DROP DATABASE plain").unwrap();

    // After a restart the launcher finds both databases by itself, before any commit.
    pg.stop("fast");
    pg.pg_ctl_start();
    let mut admin = pg.connect("postgres");
    wait_until(WAIT, "workers back in both databases", || {
        workers_in(&mut admin, "shop").len() == 3 && workers_in(&mut admin, "crm").len() == 3
    });
    // postgres has no pg_webhook: the workers tried there at startup leave.
    wait_until(WAIT, "no worker left in postgres", || {
        workers_in(&mut admin, "postgres").is_empty()
    });
    let mut crm = pg.connect("crm");
    crm.batch_execute("INSERT INTO t VALUES (3)").unwrap();
    rx.wait_for(5, WAIT);

    // A terminated worker is started again.
    let victim: i32 = admin
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE datname = 'shop' AND backend_type = 'pg_webhook' LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&victim])
        .unwrap();
    wait_until(WAIT, "the worker to be replaced", || {
        let pids: Vec<i32> = admin
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = 'shop' AND backend_type = 'pg_webhook'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        pids.len() == 2 && !pids.contains(&victim)
    });

    // Dropping the extension sends the workers away, and the database can be dropped.
    crm.batch_execute("DROP EXTENSION pg_webhook CASCADE")
        .unwrap();
    drop(crm);
    wait_until(WAIT, "crm's workers to leave", || {
        workers_in(&mut admin, "crm").is_empty()
    });
    admin.batch_execute("DROP DATABASE crm").unwrap();
    let mut shop = pg.connect("shop");
    shop.batch_execute("INSERT INTO t VALUES (4)").unwrap();
    rx.wait_for(6, WAIT);
    drop(shop);

    // A forced drop takes the workers with it; the launcher does not bring them back, and
    // still serves a database created afterwards.
    admin
        .batch_execute("DROP DATABASE shop WITH (FORCE)")
        .unwrap();
    admin.batch_execute("CREATE DATABASE late").unwrap();
    let mut late = pg.connect("late");
    late.batch_execute("CREATE EXTENSION pg_webhook; CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    subscribe(&mut late, "late", "t", &rx.url("/late"), "");
    late.batch_execute("INSERT INTO t VALUES (1)").unwrap();
    rx.wait_for(7, WAIT);
    let gone: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
              WHERE backend_type LIKE 'pg_webhook%' AND datname IS NOT NULL AND datname <> 'late'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(gone, 0, "workers only where pg_webhook is used");
}

#[test]
fn pg_webhook_database_limits_delivery_to_one_database() {
    let pg = Cluster::start(&["pg_webhook.database = 'chosen'"]);
    let mut admin = pg.connect("postgres");
    for name in ["chosen", "other"] {
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
    }
    let rx = Receiver::start();
    let mut other = pg.connect("other");
    other
        .batch_execute("CREATE EXTENSION pg_webhook; CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    let mut chosen = pg.connect("chosen");
    chosen
        .batch_execute("CREATE EXTENSION pg_webhook; CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    subscribe(&mut chosen, "c", "t", &rx.url("/chosen"), "");
    subscribe(&mut other, "o", "t", &rx.url("/other"), "");
    chosen.batch_execute("INSERT INTO t VALUES (1)").unwrap();
    other.batch_execute("INSERT INTO t VALUES (1)").unwrap();
    rx.wait_for(1, WAIT);
    std::thread::sleep(Duration::from_secs(2));
    assert!(rx.requests().iter().all(|r| r.path == "/chosen"));
    assert!(workers_in(&mut admin, "other").is_empty());
    let queued: i64 = other
        .query_one(
            "SELECT count(*) FROM webhook.events WHERE status = 'pending'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(queued, 1, "the other database's events wait, durably");
}

/// A database pg_webhook.database left out queues its events without asking the launcher on
/// every commit; once a reload lets it in, the launcher starts its workers by itself and the
/// queued events go out, with no further write there.
#[test]
fn a_database_the_setting_lets_in_later_gets_the_events_it_queued() {
    let pg = Cluster::start(&["pg_webhook.database = 'chosen'"]);
    let mut admin = pg.connect("postgres");
    admin.batch_execute("CREATE DATABASE later").unwrap();
    let rx = Receiver::start();
    let mut later = pg.connect("later");
    later
        .batch_execute("CREATE EXTENSION pg_webhook; CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    subscribe(&mut later, "l", "t", &rx.url("/later"), "");
    later
        .batch_execute("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)")
        .unwrap();
    assert!(workers_in(&mut admin, "later").is_empty());
    alter_system(&mut admin, "SET pg_webhook.database = 'later'");
    let got = rx.wait_for(2, WAIT);
    let mut ids: Vec<i64> = got
        .iter()
        .filter_map(|r| r.json()["record"]["id"].as_i64())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
}

/// The default, 0, gives a database one delivery worker per CPU, at most two, and together they
/// deliver every event, each its share.
#[test]
fn by_default_a_database_gets_a_worker_per_cpu_up_to_two() {
    // The test clusters pin one worker; this puts the default back.
    let pg = Cluster::start(&["pg_webhook.workers = 0"]);
    let mut db = pg.client_with_extension();
    assert_eq!(
        text(
            &mut db,
            "SELECT boot_val FROM pg_settings WHERE name = 'pg_webhook.workers'"
        )
        .as_deref(),
        Some("0")
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let expected = cpus.min(2);
    let rx = Receiver::start();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(&mut db, "INSERT INTO t SELECT generate_series(1, 100)");
    rx.wait_for(100, WAIT);
    let mut admin = pg.connect("postgres");
    let delivery_workers = |admin: &mut Client| {
        workers_in(admin, "postgres")
            .iter()
            .filter(|t| *t == "pg_webhook")
            .count()
    };
    assert_eq!(delivery_workers(&mut admin), expected, "{cpus} CPUs");
    assert_eq!(workers_that_delivered(&mut db, 100), expected as i64);
}

/// Each statement takes its event ids from a block of its own, so the ids of single-row
/// transactions are all alike modulo a small number: shared out by `id % workers`, they all
/// went to one worker.
#[test]
fn single_row_transactions_are_shared_out_among_the_workers() {
    let pg = Cluster::start(&["pg_webhook.workers = 2"]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    for id in 1..=20 {
        exec(&mut db, &format!("INSERT INTO t VALUES ({id})"));
    }
    rx.wait_for(20, WAIT);
    assert_eq!(
        workers_that_delivered(&mut db, 20),
        2,
        "both workers delivered some of the 20 events"
    );
}

/// A server without pg_webhook in shared_preload_libraries (forgotten, or a restore onto a new
/// server): loading the library for CREATE EXTENSION or for a capture trigger must not end the
/// session (defining the restart-only `pg_webhook.workers` then did, with FATAL, so every write
/// to a subscribed table failed). Subscribing warns, writes commit and their events queue, and
/// once the library is preloaded they are delivered.
#[test]
fn without_preloading_writes_commit_and_their_events_wait_for_the_workers() {
    let pg = Cluster::start(&["shared_preload_libraries = ''"]);
    let rx = Receiver::start();
    let mut db = pg.connect("postgres");
    exec(
        &mut db,
        "CREATE EXTENSION pg_webhook; CREATE TABLE t (id int PRIMARY KEY)",
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    assert!(
        pg.log()
            .contains("pg_webhook is not in shared_preload_libraries"),
        "subscribing warned that nothing will be delivered: {}",
        pg.log()
    );
    // The cluster's postgresql.conf sets pg_webhook.workers: kept, not dropped with a warning.
    assert_eq!(
        text(&mut db, "SHOW pg_webhook.workers").as_deref(),
        Some("1")
    );
    assert!(
        !pg.log().contains("invalid configuration parameter"),
        "{}",
        pg.log()
    );
    // A session that has not loaded the library yet: the trigger loads it.
    let mut writer = pg.connect("postgres");
    exec(&mut writer, "INSERT INTO t VALUES (1), (2)");
    assert_eq!(
        count(
            &mut writer,
            "SELECT count(*) FROM webhook.events WHERE status = 'pending'"
        ),
        2
    );
    drop((db, writer));
    pg.append_conf("shared_preload_libraries = 'pg_webhook'\n");
    pg.stop("fast");
    pg.pg_ctl_start();
    let got = rx.wait_for(2, WAIT);
    let mut rows: Vec<i64> = got
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).expect("a JSON body")["record"]
                ["id"]
                .as_i64()
                .expect("a row id")
        })
        .collect();
    rows.sort();
    assert_eq!(rows, [1, 2]);
    // Preloaded, the setting is restart-only again.
    assert_eq!(
        text(
            &mut pg.connect("postgres"),
            "SELECT context FROM pg_settings WHERE name = 'pg_webhook.workers'"
        )
        .as_deref(),
        Some("postmaster")
    );
}

/// Events queued in a database that refused connections when the server started (`ALLOW_CONNECTIONS
/// false`): the launcher tries every database once at start, and then only those whose commits
/// ask. Once the database accepts connections again, its workers come without a commit of its
/// own (before, its events waited for the next one, however long that took).
#[test]
fn a_database_that_accepts_connections_again_gets_its_workers_without_a_commit() {
    let pg = Cluster::start(&[]);
    let mut admin = pg.connect("postgres");
    exec(&mut admin, "CREATE DATABASE app");
    let mut db = pg.connect("app");
    exec(
        &mut db,
        "CREATE EXTENSION pg_webhook; CREATE TABLE t (id int PRIMARY KEY)",
    );
    // Nothing listens there yet: the event is tried and waits for a retry.
    let port = support::cluster::free_port();
    subscribe(
        &mut db,
        "t",
        "t",
        &format!("http://127.0.0.1:{port}/t"),
        ", retry_schedule => ARRAY['1 second']::interval[], max_attempts => 100",
    );
    exec(&mut db, "INSERT INTO t VALUES (1)");
    wait_until(WAIT, "a failed attempt", || {
        count(&mut db, "SELECT count(*) FROM webhook.attempts") > 0
    });
    drop(db);
    exec(&mut admin, "ALTER DATABASE app ALLOW_CONNECTIONS false");
    drop(admin);
    pg.stop("fast");
    pg.pg_ctl_start();
    // The launcher has looked at the databases (it does right after it logs that it started,
    // before a session could connect and turn connections back on). Not a worker's start in
    // postgres: one may be stopped before it logs that it started.
    wait_until(WAIT, "the launcher to start again", || {
        pg.log().matches("pg_webhook launcher started").count() >= 2
    });
    let mut admin = pg.connect("postgres");
    assert!(workers_in(&mut admin, "app").is_empty());
    exec(&mut admin, "ALTER DATABASE app ALLOW_CONNECTIONS true");
    let rx = Receiver::on_port(port, |_, _| support::receiver::Reply::Status(204));
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].path, "/t");
}
