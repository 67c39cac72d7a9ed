//! What the delivery workers have in flight, per subscription, published in the wake-up
//! table's slots for `webhook.subscription_stats` (`crate::in_flight`).

use pgrx::prelude::*;

use super::{IN_FLIGHT_ENTRIES, WORKERS};

/// Publishes the calling worker's in-flight requests per subscription (the largest ones, when
/// there are more subscriptions than entries).
pub fn publish_in_flight(pid: i32, counts: &[(i32, i32)]) {
    let mut entries = [(0, 0); IN_FLIGHT_ENTRIES];
    for (entry, count) in entries.iter_mut().zip(counts) {
        *entry = *count;
    }
    let mut workers = WORKERS.exclusive();
    if let Some(slot) = workers.slots_mut().iter_mut().find(|s| s.pid == pid) {
        slot.in_flight = entries;
    }
}

/// Requests in flight per subscription, summed over the workers serving `database`.
pub fn in_flight(database: pg_sys::Oid) -> Vec<(i32, i32)> {
    if !crate::is_preloaded() {
        return Vec::new();
    }
    let mut totals: Vec<(i32, i32)> = Vec::new();
    let workers = WORKERS.share();
    for slot in workers
        .slots()
        .iter()
        .filter(|s| s.pid != 0 && s.database == database.to_u32())
    {
        for &(id, n) in slot.in_flight.iter().filter(|e| e.1 > 0) {
            match totals.iter_mut().find(|t| t.0 == id) {
                Some(t) => t.1 += n,
                None => totals.push((id, n)),
            }
        }
    }
    totals
}
