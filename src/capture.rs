//! The capture trigger: turns row changes into queued events, inside the writer's transaction.
//!
//! Because events are ordinary rows written in the same transaction as the change, they exist
//! exactly when the change committed: a rollback (or a rolled-back savepoint) removes both.
//!
//! It is a statement-level trigger with transition tables, and it writes the queue the way COPY
//! does — batched heap inserts plus index entries — without planning or executing SQL (but for
//! an ordered subscription's events that its AFTER triggers' statements queued first: see
//! `nested`). A bulk
//! `INSERT ... SELECT` pays per row only for `to_jsonb` and the queue row itself; a single-row
//! statement pays a few microseconds. No network I/O here; the transaction is flagged so COMMIT
//! wakes the worker.

use pg_webhook_core::payload::Operation;
use pgrx::prelude::*;

use crate::wake::note_event_queued;

pub mod backfill;
mod error;
mod frames_end;
mod identity;
pub mod merge_moves;
pub mod nested;
mod order_key;
mod output_settings;
pub mod primary_key;
mod queue_writer;
mod record_bytes;
mod row_json;
pub mod shaped;
mod shaped_images;
mod shaped_rows;
pub(crate) mod text_size;

pub use error::CaptureError;
use identity::{CaptureInfo, NotOurs};
use queue_writer::QueueWriter;
use shaped_rows::shaped_rows;

pub use identity::{catalog_generation, subscription as subscription_info};

/// Registers the invalidation callbacks of what capture caches per backend (which subscription
/// each trigger serves, where the queue is, how each table's rows are rendered); once per
/// process, from `_PG_init`.
pub fn init_cache() {
    identity::init();
}

/// What the capture caches keep of relation `relid` (every relation: `InvalidOid`) is stale.
pub fn forget_relation(relid: pg_sys::Oid) {
    identity::forget_relation(relid);
    queue_writer::forget_relation(relid);
    row_json::forget_relation(relid);
}

/// (schema, name) of a relation, each `None` if it is gone.
fn rel_names(relid: pg_sys::Oid) -> (Option<String>, Option<String>) {
    // SAFETY: syscache lookups; a missing relation gives null names.
    unsafe {
        let text = |p: *mut std::ffi::c_char| {
            (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
        };
        (
            text(pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid))),
            text(pg_sys::get_rel_name(relid)),
        )
    }
}

/// "schema.table" of a relation, for messages; "table <oid>" if it is gone.
fn table_name(relid: pg_sys::Oid) -> String {
    match rel_names(relid) {
        (Some(schema), Some(name)) => format!("{schema}.{name}"),
        _ => format!("table {}", relid.to_u32()),
    }
}

/// Transition table names used in every capture trigger definition.
pub const NEW_ROWS: &str = "pg_webhook_new";
pub const OLD_ROWS: &str = "pg_webhook_old";

/// The subscription a capture trigger serves, as the queue writer needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub id: i32,
    /// Its events are claimed apart from the others: ordered as a whole (`ordered`) or per key
    /// (`order_key`), or grouped by transaction (`group_by`).
    pub ordered: bool,
}

/// The subscription id a trigger's first argument names. Triggers made before 0.3.0 wrote
/// `<id>:ordered` and the shape as further arguments; only the id is read (everything else
/// comes from the subscription's row).
pub fn named_subscription(args: &[String]) -> Option<i32> {
    subscription_in(args.first()?)
}

/// The subscription id in a trigger's first argument (see `named_subscription`).
fn subscription_in(first: &str) -> Option<i32> {
    first.split(':').next()?.parse().ok()
}

/// Key of the advisory lock that serializes the writers of an ordered subscription
/// (`pg_locks`: locktype advisory, classid 0x70677768 "pgwh", objid the subscription id,
/// objsubid 3). The advisory lock functions of SQL make objsubid 1 or 2 only, so no session can
/// take this lock and hold up the table's writers.
const ORDER_LOCK_KEY: u32 = 0x7067_7768;
const ORDER_LOCK_SPACE: u16 = 3;

/// Waits for the other writers of an ordered subscription to commit or abort, and holds the
/// lock to the end of this transaction. Event ids are taken after this, so a later-committed
/// transaction always has larger ids, and the worker sends in id order.
fn lock_ordered(subscription_id: i32) {
    lock_exclusive(ORDER_LOCK_KEY, subscription_id as u32, ORDER_LOCK_SPACE);
}

/// Takes the transaction-scoped advisory lock (database, `field2`, `field3`, `space`) in
/// exclusive mode, as `pg_advisory_xact_lock` does, waiting for whoever holds it.
fn lock_exclusive(field2: u32, field3: u32, space: u16) {
    // SAFETY: a transaction-scoped advisory lock, as pg_advisory_xact_lock(int4, int4) takes.
    unsafe {
        let tag = pg_sys::LOCKTAG {
            locktag_field1: pg_sys::MyDatabaseId.to_u32(),
            locktag_field2: field2,
            locktag_field3: field3,
            locktag_field4: space,
            locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
            locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
        };
        // pgrx's bindings turn an ERROR here (a cancelled or deadlocked wait) into an unwind;
        // a second guard around the call would unwind through its C frame and abort.
        pg_sys::LockAcquire(
            &tag,
            pg_sys::ExclusiveLock as pg_sys::LOCKMODE,
            false,
            false,
        );
    }
}

