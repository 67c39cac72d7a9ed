//! The event triggers that keep subscriptions' triggers right as the tables around them change:
//! partitions created, attached or detached (`webhook_on_ddl`), and tables or capture triggers
//! dropped (`webhook_on_sql_drop`).
//!
//! `webhook_on_ddl` is a C function because it must see the statement itself: it acts only on
//! commands that change which tables lie under which (CREATE TABLE ... PARTITION OF / INHERITS,
//! ALTER TABLE ... ATTACH / DETACH PARTITION, INHERIT / NO INHERIT), and on those that rename,
//! drop or retype a column (order keys: `key_columns`). Any other ALTER TABLE is
//! left alone — in particular the ones pg_restore runs after it has restored the subscriptions
//! but before it restores their triggers, which must not find them already made. It also
//! refuses `CREATE OR REPLACE TRIGGER` over a capture trigger (`refuse_replaced`).

use std::collections::BTreeSet;

use pgrx::prelude::*;
use pgrx::PgList;

use super::{base_name, diff, existing, functions, sync, LIVE, SYNCING, UNPARK_NOW, UNSUBSCRIBE};
use crate::capture::named_subscription;
use crate::error::spi;
use crate::privilege::as_extension_owner;
use crate::sql::{arg, at_latest, query_cstr};

const OVER_NOW: &std::ffi::CStr = query_cstr!("subscriptions_over.sql");
const CHILDREN_NOW: &std::ffi::CStr = query_cstr!("subscribed_children.sql");
const FOREIGN_NOW: &std::ffi::CStr = query_cstr!("subscribed_foreign_partitions.sql");
const DDL_TABLES: &str = include_str!("../../sql/queries/ddl_tables.sql");
const DDL_TYPES: &str = include_str!("../../sql/queries/ddl_types.sql");
const DDL_TRIGGER_TABLES: &str = include_str!("../../sql/queries/ddl_trigger_tables.sql");
const DOING: &str = "noticing dropped tables and triggers";
const DOING_DDL: &str = "finding the subscriptions a DDL command touches";

/// The `event_trigger` function behind `webhook._on_ddl()` (declared in sql/internals.sql).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_webhook_on_ddl(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fmgr passes a valid call frame; its context is checked before it is read.
    let parsetree = unsafe {
        let context = (*fcinfo).context;
        if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_EventTriggerData {
            error!("webhook._on_ddl() is an event trigger and cannot be called directly");
        }
        (*context.cast::<pg_sys::EventTriggerData>()).parsetree
    };
    // SAFETY: the parse tree of the command that fired the trigger, valid for this call. (A
    // trigger pg_webhook makes is never a replacement.)
    if unsafe { replaces_trigger(parsetree) } && SYNCING.with(std::cell::Cell::get) == 0 {
        let relids = oids_of(
            "reading the tables of the replaced trigger",
            DDL_TRIGGER_TABLES,
        );
        if !relids.is_empty() {
            refuse_replaced(relids);
        }
    }
    // SAFETY: as above.
    let (inheritance, columns) = unsafe {
        (
            changes_inheritance(parsetree),
            super::key_columns::column_changes(parsetree),
        )
    };
    if inheritance || !columns.is_empty() {
        let relids = oids_of("reading the tables of the DDL command", DDL_TABLES);
        if !relids.is_empty() && !columns.is_empty() {
            super::key_columns::changed(&relids, &columns);
        }
        if !relids.is_empty() && inheritance {
            tables_changed(relids);
        }
    }
    if columns.type_altered {
        let types = oids_of("reading the types of the DDL command", DDL_TYPES);
        if !types.is_empty() {
            super::key_types::types_altered(&types);
        }
    }
    pg_sys::Datum::from(0)
}

/// The OIDs `query` (about the command that fired the trigger) returns.
fn oids_of(doing: &str, query: &str) -> Vec<pg_sys::Oid> {
    spi(
        doing,
        Spi::connect(|client| {
            client
                .select(query, None, &[])?
                .map(|r| r.get::<pg_sys::Oid>(1).map(Option::unwrap_or_default))
                .collect()
        }),
    )
}

