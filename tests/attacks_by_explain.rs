//! EXPLAIN ANALYZE against the views: the row counts of a plan must not tell a reader anything
//! about subscriptions they may not see. A condition PostgreSQL deems leakproof (`=`, `>=` on
//! text) is pushed into a security_barrier view; pushed down to the scan of a private table,
//! below the join that keeps only the reader's subscriptions, its row count answered whether
//! a hidden subscription's filter or payload matched a guess — and bisecting, what it says.
//! One scenario per test; each fails on a pg_webhook whose views let the guess through.

mod support;

use postgres::Client;
use serde_json::Value;
use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{exec, subscribe};

/// Every row count the plan of `query` shows, added up: rows out of each node and rows each
/// removed.
fn rows_seen(db: &mut Client, query: &str) -> i64 {
    let sql = format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, FORMAT JSON) {query}");
    let text = (db
        .simple_query(&sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}")))
    .into_iter()
    .find_map(|m| match m {
        postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    })
    .expect("EXPLAIN's output");
    let plan: Value = serde_json::from_str(&text).expect("EXPLAIN's JSON");
    fn walk(node: &Value) -> i64 {
        let own: i64 = [
            "Actual Rows",
            "Rows Removed by Filter",
            "Rows Removed by Join Filter",
        ]
        .iter()
        .filter_map(|k| node.get(*k).and_then(Value::as_i64))
        .sum();
        let below: i64 = (node.get("Plans").and_then(Value::as_array))
            .map_or(0, |plans| plans.iter().map(walk).sum());
        own + below
    }
    walk(&plan[0]["Plan"])
}

/// Asserts that the plans of a right and a wrong guess show the same row counts.
fn same_counts(db: &mut Client, right: &str, wrong: &str) {
    assert_eq!(
        rows_seen(db, right),
        rows_seen(db, wrong),
        "the plan's row counts tell the right guess from the wrong one"
    );
}

/// alice's subscription with a filter (hidden from every reader but her), and mallory's
/// session; the filter's text is what mallory guesses at.
fn hidden_filter(pg: &Cluster, rx: &Receiver) -> (Client, i32) {
    let (mut su, mallory, _) = support::mallory::victim_and_mallory(pg, rx);
    exec(
        &mut su,
        "CREATE TABLE payroll (id int PRIMARY KEY, salary int)",
    );
    exec(
        &mut su,
        "GRANT SELECT, TRIGGER ON payroll TO alice, mallory",
    );
    let mut alice = pg.connect_as("postgres", "alice");
    let (id, _) = subscribe(
        &mut alice,
        "raises",
        "payroll",
        &rx.url("/raises"),
        ", events => ARRAY['INSERT'], filter => 'NEW.salary > 250000'",
    );
    exec(
        &mut alice,
        "SELECT webhook.backfill('raises', 'salary > 300000')",
    );
    (mallory, id)
}

#[test]
fn explain_analyze_of_webhook_subscriptions_does_not_tell_a_hidden_filter() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let (mut mallory, id) = hidden_filter(&pg, &rx);
    let right = format!(
        "SELECT 1 FROM webhook.subscriptions WHERE id = {id} AND filter = 'NEW.salary > 250000'"
    );
    let wrong = format!(
        "SELECT 1 FROM webhook.subscriptions WHERE id = {id} AND filter = 'NEW.salary > 100000'"
    );
    same_counts(&mut mallory, &right, &wrong);
}

#[test]
fn explain_analyze_of_webhook_backfills_does_not_tell_a_hidden_filter() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let (mut mallory, id) = hidden_filter(&pg, &rx);
    let right = format!(
        "SELECT 1 FROM webhook.backfills WHERE subscription_id = {id} AND filter = 'salary > 300000'"
    );
    let wrong = format!(
        "SELECT 1 FROM webhook.backfills WHERE subscription_id = {id} AND filter = 'salary > 1'"
    );
    same_counts(&mut mallory, &right, &wrong);
}

#[test]
fn explain_analyze_of_webhook_subscription_stats_does_not_tell_a_hidden_name() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let (mut mallory, _) = hidden_filter(&pg, &rx);
    let right = "SELECT 1 FROM webhook.subscription_stats WHERE name = 'raises'";
    let wrong = "SELECT 1 FROM webhook.subscription_stats WHERE name = 'bonuses'";
    same_counts(&mut mallory, right, wrong);
}
