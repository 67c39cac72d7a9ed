//! Owners share a worker's requests too. Each subscription may hold three quarters of them and
//! the slow ones three quarters together (see `share_cap`), but one owner's subscriptions —
//! several new ones to an address that never answers, or ones that answer once and then all
//! hang — took every request of the worker until their timeouts, and again with new ones. So
//! while the loaded subscriptions have more than one owner, one owner's together may hold
//! seven eighths: the other owners keep an eighth, and within it its own subscriptions keep
//! theirs beside a hung one (`share_cap` leaves a quarter).

use std::collections::HashMap;
use std::rc::Rc;

use pgrx::pg_sys::Oid;

use crate::delivery::targets::{self, Owners};
use crate::worker::dispatch::Dispatcher;

/// The requests one owner's subscriptions may hold together, out of a worker's
/// `max_in_flight`: all but an eighth (from 8 on).
pub(in crate::worker) fn owner_cap(max_in_flight: usize) -> usize {
    max_in_flight - max_in_flight / 8
}

/// One claim's view of what each owner holds.
pub(in crate::worker) struct OwnerShare {
    owners: Rc<Owners>,
    cap: usize,
    /// What each owner's subscriptions hold, and what this plan starts for them.
    held: HashMap<Oid, usize>,
}

impl OwnerShare {
    pub(in crate::worker) fn new(dispatcher: &Dispatcher, cap: usize) -> OwnerShare {
        let owners = targets::owners();
        let held = match owners.several {
            true => dispatcher.requests_per_owner(&owners.of),
            false => HashMap::new(),
        };
        OwnerShare { owners, cap, held }
    }

    /// How many more requests `subscription`'s owner may start (any number when its owner is
    /// not known to share the worker with another).
    pub(in crate::worker) fn room(&self, subscription: i32) -> usize {
        if !self.owners.several {
            return usize::MAX;
        }
        match self.owners.of.get(&subscription) {
            Some(owner) => (self.cap).saturating_sub(self.held.get(owner).copied().unwrap_or(0)),
            None => usize::MAX,
        }
    }

    /// Counts `n` requests of `subscription` as started.
    pub(in crate::worker) fn took(&mut self, subscription: i32, n: usize) {
        if !self.owners.several {
            return;
        }
        if let Some(owner) = self.owners.of.get(&subscription) {
            *self.held.entry(*owner).or_default() += n;
        }
    }
}
