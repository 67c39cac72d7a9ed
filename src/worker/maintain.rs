//! Housekeeping, in worker 0 of each database: auto-disabling subscriptions whose endpoint has
//! failed too long, checking subscriptions' triggers, and the retention purge.
//!
//! The purge must keep up with the fastest drain the workers can reach, or the archive grows
//! without bound: each round deletes in batches until it is caught up or has used its time
//! slice, and comes back soon while it is behind.

use std::time::{Duration, Instant};

use pgrx::prelude::*;

use super::{txn, Worker};

/// Rows the retention purge looks at per statement (each run in its own short transaction).
const PURGE_BATCH: i64 = 5_000;
/// How long one round may spend purging before the worker gets back to delivering.
const PURGE_SLICE: Duration = Duration::from_millis(50);
/// How soon the next round comes while the purge is behind.
const PURGE_AGAIN: Duration = Duration::from_millis(20);
/// How often triggers are checked against subscriptions (`crate::triggers::reconcile`).
const RECONCILE_EVERY: Duration = Duration::from_secs(10);

impl Worker {
    /// What worker 0 does besides delivering, when it is due: housekeeping. (Backfills run in
    /// the runner: see backfills.rs.)
    pub(super) fn worker_zero_duties(&mut self, now: Instant) {
        if now >= self.next_maintenance {
            self.maintain(now);
        }
    }

    /// Retention and auto-disable, at most once per poll interval (more often while the purge
    /// is behind).
    pub(super) fn maintain(&mut self, now: Instant) {
        self.next_maintenance = now + self.settings.poll_interval.max(Duration::from_secs(1));
        if self.statements.is_none() {
            return;
        }
        super::backend::report_activity(Some("retention and auto-disable"));
        if !self.auto_disable() {
            self.statements = None;
            return;
        }
        if now >= self.next_reconcile {
            self.next_reconcile = now + RECONCILE_EVERY;
            self.reconcile();
            self.mark_drained();
        }
        let Some(statements) = &self.statements else {
            return;
        };
        let (delivered, dead) = (
            self.settings.retention.as_secs_f64(),
            self.settings.dead_retention.as_secs_f64(),
        );
        self.purge_from.rescan_if_due(now);
        loop {
            let cursor = self.purge_from;
            let purged = txn::run("retention", || {
                statements.purge(delivered, dead, PURGE_BATCH, cursor)
            });
            match purged {
                Ok((behind, next)) => {
                    self.purge_from = next;
                    if !behind {
                        return;
                    }
                    if now.elapsed() >= PURGE_SLICE {
                        // More to look at: come back soon, after some delivering.
                        self.next_maintenance = Instant::now() + PURGE_AGAIN;
                        return;
                    }
                }
                Err(_) => {
                    self.statements = None;
                    return;
                }
            }
        }
    }

    /// Makes missing partition triggers and drops stray ones (see `crate::triggers::reconcile`).
    fn reconcile(&mut self) {
        // On failure txn::run has logged it; the next pass tries again, and says again what
        // it leaves alone.
        let checked = txn::run(
            "checking subscriptions' triggers",
            crate::triggers::reconcile,
        );
        if checked.is_err() {
            crate::triggers::forget_reports();
        }
        if let Ok(changes) = checked {
            for change in &changes {
                warning!("pg_webhook: {change}");
            }
            if !changes.is_empty() {
                self.targets_loaded = None;
            }
        }
    }

    /// Marks unsubscribed subscriptions drained once no event of theirs is left, so that loads
    /// skip them, and back should one turn up (see sql/worker/drained.sql).
    fn mark_drained(&mut self) {
        let Some(statements) = &self.statements else {
            return;
        };
        // On failure txn::run has logged it; the next round tries again.
        if let Ok((back, drained)) = txn::run("marking drained subscriptions", || {
            statements.mark_drained()
        }) {
            if back > 0 {
                log!(
                    "pg_webhook worker: {back} unsubscribed subscriptions marked drained have events queued after all; loaded again"
                );
            }
            if back + drained > 0 {
                self.targets_loaded = None;
            }
        }
    }

    /// Disables subscriptions failing for longer than `pg_webhook.disable_after`; false when
    /// the transaction failed.
    fn auto_disable(&mut self) -> bool {
        let Some(after) = self.settings.disable_after else {
            return true;
        };
        let Some(statements) = &self.statements else {
            return false;
        };
        let result = txn::run("auto-disable", || {
            let mut disabled = Vec::new();
            for (id, name, since, error) in statements.overdue(after.as_secs_f64())? {
                let reason = format!(
                    "endpoint failing since {since}; last error: {}; webhook.resume('{name}') re-enables it",
                    error.as_deref().unwrap_or("unknown")
                );
                if statements.disable(id, &reason, false)? {
                    disabled.push((name, reason));
                }
            }
            Ok(disabled)
        });
        match result {
            Ok(disabled) => {
                for (name, reason) in &disabled {
                    log!("pg_webhook: subscription \"{name}\" disabled: {reason}");
                }
                if !disabled.is_empty() {
                    self.targets_loaded = None;
                }
                true
            }
            Err(_) => false,
        }
    }
}
