//! Subscriptions' callbacks are kept by signature and bound by OID (see `callback_oid` in
//! sql/schema.sql): pg_upgrade keeps the subscriptions' rows but gives every function a new OID,
//! and a dump restored elsewhere brings another database's OIDs. Where the binding was made in
//! another copy or cluster, the worker binds the callback again by its signature, with the
//! checks `subscribe()` makes, before anything calls it.

use pgrx::prelude::*;
use pgrx::spi::SpiResult;

const REBIND: &str = include_str!("../../sql/worker/rebind_callbacks.sql");
const SIGNATURES: &str = include_str!("../../sql/worker/callback_signatures.sql");

/// This cluster's system identifier (pg_control's), which `pg_upgrade` does not keep: part of
/// `webhook._binding_key()`.
#[pg_extern(name = "_system_identifier", stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn system_identifier() -> String {
    // SAFETY: reads a value set at startup.
    unsafe { pg_sys::GetSystemIdentifier() }.to_string()
}

/// A callback bound again: its subscription, its signature and whether a function of that
/// signature that its owner may call as a callback was found (if not, it calls nothing, and
/// its callbacks fail saying so).
pub struct Rebound {
    pub subscription: String,
    pub signature: String,
    pub found: bool,
}

/// Binds again every callback bound in another copy of this database or another cluster, and
/// has the signature of every other one follow its function's renames. Nothing during recovery
/// (a standby has its primary's bindings, and writes nothing).
pub fn rebind_callbacks() -> SpiResult<Vec<Rebound>> {
    // SAFETY: a plain read of shared state.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return Ok(Vec::new());
    }
    Spi::connect_mut(|client| {
        client.update(SIGNATURES, None, &[])?;
        client
            .update(REBIND, None, &[])?
            .map(|row| {
                Ok(Rebound {
                    subscription: row.get::<String>(1)?.unwrap_or_default(),
                    signature: row.get::<String>(2)?.unwrap_or_default(),
                    found: row.get::<bool>(3)?.unwrap_or(false),
                })
            })
            .collect()
    })
}
