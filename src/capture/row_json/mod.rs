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

use std::ffi::{CStr, CString};

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;

mod cache;
mod image;
mod render;

pub use cache::{forget_relation, put_back, take};
pub use image::{text_bytes, within_limit, Image};
pub(super) use render::output_function;
use render::{function, scalar, string, Render};

use crate::capture::text_size::value_growth;
use crate::unguarded;
use pg_webhook_core::json_escapes::escape_growth;

struct Column {
    /// 0-based position in the row.
    index: usize,
    name: CString,
    /// What the name grows by as a JSON key (a quote or a control character in it).
    name_grows: usize,
    render: Render,
    /// Whether values are varlenas, whose size as stored is known without reading them.
    varlena: bool,
}

pub struct RowJson {
    columns: Vec<Column>,
    /// The column whose value is being rendered (its index in the row), for `failed`.
    rendering: Option<usize>,
    /// What the rendering depends on: each attribute's type and whether it is dropped.
    attributes: Vec<(pg_sys::Oid, bool)>,
    numeric_in: pg_sys::FmgrInfo,
    /// Whether some column is rendered by `to_jsonb`, which may run a cast to json of its type
    /// (see `guarded_as_writer`).
    calls_to_jsonb: bool,
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

impl RowJson {
    /// The converter for rows described by `desc`.
    ///
    /// # Safety
    /// `desc` is a valid descriptor.
    pub(super) unsafe fn new(desc: pg_sys::TupleDesc) -> RowJson {
        // SAFETY: see the function contract.
        unsafe { RowJson::projected(desc, |_| true) }
    }

