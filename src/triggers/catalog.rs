//! What the catalog and a subscription's row say about its triggers, read at the latest
//! snapshot: `sync` and the event triggers act on the catalog as it is now, as PostgreSQL's own
//! DDL does — under REPEATABLE READ the transaction snapshot may still show a trigger or a
//! partition that is gone, or miss a subscription made since. Each read runs inside the
//! caller's SPI connection. Also which subscriptions' triggers are known complete here
//! (`webhook._triggers_made`, which a restore leaves empty).

use pg_webhook_core::payload::{parse_event_list, Operation};
use pgrx::prelude::*;

use crate::sql::{arg, at_latest, query_cstr};

const FUNCTIONS: &std::ffi::CStr = query_cstr!("trigger_functions.sql");
const OURS: &std::ffi::CStr = query_cstr!("pg_webhook_triggers.sql");
const WANTED: &std::ffi::CStr = query_cstr!("subscription_triggers_wanted.sql");
const TREE: &std::ffi::CStr = query_cstr!("subscription_tree.sql");
const NAME_TAKEN: &std::ffi::CStr = query_cstr!("trigger_name_taken.sql");
const MADE: &std::ffi::CStr = query_cstr!("triggers_made.sql");
const MADE_IDS: &std::ffi::CStr = query_cstr!("triggers_made_ids.sql");
const ALL_IDS: &std::ffi::CStr = query_cstr!("all_subscription_ids.sql");

/// A pg_webhook trigger as it is in the catalog.
pub(super) struct Existing {
    pub relid: pg_sys::Oid,
    pub name: String,
    pub table: String,
    pub tgtype: i32,
    pub function: pg_sys::Oid,
    pub args: Vec<String>,
    /// Whether it fires in an ordinary session (not disabled, nor made a replica's only).
    pub fires: bool,
}

/// The OIDs of `webhook._capture()` and `webhook._order_lock()` (invalid while the SQL objects
/// are older than 0.3.0 and have none: then there are no order-lock triggers).
pub(super) fn functions() -> (pg_sys::Oid, pg_sys::Oid) {
    let mut funcs = (pg_sys::Oid::INVALID, pg_sys::Oid::INVALID);
    at_latest(
        "reading pg_webhook's trigger functions",
        FUNCTIONS,
        &[],
        |r| {
            funcs = (
                r.get(1).unwrap_or(pg_sys::Oid::INVALID),
                r.get(2).unwrap_or(pg_sys::Oid::INVALID),
            );
        },
    );
    funcs
}

/// Every trigger running one of `funcs`, on the tables `on` (`None`: everywhere).
pub(super) fn existing(
    funcs: (pg_sys::Oid, pg_sys::Oid),
    on: Option<&[pg_sys::Oid]>,
) -> Vec<Existing> {
    let mut out = Vec::new();
    at_latest(
        "reading pg_webhook's triggers",
        OURS,
        &[arg(vec![funcs.0, funcs.1]), arg(on.map(<[_]>::to_vec))],
        |r| {
            out.push(Existing {
                relid: r.get(2).unwrap_or(pg_sys::Oid::INVALID),
                name: r.get(3).unwrap_or_default(),
                tgtype: r.get(4).unwrap_or_default(),
                function: r.get(5).unwrap_or(pg_sys::Oid::INVALID),
                table: r.get(6).unwrap_or_default(),
                args: split_args(&r.get::<String>(7).unwrap_or_default()),
                fires: r.get(8).unwrap_or(true),
            });
        },
    );
    out
}

/// `pg_trigger.tgargs` (hex): each argument followed by a NUL byte.
fn split_args(hex: &str) -> Vec<String> {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    let mut args: Vec<String> = bytes
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // The terminator of the last argument leaves an empty tail.
    if args.last().is_some_and(String::is_empty) {
        args.pop();
    }
    args
}

