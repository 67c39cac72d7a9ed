//! Ordered subscriptions (as a whole, per key, by transaction) send a statement's events before
//! those of the statements its own AFTER triggers run on the same table, and after those its
//! BEFORE triggers ran: a receiver applying them in order ends with the rows the table has.
//! One scenario per test.

mod support;

use serde_json::Value;
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{exec, subscribe, WAIT};

const TABLE: &str = "CREATE TABLE t (id int PRIMARY KEY, v int);";

/// Trigger `name` on `t`, `fires` as it says (`AFTER INSERT ... FOR EACH ROW ...`), running
/// PL/pgSQL `body`.
fn trigger(name: &str, fires: &str, body: &str) -> String {
    format!(
        "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} END $$;
         CREATE TRIGGER {name} {fires} ON t FOR EACH ROW EXECUTE FUNCTION {name}();"
    )
}

/// The trigger that adds 1 to `v` of a row of `t` inserted with v = 0.
fn bump() -> String {
    trigger(
        "bump",
        "AFTER INSERT",
        "IF NEW.v = 0 THEN UPDATE t SET v = v + 1 WHERE id = NEW.id; END IF; RETURN NULL;",
    )
}

/// `t` with `bump`.
fn bumped() -> String {
    format!("{TABLE} {}", bump())
}

/// (operation, row id, v) of one event's payload (`database` format); v of the old row for a
/// DELETE.
fn change(payload: &Value) -> (String, i64, i64) {
    let row = if payload["record"].is_null() {
        &payload["old_record"]
    } else {
        &payload["record"]
    };
    (
        payload["type"].as_str().unwrap_or_default().to_string(),
        row["id"].as_i64().unwrap_or(-1),
        row["v"].as_i64().unwrap_or(-1),
    )
}

fn ins(id: i64, v: i64) -> (String, i64, i64) {
    ("INSERT".to_string(), id, v)
}

fn upd(id: i64, v: i64) -> (String, i64, i64) {
    ("UPDATE".to_string(), id, v)
}

/// The changes `rx` accepted, one event per request, in arrival order, once there are `n`.
fn arrived(rx: &Receiver, n: usize) -> Vec<(String, i64, i64)> {
    wait_until(WAIT, &format!("{n} events"), || rx.accepted().len() >= n);
    rx.accepted().iter().map(|r| change(&r.json())).collect()
}

/// A cluster, a receiver and a session with `setup` run and `t` subscribed (`options`).
fn subscribed(setup: &str, options: &str) -> (Cluster, Receiver, postgres::Client) {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, setup);
    subscribe(&mut db, "t", "t", &rx.url("/t"), options);
    (pg, rx, db)
}

#[test]
fn an_ordered_tables_row_changed_by_a_trigger_of_its_own_insert_arrives_after_the_insert() {
    let (_pg, rx, mut db) = subscribed(&bumped(), ", ordered => true");
    exec(&mut db, "INSERT INTO t VALUES (1, 0)");
    assert_eq!(
        arrived(&rx, 2),
        [ins(1, 0), upd(1, 1)],
        "a receiver applying these in order ends with the row the table has"
    );
}

#[test]
fn a_statements_own_rows_all_go_before_what_its_row_triggers_changed() {
    let (_pg, rx, mut db) = subscribed(&bumped(), ", ordered => true");
    exec(&mut db, "INSERT INTO t VALUES (1, 0), (2, 0), (3, 0)");
    assert_eq!(
        arrived(&rx, 6),
        [
            ins(1, 0),
            ins(2, 0),
            ins(3, 0),
            upd(1, 1),
            upd(2, 1),
            upd(3, 1)
        ]
    );
}

#[test]
fn per_key_order_holds_for_a_writer_without_rights_on_the_queue() {
    // The events are moved by the extension's owner: the writer has no rights on the queue.
    let (pg, rx, _db) = subscribed(
        &format!(
            "{}
             CREATE ROLE w LOGIN;
             GRANT SELECT, INSERT, UPDATE ON t TO w;",
            bumped()
        ),
        ", order_key => ARRAY['id']",
    );
    let mut writer = pg.connect_as("postgres", "w");
    exec(
        &mut writer,
        "INSERT INTO t VALUES (1, 0), (2, 0), (3, 0), (4, 0)",
    );
    let seen = arrived(&rx, 8);
    for id in 1..=4 {
        let of_key: Vec<_> = seen.iter().filter(|c| c.1 == id).cloned().collect();
        assert_eq!(of_key, [ins(id, 0), upd(id, 1)], "key {id} in {seen:?}");
    }
}

