//! A value made into a domain is checked against the domain's constraints as the query runs,
//! and the domain's owner may add a CHECK calling any function at any time: a filter or
//! payload may make values into a domain only when its owner has the subscriber's rights, or
//! when the text names that domain. Such values come from casts, from a named function's
//! domain parameters, from composite values read from text or json, and from column
//! definition lists.

mod support;

use support::receiver::Receiver;
use support::unnamed::*;
use support::{error_of, exec, subscribe, WAIT};

/// tabowner's domain m.d over text, whose CHECK raises an error naming the role it runs as,
/// and m.d2 over it; composite m.c (a m.d); range m.dr over m.d; m.takes(m.d) and m.takes_c(m.c), functions that
/// do nothing (in PL/pgSQL, so that they are not inlined, dropping their arguments).
const DOMAINS: &str = "CREATE FUNCTION m.loud_check(text) RETURNS boolean LANGUAGE plpgsql
         AS $$ BEGIN
             IF current_user <> 'tabowner' THEN
                 RAISE EXCEPTION 'tabowner''s check ran as %', current_user;
             END IF;
             RETURN true;
         END $$;
     CREATE DOMAIN m.d AS text CHECK (m.loud_check(VALUE));
     CREATE DOMAIN m.d2 AS m.d;
     CREATE TYPE m.c AS (a m.d);
     CREATE TYPE m.dr AS RANGE (subtype = m.d);
     CREATE FUNCTION m.takes(m.d) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN RETURN true; END $$;
     CREATE FUNCTION m.takes_c(m.c) RETURNS boolean LANGUAGE plpgsql
         AS $$ BEGIN RETURN true; END $$;
     GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA m TO sub;";

/// Asserts that, with DOMAINS made, `expression` run by `sub` runs m.d's check as `sub`, and
/// that a filter holding it is refused for checking values against domain `domain`.
fn refused(expression: &str, domain: &str) {
    let error = refusal(expression);
    assert!(
        error.contains(&format!(
            "would check a value against domain {domain}, owned by role tabowner, with the rights of role sub"
        )),
        "{error}"
    );
}

/// Asserts that, with DOMAINS made, `expression` run by `sub` runs m.d's check as `sub` as it
/// is analysed, and that a filter holding it is refused then, before the check runs.
fn refused_as_read(expression: &str) {
    let error = refusal(expression);
    assert!(
        error.contains("would run function m.loud_check(text), owned by role tabowner, with the rights of role sub as PostgreSQL reads the expression"),
        "{error}"
    );
}

/// With DOMAINS made: asserts that `expression` run by `sub` runs m.d's check as `sub`, and
/// returns the error a filter holding it meets at subscribe, which must not be the check's.
fn refusal(expression: &str) -> String {
    let (pg, _su, mut owner) = setup();
    exec(&mut owner, DOMAINS);
    let plain = error_of(
        &mut pg.connect_as("postgres", "sub"),
        &format!("SELECT {expression}"),
    );
    assert!(plain.contains("check ran as sub"), "{plain}");
    let filter = format!("NEW.id > 0 AND {expression}");
    let error = subscribe_error(
        &pg,
        "m.t",
        &format!(", filter => '{}'", filter.replace('\'', "''")),
    );
    assert!(!error.contains("ran as"), "{error}");
    error
}

#[test]
fn a_named_functions_domain_parameter_is_checked_as_the_caller() {
    // Naming m.takes trusts its body, not the CHECK its argument meets on the way in.
    refused("m.takes('x')", "m.d");
}

#[test]
fn a_domain_under_a_named_domain_is_checked() {
    refused("'x'::m.d2 IS NOT NULL", "m.d");
}

#[test]
fn a_composite_literal_is_refused_before_its_columns_domains_are_checked() {
    // PostgreSQL reads the literal, and so runs the check, while it analyses the text.
    refused("('(x)'::m.c).a IS NOT NULL", "m.d");
}

