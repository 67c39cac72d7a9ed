//! One claim's decisions: which of the events it read start now, which go back to the queue
//! for later (over a subscription's rate limit, or a partial batch waiting to fill), which the
//! cursor passes for now (a slow subscription's, see `share`, or one's at its own
//! max_in_flight), which due ones stay due, and when to look again.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use pg_webhook_core::limits::{Admission, Arrival, Limits};

use super::dispatch::{Dispatcher, Pace};
use crate::delivery::targets::Target;
use crate::queue::QueuedEvent;

mod left;
mod owners;
mod requests;

pub(super) use owners::{owner_cap, OwnerShare};
use requests::requests_of;
pub(super) use requests::share_cap;

/// What one claim decided: events to start now, and events of limited subscriptions to put
/// back for later (txid, id, delay in µs).
pub(super) struct Plan<'a> {
    dispatcher: &'a Dispatcher,
    now: Instant,
    pub(super) start: Vec<QueuedEvent>,
    /// Started in this plan, per subscription (on top of what the dispatcher owns).
    starting: HashMap<i32, usize>,
    /// Requests the worker may still start, and those this plan's events will take (a batched
    /// subscription's events fill requests of its batch size).
    room: usize,
    requests: usize,
    /// The first new event left for want of room: the cursor must not move past it.
    pub(super) first_left: Option<(i64, i64)>,
    pub(super) defer: Vec<(i64, i64, i64)>,
    /// The deferrals of events over their subscription's rate: event id -> (subscription, the
    /// slot it was given); and the last slot each subscription had given out before this plan
    /// (see `deferred`).
    rate_deferred: HashMap<i64, (i32, Instant)>,
    given_before: HashMap<i32, Option<Instant>>,
    /// Turned away in this plan, per subscription.
    over: HashMap<i32, usize>,
    /// When the earliest deferred event or rate-held head is due.
    earliest: Option<Instant>,
    /// The subscriptions' pace, and the requests one subscription (or the slow ones together)
    /// may hold (see `share`); how many the slow ones hold.
    pace: Pace,
    cap: usize,
    slow_held: usize,
    /// What each owner holds, when the subscriptions have more than one (see plan/owners.rs).
    owners: OwnerShare,
    /// The bytes of row images this plan starts per subscription, and the slow ones hold (see
    /// `share_room`).
    bytes_starting: HashMap<i32, i64>,
    slow_bytes: i64,
    /// All that this plan starts, and the subscriptions a row did not fit (see
    /// `bytes_allowed`).
    started_bytes: i64,
    byte_refused: HashSet<i32>,
    /// New events the cursor passes (of slow subscriptions, or ones at their own max_in_flight),
    /// per subscription: the first and last key (see `claim::lagging`).
    pub(super) passed: Passed,
    /// A new event was left because its subscription, not slow, holds its share: claim again
    /// when a request ends or at this instant (when it would turn slow), not at once.
    pub(super) share_left: Option<Instant>,
    /// Some event was left because its subscription, not slow, holds its share: its requests
    /// ending is what lets it go, not time (see `Worker::apply`).
    pub(super) share_held: bool,
    /// The due events left so, or for their subscription's own max_in_flight: read again as
    /// requests end (`Worker::due_held`).
    pub(super) held_due: Vec<i64>,
    /// Requests started in this plan, per subscription (a batch or a transaction's part is
    /// one).
    requests_starting: HashMap<i32, usize>,
    /// Events started in this plan per batched subscription and batch they go in (`None`: a
    /// new batch; a retried one goes out again alone, see `Dispatcher::start_batched`).
    batches: HashMap<(i32, Option<i64>), usize>,
}

/// Per subscription, the first and last key of the new events a claim passed.
pub(super) type Passed = HashMap<i32, ((i64, i64), (i64, i64))>;

