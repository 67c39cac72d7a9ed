//! The row images capture queues (`record`, `old_record`) are exactly `to_jsonb` of the row:
//! capture renders plain built-in types itself and hands every other type to `to_jsonb`, so
//! these tests compare the two, as text, for every kind of column and edge value.

mod support;

use postgres::Client;
use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{error_of, exec, subscribe};

/// A type of every kind `to_jsonb` renders differently: plain built-ins, numbers, dates,
/// json, arrays, composites, domains, an enum with a cast to json, ranges, and types it
/// renders as their text.
const TABLE: &str = "
    CREATE TYPE pair AS (a int, b text);
    CREATE TYPE mood AS ENUM ('sad', 'happy');
    CREATE FUNCTION mood_json(mood) RETURNS json LANGUAGE sql IMMUTABLE
        AS $$ SELECT json_build_object('mood', $1::text) $$;
    CREATE CAST (mood AS json) WITH FUNCTION mood_json(mood);
    CREATE DOMAIN positive AS int CHECK (VALUE > 0);
    CREATE DOMAIN label AS text;
    CREATE TABLE kinds (
        id int PRIMARY KEY,
        gone text,
        b bool, i2 int2, i4 int4, i8 int8, o oid, f4 float4, f8 float8,
        n numeric, n2 numeric(12,2),
        t text, vc varchar(10), c char(5), nm name, u uuid, by bytea, ch \"char\",
        tm time, ttz timetz, iv interval, ip inet, net cidr, mac macaddr,
        d date, ts timestamp, tstz timestamptz,
        j json, jb jsonb, ai int[], at text[], p pair, pos positive, lb label, m mood,
        r int4range, money_ money, pt point, bits bit(4), tsv tsvector, x xml
    );
    ALTER TABLE kinds DROP COLUMN gone;
    -- Long values of t are stored out of line, uncompressed.
    ALTER TABLE kinds ALTER COLUMN t SET STORAGE EXTERNAL;";

const ROWS: &str = "
    INSERT INTO kinds (id) VALUES (1);
    INSERT INTO kinds VALUES (2, true, -32768, 2147483647, -9223372036854775808, 4294967295,
        'NaN', 'Infinity', 1.500, '-0.10',
        E'quote \" backslash \\\\ tab \\t nl \\n bell \\u0007 é ✓ 😀', 'short', 'ab', 'a name',
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\xdeadbeef', 'z',
        '23:59:59.999999', '00:00:00+05:30', '1 year 2 mons -3 days 04:05:06.789', '::1',
        '10.0.0.0/8', '08:00:2b:01:02:03',
        '4713-01-01 BC', 'infinity', '-infinity',
        '{\"b\": 1, \"a\": [1, 2.50, null], \"b\": 2}', '{\"z\": {\"y\": 1e3}, \"a\": \"\"}',
        '{1,NULL,3}', '{\"x y\",\"\",NULL}', ROW(7, 'seven'), 5, 'labelled', 'happy',
        '[1,10)', 12.34, '(1.5,-2)', B'1010', 'fat cat sat', '<a>x &amp; y</a>');
    INSERT INTO kinds (id, f4, f8, n, i8, tstz, ts, d, t, jb, j)
        VALUES (3, '-Infinity', 1e-300, 'Infinity', 0, '2026-11-30 12:34:56.789+00',
                '2000-02-29 00:00:00.000001', '2026-11-30', '', 'null', '\"s\"'),
               (4, '-0', '-0', '-0.000', 1, '1999-12-31 23:59:59-08', 'epoch', 'epoch', 'x',
                '[]', '{}'),
               (5, 3.4028235e38, 1.7976931348623157e308, 1e-20, 42, now(), now(), now(),
                repeat('long ', 2000), '3.14', 'true'),
               (6, 'Infinity', '-Infinity', 'NaN', -1, NULL, NULL, NULL, NULL, 'null', 'null');
    INSERT INTO kinds (id, i4, t) SELECT g, g, 'bulk ' || g FROM generate_series(100, 2600) g;";

