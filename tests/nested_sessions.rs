//! Ordered subscriptions and what a statement's own triggers write to its table, across what a
//! session goes through around its statements: a library loaded in the middle of one (not
//! preloaded), transaction control in procedures, deferred constraint triggers, other
//! extensions' executor hooks, an ERROR caught while a move runs, and deep trigger recursion.
//! Each scenario ends with the order a receiver applying the events needs to end with the rows
//! the table has. One scenario per test.

mod support;

use support::cluster::Cluster;
use support::nested::{arrived, bump, ins, upd, TABLE};
use support::receiver::Receiver;
use support::{exec, subscribe};

/// A cluster without pg_webhook preloaded, with `setup` run and `t` subscribed (`options`):
/// the receiver and the cluster, whose sessions have not loaded the library yet.
fn not_preloaded(setup: &str, options: &str) -> (Cluster, Receiver) {
    let pg = Cluster::start(&["shared_preload_libraries = ''"]);
    let rx = Receiver::start();
    let mut db = pg.connect("postgres");
    exec(&mut db, &format!("CREATE EXTENSION pg_webhook; {setup}"));
    subscribe(&mut db, "t", "t", &rx.url("/t"), options);
    (pg, rx)
}

/// Preloads the library (a restart), so the workers send what was queued.
fn preload(pg: &Cluster) {
    pg.append_conf("shared_preload_libraries = 'pg_webhook'\n");
    pg.stop("fast");
    pg.pg_ctl_start();
}

#[test]
fn a_sessions_first_write_loading_the_library_keeps_its_rows_before_its_triggers_writes() {
    // No BEFORE trigger of the subscription's: the first capture, of the trigger's UPDATE,
    // loads the library while the INSERT is already finishing.
    let (pg, rx) = not_preloaded(&format!("{TABLE} {}", bump()), ", order_key => ARRAY['id']");
    let mut writer = pg.connect("postgres");
    exec(&mut writer, "INSERT INTO t VALUES (1, 0)");
    drop(writer);
    preload(&pg);
    assert_eq!(arrived(&rx, 2), [ins(1, 0), upd(1, 1)]);
}

#[test]
fn a_sessions_first_copy_loading_the_library_keeps_its_rows_before_its_triggers_writes() {
    // The COPY began before the library (loaded by its BEFORE STATEMENT trigger) had its hooks.
    let (pg, rx) = not_preloaded(&format!("{TABLE} {}", bump()), ", ordered => true");
    let mut writer = pg.connect("postgres");
    let mut copy = writer
        .copy_in("COPY t (id, v) FROM STDIN")
        .expect("COPY FROM STDIN");
    std::io::Write::write_all(&mut copy, b"1\t0\n").expect("COPY rows");
    copy.finish().expect("COPY finished");
    drop(writer);
    preload(&pg);
    assert_eq!(arrived(&rx, 2), [ins(1, 0), upd(1, 1)]);
}

/// `subscribed`, ordered as a whole.
fn ordered(setup: &str) -> (Cluster, Receiver, postgres::Client) {
    support::nested::subscribed(setup, "t", ", ordered => true")
}

#[test]
fn a_procedure_committing_and_rolling_back_between_writes_keeps_each_ones_order() {
    let (_pg, rx, mut db) = ordered(&format!(
        "{TABLE} {}
         CREATE PROCEDURE p() LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO t VALUES (1, 0); COMMIT;
             INSERT INTO t VALUES (2, 0); ROLLBACK;
             INSERT INTO t VALUES (3, 0); COMMIT;
         END $$;",
        bump()
    ));
    exec(&mut db, "CALL p()");
    assert_eq!(
        arrived(&rx, 4),
        [ins(1, 0), upd(1, 1), ins(3, 0), upd(3, 1)]
    );
}

#[test]
fn what_deferred_triggers_write_when_a_later_statements_trigger_fires_them_goes_after_it() {
    // Row 1's deferred trigger adds 100 to every row; row 2's AFTER trigger fires it with
    // SET CONSTRAINTS, after row 2 was inserted.
    let (_pg, rx, mut db) = ordered(&format!(
        "{TABLE} {} {}",
        support::nested::trigger(
            "all_up",
            "AFTER INSERT",
            "t",
            "UPDATE t SET v = v + 100; RETURN NULL;"
        )
        .replace(
            "CREATE TRIGGER all_up AFTER INSERT ON t",
            "CREATE CONSTRAINT TRIGGER all_up AFTER INSERT ON t \
             DEFERRABLE INITIALLY DEFERRED"
        )
        .replace("FOR EACH ROW", "FOR EACH ROW WHEN (NEW.v = 7)"),
        support::nested::trigger(
            "flush",
            "AFTER INSERT",
            "t",
            "IF NEW.v = 8 THEN SET CONSTRAINTS ALL IMMEDIATE; END IF; RETURN NULL;"
        )
    ));
    exec(
        &mut db,
        "BEGIN; INSERT INTO t VALUES (1, 7); INSERT INTO t VALUES (2, 8); COMMIT",
    );
    assert_eq!(
        arrived(&rx, 4),
        [ins(1, 7), ins(2, 8), upd(1, 107), upd(2, 108)]
    );
}

