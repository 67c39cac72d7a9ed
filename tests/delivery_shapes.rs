//! End to end: a real cluster with pg_webhook preloaded, a real HTTP receiver on 127.0.0.1, and
//! committed SQL in between — what arrives: each event kind signed in the documented shape,
//! column types rendered as PostgreSQL renders them, one event per row of a multi-row
//! statement, and nothing of what rolled back.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{subscribe, WAIT};

#[test]
fn each_event_kind_arrives_signed_in_the_documented_shape() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute(
        "CREATE TABLE orders (id bigserial PRIMARY KEY, customer text, total numeric(12,2),
                              placed_at timestamptz DEFAULT '2026-01-02 03:04:05+00')",
    )
    .unwrap();
    let (_, secret) = subscribe(
        &mut db,
        "orders_to_billing",
        "orders",
        &rx.url("/hooks/orders"),
        ", headers => '{\"Authorization\": \"Bearer t0ken\"}'",
    );
    assert!(secret.starts_with("whsec_"));

    db.batch_execute("INSERT INTO orders (customer, total) VALUES ('ada', 42.00)")
        .unwrap();
    db.batch_execute("UPDATE orders SET total = 43.50 WHERE customer = 'ada'")
        .unwrap();
    db.batch_execute("DELETE FROM orders WHERE customer = 'ada'")
        .unwrap();
    let got = rx.wait_for(3, WAIT);
    assert_eq!(got.len(), 3);

    let mut by_type = std::collections::HashMap::new();
    for r in &got {
        assert_eq!(r.path, "/hooks/orders");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("authorization"), Some("Bearer t0ken"));
        r.verify(&secret)
            .unwrap_or_else(|e| panic!("signature rejected: {e}"));
        assert!(r.id().starts_with("msg_"));
        let body = r.json();
        assert_eq!(body["table"], "orders");
        assert_eq!(body["schema"], "public");
        by_type.insert(body["type"].as_str().unwrap().to_string(), body);
    }
    let insert = &by_type["INSERT"];
    assert_eq!(insert["record"]["customer"], "ada");
    assert!(insert["old_record"].is_null());
    assert_eq!(insert["record"]["placed_at"], "2026-01-02T03:04:05+00:00");
    let update = &by_type["UPDATE"];
    assert_eq!(update["old_record"]["customer"], "ada");
    assert!(update["record"].is_object());
    let delete = &by_type["DELETE"];
    assert!(delete["record"].is_null());
    assert_eq!(delete["old_record"]["customer"], "ada");
    // Exact numerics: the text carries every digit Postgres rendered.
    let raw: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(
        raw.iter().any(|b| b.contains("\"total\": 43.50")),
        "{raw:?}"
    );

    // Every attempt is queryable, and the events are finished.
    wait_until(WAIT, "3 delivered events", || {
        db.query_one(
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
            == 3
    });
    let attempts = db
        .query(
            "SELECT status_code, outcome, duration_ms FROM webhook.attempts ORDER BY event_id",
            &[],
        )
        .unwrap();
    assert_eq!(attempts.len(), 3);
    for a in attempts {
        assert_eq!(a.get::<_, Option<i32>>(0), Some(204));
        assert_eq!(a.get::<_, String>(1), "delivered");
        assert!(a.get::<_, f64>(2) >= 0.0);
    }
}

