//! The statements behind `group_by => 'transaction'`: which transactions a subscription has
//! queued, cutting one into parts, and reading the part to send next.

use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use super::rows::read_events;
use super::{QueuedEvent, Statements};

/// A queued transaction of a grouped subscription: its txid, the lowest part still queued, and
/// whether some of its events are not cut into parts yet.
type TransactionHead = (i64, Option<i32>, bool);

/// The events of one part, with how many parts and events the transaction has.
pub struct Part {
    pub events: Vec<QueuedEvent>,
    pub parts: i32,
    pub events_total: i32,
}

impl Statements {
    /// Up to `most` transactions with events queued for `subscription`, oldest first.
    pub fn transaction_heads(
        &self,
        subscription: i32,
        most: i64,
    ) -> SpiResult<Vec<TransactionHead>> {
        Spi::connect(|client| {
            client
                .select(&self.tx_heads, None, &[subscription.into(), most.into()])?
                .map(|r| {
                    Ok((
                        r.get::<i64>(1)?.unwrap_or_default(),
                        r.get::<i32>(2)?,
                        r.get::<bool>(3)?.unwrap_or(false),
                    ))
                })
                .collect()
        })
    }

    /// A page of a transaction's events after `after` (an event id), for cutting it.
    pub fn transaction_events(
        &self,
        txid: i64,
        subscription: i32,
        after: i64,
        limit: i64,
        largest: i64,
    ) -> SpiResult<Vec<QueuedEvent>> {
        Spi::connect(|client| {
            let rows = client.select(
                &self.tx_events,
                None,
                &[
                    txid.to_string().into(),
                    subscription.into(),
                    after.into(),
                    limit.into(),
                    largest.into(),
                ],
            )?;
            read_events(rows)
        })
    }

    /// Writes (a page of) a transaction's cut: each of `ids` goes in the part at the same place
    /// in `parts`; `total`, the transaction's number of events, for the last page.
    pub fn set_parts(
        &self,
        txid: i64,
        subscription: i32,
        ids: Vec<i64>,
        parts: Vec<i32>,
        total: Option<i32>,
    ) -> SpiResult<()> {
        Spi::connect_mut(|client| {
            client.update(
                &self.set_parts,
                None,
                &[
                    txid.to_string().into(),
                    subscription.into(),
                    ids.into(),
                    parts.into(),
                    total.into(),
                ],
            )?;
            Ok(())
        })
    }

    /// Part `part` of a transaction, if it is due.
    pub fn transaction_part(
        &self,
        txid: i64,
        subscription: i32,
        part: i32,
        largest: i64,
    ) -> SpiResult<Part> {
        Spi::connect(|client| {
            let rows = client.select(
                &self.tx_part,
                None,
                &[
                    txid.to_string().into(),
                    subscription.into(),
                    part.into(),
                    largest.into(),
                ],
            )?;
            let events = read_events(rows)?;
            let size = client
                .select(
                    &self.tx_size,
                    Some(1),
                    &[txid.to_string().into(), subscription.into()],
                )?
                .first()
                .get_two::<i32, i32>()?;
            Ok(Part {
                events,
                parts: size.0.unwrap_or_default(),
                events_total: size.1.unwrap_or_default(),
            })
        })
    }
}
