//! What a dispatcher holds, as the claim sees it: requests and events owned, per subscription,
//! and their bytes.

use std::collections::HashMap;

use super::Dispatcher;
use crate::worker::{BYTE_SHARE, IN_FLIGHT_BYTES};

/// The most bytes of events whose outcomes are set aside that stop counting against the byte
/// budget (see `Dispatcher::requests_owned`).
const HELD_BYTES: i64 = IN_FLIGHT_BYTES / 2;

use pg_webhook_core::payload::largest_readable;

impl Dispatcher {
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

    /// Requests owned: in flight, or finished with their outcomes not yet recorded. A batch
    /// (or a transaction's part) is one request, however many events it carries. Those whose
    /// outcomes are set aside (see recorded.rs) do not count, up to `held_room` of them: they
    /// could take all the room for as long as another transaction holds their rows.
    pub fn requests_owned(&self) -> usize {
        let held = self.held_requests.min(self.held_room);
        self.flights.len() + self.settled_requests.saturating_sub(held)
    }

    pub fn in_flight(&self) -> usize {
        self.tasks.len()
    }

    pub fn owns(&self, event_id: i64) -> bool {
        self.owned.contains_key(&event_id)
    }

    /// The events of these subscriptions claimed and not yet recorded.
    pub fn owned_ids_of(&self, subscriptions: &[i32]) -> Vec<i64> {
        self.owned
            .iter()
            .filter(|(_, (_, sub))| subscriptions.contains(sub))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Bytes of row images held by events claimed and not yet recorded.
    pub fn owned_bytes(&self) -> i64 {
        self.owned_bytes - self.held_bytes.min(HELD_BYTES)
    }

    /// The largest row images a claim reads: an event with larger ones dies without being read.
    /// Four times the largest body sent (JSON text can be a quarter of its jsonb size), and
    /// never more than `LARGEST_READABLE_IMAGES`.
    pub fn largest_readable(&self) -> i64 {
        largest_readable(self.max_payload_bytes) as i64
    }

    /// The bytes of row images a claimed `event` holds: none when they were too large to read
    /// (it dies unread, see `prepare`).
    pub fn image_bytes(&self, event: &crate::queue::QueuedEvent) -> i64 {
        match event.payload_bytes > self.largest_readable() {
            true => 0,
            false => event.payload_bytes,
        }
    }

    /// The bytes of row images a transaction's part of `events` holds (see `image_bytes`: none
    /// for those that ride named in a note, unread).
    pub fn part_bytes(&self, events: &[crate::queue::QueuedEvent]) -> i64 {
        events.iter().map(|e| self.image_bytes(e)).sum()
    }

    /// The requests a subscription holds: in flight, or finished and not yet recorded (a batch
    /// or a transaction's part is one).
    pub fn requests_of(&self, subscription_id: i32) -> usize {
        self.requests_by.get(&subscription_id).copied().unwrap_or(0)
    }

    /// The subscriptions holding requests, with how many.
    pub fn requests_per_subscription(&self) -> impl Iterator<Item = (i32, usize)> + '_ {
        self.requests_by.iter().map(|(sub, n)| (*sub, *n))
    }

    /// The requests each owner's subscriptions hold: by the owner `owners` (the loaded
    /// subscriptions') gives, or, for one no longer loaded, the one it had when its requests
    /// last started.
    pub fn requests_per_owner(
        &self,
        owners: &HashMap<i32, pgrx::pg_sys::Oid>,
    ) -> HashMap<pgrx::pg_sys::Oid, usize> {
        let mut held = HashMap::new();
        for (sub, n) in &self.requests_by {
            if let Some(owner) = owners.get(sub).or_else(|| self.owner_of.get(sub)) {
                *held.entry(*owner).or_default() += n;
            }
        }
        held
    }

    /// The requests the slow subscriptions hold together (their share is one, see `Plan::share`).
    pub fn slow_held(&self, pace: &super::Pace) -> usize {
        pace.slow.iter().map(|sub| self.requests_of(*sub)).sum()
    }

    /// The bytes of row images the slow subscriptions hold together.
    pub fn slow_bytes(&self, pace: &super::Pace) -> i64 {
        pace.slow.iter().map(|sub| self.bytes_of(*sub)).sum()
    }

    /// How many more requests `subscription` may start under the share rule (see
    /// `Plan::share`): `cap` less what it holds, or less what the slow ones hold if it is slow;
    /// none once it (or the slow ones) holds `BYTE_SHARE` of row images.
    pub fn share_room(&self, pace: &super::Pace, cap: usize, subscription: i32) -> usize {
        if pace.is_slow(subscription) {
            return self.slow_room(pace, cap);
        }
        if self.bytes_of(subscription) >= BYTE_SHARE {
            return 0;
        }
        cap.saturating_sub(self.requests_of(subscription))
    }

    /// How many more requests the slow subscriptions together may start: `cap` less what they
    /// hold, none once they hold `BYTE_SHARE` of row images.
    pub fn slow_room(&self, pace: &super::Pace, cap: usize) -> usize {
        if self.slow_bytes(pace) >= BYTE_SHARE {
            return 0;
        }
        cap.saturating_sub(self.slow_held(pace))
    }

    /// The subscriptions that may start no more requests under the share rule: one holding
    /// its share (of requests or bytes), or every slow one when the slow ones hold it.
    pub fn at_share(&self, pace: &super::Pace, cap: usize) -> std::collections::HashSet<i32> {
        let slow_full = self.slow_room(pace, cap) == 0;
        self.requests_per_subscription()
            .map(|(sub, _)| sub)
            .chain(self.owned_by.keys().copied())
            .chain(pace.slow.iter().copied())
            .filter(|sub| match pace.is_slow(*sub) {
                true => slow_full,
                false => self.share_room(pace, cap, *sub) == 0,
            })
            .collect()
    }

    /// The bytes of new events a claim reads (`budget`: what the worker may still hold): less
    /// when a subscription not slow nearly holds its byte share, whose events past it would be
    /// read again and again (what it may still take, or a quarter of the budget: others'
    /// events may be among them), as the claim reads fewer new events for one near its share
    /// of requests.
    pub fn fresh_bytes(&self, pace: &super::Pace, budget: i64) -> i64 {
        let fullest = (self.owned_by.iter())
            .filter(|(sub, _)| !pace.is_slow(**sub))
            .map(|(_, (_, bytes))| *bytes)
            .max();
        match fullest {
            Some(held) if held + budget > BYTE_SHARE => {
                budget.min((BYTE_SHARE - held).max(budget / 4)).max(1)
            }
            _ => budget,
        }
    }

    /// Events of one subscription claimed and not yet recorded.
    pub fn owned_by(&self, subscription_id: i32) -> usize {
        self.owned_by.get(&subscription_id).map_or(0, |by| by.0)
    }

    /// The bytes of row images those events hold (see `owned_bytes`).
    pub fn bytes_of(&self, subscription_id: i32) -> i64 {
        self.owned_by.get(&subscription_id).map_or(0, |by| by.1)
    }
}
