//! Every kind of statement that writes rows reaches the receiver as the INSERTs, UPDATEs and
//! DELETEs it makes, with the row images an ordinary statement's events have: COPY, INSERT ...
//! ON CONFLICT, foreign-key cascades, writable CTEs, and `MERGE` (PostgreSQL 15) — except a
//! MERGE that moves rows between partitions of a subscribed table, which fails rather than lose
//! the change (PostgreSQL 15 shows such moves to no UPDATE trigger). One scenario per test.

mod support;

use std::io::Write;

use serde_json::{json, Value};

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe, WAIT};

/// (type, table, new image, old image) of one accepted event.
type Event = (String, String, Value, Value);

/// Ordered, so that the marker row a test writes last arrives after every event before it.
const ORDERED: &str = ", ordered => true";

/// Each accepted event as (type, table, new image, old image), in arrival order, once the
/// marker row (`id = 1000`) has arrived.
fn events_through_marker(rx: &Receiver) -> Vec<Event> {
    wait_until(WAIT, "the marker row", || rx.accepted_ids().contains(&1000));
    rx.accepted()
        .iter()
        .map(|r| {
            let b = r.json();
            (
                b["type"].as_str().unwrap_or_default().to_string(),
                b["table"].as_str().unwrap_or_default().to_string(),
                b["record"].clone(),
                b["old_record"].clone(),
            )
        })
        .collect()
}

/// An event of `table`, whose rows are (id, qty).
fn id_qty(table: &str, kind: &str, record: Option<(i64, i64)>, old: Option<(i64, i64)>) -> Event {
    let image =
        |r: Option<(i64, i64)>| r.map_or(Value::Null, |(id, qty)| json!({"id": id, "qty": qty}));
    (kind.into(), table.into(), image(record), image(old))
}

/// An event of the partitioned table `parts` (see `partitioned`).
fn on_parts(kind: &str, record: Option<(i64, i64)>, old: Option<(i64, i64)>) -> Event {
    id_qty("parts", kind, record, old)
}

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

/// Waits for the marker row, then checks the receiver accepted exactly `want` (in any order).
fn assert_exactly(rx: &Receiver, want: &[Event]) {
    let got = events_through_marker(rx);
    for e in want {
        assert!(got.contains(e), "missing {e:?} in {got:?}");
    }
    assert_eq!(got.len(), want.len(), "exactly these events: {got:?}");
}

/// (type, table, new image, old image) as a test expects it; `""` for no image.
fn event(kind: &str, table: &str, record: &str, old: &str) -> Event {
    let image = |s: &str| {
        if s.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(s).unwrap_or_else(|e| panic!("bad expected image {s}: {e}"))
        }
    };
    (kind.into(), table.into(), image(record), image(old))
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

/// A partitioned table `parts` split at id 100, subscribed (ordered), holding (1, 10).
fn partitioned(pg: &Cluster, rx: &Receiver) -> postgres::Client {
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE parts (id int, qty int) PARTITION BY RANGE (id);
         CREATE TABLE parts_low PARTITION OF parts FOR VALUES FROM (0) TO (100);
         CREATE TABLE parts_high PARTITION OF parts FOR VALUES FROM (100) TO (10000);",
    );
    subscribe(&mut db, "parts", "parts", &rx.url("/parts"), ORDERED);
    exec(&mut db, "INSERT INTO parts VALUES (1, 10)");
    db
}

