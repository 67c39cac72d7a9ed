//! Whose rights a cast to json of a column's type runs with. `to_jsonb` calls such a cast, and
//! the type's owner may create one at any time. A shaped subscription's query runs as the
//! subscription's owner, and its images were rendered there: the type's owner (here also the
//! table's) ran code as the subscriber at every write. Now images are rendered by capture as
//! the writer, as any trigger's work, and by a backfill as the table's owner; only SQL the
//! subscriber wrote (a payload expression, and functions it names) runs as the subscriber.
//! And a backfill keeps its
//! place between chunks without casting its key to or from text, or running a key domain's
//! checks, as the subscriber.

mod support;

use postgres::Client;
use support::backfill::wait_state;
use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{exec, subscribe, WAIT};

/// A cluster where `tabowner` owns schema m, the enum m.mood with a cast to json that names
/// the role running it (and the value), and table m.t (id, mood, note); `sub` (a webhook_admin) may subscribe
/// to m.t and `writer` may write it. Returns the cluster and a superuser session.
fn setup() -> (Cluster, Client) {
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
         CREATE FUNCTION m.mood_json(m.mood) RETURNS json LANGUAGE sql
             AS $$ SELECT pg_catalog.json_build_object('by', current_user::text, 'is', pg_catalog.format('%s', $1)) $$;
         CREATE CAST (m.mood AS json) WITH FUNCTION m.mood_json(m.mood);
         CREATE TABLE m.t (id int PRIMARY KEY, mood m.mood, note text);
         GRANT USAGE ON SCHEMA m TO sub, writer;
         GRANT SELECT, TRIGGER ON m.t TO sub;
         GRANT SELECT, INSERT, UPDATE ON m.t TO writer;",
    );
    (pg, su)
}

