//! What the worker reads from and writes to the queue, as Rust values.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pg_webhook_core::retry::RetryPolicy;
use pgrx::pg_sys;
use pgrx::spi::SpiResult;

use super::deformed::DeformedRows;

/// A queued event as the worker needs it. `(txid, id)` is its key in the queue.
#[derive(Debug, Clone, Default)]
pub struct QueuedEvent {
    pub txid: i64,
    pub id: i64,
    pub subscription_id: i32,
    pub op: String,
    pub table_schema: String,
    pub table_name: String,
    /// The row images as JSON text; both `None` when they were too large to read (then
    /// `payload_bytes` is over the claim's `largest`).
    /// Shared, not copied, by the plan that starts the event.
    pub record: Option<Arc<str>>,
    pub old_record: Option<Arc<str>>,
    pub attempts: i32,
    pub series_start: i32,
    /// When the change was captured, RFC 3339 (as JSON renders timestamps).
    pub created_at: String,
    /// Size of the row images, which claims are bounded by.
    pub payload_bytes: i64,
    /// Of a read of new events (see `read_events`), how many events it returned, plus one if
    /// its byte budget cut the page short; 0 for the other reads.
    pub page: i64,
    /// The batch it was last sent in (see the queue's `batch` column).
    pub batch: Option<i64>,
    /// The WAL timelines it was captured on and its transaction ran on (see the queue's
    /// columns), part of its webhook-ids.
    pub timeline: i32,
    pub tx_timeline: i32,
    /// Read as a due retry or deferred event, not as a new one.
    pub due: bool,
    /// Where a read of new events found its row (its ctid; `None` for the other reads), for
    /// recording its outcome (see sql/worker/finish.sql).
    pub tid: Option<pg_sys::ItemPointerData>,
}

/// The WAL timeline this server writes on, as the queue's `timeline` columns store it: 1 until
/// a failover or a point-in-time recovery starts another.
pub fn current_timeline() -> i32 {
    // SAFETY: called in a backend that writes (not in recovery), on its main thread; reads a
    // value that does not change once recovery is over.
    let timeline = unsafe { pg_sys::GetWALInsertionTimeLine() };
    // Timelines count up from 1: never near i32::MAX.
    timeline as i32
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
    /// Why its owner may not read its table any more (`None`: it may).
    pub read_denied: Option<String>,
    pub name: String,
    pub batch_size: i32,
    pub batch_wait_ms: i64,
    /// Ordered per key (`order_key`).
    pub keyed: bool,
    /// Sent a transaction per request (`group_by`).
    pub grouped: bool,
    /// The TLS client certificate chain and its key (PEM), if the receiver demands one.
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// OAuth 2.0 client credentials (the `auth` object, as JSON text).
    pub auth: Option<String>,
    /// The worker noted that its owner could not read its table (`read_denied` on its row).
    pub read_denied_noted: bool,
    /// Its owner's role OID (the worker shares its requests between owners).
    pub owner: pgrx::pg_sys::Oid,
}

pub fn read_subscriptions(rows: pgrx::spi::SpiTupleTable<'_>) -> SpiResult<Vec<SubscriptionRow>> {
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
            read_denied: row.get(17)?,
            name: row.get(18)?.unwrap_or_default(),
            batch_size: row.get(19)?.unwrap_or(1),
            batch_wait_ms: row.get(20)?.unwrap_or(0),
            keyed: row.get(21)?.unwrap_or(false),
            grouped: row.get(22)?.unwrap_or(false),
            client_cert: row.get(23)?,
            client_key: row.get(24)?,
            auth: row.get(25)?,
            read_denied_noted: row.get(26)?.unwrap_or(false),
            owner: row.get(27)?.unwrap_or(pgrx::pg_sys::Oid::INVALID),
        });
    }
    Ok(out)
}

