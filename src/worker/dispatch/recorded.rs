//! Outcomes once recorded, and outcomes set aside: those whose queue rows another transaction
//! holds (an unsubscribe discarding the queue, left open) wait apart, still owned, while the
//! others are recorded.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::Dispatcher;

/// How long outcomes set aside wait before the worker looks again whether their rows are held.
const HELD_RETRY: Duration = Duration::from_secs(1);

impl Dispatcher {
    /// Forgets the events whose outcomes were just recorded, so they may be claimed again.
    /// Outcomes set aside stay, and so do their events and requests.
    pub fn release_recorded(&mut self) {
        for o in self.outcomes.drain(..) {
            let part = (o.subscription_id, o.txid);
            if let Some(left) = self.parts.get_mut(&part) {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    self.parts.remove(&part);
                }
            }
            if let Some((bytes, _)) = self.owned.remove(&o.event_id) {
                self.owned_bytes -= bytes;
                if let Some(by) = self.owned_by.get_mut(&o.subscription_id) {
                    *by = (by.0 - 1, by.1 - bytes);
                    if by.0 == 0 {
                        self.owned_by.remove(&o.subscription_id);
                    }
                }
            }
        }
        self.outcomes_since = None;
        // A subscription's outcomes are set aside all together (`hold`): the finished requests
        // of one with outcomes set aside are all still owned.
        let held = self.held_subscriptions();
        let (requests_by, owner_of) = (&mut self.requests_by, &mut self.owner_of);
        self.settled_by.retain(|sub, settled| {
            if held.contains(sub) {
                return true;
            }
            if let Some(owned) = requests_by.get_mut(sub) {
                *owned = owned.saturating_sub(*settled);
                if *owned == 0 {
                    requests_by.remove(sub);
                    owner_of.remove(sub);
                }
            }
            false
        });
        self.settled_requests = self.settled_by.values().sum();
        self.count_held();
    }

    /// Sets aside the outcomes of these subscriptions, whose queue rows another transaction
    /// holds: they stay owned (their events are not claimed again; their requests and bytes
    /// count against the worker's room only past `held_room` and `HELD_BYTES`, see
    /// holding.rs) until `unhold` puts them back.
    pub fn hold(&mut self, subscriptions: &HashSet<i32>) {
        let (held, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.outcomes)
            .into_iter()
            .partition(|o| subscriptions.contains(&o.subscription_id));
        self.outcomes = kept;
        if self.outcomes.is_empty() {
            self.outcomes_since = None;
        }
        if !held.is_empty() {
            self.held.extend(held);
            // Outcomes joining those set aside do not put off the next look.
            self.held_at.get_or_insert_with(Instant::now);
        }
        self.count_held();
    }

    /// Puts the outcomes set aside back with the others, to be recorded or set aside again.
    pub fn unhold(&mut self) {
        if self.held.is_empty() {
            return;
        }
        self.outcomes_since.get_or_insert_with(Instant::now);
        self.outcomes.append(&mut self.held);
        self.held_at = None;
        self.count_held();
    }

    /// Counts the requests and bytes of the outcomes set aside.
    fn count_held(&mut self) {
        self.held_requests = (self.held_subscriptions())
            .iter()
            .filter_map(|sub| self.settled_by.get(sub))
            .sum();
        self.held_bytes = self
            .held
            .iter()
            .filter_map(|o| self.owned.get(&o.event_id))
            .map(|(bytes, _)| *bytes)
            .sum();
    }

    /// Sets aside the outcomes of the subscriptions whose outcomes are set aside already.
    pub fn hold_with_held(&mut self) {
        self.hold(&self.held_subscriptions());
    }

    /// The subscriptions whose outcomes are set aside.
    fn held_subscriptions(&self) -> HashSet<i32> {
        self.held.iter().map(|o| o.subscription_id).collect()
    }

    /// Whether some outcomes are set aside.
    pub fn holds(&self) -> bool {
        !self.held.is_empty()
    }

    /// How many outcomes are set aside.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// When the outcomes set aside are to be looked at again.
    pub fn held_due_at(&self) -> Option<Instant> {
        self.held_at.map(|at| at + HELD_RETRY)
    }
}
