//! What a claim reads besides new and due events: the heads of ordered subscriptions and the
//! ready parts of grouped (one request per transaction) ones, within the room for requests;
//! and whether subscriptions changed workers.

use std::collections::{HashMap, HashSet};

use pgrx::spi::SpiResult;

use super::super::plan::Plan;
use super::Claim;
use crate::queue::QueuedEvent;

impl Claim<'_> {
    /// A backlog the planner may not know about: the size of a full page of new events (`fresh`:
    /// read, wanted), or else of the largest of `parts` (recorded and retried as a page is), if
    /// the planner takes the queue for smaller; the queue is then counted again.
    pub(super) fn stats_stale(
        &self,
        (read, wanted): (usize, usize),
        parts: &[super::super::grouped::ReadyPart],
    ) -> SpiResult<Option<usize>> {
        if wanted > 0 && read == wanted && self.statements.queue_stats_stale(read)? {
            return Ok(Some(read));
        }
        let page = parts.iter().map(|p| p.part.events.len()).max().unwrap_or(0);
        Ok((page > 1 && self.statements.queue_stats_stale(page)?).then_some(page))
    }

    /// The parts of transactions this worker's grouped subscriptions may send now. A part is one
    /// request but takes a rate slot for each of its events, so a rate-limited subscription
    /// starts one part when its slot is free and is looked at again when the next one is. Also
    /// whether a transaction's cut is left for the next claim (see cutting.rs).
    pub(super) fn grouped_parts(
        &mut self,
        plan: &mut Plan<'_>,
        room: usize,
        largest: i64,
    ) -> SpiResult<(Vec<super::super::grouped::ReadyPart>, bool)> {
        let (mut parts, mut cutting) = (Vec::new(), false);
        let share = self.share;
        let ours = |id: i32, t: &crate::delivery::targets::Target| {
            t.grouped && share.owns_subscription(id)
        };
        // A cut of a subscription no longer this worker's starts again should it come back.
        // (Not one paused meanwhile: a member pausing and resuming faster than a large
        // transaction is cut must not keep it from ever being cut.)
        self.cuts
            .keep_only(|id| self.targets.get(&id).is_some_and(|t| ours(id, t)));
        // One allowance of events to cut per claim, the subscriptions taking turns: the first
        // after the one that used it up last, or else after the last one that got a part (the
        // first ones take the room when there is less of it than subscriptions).
        let mut ids: Vec<i32> = (self.targets.iter())
            .filter(|(id, t)| ours(**id, t) && t.sends())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let after_turn = ids.partition_point(|id| *id <= self.cuts.turn);
        ids.rotate_left(after_turn);
        // Their queued transactions, read in one statement for as many as may fill the room
        // (another for the next ones, should those not).
        let (mut heads, mut asked_to) = (HashMap::new(), 0);
        let (mut last_served, mut used_up) = (None, false);
        let mut budget = super::super::cutting::CUT_STEP;
        let mut bytes_left = super::super::IN_FLIGHT_BYTES - self.dispatcher.owned_bytes();
        for (i, &id) in ids.iter().enumerate() {
            let Some(t) = self.targets.get(&id) else {
                continue;
            };
            let left = room.saturating_sub(parts.len());
            if left == 0 {
                break;
            }
            // A transaction's next part waits its turn while the subscription holds its share
            // (of requests or bytes); the parts of all take no more than the worker's bytes.
            let all_left = left;
            let left = left.min(plan.share_room(id));
            let bytes = plan.byte_room(id).min(bytes_left);
            // (A first part of any size only while the worker holds none: parts are not read
            // within the claim's byte budget as events are.)
            let worker_empty = self.dispatcher.owned_bytes() == 0 && parts.is_empty();
            let first = match worker_empty {
                true => plan.bytes_allowed(id),
                false => plan.bytes_allowed(id).min(bytes_left),
            };
            if left == 0 || first <= 0 {
                continue;
            }
            let rated = t.limits.rate_limit.is_some();
            if rated {
                if let Some(at) = self.limits.wait_for_slot(id, self.now) {
                    plan.wake_at(at);
                    continue;
                }
            }
            if i >= asked_to {
                // (The first read for as many as may fill the room; should they not, all the
                // rest in a second.)
                let rest = asked_to > 0;
                let (asked, to) = self.heads_wanted(plan, &ids[i..], (all_left, rest));
                heads = self.statements.transaction_heads(&asked)?;
                asked_to = i + to;
            }
            let Some(heads) = heads.remove(&id) else {
                continue;
            };
            let before = budget;
            let found = super::super::grouped::ready_parts(
                self.statements,
                (self.dispatcher, self.cuts),
                (id, t),
                (if rated { 1 } else { left }, bytes, first),
                (heads, largest),
                &mut budget,
            )?;
            let ready = found.parts;
            cutting |= found.cutting;
            if found.busy {
                // Looked at again a second on (at once, it would claim in a loop meanwhile).
                plan.wake_at(self.now + crate::worker::dispatch::SLOW);
            }
            if before > 0 && budget == 0 {
                self.cuts.turn = id;
                used_up = true;
            }
            if let (true, Some(part)) = (rated, ready.first()) {
                self.limits
                    .take_slots(id, &t.limits, part.part.events.len(), self.now);
                if let Some(at) = self.limits.wait_for_slot(id, self.now) {
                    plan.wake_at(at);
                }
            }
            if !ready.is_empty() {
                last_served = Some(id);
            }
            plan.took_requests(id, ready.len());
            let bytes: i64 = (ready.iter())
                .map(|p| self.dispatcher.part_bytes(&p.part.events))
                .sum();
            plan.took_bytes(id, bytes);
            bytes_left -= bytes;
            parts.extend(ready);
        }
        if let (false, Some(last)) = (used_up, last_served) {
            self.cuts.turn = last;
        }
        Ok((parts, cutting))
    }

    /// Grouped subscriptions (of `ids`, in turn) whose queued transactions to read, with how
    /// many of each: those that may start a part, until their parts may fill `room` (or all,
    /// `rest`); and how many of `ids` were looked at.
    fn heads_wanted(
        &self,
        plan: &Plan<'_>,
        ids: &[i32],
        (room, rest): (usize, bool),
    ) -> (Vec<(i32, i64)>, usize) {
        let (mut asked, mut covered) = (Vec::new(), 0);
        for (n, &id) in ids.iter().enumerate() {
            if covered >= room && !rest {
                return (asked, n);
            }
            let Some(t) = self.targets.get(&id) else {
                continue;
            };
            let rated = t.limits.rate_limit.is_some();
            if (rated && self.limits.wait_for_slot(id, self.now).is_some())
                || plan.bytes_allowed(id) <= 0
            {
                continue;
            }
            let room = if rated {
                1
            } else {
                room.min(plan.share_room(id))
            };
            let (limit, look) =
                super::super::grouped::heads_to_read(self.dispatcher, (id, t), room);
            if limit > 0 {
                asked.push((id, look));
                covered += limit;
            }
        }
        (asked, ids.len())
    }

    /// The heads of this worker's ordered subscriptions that may go now (see
    /// `ordered_heads_wanted`), their images within what is left of the claim's `budget` of
    /// bytes by the events it `read` before them (those the worker has out hold theirs
    /// already): each key of a keyed subscription can have a head of up to the payload limit,
    /// and a claim read hundreds of them to start the few its share of bytes let go.
    pub(super) fn read_heads<'e>(
        &mut self,
        plan: &mut Plan<'_>,
        room: usize,
        (budget, read): (i64, impl Iterator<Item = &'e QueuedEvent>),
        largest: i64,
    ) -> SpiResult<Vec<QueuedEvent>> {
        let wanted = self.ordered_heads_wanted(plan, room);
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let read: i64 = (read.filter(|e| !self.dispatcher.owns(e.id)))
            .map(|e| super::super::cutting::images_read(e, largest) as i64)
            .sum();
        let subscriptions: Vec<i32> = wanted.iter().map(|(id, _)| *id).collect();
        let out = self.dispatcher.owned_ids_of(&subscriptions);
        // (At least 1: _claim_room takes the first row only while under the budget, and the
        // new events of a subscription with large rows could spend it at every claim.)
        let bounds = ((budget - read).max(1), largest);
        let heads = self.statements.ordered_heads(&wanted, bounds, out)?;
        let new = (heads.iter()).filter(|e| !self.dispatcher.owns(e.id));
        // Heads past the bytes were left unread: those of a subscription found before may be
        // among them, which keeps its share of the room.
        let images: i64 = (new.clone())
            .map(|e| super::super::cutting::images_read(e, largest) as i64)
            .sum();
        (self.keyed_heads).note(new, images >= bounds.0);
        Ok(heads)
    }

    /// Ordered subscriptions of this worker whose heads may go now, with how many heads to
    /// read for each: one for a subscription ordered as a whole with nothing in flight; for
    /// one ordered per key, those in flight (they come back too, and hold back their keys)
    /// plus an equal share of the room among those that had heads when last asked, or one for
    /// the others. A keyed subscription with nothing queued (an idle one, or one unsubscribed
    /// and kept) so takes no room from one with a backlog. The heads come back in the order
    /// asked, and the first ones take the room when there is less of it than subscriptions
    /// asking: each claim starts after the subscription the last one started with.
    pub(super) fn ordered_heads_wanted(
        &mut self,
        plan: &mut Plan<'_>,
        room: usize,
    ) -> Vec<(i32, i32)> {
        let room = room.saturating_sub(plan.start.len());
        let mut wanted = Vec::new();
        for (&id, t) in self.targets.iter() {
            let in_flight = plan.in_flight(id);
            if !(t.ordered
                && t.sends()
                && self.share.owns_subscription(id)
                && (t.keyed || in_flight == 0))
            {
                continue;
            }
            match self.limits.wait_for_slot(id, self.now) {
                Some(at) => plan.wake_at(at),
                None if room > 0 => wanted.push((id, t.keyed, in_flight)),
                None => {}
            }
        }
        wanted.sort_unstable_by_key(|w| w.0);
        let after_turn = wanted.partition_point(|w| w.0 <= self.keyed_heads.turn);
        wanted.rotate_left(after_turn);
        if let Some(first) = wanted.first() {
            self.keyed_heads.turn = first.0;
        }
        heads_to_read(&wanted, &self.keyed_heads.found, room)
    }
}

