//! A filter's SQL functions plan their own queries as they run (see `src/plan_check.rs`), and
//! PostgreSQL may plan those in parallel: the function-manager guard and the planner's checks
//! live in the backend that runs the filter, not in its parallel workers. And a worker's
//! ERROR, closed in the wrong order on its way out, crashed the server.

mod support;

use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{exec, subscribe};

/// Settings a writer's session may take that plan even a small scan in parallel.
const PARALLEL: &str = "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
     SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2;";

/// A cluster where alice subscribes her table t with a filter that reads, through her own
/// set-returning SQL function over her table alice_log (whose mood column is of mallory's
/// type mal.mood), which rows pass; mallory may write t. Returns the cluster, a superuser,
/// alice and mallory.
fn setup(
    function_body: &str,
) -> (
    Cluster,
    Receiver,
    postgres::Client,
    postgres::Client,
    postgres::Client,
) {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE alice LOGIN; CREATE ROLE mallory LOGIN;
         GRANT webhook_admin TO alice; GRANT CREATE ON SCHEMA public TO alice;
         CREATE SCHEMA mal AUTHORIZATION mallory; GRANT USAGE ON SCHEMA mal TO alice;",
    );
    let mut mallory = pg.connect_as("postgres", "mallory");
    exec(&mut mallory, "CREATE TYPE mal.mood AS ENUM ('ok', 'sad');");
    let mut alice = pg.connect_as("postgres", "alice");
    exec(
        &mut alice,
        &format!(
            "CREATE TABLE public.alice_log (id int, mood mal.mood);
             INSERT INTO public.alice_log SELECT g, 'ok' FROM generate_series(1, 10000) g;
             ANALYZE public.alice_log;
             CREATE TABLE public.alice_secret (s text);
             INSERT INTO public.alice_secret VALUES ('topsecret');
             CREATE TABLE public.t (id int PRIMARY KEY);
             GRANT INSERT ON public.t TO mallory;
             CREATE FUNCTION public.ok_ids() RETURNS SETOF int LANGUAGE sql STABLE PARALLEL SAFE
                 AS $$ {function_body} $$;"
        ),
    );
    subscribe(
        &mut alice,
        "t",
        "public.t",
        &rx.url("/t"),
        ", events => '{insert}',
           filter => 'EXISTS (SELECT 1 FROM public.ok_ids() i WHERE i OPERATOR(pg_catalog.=) NEW.id)'",
    );
    (pg, rx, su, alice, mallory)
}

/// Whether the server is still up, not restarted after a crash.
fn survived(pg: &Cluster) -> bool {
    !pg.log().contains("terminated by signal")
}

/// The error mallory's insert into t (under `PARALLEL`) fails with; a lost connection (the
/// server crashed) fails the test.
fn insert_error(pg: &Cluster, mallory: &mut postgres::Client) -> String {
    match mallory.batch_execute(&format!("{PARALLEL} INSERT INTO public.t VALUES (1)")) {
        Ok(()) => panic!("the insert succeeded"),
        Err(e) => match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => panic!("the connection was lost: {e}\n{}", pg.log()),
        },
    }
}

#[test]
fn a_cast_made_since_runs_in_no_parallel_worker_of_a_filters_function() {
    // alice's function casts her moods to text, with the type's output function until
    // mallory makes a cast of her own (plpgsql, reading alice's secret as alice). The guard
    // refused it in the backend; in a parallel worker it ran ("leaked as alice: topsecret"),
    // and then the backend crashed.
    let (pg, _rx, _su, _alice, mut mallory) =
        setup("SELECT id FROM public.alice_log l WHERE l.mood::text = 'ok'");
    exec(
        &mut mallory,
        "CREATE FUNCTION mal.leak(mal.mood) RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
         BEGIN
             RAISE EXCEPTION 'leaked as %: %', current_user,
                 (SELECT pg_catalog.string_agg(s, ',') FROM public.alice_secret);
         END $$;
         CREATE CAST (mal.mood AS text) WITH FUNCTION mal.leak(mal.mood);",
    );
    let error = insert_error(&pg, &mut mallory);
    assert!(survived(&pg), "{}", pg.log());
    assert!(!error.contains("leaked"), "{error}");
    assert!(
        error.contains("would run function mal.leak(mal.mood), owned by role mallory"),
        "{error}"
    );
    assert!(!pg.log().contains("leaked as alice"), "{}", pg.log());
}

#[test]
fn an_error_in_a_filters_function_planned_in_parallel_fails_only_the_write() {
    let (pg, _rx, _su, _alice, mut mallory) =
        setup("SELECT id FROM public.alice_log WHERE 1 / (id - id) = 1");
    let error = insert_error(&pg, &mut mallory);
    assert!(survived(&pg), "{}", pg.log());
    assert!(error.contains("division by zero"), "{error}");
}
