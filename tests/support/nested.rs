//! A table `t (id, v)`, triggers that write it, and the changes a receiver got, for the tests
//! of ordered subscriptions and what a statement's own triggers write (nested_order.rs,
//! nested_attacks.rs).

use serde_json::Value;

use super::cluster::{wait_until, Cluster};
use super::receiver::Receiver;
use super::{exec, subscribe, WAIT};

pub const TABLE: &str = "CREATE TABLE t (id int PRIMARY KEY, v int);";

/// Trigger `name` on `table`, `fires` as it says (`AFTER INSERT`), for each row, running
/// PL/pgSQL `body`.
pub fn trigger(name: &str, fires: &str, table: &str, body: &str) -> String {
    format!(
        "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} END $$;
         CREATE TRIGGER {name} {fires} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}();"
    )
}

/// The trigger that adds 1 to `v` of a row of `t` inserted with v = 0.
pub fn bump() -> String {
    trigger(
        "bump",
        "AFTER INSERT",
        "t",
        "IF NEW.v = 0 THEN UPDATE t SET v = v + 1 WHERE id = NEW.id; END IF; RETURN NULL;",
    )
}

/// `t` with `bump`.
pub fn bumped() -> String {
    format!("{TABLE} {}", bump())
}

/// An upsert done by a BEFORE INSERT trigger of `t`: the old row is deleted first.
pub fn replace_old() -> String {
    trigger(
        "replace_old",
        "BEFORE INSERT",
        "t",
        "DELETE FROM t WHERE id = NEW.id; RETURN NEW;",
    )
}

/// (operation, row id, v) of one event's payload (`database` format); v of the old row for a
/// DELETE.
pub fn change(payload: &Value) -> (String, i64, i64) {
    let row = if payload["record"].is_null() {
        &payload["old_record"]
    } else {
        &payload["record"]
    };
    (
        payload["type"].as_str().unwrap_or_default().to_string(),
        row["id"].as_i64().unwrap_or(-1),
        row["v"].as_i64().unwrap_or(-1),
    )
}

pub fn ins(id: i64, v: i64) -> (String, i64, i64) {
    ("INSERT".to_string(), id, v)
}

pub fn upd(id: i64, v: i64) -> (String, i64, i64) {
    ("UPDATE".to_string(), id, v)
}

pub fn del(id: i64, v: i64) -> (String, i64, i64) {
    ("DELETE".to_string(), id, v)
}

/// The changes `rx` accepted, one event per request, in arrival order, once there are `n`.
pub fn arrived(rx: &Receiver, n: usize) -> Vec<(String, i64, i64)> {
    wait_until(WAIT, &format!("{n} events"), || rx.accepted().len() >= n);
    rx.accepted().iter().map(|r| change(&r.json())).collect()
}

/// A cluster, a receiver and a session with `setup` run and `table` subscribed (`options`).
pub fn subscribed(
    setup: &str,
    table: &str,
    options: &str,
) -> (Cluster, Receiver, postgres::Client) {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(&mut db, setup);
    subscribe(&mut db, table, table, &rx.url("/t"), options);
    (pg, rx, db)
}
