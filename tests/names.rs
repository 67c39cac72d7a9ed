//! Events name the subscribed table as it is called when they are captured, in sessions that
//! captured under its old name too: capture keeps each table's names per session, and a schema
//! rename (which invalidates no relation) left a long-lived session, a pooled one say, sending
//! the old schema's name.

mod support;

use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{exec, subscribe, WAIT};

/// (schema, table) of each accepted event, in the order of their row ids 1, 2, …
fn names(rx: &Receiver, n: usize) -> Vec<(String, String)> {
    let mut got: Vec<(i64, String, String)> = rx
        .wait_for(n, WAIT)
        .iter()
        .map(|r| {
            let b = r.json();
            let name = |k: &str| b[k].as_str().unwrap_or_default().to_string();
            (
                b["record"]["id"].as_i64().unwrap_or(-1),
                name("schema"),
                name("table"),
            )
        })
        .collect();
    got.sort();
    got.into_iter().map(|(_, s, t)| (s, t)).collect()
}

/// Inserts row 1 in a session, runs `rename` in another, then `insert_2` (row 2) in the first.
fn rename_between_writes(rename: &str, insert_2: &str) -> Vec<(String, String)> {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE SCHEMA s1; CREATE TABLE s1.q (id int PRIMARY KEY)",
    );
    subscribe(&mut db, "q", "s1.q", &rx.url("/q"), "");
    let mut writer = pg.connect("postgres");
    exec(&mut writer, "INSERT INTO s1.q VALUES (1)");
    exec(&mut db, rename);
    exec(&mut writer, insert_2);
    names(&rx, 2)
}

fn pair(schema: &str, table: &str) -> (String, String) {
    (schema.to_string(), table.to_string())
}

#[test]
fn a_renamed_schema_is_named_by_sessions_that_captured_before() {
    assert_eq!(
        rename_between_writes(
            "ALTER SCHEMA s1 RENAME TO s2",
            "INSERT INTO s2.q VALUES (2)"
        ),
        vec![pair("s1", "q"), pair("s2", "q")]
    );
}

#[test]
fn a_renamed_table_is_named_by_sessions_that_captured_before() {
    assert_eq!(
        rename_between_writes(
            "ALTER TABLE s1.q RENAME TO r",
            "INSERT INTO s1.r VALUES (2)"
        ),
        vec![pair("s1", "q"), pair("s1", "r")]
    );
}