/// The trigger functions' result: they return no tuple, and raise their errors themselves.
type Fired<'a> = Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible>;

/// The subscription this trigger call serves, checked against its row; `None` when there is
/// nothing to capture (it is unsubscribed, and its triggers are on their way out).
fn subscription_of(
    trigger: &PgTrigger<'_>,
) -> Result<Option<std::rc::Rc<CaptureInfo>>, CaptureError> {
    let data = trigger.trigger_data();
    // SAFETY: the trigger data, its Trigger struct (with tgnargs arguments) and its relation
    // are valid for this call. Read without copying: this runs for every write.
    let (named, relid, tgoid) = unsafe {
        let tg = &*data.tg_trigger;
        let first = (tg.tgnargs > 0).then(|| std::ffi::CStr::from_ptr(*tg.tgargs));
        let named = first
            .and_then(|a| a.to_str().ok())
            .and_then(subscription_in);
        (named, (*data.tg_relation).rd_id, tg.tgoid)
    };
    let named = match named {
        Some(named) => named,
        None => return Err(CaptureError::BadArguments(trigger.extra_args()?)),
    };
    match identity::lookup(tgoid, named, relid) {
        Ok(info) => Ok(info.live.then_some(info)),
        Err(NotOurs::Unknown(subscription)) => Err(CaptureError::Unknown {
            trigger: trigger.name()?.to_string(),
            table: format!("{}.{}", trigger.table_schema()?, trigger.table_name()?),
            subscription,
        }),
        Err(NotOurs::OtherTable { subscription }) => Err(CaptureError::NotOurs {
            trigger: trigger.name()?.to_string(),
            table: format!("{}.{}", trigger.table_schema()?, trigger.table_name()?),
            subscription,
        }),
    }
}

/// For a plain subscription with an order key: the key of every row (the new rows of an
/// INSERT or UPDATE, the old rows of a DELETE; one key for a TRUNCATE), locked.
fn plain_row_keys(
    info: &CaptureInfo,
    data: &pg_sys::TriggerData,
    op: Operation,
    names: &[String],
) -> Result<Vec<i64>, CaptureError> {
    let keys = if op == Operation::Truncate {
        vec![0]
    } else {
        let store = if op == Operation::Delete {
            data.tg_oldtable
        } else {
            data.tg_newtable
        };
        // SAFETY: the trigger's relation and its transition table, valid for this call.
        unsafe {
            let mut columns = order_key::KeyColumns::resolve((*data.tg_relation).rd_att, names);
            order_key::row_keys(data.tg_relation, store, &mut columns)
        }
    };
    order_key::lock_keys(info.subscription_id, info.lock_salt, &keys);
    Ok(keys)
}

const CAPTURE_KIND: &str = "an AFTER ... FOR EACH STATEMENT trigger with transition tables";

/// Statement-level AFTER trigger that `webhook.subscribe()` puts on a table (and on each of its
/// partitions), one per event kind; its argument is the subscription id.
#[pg_trigger]
fn _capture<'a>(trigger: &'a PgTrigger<'a>) -> Fired<'a> {
    capture(trigger).unwrap_or_else(|e| e.raise());
    Ok(None)
}

