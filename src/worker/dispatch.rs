//! From queued rows to HTTP requests in flight, and from finished requests to outcomes to record.
//!
//! Runs on the backend's main thread. Requests are tokio tasks on a current-thread runtime, so
//! they only make progress inside `block_on`; all database work happens between those calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pg_webhook_core::http::{Attempt, Endpoint, Message, Sender};
use pg_webhook_core::payload::{self, message_id, Envelope, Operation, RowChange};
use pg_webhook_core::retry::{jitter_unit, judge, AttemptKind, RetryPolicy, Verdict};
use tokio::runtime::Runtime;
use tokio::task::{Id, JoinSet};

use crate::delivery::targets::Target;
use crate::queue::{Decision, Outcome, QueuedEvent};

/// Longest error summary kept on an event (the full text is on the attempt).
const LAST_ERROR_LEN: usize = 500;
/// See `Dispatcher::largest_readable`.
const LARGEST_READABLE: i64 = 160 << 20;

struct Flight {
    txid: i64,
    event_id: i64,
    subscription_id: i32,
    attempt: i32,
    /// Attempts before this series (replays start a new one).
    series_start: i32,
    policy: Arc<RetryPolicy>,
    callback: bool,
}

pub struct Dispatcher {
    sender: Sender,
    /// The database served, for CloudEvents `source`.
    pub database: String,
    /// Bodies above this are not sent (`pg_webhook.max_payload_bytes`).
    pub max_payload_bytes: usize,
    /// Claimed and not yet recorded, with the size of their row images: never claimed again
    /// until recorded, so nothing is sent twice by the same worker.
    owned: HashMap<i64, i64>,
    /// The sum of `owned`'s sizes, which the next claim's byte budget is reduced by.
    owned_bytes: i64,
    /// How many of `owned` each subscription has.
    owned_by: HashMap<i32, usize>,
    tasks: JoinSet<Attempt>,
    flights: HashMap<Id, Flight>,
    /// Finished attempts waiting to be recorded.
    pub outcomes: Vec<Outcome>,
    /// When the oldest of them finished.
    pub outcomes_since: Option<Instant>,
}

impl Dispatcher {
    pub fn new(sender: Sender) -> Dispatcher {
        Dispatcher {
            sender,
            database: String::new(),
            max_payload_bytes: usize::MAX,
            owned: HashMap::new(),
            owned_bytes: 0,
            owned_by: HashMap::new(),
            tasks: JoinSet::new(),
            flights: HashMap::new(),
            outcomes: Vec::new(),
            outcomes_since: None,
        }
    }

    pub fn set_sender(&mut self, sender: Sender) {
        self.sender = sender;
    }

    /// Requests in flight per subscription, largest first.
    pub fn in_flight_by_subscription(&self) -> Vec<(i32, i32)> {
        let mut counts: HashMap<i32, i32> = HashMap::new();
        for flight in self.flights.values() {
            *counts.entry(flight.subscription_id).or_default() += 1;
        }
        let mut counts: Vec<(i32, i32)> = counts.into_iter().collect();
        counts.sort_by_key(|c| std::cmp::Reverse(c.1));
        counts
    }

    /// Events claimed and not yet recorded.
    pub fn owned(&self) -> usize {
        self.owned.len()
    }

    pub fn in_flight(&self) -> usize {
        self.tasks.len()
    }

    pub fn owns(&self, event_id: i64) -> bool {
        self.owned.contains_key(&event_id)
    }

    /// Bytes of row images held by events claimed and not yet recorded.
    pub fn owned_bytes(&self) -> i64 {
        self.owned_bytes
    }

    /// The largest row images a claim reads: an event with larger ones dies without being read.
    /// Four times the largest body sent (JSON text can be a quarter of its jsonb size), and
    /// never more than 160 MiB, whose text (at most six times larger, \u escapes) stays under
    /// PostgreSQL's 1 GB limit for a value.
    pub fn largest_readable(&self) -> i64 {
        (self.max_payload_bytes as i64)
            .saturating_mul(4)
            .min(LARGEST_READABLE)
    }

