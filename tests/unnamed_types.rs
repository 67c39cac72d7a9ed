//! Values a filter or payload renders as json, or casts to text in a built-in SQL function,
//! go through code PostgreSQL looks up as the query runs (a type's cast to json or text),
//! which the type's owner may make at any time: such values must be of a type whose owner has
//! the subscriber's rights. Also: a range type's support functions, which only the planner
//! calls, and objects made after the statement's snapshot.

mod support;

use postgres::Client;
use support::cluster::Cluster;
use support::receiver::Receiver;
use support::unnamed::*;
use support::{error_of, exec, subscribe, WAIT};

#[test]
fn a_payload_rendering_another_roles_type_as_json_is_refused_cast_or_not() {
    // The type's owner may make a cast to json at any time, between the check and the run.
    let (pg, _su, _owner) = setup();
    let error = subscribe_error(
        &pg,
        "m.t",
        ", payload => 'jsonb_build_object(''m'', NEW.mood)'",
    );
    assert_type_refused(&error, "render as json", "m.mood");
}

#[test]
fn a_whole_row_payload_renders_every_column_type() {
    let (pg, _su, _owner) = setup();
    let error = subscribe_error(&pg, "m.t", ", payload => 'to_jsonb(NEW)'");
    assert_type_refused(&error, "render as json", "m.mood");
}

#[test]
fn text_built_from_another_roles_type_by_a_built_in_sql_function_is_refused() {
    // `text || m.mood` is textanycat, whose body casts its argument to text when planned.
    let (pg, _su, _owner) = setup();
    let error = subscribe_error(
        &pg,
        "m.t",
        ", filter => '''mood:'' || NEW.mood = ''mood:ok'''",
    );
    assert_type_refused(&error, "cast to text", "m.mood");
}

#[test]
fn a_value_the_expression_renders_itself_is_sent_whatever_casts_come_later() {
    let (pg, _su, mut owner) = setup();
    let rx = Receiver::start();
    subscribe_sub(
        &pg,
        &rx,
        ", events => '{insert}', payload => 'jsonb_build_object(''m'', pg_catalog.format(''%s'', NEW.mood))'",
    );
    exec(
        &mut owner,
        &format!(
            "{IMPLICIT_CAST}; CREATE CAST (m.mood AS json) WITH FUNCTION m.loud_json(m.mood);"
        ),
    );
    exec(&mut writer(&pg), "INSERT INTO m.t VALUES (1, 'ok')");
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["m"], "ok");
}

#[test]
fn a_row_is_rendered_by_its_fields() {
    let (pg, _su, mut owner) = setup();
    plain_table(&mut owner, "CREATE TYPE m.color AS ENUM ('red');");
    let error = subscribe_error(
        &pg,
        "m.plain",
        ", payload => 'jsonb_build_object(''r'', ROW(''red''::m.color, NEW.id))'",
    );
    assert_type_refused(&error, "render as json", "m.color");
}

#[test]
fn a_record_of_declared_columns_is_rendered_by_their_types() {
    let (pg, _su, mut owner) = setup();
    plain_table(&mut owner, "CREATE TYPE m.color AS ENUM ('red');");
    let error = subscribe_error(
        &pg,
        "m.plain",
        r#", payload => '(SELECT pg_catalog.to_jsonb(x) FROM pg_catalog.jsonb_to_record(''{"b": "red"}'') AS x(b m.color))'"#,
    );
    assert_type_refused(&error, "render as json", "m.color");
}

#[test]
fn a_value_whose_type_is_known_only_as_it_runs_is_refused() {
    let (pg, _su, mut owner) = setup();
    plain_table(&mut owner, "");
    let error = subscribe_error(&pg, "m.plain",
        ", payload => '(SELECT pg_catalog.to_jsonb(s.most_common_vals) FROM pg_catalog.pg_stats s LIMIT 1)'",
    );
    assert!(
        error.contains("a value of type anyarray, whose actual type is known only as it runs"),
        "{error}"
    );
}

/// tabowner's m.loud_diff(int, int), a range's subtype_diff that raises when `sub` runs it.
const LOUD_DIFF: &str = "CREATE FUNCTION m.loud_diff(int, int) RETURNS float8 IMMUTABLE
    LANGUAGE plpgsql AS $$
        BEGIN
            IF current_user = 'sub' THEN
                RAISE EXCEPTION 'tabowner''s function ran as %', current_user;
            END IF;
            RETURN $1 - $2;
        END $$;";

