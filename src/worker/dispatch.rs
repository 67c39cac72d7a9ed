//! From queued rows to HTTP requests in flight, and from finished requests to outcomes to record.
//!
//! Runs on the backend's main thread. Requests are tokio tasks on the worker's HTTP thread
//! (`delivery::new_worker_runtime`), which never touches Postgres: they go on while the main
//! thread claims and records, and come back here through `collect`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pg_webhook_core::http::{Attempt, Endpoint, Message, Sender};
use pg_webhook_core::payload::message_id;
use pg_webhook_core::retry::{AttemptKind, RetryPolicy};
use tokio::runtime::Runtime;
use tokio::task::{Id, JoinSet};

use crate::delivery::targets::Target;
use crate::queue::{Decision, Outcome, QueuedEvent};

mod batching;
mod holding;
mod pace;
mod parts;
mod prepare;
mod recorded;
mod settle;

pub use batching::Gathered;
pub use pace::{Pace, SLOW};

use prepare::Unsent;
use settle::{settle, truncate};

/// One event of a request in flight.
struct Passenger {
    txid: i64,
    event_id: i64,
    /// The timeline it was captured on (part of its webhook-id and its batch's).
    timeline: i32,
    attempt: i32,
    /// Attempts before this series (replays start a new one).
    series_start: i32,
    /// Where the claim found its row (see `QueuedEvent::tid`).
    tid: Option<pgrx::pg_sys::ItemPointerData>,
    /// Why it cannot be sent, when it rides only as a note in its transaction's part: it dies
    /// with this reason when the part is delivered (see `parts.rs`).
    dies: Option<String>,
}

impl Passenger {
    fn of(event: &QueuedEvent) -> Passenger {
        Passenger {
            txid: event.txid,
            event_id: event.id,
            timeline: event.timeline,
            attempt: event.attempts + 1,
            series_start: event.series_start,
            tid: event.tid,
            dies: None,
        }
    }
}

/// One request in flight: one event, or a batch of one subscription's events.
struct Flight {
    subscription_id: i32,
    events: Vec<Passenger>,
    /// The batch's id (its first event's), kept on events that are retried.
    batch: Option<i64>,
    policy: Arc<RetryPolicy>,
    callback: bool,
    /// When it was handed to the HTTP thread (see pace.rs).
    started: Instant,
}

