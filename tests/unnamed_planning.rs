//! Planning looks up functions it does not run: the expressions of the indexes of every table
//! a query reads, which it tries to inline to match them. A filter reading a table whose index
//! calls another role's function runs no such code, and must not be refused for it, at
//! subscribe or at the writes after it. One scenario per test.

mod support;

use support::receiver::Receiver;
use support::unnamed::*;
use support::{exec, WAIT};

#[test]
fn an_index_expression_of_a_table_the_filter_reads_does_not_stop_writes() {
    let (pg, _su, mut owner) = setup();
    exec(
        &mut owner,
        "CREATE FUNCTION m.lowered(text) RETURNS text LANGUAGE sql IMMUTABLE
             AS $$ SELECT lower($1) $$;
         CREATE TABLE m.customers (id int PRIMARY KEY, name text);
         CREATE INDEX ON m.customers (m.lowered(name));
         INSERT INTO m.customers VALUES (1, 'Ann');
         GRANT SELECT ON m.customers TO sub;",
    );
    let rx = Receiver::start();
    // In a new session: nothing of m.customers is cached yet when the filter is planned.
    subscribe_sub(
        &pg,
        &rx,
        ", events => '{insert}', filter => 'EXISTS (SELECT 1 FROM m.customers c WHERE c.id = NEW.id)'",
    );
    // Each write from a new session, which plans the filter afresh.
    exec(&mut writer(&pg), "INSERT INTO m.t VALUES (2, 'ok')");
    exec(&mut writer(&pg), "INSERT INTO m.t VALUES (1, 'ok')");
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["record"]["id"], 1);
}

#[test]
fn a_sql_function_shaped_like_a_subtype_diff_is_still_inlined() {
    // Only real subtype_diffs (in pg_range) get the hook at every call; another SQL function
    // with two arguments of one type returning float8 is inlined as PostgreSQL inlines it.
    let (_pg, mut su, _owner) = setup();
    exec(
        &mut su,
        "CREATE FUNCTION public.total(a int, b int) RETURNS float8 LANGUAGE sql IMMUTABLE
             AS $$ SELECT (a + b)::float8 $$;",
    );
    let plan: Vec<String> = su
        .query(
            "EXPLAIN (VERBOSE, COSTS OFF) SELECT public.total(id, id) FROM m.t",
            &[],
        )
        .unwrap_or_else(|e| panic!("EXPLAIN: {e}"))
        .iter()
        .map(|row| row.get(0))
        .collect();
    let plan = plan.join(" ");
    assert!(plan.contains("((id + id))::double precision"), "{plan}");
}
