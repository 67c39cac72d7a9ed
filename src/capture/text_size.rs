//! How many bytes a row image takes as text, which is what a delivery worker reads of it. Its
//! size as stored undercounts numbers: jsonb keeps a number as base-10000 digits with a weight
//! and a scale, so `9e131071` takes a few bytes stored and 131,072 as text, `numeric_out`
//! writing every digit. Counted as stored, 8,300 of them (2 kB in a jsonb column, or built by a
//! `payload`) made one claim of a worker read a gigabyte of text and fail, again and again, for
//! every subscription the worker serves; smaller ones made a claim of "32 MiB" hold gigabytes.
//! It undercounts strings too: a control character takes one byte stored and six as text
//! (`\u0001`), so 160 MiB of them made the callback runner hold gigabytes, and a transaction
//! of rows of 4 MB a cut step of "32 MiB" render a gigabyte. So an image counts as its size plus
//! what its numbers and strings (keys too) grow by when written out. What else grows is
//! bounded and not counted: a `false` with its separator takes seven bytes for a four-byte
//! entry.

use pgrx::pg_sys;

use pg_webhook_core::json_escapes::escape_growth;
use pg_webhook_core::payload::LARGEST_READABLE_IMAGES;

use crate::unguarded::{self, Region};

/// The most bytes `numeric_out` writes for `numeric` (a varlena with a 1- or 4-byte header,
/// not toasted): what it allocates, four digits per base-10000 digit before the point (at
/// least one), the display scale's after it, a sign and the point.
///
/// # Safety
/// `numeric` points to a numeric value.
pub unsafe fn numeric_text(numeric: *const pg_sys::varlena) -> usize {
    // SAFETY: a numeric's data starts with its 2-byte header; a long one's weight follows.
    unsafe {
        let data = pgrx::varlena::vardata_any(numeric).cast::<u8>();
        let len = pgrx::varlena::varsize_any_exhdr(numeric);
        if len < 2 {
            return 0;
        }
        let header = u16::from_ne_bytes([*data, *data.add(1)]);
        numeric_text_of(header, || {
            (len >= 4).then(|| i16::from_ne_bytes([*data.add(2), *data.add(3)]))
        })
    }
}

/// [`numeric_text`] from a numeric's header, and its second 2-byte word (the weight of the
/// long format) when it has one (numeric.c's layout).
fn numeric_text_of(header: u16, long_weight: impl FnOnce() -> Option<i16>) -> usize {
    const SHORT: u16 = 0x8000;
    const SPECIAL: u16 = 0xC000;
    let (weight, scale) = match header & 0xC000 {
        SPECIAL => return "-Infinity".len(),
        SHORT => {
            let scale = (header & 0x1F80) >> 7;
            let weight = match header & 0x0040 {
                0 => i32::from(header & 0x003F),
                _ => i32::from(((header & 0x003F) | 0xFFC0) as i16),
            };
            (weight, usize::from(scale))
        }
        _ => (
            i32::from(long_weight().unwrap_or(0)),
            usize::from(header & 0x3FFF),
        ),
    };
    let before = usize::try_from((weight + 1) * 4).unwrap_or(0).max(1);
    before + scale + 2
}

/// How many bytes the numbers and strings (keys too) in `container` take as text beyond their
/// size as stored.
///
/// # Safety
/// `container` is a valid jsonb container in memory.
pub unsafe fn container_growth(r: &Region, container: *mut pg_sys::JsonbContainer) -> usize {
    // SAFETY: the iterator reads the container, which stays valid; each numeric and string it
    // yields points into it.
    unsafe {
        let mut it = unguarded::JsonbIteratorInit(container);
        let mut value: pg_sys::JsonbValue = std::mem::zeroed();
        let mut growth = 0usize;
        loop {
            let token = unguarded::JsonbIteratorNext(&mut it, &mut value, false);
            match token {
                pg_sys::JsonbIteratorToken::WJB_DONE => return growth,
                // Scalars and keys only: the walk goes into nested containers.
                pg_sys::JsonbIteratorToken::WJB_KEY
                | pg_sys::JsonbIteratorToken::WJB_VALUE
                | pg_sys::JsonbIteratorToken::WJB_ELEM => {
                    growth = growth.saturating_add(value_growth(r, &value));
                }
                _ => {}
            }
        }
    }
}

