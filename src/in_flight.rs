//! `webhook._in_flight()`: the requests the delivery workers have in flight per subscription,
//! for `webhook.subscription_stats`. A view calls functions with its reader's rights, so
//! webhook_admin and pg_monitor may execute it; it shows each caller what the view would:
//! every subscription to members of pg_monitor (and superusers), as the view's own rule says,
//! and to others only the subscriptions they may see in `webhook.subscriptions`.

use pgrx::prelude::*;

use crate::privilege::{caller_acts_as, visible_subscriptions};

/// Requests the delivery workers have in flight right now, per subscription the caller may see.
#[pg_extern(name = "_in_flight", stable)]
#[search_path(pg_catalog, pg_temp)]
fn in_flight_table() -> TableIterator<'static, (name!(subscription_id, i32), name!(in_flight, i32))>
{
    // SAFETY: reads a backend global.
    let database = unsafe { pg_sys::MyDatabaseId };
    let mut counts = crate::wake::in_flight(database);
    if !counts.is_empty() && !caller_acts_as(pg_sys::Oid::from(pg_sys::ROLE_PG_MONITOR)) {
        let visible = visible_subscriptions();
        counts.retain(|(id, _)| visible.contains(id));
    }
    TableIterator::new(counts)
}
