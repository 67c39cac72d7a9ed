//! Every statement the worker runs against the queue, prepared once per worker; the SQL is in
//! `sql/worker/`. Each public function is one short transaction's worth of set-based SQL:
//! claiming and recording are batched, never one statement per event.
//!
//! Claiming does not lock or modify rows: a worker owns its events by remembering which ones it
//! has in flight until their outcome is recorded. If it dies first, the events are simply still
//! queued and are sent again (with the same webhook-id), which is what at-least-once means.
//! Rows are addressed by their key (txid, id): a ctid a claim read is only where recording looks
//! first, the key checked there and looked up if the row is not (VACUUM FULL, CLUSTER or
//! pg_repack of the queue while requests are in flight must not lose their outcomes).
//!
//! This module is a leaf: it knows the queue's tables, not the worker.

mod archive;
mod batches;
mod bindings;
mod claims;
mod deformed;
mod due;
mod outcomes;
mod retention;
mod room;
mod rows;
mod series;
mod stats;
mod transactions;
mod uids;

use std::ffi::CStr;

use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};
use pgrx::PgOid;

use crate::sql::with_settings;

pub use batches::{take_over_batches, BatchOut};
pub use bindings::rebind_callbacks;
pub use claims::Bounds;
pub use retention::PurgeCursor;
use rows::read_subscriptions;
pub use rows::{current_timeline, Decision, Outcome, Overdue, QueuedEvent, Spent, SubscriptionRow};
pub use series::series_ages;
pub use transactions::{Held, Part, TransactionHead};
pub use uids::renew_foreign_uids;

const EXTENSION_VERSION: &str = include_str!("../../sql/worker/extension_version.sql");
const SUBSCRIPTIONS: &str = include_str!("../../sql/worker/subscriptions.sql");
const CLAIM_NEW: &str = include_str!("../../sql/worker/claim_new.sql");
const CLAIM_SCHEDULED: &str = include_str!("../../sql/worker/claim_scheduled.sql");
const CLAIM_LAGGING: &str = include_str!("../../sql/worker/claim_lagging.sql");
const CLAIM_ORDERED: &str = include_str!("../../sql/worker/claim_ordered.sql");
const TX_HEADS: &str = include_str!("../../sql/worker/transaction_heads.sql");
const TX_EVENTS: &str = include_str!("../../sql/worker/transaction_events.sql");
const SET_PARTS: &str = include_str!("../../sql/worker/set_parts.sql");
const TX_PART: &str = include_str!("../../sql/worker/transaction_part.sql");
const TX_SIZE: &str = include_str!("../../sql/worker/transaction_size.sql");
const REOPEN_CUT: &str = include_str!("../../sql/worker/reopen_cut.sql");
const CLAIM_SCHEDULED_OTHERS: &str = include_str!("../../sql/worker/claim_scheduled_others.sql");
const NEXT_DUE: &str = include_str!("../../sql/worker/next_due.sql");
const STATS_STALE: &str = include_str!("../../sql/worker/queue_stats_stale.sql");
const INSERT_ATTEMPTS: &str = include_str!("../../sql/worker/insert_attempts.sql");
/// For the statements that read one table by its indexes (new events, due retries) or the
/// subscriptions (their owners' access): one generic plan each, kept, instead of planning afresh
/// at every claim (which was a third of the worker's time in SQL). With sequential and bitmap
/// scans off for the worker (sql/worker/session.sql), a one-table claim has one access path
/// whatever the queue's size — the key index from the cursor, the schedule index — so a plan
/// made on an empty queue stays right on a full one; the benchmark's drain checks it (its
/// statements are planned before the backlog). Statements that join the queue (recording
/// outcomes, ordered heads) are left to `plan_cache_mode = auto` (custom plans first, then a
/// generic one where the planner finds it no dearer): a generic join plan forced on them and
/// made while a table looked empty scanned all of it for every event once it was full (seen:
/// 4 minutes to record 50,000 events); tests/plans.rs counts the rows a drain reads.
const GENERIC_PLAN: &[(&CStr, &CStr)] = &[(c"plan_cache_mode", c"force_generic_plan")];
const FINISH: &str = include_str!("../../sql/worker/finish.sql");
const ROWS_HELD: &str = include_str!("../../sql/worker/rows_held.sql");
const DRAINED: &str = include_str!("../../sql/worker/drained.sql");
const UNDRAIN: &str = include_str!("../../sql/worker/undrain.sql");
const ADD_TOTALS: &str = include_str!("../../sql/worker/add_totals.sql");
const RESCHEDULE: &str = include_str!("../../sql/worker/reschedule.sql");
const DEFER: &str = include_str!("../../sql/worker/defer.sql");
const PARK: &str = include_str!("../../sql/worker/park.sql");
const SUBSCRIPTIONS_FREE: &str = include_str!("../../sql/worker/subscriptions_free.sql");
const MAKE_DUE: &str = include_str!("../../sql/worker/make_due.sql");
const HEALTH: &str = include_str!("../../sql/worker/health.sql");
const DISABLE: &str = include_str!("../../sql/worker/disable.sql");
const MARK_ORPHANS: &str = include_str!("../../sql/worker/mark_orphans.sql");
const SYNC_READ_DENIED: &str = include_str!("../../sql/worker/sync_read_denied.sql");
const OVERDUE: &str = include_str!("../../sql/worker/overdue.sql");
const PURGE_EVENTS: &str = include_str!("../../sql/worker/purge_events.sql");
const PURGE_ATTEMPTS: &str = include_str!("../../sql/worker/purge_attempts.sql");
/// Makes every parked event of some subscriptions due: the SQL API's (resume, unsubscribe); the
/// worker's is sql/worker/make_due.sql.
pub const UNPARK: &str = include_str!("../../sql/queries/unpark.sql");
const OWNER_ACCESS: &str = include_str!("../../sql/worker/owner_access.sql");

