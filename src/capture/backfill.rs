//! One chunk of a backfill (`webhook.backfill()`): the next rows of a subscription's table in
//! primary key order, turned into BACKFILL events the way capture turns a statement's rows into
//! events — the rows read and chosen by the subscription's shaped query (filter, payload) as
//! its owner, sandboxed, their images rendered as the table's owner (`shaped_images`), and the
//! queue written like COPY — and the progress recorded in the same transaction, so the
//! events and the key they reach commit together or not at all. The runner (the process that
//! also calls callbacks, one owner's at a time) runs one chunk per transaction (see
//! `worker::backfills`).
//!
//! Order. A chunk of an `ordered` subscription first takes the subscription's order lock, as a
//! writer's statement does: every writer that committed before it is visible to its read, and
//! every later writer waits for it and takes larger event ids, so a row's BACKFILL event never
//! goes after a later change of that row. A chunk of an `order_key` subscription locks the key
//! of every row it read, as a writer locks its keys before taking ids (waiting for the writers
//! of those keys that are in flight), then reads the same rows again under a new snapshot and
//! queues that second reading (repeated if a row's key moved to one it does not hold yet): a
//! writer that changed a row before the key lock was taken has committed before the second
//! read (and has the smaller ids); one that changes it afterwards waits for the chunk at its
//! own key lock (and gets the larger ids). Unordered subscriptions take no lock: a row's
//! BACKFILL event may arrive before or after a live change of it, as any two events may.
//!
//! Every lock wait of a chunk ends after 100 ms (sql/backfill/chunk_settings.sql): the runner
//! runs no other backfill or callback while it waits, and a chunk waiting for a writer's key while that writer
//! waits for a key the chunk holds gives up long before PostgreSQL's deadlock check would cancel
//! the writer. The chunk is tried again a second later.

use pg_webhook_core::order_key::bucket;
use pg_webhook_core::payload::Operation;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, SpiClient, SpiResult};

use super::identity::{self, CaptureInfo};
use super::primary_key::{bounds, names_and_order, primary_key, rows_query, Key, KeyColumn};
use super::queue_writer::QueueWriter;
use super::row_json::Image;
use super::shaped_images::backfill_images;
use super::{lock_ordered, order_key, output_settings, Subscription};
use crate::privilege::as_owner_sandboxed;

mod reading;

use reading::read_rows;

const CHUNK_STATE: &str = include_str!("../../sql/backfill/chunk_state.sql");
const AHEAD: &str = include_str!("../../sql/backfill/ahead.sql");
const PROGRESS: &str = include_str!("../../sql/backfill/progress.sql");
const STOP: &str = include_str!("../../sql/backfill/stop.sql");
const CHUNK_SETTINGS: &str = include_str!("../../sql/backfill/chunk_settings.sql");

/// Rows read per chunk (one short transaction each).
pub const CHUNK_ROWS: i64 = 500;
/// The bytes of rows (or payloads) a chunk reads, as they are in memory, before it stops short
/// of `CHUNK_ROWS`: what it holds at once, rendered within its time.
pub const CHUNK_BYTES: usize = 16 << 20;
/// A backfill queues no further chunk while this many of its events are still queued: a slow,
/// paused or rate-limited receiver holds it back instead of the queue growing by the table.
pub const AHEAD_LIMIT: i64 = 5_000;
/// How often a chunk of an `order_key` subscription reads its rows again when their keys keep
/// moving to ones it does not hold; past this the chunk fails and is tried again.
const REREADS: usize = 4;

/// What one chunk did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Queued `queued` events of `read` rows; there may be more.
    Sent { read: usize, queued: usize },
    /// The table is done (this chunk queued `queued`).
    Done { queued: usize },
    /// Too many of its events are queued still; nothing done.
    Ahead,
    /// It is not running any more (canceled, done, failed) — or was stopped now, with the reason.
    Stopped(Option<String>),
    /// Its SQL would run as this role, which the process may not run code of; nothing done.
    NotAdmitted(pg_sys::Oid),
}

/// Ends the backfill as `state` with `reason`.
fn stop(client: &mut SpiClient<'_>, id: i64, state: &str, reason: String) -> SpiResult<Step> {
    client.update(
        STOP,
        None,
        &[id.into(), state.into(), reason.clone().into()],
    )?;
    Ok(Step::Stopped(Some(reason)))
}