/// (id, queued image, expected image) for each row `sql` returns.
fn compared(db: &mut Client, sql: &str) -> Vec<(i32, String, String)> {
    db.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Rows whose queued image differs from `to_jsonb` of the table's row now (as text), as
/// (id, queued, expected).
fn differing(db: &mut Client, op: &str, image: &str) -> Vec<(i32, String, String)> {
    compared(
        db,
        &format!(
            "SELECT k.id, q.{image}::text, to_jsonb(k.*)::text
               FROM webhook._event_queue q
               JOIN kinds k ON k.id = (q.{image}->>'id')::int
              WHERE q.op = '{op}' AND q.{image}::text IS DISTINCT FROM to_jsonb(k.*)::text
              ORDER BY 1"
        ),
    )
}

fn queued(db: &mut Client, op: &str) -> i64 {
    db.query_one(
        "SELECT count(*) FROM webhook._event_queue WHERE op = $1",
        &[&op],
    )
    .unwrap()
    .get(0)
}

/// A table with every kind of column, subscribed and paused so its events stay queued, and a
/// writer session in a time zone with a half-hour offset.
fn kinds(pg: &Cluster) -> Client {
    let mut db = pg.client_with_extension();
    exec(&mut db, TABLE);
    let rx = Receiver::start();
    subscribe(&mut db, "kinds", "kinds", &rx.url("/k"), "");
    exec(&mut db, "SELECT webhook.pause('kinds')");
    exec(&mut db, "SET TimeZone = 'America/St_Johns'");
    db
}

#[test]
fn inserted_rows_of_every_kind_of_column_are_queued_as_to_jsonb_renders_them() {
    let pg = Cluster::start(&[]);
    let mut db = kinds(&pg);
    exec(&mut db, ROWS);
    assert_eq!(queued(&mut db, "INSERT"), 2507);
    assert_eq!(differing(&mut db, "INSERT", "record"), vec![]);
}

#[test]
fn updated_and_deleted_rows_are_queued_as_to_jsonb_renders_the_old_and_new_rows() {
    let pg = Cluster::start(&[]);
    let mut db = kinds(&pg);
    exec(&mut db, ROWS);
    // The old images are the rows as inserted: keep them to compare with.
    exec(
        &mut db,
        "CREATE TABLE before AS SELECT id, to_jsonb(k.*)::text AS image FROM kinds k;
         UPDATE kinds SET i2 = 1, t = t || '!', tstz = '2026-01-01 00:00+00',
                          p = ROW(8, NULL), ai = '{}' WHERE id <= 200;",
    );
    assert_eq!(queued(&mut db, "UPDATE"), 107);
    assert_eq!(differing(&mut db, "UPDATE", "record"), vec![]);
    let wrong_old: i64 = db
        .query_one(
            "SELECT count(*) FROM webhook._event_queue q
               JOIN before b ON b.id = (q.old_record->>'id')::int
              WHERE q.op = 'UPDATE' AND q.old_record::text IS DISTINCT FROM b.image",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(wrong_old, 0);
    exec(
        &mut db,
        "CREATE TABLE deleted AS SELECT id, to_jsonb(k.*)::text AS image FROM kinds k WHERE id < 150;
         DELETE FROM kinds WHERE id < 150;",
    );
    assert_eq!(queued(&mut db, "DELETE"), 56);
    let wrong_deleted: i64 = db
        .query_one(
            "SELECT count(*) FROM webhook._event_queue q
               LEFT JOIN deleted d ON d.id = (q.old_record->>'id')::int
              WHERE q.op = 'DELETE' AND q.old_record::text IS DISTINCT FROM d.image",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(wrong_deleted, 0);
}

#[test]
fn a_tables_columns_changed_between_statements_are_rendered_as_they_are_now() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE shifty (id int PRIMARY KEY, a int, b text)",
    );
    let rx = Receiver::start();
    subscribe(&mut db, "shifty", "shifty", &rx.url("/s"), "");
    exec(&mut db, "SELECT webhook.pause('shifty')");
    // What to_jsonb gave right after each insert, in the same session as the capture.
    exec(
        &mut db,
        "CREATE TABLE expected (id int, image text);
         INSERT INTO shifty VALUES (1, 1, 'one');
         INSERT INTO expected SELECT id, to_jsonb(s.*)::text FROM shifty s WHERE id = 1;
         ALTER TABLE shifty RENAME COLUMN a TO renamed;
         INSERT INTO shifty VALUES (2, 2, 'two');
         INSERT INTO expected SELECT id, to_jsonb(s.*)::text FROM shifty s WHERE id = 2;
         ALTER TABLE shifty ALTER COLUMN renamed TYPE numeric USING renamed / 3.0;
         INSERT INTO shifty VALUES (3, 3.5, 'three');
         INSERT INTO expected SELECT id, to_jsonb(s.*)::text FROM shifty s WHERE id = 3;
         ALTER TABLE shifty DROP COLUMN b, ADD COLUMN b jsonb;
         INSERT INTO shifty VALUES (4, 4, '{\"four\": 4}');
         INSERT INTO expected SELECT id, to_jsonb(s.*)::text FROM shifty s WHERE id = 4;",
    );
    let got = compared(
        &mut db,
        "SELECT e.id, q.record::text, e.image
           FROM webhook._event_queue q JOIN expected e ON e.id = (q.record->>'id')::int
          ORDER BY q.id",
    );
    assert_eq!(got.len(), 4, "{got:?}");
    for (id, queued, expected) in &got {
        assert_eq!(queued, expected, "row {id}");
    }
}

/// A cast to json that writes to the subscribed table itself: the capture inside the rendering
/// of a row renders its own rows, and both are queued as to_jsonb renders them.
#[test]
fn a_cast_to_json_that_writes_to_the_table_being_captured_is_rendered_right() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TYPE tone AS ENUM ('low', 'high');
         CREATE TABLE nest (id int PRIMARY KEY, t tone, note text);
         CREATE FUNCTION tone_json(tone) RETURNS json LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO nest (id, note) VALUES (-1, 'written while rendering')
                 ON CONFLICT (id) DO NOTHING;
             RETURN json_build_object('tone', $1::text);
         END $$;
         CREATE CAST (tone AS json) WITH FUNCTION tone_json(tone);",
    );
    let rx = Receiver::start();
    subscribe(&mut db, "nest", "nest", &rx.url("/n"), "");
    exec(&mut db, "SELECT webhook.pause('nest')");
    exec(
        &mut db,
        "INSERT INTO nest VALUES (1, 'high', 'outer'), (2, 'low', 'outer')",
    );
    let got = compared(
        &mut db,
        "SELECT n.id, q.record::text, to_jsonb(n.*)::text
           FROM webhook._event_queue q JOIN nest n ON n.id = (q.record->>'id')::int
          ORDER BY n.id",
    );
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), vec![-1, 1, 2]);
    for (id, queued, expected) in &got {
        assert_eq!(queued, expected, "row {id}");
    }
}

