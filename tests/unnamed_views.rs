//! A view's body and a row-level security policy are SQL their owner wrote and may change at any
//! time, and a filter or payload that reads them runs that SQL with its subscriber's rights:
//! with built-in functions only it could still end the subscriber's sessions
//! (`pg_terminate_backend`), read files a superuser subscriber may read, or read the
//! subscriber's own tables into an error the writer sees. So a filter or payload reads only the
//! views and policies of roles with its subscriber's rights, at subscribe and at every write.

mod support;

use support::receiver::Receiver;
use support::unnamed::*;
use support::{error_of, exec, WAIT};

/// tabowner's table m.lookup (k) with rows 1 and 2, which sub may read.
const LOOKUP: &str = "CREATE TABLE m.lookup (k int); INSERT INTO m.lookup VALUES (1), (2);
    GRANT SELECT ON m.lookup TO sub;";

/// Asserts that `error` is pg_webhook's refusal of `what` (a view's or a table's policies),
/// owned by tabowner, and not the view's or policy's own error (which would mean it ran).
fn assert_relation_refused(error: &str, what: &str) {
    assert!(
        error.contains(&format!("the expression reads {what}"))
            && error.contains("tabowner")
            && error.contains("would run with the rights of role sub")
            && !error.contains("ran as"),
        "{error}"
    );
}

#[test]
fn a_view_of_another_role_is_refused_even_with_built_in_sql_only() {
    let (pg, _su, mut owner) = setup();
    exec(
        &mut owner,
        &format!("{LOOKUP} CREATE VIEW m.v AS SELECT k FROM m.lookup; GRANT SELECT ON m.v TO sub;"),
    );
    let error = subscribe_error(
        &pg,
        "m.t",
        ", filter => 'EXISTS (SELECT FROM m.v AS l WHERE l.k = NEW.id)'",
    );
    assert_relation_refused(&error, "view m.v, owned by role tabowner");
}

#[test]
fn a_policy_of_another_role_that_binds_the_subscriber_is_refused() {
    let (pg, _su, mut owner) = setup();
    exec(
        &mut owner,
        &format!(
            "{LOOKUP} ALTER TABLE m.lookup ENABLE ROW LEVEL SECURITY;
             CREATE POLICY p ON m.lookup USING (k > 0);"
        ),
    );
    let error = subscribe_error(
        &pg,
        "m.t",
        ", payload => 'jsonb_build_object(''n'', (SELECT count(*) FROM m.lookup))'",
    );
    assert_relation_refused(&error, "table m.lookup, whose row-level security policies");
}

#[test]
fn a_policy_added_after_subscribe_fails_the_write_instead_of_running() {
    let (pg, mut su, mut owner) = setup();
    exec(&mut owner, LOOKUP);
    exec(
        &mut su,
        "CREATE SCHEMA s AUTHORIZATION sub; GRANT USAGE ON SCHEMA s TO PUBLIC;",
    );
    let mut sub = pg.connect_as("postgres", "sub");
    exec(
        &mut sub,
        "CREATE TABLE s.secret (api_key text); INSERT INTO s.secret VALUES ('sk_live_private');",
    );
    let rx = Receiver::start();
    subscribe_sub(
        &pg,
        &rx,
        ", events => '{insert}', filter => 'EXISTS (SELECT FROM m.lookup AS l WHERE l.k = NEW.id)'",
    );
    exec(&mut writer(&pg), "INSERT INTO m.t VALUES (1, 'ok')");
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["id"], 1);
    // Run as sub, this policy would read sub's secret into the writer's error.
    exec(
        &mut owner,
        "ALTER TABLE m.lookup ENABLE ROW LEVEL SECURITY;
         CREATE POLICY p ON m.lookup USING ((SELECT api_key FROM s.secret LIMIT 1)::int > 0);",
    );
    let error = error_of(&mut writer(&pg), "INSERT INTO m.t VALUES (2, 'ok')");
    assert_relation_refused(&error, "table m.lookup, whose row-level security policies");
    assert!(!error.contains("sk_live_private"), "{error}");
}

