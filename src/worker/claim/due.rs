//! The claim's read of due events: retries, deferred and resumed events whose time has come.

use std::collections::{HashMap, HashSet};

use pgrx::spi::SpiResult;

use super::Claim;
use crate::delivery::targets::Target;
use crate::queue::{Bounds, QueuedEvent};
use crate::worker::plan::OwnerShare;

impl Claim<'_> {
    /// How many of the new events `fresh` take room from due ones: not those of subscriptions
    /// that hold their share, which cannot start (with them counted, one free request and a
    /// held event read again and again left no room: due events of the others were not read,
    /// and the claim came back every millisecond); nor those of rate-limited subscriptions,
    /// most of which go back to slots of their own; nor more of a subscription's than its own
    /// max_in_flight lets start (paging through a limited subscription's backlog, no due
    /// event was read for the whole pass: the others' retries, and its own put back).
    /// (`full`: the subscriptions that can start nothing, see `cannot_start`.)
    pub(super) fn starting(&self, fresh: &[QueuedEvent], full: &HashSet<i32>) -> usize {
        let mut per_subscription: HashMap<i32, usize> = HashMap::new();
        for e in fresh {
            *per_subscription.entry(e.subscription_id).or_default() += 1;
        }
        (per_subscription.into_iter())
            .map(|(sub, n)| {
                let target = self.targets.get(&sub);
                if full.contains(&sub) || target.is_some_and(|t| t.limits.rate_limit.is_some()) {
                    return 0;
                }
                let batch = target.map_or(1, Target::events_per_request);
                n.min(self.limit_room(sub).saturating_mul(batch))
            })
            .sum()
    }

    /// The subscriptions that can start nothing now: at their share (`Dispatcher::at_share`)
    /// or at their own max_in_flight. Their new events are passed or wait, so they take none
    /// of the room and bytes the due reads get (a limited subscription's large new events,
    /// passed, cut the due page short before the others' retries).
    pub(super) fn cannot_start(&self) -> HashSet<i32> {
        let mut held = self.dispatcher.at_share(&self.pace, self.cap);
        let owners = OwnerShare::new(self.dispatcher, self.owner_cap);
        held.extend(
            (self.targets.keys())
                .filter(|sub| self.limit_room(**sub) == 0 || owners.room(**sub) == 0),
        );
        held
    }

    /// How many more requests `subscription` may start under its own max_in_flight (each
    /// batch one).
    fn limit_room(&self, subscription: i32) -> usize {
        (self.targets.get(&subscription)).map_or(usize::MAX, |t| {
            t.limit_room(self.dispatcher.requests_of(subscription))
        })
    }

    /// Due events for `room` more (within `bytes` and `largest`), read past those in flight;
    /// and, when it read to their end, when the next comes due (see `Claimed::next_due`).
    /// When the page read in due order was full, and of subscriptions whose share cannot take
    /// all their events, so that requests would be left unused, the others' due events are
    /// read past theirs: a backlog of due events of a subscription holding its share (a
    /// resumed one's) hid the others' retries until it was gone.
    pub(super) fn read_due(
        &self,
        (room, bytes, largest): (usize, i64, i64),
        pinned: &[i32],
    ) -> SpiResult<(Vec<QueuedEvent>, Option<Option<f64>>)> {
        let statements = self.statements;
        let owned = self.dispatcher.owned();
        let bounds = Bounds {
            events: room + owned,
            bytes: bytes + self.dispatcher.owned_bytes(),
            largest,
        };
        let mut due = statements.scheduled_events(bounds, pinned)?;
        // (A page the byte budget cut short is not the end of the due events either.)
        let cut = due.first().is_some_and(|e| e.page > due.len() as i64);
        if due.len() < bounds.events && !cut {
            return Ok((due, Some(statements.ms_until_next_due()?)));
        }
        // The requests the page's events can start, each subscription within its share (the
        // slow ones within theirs together) and its own max_in_flight, their bytes; and the
        // subscriptions whose events there are more than that. A retried batch goes as one
        // request of its own (see `Plan::consider`), new events in batches of the batch size.
        let mut per_subscription: HashMap<i32, (usize, HashSet<i64>, i64)> = HashMap::new();
        for e in due.iter().filter(|e| !self.dispatcher.owns(e.id)) {
            let (n, batches, b) = per_subscription.entry(e.subscription_id).or_default();
            match e.batch {
                Some(batch) => {
                    batches.insert(batch);
                }
                None => *n += 1,
            }
            *b += e.payload_bytes;
        }
        let mut slow_room = self.dispatcher.slow_room(&self.pace, self.cap);
        // (Each owner's room too: one owner's due backlog, its share held, hid the others'.)
        let mut owners = OwnerShare::new(self.dispatcher, self.owner_cap);
        let (mut startable, mut starting_bytes) = (0, 0);
        let mut held = Vec::new();
        for (sub, (events, batches, event_bytes)) in per_subscription {
            let per_request = self.targets.get(&sub).map_or(1, Target::events_per_request);
            let requests = events.div_ceil(per_request) + batches.len();
            let limit_room = self.limit_room(sub).min(owners.room(sub));
            let room_of = if self.pace.is_slow(sub) {
                let take = requests.min(slow_room).min(limit_room);
                slow_room -= take;
                take
            } else {
                (self.dispatcher.share_room(&self.pace, self.cap, sub)).min(limit_room)
            };
            owners.took(sub, requests.min(room_of));
            startable += requests.min(room_of);
            if requests > room_of {
                held.push(sub);
            } else {
                starting_bytes += event_bytes;
            }
        }
        if startable >= room || held.is_empty() {
            return Ok((due, None));
        }
        // Read past theirs: not theirs again, nor those of subscriptions whose due events this
        // worker never sends from here (ordered ones are claimed apart, pinned ones may be
        // another worker's, paused ones are parked from the first read): each would be a probe
        // reading its whole due range to return nothing. Of each other subscription, its own
        // events in flight (read past) and the room: never every one's whole due backlog, nor
        // (with batches) tens of thousands of each for the events all of them have in flight.
        let each: Vec<(i32, i64)> = (self.targets.iter())
            .filter(|(id, t)| {
                let elsewhere = t.pinned() && !self.share.owns_subscription(**id);
                !(held.contains(id) || t.ordered || elsewhere || !t.sends())
            })
            .map(|(id, _)| (*id, (self.dispatcher.owned_by(*id) + room) as i64))
            .collect();
        if each.is_empty() {
            return Ok((due, None));
        }
        // Their own events in flight are read past, and counted in the bytes as they are read
        // (as on the first page): without their bytes, the in-flight due events of limited
        // subscriptions, older than any new retry, spent the budget and cut the others' off.
        // The held ones' are not among them.
        let held_owned: usize = held.iter().map(|sub| self.dispatcher.owned_by(*sub)).sum();
        let held_owned_bytes: i64 = held.iter().map(|sub| self.dispatcher.bytes_of(*sub)).sum();
        let others_owned = owned.saturating_sub(held_owned);
        let others_owned_bytes = (self.dispatcher.owned_bytes() - held_owned_bytes).max(0);
        let others_bounds = Bounds {
            events: room + others_owned,
            bytes: (bytes - starting_bytes + others_owned_bytes).max(1),
            largest,
        };
        let read: HashSet<i64> = due.iter().map(|e| e.id).collect();
        let others = statements.scheduled_events_of_others(others_bounds, pinned, &each)?;
        due.extend(others.into_iter().filter(|e| !read.contains(&e.id)));
        // The held subscriptions' due events are left to read (`due_held` reads them again as
        // their requests end): never "read to the end".
        let next = None;
        Ok((due, next))
    }
}
