//! The worker's safety net for the event triggers: if they did not run (a superuser disabled
//! them, or a tool wrote the catalog directly), a subscription can lack a trigger on a new
//! partition, or a trigger can be left naming a subscription that is no longer live. Worker 0 of
//! each database runs `reconcile` every few seconds; it finds nothing to do when the event
//! triggers did their job.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, SpiClient, SpiResult};

use super::{
    all_ids, base_name, diff, existing, functions, made_ids, mark_made, sync, type_bit, Kind,
    Syncing, LIVE, UNPARK_NOW, UNSUBSCRIBE,
};
use crate::capture::named_subscription;
use crate::privilege::as_extension_owner;
use crate::sql::{arg, at_latest, OneSnapshot};

const LOCK_TIMEOUT: &str = include_str!("../../sql/queries/lock_timeout_short.sql");

/// How often the same thing left alone is said again in the log.
const REPORT_EVERY: Duration = Duration::from_secs(600);

thread_local! {
    /// What this worker has said it leaves alone, and when: said again after `REPORT_EVERY`
    /// (so a line lost with a failed pass comes back).
    static REPORTED: RefCell<HashMap<String, Instant>> = RefCell::new(HashMap::new());
}

/// How long a restored subscription's triggers must stay as they are before the check takes
/// the restore to be done with them.
const SETTLE: Duration = Duration::from_secs(30);
/// When the check forgets what a restored subscription's triggers were.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// A restored subscription's triggers (table, name), as last seen, and since when.
type Seen = (Vec<(pg_sys::Oid, String)>, Instant);

thread_local! {
    /// What each restored subscription's triggers were when last seen changed.
    static RESTORED: RefCell<HashMap<i32, Seen>> = RefCell::new(HashMap::new());
}

/// Whether subscription `id`'s triggers have been `now` for `SETTLE`.
fn settled(id: i32, now: &[(pg_sys::Oid, &str)]) -> bool {
    let now: Vec<(pg_sys::Oid, String)> = now.iter().map(|(r, n)| (*r, n.to_string())).collect();
    RESTORED.with(|r| {
        let mut r = r.borrow_mut();
        // Subscriptions long made (or gone) are forgotten; the rest settle within a minute.
        r.retain(|_, (_, since)| since.elapsed() < FORGET_AFTER);
        match r.get(&id) {
            Some((seen, since)) if *seen == now => since.elapsed() >= SETTLE,
            _ => {
                r.insert(id, (now, Instant::now()));
                false
            }
        }
    })
}

/// What a failed statement of the check was doing.
const DOING: &str = "checking subscriptions' triggers";

/// Forgets what was said: the pass that said it failed, and its lines with it.
pub fn forget_reports() {
    REPORTED.with(|r| r.borrow_mut().clear());
}

/// Whether to say again that `what` is left alone.
fn report_due(what: String) -> bool {
    REPORTED.with(|r| {
        let mut r = r.borrow_mut();
        // Only what was said within the last REPORT_EVERY is kept.
        r.retain(|_, at| at.elapsed() < REPORT_EVERY);
        let due = !r.contains_key(&what);
        if due {
            r.insert(what, Instant::now());
        }
        due
    })
}

