//! What is sent: payload formats, row filters and column selection, end to end.

mod support;

use std::time::Duration;

use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{error_of, exec, subscribe, WAIT};

/// The envelope's time is when the change was captured, as `to_jsonb` writes that
/// `timestamptz`: in the server's time zone, here not UTC, to the microsecond.
#[test]
fn the_envelope_time_is_the_capture_time_as_to_jsonb_writes_it() {
    let pg = Cluster::start(&["timezone = 'Asia/Kolkata'"]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute("CREATE TABLE orders (id int PRIMARY KEY)")
        .unwrap();
    subscribe(
        &mut db,
        "std",
        "orders",
        &rx.url("/standard"),
        ", format => 'standard'",
    );
    db.batch_execute("INSERT INTO orders VALUES (1)").unwrap();
    let got = rx.wait_for(1, WAIT);
    let sent = got[0].json()["timestamp"].as_str().unwrap().to_string();
    let captured: String = db
        .query_one(
            "SELECT to_jsonb(created_at) #>> '{}' FROM webhook.events WHERE record->>'id' = '1'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(sent, captured);
    assert!(
        sent.ends_with("+05:30"),
        "not in the server's time zone: {sent}"
    );
}

#[test]
fn three_payload_formats_are_signed_and_shaped() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric(8,2))")
        .unwrap();
    let (_, s_db) = subscribe(&mut db, "db", "orders", &rx.url("/database"), "");
    let (_, s_std) = subscribe(
        &mut db,
        "std",
        "orders",
        &rx.url("/standard"),
        ", format => 'standard'",
    );
    let (_, s_ce) = subscribe(
        &mut db,
        "ce",
        "orders",
        &rx.url("/cloudevents"),
        ", format => 'CloudEvents'",
    );
    db.batch_execute("INSERT INTO orders VALUES (7, 12.50)")
        .unwrap();
    let got = rx.wait_for(3, WAIT);
    let by_path = |p: &str| got.iter().find(|r| r.path == p).unwrap().clone();

    let d = by_path("/database");
    d.verify(&s_db).unwrap();
    assert_eq!(d.header("content-type"), Some("application/json"));
    assert_eq!(d.json()["type"], "INSERT");

    let s = by_path("/standard");
    s.verify(&s_std).unwrap();
    let body = s.json();
    assert_eq!(body["type"], "orders.insert");
    assert!(body["timestamp"].as_str().unwrap().starts_with("20"));
    assert_eq!(body["data"]["record"]["id"], 7);

    let c = by_path("/cloudevents");
    c.verify(&s_ce).unwrap();
    assert_eq!(
        c.header("content-type"),
        Some("application/cloudevents+json")
    );
    let ce = c.json();
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["id"], c.id());
    assert_eq!(ce["type"], "pg_webhook.orders.insert");
    assert_eq!(ce["source"], "/pg_webhook/postgres/public/orders");
    assert!(String::from_utf8_lossy(&c.body).contains("12.50"));

    let e = error_of(
        &mut db,
        "SELECT webhook.subscribe('x', 'orders', 'https://e.example/', format => 'xml')",
    );
    assert!(e.contains("unknown format 'xml'"), "{e}");
}

