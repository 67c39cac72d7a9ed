//! Backfills of `ordered` and `order_key` subscriptions while writers keep changing the rows:
//! a row's BACKFILL event never arrives after a later committed change of it.

mod support;

use std::collections::HashMap;

use support::backfill::{backfilled, wait_state};
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, subscribe, text, WAIT};

/// A table of `rows` rows whose `version` only grows, a subscription on it with `extra`, and a
/// backfill while a writer keeps updating random rows (each update its own transaction). Then
/// checks, per row, that the versions arrived in order: no BACKFILL event of a row came after
/// a later committed change of it.
fn backfill_under_live_updates(extra: &str, rows: i64) {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(
        &mut db,
        &format!(
            "CREATE TABLE acct (id int PRIMARY KEY, version int NOT NULL DEFAULT 0);
             INSERT INTO acct SELECT g, 0 FROM generate_series(1, {rows}) g;"
        ),
    );
    subscribe(
        &mut db,
        "acct",
        "acct",
        &rx.url("/a"),
        &format!(", events => ARRAY['update']{extra}"),
    );
    let done = std::sync::atomic::AtomicBool::new(false);
    let updates = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut c = pg.connect("postgres");
            let mut state: u64 = 12345;
            let mut n = 0u64;
            // Updates go on until the backfill is done, and a little after.
            let mut after = 0;
            while after < 50 {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    after += 1;
                }
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let id = (state >> 33) as i64 % rows + 1;
                c.execute(
                    "UPDATE acct SET version = version + 1 WHERE id = $1::int8::int",
                    &[&id],
                )
                .unwrap_or_else(|e| panic!("update: {e}"));
                n += 1;
            }
            n
        });
        // The backfill starts once updates are flowing.
        std::thread::sleep(std::time::Duration::from_millis(200));
        exec(&mut db, "SELECT * FROM webhook.backfill('acct')");
        wait_state(&mut db, "acct", "done");
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        writer.join().expect("the writer")
    });
    assert_eq!(
        count(&mut db, "SELECT rows_sent FROM webhook.backfills"),
        rows
    );
    let total = rows as usize + updates as usize;
    wait_until(support::LONG_WAIT, "every event", || {
        rx.count() >= total && rx.accepted().len() >= total
    });
    let mut last: HashMap<i64, (i64, String)> = HashMap::new();
    let mut overtaken = 0;
    for r in rx.accepted() {
        let body = r.json();
        let id = body["record"]["id"].as_i64().unwrap();
        let version = body["record"]["version"].as_i64().unwrap();
        let kind = body["type"].as_str().unwrap().to_string();
        if let Some((before, what)) = last.get(&id) {
            if version < *before {
                overtaken += 1;
                eprintln!("row {id}: {kind} of version {version} after {what} of version {before}");
            }
        }
        last.insert(id, (version, kind));
    }
    assert_eq!(
        overtaken, 0,
        "a backfill event came after a later change of its row"
    );
    assert_eq!(
        backfilled(&rx).len() as i64,
        rows,
        "every row backfilled once"
    );
    let final_versions = count(&mut db, "SELECT sum(version) FROM acct");
    assert_eq!(final_versions as u64, updates);
}

#[test]
fn per_key_order_holds_for_a_backfill_during_live_updates() {
    backfill_under_live_updates(", order_key => ARRAY['id']", 6000);
}

#[test]
fn an_ordered_subscription_gets_its_backfill_in_commit_order() {
    backfill_under_live_updates(", ordered => true", 1500);
}

/// An ordered subscription on `ledger` (`rows` rows, `also` run after it is made), a writer
/// holding its order lock in an open transaction (it lasts as long as that), and a backfill of
/// it started: (the superuser's session, the writer's).
fn backfill_behind_a_writer(
    pg: &Cluster,
    rx: &Receiver,
    rows: i64,
    also: &str,
) -> (postgres::Client, postgres::Client) {
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        &format!(
            "CREATE TABLE ledger (id int PRIMARY KEY, version int NOT NULL DEFAULT 0);
             INSERT INTO ledger SELECT g, 0 FROM generate_series(1, {rows}) g;"
        ),
    );
    subscribe(
        &mut db,
        "ledger",
        "ledger",
        &rx.url("/ledger"),
        ", ordered => true",
    );
    exec(&mut db, also);
    let mut writer = pg.connect("postgres");
    exec(
        &mut writer,
        "BEGIN; UPDATE ledger SET version = 1 WHERE id = 1",
    );
    exec(&mut db, "SELECT * FROM webhook.backfill('ledger')");
    (db, writer)
}