/// Reads the events a claim returned: 15 columns, the last two the timelines. A read of new
/// events (claim_new.sql, claim_lagging.sql) has a 16th column, what `webhook._claim_room` made
/// of the row (src/queue/room.rs): the row it marks as the first past the byte budget is not an
/// event to take, only the sign that the page was cut short, which `page` carries on every
/// event returned. Its 17th is the ctid, which the other claims (of due events, ordered heads,
/// a transaction's part) have as their 16th; cutting a transaction (transaction_events.sql)
/// reads none.
pub fn read_events(rows: pgrx::spi::SpiTupleTable<'_>) -> SpiResult<Vec<QueuedEvent>> {
    let mut out = Vec::with_capacity(rows.len());
    let mut row = DeformedRows::of(&rows)?;
    let paged = row.columns() > 16;
    let tid_at = match row.columns() {
        16 => Some(16),
        17 => Some(17),
        _ => None,
    };
    let mut cut = false;
    while row.advance() {
        if paged && row.get::<i32>(16)? != Some(0) {
            cut = true;
            continue;
        }
        out.push(QueuedEvent {
            txid: row.get(1)?.unwrap_or_default(),
            id: row.get(2)?.unwrap_or_default(),
            subscription_id: row.get(3)?.unwrap_or_default(),
            op: row.get(4)?.unwrap_or_default(),
            table_schema: row.get(5)?.unwrap_or_default(),
            table_name: row.get(6)?.unwrap_or_default(),
            // Copied once, from the result's memory into the shared string.
            record: row.get::<&str>(7)?.map(Arc::from),
            old_record: row.get::<&str>(8)?.map(Arc::from),
            attempts: row.get(9)?.unwrap_or_default(),
            series_start: row.get(10)?.unwrap_or_default(),
            created_at: row.json_time(11)?.unwrap_or_default(),
            payload_bytes: row.get::<i32>(12)?.unwrap_or_default().into(),
            batch: row.get(13)?,
            timeline: row.get(14)?.unwrap_or(1),
            tx_timeline: row.get(15)?.unwrap_or(1),
            page: 0,
            due: false,
            tid: match tid_at {
                Some(at) => row.get(at)?,
                None => None,
            },
        });
    }
    if paged {
        let page = out.len() as i64 + i64::from(cut);
        for event in &mut out {
            event.page = page;
        }
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
    pub fn outcome(self) -> &'static str {
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
    /// The event's key in the queue.
    pub txid: i64,
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
    /// The batch it was sent in, which a retry goes out in again.
    pub batch: Option<i64>,
    /// Where the claim found its row (`QueuedEvent::tid`).
    pub tid: Option<pg_sys::ItemPointerData>,
    /// Dead for now: its schedule's attempts are spent, but the receiver asked to be tried
    /// again. Retried instead if its series has time left (see `Spent`).
    pub spent: Option<Spent>,
}

/// Of an event whose schedule's attempts are spent while its receiver answers with
/// `Retry-After` (`Verdict::Spent`): what decides whether it is tried again
/// (`retry::past_the_count`), given when its series began.
#[derive(Debug, Clone)]
pub struct Spent {
    pub retry_after: Duration,
    /// The attempt that began the event's current series (a replay begins a new one).
    pub first_attempt: i32,
    /// Attempts made past the schedule's count before this one (0 for the first).
    pub extra: u32,
    pub policy: Arc<RetryPolicy>,
    /// The request it went in (its first event's id): the events of a batch or of a
    /// transaction's part go on, or die, together.
    pub request: i64,
    /// The request's jitter (see `retry::jitter_unit`).
    pub jitter_unit: f64,
    /// Of an event named in its transaction's part only, recorded with why it was not sent:
    /// its `last_error` and `error` should it be retried instead.
    pub if_retried: Option<(Option<String>, Option<String>)>,
}

impl Outcome {
    /// The same outcome with everything the receiver sent dropped: what is left cannot fail
    /// to store, whatever the response held.
    pub fn without_response(&self, why: &str) -> Outcome {
        Outcome {
            response_excerpt: None,
            response_headers: None,
            error: Some(format!("the response could not be recorded: {why}")),
            ..self.clone()
        }
    }
}

/// One array argument built from a field of every row.
pub fn column<'a, R, T: pgrx::IntoDatum>(
    rows: &[R],
    field: impl Fn(&R) -> T,
) -> pgrx::datum::DatumWithOid<'a>
where
    Vec<T>: pgrx::IntoDatum,
{
    rows.iter().map(field).collect::<Vec<T>>().into()
}

/// The 64-bit form of `xid`, a transaction no newer than `next` (the next full xid).
pub fn full_xid(xid: u32, next: u64) -> i64 {
    let epoch = next >> 32;
    let next_xid = next as u32;
    let epoch = if xid > next_xid {
        epoch.saturating_sub(1)
    } else {
        epoch
    };
    ((epoch << 32) | u64::from(xid)) as i64
}

pub fn epoch_seconds(t: SystemTime) -> f64 {
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
