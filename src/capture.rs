//! The capture trigger: turns row changes into queued events, inside the writer's transaction.
//!
//! Because events are ordinary rows written in the same transaction as the change, they exist
//! exactly when the change committed: a rollback (or a rolled-back savepoint) removes both.
//!
//! It is a statement-level trigger with transition tables, and it writes the queue the way COPY
//! does — batched heap inserts plus index entries — without planning or executing SQL. A bulk
//! `INSERT ... SELECT` pays per row only for `to_jsonb` and the queue row itself; a single-row
//! statement pays a few microseconds. No network I/O here; the transaction is flagged so COMMIT
//! wakes the worker.

use std::fmt;

use pg_webhook_core::payload::Operation;
use pgrx::prelude::*;

use crate::wake::note_event_queued;

mod queue_writer;
pub mod shaped;

use queue_writer::QueueWriter;
use shaped::{as_role_with_pinned_path, Shape};

/// Transition table names used in every capture trigger definition.
pub const NEW_ROWS: &str = "pg_webhook_new";
pub const OLD_ROWS: &str = "pg_webhook_old";

/// The trigger definitions for one subscription: one per event kind, because a trigger with
/// transition tables may fire on only one. A shaped subscription also passes its owner and
/// shape as arguments.
pub fn trigger_ddl(
    prefix: &str,
    op: Operation,
    table: &str,
    subscription: Subscription,
    shape: &Shape,
    owner: pg_sys::Oid,
) -> String {
    let referencing = match op {
        Operation::Insert => format!("REFERENCING NEW TABLE AS {NEW_ROWS}"),
        Operation::Update => format!("REFERENCING OLD TABLE AS {OLD_ROWS} NEW TABLE AS {NEW_ROWS}"),
        Operation::Delete => format!("REFERENCING OLD TABLE AS {OLD_ROWS}"),
        Operation::Truncate => String::new(),
    };
    let mut args = vec![subscription.to_arg()];
    if !shape.is_plain() {
        args.extend(shape.to_args(owner));
    }
    let args: Vec<String> = args.iter().map(pgrx::spi::quote_literal).collect();
    format!(
        "CREATE TRIGGER {} AFTER {} ON {table} {referencing} FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture({})",
        pgrx::spi::quote_identifier(trigger_name(prefix, op)),
        op.as_sql(),
        args.join(", ")
    )
}

/// The first trigger argument: the subscription id, and `:ordered` for ordered delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub id: i32,
    pub ordered: bool,
}

impl Subscription {
    fn to_arg(self) -> String {
        if self.ordered {
            format!("{}:ordered", self.id)
        } else {
            self.id.to_string()
        }
    }

    fn from_arg(arg: &str) -> Option<Subscription> {
        let (id, ordered) = match arg.split_once(':') {
            Some((id, "ordered")) => (id, true),
            Some(_) => return None,
            None => (arg, false),
        };
        Some(Subscription {
            id: id.parse().ok()?,
            ordered,
        })
    }
}

/// Key of the advisory lock that serializes the writers of an ordered subscription
/// (`pg_locks`: locktype advisory, classid 0x70677768 "pgwh", objid the subscription id).
const ORDER_LOCK_KEY: u32 = 0x7067_7768;

/// Waits for the other writers of an ordered subscription to commit or abort, and holds the
/// lock to the end of this transaction. Event ids are taken after this, so a later-committed
/// transaction always has larger ids, and the worker sends in id order.
fn lock_ordered(subscription_id: i32) {
    // SAFETY: a transaction-scoped advisory lock, as pg_advisory_xact_lock(int4, int4) takes.
    unsafe {
        let tag = pg_sys::LOCKTAG {
            locktag_field1: pg_sys::MyDatabaseId.to_u32(),
            locktag_field2: ORDER_LOCK_KEY,
            locktag_field3: subscription_id as u32,
            locktag_field4: 2,
            locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
            locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
        };
        pg_sys::LockAcquire(
            &tag,
            pg_sys::ExclusiveLock as pg_sys::LOCKMODE,
            false,
            false,
        );
    }
}

/// `pg_webhook_<id>_insert` and so on.
pub fn trigger_name(prefix: &str, op: Operation) -> String {
    format!("{prefix}_{}", op.as_event_name())
}