impl<'a> Plan<'a> {
    pub(super) fn new(
        dispatcher: &'a Dispatcher,
        now: Instant,
        room: usize,
        (cap, owner_cap): (usize, usize),
        pace: Pace,
    ) -> Plan<'a> {
        let slow_held = dispatcher.slow_held(&pace);
        let slow_bytes = dispatcher.slow_bytes(&pace);
        Plan {
            dispatcher,
            now,
            start: Vec::new(),
            starting: HashMap::new(),
            room,
            requests: 0,
            first_left: None,
            defer: Vec::new(),
            rate_deferred: HashMap::new(),
            given_before: HashMap::new(),
            over: HashMap::new(),
            earliest: None,
            pace,
            cap,
            slow_held,
            owners: OwnerShare::new(dispatcher, owner_cap),
            bytes_starting: HashMap::new(),
            slow_bytes,
            started_bytes: 0,
            byte_refused: HashSet::new(),
            passed: HashMap::new(),
            share_left: None,
            share_held: false,
            held_due: Vec::new(),
            requests_starting: HashMap::new(),
            batches: HashMap::new(),
        }
    }

    pub(super) fn in_flight(&self, subscription: i32) -> usize {
        self.dispatcher.owned_by(subscription) + self.starting.get(&subscription).unwrap_or(&0)
    }

    /// Notes a new event the cursor passes: its subscription's are read again later (see
    /// claim/lagging.rs).
    pub(super) fn pass(&mut self, event: &QueuedEvent) {
        let key = (event.txid, event.id);
        self.passed
            .entry(event.subscription_id)
            .and_modify(|(first, last)| {
                *first = (*first).min(key);
                *last = (*last).max(key);
            })
            .or_insert((key, key));
    }

    /// Counts `n` requests of `subscription` as started (events' or transactions' parts).
    pub(super) fn took_requests(&mut self, subscription: i32, n: usize) {
        *self.requests_starting.entry(subscription).or_default() += n;
        self.owners.took(subscription, n);
        if self.pace.is_slow(subscription) {
            self.slow_held += n;
        }
    }

    /// Counts `bytes` of row images of `subscription` as started.
    pub(super) fn took_bytes(&mut self, subscription: i32, bytes: i64) {
        *self.bytes_starting.entry(subscription).or_default() += bytes;
        self.started_bytes += bytes;
        if self.pace.is_slow(subscription) {
            self.slow_bytes += bytes;
        }
    }

    pub(super) fn wake_at(&mut self, at: Instant) {
        self.earliest = Some(self.earliest.map_or(at, |e| e.min(at)));
    }

    /// This plan with `n` requests already taken (transactions' parts, started apart).
    pub(super) fn with_requests(mut self, n: usize) -> Plan<'a> {
        self.requests += n;
        self
    }

    /// Starts `event`, defers it, or leaves it (in flight already, parked, or no room). A new
    /// (`fresh`) event left for want of room is remembered, so the cursor stops before it.
    pub(super) fn consider(
        &mut self,
        event: &QueuedEvent,
        targets: &HashMap<i32, Target>,
        limits: &mut Limits,
        fresh: bool,
    ) {
        if self.dispatcher.owns(event.id) {
            return;
        }
        let sub = event.subscription_id;
        let target = targets.get(&sub);
        if target.is_some_and(|t| !t.sends()) {
            return; // parked in the claim transaction
        }
        // A batched subscription's events of this claim go out in requests of batch_size, a
        // retried batch's apart from new ones.
        let batch = (sub, event.batch);
        let cost = match target.filter(|t| t.batched()) {
            Some(t)
                if !self
                    .batches
                    .get(&batch)
                    .unwrap_or(&0)
                    .is_multiple_of(t.batch_size) =>
            {
                0
            }
            _ => 1,
        };
        if self.requests + cost > self.room {
            if fresh && self.first_left.is_none() {
                self.first_left = Some((event.txid, event.id));
            }
            return;
        }
        let bytes = self.dispatcher.image_bytes(event);
        if let Some(t) = target.filter(|_| cost > 0) {
            if self.share_room(sub) == 0 || !self.fits_bytes(sub, bytes) {
                self.share(event, t, fresh);
                return;
            }
        }
        if let Some(t) = target.filter(|t| t.pinned()) {
            // (Turned away, a batched subscription's events come back a batch at a time.)
            let over = self.over.get(&sub).copied().unwrap_or(0) / t.batch_size.max(1);
            // max_in_flight counts requests, each batch one, however few events it carries;
            // an event that joins a batch this claim is making takes no request of its own.
            let requests = match cost {
                0 => 0,
                _ => self.requests_held(sub),
            };
            (self.given_before)
                .entry(sub)
                .or_insert_with(|| limits.given_out(sub));
            let arrival = if t.ordered {
                Arrival::Head
            } else if event.due {
                Arrival::Due
            } else {
                Arrival::New
            };
            let admission = limits.admit(sub, &t.limits, requests, over, self.now, arrival);
            if let Admission::Full(wait) | Admission::Later(wait) = admission {
                *self.over.entry(sub).or_default() += 1;
                let full = matches!(admission, Admission::Full(_));
                if full && !t.ordered {
                    // At max_in_flight nothing is written: a new event is passed, a passed one
                    // read again stays where it is (read again, oldest first, when one of its
                    // requests ends: claim/lagging.rs), and a due one stays due, read again
                    // then too (`held_due`). Put back, each was written again every 100 ms
                    // round and came back out of order (a resumed backlog: ~32 times each),
                    // and under a stream of writes new ones took every free request first.
                    if fresh {
                        self.pass(event);
                    } else if event.due {
                        self.held_due.push(event.id);
                    }
                    return;
                }
                if t.ordered {
                    self.wake_at(self.now + wait);
                } else {
                    self.defer.push((event.txid, event.id, defer_us(wait)));
                    (self.rate_deferred).insert(event.id, (sub, self.now + wait));
                }
                return;
            }
        }
        *self.starting.entry(sub).or_default() += 1;
        if target.is_some_and(|t| t.batched()) {
            *self.batches.entry(batch).or_default() += 1;
        }
        self.requests += cost;
        self.took_requests(sub, cost);
        self.took_bytes(sub, bytes);
        self.start.push(event.clone());
    }

    /// The share rule, for an event whose subscription may start no more requests: one
    /// subscription may hold `cap` of the worker's requests, and the slow ones (see pace.rs)
    /// `cap` together, so a quarter is always left to those that answer. A slow subscription's
    /// new events are passed by the cursor and read again later (`claim::lagging`) — putting
    /// back a long backlog would rewrite all of it every round — and its due retries wait
    /// for its request timeout. A subscription not slow (yet) holding its share is
    /// waited for like a full worker: its next event is where the cursor stops, and the claim
    /// comes again when a request ends, or when it turns slow.
    fn share(&mut self, event: &QueuedEvent, target: &Target, fresh: bool) {
        let sub = event.subscription_id;
        if self.owners.room(sub) == 0 {
            // Its owner's subscriptions hold the owners' share (plan/owners.rs): waited for,
            // its next event would hold up every other owner's behind it. Passed, as a slow
            // one's, and read again as its owner's requests end; a due one is read again then
            // (not put off for its timeout, as a slow one's: its owner's other subscriptions
            // would take each request that ends first).
            if fresh {
                self.pass(event);
            } else if event.due {
                self.held_due.push(event.id);
            }
            return;
        }
        if !self.pace.is_slow(sub) {
            let at = self
                .pace
                .turns_slow_at(sub)
                .unwrap_or(self.now + super::dispatch::SLOW);
            self.wake_at(at);
            self.share_held = true;
            if event.due {
                self.held_due.push(event.id);
            }
            if fresh && self.first_left.is_none() {
                self.first_left = Some((event.txid, event.id));
                self.share_left = Some(at);
            }
        } else if fresh {
            self.pass(event);
        } else if event.due && !target.ordered {
            let timeout = target
                .config
                .as_ref()
                .map_or(Duration::ZERO, |c| c.0.timeout);
            let wait = Pace::wait_for_room(timeout);
            self.defer.push((event.txid, event.id, defer_us(wait)));
        }
        // Otherwise (an ordered head, an event read again after the cursor passed it) it stays
        // where it is, and is looked for again.
    }

    /// Puts back the events of a batched subscription that would go in a partial batch made
    /// only of new events: more may come meanwhile. The first such wait of a subscription lasts
    /// `batch_wait`; events that come while it runs are held to the same instant (`holds`:
    /// subscription -> when its wait ends, in transaction timestamps; `now_db` is this
    /// transaction's), so they all come due together and go in one batch. Due events never wait
    /// again: they go with whatever has gathered, and end the wait.
    pub(super) fn hold_partial_batches(
        &mut self,
        targets: &HashMap<i32, Target>,
        holds: &mut HashMap<i32, i64>,
        now_db: i64,
    ) {
        holds.retain(|_, until| *until > now_db);
        for (sub, t) in targets {
            if !t.batched() || t.batch_wait.is_zero() {
                continue;
            }
            let mine: Vec<&QueuedEvent> = self
                .start
                .iter()
                .filter(|e| e.subscription_id == *sub)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let waits =
                mine.len() < t.batch_size && mine.iter().all(|e| !e.due && e.batch.is_none());
            if !waits {
                holds.remove(sub);
                continue;
            }
            let wait = defer_us(t.batch_wait);
            let until = *holds
                .entry(*sub)
                .or_insert_with(|| now_db.saturating_add(wait));
            // Never longer than batch_wait from now, whatever the clock did meanwhile.
            let us = (until - now_db).clamp(1, wait);
            for e in &mine {
                self.defer.push((e.txid, e.id, us));
            }
            self.start.retain(|e| e.subscription_id != *sub);
            self.starting.remove(sub);
        }
    }

    /// How many events a request of what this plan starts could carry: 1 for unbatched
    /// subscriptions, the batch size for batched ones (`None`: nothing starts).
    pub(super) fn events_per_request(&self, targets: &HashMap<i32, Target>) -> Option<f64> {
        let (requests, capacity) = requests_of(&self.starting, targets);
        (requests > 0).then(|| capacity as f64 / requests as f64)
    }

    /// When the earliest deferred event or rate-held head is due.
    pub(super) fn earliest(&self) -> Option<Instant> {
        self.earliest
    }
}

/// `delay` as `defer` takes it: microseconds, at least a millisecond.
fn defer_us(delay: Duration) -> i64 {
    i64::try_from(delay.as_micros())
        .unwrap_or(i64::MAX)
        .max(1000)
}
