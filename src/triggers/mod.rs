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

use pg_webhook_core::payload::Operation;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal, SpiClient, SpiResult};

mod catalog;
pub mod drop_access;
mod events;
mod key_columns;
mod key_types;
mod reconcile;

pub use reconcile::{forget_reports, reconcile};

use crate::capture::{named_subscription, NEW_ROWS, OLD_ROWS};
use crate::error::spi;
use crate::privilege::as_extension_owner;
use crate::sql::OneSnapshot;
use catalog::{
    all_ids, existing, free_name, functions, made_ids, mark_made, tree, wanted, Existing,
};

/// `crate::queue::UNPARK`, for `at_latest`.
const UNPARK_NOW: &std::ffi::CStr = crate::sql::query_cstr!("unpark.sql");
const UNSUBSCRIBE: &std::ffi::CStr = crate::sql::query_cstr!("unsubscribe.sql");
const LIVE: &std::ffi::CStr = crate::sql::query_cstr!("live_targets.sql");

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

/// pg_webhook's triggers that name a subscription with no row, as (id, trigger, table): what a
/// schema-only restore (or pg_restore -j, or pg_upgrade's schema step) leaves until its data
/// brings the rows. Runs as the extension owner.
pub fn naming_no_subscription() -> Vec<(i32, String, String)> {
    as_extension_owner(|| {
        spi(
            "reading pg_webhook's triggers",
            Spi::connect(|_| {
                // The triggers before the rows (never deleted): a subscription committed in
                // between shows its row with its triggers, never its triggers alone.
                let have = existing(functions(), None);
                let known = all_ids();
                let mut stray: Vec<_> = have
                    .into_iter()
                    .filter_map(|t| {
                        let id = named_subscription(&t.args)?;
                        (!known.contains(&id)).then_some((id, t.name, t.table))
                    })
                    .collect();
                stray.sort();
                Ok(stray)
            }),
        )
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

/// The triggers and the tree are read at one moment: another session adding a partition
/// under another branch commits it with its triggers, so it is seen with them or not at all
/// (read at two moments, it was seen without them between, and got a second set: every
/// change to it sent twice, under two webhook-ids). A trigger is made only once the table is
/// locked as CREATE TRIGGER locks it and none is there at that point: two sessions repairing
/// the same table make one set. No lock is held across the subscription: partition DDL holds
/// its tables' locks when it gets here, and unsubscribe takes them after.
fn sync_with(client: &mut SpiClient<'_>, id: i32) -> SpiResult<()> {
    let funcs = functions();
    let one = OneSnapshot::take();
    let have = existing(funcs, None);
    let diff = diff(id, funcs, &have);
    drop(one);
    let _syncing = Syncing::start();
    for t in &diff.extra {
        // (IF EXISTS: a table dropped since the read took its triggers with it.)
        client.update(
            &format!(
                "DROP TRIGGER IF EXISTS {} ON {}",
                quote_identifier(&t.name),
                t.table
            ),
            None,
            &[],
        )?;
    }
    for m in &diff.missing {
        // SAFETY: the lock CREATE TRIGGER takes, held to the end of the transaction; taking
        // it takes in the invalidations of what committed before, which the syscache lookup
        // then sees (a table dropped since the read is skipped).
        let exists = unsafe {
            pg_sys::LockRelationOid(m.relid, pg_sys::ShareRowExclusiveLock as pg_sys::LOCKMODE);
            pg_sys::SearchSysCacheExists(
                pg_sys::SysCacheIdentifier::RELOID as i32,
                pg_sys::Datum::from(m.relid),
                pg_sys::Datum::from(0),
                pg_sys::Datum::from(0),
                pg_sys::Datum::from(0),
            )
        };
        let made_meanwhile = || {
            existing(funcs, Some(&[m.relid]))
                .iter()
                .any(|t| t.kind(id, funcs, &diff.ops) == Some(m.kind))
        };
        if !exists || made_meanwhile() {
            continue;
        }
        let name = free_name(m.relid, &base_name(id, m.kind));
        client.update(&ddl(id, m.kind, &name, &m.table, &diff.ops), None, &[])?;
    }
    if diff.live {
        mark_made(id);
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
    /// It is live and its table exists: it wants triggers.
    live: bool,
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
fn diff<'a>(id: i32, funcs: (pg_sys::Oid, pg_sys::Oid), have: &'a [Existing]) -> Diff<'a> {
    let wanted = wanted(id);
    let ops = wanted.as_ref().map(|w| w.1.clone()).unwrap_or_default();
    let mut missing = Vec::new();
    if let Some((target, ops, ordered)) = &wanted {
        for (relid, table) in tree(*target) {
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
    Diff {
        live: wanted.is_some(),
        ops,
        missing,
        extra,
    }
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
    let mut ids: Vec<i32> = as_extension_owner(|| {
        spi(
            "listing subscriptions",
            Spi::connect(|_| Ok(all_ids().into_iter().collect())),
        )
    });
    // Oldest first, as the subscriptions were made.
    ids.sort_unstable();
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
