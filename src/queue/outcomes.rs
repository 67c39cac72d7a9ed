//! The statements that change the queue after a claim: outcomes, deferrals, parking, health,
//! retention.

use std::collections::HashSet;

use pgrx::prelude::*;
use pgrx::spi::{SpiResult, SpiTupleTable};

use super::rows::{column, epoch_seconds};
use super::{Decision, Outcome, Overdue, Statements, GENERIC_PLAN};
use crate::sql::with_settings;

impl Statements {
    /// Puts (txid, id, delay in µs from the transaction's start) events back for later, attempts
    /// unchanged; the ids of those it left as they were, their rows held by another transaction
    /// (or gone).
    pub fn defer(&self, events: &[(i64, i64, i64)]) -> SpiResult<HashSet<i64>> {
        if events.is_empty() {
            return Ok(HashSet::new());
        }
        Spi::connect_mut(|client| {
            let rows = client.update(
                &self.defer,
                None,
                &[
                    column(events, |e| e.0),
                    column(events, |e| e.1),
                    column(events, |e| e.2),
                ],
            )?;
            left_of(events.iter().map(|e| e.1), rows)
        })
    }

    /// Records a batch of outcomes: finished events move to the archive with their last
    /// attempt, the others are rescheduled and their attempt logged. Must run inside one
    /// transaction, so a crash records all or nothing. Events that vanished meanwhile
    /// (unsubscribed with discard) are skipped. Finished events are looked for where their
    /// claim found them (moved without the executor where it can, see archive/), then, if any
    /// was not there, by key (see sql/worker/finish.sql).
    pub fn record(&self, outcomes: &[Outcome]) -> SpiResult<()> {
        self.record_with(&self.finish_at, Some(&self.finish), outcomes)
    }

    /// `record`, for events whose id may be in the archive already: they leave the queue and
    /// the archive row there stays (see sql/worker/finish.sql). Slower per event.
    pub fn record_over_archived(&self, outcomes: &[Outcome]) -> SpiResult<()> {
        self.record_with(&self.finish_over_archived, None, outcomes)
    }

