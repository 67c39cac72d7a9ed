//! `webhook._claim_room(bytes, budget)`: a claim's byte budget, counted as its rows come out of
//! the index (sql/worker/claim_new.sql, claim_lagging.sql). It says of each row, in the order
//! the claim reads them: 0, the bytes before it are under the budget (the row is taken, the
//! first always); 1, the first row past the budget (returned without its images, so the worker
//! knows the page was cut by bytes and not by the end of the queue); 2, any later row (left
//! out). A running sum as a window aggregate did the same, but copied every row of the page
//! into two tuple stores: a third of the claim's time.
//!
//! The sum lives in the call site's `fn_extra`, which the executor makes afresh for each run
//! of the statement. The function is `VOLATILE` and parallel-unsafe, so the planner neither
//! moves it past the `LIMIT` nor runs it in another process, and it is meaningful only there:
//! nobody but the extension's owner may execute it (sql/internals.sql).

use pgrx::pg_sys;
use pgrx::prelude::*;

/// What one call site has counted so far.
#[derive(Default)]
struct Room {
    used: i64,
    cut: bool,
}

impl Room {
    /// Counts a row of `bytes` against `budget` and says what becomes of it (see above).
    fn take(&mut self, bytes: i64, budget: i64) -> i32 {
        let before = self.used;
        self.used = before.saturating_add(bytes.max(0));
        if before < budget {
            0
        } else if !self.cut {
            self.cut = true;
            1
        } else {
            2
        }
    }
}

/// The C function behind `webhook._claim_room(integer, bigint)` (declared in sql/internals.sql,
/// `STRICT`, so neither argument is null).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_webhook_claim_room(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fmgr passes a valid call frame with two non-null arguments (the function is
    // strict) of the declared types; the state is made in the call site's memory context the
    // first time and lives as long as the call site.
    let room = unsafe {
        let bytes = pgrx::fcinfo::pg_getarg::<i32>(fcinfo, 0).unwrap_or_default();
        let budget = pgrx::fcinfo::pg_getarg::<i64>(fcinfo, 1).unwrap_or_default();
        let mut state = pgrx::fcinfo::pg_func_extra(fcinfo, Room::default);
        state.take(bytes.into(), budget)
    };
    pg_sys::Datum::from(room)
}

#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_pg_webhook_claim_room() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

#[cfg(test)]
mod tests {
    use super::Room;

    #[test]
    fn rows_are_taken_while_the_bytes_before_them_are_under_the_budget() {
        let mut room = Room::default();
        let said: Vec<i32> = [40, 40, 40, 40, 40]
            .iter()
            .map(|b| room.take(*b, 100))
            .collect();
        assert_eq!(said, vec![0, 0, 0, 1, 2]);
    }

    #[test]
    fn the_first_row_is_taken_however_large() {
        let mut room = Room::default();
        assert_eq!(room.take(1 << 30, 1), 0);
        assert_eq!(room.take(1, 1), 1);
    }
}
