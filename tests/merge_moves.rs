//! A `MERGE` that moves rows between partitions of a subscribed table fails rather than lose
//! the change (PostgreSQL 15 shows such moves to no UPDATE trigger), however the move hides;
//! MERGEs that move nothing, and tables without a subscription, are left alone. One scenario
//! per test.

mod support;

use support::cluster::Cluster;
use support::events::{assert_exactly, id_qty, Event, ORDERED};
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe};

/// A MERGE moving `parts`' row 1 to the other partition.
const MOVE_1: &str = "MERGE INTO parts t USING (VALUES (1)) s(id) ON t.id = s.id
    WHEN MATCHED THEN UPDATE SET id = 101";

/// What the refusal of a move in `parts` says.
const MOVED: &str = "this MERGE moved rows between partitions of public.parts";

/// What the refusal of a MERGE beside another writer of its table says.
const SHARED: &str =
    "while another statement wrote the same table (a data-modifying WITH, or a foreign key's cascade)";

/// An event of the partitioned table `parts` (see `partitioned`).
fn on_parts(kind: &str, record: Option<(i64, i64)>, old: Option<(i64, i64)>) -> Event {
    id_qty("parts", kind, record, old)
}

/// A table `t` (id, qty) partitioned at id 100.
fn partition_ddl(t: &str) -> String {
    format!(
        "CREATE TABLE {t} (id int, qty int) PARTITION BY RANGE (id);
         CREATE TABLE {t}_low PARTITION OF {t} FOR VALUES FROM (0) TO (100);
         CREATE TABLE {t}_high PARTITION OF {t} FOR VALUES FROM (100) TO (10000);"
    )
}

/// A partitioned table `t` (see `partition_ddl`) subscribed with `options`, holding (1, 10).
fn partitioned_as(t: &str, options: &str) -> (Cluster, Receiver, postgres::Client) {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, &partition_ddl(t));
    subscribe(&mut db, t, t, &rx.url("/t"), options);
    exec(&mut db, &format!("INSERT INTO {t} VALUES (1, 10)"));
    (pg, rx, db)
}

/// `parts`, subscribed (ordered), holding (1, 10).
fn partitioned() -> (Cluster, Receiver, postgres::Client) {
    partitioned_as("parts", ORDERED)
}

