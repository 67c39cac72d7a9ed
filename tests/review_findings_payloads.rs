//! Findings of a hostile review of the features of issue 13, payload expressions: columns named
//! like the capture query's own, system columns, aggregates, what a payload reads shown to
//! readers of the table, partitions and dropped columns. Each test is the attack, and passes
//! once it no longer works.

mod support;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe, text, WAIT};

/// `app.orders` (written by bob) and `app.customers` (readable by alice only); alice and carol
/// are webhook_admin members who may read and subscribe `app.orders`.
fn shop(pg: &Cluster) -> postgres::Client {
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE carol LOGIN;
         GRANT webhook_admin TO alice, carol;
         CREATE SCHEMA app;
         CREATE TABLE app.customers (id int PRIMARY KEY, email text);
         INSERT INTO app.customers VALUES (1, 'ann@example.com');
         CREATE TABLE app.orders (id int PRIMARY KEY, customer_id int, total numeric(8,2));
         GRANT USAGE ON SCHEMA app TO alice, bob, carol;
         GRANT SELECT ON app.customers TO alice;
         GRANT SELECT, TRIGGER ON app.orders TO alice, carol;
         GRANT SELECT, INSERT, UPDATE, DELETE ON app.orders TO bob;",
    );
    su
}

/// Attack (unlucky DBA): a table with a column named `pg_webhook_row`, the alias the UPDATE
/// capture query gave each transition-table row. A bare `pg_webhook_row` then meant the
/// column, not the row ("type integer is not composite"), so every UPDATE of the table failed
/// for as long as any filtered, column-picking or payload subscription was on it. (The query
/// now names the columns; its pairing column `pg_webhook_rn` takes a suffix if the table has
/// one of that name, as this one does.)
#[test]
fn a_column_named_like_the_capture_querys_internal_names_does_not_fail_updates() {
    let pg = Cluster::start(&[]);
    let mut su = shop(&pg);
    exec(
        &mut su,
        "CREATE TABLE app.odd (id int PRIMARY KEY, pg_webhook_row int, pg_webhook_rn text);
         GRANT SELECT, TRIGGER ON app.odd TO alice;
         GRANT SELECT, INSERT, UPDATE ON app.odd TO bob;
         INSERT INTO app.odd VALUES (1, 5, 'x');",
    );
    let rx = Receiver::start();
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(
        &mut alice,
        "odd",
        "app.odd",
        &rx.url("/odd"),
        ", events => ARRAY['update'], filter => 'NEW.pg_webhook_row IS DISTINCT FROM OLD.pg_webhook_row'",
    );
    let mut bob = pg.connect_as("postgres", "bob");
    exec(
        &mut bob,
        "UPDATE app.odd SET pg_webhook_row = 6 WHERE id = 1",
    );
    let got = rx.wait_for(1, WAIT);
    let body = got[0].json();
    assert_eq!(body["record"]["pg_webhook_row"], 6, "{body}");
    assert_eq!(body["old_record"]["pg_webhook_row"], 5, "{body}");
    assert_eq!(body["record"]["pg_webhook_rn"], "x", "{body}");
}

/// Attack (subscribe-time check bypass): the check ran the payload over the table itself, which
/// has system columns; at capture NEW is a transition table, which has none. `NEW.tableoid`
/// passed `subscribe` and then failed every insert into the table.
#[test]
fn a_payload_naming_a_system_column_is_refused_at_subscribe() {
    let pg = Cluster::start(&[]);
    let _su = shop(&pg);
    let rx = Receiver::start();
    let mut alice = pg.connect_as("postgres", "alice");
    let err = error_of(
        &mut alice,
        &format!(
            "SELECT webhook.subscribe('part', 'app.orders', '{}', events => ARRAY['insert'],
                 payload => $$jsonb_build_object('id', NEW.id, 'table', NEW.tableoid)$$)",
            rx.url("/part")
        ),
    );
    assert!(
        err.contains("payload is not valid for insert events")
            && err.contains("column new.tableoid does not exist"),
        "{err}"
    );
    // Nothing was made, and writes go on.
    let mut bob = pg.connect_as("postgres", "bob");
    exec(&mut bob, "INSERT INTO app.orders VALUES (1, 1, 5)");
    let mut su = pg.connect("postgres");
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM webhook.subscriptions"),
        0
    );
}

