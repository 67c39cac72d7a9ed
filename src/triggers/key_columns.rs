//! A subscription's order key across DDL on its columns (`webhook_on_ddl`). Capture finds the
//! key's columns by name and hashes their values with their types' hash functions; the worker
//! holds an event back only behind queued events of the same hash. A key column renamed,
//! dropped or given another type or collation made one key hash differently from then on, so
//! events written after the change went out beside queued ones of their key: a receiver
//! applying them as they came kept a stale row.
//!
//! So a renamed key column stays the key (the subscription's row follows the new name, and
//! capture hashes the same values the same way), and a key column is dropped or retyped only
//! while its subscription has no event queued: the command is refused otherwise. The command
//! holds its table's ACCESS EXCLUSIVE lock until it commits, so no event of the table is
//! written between the check and the change.

use std::ffi::CStr;

use pgrx::prelude::*;
use pgrx::PgList;

use crate::error::{reject, spi};
use crate::privilege::as_extension_owner;
use crate::sql::{arg, at_latest, query_cstr};

const OVER_NOW: &CStr = query_cstr!("subscriptions_over.sql");
const KEYED_NOW: &CStr = query_cstr!("order_key_ddl.sql");
const RENAME_NOW: &CStr = query_cstr!("order_key_rename.sql");
const DOING: &str = "keeping order keys across a change to their columns";

/// What a DDL command does to columns of the table it names, by name.
#[derive(Default)]
pub struct ColumnChanges {
    /// (old name, new name).
    renamed: Vec<(String, String)>,
    /// (name, what is done to it: "drop", "change the type of").
    altered: Vec<(String, &'static str)>,
}

impl ColumnChanges {
    pub fn is_empty(&self) -> bool {
        self.renamed.is_empty() && self.altered.is_empty()
    }

    fn names(&self) -> Vec<String> {
        let renamed = self.renamed.iter().map(|(old, _)| old.clone());
        renamed
            .chain(self.altered.iter().map(|(name, _)| name.clone()))
            .collect()
    }
}

/// The column renames, drops and type changes of a DDL command.
///
/// # Safety
/// `node` is a parse tree (or null).
pub unsafe fn column_changes(node: *mut pg_sys::Node) -> ColumnChanges {
    let mut changes = ColumnChanges::default();
    if node.is_null() {
        return changes;
    }
    // SAFETY: the node tag says which struct it is; names are C strings of the parse tree.
    unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_AlterTableStmt => {
                let alter = node.cast::<pg_sys::AlterTableStmt>();
                for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg((*alter).cmds).iter_ptr() {
                    let what = match (*cmd).subtype {
                        pg_sys::AlterTableType::AT_DropColumn => "drop",
                        pg_sys::AlterTableType::AT_AlterColumnType => "change the type of",
                        _ => continue,
                    };
                    if let Some(name) = text((*cmd).name) {
                        changes.altered.push((name, what));
                    }
                }
            }
            pg_sys::NodeTag::T_RenameStmt => {
                let rename = node.cast::<pg_sys::RenameStmt>();
                if (*rename).renameType == pg_sys::ObjectType::OBJECT_COLUMN {
                    if let (Some(old), Some(new)) =
                        (text((*rename).subname), text((*rename).newname))
                    {
                        changes.renamed.push((old, new));
                    }
                }
            }
            _ => {}
        }
    }
    changes
}

/// # Safety
/// `name` is a C string or null.
unsafe fn text(name: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: see the function contract.
    (!name.is_null()).then(|| {
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    })
}

/// A live keyed subscription over a table the command changed.
struct Keyed {
    id: i32,
    name: String,
    table: String,
    /// The columns of its key the command names.
    columns: Vec<String>,
    queued: bool,
}

/// After a command made `changes` to columns of `relids`: refuses a drop or type change of a
/// key column of a subscription with events queued; makes each renamed key column's new name
/// its subscription's key.
pub fn changed(relids: &[pg_sys::Oid], changes: &ColumnChanges) {
    as_extension_owner(|| {
        spi(
            DOING,
            Spi::connect(|_client| {
                let mut ids = Vec::new();
                at_latest(DOING, OVER_NOW, &[arg(relids.to_vec())], |r| {
                    ids.extend(r.get::<i32>(1));
                });
                let mut keyed = Vec::new();
                let args = [arg(ids), arg(changes.names())];
                at_latest(DOING, KEYED_NOW, &args, |r| {
                    keyed.push(Keyed {
                        id: r.get::<i32>(1).unwrap_or_default(),
                        name: r.get::<String>(2).unwrap_or_default(),
                        table: r.get::<String>(3).unwrap_or_default(),
                        columns: r.get::<Vec<String>>(4).unwrap_or_default(),
                        queued: r.get::<bool>(5).unwrap_or(true),
                    });
                });
                for sub in keyed.iter().filter(|s| s.queued) {
                    if let Some((column, what)) = changes
                        .altered
                        .iter()
                        .find(|(c, _)| sub.columns.contains(c))
                    {
                        refuse(sub, column, what);
                    }
                }
                let mut targets = Vec::new();
                for sub in &keyed {
                    for (old, new) in changes
                        .renamed
                        .iter()
                        .filter(|(o, _)| sub.columns.contains(o))
                    {
                        let args = [arg(sub.id), arg(old.as_str()), arg(new.as_str())];
                        at_latest(DOING, RENAME_NOW, &args, |r| {
                            targets.extend(r.get::<pg_sys::Oid>(1));
                        });
                    }
                }
                // Capture keeps each subscription's key per session: every session reads it
                // again.
                for target in targets {
                    // SAFETY: queues a relation cache invalidation, sent at commit.
                    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(target) };
                }
                Ok(())
            }),
        )
    });
}

fn refuse(sub: &Keyed, column: &str, what: &str) -> ! {
    reject(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!(
            "cannot {what} column \"{column}\" of table {} now: webhook subscription \"{}\" orders its events by it (order_key) and has events queued, whose keys were made from the column's values as they are; events written after the change would not wait behind them",
            sub.table, sub.name
        ),
        Some(&format!(
            "make the change once they are delivered, with the table's writes held meanwhile: in one transaction, LOCK TABLE {} IN SHARE MODE, wait until SELECT count(*) FROM webhook.events WHERE subscription_id = {} AND status IN ('pending', 'parked') is 0, then ALTER TABLE; or unsubscribe it first (its queued events still go) and subscribe again",
            sub.table, sub.id
        )),
    )
}