#[test]
fn a_merge_that_moves_a_row_to_another_partition_fails_instead_of_losing_the_change() {
    let (_pg, rx, mut db) = partitioned();
    // PostgreSQL 15 would show this move to no UPDATE trigger (and with an INSERT action, only
    // its new row to the INSERT trigger).
    for merge in [
        MOVE_1,
        "MERGE INTO parts t USING (VALUES (1), (5)) s(id) ON t.id = s.id
             WHEN MATCHED THEN UPDATE SET id = 101
             WHEN NOT MATCHED THEN INSERT VALUES (s.id, 0)",
    ] {
        let e = error_of(&mut db, merge);
        assert!(
            e.contains(MOVED) && e.contains("Change partition key values with UPDATE"),
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
    exec(&mut db, &partition_ddl("other"));
    exec(
        &mut db,
        "INSERT INTO other VALUES (1, 10);
         MERGE INTO other t USING (VALUES (1)) s(id) ON t.id = s.id
             WHEN MATCHED THEN UPDATE SET id = 101;",
    );
    assert_one(
        &mut db,
        "SELECT count(*) FROM other_high WHERE id = 101",
        "the row moved",
    );
}

#[test]
fn a_merge_refused_inside_a_savepoint_leaves_the_transaction_s_later_merges_captured() {
    let (_pg, rx, mut db) = partitioned();
    exec(
        &mut db,
        "BEGIN;
         SAVEPOINT s;",
    );
    let e = error_of(&mut db, MOVE_1);
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
    assert_row_1_set_to_12(&rx);
}

#[test]
fn a_merge_moving_rows_with_the_update_capture_disabled_is_left_alone() {
    let (_pg, _rx, mut db) = partitioned();
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
    assert_one(
        &mut db,
        "SELECT count(*) FROM parts WHERE id = 101",
        "the row moved",
    );
}

/// The receiver got exactly `parts`' row 1, its update to qty 12, and the marker row.
fn assert_row_1_set_to_12(rx: &Receiver) {
    assert_exactly(
        rx,
        &[
            on_parts("INSERT", Some((1, 10)), None),
            on_parts("UPDATE", Some((1, 12)), Some((1, 10))),
            on_parts("INSERT", Some((1000, 0)), None),
        ],
    );
}

/// `sql` (a count) finds one row.
fn assert_one(db: &mut postgres::Client, sql: &str, why: &str) {
    assert_eq!(count(db, sql), 1, "{why}: {sql}");
}

/// The refusal of a MERGE that moved (or may have moved) rows of `table`.
fn assert_refused(db: &mut postgres::Client, merge: &str, why: &str) {
    let e = error_of(db, merge);
    assert!(
        e.contains(why) && e.contains("Change partition key values with UPDATE"),
        "{e}"
    );
}

#[test]
fn a_move_hidden_behind_a_writable_cte_on_the_same_table_fails() {
    let (_pg, _rx, mut db) = partitioned();
    exec(&mut db, "INSERT INTO parts VALUES (2, 20), (3, 30)");
    // The CTE's updated rows share the MERGE's UPDATE transition table, so they would make up
    // for the moved row in a count.
    for writer in [
        "UPDATE parts SET qty = qty + 1 WHERE id = 2",
        "INSERT INTO parts VALUES (2, 0) ON CONFLICT DO NOTHING",
    ] {
        assert_refused(
            &mut db,
            &format!(
                "WITH w AS ({writer} RETURNING 1)
                 MERGE INTO parts t USING (VALUES (3)) s(id) ON t.id = s.id
                     WHEN MATCHED THEN UPDATE SET id = 103"
            ),
            SHARED,
        );
    }
    assert_one(
        &mut db,
        "SELECT count(*) FROM parts WHERE id = 3",
        "nothing moved",
    );
}

#[test]
fn a_move_hidden_behind_a_trigger_that_updates_the_same_table_fails() {
    let (_pg, _rx, mut db) = partitioned();
    // Its UPDATE's rows go to a transition table of its own, and must not count for the MERGE.
    exec(
        &mut db,
        "INSERT INTO parts VALUES (2, 20);
         CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF pg_trigger_depth() = 1 THEN UPDATE parts SET qty = qty WHERE id = 2; END IF;
             RETURN NULL;
         END $$;
         CREATE TRIGGER touch AFTER UPDATE ON parts FOR EACH STATEMENT EXECUTE FUNCTION touch();",
    );
    assert_refused(&mut db, MOVE_1, MOVED);
}

#[test]
fn a_subscription_without_updates_gets_no_half_of_a_move() {
    let (_pg, _rx, mut db) = partitioned_as("q", ", events => ARRAY['insert', 'delete']");
    exec(&mut db, "INSERT INTO q VALUES (2, 20)");
    // Without the refusal the move would arrive as a lone INSERT of 101, or a lone DELETE of 2.
    for merge in [
        "MERGE INTO q t USING (VALUES (1), (5)) s(id) ON t.id = s.id
             WHEN MATCHED THEN UPDATE SET id = 101
             WHEN NOT MATCHED THEN INSERT VALUES (s.id, 0)",
        "MERGE INTO q t USING (VALUES (2)) s(id) ON t.id = s.id
             WHEN MATCHED AND t.qty > 100 THEN DELETE
             WHEN MATCHED THEN UPDATE SET id = 102",
    ] {
        assert_refused(
            &mut db,
            merge,
            "this MERGE moved rows between partitions of public.q",
        );
    }
}

#[test]
fn a_capture_function_given_settings_still_guards_merges() {
    let (_pg, _rx, mut db) = partitioned();
    // A common hardening step; PostgreSQL then calls the function through a wrapper.
    exec(
        &mut db,
        "ALTER FUNCTION webhook._capture() SET search_path = pg_catalog, pg_temp",
    );
    assert_refused(&mut db, MOVE_1, MOVED);
}

#[test]
fn errors_raised_as_any_statement_finishes_keep_every_field() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE pk (id int PRIMARY KEY);
         CREATE TABLE fk (id int CONSTRAINT fk_to_pk REFERENCES pk);",
    );
    // The foreign key is checked by an AFTER trigger, in ExecutorFinish, where pg_webhook's
    // hook passes the statement on.
    let e = db
        .batch_execute("INSERT INTO fk VALUES (1)")
        .expect_err("the foreign key must fail the insert");
    let e = e.as_db_error().expect("a database error");
    assert_eq!(e.code().code(), "23503", "{e:?}");
    assert_eq!(e.constraint(), Some("fk_to_pk"), "{e:?}");
    assert_eq!(e.table(), Some("fk"), "{e:?}");
    assert_eq!(e.schema(), Some("public"), "{e:?}");
    assert!(
        !e.detail().unwrap_or_default().contains("backtrace"),
        "{e:?}"
    );
}

