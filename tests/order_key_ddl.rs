//! Per-key order (`order_key`) across DDL on its key columns: a renamed key column stays the
//! key; a key column is neither dropped (by DROP COLUMN or a cascade), retyped, nor added back
//! under its name, nor its composite type altered, while its subscription has events queued,
//! whose keys were hashed from it as it was. One scenario per test.

mod support;

use support::cluster::{wait_until, Cluster};
use support::keyed::{paused_with_an_event, refusing_seq_1_twice, seqs, RETRY_SOON};
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe, text, WAIT};

#[test]
fn a_renamed_key_column_stays_the_key_of_events_queued_before() {
    // Capture finds the key's columns by name: after the rename a constant stood in for the
    // column, and the UPDATE went while its row's INSERT, written before, was retried.
    let pg = Cluster::start(&[]);
    let rx = refusing_seq_1_twice();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE acct (id int PRIMARY KEY, account int, seq int)",
    );
    subscribe(
        &mut db,
        "acct",
        "acct",
        &rx.url("/acct"),
        &format!(", order_key => ARRAY['account']{RETRY_SOON}"),
    );
    exec(&mut db, "INSERT INTO acct VALUES (1, 7, 1)");
    exec(&mut db, "ALTER TABLE acct RENAME COLUMN account TO acct_no");
    exec(&mut db, "UPDATE acct SET seq = 2 WHERE id = 1");
    wait_until(WAIT, "both events", || rx.accepted().len() == 2);
    assert_eq!(
        seqs(&rx),
        vec![1, 2],
        "the UPDATE went while the INSERT was retried"
    );
    let key = text(
        &mut db,
        "SELECT order_key::text FROM webhook.subscriptions WHERE name = 'acct'",
    );
    assert_eq!(key.as_deref(), Some("{acct_no}"));
}

#[test]
fn a_key_column_is_neither_dropped_nor_retyped_while_its_subscription_has_events_queued() {
    // Either made the same key hash differently from then on (a constant for a dropped
    // column; numeric's hash for int's), so later events did not wait behind queued ones.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE acct (id int PRIMARY KEY, account int, note text)",
    );
    let (id, _) = subscribe(
        &mut db,
        "acct",
        "acct",
        &rx.url("/acct"),
        ", order_key => ARRAY['account']",
    );
    exec(
        &mut db,
        "SELECT webhook.pause('acct'); INSERT INTO acct VALUES (1, 7, 'a')",
    );
    let e = error_of(&mut db, "ALTER TABLE acct DROP COLUMN account");
    assert!(
        e.contains("cannot drop column \"account\" of table ")
            && e.contains("a webhook subscription orders the table's events by that column's"),
        "{e}"
    );
    let e = error_of(
        &mut db,
        "ALTER TABLE acct ALTER COLUMN account TYPE numeric",
    );
    assert!(
        e.contains("cannot change the type of column \"account\""),
        "{e}"
    );
    // Other columns change freely; the key column once nothing is queued.
    exec(&mut db, "ALTER TABLE acct DROP COLUMN note");
    exec(&mut db, "SELECT webhook.resume('acct')");
    rx.wait_for(1, WAIT);
    let queued = format!(
        "SELECT count(*) FROM webhook.events
          WHERE subscription_id = {id} AND status IN ('pending', 'parked')"
    );
    wait_until(WAIT, "the event to leave the queue", || {
        count(&mut db, &queued) == 0
    });
    exec(
        &mut db,
        "ALTER TABLE acct ALTER COLUMN account TYPE numeric",
    );
}

#[test]
fn a_dropped_key_column_does_not_come_back_while_events_keyed_without_it_are_queued() {
    // Dropped with nothing queued, the key hashes a constant in its place; a column taking its
    // name back made the same key hash differently.
    let pg = Cluster::start(&[]);
    let mut db = paused_with_an_event(&pg, "SELECT", "account int, note int", "'account'");
    exec(&mut db, "DELETE FROM webhook._event_queue");
    exec(&mut db, "ALTER TABLE acct DROP COLUMN account");
    exec(&mut db, "INSERT INTO acct (id) VALUES (2)");
    let e = error_of(&mut db, "ALTER TABLE acct ADD COLUMN account int");
    assert!(e.contains("cannot add column \"account\" of table"), "{e}");
    let e = error_of(&mut db, "ALTER TABLE acct RENAME COLUMN note TO account");
    assert!(
        e.contains("cannot rename column \"note\" to \"account\" of table"),
        "{e}"
    );
}

#[test]
fn a_key_column_is_neither_dropped_by_a_cascade_nor_its_type_altered_while_events_are_queued() {
    // The domain's or the composite type's owner need not own the table: DROP DOMAIN ...
    // CASCADE took the key column, ALTER TYPE ... ADD ATTRIBUTE changed a composite key's hash.
    let pg = Cluster::start(&[]);
    let mut db = paused_with_an_event(
        &pg,
        "CREATE DOMAIN acct_no AS int; CREATE TYPE pair AS (a int, b int)",
        "account acct_no, p pair",
        "'account', 'p'",
    );
    let e = error_of(&mut db, "DROP DOMAIN acct_no CASCADE");
    assert!(e.contains("cannot drop column \"account\" of table"), "{e}");
    let e = error_of(&mut db, "ALTER TYPE pair ADD ATTRIBUTE c int");
    assert!(
        e.contains("cannot alter the type of column \"p\" of table"),
        "{e}"
    );
}