#[test]
fn a_transactions_request_lists_a_statements_rows_before_what_its_row_triggers_changed() {
    let (_pg, rx, mut db) = subscribed(&bumped(), ", group_by => 'transaction'");
    exec(
        &mut db,
        "BEGIN; INSERT INTO t VALUES (1, 0), (2, 0); COMMIT",
    );
    wait_until(WAIT, "the transaction's request", || {
        rx.accepted().len() == 1
    });
    let body = rx.accepted()[0].json();
    let events: Vec<_> = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| change(&e["payload"]))
        .collect();
    assert_eq!(events, [ins(1, 0), ins(2, 0), upd(1, 1), upd(2, 1)]);
}

#[test]
fn a_copys_rows_go_before_what_its_row_triggers_changed() {
    let (_pg, rx, mut db) = subscribed(&bumped(), ", ordered => true");
    let mut copy = db
        .copy_in("COPY t (id, v) FROM STDIN")
        .expect("COPY FROM STDIN");
    std::io::Write::write_all(&mut copy, b"1\t0\n2\t0\n").expect("COPY rows");
    copy.finish().expect("COPY finished");
    assert_eq!(
        arrived(&rx, 4),
        [ins(1, 0), ins(2, 0), upd(1, 1), upd(2, 1)]
    );
}

#[test]
fn a_trigger_chain_two_statements_deep_arrives_in_the_order_it_ran() {
    let (_pg, rx, mut db) = subscribed(
        &format!(
            "{} {}",
            bumped(),
            trigger(
                "bump_again",
                "AFTER UPDATE",
                "IF NEW.v = 1 THEN UPDATE t SET v = 2 WHERE id = NEW.id; END IF; RETURN NULL;"
            )
        ),
        ", ordered => true",
    );
    exec(&mut db, "INSERT INTO t VALUES (1, 0)");
    assert_eq!(arrived(&rx, 3), [ins(1, 0), upd(1, 1), upd(1, 2)]);
}

#[test]
fn a_nested_write_rolled_back_in_an_exception_block_is_not_sent() {
    let undone = trigger(
        "bump",
        "AFTER INSERT",
        "IF NEW.v = 0 THEN
             BEGIN
                 UPDATE t SET v = 100 WHERE id = NEW.id;
                 RAISE EXCEPTION 'undo it';
             EXCEPTION WHEN raise_exception THEN
                 NULL;
             END;
             UPDATE t SET v = v + 1 WHERE id = NEW.id;
         END IF;
         RETURN NULL;",
    );
    let (_pg, rx, mut db) = subscribed(&format!("{TABLE} {undone}"), ", ordered => true");
    exec(&mut db, "INSERT INTO t VALUES (1, 0)");
    // The marker comes after everything the first statement queued.
    exec(&mut db, "INSERT INTO t VALUES (99, 5)");
    assert_eq!(arrived(&rx, 3), [ins(1, 0), upd(1, 1), ins(99, 5)]);
}

#[test]
fn what_a_before_trigger_wrote_keeps_its_place_before_the_statements_rows() {
    // An upsert done by a BEFORE INSERT trigger: the old row goes first, then the new one.
    let replace_old = trigger(
        "replace_old",
        "BEFORE INSERT",
        "DELETE FROM t WHERE id = NEW.id; RETURN NEW;",
    );
    let (_pg, rx, mut db) = subscribed(
        &format!("{TABLE} INSERT INTO t VALUES (1, 5); {replace_old}"),
        ", ordered => true",
    );
    exec(&mut db, "INSERT INTO t VALUES (1, 6)");
    assert_eq!(arrived(&rx, 2), [("DELETE".to_string(), 1, 5), ins(1, 6)]);
}

#[test]
fn a_partitioned_tables_rows_go_before_what_its_row_triggers_changed() {
    let (_pg, rx, mut db) = subscribed(
        &format!(
            "CREATE TABLE t (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
             CREATE TABLE t_low PARTITION OF t FOR VALUES FROM (0) TO (100);
             CREATE TABLE t_high PARTITION OF t FOR VALUES FROM (100) TO (200);
             {}",
            bump()
        ),
        ", ordered => true",
    );
    exec(&mut db, "INSERT INTO t VALUES (1, 0), (150, 0)");
    assert_eq!(
        arrived(&rx, 4),
        [ins(1, 0), ins(150, 0), upd(1, 1), upd(150, 1)]
    );
}