fn capture(trigger: &PgTrigger<'_>) -> Result<(), CaptureError> {
    if !matches!(trigger.level(), PgTriggerLevel::Statement)
        || !matches!(trigger.when()?, PgTriggerWhen::After)
    {
        return Err(CaptureError::WrongKind {
            expected: CAPTURE_KIND,
            got: format!("{} {}", trigger.when()?, trigger.level()),
        });
    }
    let op = match trigger.op()? {
        PgTriggerOperation::Insert => Operation::Insert,
        PgTriggerOperation::Update => Operation::Update,
        PgTriggerOperation::Delete => Operation::Delete,
        PgTriggerOperation::Truncate => Operation::Truncate,
    };
    let data = trigger.trigger_data();
    let (new_rows, old_rows) = match op {
        Operation::Insert => (data.tg_newtable, std::ptr::null_mut()),
        Operation::Delete => (std::ptr::null_mut(), data.tg_oldtable),
        Operation::Update => (data.tg_newtable, data.tg_oldtable),
        Operation::Truncate | Operation::Backfill => (std::ptr::null_mut(), std::ptr::null_mut()),
    };
    let missing = match op {
        Operation::Insert => new_rows.is_null(),
        Operation::Delete => old_rows.is_null(),
        Operation::Update => new_rows.is_null() || old_rows.is_null(),
        Operation::Truncate | Operation::Backfill => false,
    };
    if missing {
        return Err(CaptureError::WrongKind {
            expected: CAPTURE_KIND,
            got: "a trigger without transition tables".into(),
        });
    }
    // SAFETY: the trigger's data, with its transition table for `op` (checked above).
    unsafe { merge_moves::note(data, op) };
    let Some(info) = subscription_of(trigger)? else {
        return Ok(());
    };
    if op == Operation::Update {
        // SAFETY: both transition tables of this UPDATE trigger call (checked above).
        unsafe { check_pairs(data, old_rows, new_rows)? };
    }
    if info.ordered {
        lock_ordered(info.subscription_id);
    }
    // Before the keys: a key column of a type without a hash function is keyed by its text.
    let pinned = output_settings::pin();
    // A shaped subscription's keys come with its query's rows (and only for those it sends).
    let keys = match &info.order_key {
        Some(names) if info.shape.is_plain() || op == Operation::Truncate => {
            Some(plain_row_keys(&info, data, op, names)?)
        }
        _ => None,
    };
    let subscription = Subscription {
        id: info.subscription_id,
        ordered: info.ordered || info.order_key.is_some() || info.grouped,
    };
    // Only ordered subscriptions keep their events in the order their statements ran.
    // SAFETY: inside the trigger call, on its relation.
    let place = subscription
        .ordered
        .then(|| unsafe { nested::place((*data.tg_relation).rd_id) });
    let mut writer = QueueWriter::open(subscription, op, &info.schema, &info.table)
        .map_err(CaptureError::Queue)?;
    if let Some(keys) = keys {
        writer.set_order_keys(keys);
    }
    let queued = if op == Operation::Truncate {
        // One event for the table, with no rows; or for a partition, naming it.
        // SAFETY: the trigger's open relation.
        let record = unsafe { truncated_partition((*data.tg_relation).rd_id, info.target) };
        // SAFETY: writes one queue row, old_record NULL.
        unsafe { writer.add_statement_event(record) }
    } else if !info.shape.is_plain() {
        shaped_rows(&mut writer, data, op, &info)?
    } else {
        // SAFETY: the transition tables belong to this trigger call and hold rows of this table.
        unsafe { writer.copy_rows(data.tg_relation, new_rows, old_rows, &info.name) }
    };
    output_settings::unpin(pinned);
    if let Some(place) = place {
        nested::follow(&mut writer, place, subscription.id).map_err(CaptureError::Queue)?;
    }
    writer.close();
    if queued > 0 {
        note_event_queued();
    }
    Ok(())
}

/// An UPDATE's old and new rows are paired by position: PostgreSQL adds both of a row at once,
/// or, for a row it moves to another partition, the old one as it deletes the row and the new
/// one as it inserts it. A BEFORE INSERT trigger of that partition that skips the row leaves
/// the old one alone, and every later pair one off: refused, since which one cannot be told.
///
/// # Safety
/// `old_rows` and `new_rows` are the transition tables of this UPDATE trigger call.
unsafe fn check_pairs(
    data: &pg_sys::TriggerData,
    old_rows: *mut pg_sys::Tuplestorestate,
    new_rows: *mut pg_sys::Tuplestorestate,
) -> Result<(), CaptureError> {
    // SAFETY: see the function contract.
    let (old, new, relid) = unsafe {
        (
            pg_sys::tuplestore_tuple_count(old_rows),
            pg_sys::tuplestore_tuple_count(new_rows),
            (*data.tg_relation).rd_id,
        )
    };
    if old == new {
        return Ok(());
    }
    Err(CaptureError::UnpairedMoves {
        table: table_name(relid),
        unpaired: old - new,
    })
}

/// The `record` of a TRUNCATE of `relid`: none when it is the subscribed table (all its rows
/// are gone), `{"partition": {"schema": …, "table": …}}` when it is one of its partitions (only
/// that partition's rows are gone, whether it was named or its parent was).
fn truncated_partition(relid: pg_sys::Oid, target: pg_sys::Oid) -> Option<pg_sys::Datum> {
    if relid == target {
        return None;
    }
    let (schema, table) = rel_names(relid);
    let record = serde_json::json!({"partition": {"schema": schema, "table": table}});
    pgrx::JsonB(record).into_datum()
}

/// Statement-level BEFORE trigger of an ordered subscription: takes the subscription's order
/// lock before the statement locks any row, so two writers of the table can never hold row
/// locks the other waits for while one of them waits for the order lock.
#[pg_trigger]
fn _order_lock<'a>(trigger: &'a PgTrigger<'a>) -> Fired<'a> {
    order_lock(trigger).unwrap_or_else(|e| e.raise());
    Ok(None)
}

fn order_lock(trigger: &PgTrigger<'_>) -> Result<(), CaptureError> {
    if !matches!(trigger.level(), PgTriggerLevel::Statement)
        || !matches!(trigger.when()?, PgTriggerWhen::Before)
    {
        return Err(CaptureError::WrongKind {
            expected: "a BEFORE ... FOR EACH STATEMENT trigger",
            got: format!("{} {}", trigger.when()?, trigger.level()),
        });
    }
    if let Some(info) = subscription_of(trigger)? {
        if info.ordered {
            lock_ordered(info.subscription_id);
        }
    }
    Ok(())
}
