//! What a claim meant to write and could not, the rows held by another transaction: the
//! events are read again later, and what the plan gave them is taken back.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use pg_webhook_core::limits::Limits;

use super::Plan;
use crate::queue::QueuedEvent;

impl Plan<'_> {
    /// Notes the events a claim read and meant to write (park or put back) but left as they
    /// were, their rows held by another transaction (`left`): the new ones (`passing`) are
    /// passed, to be read again; due retries stay due, read again a second on or as requests
    /// end (as if their subscription held its share), not at once in a loop while it stays
    /// open. (Ordered heads are read again at every claim anyway.)
    pub(in crate::worker) fn leave<'e>(
        &mut self,
        left: &HashSet<i64>,
        passing: impl Iterator<Item = &'e QueuedEvent>,
        due: impl Iterator<Item = &'e QueuedEvent>,
    ) {
        for e in passing.filter(|e| left.contains(&e.id)) {
            self.pass(e);
        }
        (self.held_due).extend(due.map(|e| e.id).filter(|id| left.contains(id)));
    }

    /// After the deferrals were written (`left`: the ids of those left as they were, their
    /// rows held by another transaction): wakes the worker when the first one written comes
    /// due, and takes back the rate slots given out to the left ones, back to the last slot
    /// written or given out before (by an earlier claim, whose events keep theirs). Left ones
    /// waking it, it claimed again a millisecond on, in a loop for as long as the rows stayed
    /// held; their slots kept, each claim that read them again gave out the next ones, pushing
    /// the subscription's later events out a slot more each time (up to a day).
    pub(in crate::worker) fn deferred(&mut self, left: &HashSet<i64>, limits: &mut Limits) {
        let at = |us: i64| {
            let wait = Duration::from_micros(u64::try_from(us).unwrap_or(0));
            self.now + wait.max(Duration::from_millis(1))
        };
        let first = (self.defer.iter())
            .filter(|d| !left.contains(&d.1))
            .map(|d| at(d.2))
            .min();
        if let Some(first) = first {
            self.wake_at(first);
        }
        let last = taken_back(&self.rate_deferred, &self.given_before, left);
        for (sub, last) in last {
            limits.take_back_given_out(sub, last);
        }
    }
}

/// Where the last slot given out goes back to, for each subscription with events over its rate
/// whose deferral was left unwritten (`left`; `deferred`: event -> subscription and the slot it
/// was given): the latest slot still held, by an event of this plan put back or given out
/// before it (`given_before`, kept by earlier claims' events; `None`: neither).
fn taken_back(
    deferred: &HashMap<i64, (i32, Instant)>,
    given_before: &HashMap<i32, Option<Instant>>,
    left: &HashSet<i64>,
) -> HashMap<i32, Option<Instant>> {
    let mut last: HashMap<i32, Option<Instant>> = (deferred.iter())
        .filter(|(id, _)| left.contains(id))
        .map(|(_, (sub, _))| (*sub, given_before.get(sub).copied().flatten()))
        .collect();
    for (id, (sub, given)) in deferred {
        if let (false, Some(slot)) = (left.contains(id), last.get_mut(sub)) {
            *slot = Some(slot.map_or(*given, |s| s.max(*given)));
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_go_back_to_the_latest_still_held_never_before_earlier_claims() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // Subscription 1: slots up to t0+600 given out by earlier claims; this claim's one
        // deferral (t0+601) left. Subscription 2: this claim put back one (t0+5) and left one
        // (t0+6), nothing given out before. Subscription 3: its one deferral left, nothing
        // before. Subscription 4: none left, untouched.
        let deferred = HashMap::from([
            (10, (1, t0 + s(601))),
            (20, (2, t0 + s(5))),
            (21, (2, t0 + s(6))),
            (30, (3, t0 + s(1))),
            (40, (4, t0 + s(9))),
        ]);
        let before = HashMap::from([(1, Some(t0 + s(600))), (2, None), (3, None), (4, None)]);
        let left = HashSet::from([10, 21, 30]);
        assert_eq!(
            taken_back(&deferred, &before, &left),
            HashMap::from([(1, Some(t0 + s(600))), (2, Some(t0 + s(5))), (3, None)])
        );
    }
}
