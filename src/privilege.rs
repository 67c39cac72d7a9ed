//! Acting as the extension's owner for the few writes users may not make themselves.
//!
//! Users get no privileges on the private tables: a role that could INSERT into the queue could
//! forge signed webhooks. The capture trigger and the SQL API therefore switch to the extension
//! owner just around their own statements, after doing their own permission checks as the caller.

use std::cell::Cell;

use pgrx::prelude::*;

const EXTENSION_OWNER: &str = include_str!("../sql/queries/extension_owner.sql");
const VISIBLE_SUBSCRIPTIONS: &str = include_str!("../sql/queries/visible_subscription_ids.sql");

thread_local! {
    /// The extension owner, and the OID of the table `webhook._subscriptions` it was read with:
    /// an invalidation of that table (DROP EXTENSION drops it) forgets the owner.
    static OWNER: Cell<Option<(pg_sys::Oid, pg_sys::Oid)>> = const { Cell::new(None) };
}

/// Forgets the owner after a relation cache invalidation of `webhook._subscriptions` (see
/// `crate::invalidation`). Without it a session that had used pg_webhook went on acting as the
/// owner of an extension dropped and created again by another role (or as a role since
/// dropped). Must not raise an ERROR or allocate in Postgres.
pub fn forget_relation(relid: pg_sys::Oid) {
    OWNER.with(|o| {
        if o.get()
            .is_some_and(|(_, table)| relid == pg_sys::Oid::INVALID || relid == table)
        {
            o.set(None);
        }
    });
}

/// The OID of `webhook._subscriptions` (invalid when there is none).
fn subscriptions_table() -> pg_sys::Oid {
    crate::sql::webhook_relation(c"_subscriptions")
}

