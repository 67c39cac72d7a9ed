//! A subscription's triggers, kept equal to what its row says.
//!
//! A live subscription has one capture trigger per event kind on its table and on every
//! partition under it, at any depth: a statement that names a partition
//! fires that partition's statement triggers only, so each level needs its own. An ordered
//! subscription also has a BEFORE statement trigger on each, which takes its order lock before
//! the statement locks any row. `sync` makes the triggers match — after subscribe, unsubscribe,
//! partition DDL (the `webhook_on_ddl` event trigger) and upgrades — and `dropped` notices a
//! capture trigger that was dropped by hand.
//!
//! pg_webhook's triggers are recognised by their function's OID and their argument (the
//! subscription id), never by name.

use std::cell::Cell;

use pg_webhook_core::payload::{parse_event_list, Operation};
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal, SpiClient, SpiResult};

pub mod drop_access;
mod events;
mod reconcile;

pub use reconcile::reconcile;

use crate::capture::{named_subscription, NEW_ROWS, OLD_ROWS};
use crate::error::spi;
use crate::privilege::as_extension_owner;
use crate::sql::first_row;

const TREE: &str = include_str!("../../sql/queries/subscription_tree.sql");
const OURS: &str = include_str!("../../sql/queries/pg_webhook_triggers.sql");
const WANTED: &str = include_str!("../../sql/queries/subscription_triggers_wanted.sql");
pub const UNPARK: &str = include_str!("../../sql/queries/unpark.sql");
const UNSUBSCRIBE: &str = include_str!("../../sql/queries/unsubscribe.sql");
const LIVE: &str = include_str!("../../sql/queries/live_targets.sql");
const ALL_IDS: &str = include_str!("../../sql/queries/all_subscription_ids.sql");
const FUNCTIONS: &str = include_str!("../../sql/queries/trigger_functions.sql");
const NAME_TAKEN: &str = include_str!("../../sql/queries/trigger_name_taken.sql");

thread_local! {
    /// Set while pg_webhook itself drops triggers, so the sql_drop event trigger does not take
    /// those drops for a user's.
    static SYNCING: Cell<u32> = const { Cell::new(0) };
}

/// `pg_trigger.tgtype` bits (catalog/pg_trigger.h).
const TYPE_BEFORE: i32 = 1 << 1;
const TYPE_ROW: i32 = 1 << 0;

fn type_bit(op: Operation) -> i32 {
    match op {
        Operation::Insert => 1 << 2,
        Operation::Delete => 1 << 3,
        Operation::Update => 1 << 4,
        Operation::Truncate => 1 << 5,
        // Queued by webhook.backfill(), never by a trigger.
        Operation::Backfill => 0,
    }
}

/// One trigger a subscription needs on one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Capture(Operation),
    /// BEFORE, for every event kind of the subscription.
    OrderLock,
}

/// A pg_webhook trigger as it is in the catalog.
struct Existing {
    relid: pg_sys::Oid,
    name: String,
    table: String,
    tgtype: i32,
    function: pg_sys::Oid,
    args: Vec<String>,
}

/// The OIDs of `webhook._capture()` and `webhook._order_lock()` (invalid while the SQL objects
/// are older than 0.3.0 and have none: then there are no order-lock triggers).
fn functions(client: &SpiClient<'_>) -> SpiResult<(pg_sys::Oid, pg_sys::Oid)> {
    let row = client
        .select(FUNCTIONS, Some(1), &[])?
        .first()
        .get_two::<pg_sys::Oid, pg_sys::Oid>()?;
    Ok((
        row.0.unwrap_or(pg_sys::Oid::INVALID),
        row.1.unwrap_or(pg_sys::Oid::INVALID),
    ))
}

