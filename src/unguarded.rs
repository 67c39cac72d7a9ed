//! PostgreSQL functions called without pgrx's per-call ERROR guard, for capture's hot path.
//!
//! Every function pgrx binds sets up a guard of its own (`sigsetjmp`, the exception stack
//! swapped, a thread check: ~45 ns here) so that an ERROR raised in C unwinds the Rust frames
//! above it instead of jumping over them. A single-row INSERT into a subscribed table made 55
//! such calls in capture (counted with gdb: 58 `__sigsetjmp` for the statement, 3 for a table
//! without a subscription), a tenth of what capture added to the statement's CPU. The hot
//! paths instead make their calls inside one guard, a [`region`], through these declarations:
//! the same functions, with the signatures of pgrx's PostgreSQL 15 bindings, without a guard of
//! their own.
//!
//! A function declared here may only be called inside a region; the helpers around them take
//! the region's [`Region`] token, so that they cannot be called elsewhere. A region's code owns
//! no value that needs dropping and does not panic: an ERROR jumps from the C function straight
//! back to the region's start, over every frame in between, and becomes a Rust panic there.

use pgrx::pg_sys::{self, Datum, Oid};
use std::ffi::{c_char, c_int};

/// Proof that the code holding it runs inside a region: only [`region`] makes one, and the
/// helpers that call this module's functions ask for it.
pub struct Region(());

/// Runs `f`, whose calls into PostgreSQL go through this module, under one ERROR guard.
///
/// # Safety
/// `f` runs on the backend's main thread, owns nothing that needs dropping while it calls
/// PostgreSQL, and does not panic.
#[inline(always)]
pub unsafe fn region<T>(f: impl FnOnce(&Region) -> T) -> T {
    // SAFETY: the caller keeps the contract `pg_guard_ffi_boundary` states.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| f(&Region(()))) }
}