/// Attack (subscribe-time check bypass): an aggregate in the payload passed the check (a
/// `SELECT agg(...) ... LIMIT 0` is valid); at capture it merged a statement's rows into one
/// event, and made every UPDATE fail (the UPDATE query orders its rows).
#[test]
fn an_aggregate_or_set_returning_payload_is_refused_at_subscribe() {
    let pg = Cluster::start(&[]);
    let _su = shop(&pg);
    let rx = Receiver::start();
    let mut alice = pg.connect_as("postgres", "alice");
    for (payload, complaint) in [
        (
            "jsonb_agg(NEW.id)",
            "aggregate functions are not allowed in WHERE",
        ),
        (
            "jsonb_array_elements(jsonb_build_array(NEW.id, NEW.id))",
            "set-returning functions are not allowed in WHERE",
        ),
        (
            "jsonb_build_object('n', count(*) OVER ())",
            "window functions are not allowed in WHERE",
        ),
    ] {
        let err = error_of(
            &mut alice,
            &format!(
                "SELECT webhook.subscribe('agg', 'app.orders', '{}', events => ARRAY['insert', 'update'],
                     payload => $${payload}$$)",
                rx.url("/agg")
            ),
        );
        assert!(
            err.contains("payload is not valid for insert events") && err.contains(complaint),
            "{payload}: {err}"
        );
    }
    // A subquery that aggregates is still one value per row.
    subscribe(
        &mut alice,
        "ok",
        "app.orders",
        &rx.url("/ok"),
        ", events => ARRAY['insert', 'update'], payload => $$jsonb_build_object('id', NEW.id,
              'n', (SELECT count(*) FROM app.customers c WHERE c.id = NEW.customer_id))$$",
    );
    let mut bob = pg.connect_as("postgres", "bob");
    exec(
        &mut bob,
        "INSERT INTO app.orders VALUES (1, 1, 5), (2, 1, 6);
         UPDATE app.orders SET total = total + 1;",
    );
    let got = rx.wait_for(4, WAIT);
    assert_eq!(got.len(), 4, "one event per row and statement: {got:?}");
}

/// Attack (hostile webhook_admin member reading the queue): a payload may carry what its owner
/// reads in other tables (README: customers' e-mails the writer may not read). Readers of the
/// subscribed table saw events of tables they may read, so carol, who may read `app.orders`
/// but not `app.customers`, read customers' e-mails in `webhook.events.record`.
#[test]
fn a_payloads_events_are_hidden_from_readers_of_the_table_who_do_not_own_it() {
    let pg = Cluster::start(&[]);
    let _su = shop(&pg);
    // Unreachable receiver: the events stay queued (and readable) while the test looks.
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(
        &mut alice,
        "enriched",
        "app.orders",
        "http://127.0.0.1:9/hooks",
        ", events => ARRAY['insert'], payload => $$jsonb_build_object('order', NEW.id,
              'customer', (SELECT c.email FROM app.customers c WHERE c.id = NEW.customer_id))$$",
    );
    let mut bob = pg.connect_as("postgres", "bob");
    exec(&mut bob, "INSERT INTO app.orders VALUES (7, 1, 12.50)");
    // alice (the owner) sees it: the event is there.
    wait_until(WAIT, "alice to see her event", || {
        count(
            &mut alice,
            "SELECT count(*) FROM webhook.events WHERE record->>'customer' = 'ann@example.com'",
        ) == 1
    });
    let mut carol = pg.connect_as("postgres", "carol");
    let denied = error_of(&mut carol, "SELECT * FROM app.customers");
    assert!(denied.contains("permission denied"), "{denied}");
    assert_eq!(
        count(
            &mut carol,
            "SELECT count(*) FROM webhook.events WHERE record::text LIKE '%ann@example.com%'"
        ),
        0,
        "carol read a customer's e-mail through alice's payload"
    );
    assert_eq!(
        text(
            &mut carol,
            "SELECT string_agg(record::text, ',') FROM webhook.events"
        ),
        None
    );
}

