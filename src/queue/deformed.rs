//! Reading an SPI result's rows column by column, each row deformed once.
//!
//! pgrx's row accessor fetches every column of a row with its own `SPI_getbinval` (and a
//! type lookup) when the row is reached, and past the first variable-width column each fetch
//! walks the tuple from its start; converting then switches memory contexts per value. The
//! claims read a dozen columns of up to thousands of rows per call, so they deform each row
//! once with `heap_deform_tuple` and convert the datums in place.

use pgrx::pg_sys;
use std::num::NonZeroUsize;

use pgrx::datum::TryFromDatumError;
use pgrx::spi::{SpiError, SpiResult, SpiTupleTable};
use pgrx::{FromDatum, IntoDatum};

/// The rows of one SPI result, each deformed as it is reached.
pub struct DeformedRows<'r, 'c> {
    table: *mut pg_sys::SPITupleTable,
    next: usize,
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    rows: &'r SpiTupleTable<'c>,
}

impl<'r, 'c> DeformedRows<'r, 'c> {
    /// The rows of `rows`, which must be the result of the last SPI statement (the one
    /// `SPI_tuptable` holds): checked by its row count.
    pub fn of(rows: &'r SpiTupleTable<'c>) -> SpiResult<DeformedRows<'r, 'c>> {
        // SAFETY: SPI_tuptable is the last statement's result, valid until the next SPI call
        // or SPI_finish, which the borrow of `rows` (tied to its SPI connection) outlives.
        let table = unsafe { pg_sys::SPI_tuptable };
        let natts = if rows.is_empty() {
            0
        } else {
            // SAFETY: checked for NULL before the dereference.
            if table.is_null() || unsafe { (*table).numvals } as usize != rows.len() {
                return Err(SpiError::NoTupleTable);
            }
            // SAFETY: a valid tuple table with a descriptor.
            unsafe { (*(*table).tupdesc).natts }.max(0) as usize
        };
        Ok(DeformedRows {
            table,
            next: 0,
            values: vec![pg_sys::Datum::from(0usize); natts],
            nulls: vec![true; natts],
            rows,
        })
    }

    /// Moves to the next row; false past the last.
    pub fn advance(&mut self) -> bool {
        if self.next >= self.rows.len() {
            return false;
        }
        // SAFETY: `next` < numvals; the tuple and descriptor belong to the live result, and
        // `values`/`nulls` hold natts entries. heap_deform_tuple raises no ERROR.
        unsafe {
            let tuple = *(*self.table).vals.add(self.next);
            pg_sys::heap_deform_tuple(
                tuple,
                (*self.table).tupdesc,
                self.values.as_mut_ptr(),
                self.nulls.as_mut_ptr(),
            );
        }
        self.next += 1;
        true
    }

    /// How many columns the rows have.
    pub fn columns(&self) -> usize {
        self.values.len()
    }

    /// Column `ordinal` (1-based) of the current row, as `T`; `None` for NULL.
    pub fn get<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> SpiResult<Option<T>> {
        let (i, typoid) = self.column(ordinal)?;
        if self.nulls[i] {
            return Ok(None);
        }
        // SAFETY: a non-NULL datum of the current row; try_from_datum refuses a Rust type the
        // column's type does not convert to, and copies strings into Rust memory.
        unsafe { Ok(T::try_from_datum(self.values[i], false, typoid)?) }
    }

    /// Column `ordinal` (1-based) of the current row, a `timestamptz`, as its JSON string
    /// (without the quotes): the text `to_jsonb` gives it, in the session's time zone, made by
    /// the same function; `None` for NULL.
    pub fn json_time(&self, ordinal: usize) -> SpiResult<Option<String>> {
        let (i, typoid) = self.column(ordinal)?;
        if typoid != pg_sys::TIMESTAMPTZOID {
            return Err(no_such_column(ordinal));
        }
        if self.nulls[i] {
            return Ok(None);
        }
        // SAFETY: a timestamptz datum; the text is palloc'd in the current context (freed with
        // it) and copied into Rust memory here. An out-of-range value raises the ERROR
        // `to_jsonb` raises, through pgrx's FFI guard.
        unsafe {
            let text = pg_sys::JsonEncodeDateTime(
                std::ptr::null_mut(),
                self.values[i],
                pg_sys::TIMESTAMPTZOID,
                std::ptr::null(),
            );
            let out = std::ffi::CStr::from_ptr(text)
                .to_string_lossy()
                .into_owned();
            pg_sys::pfree(text.cast());
            Ok(Some(out))
        }
    }

    /// The 0-based index and the type of column `ordinal` (1-based).
    fn column(&self, ordinal: usize) -> SpiResult<(usize, pg_sys::Oid)> {
        let i = ordinal
            .checked_sub(1)
            .filter(|i| *i < self.values.len())
            .ok_or_else(|| no_such_column(ordinal))?;
        // SAFETY: the attribute of a column the live result's descriptor has.
        let typoid = unsafe { (*(*(*self.table).tupdesc).attrs.as_ptr().add(i)).atttypid };
        Ok((i, typoid))
    }
}

fn no_such_column(ordinal: usize) -> SpiError {
    TryFromDatumError::NoSuchAttributeNumber(
        NonZeroUsize::new(ordinal).unwrap_or(NonZeroUsize::MIN),
    )
    .into()
}
