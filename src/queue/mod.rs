//! Every statement the worker runs against the queue, prepared once per worker. Each public
//! function is one short transaction's worth of set-based SQL: claiming and recording are
//! batched, never one statement per event.
//!
//! Claiming does not lock or modify rows: a worker owns its events by remembering which ones it
//! has in flight until their outcome is recorded. If it dies first, the events are simply still
//! queued and are sent again (with the same webhook-id), which is what at-least-once means.

use std::time::{SystemTime, UNIX_EPOCH};

use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};
use pgrx::PgOid;

/// A queued event as the worker needs it.
#[derive(Debug, Clone)]
pub struct QueuedEvent {
    /// Where the row is now; finishing it deletes exactly this version.
    pub ctid: pg_sys::ItemPointerData,
    pub txid: i64,
    pub id: i64,
    pub subscription_id: i32,
    pub op: String,
    pub table_schema: String,
    pub table_name: String,
    pub record: Option<String>,
    pub old_record: Option<String>,
    pub attempts: i32,
    pub series_start: i32,
    /// When the change was captured, RFC 3339 (as JSON renders timestamps).
    pub created_at: String,
}

/// A subscription's delivery settings as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRow {
    pub id: i32,
    pub uid: String,
    pub url: String,
    pub secret: String,
    pub headers: String,
    pub timeout_ms: Option<i64>,
    pub max_attempts: i32,
    pub retry_schedule_ms: Option<Vec<i64>>,
    pub status: String,
    /// The secret being rotated out, while it still signs.
    pub previous_secret: Option<String>,
    pub failing_since: bool,
    pub format: String,
    pub ordered: bool,
    pub max_in_flight: Option<i32>,
    pub rate_limit: Option<f64>,
    pub has_callback: bool,
}

const EVENT_COLUMNS: &str = "q.ctid, q.txid::text::bigint, q.id, q.subscription_id, q.op, \
     q.table_schema, q.table_name, q.record::text, q.old_record::text, q.attempts, q.series_start, \
     pg_catalog.to_json(q.created_at) #>> '{}'";

/// The installed version of pg_webhook in this database, if it is installed and its tables
/// exist (NULL otherwise).
const EXTENSION_VERSION: &str = "\
SELECT e.extversion::text FROM pg_catalog.pg_extension e
 WHERE e.extname = 'pg_webhook' AND pg_catalog.to_regclass('webhook._event_queue') IS NOT NULL";

const SUBSCRIPTIONS: &str = "\
SELECT s.id, s.uid, s.url, s.secret, s.headers::text,
       (extract(epoch FROM s.timeout) * 1000)::bigint,
       s.max_attempts,
       (SELECT array_agg((extract(epoch FROM d) * 1000)::bigint ORDER BY o)
          FROM unnest(s.retry_schedule) WITH ORDINALITY AS u(d, o)),
       s.status,
       CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END,
       s.failing_since IS NOT NULL,
       s.format,
       s.ordered, s.max_in_flight, s.rate_limit, s.callback IS NOT NULL
  FROM webhook._subscriptions s";

/// Milliseconds until the earliest scheduled retry; due-now ones are being claimed already.
/// Parked events ('infinity') are never due, and PostgreSQL 15 refuses to subtract an
/// infinite timestamp: left in, one parked event failed every claim that looked for retries.
const NEXT_DUE: &str = "\
SELECT (extract(epoch FROM min(q.next_attempt_at) - clock_timestamp()) * 1000)::float8
  FROM webhook._event_queue q
 WHERE q.next_attempt_at > now() AND q.next_attempt_at < 'infinity'";

const INSERT_ATTEMPTS: &str = "\
INSERT INTO webhook._attempts
       (event_id, attempt, subscription_id, started_at, duration_ms, status_code,
        response_excerpt, error, outcome)
SELECT u.event_id, u.attempt, u.subscription_id, pg_catalog.to_timestamp(u.started),
       u.duration_ms, u.status_code, u.excerpt, u.error, 'retry'
  FROM unnest($1::bigint[], $2::int[], $3::int[], $4::float8[], $5::float8[], $6::int[],
              $7::text[], $8::text[])
       AS u(event_id, attempt, subscription_id, started, duration_ms, status_code,
            excerpt, error)
    ON CONFLICT (event_id, attempt) DO NOTHING";

