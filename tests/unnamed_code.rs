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
use support::{error_of, exec, subscribe, text, WAIT};

/// A cluster where `tabowner` owns schema m, the enum m.mood, functions m.mood_text (a
/// mood's name, as text) and m.loud (raises an error naming the role running it) and table
/// m.t (id, mood); `sub` (a webhook_admin) may subscribe to m.t and `writer` may write it.
/// Returns the cluster, a superuser session and `tabowner`'s.
fn setup() -> (Cluster, Client, Client) {
    let pg = Cluster::start(&[]);
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE tabowner LOGIN; CREATE ROLE sub LOGIN; CREATE ROLE writer LOGIN;
         GRANT webhook_admin TO sub;
         CREATE SCHEMA m AUTHORIZATION tabowner;",
    );
    let mut owner = pg.connect_as("postgres", "tabowner");
    exec(
        &mut owner,
        "CREATE TYPE m.mood AS ENUM ('ok', 'sad');
         CREATE FUNCTION m.mood_text(m.mood) RETURNS text LANGUAGE sql
             AS $$ SELECT pg_catalog.format('%s', $1) $$;
         CREATE FUNCTION m.loud(m.mood) RETURNS text LANGUAGE plpgsql
             AS $$ BEGIN RAISE EXCEPTION 'tabowner''s function ran as %', current_user; END $$;
         CREATE FUNCTION m.loud_json(m.mood) RETURNS json LANGUAGE plpgsql
             AS $$ BEGIN RAISE EXCEPTION 'tabowner''s function ran as %', current_user; END $$;
         CREATE TABLE m.t (id int PRIMARY KEY, mood m.mood);
         GRANT USAGE ON SCHEMA m TO sub, writer;
         GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA m TO sub, writer;
         GRANT SELECT, TRIGGER ON m.t TO sub;
         GRANT SELECT, INSERT, UPDATE ON m.t TO writer;",
    );
    (pg, su, owner)
}

/// `sub`'s subscription "s" of m.t with `extra`: its id.
fn subscribe_sub(pg: &Cluster, rx: &Receiver, extra: &str) -> i32 {
    let mut sub = pg.connect_as("postgres", "sub");
    subscribe(&mut sub, "s", "m.t", &rx.url("/s"), extra).0
}

fn writer(pg: &Cluster) -> Client {
    pg.connect_as("postgres", "writer")
}

/// Asserts that `error` is pg_webhook's refusal to run m.loud (or m.loud_json) as `sub`, and
/// not the function's own error (which would mean it ran).
fn assert_refused(error: &str, function: &str, why: &str) {
    assert!(
        error.contains(&format!("would run function {function}"))
            && error.contains("owned by role tabowner, with the rights of role sub")
            && error.contains(why)
            && !error.contains("ran as"),
        "{error}"
    );
}

#[test]
fn an_implicit_cast_made_after_subscribing_stops_the_write_instead_of_running_as_the_subscriber() {
    let (pg, mut su, mut owner) = setup();
    let rx = Receiver::start();
    let id = subscribe_sub(
        &pg,
        &rx,
        ", events => '{insert}', filter => 'NEW.mood = ''ok'''",
    );
    exec(&mut writer(&pg), "INSERT INTO m.t VALUES (1, 'ok')");
    assert_eq!(rx.wait_for(1, WAIT)[0].json()["record"]["id"], 1);
    exec(&mut owner, IMPLICIT_CAST);
    // The same text now means text = text, through the new cast (so the cast would run).
    let plain = error_of(
        &mut pg.connect_as("postgres", "sub"),
        "SELECT 'ok'::m.mood = 'ok'",
    );
    assert!(plain.contains("ran as sub"), "{plain}");
    let refused = error_of(&mut writer(&pg), "INSERT INTO m.t VALUES (2, 'ok')");
    assert!(
        refused.starts_with("pg_webhook subscription \"s\": "),
        "{refused}"
    );
    assert_refused(&refused, "m.loud(m.mood)", "it is a cast's function");
    let queued = text(
        &mut su,
        &format!("SELECT count(*)::text FROM webhook.events WHERE subscription_id = {id}"),
    );
    assert_eq!(queued.as_deref(), Some("1"));
}