#[test]
fn other_extensions_executor_hooks_before_ours_leave_the_order_and_an_errors_frames_balanced() {
    let pg = Cluster::start(&[
        "shared_preload_libraries = 'pg_stat_statements,auto_explain,pg_webhook'",
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_analyze = on",
        "auto_explain.log_nested_statements = on",
        "pg_stat_statements.track = all",
    ]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        &format!(
            "{TABLE} {} {}",
            bump(),
            support::nested::trigger(
                "refuse",
                "AFTER UPDATE",
                "t",
                "IF NEW.id = 9 THEN RAISE 'refused'; END IF; RETURN NULL;"
            )
        ),
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), ", ordered => true");
    let refused = support::error_of(&mut db, "INSERT INTO t VALUES (9, 0)");
    assert!(refused.contains("refused"), "{refused}");
    exec(
        &mut db,
        "WITH x AS (INSERT INTO t VALUES (1, 0) RETURNING id) SELECT count(*) FROM x",
    );
    assert_eq!(arrived(&rx, 2), [ins(1, 0), upd(1, 1)]);
}

#[test]
fn a_move_cancelled_in_an_exception_block_leaves_the_statement_and_the_next_in_order() {
    // A DBA's trigger on the queue makes the move of row 101's nested UPDATE slow enough for the
    // statement timeout to cancel it; the trigger that inserted row 101 catches that and goes on.
    let (_pg, rx, mut db) = ordered(&format!(
        "{TABLE} {}
         CREATE FUNCTION slow_move() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF current_setting('test.slow', true) = 'on' THEN PERFORM pg_sleep(5); END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER slow_move BEFORE UPDATE ON webhook._event_queue
             FOR EACH ROW EXECUTE FUNCTION slow_move();
         {}",
        bump(),
        support::nested::trigger(
            "more",
            "AFTER INSERT",
            "t",
            "IF NEW.id < 100 THEN
                 PERFORM set_config('test.slow', 'on', true);
                 BEGIN
                     INSERT INTO t VALUES (NEW.id + 100, 0);
                 EXCEPTION WHEN query_canceled THEN NULL;
                 END;
                 PERFORM set_config('test.slow', 'off', true);
                 INSERT INTO t VALUES (NEW.id + 200, 0);
             END IF;
             RETURN NULL;"
        )
    ));
    exec(
        &mut db,
        "SET statement_timeout = '2s'; INSERT INTO t VALUES (1, 0); RESET statement_timeout",
    );
    exec(&mut db, "INSERT INTO t VALUES (2, 0)");
    assert_eq!(
        arrived(&rx, 10),
        [
            ins(1, 0),
            upd(1, 1),
            ins(201, 0),
            upd(201, 1),
            ins(2, 0),
            upd(2, 1),
            ins(102, 0),
            upd(102, 1),
            ins(202, 0),
            upd(202, 1)
        ]
    );
}

#[test]
fn a_trigger_recursing_past_the_stack_limit_fails_and_the_next_statement_keeps_its_order() {
    let (_pg, rx, mut db) = ordered(&format!(
        "{TABLE} {} {}",
        bump(),
        support::nested::trigger(
            "chain",
            "AFTER INSERT",
            "t",
            "IF NEW.id < current_setting('test.depth')::int THEN
                 INSERT INTO t VALUES (NEW.id + 1, 0);
             END IF;
             RETURN NULL;"
        )
    ));
    let deep = support::error_of(
        &mut db,
        "SET test.depth = 1000000; INSERT INTO t VALUES (1, 0)",
    );
    assert!(deep.contains("stack depth limit exceeded"), "{deep}");
    exec(&mut db, "SET test.depth = 2; INSERT INTO t VALUES (1, 0)");
    assert_eq!(
        arrived(&rx, 4),
        [ins(1, 0), upd(1, 1), ins(2, 0), upd(2, 1)]
    );
}
