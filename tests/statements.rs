//! Every kind of statement that writes rows reaches the receiver as the INSERTs, UPDATEs and
//! DELETEs it makes, with the row images an ordinary statement's events have: COPY, INSERT ...
//! ON CONFLICT, foreign-key cascades, writable CTEs and `MERGE` (a MERGE moving rows between
//! partitions: `merge_moves.rs`). One scenario per test.

mod support;

use std::io::Write;

use support::cluster::Cluster;
use support::events::{assert_exactly, event, id_qty, Event, ORDERED};
use support::receiver::Receiver;
use support::{exec, subscribe};

/// An event of the plain table `stock` (see `stock`).
fn on_stock(kind: &str, record: Option<(i64, i64)>, old: Option<(i64, i64)>) -> Event {
    id_qty("stock", kind, record, old)
}

/// A cluster, a receiver, and the table `stock` (id, qty) subscribed (ordered).
fn stock() -> (Cluster, Receiver, postgres::Client) {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE stock (id int PRIMARY KEY, qty int)");
    subscribe(&mut db, "stock", "stock", &rx.url("/stock"), ORDERED);
    (pg, rx, db)
}

#[test]
fn copy_from_is_captured_row_by_row() {
    let (_pg, rx, mut db) = stock();
    let mut copy = db
        .copy_in("COPY stock FROM STDIN")
        .unwrap_or_else(|e| panic!("COPY: {e}"));
    copy.write_all(b"1\t10\n2\t20\n")
        .unwrap_or_else(|e| panic!("COPY data: {e}"));
    copy.finish().unwrap_or_else(|e| panic!("COPY end: {e}"));
    exec(&mut db, "INSERT INTO stock VALUES (1000, 0)");
    assert_exactly(
        &rx,
        &[
            on_stock("INSERT", Some((1, 10)), None),
            on_stock("INSERT", Some((2, 20)), None),
            on_stock("INSERT", Some((1000, 0)), None),
        ],
    );
}

#[test]
fn an_insert_on_conflict_sends_its_inserts_and_its_updates() {
    let (_pg, rx, mut db) = stock();
    exec(
        &mut db,
        "INSERT INTO stock VALUES (1, 10);
         INSERT INTO stock VALUES (1, 11), (2, 20)
             ON CONFLICT (id) DO UPDATE SET qty = excluded.qty;
         INSERT INTO stock VALUES (2, 0) ON CONFLICT DO NOTHING;
         INSERT INTO stock VALUES (1000, 0);",
    );
    assert_exactly(
        &rx,
        &[
            on_stock("INSERT", Some((1, 10)), None),
            on_stock("UPDATE", Some((1, 11)), Some((1, 10))),
            on_stock("INSERT", Some((2, 20)), None),
            on_stock("INSERT", Some((1000, 0)), None),
        ],
    );
}

#[test]
fn foreign_key_cascades_are_captured_on_the_referencing_table() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE warehouse (id int PRIMARY KEY);
         CREATE TABLE stock (id int PRIMARY KEY, qty int,
             warehouse int REFERENCES warehouse ON DELETE CASCADE ON UPDATE CASCADE);
         INSERT INTO warehouse VALUES (1), (2);",
    );
    subscribe(&mut db, "stock", "stock", &rx.url("/stock"), ORDERED);
    exec(
        &mut db,
        "INSERT INTO stock VALUES (1, 10, 1), (2, 20, 2);
         UPDATE warehouse SET id = 3 WHERE id = 2;   -- cascades an update
         DELETE FROM warehouse WHERE id = 1;         -- cascades a delete
         INSERT INTO stock VALUES (1000, 0, 3);",
    );
    assert_exactly(
        &rx,
        &[
            event(
                "INSERT",
                "stock",
                r#"{"id": 1, "qty": 10, "warehouse": 1}"#,
                "",
            ),
            event(
                "INSERT",
                "stock",
                r#"{"id": 2, "qty": 20, "warehouse": 2}"#,
                "",
            ),
            event(
                "UPDATE",
                "stock",
                r#"{"id": 2, "qty": 20, "warehouse": 3}"#,
                r#"{"id": 2, "qty": 20, "warehouse": 2}"#,
            ),
            event(
                "DELETE",
                "stock",
                "",
                r#"{"id": 1, "qty": 10, "warehouse": 1}"#,
            ),
            event(
                "INSERT",
                "stock",
                r#"{"id": 1000, "qty": 0, "warehouse": 3}"#,
                "",
            ),
        ],
    );
}

#[test]
fn a_writable_cte_that_deletes_and_inserts_the_same_table_sends_both() {
    let (_pg, rx, mut db) = stock();
    exec(
        &mut db,
        "INSERT INTO stock VALUES (1, 10);
         WITH gone AS (DELETE FROM stock WHERE id = 1 RETURNING qty)
             INSERT INTO stock SELECT 2, qty FROM gone;
         INSERT INTO stock VALUES (1000, 0);",
    );
    assert_exactly(
        &rx,
        &[
            on_stock("INSERT", Some((1, 10)), None),
            on_stock("DELETE", None, Some((1, 10))),
            on_stock("INSERT", Some((2, 10)), None),
            on_stock("INSERT", Some((1000, 0)), None),
        ],
    );
}

#[test]
fn every_action_of_a_merge_is_captured_with_its_row_images() {
    let (_pg, rx, mut db) = stock();
    exec(
        &mut db,
        "INSERT INTO stock VALUES (1, 10), (2, 20);
         -- an update, a delete and an insert in one statement:
         MERGE INTO stock t USING (VALUES (1, 11), (2, 0), (3, 30)) s(id, qty) ON t.id = s.id
             WHEN MATCHED AND s.qty = 0 THEN DELETE
             WHEN MATCHED THEN UPDATE SET qty = s.qty
             WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.qty);
         -- actions that match no row send nothing:
         MERGE INTO stock t USING (VALUES (99, 0)) s(id, qty) ON t.id = s.id
             WHEN MATCHED THEN DELETE;
         INSERT INTO stock VALUES (1000, 0);",
    );
    assert_exactly(
        &rx,
        &[
            on_stock("INSERT", Some((1, 10)), None),
            on_stock("INSERT", Some((2, 20)), None),
            on_stock("UPDATE", Some((1, 11)), Some((1, 10))),
            on_stock("DELETE", None, Some((2, 20))),
            on_stock("INSERT", Some((3, 30)), None),
            on_stock("INSERT", Some((1000, 0)), None),
        ],
    );
}
