//! Reading due events: retries, deferred and resumed events whose time has come.

use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use super::rows::read_events;
use super::{with_settings, Bounds, QueuedEvent, Statements, GENERIC_PLAN};

impl Statements {
    /// Retries whose time has come, oldest first, within `claim`.
    pub fn scheduled_events(&self, claim: Bounds, pinned: &[i32]) -> SpiResult<Vec<QueuedEvent>> {
        self.due_events(&self.claim_scheduled, claim, pinned, None)
    }

    /// Due events of the subscriptions in `each` (subscription, most events of it to read),
    /// taken in turns (see sql/worker/claim_scheduled_others.sql), within `claim`.
    pub fn scheduled_events_of_others(
        &self,
        claim: Bounds,
        pinned: &[i32],
        each: &[(i32, i64)],
    ) -> SpiResult<Vec<QueuedEvent>> {
        self.due_events(&self.claim_scheduled_others, claim, pinned, Some(each))
    }

    /// Runs one of the due reads: its parameters are `claim` and `pinned`, then `each`'s
    /// subscriptions and counts.
    fn due_events(
        &self,
        statement: &pgrx::spi::OwnedPreparedStatement,
        claim: Bounds,
        pinned: &[i32],
        each: Option<&[(i32, i64)]>,
    ) -> SpiResult<Vec<QueuedEvent>> {
        with_settings(GENERIC_PLAN, || {
            Spi::connect(|client| {
                let mut args: Vec<pgrx::datum::DatumWithOid> = vec![
                    (claim.events as i64).into(),
                    pinned.to_vec().into(),
                    claim.bytes.into(),
                    claim.largest.into(),
                ];
                if let Some(each) = each {
                    let (subscriptions, counts): (Vec<i32>, Vec<i64>) =
                        each.iter().copied().unzip();
                    args.push(subscriptions.into());
                    args.push(counts.into());
                }
                let mut events = read_events(client.select(statement, None, &args)?)?;
                for e in &mut events {
                    e.due = true;
                }
                Ok(events)
            })
        })
    }

    /// Milliseconds until the earliest scheduled retry, if any.
    pub fn ms_until_next_due(&self) -> SpiResult<Option<f64>> {
        Spi::connect(|client| {
            client
                .select(&self.next_due, Some(1), &[])?
                .first()
                .get_one::<f64>()
        })
    }
}
