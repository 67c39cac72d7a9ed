//! A row of a table as jsonb, the same value `to_jsonb(row)` gives, built with less work per row.
//!
//! `to_jsonb` of a row copies it into a composite datum, looks up and pins its row type, and for
//! every column looks up how to render its type (two or three catalog lookups for a text column)
//! and finds its output function again. All of that depends only on the table's columns, so it
//! is done once per table and backend (kept while the columns' names, types and order stay the
//! same); each row is then read from its slot as it is.
//!
//! Only built-in types whose rendering is plain are rendered here, exactly as PostgreSQL 15's
//! `datum_to_jsonb` does (numbers as the numeric `numeric_in` makes of their text, dates and timestamps in
//! ISO form, the rest as their output text). Every other column — arrays, composites, json,
//! domains, enums, extension types, types with a cast to json — is rendered by `to_jsonb` itself
//! and placed in the object as it is. Keys are ordered and stored by PostgreSQL's own jsonb
//! builder, so the bytes are those of `to_jsonb`; tests compare the two for every kind of
//! column.

use std::ffi::{c_char, CStr, CString};

use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;

mod cache;

pub use cache::{init, put_back, take};

/// How one column is rendered.
enum Render {
    Bool,
    /// An integer of this many bytes: the numeric of its value, which is what `numeric_in`
    /// makes of its output text.
    Integer(usize),
    /// A numeric: itself when finite (`numeric_in` of its output text gives back the same
    /// value, scale and digits), else its output text (NaN, Infinity) as a string.
    Numeric(pg_sys::FmgrInfo),
    /// A float: its output text, as a jsonb number when it is one (not NaN or Infinity).
    Number(pg_sys::FmgrInfo),
    /// A date or timestamp (the type), in ISO 8601.
    DateTime(pg_sys::Oid),
    /// A string: the type's output text.
    Text(pg_sys::FmgrInfo),
    /// Whatever `to_jsonb` makes of a value of the column's type (its call knows the type).
    ToJsonb(pg_sys::FmgrInfo),
}

struct Column {
    /// 0-based position in the row.
    index: usize,
    name: CString,
    render: Render,
}

pub struct RowJson {
    columns: Vec<Column>,
    /// What the rendering depends on: each attribute's type and whether it is dropped.
    attributes: Vec<(pg_sys::Oid, bool)>,
    numeric_in: pg_sys::FmgrInfo,
    /// Where the function lookups and call expressions live; deleted with the converter.
    _memory: Memory,
}

/// A memory context of its own, deleted when dropped (also when an ERROR unwinds the making of
/// a converter).
struct Memory(pg_sys::MemoryContext);

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: made for one converter; nothing else points into it, and it is not the
        // current context (`InContext` switches back first).
        unsafe { pg_sys::MemoryContextDelete(self.0) };
    }
}

/// The current memory context switched to another until dropped.
struct InContext(pg_sys::MemoryContext);

impl InContext {
    unsafe fn enter(context: pg_sys::MemoryContext) -> InContext {
        // SAFETY: a live context.
        InContext(unsafe { pg_sys::MemoryContextSwitchTo(context) })
    }
}

impl Drop for InContext {
    fn drop(&mut self) {
        // SAFETY: the context that was current before, which outlives this guard.
        unsafe { pg_sys::MemoryContextSwitchTo(self.0) };
    }
}

/// The built-in types rendered here as their output text; `jsonb_categorize_type` gives each of
/// them JSONBTYPE_OTHER with the type's output function.
const TEXT_TYPES: [pg_sys::Oid; 13] = [
    pg_sys::TEXTOID,
    pg_sys::VARCHAROID,
    pg_sys::BPCHAROID,
    pg_sys::NAMEOID,
    pg_sys::UUIDOID,
    pg_sys::BYTEAOID,
    pg_sys::CHAROID,
    pg_sys::TIMEOID,
    pg_sys::TIMETZOID,
    pg_sys::INTERVALOID,
    pg_sys::INETOID,
    pg_sys::CIDROID,
    pg_sys::MACADDROID,
];