/// Whom the cast ran as for the `mood` of each of the subscription's events, in event order:
/// (record's, old_record's), "" where that image is absent.
fn cast_runners(su: &mut Client, id: i32) -> Vec<(String, String)> {
    su.query(
        "SELECT coalesce(record #>> '{mood,by}', ''), coalesce(old_record #>> '{mood,by}', '')
           FROM webhook.events WHERE subscription_id = $1 ORDER BY id",
        &[&id],
    )
    .unwrap_or_else(|e| panic!("reading the events: {e}"))
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

/// The cluster of `setup`, with rows `rows` in m.t (as a superuser, before anyone subscribes),
/// and `sub`'s subscription "s" of m.t with `extra`: (cluster, superuser session, receiver,
/// subscription id).
fn subscribed(rows: &str, extra: &str) -> (Cluster, Client, Receiver, i32) {
    let (pg, mut su) = setup();
    let rx = Receiver::start();
    if !rows.is_empty() {
        exec(&mut su, &format!("INSERT INTO m.t VALUES {rows}"));
    }
    let mut sub = pg.connect_as("postgres", "sub");
    let (id, _) = subscribe(&mut sub, "s", "m.t", &rx.url("/s"), extra);
    (pg, su, rx, id)
}

/// Runs `sql` as `writer`.
fn write(pg: &Cluster, sql: &str) {
    exec(&mut pg.connect_as("postgres", "writer"), sql);
}

/// Backfills subscription "s" (as `sub`) to its end. The cast's function is handed to a
/// superuser first: a chunk runs in the callback runner, which runs no code of a role without
/// the subscriber's rights (`tests/backfill_owners.rs`), whoever it would run as.
fn backfill(pg: &Cluster, su: &mut Client) {
    exec(
        su,
        "ALTER FUNCTION m.mood_json(m.mood) OWNER TO CURRENT_USER",
    );
    exec(
        &mut pg.connect_as("postgres", "sub"),
        "SELECT webhook.backfill('s')",
    );
    wait_state(su, "s", "done");
}

#[test]
fn a_shaped_subscriptions_images_run_the_cast_as_the_writer() {
    let (pg, _su, rx, _) = subscribed(
        "",
        ", events => '{insert}', columns => '{id,mood}', filter => 'new.id > 0'",
    );
    write(&pg, "INSERT INTO m.t VALUES (1, 'ok', 'n')");
    let got = rx.wait_for(1, WAIT);
    let body = got[0].json();
    assert_eq!(body["record"]["mood"]["by"], "writer", "{body}");
    assert!(body["record"].get("note").is_none(), "{body}");
}

#[test]
fn skip_unchanged_compares_images_rendered_as_the_writer() {
    let (pg, mut su, _rx, id) = subscribed(
        "(1, 'ok', 'a')",
        ", events => '{UPDATE}', exclude_columns => '{note}', skip_unchanged => true",
    );
    // Only the excluded column changes: no event. Then the mood does: one event.
    write(&pg, "UPDATE m.t SET note = 'b' WHERE id = 1");
    write(&pg, "UPDATE m.t SET mood = 'sad' WHERE id = 1");
    assert_eq!(cast_runners(&mut su, id), vec![pair("writer", "writer")]);
}

#[test]
fn a_backfill_runs_the_cast_as_the_tables_owner() {
    let (pg, mut su, _rx, id) = subscribed("(1, 'ok', 'a'), (2, 'sad', 'b')", "");
    backfill(&pg, &mut su);
    assert_eq!(
        cast_runners(&mut su, id),
        vec![pair("tabowner", ""), pair("tabowner", "")]
    );
}

#[test]
fn a_shaped_backfill_runs_the_cast_as_the_tables_owner() {
    let (pg, mut su, _rx, id) = subscribed(
        "(1, 'ok', 'a'), (2, 'sad', 'b')",
        ", events => '{insert}', exclude_columns => '{note}', filter => 'new.id = 2'",
    );
    backfill(&pg, &mut su);
    assert_eq!(cast_runners(&mut su, id), vec![pair("tabowner", "")]);
}

#[test]
fn a_function_a_payload_expression_names_runs_as_the_subscriber_who_wrote_it() {
    // Left to to_jsonb, the cast would not run at all (tests/unnamed_code.rs): the payload
    // names the cast's function.
    let (pg, mut su, _rx, id) = subscribed(
        "",
        ", events => '{insert}', payload => 'jsonb_build_object(''mood'', m.mood_json(new.mood))'",
    );
    write(&pg, "INSERT INTO m.t VALUES (1, 'ok', 'n')");
    assert_eq!(cast_runners(&mut su, id), vec![pair("sub", "")]);
}

/// Runs `sql` as `tabowner` (making table `table`, with rows, that `sub` may subscribe), then
/// backfills `sub`'s subscription of it until the backfill ends: its state and last error, and
/// how many events it queued.
fn backfill_ending(sql: &str, table: &str) -> ((String, String), usize) {
    let (pg, mut su) = setup();
    exec(&mut pg.connect_as("postgres", "tabowner"), sql);
    let rx = Receiver::start();
    let mut sub = pg.connect_as("postgres", "sub");
    let (id, _) = subscribe(&mut sub, "s", table, &rx.url("/s"), "");
    // The images' cast to json runs in the runner only if a role with sub's rights owns it.
    exec(
        &mut su,
        "ALTER FUNCTION m.mood_json(m.mood) OWNER TO CURRENT_USER",
    );
    exec(&mut sub, "SELECT webhook.backfill('s')");
    let mut end = (String::new(), String::new());
    support::cluster::wait_until(WAIT, "the backfill to end", || {
        let row = su
            .query_one(
                "SELECT state, coalesce(last_error, '') FROM webhook.backfills
                  WHERE subscription = 's' ORDER BY id DESC LIMIT 1",
                &[],
            )
            .unwrap_or_else(|e| panic!("reading the backfill: {e}"));
        end = (row.get(0), row.get(1));
        end.0 != "running"
    });
    (end, cast_runners(&mut su, id).len())
}

#[test]
fn a_backfill_keeps_its_place_without_the_key_types_casts_to_and_from_text() {
    // The key is (mood, id): 600 rows take two chunks, the second read after a kept key.
    // Casts the type's owner made between m.mood and text refuse to run.
    let ending = backfill_ending(
        "CREATE TABLE m.k (mood m.mood, id int, PRIMARY KEY (mood, id));
         GRANT SELECT, TRIGGER ON m.k TO sub;
         INSERT INTO m.k SELECT 'ok', g FROM generate_series(1, 600) g;
         CREATE FUNCTION m.no_text(m.mood) RETURNS text LANGUAGE plpgsql
             AS $$ BEGIN RAISE EXCEPTION 'mood to text ran as %', current_user; END $$;
         CREATE FUNCTION m.no_mood(text) RETURNS m.mood LANGUAGE plpgsql
             AS $$ BEGIN RAISE EXCEPTION 'text to mood ran as %', current_user; END $$;
         CREATE CAST (m.mood AS text) WITH FUNCTION m.no_text(m.mood);
         CREATE CAST (text AS m.mood) WITH FUNCTION m.no_mood(text);",
        "m.k",
    );
    assert_eq!(ending, (pair("done", ""), 600));
}

#[test]
fn a_backfill_keeps_its_place_without_running_a_key_domains_checks_as_the_subscriber() {
    // The key's domain has a check that refuses to run as the subscriber; 600 rows take two
    // chunks, the second read after a kept key.
    let ending = backfill_ending(
        "CREATE FUNCTION m.not_sub(int) RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN
                 IF current_user = 'sub' THEN RAISE EXCEPTION 'the check ran as sub'; END IF;
                 RETURN true;
             END $$;
         CREATE DOMAIN m.id AS int CHECK (m.not_sub(VALUE));
         CREATE TABLE m.d (id m.id PRIMARY KEY);
         GRANT SELECT, TRIGGER ON m.d TO sub;
         INSERT INTO m.d SELECT g FROM generate_series(1, 600) g;",
        "m.d",
    );
    assert_eq!(ending, (pair("done", ""), 600));
}

#[test]
fn a_backfill_never_runs_a_check_of_a_domain_within_its_key_owned_by_a_role_without_the_subscribers_rights(
) {
    // A composite key is read back by record_in, which checks the domain of its field: the
    // table owner's check ran in the subscriber's runner, where it could use a dblink
    // connection the subscriber's filter left open. 600 rows take two chunks; the second
    // reads the first's last key back.
    let ending = backfill_ending(
        "CREATE FUNCTION m.checked(int) RETURNS boolean LANGUAGE sql AS 'SELECT true';
         CREATE DOMAIN m.kd AS int CHECK (m.checked(VALUE));
         CREATE TYPE m.kt AS (a m.kd);
         CREATE TABLE m.c (k m.kt PRIMARY KEY);
         GRANT SELECT, TRIGGER ON m.c TO sub;
         INSERT INTO m.c SELECT ROW(g)::m.kt FROM generate_series(1, 600) g;",
        "m.c",
    );
    let ((state, error), queued) = ending;
    assert_eq!((state.as_str(), queued), ("failed", 500), "{error}");
    assert!(
        error.contains("function m.checked(integer), owned by role tabowner")
            && error.contains("reads back the primary key"),
        "{error}"
    );
}

/// `setup`'s cluster, with role `eve` (no other rights) owning schema e and the enum e.status,
/// whose cast to json is `body` (SQL over $1); tabowner's table m.u (id, st e.status), rows
/// `rows` in it, and `sub`'s subscription "s" of it.
fn another_roles_type(body: &str, rows: &str) -> (Cluster, Client, Receiver) {
    let (pg, mut su) = setup();
    exec(
        &mut su,
        "CREATE ROLE eve LOGIN; CREATE SCHEMA e AUTHORIZATION eve;
         GRANT USAGE ON SCHEMA e TO tabowner, sub, writer;",
    );
    exec(
        &mut pg.connect_as("postgres", "eve"),
        &format!(
            "CREATE TYPE e.status AS ENUM ('new', 'paid');
             CREATE FUNCTION e.status_json(e.status) RETURNS json LANGUAGE sql AS $${body}$$;
             CREATE CAST (e.status AS json) WITH FUNCTION e.status_json(e.status);"
        ),
    );
    exec(
        &mut pg.connect_as("postgres", "tabowner"),
        &format!(
            "CREATE TABLE m.u (id int PRIMARY KEY, st e.status);
             GRANT SELECT, TRIGGER ON m.u TO sub;
             {rows}"
        ),
    );
    let rx = Receiver::start();
    subscribe(
        &mut pg.connect_as("postgres", "sub"),
        "s",
        "m.u",
        &rx.url("/s"),
        "",
    );
    (pg, su, rx)
}

#[test]
fn a_cast_of_a_role_without_the_writers_or_the_table_owners_rights_never_runs_at_capture() {
    // eve owns only the enum a subscribed table uses. Rendering the row for the event ran her
    // cast to json as every writer: a superuser's INSERT made her a superuser.
    let (_pg, mut su, _rx) = another_roles_type(
        "ALTER ROLE eve SUPERUSER; SELECT pg_catalog.to_json($1::text)",
        "",
    );
    let err = su
        .batch_execute("INSERT INTO m.u VALUES (1, 'new')")
        .expect_err("the write renders eve's cast");
    let db = err.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "42501", "{db:?}");
    assert!(
        db.message().contains("e.status_json") && db.message().contains("role eve"),
        "{db:?}"
    );
    assert_eq!(
        support::text(
            &mut su,
            "SELECT rolsuper::text FROM pg_roles WHERE rolname = 'eve'"
        ),
        Some("false".to_string())
    );
}