#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_pg_webhook_on_ddl() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// Whether the statement makes a table a partition or inheritance child, or stops it being one.
///
/// # Safety
/// `node` is a parse tree (or null).
unsafe fn changes_inheritance(node: *mut pg_sys::Node) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: the node tag says which struct it is.
    unsafe {
        match (*node).type_ {
            // CREATE FOREIGN TABLE's statement starts with a CreateStmt.
            pg_sys::NodeTag::T_CreateStmt | pg_sys::NodeTag::T_CreateForeignTableStmt => {
                let create = node.cast::<pg_sys::CreateStmt>();
                !(*create).partbound.is_null() || !(*create).inhRelations.is_null()
            }
            pg_sys::NodeTag::T_AlterTableStmt => {
                let alter = node.cast::<pg_sys::AlterTableStmt>();
                PgList::<pg_sys::AlterTableCmd>::from_pg((*alter).cmds)
                    .iter_ptr()
                    .any(|cmd| {
                        matches!(
                            (*cmd).subtype,
                            pg_sys::AlterTableType::AT_AttachPartition
                                | pg_sys::AlterTableType::AT_DetachPartition
                                | pg_sys::AlterTableType::AT_DetachPartitionFinalize
                                | pg_sys::AlterTableType::AT_AddInherit
                                | pg_sys::AlterTableType::AT_DropInherit
                        )
                    })
            }
            // CREATE SCHEMA ... CREATE TABLE ... PARTITION OF runs its elements as subcommands.
            pg_sys::NodeTag::T_CreateSchemaStmt => {
                let schema = node.cast::<pg_sys::CreateSchemaStmt>();
                PgList::<pg_sys::Node>::from_pg((*schema).schemaElts)
                    .iter_ptr()
                    .any(|element| changes_inheritance(element))
            }
            _ => false,
        }
    }
}

/// The live subscriptions over `relids` (on them or a table above them, sql/queries/
/// subscriptions_over.sql), at the latest snapshot. Within an SPI connection.
fn subscriptions_over(doing: &str, relids: &[pg_sys::Oid]) -> BTreeSet<i32> {
    let mut ids = BTreeSet::new();
    at_latest(doing, OVER_NOW, &[arg(relids.to_vec())], |r| {
        ids.insert(r.get::<i32>(1).unwrap_or_default());
    });
    ids
}

/// Whether the statement is `CREATE OR REPLACE TRIGGER`.
///
/// # Safety
/// `node` is a parse tree (or null).
unsafe fn replaces_trigger(node: *mut pg_sys::Node) -> bool {
    // SAFETY: the node tag says which struct it is.
    unsafe {
        !node.is_null()
            && (*node).type_ == pg_sys::NodeTag::T_CreateTrigStmt
            && (*node.cast::<pg_sys::CreateTrigStmt>()).replace
    }
}

/// Refuses a `CREATE OR REPLACE TRIGGER` that replaced a trigger of a subscription over one of
/// `relids` (the tables of the command's trigger): the capture stopped at once, while the
/// subscription looked live until the worker's trigger check ended it, saying it was dropped.
/// The table's owner may still end it, by `DROP TRIGGER` (which unsubscribes it).
fn refuse_replaced(relids: Vec<pg_sys::Oid>) {
    const DOING_REPLACE: &str = "checking the trigger a CREATE OR REPLACE TRIGGER replaced";
    let replaced = as_extension_owner(|| {
        spi(
            DOING_REPLACE,
            Spi::connect(|_client| {
                let ids = subscriptions_over(DOING_REPLACE, &relids);
                if ids.is_empty() {
                    return Ok(None);
                }
                let funcs = functions();
                let have = existing(funcs, None);
                Ok(ids.into_iter().find_map(|id| {
                    let missing = diff(id, funcs, &have).missing;
                    (missing.into_iter())
                        .find(|m| relids.contains(&m.relid))
                        .map(|m| (base_name(id, m.kind), m.table))
                }))
            }),
        )
    });
    if let Some((trigger, table)) = replaced {
        crate::error::reject(
            pgrx::PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            format!(
                "trigger {trigger} on {table} is a webhook subscription's and cannot be replaced: its table's changes would no longer be sent"
            ),
            Some(&format!(
                "give your trigger another name; to stop sending the table's changes, unsubscribe it (webhook.unsubscribe) or DROP TRIGGER {trigger} ON {table}"
            )),
        );
    }
}

/// After a command changed which tables lie under `relids`: a new or attached partition gets
/// its subscriptions' triggers, a detached one loses them, and a subscribed table cannot
/// quietly become a partition.
fn tables_changed(relids: Vec<pg_sys::Oid>) {
    let ids = as_extension_owner(|| {
        spi(
            DOING_DDL,
            Spi::connect(|_client| {
                let mut ids = subscriptions_over(DOING_DDL, &relids);
                let mut links = Vec::new();
                at_latest(DOING_DDL, CHILDREN_NOW, &[], |r| {
                    let text = |n| r.get::<String>(n).unwrap_or_default();
                    links.push((
                        [text(1), text(2), text(3), text(4)],
                        text(5),
                        r.get::<bool>(6).unwrap_or(false),
                    ));
                });
                for ([name, target, child, parent], xmin, is_child) in links {
                    if made_now(&xmin) {
                        refuse_link(&name, &target, &child, &parent, is_child);
                    }
                }
                at_latest(DOING_DDL, FOREIGN_NOW, &[], |r| {
                    let text = |n| r.get::<String>(n).unwrap_or_default();
                    let xmins = r.get::<Vec<String>>(5).unwrap_or_default();
                    if xmins.iter().any(|xmin| made_now(xmin)) {
                        refuse_foreign(&text(1), &text(2), &text(3), &text(4));
                    }
                });
                let funcs = functions();
                for t in existing(funcs, Some(&relids)) {
                    if let Some(id) = named_subscription(&t.args) {
                        ids.insert(id);
                    }
                }
                Ok(ids)
            }),
        )
    });
    for id in ids {
        sync(id);
    }
}