    /// The converter for rows described by `desc` that renders only the columns whose names
    /// `keep` accepts (a shaped subscription's `columns` or `exclude_columns`).
    ///
    /// # Safety
    /// `desc` is a valid descriptor.
    pub unsafe fn projected(desc: pg_sys::TupleDesc, keep: impl Fn(&str) -> bool) -> RowJson {
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
            let columns: Vec<Column> = attrs
                .iter()
                .enumerate()
                .filter(|(_, a)| !a.attisdropped && keep(pgrx::name_data_to_str(&a.attname)))
                .map(|(index, a)| {
                    let render = Render::for_type(a.atttypid);
                    let name = CStr::from_ptr(a.attname.data.as_ptr()).to_owned();
                    Column {
                        index,
                        name_grows: escape_growth(name.as_bytes()),
                        name,
                        render,
                        varlena: a.attlen == -1,
                    }
                })
                .collect();
            let numeric_in = function(pg_sys::Oid::from(pg_sys::F_NUMERIC_IN));
            drop(in_memory);
            let calls_to_jsonb = columns.iter().any(|c| c.render.calls_to_jsonb());
            RowJson {
                calls_to_jsonb,
                columns,
                rendering: None,
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

    /// The row in `slot` as a jsonb datum, in the current memory context, or only its size
    /// when that is over `room` (see `Image`): `pg_webhook_core::payload::LARGEST_READABLE_IMAGES`, or what an event's
    /// other image left of it.
    ///
    /// # Safety
    /// The slot holds a row of the descriptor the converter was made for.
    pub unsafe fn row_within(
        &mut self,
        r: &unguarded::Region,
        slot: *mut pg_sys::TupleTableSlot,
        room: usize,
    ) -> Image {
        // SAFETY: the slot's values and nulls arrays have natts entries once all are read; the
        // jsonb builder copies nothing until JsonbValueToJsonb, and every string it points to
        // lives in the current memory context or this converter until then (it only reads
        // them). Nothing here owns a value that needs dropping.
        unsafe {
            let natts = self.attributes.len();
            unguarded::slot_getsomeattrs(r, slot, natts as i32);
            let values = std::slice::from_raw_parts((*slot).tts_values, natts);
            let nulls = std::slice::from_raw_parts((*slot).tts_isnull, natts);
            let mut state: *mut pg_sys::JsonbParseState = std::ptr::null_mut();
            use pg_sys::JsonbIteratorToken::*;
            unguarded::pushJsonbValue(&mut state, WJB_BEGIN_OBJECT, std::ptr::null_mut());
            let numeric_in = &mut self.numeric_in;
            // Each value is rendered and counted before it goes in: one over the limit (a
            // string past jsonb's 256 MiB among them) never reaches the builder. A value whose
            // size as stored is over what is left is not even rendered, but counted by that
            // size: its text could pass the 1 GB PostgreSQL allocates at most (a bytea's hex
            // is twice as long), or to_jsonb itself pass jsonb's limits (an array, a composite,
            // a json value). So is every value once the image is over the limit.
            let mut bytes = 0usize;
            let mut growth = 0usize;
            for column in self.columns.iter_mut() {
                let name = column.name.as_bytes();
                let null = *nulls.get_unchecked(column.index);
                let datum = *values.get_unchecked(column.index);
                let stored = if column.varlena && !null {
                    unguarded::toast_raw_datum_size(datum).saturating_sub(pg_sys::VARHDRSZ)
                } else {
                    0
                };
                if bytes.saturating_add(name.len() + stored) > room {
                    // Counted to the end, for the reason the event dies with; built no further
                    // (what the builder holds is in the current context, reset with it).
                    bytes = bytes.saturating_add(name.len() + stored);
                    continue;
                }
                self.rendering = Some(column.index);
                let mut value = if null {
                    scalar(pg_sys::jbvType::jbvNull)
                } else {
                    column.render.value(r, datum, numeric_in)
                };
                let grows = value_growth(r, &value).saturating_add(column.name_grows);
                growth = growth.saturating_add(grows);
                bytes = bytes
                    .saturating_add(name.len() + size(&value))
                    .saturating_add(grows);
                if bytes > room {
                    continue;
                }
                let mut key = string(column.name.as_ptr().cast_mut(), name.len() as i32);
                unguarded::pushJsonbValue(&mut state, WJB_KEY, &mut key);
                unguarded::pushJsonbValue(&mut state, WJB_VALUE, &mut value);
            }
            self.rendering = None;
            if bytes > room {
                return Image::Omitted(bytes);
            }
            let object =
                unguarded::pushJsonbValue(&mut state, WJB_END_OBJECT, std::ptr::null_mut());
            let jsonb = unguarded::JsonbValueToJsonb(object);
            Image::Json(pg_sys::Datum::from(jsonb), Some(growth))
        }
    }
}

impl RowJson {
    /// Runs `f`, which renders rows with this converter, under one ERROR guard. An ERROR raised
    /// while a column's value is rendered — a `json` value holding `\u0000` or a lone
    /// surrogate, which jsonb cannot hold, or a type's output function failing — is raised
    /// again naming the column and how to leave it out (same SQLSTATE and detail), and the
    /// subscription if given.
    ///
    /// # Safety
    /// As `unguarded::region`'s, for `f`.
    pub unsafe fn guarded<T>(
        &mut self,
        subscription: Option<&str>,
        f: impl FnOnce(&unguarded::Region, &mut RowJson) -> T,
    ) -> T {
        self.rendering = None;
        // SAFETY: see the function contract.
        let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
            unguarded::region(|r| f(r, &mut *self))
        }));
        rendered.unwrap_or_else(|caught| self.failed(caught, subscription))
    }

    /// As `guarded`, for capture rendering rows of a table owned by `table_owner` as the
    /// writer: a function `to_jsonb` would run (a cast to json of a column's type, which the
    /// type's owner may make at any time) runs only if its owner has the writer's or the table
    /// owner's privileges (`analysis_guard::capturing`), else the write fails naming it.
    ///
    /// # Safety
    /// As `guarded`'s.
    pub unsafe fn guarded_as_writer<T>(
        &mut self,
        table_owner: pg_sys::Oid,
        subscription: Option<&str>,
        f: impl FnOnce(&unguarded::Region, &mut RowJson) -> T,
    ) -> T {
        if !self.calls_to_jsonb {
            // SAFETY: see the function contract.
            return unsafe { self.guarded(subscription, f) };
        }
        // SAFETY: see the function contract.
        crate::analysis_guard::capturing(table_owner, || unsafe { self.guarded(subscription, f) })
    }

