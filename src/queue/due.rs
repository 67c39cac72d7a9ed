//! Reading due events: retries, deferred and resumed events whose time has come.

use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use super::{read_events, with_settings, Bounds, QueuedEvent, Statements, GENERIC_PLAN};

impl Statements {
    /// Retries whose time has come, oldest first, within `claim`.
    pub fn scheduled_events(&self, claim: Bounds, pinned: &[i32]) -> SpiResult<Vec<QueuedEvent>> {
        with_settings(GENERIC_PLAN, || {
            Spi::connect(|client| {
                let rows = client.select(
                    &self.claim_scheduled,
                    None,
                    &[
                        (claim.events as i64).into(),
                        pinned.to_vec().into(),
                        claim.bytes.into(),
                        claim.largest.into(),
                    ],
                )?;
                let mut events = read_events(rows)?;
                for e in &mut events {
                    e.due = true;
                }
                Ok(events)
            })
        })
    }

    /// Due events of the subscriptions not in `left_out`, at most `each` of each, taken in
    /// turns (see sql/worker/claim_scheduled_others.sql), within `claim`.
    pub fn scheduled_events_of_others(
        &self,
        claim: Bounds,
        pinned: &[i32],
        left_out: &[i32],
        each: usize,
    ) -> SpiResult<Vec<QueuedEvent>> {
        with_settings(GENERIC_PLAN, || {
            Spi::connect(|client| {
                let rows = client.select(
                    &self.claim_scheduled_others,
                    None,
                    &[
                        (claim.events as i64).into(),
                        pinned.to_vec().into(),
                        claim.bytes.into(),
                        claim.largest.into(),
                        left_out.to_vec().into(),
                        (each as i64).into(),
                    ],
                )?;
                let mut events = read_events(rows)?;
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