    /// Events of one subscription claimed and not yet recorded.
    pub fn owned_by(&self, subscription_id: i32) -> usize {
        self.owned_by.get(&subscription_id).copied().unwrap_or(0)
    }

    /// Starts delivering `event`, or settles it at once when it cannot be sent.
    pub fn start(&mut self, rt: &Runtime, event: QueuedEvent, target: Option<&Target>) {
        let attempt = event.attempts + 1;
        if self.owned.insert(event.id, event.payload_bytes).is_none() {
            self.owned_bytes += event.payload_bytes;
            *self.owned_by.entry(event.subscription_id).or_default() += 1;
        }
        let (message, endpoint, policy, target) = match self.prepare(&event, target) {
            Ok(ready) => ready,
            Err((error, decision)) => {
                let settled = Outcome {
                    txid: event.txid,
                    event_id: event.id,
                    subscription_id: event.subscription_id,
                    attempt,
                    started_at: SystemTime::now(),
                    duration_ms: 0.0,
                    status_code: None,
                    response_excerpt: None,
                    last_error: Some(truncate(&error)),
                    error: Some(error),
                    decision,
                    reached_endpoint: false,
                    response_headers: None,
                    callback: target.is_some_and(|t| t.has_callback),
                };
                self.push_outcome(settled);
                return;
            }
        };
        let sender = self.sender.clone();
        let handle = self.tasks.spawn_on(
            async move { sender.send(&endpoint, &message).await },
            rt.handle(),
        );
        self.flights.insert(
            handle.id(),
            Flight {
                txid: event.txid,
                event_id: event.id,
                subscription_id: event.subscription_id,
                attempt,
                series_start: event.series_start,
                policy,
                callback: target.has_callback,
            },
        );
    }

    /// The signed request for `event`, or why it cannot be sent and what becomes of it.
    #[allow(clippy::type_complexity)]
    fn prepare<'t>(
        &self,
        event: &QueuedEvent,
        target: Option<&'t Target>,
    ) -> Result<(Message, Arc<Endpoint>, Arc<RetryPolicy>, &'t Target), (String, Decision)> {
        let Some(target) = target else {
            let e = format!("subscription {} no longer exists", event.subscription_id);
            return Err((e, Decision::Dead));
        };
        let (endpoint, policy) = match &target.config {
            Ok(config) => config,
            Err(e) => {
                // Fixable by the DBA, so retried on the default schedule rather than killed.
                let delay = RetryPolicy::default()
                    .base_delay((event.attempts + 1).max(1) as u32)
                    .unwrap_or(Duration::from_secs(3600));
                let delay_ms = delay.as_millis() as i64;
                return Err((e.clone(), Decision::Retry { delay_ms }));
            }
        };
        if event.payload_bytes > self.largest_readable() {
            let e = format!(
                "the event's row images are {} bytes as stored, too large to send within pg_webhook.max_payload_bytes ({}) and left unread",
                event.payload_bytes, self.max_payload_bytes
            );
            return Err((e, Decision::Dead));
        }
        let op: Operation = event.op.parse().map_err(|e| {
            (
                format!("event has an unknown operation: {e}"),
                Decision::Dead,
            )
        })?;
        let id = message_id(&target.uid, event.id);
        let change = RowChange {
            op,
            schema: &event.table_schema,
            table: &event.table_name,
            record: event.record.as_deref(),
            old_record: event.old_record.as_deref(),
        };
        let envelope = Envelope {
            message_id: &id,
            time: &event.created_at,
            database: &self.database,
        };
        let body = payload::body(target.format, &change, &envelope);
        if body.len() > self.max_payload_bytes {
            let e = format!(
                "payload is {} bytes, over pg_webhook.max_payload_bytes ({}): raise the limit and replay the event",
                body.len(),
                self.max_payload_bytes
            );
            return Err((e, Decision::Dead));
        }
        let message = Message {
            id,
            body,
            content_type: target.format.content_type(),
        };
        Ok((message, endpoint.clone(), policy.clone(), target))
    }

    /// Waits up to `max_wait` for a request to finish, then collects every finished one.
    /// Returns how many finished.
    pub fn collect(&mut self, rt: &Runtime, max_wait: Duration) -> usize {
        if self.tasks.is_empty() {
            return 0;
        }
        let first = rt.block_on(async {
            tokio::time::timeout(max_wait, self.tasks.join_next_with_id())
                .await
                .ok()
                .flatten()
        });
        let Some(first) = first else {
            return 0;
        };
        let mut finished = vec![first];
        while let Some(next) = self.tasks.try_join_next_with_id() {
            finished.push(next);
        }
        let count = finished.len();
        for result in finished {
            let (id, attempt) = match result {
                Ok((id, attempt)) => (id, Ok(attempt)),
                Err(join_error) => (join_error.id(), Err(join_error.to_string())),
            };
            if let Some(flight) = self.flights.remove(&id) {
                self.push_outcome(settle(flight, attempt));
            }
        }
        count
    }

    fn push_outcome(&mut self, outcome: Outcome) {
        self.outcomes_since.get_or_insert_with(Instant::now);
        self.outcomes.push(outcome);
    }

    /// Forgets the events whose outcomes were just recorded, so they may be claimed again.
    pub fn release_recorded(&mut self) {
        for o in self.outcomes.drain(..) {
            if let Some(bytes) = self.owned.remove(&o.event_id) {
                self.owned_bytes -= bytes;
                if let Some(n) = self.owned_by.get_mut(&o.subscription_id) {
                    *n -= 1;
                    if *n == 0 {
                        self.owned_by.remove(&o.subscription_id);
                    }
                }
            }
        }
        self.outcomes_since = None;
    }
}