/// How many heads to read for each of `wanted` (id, keyed, events in flight), with `room`
/// requests free and `found` the keyed subscriptions that had heads when last asked.
fn heads_to_read(
    wanted: &[(i32, bool, usize)],
    found: &HashSet<i32>,
    room: usize,
) -> Vec<(i32, i32)> {
    let backlogged = (wanted.iter())
        .filter(|(id, keyed, _)| *keyed && found.contains(id))
        .count();
    let share = room.div_ceil(backlogged.max(1));
    (wanted.iter())
        .map(|&(id, keyed, in_flight)| {
            let most = match keyed {
                false => 1,
                true if found.contains(&id) => share + in_flight,
                true => 1 + in_flight,
            };
            (id, most.min(i32::MAX as usize) as i32)
        })
        .collect()
}

/// The keyed subscriptions that had heads to send when last asked, and the ordered one the last
/// claim asked first (see `Claim::ordered_heads_wanted`).
#[derive(Debug, Default)]
pub struct KeyedHeads {
    found: HashSet<i32>,
    turn: i32,
}

impl KeyedHeads {
    /// Notes which subscriptions had heads to send among those read: not out already (a
    /// subscription not asked, held by its rate limit or gone, is asked for one head again).
    /// Those found before stay so when the read was `cut` by bytes.
    pub(in crate::worker) fn note<'a>(
        &mut self,
        heads: impl Iterator<Item = &'a crate::queue::QueuedEvent>,
        cut: bool,
    ) {
        let found = heads.map(|event| event.subscription_id);
        match cut {
            true => self.found.extend(found),
            false => self.found = found.collect(),
        }
    }
}

