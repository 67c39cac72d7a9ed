//! A subscription's order key and excluded columns across DDL on its columns
//! (`webhook_on_ddl`, `webhook_on_sql_drop`). An excluded column renamed stays excluded: the
//! subscription's `exclude_columns` follows the new name (left by name, a renamed column of
//! personal data went out from then on).
//!
//! Order keys: capture finds the key's columns by name and hashes their values with
//! their types' hash functions; the worker holds an event back only behind queued events of the
//! same hash. A key column renamed, dropped, added back under its name or given another type
//! (or, for a composite type, other attributes) made one key hash differently from then on, so
//! events written after the change went out beside queued ones of their key: a receiver
//! applying them as they came kept a stale row.
//!
//! So a renamed key column stays the key (the subscription's row follows the new name, and
//! capture hashes the same values the same way), and any other such change is refused while
//! the subscription has events queued. The command holds its table's ACCESS EXCLUSIVE lock
//! until it commits, so no event of the table is written between the check and the change.

use std::ffi::CStr;

use pgrx::prelude::*;
use pgrx::PgList;

use crate::error::reject;
use crate::privilege::as_extension_owner;
use crate::sql::{arg, at_latest, query_cstr};

const OVER_NOW: &CStr = query_cstr!("subscriptions_over.sql");
const KEYED_NOW: &CStr = query_cstr!("order_key_ddl.sql");
const RENAME_NOW: &CStr = query_cstr!("columns_rename.sql");
const DROPPED_NOW: &CStr = query_cstr!("order_key_dropped.sql");
pub(super) const DOING: &str =
    "keeping order keys and excluded columns across a change to their columns";

