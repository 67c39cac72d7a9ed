//! The queue, its id sequence and where its columns are: looked up by name once per backend,
//! then reused by every statement until the relation cache entry of the queue or the sequence
//! is invalidated (an ALTER, a DROP, an extension update of either sends one).
//!
//! A single-row write pays for this on every statement otherwise: two catalog lookups by name
//! and a search of the queue's descriptor for each of its columns.

use std::cell::RefCell;
use std::ffi::CString;
use std::rc::Rc;

use pgrx::pg_sys;

use super::columns::Columns;
use super::indexes::{survey, QueueIndex};

#[derive(Clone)]
pub struct Layout {
    pub queue: pg_sys::Oid,
    pub sequence: pg_sys::Oid,
    pub columns: Columns,
    pub indexes: Rc<[QueueIndex]>,
}

thread_local! {
    static LAYOUT: RefCell<Option<Layout>> = const { RefCell::new(None) };
}

fn cached() -> Option<Layout> {
    LAYOUT.with(|l| l.borrow().clone())
}

/// Forgets the queue's layout after a relation cache invalidation of the queue or its sequence
/// (see `crate::invalidation`): must not raise an ERROR or allocate in Postgres.
pub fn forget_relation(relid: pg_sys::Oid) {
    LAYOUT.with(|cell| {
        // Never borrowed across a Postgres call, so this cannot fail.
        if let Ok(mut layout) = cell.try_borrow_mut() {
            let stale = layout.as_ref().is_some_and(|l| {
                relid == pg_sys::Oid::INVALID || relid == l.queue || relid == l.sequence
            });
            if stale {
                // Dropping the index list frees only Rust memory.
                *layout = None;
            }
        }
    });
}

const LOCK: pg_sys::LOCKMODE = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;

/// Opens the queue for writing (RowExclusiveLock, held to the end of the transaction) and says
/// where its columns are; an error when it is not a queue this library can write to
/// (`ordered`: the subscription needs the `ordered` column).
///
/// # Safety
/// Inside a transaction; the relation is the caller's to close.
pub unsafe fn open_queue(ordered: bool) -> Result<(pg_sys::Relation, Layout), String> {
    // SAFETY: see the function contract.
    let (rel, layout) = match unsafe { open_cached() } {
        Some(found) => found,
        // SAFETY: as above.
        None => unsafe { open_by_name()? },
    };
    if let Err(e) = layout.columns.require_ordered(ordered) {
        // SAFETY: opened above, with this lock.
        unsafe { pg_sys::relation_close(rel, LOCK) };
        return Err(e);
    }
    Ok((rel, layout))
}

/// The queue by the layout found earlier, if it still holds once the lock is taken (taking it
/// reads the invalidations other transactions sent, which clear a stale layout).
unsafe fn open_cached() -> Option<(pg_sys::Relation, Layout)> {
    let layout = cached()?;
    // SAFETY: NULL when the relation is gone; a lock is taken otherwise.
    unsafe {
        let rel = pg_sys::try_relation_open(layout.queue, LOCK);
        if rel.is_null() {
            return None;
        }
        if cached().is_some() && (*(*rel).rd_rel).relkind as u8 == pg_sys::RELKIND_RELATION {
            return Some((rel, layout));
        }
        pg_sys::relation_close(rel, LOCK);
        None
    }
}

unsafe fn open_by_name() -> Result<(pg_sys::Relation, Layout), String> {
    // SAFETY: catalog lookups and a relation open inside a transaction.
    unsafe {
        let namespace = pg_sys::get_namespace_oid(c"webhook".as_ptr(), false);
        let queue = relation_oid(namespace, "_event_queue")?;
        let sequence = relation_oid(namespace, "_event_id_seq")?;
        let rel = pg_sys::table_open(queue, LOCK);
        match Columns::find((*rel).rd_att) {
            Ok(columns) => {
                let layout = Layout {
                    queue,
                    sequence,
                    columns,
                    indexes: survey(rel, &columns).into(),
                };
                // Found under the lock, so after every invalidation sent before it: a later
                // change to the queue (creating or dropping an index of it too) sends another,
                // which clears this.
                LAYOUT.with(|l| *l.borrow_mut() = Some(layout.clone()));
                Ok((rel, layout))
            }
            Err(e) => {
                pg_sys::table_close(rel, LOCK);
                Err(e)
            }
        }
    }
}

fn relation_oid(namespace: pg_sys::Oid, name: &str) -> Result<pg_sys::Oid, String> {
    let c = CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: syscache lookup with a valid C string.
    let oid = unsafe { pg_sys::get_relname_relid(c.as_ptr(), namespace) };
    if oid == pg_sys::Oid::INVALID {
        return Err(format!(
            "webhook.{name} does not exist; is pg_webhook installed?"
        ));
    }
    Ok(oid)
}
