//! Whose access a DROP must remember (`webhook_on_drop_start`).
//!
//! The worker holds the events of a subscription whose owner may no longer read its table, and
//! notes that on the subscription so they stay held once the table is gone (a dropped table's
//! ACL cannot be asked). A REVOKE and the DROP in one transaction, or with no worker running in
//! between, leave it no time to note it. So just before any DROP (`DROP TABLE`, and every other
//! DROP whose CASCADE can take a table: a type, a domain, a function or collation a partition
//! key uses, a schema, `DROP OWNED`, ...), this reads which subscriptions' owners may not read
//! their tables, read-only, and keeps the answer in backend memory; `webhook_on_sql_drop` then
//! writes it on the subscriptions whose tables were dropped, and only on those. Nothing is
//! locked or written before the DROP, so no open transaction on a subscription can hold up
//! anyone's DROP.

use std::cell::RefCell;

use pgrx::prelude::*;

use crate::error::spi;

const DENIED: &str = include_str!("../../sql/queries/denied_owners.sql");
const AT_DROP: &str = include_str!("../../sql/queries/read_denied_at_drop.sql");

thread_local! {
    /// The subscriptions whose owners could not read their tables at the start of the last
    /// DROP, with the local transaction it ran in.
    static BEFORE_DROP: RefCell<Option<(u32, Vec<i32>)>> = const { RefCell::new(None) };
}

/// This backend's local transaction id, which tells a note of this transaction from an older
/// one's.
fn local_transaction() -> u32 {
    // SAFETY: MyProc is this backend's PGPROC, set in any backend that runs transactions.
    unsafe { (*pg_sys::MyProc).lxid }
}

/// The `event_trigger` function behind `webhook._on_drop_start()` (declared in sql/api.sql).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_webhook_on_drop_start(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr passes a valid call frame; its context is checked before it is read.
    let parsetree = unsafe {
        let context = (*fcinfo).context;
        if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_EventTriggerData {
            error!("webhook._on_drop_start() is an event trigger and cannot be called directly");
        }
        (*context.cast::<pg_sys::EventTriggerData>()).parsetree
    };
    // SAFETY: the parse tree of the command about to run, valid for this call.
    let drops = !parsetree.is_null()
        && matches!(
            unsafe { (*parsetree).type_ },
            pg_sys::NodeTag::T_DropStmt | pg_sys::NodeTag::T_DropOwnedStmt
        );
    if drops {
        let denied: Vec<i32> = spi(
            "reading which subscriptions' owners may not read their tables",
            Spi::connect(|client| {
                client
                    .select(DENIED, None, &[])?
                    .map(|r| r.get::<i32>(1).map(Option::unwrap_or_default))
                    .collect()
            }),
        );
        BEFORE_DROP.with(|b| *b.borrow_mut() = Some((local_transaction(), denied)));
    }
    pg_sys::Datum::from(0)
}

#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_pg_webhook_on_drop_start() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// After a DROP took `tables`: notes on their subscriptions whether their owners could read
/// them just before (when `webhook_on_drop_start` ran for it in this transaction).
pub fn note_dropped(
    client: &mut pgrx::spi::SpiClient<'_>,
    tables: &[pg_sys::Oid],
) -> pgrx::spi::SpiResult<()> {
    let Some(denied) = BEFORE_DROP.with(|b| {
        let mut b = b.borrow_mut();
        match b.take() {
            Some((lxid, denied)) if lxid == local_transaction() => Some(denied),
            _ => None,
        }
    }) else {
        return Ok(());
    };
    if !tables.is_empty() {
        client.update(AT_DROP, None, &[tables.to_vec().into(), denied.into()])?;
    }
    Ok(())
}
