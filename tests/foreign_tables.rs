//! Foreign tables stay out of subscribed trees. PostgreSQL collects no transition tuples from a
//! foreign partition: once its partitioned table was subscribed, every write through the table
//! that reached the foreign partition failed ("cannot collect transition tuples from child
//! foreign tables"), and writes naming it were never captured. Foreign inheritance children
//! slipped past the refusal of inheritance children, which watched CREATE TABLE and ALTER
//! TABLE only.

mod support;

use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{error_of, exec, subscribe};

/// `pt`, partitioned by `k`, with local partition `pt_a`; a postgres_fdw server `elsewhere`.
fn tree(pg: &Cluster) -> postgres::Client {
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE EXTENSION postgres_fdw;
         CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'postgres');
         CREATE TABLE pt (id int, k text) PARTITION BY LIST (k);
         CREATE TABLE pt_a PARTITION OF pt FOR VALUES IN ('a');",
    );
    db
}

/// `tree`, subscribed, then `setup` (committed), then `ddl`'s error.
fn refused_once_subscribed(setup: &str, ddl: &str) -> String {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = tree(&pg);
    subscribe(&mut db, "pt", "pt", &rx.url("/pt"), "");
    exec(&mut db, setup);
    let e = error_of(&mut db, ddl);
    // The tree is as it was, and writes through it are captured.
    exec(&mut db, "INSERT INTO pt VALUES (1, 'a')");
    assert_eq!(rx.wait_for(1, support::WAIT)[0].json()["record"]["id"], 1);
    e
}

#[test]
fn a_table_with_a_foreign_partition_cannot_be_subscribed() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = tree(&pg);
    exec(
        &mut db,
        "CREATE TABLE pt_b PARTITION OF pt FOR VALUES IN ('b', 'c') PARTITION BY LIST (k);
         CREATE FOREIGN TABLE remote PARTITION OF pt_b FOR VALUES IN ('c') SERVER elsewhere;",
    );
    let e = error_of(
        &mut db,
        &format!("SELECT webhook.subscribe('pt', 'pt', '{}')", rx.url("/pt")),
    );
    assert!(
        e.contains("its partition public.remote is a foreign table")
            && e.contains("DETACH PARTITION"),
        "{e}"
    );
}

#[test]
fn a_foreign_partition_cannot_be_created_in_a_subscribed_tree() {
    let e = refused_once_subscribed(
        "",
        "CREATE FOREIGN TABLE remote PARTITION OF pt FOR VALUES IN ('c') SERVER elsewhere",
    );
    assert!(
        e.contains("foreign table public.remote (under public.pt) cannot be in the partition tree of public.pt"),
        "{e}"
    );
}

#[test]
fn a_foreign_table_cannot_be_attached_to_a_subscribed_tree() {
    let e = refused_once_subscribed(
        "",
        "CREATE FOREIGN TABLE remote (id int, k text) SERVER elsewhere;
         ALTER TABLE pt ATTACH PARTITION remote FOR VALUES IN ('c')",
    );
    assert!(
        e.contains("foreign table public.remote (under public.pt) cannot be in the partition tree of public.pt"),
        "{e}"
    );
}

#[test]
fn a_subscribed_table_cannot_get_a_foreign_inheritance_child() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = tree(&pg);
    exec(&mut db, "CREATE TABLE plain (id int, k text)");
    subscribe(&mut db, "plain", "plain", &rx.url("/plain"), "");
    for ddl in [
        "CREATE FOREIGN TABLE child () INHERITS (plain) SERVER elsewhere",
        "CREATE FOREIGN TABLE child (id int, k text) SERVER elsewhere;
         ALTER FOREIGN TABLE child INHERIT plain",
    ] {
        let e = error_of(&mut db, ddl);
        assert!(
            e.contains("cannot get the inheritance child public.child"),
            "{ddl}: {e}"
        );
    }
}

#[test]
fn a_subtree_holding_a_foreign_partition_cannot_be_attached_to_a_subscribed_tree() {
    let e = refused_once_subscribed(
        "CREATE TABLE sub (id int, k text) PARTITION BY LIST (k);
         CREATE FOREIGN TABLE remote PARTITION OF sub FOR VALUES IN ('c') SERVER elsewhere;",
        "ALTER TABLE pt ATTACH PARTITION sub FOR VALUES IN ('c', 'd')",
    );
    assert!(
        e.contains("foreign table public.remote (under public.sub) cannot be in the partition tree of public.pt"),
        "{e}"
    );
}

#[test]
fn a_foreign_partition_added_while_subscribe_waits_is_seen() {
    foreign_partition_added_while_subscribe_waits(
        "CREATE TABLE pt_b PARTITION OF pt FOR VALUES IN ('b', 'c') PARTITION BY LIST (k)",
        "BEGIN;
         CREATE FOREIGN TABLE remote PARTITION OF pt_b FOR VALUES IN ('c') SERVER elsewhere;",
    );
}

#[test]
fn a_foreign_partition_added_with_its_parent_while_subscribe_waits_is_seen() {
    // Here the DDL holds the subscribed table's own lock.
    foreign_partition_added_while_subscribe_waits(
        "",
        "BEGIN;
         CREATE TABLE pt_b PARTITION OF pt FOR VALUES IN ('b', 'c') PARTITION BY LIST (k);
         CREATE FOREIGN TABLE remote PARTITION OF pt_b FOR VALUES IN ('c') SERVER elsewhere;",
    );
}

/// `tree` and `setup`; then, while another session runs `ddl` (which adds foreign partition
/// `remote`) in an open transaction, subscribe `pt`: it waits for the DDL's locks, the event
/// trigger of which found no subscription to refuse; it must see the partition once the DDL
/// commits.
fn foreign_partition_added_while_subscribe_waits(setup: &str, ddl_sql: &str) {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut ddl = tree(&pg);
    exec(&mut ddl, setup);
    exec(&mut ddl, ddl_sql);
    let mut subscriber = pg.connect_as("postgres", "postgres");
    let url = rx.url("/pt");
    let subscribing = std::thread::spawn(move || {
        subscriber
            .batch_execute(&format!("SELECT webhook.subscribe('pt', 'pt', '{url}')"))
            .map_err(|e| support::describe(&e))
    });
    let waiting = "SELECT count(*) FROM pg_stat_activity
                    WHERE wait_event_type = 'Lock' AND query LIKE '%webhook.subscribe(%'
                      AND pid <> pg_backend_pid()";
    // From another session: pg_stat_activity holds still inside a transaction.
    let mut watcher = pg.connect_as("postgres", "postgres");
    let deadline = std::time::Instant::now() + support::WAIT;
    while support::count(&mut watcher, waiting) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "subscribe never waited for the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    exec(&mut ddl, "COMMIT");
    let e = subscribing
        .join()
        .expect("the subscribing thread panicked")
        .expect_err("subscribed a tree with a foreign partition");
    assert!(
        e.contains("its partition public.remote is a foreign table"),
        "{e}"
    );
}
