//! The statements behind `group_by => 'transaction'`: which transactions a subscription has
//! queued, cutting one into parts, and reading the part to send next.

use std::collections::HashMap;

use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use super::rows::read_events;
use super::{QueuedEvent, Statements};

/// A queued transaction of a grouped subscription: its txid, the lowest part still queued, and
/// whether some of its events are not cut into parts yet.
pub type TransactionHead = (i64, Option<i32>, bool);

/// The events of one part, with how many parts and events the transaction has.
pub struct Part {
    pub events: Vec<QueuedEvent>,
    pub parts: i32,
    /// Negative while the transaction is cut again (see reopen_cut.sql); 0 while it is first cut.
    pub events_total: i32,
}

impl Part {
    /// Whether the transaction's cut is done (its last event tells the size): a cut that
    /// stopped half-way leaves parts on some events and no size on the last, or the size made
    /// negative, if it was a cut again.
    pub fn cut(&self) -> bool {
        self.events_total > 0
    }
}

impl Statements {
    /// For each of `subscriptions` (id, most to return), up to that many transactions with
    /// events queued, oldest first.
    pub fn transaction_heads(
        &self,
        subscriptions: &[(i32, i64)],
    ) -> SpiResult<HashMap<i32, Vec<TransactionHead>>> {
        let mut heads: HashMap<i32, Vec<TransactionHead>> = HashMap::new();
        if subscriptions.is_empty() {
            return Ok(heads);
        }
        let ids: Vec<i32> = subscriptions.iter().map(|s| s.0).collect();
        let most: Vec<i64> = subscriptions.iter().map(|s| s.1).collect();
        Spi::connect(|client| {
            for r in client.select(&self.tx_heads, None, &[ids.into(), most.into()])? {
                let Some(sub) = r.get::<i32>(1)? else {
                    continue;
                };
                heads.entry(sub).or_default().push((
                    r.get::<i64>(2)?.unwrap_or_default(),
                    r.get::<i32>(3)?,
                    r.get::<bool>(4)?.unwrap_or(false),
                ));
            }
            Ok(heads)
        })
    }

    /// A page of a transaction's events after `after` (an event id), for cutting it: at most
    /// `limit` events and `bytes` of row images (the first event always).
    pub fn transaction_events(
        &self,
        txid: i64,
        subscription: i32,
        after: i64,
        (limit, bytes): (i64, i64),
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
                    bytes.into(),
                ],
            )?;
            read_events(rows)
        })
    }

    /// Writes (some of) a transaction's cut: the events with ids from `first` to `last` of each
    /// of `runs` (in order) go in its part; `total`, the transaction's number of events, for
    /// the last part's. False if it wrote none, another transaction holding some of their rows
    /// (see set_parts.sql).
    pub fn set_parts(
        &self,
        txid: i64,
        subscription: i32,
        runs: &[(i64, i64, i32)],
        total: Option<i32>,
    ) -> SpiResult<bool> {
        let firsts: Vec<i64> = runs.iter().map(|r| r.0).collect();
        let lasts: Vec<i64> = runs.iter().map(|r| r.1).collect();
        let parts: Vec<i32> = runs.iter().map(|r| r.2).collect();
        Spi::connect_mut(|client| {
            let written = client.update(
                &self.set_parts,
                Some(1),
                &[
                    txid.to_string().into(),
                    subscription.into(),
                    firsts.into(),
                    lasts.into(),
                    parts.into(),
                    total.into(),
                ],
            )?;
            Ok(written.first().get_one::<bool>()?.unwrap_or(false))
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
            let size = client.select(
                &self.tx_size,
                Some(1),
                &[txid.to_string().into(), subscription.into()],
            )?;
            // (No event left: taken away since the transaction was found.)
            let size = match size.is_empty() {
                true => (None, None),
                false => size.first().get_two::<i32, i32>()?,
            };
            Ok(Part {
                events,
                parts: size.0.unwrap_or_default(),
                events_total: size.1.unwrap_or_default(),
            })
        })
    }

    /// Marks a transaction as being cut again (see reopen_cut.sql): its size (`None`: no event
    /// left), or `Err(Held)` while another transaction holds its last event's row.
    pub fn reopen_cut(&self, txid: i64, subscription: i32) -> SpiResult<Result<Option<i32>, Held>> {
        Spi::connect_mut(|client| {
            let row = client.update(
                &self.reopen_cut,
                Some(1),
                &[txid.to_string().into(), subscription.into()],
            )?;
            let (size, held) = row.first().get_two::<i32, bool>()?;
            Ok(match held {
                Some(true) => Err(Held),
                _ => Ok(size),
            })
        })
    }
}

/// Rows another transaction holds: the write is left for a later claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held;