/// The built-in types `jsonb_categorize_type` makes JSONBTYPE_NUMERIC. (Not `oid`: a string in
/// PostgreSQL 15, a number from 16 on; `to_jsonb` renders it.)
const NUMBER_TYPES: [pg_sys::Oid; 6] = [
    pg_sys::INT2OID,
    pg_sys::INT4OID,
    pg_sys::INT8OID,
    pg_sys::FLOAT4OID,
    pg_sys::FLOAT8OID,
    pg_sys::NUMERICOID,
];

/// `fmgr_info` of a function, in the current memory context.
unsafe fn function(oid: pg_sys::Oid) -> pg_sys::FmgrInfo {
    let mut info = pg_sys::FmgrInfo::default();
    // SAFETY: a built-in or catalogued function; the info lives as long as the converter.
    unsafe { pg_sys::fmgr_info(oid, &mut info) };
    info
}

/// The output function of `typid` (order keys render their columns with it too).
pub(super) unsafe fn output_function(typid: pg_sys::Oid) -> pg_sys::FmgrInfo {
    let mut output = pg_sys::Oid::INVALID;
    let mut varlena = false;
    // SAFETY: a catalog lookup of an existing type.
    unsafe {
        pg_sys::getTypeOutputInfo(typid, &mut output, &mut varlena);
        function(output)
    }
}

/// `to_jsonb` called with an argument of type `typid`: it takes the type from the call.
unsafe fn to_jsonb_of(typid: pg_sys::Oid) -> pg_sys::FmgrInfo {
    // SAFETY: builds the call expression in the current memory context.
    unsafe {
        let mut info = function(pg_sys::Oid::from(pg_sys::F_TO_JSONB));
        let arg = pg_sys::makeNullConst(typid, -1, pg_sys::Oid::INVALID);
        let args = pg_sys::lappend(std::ptr::null_mut(), arg.cast());
        info.fn_expr = pg_sys::makeFuncExpr(
            pg_sys::Oid::from(pg_sys::F_TO_JSONB),
            pg_sys::JSONBOID,
            args,
            pg_sys::Oid::INVALID,
            pg_sys::Oid::INVALID,
            pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
        )
        .cast();
        info
    }
}

fn scalar(kind: pg_sys::jbvType::Type) -> pg_sys::JsonbValue {
    pg_sys::JsonbValue {
        type_: kind,
        // SAFETY: all-zero is a valid value of the union's plain-data members.
        val: unsafe { std::mem::zeroed() },
    }
}

fn string(val: *mut c_char, len: i32) -> pg_sys::JsonbValue {
    let mut v = scalar(pg_sys::jbvType::jbvString);
    v.val.string = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 { len, val };
    v
}

impl RowJson {
    /// The converter for rows described by `desc`.
    ///
    /// # Safety
    /// `desc` is a valid descriptor.
    pub(super) unsafe fn new(desc: pg_sys::TupleDesc) -> RowJson {
        // SAFETY: see the function contract; everything looked up is kept in `memory`.
        unsafe {
            let memory = Memory(pg_sys::AllocSetContextCreateInternal(
                pg_sys::TopMemoryContext,
                c"pg_webhook row images".as_ptr(),
                pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
                pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
                pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
            ));
            let in_memory = InContext::enter(memory.0);
            let attrs = (*desc).attrs.as_slice((*desc).natts as usize);
            let columns = attrs
                .iter()
                .enumerate()
                .filter(|(_, a)| !a.attisdropped)
                .map(|(index, a)| {
                    let typid = a.atttypid;
                    let render = if typid == pg_sys::BOOLOID {
                        Render::Bool
                    } else if let Some(width) = integer_width(typid) {
                        Render::Integer(width)
                    } else if typid == pg_sys::NUMERICOID {
                        Render::Numeric(output_function(typid))
                    } else if NUMBER_TYPES.contains(&typid) {
                        Render::Number(output_function(typid))
                    } else if [
                        pg_sys::DATEOID,
                        pg_sys::TIMESTAMPOID,
                        pg_sys::TIMESTAMPTZOID,
                    ]
                    .contains(&typid)
                    {
                        Render::DateTime(typid)
                    } else if TEXT_TYPES.contains(&typid) {
                        Render::Text(output_function(typid))
                    } else {
                        Render::ToJsonb(to_jsonb_of(typid))
                    };
                    Column {
                        index,
                        name: CStr::from_ptr(a.attname.data.as_ptr()).to_owned(),
                        render,
                    }
                })
                .collect();
            let numeric_in = function(pg_sys::Oid::from(pg_sys::F_NUMERIC_IN));
            drop(in_memory);
            RowJson {
                columns,
                attributes: attributes(desc),
                numeric_in,
                _memory: memory,
            }
        }
    }

