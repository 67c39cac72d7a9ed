//! What catches capture triggers the event triggers missed: the worker's trigger check puts
//! them on a partition made while the event triggers were disabled, drops strays, ends a
//! subscription whose trigger was dropped, reports a trigger naming no subscription row and one
//! that is disabled, and is held up by no lock or race; and a partition made inside CREATE
//! SCHEMA gets its triggers without it. One scenario per test.

mod support;

use std::thread;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, ended_subscription, error_of, exec, stray_trigger, subscribe, text, WAIT};

/// The capture triggers on partition m_2.
const ON_M2: &str = "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'm_2'::regclass
                      AND tgfoid = 'webhook._capture()'::regprocedure";

/// A cluster where table m, partitioned with m_1, is subscribed to a receiver; `more` makes
/// other tables.
fn subscribed_m(more: &str) -> (Cluster, Receiver, postgres::Client) {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        &format!(
            "CREATE TABLE m (id int, at int) PARTITION BY RANGE (at);
             CREATE TABLE m_1 PARTITION OF m FOR VALUES FROM (0) TO (10);
             {more}"
        ),
    );
    subscribe(&mut db, "m", "m", &rx.url("/m"), "");
    (pg, rx, db)
}

/// Partition m_2, created while webhook_on_ddl is disabled.
fn partition_behind_the_event_triggers(db: &mut postgres::Client) {
    exec(
        db,
        "ALTER EVENT TRIGGER webhook_on_ddl DISABLE;
         CREATE TABLE m_2 PARTITION OF m FOR VALUES FROM (10) TO (20);
         ALTER EVENT TRIGGER webhook_on_ddl ENABLE ALWAYS;",
    );
}

/// Subscription `id`'s insert trigger on t, dropped while webhook_on_sql_drop is disabled.
fn insert_trigger_dropped_behind_the_event_triggers(db: &mut postgres::Client, id: i32) {
    exec(
        db,
        &format!(
            "ALTER EVENT TRIGGER webhook_on_sql_drop DISABLE;
             DROP TRIGGER pg_webhook_{id}_insert ON t;
             ALTER EVENT TRIGGER webhook_on_sql_drop ENABLE ALWAYS;"
        ),
    );
}

#[test]
fn a_partition_made_while_the_event_triggers_were_disabled_gets_its_trigger_from_the_worker() {
    let (pg, rx, mut db) = subscribed_m("");
    partition_behind_the_event_triggers(&mut db);
    assert_eq!(count(&mut db, ON_M2), 0, "the event trigger was disabled");
    // One capture trigger for each of insert, update and delete.
    wait_until(WAIT, "the worker to put the triggers on m_2", || {
        count(&mut db, ON_M2) == 3
    });
    exec(&mut db, "INSERT INTO m_2 VALUES (2, 15)");
    wait_until(WAIT, "the row written into m_2", || {
        rx.accepted_ids().contains(&2)
    });
    let log = pg.log();
    assert!(
        log.contains("lacked its trigger") && log.contains("m_2"),
        "the server log says which trigger was missing:\n{log}"
    );
}

#[test]
fn a_pg_webhook_trigger_naming_no_live_subscription_is_dropped_by_the_worker() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE t (id int); CREATE TABLE other (id int);",
    );
    let (id, _) = subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    let (ended, _) = subscribe(&mut db, "ended", "other", &rx.url("/ended"), "");
    exec(&mut db, "SELECT webhook.unsubscribe('ended')");
    // A superuser copies a capture trigger onto another table, naming a live subscription and
    // one that has ended.
    exec(
        &mut db,
        &format!(
            "CREATE TRIGGER stray_real AFTER INSERT ON other REFERENCING NEW TABLE AS pg_webhook_new
                 FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture('{id}');
             CREATE TRIGGER stray_gone AFTER INSERT ON t REFERENCING NEW TABLE AS pg_webhook_new
                 FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture('{ended}');"
        ),
    );
    wait_until(WAIT, "the worker to drop both stray triggers", || {
        count(
            &mut db,
            "SELECT count(*) FROM pg_trigger WHERE tgname IN ('stray_real', 'stray_gone')",
        ) == 0
    });
    // The subscription itself is untouched and both tables take writes.
    exec(
        &mut db,
        "INSERT INTO other VALUES (1); INSERT INTO t VALUES (2);",
    );
    wait_until(WAIT, "the row written into t", || {
        rx.accepted_ids().contains(&2)
    });
    assert_eq!(rx.accepted_ids(), vec![2], "nothing of table other is sent");
    assert_eq!(status(&mut db, "t").as_deref(), Some("active"));
}