/// Moves finished events to the archive with their last attempt, and queues the callbacks of
/// those whose subscription has one, in one statement.
const FINISH: &str = "\
WITH u AS (
    SELECT * FROM unnest($1::tid[], $2::bigint[], $3::text[], $4::int[], $5::text[],
                         $6::float8[], $7::float8[], $8::int[], $9::text[], $10::text[],
                         $11::bool[], $12::text[])
           AS u(t, id, status, attempts, last_error, started, duration_ms, status_code,
                excerpt, error, callback, headers)
), done AS (
    DELETE FROM webhook._event_queue q USING u
     WHERE q.ctid = u.t AND q.id = u.id
 RETURNING q.*
), callbacks AS (
    INSERT INTO webhook._callback_queue (event_id, subscription_id, response_headers)
    SELECT d.id, d.subscription_id, u.headers::jsonb
      FROM done d JOIN u ON u.id = d.id
     WHERE u.callback
        ON CONFLICT (event_id) DO NOTHING
)
INSERT INTO webhook._event_archive
       (id, subscription_id, op, table_schema, table_name, record, old_record, created_at,
        attempts, series_start, last_error, status, final_started_at, final_duration_ms,
        final_status_code, final_response_excerpt, final_error)
SELECT d.id, d.subscription_id, d.op, d.table_schema, d.table_name, d.record, d.old_record,
       d.created_at, u.attempts, d.series_start, u.last_error, u.status,
       pg_catalog.to_timestamp(u.started),
       u.duration_ms, u.status_code, u.excerpt, u.error
  FROM done d JOIN u ON u.id = d.id
    ON CONFLICT (id) DO NOTHING";

const RESCHEDULE: &str = "\
WITH u AS (
    SELECT * FROM unnest($1::tid[], $2::bigint[], $3::int[], $4::bigint[], $5::text[])
           AS u(t, id, attempts, delay_ms, last_error)
)
UPDATE webhook._event_queue q
   SET attempts = u.attempts,
       next_attempt_at = now() + u.delay_ms * interval '1 millisecond',
       last_error = u.last_error
  FROM u
 WHERE q.ctid = u.t AND q.id = u.id";

/// Puts events back for later without counting an attempt: over a subscription's own
/// concurrency or rate limit.
const DEFER: &str = "\
UPDATE webhook._event_queue q
   SET next_attempt_at = now() + u.delay_ms * interval '1 millisecond'
  FROM unnest($1::tid[], $2::bigint[], $3::bigint[]) AS u(t, id, delay_ms)
 WHERE q.ctid = u.t AND q.id = u.id";

/// Holds events of paused or disabled subscriptions: out of the claim indexes until resumed.
/// The subscription's status is checked here, under a share lock, and not only in the worker's
/// copy: a resume updates that row, so the two serialize. Either the resume waits and then
/// un-parks what was parked, or the park waits, sees the subscription active and parks nothing.
/// Without it, an event parked just as a resume committed stayed parked for good. Events whose
/// subscription turned out to be active again are made due now (the worker, going by its older
/// copy, did not start them, and its cursor has moved past them).
const PARK: &str = "\
WITH held AS (
    SELECT s.id FROM webhook._subscriptions s
     WHERE s.id = ANY($3::int[]) AND s.status IN ('paused', 'disabled')
       FOR SHARE
)
UPDATE webhook._event_queue q
   SET next_attempt_at = CASE WHEN q.subscription_id IN (SELECT id FROM held)
                              THEN 'infinity'::timestamptz ELSE now() END
  FROM unnest($1::tid[], $2::bigint[]) AS u(t, id)
 WHERE q.ctid = u.t AND q.id = u.id";

/// Records a subscription's health: failing since when (NULL after a success).
const HEALTH: &str = "\
UPDATE webhook._subscriptions s
   SET failing_since = CASE WHEN u.failing THEN COALESCE(s.failing_since, now()) END
  FROM unnest($1::int[], $2::bool[]) AS u(id, failing)
 WHERE s.id = u.id AND (s.failing_since IS NULL) = u.failing";

/// Disables a subscription whose endpoint kept failing (or answered 410 Gone).
const DISABLE: &str = "\
UPDATE webhook._subscriptions SET status = 'disabled', status_reason = $2
 WHERE id = $1 AND status = 'active'";