fn settle(flight: Flight, attempt: Result<Attempt, String>) -> Outcome {
    let attempt = attempt.unwrap_or_else(|panic| Attempt {
        started_at: SystemTime::now(),
        duration: Duration::ZERO,
        status: None,
        response_excerpt: None,
        response_headers: None,
        error: Some(format!("delivery task failed: {panic}")),
        kind: AttemptKind::TransportError,
    });
    // A replay starts a new series: the schedule counts attempts within it.
    let in_series = (flight.attempt - flight.series_start).max(1) as u32;
    let decision = match judge(&flight.policy, in_series, attempt.kind, jitter_unit()) {
        Verdict::Delivered => Decision::Delivered,
        Verdict::RetryIn(delay) => Decision::Retry {
            delay_ms: delay.as_millis() as i64,
        },
        Verdict::Dead => Decision::Dead,
    };
    let last_error = match (decision, attempt.status, &attempt.error) {
        (Decision::Delivered, ..) => None,
        (_, Some(code), _) => Some(truncate(&match &attempt.response_excerpt {
            Some(body) => format!("HTTP {code}: {body}"),
            None => format!("HTTP {code}"),
        })),
        (_, None, Some(e)) => Some(truncate(e)),
        (_, None, None) => Some("no response".to_string()),
    };
    Outcome {
        txid: flight.txid,
        event_id: flight.event_id,
        subscription_id: flight.subscription_id,
        attempt: flight.attempt,
        started_at: attempt.started_at,
        duration_ms: attempt.duration.as_secs_f64() * 1000.0,
        status_code: attempt.status.map(i32::from),
        response_excerpt: attempt.response_excerpt,
        error: attempt.error,
        decision,
        last_error,
        reached_endpoint: true,
        response_headers: attempt.response_headers,
        callback: flight.callback,
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= LAST_ERROR_LEN {
        return s.to_string();
    }
    let mut end = LAST_ERROR_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
