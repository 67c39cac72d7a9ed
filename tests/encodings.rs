//! pg_webhook runs only in UTF8 databases. Webhooks carry JSON, which is UTF-8, and the worker
//! reads the queue's text into Rust as UTF-8: in a LATIN1 database the first event with an
//! 'é' in it, in a SQL_ASCII one the first with a byte over 127, made every claim of the
//! database fail, so nothing of it was delivered again. CREATE EXTENSION and the update to
//! 0.3.0 refuse such databases, saying how to move.

mod support;

use postgres::Client;
use support::cluster::{install_released_script, Cluster};
use support::receiver::Receiver;
use support::{error_of, exec, subscribe, text, WAIT};

/// A database `name` encoded in `encoding`, and a client of it.
fn database(pg: &Cluster, name: &str, encoding: &str) -> Client {
    exec(
        &mut pg.connect("postgres"),
        &format!(
            "CREATE DATABASE {name} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        ),
    );
    pg.connect(name)
}

fn assert_refused(e: &str, name: &str, encoding: &str, hint: &str) {
    assert!(
        e.contains(&format!(
            "pg_webhook needs a database encoded in UTF8, and database \"{name}\" is encoded in {encoding}"
        )),
        "{e}"
    );
    assert!(e.contains("Webhooks carry JSON, which is UTF-8."), "{e}");
    assert!(e.contains(hint), "{e}");
}

#[test]
fn pg_webhook_is_not_created_in_a_latin1_database() {
    let pg = Cluster::start(&[]);
    let mut db = database(&pg, "legacy", "LATIN1");
    let e = error_of(&mut db, "CREATE EXTENSION pg_webhook");
    assert_refused(&e, "legacy", "LATIN1", "and create pg_webhook in it.");
    assert_eq!(
        text(
            &mut db,
            "SELECT count(*)::text FROM pg_namespace WHERE nspname = 'webhook'"
        )
        .as_deref(),
        Some("0"),
        "nothing of it was left behind"
    );
}

#[test]
fn pg_webhook_is_not_created_in_a_sql_ascii_database() {
    let pg = Cluster::start(&[]);
    let mut db = database(&pg, "bytes", "SQL_ASCII");
    let e = error_of(&mut db, "CREATE EXTENSION pg_webhook");
    assert_refused(&e, "bytes", "SQL_ASCII", "and create pg_webhook in it.");
}

#[test]
fn a_0_2_0_install_in_a_latin1_database_is_not_updated() {
    install_released_script("0.1.0");
    install_released_script("0.2.0");
    let pg = Cluster::start(&[]);
    let mut db = database(&pg, "legacy", "LATIN1");
    exec(&mut db, "CREATE EXTENSION pg_webhook VERSION '0.2.0'");
    let e = error_of(&mut db, "ALTER EXTENSION pg_webhook UPDATE TO '0.3.0'");
    assert_refused(&e, "legacy", "LATIN1", "install pg_webhook 0.3.0 in it.");
    assert_eq!(
        text(
            &mut db,
            "SELECT extversion::text FROM pg_extension WHERE extname = 'pg_webhook'"
        )
        .as_deref(),
        Some("0.2.0")
    );
}

#[test]
fn a_database_named_in_latin1_does_not_stop_delivery_in_the_others() {
    // The launcher reads every database's name from the shared catalog, as bytes of the
    // encoding of the database that named it: "café" named in a LATIN1 database is not UTF-8.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    exec(
        &mut database(&pg, "legacy", "LATIN1"),
        "CREATE DATABASE \"café\"",
    );
    // The launcher lists the databases when it starts.
    pg.stop("fast");
    pg.pg_ctl_start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(&mut db, "INSERT INTO t VALUES (1)");
    rx.wait_for_answers(1, WAIT);
    assert_eq!(rx.accepted_ids(), vec![1]);
}

#[test]
fn a_database_named_in_latin1_sends_valid_json_naming_it() {
    // "café" named in a LATIN1 database is the byte 0xE9 in pg_database, though the database
    // (made from template1) is encoded in UTF8, where pgrx hands text to Rust unchecked: the
    // CloudEvents source, which names the database, must still be UTF-8.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    exec(
        &mut database(&pg, "legacy", "LATIN1"),
        "CREATE DATABASE \"café\"",
    );
    let sql = format!(
        "CREATE EXTENSION pg_webhook;
         CREATE TABLE t (id int PRIMARY KEY);
         SELECT webhook.subscribe(name => 't', target => 't', url => '{}',
                                  format => 'cloudevents');
         INSERT INTO t VALUES (1);",
        rx.url("/t")
    );
    let port = pg.port.to_string();
    // The name is not UTF-8, so not a Rust string: psql takes it from the environment as bytes.
    let out = std::process::Command::new(pg.bin("psql"))
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
        .args(["-v", "ON_ERROR_STOP=1", "-c", &sql])
        .env(
            "PGDATABASE",
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"caf\xe9"),
        )
        .output()
        .unwrap_or_else(|e| panic!("running psql: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = rx.wait_for_answers(1, WAIT);
    let body = &requests[0].body;
    let text = std::str::from_utf8(body).unwrap_or_else(|e| {
        panic!(
            "the body is not UTF-8: {e}: {}",
            String::from_utf8_lossy(body)
        )
    });
    assert!(text.contains("\"source\":\"/pg_webhook/caf"), "{text}");
    assert_eq!(requests[0].json()["data"]["record"]["id"], 1, "{text}");
}

#[test]
fn a_0_2_0_install_in_a_latin1_database_is_told_why_nothing_is_delivered() {
    // The library is the cluster's: 0.3.0's worker delivers nothing of 0.2.0's database, and
    // the update that would let it is refused there, so the worker must not ask for it.
    install_released_script("0.1.0");
    install_released_script("0.2.0");
    let pg = Cluster::start(&[]);
    exec(
        &mut database(&pg, "legacy", "LATIN1"),
        "CREATE EXTENSION pg_webhook VERSION '0.2.0'",
    );
    // The launcher starts workers in every database when it starts.
    pg.stop("fast");
    pg.pg_ctl_start();
    support::cluster::wait_until(WAIT, "the legacy worker's word", || {
        pg.log()
            .contains("database \"legacy\" has pg_webhook 0.2.0 and is not encoded in UTF8")
    });
    assert!(
        !pg.log()
            .contains("database \"legacy\" has pg_webhook 0.2.0 and this library is"),
        "the update it refuses is not suggested"
    );
}