#[test]
fn a_merge_that_moves_a_row_to_another_partition_fails_instead_of_losing_the_change() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = partitioned(&pg, &rx);
    // PostgreSQL 15 would show this move to no UPDATE trigger (and with an INSERT action, only
    // its new row to the INSERT trigger).
    for merge in [
        "MERGE INTO parts t USING (VALUES (1)) s(id) ON t.id = s.id
             WHEN MATCHED THEN UPDATE SET id = 101",
        "MERGE INTO parts t USING (VALUES (1), (5)) s(id) ON t.id = s.id
             WHEN MATCHED THEN UPDATE SET id = 101
             WHEN NOT MATCHED THEN INSERT VALUES (s.id, 0)",
    ] {
        let e = error_of(&mut db, merge);
        assert!(
            e.contains("this MERGE moved rows between partitions of public.parts")
                && e.contains("Change partition key values with UPDATE"),
            "{e}"
        );
    }
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM parts WHERE id = 1 AND qty = 10"
        ),
        1,
        "the refused MERGE changed nothing"
    );
    // Rows that stay in their partition, an insert routed to one, and a move by UPDATE:
    exec(
        &mut db,
        "MERGE INTO parts t USING (VALUES (1, 11), (150, 15)) s(id, qty) ON t.id = s.id
             WHEN MATCHED THEN UPDATE SET qty = s.qty
             WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.qty);
         UPDATE parts SET id = 101 WHERE id = 1;
         INSERT INTO parts VALUES (1000, 0);",
    );
    assert_exactly(
        &rx,
        &[
            on_parts("INSERT", Some((1, 10)), None),
            on_parts("UPDATE", Some((1, 11)), Some((1, 10))),
            on_parts("INSERT", Some((150, 15)), None),
            on_parts("UPDATE", Some((101, 11)), Some((1, 11))),
            on_parts("INSERT", Some((1000, 0)), None),
        ],
    );
}

#[test]
fn a_merge_moving_rows_of_a_table_without_a_subscription_is_left_alone() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE other (id int, qty int) PARTITION BY RANGE (id);
         CREATE TABLE other_low PARTITION OF other FOR VALUES FROM (0) TO (100);
         CREATE TABLE other_high PARTITION OF other FOR VALUES FROM (100) TO (10000);
         INSERT INTO other VALUES (1, 10);
         MERGE INTO other t USING (VALUES (1)) s(id) ON t.id = s.id
             WHEN MATCHED THEN UPDATE SET id = 101;",
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM other_high WHERE id = 101"),
        1,
        "the row moved"
    );
}

#[test]
fn a_merge_refused_inside_a_savepoint_leaves_the_transaction_s_later_merges_captured() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = partitioned(&pg, &rx);
    exec(
        &mut db,
        "BEGIN;
         SAVEPOINT s;",
    );
    let e = error_of(
        &mut db,
        "MERGE INTO parts t USING (VALUES (1)) s(id) ON t.id = s.id
             WHEN MATCHED THEN UPDATE SET id = 101",
    );
    assert!(
        e.contains("this MERGE moved rows between partitions"),
        "{e}"
    );
    exec(
        &mut db,
        "ROLLBACK TO SAVEPOINT s;
         MERGE INTO parts t USING (VALUES (1, 12)) s(id, qty) ON t.id = s.id
             WHEN MATCHED THEN UPDATE SET qty = s.qty;
         INSERT INTO parts VALUES (1000, 0);
         COMMIT;",
    );
    assert_exactly(
        &rx,
        &[
            on_parts("INSERT", Some((1, 10)), None),
            on_parts("UPDATE", Some((1, 12)), Some((1, 10))),
            on_parts("INSERT", Some((1000, 0)), None),
        ],
    );
}

#[test]
fn a_merge_moving_rows_with_the_update_capture_disabled_is_left_alone() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = partitioned(&pg, &rx);
    // The table owner's choice: capture of updates is off (see the README's Limits).
    let trigger = support::text(
        &mut db,
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'parts'::regclass AND tgname LIKE '%update'",
    )
    .expect("the subscription's UPDATE trigger");
    exec(
        &mut db,
        &format!(
            "ALTER TABLE parts DISABLE TRIGGER \"{trigger}\";
             MERGE INTO parts t USING (VALUES (1)) s(id) ON t.id = s.id
                 WHEN MATCHED THEN UPDATE SET id = 101;"
        ),
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM parts WHERE id = 101"),
        1,
        "the row moved"
    );
}
