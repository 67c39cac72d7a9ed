//! Findings of a hostile review of the features of issue 13 (payload expressions, monitoring,
//! mTLS / OAuth 2.0): each test is the attack, and passes once it no longer works.

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
/// for as long as any filtered, column-picking or payload subscription was on it.
#[test]
fn a_column_named_like_the_capture_querys_row_alias_does_not_fail_updates() {
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
