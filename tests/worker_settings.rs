//! Settings a database or role hands the workers: PostgreSQL applies `ALTER DATABASE ... SET`
//! and `ALTER ROLE ... SET` to background workers as they connect, and a database's owner may
//! set most of them. Before they run any SQL, the workers put the server's values back over
//! them and pin what would hijack or stop them.

mod support;

use postgres::Client;
use support::backfill::{backfilled, wait_state};
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, subscribe, text, WAIT};

/// A cluster with database `app` owned by the ordinary role `dbo`, and pg_webhook made there
/// by the superuser. Returns the cluster and a superuser session in `app`.
fn app_owned_by_dbo() -> (Cluster, Client) {
    let pg = Cluster::start(&[]);
    let mut admin = pg.connect("postgres");
    exec(&mut admin, "CREATE ROLE dbo LOGIN");
    exec(&mut admin, "CREATE DATABASE app OWNER dbo");
    let db = pg.connect("app");
    (pg, db)
}

/// `app_owned_by_dbo` with table `t` (made, then `setup` run, by the superuser) subscribed
/// with `options`, and the receiver.
fn subscribed_app(setup: &str, options: &str) -> (Cluster, Client, Receiver) {
    let (pg, mut db) = app_owned_by_dbo();
    let rx = Receiver::start();
    exec(
        &mut db,
        &format!("CREATE EXTENSION pg_webhook; CREATE TABLE t (id int PRIMARY KEY); {setup}"),
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), options);
    (pg, db, rx)
}

/// The delivery workers and the callback runner of `app` have set themselves up (each names
/// itself once its session settings are in place).
fn wait_workers_set_up(db: &mut Client) {
    wait_until(WAIT, "the worker and the callback runner of app", || {
        count(
            db,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app'
                AND application_name IN ('pg_webhook worker 0', 'pg_webhook callbacks')",
        ) == 2
    });
}

/// Backfills the three rows of `t` with `condition` as the filter (run in the chunk's
/// transaction, in worker 0, as the owner) and checks that all three passed it and arrived.
fn backfill_sees(db: &mut Client, rx: &Receiver, condition: &str) {
    exec(
        db,
        &format!("SELECT webhook.backfill('t', filter => $${condition}$$)"),
    );
    wait_state(db, "t", "done");
    assert_eq!(
        count(
            db,
            "SELECT rows_sent FROM webhook.backfills WHERE subscription = 't'"
        ),
        3,
        "rows that passed the filter: {condition}"
    );
    wait_until(WAIT, "the three rows backfilled", || {
        backfilled(rx).len() == 3
    });
}

/// Runs `alter` as `app`'s owner, restarts, and checks that a change is delivered and that
/// the workers run as the bootstrap superuser.
fn delivers_as_the_superuser_after(alter: &str) {
    let (pg, _, rx) = subscribed_app("", "");
    exec(&mut pg.connect_as("app", "dbo"), alter);
    // (The superuser's own session takes the database's role too: set it back.)
    let mut db = restart_and_deliver(&pg, &rx, "SET role = none; INSERT INTO t VALUES (1)");
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app'
                AND backend_type LIKE 'pg_webhook%' AND usesysid <> 10"
        ),
        0,
        "the workers run as the bootstrap superuser"
    );
}

/// Restarts the server, runs `write` (one change of `t`) as the superuser in `app`, waits for
/// its delivery and for the workers to set up their sessions; returns that session.
fn restart_and_deliver(pg: &Cluster, rx: &Receiver, write: &str) -> Client {
    restart(pg);
    let mut db = pg.connect("app");
    exec(&mut db, write);
    rx.wait_for(1, WAIT);
    wait_workers_set_up(&mut db);
    db
}

/// Restarts the server, so the workers connect again under the settings just made.
fn restart(pg: &Cluster) {
    pg.stop("fast");
    pg.pg_ctl_start();
}

/// The owner of a database puts `*(float8, int4)` in `public` (which it owns): an operator
/// PostgreSQL picks over pg_catalog's for that pair of types wherever `public` is on the search
/// path. The workers' first queries ran under the database's search path, one of them
/// multiplying a float8 by an int4, so the operator's function ran as the bootstrap superuser
/// (and could have made its owner one).
#[test]
fn an_operator_a_database_owner_puts_in_public_never_runs_in_the_workers() {
    let (pg, _, rx) = subscribed_app("", "");
    let mut owner = pg.connect_as("app", "dbo");
    exec(
        &mut owner,
        "CREATE TABLE public.ran_as (who text);
         CREATE FUNCTION public.mul(float8, int4) RETURNS float8 LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO public.ran_as VALUES (current_user);
             RETURN $1 OPERATOR(pg_catalog.*) $2;
         END $$;
         CREATE OPERATOR public.* (LEFTARG = float8, RIGHTARG = int4, FUNCTION = public.mul);",
    );
    // The operator works where it is meant to: in the owner's own session.
    exec(&mut owner, "SELECT 1.5::float8 * 2");
    assert_eq!(count(&mut owner, "SELECT count(*) FROM public.ran_as"), 1);
    drop(owner);
    // The workers set up their sessions again, with the operator in place.
    let mut db = restart_and_deliver(&pg, &rx, "INSERT INTO t VALUES (1)");
    assert_eq!(
        text(&mut db, "SELECT string_agg(who, ', ') FROM public.ran_as").as_deref(),
        Some("dbo"),
        "the owner's operator ran only in the owner's session"
    );
}

