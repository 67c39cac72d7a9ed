//! Shared by tests/unnamed_code.rs and tests/unnamed_types.rs: roles, a schema and a table
//! whose types and functions belong to `tabowner`, and `sub`, a webhook_admin who subscribes.

use postgres::Client;

use super::cluster::Cluster;
use super::receiver::Receiver;
use super::{error_of, exec, subscribe};

/// A cluster where `tabowner` owns schema m, the enum m.mood, functions m.mood_text (a
/// mood's name, as text) and m.loud (raises an error naming the role running it) and table
/// m.t (id, mood); `sub` (a webhook_admin) may subscribe to m.t and `writer` may write it.
/// Returns the cluster, a superuser session and `tabowner`'s.
pub fn setup() -> (Cluster, Client, Client) {
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
pub fn subscribe_sub(pg: &Cluster, rx: &Receiver, extra: &str) -> i32 {
    let mut sub = pg.connect_as("postgres", "sub");
    subscribe(&mut sub, "s", "m.t", &rx.url("/s"), extra).0
}

pub fn writer(pg: &Cluster) -> Client {
    pg.connect_as("postgres", "writer")
}

/// Asserts that `error` is pg_webhook's refusal to run m.loud (or m.loud_json) as `sub`, and
/// not the function's own error (which would mean it ran).
pub fn assert_refused(error: &str, function: &str, why: &str) {
    assert!(
        error.contains(&format!("would run function {function}"))
            && error.contains("owned by role tabowner, with the rights of role sub")
            && error.contains(why)
            && !error.contains("ran as"),
        "{error}"
    );
}

pub const IMPLICIT_CAST: &str =
    "CREATE CAST (m.mood AS text) WITH FUNCTION m.loud(m.mood) AS IMPLICIT";

/// `sub`'s subscribe of `table` with `extra` (events insert): the error it raises.
pub fn subscribe_error(pg: &Cluster, table: &str, extra: &str) -> String {
    let rx = Receiver::start();
    error_of(
        &mut pg.connect_as("postgres", "sub"),
        &format!(
            "SELECT webhook.subscribe('s', '{table}', '{}', events => '{{insert}}'{extra})",
            rx.url("/s")
        ),
    )
}

/// Asserts that `error` refuses to `how` a value of type `type_name`, owned by tabowner.
pub fn assert_type_refused(error: &str, how: &str, type_name: &str) {
    assert!(
        error.contains(&format!("would {how}"))
            && error.contains(&format!(
                "a value of type {type_name}, owned by role tabowner, with the rights of role sub"
            ))
            && !error.contains("ran as"),
        "{error}"
    );
}

/// Makes, as tabowner, table m.plain (id int), which `sub` may subscribe, and runs `sql`.
pub fn plain_table(owner: &mut Client, sql: &str) {
    exec(
        owner,
        &format!(
            "CREATE TABLE m.plain (id int PRIMARY KEY);
             GRANT SELECT, TRIGGER ON m.plain TO sub;
             {sql}"
        ),
    );
}
