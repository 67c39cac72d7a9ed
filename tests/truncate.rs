//! TRUNCATE events of a partitioned table say which rows are gone. Each partition carries the
//! subscription's TRUNCATE trigger, and every event named the subscribed table: `TRUNCATE` of one
//! partition reached receivers as a TRUNCATE of the whole table, which a receiver mirroring it
//! applied to the rows of every other partition, still there.

mod support;

use support::cluster::Cluster;
use support::events::{assert_exactly, event, Event, ORDERED};
use support::receiver::Receiver;
use support::{exec, subscribe};

/// `pt`, list-partitioned into `pt_a` and (in schema `other`) `pt_b`, subscribed in order with
/// TRUNCATE events; ordered, so the marker row (`id = 1000`, in `pt_a`) arrives last.
fn partitioned(pg: &Cluster, rx: &Receiver) -> postgres::Client {
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE SCHEMA other;
         CREATE TABLE pt (id int, k text) PARTITION BY LIST (k);
         CREATE TABLE pt_a PARTITION OF pt FOR VALUES IN ('a');
         CREATE TABLE other.pt_b PARTITION OF pt FOR VALUES IN ('b');
         INSERT INTO pt VALUES (1, 'a'), (2, 'b');",
    );
    let extra = format!("{ORDERED}, events => '{{insert,truncate}}'");
    subscribe(&mut db, "pt", "pt", &rx.url("/pt"), &extra);
    db
}

/// Runs `truncate` on a fresh `pt`, then the marker row, and checks that exactly `want`
/// (TRUNCATE events of `pt`: "" for no record, else the partition's schema and table) and the
/// marker were sent.
fn sends(truncate: &str, want: &[(&str, &str)]) {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = partitioned(&pg, &rx);
    exec(&mut db, truncate);
    exec(&mut db, "INSERT INTO pt VALUES (1000, 'a')");
    let mut events: Vec<Event> = want
        .iter()
        .map(|(schema, table)| {
            let record = if table.is_empty() {
                String::new()
            } else {
                format!(r#"{{"partition": {{"schema": "{schema}", "table": "{table}"}}}}"#)
            };
            event("TRUNCATE", "pt", &record, "")
        })
        .collect();
    events.push(event("INSERT", "pt", r#"{"id": 1000, "k": "a"}"#, ""));
    assert_exactly(&rx, &events);
}

#[test]
fn a_truncate_of_one_partition_names_that_partition() {
    sends("TRUNCATE other.pt_b", &[("other", "pt_b")]);
}

#[test]
fn a_truncate_of_the_partitioned_table_empties_it_and_names_each_partition() {
    sends(
        "TRUNCATE pt",
        &[("", ""), ("public", "pt_a"), ("other", "pt_b")],
    );
}
