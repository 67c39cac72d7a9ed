//! The databases the launcher may start workers in, read from the shared catalog.

use std::collections::{HashMap, HashSet};

use pgrx::prelude::*;

use super::txn;

/// One look at pg_database, templates and half-dropped databases left out.
pub struct Databases {
    /// Those accepting connections, by oid, with their names.
    pub connectable: HashMap<pg_sys::Oid, String>,
    /// Those refusing connections (`ALLOW_CONNECTIONS false`).
    pub refusing: HashSet<pg_sys::Oid>,
}

impl Databases {
    pub fn scan() -> Databases {
        let mut found = Databases {
            connectable: HashMap::new(),
            refusing: HashSet::new(),
        };
        for (oid, name, connectable) in scan_databases() {
            if connectable {
                found.connectable.insert(oid, name);
            } else {
                found.refusing.insert(oid);
            }
        }
        found
    }
}

/// The databases workers may connect to, by oid: not templates, accepting connections, not
/// half dropped.
pub fn databases() -> HashMap<pg_sys::Oid, String> {
    Databases::scan().connectable
}

/// Every database but templates and half-dropped ones: oid, name, and whether it accepts
/// connections. Read from the shared catalog with a plain heap scan, as autovacuum does.
fn scan_databases() -> Vec<(pg_sys::Oid, String, bool)> {
    txn::run("listing databases", || {
        let mut found = Vec::new();
        // SAFETY: inside a transaction with a snapshot; the tuples are read while the scan
        // holds their buffers, and only copied out.
        unsafe {
            let rel = pg_sys::table_open(
                pg_sys::DatabaseRelationId,
                pg_sys::AccessShareLock as pg_sys::LOCKMODE,
            );
            let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
            loop {
                let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
                if tuple.is_null() {
                    break;
                }
                let header = (*tuple).t_data;
                let form = (header as *const u8).add((*header).t_hoff as usize)
                    as *const pg_sys::FormData_pg_database;
                let form = &*form;
                // -2: a database whose DROP was interrupted.
                if form.datistemplate || form.datconnlimit == -2 {
                    continue;
                }
                found.push((form.oid, name_of(&form.datname), form.datallowconn));
            }
            pg_sys::table_endscan(scan);
            pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        }
        Ok(found)
    })
    .unwrap_or_default()
}

/// A database's name as text. It is in the encoding of the database that named it, which need
/// not be UTF-8 ("café" named in a LATIN1 database): read strictly, one such name failed the
/// whole listing, and the launcher stopped serving every database. Only logs and
/// `pg_webhook.database` use the name (workers connect by oid).
fn name_of(name: &pg_sys::NameData) -> String {
    // SAFETY: a catalog NameData is NUL-terminated within NAMEDATALEN.
    unsafe { std::ffi::CStr::from_ptr(name.data.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}