/// How many bytes `value` grows by as text beyond its size: a number's digits written out, a
/// string's escapes, a jsonb value's (a jsonb or json column, an array or composite `to_jsonb`
/// rendered).
///
/// # Safety
/// `value` is a valid scalar or binary jsonb value.
pub unsafe fn value_growth(r: &Region, value: &pg_sys::JsonbValue) -> usize {
    // SAFETY: the union member read is the one the value's type says it holds.
    unsafe {
        match value.type_ {
            pg_sys::jbvType::jbvNumeric => {
                let numeric = value.val.numeric.cast::<pg_sys::varlena>();
                numeric_text(numeric).saturating_sub(pgrx::varlena::varsize_any(numeric))
            }
            pg_sys::jbvType::jbvString => string_growth(value.val.string.val, value.val.string.len),
            pg_sys::jbvType::jbvBinary => container_growth(r, value.val.binary.data),
            _ => 0,
        }
    }
}

/// [`escape_growth`] of the `len` bytes at `text` (none when null or empty).
///
/// # Safety
/// `text` points to `len` readable bytes when not null.
pub unsafe fn string_growth(text: *const std::ffi::c_char, len: i32) -> usize {
    match usize::try_from(len) {
        Ok(len) if len > 0 && !text.is_null() => {
            // SAFETY: see the function contract.
            escape_growth(unsafe { std::slice::from_raw_parts(text.cast::<u8>(), len) })
        }
        _ => 0,
    }
}

/// [`container_growth`] of a jsonb datum, detoasted if need be (a copy, freed after the walk: a
/// backfill's payloads are read toasted, 500 to a chunk). One already larger than any worker
/// reads is not walked: its event dies unread whatever its numbers.
///
/// # Safety
/// `datum` is a non-null jsonb datum.
pub unsafe fn jsonb_growth(r: &Region, datum: pg_sys::Datum) -> usize {
    // SAFETY: see the function contract; the copy is this function's own.
    unsafe {
        if unguarded::toast_raw_datum_size(datum) > LARGEST_READABLE_IMAGES {
            return 0;
        }
        let stored = datum.cast_mut_ptr::<pg_sys::varlena>();
        let jsonb = unguarded::pg_detoast_datum(stored);
        let growth = container_growth(r, &raw mut (*jsonb.cast::<pg_sys::Jsonb>()).root);
        if jsonb != stored {
            unguarded::pfree(jsonb.cast());
        }
        growth
    }
}

/// The C function behind `webhook._image_bytes(jsonb, jsonb)`: an event's row images (either
/// may be null) as the size a worker reads them as text, their sizes uncompressed plus what
/// their numbers and strings grow by when written out, at most what `payload_bytes` holds. The update from
/// 0.2.0 counts the images already queued with it, and events archived before it are counted
/// when replayed or given to a callback.
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_webhook_image_bytes(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fmgr passes a valid call frame with two jsonb arguments, each read only when not
    // null; the region runs on this backend's main thread and owns nothing that needs dropping.
    let bytes = unsafe {
        let mut bytes = 0usize;
        for n in 0..2 {
            if pgrx::fcinfo::pg_arg_is_null(fcinfo, n) {
                continue;
            }
            let datum = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, n);
            let image = unguarded::region(|r| {
                unguarded::toast_raw_datum_size(datum).saturating_add(jsonb_growth(r, datum))
            });
            bytes = bytes.saturating_add(image);
        }
        bytes
    };
    pg_sys::Datum::from(i32::try_from(bytes).unwrap_or(i32::MAX))
}

#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_pg_webhook_image_bytes() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

#[cfg(test)]
mod tests {
    use super::numeric_text_of;

    #[test]
    fn a_short_numeric_counts_its_weight_and_scale() {
        // 12.5: short, positive, scale 1 (bits 7-12), weight 0.
        assert_eq!(numeric_text_of(0x8000 | (1 << 7), || None), 7);
        // 0.001: short, weight -1 (sign bit 6 and 0x3F), scale 3.
        assert_eq!(
            numeric_text_of(0x8000 | (3 << 7) | 0x0040 | 0x003F, || None),
            6
        );
    }

    #[test]
    fn a_long_numeric_reads_its_weight_from_the_second_word() {
        // 9e131071 has weight 32767 (digits in base 10000): 131,072 digits before the point.
        assert_eq!(numeric_text_of(0x0000, || Some(32767)), 131_074);
        // Scale 16383 after the point, weight -4096.
        assert_eq!(numeric_text_of(0x3FFF, || Some(-4096)), 16_386);
    }

    #[test]
    fn infinities_take_their_name() {
        assert_eq!(numeric_text_of(0xF000, || None), 9);
    }
}
