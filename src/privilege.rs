//! Acting as the extension's owner for the few writes users may not make themselves.
//!
//! Users get no privileges on the private tables: a role that could INSERT into the queue could
//! forge signed webhooks. The capture trigger and the SQL API therefore switch to the extension
//! owner just around their own statements, after doing their own permission checks as the caller.

use std::cell::Cell;

use pgrx::prelude::*;

thread_local! {
    static OWNER: Cell<Option<pg_sys::Oid>> = const { Cell::new(None) };
}

/// The role that owns the extension (and so its tables).
pub fn extension_owner() -> pg_sys::Oid {
    if let Some(oid) = OWNER.with(Cell::get) {
        return oid;
    }
    let owner = Spi::connect(|client| {
        client
            .select(
                "SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'pg_webhook'",
                Some(1),
                &[],
            )?
            .first()
            .get_one::<pg_sys::Oid>()
    });
    match owner {
        Ok(Some(oid)) => {
            OWNER.with(|o| o.set(Some(oid)));
            oid
        }
        Ok(None) => error!("pg_webhook: extension is not installed in this database"),
        Err(e) => error!("pg_webhook: could not look up the extension owner: {e}"),
    }
}

/// Forgets the cached owner (after DROP/CREATE EXTENSION in the same session).
pub fn forget_owner() {
    OWNER.with(|o| o.set(None));
}

/// The role the caller is acting as (`current_user`).
pub fn caller() -> pg_sys::Oid {
    // SAFETY: GetUserId is valid in any backend with a transaction.
    unsafe { pg_sys::GetUserId() }
}

/// Runs `f` as the extension owner in a security-restricted context, then switches back. If `f`
/// raises an ERROR, transaction (or subtransaction) abort restores the user id.
pub fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    as_role(extension_owner(), f)
}

/// Runs `f` as `role` in a security-restricted context, then switches back (an ERROR inside is
/// undone by the (sub)transaction abort).
pub fn as_role<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let mut saved_user = pg_sys::Oid::INVALID;
    let mut saved_context = 0;
    // SAFETY: plain reads/writes of the backend's user id state.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            role,
            saved_context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
    }
    let result = f();
    // SAFETY: restores exactly what was saved above.
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_context) };
    result
}

/// True when the caller may read the table (so may make its rows leave the database).
pub fn caller_can_select(table: pg_sys::Oid) -> bool {
    // SAFETY: pg_class_aclcheck only reads the catalog; the table exists (checked by caller).
    unsafe {
        pg_sys::pg_class_aclcheck(table, caller(), pg_sys::ACL_SELECT as pg_sys::AclMode)
            == pg_sys::AclResult::ACLCHECK_OK
    }
}

/// True when the caller is a superuser or has the privileges of `role`.
pub fn caller_acts_as(role: pg_sys::Oid) -> bool {
    // SAFETY: catalog reads only.
    unsafe { pg_sys::superuser() || pg_sys::has_privs_of_role(caller(), role) }
}
