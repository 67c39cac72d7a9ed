//! How many bytes a record's values take once read in full: what rendering it will hold. A
//! record read from a table keeps its compressed values compressed (a whole-row value only
//! brings in those stored out of line), so its own size can be a hundredth of that: a chunk
//! of highly compressible large rows looked small until it was rendered.

use pgrx::pg_sys;

/// The records of one row type, measured one after another.
pub struct RecordBytes {
    desc: pg_sys::TupleDesc,
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
}

impl RecordBytes {
    /// For records of the row type of `first` (a record datum).
    ///
    /// # Safety
    /// `first` is a record datum; the descriptor is copied into the current memory context.
    pub unsafe fn of(first: pg_sys::Datum) -> RecordBytes {
        // SAFETY: see the function contract.
        unsafe {
            let header: pg_sys::HeapTupleHeader =
                pg_sys::pg_detoast_datum(first.cast_mut_ptr()).cast();
            let datum = (*header).t_choice.t_datum;
            let desc = pg_sys::lookup_rowtype_tupdesc_copy(datum.datum_typeid, datum.datum_typmod);
            let natts = (*desc).natts.max(0) as usize;
            RecordBytes {
                desc,
                values: vec![pg_sys::Datum::from(0usize); natts],
                nulls: vec![true; natts],
            }
        }
    }

    /// The bytes of `record`'s values, each varlena at its uncompressed size.
    ///
    /// # Safety
    /// `record` is a record datum of the row type this was made for.
    pub unsafe fn measure(&mut self, record: pg_sys::Datum) -> usize {
        // SAFETY: see the function contract; `values`/`nulls` hold natts entries.
        unsafe {
            let header: pg_sys::HeapTupleHeader =
                pg_sys::pg_detoast_datum(record.cast_mut_ptr()).cast();
            let mut tuple = pg_sys::HeapTupleData {
                t_len: pgrx::varlena::varsize_4b(header.cast()) as u32,
                t_self: pg_sys::ItemPointerData::default(),
                t_tableOid: pg_sys::InvalidOid,
                t_data: header,
            };
            pg_sys::heap_deform_tuple(
                &raw mut tuple,
                self.desc,
                self.values.as_mut_ptr(),
                self.nulls.as_mut_ptr(),
            );
            let attrs = (*self.desc).attrs.as_slice(self.values.len());
            let mut bytes = 0usize;
            for ((attr, value), null) in attrs.iter().zip(&self.values).zip(&self.nulls) {
                bytes = bytes.saturating_add(match (*null, attr.attlen) {
                    (true, _) => 0,
                    (false, -1) => pg_sys::toast_raw_datum_size(*value),
                    (false, -2) => std::ffi::CStr::from_ptr(value.cast_mut_ptr()).count_bytes(),
                    (false, len) => len.max(0) as usize,
                });
            }
            bytes
        }
    }
}