/// Runs one chunk of backfill `id`, inside the caller's transaction, as the extension owner
/// (the caller is the runner); user SQL runs as the subscription's owner, once `admit` has
/// agreed to run it as that role in this process (see `worker::callbacks::turn`).
pub fn run_chunk(id: i64, admit: impl FnOnce(pg_sys::Oid) -> bool) -> SpiResult<Step> {
    Spi::connect_mut(|client| {
        client.select(CHUNK_SETTINGS, None, &[])?;
        // Read-write (a row lock), which also gives the transaction its xid.
        let state = client.update(CHUNK_STATE, Some(1), &[id.into()])?;
        if state.is_empty() {
            return Ok(Step::Stopped(None));
        }
        let row = state.first();
        let subscription: i32 = row.get(1)?.unwrap_or_default();
        let also: Option<String> = row.get(2)?;
        let key_columns: Vec<String> = row
            .get::<Key>(3)?
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect();
        let last_key: Option<Key> = row.get(4)?;
        let Some(status) = row.get::<String>(5)? else {
            return stop(
                client,
                id,
                "canceled",
                format!("subscription {subscription} no longer exists (its row was deleted)"),
            );
        };
        let name: String = row.get(6)?.unwrap_or_default();
        let target: pg_sys::Oid = row.get(7)?.unwrap_or(pg_sys::Oid::INVALID);
        let denied: Option<String> = row.get(8)?;
        let started_txid: String = row.get(9)?.unwrap_or_default();
        let started_under: pg_sys::Oid = row.get(10)?.unwrap_or(pg_sys::Oid::INVALID);
        if status == "unsubscribed" {
            return stop(
                client,
                id,
                "canceled",
                format!("subscription \"{name}\" was unsubscribed"),
            );
        }
        if let Some(denied) = denied {
            return stop(
                client,
                id,
                "failed",
                format!(
                    "{denied}; nothing more is sent: call webhook.backfill('{}') again once it may",
                    name.replace('\'', "''")
                ),
            );
        }
        let ahead: i64 = client
            .select(
                AHEAD,
                Some(1),
                &[subscription.into(), AHEAD_LIMIT.into(), started_txid.into()],
            )?
            .first()
            .get_one()?
            .unwrap_or_default();
        if ahead >= AHEAD_LIMIT {
            return Ok(Step::Ahead);
        }
        let pk = primary_key(client, target)?;
        if pk.iter().map(|c| &c.name).ne(key_columns.iter()) {
            return stop(
                client,
                id,
                "failed",
                format!(
                    "the primary key of {} changed during the backfill (it was ({})): call webhook.backfill('{}') again to start over",
                    super::table_name(target),
                    key_columns.join(", "),
                    name.replace('\'', "''")
                ),
            );
        }
        let info = match identity::subscription(subscription, target) {
            Some(info) => info,
            None => {
                return stop(
                    client,
                    id,
                    "canceled",
                    format!("subscription \"{name}\" is gone"),
                )
            }
        };
        if also.is_some() && info.owner != started_under {
            // Its filter was chosen for the former owner (webhook.set_owner() refuses while it
            // runs; it may have started in a transaction still open then). Compared with the
            // owner the filter would run as, read at the latest snapshot.
            return stop(
                client,
                id,
                "failed",
                format!(
                    "subscription \"{name}\" changed hands after this backfill started, and its filter would run as the new owner; nothing more is sent: the new owner may call webhook.backfill('{}') again",
                    name.replace('\'', "''")
                ),
            );
        }
        // The first of the subscription owner's code this process runs binds it to them.
        if !admit(info.owner) {
            return Ok(Step::NotAdmitted(info.owner));
        }
        let (queued, (read, cut), last) = queue_chunk(&info, &pk, also.as_deref(), last_key)?;
        let done = !cut && (read as i64) < CHUNK_ROWS;
        client.update(
            PROGRESS,
            None,
            &[id.into(), last.into(), (queued as i64).into(), done.into()],
        )?;
        if queued > 0 {
            crate::wake::note_event_queued();
        }
        Ok(if done {
            Step::Done { queued }
        } else {
            Step::Sent { read, queued }
        })
    })
}