    /// Records with `finish`, and again with `by_key` if `finish` archived fewer events than
    /// it was given; with `by_key` alone if no event's ctid is known.
    fn record_with(
        &self,
        finish: &pgrx::spi::OwnedPreparedStatement,
        by_key: Option<&pgrx::spi::OwnedPreparedStatement>,
        outcomes: &[Outcome],
    ) -> SpiResult<()> {
        let (retried, finished): (Vec<&Outcome>, Vec<&Outcome>) = outcomes
            .iter()
            .partition(|o| matches!(o.decision, Decision::Retry { .. }));
        // Where the claim's ctids are known and no callback is to be queued, the rows are
        // moved without the executor (archive/), and finish.sql searches by key for those
        // it did not find; archive/ declines tables it cannot write as finish.sql does.
        let direct = by_key.is_some()
            && finished.iter().any(|o| o.tid.is_some())
            && !finished.iter().any(|o| o.callback);
        // SAFETY: inside the caller's transaction, outside SPI.
        let moved = direct
            .then(|| unsafe { super::archive::move_finished(&finished) })
            .flatten();
        Spi::connect_mut(|client| {
            if let (Some(moved), Some(by_key)) = (&moved, by_key) {
                if !moved.totals.is_empty() {
                    client.update(
                        &self.add_totals,
                        None,
                        &[
                            column(&moved.totals, |t| t.0),
                            column(&moved.totals, |t| t.1),
                            column(&moved.totals, |t| t.2),
                        ],
                    )?;
                }
                if moved.archived < finished.len() {
                    client.update(by_key, None, &finished_args(&finished))?;
                }
            } else if !finished.is_empty() {
                let args = finished_args(&finished);
                // Outcomes with a callback to queue, or without a ctid (every claim reads it).
                let (first, then) = match by_key {
                    Some(by_key) if finished.iter().all(|o| o.tid.is_none()) => (by_key, None),
                    _ => (finish, by_key),
                };
                let archived = client.update(first, None, &args)?.len();
                if let Some(by_key) = then.filter(|_| archived < finished.len()) {
                    client.update(by_key, None, &args)?;
                }
            }
            if !retried.is_empty() {
                client.update(
                    &self.insert_attempts,
                    None,
                    &[
                        column(&retried, |o| o.event_id),
                        column(&retried, |o| o.attempt),
                        column(&retried, |o| o.subscription_id),
                        column(&retried, |o| epoch_seconds(o.started_at)),
                        column(&retried, |o| o.duration_ms),
                        column(&retried, |o| o.status_code),
                        column(&retried, |o| o.response_excerpt.clone()),
                        column(&retried, |o| o.error.clone()),
                    ],
                )?;
                client.update(
                    &self.reschedule,
                    None,
                    &[
                        column(&retried, |o| o.txid),
                        column(&retried, |o| o.event_id),
                        column(&retried, |o| o.attempt),
                        column(&retried, |o| match o.decision {
                            Decision::Retry { delay_ms } => delay_ms,
                            _ => 0,
                        }),
                        column(&retried, |o| o.last_error.clone()),
                        column(&retried, |o| o.batch),
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// The subscriptions of these outcomes some of whose queue rows another transaction holds
    /// now (see sql/worker/rows_held.sql).
    pub fn subscriptions_held(&self, outcomes: &[Outcome]) -> SpiResult<HashSet<i32>> {
        Spi::connect_mut(|client| {
            let rows = client.update(
                &self.rows_held,
                None,
                &[
                    column(outcomes, |o| o.txid),
                    column(outcomes, |o| o.event_id),
                ],
            )?;
            let mut held = HashSet::new();
            for row in rows {
                held.extend(row.get::<i32>(1)?);
            }
            Ok(held)
        })
    }

    /// Parks (txid, id, subscription id) events, if their subscription is still paused or
    /// disabled when this runs, or its owner may not read its table (`denied`); the ids of
    /// those it left as they were, their rows held by another transaction (or gone).
    pub fn park(&self, events: &[(i64, i64, i32)], denied: &[i32]) -> SpiResult<HashSet<i64>> {
        if events.is_empty() {
            return Ok(HashSet::new());
        }
        let mut subscriptions: Vec<i32> = events.iter().map(|e| e.2).collect();
        subscriptions.sort_unstable();
        subscriptions.dedup();
        Spi::connect_mut(|client| {
            let rows = client.update(
                &self.park,
                None,
                &[
                    column(events, |e| e.0),
                    column(events, |e| e.1),
                    subscriptions.into(),
                    denied.to_vec().into(),
                ],
            )?;
            left_of(events.iter().map(|e| e.1), rows)
        })
    }

    /// Those of these subscriptions whose row no other transaction holds, which the claim may
    /// write the events of without waiting (see sql/worker/subscriptions_free.sql).
    pub fn subscriptions_free(&self, subscriptions: &[i32]) -> SpiResult<HashSet<i32>> {
        if subscriptions.is_empty() {
            return Ok(HashSet::new());
        }
        Spi::connect_mut(|client| {
            let rows = client.update(
                &self.subscriptions_free,
                None,
                &[subscriptions.to_vec().into()],
            )?;
            subscriptions_of(rows)
        })
    }

    /// Makes every parked event of these subscriptions due; returns those some of whose
    /// events were left parked, their rows held by another transaction (see
    /// sql/worker/make_due.sql).
    pub fn unpark(&self, subscriptions: &[i32]) -> SpiResult<HashSet<i32>> {
        self.make_due(subscriptions, true)
    }

    /// Makes due now the events of `subscriptions` put back for their own limits (which
    /// changed; see sql/worker/make_due.sql). Returns those some of whose events it left as they
    /// were, their rows held by another transaction.
    pub fn rebook(&self, subscriptions: &[i32]) -> SpiResult<HashSet<i32>> {
        self.make_due(subscriptions, false)
    }

    fn make_due(&self, subscriptions: &[i32], parked: bool) -> SpiResult<HashSet<i32>> {
        if subscriptions.is_empty() {
            return Ok(HashSet::new());
        }
        Spi::connect_mut(|client| {
            let args = [subscriptions.to_vec().into(), parked.into()];
            subscriptions_of(client.update(&self.make_due, None, &args)?)
        })
    }

    /// For these subscriptions, why their owner may no longer read their table (`None`: it
    /// may).
    pub fn owner_access(&self, subscriptions: &[i32]) -> SpiResult<Vec<(i32, Option<String>)>> {
        if subscriptions.is_empty() {
            return Ok(Vec::new());
        }
        // Planned once (see GENERIC_PLAN): planning the view afresh was a fifth of the worker's
        // time.
        with_settings(GENERIC_PLAN, || {
            Spi::connect(|client| {
                let rows =
                    client.select(&self.owner_access, None, &[subscriptions.to_vec().into()])?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    out.push((row.get(1)?.unwrap_or_default(), row.get(2)?));
                }
                Ok(out)
            })
        })
    }

    /// Records which subscriptions now fail and which succeed.
    pub fn health(&self, changes: &[(i32, bool)]) -> SpiResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        Spi::connect_mut(|client| {
            client.update(
                &self.health,
                None,
                &[column(changes, |c| c.0), column(changes, |c| c.1)],
            )?;
            Ok(())
        })
    }

    /// Disables a subscription with the reason (`read_denied`: its owner may no longer read
    /// its table); true if it was active.
    pub fn disable(&self, id: i32, reason: &str, read_denied: bool) -> SpiResult<bool> {
        Spi::connect_mut(|client| {
            Ok(!client
                .update(
                    &self.disable,
                    None,
                    &[id.into(), reason.into(), read_denied.into()],
                )?
                .is_empty())
        })
    }

    /// Marks the subscriptions whose owner's role is gone orphans for good (whatever their
    /// status, their table there or not; not those whose row another transaction holds, marked
    /// at a later load); returns the names of those it marked, each with its table's OID while
    /// the table is there.
    pub fn mark_orphans(&self) -> SpiResult<Vec<(String, Option<pg_sys::Oid>)>> {
        Spi::connect_mut(|client| {
            let mut marked = Vec::new();
            for row in client.update(&self.mark_orphans, None, &[])? {
                marked.push((row.get::<String>(1)?.unwrap_or_default(), row.get(2)?));
            }
            Ok(marked)
        })
    }

    /// Brings a subscription's `read_denied` in line with its owner's access to its table (while
    /// the table is there), whatever its status.
    pub fn sync_read_denied(&self, id: i32) -> SpiResult<()> {
        Spi::connect_mut(|client| {
            client.update(&self.sync_read_denied, None, &[id.into()])?;
            Ok(())
        })
    }

    /// Active subscriptions failing for longer than `seconds`.
    pub fn overdue(&self, seconds: f64) -> SpiResult<Vec<Overdue>> {
        Spi::connect(|client| {
            let rows = client.select(&self.overdue, None, &[seconds.into()])?;
            let mut out = Vec::new();
            for row in rows {
                out.push((
                    row.get(1)?.unwrap_or_default(),
                    row.get(2)?.unwrap_or_default(),
                    row.get(3)?.unwrap_or_default(),
                    row.get(4)?,
                ));
            }
            Ok(out)
        })
    }

    /// Marks unsubscribed subscriptions with no event left drained, and drained ones with
    /// events found through the queue's indexes back (see sql/worker/drained.sql): how many
    /// it marked back and how many drained.
    pub fn mark_drained(&self) -> SpiResult<(i64, i64)> {
        Spi::connect_mut(|client| {
            let rows = client.update(&self.drained, None, &[])?;
            let mut counts = (0, 0);
            for row in rows {
                counts = (row.get(1)?.unwrap_or(0), row.get(2)?.unwrap_or(0));
            }
            Ok(counts)
        })
    }

    /// Marks these subscriptions not drained, as a claim read events of theirs.
    pub fn undrain(&self, subscriptions: &[i32]) -> SpiResult<()> {
        if subscriptions.is_empty() {
            return Ok(());
        }
        Spi::connect_mut(|client| {
            client.update(&self.undrain, None, &[subscriptions.to_vec().into()])?;
            Ok(())
        })
    }
}

/// The arguments of finish.sql for these finished events.
fn finished_args<'a>(finished: &[&Outcome]) -> [pgrx::datum::DatumWithOid<'a>; 13] {
    [
        column(finished, |o| o.txid),
        column(finished, |o| o.event_id),
        column(finished, |o| o.decision.outcome().to_string()),
        column(finished, |o| o.attempt),
        column(finished, |o| o.last_error.clone()),
        column(finished, |o| epoch_seconds(o.started_at)),
        column(finished, |o| o.duration_ms),
        column(finished, |o| o.status_code),
        column(finished, |o| o.response_excerpt.clone()),
        column(finished, |o| o.error.clone()),
        column(finished, |o| o.callback),
        column(finished, |o| o.response_headers.clone()),
        column(finished, |o| o.tid),
    ]
}

/// The ids of `ids` that a statement returning the ids it wrote (first column) did not.
fn left_of(ids: impl Iterator<Item = i64>, written: SpiTupleTable<'_>) -> SpiResult<HashSet<i64>> {
    let mut left: HashSet<i64> = ids.collect();
    for row in written {
        if let Some(id) = row.get::<i64>(1)? {
            left.remove(&id);
        }
    }
    Ok(left)
}

/// The subscription ids a statement returned (first column).
fn subscriptions_of(rows: SpiTupleTable<'_>) -> SpiResult<HashSet<i32>> {
    let mut ids = HashSet::new();
    for row in rows {
        ids.extend(row.get::<i32>(1)?);
    }
    Ok(ids)
}