/// One pass: a live subscription missing a trigger on a partition gets it (changes to that
/// partition before now were not captured, and the log says so); one missing the trigger on
/// its own table is unsubscribed, as `webhook_on_sql_drop` would have done; a pg_webhook
/// trigger naming a subscription that is no longer live is dropped. A subscription whose
/// triggers were never complete in this database (restored, its triggers still to come) is
/// left alone until they are, and so is a trigger naming a subscription that has no row (yet):
/// a restore need not bring the rows before the triggers. Returns what it did, a line each for the
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
    // One moment for the subscriptions, their triggers and the tables under them: a partition
    // another session made (with its triggers) between two reads looked like one lacking them,
    // and was warned of as missed changes and given a second set.
    let one = OneSnapshot::take();
    let live = live_subscriptions();
    let have = existing(funcs, None);
    let made = made_ids();
    let diffs: Vec<(i32, super::Diff<'_>)> = live
        .iter()
        .map(|id| (*id, diff(*id, funcs, &have)))
        .collect();
    drop(one);
    let mut changes = Vec::new();
    let mut to_sync = Vec::new();
    let mut ended = Vec::new();
    for (id, diff) in &diffs {
        if made.as_ref().is_some_and(|made| !made.contains(id)) {
            // Restored (or made before pg_webhook noted such things): its missing triggers are
            // not damage, pg_restore makes them after the data. Noted once they are all there.
            // Restored from an older pg_webhook, its triggers are complete for that version
            // but not this one (no order lock, the older form): once they have stayed as they
            // are for a while, the restore is done with them, and they are made in this form.
            // Never a capture trigger on a table that has none: pg_restore may not have loaded
            // its rows yet, and they would be captured.
            let restored: Vec<(pg_sys::Oid, &str)> = have
                .iter()
                .filter(|t| named_subscription(&t.args) == Some(*id))
                .map(|t| (t.relid, t.name.as_str()))
                .collect();
            if diff.missing.is_empty() {
                mark_made(*id);
            } else if only_in_form(*id, funcs, diff, &have) && settled(*id, &restored) {
                changes.push(format!(
                    "subscription {id} was restored with triggers of another pg_webhook version ({} of them): made in this version's form",
                    restored.len()
                ));
                to_sync.push(*id);
            } else if report_due(format!("subscription {id}")) {
                changes.push(format!(
                    "subscription {id} lacks its trigger {} on {} and is left as it is: a restored subscription gets its triggers after the table data (once the restore is done, SELECT webhook._sync_all_triggers() makes what is still missing; if it was not restored and its trigger was dropped, unsubscribe it)",
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
            // On its own, like each repair below: a transaction holding the subscription's
            // row (an open webhook.pause(), say) holds up no other.
            match crate::error::in_subtransaction(|| {
                at_latest(
                    DOING,
                    UNSUBSCRIBE,
                    &[arg(*id), arg(reason.as_str())],
                    |_| {},
                )
            }) {
                Ok(0) => {}
                Ok(_) => {
                    changes.push(format!("subscription {id} unsubscribed: {reason}"));
                    ended.push(*id);
                }
                Err(e) => changes.push(format!(
                    "could not unsubscribe subscription {id} now ({reason}: {e}); the next check tries again"
                )),
            }
            continue;
        }
        for t in have
            .iter()
            .filter(|t| !t.fires && named_subscription(&t.args) == Some(*id))
        {
            if report_due(format!("off {} on {}", t.name, t.table)) {
                changes.push(not_firing(*id, t));
            }
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
        at_latest(DOING, UNPARK_NOW, &[arg(ended.clone())], |_| {});
    }
    let _syncing = Syncing::start();
    let live_now = live_subscriptions();
    let known = all_ids();
    for t in &have {
        match named_subscription(&t.args) {
            Some(id) if live_now.contains(&id) => continue,
            // No such subscription (yet): a restore may make a table's triggers before it
            // brings webhook._subscriptions' rows, and writes to the table fail meanwhile,
            // naming the trigger, rather than go uncaptured.
            Some(id) if !known.contains(&id) => {
                if report_due(format!("trigger {} on {}", t.name, t.table)) {
                    changes.push(format!(
                        "trigger {} on {} names subscription {id}, which does not exist, and is left as it is: writes to {} fail until its subscription is restored or the trigger is dropped",
                        t.name, t.table, t.table
                    ));
                }
                continue;
            }
            _ => {}
        }
        // Each change on its own: a lock held on one table (lock_timeout) holds up no other.
        let drop = format!("DROP TRIGGER {} ON {}", quote_identifier(&t.name), t.table);
        match crate::error::in_subtransaction(|| client.update(&drop, None, &[])) {
            Ok(done) => {
                done?;
                changes.push(format!(
                    "dropped trigger {} on {}: it names no live subscription",
                    t.name, t.table
                ));
            }
            Err(e) => changes.push(format!(
                "could not drop trigger {} on {} now ({e}); the next check tries again",
                t.name, t.table
            )),
        }
    }
    for id in to_sync.iter().chain(&ended) {
        if let Err(e) = crate::error::in_subtransaction(|| sync(*id)) {
            changes.push(format!(
                "could not bring subscription {id}'s triggers in line now ({e}); the next check tries again"
            ));
        }
    }
    Ok(changes)
}

/// The log line for a trigger of live subscription `id` that does not fire in an ordinary
/// session (`ALTER TABLE … DISABLE TRIGGER`, `ENABLE REPLICA TRIGGER`, `pg_restore
/// --disable-triggers` meanwhile): said every `REPORT_EVERY` while it lasts, and in the
/// subscription's `status_reason` (sql/views.sql), not repaired: whoever turned it off may mean
/// to, and what it missed is missed either way.
fn not_firing(id: i32, t: &super::Existing) -> String {
    format!(
        "subscription {id}'s trigger {} on {} is disabled: changes to that table are not captured while it is (ALTER TABLE {} ENABLE TRIGGER {} turns it on again)",
        t.name,
        t.table,
        t.table,
        quote_identifier(&t.name)
    )
}

/// Whether all subscription `id` lacks is its order-lock triggers or this version's form of
/// capture triggers it has: every (table, event kind) it wants captured has a capture trigger
/// naming it, in whatever form.
fn only_in_form(
    id: i32,
    funcs: (pg_sys::Oid, pg_sys::Oid),
    diff: &super::Diff<'_>,
    have: &[super::Existing],
) -> bool {
    diff.missing.iter().all(|m| match m.kind {
        Kind::OrderLock => true,
        Kind::Capture(op) => have.iter().any(|t| {
            t.relid == m.relid
                && t.function == funcs.0
                && t.tgtype & type_bit(op) != 0
                && named_subscription(&t.args) == Some(id)
        }),
    })
}

/// The ids of the live subscriptions, as of this statement.
fn live_subscriptions() -> Vec<i32> {
    let mut live = Vec::new();
    at_latest(DOING, LIVE, &[], |r| {
        live.push(r.get::<i32>(1).unwrap_or_default())
    });
    live
}
