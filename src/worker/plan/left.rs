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
    /// passed, to be read again; due ones stay due, read again a second on or as requests end
    /// (as if their subscription held its share), not at once in a loop while it stays open.
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
        let mut last: HashMap<i32, Option<Instant>> = HashMap::new();
        for (id, (sub, _)) in &self.rate_deferred {
            if left.contains(id) {
                let before = self.given_before.get(sub).copied().flatten();
                last.insert(*sub, before);
            }
        }
        for (id, (sub, given)) in &self.rate_deferred {
            if let (false, Some(slot)) = (left.contains(id), last.get_mut(sub)) {
                *slot = Some(slot.map_or(*given, |s| s.max(*given)));
            }
        }
        for (sub, last) in last {
            limits.take_back_given_out(sub, last);
        }
    }
}