#[test]
fn a_filter_that_needs_another_roles_cast_is_refused_at_subscribe() {
    let (pg, _su, mut owner) = setup();
    exec(
        &mut owner,
        "CREATE CAST (m.mood AS text) WITH FUNCTION m.loud(m.mood)",
    );
    let rx = Receiver::start();
    let error = error_of(
        &mut pg.connect_as("postgres", "sub"),
        &format!(
            "SELECT webhook.subscribe('s', 'm.t', '{}', events => '{{insert}}',
                 filter => 'NEW.mood::text = ''ok''')",
            rx.url("/s")
        ),
    );
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

const IMPLICIT_CAST: &str = "CREATE CAST (m.mood AS text) WITH FUNCTION m.loud(m.mood) AS IMPLICIT";

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
    let rx = Receiver::start();
    let error = error_of(
        &mut pg.connect_as("postgres", "sub"),
        &format!(
            "SELECT webhook.subscribe('s', 'm.t', '{}', events => '{{insert}}',
                 filter => 'EXISTS (SELECT FROM m.v)')",
            rx.url("/s")
        ),
    );
    assert_refused(&error, "m.loud(m.mood)", "the expression does not name it");
}

/// `sub`'s subscribe of m.t with `extra` (events insert): the error it raises.
fn subscribe_error(pg: &Cluster, extra: &str) -> String {
    let rx = Receiver::start();
    error_of(
        &mut pg.connect_as("postgres", "sub"),
        &format!(
            "SELECT webhook.subscribe('s', 'm.t', '{}', events => '{{insert}}'{extra})",
            rx.url("/s")
        ),
    )
}

/// Makes operator m.=== (m.mood, m.mood), equality by tabowner's function m.same.
fn make_operator(owner: &mut Client) {
    exec(
        owner,
        "CREATE FUNCTION m.same(m.mood, m.mood) RETURNS boolean LANGUAGE plpgsql
             AS $$ BEGIN RETURN $1 = $2; END $$;
         CREATE OPERATOR m.=== (LEFTARG = m.mood, RIGHTARG = m.mood, FUNCTION = m.same);",
    );
}

#[test]
fn an_operator_in_a_view_the_filter_reads_must_be_named_too() {
    let (pg, _su, mut owner) = setup();
    make_operator(&mut owner);
    exec(
        &mut owner,
        "CREATE VIEW m.v AS SELECT id FROM m.t WHERE mood OPERATOR(m.===) 'ok';
         GRANT SELECT ON m.v TO sub;",
    );
    let error = subscribe_error(&pg, ", filter => 'EXISTS (SELECT FROM m.v)'");
    assert_refused(
        &error,
        "m.same(m.mood,m.mood)",
        "it is the function of operator m.===(m.mood,m.mood)",
    );
}

#[test]
fn an_operator_the_filter_names_runs() {
    let (pg, _su, mut owner) = setup();
    make_operator(&mut owner);
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
        ", filter => 'query_to_xml(''SELECT 1'', true, true, '''') IS NOT NULL'",
    );
    assert!(
        error
            .contains("would run function query_to_xml(text,boolean,boolean,text), which runs SQL"),
        "{error}"
    );
}

/// Asserts that `error` refuses to `how` a value of type `type_name`, owned by tabowner.
fn assert_type_refused(error: &str, how: &str, type_name: &str) {
    assert!(
        error.contains(&format!("would {how}"))
            && error.contains(&format!(
                "a value of type {type_name}, owned by role tabowner, with the rights of role sub"
            ))
            && !error.contains("ran as"),
        "{error}"
    );
}

#[test]
fn a_payload_rendering_another_roles_type_as_json_is_refused_cast_or_not() {
    // The type's owner may make a cast to json at any time, between the check and the run.
    let (pg, _su, _owner) = setup();
    let error = subscribe_error(&pg, ", payload => 'jsonb_build_object(''m'', NEW.mood)'");
    assert_type_refused(&error, "render as json", "m.mood");
}

#[test]
fn a_whole_row_payload_renders_every_column_type() {
    let (pg, _su, _owner) = setup();
    let error = subscribe_error(&pg, ", payload => 'to_jsonb(NEW)'");
    assert_type_refused(&error, "render as json", "m.mood");
}