#[derive(Debug)]
pub enum CaptureError {
    Trigger(pgrx::trigger_support::PgTriggerError),
    BadArguments(Vec<String>),
    WrongKind(String),
    Queue(String),
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Trigger(e) => write!(f, "pg_webhook capture trigger: {e}"),
            CaptureError::BadArguments(a) => write!(
                f,
                "pg_webhook capture trigger: expected the subscription id (and its shape) as arguments, got {a:?}; create subscriptions with webhook.subscribe()"
            ),
            CaptureError::WrongKind(k) => write!(
                f,
                "pg_webhook capture trigger must be an AFTER ... FOR EACH STATEMENT trigger with transition tables, not {k}; create subscriptions with webhook.subscribe()"
            ),
            CaptureError::Queue(e) => write!(f, "pg_webhook could not queue the events: {e}"),
        }
    }
}

impl From<pgrx::trigger_support::PgTriggerError> for CaptureError {
    fn from(e: pgrx::trigger_support::PgTriggerError) -> Self {
        CaptureError::Trigger(e)
    }
}

/// Runs a shaped subscription's query over the transition tables (as its owner) and queues
/// what it returns.
fn shaped_rows(
    writer: &mut QueueWriter,
    data: &pg_sys::TriggerData,
    op: Operation,
    owner: pg_sys::Oid,
    shape: &Shape,
) -> Result<u64, CaptureError> {
    let query = shape.query(op);
    as_role_with_pinned_path(owner, || {
        Spi::connect(|client| {
            // SAFETY: the trigger data is valid for this call; SPI copies what it needs.
            unsafe {
                pg_sys::SPI_register_trigger_data(
                    data as *const pg_sys::TriggerData as *mut pg_sys::TriggerData,
                )
            };
            let mut rows = client.select(query.as_str(), None, &[])?;
            let mut queued = 0;
            while rows.next().is_some() {
                let record = rows.get_datum_by_ordinal(1)?;
                let old_record = rows.get_datum_by_ordinal(2)?;
                // SAFETY: both columns are jsonb; the tuples live until SPI finishes, after
                // the batch is written below.
                unsafe { writer.add_json(record, old_record) };
                queued += 1;
            }
            // SAFETY: writes the rest before SPI frees the tuples.
            unsafe { writer.finish_batch() };
            Ok::<u64, pgrx::spi::Error>(queued)
        })
    })
    .map_err(|e| CaptureError::Queue(e.to_string()))
}

/// Statement-level AFTER trigger created by `webhook.subscribe()`, one per event kind; its
/// argument is the subscription id.
#[pg_trigger]
fn _capture<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, CaptureError> {
    let args = trigger.extra_args()?;
    let (subscription, shaped) = match args.as_slice() {
        [first, rest @ ..] => {
            let id = Subscription::from_arg(first)
                .ok_or_else(|| CaptureError::BadArguments(args.clone()))?;
            let shaped = match rest {
                [] => None,
                rest => Some(
                    Shape::from_args(rest)
                        .ok_or_else(|| CaptureError::BadArguments(args.clone()))?,
                ),
            };
            (id, shaped)
        }
        _ => return Err(CaptureError::BadArguments(args)),
    };
    if !matches!(trigger.level(), PgTriggerLevel::Statement)
        || !matches!(trigger.when()?, PgTriggerWhen::After)
    {
        return Err(CaptureError::WrongKind(format!(
            "{} {}",
            trigger.when()?,
            trigger.level()
        )));
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
        Operation::Truncate => (std::ptr::null_mut(), std::ptr::null_mut()),
    };
    let missing = match op {
        Operation::Insert => new_rows.is_null(),
        Operation::Delete => old_rows.is_null(),
        Operation::Update => new_rows.is_null() || old_rows.is_null(),
        Operation::Truncate => false,
    };
    if missing {
        return Err(CaptureError::WrongKind(
            "a trigger without transition tables".into(),
        ));
    }
    let relation = trigger.relation()?;
    if subscription.ordered {
        lock_ordered(subscription.id);
    }
    let mut writer = QueueWriter::open(subscription, op, relation.namespace(), relation.name())
        .map_err(CaptureError::Queue)?;
    let queued = if let (Some((owner, shape)), false) = (&shaped, op == Operation::Truncate) {
        shaped_rows(&mut writer, data, op, *owner, shape)?
    } else if op == Operation::Truncate {
        // One event for the statement, with no rows.
        // SAFETY: writes one queue row with both images NULL.
        unsafe { writer.add_statement_event() }
    } else {
        // SAFETY: the transition tables belong to this trigger call and hold rows of this table.
        unsafe { writer.copy_rows(data.tg_relation, new_rows, old_rows) }
    };
    writer.close();
    if queued > 0 {
        note_event_queued();
    }
    Ok(None)
}
