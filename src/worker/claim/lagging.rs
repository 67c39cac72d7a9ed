//! The new events the cursor passed while their subscription was slow (see `Plan::share`) or
//! at its own max_in_flight (`Plan::consider`): per subscription, the stretch of keys they lie
//! in, read again — that subscription's only — when it may start requests again. Kept in
//! memory only: a worker that starts over, or whose claim failed, reads the whole queue again
//! from the start (`Cursor::reset`).

use std::collections::{HashMap, HashSet};

use pgrx::spi::SpiResult;

use super::Claim;
use crate::delivery::targets::Target;
use crate::queue::{Bounds, QueuedEvent};
use crate::worker::plan::{Passed, Plan};

/// Where a subscription's passed events lie: after `after` (exclusive) up to `to` (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    after: (i64, i64),
    to: (i64, i64),
}

/// What one claim read of the passed events, per subscription: how many it asked for, and
/// what came back, in key order.
pub(super) type LagReads = Vec<(i32, usize, Vec<QueuedEvent>)>;

/// Adds what a claim passed, first and last key per subscription.
pub(super) fn note_passed(lagging: &mut HashMap<i32, Lag>, passed: Passed) {
    for (sub, (first, last)) in passed {
        // Keys are (txid, id) with id >= 1: nothing lies between (txid, id - 1) and first.
        let after = (first.0, first.1 - 1);
        lagging
            .entry(sub)
            .and_modify(|lag| {
                lag.after = lag.after.min(after);
                lag.to = lag.to.max(last);
            })
            .or_insert(Lag { after, to: last });
    }
}

/// Where each subscription read stands after a claim, given which of its events the claim
/// took care of (`taken`: started or put back): from its first event left, or, when the read
/// found fewer than it asked for, returned them all (no cut by bytes) and every one was taken,
/// nothing is left. Updates move `after` only: apply them before `note_passed`.
pub(super) fn after_reads(
    lagging: &HashMap<i32, Lag>,
    reads: &LagReads,
    taken: impl Fn(i64) -> bool,
) -> Vec<(i32, Option<Lag>)> {
    let mut updates = Vec::new();
    for (sub, asked, events) in reads {
        let Some(lag) = lagging.get(sub) else {
            continue;
        };
        let update = match events.iter().position(|e| !taken(e.id)) {
            Some(0) => continue,
            Some(i) => Some(Lag {
                after: (events[i - 1].txid, events[i - 1].id),
                to: lag.to,
            }),
            // (An empty read found nothing: the first row always passes the byte budget.)
            None if events
                .first()
                .is_none_or(|e| (e.page as usize) < *asked && e.page as usize == events.len()) =>
            {
                None
            }
            None => events.last().map(|e| Lag {
                after: (e.txid, e.id),
                to: lag.to,
            }),
        };
        updates.push((*sub, update));
    }
    updates
}

