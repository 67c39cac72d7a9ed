//! pg_webhook behind pgbouncer in transaction pooling mode, as most production clusters run:
//! writers that reach the server through the pooler are captured and delivered at once (the
//! commit wakes the worker from inside the server, whatever connection the pooler used), and
//! the SQL API assumes no session state, so each call may land on another server connection.
//! Needs the Debian package `pgbouncer` (`.ci/setup` installs it).

mod support;

use std::process::Child;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls, SimpleQueryMessage};
use support::cluster::{free_port, wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, WAIT};

/// A pgbouncer in transaction pooling mode in front of `pg`, with two server connections.
struct Bouncer {
    child: Child,
    port: u16,
}

impl Bouncer {
    fn start(pg: &Cluster) -> Bouncer {
        let port = free_port();
        let dir = &pg.dir;
        let users = dir.join("pgbouncer_users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n\"alice\" \"\"\n")
            .unwrap_or_else(|e| panic!("writing {}: {e}", users.display()));
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\npostgres = host=127.0.0.1 port={} dbname=postgres\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {}\npool_mode = transaction\n\
                 default_pool_size = 2\nmax_client_conn = 50\n\
                 logfile = {}\npidfile = {}\n",
                pg.port,
                users.display(),
                dir.join("pgbouncer.log").display(),
                dir.join("pgbouncer.pid").display(),
            ),
        )
        .unwrap_or_else(|e| panic!("writing {}: {e}", ini.display()));
        let child = pg.spawn("/usr/sbin/pgbouncer", &[ini.to_str().unwrap()]);
        let bouncer = Bouncer { child, port };
        let deadline = Instant::now() + WAIT;
        while bouncer.try_connect("postgres").is_err() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not accept connections (apt-get install pgbouncer; .ci/setup does): {}",
                std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        bouncer
    }

    fn try_connect(&self, user: &str) -> Result<Client, postgres::Error> {
        Client::connect(
            &format!(
                "host=127.0.0.1 port={} user={user} dbname=postgres",
                self.port
            ),
            NoTls,
        )
    }

    fn connect(&self, user: &str) -> Client {
        self.try_connect(user)
            .unwrap_or_else(|e| panic!("connecting through pgbouncer as {user}: {e}"))
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        // SIGTERM to sudo, which passes it on to pgbouncer.
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        if let Err(e) = self.child.wait() {
            eprintln!("waiting for pgbouncer: {e}");
        }
    }
}

/// The first column of the first row of `sql`, run with the simple protocol: in transaction
/// pooling, a statement prepared in one transaction may not exist in the next.
fn simple_value(db: &mut Client, sql: &str) -> Option<String> {
    let messages = db
        .simple_query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages.into_iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
        _ => None,
    })?
}

#[test]
fn writers_through_pgbouncer_are_captured_and_delivered_at_once() {
    // A poll an hour apart: everything that arrives within the test's wait was woken by the
    // commit, through whichever server connection the pooler chose.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '1h'"]);
    let mut direct = pg.client_with_extension();
    let rx = Receiver::start();
    exec(
        &mut direct,
        "CREATE TABLE w (id int PRIMARY KEY, note text)",
    );
    support::subscribe(&mut direct, "w", "w", &rx.url("/w"), "");
    let bouncer = Bouncer::start(&pg);
    // Eight clients share two server connections, each commit on whichever is free.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let mut db = bouncer.connect("postgres");
            std::thread::spawn(move || {
                for i in 0..25 {
                    let id = w * 25 + i + 1;
                    db.batch_execute(&format!(
                        "INSERT INTO w VALUES ({id}, 'through the pooler')"
                    ))
                    .unwrap_or_else(|e| panic!("insert {id} through pgbouncer: {e}"));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("a writer thread panicked");
    }
    let got = rx.wait_for(200, WAIT);
    let mut ids: Vec<i64> = got
        .iter()
        .filter_map(|r| r.json()["record"]["id"].as_i64())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids, (1..=200).collect::<Vec<i64>>());
    wait_until(WAIT, "every event recorded delivered", || {
        count(
            &mut direct,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 200
    });
}

#[test]
fn the_sql_api_works_through_pgbouncer_in_transaction_mode() {
    let pg = Cluster::start(&[]);
    let mut direct = pg.client_with_extension();
    let rx = Receiver::start();
    direct
        .batch_execute(
            "CREATE TABLE a (id int PRIMARY KEY);
             CREATE ROLE alice LOGIN IN ROLE webhook_admin;
             GRANT SELECT, TRIGGER ON a TO alice;",
        )
        .unwrap();
    let bouncer = Bouncer::start(&pg);
    let mut alice = bouncer.connect("alice");
    // Another client keeps the pool busy, so alice's calls land on either server connection.
    let mut other = bouncer.connect("postgres");
    let mut step = |sql: &str| {
        other
            .batch_execute("SELECT pg_catalog.pg_sleep(0.01)")
            .unwrap_or_else(|e| panic!("the other client: {e}"));
        simple_value(&mut alice, sql)
    };
    let id = step(&format!(
        "SELECT id FROM webhook.subscribe('a_hook', 'a', '{}')",
        rx.url("/a")
    ))
    .expect("subscribe returned no id");
    assert_eq!(step("SELECT webhook.pause('a_hook')").as_deref(), Some("t"));
    exec(&mut direct, "INSERT INTO a VALUES (1)");
    wait_until(
        WAIT,
        "the event of the paused subscription to be parked",
        || {
            count(
                &mut direct,
                "SELECT count(*) FROM webhook.events WHERE status = 'parked'",
            ) == 1
        },
    );
    assert_eq!(
        step("SELECT webhook.resume('a_hook')").as_deref(),
        Some("t")
    );
    rx.wait_for(1, WAIT);
    let ping = step("SELECT delivered FROM webhook.ping('a_hook')");
    assert_eq!(ping.as_deref(), Some("t"), "ping through the pooler");
    let rotated = step("SELECT webhook.rotate_secret('a_hook') IS NOT NULL");
    assert_eq!(rotated.as_deref(), Some("t"));
    wait_until(WAIT, "the first event to be recorded delivered", || {
        count(
            &mut direct,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 1
    });
    let event = count(&mut direct, "SELECT max(id) FROM webhook.events");
    step(&format!("SELECT webhook.replay({event})"));
    rx.wait_for(2, WAIT);
    assert_eq!(
        step("SELECT webhook.unsubscribe('a_hook')").as_deref(),
        Some("t")
    );
    assert_eq!(
        count(
            &mut direct,
            &format!("SELECT count(*) FROM webhook.subscriptions WHERE id = {id} AND status = 'unsubscribed'"),
        ),
        1
    );
}