#[test]
fn a_capture_trigger_dropped_while_the_event_triggers_were_disabled_ends_the_subscription() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int)");
    let (id, _) = subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    insert_trigger_dropped_behind_the_event_triggers(&mut db, id);
    assert_eq!(
        status(&mut db, "t").as_deref(),
        Some("active"),
        "nothing saw the drop"
    );
    // The worker's check does what webhook_on_sql_drop would have done.
    wait_until(WAIT, "the worker to end the subscription", || {
        status(&mut db, "t").as_deref() == Some("unsubscribed")
    });
    let reason = text(
        &mut db,
        "SELECT status_reason FROM webhook.subscriptions WHERE name = 't'",
    )
    .unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "its trigger pg_webhook_{id}_insert on public.t was dropped"
        )),
        "{reason}"
    );
}

#[test]
fn a_trigger_naming_a_subscription_without_a_row_is_kept_and_reported() {
    // As when a restore makes a table's triggers before it brings the subscriptions' rows.
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE t (id int);
         CREATE TRIGGER pg_webhook_999_insert AFTER INSERT ON t
             REFERENCING NEW TABLE AS pg_webhook_new
             FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture('999');",
    );
    wait_until(WAIT, "the worker to report the trigger", || {
        pg.log()
            .contains("pg_webhook_999_insert on public.t names subscription 999, which does not exist, and is left as it is")
    });
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'pg_webhook_999_insert'"
        ),
        1
    );
    // Writes fail, naming the trigger, rather than go uncaptured.
    let e = error_of(&mut db, "INSERT INTO t VALUES (1)");
    assert!(
        e.contains("names subscription 999, which does not exist"),
        "{e}"
    );
}

#[test]
fn a_lock_held_on_one_table_holds_up_no_other_repair_of_the_trigger_check() {
    let (pg, rx, mut db) = subscribed_m("CREATE TABLE other (id int);");
    // A stray trigger the check must drop, on a table an idle transaction keeps it from (its
    // lock taken first, so no check drops the trigger before it).
    let ended = ended_subscription(&mut db, &rx.url("/ended"), "other");
    let mut idle = pg.connect("postgres");
    exec(&mut idle, "BEGIN; SELECT count(*) FROM other");
    stray_trigger(&mut db, "other", "stray", ended);
    // And a partition the event triggers did not see.
    partition_behind_the_event_triggers(&mut db);
    wait_until(WAIT, "the worker to put the triggers on m_2", || {
        count(&mut db, ON_M2) == 3
    });
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'stray'"
        ),
        1,
        "the idle transaction's lock kept the stray trigger"
    );
    exec(&mut idle, "ROLLBACK");
    wait_until(
        WAIT,
        "the stray trigger dropped once the lock is gone",
        || {
            count(
                &mut db,
                "SELECT count(*) FROM pg_trigger WHERE tgname = 'stray'",
            ) == 0
        },
    );
}

#[test]
fn a_subscription_row_held_by_a_transaction_holds_up_no_other_repair_of_the_trigger_check() {
    let (pg, rx, mut db) = subscribed_m("CREATE TABLE t (id int);");
    let (id, _) = subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    // t's capture trigger dropped behind the event triggers: the check ends t, which needs its
    // row, and an open transaction holds that row.
    let mut holder = pg.connect("postgres");
    exec(
        &mut holder,
        &format!("BEGIN; SELECT 1 FROM webhook._subscriptions WHERE id = {id} FOR UPDATE"),
    );
    insert_trigger_dropped_behind_the_event_triggers(&mut db, id);
    // And a partition the event triggers did not see.
    partition_behind_the_event_triggers(&mut db);
    wait_until(WAIT, "the worker to put the triggers on m_2", || {
        count(&mut db, ON_M2) == 3
    });
    assert_eq!(status(&mut db, "t").as_deref(), Some("active"));
    exec(&mut holder, "ROLLBACK");
    wait_until(WAIT, "the worker to end t once its row is free", || {
        status(&mut db, "t").as_deref() == Some("unsubscribed")
    });
}