#[test]
fn a_range_types_support_function_is_checked_though_only_the_planner_calls_it() {
    let (pg, mut su, mut owner) = setup();
    plain_table(
        &mut owner,
        &format!(
            "{LOUD_DIFF}
         CREATE TYPE m.r AS RANGE (subtype = int, subtype_diff = m.loud_diff);
         CREATE TABLE m.v (id int, r m.r);
         GRANT SELECT ON m.v TO sub;"
        ),
    );
    exec(
        &mut su,
        "INSERT INTO m.v SELECT g, m.r(g, g + 10) FROM generate_series(1, 500) g; ANALYZE m.v;",
    );
    let error = subscribe_error(
        &pg,
        "m.plain",
        ", filter => 'NOT EXISTS (SELECT FROM m.v o WHERE o.r && m.r(100, 120) AND o.id = NEW.id)'",
    );
    assert_refused(
        &error,
        "m.loud_diff(integer,integer)",
        "it is a support function of range type m.r",
    );
}

#[test]
fn a_range_type_made_after_the_writers_snapshot_has_its_support_function_checked() {
    let (pg, mut su, mut owner) = setup();
    plain_table(
        &mut owner,
        &format!(
            "{LOUD_DIFF}
         GRANT INSERT ON m.plain TO writer;
         CREATE TYPE m.r AS RANGE (subtype = int);
         CREATE TABLE m.v (id int, r m.r);
         GRANT SELECT ON m.v TO sub;"
        ),
    );
    let rx = Receiver::start();
    subscribe(
        &mut pg.connect_as("postgres", "sub"),
        "s",
        "m.plain",
        &rx.url("/s"),
        ", events => '{insert}', filter => 'NOT EXISTS (SELECT FROM m.v o WHERE o.r && m.r(100, 120) AND o.id = NEW.id)'",
    );
    let mut writer = writer_with_snapshot(&pg);
    // After the writer's snapshot, the same names come back with a support function.
    exec(
        &mut owner,
        "DROP TABLE m.v; DROP TYPE m.r;
         CREATE TYPE m.r AS RANGE (subtype = int, subtype_diff = m.loud_diff);
         CREATE TABLE m.v (id int, r m.r);
         GRANT SELECT ON m.v TO sub;",
    );
    exec(
        &mut su,
        "INSERT INTO m.v SELECT g, m.r(g, g + 10) FROM generate_series(1, 500) g; ANALYZE m.v;",
    );
    let error = error_of(&mut writer, "INSERT INTO m.plain VALUES (1)");
    assert_refused(
        &error,
        "m.loud_diff(integer,integer)",
        "it is a support function of range type m.r",
    );
}

#[test]
fn a_superusers_type_is_rendered() {
    let (pg, mut su, mut owner) = setup();
    exec(&mut su, "CREATE TYPE public.sutype AS ENUM ('a')");
    exec(
        &mut owner,
        "CREATE TABLE m.s (id int PRIMARY KEY, c public.sutype);
         GRANT SELECT, TRIGGER ON m.s TO sub; GRANT INSERT ON m.s TO writer;",
    );
    let rx = Receiver::start();
    let mut sub = pg.connect_as("postgres", "sub");
    subscribe(
        &mut sub,
        "s",
        "m.s",
        &rx.url("/s"),
        ", events => '{insert}', payload => 'to_jsonb(NEW)'",
    );
    exec(&mut writer(&pg), "INSERT INTO m.s VALUES (1, 'a')");
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["c"], "a");
}

#[test]
fn a_cast_made_after_the_writers_snapshot_is_refused_not_run() {
    // The text is analysed against the latest catalog; owners are read in the statement's
    // snapshot, which does not see the function: it must not pass as trusted.
    let (pg, _su, mut owner) = setup();
    let rx = Receiver::start();
    subscribe_sub(
        &pg,
        &rx,
        ", events => '{insert}', filter => 'NEW.mood::text = ''ok'''",
    );
    let mut writer = writer_with_snapshot(&pg);
    exec(
        &mut owner,
        "CREATE FUNCTION m.late(m.mood) RETURNS text LANGUAGE plpgsql
             AS $$ BEGIN RAISE EXCEPTION 'tabowner''s function ran as %', current_user; END $$;
         CREATE CAST (m.mood AS text) WITH FUNCTION m.late(m.mood);",
    );
    let refused = writer
        .batch_execute("INSERT INTO m.t VALUES (1, 'ok')")
        .expect_err("the write was not refused");
    let refused = refused.as_db_error().expect("a database error");
    assert!(
        refused.message().contains("would use a function (OID ")
            && !refused.message().contains("ran as"),
        "{refused:?}"
    );
    // A serialization failure, which clients retry in a new transaction: that one checks it.
    assert_eq!(refused.code().code(), "40001", "{refused:?}");
}

/// A `writer` session in a REPEATABLE READ transaction whose snapshot is taken.
fn writer_with_snapshot(pg: &Cluster) -> Client {
    let mut writer = writer(pg);
    exec(
        &mut writer,
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1",
    );
    writer
}