#[test]
fn a_view_of_the_subscriber_over_another_roles_table_runs() {
    let (pg, mut su, mut owner) = setup();
    exec(&mut owner, LOOKUP);
    exec(&mut su, "CREATE SCHEMA s AUTHORIZATION sub;");
    exec(
        &mut pg.connect_as("postgres", "sub"),
        "CREATE VIEW s.v AS SELECT k FROM m.lookup",
    );
    let rx = Receiver::start();
    subscribe_sub(
        &pg,
        &rx,
        ", events => '{insert}', filter => 'EXISTS (SELECT FROM s.v AS l WHERE l.k = NEW.id)'",
    );
    exec(
        &mut writer(&pg),
        "INSERT INTO m.t VALUES (5, 'ok'); INSERT INTO m.t VALUES (2, 'ok')",
    );
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["id"], 2);
}

#[test]
fn a_foreign_table_of_another_role_is_refused() {
    // Its owner may change its options, and so what its wrapper reads with the subscriber's
    // user mapping, at any time.
    let (pg, mut su, mut owner) = setup();
    lookup_and_a_server(&mut su, &mut owner);
    exec(
        &mut owner,
        "CREATE FOREIGN TABLE m.remote (k int) SERVER elsewhere OPTIONS (table_name 'lookup');
         GRANT SELECT ON m.remote TO sub;",
    );
    let error = subscribe_error(
        &pg,
        "m.t",
        ", filter => 'EXISTS (SELECT FROM m.remote AS r WHERE r.k = NEW.id)'",
    );
    assert_relation_refused(&error, "foreign table m.remote, owned by role tabowner");
}

/// As tabowner: table m.lookup, and a foreign-data server tabowner may use.
fn lookup_and_a_server(su: &mut postgres::Client, owner: &mut postgres::Client) {
    exec(
        su,
        "CREATE EXTENSION postgres_fdw;
         CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'postgres');
         GRANT USAGE ON FOREIGN SERVER elsewhere TO tabowner;",
    );
    exec(owner, LOOKUP);
}

#[test]
fn a_foreign_table_attached_under_a_table_the_filter_reads_fails_the_write() {
    // The planner adds a table's children as it plans: the check of the plan sees them.
    let (pg, mut su, mut owner) = setup();
    lookup_and_a_server(&mut su, &mut owner);
    let rx = Receiver::start();
    subscribe_sub(
        &pg,
        &rx,
        ", events => '{insert}', filter => 'EXISTS (SELECT FROM m.lookup AS l WHERE l.k = NEW.id)'",
    );
    exec(&mut writer(&pg), "INSERT INTO m.t VALUES (1, 'ok')");
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["id"], 1);
    exec(
        &mut owner,
        "CREATE FOREIGN TABLE m.child () INHERITS (m.lookup)
             SERVER elsewhere OPTIONS (table_name 'lookup');",
    );
    let error = error_of(&mut writer(&pg), "INSERT INTO m.t VALUES (2, 'ok')");
    assert_relation_refused(&error, "foreign table m.child, owned by role tabowner");
}

#[test]
fn a_view_read_by_the_subscribers_own_sql_function_is_refused() {
    // Not inlined under the guard: the function's query is judged as it is planned, when it
    // runs at the first write.
    let (pg, mut su, mut owner) = setup();
    exec(
        &mut owner,
        &format!("{LOOKUP} CREATE VIEW m.v AS SELECT k FROM m.lookup; GRANT SELECT ON m.v TO sub;"),
    );
    exec(&mut su, "CREATE SCHEMA s AUTHORIZATION sub;");
    exec(
        &mut pg.connect_as("postgres", "sub"),
        "CREATE FUNCTION s.known() RETURNS SETOF int LANGUAGE sql STABLE
             AS 'SELECT k FROM m.v'",
    );
    let rx = Receiver::start();
    subscribe_sub(
        &pg,
        &rx,
        ", events => '{insert}', filter => 'EXISTS (SELECT FROM s.known() AS i(k) WHERE i.k = NEW.id)'",
    );
    let error = error_of(&mut writer(&pg), "INSERT INTO m.t VALUES (1, 'ok')");
    assert_relation_refused(&error, "view m.v, owned by role tabowner");
}