#[test]
fn an_array_literal_of_a_named_domain_is_refused_before_its_check_runs() {
    // Naming m.d trusts its check, but the check calls m.loud_check, read with the literal.
    refused_as_read("('{x}'::m.d[]) IS NOT NULL");
}

#[test]
fn a_range_literal_over_a_domain_is_refused_before_the_check_runs() {
    refused("('[a,b)'::m.dr) IS NOT NULL", "m.d");
}

#[test]
fn an_untyped_literal_given_to_a_composite_parameter_is_refused_as_it_is_read() {
    refused("m.takes_c('(x)')", "m.d");
}

#[test]
fn a_composite_made_from_text_at_run_time_checks_its_columns_domains() {
    refused("(('(x)'::text)::m.c).a IS NOT NULL", "m.d");
}

#[test]
fn json_populate_record_checks_its_targets_columns_domains() {
    refused(
        "(pg_catalog.json_populate_record(NULL::m.c, '{\"a\": \"x\"}')).a IS NOT NULL",
        "m.d",
    );
}

#[test]
fn a_column_definition_list_checks_its_types_domains() {
    refused(
        "EXISTS (SELECT FROM pg_catalog.json_to_record('{\"r\": {\"a\": \"x\"}}') AS j(r m.c))",
        "m.d",
    );
}

#[test]
fn an_input_function_reading_a_type_given_as_an_argument_is_refused() {
    let (pg, _su, mut owner) = setup();
    exec(&mut owner, DOMAINS);
    let expression = "pg_catalog.record_in('(x)', 'm.c'::regtype, -1) IS NOT NULL";
    let plain = error_of(
        &mut pg.connect_as("postgres", "sub"),
        &format!("SELECT {expression}"),
    );
    assert!(plain.contains("check ran as sub"), "{plain}");
    let error = subscribe_error(
        &pg,
        "m.t",
        &format!(
            ", filter => 'NEW.id > 0 AND {}'",
            expression.replace('\'', "''")
        ),
    );
    assert!(
        error.contains("would call record_in(cstring,oid,integer), which reads text as a type given as an argument")
            && !error.contains("ran as"),
        "{error}"
    );
}

#[test]
fn a_domain_named_in_the_text_is_the_subscribers_choice() {
    let (pg, _su, mut owner) = setup();
    exec(
        &mut owner,
        "CREATE DOMAIN m.short AS text CHECK (pg_catalog.length(VALUE) < 3);",
    );
    let rx = Receiver::start();
    let mut sub = pg.connect_as("postgres", "sub");
    subscribe(
        &mut sub,
        "s",
        "m.t",
        &rx.url("/s"),
        ", events => '{insert}', filter => '(NEW.id::text)::m.short IS NOT NULL'",
    );
    let mut writer = writer(&pg);
    let error = error_of(&mut writer, "INSERT INTO m.t VALUES (100, 'ok')");
    assert!(error.contains("violates check constraint"), "{error}");
    exec(&mut writer, "INSERT INTO m.t VALUES (7, 'ok')");
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["id"], 7);
}

#[test]
fn a_record_read_into_new_checks_the_domains_of_the_tables_columns() {
    // jsonb_populate_record(NEW, …) makes a row of m.t's type, so its m.d column.
    let (pg, _su, mut owner) = setup();
    exec(
        &mut owner,
        &format!("{DOMAINS} ALTER TABLE m.t ADD COLUMN d m.d; INSERT INTO m.t VALUES (1, 'ok')"),
    );
    let plain = error_of(
        &mut pg.connect_as("postgres", "sub"),
        "SELECT pg_catalog.jsonb_populate_record(t, '{\"d\": \"x\"}') FROM m.t t",
    );
    assert!(plain.contains("check ran as sub"), "{plain}");
    let error = subscribe_error(
        &pg,
        "m.t",
        ", filter => 'pg_catalog.jsonb_populate_record(NEW, ''{\"d\": \"x\"}'') IS NOT NULL'",
    );
    assert!(
        error.contains("would check a value against domain m.d, owned by role tabowner")
            && !error.contains("ran as"),
        "{error}"
    );
}