/// A trigger name free on `relid`: the usual one, or with a numeric suffix when a trigger of
/// the table's owner already has it.
pub(super) fn free_name(relid: pg_sys::Oid, base: &str) -> String {
    for n in 1..100 {
        let name = if n == 1 {
            base.to_string()
        } else {
            format!("{base}_{n}")
        };
        let taken = at_latest(
            "looking for a free trigger name",
            NAME_TAKEN,
            &[arg(relid), arg(name.as_str())],
            |_| {},
        );
        if taken == 0 {
            return name;
        }
    }
    error!("pg_webhook: no free trigger name like {base} on table {relid}: drop some triggers")
}

/// What a subscription's row asks for: its table, event kinds and ordering; `None` when its
/// table is gone or it is unsubscribed.
pub(super) fn wanted(id: i32) -> Option<(pg_sys::Oid, Vec<Operation>, bool)> {
    let mut row = None;
    at_latest("reading a subscription", WANTED, &[arg(id)], |r| {
        row = Some((
            r.get::<pg_sys::Oid>(1),
            r.get::<String>(2).unwrap_or_default(),
        ));
    });
    let (target, json) = row?;
    let fields: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    let events: Vec<Option<&str>> = fields["events"]
        .as_array()
        .map(|a| a.iter().map(serde_json::Value::as_str).collect())
        .unwrap_or_default();
    let ops = parse_event_list(&events).unwrap_or_default();
    let ordered = fields["ordered"].as_bool().unwrap_or(false);
    let live = fields["status"].as_str() != Some("unsubscribed");
    match (target, live) {
        (Some(t), true) => Some((t, ops, ordered)),
        _ => None,
    }
}

/// The tables (OID, qualified name) a subscription on `target` puts its triggers on: `target`
/// and its partitions at any depth.
pub(super) fn tree(target: pg_sys::Oid) -> Vec<(pg_sys::Oid, String)> {
    let mut tables = Vec::new();
    at_latest(
        "reading a subscribed table's partitions",
        TREE,
        &[arg(target)],
        |r| {
            tables.push((
                r.get(1).unwrap_or(pg_sys::Oid::INVALID),
                r.get(2).unwrap_or_default(),
            ));
        },
    );
    tables
}

/// Notes that subscription `id`'s triggers are complete in this database: from now on, one
/// missing was dropped. (Not under SQL objects older than 0.3.0, which have no such note.)
pub(super) fn mark_made(id: i32) {
    if notes_made() {
        at_latest("noting a subscription's triggers", MADE, &[arg(id)], |_| {});
    }
}

/// The subscriptions whose triggers are known complete in this database: made by pg_webhook, or
/// restored and seen complete since; `None` under SQL objects older than 0.3.0, which do not
/// note it (there every subscription counts). A restored subscription is not among them until
/// its triggers are all back (pg_restore creates them after the table data).
pub(super) fn made_ids() -> Option<std::collections::HashSet<i32>> {
    if !notes_made() {
        return None;
    }
    Some(id_set("reading whose triggers were made", MADE_IDS))
}

/// Every subscription that has a row, live or not.
pub(super) fn all_ids() -> std::collections::HashSet<i32> {
    id_set("reading every subscription", ALL_IDS)
}

/// The subscription ids `query` returns.
fn id_set(doing: &str, query: &std::ffi::CStr) -> std::collections::HashSet<i32> {
    let mut ids = std::collections::HashSet::new();
    at_latest(doing, query, &[], |r| ids.extend(r.get::<i32>(1)));
    ids
}

/// Whether this database's pg_webhook has `webhook._triggers_made` (0.3.0 on).
fn notes_made() -> bool {
    crate::sql::webhook_relation(c"_triggers_made") != pg_sys::Oid::INVALID
}

#[cfg(test)]
mod tests {
    use super::split_args;

    #[test]
    fn trigger_arguments_split_on_their_terminators() {
        assert_eq!(split_args("3500"), vec!["5"]);
        assert_eq!(split_args("353a6f72646572656400"), vec!["5:ordered"]);
        assert_eq!(split_args("370031300000"), vec!["7", "10", ""]);
        assert!(split_args("").is_empty());
    }
}
