//! Whose events may go: loading the subscriptions, re-checking that each owner may still read
//! its table (a subscription whose owner may not is disabled with the reason), and parking the
//! events of those that may not send now.

use std::collections::HashSet;

use pgrx::spi::SpiResult;

use super::Claim;
use crate::delivery::targets;
use crate::queue::QueuedEvent;

impl Claim<'_> {
    /// Parks the events of subscriptions that may not send now (paused, disabled, owner may no
    /// longer read the table) until they may. Never one that is in flight: its outcome is
    /// recorded by key, and parking it would only send it again after a resume. Returns the
    /// ids of those left as they were (their rows held by another transaction).
    pub(super) fn park_held<'e>(
        &self,
        events: impl Iterator<Item = &'e QueuedEvent>,
    ) -> SpiResult<HashSet<i64>> {
        let parked: Vec<_> = events
            .filter(|e| !self.dispatcher.owns(e.id))
            .filter(|e| {
                self.targets
                    .get(&e.subscription_id)
                    .is_some_and(|t| !t.sends())
            })
            .map(|e| (e.txid, e.id, e.subscription_id))
            .collect();
        let denied: Vec<i32> = self
            .targets
            .iter()
            .filter(|(_, t)| t.read_denied.is_some())
            .map(|(id, _)| *id)
            .collect();
        self.statements.park(&parked, &denied)
    }

    /// Re-reads whether the owners of the subscriptions of these events may still read their
    /// tables, and holds those that may not; returns the subscriptions it disabled.
    pub(super) fn check_access<'e>(
        &mut self,
        events: impl Iterator<Item = &'e QueuedEvent>,
    ) -> SpiResult<Vec<(String, String)>> {
        let mut ids: Vec<i32> = events.map(|e| e.subscription_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let access = self.statements.owner_access(&ids)?;
        self.apply_access(access)
    }

    /// Takes in (subscription, why its owner may not read the table): an active one that may
    /// not is disabled with the reason (and so holds its events). Returns those it disabled.
    fn apply_access(
        &mut self,
        access: Vec<(i32, Option<String>)>,
    ) -> SpiResult<Vec<(String, String)>> {
        let mut disabled = Vec::new();
        for (id, denied) in access {
            let Some(t) = self.targets.get_mut(&id) else {
                continue;
            };
            t.read_denied = denied;
            if t.read_denied.is_some() {
                // It sends nothing now, and its events read by this claim are parked: taken
                // out of those sending, so that the load that finds it may read again (its
                // owner's rights given back before that load) gives them back. Left in, an
                // unsubscribed one (whose status never changes) kept them parked for good.
                self.sending.remove(&id);
            }
            let Some(denied) = &t.read_denied else {
                if t.read_denied_noted {
                    // It may again: its row no longer says otherwise.
                    self.statements.sync_read_denied(id)?;
                    t.read_denied_noted = false;
                }
                continue;
            };
            if t.status != "active" {
                // Held already (paused, disabled, unsubscribed): noted, so they stay held
                // once the table is gone.
                if !t.read_denied_noted {
                    self.statements.sync_read_denied(id)?;
                    t.read_denied_noted = true;
                }
                continue;
            }
            t.read_denied_noted = true;
            let reason = format!(
                "{denied}; its events are held until it may again, then SELECT webhook.resume('{}') sends them (with a filter or payload, changes made meanwhile are not captured: backfill them)",
                t.name.replace('\'', "''")
            );
            if self.statements.disable(id, &reason, true)? {
                disabled.push((t.name.clone(), reason));
            } else {
                // Not active any more (paused or unsubscribed meanwhile): noted all the same.
                self.statements.sync_read_denied(id)?;
            }
            t.status = "disabled".into();
        }
        Ok(disabled)
    }

    /// Loads the subscriptions again if some of these events' are not loaded: made since the
    /// last load, or unsubscribed and marked drained before the event turned up (marked back
    /// first, see sql/worker/drained.sql). Without, the event would go out as one of no
    /// subscription, and die.
    pub(super) fn load_unknown<'e>(
        &mut self,
        events: impl Iterator<Item = &'e QueuedEvent>,
    ) -> SpiResult<Vec<(String, String)>> {
        let mut unknown: Vec<i32> = events
            .map(|e| e.subscription_id)
            .filter(|id| !self.targets.contains_key(id))
            .collect();
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        unknown.sort_unstable();
        unknown.dedup();
        self.statements.undrain(&unknown)?;
        self.load_targets()
    }

    /// Loads every subscription but the drained; disables the active ones whose owner may no
    /// longer read their table, and gives back the parked events of those that may send again.
    /// Returns the subscriptions it disabled (name, reason).
    pub(super) fn load_targets(&mut self) -> SpiResult<Vec<(String, String)>> {
        let statements = self.statements;
        *self.catalog_generation = crate::capture::catalog_generation();
        // Before the callbacks are read: none is called by an OID read in another cluster.
        for r in crate::queue::rebind_callbacks()? {
            match r.found {
                true => pgrx::log!(
                    "pg_webhook: subscription \"{}\" was bound to its callback in another cluster or copy of this database (pg_upgrade, or a restore): bound again to {}",
                    r.subscription, r.signature
                ),
                false => pgrx::warning!(
                    "pg_webhook: subscription \"{}\" was bound to its callback in another cluster or copy of this database (pg_upgrade, or a restore), and no function {} of the role that owned its function, taking one jsonb argument, is here: its callbacks fail until it is subscribed again",
                    r.subscription, r.signature
                ),
            }
        }
        // Before the uids are read: none from another copy of the database is ever sent.
        for (name, old, new) in crate::queue::renew_foreign_uids()? {
            pgrx::log!(
                "pg_webhook: subscription \"{name}\" was made in another copy of this database (this one was restored from a dump of it): its webhook-ids now start msg_{new}_ instead of msg_{old}_, so that they never repeat the original's"
            );
        }
        // Whatever else is done with them (an active one is disabled below): those whose
        // table went first are never held, and must be marked all the same.
        for (name, table) in statements.mark_orphans()? {
            pgrx::log!(
                "pg_webhook: subscription \"{name}\" has no owner any more (its owner's role was dropped): marked an orphan, which only a superuser's webhook.set_owner() hands over"
            );
            // Sessions that wrote the table keep the subscription's filter and payload
            // (capture's cache), which would go on running as the dropped role's OID: they
            // read the row again, marked, at this transaction's commit.
            if let Some(table) = table {
                // SAFETY: queues a relation cache invalidation for a relation the query just
                // found, sent at commit (one dropped meanwhile fails the transaction, which
                // the next load retries).
                unsafe { pgrx::pg_sys::CacheInvalidateRelcacheByRelid(table) };
            }
        }
        *self.targets = targets::build(statements.subscriptions()?, self.default_timeout);
        (self.dispatcher).keep_credentials_of(&self.targets.keys().copied().collect());
        self.reloaded = true;
        // Events put back for limits that changed wait for slots given under the old ones:
        // due now, they are given new ones (by the worker that serves the subscription). Seen
        // as of the last claim that committed: a claim that fails rolls its rebook back, and
        // the next one finds the change again. Events another transaction holds (see
        // make_due.sql) keep the time they were given: tried again at every load, a rebook
        // made due every event of the subscription waiting (its backoffs too) each second.
        let changed: Vec<i32> = (self.targets.iter())
            .filter(|(id, t)| {
                (self.limits_seen.get(id)).is_some_and(|before| *before != t.limits)
                    && (!t.pinned() || self.share.owns_subscription(**id))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &changed {
            self.limits.forget(*id);
        }
        for id in statements.rebook(&changed)? {
            let name = self.targets.get(&id).map_or("", |t| t.name.as_str());
            pgrx::log!(
                "pg_webhook: the limits of subscription \"{name}\" changed, and another transaction holds some of its events put back under the old ones: those keep the time they were given"
            );
        }
        let denied: Vec<(i32, Option<String>)> = self
            .targets
            .iter()
            .map(|(id, t)| (*id, t.read_denied.clone()))
            .collect();
        let disabled = self.apply_access(denied)?;
        let mut now_sending: HashSet<i32> = self
            .targets
            .iter()
            .filter(|(_, t)| t.sends())
            .map(|(id, _)| *id)
            .collect();
        let started: Vec<i32> = now_sending.difference(self.sending).copied().collect();
        // Parked by this worker or another, before a resume, an unsubscribe or a GRANT this
        // worker has only now seen — whatever snapshot that command ran under. One some of
        // whose events another transaction holds (make_due.sql) is noted as not sending yet,
        // so the next load (a second on) gives the rest back; its other events go meanwhile.
        let left = statements.unpark(&started)?;
        self.unparked |= !started.is_empty();
        now_sending.retain(|id| !left.contains(id));
        *self.sending = now_sending;
        Ok(disabled)
    }
}