pub struct Dispatcher {
    sender: Sender,
    /// The database served, for CloudEvents `source`.
    pub database: String,
    /// Bodies above this are not sent (`pg_webhook.max_payload_bytes`).
    pub max_payload_bytes: usize,
    /// Claimed and not yet recorded, with the size of their row images and their
    /// subscription: never claimed again until recorded, so nothing is sent twice by the same
    /// worker.
    owned: HashMap<i64, (i64, i32)>,
    /// The sum of `owned`'s sizes, which the next claim's byte budget is reduced by.
    owned_bytes: i64,
    /// How many of `owned` each subscription has, and their sizes' sum.
    owned_by: HashMap<i32, (usize, i64)>,
    tasks: JoinSet<Attempt>,
    flights: HashMap<Id, Flight>,
    /// Parts of transactions in flight (or finished and not yet recorded): (subscription,
    /// txid) -> how many of the part's events are not recorded yet. A part counts until all
    /// are (one settled alone, too large to send, is recorded before the rest come back), and a
    /// transaction's next part goes only then.
    parts: HashMap<(i32, i64), usize>,
    /// Transactions (subscription, txid) whose next part, cut under a higher payload limit,
    /// is over today's: cut again from that part on before it goes (see `start_part`).
    recut: HashSet<(i32, i64)>,
    /// Requests that finished and whose outcomes are not recorded yet: they still count
    /// against `max_in_flight` (their events are still owned).
    settled_requests: usize,
    /// Requests per subscription, in flight or finished and not yet recorded; and of those,
    /// the finished ones.
    requests_by: HashMap<i32, usize>,
    /// The owner of each subscription in `requests_by` when its requests last started (see
    /// worker/plan/owners.rs): one unsubscribed and drained meanwhile is no longer loaded,
    /// and its requests still count for its owner, however many owners there were then.
    owner_of: HashMap<i32, pgrx::pg_sys::Oid>,
    settled_by: HashMap<i32, usize>,
    /// Finished attempts waiting to be recorded.
    pub outcomes: Vec<Outcome>,
    /// When the oldest of them finished.
    pub outcomes_since: Option<Instant>,
    /// Outcomes set aside because another transaction holds their queue rows (see
    /// recorded.rs), and when they were.
    held: Vec<Outcome>,
    held_at: Option<Instant>,
    /// Their finished requests and the bytes of their events: no longer taking room from the
    /// requests and claims of other subscriptions.
    held_requests: usize,
    held_bytes: i64,
    /// The most requests set aside that stop counting against the room (the worker's
    /// max_in_flight): past it, what is set aside counts again, so however many subscriptions
    /// one transaction holds, the outcomes kept stay bounded.
    pub held_room: usize,
    /// Subscriptions whose destination the address policy refused, already logged.
    refusals_logged: std::collections::HashSet<i32>,
    /// Subscriptions that have had an answer, and until when those whose requests took
    /// `SLOW` or longer count as slow (see pace.rs).
    answered: std::collections::HashSet<i32>,
    slow_until: HashMap<i32, Instant>,
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
            parts: HashMap::new(),
            recut: HashSet::new(),
            settled_requests: 0,
            requests_by: HashMap::new(),
            owner_of: HashMap::new(),
            settled_by: HashMap::new(),
            outcomes: Vec::new(),
            outcomes_since: None,
            held: Vec::new(),
            held_at: None,
            held_requests: 0,
            held_bytes: 0,
            held_room: 0,
            refusals_logged: std::collections::HashSet::new(),
            answered: std::collections::HashSet::new(),
            slow_until: HashMap::new(),
        }
    }

    pub fn set_sender(&mut self, sender: Sender) {
        self.sender = sender;
    }

    /// Starts delivering `event` in a request of its own, or settles it at once when it cannot
    /// be sent.
    pub fn start(&mut self, rt: &Runtime, event: QueuedEvent, target: Option<&Target>) {
        self.take(&event);
        let (body, endpoint, policy, target) = match self.prepare(&event, target) {
            Ok(ready) => ready,
            Err(unsent) => {
                let callback = target.is_some_and(|t| t.has_callback);
                self.settle_unsent(&event, unsent.error, unsent.decision, callback);
                return;
            }
        };
        let message = Message {
            id: message_id(&target.uid, event.id, event.timeline),
            body,
            content_type: target.format.content_type(),
        };
        let flight = Flight {
            subscription_id: event.subscription_id,
            events: vec![Passenger::of(&event)],
            batch: None,
            policy,
            callback: target.has_callback,
            started: Instant::now(),
        };
        self.launch(rt, endpoint, message, flight);
    }

    /// Counts `event` as claimed and not yet recorded.
    fn take(&mut self, event: &QueuedEvent) {
        self.take_holding(event, self.image_bytes(event));
    }

    /// Counts `event` as claimed and not yet recorded, holding none of its row images: it only
    /// rides, named in a note, with its transaction's part (see parts.rs), its images unread
    /// or dropped. Counted as held (up to `LARGEST_READABLE_IMAGES` each), a part out to a
    /// slow endpoint spent the byte budget and held back every other subscription's requests.
    fn take_named(&mut self, event: &QueuedEvent) {
        self.take_holding(event, 0);
    }

    fn take_holding(&mut self, event: &QueuedEvent, bytes: i64) {
        if self
            .owned
            .insert(event.id, (bytes, event.subscription_id))
            .is_none()
        {
            self.owned_bytes += bytes;
            let by = self.owned_by.entry(event.subscription_id).or_default();
            *by = (by.0 + 1, by.1 + bytes);
        }
    }

    /// Records at once that `event` was not sent, and why.
    fn settle_unsent(
        &mut self,
        event: &QueuedEvent,
        error: String,
        decision: Decision,
        callback: bool,
    ) {
        let settled = Outcome {
            txid: event.txid,
            event_id: event.id,
            subscription_id: event.subscription_id,
            attempt: event.attempts + 1,
            started_at: SystemTime::now(),
            duration_ms: 0.0,
            status_code: None,
            response_excerpt: None,
            last_error: Some(truncate(&error)),
            error: Some(error),
            decision,
            reached_endpoint: false,
            response_headers: None,
            callback,
            batch: None,
            tid: event.tid,
            spent: None,
        };
        self.push_outcome(settled);
    }

    fn launch(&mut self, rt: &Runtime, endpoint: Arc<Endpoint>, message: Message, flight: Flight) {
        let sender = self.sender.clone();
        let handle = self.tasks.spawn_on(
            async move { sender.send(&endpoint, &message).await },
            rt.handle(),
        );
        *self.requests_by.entry(flight.subscription_id).or_default() += 1;
        let owners = crate::delivery::targets::owners();
        if let Some(owner) = owners.of.get(&flight.subscription_id) {
            self.owner_of.insert(flight.subscription_id, *owner);
        }
        self.flights.insert(handle.id(), flight);
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
                self.settled_requests += 1;
                *self.settled_by.entry(flight.subscription_id).or_default() += 1;
                self.log_refusal(flight.subscription_id, &attempt);
                // As the HTTP thread measured it; a task that ended otherwise, as seen here.
                let took = attempt
                    .as_ref()
                    .map_or_else(|_| flight.started.elapsed(), |a| a.duration);
                self.note_answer(flight.subscription_id, took);
                for outcome in settle(flight, attempt) {
                    self.push_outcome(outcome);
                }
            }
        }
        count
    }

    /// A refused destination is retried like a failing endpoint, but it is a configuration
    /// matter (or someone aiming at an internal address): say so in the log, once per
    /// subscription while this worker runs.
    fn log_refusal(&mut self, subscription_id: i32, attempt: &Result<Attempt, String>) {
        let Ok(attempt) = attempt else {
            return;
        };
        if attempt.kind == AttemptKind::Refused && self.refusals_logged.insert(subscription_id) {
            pgrx::warning!(
                "pg_webhook: subscription {subscription_id}: {}; its events are retried on their schedule",
                attempt.error.as_deref().unwrap_or("destination refused")
            );
        }
    }

    /// Forgets the clients and tokens of subscriptions no longer loaded.
    pub fn keep_credentials_of(&self, subscriptions: &HashSet<i32>) {
        self.sender.keep_credentials_of(subscriptions);
    }

    fn push_outcome(&mut self, outcome: Outcome) {
        self.outcomes_since.get_or_insert_with(Instant::now);
        self.outcomes.push(outcome);
    }

    /// Forgets every request and outcome: their events were an extension's that was dropped
    /// (and made again, whose ids start over). Requests in flight are aborted. Returns how many
    /// requests there were, in flight or with outcomes not yet recorded.
    pub fn forget_all(&mut self) -> usize {
        let requests = self.requests_owned();
        // A new dispatcher with this one's settings; dropping this one's tasks aborts them.
        let mut fresh = Dispatcher::new(self.sender.clone());
        fresh.database = std::mem::take(&mut self.database);
        fresh.max_payload_bytes = self.max_payload_bytes;
        fresh.held_room = self.held_room;
        *self = fresh;
        requests
    }
}