    /// Whether rows of `desc` have the columns this converter was made for: the same types in
    /// the same places, dropped alike, and named alike.
    pub(super) unsafe fn fits(&self, desc: pg_sys::TupleDesc) -> bool {
        // SAFETY: a valid descriptor.
        unsafe {
            if attributes(desc) != self.attributes {
                return false;
            }
            let attrs = (*desc).attrs.as_slice((*desc).natts as usize);
            self.columns
                .iter()
                .all(|c| CStr::from_ptr(attrs[c.index].attname.data.as_ptr()) == c.name.as_c_str())
        }
    }

    /// The row in `slot` as a jsonb datum, in the current memory context.
    ///
    /// # Safety
    /// The slot holds a row of the descriptor the converter was made for.
    pub unsafe fn row(&mut self, slot: *mut pg_sys::TupleTableSlot) -> pg_sys::Datum {
        // SAFETY: the slot's values and nulls arrays have natts entries once all are read; the
        // jsonb builder copies nothing until JsonbValueToJsonb, and every string it points to
        // lives in the current memory context or this converter until then (it only reads
        // them).
        unsafe {
            let natts = self.attributes.len();
            pg_sys::slot_getsomeattrs(slot, natts as i32);
            let values = std::slice::from_raw_parts((*slot).tts_values, natts);
            let nulls = std::slice::from_raw_parts((*slot).tts_isnull, natts);
            let mut state: *mut pg_sys::JsonbParseState = std::ptr::null_mut();
            use pg_sys::JsonbIteratorToken::*;
            pg_sys::pushJsonbValue(&mut state, WJB_BEGIN_OBJECT, std::ptr::null_mut());
            for i in 0..self.columns.len() {
                let column = &self.columns[i];
                let name = column.name.as_bytes();
                let mut key = string(column.name.as_ptr().cast_mut(), name.len() as i32);
                pg_sys::pushJsonbValue(&mut state, WJB_KEY, &mut key);
                let mut value = if nulls[column.index] {
                    scalar(pg_sys::jbvType::jbvNull)
                } else {
                    self.value(i, values[column.index])
                };
                pg_sys::pushJsonbValue(&mut state, WJB_VALUE, &mut value);
            }
            let object = pg_sys::pushJsonbValue(&mut state, WJB_END_OBJECT, std::ptr::null_mut());
            pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(object))
        }
    }

    /// The non-null value `datum` of column `i`, as `datum_to_jsonb` renders it.
    unsafe fn value(&mut self, i: usize, datum: pg_sys::Datum) -> pg_sys::JsonbValue {
        // SAFETY: `datum` is a value of the column's type.
        unsafe {
            match &mut self.columns[i].render {
                Render::Bool => {
                    let mut v = scalar(pg_sys::jbvType::jbvBool);
                    v.val.boolean = datum.value() != 0;
                    v
                }
                Render::Integer(width) => {
                    let value = match width {
                        2 => i64::from(datum.value() as i16),
                        4 => i64::from(datum.value() as i32),
                        _ => datum.value() as i64,
                    };
                    let mut v = scalar(pg_sys::jbvType::jbvNumeric);
                    v.val.numeric = pg_sys::int64_to_numeric(value);
                    v
                }
                Render::Numeric(output) => {
                    // Unpacked to a 4-byte header, as `numeric_in` would make it (a copy only
                    // when the stored value is short or toasted).
                    let numeric = pg_sys::pg_detoast_datum(datum.cast_mut_ptr());
                    if numeric_is_special(numeric) {
                        let text = pg_sys::OutputFunctionCall(output, datum);
                        return string(text, CStr::from_ptr(text).to_bytes().len() as i32);
                    }
                    let mut v = scalar(pg_sys::jbvType::jbvNumeric);
                    v.val.numeric = numeric.cast();
                    v
                }
                Render::Number(output) => {
                    let text = pg_sys::OutputFunctionCall(output, datum);
                    let bytes = CStr::from_ptr(text).to_bytes();
                    // Invalid JSON numbers (NaN, Infinity) are the outputs with an N or n.
                    if bytes.iter().any(|b| *b == b'N' || *b == b'n') {
                        return string(text, bytes.len() as i32);
                    }
                    let numeric = pg_sys::FunctionCall3Coll(
                        &mut self.numeric_in,
                        pg_sys::Oid::INVALID,
                        pg_sys::Datum::from(text),
                        pg_sys::Datum::from(pg_sys::Oid::INVALID),
                        pg_sys::Datum::from(-1i32),
                    );
                    let mut v = scalar(pg_sys::jbvType::jbvNumeric);
                    v.val.numeric = numeric.cast_mut_ptr();
                    v
                }
                Render::DateTime(typid) => {
                    let text = pg_sys::JsonEncodeDateTime(
                        std::ptr::null_mut(),
                        datum,
                        *typid,
                        std::ptr::null(),
                    );
                    string(text, CStr::from_ptr(text).to_bytes().len() as i32)
                }
                Render::Text(output) => {
                    let text = pg_sys::OutputFunctionCall(output, datum);
                    let len = CStr::from_ptr(text).to_bytes().len();
                    if len > pg_sys::JENTRY_OFFLENMASK as usize {
                        pgrx::ereport!(
                            ERROR,
                            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                            "string too long to represent as jsonb string",
                            format!(
                                "Due to an implementation restriction, jsonb strings cannot exceed {} bytes.",
                                pg_sys::JENTRY_OFFLENMASK
                            )
                        );
                    }
                    string(text, len as i32)
                }
                Render::ToJsonb(to_jsonb) => {
                    let jsonb: *mut pg_sys::Jsonb =
                        pg_sys::FunctionCall1Coll(to_jsonb, pg_sys::Oid::INVALID, datum)
                            .cast_mut_ptr();
                    // Placed as it is: the builder unpacks a binary value into the object.
                    let mut v = scalar(pg_sys::jbvType::jbvBinary);
                    v.val.binary = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_4 {
                        len: pgrx::varsize_any(jsonb.cast()) as i32,
                        data: &raw mut (*jsonb).root,
                    };
                    v
                }
            }
        }
    }
}

