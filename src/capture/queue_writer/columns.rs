//! Where each column of `webhook._event_queue` is, found by name so the order of columns in the
//! table is free, and the check that the table is the one this library writes.

use pgrx::pg_sys;

/// Column positions in `webhook._event_queue`, found by name so the order of columns in the
/// table is free.
#[derive(Clone, Copy)]
pub struct Columns {
    pub id: usize,
    pub txid: usize,
    pub subscription_id: usize,
    pub op: usize,
    pub table_schema: usize,
    pub table_name: usize,
    pub record: usize,
    pub old_record: usize,
    pub created_at: usize,
    pub attempts: usize,
    pub series_start: usize,
    /// Missing before 0.2.0: a new library captures into a not yet updated schema.
    pub ordered: Option<usize>,
    /// Missing before 0.3.0.
    pub payload_bytes: Option<usize>,
    /// Missing before 0.3.0.
    pub order_key: Option<usize>,
    /// Missing before 0.3.0: the timelines of the event and of its transaction.
    pub timeline: Option<usize>,
    pub tx_timeline: Option<usize>,
}

impl Columns {
    /// The columns of the queue described by `tupdesc`; an error when they are not those of a
    /// pg_webhook this library can write to.
    ///
    /// # Safety
    /// `tupdesc` is the queue relation's descriptor.
    pub unsafe fn find(tupdesc: pg_sys::TupleDesc) -> Result<Columns, String> {
        // SAFETY: see the function contract.
        let attrs = unsafe { (*tupdesc).attrs.as_slice((*tupdesc).natts as usize) };
        let find = |name: &str| {
            attrs
                .iter()
                .position(|a| !a.attisdropped && pgrx::name_data_to_str(&a.attname) == name)
                .ok_or_else(|| format!("webhook._event_queue has no column {name}"))
        };
        // Written NULL, so only checked to be there.
        find("next_attempt_at")?;
        find("last_error")?;
        let columns = Columns {
            id: find("id")?,
            txid: find("txid")?,
            subscription_id: find("subscription_id")?,
            op: find("op")?,
            table_schema: find("table_schema")?,
            table_name: find("table_name")?,
            record: find("record")?,
            old_record: find("old_record")?,
            created_at: find("created_at")?,
            attempts: find("attempts")?,
            series_start: find("series_start")?,
            ordered: find("ordered").ok(),
            payload_bytes: find("payload_bytes").ok(),
            order_key: find("order_key").ok(),
            timeline: find("timeline").ok(),
            tx_timeline: find("tx_timeline").ok(),
        };
        // Added in 0.3.0 too, and written NULL (a new event has not been sent in a batch, nor
        // its transaction cut into parts).
        let written_null = ["batch", "part", "tx_events"]
            .iter()
            .filter(|name| find(name).is_ok())
            .count();
        let live = attrs.iter().filter(|a| !a.attisdropped).count();
        let expected = 13
            + usize::from(columns.ordered.is_some())
            + usize::from(columns.payload_bytes.is_some())
            + written_null
            + usize::from(columns.order_key.is_some())
            + usize::from(columns.timeline.is_some())
            + usize::from(columns.tx_timeline.is_some());
        if live != expected {
            return Err(format!(
                "webhook._event_queue has {live} columns, not those of pg_webhook {}; run ALTER EXTENSION pg_webhook UPDATE",
                env!("CARGO_PKG_VERSION")
            ));
        }
        Ok(columns)
    }

    /// An error when a subscription that needs the `ordered` column (`ordered`) would write to
    /// a queue from before 0.2.0.
    pub fn require_ordered(&self, ordered: bool) -> Result<(), String> {
        if ordered && self.ordered.is_none() {
            return Err(format!(
                "webhook._event_queue has no column ordered, which ordered subscriptions need in pg_webhook {}; run ALTER EXTENSION pg_webhook UPDATE",
                env!("CARGO_PKG_VERSION")
            ));
        }
        Ok(())
    }
}
