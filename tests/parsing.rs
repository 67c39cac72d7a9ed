//! User-written SQL (a filter, a payload) is parsed the same way where it is checked and where
//! it runs, whatever the session or the database has set: with `standard_conforming_strings`
//! off, `'\''` closes a string literal that the same text leaves open when it is on. Text that
//! passed as one expression at subscribe ran, in a writer's session with the setting off, as a
//! query with a second statement of the subscriber's choosing, whose raw values the capture
//! stored as the event's `jsonb`: the backend crashed (and with it the server), or the worker
//! sent other tables' rows from its memory to the subscriber's URL.

mod support;

use support::receiver::Receiver;
use support::{error_of, exec, subscribe, WAIT};

/// One expression when read with standard strings; under `standard_conforming_strings = off`,
/// the end of a filter, a second statement that returns two bigints where the capture reads
/// jsonb, and a comment.
const TWO_FACED: &str =
    "'x' <> '\\'' AND '''' = '''' OR true) ; SELECT 1::int8, 2::int8 WHERE (true --'\n AND true";

#[test]
fn a_filter_runs_as_checked_in_a_writer_session_without_standard_strings() {
    let pg = support::cluster::Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE mallory LOGIN; GRANT webhook_admin TO mallory;
         GRANT CREATE ON SCHEMA public TO mallory;",
    );
    let mut mallory = pg.connect_as("postgres", "mallory");
    exec(&mut mallory, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    let filter = format!(", events => '{{insert}}', filter => $F${TWO_FACED}$F$");
    subscribe(&mut mallory, "t", "t", &rx.url("/t"), &filter);
    exec(
        &mut mallory,
        "SET standard_conforming_strings = off; INSERT INTO t VALUES (3, 'boom')",
    );
    // Read with standard strings, the filter is `'x' <> '<a long string>' AND true`.
    let got = rx.wait_for(1, WAIT);
    let body = got[0].json();
    assert_eq!(
        body["record"],
        serde_json::json!({"id": 3, "v": "boom"}),
        "{body}"
    );
}

#[test]
fn a_filter_is_checked_with_standard_strings_in_a_session_without_them() {
    // With the setting off this is one expression (a string compared with 'x'); with it on, as
    // every capture reads it, it is `'a\'`, then a second statement.
    let pg = support::cluster::Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(&mut su, "CREATE TABLE t (id int PRIMARY KEY)");
    let e = error_of(
        &mut su,
        &format!(
            "SET standard_conforming_strings = off;
             SELECT webhook.subscribe('t', 't', '{}', filter => $F$'a\\' ) ; SELECT 1 --' = 'x'$F$)",
            rx.url("/t")
        ),
    );
    assert!(e.contains("filter must be one expression"), "{e}");
}

#[test]
fn a_filter_means_the_same_in_a_database_without_standard_strings() {
    // The database's default reaches every session there, the workers' too: the backfill's
    // read of the filter and the capture's read alike.
    let pg = support::cluster::Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.connect("postgres");
    exec(&mut su, "CREATE DATABASE d");
    exec(
        &mut su,
        "ALTER DATABASE d SET standard_conforming_strings = off",
    );
    let mut db = pg.connect("d");
    exec(
        &mut db,
        "CREATE EXTENSION pg_webhook;
         CREATE TABLE t (id int PRIMARY KEY, note text);
         INSERT INTO t VALUES (1, E'\\\\'), (2, 'x');",
    );
    // With standard strings, '\' is a backslash; without, it does not end.
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", events => '{insert}', filter => $F$NEW.note = '\\'$F$",
    );
    exec(&mut db, "SELECT webhook.backfill('t')");
    support::backfill::wait_state(&mut db, "t", "done");
    exec(&mut db, "INSERT INTO t VALUES (4, 'y'), (3, E'\\\\')");
    let got = rx.wait_for(2, WAIT);
    let mut sent: Vec<(String, i64)> = got
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["type"].as_str().unwrap_or_default().to_string(),
                body["record"]["id"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        vec![("BACKFILL".to_string(), 1), ("INSERT".to_string(), 3)]
    );
    // Rows 2 and 4 were left out by the filter, not queued to come later: the two events
    // sent are all the subscription ever had.
    let events: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM webhook._event_queue)
                  + (SELECT count(*) FROM webhook._event_archive)",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    assert_eq!(events, 2);
}