#[test]
fn a_backfill_never_runs_a_cast_of_a_role_without_the_table_owners_rights() {
    // The chunk renders rows as the table's owner, in the subscriber's runner; a cast the
    // subscriber owned ran there with the table owner's rights (read their private tables; as
    // a superuser's, ran programs). eve, subscribing as a webhook_admin, owns the cast here.
    let (pg, mut su, _rx) = another_roles_type(
        "SELECT pg_catalog.json_build_object('by', current_user::text)",
        "INSERT INTO m.u VALUES (1, 'new');",
    );
    exec(
        &mut su,
        "GRANT webhook_admin TO eve; GRANT USAGE ON SCHEMA m TO eve;
         GRANT SELECT, TRIGGER ON m.u TO eve;",
    );
    let rx = Receiver::start();
    let mut eve = pg.connect_as("postgres", "eve");
    subscribe(&mut eve, "eves", "m.u", &rx.url("/eve"), "");
    exec(&mut eve, "SELECT webhook.backfill('eves')");
    wait_state(&mut su, "eves", "failed");
    let error = support::text(
        &mut su,
        "SELECT last_error FROM webhook.backfills WHERE subscription = 'eves'",
    )
    .unwrap_or_default();
    assert!(
        error.contains("e.status_json") && error.contains("role tabowner, the table's owner"),
        "{error}"
    );
}
