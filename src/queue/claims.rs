//! Claims: reading the events a worker sends next (new ones in its share, a slow
//! subscription's passed ones, ordered subscriptions' key heads), and the snapshot horizon
//! they are read under.

use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use super::rows::{full_xid, read_events};
use super::{QueuedEvent, Statements, GENERIC_PLAN};
use crate::sql::with_settings;

/// How much one claim may read.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub events: usize,
    /// Bytes of row images, the first event always included.
    pub bytes: i64,
    /// Images of an event larger than this are not read at all.
    pub largest: i64,
}

impl Statements {
    /// The snapshot horizon: transactions older than this have all committed or aborted. Read
    /// from the transaction's own snapshot (taken before any claim in it), widened to 64 bits.
    pub fn horizon(&self) -> SpiResult<i64> {
        // SAFETY: called inside the worker's transaction, which pushed an active snapshot.
        let (xmin, next) = unsafe {
            let snapshot = pg_sys::GetActiveSnapshot();
            if snapshot.is_null() {
                return Ok(0);
            }
            (
                (*snapshot).xmin.into_inner(),
                pg_sys::ReadNextFullTransactionId().value,
            )
        };
        Ok(full_xid(xmin, next))
    }

    /// New events after `after` in this worker's share, at most `limit` and about `bytes` of
    /// row images (`claim.bytes`); `pinned` lists the subscriptions that are shared out whole.
    /// Images larger than `claim.largest` are not read (see `QueuedEvent::record`).
    pub fn new_events(
        &self,
        after: (i64, i64),
        claim: Bounds,
        pinned: &[i32],
    ) -> SpiResult<Vec<QueuedEvent>> {
        with_settings(GENERIC_PLAN, || {
            Spi::connect(|client| {
                let rows = client.select(
                    &self.claim_new,
                    None,
                    &[
                        after.0.into(),
                        after.1.into(),
                        (claim.events as i64).into(),
                        pinned.to_vec().into(),
                        claim.bytes.into(),
                        claim.largest.into(),
                    ],
                )?;
                read_events(rows)
            })
        })
    }

    /// New events of `subscription` after `after` up to `to` (keys), within `claim`, but none
    /// of `in_flight`: those the cursor passed while the subscription was slow.
    pub fn lagging_events(
        &self,
        subscription: i32,
        range: ((i64, i64), (i64, i64)),
        claim: Bounds,
        pinned: &[i32],
        in_flight: Vec<i64>,
    ) -> SpiResult<Vec<QueuedEvent>> {
        let (after, to) = range;
        with_settings(GENERIC_PLAN, || {
            Spi::connect(|client| {
                let rows = client.select(
                    &self.claim_lagging,
                    None,
                    &[
                        subscription.into(),
                        after.0.into(),
                        after.1.into(),
                        to.0.into(),
                        to.1.into(),
                        (claim.events as i64).into(),
                        pinned.to_vec().into(),
                        claim.bytes.into(),
                        claim.largest.into(),
                        in_flight.into(),
                    ],
                )?;
                read_events(rows)
            })
        })
    }

    /// The due heads of these ordered subscriptions' keys (subscription, most to return; the
    /// heads in flight come back too, but no head of a key with another event `in_flight`),
    /// with images up to `largest` bytes, and no more heads once theirs hold `bytes` (the
    /// first always).
    pub fn ordered_heads(
        &self,
        subscriptions: &[(i32, i32)],
        (bytes, largest): (i64, i64),
        in_flight: Vec<i64>,
    ) -> SpiResult<Vec<QueuedEvent>> {
        if subscriptions.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i32> = subscriptions.iter().map(|s| s.0).collect();
        let most: Vec<i32> = subscriptions.iter().map(|s| s.1).collect();
        Spi::connect(|client| {
            let rows = client.select(
                &self.claim_ordered,
                None,
                &[
                    ids.into(),
                    most.into(),
                    largest.into(),
                    in_flight.into(),
                    bytes.into(),
                ],
            )?;
            read_events(rows)
        })
    }
}