#[allow(non_snake_case)]
extern "C-unwind" {
    // catalog/pg_inherits.h; not in pgrx's generated bindings.
    pub fn find_all_inheritors(
        parent: Oid,
        lockmode: pg_sys::LOCKMODE,
        numparents: *mut *mut pg_sys::List,
    ) -> *mut pg_sys::List;
    // Row images (row_json).
    pub fn slot_getsomeattrs_int(slot: *mut pg_sys::TupleTableSlot, attnum: c_int);
    pub fn pushJsonbValue(
        pstate: *mut *mut pg_sys::JsonbParseState,
        seq: pg_sys::JsonbIteratorToken::Type,
        jbval: *mut pg_sys::JsonbValue,
    ) -> *mut pg_sys::JsonbValue;
    pub fn JsonbValueToJsonb(val: *mut pg_sys::JsonbValue) -> *mut pg_sys::Jsonb;
    pub fn JsonbIteratorInit(container: *mut pg_sys::JsonbContainer) -> *mut pg_sys::JsonbIterator;
    pub fn JsonbIteratorNext(
        it: *mut *mut pg_sys::JsonbIterator,
        val: *mut pg_sys::JsonbValue,
        skipNested: bool,
    ) -> pg_sys::JsonbIteratorToken::Type;
    pub fn int64_to_numeric(val: i64) -> pg_sys::Numeric;
    pub fn pg_detoast_datum(datum: *mut pg_sys::varlena) -> *mut pg_sys::varlena;
    pub fn OutputFunctionCall(flinfo: *mut pg_sys::FmgrInfo, val: Datum) -> *mut c_char;
    pub fn FunctionCall1Coll(flinfo: *mut pg_sys::FmgrInfo, collation: Oid, arg1: Datum) -> Datum;
    pub fn FunctionCall3Coll(
        flinfo: *mut pg_sys::FmgrInfo,
        collation: Oid,
        arg1: Datum,
        arg2: Datum,
        arg3: Datum,
    ) -> Datum;
    pub fn JsonEncodeDateTime(
        buf: *mut c_char,
        value: Datum,
        typid: Oid,
        tzp: *const c_int,
    ) -> *mut c_char;
    pub fn tuplestore_gettupleslot(
        state: *mut pg_sys::Tuplestorestate,
        forward: bool,
        copy: bool,
        slot: *mut pg_sys::TupleTableSlot,
    ) -> bool;
    pub fn tuplestore_rescan(state: *mut pg_sys::Tuplestorestate);

    // The queue writer.
    pub fn CreateTupleDescCopy(tupdesc: pg_sys::TupleDesc) -> pg_sys::TupleDesc;
    pub fn CreateExecutorState() -> *mut pg_sys::EState;
    pub fn palloc0(size: pg_sys::Size) -> *mut std::ffi::c_void;
    pub fn pfree(pointer: *mut std::ffi::c_void);
    pub fn InitResultRelInfo(
        resultRelInfo: *mut pg_sys::ResultRelInfo,
        resultRelationDesc: pg_sys::Relation,
        resultRelationIndex: pg_sys::Index,
        partition_root_rri: *mut pg_sys::ResultRelInfo,
        instrument_options: c_int,
    );
    pub fn index_open(relationId: Oid, lockmode: pg_sys::LOCKMODE) -> pg_sys::Relation;
    pub fn BuildIndexInfo(index: pg_sys::Relation) -> *mut pg_sys::IndexInfo;
    pub fn AllocSetContextCreateInternal(
        parent: pg_sys::MemoryContext,
        name: *const c_char,
        minContextSize: pg_sys::Size,
        initBlockSize: pg_sys::Size,
        maxBlockSize: pg_sys::Size,
    ) -> pg_sys::MemoryContext;
    pub fn GetTopFullTransactionId() -> pg_sys::FullTransactionId;
    pub fn GetCurrentTransactionStartTimestamp() -> pg_sys::TimestampTz;
    pub fn GetWALInsertionTimeLine() -> pg_sys::TimeLineID;
    pub fn GetCurrentCommandId(used: bool) -> pg_sys::CommandId;
    pub fn cstring_to_text_with_len(s: *const c_char, len: c_int) -> *mut pg_sys::text;
    pub fn MakeSingleTupleTableSlot(
        tupdesc: pg_sys::TupleDesc,
        tts_ops: *const pg_sys::TupleTableSlotOps,
    ) -> *mut pg_sys::TupleTableSlot;
    /// commands/sequence.h; not in pgrx's generated bindings.
    pub fn nextval_internal(relid: Oid, check_permissions: bool) -> i64;
    pub fn toast_raw_datum_size(value: Datum) -> pg_sys::Size;
    pub fn ExecStoreVirtualTuple(slot: *mut pg_sys::TupleTableSlot) -> *mut pg_sys::TupleTableSlot;
    pub fn GetBulkInsertState() -> pg_sys::BulkInsertState;
    pub fn heap_multi_insert(
        relation: pg_sys::Relation,
        slots: *mut *mut pg_sys::TupleTableSlot,
        ntuples: c_int,
        cid: pg_sys::CommandId,
        options: c_int,
        bistate: pg_sys::BulkInsertState,
    );
    pub fn MakePerTupleExprContext(estate: *mut pg_sys::EState) -> *mut pg_sys::ExprContext;
    pub fn ExecInsertIndexTuples(
        resultRelInfo: *mut pg_sys::ResultRelInfo,
        slot: *mut pg_sys::TupleTableSlot,
        estate: *mut pg_sys::EState,
        update: bool,
        noDupErr: bool,
        specConflict: *mut bool,
        arbiterIndexes: *mut pg_sys::List,
    ) -> *mut pg_sys::List;
    pub fn MemoryContextReset(context: pg_sys::MemoryContext);
    pub fn ExecDropSingleTupleTableSlot(slot: *mut pg_sys::TupleTableSlot);
    pub fn FreeTupleDesc(tupdesc: pg_sys::TupleDesc);
    pub fn FreeBulkInsertState(bistate: pg_sys::BulkInsertState);
    pub fn ExecCloseIndices(resultRelInfo: *mut pg_sys::ResultRelInfo);
    pub fn FreeExecutorState(estate: *mut pg_sys::EState);
    pub fn MemoryContextDelete(context: pg_sys::MemoryContext);
    pub fn table_close(relation: pg_sys::Relation, lockmode: pg_sys::LOCKMODE);
}

/// `slot_getsomeattrs`, an inline function in the headers: makes the first `attnum` columns of
/// the slot readable.
///
/// # Safety
/// `slot` is a valid slot with at least `attnum` columns.
#[inline(always)]
pub unsafe fn slot_getsomeattrs(_: &Region, slot: *mut pg_sys::TupleTableSlot, attnum: c_int) {
    // SAFETY: see the function contract.
    unsafe {
        if ((*slot).tts_nvalid as c_int) < attnum {
            slot_getsomeattrs_int(slot, attnum);
        }
    }
}
