//! Running a shaped subscription's query at capture: its user-written SQL (filter, payload)
//! runs as the subscription's owner, sandboxed, in a subtransaction that is rolled back once
//! its rows are copied out, and an error it raises fails the writer's statement with a message
//! that names the subscription. The chosen rows' images are then rendered as the writer
//! (`shaped_images`).

use pg_webhook_core::payload::Operation;
use pgrx::prelude::*;

use super::error::naming_subscription;
use super::identity::CaptureInfo;
use super::order_key;
use super::queue_writer::QueueWriter;
use super::shaped_images::{Chosen, StatementImages};
use super::CaptureError;

/// Runs a shaped subscription's query over the transition tables (as its owner) and queues
/// what it returns. With an order key, the rows' keys are locked before any is queued.
pub fn shaped_rows(
    writer: &mut QueueWriter,
    data: &pg_sys::TriggerData,
    op: Operation,
    info: &CaptureInfo,
) -> Result<u64, CaptureError> {
    // An owner who may no longer read the table whole (SELECT or USAGE revoked, row-level
    // security come to bind them) runs no SQL over its rows: a filter still saw every new row,
    // and passed it on through what a rolled-back read-only query keeps (a session-level
    // advisory lock, visible in pg_locks), while the worker held the events. Nothing is queued:
    // its rows are not the owner's to choose from (see the README: backfill once it is back).
    // (Columns, exclude_columns and skip_unchanged alone run no SQL of the owner's: their
    // rows are queued, held, as a plain subscription's.)
    let runs_sql = info.shape.filter.is_some() || info.shape.payload.is_some();
    if runs_sql && !crate::privilege::may_read_whole(info.target, info.owner) {
        return Ok(0);
    }
    // Key columns no longer there are replaced by a constant, as on the plain path.
    // SAFETY: the trigger's relation, valid for this call; lookups in the call's memory.
    let mut key = info
        .order_key
        .as_ref()
        .map(|names| unsafe { order_key::QueryKey::new((*data.tg_relation).rd_att, names) });
    // SAFETY: the trigger's relation, valid for this call.
    let columns = unsafe { live_columns((*data.tg_relation).rd_att) };
    let query = info
        .shape
        .query(op, key.as_ref().map(|k| k.columns.as_slice()), &columns);
    // Where the payloads are copied to (and the images rendered in): the trigger call's
    // memory, which outlives the subtransaction and SPI.
    // SAFETY: a plain read of the current context.
    let outer = unsafe { pg_sys::CurrentMemoryContext };
    let (chosen, keys) = naming_subscription(&info.name, || {
        // Read-only, and rolled back once the rows are read: a filter or payload cannot keep
        // copies of the rows it sees (in a table or a sequence of its owner's) — it only
        // chooses rows and computes payloads.
        crate::error::undone(|| {
            crate::privilege::as_owner_sandboxed(info.owner, || {
                Spi::connect(|client| {
                    // SAFETY: the trigger data is valid for this call; SPI copies what it
                    // needs.
                    unsafe {
                        pg_sys::SPI_register_trigger_data(
                            data as *const pg_sys::TriggerData as *mut pg_sys::TriggerData,
                        )
                    };
                    // Checked first (`checked_sql`): it runs only code it names or code
                    // of roles with the owner's rights.
                    crate::privilege::read_only(|| {
                        crate::checked_sql::select(client, &query, &[], Some(data), |mut rows| {
                            ensure_jsonb(&rows, &[1])?;
                            let mut chosen = Vec::with_capacity(rows.len());
                            let mut keys = Vec::new();
                            while rows.next().is_some() {
                                let payload = rows.get_datum_by_ordinal(1)?;
                                let position: i64 = rows.get(2)?.unwrap_or_default();
                                chosen.push(Chosen {
                                    position,
                                    // SAFETY: the column is jsonb (or NULL).
                                    payload: unsafe { copied(payload, outer) },
                                });
                                if let Some(key) = key.as_mut() {
                                    // SAFETY: the query selects the key's columns from the third on.
                                    keys.push(unsafe { key.hash_row(&rows, 3) }?);
                                }
                            }
                            Ok::<_, pgrx::spi::Error>((chosen, keys))
                        })
                    })
                })
            })
        })
    })
    .map_err(|e| CaptureError::Queue(e.to_string()))?;
    // Only the transition tables of `op` (a trigger for several events may have both).
    let none = std::ptr::null_mut();
    let (new_rows, old_rows) = match op {
        Operation::Insert => (data.tg_newtable, none),
        Operation::Delete => (none, data.tg_oldtable),
        _ => (data.tg_newtable, data.tg_oldtable),
    };
    // Locks and queue rows are taken here, outside the rolled-back subtransaction: the keys of
    // every chosen row, before any is queued (one skipped below as unchanged keeps its lock).
    if key.is_some() {
        order_key::lock_keys(info.subscription_id, info.lock_salt, &keys);
        writer.set_order_keys(Vec::new());
    }
    // The images, as the writer (see `shaped_images`), each in the memory of the queue's batch
    // its event goes in, freed once that is written.
    let queued = naming_subscription(&info.name, || {
        // SAFETY: the trigger's relation and transition tables, which the query's positions
        // count; the images are used only by the event they are added with.
        unsafe {
            let mut images =
                StatementImages::open(data.tg_relation, op, new_rows, old_rows, &info.shape);
            let mut queued = 0u64;
            for (i, chosen) in chosen.iter().enumerate() {
                let Some((record, old_record)) = writer.in_batch_memory(|| images.next(chosen))
                else {
                    continue;
                };
                if let Some(key) = keys.get(i) {
                    writer.push_order_key(*key);
                }
                writer.add_json(record, old_record);
                queued += 1;
            }
            images.close();
            writer.finish_batch();
            queued
        }
    });
    Ok(queued)
}