#[test]
fn rolled_back_transactions_and_savepoints_send_nothing() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY, note text)")
        .unwrap();
    subscribe(&mut db, "t_hook", "t", &rx.url("/t"), "");

    db.batch_execute("BEGIN; INSERT INTO t VALUES (1, 'rolled back'); ROLLBACK;")
        .unwrap();
    db.batch_execute(
        "BEGIN;
         INSERT INTO t VALUES (2, 'kept');
         SAVEPOINT s; INSERT INTO t VALUES (3, 'savepoint rolled back'); ROLLBACK TO SAVEPOINT s;
         SAVEPOINT s2; UPDATE t SET note = 'inner update rolled back' WHERE id = 2; ROLLBACK TO s2;
         COMMIT;",
    )
    .unwrap();
    // A marker after the others: once it arrives, anything earlier would have too.
    db.batch_execute("INSERT INTO t VALUES (4, 'marker')")
        .unwrap();
    let got = rx.wait_for(2, WAIT);
    std::thread::sleep(Duration::from_millis(500));
    let got_ids: Vec<i64> = rx
        .requests()
        .iter()
        .map(|r| r.json()["record"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(rx.count(), 2, "only the committed rows: {got_ids:?}");
    let ids: HashSet<i64> = got
        .iter()
        .map(|r| r.json()["record"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, HashSet::from([2, 4]));
    assert!(got.iter().all(|r| r.json()["type"] == "INSERT"));
}

#[test]
fn many_column_types_render_exactly_as_postgres_renders_them() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute(
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE TYPE pair AS (a int, b text);
         CREATE TABLE kinds (
             id serial PRIMARY KEY,
             i2 smallint, i8 bigint, n numeric, n_big numeric(40,10), r real, d double precision,
             b boolean, t text, vc varchar(10), ch char(3), by bytea, u uuid,
             ts timestamp, tstz timestamptz, dt date, tm time, iv interval,
             j json, jb jsonb, arr int[], tarr text[], nested int[][], e mood, c pair,
             inet_col inet, mac macaddr, rng int4range, pt point, bits bit varying(8),
             money_col money, nul text, o int DEFAULT 5, rn int DEFAULT 6, j2 text DEFAULT 'x'
         );
         ALTER TABLE kinds DROP COLUMN i2;",
    )
    .unwrap();
    subscribe(
        &mut db,
        "kinds_hook",
        "kinds",
        &rx.url("/k"),
        ", events => ARRAY['insert']",
    );
    db.batch_execute(
        "SET timezone = 'Asia/Kolkata';
         INSERT INTO kinds (i8, n, n_big, r, d, b, t, vc, ch, by, u, ts, tstz, dt, tm, iv, j, jb,
                            arr, tarr, nested, e, c, inet_col, mac, rng, pt, bits, money_col, nul)
         VALUES (9223372036854775807, 0.1000, 123456789012345678901234567890.0123456789,
                 1.5, 1e300, true, E'quote\" back\\\\ slash \\n nl ünï 🐘', 'v', 'ab', '\\xdeadbeef',
                 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2026-11-23 10:11:12.123456',
                 '2026-11-23 10:11:12+00', '2026-02-28', '23:59:59', '1 day 2 hours',
                 '{\"z\": 1, \"a\": [1, 2]}', '{\"z\": 1, \"a\": [1, 2]}',
                 ARRAY[1, NULL, 3], ARRAY['x', 'y z'], ARRAY[[1,2],[3,4]], 'happy', ROW(1, 'one'),
                 '10.0.0.1/8', '08:00:2b:01:02:03', '[1,5)', '(1.5,2)', B'101', 12.34, NULL);",
    )
    .unwrap();
    let got = rx.wait_for(1, WAIT);
    let sent = got[0].json()["record"].clone();
    // What Postgres itself renders for the row, as the same session would see it.
    let expected: String = db
        .query_one("SELECT to_jsonb(k)::text FROM kinds k", &[])
        .unwrap()
        .get(0);
    let expected: serde_json::Value = serde_json::from_str(&expected).unwrap();
    assert_eq!(sent, expected);
    assert!(sent.get("i2").is_none(), "dropped columns are not sent");
    let raw = String::from_utf8_lossy(&got[0].body).into_owned();
    assert!(
        raw.contains("123456789012345678901234567890.0123456789"),
        "{raw}"
    );
    assert!(raw.contains("9223372036854775807"), "{raw}");
    assert_eq!(sent["by"], "\\xdeadbeef");
    assert_eq!(sent["jb"]["a"], serde_json::json!([1, 2]));
    assert_eq!(sent["c"], serde_json::json!({"a": 1, "b": "one"}));
    assert_eq!(sent["arr"], serde_json::json!([1, null, 3]));
    assert!(sent["nul"].is_null());
    assert_eq!(sent["t"], "quote\" back\\ slash \n nl ünï 🐘");
}

#[test]
fn multi_row_statements_queue_one_event_per_row_paired_and_in_order() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute("CREATE TABLE big (id int PRIMARY KEY, v int, blob text)")
        .unwrap();
    subscribe(&mut db, "big_hook", "big", &rx.url("/big"), "");
    // More rows than one capture batch, a value large enough to be TOASTed, and a work_mem
    // small enough that the transition tables spill to disk.
    db.batch_execute(
        "SET work_mem = '64kB';
         INSERT INTO big SELECT g, g * 10, CASE WHEN g = 7 THEN repeat('x', 200000) END
           FROM generate_series(1, 2500) g ORDER BY g;
         UPDATE big SET v = v + 1;
         DELETE FROM big WHERE id % 2 = 0;",
    )
    .unwrap();
    let count =
        |db: &mut postgres::Client, sql: &str| -> i64 { db.query_one(sql, &[]).unwrap().get(0) };
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE op = 'INSERT'"
        ),
        2500
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE op = 'UPDATE'"
        ),
        2500
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE op = 'DELETE'"
        ),
        1250
    );
    // Every UPDATE pairs a row's old and new image.
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE op = 'UPDATE'
                AND record->>'id' = old_record->>'id'
                AND (record->>'v')::int = (old_record->>'v')::int + 1"
        ),
        2500
    );
    // Events of one statement are numbered in the statement's row order.
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM (SELECT (record->>'id')::int AS r,
                    row_number() OVER (ORDER BY id) AS n
               FROM webhook.events WHERE op = 'INSERT') s WHERE r = n"
        ),
        2500
    );
    assert_eq!(
        count(&mut db, "SELECT length(record->>'blob')::bigint FROM webhook.events WHERE op = 'INSERT' AND record->>'id' = '7'"),
        200000
    );
    wait_until(Duration::from_secs(120), "6250 deliveries", || {
        rx.count() >= 6250
    });
    let ids: HashSet<String> = rx.requests().iter().map(|r| r.id()).collect();
    assert_eq!(ids.len(), 6250);
}