fn existing(
    client: &SpiClient<'_>,
    funcs: (pg_sys::Oid, pg_sys::Oid),
    on: Option<&[pg_sys::Oid]>,
) -> SpiResult<Vec<Existing>> {
    let rows = client.select(
        OURS,
        None,
        &[vec![funcs.0, funcs.1].into(), on.map(<[_]>::to_vec).into()],
    )?;
    let mut out = Vec::new();
    for r in rows {
        let hex: String = r.get(7)?.unwrap_or_default();
        out.push(Existing {
            relid: r.get(2)?.unwrap_or(pg_sys::Oid::INVALID),
            name: r.get(3)?.unwrap_or_default(),
            tgtype: r.get(4)?.unwrap_or_default(),
            function: r.get(5)?.unwrap_or(pg_sys::Oid::INVALID),
            table: r.get(6)?.unwrap_or_default(),
            args: split_args(&hex),
        });
    }
    Ok(out)
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

impl Existing {
    /// What this trigger is, if it is exactly a trigger `sync` would make for `id`.
    fn kind(&self, id: i32, funcs: (pg_sys::Oid, pg_sys::Oid), ops: &[Operation]) -> Option<Kind> {
        if self.args != [id.to_string()] || self.tgtype & TYPE_ROW != 0 {
            return None;
        }
        let before = self.tgtype & TYPE_BEFORE != 0;
        if self.function == funcs.0 && !before {
            let op = Operation::ALL
                .into_iter()
                .find(|op| self.tgtype == type_bit(*op))?;
            return ops.contains(&op).then_some(Kind::Capture(op));
        }
        let all: i32 = ops.iter().map(|op| type_bit(*op)).sum();
        (self.function == funcs.1 && before && self.tgtype == TYPE_BEFORE | all)
            .then_some(Kind::OrderLock)
    }
}

fn ddl(id: i32, kind: Kind, name: &str, table: &str, ops: &[Operation]) -> String {
    let name = quote_identifier(name);
    let arg = quote_literal(id.to_string());
    match kind {
        Kind::Capture(op) => {
            let referencing = match op {
                Operation::Insert => format!("REFERENCING NEW TABLE AS {NEW_ROWS}"),
                Operation::Update => {
                    format!("REFERENCING OLD TABLE AS {OLD_ROWS} NEW TABLE AS {NEW_ROWS}")
                }
                Operation::Delete => format!("REFERENCING OLD TABLE AS {OLD_ROWS}"),
                Operation::Truncate | Operation::Backfill => String::new(),
            };
            format!(
                "CREATE TRIGGER {name} AFTER {} ON {table} {referencing} FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture({arg})",
                op.as_sql()
            )
        }
        Kind::OrderLock => {
            let events: Vec<&str> = ops.iter().map(|op| op.as_sql()).collect();
            format!(
                "CREATE TRIGGER {name} BEFORE {} ON {table} FOR EACH STATEMENT EXECUTE FUNCTION webhook._order_lock({arg})",
                events.join(" OR ")
            )
        }
    }
}

fn base_name(id: i32, kind: Kind) -> String {
    match kind {
        Kind::Capture(op) => format!("pg_webhook_{id}_{}", op.as_event_name()),
        Kind::OrderLock => format!("pg_webhook_{id}_order"),
    }
}

/// A trigger name free on `relid`: the usual one, or with a numeric suffix when a trigger of
/// the table's owner already has it.
fn free_name(client: &SpiClient<'_>, relid: pg_sys::Oid, base: &str) -> SpiResult<String> {
    for n in 1..100 {
        let name = if n == 1 {
            base.to_string()
        } else {
            format!("{base}_{n}")
        };
        let taken = client
            .select(NAME_TAKEN, Some(1), &[relid.into(), name.as_str().into()])?
            .len();
        if taken == 0 {
            return Ok(name);
        }
    }
    error!("pg_webhook: no free trigger name like {base} on table {relid}: drop some triggers")
}

/// What a subscription's row asks for: its table, event kinds and ordering; `None` when its
/// table is gone or it is unsubscribed.
fn wanted(
    client: &SpiClient<'_>,
    id: i32,
) -> SpiResult<Option<(pg_sys::Oid, Vec<Operation>, bool)>> {
    let Some((target, json)) = first_row(client, WANTED, &[id.into()], |row| {
        Ok((
            row.get::<pg_sys::Oid>(1)?,
            row.get::<String>(2)?.unwrap_or_default(),
        ))
    })?
    else {
        return Ok(None);
    };
    let fields: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    let events: Vec<Option<&str>> = fields["events"]
        .as_array()
        .map(|a| a.iter().map(serde_json::Value::as_str).collect())
        .unwrap_or_default();
    let ops = parse_event_list(&events).unwrap_or_default();
    let ordered = fields["ordered"].as_bool().unwrap_or(false);
    let live = fields["status"].as_str() != Some("unsubscribed");
    Ok(match (target, live) {
        (Some(t), true) => Some((t, ops, ordered)),
        _ => None,
    })
}

/// Makes the triggers of subscription `id` exactly what its row asks for: on its table and
/// everything under it while it is live, nowhere once it is unsubscribed. Runs as the
/// extension owner.
pub fn sync(id: i32) {
    as_extension_owner(|| {
        spi(
            "updating the subscription's triggers",
            Spi::connect_mut(|client| sync_with(client, id)),
        )
    })
}

fn sync_with(client: &mut SpiClient<'_>, id: i32) -> SpiResult<()> {
    let funcs = functions(client)?;
    let have = existing(client, funcs, None)?;
    let diff = diff(client, id, funcs, &have)?;
    let _syncing = Syncing::start();
    for t in &diff.extra {
        client.update(
            &format!("DROP TRIGGER {} ON {}", quote_identifier(&t.name), t.table),
            None,
            &[],
        )?;
    }
    for m in &diff.missing {
        let name = free_name(client, m.relid, &base_name(id, m.kind))?;
        client.update(&ddl(id, m.kind, &name, &m.table, &diff.ops), None, &[])?;
    }
    Ok(())
}

/// A trigger a subscription needs and lacks.
struct Missing {
    relid: pg_sys::Oid,
    kind: Kind,
    table: String,
    /// On the subscription's own table (not one of its partitions).
    on_target: bool,
}

/// How a subscription's triggers differ from what its row asks for.
struct Diff<'a> {
    /// Its event kinds.
    ops: Vec<Operation>,
    /// What it lacks, in the order to make them: table by table down the tree, event kinds in
    /// order.
    missing: Vec<Missing>,
    /// Triggers naming it that it does not want (on a table outside its tree, of the wrong
    /// kind, or any at all once it is unsubscribed).
    extra: Vec<&'a Existing>,
}

