//! A filter or payload calls no function in a procedural language (PL/pgSQL and the like), even
//! one it names, one of its owner's or a SECURITY DEFINER one: such a function reuses, for the
//! rest of the transaction, the casts and expressions its language compiled earlier in it (the
//! session's caches, whoever the function runs as) — where a writer can have them compiled,
//! unwatched, before its write — and another role's cast would then run through it as the
//! subscriber (or the function's owner). SQL-language functions are not refused. One scenario
//! per test.

mod support;

use support::receiver::Receiver;
use support::unnamed::*;
use support::{error_of, exec, text, WAIT};

/// `sub`'s own schema s, with s.label(m.mood) defined by `definition` (language and body).
fn label(su: &mut postgres::Client, sub: &mut postgres::Client, definition: &str) {
    exec(su, "CREATE SCHEMA s AUTHORIZATION sub");
    exec(
        sub,
        &format!("CREATE FUNCTION s.label(x m.mood) RETURNS text {definition}"),
    );
}

const FILTER: &str = ", filter => 's.label(NEW.mood) <> ''sad'''";

/// With s.label defined by `definition`: the error sub's subscribe with `FILTER` meets.
fn subscribe_error_with_label(definition: &str) -> String {
    let (pg, mut su, _owner) = setup();
    let mut sub = pg.connect_as("postgres", "sub");
    label(&mut su, &mut sub, definition);
    subscribe_error(&pg, "m.t", FILTER)
}

#[test]
fn a_procedural_function_the_filter_names_is_refused_at_subscribe() {
    let error = subscribe_error_with_label("LANGUAGE plpgsql AS $$ BEGIN RETURN x; END $$");
    assert!(
        error.contains("would run function s.label(m.mood), written in plpgsql, as role sub"),
        "{error}"
    );
}

#[test]
fn a_sql_function_replaced_by_a_procedural_one_stops_the_writes() {
    let (pg, mut su, _owner) = setup();
    let mut sub = pg.connect_as("postgres", "sub");
    label(&mut su, &mut sub, "LANGUAGE sql AS $$ SELECT x::text $$");
    let rx = Receiver::start();
    let id = subscribe_sub(&pg, &rx, &format!(", events => '{{insert}}'{FILTER}"));
    exec(&mut writer(&pg), "INSERT INTO m.t VALUES (1, 'ok')");
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["id"], 1);
    exec(
        &mut sub,
        "CREATE OR REPLACE FUNCTION s.label(x m.mood) RETURNS text LANGUAGE plpgsql
             AS $$ BEGIN RETURN x; END $$",
    );
    let error = error_of(&mut writer(&pg), "INSERT INTO m.t VALUES (2, 'ok')");
    assert!(
        error.contains("would run function s.label(m.mood), written in plpgsql"),
        "{error}"
    );
    let queued = text(
        &mut su,
        &format!("SELECT count(*)::text FROM webhook.events WHERE subscription_id = {id}"),
    );
    assert_eq!(queued.as_deref(), Some("1"));
}

#[test]
fn a_security_definer_procedural_function_is_refused_too() {
    // It runs as sub, its owner, and would reuse a cast of tabowner's that the writer had
    // PL/pgSQL compile earlier in its transaction (SELECT m.prime('ok'), say) all the same.
    let error = subscribe_error_with_label(
        "LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog
             AS $$ BEGIN RETURN x; END $$",
    );
    assert!(
        error.contains("would run function s.label(m.mood), written in plpgsql"),
        "{error}"
    );
}