/// tabowner's domain m.dx over text, whose CHECK uses built-in functions only, one of which
/// runs any SQL (here: who is running it): it fails when `sub` runs it.
const LOUD_DX: &str =
    "CREATE DOMAIN m.dx AS text CHECK (pg_catalog.query_to_xml('SELECT current_user AS u',
         true, false, '')::text NOT LIKE '%<u>sub</u>%');";

/// Asserts that, with m.dx made and m.t.tags an array of it, a filter of `sub`'s comparing the
/// column with a literal (`filter`, SQL-quoted) is refused before the literal is read.
fn literal_refused(filter: &str) {
    let (pg, _su, mut owner) = setup();
    exec(
        &mut owner,
        &format!("{LOUD_DX} ALTER TABLE m.t ADD COLUMN tags m.dx[];"),
    );
    let plain = error_of(
        &mut pg.connect_as("postgres", "sub"),
        "SELECT '{a}'::m.dx[] IS NOT NULL",
    );
    assert!(plain.contains("violates check constraint"), "{plain}");
    let error = subscribe_error(&pg, "m.t", &format!(", filter => '{filter}'"));
    assert!(
        error.contains("would check a value against domain m.dx, owned by role tabowner"),
        "{error}"
    );
}

#[test]
fn a_literal_compared_with_an_array_of_another_roles_domain_is_refused_before_it_is_read() {
    // `NEW.tags = '{a}'` reads '{a}' as m.dx[] while the text is analysed.
    literal_refused("NEW.tags = ''{a}''");
}

#[test]
fn a_literal_is_distinct_from_an_array_of_another_roles_domain_is_refused_before_it_is_read() {
    // With the literal made NULL, PostgreSQL would make this a test for NULL and read nothing.
    literal_refused("NEW.tags IS DISTINCT FROM ''{a}''");
}

#[test]
fn a_literal_is_not_distinct_from_an_array_of_another_roles_domain_is_refused_before_read() {
    literal_refused("NEW.tags IS NOT DISTINCT FROM ''{a}''");
}

#[test]
fn a_writer_with_transform_null_equals_cannot_have_a_literal_read_unchecked() {
    // Subscribed while the column was text[]; tabowner then makes it m.dx[]. A writer whose
    // session turns `x = NULL` into `x IS NULL` must not keep the check from seeing the
    // literal read as m.dx[] (the filter is read as everywhere else: the setting is off).
    let (pg, _su, mut owner) = setup();
    exec(&mut owner, "ALTER TABLE m.t ADD COLUMN tags text[];");
    let rx = Receiver::start();
    subscribe_sub(
        &pg,
        &rx,
        ", events => '{insert}', filter => 'NEW.tags = ''{a}'''",
    );
    exec(
        &mut owner,
        &format!("{LOUD_DX} ALTER TABLE m.t ALTER COLUMN tags TYPE m.dx[];"),
    );
    let error = error_of(
        &mut pg.connect_as("postgres", "writer"),
        "SET transform_null_equals = on; INSERT INTO m.t (id, tags) VALUES (1, '{a}')",
    );
    assert!(
        error.contains("would check a value against domain m.dx, owned by role tabowner"),
        "{error}"
    );
}

#[test]
fn a_cycle_clause_is_refused_before_its_constants_are_read() {
    // PostgreSQL's walkers skip a CYCLE clause, whose mark values are read into their type as
    // the text is analysed (here a composite whose column tabowner may make m.dx later).
    let (pg, _su, mut owner) = setup();
    exec(&mut owner, "CREATE TYPE m.pair AS (a text);");
    let error = subscribe_error(
        &pg,
        "m.t",
        ", filter => 'EXISTS (WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 2)
             CYCLE n SET mark TO m.pair ''(x)'' DEFAULT m.pair ''(y)'' USING p SELECT FROM r)'",
    );
    assert!(
        error.contains(
            "a WITH query's SEARCH or CYCLE clause cannot be used in a filter or payload"
        ),
        "{error}"
    );
}
