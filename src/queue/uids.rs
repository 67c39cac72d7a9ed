//! Subscriptions restored into another copy of their database get new uids, before anything
//! is sent from it: a copy running beside its original (a staging database restored from
//! production's dump) would otherwise send the same webhook-ids, `msg_<uid>_<event id>`, as the
//! original (the dump keeps the event id sequence too), and a receiver de-duplicating on them
//! would drop the original's events as repeats. A physical standby, a promoted one and
//! pg_upgrade keep the database's files, and so its instance and its uids (see
//! `webhook._instance` in sql/schema.sql).

use pg_webhook_core::payload::renewed_subscription_uid;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

const FOREIGN_UIDS: &str = include_str!("../../sql/worker/foreign_uids.sql");
const RENEW_UID: &str = include_str!("../../sql/worker/renew_uid.sql");

/// Gives every subscription made in another copy of this database a new uid; returns (name, old
/// uid, new uid) of each it renewed. Does nothing during recovery (a standby has its primary's
/// instance, and writes nothing).
pub fn renew_foreign_uids() -> SpiResult<Vec<(String, String, String)>> {
    // SAFETY: a plain read of shared state.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return Ok(Vec::new());
    }
    Spi::connect_mut(|client| {
        let foreign: Vec<(i32, String, String)> = client
            .select(FOREIGN_UIDS, None, &[])?
            .map(|row| {
                Ok((
                    row.get::<i32>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<String>(3)?.unwrap_or_default(),
                ))
            })
            .collect::<SpiResult<_>>()?;
        let mut renewed = Vec::new();
        for (id, old, instance) in foreign {
            // Worked out, not drawn: a renewal rolled back with its transaction and done again
            // gives the same uid, so no event goes out under two.
            let uid = renewed_subscription_uid(&old, &instance);
            let rows = client.update(RENEW_UID, None, &[id.into(), uid.as_str().into()])?;
            if let Some(row) = rows.into_iter().next() {
                let name = row.get::<String>(1)?.unwrap_or_default();
                let old = row.get::<String>(2)?.unwrap_or_default();
                renewed.push((name, old, uid));
            }
        }
        Ok(renewed)
    })
}