/// A database's owner may `ALTER DATABASE ... SET role`: the workers ran as that role, could
/// not set up their sessions, and delivered nothing.
#[test]
fn a_role_the_database_sets_does_not_become_the_workers() {
    delivers_as_the_superuser_after("ALTER DATABASE app SET role = 'dbo'");
}

/// `default_transaction_read_only = on` for the superuser in the database (a common guard
/// against its accidental writes): every claim failed and nothing was delivered.
#[test]
fn a_read_only_default_for_the_superuser_does_not_stop_delivery() {
    let (pg, _, rx) = subscribed_app(
        "GRANT INSERT ON t TO dbo;
         ALTER ROLE postgres IN DATABASE app SET default_transaction_read_only = on",
        "",
    );
    restart(&pg);
    exec(&mut pg.connect_as("app", "dbo"), "INSERT INTO t VALUES (1)");
    rx.wait_for(1, WAIT);
    let mut db = pg.connect("app");
    wait_until(WAIT, "the delivery recorded", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 1
    });
}

/// Under a database's REPEATABLE READ default a backfill chunk kept the snapshot it started
/// with, so its read after waiting out an ordered subscription's writers could send a row
/// older than an event already sent; and the worker's statements are planned for index scans
/// and a plan cache mode of its choosing, which a database's planner settings changed. A
/// backfill chunk's filter (run in the chunk's transaction, as the owner) sees what the
/// workers pin.
#[test]
fn the_workers_keep_their_isolation_and_planner_settings_whatever_the_database_sets() {
    let (pg, _, rx) = subscribed_app(
        "INSERT INTO t SELECT generate_series(1, 3);
         ALTER DATABASE app SET default_transaction_isolation = 'repeatable read';
         ALTER DATABASE app SET plan_cache_mode = 'force_generic_plan';
         ALTER DATABASE app SET enable_indexscan = off;
         ALTER DATABASE app SET enable_indexonlyscan = off",
        ", ordered => true",
    );
    restart(&pg);
    let mut db = pg.connect("app");
    backfill_sees(
        &mut db,
        &rx,
        "pg_catalog.current_setting('transaction_isolation') = 'read committed'
         AND pg_catalog.current_setting('plan_cache_mode') = 'auto'
         AND pg_catalog.current_setting('enable_indexscan') = 'on'
         AND pg_catalog.current_setting('enable_indexonlyscan') = 'on'",
    );
}

/// Whatever a database's owner or a role setting changes, the workers run with the server's
/// settings: the planner's join methods (with `enable_nestloop` and `enable_mergejoin` off,
/// every outcome recorded read the whole queue, so a backlog drained in quadratic time),
/// `exit_on_error` (every ERROR a worker catches and goes on from would end it), `work_mem`.
/// How values are written and read stays the database's (`DateStyle`), and so does a setting
/// the server does not define (a placeholder such as `app.tenant`), for the user's own SQL. A
/// backfill chunk's filter (run in the chunk's transaction, as the owner) sees what the
/// workers run with.
#[test]
fn the_workers_run_with_the_servers_settings_not_those_of_the_database_or_role() {
    let pg = Cluster::start(&["work_mem = '8MB'"]);
    let mut admin = pg.connect("postgres");
    exec(&mut admin, "CREATE ROLE dbo LOGIN");
    exec(&mut admin, "CREATE DATABASE app OWNER dbo");
    let mut db = pg.connect("app");
    exec(
        &mut db,
        "CREATE EXTENSION pg_webhook; CREATE TABLE t (id int PRIMARY KEY);
         INSERT INTO t SELECT generate_series(1, 3);
         ALTER ROLE postgres IN DATABASE app SET enable_hashjoin = off;
         ALTER DATABASE app SET app.tenant = 'acme'",
    );
    let rx = Receiver::start();
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    exec(
        &mut pg.connect_as("app", "dbo"),
        "ALTER DATABASE app SET enable_nestloop = off;
         ALTER DATABASE app SET enable_mergejoin = off;
         ALTER DATABASE app SET exit_on_error = on;
         ALTER DATABASE app SET work_mem = '64kB';
         ALTER DATABASE app SET \"DateStyle\" = 'SQL, DMY'",
    );
    restart(&pg);
    let mut db = pg.connect("app");
    // The settings hold for the database's own sessions.
    assert_eq!(
        text(&mut db, "SHOW enable_nestloop").as_deref(),
        Some("off")
    );
    backfill_sees(
        &mut db,
        &rx,
        "pg_catalog.current_setting('enable_nestloop') = 'on'
         AND pg_catalog.current_setting('enable_mergejoin') = 'on'
         AND pg_catalog.current_setting('enable_hashjoin') = 'on'
         AND pg_catalog.current_setting('exit_on_error') = 'off'
         AND pg_catalog.current_setting('work_mem') = '8MB'
         AND pg_catalog.current_setting('DateStyle') = 'SQL, DMY'
         AND pg_catalog.current_setting('app.tenant', true) = 'acme'",
    );
}

/// A database's owner may `ALTER DATABASE ... SET session_authorization` to itself: the workers,
/// which connect as no one in particular, took it as their session user, refused to run as a
/// role that is not a superuser, and were started again and again, so nothing in the database
/// was delivered (client sessions are not affected: their login sets it).
#[test]
fn a_session_authorization_the_database_sets_does_not_stop_delivery() {
    delivers_as_the_superuser_after("ALTER DATABASE app SET session_authorization = 'dbo'");
}

#[test]
fn the_claim_size_defaults_to_2000() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    assert_eq!(
        text(&mut db, "SHOW pg_webhook.batch_size").as_deref(),
        Some("2000"),
        "the default the README documents"
    );
}