#[test]
fn a_composite_type_nested_in_a_key_column_or_typing_its_table_is_not_altered_while_events_are_queued(
) {
    // The check looked one level into a key column's type: a domain over a domain over a
    // composite was altered under queued events; a typed table's key column was renamed
    // through its type and the key went unnoticed.
    let pg = Cluster::start(&[]);
    let mut db = paused_with_an_event(
        &pg,
        "CREATE TYPE pair AS (a int, b int); CREATE DOMAIN d1 AS pair;
         CREATE DOMAIN d2 AS d1; CREATE TYPE row_t AS (id int, k int);
         CREATE TABLE typed OF row_t (PRIMARY KEY (id))",
        "account d2",
        "'account'",
    );
    let e = error_of(&mut db, "ALTER TYPE pair ADD ATTRIBUTE c int");
    assert!(
        e.contains("cannot alter the type of column \"account\""),
        "{e}"
    );
    subscribe(
        &mut db,
        "typed",
        "typed",
        "http://127.0.0.1:9/typed",
        ", order_key => ARRAY['k']",
    );
    exec(
        &mut db,
        "SELECT webhook.pause('typed'); INSERT INTO typed VALUES (1, 7)",
    );
    let e = error_of(&mut db, "ALTER TYPE row_t RENAME ATTRIBUTE k TO k2 CASCADE");
    assert!(e.contains("cannot alter the type of column \"k\""), "{e}");
}

#[test]
fn altering_a_key_columns_type_is_refused_while_a_writer_of_a_partition_is_open() {
    // ALTER TYPE locks the type, not the tables holding its values: it looked at the queue
    // while a writer's event was not committed yet, and went through. Waiting for the writer
    // would hold up every later one; it is refused instead, a writer of a partition too.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TYPE pair AS (a int, b int);
         CREATE TABLE pt (id int, p pair, PRIMARY KEY (id)) PARTITION BY RANGE (id);
         CREATE TABLE pt1 PARTITION OF pt FOR VALUES FROM (0) TO (100);",
    );
    subscribe(
        &mut db,
        "pt",
        "pt",
        &rx.url("/pt"),
        ", order_key => ARRAY['p']",
    );
    let mut writer = pg.connect("postgres");
    exec(&mut writer, "BEGIN; INSERT INTO pt1 VALUES (1, ROW(1, 2))");
    let e = error_of(&mut db, "ALTER TYPE pair ADD ATTRIBUTE c int");
    assert!(
        e.contains("cannot alter the type of column \"p\"") && e.contains("still open"),
        "{e}"
    );
    exec(&mut writer, "COMMIT");
    rx.wait_for(1, WAIT);
}

#[test]
fn a_table_whose_row_type_a_key_column_is_keeps_its_columns_while_events_are_queued() {
    // A key column of a table's row type hashes that row's columns: adding or dropping one
    // changed the key of every queued event's value.
    let pg = Cluster::start(&[]);
    let mut db = paused_with_an_event(&pg, "CREATE TABLE other (x int, y int)", "o other", "'o'");
    let e = error_of(&mut db, "ALTER TABLE other DROP COLUMN y");
    assert!(e.contains("cannot alter the type of column \"o\""), "{e}");
    let e = error_of(&mut db, "ALTER TABLE other ADD COLUMN z int");
    assert!(e.contains("cannot alter the type of column \"o\""), "{e}");
}

#[test]
fn a_refusal_names_no_subscription() {
    // bob subscribed alice's table; alice, who may not see his subscription, learnt its name
    // from her refused ALTER TABLE. The event trigger cannot tell who will read the error (a
    // SECURITY DEFINER function may catch it), so it names none.
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; GRANT webhook_admin TO bob;
         CREATE TABLE acct (id int PRIMARY KEY, account int) ;
         ALTER TABLE acct OWNER TO alice; GRANT SELECT, TRIGGER ON acct TO bob;",
    );
    let mut bob = pg.connect_as("postgres", "bob");
    subscribe(
        &mut bob,
        "bobs-audit",
        "acct",
        "http://127.0.0.1:9/bob",
        ", order_key => ARRAY['account']",
    );
    exec(&mut bob, "SELECT webhook.pause('bobs-audit')");
    let mut alice = pg.connect_as("postgres", "alice");
    exec(&mut alice, "INSERT INTO acct VALUES (1, 7)");
    let e = error_of(&mut alice, "ALTER TABLE acct DROP COLUMN account");
    assert!(
        e.contains("a webhook subscription orders the table's events") && !e.contains("bobs-audit"),
        "{e}"
    );
}