/// A worker's share of the events: those whose id hashes to `index` modulo `count` (a retried
/// batch's, its name's: all its events go to one worker), and the whole of the pinned
/// subscriptions whose id is `index` modulo `count`.
#[derive(Debug, Clone, Copy)]
pub struct Share {
    pub index: i32,
    pub count: i32,
}

impl Share {
    /// Whether a pinned subscription (limits or order of its own) is this worker's: all its
    /// events go to one worker. The claim statements say the same in SQL (`slice`).
    pub fn owns_subscription(&self, id: i32) -> bool {
        (id as i64).rem_euclid(self.count as i64) == self.index as i64
    }

    /// The claim condition for this share; `pinned` is the SQL array of pinned subscriptions.
    fn slice(&self, pinned: &str) -> String {
        if self.count <= 1 {
            return String::new();
        }
        // Other events by a hash of their id: ids come in blocks (each statement takes its own
        // from the sequence, whose increment is the block size), so single-row transactions'
        // ids are all alike modulo a small count, and `id % count` gave them all to one worker.
        // Events that carry a batch (retried, or put back by the worker taking over a share)
        // go by its name, the id of one of them: a batch a worker cut from its share stays
        // with it, and one cut under another count or pinning goes whole to one worker rather
        // than in pieces, each under another webhook-id. New events carry none.
        format!(
            "AND (CASE WHEN q.subscription_id = ANY({pinned}) THEN q.subscription_id::bigint
                       ELSE pg_catalog.hashint8(COALESCE(q.batch, q.id))::bigint & 2147483647
                   END) % {} = {}",
            self.count, self.index
        )
    }
}

/// The worker's prepared statements. Dropped (and prepared again) after any error, since the
/// error may be that the extension was dropped and re-created.
pub struct Statements {
    /// The pg_webhook extension (its pg_extension OID) whose tables these were prepared on.
    /// Event and subscription ids start again in an extension dropped and made again, so
    /// nothing known about the old one's may be applied to the new one's.
    pub extension: pg_sys::Oid,
    claim_new: OwnedPreparedStatement,
    claim_scheduled: OwnedPreparedStatement,
    claim_scheduled_others: OwnedPreparedStatement,
    claim_lagging: OwnedPreparedStatement,
    claim_ordered: OwnedPreparedStatement,
    defer: OwnedPreparedStatement,
    next_due: OwnedPreparedStatement,
    stats_stale: OwnedPreparedStatement,
    subscriptions: OwnedPreparedStatement,
    insert_attempts: OwnedPreparedStatement,
    finish: OwnedPreparedStatement,
    /// `finish` where the claim found the rows, their key checked there (see finish.sql).
    finish_at: OwnedPreparedStatement,
    /// `finish` for events whose id may be archived already (see finish.sql).
    finish_over_archived: OwnedPreparedStatement,
    /// The subscriptions of events whose queue rows another transaction holds.
    rows_held: OwnedPreparedStatement,
    /// Unsubscribed subscriptions marked drained (or back), and back on reading an event.
    drained: OwnedPreparedStatement,
    undrain: OwnedPreparedStatement,
    /// Counts events archived without `finish` (see archive/).
    add_totals: OwnedPreparedStatement,
    reschedule: OwnedPreparedStatement,
    park: OwnedPreparedStatement,
    subscriptions_free: OwnedPreparedStatement,
    make_due: OwnedPreparedStatement,
    owner_access: OwnedPreparedStatement,
    health: OwnedPreparedStatement,
    disable: OwnedPreparedStatement,
    mark_orphans: OwnedPreparedStatement,
    sync_read_denied: OwnedPreparedStatement,
    overdue: OwnedPreparedStatement,
    purge_events: OwnedPreparedStatement,
    purge_attempts: OwnedPreparedStatement,
    tx_heads: OwnedPreparedStatement,
    tx_events: OwnedPreparedStatement,
    set_parts: OwnedPreparedStatement,
    tx_part: OwnedPreparedStatement,
    tx_size: OwnedPreparedStatement,
    reopen_cut: OwnedPreparedStatement,
    batches: batches::BatchStatements,
}

