//! Rows whose images are larger than any worker reads (160 MiB as jsonb): the write commits,
//! and its event is queued without them, to die with the reason. Before, capture built them
//! like `to_jsonb`, and past jsonb's limits (a string of 256 MiB, or an object of that much)
//! the subscription made a write that PostgreSQL accepts fail, once with a Rust backtrace in
//! the error's detail.

mod support;

use postgres::Client;
use support::backfill::{backfilled, wait_state};
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, subscribe, text, WAIT};

/// A 130 MiB bytea: 260 MiB of hex as JSON text, past jsonb's 256 MiB for a string.
const HUGE_BYTEA: &str = "decode(repeat('ab', 130 * 1024 * 1024), 'hex')";

/// Table `t (id, b bytea, x, y, z text)` subscribed with `extra`, and a client.
fn table(pg: &Cluster, rx: &Receiver, extra: &str) -> Client {
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY, b bytea, x text, y text, z text)",
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), extra);
    db
}

/// Waits for the marker row 2's event, then checks row 1 committed and its event died unread
/// with images of more than 160 MiB and none stored.
fn assert_died_unread(db: &mut Client, rx: &Receiver) {
    wait_until(WAIT, "the marker", || rx.accepted_ids().contains(&2));
    assert_eq!(count(db, "SELECT count(*) FROM t WHERE id = 1"), 1);
    wait_until(WAIT, "the huge row's event to die", || {
        count(
            db,
            "SELECT count(*) FROM webhook.events WHERE status = 'dead' AND record IS NULL",
        ) == 1
    });
    let error = text(
        db,
        "SELECT last_error FROM webhook.events WHERE status = 'dead'",
    )
    .unwrap_or_default();
    assert!(
        error.contains("too large to send") && error.contains("left unread"),
        "{error}"
    );
    // Raising pg_webhook.max_payload_bytes and replaying would not send it: it says so.
    assert!(
        error.contains("any worker reads, whatever pg_webhook.max_payload_bytes says"),
        "{error}"
    );
    let bytes: i64 = error
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no size in: {error}"));
    assert!(bytes > 160 << 20, "{error}");
    assert!(
        !rx.accepted_ids().contains(&1),
        "nothing of the huge row went out"
    );
}

#[test]
fn a_row_with_a_value_too_long_for_jsonb_commits_and_its_event_dies_with_the_reason() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = table(&pg, &rx, "");
    exec(
        &mut db,
        &format!("INSERT INTO t (id, b) VALUES (1, {HUGE_BYTEA}); INSERT INTO t (id) VALUES (2)"),
    );
    assert_died_unread(&mut db, &rx);
}

#[test]
fn a_row_whose_values_together_pass_jsonb_limits_commits_and_its_event_dies() {
    // Three values of 90 MiB: each fits a jsonb string, together they pass 256 MiB.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = table(&pg, &rx, ", ordered => true");
    exec(
        &mut db,
        "INSERT INTO t (id, x, y, z)
           SELECT 1, v, v, v FROM (SELECT repeat('x', 90 * 1024 * 1024) AS v) s;
         INSERT INTO t (id) VALUES (2)",
    );
    assert_died_unread(&mut db, &rx);
}

#[test]
fn a_shaped_update_too_large_for_jsonb_commits_and_its_event_dies() {
    // skip_unchanged compares the images it sends: an omitted one is never unchanged.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = table(
        &pg,
        &rx,
        ", events => ARRAY['update'], columns => ARRAY['id', 'b'], skip_unchanged => true",
    );
    exec(
        &mut db,
        &format!(
            "INSERT INTO t (id, b) VALUES (1, {HUGE_BYTEA}), (2, '\\x00');
             UPDATE t SET x = 'touched' WHERE id = 1;
             UPDATE t SET b = '\\x01' WHERE id = 2"
        ),
    );
    assert_died_unread(&mut db, &rx);
}