    fn failed(&self, caught: Box<dyn std::any::Any + Send>, subscription: Option<&str>) -> ! {
        let column =
            (self.rendering).and_then(|index| self.columns.iter().find(|c| c.index == index));
        let caught = match caught.downcast::<CaughtError>() {
            Ok(caught) => *caught,
            Err(other) => std::panic::resume_unwind(other),
        };
        // (An ERROR outside a value's rendering, or a Rust panic, goes on as it was; so does
        // one not about the value: a cancel, a timeout, a lack of memory or of a privilege.)
        let (Some(column), CaughtError::PostgresError(e) | CaughtError::ErrorReport(e)) =
            (column, &caught)
        else {
            caught.rethrow()
        };
        if !about_the_value(e.sql_error_code()) {
            caught.rethrow()
        }
        let name = column.name.to_string_lossy();
        super::error::raise_again(
            e,
            format!(
                "{}column \"{name}\" cannot be rendered as jsonb for the webhook event: {}",
                subscription.map_or_else(String::new, |s| format!(
                    "pg_webhook subscription \"{s}\": "
                )),
                e.message()
            ),
            Some(format!(
                "Leave the column out of the events (exclude_columns => ARRAY['{}'], or a \
                 columns list without it) or change the value.{}",
                name.replace('\'', "''"),
                e.hint().map_or_else(String::new, |h| format!(" {h}"))
            )),
        )
    }
}

/// Whether an ERROR raised while a value was rendered is about the value: a data exception
/// (class 22: what jsonb cannot hold, what a type's input or output refuses) or one a function
/// raised (class P0: a cast to json in PL/pgSQL that refuses it).
fn about_the_value(code: pgrx::PgSqlErrorCode) -> bool {
    use pgrx::PgSqlErrorCode::{ERRCODE_DATA_EXCEPTION, ERRCODE_RAISE_EXCEPTION};
    // The class is the first two characters, the low 12 bits (ERRCODE_TO_CATEGORY).
    let class = |code: pgrx::PgSqlErrorCode| code as isize & 0xfff;
    [ERRCODE_DATA_EXCEPTION, ERRCODE_RAISE_EXCEPTION]
        .into_iter()
        .any(|c| class(c) == class(code))
}

/// The bytes `value` takes in a jsonb (its data, without the entry headers and padding).
///
/// # Safety
/// `value` is a scalar or binary value as `Render::value` makes them.
unsafe fn size(value: &pg_sys::JsonbValue) -> usize {
    // SAFETY: the union member read is the one the value's type says it holds.
    unsafe {
        match value.type_ {
            pg_sys::jbvType::jbvString => value.val.string.len.max(0) as usize,
            pg_sys::jbvType::jbvNumeric => pgrx::varsize_any(value.val.numeric.cast()),
            pg_sys::jbvType::jbvBinary => value.val.binary.len.max(0) as usize,
            _ => 1,
        }
    }
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

#[cfg(test)]
mod tests {
    use pgrx::PgSqlErrorCode::*;

    #[test]
    fn only_errors_about_the_value_name_its_column() {
        for about in [
            ERRCODE_UNTRANSLATABLE_CHARACTER,    // 22P05: \u0000
            ERRCODE_INVALID_TEXT_REPRESENTATION, // 22P02: a lone surrogate
            ERRCODE_RAISE_EXCEPTION,             // P0001
            ERRCODE_ASSERT_FAILURE,              // P0004
        ] {
            assert!(super::about_the_value(about), "{about:?}");
        }
        for other in [
            ERRCODE_QUERY_CANCELED,
            ERRCODE_LOCK_NOT_AVAILABLE,
            ERRCODE_T_R_DEADLOCK_DETECTED,
            ERRCODE_OUT_OF_MEMORY,
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            ERRCODE_INTERNAL_ERROR,
        ] {
            assert!(!super::about_the_value(other), "{other:?}");
        }
    }
}