/// Whether this database's pg_webhook can be served by this library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Missing,
    /// Installed at another version: the library was upgraded and the SQL objects not yet.
    OtherVersion(String),
}

pub fn extension_readiness() -> SpiResult<Readiness> {
    Spi::connect(|client| {
        let version =
            crate::sql::first_row(client, EXTENSION_VERSION, &[], |r| r.get_one::<String>())?
                .flatten();
        Ok(match version {
            None => Readiness::Missing,
            Some(v) if v == env!("CARGO_PKG_VERSION") => Readiness::Ready,
            Some(v) => Readiness::OtherVersion(v),
        })
    })
}

/// One subscription's delivery settings, for a request sent outside the worker (`ping`).
/// Reads the private table, so the caller runs it as the extension owner.
pub fn subscription_by_id(id: i32) -> SpiResult<Option<SubscriptionRow>> {
    Spi::connect(|client| {
        let rows = client.select(
            &format!("SELECT * FROM ({SUBSCRIPTIONS}) s WHERE s.id = $1"),
            Some(1),
            &[id.into()],
        )?;
        Ok(read_subscriptions(rows)?.pop())
    })
}

fn keep(
    client: &SpiClient<'_>,
    sql: &str,
    types: &[pg_sys::Oid],
) -> SpiResult<OwnedPreparedStatement> {
    let types: Vec<PgOid> = types.iter().map(|t| PgOid::from(*t)).collect();
    Ok(client.prepare(sql, &types)?.keep())
}

fn keep_mut(
    client: &SpiClient<'_>,
    sql: &str,
    types: &[pg_sys::Oid],
) -> SpiResult<OwnedPreparedStatement> {
    let types: Vec<PgOid> = types.iter().map(|t| PgOid::from(*t)).collect();
    Ok(client.prepare_mut(sql, &types)?.keep())
}