/// Subscriptions failing for longer than `$1` seconds, with their latest error.
const OVERDUE: &str = "\
SELECT s.id, s.name, s.failing_since::text,
       (SELECT q.last_error FROM webhook._event_queue q WHERE q.subscription_id = s.id
         ORDER BY q.next_attempt_at DESC NULLS LAST LIMIT 1)
  FROM webhook._subscriptions s
 WHERE s.status = 'active' AND s.failing_since < now() - $1 * interval '1 second'";

/// Retention: a small batch of finished events older than their horizon, and attempts that
/// outlived their events.
/// The first bound is what lets the index scan stop early: without it the OR made every run
/// walk the whole finished_at index, which with a large archive was the worker's idle CPU.
const PURGE_EVENTS: &str = "\
DELETE FROM webhook._event_archive a
 WHERE a.ctid IN (SELECT ctid FROM webhook._event_archive
                   WHERE finished_at < now() - LEAST($1, $2) * interval '1 second'
                     AND (finished_at < now() - $1 * interval '1 second' AND status = 'delivered'
                          OR finished_at < now() - $2 * interval '1 second')
                   ORDER BY finished_at LIMIT $3)";
const PURGE_ATTEMPTS: &str = "\
DELETE FROM webhook._attempts t
 WHERE t.ctid IN (SELECT ctid FROM webhook._attempts
                   WHERE started_at < now() - LEAST($1, $2) * interval '1 second'
                     AND NOT EXISTS (SELECT 1 FROM webhook._event_queue q WHERE q.id = _attempts.event_id)
                     AND NOT EXISTS (SELECT 1 FROM webhook._event_archive a WHERE a.id = _attempts.event_id)
                   ORDER BY started_at LIMIT $3)";

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
    health: OwnedPreparedStatement,
    disable: OwnedPreparedStatement,
    overdue: OwnedPreparedStatement,
    purge_events: OwnedPreparedStatement,
    purge_attempts: OwnedPreparedStatement,
}

fn oids(types: &[pg_sys::Oid]) -> Vec<PgOid> {
    types.iter().map(|t| PgOid::from(*t)).collect()
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
            &format!("{SUBSCRIPTIONS} WHERE s.id = $1"),
            Some(1),
            &[id.into()],
        )?;
        Ok(read_subscriptions(rows)?.pop())
    })
}

fn read_subscriptions(rows: pgrx::spi::SpiTupleTable<'_>) -> SpiResult<Vec<SubscriptionRow>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(SubscriptionRow {
            id: row.get(1)?.unwrap_or_default(),
            uid: row.get(2)?.unwrap_or_default(),
            url: row.get(3)?.unwrap_or_default(),
            secret: row.get(4)?.unwrap_or_default(),
            headers: row.get(5)?.unwrap_or_else(|| "{}".into()),
            timeout_ms: row.get(6)?,
            max_attempts: row.get(7)?.unwrap_or(1),
            retry_schedule_ms: row
                .get::<Vec<Option<i64>>>(8)?
                .map(|v| v.into_iter().map(|d| d.unwrap_or(0)).collect()),
            status: row.get(9)?.unwrap_or_default(),
            previous_secret: row.get(10)?,
            failing_since: row.get(11)?.unwrap_or(false),
            format: row.get(12)?.unwrap_or_default(),
            ordered: row.get(13)?.unwrap_or(false),
            max_in_flight: row.get(14)?,
            rate_limit: row.get(15)?,
            has_callback: row.get(16)?.unwrap_or(false),
        });
    }
    Ok(out)
}

