//! Event ids for a writer: taken from the id sequence a block at a time (its increment), so a
//! statement's events call `nextval` once per 1,024.

use pgrx::pg_sys;

use crate::unguarded;

/// Ids per `nextval` of webhook._event_id_seq (its increment).
pub(super) const ID_BLOCK: i64 = 1024;

/// The id sequence returned a block that runs past the largest bigint.
pub(super) struct IdsExhausted(i64);

impl IdsExhausted {
    pub(super) fn raise(self) -> ! {
        crate::error::reject(
            pgrx::PgSqlErrorCode::ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED,
            format!(
                "pg_webhook: the event id sequence webhook._event_id_seq is exhausted: it \
                 returned {}, and capture takes ids {ID_BLOCK} at a time up to {}",
                self.0,
                i64::MAX
            ),
            None,
        )
    }
}

/// The ids a writer hands out.
pub(super) struct EventIds {
    sequence: pg_sys::Oid,
    /// Next id to hand out and the end of the block it comes from.
    next: i64,
    block_end: i64,
    /// The first and last id handed out (`None`: none yet).
    taken: Option<(i64, i64)>,
}

impl EventIds {
    pub(super) fn new(sequence: pg_sys::Oid) -> EventIds {
        EventIds {
            sequence,
            next: 0,
            block_end: 0,
            taken: None,
        }
    }

    /// The next event id: from the current block of the id sequence, or the first of a new one.
    pub(super) fn take(&mut self, _: &unguarded::Region) -> Result<i64, IdsExhausted> {
        if self.next == self.block_end {
            // SAFETY: inside the caller's region. An ERROR here (a cancelled lock wait, an
            // exhausted sequence) unwinds from the region.
            let first = unsafe { unguarded::nextval_internal(self.sequence, false) };
            // Checked here, not by overflow (a panic cannot leave a region).
            self.block_end = first.checked_add(ID_BLOCK).ok_or(IdsExhausted(first))?;
            self.next = first;
        }
        let id = self.next;
        self.next += 1;
        self.taken = Some(self.taken.map_or((id, id), |(first, _)| (first, id)));
        Ok(id)
    }

    /// The first and last id handed out, if any.
    pub(super) fn taken(&self) -> Option<(i64, i64)> {
        self.taken
    }
}
