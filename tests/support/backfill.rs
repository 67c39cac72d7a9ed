//! What the backfill tests share: reading BACKFILL events off a receiver and waiting on a
//! backfill's state.

use std::collections::HashMap;

use postgres::Client;

use super::cluster::wait_until;
use super::receiver::Receiver;
use super::{text, WAIT};

/// The `id` of each accepted BACKFILL event's record, counted per id.
pub fn backfilled(rx: &Receiver) -> HashMap<i64, usize> {
    let mut seen = HashMap::new();
    for r in rx.accepted() {
        let body = r.json();
        if body["type"] == "BACKFILL" {
            *seen
                .entry(body["record"]["id"].as_i64().unwrap_or(-1))
                .or_insert(0) += 1;
        }
    }
    seen
}

/// The state of the subscription's latest backfill ('' when it has none).
pub fn state(db: &mut Client, name: &str) -> String {
    text(
        db,
        &format!("SELECT state FROM webhook.backfills WHERE subscription = '{name}' ORDER BY id DESC LIMIT 1"),
    )
    .unwrap_or_default()
}

/// Waits until the subscription's latest backfill is in state `want`.
pub fn wait_state(db: &mut Client, name: &str, want: &str) {
    wait_until(WAIT, &format!("backfill of {name} to be {want}"), || {
        state(db, name) == want
    });
}

/// Waits until `backfill` BACKFILL events have been accepted.
pub fn wait_all(rx: &Receiver, backfill: usize, what: &str) {
    // Counting requests is cheap; parsing every body is not, so that comes once they are in.
    wait_until(WAIT, what, || {
        rx.count() >= backfill && backfilled(rx).values().sum::<usize>() >= backfill
    });
}