impl Statements {
    /// Statements for the worker that delivers `share` of the events.
    pub fn prepare(share: crate::worker::Share) -> SpiResult<Statements> {
        use pg_sys::{
            BOOLARRAYOID, FLOAT8ARRAYOID as F8A, FLOAT8OID, INT4ARRAYOID as I4A, INT4OID,
            INT8ARRAYOID as I8A, INT8OID as I8, TEXTARRAYOID as TA, TEXTOID, TIDARRAYOID as TIDA,
        };
        // Events are shared out by id, except those of pinned subscriptions (with limits of
        // their own, $pinned), which go whole to one worker. Ordered ones are claimed apart.
        let slice = |pinned: &str| {
            if share.count > 1 {
                format!(
                    "AND (CASE WHEN q.subscription_id = ANY({pinned}) THEN q.subscription_id::bigint
                               ELSE q.id END) % {} = {}",
                    share.count, share.index
                )
            } else {
                String::new()
            }
        };
        let (new_slice, scheduled_slice) = (slice("$4::int[]"), slice("$2::int[]"));
        Spi::connect(|client| {
            let claim_new = format!(
                "SELECT {EVENT_COLUMNS} FROM webhook._event_queue q
                  WHERE q.next_attempt_at IS NULL
                    AND (q.txid, q.id) > ($1::text::xid8, $2)
                    AND NOT q.ordered
                    {new_slice}
                  ORDER BY q.txid, q.id
                  LIMIT $3"
            );
            let claim_scheduled = format!(
                "SELECT {EVENT_COLUMNS} FROM webhook._event_queue q
                  WHERE q.next_attempt_at <= now()
                    AND NOT q.ordered
                    {scheduled_slice}
                  ORDER BY q.next_attempt_at, q.id
                  LIMIT $1"
            );
            // The head of each ordered subscription, if it is due: one event each, found
            // through the partial index, and nothing behind a head that waits for a retry.
            let claim_ordered = format!(
                "SELECT {EVENT_COLUMNS} FROM webhook._event_queue q
                  WHERE q.ctid = ANY(ARRAY(
                          SELECT (SELECT h.ctid FROM webhook._event_queue h
                                   WHERE h.ordered AND h.subscription_id = s.id
                                   ORDER BY h.id LIMIT 1)
                            FROM unnest($1::int[]) AS s(id)))
                    AND (q.next_attempt_at IS NULL OR q.next_attempt_at <= now())"
            );
            Ok(Statements {
                claim_new: keep(client, &claim_new, &[I8, I8, I8, I4A])?,
                claim_scheduled: keep(client, &claim_scheduled, &[I8, I4A])?,
                claim_ordered: keep(client, &claim_ordered, &[I4A])?,
                defer: keep_mut(client, DEFER, &[TIDA, I8A, I8A])?,
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
                    &[
                        TIDA,
                        I8A,
                        TA,
                        I4A,
                        TA,
                        F8A,
                        F8A,
                        I4A,
                        TA,
                        TA,
                        BOOLARRAYOID,
                        TA,
                    ],
                )?,
                reschedule: keep_mut(client, RESCHEDULE, &[TIDA, I8A, I4A, I8A, TA])?,
                park: keep_mut(client, PARK, &[TIDA, I8A, I4A])?,
                health: keep_mut(client, HEALTH, &[I4A, BOOLARRAYOID])?,
                disable: keep_mut(client, DISABLE, &[INT4OID, TEXTOID])?,
                overdue: keep(client, OVERDUE, &[FLOAT8OID])?,
                purge_events: keep_mut(client, PURGE_EVENTS, &[FLOAT8OID, FLOAT8OID, I8])?,
                purge_attempts: keep_mut(client, PURGE_ATTEMPTS, &[FLOAT8OID, FLOAT8OID, I8])?,
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

    /// New events after `(txid, id)` in (txid, id) order.
    /// New events after `after` in this worker's share; `pinned` lists the subscriptions that
    /// are shared out whole.
    pub fn new_events(
        &self,
        after: (i64, i64),
        limit: usize,
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
                ],
            )?;
            read_events(rows)
        })
    }

    /// Retries whose time has come, oldest first.
    pub fn scheduled_events(&self, limit: usize, pinned: &[i32]) -> SpiResult<Vec<QueuedEvent>> {
        Spi::connect(|client| {
            let rows = client.select(
                &self.claim_scheduled,
                None,
                &[(limit as i64).into(), pinned.to_vec().into()],
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

    /// Puts (ctid, id, delay in ms) events back for later, attempts unchanged.
    pub fn defer(&self, events: &[(pg_sys::ItemPointerData, i64, i64)]) -> SpiResult<()> {
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
                        column(&finished, |o| o.ctid),
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
                        column(&retried, |o| o.ctid),
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
}

impl Statements {
    /// Parks (ctid, id, subscription id) events, if their subscription is still paused or
    /// disabled when this runs.
    pub fn park(&self, events: &[(pg_sys::ItemPointerData, i64, i32)]) -> SpiResult<()> {
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
                ],
            )?;
            Ok(())
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

    /// Deletes up to `batch` expired archive rows and orphaned attempts; returns how many.
    pub fn purge(&self, delivered_s: f64, dead_s: f64, batch: i64) -> SpiResult<u64> {
        Spi::connect_mut(|client| {
            let args = [delivered_s.into(), dead_s.into(), batch.into()];
            let events = client.update(&self.purge_events, None, &args)?.len();
            let attempts = client.update(&self.purge_attempts, None, &args)?.len();
            Ok((events + attempts) as u64)
        })
    }
}

fn keep(
    client: &SpiClient<'_>,
    sql: &str,
    types: &[pg_sys::Oid],
) -> SpiResult<OwnedPreparedStatement> {
    Ok(client.prepare(sql, &oids(types))?.keep())
}

fn keep_mut(
    client: &SpiClient<'_>,
    sql: &str,
    types: &[pg_sys::Oid],
) -> SpiResult<OwnedPreparedStatement> {
    Ok(client.prepare_mut(sql, &oids(types))?.keep())
}

/// One array argument built from a field of every outcome.
fn column<'a, R, T: pgrx::IntoDatum>(
    rows: &[R],
    field: impl Fn(&R) -> T,
) -> pgrx::datum::DatumWithOid<'a>
where
    Vec<T>: pgrx::IntoDatum,
{
    rows.iter().map(field).collect::<Vec<T>>().into()
}

fn read_events(rows: pgrx::spi::SpiTupleTable<'_>) -> SpiResult<Vec<QueuedEvent>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(QueuedEvent {
            ctid: row.get(1)?.unwrap_or_default(),
            txid: row.get(2)?.unwrap_or_default(),
            id: row.get(3)?.unwrap_or_default(),
            subscription_id: row.get(4)?.unwrap_or_default(),
            op: row.get(5)?.unwrap_or_default(),
            table_schema: row.get(6)?.unwrap_or_default(),
            table_name: row.get(7)?.unwrap_or_default(),
            record: row.get(8)?,
            old_record: row.get(9)?,
            attempts: row.get(10)?.unwrap_or_default(),
            series_start: row.get(11)?.unwrap_or_default(),
            created_at: row.get(12)?.unwrap_or_default(),
        });
    }
    Ok(out)
}