#[test]
fn a_move_hidden_behind_a_foreign_key_cascade_on_the_same_table_fails() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    // The cascade's UPDATE of the child row fires its triggers with the MERGE's, into the
    // same transition tables, where its row would stand in for the moved parent.
    exec(
        &mut db,
        "CREATE TABLE tree (id int, part int, parent int, parent_part int,
             PRIMARY KEY (id, part),
             FOREIGN KEY (parent, parent_part) REFERENCES tree (id, part) ON UPDATE CASCADE)
             PARTITION BY LIST (part);
         CREATE TABLE tree_1 PARTITION OF tree FOR VALUES IN (1);
         CREATE TABLE tree_2 PARTITION OF tree FOR VALUES IN (2);
         INSERT INTO tree VALUES (1, 1, NULL, NULL), (3, 1, 1, 1);",
    );
    subscribe(&mut db, "tree", "tree", &rx.url("/tree"), ORDERED);
    assert_refused(
        &mut db,
        "MERGE INTO tree t USING (VALUES (1)) s(id) ON t.id = s.id
             WHEN MATCHED THEN UPDATE SET part = 2",
        SHARED,
    );
    assert_one(
        &mut db,
        "SELECT count(*) FROM tree_1 WHERE id = 1",
        "nothing moved",
    );
}

#[test]
fn a_writer_without_access_to_the_webhook_schema_still_merges() {
    let (pg, rx, mut db) = partitioned();
    exec(
        &mut db,
        "CREATE ROLE app LOGIN;
         GRANT ALL ON parts, parts_low, parts_high TO app;
         CREATE TABLE own (id int, qty int) PARTITION BY RANGE (id);
         CREATE TABLE own_low PARTITION OF own FOR VALUES FROM (0) TO (100);
         CREATE FUNCTION nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
         CREATE TRIGGER own_log AFTER UPDATE ON own REFERENCING NEW TABLE AS n
             FOR EACH STATEMENT EXECUTE FUNCTION nothing();
         INSERT INTO own VALUES (1, 10);
         GRANT ALL ON own, own_low TO app;",
    );
    let mut app = pg.connect_as("postgres", "app");
    // Deciding whether a trigger is capture reads the catalog, not schema webhook (which app
    // may not use); a table without a subscription is not looked at further.
    exec(
        &mut app,
        "MERGE INTO own t USING (VALUES (1)) s(id) ON t.id = s.id
             WHEN MATCHED THEN UPDATE SET qty = 11;
         MERGE INTO parts t USING (VALUES (1)) s(id) ON t.id = s.id
             WHEN MATCHED THEN UPDATE SET qty = 12;",
    );
    assert_refused(&mut app, MOVE_1, MOVED);
    exec(&mut app, "INSERT INTO parts VALUES (1000, 0)");
    assert_row_1_set_to_12(&rx);
}

#[test]
fn a_cascade_run_by_a_statement_nested_in_the_merge_does_not_refuse_it() {
    let (_pg, _rx, mut db) = partitioned_as("w", ORDERED);
    // The cascade's rows go to the transition tables of the DELETE that a trigger of the
    // MERGE runs, not to the MERGE's: the MERGE, which moves nothing, goes through.
    exec(
        &mut db,
        "CREATE TABLE p (id int PRIMARY KEY);
         INSERT INTO p VALUES (7);
         ALTER TABLE w ADD COLUMN pid int REFERENCES p ON DELETE CASCADE;
         INSERT INTO w VALUES (2, 20, 7);
         CREATE FUNCTION drop_p() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF pg_trigger_depth() = 1 THEN DELETE FROM p WHERE id = 7; END IF;
             RETURN NULL;
         END $$;
         CREATE TRIGGER drop_p AFTER UPDATE ON w FOR EACH ROW EXECUTE FUNCTION drop_p();
         MERGE INTO w t USING (VALUES (1)) s(id) ON t.id = s.id
             WHEN MATCHED THEN UPDATE SET qty = 11;",
    );
    assert_eq!(
        support::text(
            &mut db,
            "SELECT string_agg(id || ':' || qty, ',' ORDER BY id) FROM w"
        ),
        Some("1:11".to_string()),
        "the MERGE's update, and the cascade's delete of row 2"
    );
}
