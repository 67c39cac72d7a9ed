//! Reading the callbacks waiting to run, and the owners whose callbacks wait (see
//! sql/worker/pending_callbacks.sql and owners_waiting.sql).

use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use super::BATCH;

const PENDING: &str = include_str!("../../../sql/worker/pending_callbacks.sql");
const OWNERS: &str = include_str!("../../../sql/worker/owners_waiting.sql");

/// A callback waiting to run, with what calling it needs.
pub(super) struct Pending {
    pub(super) event_id: i64,
    pub(super) subscription_id: i32,
    pub(super) owner: pg_sys::Oid,
    /// The subscription's callback (`None`: it has none any more).
    pub(super) function: Option<pg_sys::Oid>,
    pub(super) function_exists: bool,
    /// How many times a runner started this callback before (one that was stopped mid-call).
    pub(super) starts: i32,
    /// Its subscription is an orphan (its owner's role was dropped): nothing is called.
    pub(super) orphan: bool,
    /// The callback's signature, as the subscription keeps it.
    pub(super) signature: Option<String>,
    /// Where the function is gone: a function of that signature exists now (another one).
    pub(super) signature_taken: bool,
}

/// The owners whose callbacks or backfill chunks are waiting, in OID order.
pub(super) fn read_owners() -> SpiResult<Vec<pg_sys::Oid>> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(OWNERS, None, &[])? {
            if let Some(owner) = row.get(1)? {
                out.push(owner);
            }
        }
        Ok(out)
    })
}

/// The next batch of callbacks of `owner`'s subscriptions (and those that call nothing),
/// whose turns start after subscription `after`.
pub(super) fn read_pending(after: i32, owner: pg_sys::Oid) -> SpiResult<Vec<Pending>> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        let args = [BATCH.into(), after.into(), owner.into()];
        for row in client.select(PENDING, None, &args)? {
            out.push(Pending {
                event_id: row.get(1)?.unwrap_or_default(),
                subscription_id: row.get(2)?.unwrap_or_default(),
                owner: row.get(3)?.unwrap_or(pg_sys::Oid::INVALID),
                function: row.get(4)?,
                function_exists: row.get(5)?.unwrap_or(false),
                starts: row.get(6)?.unwrap_or(0),
                orphan: row.get(7)?.unwrap_or(false),
                signature: row.get(8)?,
                signature_taken: row.get(9)?.unwrap_or(false),
            });
        }
        Ok(out)
    })
}