#[test]
fn images_up_to_160_mib_are_queued_whole_and_larger_ones_not_at_all() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE notes (id int PRIMARY KEY, body text)",
    );
    subscribe(&mut db, "notes", "notes", &rx.url("/n"), "");
    exec(&mut db, "SELECT webhook.pause('notes')");
    // Keys and the id take a few bytes beside the body.
    exec(
        &mut db,
        "INSERT INTO notes VALUES (1, repeat('x', 160 * 1024 * 1024 - 100));
         INSERT INTO notes VALUES (2, repeat('x', 160 * 1024 * 1024 + 1))",
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_queue
              WHERE record->>'id' = '1' AND length(record->>'body') = 160 * 1024 * 1024 - 100"
        ),
        1,
        "the image under the limit is whole"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_queue
              WHERE record IS NULL AND payload_bytes > 160 * 1024 * 1024"
        ),
        1,
        "the one over it is counted, not kept"
    );
}

#[test]
fn a_backfill_of_a_row_too_large_for_jsonb_goes_on_and_its_event_dies() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        &format!(
            "CREATE TABLE t (id int PRIMARY KEY, b bytea);
             INSERT INTO t VALUES (1, {HUGE_BYTEA}), (2, '\\x00')"
        ),
    );
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", events => ARRAY['insert']",
    );
    exec(&mut db, "SELECT webhook.backfill('t')");
    wait_state(&mut db, "t", "done");
    wait_until(WAIT, "row 2's BACKFILL event", || {
        backfilled(&rx).contains_key(&2)
    });
    wait_until(WAIT, "row 1's event to die", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'dead' AND record IS NULL",
        ) == 1
    });
    assert!(!backfilled(&rx).contains_key(&1));
}

#[test]
fn a_row_with_an_array_too_large_for_jsonb_commits_and_its_event_dies() {
    // to_jsonb renders an array itself: two 130 MiB elements pass jsonb's 256 MiB for one.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY, tags text[])");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(
        &mut db,
        "INSERT INTO t SELECT 1, ARRAY[v, v] FROM (SELECT repeat('x', 130 * 1024 * 1024) AS v) s;
         INSERT INTO t (id) VALUES (2)",
    );
    assert_died_unread(&mut db, &rx);
}

#[test]
fn a_row_with_a_bytea_whose_hex_passes_1_gb_commits_and_its_event_dies() {
    // 513 MiB is a value PostgreSQL stores; its hex text would pass 1 GB, the most it allocates.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = table(&pg, &rx, "");
    exec(
        &mut db,
        "INSERT INTO t (id, b) VALUES (1, convert_to(repeat('x', 513 * 1024 * 1024), 'UTF8'));
         INSERT INTO t (id) VALUES (2)",
    );
    assert_died_unread(&mut db, &rx);
}

#[test]
#[ignore = "to_jsonb refuses a number array whose jsonb passes 256 MiB though it is stored in 100 MiB: capture cannot tell before it builds it (README Too big)"]
fn a_row_with_a_long_array_of_numbers_commits_and_its_event_dies() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY, n int[])");
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(
        &mut db,
        "INSERT INTO t SELECT 1, array_agg(g) FROM generate_series(1, 25000000) g;
         INSERT INTO t (id) VALUES (2)",
    );
    assert_died_unread(&mut db, &rx);
}

#[test]
fn a_transaction_with_a_row_too_large_sends_its_other_events_as_one_request() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = table(&pg, &rx, ", group_by => 'transaction'");
    exec(
        &mut db,
        "BEGIN;
         INSERT INTO t (id) VALUES (3);
         INSERT INTO t (id, x) SELECT 1, repeat('x', 170 * 1024 * 1024);
         INSERT INTO t (id) VALUES (4);
         COMMIT;
         INSERT INTO t (id) VALUES (2)",
    );
    wait_until(WAIT, "the other events and the marker", || {
        let ids: Vec<i64> = rx.requests().iter().flat_map(|r| r.row_ids()).collect();
        ids.contains(&2) && ids.contains(&3) && ids.contains(&4)
    });
    wait_until(WAIT, "the huge row's event to die", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'dead' AND record IS NULL",
        ) == 1
    });
    let ids: Vec<i64> = rx.requests().iter().flat_map(|r| r.row_ids()).collect();
    assert!(!ids.contains(&1), "{ids:?}");
    // Its transaction's request names it dead, between the two it sends.
    let part = rx
        .requests()
        .into_iter()
        .find(|r| r.row_ids() == [3, 4])
        .map(|r| r.json())
        .unwrap_or_default();
    assert_eq!(part["transaction"]["events_total"], 3, "{part}");
    assert_eq!(part["dead"][0]["reason"], "too_large", "{part}");
    assert_eq!(part["dead"][0]["operation"], "INSERT", "{part}");
}
