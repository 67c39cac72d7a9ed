//! The settings that change how values render as json, pinned to PostgreSQL's defaults while
//! capture renders a writer's rows.

use pgrx::pg_sys;

extern "C-unwind" {
    // utils/bytea.h; not in pgrx's generated bindings.
    static bytea_output: std::ffi::c_int;
    // utils/pg_locale.h; not in pgrx's generated bindings either.
    static locale_monetary: *const std::ffi::c_char;
}
/// `BYTEA_OUTPUT_HEX` in utils/bytea.h.
const BYTEA_OUTPUT_HEX: std::ffi::c_int = 1;

/// Pins the settings that change how `to_jsonb` renders values to PostgreSQL's defaults, in a
/// GUC nest level of their own, when the writer's session changed them: a session with
/// `extra_float_digits = -15`, `bytea_output = escape` or another `IntervalStyle` must not
/// change what is sent. Returns the nest level to pop (`None`: nothing differed, the usual
/// case, which costs three reads).
pub(super) fn pin() -> Option<i32> {
    // Popped by `unpin` (or by the abort of the transaction on an ERROR).
    rendering_differs().then(|| crate::sql::push_settings(&RENDERING))
}

/// `pin`'s settings and their values.
const RENDERING: [(&std::ffi::CStr, &std::ffi::CStr); 3] = [
    (c"extra_float_digits", c"1"),
    (c"bytea_output", c"hex"),
    (c"intervalstyle", c"postgres"),
];

/// Whether the session's settings differ from `RENDERING`.
fn rendering_differs() -> bool {
    // SAFETY: plain reads of backend globals.
    unsafe {
        pg_sys::extra_float_digits != 1
            || pg_sys::IntervalStyle != pg_sys::INTSTYLE_POSTGRES as i32
            || bytea_output != BYTEA_OUTPUT_HEX
    }
}

/// Pins, for an order key hashed by its values' output text (a type without a hash
/// function), every setting that changes that text to a fixed value, in a GUC nest level of
/// its own, when the session's differ: `TimeZone`, `DateStyle` and `lc_monetary` as well as
/// `pin`'s. A composite of a `timestamptz` and a `json` written from sessions in two time zones
/// was two keys. Returns the nest level to pop with `unpin`.
pub(super) fn pin_for_key_text() -> Option<i32> {
    // SAFETY: plain reads of backend globals; the time zone's name and the locale are
    // NUL-terminated strings the backend keeps.
    let differs = rendering_differs()
        || unsafe {
            pg_sys::DateStyle != pg_sys::USE_ISO_DATES as i32
                || pg_sys::DateOrder != pg_sys::DATEORDER_MDY as i32
                || pg_sys::session_timezone.is_null()
                || std::ffi::CStr::from_ptr(pg_sys::pg_get_timezone_name(pg_sys::session_timezone))
                    != c"UTC"
                || locale_monetary.is_null()
                || std::ffi::CStr::from_ptr(locale_monetary) != c"C"
        };
    differs.then(|| {
        let nest = crate::sql::push_settings(&RENDERING);
        // The same nest level: `unpin` pops both.
        crate::sql::set_in_nest(&[
            (c"datestyle", c"ISO, MDY"),
            (c"timezone", c"UTC"),
            (c"lc_monetary", c"C"),
        ]);
        nest
    })
}

pub(super) fn unpin(nest: Option<i32>) {
    if let Some(nest) = nest {
        crate::sql::pop_settings(nest);
    }
}