/// What a DDL command does to columns of the tables it names, by name.
#[derive(Default)]
pub struct ColumnChanges {
    /// (old name, new name).
    renamed: Vec<(String, String)>,
    /// (name, the change as an error names it: `add column "k"`): type changes, columns added,
    /// and renames' new names (a key column dropped before comes back). Drops are seen by
    /// `dropped`, cascades too.
    altered: Vec<(String, String)>,
    /// It alters a type (ALTER TYPE), or adds or retypes a table's column, which changes the
    /// table's row type: see `key_types::types_altered`. (A column dropped changes it too: seen
    /// at sql_drop with the drops of cascades, `key_types::attributes_dropped`.)
    pub type_altered: bool,
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

/// The column renames, additions and type changes of a DDL command.
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
                if (*alter).objtype == pg_sys::ObjectType::OBJECT_TYPE {
                    changes.type_altered = true;
                    return changes;
                }
                for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg((*alter).cmds).iter_ptr() {
                    let altered = altered_column(cmd);
                    changes.type_altered |= altered.is_some();
                    changes.altered.extend(altered);
                }
            }
            pg_sys::NodeTag::T_RenameStmt => {
                let rename = node.cast::<pg_sys::RenameStmt>();
                match (*rename).renameType {
                    pg_sys::ObjectType::OBJECT_COLUMN => {
                        if let (Some(old), Some(new)) =
                            (text((*rename).subname), text((*rename).newname))
                        {
                            let change = format!("rename column \"{old}\" to \"{new}\"");
                            changes.altered.push((new.clone(), change));
                            changes.renamed.push((old, new));
                        }
                    }
                    pg_sys::ObjectType::OBJECT_ATTRIBUTE => changes.type_altered = true,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    changes
}

/// The column an ALTER TABLE subcommand retypes or adds, and the change as an error names it.
///
/// # Safety
/// `cmd` is a subcommand of a parse tree.
unsafe fn altered_column(cmd: *mut pg_sys::AlterTableCmd) -> Option<(String, String)> {
    // SAFETY: see the function contract; the node tag says which struct `def` is.
    unsafe {
        match (*cmd).subtype {
            pg_sys::AlterTableType::AT_AlterColumnType => {
                text((*cmd).name).map(|n| (n.clone(), format!("change the type of column \"{n}\"")))
            }
            pg_sys::AlterTableType::AT_AddColumn => {
                let def = (*cmd).def;
                if def.is_null() || (*def).type_ != pg_sys::NodeTag::T_ColumnDef {
                    return None;
                }
                text((*def.cast::<pg_sys::ColumnDef>()).colname)
                    .map(|n| (n.clone(), format!("add column \"{n}\"")))
            }
            _ => None,
        }
    }
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
    table: String,
    /// The columns of its key the command names.
    columns: Vec<String>,
    queued: bool,
}

/// After a command made `changes` to columns of `relids`: refuses a type change, an addition
/// or a rename to the name of a key column of a subscription with events queued; makes each
/// renamed key or excluded column's new name its subscription's.
pub fn changed(relids: &[pg_sys::Oid], changes: &ColumnChanges) {
    if in_own_script() {
        return;
    }
    let refusal = as_owner_in_spi(|| {
        let mut ids = Vec::new();
        at_latest(DOING, OVER_NOW, &[arg(relids.to_vec())], |r| {
            ids.extend(r.get::<i32>(1));
        });
        if ids.is_empty() {
            return None;
        }
        let mut keyed = Vec::new();
        let args = [arg(ids.clone()), arg(changes.names())];
        at_latest(DOING, KEYED_NOW, &args, |r| {
            keyed.push(Keyed {
                table: r.get::<String>(3).unwrap_or_default(),
                columns: r.get::<Vec<String>>(4).unwrap_or_default(),
                queued: r.get::<bool>(5).unwrap_or(true),
            });
        });
        for sub in keyed.iter().filter(|s| s.queued) {
            let key = |(c, _): &&(String, String)| sub.columns.contains(c);
            if let Some((_, change)) = changes.altered.iter().find(key) {
                return Some((sub.table.clone(), change.clone()));
            }
        }
        let mut targets = Vec::new();
        for (old, new) in &changes.renamed {
            let args = [arg(ids.clone()), arg(old.as_str()), arg(new.as_str())];
            at_latest(DOING, RENAME_NOW, &args, |r| {
                targets.extend(r.get::<pg_sys::Oid>(1));
            });
        }
        // Capture keeps each subscription's key and columns per session: every session
        // reads them again.
        for target in targets {
            // SAFETY: queues a relation cache invalidation, sent at commit.
            unsafe { pg_sys::CacheInvalidateRelcacheByRelid(target) };
        }
        None
    });
    if let Some((table, change)) = refusal {
        refuse(&table, &change);
    }
}

/// In the `webhook_on_sql_drop` event trigger: refuses a command that dropped a key column of
/// a subscription with events queued (a table dropped whole is not refused).
pub fn dropped() {
    if in_own_script() {
        return;
    }
    let found = as_owner_in_spi(|| {
        let mut found = None;
        at_latest(DOING, DROPPED_NOW, &[], |r| {
            let text = |n| r.get::<String>(n).unwrap_or_default();
            found = Some((text(3), text(4)));
        });
        found
    });
    if let Some((table, column)) = found {
        refuse(&table, &format!("drop column \"{column}\""));
    }
    super::key_types::attributes_dropped();
}

/// Runs `f` (reads of pg_webhook's tables at the latest snapshot: `at_latest`) as the extension
/// owner, connected to SPI.
pub(super) fn as_owner_in_spi<T>(f: impl FnOnce() -> T) -> T {
    as_extension_owner(|| Spi::connect(|_client| f()))
}

/// Whether pg_webhook's own script runs (CREATE or ALTER EXTENSION pg_webhook): it changes the
/// extension's tables, no subscribed one. Another extension's script is checked as any DDL.
pub(super) fn in_own_script() -> bool {
    // SAFETY: plain reads of backend globals and a catalog lookup.
    unsafe {
        pg_sys::creating_extension
            && pg_sys::CurrentExtensionObject
                == pg_sys::get_extension_oid(c"pg_webhook".as_ptr(), true)
    }
}

/// Refuses the command: a subscription ordering `table`'s events by a column `change` touches
/// has events queued that it would leave behind. Which one is not said: the event trigger runs
/// as its definer, and the role that ran the command may be running another's code (a SECURITY
/// DEFINER function catching the error), so no check of who asked is sure to be the reader's.
pub(super) fn refuse(table: &str, change: &str) -> ! {
    reject(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!(
            "cannot {change} of table {table} now: a webhook subscription orders the table's events by that column's values (order_key) and has events queued, whose keys were made from them as they are; events written after the change would not wait behind them"
        ),
        Some(&format!(
            "make the change once they are delivered, with the table's writes held meanwhile: in one transaction, LOCK TABLE {table} IN SHARE MODE, wait until the table's keyed subscriptions have no event queued or parked (their owners and superusers see them in webhook.subscriptions and webhook.subscription_stats), then make it; or have the subscription's owner or a superuser unsubscribe it first, or, as the table's owner, drop its pg_webhook triggers on the table, which ends it (its queued events still go either way)"
        )),
    )
}
