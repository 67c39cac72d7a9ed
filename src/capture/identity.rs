//! Which subscription a capture trigger works for, and with whose rights.
//!
//! Never from the trigger's arguments alone: whoever created a trigger chose them. The argument
//! only names a subscription; its row in `webhook._subscriptions` must then say that the table
//! the trigger fired on is the subscription's table or lies under it (a partition or an
//! inheritance child). The owner, filter, columns and ordering come from that row, so a trigger
//! can neither borrow another table's subscription (its URL and secret) nor pick the role its
//! filter runs as.
//!
//! A backend reads each trigger's subscription once: the answer is cached by trigger OID and
//! dropped when the relation cache of the table (or of the subscription's table) is
//! invalidated — which creating or dropping a trigger, renaming a table and every change the
//! SQL API makes to a subscription all do.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::prelude::*;

use super::shaped::Shape;
use crate::sql::{arg, first_row_now};

const LOOKUP: &std::ffi::CStr = crate::sql::query_cstr!("capture_subscription.sql");

/// What one capture trigger does.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureInfo {
    pub subscription_id: i32,
    /// Its name, for errors raised by its user-written SQL.
    pub name: String,
    /// The role user-written SQL (the filter, the payload) runs as.
    pub owner: pg_sys::Oid,
    pub ordered: bool,
    pub shape: Shape,
    /// The subscribed table; events name it, whichever partition the trigger fired on.
    pub target: pg_sys::Oid,
    pub schema: String,
    pub table: String,
    /// False once unsubscribed: the trigger is on its way out and captures nothing.
    pub live: bool,
    /// Columns ordering its events per key (`None`: no per-key order).
    pub order_key: Option<Vec<String>>,
    /// Mixed into its order keys' lock buckets (`pg_webhook_core::order_key::bucket`).
    pub lock_salt: i64,
    /// Sent a transaction per request (`group_by => 'transaction'`).
    pub grouped: bool,
}

/// Why a trigger does not belong to the subscription it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotOurs {
    /// No such subscription (or its table is gone).
    Unknown(i32),
    /// The subscription watches another table.
    OtherTable { subscription: i32 },
}

struct Cached {
    relid: pg_sys::Oid,
    info: Rc<CaptureInfo>,
}

thread_local! {
    static CACHE: RefCell<HashMap<pg_sys::Oid, Cached>> = RefCell::new(HashMap::new());
    /// Bumped by every invalidation, so a lookup that raced one is not cached.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// Registers the role and schema invalidation callbacks; once per process, from `_PG_init`.
/// Relation cache invalidations (a table's triggers, privileges, row security, name:
/// `forget_relation`) and schema changes clear the cache; those and role changes (attributes, memberships) bump the generation the delivery
/// worker watches to re-check what each subscription's owner may still read.
pub fn init() {
    // SAFETY: registers plain functions; called once per process on the main thread.
    unsafe {
        for cache in [
            pg_sys::SysCacheIdentifier::AUTHOID,
            pg_sys::SysCacheIdentifier::AUTHMEMMEMROLE,
            pg_sys::SysCacheIdentifier::AUTHMEMROLEMEM,
        ] {
            pg_sys::CacheRegisterSyscacheCallback(
                cache as i32,
                Some(on_role_change),
                pg_sys::Datum::from(0),
            );
        }
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            Some(on_schema_change),
            pg_sys::Datum::from(0),
        );
    }
}

/// How many catalog invalidations this process has taken in: when it changes, privileges or
/// roles may have changed.
pub fn catalog_generation() -> u64 {
    GENERATION.with(Cell::get)
}

/// Runs inside invalidation processing: must not raise an ERROR.
unsafe extern "C-unwind" fn on_role_change(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
}

/// A schema changed (renamed, its privileges): `ALTER SCHEMA … RENAME` invalidates no relation,
/// yet events name their table's schema. Runs inside invalidation processing: must not raise
/// an ERROR.
unsafe extern "C-unwind" fn on_schema_change(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    forget_relation(pg_sys::Oid::INVALID);
}

/// After a relation cache invalidation (see `crate::invalidation`): must not raise an ERROR or
/// allocate in Postgres.
pub fn forget_relation(relid: pg_sys::Oid) {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    CACHE.with(|cache| {
        // A lookup in progress holds no borrow (see `lookup`), so this cannot fail; if it ever
        // did, the generation bump above still keeps the racing lookup out of the cache.
        if let Ok(mut cache) = cache.try_borrow_mut() {
            if relid == pg_sys::Oid::INVALID {
                cache.clear();
            } else {
                cache.retain(|_, e| e.relid != relid && e.info.target != relid);
            }
        }
    });
}

/// The subscription of the trigger `tgoid` (whose argument names `named`), which fired on
/// `relid`.
pub fn lookup(
    tgoid: pg_sys::Oid,
    named: i32,
    relid: pg_sys::Oid,
) -> Result<Rc<CaptureInfo>, NotOurs> {
    let hit = CACHE.with(|c| {
        c.borrow()
            .get(&tgoid)
            .filter(|e| e.relid == relid && e.info.subscription_id == named)
            .map(|e| e.info.clone())
    });
    if let Some(info) = hit {
        return Ok(info);
    }
    let generation = GENERATION.with(Cell::get);
    let info = Rc::new(read(named, relid)?);
    if GENERATION.with(Cell::get) == generation {
        CACHE.with(|c| {
            c.borrow_mut().insert(
                tgoid,
                Cached {
                    relid,
                    info: info.clone(),
                },
            )
        });
    }
    Ok(info)
}