/// Which subscriptions were pinned (limits of their own: all their events go to one worker)
/// when last looked at.
#[derive(Debug, Default)]
pub struct Pinning {
    /// The pinned ones, sorted.
    pinned: Vec<i32>,
    /// Every subscription then, and whether it was pinned.
    known: HashMap<i32, bool>,
}

impl Claim<'_> {
    /// The subscriptions whose events all go to one worker (limits of their own; ordered ones
    /// are claimed apart), sorted.
    pub(super) fn pinned(&self) -> Vec<i32> {
        let mut pinned: Vec<i32> = self
            .targets
            .iter()
            .filter(|(_, t)| t.pinned() && !t.ordered)
            .map(|(id, _)| *id)
            .collect();
        pinned.sort_unstable();
        pinned
    }

    /// Whether a subscription known before was pinned then and is not now (or the other way
    /// round), or a pinned one is gone; remembers what is pinned now (`pinned`, sorted).
    pub(super) fn pinning_changed(&mut self, pinned: &[i32]) -> bool {
        if pinned == self.pinning.pinned && self.targets.len() == self.pinning.known.len() {
            return false;
        }
        let now_pinned: HashSet<i32> = pinned.iter().copied().collect();
        let now: HashMap<i32, bool> = self
            .targets
            .keys()
            .map(|id| (*id, now_pinned.contains(id)))
            .collect();
        let changed = self
            .pinning
            .known
            .iter()
            .any(|(id, was)| now.get(id).map_or(*was, |is| is != was));
        *self.pinning = Pinning {
            pinned: pinned.to_vec(),
            known: now,
        };
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_subscriptions_with_nothing_queued_take_no_room_from_a_backlogged_one() {
        let mut wanted: Vec<(i32, bool, usize)> = (1..=40).map(|id| (id, true, 0)).collect();
        wanted.push((41, true, 3)); // the backlogged one, 3 heads out
        wanted.push((42, false, 0)); // ordered as a whole
        let found = HashSet::from([41]);
        let asked = heads_to_read(&wanted, &found, 256);
        assert_eq!(asked.len(), 42);
        assert!(asked[..40].iter().all(|&(_, most)| most == 1), "{asked:?}");
        assert_eq!(asked[40], (41, 259));
        assert_eq!(asked[41], (42, 1));
    }

    #[test]
    fn backlogged_keyed_subscriptions_share_the_room() {
        let wanted = [(1, true, 0), (2, true, 10), (3, true, 0), (4, true, 0)];
        let found = HashSet::from([1, 2, 3]);
        assert_eq!(
            heads_to_read(&wanted, &found, 100),
            vec![(1, 34), (2, 44), (3, 34), (4, 1)]
        );
        // Less room than subscriptions: one each.
        assert_eq!(
            heads_to_read(&wanted, &found, 2),
            vec![(1, 1), (2, 11), (3, 1), (4, 1)]
        );
    }
}
