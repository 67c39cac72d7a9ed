//! Code a filter or payload does not name never runs with its subscriber's rights. The text is
//! analysed again at every write (and every backfill chunk) as the subscription's owner; a
//! type's owner who creates a cast later — implicit ones change which operator `NEW.mood =
//! 'ok'` means — or a cast to json would have their function run as the subscriber. Such a
//! function now stops the write (or the backfill, or the subscribe) with an error naming it;
//! a function the text names, schema-qualified, still runs.

mod support;

use postgres::Client;
use support::backfill::wait_state;
use support::cluster::Cluster;
use support::receiver::Receiver;
use support::unnamed::*;
use support::{error_of, exec, text, WAIT};

/// Subscribes `sub` (subscription "s", inserts) with `filter` after tabowner ran `prepare`;
/// row 1 ('ok') is delivered; then tabowner runs `change`, after which `plain` (as `sub`)
/// shows tabowner's code running: the next write is refused naming `function` and `why`, and
/// nothing more is queued.
fn refused_after_subscribing(
    prepare: &str,
    filter: &str,
    change: &str,
    plain: &str,
    function: &str,
    why: &str,
) {
    let (pg, mut su, mut owner) = setup();
    exec(&mut owner, prepare);
    let rx = Receiver::start();
    let id = subscribe_sub(
        &pg,
        &rx,
        &format!(
            ", events => '{{insert}}', filter => '{}'",
            filter.replace('\'', "''")
        ),
    );
    exec(&mut writer(&pg), "INSERT INTO m.t VALUES (1, 'ok')");
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["id"], 1);
    exec(&mut owner, change);
    let plain = error_of(&mut pg.connect_as("postgres", "sub"), plain);
    assert!(plain.contains("ran as sub"), "{plain}");
    let refused = error_of(&mut writer(&pg), "INSERT INTO m.t VALUES (2, 'ok')");
    assert!(
        refused.starts_with("pg_webhook subscription \"s\": "),
        "{refused}"
    );
    assert_refused(&refused, function, why);
    let queued = text(
        &mut su,
        &format!("SELECT count(*)::text FROM webhook.events WHERE subscription_id = {id}"),
    );
    assert_eq!(queued.as_deref(), Some("1"));
}

#[test]
fn an_implicit_cast_made_after_subscribing_stops_the_write_instead_of_running_as_the_subscriber() {
    // The same text now means text = text, through the new cast (so the cast would run).
    refused_after_subscribing(
        "",
        "NEW.mood = 'ok'",
        IMPLICIT_CAST,
        "SELECT 'ok'::m.mood = 'ok'",
        "m.loud(m.mood)",
        "it is a cast's function",
    );
}

#[test]
fn a_filter_that_needs_another_roles_cast_is_refused_at_subscribe() {
    let (pg, _su, mut owner) = setup();
    exec(
        &mut owner,
        "CREATE CAST (m.mood AS text) WITH FUNCTION m.loud(m.mood)",
    );
    let error = subscribe_error(&pg, "m.t", ", filter => 'NEW.mood::text = ''ok'''");
    assert!(
        error.starts_with("filter is not valid for insert events: "),
        "{error}"
    );
    assert_refused(&error, "m.loud(m.mood)", "it is a cast's function");
}

#[test]
fn a_function_the_filter_names_runs_as_the_subscriber() {
    let (pg, _su, _owner) = setup();
    let rx = Receiver::start();
    subscribe_sub(
        &pg,
        &rx,
        ", events => '{insert}', filter => 'm.mood_text(NEW.mood) = ''sad'''",
    );
    exec(
        &mut writer(&pg),
        "INSERT INTO m.t VALUES (1, 'ok'); INSERT INTO m.t VALUES (2, 'sad')",
    );
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["record"]["id"], 2);
}

/// The cluster of `setup` with rows 1 ('ok') and 2 ('sad') in m.t and `sub`'s subscription
/// "s" filtered on `NEW.mood = 'ok'`: (cluster, superuser session, receiver).
fn filtered_rows() -> (Cluster, Client, Receiver) {
    let (pg, mut su, _owner) = setup();
    exec(&mut su, "INSERT INTO m.t VALUES (1, 'ok'), (2, 'sad')");
    let rx = Receiver::start();
    subscribe_sub(
        &pg,
        &rx,
        ", events => '{insert}', filter => 'NEW.mood = ''ok'''",
    );
    (pg, su, rx)
}

#[test]
fn a_backfill_chunk_stops_at_a_cast_made_after_the_backfill_started() {
    let (_pg, mut su, _rx) = filtered_rows();
    // The backfill starts (checked) and the cast appears in one commit, before any chunk.
    exec(
        &mut su,
        &format!(
            "BEGIN;
             SET ROLE sub; SELECT webhook.backfill('s'); RESET ROLE;
             SET ROLE tabowner; {IMPLICIT_CAST}; RESET ROLE;
             COMMIT;"
        ),
    );
    wait_state(&mut su, "s", "failed");
    let reason = text(
        &mut su,
        "SELECT last_error FROM webhook.backfills WHERE subscription = 's'",
    )
    .unwrap_or_default();
    assert_refused(&reason, "m.loud(m.mood)", "it is a cast's function");
}

