//! A claim's batched events, cut into batches in the claim transaction, so that the batches of
//! new events are written down (queue::BatchOut) in the same commit that decides they go.

use pgrx::spi::SpiResult;

use super::Claim;
use crate::queue::{BatchOut, QueuedEvent};
use crate::worker::dispatch::Gathered;
use crate::worker::plan::Plan;

impl Claim<'_> {
    /// Splits the events `plan` starts into those of batched subscriptions, gathered into
    /// batches and written down, and the others. A subscription's batches take the requests the
    /// plan counted for them, and spare ones should the payload limit cut them into more; a
    /// retried batch and due events are cut first, so that new events are the ones left.
    pub(super) fn gather(&self, plan: &mut Plan) -> SpiResult<(Vec<QueuedEvent>, Vec<Gathered>)> {
        let start = std::mem::take(&mut plan.start);
        let mut others = Vec::with_capacity(start.len());
        let mut batched: Vec<(i32, Vec<QueuedEvent>)> = Vec::new();
        for event in start {
            let sub = event.subscription_id;
            if !self.targets.get(&sub).is_some_and(|t| t.batched()) {
                others.push(event);
                continue;
            }
            match batched.iter_mut().find(|(id, _)| *id == sub) {
                Some((_, list)) => list.push(event),
                None => batched.push((sub, vec![event])),
            }
        }
        let mut gathered = Vec::with_capacity(batched.len());
        for (sub, mut events) in batched {
            let Some(target) = self.targets.get(&sub) else {
                continue;
            };
            events.sort_by_key(|e| (e.batch.is_none(), !e.due));
            let counted = plan.requests_started(sub);
            let spare = plan.spare_requests(sub, Some(target));
            let g = self
                .dispatcher
                .gather_batched(events, target, counted + spare);
            plan.took_spare(sub, g.requests().saturating_sub(counted));
            gathered.push(g);
        }
        let out: Vec<BatchOut> = gathered.iter().flat_map(|g| g.out()).collect();
        self.statements.batches_out(&out)?;
        Ok((others, gathered))
    }
}

/// The first new event left for a later claim (the cursor stops before it): `first_left`, or an
/// earlier one of `fresh` that gathering left (see `Gathered::left`).
pub(super) fn first_left(
    fresh: &[QueuedEvent],
    first_left: Option<(i64, i64)>,
    gathered: &[Gathered],
) -> Option<(i64, i64)> {
    let left: std::collections::HashSet<i64> = (gathered.iter())
        .flat_map(|g| g.left().iter().map(|e| e.id))
        .collect();
    if left.is_empty() {
        return first_left;
    }
    fresh
        .iter()
        .map(|e| (e.txid, e.id))
        .find(|k| Some(*k) == first_left || left.contains(&k.1))
}
