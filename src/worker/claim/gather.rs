//! A claim's batched events, cut into batches in the claim transaction, so that the batches of
//! new events are written down (queue::BatchOut) in the same commit that decides they go.

use pgrx::spi::SpiResult;

use super::Claim;
use crate::queue::{BatchOut, QueuedEvent};
use crate::worker::dispatch::Gathered;

impl Claim<'_> {
    /// Splits the events to start into those of batched subscriptions, gathered into batches
    /// and written down, and the others.
    pub(super) fn gather(
        &self,
        start: Vec<QueuedEvent>,
    ) -> SpiResult<(Vec<QueuedEvent>, Vec<Gathered>)> {
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
        let gathered: Vec<Gathered> = batched
            .into_iter()
            .filter_map(|(sub, events)| {
                let target = self.targets.get(&sub)?;
                Some(self.dispatcher.gather_batched(events, target))
            })
            .collect();
        let out: Vec<BatchOut> = gathered.iter().flat_map(|g| g.out()).collect();
        self.statements.batches_out(&out)?;
        Ok((others, gathered))
    }
}