/// A payload and filter over a partitioned table whose partition orders its columns otherwise
/// (a dropped column, another order): NEW and OLD are the partition's row read by column name,
/// whether the UPDATE names the parent or the partition, never values at the parent's
/// positions.
#[test]
fn a_payload_over_partitions_with_other_column_orders_sends_the_right_values() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE p (id int, k text, v int) PARTITION BY LIST (k);
         CREATE TABLE p_a (junk int, v int, k text, id int);
         ALTER TABLE p_a DROP COLUMN junk;
         ALTER TABLE p ATTACH PARTITION p_a FOR VALUES IN ('a');
         INSERT INTO p VALUES (1, 'a', 10);",
    );
    let rx = Receiver::start();
    subscribe(
        &mut db,
        "p",
        "p",
        &rx.url("/p"),
        ", events => ARRAY['update'], filter => 'NEW.v <> OLD.v',
           payload => $$jsonb_build_object('id', NEW.id, 'v', NEW.v, 'was', OLD.v, 'row', to_jsonb(NEW))$$",
    );
    exec(
        &mut db,
        "UPDATE p SET v = 11 WHERE id = 1; UPDATE p_a SET v = 12 WHERE id = 1;",
    );
    let got = rx.wait_for(2, WAIT);
    let mut records: Vec<serde_json::Value> =
        got.iter().map(|r| r.json()["record"].clone()).collect();
    records.sort_by_key(|r| r["v"].as_i64());
    assert_eq!(
        records,
        vec![
            serde_json::json!({"id": 1, "v": 11, "was": 10, "row": {"id": 1, "k": "a", "v": 11}}),
            serde_json::json!({"id": 1, "v": 12, "was": 11, "row": {"v": 12, "k": "a", "id": 1}}),
        ]
    );
}

/// Attack (unlucky DBA: `ALTER TABLE … DROP COLUMN`): over a transition table with a dropped
/// column, the UPDATE capture query's `(whole_row).*` expansion read the wrong attributes, so
/// a filter looked at another column and silently dropped committed changes, a payload sent
/// another column's values, or a type mismatch failed every UPDATE.
#[test]
fn an_update_of_a_table_with_a_dropped_column_is_captured_with_the_right_values() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE d (junk int, id int PRIMARY KEY, v int, w text);
         ALTER TABLE d DROP COLUMN junk;
         INSERT INTO d VALUES (1, 10, 'x');",
    );
    let rx = Receiver::start();
    subscribe(
        &mut db,
        "filtered",
        "d",
        &rx.url("/filtered"),
        ", events => ARRAY['update'], filter => 'NEW.v > OLD.v', columns => ARRAY['id', 'v', 'w']",
    );
    subscribe(
        &mut db,
        "shaped",
        "d",
        &rx.url("/shaped"),
        ", events => ARRAY['update'], payload => $$jsonb_build_object('id', NEW.id, 'v', NEW.v, 'was', OLD.v, 'w', NEW.w)$$",
    );
    exec(&mut db, "UPDATE d SET v = 11, w = 'y' WHERE id = 1");
    let got = rx.wait_for(2, WAIT);
    let body = |path: &str| {
        got.iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("nothing at {path}"))
            .json()
    };
    assert_eq!(
        body("/filtered")["record"],
        serde_json::json!({"id": 1, "v": 11, "w": "y"})
    );
    assert_eq!(
        body("/shaped")["record"],
        serde_json::json!({"id": 1, "v": 11, "was": 10, "w": "y"})
    );
}
