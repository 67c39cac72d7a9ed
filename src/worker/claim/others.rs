//! What a claim reads besides new and due events: the heads of ordered subscriptions and the
//! ready parts of grouped (one request per transaction) ones, within the room for requests;
//! and whether subscriptions changed workers.

use std::collections::{HashMap, HashSet};

use pgrx::spi::SpiResult;

use super::super::plan::Plan;
use super::Claim;

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
        // after the one that used it up last.
        let mut ids: Vec<i32> = (self.targets.iter())
            .filter(|(id, t)| ours(**id, t) && t.sends())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let after_turn = ids.partition_point(|id| *id <= self.cuts.turn);
        ids.rotate_left(after_turn);
        let mut budget = super::super::cutting::CUT_STEP;
        for id in ids {
            let Some(t) = self.targets.get(&id) else {
                continue;
            };
            let left = room.saturating_sub(parts.len());
            if left == 0 {
                break;
            }
            // A transaction's next part waits its turn while the subscription holds its share.
            let left = left.min(plan.share_room(id));
            if left == 0 {
                continue;
            }
            let rated = t.limits.rate_limit.is_some();
            if rated {
                if let Some(at) = self.limits.wait_for_slot(id, self.now) {
                    plan.wake_at(at);
                    continue;
                }
            }
            let before = budget;
            let (ready, more) = super::super::grouped::ready_parts(
                self.statements,
                (self.dispatcher, self.cuts),
                (id, t),
                if rated { 1 } else { left },
                largest,
                &mut budget,
            )?;
            cutting |= more;
            if before > 0 && budget == 0 {
                self.cuts.turn = id;
            }
            if let (true, Some(part)) = (rated, ready.first()) {
                self.limits
                    .take_slots(id, &t.limits, part.part.events.len(), self.now);
                if let Some(at) = self.limits.wait_for_slot(id, self.now) {
                    plan.wake_at(at);
                }
            }
            plan.took_requests(id, ready.len());
            parts.extend(ready);
        }
        Ok((parts, cutting))
    }

    /// Ordered subscriptions of this worker whose heads may go now, with how many heads to
    /// read for each: one for a subscription ordered as a whole with nothing in flight; for
    /// one ordered per key, as many as there is room for plus those in flight (they come back
    /// too, and hold back their keys).
    pub(super) fn ordered_heads_wanted(
        &mut self,
        plan: &mut Plan<'_>,
        room: usize,
    ) -> Vec<(i32, i32)> {
        let mut heads = Vec::new();
        let mut asked = 0;
        for (&id, t) in self.targets.iter() {
            let in_flight = plan.in_flight(id);
            if !(t.ordered
                && t.sends()
                && self.share.owns_subscription(id)
                && (t.keyed || in_flight == 0))
            {
                continue;
            }
            let room = room.saturating_sub(asked + plan.start.len());
            match self.limits.wait_for_slot(id, self.now) {
                Some(at) => plan.wake_at(at),
                None if room > 0 => {
                    let most = if t.keyed { room + in_flight } else { 1 };
                    asked += if t.keyed { room } else { 1 };
                    heads.push((id, most.min(i32::MAX as usize) as i32));
                }
                None => {}
            }
        }
        heads
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
