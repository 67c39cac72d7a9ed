//! One read of a backfill chunk's rows, as the subscription's owner: fetched one at a time
//! under a byte budget, each row's key and order key noted.

use std::ffi::c_long;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiResult};

use super::super::order_key;
use super::super::primary_key::{key_text, Key, KEY_SETTINGS};
use super::super::record_bytes::RecordBytes;

/// One read of a chunk's rows, as the subscription's owner.
pub(super) struct Reading {
    /// (payload, or without a payload expression the row, and order key hash) of each row
    /// that passes, in key order.
    pub(super) events: Vec<(pg_sys::Datum, i64)>,
    /// The key of the last row read (passing or not).
    pub(super) last: Option<Key>,
    pub(super) read: usize,
    /// The read stopped at its byte budget, before the query's last row.
    pub(super) cut: bool,
}

/// Runs the chunk's query with parameters `args` (see `primary_key::bounds`) and keeps what it
/// returns (the payloads of a subscription with a payload expression, `payload`, else the
/// rows); the datums live until SPI finishes. `width` is the primary key's. With a `budget`,
/// rows are fetched one at a time, and the read stops once those that pass reach it (the
/// first row is always read): a chunk of large rows, all read before any was queued, took the
/// runner past a gigabyte, and could not be done within its time.
pub(super) fn read_rows(
    client: &SpiClient<'_>,
    (payload, query, args): (bool, &str, Vec<DatumWithOid<'_>>),
    width: usize,
    key: &mut Option<order_key::QueryKey>,
    budget: Option<usize>,
) -> SpiResult<Reading> {
    let mut reading = Reading {
        events: Vec::new(),
        last: None,
        read: 0,
        cut: false,
    };
    let mut bytes = 0usize;
    let mut records: Option<RecordBytes> = None;
    let batch = if budget.is_some() { 1 } else { c_long::MAX };
    // Without a payload expression the event is the row itself (column 3), a record read raw.
    let column = if payload { 1 } else { 3 };
    // Read-only: the subscription's filter or payload can keep nothing of what it reads.
    // Checked first (`checked_sql`): it runs only code it names or code of roles with the
    // owner's rights.
    crate::privilege::read_only(|| {
        crate::checked_sql::select_batches(client, query, &args, None, batch, |mut rows| {
            if reading.read == 0 {
                super::super::shaped_rows::ensure_jsonb(&rows, &[1])?;
                if !payload {
                    super::super::shaped_rows::ensure_type(&rows, 3, pg_sys::RECORDOID, "record")?;
                }
            }
            // The rows are read; their keys are written under settings of their own.
            crate::sql::with_settings(&KEY_SETTINGS, || {
                while rows.next().is_some() {
                    reading.read += 1;
                    reading.last = Some(key_text(&rows, 4, width)?);
                    if rows.get::<bool>(2)? != Some(true) {
                        continue;
                    }
                    let key = match key.as_mut() {
                        // SAFETY: the chunk's query selects the order key's columns after the primary key's.
                        Some(key) => unsafe { key.hash_row(&rows, 4 + width) }?,
                        None => 0,
                    };
                    if let Some(record) = rows.get_datum_by_ordinal(column)? {
                        // SAFETY: a jsonb payload, or a record of the table's row type.
                        let size = unsafe {
                            match &mut records {
                                _ if payload => pg_sys::toast_raw_datum_size(record),
                                Some(records) => records.measure(record),
                                None => records.insert(RecordBytes::of(record)).measure(record),
                            }
                        };
                        bytes = bytes.saturating_add(size);
                        reading.events.push((record, key));
                    }
                }
                Ok::<_, pgrx::spi::Error>(())
            })?;
            reading.cut = budget.is_some_and(|budget| bytes >= budget);
            Ok(!reading.cut)
        })
    })?;
    Ok(reading)
}
