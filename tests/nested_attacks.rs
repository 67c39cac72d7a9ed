//! Ordered subscriptions and what a statement's triggers write to its own table, in the shapes
//! `nested_order.rs` does not cover: statements whose rows are written where the frame of a
//! statement's AFTER triggers cannot see it (a COPY's BEFORE triggers, a writable CTE run as
//! its statement finishes or under a SELECT), and a foreign key's cascade. Each scenario ends
//! with the order a receiver applying the events needs to end with the rows the table has.
//! One scenario per test.

mod support;

use support::exec;
use support::nested::{arrived, bump, del, ins, replace_old, subscribed, trigger, upd, TABLE};

/// `subscribed`, ordered as a whole.
fn ordered(
    setup: &str,
    table: &str,
) -> (
    support::cluster::Cluster,
    support::receiver::Receiver,
    postgres::Client,
) {
    subscribed(setup, table, ", ordered => true")
}

#[test]
fn what_a_before_trigger_wrote_during_a_copy_keeps_its_place_before_the_copys_rows() {
    let (_pg, rx, mut db) = ordered(
        &format!("{TABLE} INSERT INTO t VALUES (1, 5); {}", replace_old()),
        "t",
    );
    copy_rows(&mut db, b"1\t6\n");
    assert_eq!(
        arrived(&rx, 2),
        [del(1, 5), ins(1, 6)],
        "the old row was deleted before the COPY inserted the new one"
    );
}

#[test]
fn a_copy_keeps_what_its_before_triggers_wrote_before_its_rows_and_moves_what_its_after_ones_did() {
    let (_pg, rx, mut db) = ordered(
        &format!(
            "{TABLE} INSERT INTO t VALUES (1, 5); {} {}",
            replace_old(),
            bump()
        ),
        "t",
    );
    copy_rows(&mut db, b"1\t0\n");
    assert_eq!(arrived(&rx, 3), [del(1, 5), ins(1, 0), upd(1, 1)]);
}

/// Copies `rows` (COPY's text format) into `t (id, v)`.
fn copy_rows(db: &mut postgres::Client, rows: &[u8]) {
    let mut copy = db
        .copy_in("COPY t (id, v) FROM STDIN")
        .expect("COPY FROM STDIN");
    std::io::Write::write_all(&mut copy, rows).expect("COPY rows");
    copy.finish().expect("COPY finished");
}

#[test]
fn a_writable_ctes_rows_go_before_what_its_row_triggers_changed_under_a_select() {
    let (_pg, rx, mut db) = ordered(&format!("{TABLE} {}", bump()), "t");
    exec(
        &mut db,
        "WITH x AS (INSERT INTO t VALUES (1, 0) RETURNING id) SELECT count(*) FROM x",
    );
    assert_eq!(arrived(&rx, 2), [ins(1, 0), upd(1, 1)]);
}

#[test]
fn what_a_before_trigger_wrote_for_an_unread_writable_cte_keeps_its_place() {
    // The main statement does not read the CTE: PostgreSQL runs it as the statement finishes.
    let (_pg, rx, mut db) = ordered(
        &format!(
            "{TABLE} CREATE TABLE u (id int); INSERT INTO t VALUES (1, 5); {}",
            replace_old()
        ),
        "t",
    );
    exec(
        &mut db,
        "WITH x AS (INSERT INTO t VALUES (1, 6) RETURNING id) INSERT INTO u VALUES (1)",
    );
    assert_eq!(arrived(&rx, 2), [del(1, 5), ins(1, 6)]);
}

#[test]
fn what_a_cascades_row_triggers_changed_goes_after_the_cascade() {
    let (_pg, rx, mut db) = ordered(
        &format!(
            "CREATE TABLE p (id int PRIMARY KEY);
             INSERT INTO p VALUES (1);
             CREATE TABLE c (id int PRIMARY KEY, p_id int REFERENCES p ON UPDATE CASCADE, v int);
             INSERT INTO c VALUES (1, 1, 0);
             {}",
            trigger(
                "settle",
                "AFTER UPDATE",
                "c",
                "IF NEW.v = 0 THEN UPDATE c SET v = 1 WHERE id = NEW.id; END IF; RETURN NULL;"
            )
        ),
        "c",
    );
    exec(&mut db, "UPDATE p SET id = 2");
    assert_eq!(
        arrived(&rx, 2),
        [upd(1, 0), upd(1, 1)],
        "the cascade changed p_id, then its trigger set v"
    );
}