#[test]
fn a_backfill_does_not_start_with_a_cast_made_after_subscribing() {
    let (pg, _su, _rx) = filtered_rows();
    exec(&mut pg.connect_as("postgres", "tabowner"), IMPLICIT_CAST);
    let error = error_of(
        &mut pg.connect_as("postgres", "sub"),
        "SELECT webhook.backfill('s')",
    );
    assert!(
        error.starts_with("filter is not valid for a backfill of m.t: "),
        "{error}"
    );
    assert_refused(&error, "m.loud(m.mood)", "it is a cast's function");
}

#[test]
fn a_superusers_cast_runs() {
    let (pg, mut su, _owner) = setup();
    exec(
        &mut su,
        "CREATE FUNCTION public.su_mood_text(m.mood) RETURNS text LANGUAGE sql
             AS $$ SELECT pg_catalog.format('%s', $1) $$;
         CREATE CAST (m.mood AS text) WITH FUNCTION public.su_mood_text(m.mood);",
    );
    let rx = Receiver::start();
    subscribe_sub(
        &pg,
        &rx,
        ", events => '{insert}', filter => 'NEW.mood::text = ''sad'''",
    );
    exec(
        &mut writer(&pg),
        "INSERT INTO m.t VALUES (1, 'ok'); INSERT INTO m.t VALUES (2, 'sad')",
    );
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["id"], 2);
}

#[test]
fn a_function_in_the_body_of_a_view_the_filter_reads_must_be_named_too() {
    let (pg, _su, mut owner) = setup();
    exec(
        &mut owner,
        "CREATE VIEW m.v AS SELECT m.loud('ok') AS said;
         GRANT SELECT ON m.v TO sub;",
    );
    let error = subscribe_error(&pg, "m.t", ", filter => 'EXISTS (SELECT FROM m.v)'");
    assert_refused(&error, "m.loud(m.mood)", "the expression does not name it");
}

/// Makes operator m.=== (m.mood, m.mood), equality by tabowner's function m.same (with a SET
/// clause, so that it is neither inlined nor folded away before the planner looks at the
/// operator's negator).
const OPERATOR: &str = "CREATE FUNCTION m.same(m.mood, m.mood) RETURNS boolean LANGUAGE sql
        SET search_path = pg_catalog AS $$ SELECT $1 = $2 $$;
    CREATE OPERATOR m.=== (LEFTARG = m.mood, RIGHTARG = m.mood, FUNCTION = m.same);";

#[test]
fn an_operator_in_a_view_the_filter_reads_must_be_named_too() {
    let (pg, _su, mut owner) = setup();
    exec(&mut owner, OPERATOR);
    exec(
        &mut owner,
        "CREATE VIEW m.v AS SELECT id FROM m.t WHERE mood OPERATOR(m.===) 'ok';
         GRANT SELECT ON m.v TO sub;",
    );
    let error = subscribe_error(&pg, "m.t", ", filter => 'EXISTS (SELECT FROM m.v)'");
    assert_refused(
        &error,
        "m.same(m.mood,m.mood)",
        "it is the function of operator m.===(m.mood,m.mood)",
    );
}

#[test]
fn an_operator_the_filter_names_runs() {
    let (pg, _su, mut owner) = setup();
    exec(&mut owner, OPERATOR);
    let rx = Receiver::start();
    subscribe_sub(
        &pg,
        &rx,
        ", events => '{insert}', filter => 'NEW.mood OPERATOR(m.===) ''sad'''",
    );
    exec(
        &mut writer(&pg),
        "INSERT INTO m.t VALUES (1, 'ok'); INSERT INTO m.t VALUES (2, 'sad')",
    );
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["id"], 2);
}

#[test]
fn a_function_that_runs_sql_from_a_string_is_refused() {
    let (pg, _su, _owner) = setup();
    let error = subscribe_error(
        &pg,
        "m.t",
        ", filter => 'query_to_xml(''SELECT 1'', true, true, '''') IS NOT NULL'",
    );
    assert!(
        error
            .contains("would run function query_to_xml(text,boolean,boolean,text), which runs SQL"),
        "{error}"
    );
}

