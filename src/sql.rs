//! A helper for the most common shape of SPI query in pg_webhook: one row or none.

use pgrx::datum::DatumWithOid;
use pgrx::spi::{SpiClient, SpiResult, SpiTupleTable};

/// Runs `query` and reads its first row with `read`; `None` when it returns no row.
pub fn first_row<T>(
    client: &SpiClient<'_>,
    query: &str,
    args: &[DatumWithOid<'_>],
    read: impl FnOnce(&SpiTupleTable<'_>) -> SpiResult<T>,
) -> SpiResult<Option<T>> {
    let rows = client.select(query, Some(1), args)?;
    if rows.is_empty() {
        return Ok(None);
    }
    read(&rows.first()).map(Some)
}

/// One column of a row read by `first_row_at_active_snapshot`.
pub struct RowReader {
    tuple: pgrx::pg_sys::HeapTuple,
    desc: pgrx::pg_sys::TupleDesc,
}

impl RowReader {
    /// Column `n` (from 1) as `T`; `None` when NULL.
    pub fn get<T: pgrx::FromDatum>(&self, n: i32) -> Option<T> {
        let mut null = false;
        // SAFETY: the tuple and its descriptor are SPI's result, alive while the connection
        // that read them is; `T` is what the query's column is (the caller's SQL says so).
        unsafe {
            let datum = pgrx::pg_sys::SPI_getbinval(self.tuple, self.desc, n, &mut null);
            T::from_polymorphic_datum(datum, null, pgrx::pg_sys::SPI_gettypeid(self.desc, n))
        }
    }
}

/// Like `first_row`, but read-only at the snapshot the caller pushed as active. pgrx runs
/// queries read-write once the transaction has an xid, and SPI then takes the transaction
/// snapshot, which under REPEATABLE READ can be older than the catalog a trigger fired from.
/// Must be called inside an SPI connection (`Spi::connect`).
pub fn first_row_at_active_snapshot<T>(
    query: &std::ffi::CStr,
    args: &[(pgrx::pg_sys::Oid, pgrx::pg_sys::Datum)],
    read: impl FnOnce(&RowReader) -> T,
) -> Result<Option<T>, String> {
    use pgrx::pg_sys;
    let mut types: Vec<pg_sys::Oid> = args.iter().map(|a| a.0).collect();
    let mut values: Vec<pg_sys::Datum> = args.iter().map(|a| a.1).collect();
    // SAFETY: a read-only SPI query with as many (non-null) arguments as types; the result
    // is read before the connection closes.
    unsafe {
        let status = pg_sys::SPI_execute_with_args(
            query.as_ptr(),
            args.len() as i32,
            types.as_mut_ptr(),
            values.as_mut_ptr(),
            std::ptr::null(),
            true,
            1,
        );
        if status != pg_sys::SPI_OK_SELECT as i32 {
            return Err(format!("SPI status {status}"));
        }
        let table = pg_sys::SPI_tuptable;
        if table.is_null() || pg_sys::SPI_processed == 0 {
            return Ok(None);
        }
        let reader = RowReader {
            tuple: *(*table).vals,
            desc: (*table).tupdesc,
        };
        Ok(Some(read(&reader)))
    }
}