#[test]
fn a_partition_created_inside_create_schema_is_captured() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE m (id int, at int) PARTITION BY RANGE (at);",
    );
    subscribe(&mut db, "m", "m", &rx.url("/m"), "");
    exec(
        &mut db,
        "CREATE SCHEMA parts
             CREATE TABLE m_1 PARTITION OF public.m FOR VALUES FROM (0) TO (10);
         INSERT INTO parts.m_1 VALUES (1, 5);",
    );
    wait_until(WAIT, "the row written into parts.m_1", || {
        rx.accepted_ids().contains(&1)
    });
    // The event trigger made it, not the worker's check.
    assert!(!pg.log().contains("lacked its trigger"), "{}", pg.log());
}

#[test]
fn a_subscription_committed_while_the_trigger_check_reads_the_catalog_keeps_its_triggers() {
    // No worker in this database: its own check would race the one run here.
    let pg = Cluster::start(&["pg_webhook.database = 'elsewhere'"]);
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int)");
    // The check the worker runs, in a transaction that has written (as the worker's has), so
    // each of its statements reads the catalog as of its own start.
    const CHECK: &str = "BEGIN; SELECT pg_catalog.pg_current_xact_id();
                         SELECT webhook._sync_all_triggers(); COMMIT;";
    let mut check = pg.connect("postgres");
    check.batch_execute(CHECK).unwrap();
    let check_pid: i32 = check
        .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    // Holding pg_trigger stops the check at its read of the triggers, after it read the live
    // subscriptions; a subscription then commits, with its triggers, before the check goes on.
    exec(
        &mut db,
        "BEGIN; LOCK TABLE pg_catalog.pg_trigger IN ACCESS EXCLUSIVE MODE",
    );
    let checker = thread::spawn(move || check.batch_execute(CHECK));
    let mut watch = pg.connect("postgres");
    wait_until(WAIT, "the check to wait for pg_trigger", || {
        text(
            &mut watch,
            &format!(
                "SELECT string_agg(relation::regclass::text, ', ') FROM pg_locks
                  WHERE pid = {check_pid} AND NOT granted"
            ),
        )
        .as_deref()
            == Some("pg_trigger")
    });
    subscribe(&mut db, "t", "t", "http://127.0.0.1:9/t", "");
    exec(&mut db, "COMMIT");
    checker
        .join()
        .expect("the checking thread")
        .expect("the check");
    // The check saw the new subscription's triggers but not its row: they are not strays.
    exec(&mut db, "INSERT INTO t VALUES (1)");
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE table_name = 't'"
        ),
        1,
        "the row written after the check is queued"
    );
    assert_eq!(status(&mut db, "t").as_deref(), Some("active"));
}

/// The status of subscription `name`, as `webhook.subscriptions` shows it.
fn status(db: &mut postgres::Client, name: &str) -> Option<String> {
    db.query_opt(
        "SELECT status FROM webhook.subscriptions WHERE name = $1",
        &[&name],
    )
    .expect("reading the subscription's status")
    .map(|r| r.get(0))
}

#[test]
fn a_disabled_capture_trigger_is_reported_in_the_status_reason_and_the_log() {
    // ALTER TABLE … DISABLE TRIGGER (the table's owner may), ENABLE REPLICA TRIGGER or
    // pg_restore --disable-triggers left the subscription active with nothing said while its
    // table's changes went uncaptured.
    let (pg, _rx, mut db) = subscribed_m("");
    exec(&mut db, "ALTER TABLE m_1 DISABLE TRIGGER USER");
    let reason = "SELECT status || ': ' || status_reason FROM webhook.subscriptions";
    let off = text(&mut db, reason).unwrap_or_default();
    assert!(
        off.starts_with("active: its capture trigger pg_webhook_")
            && off.contains(" on m_1 is disabled: changes to that table are not captured"),
        "{off}"
    );
    wait_until(WAIT, "the trigger check to say so in the log", || {
        pg.log().contains("on public.m_1 is disabled")
    });
    exec(&mut db, "ALTER TABLE m_1 ENABLE TRIGGER USER");
    assert_eq!(text(&mut db, reason), None);
}
