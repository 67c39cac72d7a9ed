//! Whose access a DROP must remember.
//!
//! The worker holds the events of a subscription whose owner may no longer read its table, and
//! notes that on the subscription so they stay held once the table is gone (a dropped table's
//! ACL cannot be asked). A REVOKE and the DROP in one transaction, a REVOKE committed while the
//! DROP waited for its lock, or no worker running in between leave it no time to note it. So
//! whenever a table is about to be deleted — by DROP TABLE or by any CASCADE that takes it —
//! PostgreSQL's object access hook reads here, under the DROP's lock and at the latest snapshot,
//! which subscriptions are on it and whether their owners may read it, and keeps that in
//! backend memory (by table, so DROPs run by other event triggers keep theirs apart);
//! `webhook_on_sql_drop` then writes it on those subscriptions. Nothing is written or
//! row-locked before the table is gone.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;

use pgrx::prelude::*;

use crate::sql::{arg, at_latest, first_row_now, query_cstr};

const TARGET_ACCESS: &CStr = query_cstr!("target_access.sql");
const AT_DROP: &CStr = query_cstr!("read_denied_at_drop.sql");

/// (subscription, its owner could not read the table) of each table deleted in this local
/// transaction.
type Noted = HashMap<pg_sys::Oid, Vec<(i32, bool)>>;

thread_local! {
    static AT_DELETION: RefCell<(u32, Noted)> = RefCell::new((0, HashMap::new()));
}

static mut PREVIOUS_HOOK: pg_sys::object_access_hook_type = None;

/// Installs the object access hook; once per process, from `_PG_init`.
pub fn init() {
    // SAFETY: called once per process on the main thread, before any statement runs.
    unsafe {
        PREVIOUS_HOOK = pg_sys::object_access_hook;
        pg_sys::object_access_hook = Some(on_object_access);
    }
}

/// This backend's local transaction id, which tells a note of this transaction from an older
/// one's.
fn local_transaction() -> u32 {
    // SAFETY: MyProc is this backend's PGPROC, set in any backend that runs transactions.
    unsafe { (*pg_sys::MyProc).lxid }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: pg_sys::Oid,
    object_id: pg_sys::Oid,
    sub_id: std::ffi::c_int,
    arg: *mut std::ffi::c_void,
) {
    // SAFETY: the hook that was installed before ours, called as PostgreSQL would.
    unsafe {
        if let Some(previous) = PREVIOUS_HOOK {
            previous(access, class_id, object_id, sub_id, arg);
        }
    }
    // Deletions PostgreSQL makes for itself (the old heap a table rewrite swaps out, temporary
    // tables at session end) are not DROPs of a table.
    let is_drop = access == pg_sys::ObjectAccessType::OAT_DROP;
    // SAFETY: for OAT_DROP, `arg` is the ObjectAccessDrop PostgreSQL passes (or NULL).
    let internal = is_drop
        && !arg.is_null()
        && unsafe { (*arg.cast::<pg_sys::ObjectAccessDrop>()).dropflags }
            & pg_sys::PERFORM_DELETION_INTERNAL as i32
            != 0;
    if is_drop && class_id == pg_sys::RelationRelationId && sub_id == 0 && !internal {
        // SAFETY: a relation about to be deleted by this transaction, which holds its lock.
        unsafe { note_access(object_id) };
    }
}

/// Whether `relid` is a table a subscription can be on (a permanent plain or partitioned table;
/// not an index, sequence, view or temporary table, which are skipped without a query), in a
/// database with pg_webhook, and not one of pg_webhook's own (DROP EXTENSION deletes them one
/// by one).
unsafe fn ours_to_check(relid: pg_sys::Oid) -> bool {
    // SAFETY: syscache lookups inside a transaction.
    unsafe {
        let kind = pg_sys::get_rel_relkind(relid) as u8;
        if !(kind == pg_sys::RELKIND_RELATION || kind == pg_sys::RELKIND_PARTITIONED_TABLE)
            || pg_sys::get_rel_persistence(relid) as u8 == pg_sys::RELPERSISTENCE_TEMP
        {
            return false;
        }
        let namespace = pg_sys::get_namespace_oid(c"webhook".as_ptr(), true);
        namespace != pg_sys::Oid::INVALID
            && pg_sys::get_rel_namespace(relid) != namespace
            && pg_sys::get_relname_relid(c"_owner_access".as_ptr(), namespace)
                != pg_sys::Oid::INVALID
            // Not just a schema of that name: the extension (whose owner the check runs as).
            && pg_sys::get_extension_oid(c"pg_webhook".as_ptr(), true) != pg_sys::Oid::INVALID
    }
}

unsafe fn note_access(relid: pg_sys::Oid) {
    // SAFETY: see the caller.
    if !unsafe { ours_to_check(relid) } {
        return;
    }
    // At the latest snapshot: a REVOKE committed while the DROP waited for its lock counts,
    // whatever the DROP's isolation level. As the extension owner, with search_path pinned:
    // this runs inside anyone's DROP.
    let found = first_row_now(TARGET_ACCESS, &[arg(relid)], |r| {
        (
            r.get::<Vec<i32>>(1).unwrap_or_default(),
            r.get::<Vec<bool>>(2).unwrap_or_default(),
        )
    });
    let (ids, denied) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return,
        Err(e) => error!("pg_webhook: reading the access of subscriptions on a dropped table: {e}"),
    };
    if ids.is_empty() {
        return;
    }
    let lxid = local_transaction();
    AT_DELETION.with(|n| {
        let mut n = n.borrow_mut();
        if n.0 != lxid {
            *n = (lxid, HashMap::new());
        }
        n.1.insert(relid, ids.into_iter().zip(denied).collect());
    });
}

/// After a DROP deleted `tables`: notes on their subscriptions whether their owners could read
/// them when they were deleted (at the latest snapshot, as the hook read them). Inside the
/// caller's SPI connection.
pub fn note_dropped(tables: &[pg_sys::Oid]) {
    let lxid = local_transaction();
    let noted: Vec<(i32, bool)> = AT_DELETION.with(|n| {
        let mut n = n.borrow_mut();
        if n.0 != lxid {
            return Vec::new();
        }
        tables
            .iter()
            .filter_map(|t| n.1.remove(t))
            .flatten()
            .collect()
    });
    if noted.is_empty() {
        return;
    }
    let (ids, denied): (Vec<i32>, Vec<bool>) = noted.into_iter().unzip();
    at_latest(
        "noting the access of dropped tables' subscriptions",
        AT_DROP,
        &[arg(ids), arg(denied)],
        |_| {},
    );
}
