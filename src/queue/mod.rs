//! Every statement the worker runs against the queue, prepared once per worker; the SQL is in
//! `sql/worker/`. Each public function is one short transaction's worth of set-based SQL:
//! claiming and recording are batched, never one statement per event.
//!
//! Claiming does not lock or modify rows: a worker owns its events by remembering which ones it
//! has in flight until their outcome is recorded. If it dies first, the events are simply still
//! queued and are sent again (with the same webhook-id), which is what at-least-once means.
//! Rows are addressed by their key (txid, id), never by ctid: VACUUM FULL, CLUSTER or pg_repack
//! of the queue while requests are in flight must not lose their outcomes.
//!
//! This module is a leaf: it knows the queue's tables, not the worker.

mod rows;

use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};
use pgrx::PgOid;

use rows::{column, epoch_seconds, full_xid, read_events, read_subscriptions};
pub use rows::{Decision, Outcome, Overdue, QueuedEvent, SubscriptionRow};

const EXTENSION_VERSION: &str = include_str!("../../sql/worker/extension_version.sql");
const SUBSCRIPTIONS: &str = include_str!("../../sql/worker/subscriptions.sql");
const CLAIM_NEW: &str = include_str!("../../sql/worker/claim_new.sql");
const CLAIM_SCHEDULED: &str = include_str!("../../sql/worker/claim_scheduled.sql");
const CLAIM_ORDERED: &str = include_str!("../../sql/worker/claim_ordered.sql");
const NEXT_DUE: &str = include_str!("../../sql/worker/next_due.sql");
const INSERT_ATTEMPTS: &str = include_str!("../../sql/worker/insert_attempts.sql");
const FINISH: &str = include_str!("../../sql/worker/finish.sql");
const RESCHEDULE: &str = include_str!("../../sql/worker/reschedule.sql");
const DEFER: &str = include_str!("../../sql/worker/defer.sql");
const PARK: &str = include_str!("../../sql/worker/park.sql");
const HEALTH: &str = include_str!("../../sql/worker/health.sql");
const DISABLE: &str = include_str!("../../sql/worker/disable.sql");
const OVERDUE: &str = include_str!("../../sql/worker/overdue.sql");
const PURGE_EVENTS: &str = include_str!("../../sql/worker/purge_events.sql");
const PURGE_ATTEMPTS: &str = include_str!("../../sql/worker/purge_attempts.sql");
const UNPARK: &str = include_str!("../../sql/queries/unpark.sql");
const OWNER_ACCESS: &str = include_str!("../../sql/worker/owner_access.sql");

/// A worker's share of the events: ids congruent to `index` modulo `count`.
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
        format!(
            "AND (CASE WHEN q.subscription_id = ANY({pinned}) THEN q.subscription_id::bigint
                       ELSE q.id END) % {} = {}",
            self.count, self.index
        )
    }
}