/// Whether the row whose xmin is `xmin` (as text) was written by the current transaction.
fn made_now(xmin: &str) -> bool {
    let xmin = pg_sys::TransactionId::from(xmin.parse::<u32>().unwrap_or(0));
    // SAFETY: a check against this backend's own transaction state.
    unsafe { pg_sys::TransactionIdIsCurrentTransactionId(xmin) }
}

/// Refuses a foreign table as a partition under a subscribed table.
fn refuse_foreign(name: &str, table: &str, child: &str, parent: &str) -> ! {
    crate::error::reject(
        pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!(
            "foreign table {child} (under {parent}) cannot be in the partition tree of {table}, which webhook subscription \"{name}\" watches: PostgreSQL collects no changes from foreign partitions for triggers (writes through {table} reaching it would fail, and writes naming it would not be sent)"
        ),
        Some(&format!(
            "keep foreign tables out of subscribed partition trees, or unsubscribe first (SELECT webhook.unsubscribe({}))",
            pgrx::spi::quote_literal(name)
        )),
    )
}

/// Refuses a link between a subscribed table and another that the subscription cannot follow.
fn refuse_link(name: &str, table: &str, child: &str, parent: &str, table_is_child: bool) -> ! {
    let message = if table_is_child {
        format!(
            "table {table} is subscribed by webhook subscription \"{name}\" and cannot become a partition or inheritance child of {parent}: a statement through {parent} would not fire its triggers, and those changes would not be sent"
        )
    } else {
        format!(
            "table {table} is subscribed by webhook subscription \"{name}\" and cannot get the inheritance child {child}: writes naming {child} would not be sent (pg_webhook follows declarative partitions, not inheritance)"
        )
    };
    crate::error::reject(
        pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        message,
        Some(&format!(
            "partition the table declaratively, or unsubscribe it first (SELECT webhook.unsubscribe({}))",
            pgrx::spi::quote_literal(name)
        )),
    )
}

/// After DROP of anything (the `webhook_on_sql_drop` event trigger): a subscription whose table
/// was dropped (`tables`, with `what` describing each) is unsubscribed; so is one that lost a
/// capture trigger dropped by hand from one of `trigger_tables` (the tables, still there, that
/// the command dropped triggers from), and its other triggers go too. Their queued events are
/// still delivered, parked ones included.
#[pg_extern(name = "_on_dropped", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn on_dropped(tables: Vec<pg_sys::Oid>, what: Vec<String>, trigger_tables: Vec<pg_sys::Oid>) {
    // A key column dropped under queued events of its subscription refuses the command.
    super::key_columns::dropped();
    // While pg_webhook itself replaces triggers, a dropped one is about to come back.
    let check_triggers = !trigger_tables.is_empty() && SYNCING.with(std::cell::Cell::get) == 0;
    let ended = as_extension_owner(|| {
        spi(
            "noticing dropped tables and triggers",
            Spi::connect(|_client| {
                // pg_webhook's own rows, like the catalogs DDL works on, at the latest
                // snapshot: under REPEATABLE READ the transaction's may predate a subscription
                // on the dropped table or the worker's last change to its row.
                let mut subs = Vec::new();
                at_latest(DOING, LIVE, &[], |r| {
                    subs.push((
                        r.get::<i32>(1).unwrap_or_default(),
                        r.get::<pg_sys::Oid>(2).unwrap_or(pg_sys::Oid::INVALID),
                    ));
                });
                let over = match check_triggers {
                    true => subscriptions_over(DOING, &trigger_tables),
                    false => BTreeSet::new(),
                };
                let funcs = functions();
                let have = if over.is_empty() {
                    Vec::new()
                } else {
                    existing(funcs, None)
                };
                let mut ended = Vec::new();
                for (id, target) in subs {
                    let reason = match tables.iter().position(|t| *t == target) {
                        Some(i) => Some(format!(
                            "{} was dropped",
                            what.get(i).map_or("its table", String::as_str)
                        )),
                        None if over.contains(&id) => {
                            diff(id, funcs, &have).missing.first().map(|m| {
                                format!(
                                    "its trigger {} on {} was dropped",
                                    base_name(id, m.kind),
                                    m.table
                                )
                            })
                        }
                        None => None,
                    };
                    let Some(reason) = reason else {
                        continue;
                    };
                    if at_latest(DOING, UNSUBSCRIBE, &[arg(id), arg(reason)], |_| {}) > 0 {
                        ended.push(id);
                    }
                }
                // Before the events go back to the queue: which of them stay held.
                super::drop_access::note_dropped(&tables);
                if !ended.is_empty() {
                    at_latest(DOING, UNPARK_NOW, &[arg(ended.clone())], |_| {});
                }
                Ok(ended)
            }),
        )
    });
    for id in &ended {
        sync(*id);
    }
    if !ended.is_empty() {
        crate::wake::note_config_changed();
    }
}