#[test]
fn a_backfill_held_up_by_a_long_writer_tries_again_less_and_less_often() {
    // A chunk that gave up waiting for a lock (or lost a deadlock) was tried again every second
    // for as long as the writer held it: 100 ms of the runner's time a second, in its owner's
    // turn, for hours if the writer took hours.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let (mut db, mut writer) = backfill_behind_a_writer(&pg, &rx, 100, "");
    // Waits of 1, 2 and 4 s; the fourth sets the next try 8 s off.
    wait_until(
        WAIT,
        "four waits in a row, the next try more than 4 s off",
        || {
            count(
                &mut db,
                "SELECT count(*) FROM webhook._backfills
                  WHERE waits >= 4 AND failures = 0 AND state = 'running'
                    AND retry_at > clock_timestamp() + interval '4 s'",
            ) == 1
        },
    );
    exec(&mut writer, "COMMIT");
    wait_state(&mut db, "ledger", "done");
    assert_eq!(
        count(&mut db, "SELECT waits::bigint FROM webhook._backfills"),
        0,
        "a chunk that went through ends the waits in a row"
    );
    wait_until(WAIT, "every ledger event", || backfilled(&rx).len() == 100);
}

#[test]
fn a_long_writer_of_an_ordered_table_delays_its_backfill_but_not_other_deliveries() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    // The writer holds the ledger's order lock for as long as its transaction lasts.
    let (mut db, mut writer) =
        backfill_behind_a_writer(&pg, &rx, 1000, "CREATE TABLE other (id int PRIMARY KEY)");
    subscribe(&mut db, "other", "other", &rx.url("/other"), "");
    wait_until(
        WAIT,
        "a chunk to give up waiting for the order lock",
        || {
            text(&mut db, "SELECT last_error FROM webhook.backfills")
                .is_some_and(|e| e.contains("lock timeout"))
        },
    );
    // Deliveries go on promptly meanwhile (the chunks run in the callback runner): live
    // inserts over a few seconds, longer than a chunk's retry cycle, each arrive within 5 s
    // (a worker waiting for the writer's lock would wait until the test ends it; the bound is
    // loose for a loaded machine running other clusters besides).
    for id in 1..=10 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let at = std::time::Instant::now();
        exec(&mut db, &format!("INSERT INTO other VALUES ({id})"));
        wait_until(WAIT, "a live insert on another table", || {
            rx.accepted()
                .iter()
                .any(|r| r.path == "/other" && r.json()["record"]["id"] == id)
        });
        let took = at.elapsed();
        assert!(
            took < std::time::Duration::from_secs(5),
            "delivery waited {took:?} behind the backfill"
        );
    }
    assert_eq!(
        count(&mut db, "SELECT rows_sent FROM webhook.backfills"),
        0,
        "nothing read while the writer holds the order lock"
    );
    exec(&mut writer, "COMMIT");
    wait_state(&mut db, "ledger", "done");
    assert_eq!(
        count(&mut db, "SELECT rows_sent FROM webhook.backfills"),
        1000
    );
    wait_until(WAIT, "every ledger event", || backfilled(&rx).len() == 1000);
    // The update committed before the backfill read row 1, and arrived first.
    let row1: Vec<(String, i64)> = rx
        .accepted()
        .iter()
        .map(|r| r.json())
        .filter(|b| b["record"]["id"] == 1 && b["table"] == "ledger")
        .map(|b| {
            (
                b["type"].as_str().unwrap_or_default().to_string(),
                b["record"]["version"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        row1,
        vec![("UPDATE".to_string(), 1), ("BACKFILL".to_string(), 1)]
    );
}