/// The role that owns the extension (and so its tables).
pub fn extension_owner() -> pg_sys::Oid {
    if let Some((oid, _)) = OWNER.with(Cell::get) {
        return oid;
    }
    // The owner is cached with the table only if the extension was not made again while it
    // was read (the table is the same before and after).
    let table = subscriptions_table();
    let owner = Spi::connect(|client| {
        client
            .select(EXTENSION_OWNER, Some(1), &[])?
            .first()
            .get_one::<pg_sys::Oid>()
    });
    match owner {
        Ok(Some(oid)) => {
            if table != pg_sys::Oid::INVALID && subscriptions_table() == table {
                OWNER.with(|o| o.set(Some((oid, table))));
            }
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

/// Runs user-written SQL (a filter, a callback) the way PostgreSQL runs an index expression or a
/// materialized view's query for its owner: as `role`, in a security-restricted operation (no
/// SET ROLE, no temporary objects), in a GUC nest level of its own with `search_path` pinned to
/// `pg_catalog, pg_temp`, SQL parsed as `sql::PARSING` says (as it was checked), and every setting it changes — `set_config(..., false)` included —
/// thrown away afterwards, so nothing leaks into the session that runs it. On an ERROR the
/// (sub)transaction abort restores the user and pops the nest level.
pub fn as_owner_sandboxed<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    as_role(role, || {
        let mut settings = vec![(c"search_path", c"pg_catalog, pg_temp")];
        settings.extend(crate::sql::PARSING);
        crate::sql::with_settings(&settings, f)
    })
}

/// Runs `f`, which only reads, as the table's owner `role` (PostgreSQL's maintenance rule for
/// a table's own code): sandboxed (`as_owner_sandboxed`), read-only and in a subtransaction
/// rolled back afterwards. Its result must be in memory that outlives the subtransaction (the
/// caller's context, current when `f` runs).
pub fn as_table_owner_read_only<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    crate::error::undone(|| as_owner_sandboxed(role, || read_only(f)))
}

/// Runs `f`, which only reads, with the transaction read-only (in a GUC nest level of its own,
/// undone afterwards or by the abort of an ERROR): user SQL in it can write no table and no
/// sequence (`nextval`/`setval`, which a rollback does not undo), so it cannot keep what it
/// reads there. (NOTIFY is allowed read-only; capture's rollback discards it.)
pub fn read_only<R>(f: impl FnOnce() -> R) -> R {
    crate::sql::with_settings(&[(c"transaction_read_only", c"on")], f)
}

/// Runs `check` (reading or planning user-written SQL) as `role`, sandboxed, in a
/// subtransaction: its result, or what is wrong, for an error that names the user's input.
pub fn sandboxed_check<T>(
    role: pg_sys::Oid,
    check: impl FnOnce(&pgrx::spi::SpiClient<'_>) -> Result<T, pgrx::spi::SpiError>,
) -> Result<T, String> {
    let checked =
        crate::error::in_subtransaction(|| as_owner_sandboxed(role, || Spi::connect(check)));
    match checked {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(message) => Err(message),
    }
}

/// Prepares user-written `query` as `role`, sandboxed, without running it, and checks what it
/// would run (`checked_sql`): what is wrong with it (`None`: nothing).
pub fn plan_problem(role: pg_sys::Oid, query: &str) -> Option<String> {
    sandboxed_check(role, |client| {
        crate::checked_sql::prepare(client, query, &[], None).map(|_| ())
    })
    .err()
}

fn table_privilege(table: pg_sys::Oid, role: pg_sys::Oid, mode: u32) -> bool {
    // SAFETY: pg_class_aclcheck only reads the catalog; the table exists (checked by caller).
    unsafe {
        pg_sys::pg_class_aclcheck(table, role, mode as pg_sys::AclMode)
            == pg_sys::AclResult::ACLCHECK_OK
    }
}

/// True when the caller may read the table (so may make its rows leave the database).
pub fn caller_can_select(table: pg_sys::Oid) -> bool {
    table_privilege(table, caller(), pg_sys::ACL_SELECT)
}

/// True when the caller has USAGE on the table's schema (a role without it cannot read the
/// table by name, so may not make its rows leave by subscribing).
pub fn caller_can_use_schema_of(table: pg_sys::Oid) -> bool {
    // SAFETY: catalog reads; the table exists (checked by caller).
    unsafe {
        let namespace = pg_sys::get_rel_namespace(table);
        pg_sys::pg_namespace_aclcheck(namespace, caller(), pg_sys::ACL_USAGE as pg_sys::AclMode)
            == pg_sys::AclResult::ACLCHECK_OK
    }
}

/// True when `role` may take a SHARE lock on `table` as `LOCK TABLE ... IN SHARE MODE` lets it:
/// with UPDATE, DELETE or TRUNCATE on it.
pub fn may_lock_in_share_mode(table: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    table_privilege(
        table,
        role,
        pg_sys::ACL_UPDATE | pg_sys::ACL_DELETE | pg_sys::ACL_TRUNCATE,
    )
}

/// True when `role` may take a SHARE lock on `table` and every table under it (partitions,
/// inheritance children), as `LOCK TABLE ... IN SHARE MODE` of it requires.
pub fn may_lock_tree_in_share_mode(table: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    table_tree(table)
        .into_iter()
        .all(|relid| may_lock_in_share_mode(relid, role))
}

/// `table` and the partitions and inheritance children under it.
pub fn table_tree(table: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    // SAFETY: catalog reads of an existing table.
    unsafe {
        let tree = crate::unguarded::find_all_inheritors(
            table,
            pg_sys::NoLock as i32,
            std::ptr::null_mut(),
        );
        pgrx::PgList::<std::ffi::c_void>::from_pg(tree)
            .iter_oid()
            .collect()
    }
}

/// True when the caller may attach triggers to the table (owners and superusers may).
pub fn caller_can_trigger(table: pg_sys::Oid) -> bool {
    table_privilege(table, caller(), pg_sys::ACL_TRIGGER)
}

/// The owner of `table`, an existing table.
pub fn table_owner(table: pg_sys::Oid) -> pg_sys::Oid {
    // SAFETY: the caller knows the table exists; its descriptor is read under the lock.
    unsafe {
        let rel = pg_sys::relation_open(table, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let owner = (*(*rel).rd_rel).relowner;
        pg_sys::relation_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        owner
    }
}

/// True when row-level security policies would filter what the caller reads from the table
/// (not for its owner without FORCE ROW LEVEL SECURITY, nor for BYPASSRLS roles).
pub fn rls_applies_to_caller(table: pg_sys::Oid) -> bool {
    // SAFETY: a catalog read; with noError it never raises for row_security = off.
    unsafe {
        pg_sys::check_enable_rls(table, caller(), true)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
    }
}

/// Whether `role` may read `table` whole: SELECT on it, USAGE on its schema, and no row-level
/// security policy applying to it (what the worker checks of a subscription's owner, see
/// `webhook._owner_access`).
pub fn may_read_whole(table: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    // SAFETY: catalog reads of an existing table (a trigger's, or checked by the caller);
    // check_enable_rls with noError never raises.
    unsafe {
        table_privilege(table, role, pg_sys::ACL_SELECT)
            && pg_sys::pg_namespace_aclcheck(
                pg_sys::get_rel_namespace(table),
                role,
                pg_sys::ACL_USAGE as pg_sys::AclMode,
            ) == pg_sys::AclResult::ACLCHECK_OK
            && pg_sys::check_enable_rls(table, role, true)
                != pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
    }
}

/// The ids of the subscriptions the caller may see in `webhook.subscriptions`.
pub fn visible_subscriptions() -> std::collections::HashSet<i32> {
    crate::error::spi(
        "reading which subscriptions the caller may see",
        Spi::connect(|client| {
            let mut ids = std::collections::HashSet::new();
            for row in client.select(VISIBLE_SUBSCRIPTIONS, None, &[])? {
                if let Some(id) = row.get::<i32>(1)? {
                    ids.insert(id);
                }
            }
            Ok(ids)
        }),
    )
}

/// True when the caller is a superuser or has the privileges of `role`.
pub fn caller_acts_as(role: pg_sys::Oid) -> bool {
    // SAFETY: catalog reads only.
    unsafe { pg_sys::superuser() || pg_sys::has_privs_of_role(caller(), role) }
}

/// A role's name, for messages (`with OID n` when there is no such role).
pub fn role_name(role: pg_sys::Oid) -> String {
    // SAFETY: a syscache lookup; `true`: NULL when there is no such role.
    let name = unsafe { pg_sys::GetUserNameFromId(role, true) };
    if name.is_null() {
        format!("with OID {}", role.to_u32())
    } else {
        // SAFETY: a NUL-terminated name from the catalog.
        unsafe { std::ffi::CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    }
}