#[test]
fn a_partitions_own_policies_do_not_refuse_a_filter_that_reads_its_parent() {
    // PostgreSQL applies no policy of a partition to a query of its parent (a common way to
    // close direct access to partitions): nothing of them runs.
    let (pg, _su, mut owner) = setup();
    exec(
        &mut owner,
        "CREATE TABLE m.p (k int) PARTITION BY RANGE (k);
         CREATE TABLE m.p1 PARTITION OF m.p FOR VALUES FROM (0) TO (100);
         ALTER TABLE m.p1 ENABLE ROW LEVEL SECURITY;
         INSERT INTO m.p VALUES (2);
         GRANT SELECT ON m.p TO sub;",
    );
    let rx = Receiver::start();
    subscribe_sub(
        &pg,
        &rx,
        ", events => '{insert}', filter => 'EXISTS (SELECT FROM m.p WHERE m.p.k = NEW.id)'",
    );
    exec(
        &mut writer(&pg),
        "INSERT INTO m.t VALUES (5, 'ok'); INSERT INTO m.t VALUES (2, 'ok')",
    );
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["id"], 2);
}

/// sub's function `function` (made in schema s) reads m.lookup, and a filter `filter` calls it;
/// a write goes out. Then tabowner replaces m.lookup with a view whose body reads sub's secret:
/// the next write must be refused before the view is planned.
fn a_table_replaced_by_a_view_under(function: &str, filter: &str) {
    let (pg, mut su, mut owner) = setup();
    exec(&mut owner, LOOKUP);
    exec(
        &mut su,
        "CREATE SCHEMA s AUTHORIZATION sub; GRANT USAGE ON SCHEMA s TO PUBLIC;",
    );
    let mut sub = pg.connect_as("postgres", "sub");
    exec(
        &mut sub,
        &format!("CREATE TABLE s.secret (x text); INSERT INTO s.secret VALUES ('sk_live_private'); {function}"),
    );
    let rx = Receiver::start();
    subscribe_sub(
        &pg,
        &rx,
        &format!(", events => '{{insert}}', filter => '{filter}'"),
    );
    exec(&mut writer(&pg), "INSERT INTO m.t VALUES (1, 'ok')");
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["id"], 1);
    exec(
        &mut owner,
        "ALTER TABLE m.lookup RENAME TO lookup_old;
         CREATE VIEW m.lookup AS SELECT k FROM m.lookup_old
          WHERE k = (pg_catalog.table_to_xml('s.secret'::regclass, true, false, ''))::text::int4;
         GRANT SELECT ON m.lookup TO sub;",
    );
    let error = error_of(&mut writer(&pg), "INSERT INTO m.t VALUES (2, 'ok')");
    assert_relation_refused(&error, "view m.lookup, owned by role tabowner");
    assert!(!error.contains("sk_live_private"), "{error}");
}

#[test]
fn a_view_that_replaces_a_table_the_subscribers_function_reads_is_refused_before_planning() {
    // The planner evaluates stable functions to estimate a condition: a view's body must be
    // judged before the query that reads it is planned, not only before it runs. A
    // set-returning SQL function in FROM would be inlined, its body planned with the query.
    a_table_replaced_by_a_view_under(
        "CREATE FUNCTION s.known() RETURNS SETOF int LANGUAGE sql STABLE
             AS 'SELECT k FROM m.lookup';",
        "EXISTS (SELECT FROM s.known() AS i(k) WHERE i.k = NEW.id)",
    );
}

#[test]
fn a_view_that_replaces_a_table_a_scalar_helper_reads_is_refused_before_planning() {
    // Scalar SQL helpers are inlined under the guard as anywhere: only a body without FROM or
    // subqueries is, so one that reads a table runs apart, its query judged as it is planned.
    a_table_replaced_by_a_view_under(
        "CREATE FUNCTION s.known(int) RETURNS boolean LANGUAGE sql STABLE
             AS 'SELECT EXISTS (SELECT FROM m.lookup WHERE k = $1)';",
        "s.known(NEW.id) AND EXISTS (SELECT FROM s.known(NEW.id) AS i(b) WHERE i.b)",
    );
}