impl Statements {
    /// Statements for the worker that delivers `share` of the events.
    pub fn prepare(share: Share) -> SpiResult<Statements> {
        use pg_sys::{
            BOOLARRAYOID as BA, BOOLOID as B, FLOAT8ARRAYOID as F8A, FLOAT8OID as F8,
            INT4ARRAYOID as I4A, INT4OID as I4, INT8ARRAYOID as I8A, INT8OID as I8,
            TEXTARRAYOID as TA, TEXTOID as T,
        };
        let claim_new = CLAIM_NEW.replace("/*slice*/", &share.slice("$4::int[]"));
        let claim_scheduled = CLAIM_SCHEDULED.replace("/*slice*/", &share.slice("$2::int[]"));
        let claim_scheduled_others =
            CLAIM_SCHEDULED_OTHERS.replace("/*slice*/", &share.slice("$2::int[]"));
        let claim_lagging = CLAIM_LAGGING.replace("/*slice*/", &share.slice("$7::int[]"));
        // Each worker keeps running totals in rows of its own.
        let worker = share.index.to_string();
        let insert_attempts = INSERT_ATTEMPTS.replace("/*worker*/", &worker);
        let finish = FINISH.replace("/*worker*/", &worker);
        let finish_at = finish.replace("/*at*/", "q.ctid = u.tid AND");
        let finish_over_archived =
            finish.replace("/*archived already*/", "ON CONFLICT (id) DO NOTHING");
        // (txid, id, status, attempts, last error, started, duration, status code, excerpt,
        // error, callback, headers, ctid) of each event.
        let tids = pg_sys::TIDARRAYOID;
        let finish_args = [I8A, I8A, TA, I4A, TA, F8A, F8A, I4A, TA, TA, BA, TA, tids];
        // SAFETY: a catalog lookup inside the caller's transaction.
        let extension = unsafe { pg_sys::get_extension_oid(c"pg_webhook".as_ptr(), true) };
        Spi::connect(|client| {
            Ok(Statements {
                extension,
                claim_new: keep(client, &claim_new, &[I8, I8, I8, I4A, I8, I8])?,
                claim_scheduled: keep(client, &claim_scheduled, &[I8, I4A, I8, I8])?,
                claim_scheduled_others: keep(
                    client,
                    &claim_scheduled_others,
                    &[I8, I4A, I8, I8, I4A, I8A],
                )?,
                claim_lagging: keep(
                    client,
                    &claim_lagging,
                    &[I4, I8, I8, I8, I8, I8, I4A, I8, I8, I8A],
                )?,
                claim_ordered: keep(client, CLAIM_ORDERED, &[I4A, I4A, I8, I8A, I8])?,
                defer: keep_mut(client, DEFER, &[I8A, I8A, I8A])?,
                next_due: keep(client, NEXT_DUE, &[])?,
                stats_stale: keep(client, STATS_STALE, &[F8])?,
                subscriptions: keep(client, SUBSCRIPTIONS, &[])?,
                insert_attempts: keep_mut(
                    client,
                    &insert_attempts,
                    &[I8A, I4A, I4A, F8A, F8A, I4A, TA, TA],
                )?,
                finish: keep_mut(client, &finish, &finish_args)?,
                finish_at: keep_mut(client, &finish_at, &finish_args)?,
                finish_over_archived: keep_mut(client, &finish_over_archived, &finish_args)?,
                rows_held: keep_mut(client, ROWS_HELD, &[I8A, I8A])?,
                drained: keep_mut(client, DRAINED, &[])?,
                undrain: keep_mut(client, UNDRAIN, &[I4A])?,
                add_totals: keep_mut(
                    client,
                    &ADD_TOTALS.replace("/*worker*/", &worker),
                    &[I4A, I8A, I8A],
                )?,
                reschedule: keep_mut(client, RESCHEDULE, &[I8A, I8A, I4A, I8A, TA, I8A])?,
                park: keep_mut(client, PARK, &[I8A, I8A, I4A, I4A])?,
                subscriptions_free: keep_mut(client, SUBSCRIPTIONS_FREE, &[I4A])?,
                make_due: keep_mut(client, MAKE_DUE, &[I4A, B])?,
                owner_access: keep(client, OWNER_ACCESS, &[I4A])?,
                health: keep_mut(client, HEALTH, &[I4A, BA])?,
                disable: keep_mut(client, DISABLE, &[I4, T, B])?,
                mark_orphans: keep_mut(client, MARK_ORPHANS, &[])?,
                sync_read_denied: keep_mut(client, SYNC_READ_DENIED, &[I4])?,
                overdue: keep(client, OVERDUE, &[F8])?,
                purge_events: keep_mut(client, PURGE_EVENTS, &[F8, F8, I8, I8, I8])?,
                purge_attempts: keep_mut(client, PURGE_ATTEMPTS, &[F8, F8, I8, I8, I8, I4])?,
                tx_heads: keep(client, TX_HEADS, &[I4A, I8A])?,
                tx_events: keep(client, TX_EVENTS, &[T, I4, I8, I8, I8, I8])?,
                set_parts: keep_mut(client, SET_PARTS, &[T, I4, I8A, I8A, I4A, I4])?,
                tx_part: keep(client, TX_PART, &[T, I4, I4, I8])?,
                tx_size: keep(client, TX_SIZE, &[T, I4])?,
                reopen_cut: keep_mut(client, REOPEN_CUT, &[T, I4])?,
                batches: batches::BatchStatements::prepare(client, share)?,
            })
        })
    }

    pub fn subscriptions(&self) -> SpiResult<Vec<SubscriptionRow>> {
        Spi::connect(|client| read_subscriptions(client.select(&self.subscriptions, None, &[])?))
    }
}