/// The order key `names` of `table` as a chunk reads it.
fn chunk_key(table: pg_sys::Oid, names: &[String]) -> order_key::QueryKey {
    // SAFETY: the table exists (the chunk's caller checked it) and is read by the chunk anyway;
    // its descriptor is read under the lock and the lookups kept in the current context.
    unsafe {
        let rel = pg_sys::relation_open(table, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let key = order_key::QueryKey::new((*rel).rd_att, names);
        pg_sys::relation_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        key
    }
}

/// Reads the chunk after `after` as the subscription's owner and queues its events; returns
/// (events queued, (rows read, whether the read stopped at its byte budget), last key read).
fn queue_chunk(
    info: &CaptureInfo,
    pk: &[KeyColumn],
    also: Option<&str>,
    after: Option<Key>,
) -> SpiResult<(usize, (usize, bool), Option<Key>)> {
    let table = format!(
        "{}.{}",
        quote_identifier(&info.schema),
        quote_identifier(&info.table)
    );
    // A key column renamed or dropped since subscribing stands in as a constant, as in
    // capture.
    let mut hashing = info
        .order_key
        .as_ref()
        .map(|names| chunk_key(info.target, names));
    let key: Option<Key> = hashing.as_ref().map(|k| k.columns.clone());
    let (columns, order_by) = names_and_order(pk, "new");
    let shaped = |rows: &str| {
        info.shape
            .backfill_query(rows, &columns, &order_by, also, &info.table, key.as_deref())
    };
    let first = shaped(&rows_query(
        &table,
        pk,
        after.is_some(),
        false,
        Some(CHUNK_ROWS),
    ));
    if info.ordered {
        // Before the read: the statement's snapshot is taken after the wait.
        lock_ordered(info.subscription_id);
    }
    let subscription = Subscription {
        id: info.subscription_id,
        ordered: info.ordered || info.order_key.is_some() || info.grouped,
    };
    let payload = info.shape.payload.is_some();
    let table_owner = crate::privilege::table_owner(info.target);
    let pinned = output_settings::pin();
    let outcome = as_owner_sandboxed(info.owner, || {
        Spi::connect(|client| {
            // The transaction has an xid (the chunk locked its backfill row), so each statement
            // here takes a new snapshot: the read sees every commit made before it starts.
            let args = bounds(pk, after.as_ref(), None, table_owner, info.owner);
            let query = (payload, first.as_str(), args);
            let budget = Some(CHUNK_BYTES);
            let mut reading = read_rows(client, query, pk.len(), &mut hashing, budget)?;
            let (read, cut, last) = (reading.read, reading.cut, reading.last.clone());
            if key.is_some() && read > 0 {
                // Lock the keys read, then read the same range again under a new snapshot
                // (see the module's comment); again while a row's key moved to a bucket not held.
                let again = shaped(&rows_query(&table, pk, after.is_some(), true, None));
                let mut held: Vec<u32> = Vec::new();
                for tries in 0..=REREADS {
                    let mut keys: Vec<i64> = reading.events.iter().map(|(_, k)| *k).collect();
                    keys.retain(|k| !held.contains(&bucket(*k, info.lock_salt)));
                    if keys.is_empty() && tries > 0 {
                        break;
                    }
                    if tries == REREADS {
                        error!(
                            "pg_webhook backfill of {table}: the order keys of the rows after {after:?} kept changing while they were read; the chunk is tried again"
                        );
                    }
                    order_key::lock_keys(info.subscription_id, info.lock_salt, &keys);
                    held.extend(keys.iter().map(|k| bucket(*k, info.lock_salt)));
                    let args = bounds(pk, after.as_ref(), last.as_ref(), table_owner, info.owner);
                    // All of the range the first read covered, whatever its size.
                    let query = (payload, again.as_str(), args);
                    reading = read_rows(client, query, pk.len(), &mut hashing, None)?;
                }
            }
            let mut writer =
                QueueWriter::open(subscription, Operation::Backfill, &info.schema, &info.table)
                    .unwrap_or_else(|e| error!("pg_webhook could not queue the events: {e}"));
            writer.set_order_keys(reading.events.iter().map(|(_, k)| *k).collect());
            let rows: Vec<pg_sys::Datum> = reading.events.iter().map(|(d, _)| *d).collect();
            let records: Vec<Image> = if payload {
                rows.into_iter().map(|row| Image::Json(row, None)).collect()
            } else {
                // SAFETY: records of the chunk's rows, all of one row type.
                unsafe { backfill_images(&rows, &info.shape, info.target, info.owner) }
            };
            for record in &records {
                // SAFETY: jsonb datums of the SPI result, alive until this connection ends,
                // after the batch is written below.
                unsafe { writer.add_json(Some(*record), None) };
            }
            // SAFETY: writes the rest before SPI frees the tuples.
            unsafe { writer.finish_batch() };
            writer.close();
            Ok((reading.events.len(), (read, cut), last))
        })
    });
    output_settings::unpin(pinned);
    outcome
}