impl Claim<'_> {
    /// Reads again the passed events (`read_lagging`) within what the claim's new and due
    /// events leave of `room` requests and `bytes_left` (`held`: the subscriptions that can
    /// start nothing, see `cannot_start`).
    pub(super) fn read_lagging_after(
        &mut self,
        plan: &Plan<'_>,
        (fresh, scheduled): (&[QueuedEvent], &[QueuedEvent]),
        held: &HashSet<i32>,
        (room, bytes_left, largest): (usize, i64, i64),
        pinned: &[i32],
    ) -> SpiResult<LagReads> {
        if self.lagging.is_empty() {
            return Ok(Vec::new());
        }
        // (Retries in flight were read too: they take no more room, and their bytes are owned
        // already. A subscription's passed events go before its new ones, which take none of
        // the room; the others' take what their limits let them start: a page of new events of
        // one at its max_in_flight left no room to read the passed ones, and its new events
        // went first.)
        let unowned = (fresh.iter())
            .filter(|e| !self.lagging.contains_key(&e.subscription_id))
            .chain(scheduled)
            .filter(|e| !held.contains(&e.subscription_id));
        let taken = plan.startable(unowned, self.targets);
        let scheduled_bytes: i64 = (scheduled.iter())
            .filter(|e| !self.dispatcher.owns(e.id))
            .map(|e| e.payload_bytes)
            .sum();
        let room = room.saturating_sub(taken);
        self.read_lagging(plan, room, bytes_left - scheduled_bytes, largest, pinned)
    }

    /// Reads again the passed events of the subscriptions that may start requests now, within
    /// `room` requests and `bytes` of row images. Subscriptions take turns: each claim starts
    /// after the one the last read was for, so one that keeps passing events cannot take every
    /// request another slow one's were waiting for.
    fn read_lagging(
        &mut self,
        plan: &Plan<'_>,
        mut room: usize,
        mut bytes: i64,
        largest: i64,
        pinned: &[i32],
    ) -> SpiResult<LagReads> {
        let mut reads = Vec::new();
        let mut turns: Vec<(i32, Lag)> = self.lagging.iter().map(|(s, l)| (*s, *l)).collect();
        turns.sort_unstable_by_key(|(sub, _)| (*sub <= *self.lag_turn, *sub));
        for (sub, lag) in turns {
            // (A subscription gone from the list is read too: its events die with the reason.)
            let target = self.targets.get(&sub);
            if target.is_some_and(|t| !t.sends()) {
                continue; // paused, or its owner may not read the table: read once it sends
            }
            let requests = (plan.share_room(sub).min(room)).min(plan.limit_room(sub, target));
            if requests == 0 || bytes <= 0 {
                continue;
            }
            let batch = target.map_or(1, Target::events_per_request);
            let asked = requests * batch;
            let bounds = Bounds {
                events: asked,
                bytes,
                largest,
            };
            let in_flight = self.dispatcher.owned_ids_of(&[sub]);
            let events = self.statements.lagging_events(
                sub,
                (lag.after, lag.to),
                bounds,
                pinned,
                in_flight,
            )?;
            room -= requests.min(events.len().div_ceil(batch));
            if !events.is_empty() {
                *self.lag_turn = sub;
            }
            bytes -= events.iter().map(|e| e.payload_bytes).sum::<i64>();
            reads.push((sub, asked, events));
        }
        Ok(reads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(txid: i64, id: i64) -> QueuedEvent {
        QueuedEvent {
            txid,
            id,
            ..QueuedEvent::default()
        }
    }

    #[test]
    fn passed_events_widen_the_stretch() {
        let mut lagging = HashMap::new();
        note_passed(&mut lagging, HashMap::from([(7, ((10, 5), (12, 9)))]));
        note_passed(&mut lagging, HashMap::from([(7, ((9, 3), (11, 1)))]));
        assert_eq!(
            lagging[&7],
            Lag {
                after: (9, 2),
                to: (12, 9)
            }
        );
    }

    /// Subscription 7's passed events lie after (1, 0) up to (50, 50).
    fn stretch() -> HashMap<i32, Lag> {
        HashMap::from([(
            7,
            Lag {
                after: (1, 0),
                to: (50, 50),
            },
        )])
    }

    /// A read for subscription 7 asking for `asked`, which returned `events`, and a row past
    /// the byte budget if `cut` (see `read_events`).
    fn read(asked: usize, cut: bool, events: Vec<QueuedEvent>) -> LagReads {
        let mut events = events;
        let page = events.len() as i64 + i64::from(cut);
        for event in &mut events {
            event.page = page;
        }
        vec![(7, asked, events)]
    }

    /// The stretch going on after `key`.
    fn goes_on_after(key: (i64, i64)) -> Vec<(i32, Option<Lag>)> {
        vec![(
            7,
            Some(Lag {
                after: key,
                to: (50, 50),
            }),
        )]
    }

    #[test]
    fn a_read_moves_past_what_was_taken_and_stops_at_what_was_left() {
        let reads = read(3, false, vec![event(2, 1), event(3, 2), event(4, 3)]);
        assert_eq!(
            after_reads(&stretch(), &reads, |id| id < 3),
            goes_on_after((3, 2))
        );
    }

    #[test]
    fn a_read_cut_short_by_bytes_goes_on() {
        // Five asked, one returned within the byte budget.
        let cut = read(5, true, vec![event(2, 1)]);
        assert_eq!(
            after_reads(&stretch(), &cut, |_| true),
            goes_on_after((2, 1))
        );
    }

    #[test]
    fn a_short_read_also_cut_by_bytes_goes_on() {
        // Asked 4, the stretch held 3, the byte budget let 2 through.
        let cut = read(4, true, vec![event(2, 1), event(3, 2)]);
        assert_eq!(
            after_reads(&stretch(), &cut, |_| true),
            goes_on_after((3, 2))
        );
    }

    #[test]
    fn a_short_read_all_taken_ends_the_stretch_and_a_full_one_goes_on() {
        let short = read(5, false, vec![event(2, 1), event(3, 2)]);
        assert_eq!(after_reads(&stretch(), &short, |_| true), vec![(7, None)]);
        let full = read(2, false, vec![event(2, 1), event(3, 2)]);
        assert_eq!(
            after_reads(&stretch(), &full, |_| true),
            goes_on_after((3, 2))
        );
    }
}
