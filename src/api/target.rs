//! The table a subscription watches: what may be subscribed, and who may subscribe it.

use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::PgSqlErrorCode;

use crate::error::{invalid, reject, spi};
use crate::privilege::{
    caller_can_select, caller_can_trigger, caller_can_use_schema_of, rls_applies_to_caller,
};
use crate::sql::first_row;

const TARGET: &str = include_str!("../../sql/queries/target_table.sql");
const PARENT: &str = include_str!("../../sql/queries/table_parent.sql");
const INHERITANCE_CHILD: &str = include_str!("../../sql/queries/inheritance_child.sql");

/// A table that may be subscribed, by the caller.
pub struct Table {
    pub oid: pg_sys::Oid,
    /// `schema.table`, quoted.
    pub qualified: String,
}

/// Looks up the target and refuses what cannot be watched safely.
pub fn check_target(target: Option<pg_sys::Oid>) -> Table {
    let Some(target) = target else {
        invalid("target must not be NULL: give the table to watch, such as 'public.orders'")
    };
    let row = spi(
        "looking up the target table",
        Spi::connect(|client| {
            first_row(client, TARGET, &[target.into()], |row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<String>(3)?.unwrap_or_default(),
                    row.get::<String>(4)?.unwrap_or_default(),
                ))
            })
        }),
    );
    let Some((kind, schema, name, persistence)) = row else {
        reject(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("target table with OID {} does not exist", target.to_u32()),
            None,
        )
    };
    let qualified = format!("{}.{}", quote_identifier(&schema), quote_identifier(&name));
    let unsupported = |what: &str, hint: &str| -> ! {
        reject(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("target {qualified} is {what}, which cannot be subscribed"),
            Some(hint),
        )
    };
    if schema == "pg_catalog" || schema == "information_schema" || schema.starts_with("pg_toast") {
        unsupported("a system catalog", "subscribe to your own tables");
    }
    if schema == "webhook" {
        unsupported(
            "one of pg_webhook's own tables",
            "subscribe to your own tables",
        );
    }
    if persistence == "t" {
        unsupported(
            "a temporary table",
            "temporary tables vanish with their session; use an ordinary table",
        );
    }
    match kind.as_str() {
        "r" | "p" => {}
        "v" => unsupported("a view", "subscribe to the table the view reads from"),
        "m" => unsupported(
            "a materialized view",
            "subscribe to the tables it is built from",
        ),
        "f" => unsupported(
            "a foreign table",
            "subscribe to the table on the server that owns it",
        ),
        _ => unsupported("not a table", "give an ordinary or partitioned table"),
    }
    if let Some(parent) = parent_of(target) {
        reject(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("cannot subscribe to {qualified}: it is a partition (or inheritance child) of {parent}, and a statement through {parent} would not fire its triggers"),
            Some(&format!("subscribe {parent}: changes written to any of its partitions, directly or through it, are sent (add a filter if only some rows matter)")),
        );
    }
    if let Some(child) = inheritance_child_of(target) {
        reject(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("cannot subscribe to {qualified}: it has the inheritance child {child}, and writes naming {child} would not be sent"),
            Some("pg_webhook follows declarative partitions, not inheritance: partition the table, or subscribe the children one by one"),
        );
    }
    check_may_read_and_attach(target, &qualified);
    // Last: only a caller who may add triggers to the table locks it.
    if let Some(foreign) = foreign_partition_of(target) {
        reject(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("cannot subscribe to {qualified}: its partition {foreign} is a foreign table, from which PostgreSQL collects no changes for triggers; writes through {qualified} that reach it would fail, and writes naming it would not be sent"),
            Some(&format!("detach the foreign partition first (ALTER TABLE ... DETACH PARTITION {foreign}), or subscribe a partitioned table that has none")),
        );
    }
    Table {
        oid: target,
        qualified,
    }
}

/// The table `target` is a partition or inheritance child of, if any.
fn parent_of(target: pg_sys::Oid) -> Option<String> {
    spi(
        "looking up the table's parent",
        Spi::get_one_with_args::<String>(PARENT, &[target.into()]),
    )
}

/// An inheritance child of `target` that is not a partition, if any.
fn inheritance_child_of(target: pg_sys::Oid) -> Option<String> {
    spi(
        "looking up the table's inheritance children",
        Spi::get_one_with_args::<String>(INHERITANCE_CHILD, &[target.into()]),
    )
}

/// A foreign table among the partitions of `target`, at any depth (PostgreSQL collects no
/// transition tuples from foreign partitions: with a capture trigger on the tree, writes
/// through it that reach one fail, and writes naming it go uncaptured).
///
/// The tree is locked first, as `CREATE TRIGGER` then locks it (SHARE ROW EXCLUSIVE, which
/// `CREATE TABLE … PARTITION OF` and `ATTACH PARTITION` conflict with), and each level is read
/// from the catalog once locked: a partition added by a transaction that committed while this
/// one waited is seen, and one added later waits for this subscription, which the event
/// trigger of that DDL then sees (`triggers::events`).
fn foreign_partition_of(target: pg_sys::Oid) -> Option<String> {
    // SAFETY: the table is locked, then find_all_inheritors locks and lists its tree (the
    // table first); the rest are syscache reads of relations this transaction has locked.
    unsafe {
        // find_all_inheritors locks the children, not the table itself.
        pg_sys::LockRelationOid(target, pg_sys::ShareRowExclusiveLock as pg_sys::LOCKMODE);
        let tree = crate::unguarded::region(|_| {
            crate::unguarded::find_all_inheritors(
                target,
                pg_sys::ShareRowExclusiveLock as pg_sys::LOCKMODE,
                std::ptr::null_mut(),
            )
        });
        for i in 0..(*tree).length {
            let relid = pg_sys::list_nth_oid(tree, i);
            if pg_sys::get_rel_relkind(relid) as u8 == pg_sys::RELKIND_FOREIGN_TABLE {
                let text = |p: *mut std::ffi::c_char| {
                    std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
                };
                let schema = text(pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid)));
                let name = text(pg_sys::get_rel_name(relid));
                return Some(format!(
                    "{}.{}",
                    quote_identifier(&schema),
                    quote_identifier(&name)
                ));
            }
        }
        None
    }
}

/// A webhook sends the table's rows (so the caller must be able to read all of them) and
/// runs in every writer's transaction, as a trigger does (so the caller must be allowed to add
/// triggers to the table).
fn check_may_read_and_attach(target: pg_sys::Oid, qualified: &str) {
    if !caller_can_use_schema_of(target) {
        reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to subscribe to {qualified}: you need USAGE on its schema"),
            Some("GRANT USAGE ON SCHEMA <its schema> TO <your role>;"),
        );
    }
    if !caller_can_select(target) {
        reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to subscribe to {qualified}: a webhook sends its rows, so you need SELECT on it"),
            Some(&format!("GRANT SELECT ON {qualified} TO <your role>;")),
        );
    }
    if !caller_can_trigger(target) {
        reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to subscribe to {qualified}: a subscription is a trigger that runs in every writer's transaction, so you need the TRIGGER privilege on it (or to own it)"),
            Some(&format!("GRANT TRIGGER ON {qualified} TO <your role>;")),
        );
    }
    if rls_applies_to_caller(target) {
        reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("cannot subscribe to {qualified}: row-level security policies limit which of its rows you may read, and a webhook would send every row"),
            Some("a role the policies do not apply to (the table's owner, or a role with BYPASSRLS) can subscribe it, with a filter if only some rows may leave"),
        );
    }
}
