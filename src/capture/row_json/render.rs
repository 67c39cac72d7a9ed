//! How each column of a row is rendered into its jsonb value: the kind of rendering chosen once
//! per column type, and the rendering of one value, as PostgreSQL 15's `datum_to_jsonb` does it.

use std::ffi::{c_char, CStr};

use pgrx::pg_sys;

use crate::unguarded;

/// How one column is rendered.
pub(super) enum Render {
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

/// The floats, which with the integers (`integer_width`) and numeric are the built-in types
/// `jsonb_categorize_type` makes JSONBTYPE_NUMERIC. (Not `oid`: a string in PostgreSQL 15, a
/// number from 16 on; `to_jsonb` renders it.)
const FLOAT_TYPES: [pg_sys::Oid; 2] = [pg_sys::FLOAT4OID, pg_sys::FLOAT8OID];

/// `fmgr_info` of a function, in the current memory context.
pub(super) unsafe fn function(oid: pg_sys::Oid) -> pg_sys::FmgrInfo {
    let mut info = pg_sys::FmgrInfo::default();
    // SAFETY: a built-in or catalogued function; the info lives as long as the converter.
    unsafe { pg_sys::fmgr_info(oid, &mut info) };
    info
}

/// The output function of `typid` (order keys render their columns with it too).
pub(in crate::capture) unsafe fn output_function(typid: pg_sys::Oid) -> pg_sys::FmgrInfo {
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

pub(super) fn scalar(kind: pg_sys::jbvType::Type) -> pg_sys::JsonbValue {
    pg_sys::JsonbValue {
        type_: kind,
        // SAFETY: all-zero is a valid value of the union's plain-data members.
        val: unsafe { std::mem::zeroed() },
    }
}

pub(super) fn string(val: *mut c_char, len: i32) -> pg_sys::JsonbValue {
    let mut v = scalar(pg_sys::jbvType::jbvString);
    v.val.string = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 { len, val };
    v
}

impl Render {
    /// How values of type `typid` are rendered (function lookups in the current memory
    /// context).
    ///
    /// # Safety
    /// `typid` is an existing type.
    pub(super) unsafe fn for_type(typid: pg_sys::Oid) -> Render {
        // SAFETY: catalog lookups of an existing type.
        unsafe {
            if typid == pg_sys::BOOLOID {
                Render::Bool
            } else if let Some(width) = integer_width(typid) {
                Render::Integer(width)
            } else if typid == pg_sys::NUMERICOID {
                Render::Numeric(output_function(typid))
            } else if FLOAT_TYPES.contains(&typid) {
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
            }
        }
    }

    /// Whether values are rendered by `to_jsonb` (which may run a cast to json).
    pub(super) fn calls_to_jsonb(&self) -> bool {
        matches!(self, Render::ToJsonb(_))
    }

    /// The non-null value `datum` of a column of this kind, as `datum_to_jsonb` renders it
    /// (`numeric_in` is the converter's, for floats).
    ///
    /// # Safety
    /// `datum` is a value of the column's type.
    pub(super) unsafe fn value(
        &mut self,
        _: &unguarded::Region,
        datum: pg_sys::Datum,
        numeric_in: &mut pg_sys::FmgrInfo,
    ) -> pg_sys::JsonbValue {
        // SAFETY: see the function contract.
        unsafe {
            match self {
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
                    v.val.numeric = unguarded::int64_to_numeric(value);
                    v
                }
                Render::Numeric(output) => {
                    // Unpacked to a 4-byte header, as `numeric_in` would make it (a copy only
                    // when the stored value is short or toasted).
                    let numeric = unguarded::pg_detoast_datum(datum.cast_mut_ptr());
                    if numeric_is_special(numeric) {
                        let text = unguarded::OutputFunctionCall(output, datum);
                        return string(text, CStr::from_ptr(text).to_bytes().len() as i32);
                    }
                    let mut v = scalar(pg_sys::jbvType::jbvNumeric);
                    v.val.numeric = numeric.cast();
                    v
                }
                Render::Number(output) => {
                    let text = unguarded::OutputFunctionCall(output, datum);
                    let bytes = CStr::from_ptr(text).to_bytes();
                    // Invalid JSON numbers (NaN, Infinity) are the outputs with an N or n.
                    if bytes.iter().any(|b| *b == b'N' || *b == b'n') {
                        return string(text, bytes.len() as i32);
                    }
                    let numeric = unguarded::FunctionCall3Coll(
                        numeric_in,
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
                    let text = unguarded::JsonEncodeDateTime(
                        std::ptr::null_mut(),
                        datum,
                        *typid,
                        std::ptr::null(),
                    );
                    string(text, CStr::from_ptr(text).to_bytes().len() as i32)
                }
                Render::Text(output) => {
                    let text = unguarded::OutputFunctionCall(output, datum);
                    // At most 1 GB (PostgreSQL's limit for a value); `RowJson::row` keeps one
                    // over its limit out of the jsonb.
                    let len = CStr::from_ptr(text).to_bytes().len();
                    string(text, len.min(i32::MAX as usize) as i32)
                }
                Render::ToJsonb(to_jsonb) => {
                    let jsonb: *mut pg_sys::Jsonb =
                        unguarded::FunctionCall1Coll(to_jsonb, pg_sys::Oid::INVALID, datum)
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