/// Compares subscription `id`'s triggers, out of every pg_webhook trigger there is (`have`,
/// from one `existing` scan), with what its row asks for.
fn diff<'a>(
    client: &SpiClient<'_>,
    id: i32,
    funcs: (pg_sys::Oid, pg_sys::Oid),
    have: &'a [Existing],
) -> SpiResult<Diff<'a>> {
    let wanted = wanted(client, id)?;
    let ops = wanted.as_ref().map(|w| w.1.clone()).unwrap_or_default();
    let mut missing = Vec::new();
    if let Some((target, ops, ordered)) = &wanted {
        for r in client.select(TREE, None, &[(*target).into()])? {
            let relid: pg_sys::Oid = r.get(1)?.unwrap_or(pg_sys::Oid::INVALID);
            let table: String = r.get(2)?.unwrap_or_default();
            let kinds = ops
                .iter()
                .map(|op| Kind::Capture(*op))
                .chain((*ordered && funcs.1 != pg_sys::Oid::INVALID).then_some(Kind::OrderLock));
            for kind in kinds {
                missing.push(Missing {
                    relid,
                    kind,
                    table: table.clone(),
                    on_target: relid == *target,
                });
            }
        }
    }
    let mut extra = Vec::new();
    for t in have
        .iter()
        .filter(|t| named_subscription(&t.args) == Some(id))
    {
        let found = t.kind(id, funcs, &ops).and_then(|kind| {
            missing
                .iter()
                .position(|m| m.relid == t.relid && m.kind == kind)
        });
        match found {
            Some(i) => {
                missing.remove(i);
            }
            None => extra.push(t),
        }
    }
    Ok(Diff {
        ops,
        missing,
        extra,
    })
}

/// Marks pg_webhook's own trigger DDL while it lasts, whichever way it ends (an ERROR unwinds
/// through the guard, so the mark cannot outlive a failed sync).
struct Syncing;

impl Syncing {
    fn start() -> Syncing {
        SYNCING.with(|s| s.set(s.get() + 1));
        Syncing
    }
}

impl Drop for Syncing {
    fn drop(&mut self) {
        SYNCING.with(|s| s.set(s.get().saturating_sub(1)));
    }
}

/// Brings the triggers of every subscription in line with 0.3.0 (partitions, order locks, the
/// one-argument form) and drops pg_webhook triggers naming no live subscription; run by the
/// upgrade script. Returns how many subscriptions it went through.
#[pg_extern(name = "_sync_all_triggers", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn sync_all_triggers() -> i64 {
    let ids: Vec<i32> = as_extension_owner(|| {
        spi(
            "listing subscriptions",
            Spi::connect(|client| {
                client
                    .select(ALL_IDS, None, &[])?
                    .map(|r| r.get::<i32>(1).map(Option::unwrap_or_default))
                    .collect::<SpiResult<Vec<i32>>>()
            }),
        )
    });
    for id in &ids {
        sync(*id);
    }
    let changes = as_extension_owner(|| {
        spi(
            "dropping stray pg_webhook triggers",
            Spi::connect_mut(reconcile::pass),
        )
    });
    for change in changes {
        notice!("pg_webhook: {change}");
    }
    ids.len() as i64
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