#[test]
fn a_writable_cte_fetched_one_row_at_a_time_keeps_its_rows_before_its_triggers_writes() {
    // Extended protocol: the portal is executed for one row; PostgreSQL runs a statement with a
    // data-modifying WITH to its end at the first fetch all the same.
    let (_pg, rx, mut db) = ordered(&format!("{TABLE} {}", bump()), "t");
    let mut tx = db.transaction().expect("BEGIN");
    let portal = tx
        .bind(
            "WITH x AS (INSERT INTO t VALUES (1, 0), (2, 0) RETURNING id) SELECT id FROM x",
            &[],
        )
        .expect("bind");
    let first = tx.query_portal(&portal, 1).expect("one row");
    assert_eq!(first.len(), 1);
    tx.commit().expect("COMMIT");
    assert_eq!(
        arrived(&rx, 4),
        [ins(1, 0), ins(2, 0), upd(1, 1), upd(2, 1)]
    );
}

#[test]
fn a_copy_run_by_a_before_trigger_of_a_copy_moves_what_its_own_after_triggers_wrote() {
    // The inner COPY fires its AFTER triggers while the outer one is still copying its row.
    let (_pg, rx, mut db) = ordered(
        &format!(
            "{TABLE} {} {}",
            trigger(
                "copy_next",
                "BEFORE INSERT",
                "t",
                "IF NEW.id = 1 THEN
                     EXECUTE $c$COPY t FROM PROGRAM 'printf \"2\\t0\\n\"'$c$;
                 END IF;
                 RETURN NEW;"
            ),
            bump()
        ),
        "t",
    );
    copy_rows(&mut db, b"1\t0\n");
    assert_eq!(
        arrived(&rx, 4),
        [ins(2, 0), upd(2, 1), ins(1, 0), upd(1, 1)],
        "the inner COPY's row, then what its trigger changed, before the outer COPY's"
    );
}

#[test]
#[ignore = "a write made while a statement runs is sent before all of the statement's rows, \
            even one changing a row the statement wrote earlier (see README, Limits)"]
fn a_before_trigger_changing_a_row_its_statement_wrote_earlier_goes_after_that_row() {
    // Row 2's BEFORE trigger updates row 1, which the same statement inserted just before.
    let (_pg, rx, mut db) = ordered(
        &format!(
            "{TABLE} {}",
            trigger(
                "raise_previous",
                "BEFORE INSERT",
                "t",
                "UPDATE t SET v = v + 10 WHERE id = NEW.id - 1; RETURN NEW;"
            )
        ),
        "t",
    );
    exec(&mut db, "INSERT INTO t VALUES (1, 5), (2, 5)");
    assert_eq!(
        arrived(&rx, 3),
        [ins(1, 5), upd(1, 15), ins(2, 5)],
        "the table ends with (1, 15)"
    );
}

#[test]
#[ignore = "a write made while a statement runs is sent before all of the statement's rows, \
            even one changing a row the statement wrote earlier (see README, Limits)"]
fn a_function_in_a_select_changing_the_row_its_writable_cte_inserted_goes_after_it() {
    let (_pg, rx, mut db) = ordered(
        &format!(
            "{TABLE}
             CREATE FUNCTION settle(i int) RETURNS int LANGUAGE plpgsql AS $$
             BEGIN UPDATE t SET v = 9 WHERE id = i; RETURN i; END $$;"
        ),
        "t",
    );
    exec(
        &mut db,
        "WITH x AS (INSERT INTO t VALUES (1, 0) RETURNING id) SELECT settle(id) FROM x",
    );
    assert_eq!(
        arrived(&rx, 2),
        [ins(1, 0), upd(1, 9)],
        "the table ends with (1, 9)"
    );
}
