//! Batches out for the first time (of new events, or of events put off without a batch: held
//! for batch_wait, over a limit, replayed), written down before they are sent
//! (webhook._batches_out), so a batch whose worker dies before recording its outcome goes out
//! again as the same batch, under the same `webhook-id`, rather than gathered anew with
//! whatever else is queued by then.

use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};

use super::rows::column;
use super::Share;

const BATCHES_OUT: &str = include_str!("../../sql/worker/batches_out.sql");
const BATCHES_DONE: &str = include_str!("../../sql/worker/batches_done.sql");
const BATCHES_LEFT: &str = include_str!("../../sql/worker/batches_left.sql");

/// One batch of new events about to be sent: its subscription, its name (its first event's id,
/// as in the queue's `batch` column) and its events' keys (txid, id) in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOut {
    pub subscription_id: i32,
    pub batch: i64,
    pub events: Vec<(i64, i64)>,
}

pub(super) struct BatchStatements {
    out: OwnedPreparedStatement,
    done: OwnedPreparedStatement,
}

impl BatchStatements {
    pub(super) fn prepare(client: &SpiClient<'_>, share: Share) -> SpiResult<BatchStatements> {
        use pg_sys::{INT4ARRAYOID as I4A, INT8ARRAYOID as I8A};
        let out = BATCHES_OUT
            .replace("/*worker*/", &share.index.to_string())
            .replace("/*workers*/", &share.count.to_string());
        Ok(BatchStatements {
            out: super::keep_mut(client, &out, &[I4A, I8A, I4A, I4A, I8A, I8A])?,
            done: super::keep_mut(client, BATCHES_DONE, &[I4A, I8A])?,
        })
    }
}

impl super::Statements {
    /// Writes down `batches` before they are sent.
    pub fn batches_out(&self, batches: &[BatchOut]) -> SpiResult<()> {
        if batches.is_empty() {
            return Ok(());
        }
        // Each batch's events are a slice of all of them (see batches_out.sql).
        let mut slices: Vec<(i32, i32)> = Vec::with_capacity(batches.len());
        let mut members: Vec<(i64, i64)> = Vec::new();
        for b in batches {
            let first = members.len() as i32 + 1;
            members.extend(&b.events);
            slices.push((first, members.len() as i32));
        }
        Spi::connect_mut(|client| {
            client.update(
                &self.batches.out,
                None,
                &[
                    column(batches, |b| b.subscription_id),
                    column(batches, |b| b.batch),
                    column(&slices, |s| s.0),
                    column(&slices, |s| s.1),
                    column(&members, |m| m.0),
                    column(&members, |m| m.1),
                ],
            )?;
            Ok(())
        })
    }

    /// Forgets the batches (subscription, batch) whose outcome the current transaction records.
    pub fn batches_done(&self, batches: &[(i32, i64)]) -> SpiResult<()> {
        if batches.is_empty() {
            return Ok(());
        }
        Spi::connect_mut(|client| {
            client.update(
                &self.batches.done,
                None,
                &[column(batches, |b| b.0), column(batches, |b| b.1)],
            )?;
            Ok(())
        })
    }
}

/// Makes the batches that `share`'s previous worker sent and never recorded, and those of a
/// server that ran another count of workers, due again as themselves (see
/// sql/worker/batches_left.sql); how many events. For a worker that has claimed nothing yet:
/// run later, it would put back its own batches while they are out, and claims made before it
/// could send the events of a batch of another count as new ones.
pub fn take_over_batches(share: Share) -> SpiResult<usize> {
    Spi::connect_mut(|client| {
        Ok(client
            .update(
                BATCHES_LEFT,
                None,
                &[share.index.into(), share.count.into()],
            )?
            .len())
    })
}