/// What subscription `id` on `target` captures, read afresh (a backfill chunk's view of it);
/// `None` once it is unsubscribed or gone.
pub fn subscription(id: i32, target: pg_sys::Oid) -> Option<CaptureInfo> {
    read(id, target).ok().filter(|info| info.live)
}

/// One row as the lookup query returns it.
type Row = (String, pg_sys::Oid, pg_sys::Oid, String, String, bool);

fn read(id: i32, relid: pg_sys::Oid) -> Result<CaptureInfo, NotOurs> {
    // The writer has no rights on the private table; the lookup runs as the extension owner,
    // sandboxed, so the writer's search_path cannot redirect it. It reads with the latest
    // snapshot, as the trigger list itself is read: a REPEATABLE READ or SERIALIZABLE writer
    // whose snapshot predates the subscription still fires its trigger, and must find it.
    let row = first_row_now(LOOKUP, &[arg(id), arg(relid)], |r| -> Row {
        (
            r.get::<String>(1).unwrap_or_default(),
            r.get::<pg_sys::Oid>(2).unwrap_or(pg_sys::Oid::INVALID),
            r.get::<pg_sys::Oid>(3).unwrap_or(pg_sys::Oid::INVALID),
            r.get::<String>(4).unwrap_or_default(),
            r.get::<String>(5).unwrap_or_default(),
            r.get::<bool>(6).unwrap_or(false),
        )
    })
    .unwrap_or_else(|e| error!("pg_webhook capture trigger: reading subscription {id}: {e}"));
    let Some((json, owner, target, schema, table, covers)) = row else {
        return Err(NotOurs::Unknown(id));
    };
    if !covers {
        return Err(NotOurs::OtherTable { subscription: id });
    }
    let fields: serde_json::Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| error!("pg_webhook capture trigger: subscription {id}: {e}"));
    Ok(from_row(id, &fields, owner, target, schema, table))
}

/// The capture settings in a subscription row (as JSON: older schemas lack newer columns, which
/// then take their defaults).
pub fn from_row(
    id: i32,
    row: &serde_json::Value,
    owner: pg_sys::Oid,
    target: pg_sys::Oid,
    schema: String,
    table: String,
) -> CaptureInfo {
    // An orphan (its owner's role was dropped) runs no SQL of its owner's: after a restore into
    // another cluster, its owner's OID may name a role that never wrote it. Its rows are
    // queued whole, held until it is handed over (which an orphan with SQL never is).
    let orphan = row.get("owner_dropped").and_then(|v| v.as_bool()) == Some(true);
    let sql = |key: &str| {
        (!orphan)
            .then(|| row.get(key).and_then(|v| v.as_str()).map(str::to_string))
            .flatten()
    };
    let list = |key: &str| {
        row.get(key).and_then(|v| v.as_array()).map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
    };
    CaptureInfo {
        subscription_id: id,
        name: row
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string(),
        owner,
        ordered: row
            .get("ordered")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        shape: Shape {
            filter: sql("filter"),
            columns: list("columns"),
            exclude_columns: list("exclude_columns"),
            skip_unchanged: row
                .get("skip_unchanged")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            payload: sql("payload"),
        },
        target,
        schema,
        table,
        live: row.get("status").and_then(|v| v.as_str()) != Some("unsubscribed"),
        order_key: list("order_key"),
        lock_salt: row.get("lock_salt").and_then(|v| v.as_i64()).unwrap_or(0),
        grouped: row.get("group_by").and_then(|v| v.as_str()).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_of_any_schema_version_reads_with_defaults() {
        let row = serde_json::json!({
            "id": 7, "status": "active", "filter": "NEW.total > 1",
            "columns": null, "exclude_columns": ["ssn"], "skip_unchanged": true
        });
        let info = from_row(
            7,
            &row,
            pg_sys::Oid::from(10u32),
            pg_sys::Oid::from(20u32),
            "public".into(),
            "orders".into(),
        );
        assert!(!info.ordered, "0.1.0 rows have no ordered column");
        assert_eq!(info.order_key, None);
        assert!(info.live);
        assert_eq!(info.shape.filter.as_deref(), Some("NEW.total > 1"));
        assert_eq!(info.shape.exclude_columns, Some(vec!["ssn".to_string()]));
        assert!(info.shape.skip_unchanged);
        assert_eq!(
            info.shape.payload, None,
            "rows before 0.3.0 have no payload"
        );
        let gone = serde_json::json!({"status": "unsubscribed", "ordered": true});
        let info = from_row(
            7,
            &gone,
            pg_sys::Oid::INVALID,
            pg_sys::Oid::INVALID,
            String::new(),
            String::new(),
        );
        assert!(!info.live && info.ordered);
    }
}