/// Numbers are stored in the queue byte for byte as `to_jsonb` stores them (the text of the
/// images would hide a numeric in another header form or scale): the raw bytes of each queued
/// image, read from the heap pages, are the raw bytes of `to_jsonb` of the row stored in a
/// table of its own.
#[test]
fn number_columns_are_queued_byte_for_byte_as_to_jsonb_stores_them() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE EXTENSION pageinspect;
         CREATE TABLE nums (id int PRIMARY KEY, i2 int2, i4 int4, i8 int8, n numeric,
                            n2 numeric(12,2), f8 float8);",
    );
    let rx = Receiver::start();
    subscribe(&mut db, "nums", "nums", &rx.url("/n"), "");
    exec(&mut db, "SELECT webhook.pause('nums')");
    exec(
        &mut db,
        "INSERT INTO nums VALUES
            (1, -32768, -2147483648, -9223372036854775808, 0, 0, 0),
            (2, 32767, 2147483647, 9223372036854775807, '0.000', '-0.00', '-0'),
            (3, 0, 0, 0, '-0.10', 1.5, 1.5),
            (4, -1, -1, -1, 'NaN', -9999999999.99, 'NaN'),
            (5, 1, 10000, 100000000, 'Infinity', 0.01, 'Infinity'),
            (6, NULL, NULL, NULL, '-Infinity', NULL, '-Infinity'),
            (7, 9999, 99999999, 10000000000000000, 1e-200, 10, 1e-300),
            (8, -10000, -100000000, -1000000000000000000, -1e200, 100.10, 1e300),
            (9, 42, 42, 42, 123456789012345678901234567890.123456789000, 12.34, 0.1),
            (10, 7, 7, 7, round(1::numeric / 3, 16000), 3.33, 3.3333333333333335);
         INSERT INTO nums (id, n, i8) SELECT g, g / 7.0, g * 1000003 FROM generate_series(11, 600) g;
         CREATE TABLE expected (image jsonb);
         INSERT INTO expected SELECT to_jsonb(k.*) FROM nums k;",
    );
    // The raw bytes of column `column` of every row `table` has now (the pages also hold the
    // old versions of rows the worker updated).
    let raw = |table: &str, column: &str| {
        format!(
            "SELECT (tuple_data_split(c.oid, t.t_data, t.t_infomask, t.t_infomask2, t.t_bits))[a.attnum] AS raw
               FROM pg_class c
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = '{column}'
              CROSS JOIN generate_series(0, pg_relation_size(c.oid) / 8192 - 1) AS p
              CROSS JOIN heap_page_items(get_raw_page(c.oid::regclass::text, p::int)) AS t
              WHERE c.oid = '{table}'::regclass AND t.lp_flags = 1
                AND format('(%s,%s)', p, t.lp)::tid IN (SELECT ctid FROM {table})"
        )
    };
    let (queued, expected) = (
        raw("webhook._event_queue", "record"),
        raw("expected", "image"),
    );
    let counts: (i64, i64) = {
        let row = db
            .query_one(
                &format!("SELECT (SELECT count(*) FROM ({queued}) q), (SELECT count(*) FROM ({expected}) e)"),
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(counts, (600, 600));
    let unmatched: Vec<String> = db
        .query(
            &format!(
                "(SELECT 'queued only: ' || encode(raw, 'hex') FROM (({queued}) EXCEPT ALL ({expected})) x)
                 UNION ALL
                 (SELECT 'to_jsonb only: ' || encode(raw, 'hex') FROM (({expected}) EXCEPT ALL ({queued})) y)"
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(unmatched, Vec::<String>::new());
}

/// An ERROR raised while a row is rendered (here by a cast to json, user code that capture
/// calls) fails the statement with that error, named as the subscription's and the column's,
/// and queues nothing for it, and the session goes on: a savepoint rolled back to after such an error leaves the transaction's other events
/// queued, rendered right.
#[test]
fn an_error_raised_while_rendering_a_row_fails_only_its_statement() {
    const FAILED: &str = "pg_webhook subscription \"exams\": column \"g\" cannot be rendered as \
                          jsonb for the webhook event: no json for a failing grade";
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TYPE grade AS ENUM ('pass', 'fail');
         CREATE FUNCTION grade_json(grade) RETURNS json LANGUAGE plpgsql AS $$
         BEGIN
             IF $1 = 'fail' THEN
                 RAISE EXCEPTION 'no json for a failing grade';
             END IF;
             RETURN to_json($1::text);
         END $$;
         CREATE CAST (grade AS json) WITH FUNCTION grade_json(grade);
         CREATE TABLE exams (id int PRIMARY KEY, g grade);",
    );
    let rx = Receiver::start();
    subscribe(&mut db, "exams", "exams", &rx.url("/e"), "");
    exec(&mut db, "SELECT webhook.pause('exams')");
    let e = error_of(&mut db, "INSERT INTO exams VALUES (1, 'fail')");
    assert!(e.starts_with(FAILED), "{e}");
    let mut tx = db.transaction().unwrap();
    tx.batch_execute("INSERT INTO exams VALUES (2, 'pass'); SAVEPOINT s")
        .unwrap();
    let failed = tx
        .batch_execute("INSERT INTO exams VALUES (3, 'fail')")
        .expect_err("the failing grade's insert");
    assert_eq!(failed.as_db_error().map(|e| e.message()), Some(FAILED));
    tx.batch_execute("ROLLBACK TO s; INSERT INTO exams VALUES (4, 'pass')")
        .unwrap();
    tx.commit().unwrap();
    let got = compared(
        &mut db,
        "SELECT e.id, q.record::text, to_jsonb(e.*)::text
           FROM webhook._event_queue q JOIN exams e ON e.id = (q.record->>'id')::int
          ORDER BY e.id",
    );
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 4]);
    for (id, queued, expected) in &got {
        assert_eq!(queued, expected, "row {id}");
    }
    assert_eq!(queued(&mut db, "INSERT"), 2);
}