/// Fails unless the columns at `ordinals` (1-based) of `rows` are `jsonb`: their values are
/// read raw. pg_webhook's queries make them so; this holds even if user-written text in the
/// query were ever to change its shape.
pub(super) fn ensure_jsonb(
    rows: &pgrx::spi::SpiTupleTable<'_>,
    ordinals: &[usize],
) -> pgrx::spi::SpiResult<()> {
    for &ordinal in ordinals {
        ensure_type(rows, ordinal, pg_sys::JSONBOID, "jsonb")?;
    }
    Ok(())
}

/// Fails unless the column at `ordinal` (1-based) of `rows` is of type `oid` (`name`).
pub(super) fn ensure_type(
    rows: &pgrx::spi::SpiTupleTable<'_>,
    ordinal: usize,
    oid: pg_sys::Oid,
    name: &'static str,
) -> pgrx::spi::SpiResult<()> {
    let got = rows.column_type_oid(ordinal)?.value();
    if got != oid {
        return Err(pgrx::datum::TryFromDatumError::IncompatibleTypes {
            rust_type: name,
            rust_oid: oid,
            datum_type: format!("the type of column {ordinal}"),
            datum_oid: got,
        }
        .into());
    }
    Ok(())
}

/// A detoasted copy of a varlena `datum` in `context`.
///
/// # Safety
/// `datum` is a varlena value (or absent); `context` is live.
unsafe fn copied(
    datum: Option<pg_sys::Datum>,
    context: pg_sys::MemoryContext,
) -> Option<pg_sys::Datum> {
    // SAFETY: see the function contract.
    datum.map(|d| unsafe {
        let current = pg_sys::MemoryContextSwitchTo(context);
        let copy = pg_sys::pg_detoast_datum_copy(d.cast_mut_ptr());
        pg_sys::MemoryContextSwitchTo(current);
        pg_sys::Datum::from(copy)
    })
}

/// The names of the columns of rows described by `tupdesc`, in order, dropped ones left out.
///
/// # Safety
/// `tupdesc` is a valid tuple descriptor.
unsafe fn live_columns(tupdesc: pg_sys::TupleDesc) -> Vec<String> {
    // SAFETY: see the function contract.
    let attrs = unsafe { (*tupdesc).attrs.as_slice((*tupdesc).natts as usize) };
    attrs
        .iter()
        .filter(|a| !a.attisdropped)
        .map(|a| pgrx::name_data_to_str(&a.attname).to_string())
        .collect()
}