#[test]
fn text_built_from_another_roles_type_by_a_built_in_sql_function_is_refused() {
    // `text || m.mood` is textanycat, whose body casts its argument to text when planned.
    let (pg, _su, _owner) = setup();
    let error = subscribe_error(&pg, ", filter => '''mood:'' || NEW.mood = ''mood:ok'''");
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

/// Makes, as tabowner, table m.plain (id int), which `sub` may subscribe, and runs `sql`.
fn plain_table(owner: &mut Client, sql: &str) {
    exec(
        owner,
        &format!(
            "CREATE TABLE m.plain (id int PRIMARY KEY);
             GRANT SELECT, TRIGGER ON m.plain TO sub;
             {sql}"
        ),
    );
}

/// `sub`'s subscribe of m.plain with `extra` (events insert): the error it raises.
fn plain_subscribe_error(pg: &Cluster, extra: &str) -> String {
    let rx = Receiver::start();
    error_of(
        &mut pg.connect_as("postgres", "sub"),
        &format!(
            "SELECT webhook.subscribe('s', 'm.plain', '{}', events => '{{insert}}'{extra})",
            rx.url("/s")
        ),
    )
}

#[test]
fn a_row_is_rendered_by_its_fields() {
    let (pg, _su, mut owner) = setup();
    plain_table(&mut owner, "CREATE TYPE m.color AS ENUM ('red');");
    let error = plain_subscribe_error(
        &pg,
        ", payload => 'jsonb_build_object(''r'', ROW(''red''::m.color, NEW.id))'",
    );
    assert_type_refused(&error, "render as json", "m.color");
}

#[test]
fn a_record_of_declared_columns_is_rendered_by_their_types() {
    let (pg, _su, mut owner) = setup();
    plain_table(&mut owner, "CREATE TYPE m.color AS ENUM ('red');");
    let error = plain_subscribe_error(
        &pg,
        r#", payload => '(SELECT pg_catalog.to_jsonb(x) FROM pg_catalog.jsonb_to_record(''{"b": "red"}'') AS x(b m.color))'"#,
    );
    assert_type_refused(&error, "render as json", "m.color");
}

#[test]
fn a_value_whose_type_is_known_only_as_it_runs_is_refused() {
    let (pg, _su, mut owner) = setup();
    plain_table(&mut owner, "");
    let error = plain_subscribe_error(
        &pg,
        ", payload => '(SELECT pg_catalog.to_jsonb(s.most_common_vals) FROM pg_catalog.pg_stats s LIMIT 1)'",
    );
    assert!(
        error.contains("a value of type anyarray, whose actual type is known only as it runs"),
        "{error}"
    );
}

#[test]
fn a_range_types_support_function_is_checked_though_only_the_planner_calls_it() {
    let (pg, mut su, mut owner) = setup();
    plain_table(
        &mut owner,
        "CREATE FUNCTION m.loud_diff(int, int) RETURNS float8 IMMUTABLE LANGUAGE plpgsql AS $$
             BEGIN
                 IF current_user = 'sub' THEN
                     RAISE EXCEPTION 'tabowner''s function ran as %', current_user;
                 END IF;
                 RETURN $1 - $2;
             END $$;
         CREATE TYPE m.r AS RANGE (subtype = int, subtype_diff = m.loud_diff);
         CREATE TABLE m.v (id int, r m.r);
         GRANT SELECT ON m.v TO sub;",
    );
    exec(
        &mut su,
        "INSERT INTO m.v SELECT g, m.r(g, g + 10) FROM generate_series(1, 500) g; ANALYZE m.v;",
    );
    let error = plain_subscribe_error(
        &pg,
        ", filter => 'NOT EXISTS (SELECT FROM m.v o WHERE o.r && ''[100,120)'' AND o.id = NEW.id)'",
    );
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
    let mut writer = writer(&pg);
    exec(
        &mut writer,
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1",
    );
    exec(
        &mut owner,
        "CREATE FUNCTION m.late(m.mood) RETURNS text LANGUAGE plpgsql
             AS $$ BEGIN RAISE EXCEPTION 'tabowner''s function ran as %', current_user; END $$;
         CREATE CAST (m.mood AS text) WITH FUNCTION m.late(m.mood);",
    );
    let refused = error_of(&mut writer, "INSERT INTO m.t VALUES (1, 'ok')");
    assert!(
        refused.contains("would use a function (OID ") && !refused.contains("ran as"),
        "{refused}"
    );
}
