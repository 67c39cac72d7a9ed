//! Ordered subscriptions (as a whole, per key, by transaction) send a statement's events before
//! those of the statements its own AFTER triggers run on the same table, and after those its
//! BEFORE triggers ran: a receiver applying them in order ends with the rows the table has.
//! One scenario per test.

mod support;

use support::cluster::wait_until;
use support::nested::{arrived, bump, bumped, change, ins, subscribed, trigger, upd, TABLE};
use support::{exec, WAIT};

#[test]
fn an_ordered_tables_row_changed_by_a_trigger_of_its_own_insert_arrives_after_the_insert() {
    let (_pg, rx, mut db) = subscribed(&bumped(), "t", ", ordered => true");
    exec(&mut db, "INSERT INTO t VALUES (1, 0)");
    assert_eq!(
        arrived(&rx, 2),
        [ins(1, 0), upd(1, 1)],
        "a receiver applying these in order ends with the row the table has"
    );
}

#[test]
fn a_statements_own_rows_all_go_before_what_its_row_triggers_changed() {
    let (_pg, rx, mut db) = subscribed(&bumped(), "t", ", ordered => true");
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
        "t",
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
    let (_pg, rx, mut db) = subscribed(&bumped(), "t", ", group_by => 'transaction'");
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
    let (_pg, rx, mut db) = subscribed(&bumped(), "t", ", ordered => true");
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
                "t",
                "IF NEW.v = 1 THEN UPDATE t SET v = 2 WHERE id = NEW.id; END IF; RETURN NULL;"
            )
        ),
        "t",
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
        "t",
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
    let (_pg, rx, mut db) = subscribed(&format!("{TABLE} {undone}"), "t", ", ordered => true");
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
        "t",
        "DELETE FROM t WHERE id = NEW.id; RETURN NEW;",
    );
    let (_pg, rx, mut db) = subscribed(
        &format!("{TABLE} INSERT INTO t VALUES (1, 5); {replace_old}"),
        "t",
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
        "t",
        ", ordered => true",
    );
    exec(&mut db, "INSERT INTO t VALUES (1, 0), (150, 0)");
    assert_eq!(
        arrived(&rx, 4),
        [ins(1, 0), ins(150, 0), upd(1, 1), upd(150, 1)]
    );
}
