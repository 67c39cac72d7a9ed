//! Which of the queue's indexes a statement's events can have entries in.
//!
//! The queue's partial indexes (`WHERE next_attempt_at IS NOT NULL`, `WHERE ordered`) never get
//! an entry from most captures, yet opening every index, building its description and compiling
//! its predicate cost a single-row statement more than the one entry it does write. An index
//! whose predicate reads only columns capture writes alike for every event — NULLs, zeros, and
//! `ordered`, which is one value per subscription — is judged once per backend for each value of
//! `ordered`; a statement opens only the indexes its events can have entries in. Any other
//! index (one without a predicate, or whose predicate reads a column that differs between
//! events) is opened and maintained as the executor does.

use pgrx::pg_sys;

use super::columns::Columns;
use crate::unguarded;

/// One index of the queue, and whether capture's events can never have an entry in it.
pub struct QueueIndex {
    oid: pg_sys::Oid,
    /// No unordered event satisfies its predicate.
    skip_unordered: bool,
    /// No ordered event satisfies its predicate.
    skip_ordered: bool,
}

const LOCK: pg_sys::LOCKMODE = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;

/// The queue's indexes, judged.
///
/// # Safety
/// `rel` is the open queue, locked, and `columns` its layout.
pub unsafe fn survey(rel: pg_sys::Relation, columns: &Columns) -> Vec<QueueIndex> {
    // SAFETY: see the function contract; each index is opened and closed here.
    unsafe {
        let list = pgrx::PgList::<pg_sys::Oid>::from_pg(pg_sys::RelationGetIndexList(rel));
        let mut found = Vec::new();
        for i in 0..list.len() {
            let Some(oid) = list.get_oid(i) else {
                continue;
            };
            let index = pg_sys::index_open(oid, LOCK);
            let info = pg_sys::BuildIndexInfo(index);
            let (skip_unordered, skip_ordered) =
                if (*info).ii_Predicate.is_null() || !reads_only_uniform_columns(info, columns) {
                    (false, false)
                } else {
                    (
                        !predicate_holds(rel, info, columns, false),
                        !predicate_holds(rel, info, columns, true),
                    )
                };
            // Kept locked to the end of the transaction, as the executor keeps what it opens.
            pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
            found.push(QueueIndex {
                oid,
                skip_unordered,
                skip_ordered,
            });
        }
        found
    }
}

/// Whether the index's predicate reads only columns whose value capture writes alike for every
/// event (given `ordered`), and no system column or whole row.
unsafe fn reads_only_uniform_columns(info: *mut pg_sys::IndexInfo, c: &Columns) -> bool {
    // The columns that differ between events (`ordered` is judged per value).
    let varying: [Option<usize>; 11] = [
        Some(c.id),
        Some(c.txid),
        Some(c.subscription_id),
        Some(c.op),
        Some(c.table_schema),
        Some(c.table_name),
        Some(c.record),
        Some(c.old_record),
        Some(c.created_at),
        c.payload_bytes,
        c.order_key,
    ];
    // SAFETY: the predicate is a list of expressions over the queue (varno 1).
    unsafe {
        let mut attrs: *mut pg_sys::Bitmapset = std::ptr::null_mut();
        pg_sys::pull_varattnos((*info).ii_Predicate.cast(), 1, &mut attrs);
        let mut member = -1;
        loop {
            member = pg_sys::bms_next_member(attrs, member);
            if member < 0 {
                return true;
            }
            // Offset so that system columns and the whole row (0) come out at or below 0.
            let attnum = member + pg_sys::FirstLowInvalidHeapAttributeNumber;
            if attnum <= 0 || varying.contains(&Some(attnum as usize - 1)) {
                return false;
            }
        }
    }
}

/// Whether the predicate holds for an event as capture writes it: `ordered` as given, attempts
/// and series_start 0, and NULL in every other column it may read.
unsafe fn predicate_holds(
    rel: pg_sys::Relation,
    info: *mut pg_sys::IndexInfo,
    c: &Columns,
    ordered: bool,
) -> bool {
    // SAFETY: an executor state of our own, freed here; the slot covers the queue's columns.
    unsafe {
        let estate = pg_sys::CreateExecutorState();
        let slot = pg_sys::MakeSingleTupleTableSlot((*rel).rd_att, &pg_sys::TTSOpsVirtual);
        let natts = (*(*rel).rd_att).natts as usize;
        let values = std::slice::from_raw_parts_mut((*slot).tts_values, natts);
        let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
        nulls.fill(true);
        for (i, value) in [
            (Some(c.attempts), pg_sys::Datum::from(0i32)),
            (Some(c.series_start), pg_sys::Datum::from(0i32)),
            (c.ordered, pg_sys::Datum::from(ordered)),
        ] {
            if let Some(i) = i {
                values[i] = value;
                nulls[i] = false;
            }
        }
        pg_sys::ExecStoreVirtualTuple(slot);
        let qual = pg_sys::ExecPrepareQual((*info).ii_Predicate, estate);
        let econtext = pg_sys::MakePerTupleExprContext(estate);
        (*econtext).ecxt_scantuple = slot;
        let holds = pg_sys::ExecQual(qual, econtext);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::FreeExecutorState(estate);
        holds
    }
}

/// The indexes the events of a statement (`ordered` or not) can have entries in; every one
/// when a BEFORE trigger on the queue (`rewritten`) may change any column of them.
pub fn wanted(indexes: &[QueueIndex], ordered: bool, rewritten: bool) -> Vec<pg_sys::Oid> {
    indexes
        .iter()
        .filter(|i| {
            rewritten
                || !(if ordered {
                    i.skip_ordered
                } else {
                    i.skip_unordered
                })
        })
        .map(|i| i.oid)
        .collect()
}

/// Opens the indexes `wanted` into `rri`, as `ExecOpenIndices` opens all of them;
/// `ExecCloseIndices` closes them.
///
/// # Safety
/// `rri` is initialized for the open queue, whose
/// indexes `wanted` are.
pub unsafe fn open(_: &unguarded::Region, rri: *mut pg_sys::ResultRelInfo, wanted: &[pg_sys::Oid]) {
    // SAFETY: arrays in the current (per-call) memory context, as ExecOpenIndices makes them.
    unsafe {
        let n = wanted.len();
        let descs = unguarded::palloc0(n.max(1) * std::mem::size_of::<pg_sys::Relation>())
            .cast::<pg_sys::Relation>();
        let infos = unguarded::palloc0(n.max(1) * std::mem::size_of::<*mut pg_sys::IndexInfo>())
            .cast::<*mut pg_sys::IndexInfo>();
        for (i, oid) in wanted.iter().enumerate() {
            let index = unguarded::index_open(*oid, LOCK);
            *descs.add(i) = index;
            *infos.add(i) = unguarded::BuildIndexInfo(index);
        }
        (*rri).ri_NumIndices = n as i32;
        (*rri).ri_IndexRelationDescs = descs;
        (*rri).ri_IndexRelationInfo = infos;
    }
}
