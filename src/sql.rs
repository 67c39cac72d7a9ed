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