#[test]
fn a_filter_chooses_rows_and_columns_choose_fields() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute(
        "CREATE TABLE people (id int PRIMARY KEY, name text, ssn text, status text, total int)",
    )
    .unwrap();
    subscribe(
        &mut db,
        "big",
        "people",
        &rx.url("/big"),
        ", events => '{insert,update}', filter => 'NEW.total > 100 AND NEW.status IS DISTINCT FROM ''test'''",
    );
    subscribe(
        &mut db,
        "slim",
        "people",
        &rx.url("/slim"),
        ", columns => '{id,status}', skip_unchanged => true",
    );
    subscribe(
        &mut db,
        "nopii",
        "people",
        &rx.url("/nopii"),
        ", exclude_columns => '{ssn}'",
    );
    db.batch_execute(
        "INSERT INTO people VALUES (1, 'ada', '111', 'new', 50), (2, 'bob', '222', 'new', 150),
                                   (3, 'cy', '333', 'test', 500);
         UPDATE people SET ssn = '999' WHERE id = 1;          -- only an unsent column changes
         UPDATE people SET status = 'paid', total = 200 WHERE id = 2;",
    )
    .unwrap();
    // big: insert 2 + update 2 = 2 events; slim: 3 inserts + 1 update = 4; nopii: 3 + 2 = 5.
    let got = rx.wait_for(11, WAIT);
    std::thread::sleep(Duration::from_millis(500));
    let on = |p: &str| -> Vec<serde_json::Value> {
        rx.requests()
            .iter()
            .filter(|r| r.path == p)
            .map(|r| r.json())
            .collect()
    };
    assert_eq!(rx.count(), 11, "{got:?}");
    let big = on("/big");
    assert_eq!(big.len(), 2);
    assert!(big.iter().all(|b| b["record"]["id"] == 2));
    let slim = on("/slim");
    assert_eq!(slim.len(), 4, "the ssn-only update is skipped");
    for b in &slim {
        let keys: Vec<&String> = b["record"].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 2, "{b}");
    }
    let update = slim.iter().find(|b| b["type"] == "UPDATE").unwrap();
    assert_eq!(
        update["old_record"],
        serde_json::json!({"id": 2, "status": "new"})
    );
    assert_eq!(
        update["record"],
        serde_json::json!({"id": 2, "status": "paid"})
    );
    for b in on("/nopii") {
        for image in ["record", "old_record"] {
            if let Some(o) = b[image].as_object() {
                assert!(!o.contains_key("ssn"), "{b}");
                assert!(o.contains_key("name"));
            }
        }
    }
}

#[test]
fn a_filter_runs_as_the_subscription_owner() {
    let pg = Cluster::start(&[]);
    let mut su = pg.client_with_extension();
    let rx = Receiver::start();
    su.batch_execute(
        "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; GRANT webhook_admin TO alice;
         CREATE TABLE t (id int PRIMARY KEY); GRANT SELECT, TRIGGER ON t TO alice; GRANT INSERT, SELECT ON t TO bob;",
    )
    .unwrap();
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(
        &mut alice,
        "mine",
        "t",
        &rx.url("/t"),
        ", filter => 'current_user = ''alice'''",
    );
    let mut bob = pg.connect_as("postgres", "bob");
    bob.batch_execute("INSERT INTO t VALUES (1)").unwrap();
    let got = rx.wait_for(1, WAIT);
    assert_eq!(
        got[0].json()["record"]["id"],
        1,
        "the filter saw alice, not bob"
    );
}

#[test]
fn bad_filters_and_columns_are_refused_up_front() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
        .unwrap();
    let sub =
        |extra: &str| format!("SELECT webhook.subscribe('x', 't', 'https://e.example/'{extra})");
    for (sql, want) in [
        (
            sub(", filter => 'NEW.nope > 1'"),
            "filter is not valid for insert events: column new.nope does not exist",
        ),
        (
            sub(", filter => 'NEW.v >'"),
            "filter is not a valid expression: syntax error",
        ),
        (
            sub(", filter => 'NEW.v + 1'"),
            "filter is not valid for insert events",
        ),
        (
            sub(", events => '{insert}', filter => 'OLD.v = 1'"),
            "missing FROM-clause entry for table \"old\"",
        ),
        (sub(", filter => ''"), "filter is empty"),
        (
            sub(", events => '{truncate}', filter => 'true'"),
            "a filter cannot apply to truncate events",
        ),
        (
            sub(", filter => 'public.no_such_fn(NEW.v)'"),
            "function public.no_such_fn(integer) does not exist",
        ),
        (
            sub(", columns => '{id,nope}'"),
            "columns names \"nope\", which is not a column of public.t",
        ),
        (
            sub(", exclude_columns => '{nope}'"),
            "exclude_columns names \"nope\"",
        ),
        (sub(", columns => '{}'"), "columns is empty"),
        (
            sub(", columns => '{id}', exclude_columns => '{v}'"),
            "give columns or exclude_columns, not both",
        ),
    ] {
        let e = error_of(&mut db, &sql);
        assert!(e.contains(want), "{sql}\n  wanted: {want}\n  got:    {e}");
    }
    let n: i64 = db
        .query_one("SELECT count(*) FROM webhook.subscriptions", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "nothing was created");
}

