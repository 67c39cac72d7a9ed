//! The worker's safety net for the event triggers: if they did not run (a superuser disabled
//! them, or a tool wrote the catalog directly), a subscription can lack a trigger on a new
//! partition, or a trigger can be left naming a subscription that no longer exists. Worker 0 of
//! each database runs `reconcile` every few seconds; it finds nothing to do when the event
//! triggers did their job.

use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, SpiClient, SpiResult};

use super::{
    base_name, diff, existing, functions, made_ids, mark_made, sync, Syncing, LIVE, UNPARK,
    UNSUBSCRIBE,
};
use crate::capture::named_subscription;
use crate::privilege::as_extension_owner;

const LOCK_TIMEOUT: &str = include_str!("../../sql/queries/lock_timeout_short.sql");

thread_local! {
    /// Subscriptions this worker has said it leaves alone while their triggers are awaited.
    static AWAITED: std::cell::RefCell<std::collections::HashSet<i32>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

/// One pass: a live subscription missing a trigger on a partition gets it (changes to that
/// partition before now were not captured, and the log says so); one missing the trigger on
/// its own table is unsubscribed, as `webhook_on_sql_drop` would have done; a pg_webhook
/// trigger naming no live subscription is dropped. A subscription whose triggers were never
/// complete in this database (restored, its triggers still to come) is left alone until they
/// are. Returns what it did, a line each for the
/// server log. Lock waits are bounded by `lock_timeout`
/// so a busy table delays the pass, never the worker.
pub fn reconcile() -> SpiResult<Vec<String>> {
    as_extension_owner(|| {
        Spi::connect_mut(|client| {
            client.update(LOCK_TIMEOUT, None, &[])?;
            pass(client)
        })
    })
}

/// One pass in the caller's transaction (the upgrade script's, through `_sync_all_triggers`).
///
/// Each statement reads the catalog as of its own start, so the order of the reads is what
/// keeps a subscribe or unsubscribe committing meanwhile from looking like damage: the live
/// subscriptions are read before the triggers (a live one's triggers committed with it, so
/// they are seen unless really dropped), and again after them before a trigger is taken for
/// an orphan (a new subscription's triggers, seen, mean its row is seen too).
pub(super) fn pass(client: &mut SpiClient<'_>) -> SpiResult<Vec<String>> {
    let funcs = functions();
    let live = live_subscriptions(client)?;
    let have = existing(funcs, None);
    let mut changes = Vec::new();
    let mut to_sync = Vec::new();
    let mut ended = Vec::new();
    let made = made_ids();
    for id in &live {
        let diff = diff(*id, funcs, &have);
        if made.as_ref().is_some_and(|made| !made.contains(id)) {
            // Restored (or made before pg_webhook noted such things): its missing triggers are
            // not damage, pg_restore makes them after the data. Noted once they are all there.
            if diff.missing.is_empty() {
                mark_made(*id);
            } else if AWAITED.with(|a| a.borrow_mut().insert(*id)) {
                changes.push(format!(
                    "subscription {id} lacks its trigger {} on {} and is left as it is: a restored subscription gets its triggers after the table data (if it was not restored and its trigger was dropped, unsubscribe it)",
                    base_name(*id, diff.missing[0].kind),
                    diff.missing[0].table
                ));
            }
            continue;
        }
        if let Some(m) = diff.missing.iter().find(|m| m.on_target) {
            let reason = format!(
                "its trigger {} on {} was dropped",
                base_name(*id, m.kind),
                m.table
            );
            if !client
                .update(UNSUBSCRIBE, None, &[(*id).into(), reason.clone().into()])?
                .is_empty()
            {
                changes.push(format!("subscription {id} unsubscribed: {reason}"));
                ended.push(*id);
            }
            continue;
        }
        for m in &diff.missing {
            changes.push(format!(
                "subscription {id} lacked its trigger {} on partition {}, made now: changes to that partition before now were not captured (were the pg_webhook event triggers disabled?)",
                base_name(*id, m.kind),
                m.table
            ));
        }
        for t in &diff.extra {
            changes.push(format!(
                "dropped trigger {} on {}: subscription {id} does not want it there",
                t.name, t.table
            ));
        }
        if !diff.missing.is_empty() || !diff.extra.is_empty() {
            to_sync.push(*id);
        }
    }
    if !ended.is_empty() {
        client.update(UNPARK, None, &[ended.clone().into()])?;
    }
    let _syncing = Syncing::start();
    let live_now = live_subscriptions(client)?;
    for t in &have {
        if named_subscription(&t.args).is_some_and(|id| live_now.contains(&id)) {
            continue;
        }
        client.update(
            &format!("DROP TRIGGER {} ON {}", quote_identifier(&t.name), t.table),
            None,
            &[],
        )?;
        changes.push(format!(
            "dropped trigger {} on {}: it names no live subscription",
            t.name, t.table
        ));
    }
    for id in to_sync.iter().chain(&ended) {
        sync(*id);
    }
    Ok(changes)
}

/// The ids of the live subscriptions, as of this statement.
fn live_subscriptions(client: &mut SpiClient<'_>) -> SpiResult<Vec<i32>> {
    let mut live = Vec::new();
    for r in client.select(LIVE, None, &[])? {
        live.push(r.get::<i32>(1)?.unwrap_or_default());
    }
    Ok(live)
}
