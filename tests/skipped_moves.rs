//! A row an UPDATE or a MERGE moves into a partition whose BEFORE INSERT trigger skips it
//! (returns NULL) leaves its old image without a new one. PostgreSQL then hands the UPDATE's
//! capture trigger one more old row than new ones, with nothing to say which, and the MERGE's
//! counts an insert it never made. Such statements fail rather than send updates paired with
//! the wrong rows, or half of a move; statements whose skipped rows were inserted, not moved,
//! go through. One scenario per test.

mod support;

use support::cluster::Cluster;
use support::events::{assert_exactly, id_qty, Event, ORDERED};
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe};

/// `parts` (id, qty), partitioned at id 100, holding (1, 10), (2, 20) and (3, 30); its high
/// partition's BEFORE INSERT trigger skips rows with a negative qty.
const TABLE: &str = "
    CREATE TABLE parts (id int, qty int) PARTITION BY RANGE (id);
    CREATE TABLE parts_low PARTITION OF parts FOR VALUES FROM (0) TO (100);
    CREATE TABLE parts_high PARTITION OF parts FOR VALUES FROM (100) TO (10000);
    CREATE FUNCTION skip_negative() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN IF NEW.qty < 0 THEN RETURN NULL; END IF; RETURN NEW; END$$;
    CREATE TRIGGER skip BEFORE INSERT ON parts_high
        FOR EACH ROW EXECUTE FUNCTION skip_negative();
    INSERT INTO parts VALUES (1, 10), (2, 20), (3, 30);";

/// `parts` (see `TABLE`), subscribed with `options` once it holds its rows.
fn parts(options: &str) -> (Cluster, Receiver, postgres::Client) {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, TABLE);
    subscribe(&mut db, "parts", "parts", &rx.url("/parts"), options);
    (pg, rx, db)
}

fn on_parts(kind: &str, record: Option<(i64, i64)>, old: Option<(i64, i64)>) -> Event {
    id_qty("parts", kind, record, old)
}

/// The table still holds the rows `TABLE` put in it, and nothing else.
fn assert_unchanged(db: &mut postgres::Client) {
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM parts WHERE (id, qty) IN ((1, 10), (2, 20), (3, 30))"
        ),
        3
    );
    assert_eq!(count(db, "SELECT count(*) FROM parts"), 3);
}

#[test]
fn an_update_whose_moved_row_a_partition_skips_fails_instead_of_pairing_the_wrong_rows() {
    let (_pg, rx, mut db) = parts(ORDERED);
    // Row 1 moves to the high partition, which skips it; rows 2 and 3 change in place. The
    // old rows would be 1, 2, 3 and the new ones 2, 3: sent as 1 -> 2, 2 -> 3 and 3 -> none.
    let e = error_of(
        &mut db,
        "UPDATE parts SET id = CASE id WHEN 1 THEN 101 ELSE id END,
                          qty = CASE id WHEN 1 THEN -1 ELSE qty + 1 END",
    );
    assert!(
        e.contains(
            "this UPDATE moved 1 row(s) of public.parts into a partition whose BEFORE INSERT \
             trigger skipped them"
        ) && e.contains("raise an error for rows it refuses"),
        "{e}"
    );
    assert_unchanged(&mut db);
    exec(
        &mut db,
        "UPDATE parts SET qty = 21 WHERE id = 2;
         UPDATE parts SET id = 103 WHERE id = 3;
         INSERT INTO parts VALUES (1000, 0);",
    );
    assert_exactly(
        &rx,
        &[
            on_parts("UPDATE", Some((2, 21)), Some((2, 20))),
            on_parts("UPDATE", Some((103, 30)), Some((3, 30))),
            on_parts("INSERT", Some((1000, 0)), None),
        ],
    );
}

#[test]
fn a_merge_moving_a_row_beside_an_insert_a_partition_skips_fails() {
    // Without updates, the move would show only as the INSERT of 101: the MERGE counts the
    // skipped insert of 105, which made room for it.
    let (_pg, _rx, mut db) = parts(", events => ARRAY['insert', 'delete']");
    let e = error_of(
        &mut db,
        "MERGE INTO parts t USING (VALUES (1), (105)) s(id) ON t.id = s.id
             WHEN MATCHED THEN UPDATE SET id = 101
             WHEN NOT MATCHED THEN INSERT VALUES (s.id, -1)",
    );
    assert!(
        e.contains("this MERGE moved rows between partitions of public.parts"),
        "{e}"
    );
    assert_unchanged(&mut db);
}

#[test]
fn a_merge_whose_partition_skips_only_inserted_rows_goes_through() {
    let (_pg, rx, mut db) = parts(&format!("{ORDERED}, events => ARRAY['insert', 'delete']"));
    // Row 1 changes in place, 105 is skipped, 106 is inserted: nothing moved.
    exec(
        &mut db,
        "MERGE INTO parts t USING (VALUES (1), (105), (106)) s(id) ON t.id = s.id
             WHEN MATCHED THEN UPDATE SET qty = 11
             WHEN NOT MATCHED THEN INSERT VALUES (s.id, CASE s.id WHEN 105 THEN -1 ELSE 6 END);
         INSERT INTO parts VALUES (1000, 0);",
    );
    assert_exactly(
        &rx,
        &[
            on_parts("INSERT", Some((106, 6)), None),
            on_parts("INSERT", Some((1000, 0)), None),
        ],
    );
}