/// An active subscription whose endpoint has failed too long: id, name, since when, last error.
pub type Overdue = (i32, String, String, Option<String>);

/// What the worker decided after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Delivered,
    Retry { delay_ms: i64 },
    Dead,
}

impl Decision {
    fn outcome(self) -> &'static str {
        match self {
            Decision::Delivered => "delivered",
            Decision::Retry { .. } => "retry",
            Decision::Dead => "dead",
        }
    }
}

/// One attempt's result, ready to record.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ctid: pg_sys::ItemPointerData,
    pub event_id: i64,
    pub subscription_id: i32,
    pub attempt: i32,
    pub started_at: SystemTime,
    pub duration_ms: f64,
    pub status_code: Option<i32>,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    pub decision: Decision,
    /// Summary kept on the event when it is retried or dies.
    pub last_error: Option<String>,
    /// An HTTP attempt was made (not settled locally), so it says something about the endpoint.
    pub reached_endpoint: bool,
    /// The response headers (JSON), kept for the subscription's callback.
    pub response_headers: Option<String>,
    /// The subscription has a callback to run once the event is finished.
    pub callback: bool,
}

/// The 64-bit form of `xid`, a transaction no newer than `next` (the next full xid).
fn full_xid(xid: u32, next: u64) -> i64 {
    let epoch = next >> 32;
    let next_xid = next as u32;
    let epoch = if xid > next_xid {
        epoch.saturating_sub(1)
    } else {
        epoch
    };
    ((epoch << 32) | u64::from(xid)) as i64
}

fn epoch_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::full_xid;

    #[test]
    fn xids_widen_to_the_right_epoch() {
        assert_eq!(full_xid(100, 200), 100);
        assert_eq!(full_xid(100, (3 << 32) | 200), (3 << 32) | 100);
        // Older than the wraparound of the next xid: the previous epoch.
        assert_eq!(
            full_xid(u32::MAX - 5, (3 << 32) | 10),
            (2 << 32) | i64::from(u32::MAX - 5)
        );
    }
}