/// The width of the integer types `datum_to_jsonb` renders as numbers.
fn integer_width(typid: pg_sys::Oid) -> Option<usize> {
    match typid {
        pg_sys::INT2OID => Some(2),
        pg_sys::INT4OID => Some(4),
        pg_sys::INT8OID => Some(8),
        _ => None,
    }
}

/// Whether an unpacked numeric is NaN or an infinity: the sign bits of its first header word
/// (`NUMERIC_IS_SPECIAL` in utils/adt/numeric.c) are both set.
///
/// # Safety
/// `numeric` is a numeric varlena with a 4-byte header.
unsafe fn numeric_is_special(numeric: *const pg_sys::varlena) -> bool {
    const NUMERIC_SIGN_MASK: u16 = 0xC000;
    // SAFETY: every numeric has at least its header word after the length word.
    let header = unsafe { numeric.cast::<u8>().add(4).cast::<u16>().read_unaligned() };
    header & NUMERIC_SIGN_MASK == NUMERIC_SIGN_MASK
}

/// (type, dropped) of each attribute of `desc`.
unsafe fn attributes(desc: pg_sys::TupleDesc) -> Vec<(pg_sys::Oid, bool)> {
    // SAFETY: a valid descriptor.
    unsafe {
        (*desc)
            .attrs
            .as_slice((*desc).natts as usize)
            .iter()
            .map(|a| (a.atttypid, a.attisdropped))
            .collect()
    }
}