/// The worker's prepared statements. Dropped (and prepared again) after any error, since the
/// error may be that the extension was dropped and re-created.
pub struct Statements {
    claim_new: OwnedPreparedStatement,
    claim_scheduled: OwnedPreparedStatement,
    claim_ordered: OwnedPreparedStatement,
    defer: OwnedPreparedStatement,
    next_due: OwnedPreparedStatement,
    subscriptions: OwnedPreparedStatement,
    insert_attempts: OwnedPreparedStatement,
    finish: OwnedPreparedStatement,
    reschedule: OwnedPreparedStatement,
    park: OwnedPreparedStatement,
    unpark: OwnedPreparedStatement,
    owner_access: OwnedPreparedStatement,
    health: OwnedPreparedStatement,
    disable: OwnedPreparedStatement,
    overdue: OwnedPreparedStatement,
    purge_events: OwnedPreparedStatement,
    purge_attempts: OwnedPreparedStatement,
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
        let rows = client.select(EXTENSION_VERSION, Some(1), &[])?;
        let version = if rows.is_empty() {
            None
        } else {
            rows.first().get_one::<String>()?
        };
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
            BOOLARRAYOID as BA, FLOAT8ARRAYOID as F8A, FLOAT8OID as F8, INT4ARRAYOID as I4A,
            INT4OID as I4, INT8ARRAYOID as I8A, INT8OID as I8, TEXTARRAYOID as TA, TEXTOID as T,
        };
        let claim_new = CLAIM_NEW.replace("/*slice*/", &share.slice("$4::int[]"));
        let claim_scheduled = CLAIM_SCHEDULED.replace("/*slice*/", &share.slice("$2::int[]"));
        Spi::connect(|client| {
            Ok(Statements {
                claim_new: keep(client, &claim_new, &[I8, I8, I8, I4A, I8])?,
                claim_scheduled: keep(client, &claim_scheduled, &[I8, I4A, I8])?,
                claim_ordered: keep(client, CLAIM_ORDERED, &[I4A])?,
                defer: keep_mut(client, DEFER, &[I8A, I8A, I8A])?,
                next_due: keep(client, NEXT_DUE, &[])?,
                subscriptions: keep(client, SUBSCRIPTIONS, &[])?,
                insert_attempts: keep_mut(
                    client,
                    INSERT_ATTEMPTS,
                    &[I8A, I4A, I4A, F8A, F8A, I4A, TA, TA],
                )?,
                finish: keep_mut(
                    client,
                    FINISH,
                    &[I8A, I8A, TA, I4A, TA, F8A, F8A, I4A, TA, TA, BA, TA],
                )?,
                reschedule: keep_mut(client, RESCHEDULE, &[I8A, I8A, I4A, I8A, TA])?,
                park: keep_mut(client, PARK, &[I8A, I8A, I4A, I4A])?,
                unpark: keep_mut(client, UNPARK, &[I4A])?,
                owner_access: keep(client, OWNER_ACCESS, &[I4A])?,
                health: keep_mut(client, HEALTH, &[I4A, BA])?,
                disable: keep_mut(client, DISABLE, &[I4, T])?,
                overdue: keep(client, OVERDUE, &[F8])?,
                purge_events: keep_mut(client, PURGE_EVENTS, &[F8, F8, I8])?,
                purge_attempts: keep_mut(client, PURGE_ATTEMPTS, &[F8, F8, I8])?,
            })
        })
    }

    /// The snapshot horizon: transactions older than this have all committed or aborted. Read
    /// from the transaction's own snapshot (taken before any claim in it), widened to 64 bits.
    pub fn horizon(&self) -> SpiResult<i64> {
        // SAFETY: called inside the worker's transaction, which pushed an active snapshot.
        let (xmin, next) = unsafe {
            let snapshot = pg_sys::GetActiveSnapshot();
            if snapshot.is_null() {
                return Ok(0);
            }
            (
                (*snapshot).xmin.into_inner(),
                pg_sys::ReadNextFullTransactionId().value,
            )
        };
        Ok(full_xid(xmin, next))
    }

    /// New events after `after` in this worker's share, at most `limit` and about `bytes` of
    /// row images; `pinned` lists the subscriptions that are shared out whole.
    pub fn new_events(
        &self,
        after: (i64, i64),
        limit: usize,
        bytes: i64,
        pinned: &[i32],
    ) -> SpiResult<Vec<QueuedEvent>> {
        Spi::connect(|client| {
            let rows = client.select(
                &self.claim_new,
                None,
                &[
                    after.0.into(),
                    after.1.into(),
                    (limit as i64).into(),
                    pinned.to_vec().into(),
                    bytes.into(),
                ],
            )?;
            read_events(rows)
        })
    }

    /// Retries whose time has come, oldest first, at most `limit` and about `bytes`.
    pub fn scheduled_events(
        &self,
        limit: usize,
        bytes: i64,
        pinned: &[i32],
    ) -> SpiResult<Vec<QueuedEvent>> {
        Spi::connect(|client| {
            let rows = client.select(
                &self.claim_scheduled,
                None,
                &[(limit as i64).into(), pinned.to_vec().into(), bytes.into()],
            )?;
            read_events(rows)
        })
    }

    /// The due head of each of these ordered subscriptions.
    pub fn ordered_heads(&self, subscriptions: &[i32]) -> SpiResult<Vec<QueuedEvent>> {
        if subscriptions.is_empty() {
            return Ok(Vec::new());
        }
        Spi::connect(|client| {
            let rows =
                client.select(&self.claim_ordered, None, &[subscriptions.to_vec().into()])?;
            read_events(rows)
        })
    }

    /// Puts (txid, id, delay in ms) events back for later, attempts unchanged.
    pub fn defer(&self, events: &[(i64, i64, i64)]) -> SpiResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        Spi::connect_mut(|client| {
            client.update(
                &self.defer,
                None,
                &[
                    column(events, |e| e.0),
                    column(events, |e| e.1),
                    column(events, |e| e.2),
                ],
            )?;
            Ok(())
        })
    }

    /// Milliseconds until the earliest scheduled retry, if any.
    pub fn ms_until_next_due(&self) -> SpiResult<Option<f64>> {
        Spi::connect(|client| {
            client
                .select(&self.next_due, Some(1), &[])?
                .first()
                .get_one::<f64>()
        })
    }

    pub fn subscriptions(&self) -> SpiResult<Vec<SubscriptionRow>> {
        Spi::connect(|client| read_subscriptions(client.select(&self.subscriptions, None, &[])?))
    }

    /// Records a batch of outcomes: finished events move to the archive with their last
    /// attempt, the others are rescheduled and their attempt logged. Must run inside one
    /// transaction, so a crash records all or nothing. Events that vanished meanwhile
    /// (unsubscribed with discard) are skipped.
    pub fn record(&self, outcomes: &[Outcome]) -> SpiResult<()> {
        let (retried, finished): (Vec<&Outcome>, Vec<&Outcome>) = outcomes
            .iter()
            .partition(|o| matches!(o.decision, Decision::Retry { .. }));
        Spi::connect_mut(|client| {
            if !finished.is_empty() {
                client.update(
                    &self.finish,
                    None,
                    &[
                        column(&finished, |o| o.txid),
                        column(&finished, |o| o.event_id),
                        column(&finished, |o| o.decision.outcome().to_string()),
                        column(&finished, |o| o.attempt),
                        column(&finished, |o| o.last_error.clone()),
                        column(&finished, |o| epoch_seconds(o.started_at)),
                        column(&finished, |o| o.duration_ms),
                        column(&finished, |o| o.status_code),
                        column(&finished, |o| o.response_excerpt.clone()),
                        column(&finished, |o| o.error.clone()),
                        column(&finished, |o| o.callback),
                        column(&finished, |o| o.response_headers.clone()),
                    ],
                )?;
            }
            if !retried.is_empty() {
                client.update(
                    &self.insert_attempts,
                    None,
                    &[
                        column(&retried, |o| o.event_id),
                        column(&retried, |o| o.attempt),
                        column(&retried, |o| o.subscription_id),
                        column(&retried, |o| epoch_seconds(o.started_at)),
                        column(&retried, |o| o.duration_ms),
                        column(&retried, |o| o.status_code),
                        column(&retried, |o| o.response_excerpt.clone()),
                        column(&retried, |o| o.error.clone()),
                    ],
                )?;
                client.update(
                    &self.reschedule,
                    None,
                    &[
                        column(&retried, |o| o.txid),
                        column(&retried, |o| o.event_id),
                        column(&retried, |o| o.attempt),
                        column(&retried, |o| match o.decision {
                            Decision::Retry { delay_ms } => delay_ms,
                            _ => 0,
                        }),
                        column(&retried, |o| o.last_error.clone()),
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// Parks (txid, id, subscription id) events, if their subscription is still paused or
    /// disabled when this runs, or its owner may not read its table (`denied`).
    pub fn park(&self, events: &[(i64, i64, i32)], denied: &[i32]) -> SpiResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut subscriptions: Vec<i32> = events.iter().map(|e| e.2).collect();
        subscriptions.sort_unstable();
        subscriptions.dedup();
        Spi::connect_mut(|client| {
            client.update(
                &self.park,
                None,
                &[
                    column(events, |e| e.0),
                    column(events, |e| e.1),
                    subscriptions.into(),
                    denied.to_vec().into(),
                ],
            )?;
            Ok(())
        })
    }

    /// Makes every parked event of these subscriptions due; returns how many.
    pub fn unpark(&self, subscriptions: &[i32]) -> SpiResult<u64> {
        if subscriptions.is_empty() {
            return Ok(0);
        }
        Spi::connect_mut(|client| {
            Ok(client
                .update(&self.unpark, None, &[subscriptions.to_vec().into()])?
                .len() as u64)
        })
    }

    /// For these subscriptions, why their owner may no longer read their table (`None`: it
    /// may).
    pub fn owner_access(&self, subscriptions: &[i32]) -> SpiResult<Vec<(i32, Option<String>)>> {
        if subscriptions.is_empty() {
            return Ok(Vec::new());
        }
        Spi::connect(|client| {
            let rows = client.select(&self.owner_access, None, &[subscriptions.to_vec().into()])?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push((row.get(1)?.unwrap_or_default(), row.get(2)?));
            }
            Ok(out)
        })
    }

    /// Records which subscriptions now fail and which succeed.
    pub fn health(&self, changes: &[(i32, bool)]) -> SpiResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        Spi::connect_mut(|client| {
            client.update(
                &self.health,
                None,
                &[column(changes, |c| c.0), column(changes, |c| c.1)],
            )?;
            Ok(())
        })
    }

    /// Disables a subscription with the reason; true if it was active.
    pub fn disable(&self, id: i32, reason: &str) -> SpiResult<bool> {
        Spi::connect_mut(|client| {
            Ok(!client
                .update(&self.disable, None, &[id.into(), reason.into()])?
                .is_empty())
        })
    }

    /// Active subscriptions failing for longer than `seconds`.
    pub fn overdue(&self, seconds: f64) -> SpiResult<Vec<Overdue>> {
        Spi::connect(|client| {
            let rows = client.select(&self.overdue, None, &[seconds.into()])?;
            let mut out = Vec::new();
            for row in rows {
                out.push((
                    row.get(1)?.unwrap_or_default(),
                    row.get(2)?.unwrap_or_default(),
                    row.get(3)?.unwrap_or_default(),
                    row.get(4)?,
                ));
            }
            Ok(out)
        })
    }

    /// Deletes up to `batch` expired archive rows and up to `batch` orphaned attempts; returns
    /// how many of each.
    pub fn purge(&self, delivered_s: f64, dead_s: f64, batch: i64) -> SpiResult<(u64, u64)> {
        Spi::connect_mut(|client| {
            let args = [delivered_s.into(), dead_s.into(), batch.into()];
            let events = client.update(&self.purge_events, None, &args)?.len();
            let attempts = client.update(&self.purge_attempts, None, &args)?.len();
            Ok((events as u64, attempts as u64))
        })
    }
}