#[test]
fn a_failing_filter_fails_the_write_naming_the_subscription() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    subscribe(
        &mut db,
        "picky",
        "t",
        &rx.url("/t"),
        ", events => ARRAY['insert'], filter => '100 / NEW.id > 1'",
    );
    let error = error_of(&mut db, "INSERT INTO t VALUES (0)");
    assert!(
        error.starts_with("pg_webhook subscription \"picky\": division by zero"),
        "{error}"
    );
    db.batch_execute("INSERT INTO t VALUES (1)").unwrap();
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["record"]["id"], 1);
}

#[test]
fn a_column_renamed_after_subscribing_fails_the_write_naming_the_subscription() {
    // An event that silently lacked a field the subscription asked for would break its
    // receiver unseen; the write fails, as it does for a filter naming the column.
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY, status text)");
    subscribe(
        &mut db,
        "two",
        "t",
        &rx.url("/t"),
        ", columns => '{id,status}'",
    );
    exec(&mut db, "ALTER TABLE t RENAME COLUMN status TO state");
    let error = error_of(&mut db, "INSERT INTO t VALUES (1, 'new')");
    assert!(
        error.starts_with(
            "pg_webhook subscription \"two\": column \"status\" in the subscription's columns is not a column of the table any more"
        ),
        "{error}"
    );
}

#[test]
fn an_excluded_column_renamed_stays_excluded() {
    // Left out by name, the column went out under its new name from the rename on, in every
    // event: personal data the subscription was made to keep from its receiver.
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY, email text)");
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", exclude_columns => '{email}'",
    );
    // This session renders t's rows before the rename, and again after it.
    exec(&mut db, "INSERT INTO t VALUES (1, 'a@example.com')");
    exec(&mut db, "ALTER TABLE t RENAME COLUMN email TO mail");
    exec(&mut db, "INSERT INTO t VALUES (2, 'b@example.com')");
    let mut other = pg.connect("postgres");
    exec(&mut other, "INSERT INTO t VALUES (3, 'c@example.com')");
    let sent = support::text(
        &mut db,
        "SELECT string_agg(record::text, ' ' ORDER BY id) FROM webhook.events",
    );
    assert_eq!(sent.as_deref(), Some(r#"{"id": 1} {"id": 2} {"id": 3}"#));
    let excluded = support::text(
        &mut db,
        "SELECT exclude_columns::text FROM webhook.subscriptions WHERE name = 't'",
    );
    assert_eq!(excluded.as_deref(), Some("{mail}"));
}

#[test]
fn chosen_rows_of_a_statement_pair_up_and_keep_their_columns() {
    // The filter picks every other row of multi-row statements; each event's images must be
    // those of its own row (capture renders them from the rows' positions), old and new paired.
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY, v int, secret text);
         INSERT INTO t SELECT g, g * 10, 's' FROM generate_series(1, 6) g;",
    );
    let (id, _) = subscribe(
        &mut db,
        "evens",
        "t",
        &rx.url("/t"),
        ", events => '{update,delete}', exclude_columns => '{secret}',
           filter => 'OLD.id % 2 = 0'",
    );
    exec(
        &mut db,
        "UPDATE t SET v = v + 1, secret = 'x' WHERE id <= 5; DELETE FROM t WHERE id >= 3",
    );
    let events: Vec<String> = db
        .query(
            "SELECT op || ' ' || coalesce(record::text, '-') || ' ' || coalesce(old_record::text, '-')
               FROM webhook.events WHERE subscription_id = $1 ORDER BY id",
            &[&id],
        )
        .unwrap_or_else(|e| panic!("reading the events: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        events,
        vec![
            r#"UPDATE {"v": 21, "id": 2} {"v": 20, "id": 2}"#,
            r#"UPDATE {"v": 41, "id": 4} {"v": 40, "id": 4}"#,
            r#"DELETE - {"v": 41, "id": 4}"#,
            r#"DELETE - {"v": 60, "id": 6}"#,
        ]
    );
}
