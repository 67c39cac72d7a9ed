//! The settings that change how values render as json, pinned to PostgreSQL's defaults while
//! capture renders a writer's rows.

use pgrx::pg_sys;

extern "C-unwind" {
    // utils/bytea.h; not in pgrx's generated bindings.
    static bytea_output: std::ffi::c_int;
}
/// `BYTEA_OUTPUT_HEX` in utils/bytea.h.
const BYTEA_OUTPUT_HEX: std::ffi::c_int = 1;

/// Pins the settings that change how `to_jsonb` renders values to PostgreSQL's defaults, in a
/// GUC nest level of their own, when the writer's session changed them: a session with
/// `extra_float_digits = -15`, `bytea_output = escape` or another `IntervalStyle` must not
/// change what is sent. Returns the nest level to pop (`None`: nothing differed, the usual
/// case, which costs three reads).
pub(super) fn pin() -> Option<i32> {
    // SAFETY: plain reads of backend globals.
    let differs = unsafe {
        pg_sys::extra_float_digits != 1
            || pg_sys::IntervalStyle != pg_sys::INTSTYLE_POSTGRES as i32
            || bytea_output != BYTEA_OUTPUT_HEX
    };
    if !differs {
        return None;
    }
    // Popped by `unpin` (or by the abort of the transaction on an ERROR).
    Some(crate::sql::push_settings(&[
        (c"extra_float_digits", c"1"),
        (c"bytea_output", c"hex"),
        (c"intervalstyle", c"postgres"),
    ]))
}

pub(super) fn unpin(nest: Option<i32>) {
    if let Some(nest) = nest {
        crate::sql::pop_settings(nest);
    }
}
