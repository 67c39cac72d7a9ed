//! Counting requests: what one subscription may still start (its share of the worker, its own
//! `max_in_flight`), and how many requests events take (a batched subscription's fill requests
//! of its batch size).

use std::collections::HashMap;

use super::Plan;
use crate::delivery::targets::Target;
use crate::queue::QueuedEvent;
use crate::worker::BYTE_SHARE;

/// The requests one subscription may hold, and the slow subscriptions together, out of a
/// worker's `max_in_flight`: all but a quarter (from 4 on), so that an endpoint that stops
/// answering cannot take every request and leaves the rest for the others.
pub(in crate::worker) fn share_cap(max_in_flight: usize) -> usize {
    if max_in_flight < 4 {
        max_in_flight
    } else {
        max_in_flight - max_in_flight / 4
    }
}

impl Plan<'_> {
    /// How many more requests `subscription` may start under the share rule (see `share`),
    /// and within what its owner may still start (plan/owners.rs): none either once it holds `BYTE_SHARE` of row images (the slow ones together), which
    /// would otherwise leave the worker's byte budget spent and no claim running.
    pub(in crate::worker) fn share_room(&self, subscription: i32) -> usize {
        if self.bytes_allowed(subscription) <= 0 {
            return 0;
        }
        let held = if self.pace.is_slow(subscription) {
            self.slow_held
        } else {
            self.requests_held(subscription)
        };
        (self.cap.saturating_sub(held)).min(self.owners.room(subscription))
    }

    /// The bytes of row images `subscription` may still take under the share rule: what is
    /// left of `BYTE_SHARE` after what it holds and this plan starts (the slow ones', if it is
    /// slow). A request starts while some is left, however large.
    pub(in crate::worker) fn byte_room(&self, subscription: i32) -> i64 {
        let held = if self.pace.is_slow(subscription) {
            self.slow_bytes
        } else {
            self.own_bytes(subscription)
        };
        BYTE_SHARE - held
    }

    /// The bytes of row images `subscription` holds and this plan starts.
    fn own_bytes(&self, subscription: i32) -> i64 {
        let starting = self.bytes_starting.get(&subscription).unwrap_or(&0);
        self.dispatcher.bytes_of(subscription) + starting
    }

    /// The most bytes of row images one more request of `subscription` may take: what is left
    /// of its byte share; or, while it holds none itself, any size if it is not slow (a row
    /// larger than the share must go some time), or, if it is, what the worker has left of a
    /// share (the slow ones share theirs: one holding none does not wait for the others to
    /// hold none, nor takes the quarter kept for the others). A
    /// subscription a row did not fit in this plan takes no more in it: its later events do
    /// not go around the one left.
    pub(in crate::worker) fn bytes_allowed(&self, subscription: i32) -> i64 {
        let room = self.byte_room(subscription);
        if self.byte_refused.contains(&subscription) {
            return 0;
        }
        if self.own_bytes(subscription) > 0 {
            return room;
        }
        if !self.pace.is_slow(subscription) {
            return i64::MAX;
        }
        // (Never into the quarter the others are kept: the share's, not the slow ones'.)
        let worker = BYTE_SHARE - self.dispatcher.owned_bytes() - self.started_bytes;
        room.max(worker)
    }

    /// How many more requests `subscription` may start under its own `max_in_flight` (a
    /// batch is one): a slow subscription's passed events are read again within it.
    pub(in crate::worker) fn limit_room(
        &self,
        subscription: i32,
        target: Option<&Target>,
    ) -> usize {
        target.map_or(usize::MAX, |t| {
            t.limit_room(self.requests_held(subscription))
        })
    }

    /// Whether a request with `bytes` of row images fits `subscription`'s byte share (see
    /// `bytes_allowed`); if not, none of its later ones in this plan does.
    pub(in crate::worker) fn fits_bytes(&mut self, subscription: i32, bytes: i64) -> bool {
        let fits = bytes <= self.bytes_allowed(subscription);
        if !fits {
            self.byte_refused.insert(subscription);
        }
        fits
    }

    /// Requests beyond those this plan counted that `subscription` may still start: the
    /// worker's room left, its share, its own `max_in_flight` (a batch the payload limit cuts
    /// into more requests takes them).
    pub(in crate::worker) fn spare_requests(
        &self,
        subscription: i32,
        target: Option<&Target>,
    ) -> usize {
        (self.room.saturating_sub(self.requests))
            .min(self.share_room(subscription))
            .min(self.limit_room(subscription, target))
    }

    /// Counts `n` requests of `subscription` beyond those counted, out of the spare ones.
    pub(in crate::worker) fn took_spare(&mut self, subscription: i32, n: usize) {
        self.requests += n;
        self.took_requests(subscription, n);
    }

    /// The requests `subscription` holds (see `Dispatcher::requests_of`) and those this plan
    /// starts.
    pub(super) fn requests_held(&self, subscription: i32) -> usize {
        self.dispatcher.requests_of(subscription) + self.requests_started(subscription)
    }

    /// The requests this plan starts for `subscription`.
    pub(in crate::worker) fn requests_started(&self, subscription: i32) -> usize {
        self.requests_starting
            .get(&subscription)
            .copied()
            .unwrap_or(0)
    }

    /// The requests `events` may take in this plan: those not out already, and of each
    /// subscription no more than its share and its own `max_in_flight` let it start (heads of
    /// a keyed subscription holding its share must not leave others' transactions no room).
    pub(in crate::worker) fn startable<'e>(
        &self,
        events: impl Iterator<Item = &'e QueuedEvent>,
        targets: &HashMap<i32, Target>,
    ) -> usize {
        let mut per_subscription: HashMap<i32, usize> = HashMap::new();
        for e in events.filter(|e| !self.dispatcher.owns(e.id)) {
            *per_subscription.entry(e.subscription_id).or_default() += 1;
        }
        (per_subscription.into_iter())
            .map(|(sub, n)| {
                let target = targets.get(&sub);
                let requests = target
                    .filter(|t| t.batched())
                    .map_or(n, |t| n.div_ceil(t.batch_size));
                requests
                    .min(self.share_room(sub))
                    .min(self.limit_room(sub, target))
            })
            .sum()
    }
}

/// How many requests events counted per subscription would take (a batched subscription's
/// fill requests of its batch size), and how many events those requests could carry.
pub(super) fn requests_of(
    per_subscription: &HashMap<i32, usize>,
    targets: &HashMap<i32, Target>,
) -> (usize, usize) {
    per_subscription
        .iter()
        .map(|(id, n)| match targets.get(id).filter(|t| t.batched()) {
            Some(t) => (
                n.div_ceil(t.batch_size),
                n.div_ceil(t.batch_size) * t.batch_size,
            ),
            None => (*n, *n),
        })
        .fold((0, 0), |(r, c), (rn, cn)| (r + rn, c + cn))
}