/// Makes, as tabowner, operator m.!== (m.mood, m.mood) with function m.differs defined by
/// `definition` (its language and body), and NEGATOR m.=== (of `OPERATOR`), which that makes
/// m.!== the negator of.
fn negator(definition: &str) -> String {
    format!(
        "CREATE FUNCTION m.differs(m.mood, m.mood) RETURNS boolean {definition};
         GRANT EXECUTE ON FUNCTION m.differs(m.mood, m.mood) TO sub;
         CREATE OPERATOR m.!== (LEFTARG = m.mood, RIGHTARG = m.mood, FUNCTION = m.differs,
             NEGATOR = OPERATOR(m.===));"
    )
}

const RAISES: &str = "RAISE EXCEPTION 'tabowner''s function ran as %', current_user";

#[test]
fn a_negator_added_to_a_named_operator_after_subscribing_stops_the_write() {
    // The planner then runs m.!== in the place of NOT (… m.=== …).
    refused_after_subscribing(
        OPERATOR,
        "NOT (NEW.mood OPERATOR(m.===) 'sad')",
        &negator(&format!("LANGUAGE plpgsql AS $$ BEGIN {RAISES}; END $$")),
        "SELECT NOT ('ok'::m.mood OPERATOR(m.===) 'sad')",
        "m.differs(m.mood,m.mood)",
        "it is the function of operator m.!==(m.mood,m.mood), a commutator or negator of operator m.===(m.mood,m.mood)",
    );
}

#[test]
fn a_negator_the_filter_names_too_runs() {
    let (pg, _su, mut owner) = setup();
    exec(&mut owner, OPERATOR);
    // In SQL: a procedural function is refused even where the text names it.
    exec(
        &mut owner,
        &negator("LANGUAGE sql AS $$ SELECT $1 <> $2 $$"),
    );
    let rx = Receiver::start();
    subscribe_sub(
        &pg,
        &rx,
        ", events => '{insert}', filter => 'NOT (NEW.mood OPERATOR(m.===) ''sad'')
                                             AND NEW.mood OPERATOR(m.!==) ''sad'''",
    );
    exec(
        &mut writer(&pg),
        "INSERT INTO m.t VALUES (1, 'sad'); INSERT INTO m.t VALUES (2, 'ok')",
    );
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["id"], 2);
}

#[test]
fn the_commutator_the_planner_estimates_with_must_be_named_too() {
    let (pg, mut su, mut owner) = setup();
    exec(
        &mut owner,
        &format!(
            "CREATE FUNCTION m.before(m.mood, m.mood) RETURNS boolean LANGUAGE sql
                 SET search_path = pg_catalog AS $$ SELECT $1 < $2 $$;
             CREATE FUNCTION m.after(m.mood, m.mood) RETURNS boolean LANGUAGE plpgsql
                 AS $$ BEGIN {RAISES}; END $$;
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA m TO sub;
             CREATE OPERATOR m.>>> (LEFTARG = m.mood, RIGHTARG = m.mood, FUNCTION = m.after,
                 RESTRICT = scalargtsel);
             CREATE OPERATOR m.<<< (LEFTARG = m.mood, RIGHTARG = m.mood, FUNCTION = m.before,
                 COMMUTATOR = OPERATOR(m.>>>), RESTRICT = scalarltsel);"
        ),
    );
    exec(
        &mut su,
        "INSERT INTO m.t VALUES (1, 'ok'), (2, 'ok'), (3, 'sad'); ANALYZE m.t",
    );
    // With the column on the right, the planner estimates `'ok' <<< mood` as `mood >>> 'ok'`
    // (m.before has a SET clause so that it is not inlined into a plain `<` before estimation).
    let filter = "EXISTS (SELECT FROM m.t WHERE 'ok' OPERATOR(m.<<<) mood)";
    let plain = error_of(
        &mut pg.connect_as("postgres", "sub"),
        &format!("SELECT {filter}"),
    );
    assert!(plain.contains("ran as sub"), "{plain}");
    let error = subscribe_error(
        &pg,
        "m.t",
        &format!(", filter => '{}'", filter.replace('\'', "''")),
    );
    assert_refused(
        &error,
        "m.after(m.mood,m.mood)",
        "it is the function of operator m.>>>(m.mood,m.mood), a commutator or negator of operator m.<<<(m.mood,m.mood)",
    );
}

#[test]
fn a_shell_negator_of_a_named_operator_is_refused() {
    // Its owner could define it, with any function, between the check and the planning.
    let (pg, _su, mut owner) = setup();
    exec(&mut owner, OPERATOR);
    exec(
        &mut owner,
        "CREATE OPERATOR m.==== (LEFTARG = m.mood, RIGHTARG = m.mood, FUNCTION = m.same,
             NEGATOR = OPERATOR(m.!===))",
    );
    let error = subscribe_error(
        &pg,
        "m.t",
        ", filter => 'NOT (NEW.mood OPERATOR(m.====) ''sad'')'",
    );
    assert!(
        error.contains("operator m.!===(m.mood,m.mood), a commutator or negator of operator m.====(m.mood,m.mood), which the expression uses, is a shell"),
        "{error}"
    );
}
